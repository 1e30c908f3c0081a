//! Webhooks as Dataverse fires them: each successful write becomes an [`Event`]; every active
//! step registered for its message and table (through `serviceendpoints`,
//! `sdkmessageprocessingsteps` and `sdkmessageprocessingstepimages`) turns it into a
//! `RemoteExecutionContext` body (ref/dataverse.md §2, the sample in `shared/samples`), which is
//! POSTed to the endpoint: synchronous steps before the write is answered, asynchronous ones in
//! the background, one retry on 502/503/504 only, a 60 s timeout, and failures logged as failed
//! system jobs.

use super::error::{ApiError, code};
use super::schema::{self, Column, Kind, Table};
use super::store::{Row, Store, Val};
use super::xml;
use super::{Shared, store};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use uuid::Uuid;

const CONTRACTS: &str = "http://schemas.microsoft.com/xrm/2011/Contracts";
/// Bodies above this size lose their parameters and images (PA-webhooks).
pub const MAX_BODY: usize = 256 * 1024;

/// A typed input or output parameter of a message.
#[derive(Debug, Clone)]
pub enum Param {
    /// An Entity: its table, id and attributes (a `None` value is a null).
    Entity {
        table: &'static Table,
        id: Uuid,
        attrs: Vec<(&'static Column, Option<Val>)>,
    },
    /// An EntityReference.
    Ref(&'static str, Uuid),
    Guid(Uuid),
    Guids(Vec<Uuid>),
    Str(String),
    Bool(bool),
}

/// What one successful operation did, for the steps registered on it.
#[derive(Debug, Clone)]
pub struct Event {
    pub message: &'static str,
    pub table: &'static Table,
    pub id: Uuid,
    pub input: Vec<(&'static str, Param)>,
    pub parent_input: Vec<(&'static str, Param)>,
    pub output: Vec<(&'static str, Param)>,
    /// The attributes of the Target (for filtering attributes on Update).
    pub changed: Vec<&'static str>,
    pub pre: Option<Row>,
    pub post: Option<Row>,
    pub user: Uuid,
    pub correlation: Uuid,
    pub operation: Uuid,
    pub tag: Option<String>,
    pub depth: i64,
    pub at: DateTime<Utc>,
}

/// Which custom logic a request asked to bypass (`MSCRM.BypassCustomPluginExecution`,
/// `MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bypass {
    pub sync: bool,
    pub asynchronous: bool,
}

/// One delivery to make. No `Debug`: its URL and headers carry the endpoint's key.
#[derive(Clone)]
pub struct Job {
    pub step_id: Uuid,
    pub step_name: String,
    pub mode: i64,
    pub asyncautodelete: bool,
    /// The URL with the auth query parameters.
    pub url: String,
    /// The URL without any query (for the log).
    pub log_url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub size_exceeded: bool,
    pub message: &'static str,
    pub entity: &'static str,
    pub record_id: Uuid,
    pub operation_id: Uuid,
    pub correlation_id: Uuid,
    /// A registration problem that makes the delivery fail without a request.
    pub problem: Option<String>,
}

/// One finished delivery, as `deliveries()` and `GET /_sim/webhooks/deliveries` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The `sdkmessageprocessingsteps` row.
    pub step_id: String,
    pub step_name: String,
    /// The endpoint URL without its query (the query may carry a key).
    pub url: String,
    /// 0 synchronous, 1 asynchronous.
    pub mode: i64,
    pub message: String,
    pub entity: String,
    pub record_id: String,
    pub operation_id: String,
    pub correlation_id: String,
    /// HTTP requests made (1, or 2 after a 502/503/504).
    pub attempts: u32,
    /// The last HTTP status received.
    pub status: Option<u16>,
    /// Why it failed (transport error, timeout, status, registration problem).
    pub error: Option<String>,
    pub succeeded: bool,
    /// Whether the body exceeded 256 KB and was cut down.
    pub size_exceeded: bool,
    pub body_bytes: usize,
}

/// The delivery machinery: per-record queues for asynchronous steps, the log, and the count of
/// deliveries not finished yet.
pub struct Webhooks {
    queues: std::sync::Mutex<Queues>,
    pending: AtomicUsize,
    idle: tokio::sync::Notify,
    log: std::sync::Mutex<Vec<Delivery>>,
    http: reqwest::Client,
}

#[derive(Default)]
struct Queues {
    per_record: HashMap<String, VecDeque<Job>>,
    active: HashSet<String>,
}

impl Webhooks {
    pub fn new(timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Webhooks {
            queues: std::sync::Mutex::new(Queues::default()),
            pending: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            log: std::sync::Mutex::new(Vec::new()),
            http,
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn clear_log(&self) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Waits until no delivery is queued or running.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    fn start(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    fn finish(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn record(&self, d: Delivery) {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push(d);
    }

    /// Delivers synchronous steps one after the other; the first failure fails the operation.
    pub async fn run_sync(&self, jobs: Vec<Job>) -> Result<(), ApiError> {
        for job in jobs {
            self.start();
            let d = deliver(&self.http, &job).await;
            let ok = d.succeeded;
            let why = d.error.clone().unwrap_or_default();
            self.record(d);
            self.finish();
            if !ok {
                return Err(ApiError::bad_request(
                    code::PLUGIN,
                    format!(
                        "The synchronous webhook step '{}' failed ({why}); the operation was rolled back.",
                        job.step_name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Queues asynchronous deliveries; each record's deliveries run in order, records in parallel.
pub fn enqueue(shared: &Arc<Shared>, jobs: Vec<Job>) {
    for job in jobs {
        let key = format!("{}:{}", job.entity, job.record_id);
        shared.webhooks.start();
        let spawn = {
            let mut q = shared
                .webhooks
                .queues
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            q.per_record.entry(key.clone()).or_default().push_back(job);
            q.active.insert(key.clone())
        };
        if spawn {
            let shared = shared.clone();
            tokio::spawn(drain(shared, key));
        }
    }
}

async fn drain(shared: Arc<Shared>, key: String) {
    loop {
        let job = {
            let mut q = shared
                .webhooks
                .queues
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let next = q.per_record.get_mut(&key).and_then(|d| d.pop_front());
            if next.is_none() {
                q.per_record.remove(&key);
                q.active.remove(&key);
            }
            next
        };
        let Some(job) = job else {
            return;
        };
        let d = deliver(&shared.webhooks.http, &job).await;
        record_system_job(&shared, &job, &d);
        shared.webhooks.record(d);
        shared.webhooks.finish();
    }
}

/// An asynchronous step's system job: failed ones always stay (statuscode 31), succeeded ones
/// unless the step auto-deletes them.
fn record_system_job(shared: &Shared, job: &Job, d: &Delivery) {
    if d.succeeded && job.asyncautodelete {
        return;
    }
    let mut store = shared.store.lock().unwrap_or_else(|p| p.into_inner());
    let now = store::now();
    let version = store.next_version();
    let user = shared
        .config
        .clients
        .first()
        .map(|c| c.user_id.clone())
        .unwrap_or_default();
    let user = store::parse_guid(&user).unwrap_or_default();
    let mut row = Row::new();
    row.insert("asyncoperationid", Val::Guid(job.operation_id));
    row.insert("name", Val::Str(job.step_name.clone()));
    row.insert("operationtype", Val::Int(1));
    row.insert("messagename", Val::Str(job.message.to_string()));
    row.insert("primaryentitytype", Val::Str(job.entity.to_string()));
    row.insert("correlationid", Val::Guid(job.correlation_id));
    row.insert(
        "owningextensionid",
        Val::Ref("sdkmessageprocessingstep", job.step_id),
    );
    row.insert("statecode", Val::Int(3));
    row.insert("statuscode", Val::Int(if d.succeeded { 30 } else { 31 }));
    if let Some(e) = &d.error {
        row.insert("message", Val::Str(e.clone()));
        row.insert("friendlymessage", Val::Str(e.clone()));
    }
    row.insert("completedon", Val::Date(now));
    row.insert("createdon", Val::Date(now));
    row.insert("modifiedon", Val::Date(now));
    row.insert("createdby", Val::Ref("systemuser", user));
    row.insert("modifiedby", Val::Ref("systemuser", user));
    row.insert("ownerid", Val::Ref("systemuser", user));
    row.insert("versionnumber", Val::Int(version));
    store.put("asyncoperation", job.operation_id, row);
}

/// Makes one delivery: one attempt, plus one retry after 502, 503 or 504.
async fn deliver(http: &reqwest::Client, job: &Job) -> Delivery {
    let mut d = Delivery {
        step_id: job.step_id.to_string(),
        step_name: job.step_name.clone(),
        url: job.log_url.clone(),
        mode: job.mode,
        message: job.message.to_string(),
        entity: job.entity.to_string(),
        record_id: job.record_id.to_string(),
        operation_id: job.operation_id.to_string(),
        correlation_id: job.correlation_id.to_string(),
        attempts: 0,
        status: None,
        error: None,
        succeeded: false,
        size_exceeded: job.size_exceeded,
        body_bytes: job.body.len(),
    };
    if let Some(p) = &job.problem {
        d.error = Some(p.clone());
        return d;
    }
    loop {
        d.attempts += 1;
        let mut req = http.post(&job.url).body(job.body.clone());
        for (k, v) in &job.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        req = req.header("x-request-id", Uuid::new_v4().to_string());
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                d.status = Some(status);
                // The body is ignored; only the status counts.
                drop(resp);
                if (200..300).contains(&status) {
                    d.succeeded = true;
                    d.error = None;
                    return d;
                }
                d.error = Some(format!("the endpoint answered HTTP {status}"));
                if d.attempts == 1 && matches!(status, 502..=504) {
                    continue;
                }
                return d;
            }
            Err(e) => {
                d.status = None;
                d.error = Some(if e.is_timeout() {
                    "the endpoint did not answer within the timeout".to_string()
                } else {
                    format!("the request to the endpoint failed: {e}")
                });
                return d;
            }
        }
    }
}

// --- step matching and bodies --------------------------------------------------------------

/// The organisation's identity, as bodies and headers carry it.
#[derive(Debug, Clone)]
pub struct Org {
    pub organization_id: Uuid,
    pub organization_name: String,
    pub business_unit_id: Uuid,
    pub domain: String,
}

struct Step {
    id: Uuid,
    name: String,
    mode: i64,
    stage: i64,
    filtering: Vec<String>,
    asyncautodelete: bool,
    endpoint: Option<Row>,
    images: Vec<Row>,
}

fn str_of<'r>(row: &'r Row, col: &str) -> Option<&'r str> {
    row.get(col).and_then(|v| v.as_str())
}

/// The steps registered for a message on a table, enabled ones only.
fn steps_for(store: &Store, message: &str, entity: &str) -> Vec<Step> {
    let Some(message_id) = store
        .table_rows("sdkmessage")
        .find(|(_, r)| str_of(r, "name") == Some(message))
        .map(|(id, _)| *id)
    else {
        return Vec::new();
    };
    let mut steps: Vec<(i64, Step)> = Vec::new();
    for (id, row) in store.table_rows("sdkmessageprocessingstep") {
        if row.get("statecode").and_then(|v| v.as_int()).unwrap_or(0) != 0 {
            continue;
        }
        if row.get("sdkmessageid").and_then(|v| v.guid()) != Some(message_id) {
            continue;
        }
        if let Some(filter_id) = row.get("sdkmessagefilterid").and_then(|v| v.guid()) {
            let primary = store
                .get("sdkmessagefilter", &filter_id)
                .and_then(|f| str_of(f, "primaryobjecttypecode"))
                .unwrap_or("none");
            if primary != entity && primary != "none" {
                continue;
            }
        }
        let endpoint = match row.get("eventhandler") {
            Some(Val::Ref("serviceendpoint", eid)) => store.get("serviceendpoint", eid).cloned(),
            _ => None,
        };
        let images = store
            .table_rows("sdkmessageprocessingstepimage")
            .filter(|(_, r)| {
                r.get("sdkmessageprocessingstepid").and_then(|v| v.guid()) == Some(*id)
            })
            .map(|(_, r)| r.clone())
            .collect();
        let rank = row.get("rank").and_then(|v| v.as_int()).unwrap_or(1);
        steps.push((
            rank,
            Step {
                id: *id,
                name: str_of(row, "name").unwrap_or_default().to_string(),
                mode: row.get("mode").and_then(|v| v.as_int()).unwrap_or(0),
                stage: row.get("stage").and_then(|v| v.as_int()).unwrap_or(40),
                filtering: str_of(row, "filteringattributes")
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_ascii_lowercase())
                    .filter(|s| !s.is_empty())
                    .collect(),
                asyncautodelete: row
                    .get("asyncautodelete")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                endpoint,
                images,
            },
        ));
    }
    steps.sort_by_key(|(rank, s)| (*rank, s.id));
    steps.into_iter().map(|(_, s)| s).collect()
}

/// Turns events into deliveries: (synchronous, asynchronous).
pub fn build_jobs(
    store: &Store,
    org: &Org,
    events: &[Event],
    bypass: Bypass,
) -> (Vec<Job>, Vec<Job>) {
    let mut sync = Vec::new();
    let mut asynchronous = Vec::new();
    for ev in events {
        for step in steps_for(store, ev.message, ev.table.logical) {
            if ev.message == "Update"
                && !step.filtering.is_empty()
                && !ev
                    .changed
                    .iter()
                    .any(|a| step.filtering.iter().any(|f| f == a))
            {
                continue;
            }
            let is_async = step.mode == 1;
            if (is_async && bypass.asynchronous) || (!is_async && bypass.sync) {
                continue;
            }
            let job = job_for(store, org, ev, &step);
            if is_async {
                asynchronous.push(job);
            } else {
                sync.push(job);
            }
        }
    }
    (sync, asynchronous)
}

fn job_for(store: &Store, org: &Org, ev: &Event, step: &Step) -> Job {
    // Asynchronous steps run as system jobs, whose id is the body's OperationId.
    let operation_id = if step.mode == 1 {
        Uuid::new_v4()
    } else {
        ev.operation
    };
    let mut job = Job {
        step_id: step.id,
        step_name: step.name.clone(),
        mode: step.mode,
        asyncautodelete: step.asyncautodelete,
        url: String::new(),
        log_url: String::new(),
        headers: Vec::new(),
        body: Vec::new(),
        size_exceeded: false,
        message: ev.message,
        entity: ev.table.logical,
        record_id: ev.id,
        operation_id,
        correlation_id: ev.correlation,
        problem: None,
    };
    let Some(endpoint) = &step.endpoint else {
        job.problem = Some("the step has no service endpoint as its event handler".into());
        return job;
    };
    let contract = endpoint
        .get("contract")
        .and_then(|v| v.as_int())
        .unwrap_or(0);
    let format = endpoint
        .get("messageformat")
        .and_then(|v| v.as_int())
        .unwrap_or(2);
    let url = str_of(endpoint, "url").unwrap_or_default().to_string();
    job.log_url = url.split('?').next().unwrap_or_default().to_string();
    if contract != 8 {
        job.problem = Some(format!(
            "the service endpoint's contract is {contract}, not 8 (Webhook)"
        ));
        return job;
    }
    if format != 2 {
        job.problem = Some(format!(
            "the service endpoint's messageformat is {format}; the sandbox sends only 2 (Json)"
        ));
        return job;
    }
    let authvalue = str_of(endpoint, "authvalue").unwrap_or_default();
    let mut query: Vec<(String, String)> = Vec::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    match endpoint.get("authtype").and_then(|v| v.as_int()) {
        Some(4) => query.push(("code".into(), authvalue.to_string())),
        Some(5) => match parse_settings(authvalue) {
            Ok(s) => headers.extend(s),
            Err(e) => job.problem = Some(e),
        },
        Some(6) => match parse_settings(authvalue) {
            Ok(s) => query.extend(s),
            Err(e) => job.problem = Some(e),
        },
        other => {
            job.problem = Some(format!(
                "authtype {other:?} is not a webhook auth type (4, 5 or 6)"
            ))
        }
    }
    job.url = with_query(&url, &query);
    let charset = if endpoint.get("messagecharset").and_then(|v| v.as_int()) == Some(1) {
        "application/json; charset=utf-8"
    } else {
        "application/json"
    };
    let full = context(store, org, ev, step, operation_id, true);
    let mut body = full.to_string_escaped();
    if body.len() > MAX_BODY {
        let cut = context(store, org, ev, step, operation_id, false);
        body = cut.to_string_escaped();
        job.size_exceeded = true;
    }
    let mut h = vec![
        ("Content-Type".to_string(), charset.to_string()),
        ("x-ms-dynamics-organization".to_string(), org.domain.clone()),
        (
            "x-ms-dynamics-entity-name".to_string(),
            ev.table.logical.to_string(),
        ),
        (
            "x-ms-dynamics-request-name".to_string(),
            ev.message.to_string(),
        ),
        (
            "x-ms-correlation-request-id".to_string(),
            ev.correlation.to_string(),
        ),
    ];
    if job.size_exceeded {
        h.push((
            "x-ms-dynamics-msg-size-exceeded".to_string(),
            "true".to_string(),
        ));
    }
    h.extend(headers);
    job.headers = h;
    job.body = body.into_bytes();
    job
}

fn with_query(url: &str, params: &[(String, String)]) -> String {
    if params.is_empty() {
        return url.to_string();
    }
    let encoded: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                super::query::cookie_encode(k),
                super::query::cookie_encode(v)
            )
        })
        .collect();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{}", encoded.join("&"))
}

/// `<settings><setting name="x-key" value="…"/></settings>` → name/value pairs.
pub fn parse_settings(authvalue: &str) -> Result<Vec<(String, String)>, String> {
    let root = xml::parse(authvalue).map_err(|e| format!("authvalue is not settings XML: {e}"))?;
    if root.name != "settings" {
        return Err(format!(
            "authvalue's root element is <{}>, not <settings>",
            root.name
        ));
    }
    let mut out = Vec::new();
    for s in &root.children {
        match (s.name.as_str(), s.attr("name"), s.attr("value")) {
            ("setting", Some(n), Some(v)) if !n.is_empty() => {
                out.push((n.to_string(), v.to_string()))
            }
            _ => return Err("authvalue has a <setting> without name and value".into()),
        }
    }
    if out.is_empty() {
        return Err("authvalue has no <setting>".into());
    }
    Ok(out)
}

// --- the RemoteExecutionContext --------------------------------------------------------------

/// A JSON value that keeps its members in order (DataContractJsonSerializer writes `__type`
/// first and members alphabetically) and is written the way that serializer writes it, with
/// `/` escaped as `\/`.
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    Num(i64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    fn obj(members: Vec<(&str, J)>) -> J {
        J::Obj(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    fn s(v: impl Into<String>) -> J {
        J::Str(v.into())
    }

    pub fn to_string_escaped(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(&n.to_string()),
            J::Str(s) => write_str(s, out),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    let json = serde_json::Value::String(s.to_string()).to_string();
    out.push_str(&json.replace('/', "\\/"));
}

fn wcf_date(d: &DateTime<Utc>) -> J {
    J::s(format!("/Date({})/", d.timestamp_millis()))
}

fn entity_reference(logical: &str, id: Uuid, name: Option<String>) -> J {
    J::obj(vec![
        ("__type", J::s(format!("EntityReference:{CONTRACTS}"))),
        ("Id", J::s(id.to_string())),
        ("KeyAttributes", J::Arr(vec![])),
        ("LogicalName", J::s(logical)),
        ("Name", name.map(J::Str).unwrap_or(J::Null)),
        ("RowVersion", J::Null),
    ])
}

fn option_set(v: i64) -> J {
    J::obj(vec![
        ("__type", J::s(format!("OptionSetValue:{CONTRACTS}"))),
        ("Value", J::Num(v)),
    ])
}

/// An attribute value in a webhook body.
fn wcf_value(column: &Column, v: Option<&Val>) -> J {
    let Some(v) = v else {
        return J::Null;
    };
    match (column.kind, v) {
        (Kind::Choice(_) | Kind::State | Kind::Status, Val::Int(i)) => option_set(*i),
        (_, Val::Ref(t, id)) => entity_reference(t, *id, None),
        (_, Val::Date(d)) => wcf_date(d),
        (_, Val::Str(s)) => J::s(s.clone()),
        (_, Val::Int(i)) => J::Num(*i),
        (_, Val::Bool(b)) => J::Bool(*b),
        (_, Val::Guid(g)) => J::s(g.to_string()),
    }
}

fn kv(key: &str, value: J) -> J {
    J::obj(vec![("key", J::s(key)), ("value", value)])
}

/// An Entity; images carry no `__type`.
fn entity(
    table: &Table,
    id: Uuid,
    attrs: &[(&'static Column, Option<Val>)],
    formatted: Vec<(String, String)>,
    with_type: bool,
    row_version: Option<i64>,
) -> J {
    let mut m: Vec<(&str, J)> = Vec::new();
    if with_type {
        m.push(("__type", J::s(format!("Entity:{CONTRACTS}"))));
    }
    m.push((
        "Attributes",
        J::Arr(
            attrs
                .iter()
                .map(|(c, v)| kv(c.name, wcf_value(c, v.as_ref())))
                .collect(),
        ),
    ));
    m.push(("EntityState", J::Null));
    m.push((
        "FormattedValues",
        J::Arr(
            formatted
                .into_iter()
                .map(|(k, v)| kv(&k, J::Str(v)))
                .collect(),
        ),
    ));
    m.push(("Id", J::s(id.to_string())));
    m.push(("KeyAttributes", J::Arr(vec![])));
    m.push(("LogicalName", J::s(table.logical)));
    m.push(("RelatedEntities", J::Arr(vec![])));
    m.push((
        "RowVersion",
        row_version.map(|v| J::s(v.to_string())).unwrap_or(J::Null),
    ));
    J::obj(m)
}

fn param(p: &Param) -> J {
    match p {
        Param::Entity { table, id, attrs } => entity(table, *id, attrs, Vec::new(), true, None),
        Param::Ref(t, id) => entity_reference(t, *id, None),
        Param::Guid(g) => J::s(g.to_string()),
        Param::Guids(gs) => J::Arr(gs.iter().map(|g| J::s(g.to_string())).collect()),
        Param::Str(s) => J::s(s.clone()),
        Param::Bool(b) => J::Bool(*b),
    }
}

fn params(ps: &[(&'static str, Param)]) -> J {
    J::Arr(ps.iter().map(|(k, p)| kv(k, param(p))).collect())
}

/// An image of a row: the listed attributes (all when the list is empty), nulls left out.
fn image(table: &Table, row: &Row, attributes: &[String]) -> J {
    let id = row.get(table.pk).and_then(|v| v.guid()).unwrap_or_default();
    let mut attrs = Vec::new();
    let mut formatted = Vec::new();
    for c in table.all_columns() {
        if c.access == schema::Access::WriteOnly {
            continue;
        }
        if !attributes.is_empty() && !attributes.iter().any(|a| a == c.name) {
            continue;
        }
        if let Some(v) = row.get(c.name) {
            if let (Val::Int(i), Some(label)) = (v, v.as_int().and_then(|i| table.label(c, i))) {
                let _ = i;
                formatted.push((c.name.to_string(), label.to_string()));
            }
            attrs.push((c, Some(v.clone())));
        }
    }
    let version = row.get("versionnumber").and_then(|v| v.as_int());
    entity(table, id, &attrs, formatted, false, version)
}

fn shared_variables(ev: &Event, changed_types: bool) -> J {
    let mut vars = Vec::new();
    if changed_types {
        vars.push(kv(
            "ChangedEntityTypes",
            J::Arr(vec![J::obj(vec![
                (
                    "__type",
                    J::s("KeyValuePairOfstringstring:#System.Collections.Generic"),
                ),
                ("key", J::s(ev.table.logical)),
                ("value", J::s(ev.message)),
            ])]),
        ));
    }
    if let Some(tag) = &ev.tag {
        vars.push(kv("tag", J::s(tag.clone())));
    }
    J::Arr(vars)
}

/// The body for one step. `full = false` leaves out what is dropped above 256 KB.
fn context(store: &Store, org: &Org, ev: &Event, step: &Step, operation_id: Uuid, full: bool) -> J {
    let is_async = step.mode == 1;
    let aad = |user: Uuid| J::s(aad_object_id(user).to_string());
    let owning = J::obj(vec![
        ("Id", J::s(step.id.to_string())),
        ("KeyAttributes", J::Arr(vec![])),
        ("LogicalName", J::s("sdkmessageprocessingstep")),
        ("Name", J::s(step.name.clone())),
        ("RowVersion", J::Null),
    ]);

    let mut pre = Vec::new();
    let mut post = Vec::new();
    let images_allowed = matches!(ev.message, "Create" | "Update" | "Delete");
    if images_allowed {
        for img in &step.images {
            let alias = str_of(img, "entityalias").unwrap_or("Image").to_string();
            let attributes: Vec<String> = str_of(img, "attributes")
                .unwrap_or_default()
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect();
            let kind = img.get("imagetype").and_then(|v| v.as_int()).unwrap_or(0);
            if matches!(kind, 0 | 2)
                && ev.message != "Create"
                && let Some(row) = &ev.pre
            {
                pre.push(kv(&alias, image(ev.table, row, &attributes)));
            }
            if matches!(kind, 1 | 2)
                && ev.message != "Delete"
                && let Some(row) = &ev.post
            {
                post.push(kv(&alias, image(ev.table, row, &attributes)));
            }
        }
    }
    if is_async {
        let primary = [ev.table.primary_name.to_string(), ev.table.pk.to_string()];
        let source = if ev.message == "Delete" {
            &ev.pre
        } else {
            &ev.post
        };
        if let Some(row) = source {
            let img = kv(
                "AsynchronousStepPrimaryName",
                image(ev.table, row, &primary),
            );
            if ev.message == "Delete" {
                pre.push(img);
            } else {
                post.push(img);
            }
        }
    }

    let parent = J::obj(vec![
        ("BusinessUnitId", J::s(org.business_unit_id.to_string())),
        ("CorrelationId", J::s(ev.correlation.to_string())),
        ("Depth", J::Num(ev.depth)),
        ("InitiatingUserAzureActiveDirectoryObjectId", aad(ev.user)),
        ("InitiatingUserId", J::s(ev.user.to_string())),
        ("InputParameters", params(&ev.parent_input)),
        ("IsExecutingOffline", J::Bool(false)),
        ("IsInTransaction", J::Bool(true)),
        ("IsOfflinePlayback", J::Bool(false)),
        ("IsolationMode", J::Num(1)),
        ("MessageName", J::s(ev.message)),
        ("Mode", J::Num(step.mode)),
        ("OperationCreatedOn", wcf_date(&ev.at)),
        ("OperationId", J::s(operation_id.to_string())),
        ("OrganizationId", J::s(org.organization_id.to_string())),
        ("OrganizationName", J::s(org.organization_name.clone())),
        ("OutputParameters", J::Arr(vec![])),
        ("OwningExtension", owning.clone()),
        ("ParentContext", J::Null),
        ("PostEntityImages", J::Arr(vec![])),
        ("PreEntityImages", J::Arr(vec![])),
        ("PrimaryEntityId", J::s(ev.id.to_string())),
        ("PrimaryEntityName", J::s(ev.table.logical)),
        ("RequestId", J::Null),
        ("SecondaryEntityName", J::s("none")),
        ("SharedVariables", shared_variables(ev, true)),
        ("Stage", J::Num(30)),
        ("UserAzureActiveDirectoryObjectId", aad(ev.user)),
        ("UserId", J::s(ev.user.to_string())),
    ]);

    let mut m: Vec<(&str, J)> = vec![
        ("BusinessUnitId", J::s(org.business_unit_id.to_string())),
        ("CorrelationId", J::s(ev.correlation.to_string())),
        ("Depth", J::Num(ev.depth)),
        ("InitiatingUserAzureActiveDirectoryObjectId", aad(ev.user)),
        ("InitiatingUserId", J::s(ev.user.to_string())),
    ];
    if full {
        m.push(("InputParameters", params(&ev.input)));
    }
    m.extend([
        ("IsExecutingOffline", J::Bool(false)),
        ("IsInTransaction", J::Bool(!is_async)),
        ("IsOfflinePlayback", J::Bool(false)),
        ("IsolationMode", J::Num(1)),
        ("MessageName", J::s(ev.message)),
        ("Mode", J::Num(step.mode)),
        ("OperationCreatedOn", wcf_date(&ev.at)),
        ("OperationId", J::s(operation_id.to_string())),
        ("OrganizationId", J::s(org.organization_id.to_string())),
        ("OrganizationName", J::s(org.organization_name.clone())),
        ("OutputParameters", params(&ev.output)),
        ("OwningExtension", owning),
    ]);
    if full {
        m.push(("ParentContext", parent));
        m.push(("PostEntityImages", J::Arr(post)));
        m.push(("PreEntityImages", J::Arr(pre)));
    }
    m.extend([
        ("PrimaryEntityId", J::s(ev.id.to_string())),
        ("PrimaryEntityName", J::s(ev.table.logical)),
        ("RequestId", J::Null),
        ("SecondaryEntityName", J::s("none")),
        ("SharedVariables", shared_variables(ev, false)),
        ("Stage", J::Num(step.stage)),
        ("UserAzureActiveDirectoryObjectId", aad(ev.user)),
        ("UserId", J::s(ev.user.to_string())),
    ]);
    let _ = store;
    J::obj(m)
}

/// The Entra object id of a systemuser in the sandbox (derived, stable).
pub fn aad_object_id(user: Uuid) -> Uuid {
    Uuid::from_u128(user.as_u128() ^ 0x0aad_0000_0000_0000_0000_0000_0000_0000)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bodies_escape_slashes_and_keep_member_order() {
        let j = J::obj(vec![
            ("__type", J::s("Entity:http://x/y")),
            ("A", J::Num(1)),
        ]);
        assert_eq!(
            j.to_string_escaped(),
            r#"{"__type":"Entity:http:\/\/x\/y","A":1}"#
        );
        let back: serde_json::Value = serde_json::from_str(&j.to_string_escaped()).unwrap();
        assert_eq!(back["__type"], "Entity:http://x/y");
    }

    #[test]
    fn header_settings_are_read_and_bad_ones_named() {
        let s = parse_settings(r#"<settings><setting name="x-key" value="s3cr&amp;t"/><setting name="b" value="2"/></settings>"#).unwrap();
        assert_eq!(
            s,
            vec![("x-key".into(), "s3cr&t".into()), ("b".into(), "2".into())]
        );
        assert!(parse_settings("plain").is_err());
        assert!(parse_settings("<settings/>").is_err());
    }
}
