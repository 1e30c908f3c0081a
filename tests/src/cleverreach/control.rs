//! CleverReach simulator: `/_sim/…` controls, so a person using the sandbox can do what
//! tests do through [`super::CleverReachSim`]'s methods (unsubscribe, bounce, sign up, …)
//! and look at the account. Never faulted, no token needed.

use super::hooks::HookDeliveryConfig;
use super::state::{ApiError, Origin, RowOutcome, WriteMode};
use super::{CallStats, Shared};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/_sim/state", get(state))
        .route("/_sim/stats", get(stats).delete(reset_stats))
        .route("/_sim/reactivations", get(reactivations))
        .route("/_sim/groups", get(groups))
        .route("/_sim/groups/{gid}", get(group))
        .route("/_sim/groups/{gid}/receivers", get(receivers))
        .route("/_sim/unsubscribe", post(unsubscribe))
        .route("/_sim/bounce", post(bounce))
        .route("/_sim/blacklist", post(blacklist))
        .route("/_sim/signup", post(signup))
        .route("/_sim/stranger", post(stranger))
        .route("/_sim/delete", post(delete_receiver))
        .route("/_sim/clock", post(clock))
        .route("/_sim/pessimistic", get(pessimistic).put(set_pessimistic))
        .route("/_sim/hooks", get(hooks))
        .route("/_sim/hooks/delivery", put(set_hook_delivery))
        .route("/_sim/corrupt", post(corrupt))
        .route("/_sim/tokens/expire", post(expire_tokens))
        .route("/_sim/tokens/revoke", post(revoke_tokens))
        .with_state(shared)
}

type Result<T> = std::result::Result<T, ApiError>;

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

async fn state(State(s): State<Shared>) -> Json<Value> {
    Json(s.lock().state_json())
}

async fn stats(State(s): State<Shared>) -> Json<CallStats> {
    Json(s.lock().stats.clone())
}

async fn reset_stats(State(s): State<Shared>) -> Json<Value> {
    s.lock().stats = CallStats::default();
    Json(json!(true))
}

async fn reactivations(State(s): State<Shared>) -> Json<Value> {
    Json(json!(s.lock().reactivations))
}

async fn groups(State(s): State<Shared>) -> Json<Value> {
    let st = s.lock();
    Json(json!(
        st.groups
            .values()
            .map(|g| st.sim_group(g))
            .collect::<Vec<_>>()
    ))
}

async fn group(State(s): State<Shared>, Path(gid): Path<String>) -> Result<Json<Value>> {
    let st = s.lock();
    let g = st.group(&gid)?;
    Ok(Json(json!(st.sim_group(g))))
}

/// `?offset=&limit=` (both optional): a slice of the group's receivers in pool order, so that a
/// benchmark can check a group of a million page by page.
#[derive(Deserialize)]
struct Slice {
    #[serde(default)]
    offset: usize,
    #[serde(default)]
    limit: Option<usize>,
}

async fn receivers(
    State(s): State<Shared>,
    Path(gid): Path<String>,
    Query(slice): Query<Slice>,
) -> Result<Json<Value>> {
    let st = s.lock();
    let g = st.group(&gid)?;
    let limit = slice.limit.unwrap_or(usize::MAX);
    Ok(Json(json!(st.sim_receivers(g, slice.offset, limit))))
}

#[derive(Deserialize)]
struct GroupEmail {
    group_id: Value,
    email: String,
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

async fn unsubscribe(State(s): State<Shared>, body: Bytes) -> Result<Json<Value>> {
    let req: GroupEmail = parse(&body)?;
    s.lock()
        .deactivate(&id_text(&req.group_id), &req.email, true)?;
    Ok(Json(json!(true)))
}

#[derive(Deserialize)]
struct EmailOnly {
    email: String,
}

async fn bounce(State(s): State<Shared>, body: Bytes) -> Result<Json<Value>> {
    let req: EmailOnly = parse(&body)?;
    s.lock().bounce(&req.email)?;
    Ok(Json(json!(true)))
}

async fn blacklist(State(s): State<Shared>, body: Bytes) -> Result<Json<Value>> {
    let req: EmailOnly = parse(&body)?;
    s.lock()
        .add_to_blacklist(&req.email, "added in CleverReach")?;
    Ok(Json(json!(true)))
}

#[derive(Deserialize)]
struct NewReceiver {
    group_id: Value,
    email: String,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    global_attributes: Map<String, Value>,
}

fn yes() -> bool {
    true
}

fn add(
    s: &Shared,
    req: NewReceiver,
    active: bool,
    source: &str,
    origin: Origin,
) -> Result<Response> {
    let mut st = s.lock();
    let gid = st.group(&id_text(&req.group_id))?.id;
    let now = st.now();
    let row = json!({
        "email": req.email,
        "registered": now,
        "activated": if active { now } else { 0 },
        "source": source,
        "global_attributes": req.global_attributes,
    });
    match st.write_row(gid, &row, WriteMode::Insert, origin) {
        RowOutcome::Inserted(id) | RowOutcome::Updated(id) => {
            Ok(Json(st.receiver_json(gid, id, None)).into_response())
        }
        RowOutcome::Rejected(message) => Err(ApiError::bad_request(message)),
    }
}

async fn signup(State(s): State<Shared>, body: Bytes) -> Result<Response> {
    let req: NewReceiver = parse(&body)?;
    add(&s, req, true, "Anmeldeformular", Origin::Signup)
}

async fn stranger(State(s): State<Shared>, body: Bytes) -> Result<Response> {
    let req: NewReceiver = parse(&body)?;
    let active = req.active;
    add(&s, req, active, "Import", Origin::Import)
}

/// `{"group_id", "email"}`: a CleverReach user deletes the receiver from the group.
async fn delete_receiver(State(s): State<Shared>, body: Bytes) -> Result<Json<Value>> {
    let req: GroupEmail = parse(&body)?;
    s.lock()
        .remove_member(&id_text(&req.group_id), &req.email, Origin::Import)?;
    Ok(Json(json!(true)))
}

#[derive(Deserialize)]
struct Clock {
    advance_secs: i64,
}

/// `{"advance_secs": n}`: the simulated clock moves forward; answers the new time.
async fn clock(State(s): State<Shared>, body: Bytes) -> Result<Json<Value>> {
    let req: Clock = parse(&body)?;
    if req.advance_secs < 0 {
        return Err(ApiError::bad_request("advance_secs must not be negative"));
    }
    let mut st = s.lock();
    st.advance_clock(req.advance_secs);
    Ok(Json(json!({ "now": st.now() })))
}

#[derive(Deserialize)]
struct Switch {
    enabled: bool,
}

async fn pessimistic(State(s): State<Shared>) -> Json<Value> {
    let st = s.lock();
    Json(json!({
        "enabled": st.pessimistic,
        "reactivation_count": st.reactivations.len(),
        "reactivation_attempts": st.reactivation_attempts,
    }))
}

/// `{"enabled": true|false}`: switches pessimistic mode.
async fn set_pessimistic(State(s): State<Shared>, body: Bytes) -> Result<Json<Value>> {
    let req: Switch = parse(&body)?;
    s.lock().pessimistic = req.enabled;
    Ok(Json(json!({ "enabled": req.enabled })))
}

async fn hooks(State(s): State<Shared>) -> Json<Value> {
    Json(s.lock().hooks.state_json())
}

/// `{"drop_rate", "delay_rate", "delay_ms", "seed", "api_events"}` (all optional).
async fn set_hook_delivery(State(s): State<Shared>, body: Bytes) -> Result<Json<Value>> {
    let config: HookDeliveryConfig = parse(&body)?;
    let mut st = s.lock();
    st.hooks.set_config(config)?;
    Ok(Json(json!(st.hooks.config)))
}

#[derive(Deserialize)]
struct Corruption {
    group_id: Value,
    email: String,
    damage: Value,
}

/// `{"group_id", "email", "damage"}`: see [`super::CleverReachSim::corrupt_receiver`].
async fn corrupt(State(s): State<Shared>, body: Bytes) -> Result<Json<Value>> {
    let req: Corruption = parse(&body)?;
    let mut st = s.lock();
    let (gid, pid) = st.member(&id_text(&req.group_id), &req.email)?;
    st.corruptions.insert((gid, pid), req.damage);
    Ok(Json(json!(true)))
}

async fn expire_tokens(State(s): State<Shared>) -> Json<Value> {
    s.lock().expire_access_tokens();
    Json(json!(true))
}

async fn revoke_tokens(State(s): State<Shared>) -> Json<Value> {
    s.lock().revoke_refresh_tokens();
    Json(json!(true))
}
