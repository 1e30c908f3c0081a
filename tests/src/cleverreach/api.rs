//! CleverReach simulator: the REST v3 endpoints (debug and token revocation, groups,
//! receivers, global and group attributes, bounces and blacklist, errors and limits).

use super::state::{
    ApiError, Origin, RowOutcome, SimState, WriteMode, email_key, parse_id, truthy,
};
use super::{Endpoint, Shared};
use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{MethodRouter, delete, get, post, put},
};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::MutexGuard;

pub(crate) type ApiResult = Result<Response, ApiError>;
type Params = Query<HashMap<String, String>>;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (
            status,
            Json(json!({ "error": { "code": self.status, "message": self.message } })),
        )
            .into_response()
    }
}

/// The largest bounce page CleverReach serves.
const MAX_BOUNCE_PAGE: usize = 500;
const DEFAULT_PAGE_SIZE: usize = 100;

pub(crate) fn router(shared: Shared) -> Router {
    let routes: Vec<(&str, MethodRouter<Shared>)> = vec![
        ("/v3/debug/whoami.json", get(whoami)),
        ("/v3/debug/ttl.json", get(ttl)),
        ("/v3/debug/validate.json", get(validate)),
        ("/v3/debug/ping.json", get(ping)),
        ("/v3/oauth/token.json", delete(revoke_token)),
        ("/v3/groups.json", get(groups_list).post(group_create)),
        (
            "/v3/groups.json/{gid}",
            get(group_get).put(group_update).delete(group_delete),
        ),
        ("/v3/groups.json/{gid}/stats", get(group_stats)),
        (
            "/v3/attributes.json",
            get(attributes_list).post(attribute_create),
        ),
        ("/v3/attributes.json/{id}", delete(attribute_delete)),
        (
            "/v3/groups.json/{gid}/attributes",
            get(group_attributes_list).post(group_attribute_create),
        ),
        (
            "/v3/groups.json/{gid}/attributes/{id}",
            delete(group_attribute_delete),
        ),
        (
            "/v3/groups.json/{gid}/receivers",
            get(receivers_list).post(receiver_add),
        ),
        ("/v3/groups.json/{gid}/receivers/upsert", post(upsert)),
        (
            "/v3/groups.json/{gid}/receivers/upsertplus",
            post(upsertplus),
        ),
        ("/v3/groups.json/{gid}/receivers/insert", post(insert)),
        ("/v3/groups.json/{gid}/receivers/delete", post(delete_batch)),
        (
            "/v3/groups.json/{gid}/receivers/{receiver}",
            get(receiver_get)
                .put(receiver_update)
                .delete(receiver_delete),
        ),
        (
            "/v3/groups.json/{gid}/receivers/{receiver}/activate",
            put(receiver_activate),
        ),
        (
            "/v3/groups.json/{gid}/receivers/{receiver}/deactivate",
            put(receiver_deactivate),
        ),
        ("/v3/receivers.json/{receiver}", get(receiver_pool_get)),
        ("/v3/receivers.json/{receiver}/email", put(email_change)),
        ("/v3/receivers.json/filter.json", post(filter)),
        ("/v3/bounces.json", get(bounces)),
        (
            "/v3/blacklist.json",
            get(blacklist_list).post(blacklist_add),
        ),
        (
            "/v3/blacklist.json/{email}",
            get(blacklist_get).delete(blacklist_delete),
        ),
    ];
    let mut router = Router::new();
    for (path, method_router) in routes {
        for variant in json_variants(path) {
            router = router.route(&variant, method_router.clone());
        }
    }
    router.fallback(unknown_endpoint).with_state(shared)
}

/// Every spelling of a path with and without the `.json` suffixes clients use.
fn json_variants(path: &str) -> Vec<String> {
    let mut variants = vec![String::new()];
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        let options: Vec<&str> = match segment.strip_suffix(".json") {
            Some(bare) => vec![segment, bare],
            None => vec![segment],
        };
        variants = variants
            .iter()
            .flat_map(|prefix| options.iter().map(move |o| format!("{prefix}/{o}")))
            .collect();
    }
    variants
}

async fn unknown_endpoint() -> ApiError {
    ApiError::new(404, "Not Found: unknown endpoint")
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// Counts the call, checks the bearer token and hands out the locked state.
pub(crate) fn authed<'a>(
    shared: &'a Shared,
    endpoint: Endpoint,
    headers: &HeaderMap,
) -> Result<MutexGuard<'a, SimState>, ApiError> {
    let mut st = shared.lock();
    st.count(endpoint);
    let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
    st.check_access_token(token)?;
    Ok(st)
}

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

pub(crate) fn object_body(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match json_body(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request("expected a JSON object")),
    }
}

/// A batch body: an array, or one object as a batch of one.
fn array_body(body: &[u8]) -> Result<Vec<Value>, ApiError> {
    match json_body(body)? {
        Value::Array(rows) => Ok(rows),
        obj @ Value::Object(_) => Ok(vec![obj]),
        _ => Err(ApiError::bad_request("expected a JSON array")),
    }
}

fn number_param(
    params: &HashMap<String, String>,
    name: &str,
    default: usize,
) -> Result<usize, ApiError> {
    match params.get(name).map(|v| v.trim()) {
        None | Some("") => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("{name} must be a non-negative number"))),
    }
}

fn value_as_usize(value: Option<&Value>, name: &str, default: usize) -> Result<usize, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| n as usize)
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be a non-negative number"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| ApiError::bad_request(format!("{name} must be a non-negative number"))),
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a number"))),
    }
}

fn ok(value: Value) -> ApiResult {
    Ok(Json(value).into_response())
}

// ---- debug ------------------------------------------------------------------------------

async fn whoami(State(s): State<Shared>, headers: HeaderMap) -> ApiResult {
    let st = authed(&s, Endpoint::Whoami, &headers)?;
    ok(json!({
        "id": "100001",
        "name": st.cfg.account_name,
        "firstname": "Sandbox",
        "salutation": "",
        "street": "Sandstraße 1",
        "company": st.cfg.account_name,
        "zip": "26122",
        "city": "Oldenburg",
        "phone": "",
        "fax": "",
        "email": "owner@sandbox.example",
        "country": "Germany",
        "login_domain": "100001.sandbox.cleverreach.local",
    }))
}

async fn ttl(State(s): State<Shared>, headers: HeaderMap) -> ApiResult {
    let st = authed(&s, Endpoint::Ttl, &headers)?;
    let remaining = bearer(&headers).map(|t| st.access_ttl(t)).unwrap_or(0);
    ok(json!({ "ttl": remaining }))
}

async fn validate(State(s): State<Shared>, headers: HeaderMap) -> ApiResult {
    let _st = authed(&s, Endpoint::Validate, &headers)?;
    ok(json!(true))
}

async fn ping(State(s): State<Shared>) -> ApiResult {
    s.lock().count(Endpoint::Ping);
    ok(json!(true))
}

/// `DELETE /v3/oauth/token.json`: the bearer token (and its refresh token) stop working.
async fn revoke_token(State(s): State<Shared>, headers: HeaderMap) -> ApiResult {
    let mut st = authed(&s, Endpoint::TokenRevoke, &headers)?;
    let token = bearer(&headers).ok_or_else(ApiError::unauthorized)?;
    if !st.revoke_access_token(token) {
        return Err(ApiError::unauthorized());
    }
    ok(json!(true))
}

// ---- groups -----------------------------------------------------------------------------

/// `GET /groups[?order=<changed|created> [ASC|DESC]]`, as the official SDK sends it.
async fn groups_list(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> ApiResult {
    let st = authed(&s, Endpoint::GroupsList, &headers)?;
    let mut groups: Vec<_> = st.groups.values().collect();
    if let Some(order) = params
        .get("order")
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
    {
        let mut parts = order.split_whitespace();
        let field = parts.next().unwrap_or_default().to_lowercase();
        let descending = match parts.next().map(str::to_lowercase).as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "order direction must be ASC or DESC, not '{other}'"
                )));
            }
        };
        if parts.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "order must be '<field> [ASC|DESC]', not '{order}'"
            )));
        }
        // Ties go by id in the same direction: ids grow with creation.
        match field.as_str() {
            "created" => groups.sort_by_key(|g| (g.stamp, g.id)),
            "changed" => groups.sort_by_key(|g| (g.last_changed, g.id)),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown order field '{other}' (changed or created)"
                )));
            }
        }
        if descending {
            groups.reverse();
        }
    }
    ok(Value::Array(
        groups.into_iter().map(|g| st.group_json(g)).collect(),
    ))
}

async fn group_get(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
) -> ApiResult {
    let st = authed(&s, Endpoint::GroupGet, &headers)?;
    let group = st.group(&gid)?;
    ok(st.group_json(group))
}

async fn group_create(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let mut st = authed(&s, Endpoint::GroupCreate, &headers)?;
    let body = object_body(&body)?;
    let text = |k: &str| match body.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let id = st.create_group(
        &text("name"),
        body.get("locked").is_some_and(truthy),
        body.get("backup").is_some_and(truthy),
        &text("receiver_info"),
    )?;
    let group = st.group(&id.to_string())?;
    ok(st.group_json(group))
}

async fn group_update(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::GroupUpdate, &headers)?;
    let body = object_body(&body)?;
    let id = st.update_group(&gid, &body)?;
    let group = st.group(&id.to_string())?;
    ok(st.group_json(group))
}

async fn group_delete(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::GroupDelete, &headers)?;
    st.delete_group(&gid)?;
    ok(json!(true))
}

async fn group_stats(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
) -> ApiResult {
    let st = authed(&s, Endpoint::GroupStats, &headers)?;
    let group = st.group(&gid)?;
    ok(st.group_stats_json(group))
}

// ---- attributes -------------------------------------------------------------------------

fn attribute_list(st: &SimState, group_id: u64) -> ApiResult {
    ok(Value::Array(
        st.attributes_of(group_id)
            .map(|a| st.attribute_json(a))
            .collect(),
    ))
}

/// A group id from a path, query or body: `0` (or none) means the account's global list.
fn group_scope(st: &SimState, raw: Option<&Value>) -> Result<u64, ApiError> {
    let raw = match raw {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "group_id must be a group id, not {other}"
            )));
        }
    };
    if raw.is_empty() || raw == "0" {
        return Ok(0);
    }
    let id = parse_id(&raw).ok_or_else(|| {
        ApiError::bad_request(format!("group_id must be a group id, not '{raw}'"))
    })?;
    Ok(st.group(&id.to_string())?.id)
}

/// `GET /attributes[?group_id=]`: the global attributes, or one group's own.
async fn attributes_list(
    State(s): State<Shared>,
    headers: HeaderMap,
    Query(params): Params,
) -> ApiResult {
    let st = authed(&s, Endpoint::AttributesList, &headers)?;
    let scope = params.get("group_id").map(|g| Value::String(g.clone()));
    let gid = group_scope(&st, scope.as_ref())?;
    attribute_list(&st, gid)
}

fn create_attribute(st: &mut SimState, body: &Map<String, Value>, gid: u64) -> ApiResult {
    let id = st.create_attribute(body, gid)?;
    match st.attributes.get(&id) {
        Some(attr) => ok(st.attribute_json(attr)),
        None => Err(ApiError::new(500, "Internal Server Error")),
    }
}

/// `POST /attributes`: a global attribute, or a group's own when the body has `group_id`.
async fn attribute_create(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let mut st = authed(&s, Endpoint::AttributeCreate, &headers)?;
    let body = object_body(&body)?;
    let gid = group_scope(&st, body.get("group_id"))?;
    create_attribute(&mut st, &body, gid)
}

async fn attribute_delete(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::AttributeDelete, &headers)?;
    st.delete_attribute(&id, None)?;
    ok(json!(true))
}

async fn group_attributes_list(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
) -> ApiResult {
    let st = authed(&s, Endpoint::GroupAttributesList, &headers)?;
    let gid = st.group(&gid)?.id;
    attribute_list(&st, gid)
}

async fn group_attribute_create(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::GroupAttributeCreate, &headers)?;
    let gid = st.group(&gid)?.id;
    let body = object_body(&body)?;
    create_attribute(&mut st, &body, gid)
}

async fn group_attribute_delete(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((gid, id)): Path<(String, String)>,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::GroupAttributeDelete, &headers)?;
    let gid = st.group(&gid)?.id;
    st.delete_attribute(&id, Some(gid))?;
    ok(json!(true))
}

// ---- receiver batches -------------------------------------------------------------------

/// Checks the group and the batch size, and counts the rows.
fn batch_start(st: &mut SimState, gid: &str, rows: usize) -> Result<u64, ApiError> {
    let id = st.group(gid)?.id;
    st.stats.upsert_rows += rows as u64;
    st.stats.largest_upsert_batch = st.stats.largest_upsert_batch.max(rows);
    if rows > st.cfg.max_upsert_batch {
        return Err(ApiError::new(
            413,
            format!(
                "Request Entity Too Large: batch size too big (max {})",
                st.cfg.max_upsert_batch
            ),
        ));
    }
    Ok(id)
}

fn status_row(status: &str, id: u64) -> Value {
    json!({ "status": status, "id": id.to_string() })
}

async fn write_batch(
    s: Shared,
    headers: HeaderMap,
    gid: String,
    body: Bytes,
    endpoint: Endpoint,
) -> ApiResult {
    let mut st = authed(&s, endpoint, &headers)?;
    let rows = array_body(&body)?;
    let group_id = batch_start(&mut st, &gid, rows.len())?;
    let mode = if endpoint == Endpoint::ReceiversInsert {
        WriteMode::Insert
    } else {
        WriteMode::Upsert
    };
    // The same address twice in one batch: the second row is refused, as CleverReach does.
    let mut seen = std::collections::HashSet::new();
    let results: Vec<Value> = rows
        .iter()
        .map(|row| {
            let email = row.get("email").and_then(Value::as_str).unwrap_or_default();
            if !email.trim().is_empty() && !seen.insert(email_key(email)) {
                return Value::String(format!("duplicate address '{}'", email.trim()));
            }
            row_result(&mut st, group_id, row, mode, endpoint)
        })
        .collect();
    ok(Value::Array(results))
}

fn row_result(
    st: &mut SimState,
    group_id: u64,
    row: &Value,
    mode: WriteMode,
    endpoint: Endpoint,
) -> Value {
    match st.write_row(group_id, row, mode, Origin::Api) {
        RowOutcome::Rejected(message) => Value::String(message),
        RowOutcome::Inserted(id) | RowOutcome::Updated(id)
            if endpoint == Endpoint::ReceiversUpsertPlus =>
        {
            st.receiver_json(group_id, id, None)
        }
        RowOutcome::Inserted(id) => status_row("insert success", id),
        RowOutcome::Updated(id) => status_row("update success", id),
    }
}

async fn upsert(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
    body: Bytes,
) -> ApiResult {
    write_batch(s, headers, gid, body, Endpoint::ReceiversUpsert).await
}

async fn upsertplus(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
    body: Bytes,
) -> ApiResult {
    write_batch(s, headers, gid, body, Endpoint::ReceiversUpsertPlus).await
}

async fn insert(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
    body: Bytes,
) -> ApiResult {
    write_batch(s, headers, gid, body, Endpoint::ReceiversInsert).await
}

async fn delete_batch(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::ReceiversDeleteBatch, &headers)?;
    let rows = match json_body(&body)? {
        Value::Array(rows) => rows,
        _ => {
            return Err(ApiError::bad_request(
                "expected a JSON array of e-mails or ids",
            ));
        }
    };
    st.group(&gid)?;
    if rows.len() > st.cfg.max_upsert_batch {
        return Err(ApiError::new(
            413,
            format!(
                "Request Entity Too Large: batch size too big (max {})",
                st.cfg.max_upsert_batch
            ),
        ));
    }
    let results: Vec<Value> = rows
        .iter()
        .map(|row| {
            let key = match row {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match st.remove_member(&gid, &key, Origin::Api) {
                Ok(()) => json!({ "status": "success" }),
                Err(_) => Value::String(format!("invalid receiver '{key}'")),
            }
        })
        .collect();
    ok(Value::Array(results))
}

// ---- single receivers -------------------------------------------------------------------

async fn receiver_get(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((gid, receiver)): Path<(String, String)>,
) -> ApiResult {
    let st = authed(&s, Endpoint::ReceiverGet, &headers)?;
    let (gid, pid) = st.member(&gid, &receiver)?;
    ok(st.receiver_json(gid, pid, None))
}

async fn receiver_delete(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((gid, receiver)): Path<(String, String)>,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::ReceiverDelete, &headers)?;
    st.remove_member(&gid, &receiver, Origin::Api)?;
    ok(json!(true))
}

/// `POST /groups/{gid}/receivers`: one new receiver; an address already in the group is a
/// conflict (batches have `/upsert` for that).
async fn receiver_add(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::ReceiverAdd, &headers)?;
    let group_id = st.group(&gid)?.id;
    let row = match json_body(&body)? {
        row @ Value::Object(_) => row,
        Value::Array(_) => {
            return Err(ApiError::bad_request(
                "expected one receiver object; send several to /receivers/upsert or /receivers/insert",
            ));
        }
        _ => return Err(ApiError::bad_request("expected a receiver object")),
    };
    let email = row.get("email").map(text_of).unwrap_or_default();
    if st.member(&gid, email.trim()).is_ok() {
        return Err(ApiError::new(
            409,
            format!("Conflict: duplicate address '{}'", email.trim()),
        ));
    }
    match st.write_row(group_id, &row, WriteMode::Insert, Origin::Api) {
        RowOutcome::Inserted(id) | RowOutcome::Updated(id) => {
            ok(st.receiver_json(group_id, id, None))
        }
        RowOutcome::Rejected(message) => Err(ApiError::bad_request(message)),
    }
}

/// `PUT /groups/{gid}/receivers/{receiver}`: changes one receiver of the group (by id or
/// address). Its address changes only through `PUT /receivers/{receiver}/email`.
async fn receiver_update(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((gid, receiver)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::ReceiverUpdate, &headers)?;
    let (group_id, pool_id) = st.member(&gid, &receiver)?;
    let mut body = object_body(&body)?;
    let stored = st
        .pool
        .get(&pool_id)
        .map(|p| p.email.clone())
        .ok_or_else(ApiError::invalid_receiver)?;
    if let Some(email) = body.get("email").map(text_of)
        && email_key(&email) != email_key(&stored)
    {
        return Err(ApiError::bad_request(format!(
            "email cannot be changed here ('{}' → '{}'); use PUT /receivers/{{receiver}}/email",
            stored,
            email.trim()
        )));
    }
    body.insert("email".into(), Value::String(stored));
    match st.write_row(
        group_id,
        &Value::Object(body),
        WriteMode::Upsert,
        Origin::Api,
    ) {
        RowOutcome::Inserted(id) | RowOutcome::Updated(id) => {
            ok(st.receiver_json(group_id, id, None))
        }
        RowOutcome::Rejected(message) => Err(ApiError::bad_request(message)),
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn receiver_activate(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((gid, receiver)): Path<(String, String)>,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::ReceiverActivate, &headers)?;
    st.activate(&gid, &receiver, "activate")?;
    ok(json!(true))
}

async fn receiver_deactivate(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path((gid, receiver)): Path<(String, String)>,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::ReceiverDeactivate, &headers)?;
    st.deactivate(&gid, &receiver, false)?;
    ok(json!(true))
}

/// `GET /receivers/{receiver}[?group_id=]`: the receiver in the given group, or in the first
/// group it belongs to.
async fn receiver_pool_get(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(receiver): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let st = authed(&s, Endpoint::ReceiverPoolGet, &headers)?;
    if let Some(gid) = params.get("group_id").filter(|g| g.trim() != "0") {
        let (gid, pid) = st.member(gid, &receiver)?;
        return ok(st.receiver_json(gid, pid, None));
    }
    let pid = st
        .pool_id(&receiver)
        .ok_or_else(ApiError::invalid_receiver)?;
    match st.groups.values().find(|g| g.members.contains_key(&pid)) {
        Some(group) => ok(st.receiver_json(group.id, pid, None)),
        None => Err(ApiError::invalid_receiver()),
    }
}

async fn email_change(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(receiver): Path<String>,
    body: Bytes,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::ReceiverEmailChange, &headers)?;
    let body = object_body(&body)?;
    let Some(Value::String(new_email)) = body.get("email") else {
        return Err(ApiError::bad_request("email is required"));
    };
    st.change_email(&receiver, new_email)?;
    ok(json!(true))
}

// ---- listing and filtering --------------------------------------------------------------

/// `order_by` / `orderby`: `"<field> [asc|desc]"`.
fn sort_members(
    st: &SimState,
    rows: &mut [(u64, u64)],
    order: Option<&str>,
) -> Result<(), ApiError> {
    let Some(order) = order.map(str::trim).filter(|o| !o.is_empty()) else {
        return Ok(());
    };
    let mut parts = order.split_whitespace();
    let field = parts.next().unwrap_or_default().to_lowercase();
    let descending = match parts.next().map(str::to_lowercase).as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown sort direction '{other}'"
            )));
        }
    };
    let key = |&(gid, pid): &(u64, u64)| -> Result<(i64, String), ApiError> {
        let m = st
            .groups
            .get(&gid)
            .and_then(|g| g.members.get(&pid))
            .ok_or_else(ApiError::invalid_receiver)?;
        let email = st
            .pool
            .get(&pid)
            .map(|p| email_key(&p.email))
            .unwrap_or_default();
        Ok(match field.as_str() {
            "id" => (pid as i64, String::new()),
            "email" => (0, email),
            "registered" => (m.registered, String::new()),
            "activated" => (m.activated, String::new()),
            "deactivated" => (m.deactivated, String::new()),
            "bounced" => (m.bounced, String::new()),
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown order field '{other}'"
                )));
            }
        })
    };
    let mut keyed = Vec::with_capacity(rows.len());
    for row in rows.iter() {
        keyed.push((key(row)?, *row));
    }
    // Stable: ties keep id order, so paging stays consistent.
    keyed.sort_by(|a, b| {
        if descending {
            b.0.cmp(&a.0)
        } else {
            a.0.cmp(&b.0)
        }
    });
    for (slot, (_, row)) in rows.iter_mut().zip(keyed) {
        *slot = row;
    }
    Ok(())
}

fn check_page_size(st: &SimState, pagesize: usize) -> Result<(), ApiError> {
    if pagesize == 0 || pagesize > st.cfg.max_page_size {
        return Err(ApiError::bad_request(format!(
            "pagesize must be between 1 and {}",
            st.cfg.max_page_size
        )));
    }
    Ok(())
}

/// `email_list` / `id_list` (comma-separated) of the receiver list: the pool ids asked for,
/// or `None` for the whole group. Unknown addresses and ids simply select nothing.
fn receiver_selection(
    st: &SimState,
    params: &HashMap<String, String>,
) -> Result<Option<std::collections::HashSet<u64>>, ApiError> {
    let entries = |name: &str| -> Result<Option<Vec<String>>, ApiError> {
        let Some(raw) = params.get(name) else {
            return Ok(None);
        };
        let entries: Vec<String> = raw.split(',').map(|e| e.trim().to_string()).collect();
        // An empty list must not mean "everyone": a client that builds it from nothing and
        // then acts on the answer would act on the whole group.
        if entries.iter().any(String::is_empty) {
            return Err(ApiError::bad_request(format!(
                "{name} has an empty entry ('{raw}')"
            )));
        }
        Ok(Some(entries))
    };
    match (entries("email_list")?, entries("id_list")?) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "email_list and id_list cannot be combined",
        )),
        (Some(emails), None) => Ok(Some(
            emails.iter().filter_map(|e| st.by_email_id(e)).collect(),
        )),
        (None, Some(ids)) => {
            let mut out = std::collections::HashSet::new();
            for id in &ids {
                out.insert(parse_id(id).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "id_list must be comma-separated receiver ids, not '{id}'"
                    ))
                })?);
            }
            Ok(Some(out))
        }
        (None, None) => Ok(None),
    }
}

async fn receivers_list(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(gid): Path<String>,
    Query(params): Params,
) -> ApiResult {
    let st = authed(&s, Endpoint::ReceiversList, &headers)?;
    let page = number_param(&params, "page", 0)?;
    let pagesize = number_param(&params, "pagesize", DEFAULT_PAGE_SIZE)?;
    check_page_size(&st, pagesize)?;
    let detail = number_param(&params, "detail", 0)? as u64;
    let kind = params.get("type").map(|t| t.trim().to_lowercase());
    let group = st.group(&gid)?;
    let only = receiver_selection(&st, &params)?;
    if let Some(other) = kind
        .as_deref()
        .filter(|k| !["", "all", "active", "inactive", "bounce", "bounced"].contains(k))
    {
        return Err(ApiError::bad_request(format!(
            "type must be all, active, inactive or bounce, not '{other}'"
        )));
    }
    let selected = group
        .members
        .iter()
        .filter(|(pid, _)| only.as_ref().is_none_or(|ids| ids.contains(pid)))
        .filter(|(_, m)| match kind.as_deref() {
            None | Some("") | Some("all") => true,
            Some("active") => m.active(),
            Some("inactive") => !m.active(),
            Some("bounce") | Some("bounced") => m.bounced > 0,
            Some(_) => false,
        })
        .map(|(pid, _)| (group.id, *pid));
    let order = params
        .get("order_by")
        .map(|o| o.trim())
        .filter(|o| !o.is_empty());
    let skip = page.saturating_mul(pagesize);
    let unfiltered = only.is_none() && matches!(kind.as_deref(), None | Some("") | Some("all"));
    let out: Vec<Value> = if order.is_none() && unfiltered {
        // The whole listing in pool order: from the page starts known (a group of a million
        // is 200 pages; stepping over the rows before each would be 100 million steps).
        st.page_of(group, page, pagesize)
            .into_iter()
            .map(|pid| st.receiver_json(group.id, pid, Some(detail)))
            .collect()
    } else if order.is_none() {
        // In the stored order: the page is taken as the rows go by, not after copying every
        // row of the group for each page.
        selected
            .skip(skip)
            .take(pagesize)
            .map(|(g, p)| st.receiver_json(g, p, Some(detail)))
            .collect()
    } else {
        let mut rows: Vec<(u64, u64)> = selected.collect();
        sort_members(&st, &mut rows, order)?;
        rows.iter()
            .skip(skip)
            .take(pagesize)
            .map(|&(g, p)| st.receiver_json(g, p, Some(detail)))
            .collect()
    };
    ok(Value::Array(out))
}

/// The attribute id of a filter field written `a<id>.value` (CleverReach's attribute
/// reference).
fn attribute_ref(field: &str) -> Option<u64> {
    field
        .strip_prefix('a')?
        .strip_suffix(".value")?
        .parse()
        .ok()
}

/// One rule of the runtime filter.
struct Rule {
    field: String,
    logic: String,
    condition: String,
}

impl Rule {
    fn parse(value: &Value) -> Result<Rule, ApiError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ApiError::bad_request("each rule must be an object"))?;
        let get = |k: &str| match obj.get(k) {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let rule = Rule {
            field: get("field").to_lowercase(),
            logic: get("logic").to_lowercase(),
            condition: get("condition"),
        };
        match rule.field.as_str() {
            "email" => {
                if !["eq", "neq", "contains", "notcontains"].contains(&rule.logic.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "unknown logic '{}' for field email",
                        rule.logic
                    )));
                }
            }
            "activated" | "deactivated" | "registered" | "bounced" => {
                if !["bg", "sm", "eq", "neq", "notisnull", "isnull"].contains(&rule.logic.as_str())
                {
                    return Err(ApiError::bad_request(format!(
                        "unknown logic '{}' for field {}",
                        rule.logic, rule.field
                    )));
                }
                if matches!(rule.logic.as_str(), "bg" | "sm" | "eq" | "neq")
                    && rule.condition.parse::<i64>().is_err()
                {
                    return Err(ApiError::bad_request(format!(
                        "condition for {} must be a unix timestamp",
                        rule.field
                    )));
                }
            }
            "tags" => {
                if !["contains", "eq", "notcontains"].contains(&rule.logic.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "unknown logic '{}' for field tags",
                        rule.logic
                    )));
                }
            }
            other if attribute_ref(other).is_some() => {
                if ![
                    "eq",
                    "neq",
                    "contains",
                    "notcontains",
                    "isnull",
                    "notisnull",
                ]
                .contains(&rule.logic.as_str())
                {
                    return Err(ApiError::bad_request(format!(
                        "unknown logic '{}' for field {other}",
                        rule.logic
                    )));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown filter field '{other}'"
                )));
            }
        }
        Ok(rule)
    }

    fn matches(&self, st: &SimState, gid: u64, pid: u64) -> bool {
        let Some(m) = st.groups.get(&gid).and_then(|g| g.members.get(&pid)) else {
            return false;
        };
        let email = st
            .pool
            .get(&pid)
            .map(|p| email_key(&p.email))
            .unwrap_or_default();
        let condition = self.condition.to_lowercase();
        match self.field.as_str() {
            "email" => match self.logic.as_str() {
                "eq" => email == email_key(&condition),
                "neq" => email != email_key(&condition),
                "contains" => email.contains(&condition),
                _ => !email.contains(&condition),
            },
            "tags" => {
                let has = m
                    .tags
                    .iter()
                    .any(|t| t.eq_ignore_ascii_case(&self.condition));
                if self.logic == "notcontains" {
                    !has
                } else {
                    has
                }
            }
            field if attribute_ref(field).is_some() => {
                // `a<id>.value`: a global attribute's value on the receiver, or a group
                // attribute's value in this group; an unknown attribute matches nothing.
                let Some(attribute) = attribute_ref(field).and_then(|id| st.attributes.get(&id))
                else {
                    return false;
                };
                let value = if attribute.group_id == 0 {
                    st.pool
                        .get(&pid)
                        .and_then(|p| p.global_attributes.get(&attribute.name))
                } else if attribute.group_id == gid {
                    m.attributes.get(&attribute.name)
                } else {
                    None
                };
                let value = value.map(|v| v.to_lowercase()).unwrap_or_default();
                match self.logic.as_str() {
                    "eq" => value == condition,
                    "neq" => value != condition,
                    "contains" => value.contains(&condition),
                    "notcontains" => !value.contains(&condition),
                    "isnull" => value.is_empty(),
                    _ => !value.is_empty(),
                }
            }
            field => {
                let stamp = match field {
                    "activated" => m.activated,
                    "deactivated" => m.deactivated,
                    "registered" => m.registered,
                    _ => m.bounced,
                };
                let cond = self.condition.parse::<i64>().unwrap_or(0);
                match self.logic.as_str() {
                    "bg" => stamp > cond,
                    "sm" => stamp > 0 && stamp < cond,
                    "eq" => stamp == cond,
                    "neq" => stamp != cond,
                    "notisnull" => stamp > 0,
                    _ => stamp == 0,
                }
            }
        }
    }
}

async fn filter(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let st = authed(&s, Endpoint::ReceiversFilter, &headers)?;
    let body = object_body(&body)?;
    let page = value_as_usize(body.get("page"), "page", 0)?;
    let pagesize = value_as_usize(body.get("pagesize"), "pagesize", DEFAULT_PAGE_SIZE)?;
    check_page_size(&st, pagesize)?;
    let detail = value_as_usize(body.get("detail"), "detail", 0)? as u64;
    let or = match body.get("operator").and_then(Value::as_str) {
        None => false,
        Some(op) if op.eq_ignore_ascii_case("and") => false,
        Some(op) if op.eq_ignore_ascii_case("or") => true,
        Some(op) => {
            return Err(ApiError::bad_request(format!(
                "operator must be AND or OR, not '{op}'"
            )));
        }
    };
    let rules = match body.get("rules") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(rules)) => rules.iter().map(Rule::parse).collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::bad_request("rules must be an array")),
    };
    let mut group_ids = Vec::new();
    match body.get("groups") {
        None | Some(Value::Null) => {}
        Some(Value::Array(groups)) => {
            for g in groups {
                let raw = match g {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let id = parse_id(&raw).ok_or_else(ApiError::invalid_group)?;
                if !st.groups.contains_key(&id) {
                    return Err(ApiError::invalid_group());
                }
                group_ids.push(id);
            }
        }
        Some(_) => return Err(ApiError::bad_request("groups must be an array")),
    }
    if group_ids.is_empty() {
        group_ids = st.groups.keys().copied().collect();
    }
    let active_only = body.get("activeonly").is_some_and(truthy);
    // Only "email eq" rules, any of which may match (a client reading up to a batch of
    // addresses again): the receivers they name, looked up once instead of every rule tested
    // against every member, which takes minutes for a group of a million.
    let named: Option<std::collections::HashSet<u64>> = (!rules.is_empty()
        && (or || rules.len() == 1)
        && rules.iter().all(|r| r.field == "email" && r.logic == "eq"))
    .then(|| {
        rules
            .iter()
            .filter_map(|r| st.by_email_id(&r.condition))
            .collect()
    });
    let mut rows: Vec<(u64, u64)> = Vec::new();
    for gid in group_ids {
        let Some(group) = st.groups.get(&gid) else {
            continue;
        };
        for (pid, m) in &group.members {
            if active_only && !m.active() {
                continue;
            }
            let hit = if let Some(named) = &named {
                named.contains(pid)
            } else if rules.is_empty() {
                true
            } else if or {
                rules.iter().any(|r| r.matches(&st, gid, *pid))
            } else {
                rules.iter().all(|r| r.matches(&st, gid, *pid))
            };
            if hit {
                rows.push((gid, *pid));
            }
        }
    }
    sort_members(&st, &mut rows, body.get("orderby").and_then(Value::as_str))?;
    let out: Vec<Value> = rows
        .iter()
        .skip(page.saturating_mul(pagesize))
        .take(pagesize)
        .map(|&(g, p)| st.receiver_json(g, p, Some(detail)))
        .collect();
    ok(Value::Array(out))
}

// ---- bounces and blacklist --------------------------------------------------------------

async fn bounces(State(s): State<Shared>, headers: HeaderMap, Query(params): Params) -> ApiResult {
    let st = authed(&s, Endpoint::Bounces, &headers)?;
    let page = number_param(&params, "page", 0)?;
    let pagesize = number_param(&params, "pagesize", MAX_BOUNCE_PAGE)?;
    if pagesize == 0 || pagesize > MAX_BOUNCE_PAGE {
        return Err(ApiError::bad_request(format!(
            "pagesize must be between 1 and {MAX_BOUNCE_PAGE}"
        )));
    }
    ok(Value::Array(
        st.bounces
            .iter()
            .skip(page.saturating_mul(pagesize))
            .take(pagesize)
            .map(SimState::bounce_json)
            .collect(),
    ))
}

async fn blacklist_list(State(s): State<Shared>, headers: HeaderMap) -> ApiResult {
    let st = authed(&s, Endpoint::BlacklistList, &headers)?;
    ok(Value::Array(
        st.blacklist.iter().map(SimState::blacklist_json).collect(),
    ))
}

async fn blacklist_get(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(email): Path<String>,
) -> ApiResult {
    let st = authed(&s, Endpoint::BlacklistGet, &headers)?;
    let key = email_key(&email);
    st.blacklist
        .iter()
        .find(|e| email_key(&e.email) == key)
        .map(|e| Json(SimState::blacklist_json(e)).into_response())
        .ok_or_else(|| ApiError::new(404, "Not Found: invalid email"))
}

async fn blacklist_add(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let mut st = authed(&s, Endpoint::BlacklistAdd, &headers)?;
    let body = object_body(&body)?;
    let email = body
        .get("email")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let comment = body
        .get("comment")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let pos = st.add_to_blacklist(email, comment)?;
    match st.blacklist.get(pos) {
        Some(entry) => ok(SimState::blacklist_json(entry)),
        None => Err(ApiError::new(500, "Internal Server Error")),
    }
}

async fn blacklist_delete(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(email): Path<String>,
) -> ApiResult {
    let mut st = authed(&s, Endpoint::BlacklistDelete, &headers)?;
    st.remove_from_blacklist(&email)?;
    ok(json!(true))
}

#[cfg(test)]
mod tests {
    use super::json_variants;

    #[test]
    fn every_json_suffix_is_optional() {
        let mut v = json_variants("/v3/receivers.json/filter.json");
        v.sort();
        assert_eq!(
            v,
            [
                "/v3/receivers.json/filter",
                "/v3/receivers.json/filter.json",
                "/v3/receivers/filter",
                "/v3/receivers/filter.json"
            ]
        );
        assert_eq!(json_variants("/v3/groups.json/{gid}").len(), 2);
    }
}
