//! The Web API surface (`/api/data/v9.2/`): request and response types shared with `$batch`,
//! URL parsing, dispatch to reads, writes and actions, the commit step that runs synchronous
//! webhooks (rolling back when one fails) and queues asynchronous ones, and the read side:
//! collections with `$select`/`$filter`/`$orderby`/`$top`/`$count`/`$expand`, paging with
//! `odata.maxpagesize` and `@odata.nextLink`, single rows, properties and N:N navigation.

use super::catalog::Catalog;
use super::error::ApiError;
use super::query::{
    self, FORMATTED, Field, LOOKUPLOGICALNAME, NAVPROPERTY, Prefer, TOTALCOUNT, TOTALCOUNTEXCEEDED,
};
use super::schema::{self, Access, Column, Kind, Nav, Relationship, Table};
use super::store::{self, Row, Store, Undo, Val};
use super::webhooks::{self, Bypass, Event, Job};
use super::{Shared, auth, batch, fetchxml, write};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;

/// The largest page and the cap of `@odata.count`.
pub const MAX_PAGE: usize = 5000;
/// The largest request body accepted (413 above it).
pub const MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;
/// The longest URL Dataverse accepts, and the longest URL of a request inside a `$batch`
/// (<https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors#maximum-url-length>;
/// Microsoft documents 400 `0x80060888` "Invalid URI" above it, the sandbox answers 414).
pub const MAX_URL_CHARS: usize = 32_768;
pub const MAX_BATCH_URL_CHARS: usize = 65_536;

/// The refusal of a URL longer than `limit`.
pub fn url_too_long(length: usize, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::URI_TOO_LONG,
        super::error::code::QUERY,
        format!(
            "The URL has {length} characters; at most {limit} are accepted. Send long FetchXML inside a $batch request."
        ),
    )
}

/// One Web API request, from HTTP or from a `$batch` part.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// The path below the service root, percent-decoded (`contacts(…)/listcontact_association`).
    pub path: String,
    /// Query parameters, decoded.
    pub query: Vec<(String, String)>,
    /// Query parameters as sent (for `@odata.nextLink`).
    pub raw_query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// `Content-ID` → entity URL, inside a change set.
    pub content_ids: HashMap<String, String>,
}

impl ApiRequest {
    pub fn new(
        method: Method,
        path: &str,
        raw_query: Option<&str>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Self {
        let raw = query::split_query(raw_query.unwrap_or_default());
        let decoded = raw
            .iter()
            .map(|(k, v)| (query::decode_component(k), query::decode_component(v)))
            .collect();
        ApiRequest {
            method,
            path: path.to_string(),
            query: decoded,
            raw_query: raw,
            headers,
            body,
            content_ids: HashMap::new(),
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn prefer(&self) -> Prefer {
        Prefer::parse(
            self.headers
                .get_all("prefer")
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    }

    /// Custom logic the request bypasses.
    pub fn bypass(&self) -> Bypass {
        let mut b = Bypass::default();
        if self
            .header("MSCRM.BypassCustomPluginExecution")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        {
            b.sync = true;
            b.asynchronous = true;
        }
        if let Some(v) = self.header("MSCRM.BypassBusinessLogicExecution") {
            for item in v.split(',').map(str::trim) {
                if item.eq_ignore_ascii_case("CustomSync") {
                    b.sync = true;
                }
                if item.eq_ignore_ascii_case("CustomAsync") {
                    b.asynchronous = true;
                }
            }
        }
        b
    }

    /// `?tag=…`: becomes the shared variable `tag` of the webhook bodies.
    pub fn tag(&self) -> Option<String> {
        self.param("tag").map(str::to_string)
    }
}

/// One Web API answer.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

pub const JSON_TYPE: &str = "application/json; odata.metadata=minimal";

impl ApiResponse {
    pub fn json(status: StatusCode, body: Value) -> Self {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub fn empty(status: StatusCode) -> Self {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn from_error(e: &ApiError) -> Self {
        let mut r = Self::json(e.status, e.body());
        if let Some(s) = e.retry_after {
            r.headers.push(("Retry-After".into(), s.to_string()));
        }
        r
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn into_axum(self) -> Response {
        let mut builder = Response::builder()
            .status(self.status)
            .header("OData-Version", "4.0");
        for (k, v) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(v) {
                builder = builder.header(k.as_str(), v);
            }
        }
        let resp = match self.body {
            Some(body) => builder
                .header(header::CONTENT_TYPE, JSON_TYPE)
                .body(Body::from(body.to_string())),
            None => builder.body(Body::empty()),
        };
        resp.unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

/// Who calls, and the request's identity.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub user: Uuid,
    pub correlation: Uuid,
    /// `http://host:port` as the client addressed the simulator.
    pub origin: String,
    pub in_batch: bool,
    /// The largest page served.
    pub max_page: usize,
}

impl Ctx {
    /// The service root, `{origin}/api/data/v9.2/`.
    pub fn root(&self) -> String {
        format!("{}/api/data/v9.2/", self.origin)
    }

    pub fn entity_url(&self, table: &Table, id: &Uuid) -> String {
        format!("{}{}({id})", self.root(), table.set)
    }
}

/// A write that has been applied, with what it takes to undo it and the events it fired.
#[derive(Debug)]
pub struct Applied {
    pub response: ApiResponse,
    pub undo: Vec<Undo>,
    pub events: Vec<Event>,
    pub bypass: Bypass,
}

pub enum Done {
    Read(ApiResponse),
    Write(Applied),
}

/// What a URL addresses.
#[derive(Debug)]
pub enum Target {
    WhoAmI,
    Batch,
    Unbound(String),
    Set(&'static Table),
    Row(&'static Table, Uuid),
    Nav(&'static Table, Uuid, &'static Relationship),
    NavRef(&'static Table, Uuid, String),
    Prop(&'static Table, Uuid, &'static Column),
    Action(&'static Table, Uuid, String),
    /// An action bound to an entity set (`contacts/Microsoft.Dynamics.CRM.CreateMultiple`).
    SetAction(&'static Table, String),
}

const ACTION_PREFIX: &str = "Microsoft.Dynamics.CRM.";
const UNBOUND_ACTIONS: [&str; 2] = ["AddListMembersList", "BulkDelete"];

fn parse_key(table: &Table, key: &str) -> Result<Uuid, ApiError> {
    let key = key.trim();
    let key = match key.split_once('=') {
        Some((name, value)) if name.trim() == table.pk => value,
        Some(_) => {
            return Err(ApiError::query(format!(
                "Alternate keys ('{key}') are not supported by the sandbox; address rows by their primary key."
            )));
        }
        None => key,
    };
    store::parse_guid(key).ok_or_else(|| {
        ApiError::query(format!(
            "Bad Request - Error in query syntax: '{key}' is not a valid key of {}.",
            table.set
        ))
    })
}

/// Parses `name` or `name(key)`.
fn split_segment(seg: &str) -> Result<(&str, Option<&str>), ApiError> {
    match seg.find('(') {
        Some(open) => {
            let close = seg.rfind(')').filter(|c| *c > open).ok_or_else(|| {
                ApiError::query(format!("Bad Request - Error in query syntax: '{seg}'."))
            })?;
            if close != seg.len() - 1 {
                return Err(ApiError::query(format!(
                    "Bad Request - Error in query syntax: '{seg}'."
                )));
            }
            Ok((&seg[..open], Some(&seg[open + 1..close])))
        }
        None => Ok((seg, None)),
    }
}

pub fn parse_target(catalog: &Catalog, path: &str) -> Result<Target, ApiError> {
    let path = path.trim_matches('/');
    let mut segs = path.split('/');
    let first = segs.next().unwrap_or_default();
    let (name, key) = split_segment(first)?;
    let rest: Vec<&str> = segs.collect();
    if name == "$batch" && key.is_none() && rest.is_empty() {
        return Ok(Target::Batch);
    }
    if (name == "WhoAmI") && rest.is_empty() && key.is_none_or(|k| k.is_empty()) {
        return Ok(Target::WhoAmI);
    }
    if UNBOUND_ACTIONS.contains(&name) && rest.is_empty() && key.is_none() {
        return Ok(Target::Unbound(name.to_string()));
    }
    if let Some(unbound) = name.strip_prefix(ACTION_PREFIX)
        && UNBOUND_ACTIONS.contains(&unbound)
        && rest.is_empty()
    {
        return Ok(Target::Unbound(unbound.to_string()));
    }
    let table = catalog
        .by_set(name)
        .ok_or_else(|| ApiError::segment_not_found(name))?;
    let Some(key) = key else {
        return match rest.as_slice() {
            [] => Ok(Target::Set(table)),
            [seg] if seg.starts_with(ACTION_PREFIX) => Ok(Target::SetAction(
                table,
                seg.trim_start_matches(ACTION_PREFIX).to_string(),
            )),
            [seg, ..] => Err(ApiError::segment_not_found(seg)),
        };
    };
    let id = parse_key(table, key)?;
    match rest.as_slice() {
        [] => Ok(Target::Row(table, id)),
        [seg] => {
            if let Some(action) = seg.strip_prefix(ACTION_PREFIX) {
                return Ok(Target::Action(table, id, action.to_string()));
            }
            if let Some(rel) = schema::relationship(seg)
                && (rel.entity1 == table.logical || rel.entity2 == table.logical)
            {
                return Ok(Target::Nav(table, id, rel));
            }
            match table.column(seg) {
                Some(c) if !matches!(c.kind, Kind::Lookup(_)) && c.access != Access::WriteOnly => {
                    Ok(Target::Prop(table, id, c))
                }
                _ => Err(ApiError::segment_not_found(seg)),
            }
        }
        [nav, "$ref"] => Ok(Target::NavRef(table, id, nav.to_string())),
        [_, seg, ..] => Err(ApiError::segment_not_found(seg)),
    }
}

fn stat_key(method: &Method, target: &Target) -> String {
    match target {
        Target::WhoAmI => format!("{method} WhoAmI"),
        Target::Batch => format!("{method} $batch"),
        Target::Unbound(a) | Target::Action(_, _, a) | Target::SetAction(_, a) => {
            format!("{method} {a}")
        }
        Target::Set(t) | Target::Row(t, _) | Target::Prop(t, _, _) => format!("{method} {}", t.set),
        Target::Nav(t, _, r) => format!("{method} {}/{}", t.set, r.name),
        Target::NavRef(t, _, n) => format!("{method} {}/{n}/$ref", t.set),
    }
}

// --- entry and dispatch --------------------------------------------------------------------

/// The origin the client used (`Host` header), so that links point back the same way. Behind
/// a TLS front (a proxy on 127.0.0.1 that terminates HTTPS for clients that refuse plain HTTP)
/// the front's `X-Forwarded-Proto: https` makes it `https://{host}`.
pub(crate) fn origin(sim: &Shared, headers: &HeaderMap) -> String {
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .map(str::trim)
    {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) if !host.is_empty() => format!("{scheme}://{host}"),
        _ => sim.base_url.clone(),
    }
}

/// The axum handler for everything under `/api/data/v9.2/`.
pub async fn entry(
    State(sim): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let user = match auth::authenticate(&sim, &headers) {
        Ok(u) => u,
        Err(e) => {
            let challenge = format!(
                "Bearer authorization_uri=https://login.microsoftonline.com/{}/oauth2/authorize, resource_id={}",
                sim.config.tenant_id, sim.base_url
            );
            return ApiResponse::from_error(&e)
                .with_header("WWW-Authenticate", challenge)
                .into_axum();
        }
    };
    let url_length =
        origin(&sim, &headers).len() + uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if url_length > MAX_URL_CHARS {
        return ApiResponse::from_error(&url_too_long(url_length, MAX_URL_CHARS)).into_axum();
    }
    if body.len() > MAX_REQUEST_BYTES {
        return ApiResponse::from_error(&ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            super::error::code::REFUSED,
            format!("The request body of {} bytes is larger than the {MAX_REQUEST_BYTES} bytes allowed.", body.len()),
        ))
        .into_axum();
    }
    let _guard = match sim.enter(user) {
        Ok(g) => g,
        Err(e) => {
            return ApiResponse::from_error(&e).into_axum();
        }
    };
    let raw_path = uri.path();
    let path = raw_path
        .strip_prefix("/api/data/v9.2/")
        .or_else(|| raw_path.strip_prefix("/api/data/v9.2"))
        .unwrap_or_default();
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned();
    let req = ApiRequest::new(method, &path, uri.query(), headers, body);
    let ctx = Ctx {
        user,
        correlation: Uuid::new_v4(),
        origin: origin(&sim, &req.headers),
        in_batch: false,
        max_page: sim.config.max_page_size.clamp(1, MAX_PAGE),
    };
    if req.path.trim_matches('/') == "$batch" {
        return batch::handle(&sim, &ctx, req).await;
    }
    handle(&sim, &ctx, req).await.into_axum()
}

/// Runs one request to its end (writes are committed).
pub async fn handle(sim: &Arc<Shared>, ctx: &Ctx, req: ApiRequest) -> ApiResponse {
    match execute(sim, ctx, &req) {
        Err(e) => ApiResponse::from_error(&e),
        Ok(Done::Read(r)) => r,
        Ok(Done::Write(a)) => commit(sim, a).await,
    }
}

/// Runs synchronous steps for an applied write and queues the asynchronous ones; rolls the
/// write back when a synchronous step fails.
pub async fn commit(sim: &Arc<Shared>, applied: Applied) -> ApiResponse {
    match deliver_sync(sim, &applied).await {
        Ok(jobs) => {
            webhooks::enqueue(sim, jobs);
            applied.response
        }
        Err(e) => {
            sim.lock_store().rollback(applied.undo);
            ApiResponse::from_error(&e)
        }
    }
}

/// Delivers the synchronous steps of an applied write; returns the asynchronous deliveries.
pub async fn deliver_sync(sim: &Arc<Shared>, applied: &Applied) -> Result<Vec<Job>, ApiError> {
    if applied.events.is_empty() {
        return Ok(Vec::new());
    }
    let (sync, asynchronous) = {
        let store = sim.lock_store();
        webhooks::build_jobs(&store, &sim.org, &applied.events, applied.bypass)
    };
    sim.webhooks.run_sync(sync).await?;
    Ok(asynchronous)
}

/// Applies one request under the store lock: a read's answer, or a write to commit.
pub fn execute(sim: &Shared, ctx: &Ctx, req: &ApiRequest) -> Result<Done, ApiError> {
    if req.header("CallerObjectId").is_some() || req.header("MSCRMCallerID").is_some() {
        return Err(ApiError::bad_request(
            super::error::code::REFUSED,
            "Impersonation (CallerObjectId, MSCRMCallerID) is not supported by the sandbox; call as the token's own user.",
        ));
    }
    let mut store = sim.lock_store();
    if let Some(done) = super::metadata::execute(sim, &mut store, ctx, req)? {
        return Ok(done);
    }
    let target = parse_target(store.catalog(), &req.path)?;
    sim.count_request(stat_key(&req.method, &target));
    if req.method != Method::GET {
        sim.log_customization(&target, req);
    }
    let m = req.method.clone();
    let done = match target {
        Target::WhoAmI if m == Method::GET => Done::Read(who_am_i(sim, ctx)),
        Target::Set(t) if m == Method::GET => {
            Done::Read(read_collection(sim, &store, ctx, req, t, None)?)
        }
        Target::Set(t) if m == Method::POST => {
            Done::Write(write::create(sim, &mut store, ctx, req, t)?)
        }
        Target::Row(t, id) if m == Method::GET => Done::Read(read_row(&store, ctx, req, t, id)?),
        Target::Row(t, id) if m == Method::PATCH => {
            Done::Write(write::patch(sim, &mut store, ctx, req, t, id)?)
        }
        Target::Row(t, id) if m == Method::DELETE => {
            Done::Write(write::delete(sim, &mut store, ctx, req, t, id)?)
        }
        Target::Nav(t, id, rel) if m == Method::GET => {
            Done::Read(read_collection(sim, &store, ctx, req, t, Some((id, rel)))?)
        }
        Target::Prop(t, id, c) if m == Method::GET => {
            Done::Read(read_property(&store, ctx, t, id, c)?)
        }
        Target::Prop(t, id, c) if m == Method::PUT || m == Method::DELETE => {
            Done::Write(write::put_property(sim, &mut store, ctx, req, t, id, c)?)
        }
        Target::Action(t, id, a) if m == Method::POST => {
            Done::Write(write::bound_action(sim, &mut store, ctx, req, t, id, &a)?)
        }
        Target::Unbound(a) if m == Method::POST => {
            Done::Write(write::unbound_action(sim, &mut store, ctx, req, &a)?)
        }
        Target::SetAction(t, a) => {
            Done::Write(super::bulk::set_action(sim, &mut store, ctx, req, t, &a)?)
        }
        Target::NavRef(t, id, nav) if m == Method::POST => Done::Write(super::security::associate(
            sim, &mut store, ctx, req, t, id, &nav,
        )?),
        Target::NavRef(t, _, nav) => return Err(write::refuse_associate(t, &nav)),
        Target::Batch => {
            return Err(ApiError::query(
                "A $batch request cannot contain another $batch request.",
            ));
        }
        _ => return Err(ApiError::method_not_allowed(m.as_str())),
    };
    Ok(done)
}

fn who_am_i(sim: &Shared, ctx: &Ctx) -> ApiResponse {
    ApiResponse::json(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", ctx.root()),
            "BusinessUnitId": sim.org.business_unit_id.to_string(),
            "UserId": ctx.user.to_string(),
            "OrganizationId": sim.org.organization_id.to_string(),
        }),
    )
}

// --- rendering -----------------------------------------------------------------------------

pub fn etag(row: &Row) -> String {
    format!(
        "W/\"{}\"",
        row.get("versionnumber")
            .and_then(|v| v.as_int())
            .unwrap_or(0)
    )
}

fn thousands(i: i64) -> String {
    let s = i.abs().to_string();
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n > 0 && (s.len() - n).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if i < 0 { format!("-{out}") } else { out }
}

/// The `FormattedValue` of a value.
pub fn formatted(store: &Store, table: &Table, column: &Column, v: &Val) -> Option<String> {
    match (column.kind, v) {
        (Kind::Choice(_) | Kind::State | Kind::Status, Val::Int(i)) => {
            table.label(column, *i).map(str::to_string)
        }
        (Kind::Bool, Val::Bool(b)) => Some(if *b { "Yes" } else { "No" }.to_string()),
        (Kind::Int, Val::Int(i)) if column.name != "versionnumber" => Some(thousands(*i)),
        (Kind::DateTime, Val::Date(d)) => Some(d.format("%-m/%-d/%Y %-I:%M %p").to_string()),
        (Kind::Lookup(_), Val::Ref(t, id)) => store.primary_name(t, id),
        _ => None,
    }
}

/// Writes one property with its annotations. `key` is the output name.
#[allow(clippy::too_many_arguments)]
pub fn put_value(
    out: &mut Map<String, Value>,
    store: &Store,
    table: &Table,
    column: &Column,
    key: &str,
    v: Option<&Val>,
    prefer: &Prefer,
    omit_null: bool,
) {
    let Some(v) = v else {
        if !omit_null {
            out.insert(key.to_string(), Value::Null);
        }
        return;
    };
    if prefer.wants(FORMATTED)
        && let Some(f) = formatted(store, table, column, v)
    {
        out.insert(format!("{key}@{FORMATTED}"), Value::String(f));
    }
    if let (Kind::Lookup(navs), Val::Ref(target, _)) = (column.kind, v) {
        if prefer.wants(NAVPROPERTY)
            && let Some(nav) = navs.iter().find(|n| n.target == *target)
        {
            out.insert(
                format!("{key}@{NAVPROPERTY}"),
                Value::String(nav.name.to_string()),
            );
        }
        if prefer.wants(LOOKUPLOGICALNAME) {
            out.insert(
                format!("{key}@{LOOKUPLOGICALNAME}"),
                Value::String(target.to_string()),
            );
        }
    }
    out.insert(key.to_string(), v.to_json());
}

/// A single-valued navigation property to expand.
#[derive(Debug, Clone)]
pub struct Expand {
    pub nav: &'static Nav,
    pub column: &'static Column,
    pub select: Option<Vec<Field>>,
}

pub fn parse_expand(
    catalog: &Catalog,
    table: &Table,
    expand: Option<&str>,
) -> Result<Vec<Expand>, ApiError> {
    let Some(expand) = expand else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for item in split_outside_parens(expand) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, options) = match item.find('(') {
            Some(i) if item.ends_with(')') => (&item[..i], Some(&item[i + 1..item.len() - 1])),
            _ => (item, None),
        };
        let Some((column, nav)) = table.nav(name) else {
            if schema::relationship(name).is_some() {
                return Err(ApiError::query(format!(
                    "Expanding the collection-valued navigation property '{name}' is not supported by the sandbox; read it as {}(id)/{name}.",
                    table.set
                )));
            }
            return Err(ApiError::query(format!(
                "Could not find a property named '{name}' on type '{}'.",
                table.odata_type()
            )));
        };
        let target = catalog
            .table(nav.target)
            .ok_or_else(|| ApiError::query(format!("Unknown table '{}'.", nav.target)))?;
        let mut select = None;
        if let Some(options) = options {
            for opt in options.split(';') {
                match opt.split_once('=') {
                    Some(("$select", list)) => select = query::parse_select(target, Some(list))?,
                    _ => {
                        return Err(ApiError::query(format!(
                            "The $expand option '{opt}' is not supported by the sandbox (only $select)."
                        )));
                    }
                }
            }
        }
        out.push(Expand {
            nav,
            column,
            select,
        });
    }
    Ok(out)
}

fn split_outside_parens(s: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if c == ',' && depth == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
}

/// A row as the Web API returns it.
pub fn render_row(
    store: &Store,
    table: &Table,
    row: &Row,
    select: &Option<Vec<Field>>,
    expand: &[Expand],
    prefer: &Prefer,
) -> Map<String, Value> {
    // Web resources and forms are read as published (docs: RetrieveUnpublished for the rest).
    let row: &Row = &super::forms::published_view(table, row);
    let mut out = Map::new();
    out.insert("@odata.etag".into(), Value::String(etag(row)));
    let columns: Vec<&'static Column> = match select {
        None => table
            .all_columns()
            .filter(|c| c.access != Access::WriteOnly)
            .collect(),
        Some(fields) => {
            let mut cs: Vec<&'static Column> = fields.iter().map(|f| f.column).collect();
            if let Some(pk) = table.column(table.pk)
                && !cs.iter().any(|c| c.name == table.pk)
            {
                cs.push(pk);
            }
            cs
        }
    };
    for column in columns {
        let key = Field { column }.property();
        put_value(
            &mut out,
            store,
            table,
            column,
            &key,
            row.get(column.name),
            prefer,
            false,
        );
    }
    for e in expand {
        let value = match row.get(e.column.name) {
            Some(Val::Ref(target, id)) if *target == e.nav.target => {
                match (store.catalog().table(target), store.get(target, id)) {
                    (Some(t), Some(r)) => {
                        Value::Object(render_row(store, t, r, &e.select, &[], prefer))
                    }
                    _ => Value::Null,
                }
            }
            _ => Value::Null,
        };
        out.insert(e.nav.name.to_string(), value);
    }
    out
}

fn context_url(ctx: &Ctx, table: &Table, select: &Option<Vec<Field>>) -> String {
    match select {
        None => format!("{}$metadata#{}", ctx.root(), table.set),
        Some(fields) => {
            let mut names: Vec<String> = fields.iter().map(|f| f.property()).collect();
            if !names.iter().any(|n| n == table.pk) {
                names.push(table.pk.to_string());
            }
            format!("{}$metadata#{}({})", ctx.root(), table.set, names.join(","))
        }
    }
}

// --- reads ---------------------------------------------------------------------------------

const SUPPORTED_OPTIONS: [&str; 8] = [
    "$select",
    "$filter",
    "$orderby",
    "$top",
    "$count",
    "$skiptoken",
    "$expand",
    "fetchXml",
];

fn check_options(req: &ApiRequest) -> Result<(), ApiError> {
    for (k, _) in &req.query {
        if k == "sql" {
            // The SQL preview of the Web API reads tables with T-SQL; the sandbox has no SQL
            // engine and must not answer the whole table as if the query had run.
            return Err(ApiError::not_implemented(
                "The 'sql' query parameter (Dataverse's SQL query preview) is not simulated by the sandbox; use $filter or fetchXml.",
            ));
        }
        if k == "$skip" {
            return Err(ApiError::query(
                "The query parameter $skip is not supported.",
            ));
        }
        if k.starts_with('$') && !SUPPORTED_OPTIONS.contains(&k.as_str()) {
            return Err(ApiError::query(format!(
                "The query parameter '{k}' is not supported by the sandbox."
            )));
        }
    }
    Ok(())
}

/// The other table of an N:N relationship and the ids of the rows related to `id`.
pub fn related(
    store: &Store,
    table: &'static Table,
    id: Uuid,
    rel: &'static Relationship,
) -> Option<(&'static Table, Arc<Vec<Uuid>>)> {
    let (own_attr, other_attr, other) = if rel.entity1 == table.logical {
        (rel.attr1, rel.attr2, rel.entity2)
    } else {
        (rel.attr2, rel.attr1, rel.entity1)
    };
    let other_table = store.catalog().table(other)?;
    // Untyped ids (campaignitem.entityid, campaignactivityitem.itemid) carry their table in a
    // separate column; the other intersects' ids always name the relationship's tables.
    let type_column = match rel.intersect {
        "campaignitem" => Some("entitytype"),
        "campaignactivityitem" => Some("itemobjecttypecode"),
        _ => None,
    };
    // Borrowed, not copied: a list of 600,000 members is 1.2 million of these a page.
    fn type_of<'r>(
        row: &'r Row,
        attr: &str,
        of: &'static str,
        type_column: Option<&str>,
    ) -> Option<&'r str> {
        match row.get(attr) {
            Some(Val::Ref(t, _)) => Some(*t),
            Some(Val::Guid(_)) => match type_column {
                Some(tc) => row.get(tc).and_then(|v| v.as_str()),
                None => Some(of),
            },
            _ => None,
        }
    }
    let ids = store.related_ids((rel.name, id, table.logical), rel.intersect, || {
        let mut ids = Vec::new();
        for (_, row) in store.table_rows(rel.intersect) {
            if row.get(own_attr).and_then(|v| v.guid()) != Some(id)
                || type_of(row, own_attr, table.logical, type_column) != Some(table.logical)
                || type_of(row, other_attr, other, type_column) != Some(other)
            {
                continue;
            }
            if let Some(other_id) = row.get(other_attr).and_then(|v| v.guid()) {
                ids.push(other_id);
            }
        }
        ids
    });
    Some((other_table, ids))
}

fn read_collection(
    sim: &Shared,
    store: &Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    within: Option<(Uuid, &'static Relationship)>,
) -> Result<ApiResponse, ApiError> {
    check_options(req)?;
    let prefer = req.prefer();
    let (table, only): (&'static Table, Option<Arc<Vec<Uuid>>>) = match within {
        None => (table, None),
        Some((id, rel)) => {
            if !store.contains(table.logical, &id) {
                return Err(ApiError::row_not_found(table.logical, &id));
            }
            let (other, ids) = related(store, table, id, rel)
                .ok_or_else(|| ApiError::segment_not_found(rel.name))?;
            (other, Some(ids))
        }
    };
    if let Some(fetch) = req.param("fetchXml") {
        if only.is_some() {
            return Err(ApiError::query(
                "fetchXml cannot be combined with a navigation property.",
            ));
        }
        sim.count_page();
        return fetchxml::execute(store, ctx, req, table, fetch, &prefer);
    }
    let select = query::parse_select(table, req.param("$select"))?;
    let filter = req
        .param("$filter")
        .map(|f| query::parse_filter(table, f))
        .transpose()?;
    let order = query::parse_orderby(table, req.param("$orderby"))?;
    let expand = parse_expand(store.catalog(), table, req.param("$expand"))?;
    let count = match req.param("$count") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::query(format!(
                "'{other}' is not a valid value for $count."
            )));
        }
    };
    let top = req
        .param("$top")
        .map(|t| {
            t.parse::<usize>().map_err(|_| {
                ApiError::query(format!("Invalid value '{t}' for $top query option found."))
            })
        })
        .transpose()?;

    let cursor = match req.param("$skiptoken") {
        None => None,
        Some(token) => {
            let inner = query::inner_from_skiptoken(token)
                .and_then(|inner| query::parse_inner_cookie(table, &order, &inner))
                .map_err(|e| ApiError::query(format!("The $skiptoken is not valid: {e}.")))?;
            Some(inner)
        }
    };
    let (size, pageable) = match (prefer.maxpagesize, top) {
        (Some(n), _) => (n.clamp(1, ctx.max_page), true),
        (None, Some(t)) => (t.min(ctx.max_page), false),
        (None, None) => (ctx.max_page, true),
    };

    let matches = |r: &Row| filter.as_ref().is_none_or(|f| f.matches(r));
    let (mut rows, total): (Vec<(query::SortKey, &Row)>, usize) = match &only {
        // Related rows in primary-key order without a count: the sorted related ids are
        // walked from the cursor for one page (and one row to know there is more), so a page
        // of a list of 600,000 members costs a page, not a scan of the member table.
        Some(ids) if order.is_empty() && !count => {
            let start = cursor
                .as_ref()
                .map_or(0, |c| ids.partition_point(|id| *id <= c.last.1));
            let rows: Vec<(query::SortKey, &Row)> = ids[start..]
                .iter()
                .filter_map(|id| store.get(table.logical, id).map(|r| (id, r)))
                .filter(|(_, r)| matches(r))
                .take(size + 1)
                .map(|(id, r)| (query::sort_key(&order, id, r), r))
                .collect();
            let total = rows.len();
            (rows, total)
        }
        _ => {
            let only: Option<HashSet<&Uuid>> = only.as_ref().map(|ids| ids.iter().collect());
            let mut rows: Vec<(query::SortKey, &Row)> = store
                .table_rows(table.logical)
                .filter(|(id, _)| only.as_ref().is_none_or(|o| o.contains(id)))
                .filter(|(_, r)| matches(r))
                .map(|(id, r)| (query::sort_key(&order, id, r), r))
                .collect();
            let total = rows.len();
            if let Some(c) = &cursor {
                rows.retain(|(k, _)| {
                    query::cmp_keys(&order, k, &c.last) == std::cmp::Ordering::Greater
                });
            }
            (rows, total)
        }
    };
    let more = rows.len() > size;
    // Only the page is sorted: the rows after it are left unordered (a page of 5,000 of a
    // table of a million is read in a few milliseconds, not a sort of the million).
    if more {
        rows.select_nth_unstable_by(size, |a, b| query::cmp_keys(&order, &a.0, &b.0));
        rows.truncate(size);
    }
    rows.sort_by(|a, b| query::cmp_keys(&order, &a.0, &b.0));
    let page = cursor.as_ref().map(|c| c.page + 1).unwrap_or(1);

    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(context_url(ctx, table, &select)),
    );
    if count {
        body.insert("@odata.count".into(), Value::from(total.min(MAX_PAGE)));
    }
    if count && prefer.wants(TOTALCOUNT) {
        body.insert(format!("@{TOTALCOUNT}"), Value::from(total.min(MAX_PAGE)));
    }
    if count && prefer.wants(TOTALCOUNTEXCEEDED) {
        body.insert(
            format!("@{TOTALCOUNTEXCEEDED}"),
            Value::Bool(total > MAX_PAGE),
        );
    }
    let values: Vec<Value> = rows
        .iter()
        .map(|(_, r)| Value::Object(render_row(store, table, r, &select, &expand, &prefer)))
        .collect();
    if more
        && pageable
        && let (Some(first), Some(last)) = (rows.first(), rows.last())
    {
        let inner = query::inner_cookie(table, &order, page, &first.0, &last.0);
        let token = query::outer_cookie(page + 1, &inner, 1);
        body.insert(
            "@odata.nextLink".into(),
            Value::String(next_link(ctx, req, &token)),
        );
    }
    body.insert("value".into(), Value::Array(values));
    sim.count_page();
    let mut resp = ApiResponse::json(StatusCode::OK, Value::Object(body));
    if let Some(applied) = applied_preferences(&prefer, Some(ctx.max_page)) {
        resp = resp.with_header("Preference-Applied", applied);
    }
    Ok(resp)
}

fn next_link(ctx: &Ctx, req: &ApiRequest, token: &str) -> String {
    let mut params: Vec<String> = req
        .raw_query
        .iter()
        .filter(|(k, _)| query::decode_component(k) != "$skiptoken")
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    params.push(format!("$skiptoken={}", query::url_encode_value(token)));
    format!(
        "{}{}?{}",
        ctx.root(),
        req.path.trim_matches('/'),
        params.join("&")
    )
}

/// The `Preference-Applied` header for the preferences honoured.
pub fn applied_preferences(prefer: &Prefer, max_page: Option<usize>) -> Option<String> {
    let mut applied = Vec::new();
    if let (Some(max), Some(n)) = (max_page, prefer.maxpagesize) {
        applied.push(format!("odata.maxpagesize={}", n.clamp(1, max)));
    }
    if let Some(a) = &prefer.annotations {
        applied.push(format!("odata.include-annotations=\"{a}\""));
    }
    if applied.is_empty() {
        None
    } else {
        Some(applied.join(","))
    }
}

fn read_row(
    store: &Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
) -> Result<ApiResponse, ApiError> {
    check_options(req)?;
    let row = store
        .get(table.logical, &id)
        .ok_or_else(|| ApiError::row_not_found(table.logical, &id))?;
    let prefer = req.prefer();
    let select = query::parse_select(table, req.param("$select"))?;
    let expand = parse_expand(store.catalog(), table, req.param("$expand"))?;
    if let Some(tag) = req.header("If-None-Match")
        && tag.trim() == etag(row)
    {
        return Ok(ApiResponse::empty(StatusCode::NOT_MODIFIED));
    }
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!("{}/$entity", context_url(ctx, table, &select))),
    );
    body.extend(render_row(store, table, row, &select, &expand, &prefer));
    let mut resp = ApiResponse::json(StatusCode::OK, Value::Object(body));
    if let Some(applied) = applied_preferences(&prefer, None) {
        resp = resp.with_header("Preference-Applied", applied);
    }
    Ok(resp)
}

fn read_property(
    store: &Store,
    ctx: &Ctx,
    table: &'static Table,
    id: Uuid,
    column: &'static Column,
) -> Result<ApiResponse, ApiError> {
    let row = store
        .get(table.logical, &id)
        .ok_or_else(|| ApiError::row_not_found(table.logical, &id))?;
    let row = super::forms::published_view(table, row);
    match row.get(column.name) {
        None => Ok(ApiResponse::empty(StatusCode::NO_CONTENT)),
        Some(v) => Ok(ApiResponse::json(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}$metadata#{}({id})/{}", ctx.root(), table.set, column.name),
                "value": v.to_json(),
            }),
        )),
    }
}
