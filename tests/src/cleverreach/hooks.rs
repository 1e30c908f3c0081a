//! CleverReach simulator: event hooks ("eventhook").
//!
//! - `POST /hooks/eventhook` `{url, event, condition, verify}` registers a hook. Inside that
//!   call the simulator sends `GET <url>?secret=<s>` and expects `200`, `text/plain`,
//!   body `"<verify> <s>"`; then it answers `{"success": true, "call_token", "secret"}`
//!   (64 and 32 characters). A failed handshake answers `200 {"success": false, "error"}`.
//! - `GET /hooks/eventhook` lists registrations (`event`, `condition`, `url`; never tokens).
//! - `DELETE /hooks/eventhook/{event}[?condition=<group id>]` removes every registration of
//!   that event (of that group only, with `condition`).
//!
//! Deliveries are `POST <url>` with `X-CR-Calltoken: <call_token>` and the body
//! `{"event": "receiver.unsubscribed", "condition": "<group id>",
//!   "payload": {"pool_id": "<receiver id>", "group_id": "<group id>"}}`.
//! They are sent in the background, at most once (CleverReach promises no retry), and a
//! chosen share can be dropped or delayed (see [`HookDeliveryConfig`]). Only receiver
//! events are simulated; form, filter, group and automation hooks answer 400.

use super::api::{ApiResult, authed, object_body};
use super::state::{ApiError, SimState, parse_id};
use super::{Endpoint, Shared};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, header},
    response::IntoResponse,
    routing::{delete, get},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The receiver events CleverReach documents; a registration names one of them or the
/// whole `receiver` category.
pub const RECEIVER_EVENTS: [&str; 5] = [
    "receiver.subscribed",
    "receiver.unsubscribed",
    "receiver.created",
    "receiver.updated",
    "receiver.deleted",
];

/// Documented categories and events the simulator does not deliver (answered with 400).
const UNSIMULATED: [&str; 4] = ["form", "filter", "group", "automation"];

/// How many past deliveries `/_sim/hooks` shows.
const LOG_SIZE: usize = 1000;
/// How long the simulator waits for the verification answer and for a delivery's answer.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How deliveries behave; `PUT /_sim/hooks/delivery` sets it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookDeliveryConfig {
    /// Share of deliveries never sent (0.0–1.0).
    #[serde(default)]
    pub drop_rate: f64,
    /// Share of the remaining deliveries sent late (0.0–1.0).
    #[serde(default)]
    pub delay_rate: f64,
    /// How late a delayed delivery is sent.
    #[serde(default)]
    pub delay_ms: u64,
    /// Seed for a reproducible drop/delay sequence.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Whether changes made through the REST API (upserts, deletes, `/deactivate`, …) fire
    /// events too, not only changes made inside CleverReach (unsubscribe links, forms,
    /// imports). Unknown for the real API, so on by default: a client must cope with its
    /// own writes coming back.
    #[serde(default = "yes")]
    pub api_events: bool,
}

fn yes() -> bool {
    true
}

impl Default for HookDeliveryConfig {
    /// Every delivery sent at once; API changes fire events.
    fn default() -> Self {
        HookDeliveryConfig {
            drop_rate: 0.0,
            delay_rate: 0.0,
            delay_ms: 0,
            seed: None,
            api_events: true,
        }
    }
}

impl HookDeliveryConfig {
    fn check(&self) -> Result<(), ApiError> {
        for (name, rate) in [
            ("drop_rate", self.drop_rate),
            ("delay_rate", self.delay_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ApiError::bad_request(format!(
                    "{name} must be between 0 and 1, not {rate}"
                )));
            }
        }
        Ok(())
    }
}

/// Counts of the hook machinery so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookStats {
    /// Registrations accepted (handshake answered correctly).
    pub registered: u64,
    /// Registrations refused because the handshake failed.
    pub verification_failed: u64,
    /// Events that matched a registration (one per registration and event).
    pub events: u64,
    /// POSTs sent (whatever the answer).
    pub made: u64,
    /// Deliveries deliberately not sent.
    pub dropped: u64,
    /// Deliveries sent late.
    pub delayed: u64,
    /// Sent deliveries the endpoint did not accept (non-2xx or no answer).
    pub failed: u64,
}

/// A registration as tests and `/_sim/hooks` see it (no tokens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookRegistration {
    pub id: u64,
    pub url: String,
    pub event: String,
    pub condition: String,
    pub stamp: i64,
}

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookDelivery {
    pub registration_id: u64,
    pub event: String,
    pub condition: String,
    pub pool_id: String,
    /// `delivered` (2xx), `failed` (other answer or none) or `dropped` (never sent).
    pub outcome: String,
    /// The endpoint's HTTP status, when it answered.
    pub status: Option<u16>,
    pub delayed_ms: u64,
    pub at: i64,
}

pub(crate) struct Registration {
    pub view: HookRegistration,
    pub call_token: String,
}

/// A delivery waiting for the dispatcher.
pub(crate) struct Outgoing {
    registration_id: u64,
    url: String,
    call_token: String,
    event: String,
    condition: String,
    pool_id: String,
    delay_ms: u64,
}

pub(crate) struct Hooks {
    pub registrations: Vec<Registration>,
    next_id: u64,
    pub config: HookDeliveryConfig,
    rng: fastrand::Rng,
    outbox: Vec<Outgoing>,
    /// Deliveries emitted and not yet finished (queued, delayed or on the wire).
    pub in_flight: usize,
    pub stats: HookStats,
    pub log: VecDeque<HookDelivery>,
    pub wake: Arc<Notify>,
}

impl Hooks {
    pub fn new() -> Self {
        Hooks {
            registrations: Vec::new(),
            next_id: 1,
            config: HookDeliveryConfig::default(),
            rng: fastrand::Rng::new(),
            outbox: Vec::new(),
            in_flight: 0,
            stats: HookStats::default(),
            log: VecDeque::new(),
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn set_config(&mut self, config: HookDeliveryConfig) -> Result<(), ApiError> {
        config.check()?;
        self.rng = match config.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        self.config = config;
        Ok(())
    }

    fn record(&mut self, entry: HookDelivery) {
        if self.log.len() >= LOG_SIZE {
            self.log.pop_front();
        }
        self.log.push_back(entry);
    }

    /// Queues `event` for every registration watching `group_id`. `from_api` marks changes
    /// made through the REST API, which fire only while `api_events` is on.
    pub fn emit(&mut self, event: &str, group_id: u64, pool_id: u64, from_api: bool, now: i64) {
        if self.registrations.is_empty() || (from_api && !self.config.api_events) {
            return;
        }
        let condition = group_id.to_string();
        let targets: Vec<(u64, String, String)> = self
            .registrations
            .iter()
            .filter(|r| r.view.condition == condition)
            .filter(|r| r.view.event == "receiver" || r.view.event == event)
            .map(|r| (r.view.id, r.view.url.clone(), r.call_token.clone()))
            .collect();
        for (registration_id, url, call_token) in targets {
            self.stats.events += 1;
            if self.rng.f64() < self.config.drop_rate {
                self.stats.dropped += 1;
                self.record(HookDelivery {
                    registration_id,
                    event: event.to_string(),
                    condition: condition.clone(),
                    pool_id: pool_id.to_string(),
                    outcome: "dropped".to_string(),
                    status: None,
                    delayed_ms: 0,
                    at: now,
                });
                continue;
            }
            let delay_ms = if self.config.delay_ms > 0 && self.rng.f64() < self.config.delay_rate {
                self.stats.delayed += 1;
                self.config.delay_ms
            } else {
                0
            };
            self.in_flight += 1;
            self.outbox.push(Outgoing {
                registration_id,
                url,
                call_token,
                event: event.to_string(),
                condition: condition.clone(),
                pool_id: pool_id.to_string(),
                delay_ms,
            });
        }
        if !self.outbox.is_empty() {
            self.wake.notify_one();
        }
    }

    pub fn registrations(&self) -> Vec<HookRegistration> {
        self.registrations.iter().map(|r| r.view.clone()).collect()
    }

    /// Everything `/_sim/hooks` shows: registrations without tokens, the delivery settings,
    /// the counts and the latest deliveries.
    pub fn state_json(&self) -> Value {
        json!({
            "registrations": self.registrations(),
            "delivery": self.config,
            "stats": self.stats,
            "in_flight": self.in_flight,
            "deliveries": self.log,
        })
    }
}

// ---- the dispatcher -----------------------------------------------------------------------

/// Sends queued deliveries until the simulator stops. Each delivery runs in its own task so
/// that a slow endpoint or a delay holds up nothing else (and order is not guaranteed, as
/// with the real service).
pub(crate) async fn dispatcher(shared: Shared) {
    let wake = shared.lock().hooks.wake.clone();
    loop {
        wake.notified().await;
        let batch = std::mem::take(&mut shared.lock().hooks.outbox);
        for outgoing in batch {
            tokio::spawn(deliver(shared.clone(), outgoing));
        }
    }
}

async fn deliver(shared: Shared, out: Outgoing) {
    if out.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(out.delay_ms)).await;
    }
    let body = json!({
        "event": out.event,
        "condition": out.condition,
        "payload": { "pool_id": out.pool_id, "group_id": out.condition },
    });
    let answer = shared
        .http
        .post(&out.url)
        .header("X-CR-Calltoken", &out.call_token)
        .json(&body)
        .send()
        .await;
    let status = match answer {
        Ok(resp) => Some(resp.status().as_u16()),
        Err(err) => {
            // The URL and token stay out of the log; the reason is enough to debug.
            tracing::debug!(event = %out.event, error = %err.without_url(), "hook delivery got no answer");
            None
        }
    };
    let delivered = status.is_some_and(|s| (200..300).contains(&s));
    let mut st = shared.lock();
    let now = st.now();
    let hooks = &mut st.hooks;
    hooks.stats.made += 1;
    if !delivered {
        hooks.stats.failed += 1;
    }
    hooks.in_flight = hooks.in_flight.saturating_sub(1);
    hooks.record(HookDelivery {
        registration_id: out.registration_id,
        event: out.event,
        condition: out.condition,
        pool_id: out.pool_id,
        outcome: if delivered { "delivered" } else { "failed" }.to_string(),
        status,
        delayed_ms: out.delay_ms,
        at: now,
    });
}

// ---- the REST side: /hooks/eventhook ------------------------------------------------------

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/hooks/eventhook", get(list).post(register))
        .route("/hooks/eventhook/{event}", delete(remove))
        .with_state(shared)
}

fn random_token(len: usize) -> String {
    let mut token = String::with_capacity(len + 32);
    while token.len() < len {
        token.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    token.truncate(len);
    token
}

/// `https://…`, or plain `http://` to a loopback address so that tests can listen locally.
/// Anything else would be refused by CleverReach, so the sandbox refuses it too.
fn check_url(raw: &str) -> Result<url::Url, ApiError> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| ApiError::bad_request(format!("url '{raw}' is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(ApiError::bad_request(format!(
            "url must be an https URL (plain http only to a loopback address in the sandbox), not '{raw}'"
        ))),
    }
}

fn check_event(event: &str) -> Result<(), ApiError> {
    if event == "receiver" || RECEIVER_EVENTS.contains(&event) {
        return Ok(());
    }
    let category = event.split('.').next().unwrap_or_default();
    if UNSIMULATED.contains(&category) {
        return Err(ApiError::bad_request(format!(
            "event '{event}' is not simulated: the sandbox delivers receiver events only"
        )));
    }
    Err(ApiError::bad_request(format!(
        "unknown event '{event}' (receiver, or one of {})",
        RECEIVER_EVENTS.join(", ")
    )))
}

fn text_field(body: &serde_json::Map<String, Value>, name: &str) -> Result<String, ApiError> {
    match body.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::String(_)) | Some(Value::Null) | None => {
            Err(ApiError::bad_request(format!("{name} is required")))
        }
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a string"))),
    }
}

struct NewHook {
    url: url::Url,
    event: String,
    condition: String,
    verify: String,
}

fn check_registration(st: &SimState, body: &[u8]) -> Result<NewHook, ApiError> {
    let body = object_body(body)?;
    let url = check_url(&text_field(&body, "url")?)?;
    let event = text_field(&body, "event")?;
    check_event(&event)?;
    let condition = text_field(&body, "condition")?;
    let gid = parse_id(&condition).ok_or_else(|| {
        ApiError::bad_request(format!(
            "condition must be the id of the group to watch, not '{condition}'"
        ))
    })?;
    if !st.groups.contains_key(&gid) {
        return Err(ApiError::invalid_group());
    }
    let verify = match body.get("verify") {
        Some(Value::String(v)) => v.clone(),
        None | Some(Value::Null) => return Err(ApiError::bad_request("verify is required")),
        Some(_) => {
            return Err(ApiError::bad_request(
                "verify must be a string of 10 to 50 characters",
            ));
        }
    };
    let length = verify.chars().count();
    if !(10..=50).contains(&length) {
        return Err(ApiError::bad_request(format!(
            "verify must be 10 to 50 characters long, not {length}"
        )));
    }
    Ok(NewHook {
        url,
        event,
        condition: gid.to_string(),
        verify,
    })
}

/// The verification call: `GET <url>?secret=<s>` must answer 200, `text/plain`,
/// `"<verify> <s>"`. `Err` says what was wrong.
async fn handshake(http: &reqwest::Client, hook: &NewHook) -> Result<(), String> {
    let secret = random_token(20);
    let mut url = hook.url.clone();
    url.query_pairs_mut().append_pair("secret", &secret);
    let resp = http.get(url).send().await.map_err(|e| {
        format!(
            "the verification request got no answer ({})",
            e.without_url()
        )
    })?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.map_err(|e| {
        format!(
            "the verification answer could not be read ({})",
            e.without_url()
        )
    })?;
    if status.as_u16() != 200 {
        return Err(format!(
            "the verification request was answered {}, not 200",
            status.as_u16()
        ));
    }
    if !content_type
        .to_ascii_lowercase()
        .trim_start()
        .starts_with("text/plain")
    {
        return Err(format!(
            "the verification answer is '{content_type}', not text/plain"
        ));
    }
    if text != format!("{} {secret}", hook.verify) {
        // Neither the expected nor the received text goes out: both hold the verify token.
        return Err(
            "the verification answer is not the verify token, one space and the secret".into(),
        );
    }
    Ok(())
}

async fn register(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let hook = {
        let st = authed(&s, Endpoint::HookRegister, &headers)?;
        check_registration(&st, &body)?
    };
    // The lock is not held here: the endpoint may well call the simulator while it answers.
    if let Err(why) = handshake(&s.http, &hook).await {
        s.lock().hooks.stats.verification_failed += 1;
        return Ok(Json(json!({
            "success": false,
            "error": format!("verification of {} failed: {why}", hook.url),
        }))
        .into_response());
    }
    let mut st = s.lock();
    let now = st.now();
    let hooks = &mut st.hooks;
    let call_token = random_token(64);
    // Documented as "used for decryption"; nothing is encrypted in the sandbox, so it is
    // handed out and not kept.
    let secret = random_token(32);
    let id = hooks.next_id;
    hooks.next_id += 1;
    hooks.registrations.push(Registration {
        view: HookRegistration {
            id,
            url: hook.url.to_string(),
            event: hook.event,
            condition: hook.condition,
            stamp: now,
        },
        call_token: call_token.clone(),
    });
    hooks.stats.registered += 1;
    Ok(
        Json(json!({ "success": true, "call_token": call_token, "secret": secret }))
            .into_response(),
    )
}

async fn list(State(s): State<Shared>, headers: HeaderMap) -> ApiResult {
    let st = authed(&s, Endpoint::HookList, &headers)?;
    let rows: Vec<Value> = st
        .hooks
        .registrations
        .iter()
        .map(|r| {
            json!({
                "event": r.view.event,
                "condition": r.view.condition,
                "url": r.view.url,
            })
        })
        .collect();
    Ok(Json(Value::Array(rows)).into_response())
}

async fn remove(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(event): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::HookDelete, &headers)?;
    let condition = params
        .get("condition")
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty());
    let before = st.hooks.registrations.len();
    st.hooks.registrations.retain(|r| {
        r.view.event != event || condition.as_ref().is_some_and(|c| *c != r.view.condition)
    });
    if st.hooks.registrations.len() == before {
        return Err(ApiError::new(
            404,
            format!("Not Found: no registration for event '{event}'"),
        ));
    }
    Ok(Json(json!(true)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_lengths() {
        assert_eq!(random_token(64).len(), 64);
        assert_eq!(random_token(32).len(), 32);
        assert_ne!(random_token(32), random_token(32));
    }

    #[test]
    fn only_https_or_loopback_http_urls_are_accepted() {
        assert!(check_url("https://hook.example.com/cr").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(check_url("http://localhost/hook").is_ok());
        assert!(check_url("http://[::1]:80/hook").is_ok());
        assert!(check_url("http://hook.example.com/cr").is_err());
        assert!(check_url("ftp://127.0.0.1/x").is_err());
        assert!(check_url("not a url").is_err());
    }

    #[test]
    fn receiver_events_are_accepted_and_other_categories_are_refused_by_name() {
        assert!(check_event("receiver").is_ok());
        assert!(check_event("receiver.unsubscribed").is_ok());
        let err = check_event("group.deleted").unwrap_err();
        assert!(err.message.contains("not simulated"), "{}", err.message);
        let err = check_event("receiver.bounced").unwrap_err();
        assert!(err.message.contains("unknown event"), "{}", err.message);
    }

    #[test]
    fn a_dropped_share_is_counted_and_never_queued() {
        let mut hooks = Hooks::new();
        hooks.registrations.push(Registration {
            view: HookRegistration {
                id: 1,
                url: "http://127.0.0.1:1/".into(),
                event: "receiver".into(),
                condition: "7".into(),
                stamp: 0,
            },
            call_token: "t".into(),
        });
        hooks
            .set_config(HookDeliveryConfig {
                drop_rate: 0.25,
                seed: Some(3),
                ..HookDeliveryConfig::default()
            })
            .unwrap();
        for pid in 0..1000 {
            hooks.emit("receiver.unsubscribed", 7, pid, false, 0);
        }
        hooks.emit("receiver.unsubscribed", 8, 1, false, 0);
        assert_eq!(hooks.stats.events, 1000);
        assert!(
            (200..300).contains(&hooks.stats.dropped),
            "{:?}",
            hooks.stats
        );
        assert_eq!(
            hooks.outbox.len() as u64 + hooks.stats.dropped,
            1000,
            "every event is either queued or dropped"
        );
        assert_eq!(hooks.in_flight, hooks.outbox.len());
    }

    #[test]
    fn api_changes_fire_only_while_api_events_are_on() {
        let mut hooks = Hooks::new();
        hooks.registrations.push(Registration {
            view: HookRegistration {
                id: 1,
                url: "http://127.0.0.1:1/".into(),
                event: "receiver.updated".into(),
                condition: "7".into(),
                stamp: 0,
            },
            call_token: "t".into(),
        });
        hooks.emit("receiver.updated", 7, 1, true, 0);
        hooks.emit("receiver.deleted", 7, 1, true, 0);
        assert_eq!(
            hooks.outbox.len(),
            1,
            "a single-event registration gets that event only"
        );
        hooks
            .set_config(HookDeliveryConfig {
                api_events: false,
                ..HookDeliveryConfig::default()
            })
            .unwrap();
        hooks.emit("receiver.updated", 7, 1, true, 0);
        hooks.emit("receiver.updated", 7, 1, false, 0);
        assert_eq!(hooks.outbox.len(), 2);
        assert!(
            hooks
                .set_config(HookDeliveryConfig {
                    drop_rate: 1.5,
                    ..HookDeliveryConfig::default()
                })
                .is_err()
        );
    }
}
