//! CleverReach simulator: a stateful, in-process stand-in for `rest.cleverreach.com` speaking
//! the wire format of `shared/ref/cleverreach-api.md` (OAuth, groups, global attributes,
//! receivers, filter, bounces, blacklist, error bodies, batch and page limits).
//!
//! It is written from the reference, not from the connector's client: the two share no wire
//! structs, so a misreading on one side shows up as a failing test instead of agreeing with
//! itself.
//!
//! Layout of the served URL space (base = [`CleverReachSim::base_url`]):
//! - `{base}oauth/token.php`, `{base}oauth/authorize.php`: OAuth (client credentials, refresh
//!   with rotation, authorization code with a clickable consent page);
//! - `{base}v3/…`: the REST API, every path with and without `.json`;
//! - `{base}_sim/…`: test and human controls (never faulted): `GET /_sim/state`,
//!   `GET|DELETE /_sim/stats`, `GET /_sim/reactivations`, `GET /_sim/groups[/{id}[/receivers]]`,
//!   `POST /_sim/unsubscribe|bounce|blacklist|signup|stranger|corrupt`,
//!   `POST /_sim/tokens/expire|revoke`, and `/_sim/faults` (see [`crate::faults`]).
//!
//! Rules that protect people (DESIGN §2): an upsert never re-activates a receiver who is
//! deactivated or bounced, whatever `activated` it sends; a blacklisted address is never made
//! active; addresses compare case-insensitively. Only `/activate` can turn an opt-out back on,
//! and each time it does the step lands in [`CleverReachSim::reactivations`].

mod api;
mod control;
mod oauth;
mod state;

use crate::faults::{Faults, fault_layer};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use state::SimState;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// How the simulated account behaves.
#[derive(Debug, Clone)]
pub struct CleverReachSimConfig {
    /// Where to listen; `127.0.0.1:0` picks a free port.
    pub bind: SocketAddr,
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of every access token issued.
    pub access_token_ttl_secs: u64,
    /// Upsert/insert batches above this answer 413.
    pub max_upsert_batch: usize,
    /// `pagesize` above this answers 400 on receiver lists and the filter.
    pub max_page_size: usize,
    /// Shown by `debug/whoami`.
    pub account_name: String,
}

/// The fixed OAuth client of the default sandbox account.
pub const DEFAULT_CLIENT_ID: &str = "sandbox-client";
/// The fixed OAuth client secret of the default sandbox account (not a real secret).
pub const DEFAULT_CLIENT_SECRET: &str = "sandbox-secret";

impl Default for CleverReachSimConfig {
    /// Client id [`DEFAULT_CLIENT_ID`], secret [`DEFAULT_CLIENT_SECRET`], tokens valid one
    /// hour, batches up to 1000, pages up to 5000, any free local port.
    fn default() -> Self {
        CleverReachSimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_id: DEFAULT_CLIENT_ID.to_string(),
            client_secret: DEFAULT_CLIENT_SECRET.to_string(),
            access_token_ttl_secs: 3600,
            max_upsert_batch: 1000,
            max_page_size: 5000,
            account_name: "Sandbox Newsletter GmbH".to_string(),
        }
    }
}

/// One kind of API call, for [`CallStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Token,
    Authorize,
    Whoami,
    Ttl,
    Validate,
    Ping,
    GroupsList,
    GroupGet,
    GroupCreate,
    GroupUpdate,
    GroupDelete,
    GroupStats,
    AttributesList,
    AttributeCreate,
    ReceiversUpsert,
    ReceiversUpsertPlus,
    ReceiversInsert,
    ReceiverGet,
    ReceiverPoolGet,
    ReceiverDelete,
    ReceiversDeleteBatch,
    ReceiverActivate,
    ReceiverDeactivate,
    ReceiversList,
    ReceiverEmailChange,
    ReceiversFilter,
    Bounces,
    BlacklistList,
    BlacklistGet,
    BlacklistAdd,
    BlacklistDelete,
}

/// Calls that reached the simulator's handlers (faults injected before a handler runs are
/// counted by [`Faults::stats`] instead).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallStats {
    pub calls: BTreeMap<Endpoint, u64>,
    /// Rows received by upsert, upsertplus and insert, accepted or not.
    pub upsert_rows: u64,
    /// The largest upsert/insert batch received (including refused ones).
    pub largest_upsert_batch: usize,
}

impl CallStats {
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        self.calls.get(&endpoint).copied().unwrap_or(0)
    }
    pub fn total(&self) -> u64 {
        self.calls.values().sum()
    }
}

/// Token grants issued or refused, by grant type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenGrants {
    pub client_credentials: u64,
    pub refresh_token: u64,
    pub authorization_code: u64,
    /// Refresh attempts answered `invalid_grant` (used, revoked or unknown refresh token).
    pub refused_refresh: u64,
}

/// A deactivated or bounced receiver made active again (only `/activate` does that).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reactivation {
    pub group_id: String,
    pub email: String,
    pub at: i64,
    /// The path that did it (`activate`, or `upsert` if the simulator itself were wrong).
    pub via: String,
}

/// A `global_attributes` key that names no attribute of the account: CleverReach drops the
/// value silently; the simulator drops it too and remembers it here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredAttribute {
    pub email: String,
    pub name: String,
}

/// A group as tests see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimGroup {
    pub id: String,
    pub name: String,
    pub locked: bool,
    pub backup: bool,
    pub receiver_info: String,
    pub stamp: i64,
    pub last_changed: i64,
    pub receiver_count: usize,
}

/// A receiver in a group as tests see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimReceiver {
    pub id: String,
    pub group_id: String,
    /// As stored (original case).
    pub email: String,
    pub registered: i64,
    pub activated: i64,
    pub deactivated: i64,
    pub bounced: i64,
    pub active: bool,
    pub source: String,
    pub global_attributes: BTreeMap<String, String>,
    pub attributes: BTreeMap<String, String>,
    pub tags: Vec<String>,
    /// Newest first.
    pub events: Vec<SimEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimEvent {
    pub stamp: i64,
    pub kind: String,
    pub type_id: String,
}

/// A global attribute of the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimAttribute {
    pub id: String,
    pub name: String,
    pub kind: String,
}

/// Why a test-side action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SimError {
    pub status: u16,
    pub message: String,
}

impl From<state::ApiError> for SimError {
    fn from(e: state::ApiError) -> Self {
        SimError {
            status: e.status,
            message: e.message,
        }
    }
}

/// Shared handle on the account state.
#[derive(Clone)]
pub(crate) struct Shared(Arc<Mutex<SimState>>);

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SimState> {
        // A poisoned lock only means a handler panicked; the state is still usable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// CleverReach's error body for a status, used by fault injection too.
pub fn error_body(status: StatusCode) -> serde_json::Value {
    serde_json::json!({
        "error": {
            "code": status.as_u16(),
            "message": status.canonical_reason().unwrap_or("Error"),
        }
    })
}

/// A running simulator. Dropping it stops the server.
pub struct CleverReachSim {
    addr: SocketAddr,
    shared: Shared,
    faults: Faults,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for CleverReachSim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl CleverReachSim {
    /// Binds `cfg.bind` and serves in the background on the current tokio runtime.
    pub async fn spawn(cfg: CleverReachSimConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        let shared = Shared(Arc::new(Mutex::new(SimState::new(cfg))));
        let faults = Faults::new(error_body);
        let app = api::router(shared.clone())
            .merge(oauth::router(shared.clone()))
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                fault_layer,
            ))
            .merge(control::router(shared.clone()))
            .merge(faults.control_router());
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "CleverReach simulator stopped");
            }
        });
        Ok(CleverReachSim {
            addr,
            shared,
            faults,
            server,
        })
    }

    /// `http://127.0.0.1:PORT/`: the API is under `{base}v3/`, OAuth under `{base}oauth/`.
    pub fn base_url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn stats(&self) -> CallStats {
        self.shared.lock().stats.clone()
    }

    pub fn reset_stats(&self) {
        self.shared.lock().stats = CallStats::default();
    }

    // ---- tokens -------------------------------------------------------------------------

    /// Every access token issued so far expires now (the next API call answers 401).
    pub fn expire_access_tokens(&self) {
        self.shared.lock().expire_access_tokens();
    }

    /// Every refresh token becomes unusable (as if the user revoked the app).
    pub fn revoke_refresh_tokens(&self) {
        self.shared.lock().revoke_refresh_tokens();
    }

    pub fn token_grants(&self) -> TokenGrants {
        self.shared.lock().tokens.grants
    }

    /// Whether a refresh token could still be used.
    pub fn refresh_token_is_valid(&self, token: &str) -> bool {
        self.shared.lock().tokens.refresh.contains_key(token)
    }

    /// Whether an access token is accepted right now.
    pub fn access_token_is_valid(&self, token: &str) -> bool {
        self.shared.lock().check_access_token(token).is_ok()
    }

    // ---- things that happen inside CleverReach ------------------------------------------

    /// The receiver clicks "unsubscribe" in a mailing of this group.
    pub fn unsubscribe(&self, group_id: &str, email: &str) -> Result<(), SimError> {
        Ok(self.shared.lock().deactivate(group_id, email, true)?)
    }

    /// A hard bounce: `bounced` = now in every group, and a record in `/bounces.json`.
    pub fn bounce(&self, email: &str) -> Result<(), SimError> {
        Ok(self.shared.lock().bounce(email)?)
    }

    /// An administrator puts the address on the account blacklist.
    pub fn blacklist(&self, email: &str) -> Result<(), SimError> {
        self.shared
            .lock()
            .add_to_blacklist(email, "added in CleverReach")?;
        Ok(())
    }

    /// Someone subscribes through a CleverReach form: a new active receiver. Returns its id.
    pub fn signup(
        &self,
        group_id: &str,
        email: &str,
        global_attributes: &[(&str, &str)],
    ) -> Result<String, SimError> {
        self.add_receiver(group_id, email, true, global_attributes, "Anmeldeformular")
    }

    /// A receiver the connector did not create (imported or typed in by a CleverReach user),
    /// active or not. Returns its id.
    pub fn add_stranger(
        &self,
        group_id: &str,
        email: &str,
        active: bool,
        global_attributes: &[(&str, &str)],
    ) -> Result<String, SimError> {
        self.add_receiver(group_id, email, active, global_attributes, "Import")
    }

    fn add_receiver(
        &self,
        group_id: &str,
        email: &str,
        active: bool,
        global_attributes: &[(&str, &str)],
        source: &str,
    ) -> Result<String, SimError> {
        let mut st = self.shared.lock();
        let gid = st.group(group_id)?.id;
        let now = st.now();
        let attrs: serde_json::Map<String, serde_json::Value> = global_attributes
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        let row = serde_json::json!({
            "email": email,
            "registered": now,
            "activated": if active { now } else { 0 },
            "source": source,
            "global_attributes": attrs,
        });
        match st.write_row(gid, &row, state::WriteMode::Insert) {
            state::RowOutcome::Inserted(id) | state::RowOutcome::Updated(id) => Ok(id.to_string()),
            state::RowOutcome::Rejected(message) => Err(SimError {
                status: 400,
                message,
            }),
        }
    }

    /// Damages how one receiver is rendered in every answer (list, filter, get), as a broken
    /// or unexpected payload from CleverReach would look: an object's fields replace the
    /// rendered ones (e.g. `{"deactivated": "soon"}`), any other value replaces the whole
    /// receiver. The stored receiver (and what filters match) stays as it is.
    pub fn corrupt_receiver(
        &self,
        group_id: &str,
        email: &str,
        damage: serde_json::Value,
    ) -> Result<(), SimError> {
        let mut st = self.shared.lock();
        let (gid, pid) = st.member(group_id, email)?;
        st.corruptions.insert((gid, pid), damage);
        Ok(())
    }

    // ---- inspection ---------------------------------------------------------------------

    pub fn groups(&self) -> Vec<SimGroup> {
        let st = self.shared.lock();
        st.groups.values().map(|g| st.sim_group(g)).collect()
    }

    pub fn group(&self, id: &str) -> Option<SimGroup> {
        let st = self.shared.lock();
        st.group(id).ok().map(|g| st.sim_group(g))
    }

    /// The receivers of a group in listing order (empty for an unknown group).
    pub fn receivers(&self, group_id: &str) -> Vec<SimReceiver> {
        let st = self.shared.lock();
        st.group(group_id)
            .map(|g| st.sim_receivers(g))
            .unwrap_or_default()
    }

    /// One receiver of a group, looked up case-insensitively.
    pub fn receiver(&self, group_id: &str, email: &str) -> Option<SimReceiver> {
        let key = state::email_key(email);
        self.receivers(group_id)
            .into_iter()
            .find(|r| state::email_key(&r.email) == key)
    }

    pub fn attributes(&self) -> Vec<SimAttribute> {
        self.shared.lock().sim_attributes()
    }

    /// Every deactivated/bounced → active step so far. The connector must never cause one.
    pub fn reactivations(&self) -> Vec<Reactivation> {
        self.shared.lock().reactivations.clone()
    }

    /// `global_attributes` keys that were dropped because no such attribute exists.
    pub fn ignored_global_attributes(&self) -> Vec<IgnoredAttribute> {
        self.shared.lock().ignored_attributes.clone()
    }

    /// Addresses on the account blacklist, as stored.
    pub fn blacklisted(&self) -> Vec<String> {
        self.shared
            .lock()
            .blacklist
            .iter()
            .map(|e| e.email.clone())
            .collect()
    }

    /// The whole account (without tokens) as JSON.
    pub fn state_json(&self) -> serde_json::Value {
        self.shared.lock().state_json()
    }
}
