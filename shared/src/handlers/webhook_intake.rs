//! Handler: the Dataverse webhook intake (function `webhook-intake`, behind a function URL).
//!
//! Steps: authenticate → check the organisation → parse → drop what is of no interest →
//! enqueue to the entity family's FIFO queue → answer. Dataverse retries only 502/503/504 (once),
//! so the answer is 2xx only after the queue accepted the change, 503 when the queue or the key
//! store is unreachable, and 4xx for requests that retrying cannot fix.

use super::keys_match;
use crate::adapters::dataverse::webhook::parse_change_event;
use crate::domain::change::ChangeEvent;
use crate::domain::routing::{QueueFamily, deduplication_id};
use crate::ports::{ChangeQueue, QueueError, SecretSource};
use serde_json::json;
use std::collections::BTreeMap;
use tracing::{info, warn};

/// The query parameter Dataverse's "WebhookKey" authentication sends.
pub const KEY_QUERY_PARAMETER: &str = "code";
/// The header to configure for Dataverse's "HttpHeader" authentication.
pub const KEY_HEADER: &str = "x-crc-webhook-key";
/// Present when Dataverse dropped parameters and images from a body over 256 KB.
pub const SIZE_EXCEEDED_HEADER: &str = "x-ms-dynamics-msg-size-exceeded";
pub const ORGANIZATION_HEADER: &str = "x-ms-dynamics-organization";

/// Deployment settings of the intake.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    /// Secrets Manager name of the secret holding the webhook key.
    pub key_secret: String,
    /// The JSON field of that secret holding the key (`None`: the whole secret is the key).
    pub key_field: Option<String>,
    /// When set, requests whose `x-ms-dynamics-organization` differs are refused.
    pub expected_organization: Option<String>,
    /// The connector's application user in Dataverse: its own writes are not queued again.
    pub connector_user_id: Option<String>,
}

/// What the intake needs from the outside world.
pub struct IntakeDeps<Q, S> {
    pub queue: Q,
    pub secrets: S,
    pub settings: IntakeSettings,
}

/// A webhook request, independent of the HTTP framework that carried it.
#[derive(Debug, Clone, Default)]
pub struct WebhookRequest {
    pub query: Vec<(String, String)>,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl WebhookRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The intake's answer: an HTTP status and a small JSON body for whoever reads the system job.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: u16,
    pub body: serde_json::Value,
}

impl WebhookResponse {
    fn new(status: u16, outcome: &str, detail: impl Into<String>) -> Self {
        WebhookResponse {
            status,
            body: json!({ "outcome": outcome, "detail": detail.into() }),
        }
    }
}

/// Handles one webhook delivery.
pub async fn handle<Q: ChangeQueue, S: SecretSource>(
    request: &WebhookRequest,
    deps: &IntakeDeps<Q, S>,
) -> WebhookResponse {
    if let Err(refusal) = authenticate(request, deps).await {
        return refusal;
    }
    if let Err(refusal) = check_organization(request, &deps.settings) {
        return refusal;
    }
    let event = match parse(request) {
        Ok(event) => event,
        Err(refusal) => return refusal,
    };
    let span = tracing::info_span!(
        "webhook",
        correlation_id = %event.correlation_id,
        message = %event.message.name(),
        entity = %event.entity,
        record_id = %event.record_id,
    );
    let _entered = span.enter();
    let family = match route(&event, &deps.settings) {
        Ok(family) => family,
        Err(ignored) => return ignored,
    };
    let event = fit_for_queue(event);
    let response = enqueue(&deps.queue, family, &event).await;
    if response.status == 202 && crate::domain::routing::starts_retroactive_sync(&event) {
        // The fan-out has a queue of its own (docs/architecture.md §5); Dataverse retries the webhook when
        // this fails, and the list queue de-duplicates the copy it already has.
        let fanout = enqueue(&deps.queue, QueueFamily::RetroactiveSync, &event).await;
        if fanout.status != 202 {
            return fanout;
        }
    }
    response
}

async fn authenticate<Q, S: SecretSource>(
    request: &WebhookRequest,
    deps: &IntakeDeps<Q, S>,
) -> Result<(), WebhookResponse> {
    let expected = deps
        .secrets
        .secret(
            &deps.settings.key_secret,
            deps.settings.key_field.as_deref(),
        )
        .await
        .map_err(|e| {
            warn!(error = %e, "webhook key unavailable");
            WebhookResponse::new(
                503,
                "unavailable",
                "the webhook key cannot be read right now",
            )
        })?;
    let given = request
        .query_value(KEY_QUERY_PARAMETER)
        .or_else(|| request.header(KEY_HEADER));
    match given {
        Some(given) if keys_match(&expected, given) => Ok(()),
        _ => {
            warn!("webhook refused: missing or wrong key");
            Err(WebhookResponse::new(
                401,
                "unauthorized",
                "the webhook key is missing or wrong",
            ))
        }
    }
}

/// Constant-time comparison, so that the time taken does not reveal how much of a guess matched.
fn check_organization(
    request: &WebhookRequest,
    settings: &IntakeSettings,
) -> Result<(), WebhookResponse> {
    let Some(expected) = settings.expected_organization.as_deref() else {
        return Ok(());
    };
    match request.header(ORGANIZATION_HEADER) {
        Some(org) if org.trim().eq_ignore_ascii_case(expected.trim()) => Ok(()),
        other => {
            warn!(organization = ?other, "webhook from an unexpected organisation");
            Err(WebhookResponse::new(
                403,
                "forbidden",
                format!("{ORGANIZATION_HEADER} does not name the configured organisation"),
            ))
        }
    }
}

fn parse(request: &WebhookRequest) -> Result<ChangeEvent, WebhookResponse> {
    let size_exceeded = request.header(SIZE_EXCEEDED_HEADER).is_some();
    parse_change_event(&request.body, size_exceeded).map_err(|e| {
        warn!(error = %e, "malformed webhook body");
        WebhookResponse::new(400, "malformed", e.to_string())
    })
}

/// The largest change queued as it came, in bytes of its JSON. SQS takes 256 KiB per
/// message including its attributes, and the queue adapter packs sends of at most 200 KiB;
/// Dataverse's own limit (256 KB of webhook body) lets through an AddListMembers of about 4,600
/// ids, whose queued form would be refused, the intake would answer 503, and Dataverse's one
/// retry would fail the same way: the change lost.
pub const MAX_QUEUED_CHANGE_BYTES: usize = 200 * 1024;

/// A change too large for a queue message loses its details (the named members, the images,
/// the changed attributes) and is queued as "size exceeded", as Dataverse itself sends a body
/// over its limit: the worker then reads everything it needs from the CRM (a membership change
/// becomes a full reconcile of the list's group).
fn fit_for_queue(event: ChangeEvent) -> ChangeEvent {
    let size = serde_json::to_vec(&event).map_or(usize::MAX, |body| body.len());
    if size <= MAX_QUEUED_CHANGE_BYTES {
        return event;
    }
    info!(
        bytes = size,
        related = event.related.len(),
        "change too large for a queue message: queued without its details, the worker reads them"
    );
    event.without_details()
}

/// Decides the queue, or answers 200 for changes the connector leaves alone (a non-2xx would
/// mark the CRM's system job as failed for something that is not a failure).
fn route(event: &ChangeEvent, settings: &IntakeSettings) -> Result<QueueFamily, WebhookResponse> {
    if let Some(own) = settings.connector_user_id.as_deref()
        && event.initiating_user_id.eq_ignore_ascii_case(own)
    {
        info!("own write, not queued");
        return Err(WebhookResponse::new(
            200,
            "ignored",
            "the change was made by the connector itself",
        ));
    }
    QueueFamily::for_entity(&event.entity).ok_or_else(|| {
        info!("entity of no interest, not queued");
        WebhookResponse::new(
            200,
            "ignored",
            format!("the connector does not sync {} records", event.entity),
        )
    })
}

async fn enqueue<Q: ChangeQueue>(
    queue: &Q,
    family: QueueFamily,
    event: &ChangeEvent,
) -> WebhookResponse {
    match queue.enqueue(family, event).await {
        Ok(()) => {
            info!(queue = %family, "queued");
            WebhookResponse {
                status: 202,
                body: json!({
                    "outcome": "queued",
                    "queue": family.name(),
                    "deduplication_id": deduplication_id(event),
                }),
            }
        }
        Err(e @ QueueError::Unavailable { .. }) => {
            warn!(error = %e, "queue unavailable");
            WebhookResponse::new(503, "unavailable", "the queue did not accept the change")
        }
        Err(e) => {
            // A deployment mistake (no queue for this family): fail the system job visibly.
            tracing::error!(error = %e, "change not queued");
            WebhookResponse::new(500, "error", e.to_string())
        }
    }
}

/// Lambda adapter: function URL request → [`WebhookRequest`] → HTTP response.
#[cfg(feature = "aws")]
pub mod lambda {
    use super::*;
    use crate::handlers::function_url_parts;
    use lambda_http::{Body, Request, Response};

    pub fn to_webhook_request(request: &Request) -> WebhookRequest {
        let parts = function_url_parts(request);
        WebhookRequest {
            query: parts.query,
            headers: parts.headers,
            body: parts.body,
        }
    }

    pub fn to_response(response: WebhookResponse) -> Result<Response<Body>, lambda_http::Error> {
        Ok(Response::builder()
            .status(response.status)
            .header("content-type", "application/json")
            .body(Body::Text(response.body.to_string()))?)
    }

    /// The function's handler.
    pub async fn run<Q: ChangeQueue, S: SecretSource>(
        request: Request,
        deps: &IntakeDeps<Q, S>,
    ) -> Result<Response<Body>, lambda_http::Error> {
        to_response(handle(&to_webhook_request(&request), deps).await)
    }
}
