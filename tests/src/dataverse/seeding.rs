//! Bulk seeding for benchmarks: many contacts and the static members of a list, written
//! straight into the store (no webhooks, one store lock per call), so that a list of 1,000,000
//! is ready in seconds instead of the hours `$batch` creates and `AddListMembersList` calls
//! take. Contacts are created exactly as [`DataverseSim::seed`] creates rows (the Web API's
//! columns, defaults and validation); members as `AddListMembersList` adds them.
//!
//! Bulk contact `i` has fixed data, so that a benchmark can name and check it without reading
//! it back: id [`contact_id`], address [`contact_email`], first name [`first_name`], last name
//! [`LAST_NAME`].
//!
//! Controls: `POST /_sim/bulk/contacts {"start", "count", "checklist"}` answers
//! `{"created": n}`; `POST /_sim/bulk/listmembers {"listid", "start", "end"}` adds contacts
//! `start..end` to a static contact list and answers `{"added": n}`.

use super::{DataverseSim, SeedError, Shared, store, write};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use axum::{Router, body::Bytes};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::ops::Range;
use std::sync::Arc;
use uuid::Uuid;

/// Bulk contact `i`'s id.
pub fn contact_id(i: usize) -> String {
    format!("be9c0000-0000-4000-8000-{i:012x}")
}

/// Bulk contact `i`'s e-mail address.
pub fn contact_email(i: usize) -> String {
    format!("bench-{i:06}@example.com")
}

/// Bulk contact `i`'s first name.
pub fn first_name(i: usize) -> String {
    format!("Bench{i}")
}

/// Every bulk contact's last name.
pub const LAST_NAME: &str = "Contact";

impl DataverseSim {
    /// Creates bulk contacts `range` (see the module), each with `checklist` as its
    /// `crc_checklist` (the installed schema's column) when given. Returns how many were
    /// created; refuses (after creating the ones before) a contact that exists already.
    pub fn bulk_contacts(
        &self,
        range: Range<usize>,
        checklist: Option<&str>,
    ) -> Result<usize, SeedError> {
        bulk_contacts(&self.shared, range, checklist)
    }

    /// Adds bulk contacts `range` to the static contact list `list_id` as
    /// `AddListMembersList` would (members already in it are skipped), without a webhook.
    /// Returns how many were added.
    pub fn bulk_list_members(&self, list_id: &str, range: Range<usize>) -> Result<usize, String> {
        bulk_list_members(&self.shared, list_id, range)
    }
}

fn admin_ctx(sim: &Shared) -> super::api::Ctx {
    let admin = sim
        .config
        .clients
        .iter()
        .rev()
        .find_map(|c| store::parse_guid(&c.user_id))
        .unwrap_or_default();
    sim.ctx(admin)
}

fn bulk_contacts(
    sim: &Shared,
    range: Range<usize>,
    checklist: Option<&str>,
) -> Result<usize, SeedError> {
    let ctx = admin_ctx(sim);
    let mut store = sim.lock_store();
    let table = store
        .catalog()
        .by_set("contacts")
        .ok_or_else(|| SeedError::UnknownSet("contacts".to_string()))?;
    let mut row = Map::new();
    row.insert("lastname".into(), Value::String(LAST_NAME.to_string()));
    if let Some(checklist) = checklist {
        row.insert("crc_checklist".into(), Value::String(checklist.to_string()));
    }
    let mut created = 0;
    for i in range {
        row.insert("contactid".into(), Value::String(contact_id(i)));
        row.insert("firstname".into(), Value::String(first_name(i)));
        row.insert("emailaddress1".into(), Value::String(contact_email(i)));
        write::seed(&mut store, &ctx, table, &row).map_err(|e| SeedError::Refused {
            set: "contacts".to_string(),
            index: i,
            message: e.message,
        })?;
        created += 1;
    }
    Ok(created)
}

fn bulk_list_members(sim: &Shared, list_id: &str, range: Range<usize>) -> Result<usize, String> {
    let list = store::parse_guid(list_id).ok_or(format!("{list_id:?} is not a list id"))?;
    let mut ids = Vec::with_capacity(range.len());
    for i in range {
        ids.push(Uuid::parse_str(&contact_id(i)).map_err(|e| e.to_string())?);
    }
    let ctx = admin_ctx(sim);
    let mut store = sim.lock_store();
    write::bulk_add_listmembers(&mut store, &ctx, list, ids.into_iter()).map_err(|e| e.message)
}

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/bulk/contacts", post(control_contacts))
        .route("/_sim/bulk/listmembers", post(control_listmembers))
        .with_state(shared)
}

#[derive(Deserialize)]
struct ContactsRequest {
    #[serde(default)]
    start: usize,
    count: usize,
    #[serde(default)]
    checklist: Option<String>,
}

#[derive(Deserialize)]
struct MembersRequest {
    listid: String,
    start: usize,
    end: usize,
}

fn refused(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

async fn control_contacts(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: ContactsRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => return refused(format!("invalid JSON: {e}")),
    };
    let Some(end) = req.start.checked_add(req.count) else {
        return refused("start + count is too large".to_string());
    };
    // A million rows take a while: off the async workers.
    let answer = tokio::task::spawn_blocking(move || {
        bulk_contacts(&sim, req.start..end, req.checklist.as_deref())
    })
    .await;
    match answer {
        Ok(Ok(created)) => Json(json!({ "created": created })).into_response(),
        Ok(Err(e)) => refused(e.to_string()),
        Err(e) => refused(e.to_string()),
    }
}

async fn control_listmembers(State(sim): State<Arc<Shared>>, body: Bytes) -> Response {
    let req: MembersRequest = match serde_json::from_slice(&body) {
        Ok(req) => req,
        Err(e) => return refused(format!("invalid JSON: {e}")),
    };
    if req.end < req.start {
        return refused("end is before start".to_string());
    }
    let answer = tokio::task::spawn_blocking(move || {
        bulk_list_members(&sim, &req.listid, req.start..req.end)
    })
    .await;
    match answer {
        Ok(Ok(added)) => Json(json!({ "added": added })).into_response(),
        Ok(Err(e)) => refused(e),
        Err(e) => refused(e.to_string()),
    }
}
