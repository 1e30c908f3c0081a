//! What every use case works with: the ports of both systems (the [`Connector`]), the clock,
//! the settings gate, and the one error type of the layer.

use crate::domain::settings::Settings;
use crate::error::Retryable;
use crate::ports::crm::{
    CrmError, CursorStore, MemberReader, PeopleDirectory, PersonStore, ReceiverStateLog,
    RetroactiveStore, SettingsSource, SignupStore, SourceStore,
};
use crate::ports::newsletter::HookRegistry;
use crate::ports::newsletter::{BlockList, GroupStore, NewsletterError, ReceiverStore};
use crate::ports::queue::{ChangeQueue, QueueError};
use crate::ports::secrets::HookTokenStore;
use crate::ports::secrets::SecretError;
use crate::ports::{Crm, Newsletter};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the event hooks need (`usecases::hooks`): the tool's registry, where the tokens live,
/// and the public URL of the `cleverreach-events` function.
#[derive(Clone)]
pub struct Hooks {
    pub registry: Arc<dyn HookRegistry>,
    pub tokens: Arc<dyn HookTokenStore>,
    pub url: String,
}

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("CRM: {0}")]
    Crm(#[from] CrmError),
    #[error("CleverReach: {0}")]
    CleverReach(#[from] NewsletterError),
    /// A follow-up message could not be queued.
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    /// A token of the event hooks could not be read or written.
    #[error("secret store: {0}")]
    Secret(#[from] SecretError),
    /// Bad input that retrying cannot fix (recorded where an administrator sees it).
    #[error("{0}")]
    Invalid(String),
    /// The deployment and the CRM settings disagree: retried (and parked in the dead-letter
    /// queue) until an administrator fixes it, so no change is lost meanwhile.
    #[error("configuration: {0}")]
    Config(String),
}

impl Retryable for SyncError {
    fn is_retryable(&self) -> bool {
        match self {
            SyncError::Crm(e) => e.is_retryable(),
            SyncError::CleverReach(e) => e.is_retryable(),
            SyncError::Queue(e) => e.is_retryable(),
            SyncError::Secret(e) => e.is_retryable(),
            SyncError::Invalid(_) | SyncError::Config(_) => false,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            SyncError::Crm(e) => e.retry_after(),
            SyncError::CleverReach(e) => e.retry_after(),
            SyncError::Queue(_)
            | SyncError::Secret(_)
            | SyncError::Invalid(_)
            | SyncError::Config(_) => None,
        }
    }
}

/// The ports the use cases work with, each the narrow capability a step needs. Built from one
/// CRM and one newsletter connection ([`Connector::new`]); the same object usually stands
/// behind several ports. A clone shares the connections and starts with an empty settings
/// cache.
#[derive(Clone)]
pub struct Connector {
    pub settings_source: Arc<dyn SettingsSource>,
    pub sources: Arc<dyn SourceStore>,
    pub members: Arc<dyn MemberReader>,
    pub people: Arc<dyn PeopleDirectory>,
    pub persons: Arc<dyn PersonStore>,
    pub receiver_states: Arc<dyn ReceiverStateLog>,
    pub signups: Arc<dyn SignupStore>,
    pub cursors: Arc<dyn CursorStore>,
    pub retroactive: Arc<dyn RetroactiveStore>,
    pub groups: Arc<dyn GroupStore>,
    pub receivers: Arc<dyn ReceiverStore>,
    pub blocklist: Arc<dyn BlockList>,
    /// Seconds since the epoch (injected so that tests control time).
    pub now: fn() -> i64,
    /// Where work for other queues goes (a resync of the campaigns a deleted list fed, a person
    /// to reconcile after the back-flow set their checklist to "no"); without it that work is
    /// done in the same invocation.
    pub follow_up: Option<Arc<dyn ChangeQueue>>,
    /// CleverReach's event hooks, where this function registers or receives them.
    pub hooks: Option<Hooks>,
    /// CleverReach upserts a full reconcile keeps under way at once (docs/architecture.md §4
    /// "Concurrency").
    pub writes_in_flight: usize,
    settings: SettingsGate,
}

/// Upserts under way at once by default (`CLEVERREACH_WRITES_IN_FLIGHT`).
pub const WRITES_IN_FLIGHT: usize = crate::config::DEFAULT_WRITES_IN_FLIGHT;

impl Connector {
    pub fn new<C, N>(crm: C, newsletter: N) -> Self
    where
        C: Crm + 'static,
        N: Newsletter + 'static,
    {
        Connector::from_shared(Arc::new(crm), Arc::new(newsletter))
    }

    /// The same, on connections the caller keeps a handle to (the tests' fakes).
    pub fn from_shared<C, N>(crm: Arc<C>, newsletter: Arc<N>) -> Self
    where
        C: Crm + 'static,
        N: Newsletter + 'static,
    {
        Connector {
            settings_source: crm.clone(),
            sources: crm.clone(),
            members: crm.clone(),
            people: crm.clone(),
            persons: crm.clone(),
            receiver_states: crm.clone(),
            signups: crm.clone(),
            cursors: crm.clone(),
            retroactive: crm,
            groups: newsletter.clone(),
            receivers: newsletter.clone(),
            blocklist: newsletter.clone(),
            now: || chrono::Utc::now().timestamp(),
            follow_up: None,
            hooks: None,
            writes_in_flight: WRITES_IN_FLIGHT,
            settings: SettingsGate::new(newsletter.api_url(), Duration::ZERO),
        }
    }

    /// At most `n` (at least one) CleverReach upserts under way at once.
    pub fn with_writes_in_flight(mut self, n: usize) -> Self {
        self.writes_in_flight = n.max(1);
        self
    }

    /// The queue for follow-up work on other queues.
    pub fn with_follow_up(mut self, queue: Arc<dyn ChangeQueue>) -> Self {
        self.follow_up = Some(queue);
        self
    }

    /// Registers and checks CleverReach's event hooks with these.
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Reuse settings read from the CRM for this long (a worker's batches share them).
    pub fn with_settings_ttl(mut self, ttl: Duration) -> Self {
        self.settings.ttl = ttl;
        self
    }

    /// The settings, read from the CRM (or reused within the TTL), checked against the
    /// newsletter API this deployment talks to.
    pub async fn settings(&self) -> Result<Settings, SyncError> {
        self.settings.settings(self.settings_source.as_ref()).await
    }
}

/// The one way every function reads settings: a short cache and the check that the CRM's
/// `apiurl` setting names the CleverReach this deployment talks to.
struct SettingsGate {
    deployed_api_url: String,
    ttl: Duration,
    cached: Mutex<Option<(Instant, Settings)>>,
}

impl Clone for SettingsGate {
    fn clone(&self) -> Self {
        SettingsGate::new(self.deployed_api_url.clone(), self.ttl)
    }
}

impl SettingsGate {
    fn new(deployed_api_url: String, ttl: Duration) -> Self {
        SettingsGate {
            deployed_api_url,
            ttl,
            cached: Mutex::new(None),
        }
    }

    async fn settings(&self, source: &dyn SettingsSource) -> Result<Settings, SyncError> {
        if let Ok(cached) = self.cached.lock()
            && let Some((read_at, settings)) = cached.as_ref()
            && read_at.elapsed() < self.ttl
        {
            return Ok(settings.clone());
        }
        let loaded = source.load_settings().await?;
        for warning in &loaded.warnings {
            tracing::warn!(warning = %warning, "settings");
        }
        check_api_url(&loaded.settings, &self.deployed_api_url)?;
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((Instant::now(), loaded.settings.clone()));
        }
        Ok(loaded.settings)
    }
}

/// The CleverReach API base is both a deployment parameter (the client is built with it) and a
/// CRM setting; when they disagree the work stops with an error naming both rather than
/// writing to a CleverReach the administrator did not mean.
fn check_api_url(settings: &Settings, deployed: &str) -> Result<(), SyncError> {
    let norm = |u: &str| u.trim().trim_end_matches('/').to_ascii_lowercase();
    if norm(&settings.api_url) == norm(deployed) {
        Ok(())
    } else {
        Err(SyncError::Config(format!(
            "the setting cleverreach:connectiondata:apiurl is {:?} but this deployment talks to {:?} (CLEVERREACH_API_URL); make them agree",
            settings.api_url, deployed
        )))
    }
}
