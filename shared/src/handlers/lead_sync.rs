//! Handler: function `lead-sync`, started by an EventBridge Scheduler schedule (default
//! hourly). New active receivers of managed groups that no contact or lead has the address of
//! become leads; see `usecases::backflow::lead_sync`. The schedule's payload is free JSON and is not read.

use super::receiver_state_sync::{JobDeps, run_once};
use crate::usecases::SyncError;
use crate::usecases::backflow::{Job, RunSummary};
use serde_json::Value;

/// The handler of `lead-sync`.
pub async fn handle(deps: &JobDeps, trigger: &Value) -> Result<RunSummary, SyncError> {
    run_once(deps, Job::LeadSync, trigger).await
}
