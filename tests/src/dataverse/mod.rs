//! A stateful, in-process simulator of the Dataverse Web API that fires webhooks the way
//! Dataverse does (docs/architecture.md §8;
//! <https://learn.microsoft.com/power-apps/developer/data-platform/webapi/overview>).
//!
//! - Token endpoint: `POST /{tenant}/oauth2/v2.0/token` (client credentials, Entra error shapes)
//!   and the tenant's OpenID discovery document MSAL reads first.
//! - Web API under `/api/data/v9.2/`: the connector's tables ([`schema`]), `$select`, a `$filter`
//!   subset, `$orderby`, `$top`, `$count`, single-valued `$expand`, paging with
//!   `odata.maxpagesize` and `@odata.nextLink`, N:N navigation, FetchXML, writes with upsert and
//!   conditions, the list and campaign membership actions, `CreateMultiple`, `UpdateMultiple`
//!   and `BulkDelete`, `$batch` with change sets, `WhoAmI`, Dataverse error bodies with
//!   `x-ms-service-request-id`, and the 52 concurrent requests limit per user. It can sit
//!   behind a TLS front (`X-Forwarded-Proto: https`).
//! - Webhooks registered through the Web API (`serviceendpoints`, `sdkmessageprocessingsteps`,
//!   `sdkmessageprocessingstepimages`) receive `RemoteExecutionContext` bodies after each write.
//! - Fault injection ([`crate::faults`]) on every route except `/_sim/`; control endpoints
//!   `GET /_sim/stats`, `GET /_sim/webhooks/deliveries`, `POST /_sim/reset`,
//!   `GET /_sim/rows/{entity_set}`, `/_sim/faults`, and the bulk seeding of [`seeding`].
//!
//! Sandbox choices where Dataverse documents nothing are listed in `tests/src/dataverse/README.md`.

mod api;
mod auth;
mod batch;
mod bulk;
pub mod catalog;
pub mod client;
pub mod error;
mod fetchxml;
pub mod forms;
mod metadata;
mod query;
pub mod schema;
mod security;
pub mod seeding;
mod store;
mod webhooks;
mod write;
mod xml;

pub use client::{Reply, WebApi};
pub use webhooks::Delivery;

use crate::faults::{Faults, fault_layer};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get, post};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Row, Store, Val};
use uuid::Uuid;

/// The default tenant (directory) id.
pub const TENANT_ID: &str = "7e57e57e-0000-4000-8000-000000000000";
/// The connector's app registration and application user.
pub const CONNECTOR_CLIENT_ID: &str = "c0c0c0c0-0000-4000-8000-000000000001";
pub const CONNECTOR_CLIENT_SECRET: &str = "sandbox-connector-secret";
pub const CONNECTOR_USER_ID: &str = "aaaaaaaa-0000-4000-8000-000000000001";
/// A person changing CRM data in tests (an administrator).
pub const ADMIN_CLIENT_ID: &str = "c0c0c0c0-0000-4000-8000-000000000002";
pub const ADMIN_CLIENT_SECRET: &str = "sandbox-admin-secret";
pub const ADMIN_USER_ID: &str = "aaaaaaaa-0000-4000-8000-000000000002";
/// The organization's id and its root business unit.
pub const ORGANIZATION_ID: &str = "0a0a0a0a-0000-4000-8000-000000000001";
pub const BUSINESS_UNIT_ID: &str = "b0b0b0b0-0000-4000-8000-000000000001";

/// An app registration (client credentials) and the application user it acts as.
#[derive(Clone, PartialEq, Eq)]
pub struct SimClient {
    pub client_id: String,
    pub client_secret: String,
    /// Its `systemusers` row id.
    pub user_id: String,
    pub name: String,
    /// Security roles of its user (`System Administrator`, `System Customizer`, `Basic User`).
    pub roles: Vec<String>,
}

impl std::fmt::Debug for SimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("user_id", &self.user_id)
            .field("name", &self.name)
            .field("roles", &self.roles)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct DataverseSimConfig {
    /// Where to listen; the default `127.0.0.1:0` picks a free port.
    pub bind: SocketAddr,
    pub tenant_id: String,
    /// The unique org name (`OrganizationName` in webhook bodies).
    pub org_name: String,
    /// The environment's domain, sent as `x-ms-dynamics-organization`.
    pub org_domain: String,
    pub clients: Vec<SimClient>,
    /// The largest page (`odata.maxpagesize` is capped to it); Dataverse: 5000.
    pub max_page_size: usize,
    pub token_ttl_secs: u64,
    /// Webhook request timeout; Dataverse: 60 s.
    pub webhook_timeout: Duration,
    /// Concurrent requests per user before 429; Dataverse: 52.
    pub concurrency_limit: usize,
    /// The org's provisioned languages, the base language first.
    pub languages: Vec<i64>,
    /// Standard tables with Dataverse change tracking on.
    pub change_tracked: Vec<String>,
}

impl Default for DataverseSimConfig {
    fn default() -> Self {
        DataverseSimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tenant_id: TENANT_ID.to_string(),
            org_name: "unqsandbox".to_string(),
            org_domain: "sandbox.crm4.dynamics.com".to_string(),
            clients: vec![
                SimClient {
                    client_id: CONNECTOR_CLIENT_ID.to_string(),
                    client_secret: CONNECTOR_CLIENT_SECRET.to_string(),
                    user_id: CONNECTOR_USER_ID.to_string(),
                    name: "connector".to_string(),
                    // Its role comes from the installer (`--app-user`).
                    roles: Vec::new(),
                },
                SimClient {
                    client_id: ADMIN_CLIENT_ID.to_string(),
                    client_secret: ADMIN_CLIENT_SECRET.to_string(),
                    user_id: ADMIN_USER_ID.to_string(),
                    name: "admin".to_string(),
                    roles: vec![security::SYSTEM_ADMINISTRATOR.to_string()],
                },
            ],
            max_page_size: api::MAX_PAGE,
            token_ttl_secs: 3599,
            webhook_timeout: Duration::from_secs(60),
            concurrency_limit: 52,
            languages: vec![1033, 1031],
            change_tracked: Vec::new(),
        }
    }
}

/// What the simulator served.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestStats {
    /// Requests by `"<METHOD> <entity set>"` (rows and properties count under their set),
    /// `"<METHOD> <set>/<navigation>"`, `"POST <action>"` (e.g. `POST AddMemberList`) and
    /// `"GET WhoAmI"`. Parts of a `$batch` count here too.
    pub requests: BTreeMap<String, u64>,
    /// `$batch` requests and the operations they held.
    pub batches: u64,
    pub batch_parts: u64,
    /// Collection pages served (OData and FetchXML).
    pub pages: u64,
    /// Tokens issued.
    pub tokens: u64,
    /// Requests refused by the concurrency limit.
    pub throttled: u64,
}

impl RequestStats {
    /// Requests with this key (`"GET contacts"`).
    pub fn count(&self, key: &str) -> u64 {
        self.requests.get(key).copied().unwrap_or(0)
    }

    /// All requests except tokens.
    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }
}

/// State shared by the handlers.
pub(crate) struct Shared {
    pub config: DataverseSimConfig,
    pub base_url: String,
    pub org: webhooks::Org,
    pub store: Mutex<Store>,
    pub tokens: Mutex<HashMap<String, auth::Token>>,
    pub stats: Mutex<RequestStats>,
    pub webhooks: webhooks::Webhooks,
    pub inflight: Mutex<HashMap<Uuid, usize>>,
    /// Customization requests (metadata, solutions, roles, field security), oldest first.
    pub customizations: Mutex<Vec<CustomizationRequest>>,
    /// This state itself, for system jobs that run after their request (`BulkDelete`); weak, so
    /// that a job never keeps a stopped simulator alive.
    pub me: std::sync::Weak<Shared>,
}

/// A customization request as sent: method, path below the API root, the headers that carry
/// meaning for customizations, and the JSON body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomizationRequest {
    pub method: String,
    pub path: String,
    /// `MSCRM.SolutionUniqueName`, `MSCRM.MergeLabels`, `Consistency` when sent.
    pub headers: BTreeMap<String, String>,
    pub body: Value,
}

/// Holds one of a user's concurrent request slots.
pub(crate) struct Inflight<'a> {
    sim: &'a Shared,
    user: Uuid,
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        let mut m = self.sim.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.user) {
            *n = n.saturating_sub(1);
        }
    }
}

impl Shared {
    pub fn lock_store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stats(&self) -> MutexGuard<'_, RequestStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count_request(&self, key: String) {
        *self.stats().requests.entry(key).or_default() += 1;
    }

    /// Records a customization request.
    pub fn log_request(&self, req: &api::ApiRequest) {
        let headers = [
            "MSCRM.SolutionUniqueName",
            "MSCRM.MergeLabels",
            "Consistency",
        ]
        .iter()
        .filter_map(|h| req.header(h).map(|v| (h.to_string(), v.to_string())))
        .collect();
        let entry = CustomizationRequest {
            method: req.method.to_string(),
            path: req.path.trim_matches('/').to_string(),
            headers,
            body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
        };
        self.customizations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(entry);
    }

    /// Records a write to a customization or security table, or an association.
    pub fn log_customization(&self, target: &api::Target, req: &api::ApiRequest) {
        let customizing = match target {
            api::Target::Set(t) | api::Target::Row(t, _) => matches!(
                t.logical,
                "publisher"
                    | "solution"
                    | "role"
                    | "fieldsecurityprofile"
                    | "fieldpermission"
                    | "webresource"
                    | "systemform"
            ),
            api::Target::NavRef(..) => true,
            _ => false,
        };
        if customizing {
            self.log_request(req);
        }
    }

    pub fn count_page(&self) {
        self.stats().pages += 1;
    }

    pub fn count_batch(&self, parts: usize) {
        let mut s = self.stats();
        s.batches += 1;
        s.batch_parts += parts as u64;
    }

    pub fn count_token(&self) {
        self.stats().tokens += 1;
    }

    /// Takes a concurrent request slot, or refuses with 429 as service protection does.
    pub fn enter(&self, user: Uuid) -> Result<Inflight<'_>, error::ApiError> {
        let mut m = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(user).or_default();
        if *n >= self.config.concurrency_limit {
            drop(m);
            self.stats().throttled += 1;
            let mut e = error::ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                error::code::THROTTLED_CONCURRENCY,
                format!(
                    "Number of concurrent requests exceeded the limit of {}.",
                    self.config.concurrency_limit
                ),
            );
            e.retry_after = Some(1);
            return Err(e);
        }
        *n += 1;
        Ok(Inflight { sim: self, user })
    }

    fn ctx(&self, user: Uuid) -> api::Ctx {
        api::Ctx {
            user,
            correlation: Uuid::new_v4(),
            origin: self.base_url.clone(),
            in_batch: false,
            max_page: self.config.max_page_size.clamp(1, api::MAX_PAGE),
        }
    }

    /// Seeds what a new organization has: its systemusers (one per client), business unit,
    /// SDK messages and message filters.
    fn seed_platform(&self, store: &mut Store) {
        store.reset_catalog(&self.config.change_tracked);
        let now = store::now();
        let mut bu = Row::new();
        bu.insert("businessunitid", Val::Guid(self.org.business_unit_id));
        bu.insert("name", Val::Str(self.config.org_name.clone()));
        store.put("businessunit", self.org.business_unit_id, bu);
        for c in &self.config.clients {
            let Some(id) = store::parse_guid(&c.user_id) else {
                continue;
            };
            let mut row = Row::new();
            row.insert("systemuserid", Val::Guid(id));
            row.insert("fullname", Val::Str(c.name.clone()));
            row.insert("domainname", Val::Str(format!("{}@sandbox", c.name)));
            if let Some(app) = store::parse_guid(&c.client_id) {
                row.insert("applicationid", Val::Guid(app));
            }
            row.insert(
                "azureactivedirectoryobjectid",
                Val::Guid(webhooks::aad_object_id(id)),
            );
            row.insert("isdisabled", Val::Bool(false));
            row.insert("createdon", Val::Date(now));
            row.insert("modifiedon", Val::Date(now));
            row.insert("versionnumber", Val::Int(store.next_version()));
            store.put("systemuser", id, row);
        }
        for (name, id) in schema::MESSAGES.iter() {
            let id = Uuid::from_u128(*id);
            let mut row = Row::new();
            row.insert("sdkmessageid", Val::Guid(id));
            row.insert("name", Val::Str(name.to_string()));
            row.insert("isprivate", Val::Bool(false));
            row.insert("availability", Val::Int(0));
            row.insert("versionnumber", Val::Int(store.next_version()));
            store.put("sdkmessage", id, row);
        }
        for (message, entity) in schema::message_filters() {
            let (Some(id), Some(message_id)) = (
                schema::sdk_message_filter_id(message, entity),
                schema::sdk_message_id(message),
            ) else {
                continue;
            };
            let mut row = Row::new();
            row.insert("sdkmessagefilterid", Val::Guid(id));
            row.insert("name", Val::Str(format!("{message} {entity}")));
            row.insert("sdkmessageid", Val::Ref("sdkmessage", message_id));
            row.insert("primaryobjecttypecode", Val::Str(entity.to_string()));
            row.insert("secondaryobjecttypecode", Val::Str("none".to_string()));
            row.insert("iscustomprocessingstepallowed", Val::Bool(true));
            row.insert("isvisible", Val::Bool(true));
            row.insert("availability", Val::Int(0));
            row.insert("versionnumber", Val::Int(store.next_version()));
            store.put("sdkmessagefilter", id, row);
        }
        security::seed(store, self.org.business_unit_id, &self.config.org_name);
        forms::seed(store);
        for c in &self.config.clients {
            if let Some(id) = store::parse_guid(&c.user_id) {
                security::assign_roles(store, id, &c.roles);
            }
        }
    }

    fn reset(&self) {
        let mut store = self.lock_store();
        store.clear();
        self.seed_platform(&mut store);
        drop(store);
        *self.stats() = RequestStats::default();
        self.webhooks.clear_log();
        self.customizations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// A running simulator. Dropping it stops the server.
pub struct DataverseSim {
    shared: Arc<Shared>,
    faults: Faults,
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Errors of [`DataverseSim::seed`].
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("unknown entity set '{0}'")]
    UnknownSet(String),
    #[error("row {index} of {set} refused: {message}")]
    Refused {
        set: String,
        index: usize,
        message: String,
    },
}

impl DataverseSim {
    pub async fn spawn(config: DataverseSimConfig) -> std::io::Result<DataverseSim> {
        let listener = tokio::net::TcpListener::bind(config.bind).await?;
        let mut addr = listener.local_addr()?;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let base_url = format!("http://{addr}");
        let org = webhooks::Org {
            organization_id: store::parse_guid(ORGANIZATION_ID).unwrap_or_default(),
            organization_name: config.org_name.clone(),
            business_unit_id: store::parse_guid(BUSINESS_UNIT_ID).unwrap_or_default(),
            domain: config.org_domain.clone(),
        };
        let shared = Arc::new_cyclic(|me| Shared {
            webhooks: webhooks::Webhooks::new(config.webhook_timeout),
            config,
            base_url,
            org,
            store: Mutex::new(Store::new()),
            tokens: Mutex::new(HashMap::new()),
            stats: Mutex::new(RequestStats::default()),
            inflight: Mutex::new(HashMap::new()),
            customizations: Mutex::new(Vec::new()),
            me: me.clone(),
        });
        shared.reset();
        let faults = Faults::new(error::fault_body);
        let simulated = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(auth::token))
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(auth::openid_configuration),
            )
            .route("/api/data/v9.2/{*rest}", any(api::entry))
            .route("/api/data/v9.2", any(api::entry))
            .with_state(shared.clone())
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                fault_layer,
            ))
            .layer(axum::middleware::from_fn(service_request_id));
        let control = Router::new()
            .route("/_sim/stats", get(control_stats))
            .route("/_sim/webhooks/deliveries", get(control_deliveries))
            .route("/_sim/reset", post(control_reset))
            .route("/_sim/rows/{set}", get(control_rows))
            .with_state(shared.clone())
            .merge(seeding::router(shared.clone()));
        let app = simulated
            .merge(control)
            .merge(faults.control_router())
            .layer(DefaultBodyLimit::max(api::MAX_REQUEST_BYTES * 2));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(DataverseSim {
            shared,
            faults,
            addr,
            shutdown: Some(tx),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `{base}/api/data/v9.2/`
    pub fn api_url(&self) -> String {
        format!("{}/api/data/v9.2/", self.shared.base_url)
    }

    /// `{base}/{tenant}/oauth2/v2.0/token`
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.shared.base_url, self.shared.config.tenant_id
        )
    }

    /// The resource a token's scope must name (`<resource>/.default`): the base URL.
    pub fn resource(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn config(&self) -> &DataverseSimConfig {
        &self.shared.config
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn stats(&self) -> RequestStats {
        self.shared.stats().clone()
    }

    pub fn reset_stats(&self) {
        *self.shared.stats() = RequestStats::default();
    }

    /// Every row of an entity set in inspection form: Web API names and values, lookups as
    /// `_x_value` plus `_x_value@Microsoft.Dynamics.CRM.lookuplogicalname`, nulls left out,
    /// write-only columns (serviceendpoint.authvalue) included. Ordered by primary key.
    pub fn rows(&self, entity_set: &str) -> Vec<Map<String, Value>> {
        let store = self.shared.lock_store();
        let Some(table) = store.catalog().by_set(entity_set) else {
            return Vec::new();
        };
        store
            .table_rows(table.logical)
            .map(|(_, r)| store::inspection_form(table, r))
            .collect()
    }

    /// One row in inspection form.
    pub fn row(&self, entity_set: &str, id: &str) -> Option<Map<String, Value>> {
        let id = store::parse_guid(id)?;
        let store = self.shared.lock_store();
        let table = store.catalog().by_set(entity_set)?;
        store
            .get(table.logical, &id)
            .map(|r| store::inspection_form(table, r))
    }

    /// Inserts rows as the admin user would create them through the Web API (same columns,
    /// `@odata.bind` lookups and validation), but without firing webhooks: quick test data.
    /// Returns the new ids.
    pub fn seed(
        &self,
        entity_set: &str,
        rows: Vec<Map<String, Value>>,
    ) -> Result<Vec<String>, SeedError> {
        let admin = self
            .shared
            .config
            .clients
            .iter()
            .rev()
            .find_map(|c| store::parse_guid(&c.user_id))
            .unwrap_or_default();
        let ctx = self.shared.ctx(admin);
        let mut store = self.shared.lock_store();
        let table = store
            .catalog()
            .by_set(entity_set)
            .ok_or_else(|| SeedError::UnknownSet(entity_set.to_string()))?;
        let mut ids = Vec::with_capacity(rows.len());
        for (index, row) in rows.iter().enumerate() {
            let id = write::seed(&mut store, &ctx, table, row).map_err(|e| SeedError::Refused {
                set: entity_set.to_string(),
                index,
                message: e.message,
            })?;
            ids.push(id.to_string());
        }
        Ok(ids)
    }

    /// Every customization request received (metadata, solutions, roles, field security,
    /// associations), oldest first: to check the shapes an installer sends.
    pub fn customization_requests(&self) -> Vec<CustomizationRequest> {
        self.shared
            .customizations
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Marks a solution managed, as importing its managed export into another org leaves it.
    /// Returns whether the solution exists.
    pub fn mark_solution_managed(&self, unique_name: &str) -> bool {
        let mut store = self.shared.lock_store();
        let found = store
            .table_rows("solution")
            .find(|(_, r)| r.get("uniquename").and_then(|v| v.as_str()) == Some(unique_name))
            .map(|(id, r)| (*id, r.clone()));
        match found {
            Some((id, mut row)) => {
                row.insert("ismanaged", Val::Bool(true));
                store.put("solution", id, row);
                true
            }
            None => false,
        }
    }

    /// The tables of each `PublishXml`, oldest first.
    pub fn publishes(&self) -> Vec<Vec<String>> {
        self.shared.lock_store().catalog().publishes.clone()
    }

    /// The web resources (ids) each `PublishXml` named, oldest first.
    pub fn published_web_resources(&self) -> Vec<String> {
        self.shared
            .lock_store()
            .catalog()
            .published_web_resources
            .iter()
            .map(Uuid::to_string)
            .collect()
    }

    /// One row as the app sees it (inspection form): web resources and forms as published;
    /// [`DataverseSim::row`] shows the saved version.
    pub fn published(&self, entity_set: &str, id: &str) -> Option<Map<String, Value>> {
        let id = store::parse_guid(id)?;
        let store = self.shared.lock_store();
        let table = store.catalog().by_set(entity_set)?;
        store
            .get(table.logical, &id)
            .map(|r| store::inspection_form(table, &forms::published_view(table, r)))
    }

    /// The `sdkmessagefilters` id of a message on any table of this org (also one the
    /// installer created).
    pub fn message_filter_id(&self, message: &str, entity: &str) -> Option<Uuid> {
        let store = self.shared.lock_store();
        let table = store.catalog().table(entity)?;
        let id = schema::filter_id(message, table.otc)?;
        store.contains("sdkmessagefilter", &id).then_some(id)
    }

    /// Waits until every queued or running webhook delivery has finished.
    pub async fn webhooks_idle(&self) {
        self.shared.webhooks.idle().await;
    }

    /// The webhook delivery log, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.webhooks.deliveries()
    }

    /// Makes every token issued so far expire now (to test refresh on 401).
    pub fn expire_tokens(&self) {
        auth::expire_all(&self.shared);
    }

    /// Makes the org plain again: all data and every installed table and column go (the
    /// clients' systemusers, roles, privileges, SDK messages and filters are seeded again),
    /// with the statistics and the logs. Issued tokens stay valid.
    pub fn reset(&self) {
        self.shared.reset();
    }

    /// Stops the server (as dropping it does).
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for DataverseSim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Every top-level Web API answer (also an injected fault's) carries the
/// `x-ms-service-request-id` header Dataverse servers send: the id of the request in the
/// service's logs, which clients report with errors.
async fn service_request_id(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let web_api = req.uri().path().starts_with("/api/data/");
    let mut resp = next.run(req).await;
    if web_api && let Ok(v) = axum::http::HeaderValue::from_str(&Uuid::new_v4().to_string()) {
        resp.headers_mut().insert("x-ms-service-request-id", v);
    }
    resp
}

async fn control_stats(State(sim): State<Arc<Shared>>) -> Json<RequestStats> {
    Json(sim.stats().clone())
}

async fn control_deliveries(State(sim): State<Arc<Shared>>) -> Json<Vec<Delivery>> {
    Json(sim.webhooks.deliveries())
}

async fn control_reset(State(sim): State<Arc<Shared>>) -> StatusCode {
    sim.reset();
    StatusCode::NO_CONTENT
}

async fn control_rows(State(sim): State<Arc<Shared>>, Path(set): Path<String>) -> Response {
    let store = sim.lock_store();
    let Some(table) = store.catalog().by_set(&set) else {
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("unknown entity set '{set}'")})),
        )
            .into_response();
    };
    let rows: Vec<Value> = store
        .table_rows(table.logical)
        .map(|(_, r)| Value::Object(store::inspection_form(table, r)))
        .collect();
    Json(Value::Array(rows)).into_response()
}
