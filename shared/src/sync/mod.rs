//! Application layer: the connector's use cases, written as sequences of named steps over the
//! CRM adapter and the CleverReach client. Handlers call these; the domain decides, this layer
//! reads, writes and reports.

pub mod backflow;
pub mod lead_sync;
pub mod people;
pub mod receiver_state;
pub mod retroactive;
pub mod source;

use crate::adapters::cleverreach::{CleverReachClient, CleverReachError, TokenStore};
use crate::adapters::dataverse::crm::{CrmError, DataverseCrm};
use crate::domain::settings::Settings;
use crate::error::Retryable;
use std::time::Duration;

/// Why a sync step failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("CRM: {0}")]
    Crm(#[from] CrmError),
    #[error("CleverReach: {0}")]
    CleverReach(#[from] CleverReachError),
    /// A follow-up change could not be queued.
    #[error("queue: {0}")]
    Queue(#[from] crate::ports::QueueError),
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
            SyncError::Invalid(_) | SyncError::Config(_) => false,
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            SyncError::Crm(e) => e.retry_after(),
            SyncError::CleverReach(e) => e.retry_after(),
            SyncError::Queue(_) | SyncError::Invalid(_) | SyncError::Config(_) => None,
        }
    }
}

/// What every use case needs: both systems, and the clock.
pub struct Connector<S: TokenStore> {
    pub crm: DataverseCrm,
    pub newsletter: CleverReachClient<S>,
    /// Seconds since the epoch (injected so that tests control time).
    pub now: fn() -> i64,
}

impl<S: TokenStore> Connector<S> {
    pub fn new(crm: DataverseCrm, newsletter: CleverReachClient<S>) -> Self {
        Connector {
            crm,
            newsletter,
            now: || chrono::Utc::now().timestamp(),
        }
    }

    /// The settings, read fresh from the CRM.
    pub async fn settings(&self) -> Result<Settings, SyncError> {
        let loaded = self.crm.load_settings().await?;
        for warning in &loaded.warnings {
            tracing::warn!(warning = %warning, "settings");
        }
        Ok(loaded.settings)
    }
}
