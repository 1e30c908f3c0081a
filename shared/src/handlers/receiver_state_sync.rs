//! Handler: function `receiver-state-sync`, started by an EventBridge Scheduler schedule
//! (default hourly). Unsubscribes and bounces of every managed group since the last run become
//! receiver-state rows, "no" on checklists and (per bounce settings) deactivated people; see
//! `usecases::backflow::receiver_state`. The schedule's payload is free JSON and is not read (`{}` will do):
//! where to go on comes from the durable cursor, not from the event.

use crate::config::BackflowLimits;
use crate::domain::settings::Settings;
use crate::error::Retryable;
use crate::usecases::backflow::{Job, RunLimits, RunSummary, due, run_job};
use crate::usecases::{Connector, SyncError, hooks};
use serde_json::Value;
use std::time::Duration;
use tracing::{error, info, warn};

/// What a back-flow job needs.
pub struct JobDeps {
    pub conn: Connector,
    pub limits: RunLimits,
}

/// The run limits: the defaults, with what the `BACKFLOW_*` variables set.
pub fn limits(configured: BackflowLimits) -> RunLimits {
    let defaults = RunLimits::default();
    RunLimits {
        budget: configured
            .budget_secs
            .map_or(defaults.budget, Duration::from_secs),
        page_size: configured.page_size.unwrap_or(defaults.page_size),
        max_events: configured.max_events.or(defaults.max_events),
        overlap: configured
            .overlap_secs
            .map_or(defaults.overlap, Duration::from_secs),
    }
}

/// Runs one back-flow job once: settings read fresh, then every managed group.
pub async fn run_once(deps: &JobDeps, job: Job, trigger: &Value) -> Result<RunSummary, SyncError> {
    let settings = deps.conn.settings().await?;
    check_hooks(deps, job).await;
    run_with(deps, job, &settings, trigger).await
}

async fn run_with(
    deps: &JobDeps,
    job: Job,
    settings: &Settings,
    trigger: &Value,
) -> Result<RunSummary, SyncError> {
    info!(job = job.name(), trigger = %describe(trigger), "scheduled run started");
    let summary = run_job(&deps.conn, job, settings, deps.limits).await?;
    if !summary.failed_groups.is_empty() {
        error!(job = job.name(), failed = ?summary.failed_groups, "some groups failed; the next run resumes them");
    }
    if summary.skipped > 0 {
        warn!(job = job.name(), skipped = summary.skipped, problems = ?summary.problems, "bad input skipped");
    }
    Ok(summary)
}

/// A start by the schedule: runs the job once when `scheduleminutes` have passed since its last
/// scheduled start (the schedule fires more often; the CRM setting sets the pace).
pub async fn run_scheduled(
    deps: &JobDeps,
    job: Job,
    trigger: &Value,
) -> Result<RunSummary, SyncError> {
    let settings = deps.conn.settings().await?;
    // Every start, due or not: a lost registration costs live events until it is back.
    check_hooks(deps, job).await;
    if !due(&deps.conn, job, &settings).await? {
        return Ok(RunSummary {
            not_due: true,
            ..RunSummary::default()
        });
    }
    run_with(deps, job, &settings, trigger).await
}

/// The event hooks' health check, done by `receiver-state-sync` (one job is enough). A failure
/// is logged and does not stop the job: the poll is the safety net of the hooks.
async fn check_hooks(deps: &JobDeps, job: Job) {
    if job != Job::ReceiverState || deps.conn.hooks.is_none() {
        return;
    }
    match hooks::check(&deps.conn).await {
        Ok(report) if !report.failed.is_empty() => {
            error!(failed = ?report.failed, "event hooks could not all be registered; the next run tries again");
        }
        Ok(_) => {}
        Err(e) => {
            error!(error = %e, retryable = e.is_retryable(), "event hooks could not be checked; the next run tries again");
        }
    }
}

/// The handler of `receiver-state-sync`.
pub async fn handle(deps: &JobDeps, trigger: &Value) -> Result<RunSummary, SyncError> {
    run_once(deps, Job::ReceiverState, trigger).await
}

/// The trigger in one line for the log: the scheduler's id and time when it sent them.
fn describe(trigger: &Value) -> String {
    match trigger {
        Value::Object(map) if map.is_empty() => "{}".to_string(),
        Value::Object(map) => {
            let pick = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("");
            format!("{} {} {}", pick("source"), pick("id"), pick("time"))
                .trim()
                .to_string()
        }
        Value::Null => "none".to_string(),
        _ => "a non-object payload".to_string(),
    }
}

/// Lambda adapter: any JSON in, the run's summary out. The invocation fails only when the run
/// could not start (settings or sources unreadable), so that the scheduler's retry and the
/// error metric see it; a failing group is in the summary and resumes next run.
#[cfg(feature = "aws")]
pub mod lambda {
    use super::*;
    use lambda_runtime::LambdaEvent;

    pub async fn run(
        event: LambdaEvent<Value>,
        deps: &JobDeps,
        job: Job,
    ) -> Result<Value, lambda_runtime::Error> {
        let summary = run_scheduled(deps, job, &event.payload)
            .await
            .map_err(|e| {
                error!(job = job.name(), error = %e, "scheduled run could not start");
                lambda_runtime::Error::from(e.to_string())
            })?;
        Ok(serde_json::to_value(&summary)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_payload_of_any_shape_is_described_without_failing() {
        assert_eq!(describe(&serde_json::json!({})), "{}");
        assert_eq!(
            describe(&serde_json::json!({"source": "aws.scheduler", "id": "x", "time": "t"})),
            "aws.scheduler x t"
        );
        assert_eq!(describe(&serde_json::json!([1])), "a non-object payload");
    }

    #[test]
    fn unset_limits_keep_the_defaults() {
        let l = limits(BackflowLimits {
            page_size: Some(20),
            ..BackflowLimits::default()
        });
        assert_eq!(l.page_size, 20);
        assert_eq!(l.budget, RunLimits::default().budget);
        assert!(l.budget < Duration::from_secs(900));
    }
}
