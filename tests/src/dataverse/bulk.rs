//! Bulk operation messages: `CreateMultiple` and `UpdateMultiple` bound to an entity set, and
//! the unbound `BulkDelete` system job
//! (<https://learn.microsoft.com/power-apps/developer/data-platform/bulk-operations>,
//! <https://learn.microsoft.com/power-apps/developer/data-platform/delete-data-bulk>).
//!
//! - `CreateMultiple` / `UpdateMultiple`: every item of `Targets` names its table with
//!   `@odata.type`; on a standard table the operation is one transaction (any failure rolls
//!   back every item); the merged pipelines fire `Create` / `Update` for each item. The answer
//!   is 200 `CreateMultipleResponse` (`Ids`) and 204. Available where the table has a Create /
//!   Update message filter (the business tables and installed ones), as Dataverse offers them
//!   on "custom standard tables and many common standard tables, but not all".
//! - `UpsertMultiple` (rows by alternate key) and `DeleteMultiple` (elastic tables only) are left
//!   out: 501 `NotImplemented`, never 404 for an action Dataverse has.
//! - `BulkDelete`: answers 200 `BulkDeleteResponse` (`JobId`) at once; a system job
//!   (`asyncoperations`, operationtype 13) evaluates the `QuerySet` when it runs, shortly after
//!   the answer (not before `StartDateTime`), deletes each row with its cascades and `Delete`
//!   webhooks, and ends Succeeded (30), or Failed (31) when a row could not be deleted. The
//!   `QueryExpression` subset: `EntityName`, a `Criteria` of conditions (`Equal`, `NotEqual`,
//!   `GreaterThan`, `GreaterEqual`, `LessThan`, `LessEqual`, `In`, `NotIn`, `Null`, `NotNull`)
//!   and nested filters joined by `And` / `Or`; link entities, recurrence, e-mail notification
//!   and import sources answer 501.

use super::Shared;
use super::api::{self, ApiRequest, ApiResponse, Applied, Ctx};
use super::error::ApiError;
use super::query::{self, Field};
use super::schema::{self, Kind, Table};
use super::store::{self, Row, Store, Val};
use super::webhooks::Bypass;
use super::write;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const NS: &str = "Microsoft.Dynamics.CRM.";

/// `asyncoperation.operationtype` of a bulk delete job.
const BULK_DELETE_OPERATION: i64 = 13;

/// `POST <set>/Microsoft.Dynamics.CRM.<action>`.
pub fn set_action(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    action: &str,
) -> Result<Applied, ApiError> {
    let known = matches!(
        action,
        "CreateMultiple" | "UpdateMultiple" | "UpsertMultiple" | "DeleteMultiple"
    );
    if !known {
        return Err(ApiError::segment_not_found(&format!("{NS}{action}")));
    }
    if req.method != Method::POST {
        return Err(ApiError::method_not_allowed(req.method.as_str()));
    }
    match action {
        "CreateMultiple" => create_multiple(sim, store, ctx, req, table),
        "UpdateMultiple" => update_multiple(sim, store, ctx, req, table),
        "UpsertMultiple" => Err(ApiError::not_implemented(
            "UpsertMultiple is not simulated by the sandbox (it addresses rows by alternate key); use PATCH set(id) per row or UpdateMultiple.",
        )),
        // What Dataverse answers for DeleteMultiple on a standard table; the sandbox has no
        // elastic tables.
        _ => Err(ApiError::not_implemented(
            "DeleteMultiple has not yet been implemented. (DeleteMultiple is for elastic tables only; use BulkDelete or DELETE per row.)",
        )),
    }
}

/// The message filter that makes a bulk message available for a table.
fn available(store: &Store, table: &Table, message: &str, action: &str) -> Result<(), ApiError> {
    let filter = schema::filter_id(message, table.otc);
    if filter.is_some_and(|id| store.contains("sdkmessagefilter", &id)) {
        return Ok(());
    }
    Err(ApiError::bad_request(
        super::error::code::REFUSED,
        format!(
            "The {action} message is not available for the table '{}' in the sandbox (it is offered where the table has a {message} message filter: the business tables and installed ones).",
            table.logical
        ),
    ))
}

/// The `Targets` of a bulk message: objects of the set's table, each with `@odata.type`,
/// returned without the annotation.
fn targets(req: &ApiRequest, table: &Table) -> Result<Vec<Map<String, Value>>, ApiError> {
    let body = write::body_object(req)?;
    let items = body
        .get("Targets")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ApiError::payload("The action parameter 'Targets' is required (an array of records).")
        })?;
    if items.is_empty() {
        return Err(ApiError::payload(
            "'Targets' must hold at least one record.",
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let mut record = item.as_object().cloned().ok_or_else(|| {
            ApiError::payload(format!("Targets[{index}] is not a record (a JSON object)."))
        })?;
        let typ = record
            .remove("@odata.type")
            .and_then(|v| v.as_str().map(str::to_string))
            .ok_or_else(|| {
                ApiError::payload(format!(
                    "Targets[{index}] has no @odata.type; every item of Targets must name its type ('{NS}{}').",
                    table.logical
                ))
            })?;
        let logical = typ.trim_start_matches('#').trim_start_matches(NS);
        if logical != table.logical {
            return Err(ApiError::payload(format!(
                "Targets[{index}] is a '{logical}', but the action is bound to '{}'; all records must be of the same table.",
                table.set
            )));
        }
        out.push(record);
    }
    Ok(out)
}

/// A request for one item: the action's headers and query (`tag`, bypass headers) with the
/// item as body.
fn item_request(
    req: &ApiRequest,
    method: Method,
    path: String,
    record: &Map<String, Value>,
    if_match: Option<&str>,
) -> ApiRequest {
    let mut headers: HeaderMap = req.headers.clone();
    headers.remove("if-match");
    headers.remove("if-none-match");
    headers.remove("prefer");
    if let Some(m) = if_match.and_then(|m| axum::http::HeaderValue::from_str(m).ok()) {
        headers.insert("if-match", m);
    }
    let raw_query: Vec<String> = req
        .raw_query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    ApiRequest::new(
        method,
        &path,
        Some(&raw_query.join("&")),
        headers,
        Bytes::from(Value::Object(record.clone()).to_string()),
    )
}

fn create_multiple(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
) -> Result<Applied, ApiError> {
    write::writable(table, "CreateMultiple")?;
    available(store, table, "Create", "CreateMultiple")?;
    let records = targets(req, table)?;
    let mut undo = Vec::new();
    let mut events = Vec::new();
    let mut ids = Vec::new();
    for record in &records {
        let one = item_request(req, Method::POST, table.set.to_string(), record, None);
        match write::create(sim, store, ctx, &one, table) {
            Ok(applied) => {
                let id = applied
                    .response
                    .header("OData-EntityId")
                    .and_then(entity_id);
                undo.extend(applied.undo);
                events.extend(applied.events);
                ids.extend(id);
            }
            Err(e) => {
                store.rollback(undo);
                return Err(e);
            }
        }
    }
    let response = ApiResponse::json(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}$metadata#{NS}CreateMultipleResponse", ctx.root()),
            "Ids": ids.iter().map(Uuid::to_string).collect::<Vec<_>>(),
        }),
    );
    Ok(Applied {
        response,
        undo,
        events,
        bypass: req.bypass(),
    })
}

fn entity_id(url: &str) -> Option<Uuid> {
    let open = url.rfind('(')?;
    store::parse_guid(url.get(open + 1..)?.strip_suffix(')')?)
}

fn update_multiple(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
) -> Result<Applied, ApiError> {
    write::writable(table, "UpdateMultiple")?;
    available(store, table, "Update", "UpdateMultiple")?;
    let records = targets(req, table)?;
    let mut undo = Vec::new();
    let mut events = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let id = record
            .get(table.pk)
            .and_then(Value::as_str)
            .and_then(store::parse_guid);
        let Some(id) = id else {
            store.rollback(undo);
            return Err(ApiError::payload(format!(
                "Targets[{index}] has no valid '{}': UpdateMultiple updates existing records by their primary key (alternate keys are not simulated).",
                table.pk
            )));
        };
        // `If-Match: *`: an update, never a create.
        let one = item_request(
            req,
            Method::PATCH,
            format!("{}({id})", table.set),
            record,
            Some("*"),
        );
        match write::patch(sim, store, ctx, &one, table, id) {
            Ok(applied) => {
                undo.extend(applied.undo);
                events.extend(applied.events);
            }
            Err(e) => {
                store.rollback(undo);
                return Err(e);
            }
        }
    }
    Ok(Applied {
        response: ApiResponse::empty(StatusCode::NO_CONTENT),
        undo,
        events,
        bypass: req.bypass(),
    })
}

// --- BulkDelete ----------------------------------------------------------------------------

/// A validated bulk delete: the tables and `$filter` texts to evaluate when the job runs.
struct BulkJob {
    id: Uuid,
    user: Uuid,
    origin: String,
    max_page: usize,
    start: chrono::DateTime<chrono::Utc>,
    queries: Vec<(&'static Table, Option<String>)>,
}

fn required<'b>(body: &'b Map<String, Value>, name: &str) -> Result<&'b Value, ApiError> {
    body.get(name)
        .filter(|v| !v.is_null())
        .ok_or_else(|| ApiError::payload(format!("The action parameter '{name}' is required.")))
}

/// `POST BulkDelete`: validates the request, records the system job and schedules it.
pub fn bulk_delete(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
) -> Result<Applied, ApiError> {
    let body = write::body_object(req)?;
    let job_name = required(&body, "JobName")?
        .as_str()
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::payload("'JobName' must be a non-empty string."))?
        .to_string();
    let notify = required(&body, "SendEmailNotification")?
        .as_bool()
        .ok_or_else(|| ApiError::payload("'SendEmailNotification' must be true or false."))?;
    for list in ["ToRecipients", "CCRecipients"] {
        let ids = required(&body, list)?
            .as_array()
            .ok_or_else(|| ApiError::payload(format!("'{list}' must be an array of GUIDs.")))?;
        if ids
            .iter()
            .any(|v| v.as_str().and_then(store::parse_guid).is_none())
        {
            return Err(ApiError::payload(format!(
                "'{list}' must be an array of GUIDs."
            )));
        }
    }
    let recurrence = required(&body, "RecurrencePattern")?
        .as_str()
        .ok_or_else(|| {
            ApiError::payload("'RecurrencePattern' must be a string (empty: run once).")
        })?;
    let start = required(&body, "StartDateTime")?
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&chrono::Utc))
        .ok_or_else(|| ApiError::payload("'StartDateTime' must be a date and time (ISO 8601)."))?;
    if !recurrence.trim().is_empty() {
        return Err(ApiError::not_implemented(
            "Recurring bulk delete jobs (a RecurrencePattern) are not simulated by the sandbox; send an empty RecurrencePattern to run once.",
        ));
    }
    if notify {
        return Err(ApiError::not_implemented(
            "E-mail notification of bulk delete jobs (SendEmailNotification: true) is not simulated by the sandbox.",
        ));
    }
    if body.get("SourceImportId").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::not_implemented(
            "Bulk deletes of an import (SourceImportId) are not simulated by the sandbox.",
        ));
    }
    let set = required(&body, "QuerySet")?
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::payload("'QuerySet' must hold at least one QueryExpression."))?;
    let mut queries = Vec::new();
    for (index, q) in set.iter().enumerate() {
        queries.push(query_expression(store, q, index)?);
    }

    let id = Uuid::new_v4();
    let now = store::now();
    let mut row = Row::new();
    row.insert("asyncoperationid", Val::Guid(id));
    row.insert("name", Val::Str(job_name));
    row.insert("operationtype", Val::Int(BULK_DELETE_OPERATION));
    row.insert("messagename", Val::Str("BulkDelete".to_string()));
    row.insert("correlationid", Val::Guid(ctx.correlation));
    row.insert("statecode", Val::Int(0));
    row.insert("statuscode", Val::Int(0));
    row.insert("createdon", Val::Date(now));
    row.insert("modifiedon", Val::Date(now));
    row.insert("createdby", Val::Ref("systemuser", ctx.user));
    row.insert("modifiedby", Val::Ref("systemuser", ctx.user));
    row.insert("ownerid", Val::Ref("systemuser", ctx.user));
    row.insert("versionnumber", Val::Int(store.next_version()));
    let undo = vec![store.put("asyncoperation", id, row)];

    let job = BulkJob {
        id,
        user: ctx.user,
        origin: ctx.origin.clone(),
        max_page: ctx.max_page,
        start,
        queries,
    };
    schedule(sim, job);
    Ok(Applied {
        response: ApiResponse::json(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}$metadata#{NS}BulkDeleteResponse", ctx.root()),
                "JobId": id.to_string(),
            }),
        ),
        undo,
        events: Vec::new(),
        bypass: Bypass::default(),
    })
}

/// One `QueryExpression` of a `QuerySet`: its table and the `$filter` text its criteria mean.
fn query_expression(
    store: &Store,
    q: &Value,
    index: usize,
) -> Result<(&'static Table, Option<String>), ApiError> {
    let q = q.as_object().ok_or_else(|| {
        ApiError::payload(format!(
            "QuerySet[{index}] is not a QueryExpression object."
        ))
    })?;
    for (key, value) in q {
        let empty = match value {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            Value::Bool(b) => !b,
            _ => false,
        };
        let understood = matches!(
            key.as_str(),
            "@odata.type" | "EntityName" | "ColumnSet" | "Criteria" | "NoLock" | "Distinct"
        );
        if !understood && !empty {
            return Err(ApiError::not_implemented(format!(
                "QuerySet[{index}].{key} is not simulated by the sandbox (a QueryExpression here has EntityName and Criteria)."
            )));
        }
    }
    let entity = q
        .get("EntityName")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::payload(format!("QuerySet[{index}].EntityName is required.")))?;
    let table = store.catalog().table(entity).ok_or_else(|| {
        ApiError::payload(format!(
            "QuerySet[{index}].EntityName '{entity}' is not a table of this organization."
        ))
    })?;
    write::writable(table, "BulkDelete")?;
    let filter = match q.get("Criteria") {
        None | Some(Value::Null) => None,
        Some(c) => filter_expression(table, c, &format!("QuerySet[{index}].Criteria"))?,
    };
    if let Some(text) = &filter {
        // Checked now, so that a bad query is refused by the request, not by the job.
        query::parse_filter(table, text)?;
    }
    Ok((table, filter))
}

/// A `FilterExpression` as `$filter` text; `None` when it has no conditions.
fn filter_expression(table: &Table, f: &Value, at: &str) -> Result<Option<String>, ApiError> {
    let f = f
        .as_object()
        .ok_or_else(|| ApiError::payload(format!("{at} is not a FilterExpression object.")))?;
    let join = match f.get("FilterOperator").and_then(Value::as_str) {
        None | Some("And") => " and ",
        Some("Or") => " or ",
        Some(other) => {
            return Err(ApiError::payload(format!(
                "{at}.FilterOperator '{other}' is neither And nor Or."
            )));
        }
    };
    let mut terms = Vec::new();
    if let Some(conditions) = f.get("Conditions").filter(|v| !v.is_null()) {
        let conditions = conditions
            .as_array()
            .ok_or_else(|| ApiError::payload(format!("{at}.Conditions must be an array.")))?;
        for (n, c) in conditions.iter().enumerate() {
            terms.push(condition(table, c, &format!("{at}.Conditions[{n}]"))?);
        }
    }
    if let Some(filters) = f.get("Filters").filter(|v| !v.is_null()) {
        let filters = filters
            .as_array()
            .ok_or_else(|| ApiError::payload(format!("{at}.Filters must be an array.")))?;
        for (n, inner) in filters.iter().enumerate() {
            if let Some(text) = filter_expression(table, inner, &format!("{at}.Filters[{n}]"))? {
                terms.push(format!("({text})"));
            }
        }
    }
    if terms.is_empty() {
        return Ok(None);
    }
    Ok(Some(terms.join(join)))
}

/// A `ConditionExpression` as a `$filter` term.
fn condition(table: &Table, c: &Value, at: &str) -> Result<String, ApiError> {
    let c = c
        .as_object()
        .ok_or_else(|| ApiError::payload(format!("{at} is not a ConditionExpression object.")))?;
    if c.get("EntityName").is_some_and(|v| !v.is_null()) {
        return Err(ApiError::not_implemented(format!(
            "{at}.EntityName (a condition on a link entity) is not simulated by the sandbox."
        )));
    }
    let name = c
        .get("AttributeName")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::payload(format!("{at}.AttributeName is required.")))?;
    let column = table.column(name).ok_or_else(|| {
        ApiError::payload(format!(
            "{at}: '{name}' is not a column of the table '{}'.",
            table.logical
        ))
    })?;
    let property = Field { column }.property();
    let operator = c
        .get("Operator")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::payload(format!("{at}.Operator is required.")))?;
    let values: Vec<String> = match c.get("Values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(vs)) => vs
            .iter()
            .map(|v| literal(column.kind, v, at))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::payload(format!("{at}.Values must be an array."))),
    };
    let one = |op: &str| -> Result<String, ApiError> {
        match values.as_slice() {
            [v] => Ok(format!("{property} {op} {v}")),
            _ => Err(ApiError::payload(format!(
                "{at}: the operator {operator} takes exactly one value."
            ))),
        }
    };
    let many = |op: &str, join: &str| -> Result<String, ApiError> {
        if values.is_empty() {
            return Err(ApiError::payload(format!(
                "{at}: the operator {operator} takes at least one value."
            )));
        }
        let terms: Vec<String> = values
            .iter()
            .map(|v| format!("{property} {op} {v}"))
            .collect();
        Ok(format!("({})", terms.join(join)))
    };
    match operator {
        "Equal" => one("eq"),
        "NotEqual" => one("ne"),
        "GreaterThan" => one("gt"),
        "GreaterEqual" => one("ge"),
        "LessThan" => one("lt"),
        "LessEqual" => one("le"),
        "In" => many("eq", " or "),
        "NotIn" => many("ne", " and "),
        "Null" => Ok(format!("{property} eq null")),
        "NotNull" => Ok(format!("{property} ne null")),
        other => Err(ApiError::not_implemented(format!(
            "{at}: the condition operator '{other}' is not simulated by the sandbox (Equal, NotEqual, GreaterThan, GreaterEqual, LessThan, LessEqual, In, NotIn, Null, NotNull)."
        ))),
    }
}

/// A condition value (`{"Value": …, "Type": "System.Guid"}` or a bare JSON value) as an
/// OData literal for a column of this kind.
fn literal(kind: Kind, v: &Value, at: &str) -> Result<String, ApiError> {
    let v = match v {
        Value::Object(o) => o.get("Value").unwrap_or(&Value::Null),
        other => other,
    };
    let bad = || ApiError::payload(format!("{at}: the value {v} does not fit the column."));
    match (kind, v) {
        (_, Value::Null) => Ok("null".to_string()),
        (Kind::Pk | Kind::Guid | Kind::Lookup(_), Value::String(s)) => {
            store::parse_guid(s).map(|g| g.to_string()).ok_or_else(bad)
        }
        (Kind::Str(_) | Kind::EntityName, Value::String(s)) => {
            Ok(format!("'{}'", s.replace('\'', "''")))
        }
        (Kind::Int | Kind::Choice(_) | Kind::State | Kind::Status, Value::Number(n)) => {
            n.as_i64().map(|i| i.to_string()).ok_or_else(bad)
        }
        (Kind::Int | Kind::Choice(_) | Kind::State | Kind::Status, Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(|i| i.to_string())
            .map_err(|_| bad()),
        (Kind::Bool, Value::Bool(b)) => Ok(b.to_string()),
        (Kind::DateTime, Value::String(s)) if chrono::DateTime::parse_from_rfc3339(s).is_ok() => {
            Ok(s.clone())
        }
        _ => Err(bad()),
    }
}

/// Runs the job after its request has been answered (and not before its start time).
fn schedule(sim: &Shared, job: BulkJob) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let me = sim.me.clone();
    runtime.spawn(async move {
        let wait = (job.start - chrono::Utc::now())
            .to_std()
            .unwrap_or_default()
            .max(Duration::from_millis(20));
        tokio::time::sleep(wait).await;
        if let Some(sim) = me.upgrade() {
            run(&sim, job).await;
        }
    });
}

fn set_state(sim: &Shared, id: Uuid, state: i64, status: i64, message: Option<String>) -> bool {
    let mut store = sim.lock_store();
    let Some(mut row) = store.get("asyncoperation", &id).cloned() else {
        return false;
    };
    row.insert("statecode", Val::Int(state));
    row.insert("statuscode", Val::Int(status));
    let now = store::now();
    row.insert("modifiedon", Val::Date(now));
    if state == 3 {
        row.insert("completedon", Val::Date(now));
    }
    if let Some(m) = message {
        row.insert("message", Val::Str(m.clone()));
        row.insert("friendlymessage", Val::Str(m));
    }
    row.insert("versionnumber", Val::Int(store.next_version()));
    store.put("asyncoperation", id, row);
    true
}

async fn run(sim: &Arc<Shared>, job: BulkJob) {
    {
        // The job's row is gone when its request was rolled back (a failed change set).
        let store = sim.lock_store();
        let waiting = store
            .get("asyncoperation", &job.id)
            .is_some_and(|r| r.get("statecode").and_then(Val::as_int) == Some(0));
        if !waiting {
            return;
        }
    }
    set_state(sim, job.id, 2, 20, None);
    let ctx = Ctx {
        user: job.user,
        correlation: Uuid::new_v4(),
        origin: job.origin.clone(),
        in_batch: false,
        max_page: job.max_page,
    };
    let mut targets: Vec<(&'static Table, Uuid)> = Vec::new();
    {
        let store = sim.lock_store();
        for (table, text) in &job.queries {
            let filter = match text {
                Some(t) => match query::parse_filter(table, t) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        drop(store);
                        set_state(sim, job.id, 3, 31, Some(e.message));
                        return;
                    }
                },
                None => None,
            };
            for (id, row) in store.table_rows(table.logical) {
                if filter.as_ref().is_none_or(|f| f.matches(row))
                    && !targets
                        .iter()
                        .any(|(t, i)| t.logical == table.logical && i == id)
                {
                    targets.push((table, *id));
                }
            }
        }
    }
    let total = targets.len();
    let mut failures = Vec::new();
    for (table, id) in targets {
        let req = ApiRequest::new(
            Method::DELETE,
            &format!("{}({id})", table.set),
            None,
            HeaderMap::new(),
            Bytes::new(),
        );
        let applied = {
            let mut store = sim.lock_store();
            if !store.contains(table.logical, &id) {
                // Deleted meanwhile (or by a cascade of an earlier row).
                continue;
            }
            write::delete(sim, &mut store, &ctx, &req, table, id)
        };
        let answer = match applied {
            Ok(a) => api::commit(sim, a).await,
            Err(e) => ApiResponse::from_error(&e),
        };
        if !answer.status.is_success() {
            let message = answer
                .body
                .as_ref()
                .and_then(|b| b["error"]["message"].as_str())
                .unwrap_or_default()
                .to_string();
            failures.push(format!("{}({id}): {message}", table.set));
        }
    }
    if failures.is_empty() {
        set_state(
            sim,
            job.id,
            3,
            30,
            Some(format!("Deleted {total} of {total} records.")),
        );
    } else {
        set_state(
            sim,
            job.id,
            3,
            31,
            Some(format!(
                "Deleted {} of {total} records; these could not be deleted: {}",
                total - failures.len(),
                failures.join("; ")
            )),
        );
    }
}
