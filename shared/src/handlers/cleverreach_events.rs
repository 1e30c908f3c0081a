//! Handlers of CleverReach's event hooks (docs/architecture.md §3 "Event hooks"):
//!
//! - `cleverreach-events` (function URL): answers the registration handshake
//!   (`GET ?secret=` → `"<verify> <secret>"`, `text/plain`), checks a delivery's
//!   `X-CR-Calltoken` against the token stored for its group (constant time; 401 and nothing
//!   queued otherwise), queues it (FIFO, group = receiver) and answers at once;
//! - `sync-cleverreach-events` (SQS): works the queued deliveries through
//!   `usecases::backflow::events::on_event`, one message after another, with a partial batch response.

use super::batch::{InboundMessage, MessageOutcome, process_groups_concurrently};
use super::keys_match;
use crate::domain::hooks::{EventsMessage, HookEvent, HookEventKind};
use crate::domain::routing::QueueFamily;
use crate::error::Retryable;
use crate::ports::queue::{MessageQueue, OutboundMessage};
use crate::ports::secrets::{HookTokenStore, HookTokens};
use crate::usecases::backflow::model::Outcome;
use crate::usecases::{Connector, SyncError, backflow, hooks};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{Instrument, info, warn};

/// How long the stored tokens are reused by a warm endpoint.
const TOKENS_TTL: Duration = Duration::from_secs(300);
/// A group's token not found is looked up again at most this often per group (a new
/// registration's token is saved after the registration answers; a flood of bad tokens must
/// not flood the store) ...
const REREAD_AFTER: Duration = Duration::from_secs(5);
/// ... and at most this many times per 10 seconds over all groups.
const REREADS_PER_10_SECS: usize = 20;
/// The largest delivery body accepted (a delivery names ids only).
const MAX_BODY: usize = 16 * 1024;

/// One request to the endpoint, independent of Lambda.
#[derive(Debug, Clone, Default)]
pub struct EventRequest {
    pub method: String,
    pub query: Vec<(String, String)>,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// The endpoint's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl EventResponse {
    fn json(status: u16, outcome: &str, detail: impl Into<String>) -> Self {
        EventResponse {
            status,
            content_type: "application/json",
            body: serde_json::json!({ "outcome": outcome, "detail": detail.into() }).to_string(),
        }
    }
}

/// What the endpoint needs: the queue and the stored tokens (cached).
pub struct EndpointDeps<Q: MessageQueue> {
    pub queue: Q,
    tokens: Arc<dyn HookTokenStore>,
    cache: Mutex<Option<(Instant, HookTokens)>>,
    /// When the store was last read again because of a miss: over all groups, and per group.
    last_reread: Mutex<(
        std::collections::VecDeque<Instant>,
        BTreeMap<String, Instant>,
    )>,
    /// Milliseconds since the epoch (injected for tests).
    pub now_ms: fn() -> i64,
}

impl<Q: MessageQueue> EndpointDeps<Q> {
    pub fn new(queue: Q, tokens: Arc<dyn HookTokenStore>) -> Self {
        EndpointDeps {
            queue,
            tokens,
            cache: Mutex::new(None),
            last_reread: Mutex::new((std::collections::VecDeque::new(), BTreeMap::new())),
            now_ms: || chrono::Utc::now().timestamp_millis(),
        }
    }

    /// The stored tokens: cached, read again when older than `max_age`.
    async fn tokens(&self, max_age: Duration) -> Result<HookTokens, SyncError> {
        if let Some((at, tokens)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            && at.elapsed() < max_age
        {
            return Ok(tokens.clone());
        }
        let tokens = self.tokens.hook_tokens().await?;
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), tokens.clone()));
        Ok(tokens)
    }
}

/// Handles one request: the handshake or a delivery.
pub async fn receive<Q: MessageQueue>(
    request: &EventRequest,
    deps: &EndpointDeps<Q>,
) -> EventResponse {
    match request.method.to_ascii_uppercase().as_str() {
        "GET" => handshake(request, deps).await,
        "POST" => delivery(request, deps).await,
        other => EventResponse::json(
            405,
            "refused",
            format!(
                "method {other} is not served: GET answers the registration, POST takes events"
            ),
        ),
    }
}

/// `GET ?secret=<s>` → `"<verify> <s>"`: CleverReach checks that the URL is ours.
async fn handshake<Q: MessageQueue>(
    request: &EventRequest,
    deps: &EndpointDeps<Q>,
) -> EventResponse {
    let Some(secret) = request
        .query
        .iter()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.trim())
    else {
        return EventResponse::json(400, "refused", "the query parameter secret is missing");
    };
    // The secret is echoed: only what a token can be, so nothing else is reflected.
    if secret.is_empty()
        || secret.len() > 128
        || !secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return EventResponse::json(
            400,
            "refused",
            "the query parameter secret must be 1 to 128 letters, digits, '-' or '_'",
        );
    }
    // Read fresh and not cached: the verify token is made right before the registration that
    // calls here, and the registration's call token is saved only after this answer.
    let verify = match deps.tokens.hook_tokens().await {
        Ok(tokens) => tokens.verify,
        Err(e) => {
            warn!(error = %e, "hook tokens unreadable for the handshake");
            return EventResponse::json(503, "unavailable", "the hook tokens cannot be read now");
        }
    };
    let Some(verify) = verify else {
        return EventResponse::json(
            409,
            "refused",
            "no registration is under way: the connector has no verify token yet",
        );
    };
    info!("hook registration verified");
    EventResponse {
        status: 200,
        content_type: "text/plain",
        body: format!("{} {secret}", verify.expose()),
    }
}

/// Reads a delivery body: `{"event", "condition", "payload": {"pool_id", "group_id"}}`.
fn parse_delivery(body: &[u8], now_ms: i64) -> Result<Option<HookEvent>, String> {
    if body.len() > MAX_BODY {
        return Err(format!(
            "the body has {} bytes; at most {MAX_BODY} are accepted",
            body.len()
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON: {}", crate::redact::json_error(&e)))?;
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let event = value
        .get("event")
        .and_then(Value::as_str)
        .ok_or("the field event is missing or not text")?;
    let Some(kind) = HookEventKind::from_event_name(event) else {
        // Not a receiver event: nothing the connector registered for.
        return Ok(None);
    };
    let condition =
        text(value.get("condition")).ok_or("the field condition (the group id) is missing")?;
    let payload = value.get("payload").ok_or("the field payload is missing")?;
    let receiver_id = text(payload.get("pool_id")).ok_or("the field payload.pool_id is missing")?;
    if let Some(group) = text(payload.get("group_id"))
        && group != condition
    {
        return Err("payload.group_id and condition name different groups".into());
    }
    let id_like = |s: &str| {
        s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !id_like(&condition) || !id_like(&receiver_id) {
        return Err(
            "condition and payload.pool_id must be ids (at most 64 letters, digits, '-' or '_')"
                .into(),
        );
    }
    Ok(Some(HookEvent {
        kind,
        group_id: condition,
        receiver_id,
        received_at_ms: now_ms,
    }))
}

async fn delivery<Q: MessageQueue>(
    request: &EventRequest,
    deps: &EndpointDeps<Q>,
) -> EventResponse {
    let given = request
        .headers
        .get("x-cr-calltoken")
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    if given.is_empty() {
        return EventResponse::json(401, "refused", "the header X-CR-Calltoken is missing");
    }
    let event = match parse_delivery(&request.body, (deps.now_ms)()) {
        Ok(Some(event)) => event,
        Ok(None) => return EventResponse::json(200, "ignored", "not a receiver event"),
        Err(problem) => {
            warn!(%problem, "hook delivery refused");
            return EventResponse::json(400, "refused", problem);
        }
    };
    if !token_matches(deps, &event.group_id, &given).await {
        warn!(group_id = %event.group_id, "hook delivery with a wrong call token refused");
        return EventResponse::json(
            401,
            "refused",
            format!(
                "the call token does not match the registration of group {}",
                event.group_id
            ),
        );
    }
    let kind = event.kind;
    let group_id = event.group_id.clone();
    let message = match outbound(EventsMessage::Delivery(event)) {
        Ok(message) => message,
        Err(e) => {
            return EventResponse::json(500, "failed", format!("the event cannot be queued: {e}"));
        }
    };
    match deps.queue.send(vec![message]).await {
        Ok(()) => {
            info!(event = kind.name(), group_id = %group_id, "hook delivery queued");
            EventResponse::json(200, "queued", kind.name())
        }
        Err(e) => {
            warn!(error = %e, "hook delivery could not be queued; the scheduled back-flow will find the event");
            EventResponse::json(503, "unavailable", "the event could not be queued")
        }
    }
}

/// A message for the events queue.
pub fn outbound(message: EventsMessage) -> Result<OutboundMessage, serde_json::Error> {
    Ok(OutboundMessage {
        family: QueueFamily::CleverReachEvents,
        group: message.message_group(),
        deduplication_id: message.deduplication_id(),
        body: serde_json::to_string(&message)?,
    })
}

/// Asks the events worker to check the registrations now (after a connect). Best effort: the
/// next scheduled run checks them anyway.
pub async fn request_check<Q: MessageQueue + ?Sized>(queue: &Q, now_ms: i64) {
    let sent = match outbound(EventsMessage::CheckRegistrations {
        requested_at_ms: now_ms,
    }) {
        Ok(message) => queue.send(vec![message]).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match sent {
        Ok(()) => info!("hook registrations check queued"),
        Err(e) => {
            warn!(error = %e, "hook registrations check not queued; the next scheduled run checks them")
        }
    }
}

/// The stored token of the group against the given one, in constant time; a group unknown to
/// the cache is looked up again (rate limited).
async fn token_matches<Q: MessageQueue>(
    deps: &EndpointDeps<Q>,
    group_id: &str,
    given: &str,
) -> bool {
    let matches = |tokens: &HookTokens| {
        tokens
            .call_tokens
            .get(group_id)
            .is_some_and(|expected| keys_match(expected, given))
    };
    match deps.tokens(TOKENS_TTL).await {
        Ok(tokens) if matches(&tokens) => return true,
        Ok(_) => {}
        Err(e) => {
            warn!(error = %e, retryable = e.is_retryable(), "hook tokens unreadable");
            return false;
        }
    }
    // Not found: read again, unless that was done moments ago.
    {
        let mut last = deps.last_reread.lock().unwrap_or_else(|p| p.into_inner());
        let (recent, per_group) = &mut *last;
        while recent
            .front()
            .is_some_and(|at| at.elapsed() >= Duration::from_secs(10))
        {
            recent.pop_front();
        }
        if recent.len() >= REREADS_PER_10_SECS
            || per_group
                .get(group_id)
                .is_some_and(|at| at.elapsed() < REREAD_AFTER)
        {
            return false;
        }
        let now = Instant::now();
        recent.push_back(now);
        per_group.retain(|_, at| at.elapsed() < REREAD_AFTER);
        per_group.insert(group_id.to_string(), now);
    }
    match deps.tokens(Duration::ZERO).await {
        Ok(tokens) => matches(&tokens),
        Err(e) => {
            warn!(error = %e, retryable = e.is_retryable(), "hook tokens unreadable");
            false
        }
    }
}

// ---- the worker ----------------------------------------------------------------------------

/// What `sync-cleverreach-events` needs: the ports (with the hooks, and the follow-up queue that
/// takes the person reconciles).
pub struct WorkerDeps {
    pub conn: Connector,
    /// Where failed messages are written down with their error (`crc-admin dlq show`).
    pub failures: crate::handlers::batch::FailureRecorder,
}

/// Receivers worked at once within a batch (each receiver's events in order).
const RECEIVERS_AT_ONCE: usize = 10;

/// Works a batch, different receivers side by side (their events share nothing but a person
/// whose checklist they may both write, which is written conditionally); returns the ids to
/// leave on the queue.
pub async fn work(deps: &WorkerDeps, messages: Vec<InboundMessage>) -> Vec<String> {
    process_groups_concurrently(messages, RECEIVERS_AT_ONCE, &deps.failures, |message| {
        one_event(deps, message)
    })
    .await
}

async fn one_event(deps: &WorkerDeps, message: InboundMessage) -> MessageOutcome {
    let span = tracing::info_span!(
        "message",
        message_id = %message.message_id,
        queue = QueueFamily::CleverReachEvents.name(),
        correlation_id = tracing::field::Empty,
        group_id = tracing::field::Empty,
        receiver_id = tracing::field::Empty,
    );
    async {
        let work: EventsMessage = match serde_json::from_str(&message.body) {
            Ok(work) => work,
            Err(e) => {
                let e = crate::redact::json_error(&e);
                warn!(error = %e, "message body is not a CleverReach event");
                return MessageOutcome::Failed(format!(
                    "message body is not a CleverReach event: {e}"
                ));
            }
        };
        let event = match work {
            EventsMessage::Delivery(event) => event,
            EventsMessage::CheckRegistrations { .. } => {
                return match hooks::check(&deps.conn).await {
                    Ok(report) if report.failed.is_empty() => MessageOutcome::Done,
                    Ok(report) => MessageOutcome::Failed(report.failed.join("; ")),
                    Err(e) => MessageOutcome::Failed(e.to_string()),
                };
            }
        };
        let span = tracing::Span::current();
        span.record("correlation_id", event.deduplication_id().as_str());
        span.record("group_id", event.group_id.as_str());
        span.record("receiver_id", event.receiver_id.as_str());
        let result = async {
            let settings = deps.conn.settings().await?;
            backflow::events::on_event(&deps.conn, &settings, &event).await
        }
        .await;
        match result {
            Ok(outcome) => {
                let waited_ms = (deps.conn.now)() * 1000 - event.received_at_ms;
                info!(
                    event = event.kind.name(),
                    outcome = outcome_name(&outcome),
                    waited_ms,
                    "CleverReach event applied"
                );
                MessageOutcome::Done
            }
            Err(SyncError::Invalid(reason)) => {
                warn!(%reason, "CleverReach event refused");
                MessageOutcome::Refused(reason)
            }
            Err(e) => {
                warn!(error = %e, retryable = e.is_retryable(), "CleverReach event failed");
                MessageOutcome::Failed(e.to_string())
            }
        }
    }
    .instrument(span)
    .await
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Applied => "applied",
        Outcome::AlreadyDone => "already done",
        Outcome::Ignored => "ignored",
        Outcome::Skipped => "skipped",
    }
}

/// Lambda adapters of both functions.
#[cfg(feature = "aws")]
pub mod lambda {
    use super::*;
    use crate::handlers::batch::lambda::{batch_response, to_messages};
    use crate::handlers::function_url_parts;
    use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
    use lambda_http::{Body, Request, Response};
    use lambda_runtime::LambdaEvent;

    pub fn to_event_request(request: &Request) -> EventRequest {
        let parts = function_url_parts(request);
        EventRequest {
            method: request.method().as_str().to_string(),
            query: parts.query,
            headers: parts.headers,
            body: parts.body,
        }
    }

    /// `cleverreach-events`.
    pub async fn receive<Q: MessageQueue>(
        request: Request,
        deps: &EndpointDeps<Q>,
    ) -> Result<Response<Body>, lambda_http::Error> {
        let answer = super::receive(&to_event_request(&request), deps).await;
        Ok(Response::builder()
            .status(answer.status)
            .header("content-type", answer.content_type)
            .body(Body::Text(answer.body))?)
    }

    /// `sync-cleverreach-events`.
    pub async fn work(
        event: LambdaEvent<SqsEvent>,
        deps: &WorkerDeps,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let messages = to_messages(event.payload);
        let total = messages.len();
        batch_response(total, super::work(deps, messages).await)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::adapters::memory::{InMemoryHookStore, InMemoryMessageQueue};
    use crate::secret::Secret;

    fn delivery_body(event: &str, group: &str, pool: &str) -> Vec<u8> {
        serde_json::json!({
            "event": event,
            "condition": group,
            "payload": { "pool_id": pool, "group_id": group },
        })
        .to_string()
        .into_bytes()
    }

    fn post(token: &str, body: Vec<u8>) -> EventRequest {
        EventRequest {
            method: "POST".into(),
            headers: [("x-cr-calltoken".to_string(), token.to_string())].into(),
            body,
            ..EventRequest::default()
        }
    }

    async fn endpoint() -> (
        Arc<InMemoryMessageQueue>,
        Arc<InMemoryHookStore>,
        EndpointDeps<Arc<InMemoryMessageQueue>>,
    ) {
        let queue = Arc::new(InMemoryMessageQueue::new());
        let store = Arc::new(InMemoryHookStore::new());
        store
            .save_call_token("7", &Secret::new("token-of-group-seven"))
            .await
            .unwrap();
        let deps = EndpointDeps::new(queue.clone(), store.clone());
        (queue, store, deps)
    }

    #[tokio::test]
    async fn the_handshake_answers_verify_space_secret_as_plain_text() {
        let (_, store, deps) = endpoint().await;
        let verify = store.verify_token().await.unwrap();
        let answer = receive(
            &EventRequest {
                method: "GET".into(),
                query: vec![("secret".into(), "abc123".into())],
                ..EventRequest::default()
            },
            &deps,
        )
        .await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.content_type, "text/plain");
        assert_eq!(answer.body, format!("{} abc123", verify.expose()));
    }

    #[tokio::test]
    async fn a_handshake_without_a_verify_token_or_with_a_strange_secret_is_refused() {
        let (_, store, deps) = endpoint().await;
        let get = |secret: &str| EventRequest {
            method: "GET".into(),
            query: vec![("secret".into(), secret.into())],
            ..EventRequest::default()
        };
        assert_eq!(receive(&get("abc"), &deps).await.status, 409);
        store.verify_token().await.unwrap();
        let answer = receive(&get("<script>"), &deps).await;
        assert_eq!(answer.status, 400);
        assert!(!answer.body.contains("<script>"));
    }

    #[tokio::test]
    async fn a_delivery_with_the_groups_token_is_queued_with_the_receiver_as_message_group() {
        let (queue, _, deps) = endpoint().await;
        let answer = receive(
            &post(
                "token-of-group-seven",
                delivery_body("receiver.unsubscribed", "7", "42"),
            ),
            &deps,
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let queued = queue.take(QueueFamily::CleverReachEvents, 10);
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].message.group, "receiver:7:42");
        let EventsMessage::Delivery(event) = serde_json::from_str(&queued[0].message.body).unwrap()
        else {
            panic!("not a delivery");
        };
        assert_eq!(event.kind, HookEventKind::Unsubscribed);
        assert_eq!(event.receiver_id, "42");
    }

    #[tokio::test]
    async fn a_wrong_or_missing_call_token_is_refused_with_401_and_nothing_is_queued() {
        let (queue, _, deps) = endpoint().await;
        for token in ["token-of-group-sevem", "", "token-of-group-seven-and-more"] {
            let answer = receive(
                &post(token, delivery_body("receiver.unsubscribed", "7", "42")),
                &deps,
            )
            .await;
            assert_eq!(answer.status, 401, "token {token:?}");
            assert!(!answer.body.contains("token-of-group-seven"));
        }
        // The right token of another group is no token for this one.
        let answer = receive(
            &post(
                "token-of-group-seven",
                delivery_body("receiver.unsubscribed", "8", "42"),
            ),
            &deps,
        )
        .await;
        assert_eq!(answer.status, 401);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_token_saved_after_the_endpoint_cached_the_tokens_is_found() {
        let (queue, store, deps) = endpoint().await;
        assert_eq!(
            receive(
                &post(
                    "token-of-group-seven",
                    delivery_body("receiver.created", "7", "1")
                ),
                &deps
            )
            .await
            .status,
            200
        );
        store
            .save_call_token("9", &Secret::new("token-of-group-nine"))
            .await
            .unwrap();
        let answer = receive(
            &post(
                "token-of-group-nine",
                delivery_body("receiver.created", "9", "1"),
            ),
            &deps,
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(queue.take(QueueFamily::CleverReachEvents, 10).len(), 2);
    }

    #[tokio::test]
    async fn a_malformed_delivery_names_what_is_wrong_and_is_not_queued() {
        let (queue, _, deps) = endpoint().await;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "not JSON"),
            (br#"{"condition":"7","payload":{"pool_id":"1"}}"#.to_vec(), "event"),
            (br#"{"event":"receiver.created","payload":{"pool_id":"1"}}"#.to_vec(), "condition"),
            (br#"{"event":"receiver.created","condition":"7","payload":{}}"#.to_vec(), "pool_id"),
            (br#"{"event":"receiver.created","condition":"7","payload":{"pool_id":"1","group_id":"8"}}"#.to_vec(), "different groups"),
        ];
        for (body, names) in cases {
            let answer = receive(&post("token-of-group-seven", body), &deps).await;
            assert_eq!(answer.status, 400);
            assert!(
                answer.body.contains(names),
                "{} should name {names}",
                answer.body
            );
        }
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn events_other_than_receiver_events_are_acknowledged_and_not_queued() {
        let (queue, _, deps) = endpoint().await;
        let answer = receive(
            &post(
                "token-of-group-seven",
                delivery_body("form.created", "7", "1"),
            ),
            &deps,
        )
        .await;
        assert_eq!(answer.status, 200);
        assert!(queue.is_empty());
    }
}
