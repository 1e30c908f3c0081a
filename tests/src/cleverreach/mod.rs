//! CleverReach simulator: a stateful, in-process stand-in for `rest.cleverreach.com` speaking
//! CleverReach's wire format (OAuth and token revocation, groups, global and group
//! attributes, receivers, filter, bounces, blacklist, event hooks, error bodies, batch and
//! page limits).
//!
//! It is written from the reference, not from the connector's client: the two share no wire
//! structs, so a misreading on one side shows up as a failing test instead of agreeing with
//! itself.
//!
//! Layout of the served URL space (base = [`CleverReachSim::base_url`]):
//! - `{base}oauth/token.php`, `{base}oauth/authorize.php`: OAuth (client credentials, refresh
//!   with rotation, authorization code with a clickable consent page); `DELETE
//!   {base}oauth/token` revokes the bearer token;
//! - `{base}v3/…`: the REST API, every path with and without `.json`;
//! - `{base}hooks/eventhook`: event hook registration and delivery (see [`hooks`]);
//! - `{base}_sim/…`: test and human controls (never faulted): `GET /_sim/state`,
//!   `GET|DELETE /_sim/stats`, `GET /_sim/reactivations`, `GET /_sim/groups[/{id}[/receivers]]`,
//!   `POST /_sim/unsubscribe|bounce|blacklist|signup|stranger|delete|corrupt`,
//!   `POST /_sim/tokens/expire|revoke`, `POST /_sim/clock`, `GET|PUT /_sim/pessimistic`,
//!   `GET /_sim/hooks`, `PUT /_sim/hooks/delivery`, and `/_sim/faults` (see [`crate::faults`]).
//!
//! Every unknown path answers 404 and every method a path does not have answers 405, both
//! with CleverReach's JSON error body.
//!
//! Opt-outs: addresses compare case-insensitively. By default an upsert never re-activates a
//! receiver who is deactivated or bounced, whatever `activated` it sends, and a blacklisted
//! address is never made active. Whether the real API behaves so is not known, so the
//! **pessimistic mode** ([`CleverReachSimConfig::pessimistic`]) lets an upsert with
//! `activated > 0` re-activate all of them. Every re-activation (also by `/activate`) lands in
//! [`CleverReachSim::reactivations`]; the connector must never cause one.

mod api;
mod control;
pub mod hooks;
mod oauth;
mod state;

use crate::faults::{Faults, fault_layer};
use axum::http::StatusCode;
use axum::response::IntoResponse;
pub use hooks::{HookDelivery, HookDeliveryConfig, HookRegistration, HookStats};
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
    /// Pessimistic mode: an upsert (or single add/update) with `activated > 0` re-activates a
    /// deactivated, bounced or blacklisted receiver, as the real API may, and records it in
    /// [`CleverReachSim::reactivations`]. Switchable at run time (`PUT /_sim/pessimistic`).
    pub pessimistic: bool,
}

/// Environment variable that sets [`CleverReachSimConfig::pessimistic`] in the default
/// configuration (`1`/`true`/`on` or `0`/`false`/`off`), so a whole test run can be switched.
pub const PESSIMISTIC_ENV: &str = "SANDBOX_CLEVERREACH_PESSIMISTIC";

/// The default of [`CleverReachSimConfig::pessimistic`] when the environment says nothing.
pub const PESSIMISTIC_DEFAULT: bool = true;

fn pessimistic_from_env() -> bool {
    match std::env::var(PESSIMISTIC_ENV) {
        Err(_) => PESSIMISTIC_DEFAULT,
        Ok(value) => match value.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "on" | "yes" => true,
            "0" | "false" | "off" | "no" | "" => false,
            _ => {
                // Default() cannot fail; say so loudly instead of guessing silently.
                eprintln!(
                    "{PESSIMISTIC_ENV}={value:?} is not 1/true/on or 0/false/off; using {PESSIMISTIC_DEFAULT}"
                );
                PESSIMISTIC_DEFAULT
            }
        },
    }
}

/// The fixed OAuth client of the default sandbox account.
pub const DEFAULT_CLIENT_ID: &str = "sandbox-client";
/// The fixed OAuth client secret of the default sandbox account (not a real secret).
pub const DEFAULT_CLIENT_SECRET: &str = "sandbox-secret";

impl Default for CleverReachSimConfig {
    /// Client id [`DEFAULT_CLIENT_ID`], secret [`DEFAULT_CLIENT_SECRET`], tokens valid one
    /// hour, batches up to 1000, pages up to 5000, any free local port; pessimistic mode as
    /// [`PESSIMISTIC_ENV`] says, else [`PESSIMISTIC_DEFAULT`].
    fn default() -> Self {
        CleverReachSimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_id: DEFAULT_CLIENT_ID.to_string(),
            client_secret: DEFAULT_CLIENT_SECRET.to_string(),
            access_token_ttl_secs: 3600,
            max_upsert_batch: 1000,
            max_page_size: 5000,
            account_name: "Sandbox Newsletter GmbH".to_string(),
            pessimistic: pessimistic_from_env(),
        }
    }
}

/// One kind of API call, for [`CallStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    Token,
    TokenRevoke,
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
    AttributeDelete,
    GroupAttributesList,
    GroupAttributeCreate,
    GroupAttributeDelete,
    ReceiversUpsert,
    ReceiversUpsertPlus,
    ReceiversInsert,
    ReceiverAdd,
    ReceiverUpdate,
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
    HookRegister,
    HookList,
    HookDelete,
}

impl Endpoint {
    /// Every endpoint the simulator serves (the conformance test checks each one).
    pub const ALL: [Endpoint; 41] = [
        Endpoint::Token,
        Endpoint::TokenRevoke,
        Endpoint::Authorize,
        Endpoint::Whoami,
        Endpoint::Ttl,
        Endpoint::Validate,
        Endpoint::Ping,
        Endpoint::GroupsList,
        Endpoint::GroupGet,
        Endpoint::GroupCreate,
        Endpoint::GroupUpdate,
        Endpoint::GroupDelete,
        Endpoint::GroupStats,
        Endpoint::AttributesList,
        Endpoint::AttributeCreate,
        Endpoint::AttributeDelete,
        Endpoint::GroupAttributesList,
        Endpoint::GroupAttributeCreate,
        Endpoint::GroupAttributeDelete,
        Endpoint::ReceiversUpsert,
        Endpoint::ReceiversUpsertPlus,
        Endpoint::ReceiversInsert,
        Endpoint::ReceiverAdd,
        Endpoint::ReceiverUpdate,
        Endpoint::ReceiverGet,
        Endpoint::ReceiverPoolGet,
        Endpoint::ReceiverDelete,
        Endpoint::ReceiversDeleteBatch,
        Endpoint::ReceiverActivate,
        Endpoint::ReceiverDeactivate,
        Endpoint::ReceiversList,
        Endpoint::ReceiverEmailChange,
        Endpoint::ReceiversFilter,
        Endpoint::Bounces,
        Endpoint::BlacklistList,
        Endpoint::BlacklistGet,
        Endpoint::BlacklistAdd,
        Endpoint::BlacklistDelete,
        Endpoint::HookRegister,
        Endpoint::HookList,
        Endpoint::HookDelete,
    ];
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

/// A deactivated, bounced or blacklisted receiver made active (by `/activate`, or by an
/// upsert in pessimistic mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reactivation {
    pub group_id: String,
    pub email: String,
    pub at: i64,
    /// The path that did it: `activate`, `upsert` (also a single add or update) or `insert`.
    pub via: String,
    /// What was undone: `deactivated`, `bounced` or `blacklisted`.
    pub reason: String,
}

/// A `global_attributes` key that names no attribute of the account: CleverReach drops the
/// value silently; the simulator drops it too and remembers it here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredAttribute {
    pub email: String,
    pub name: String,
}

/// An `attributes` key on a receiver that names no attribute of its group: dropped, and
/// remembered here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredGroupAttribute {
    pub group_id: String,
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

/// An attribute of the account (`group_id` "0") or of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimAttribute {
    pub id: String,
    pub group_id: String,
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

/// Shared handle on the account state, and the HTTP client for hook calls.
#[derive(Clone)]
pub(crate) struct Shared {
    state: Arc<Mutex<SimState>>,
    pub(crate) http: reqwest::Client,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, SimState> {
        // A poisoned lock only means a handler panicked; the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The answer to a method a path does not have: CleverReach's JSON error body, not an empty
/// 405 (a client reading the body would fail on that for the wrong reason).
async fn method_not_allowed() -> axum::response::Response {
    let status = StatusCode::METHOD_NOT_ALLOWED;
    (status, axum::Json(error_body(status))).into_response()
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
    dispatcher: tokio::task::JoinHandle<()>,
}

impl Drop for CleverReachSim {
    fn drop(&mut self) {
        self.server.abort();
        self.dispatcher.abort();
    }
}

impl CleverReachSim {
    /// Binds `cfg.bind` and serves in the background on the current tokio runtime.
    pub async fn spawn(cfg: CleverReachSimConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(cfg.bind).await?;
        let addr = listener.local_addr()?;
        // Hook calls: no redirects followed (CleverReach would not either, as far as known),
        // and a bound on how long an endpoint may take.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(hooks::CALL_TIMEOUT)
            .build()
            .map_err(|e| std::io::Error::other(format!("hook HTTP client: {e}")))?;
        let shared = Shared {
            state: Arc::new(Mutex::new(SimState::new(cfg))),
            http,
        };
        let faults = Faults::new(error_body);
        let app = api::router(shared.clone())
            .merge(oauth::router(shared.clone()))
            .merge(hooks::router(shared.clone()))
            .layer(axum::middleware::from_fn_with_state(
                faults.clone(),
                fault_layer,
            ))
            .merge(control::router(shared.clone()))
            .merge(faults.control_router())
            .method_not_allowed_fallback(method_not_allowed);
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(%err, "CleverReach simulator stopped");
            }
        });
        let dispatcher = tokio::spawn(hooks::dispatcher(shared.clone()));
        Ok(CleverReachSim {
            addr,
            shared,
            faults,
            server,
            dispatcher,
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

    /// Moves the simulated clock forward: stamps written from now on are later, tokens
    /// expire sooner.
    pub fn advance_clock(&self, secs: i64) {
        self.shared.lock().advance_clock(secs);
    }

    // ---- pessimistic mode ---------------------------------------------------------------

    /// Switches pessimistic mode (see [`CleverReachSimConfig::pessimistic`]).
    pub fn set_pessimistic(&self, on: bool) {
        self.shared.lock().pessimistic = on;
    }

    pub fn pessimistic(&self) -> bool {
        self.shared.lock().pessimistic
    }

    /// Upserts that asked to activate an opted-out or blacklisted receiver, whether or not it
    /// took effect (in pessimistic mode each also lands in [`Self::reactivations`]).
    pub fn reactivation_attempts(&self) -> u64 {
        self.shared.lock().reactivation_attempts
    }

    // ---- event hooks --------------------------------------------------------------------

    /// Registrations so far (without their tokens).
    pub fn hook_registrations(&self) -> Vec<HookRegistration> {
        self.shared.lock().hooks.registrations()
    }

    /// Sets the share of deliveries dropped or delayed, and whether API changes fire events.
    pub fn set_hook_delivery(&self, config: HookDeliveryConfig) -> Result<(), SimError> {
        Ok(self.shared.lock().hooks.set_config(config)?)
    }

    pub fn hook_stats(&self) -> HookStats {
        self.shared.lock().hooks.stats.clone()
    }

    /// The latest deliveries (up to 1000), oldest first.
    pub fn hook_deliveries(&self) -> Vec<HookDelivery> {
        self.shared.lock().hooks.log.iter().cloned().collect()
    }

    /// Waits until every delivery emitted so far has been sent and answered (or dropped);
    /// false when `timeout` passed first.
    pub async fn wait_for_hook_deliveries(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.shared.lock().hooks.in_flight == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
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

    /// A CleverReach user deletes the receiver from the group (fires `receiver.deleted`).
    pub fn delete_receiver(&self, group_id: &str, email: &str) -> Result<(), SimError> {
        Ok(self
            .shared
            .lock()
            .remove_member(group_id, email, state::Origin::Import)?)
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
        self.add_receiver(
            group_id,
            email,
            true,
            global_attributes,
            "Anmeldeformular",
            state::Origin::Signup,
        )
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
        self.add_receiver(
            group_id,
            email,
            active,
            global_attributes,
            "Import",
            state::Origin::Import,
        )
    }

    fn add_receiver(
        &self,
        group_id: &str,
        email: &str,
        active: bool,
        global_attributes: &[(&str, &str)],
        source: &str,
        origin: state::Origin,
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
        match st.write_row(gid, &row, state::WriteMode::Insert, origin) {
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
            .map(|g| st.sim_receivers(g, 0, usize::MAX))
            .unwrap_or_default()
    }

    /// One receiver of a group, looked up case-insensitively.
    pub fn receiver(&self, group_id: &str, email: &str) -> Option<SimReceiver> {
        let key = state::email_key(email);
        self.receivers(group_id)
            .into_iter()
            .find(|r| state::email_key(&r.email) == key)
    }

    /// The global attributes of the account.
    pub fn attributes(&self) -> Vec<SimAttribute> {
        self.shared.lock().sim_attributes(0)
    }

    /// The attributes of one group (empty for an unknown group).
    pub fn group_attributes(&self, group_id: &str) -> Vec<SimAttribute> {
        match state::parse_id(group_id) {
            Some(gid) if gid != 0 => self.shared.lock().sim_attributes(gid),
            _ => Vec::new(),
        }
    }

    /// Every deactivated/bounced → active step so far. The connector must never cause one.
    pub fn reactivations(&self) -> Vec<Reactivation> {
        self.shared.lock().reactivations.clone()
    }

    /// `global_attributes` keys that were dropped because no such attribute exists.
    pub fn ignored_global_attributes(&self) -> Vec<IgnoredAttribute> {
        self.shared.lock().ignored_attributes.clone()
    }

    /// `attributes` keys that were dropped because the group has no such attribute.
    pub fn ignored_group_attributes(&self) -> Vec<IgnoredGroupAttribute> {
        self.shared.lock().ignored_group_attributes.clone()
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

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn the_endpoint_list_holds_every_variant_once_in_declaration_order() {
        for (i, endpoint) in Endpoint::ALL.iter().enumerate() {
            assert_eq!(*endpoint as usize, i, "{endpoint:?}");
        }
    }
}
