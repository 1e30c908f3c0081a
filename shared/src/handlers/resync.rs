//! Handler: "resync every source" (function `resync`, `make resync`). Lists every campaign,
//! campaign activity and marketing list whose sync flag is on and queues one resync request per
//! source on its family's queue, so that each full reconcile runs in its own worker invocation
//! (a big group never shares a Lambda's time limit with the others). The worker then reconciles
//! the source as it would for `crc_resync` (docs/architecture.md §3 "resync"). A run over every
//! kind then sweeps the connector's orphaned groups (`usecases::sweep`) when it has a
//! connection to CleverReach.

use crate::domain::routing::QueueFamily;
use crate::domain::source::SourceKind;
use crate::error::Retryable;
use crate::ports::crm::SourceStore;
use crate::ports::queue::ChangeQueue;
use crate::usecases::source::{GroupOutcome, queue_resyncs};
use crate::usecases::sweep::sweep_orphans;
use crate::usecases::{Connector, SyncError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::info;

/// The invocation's event: `{}` (or nothing) for every source kind, `{"kind": "list"}` for one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResyncRequest {
    /// `list` (or `marketing-list`), `campaign`, `campaignactivity` (or `campaign-activity`).
    #[serde(default)]
    pub kind: Option<String>,
}

impl ResyncRequest {
    /// Reads the event; `null` means "every kind".
    pub fn from_event(event: &Value) -> Result<ResyncRequest, ResyncError> {
        if event.is_null() {
            return Ok(ResyncRequest::default());
        }
        serde_json::from_value(event.clone()).map_err(|e| {
            ResyncError::BadRequest(format!(
                "the event must be {{}} or {{\"kind\": \"list\" | \"campaign\" | \"campaignactivity\"}}: {e}"
            ))
        })
    }

    /// The source kinds to resync.
    pub fn kinds(&self) -> Result<Vec<SourceKind>, ResyncError> {
        let Some(kind) = &self.kind else {
            return Ok(SourceKind::ALL.to_vec());
        };
        let wanted = kind.trim().to_ascii_lowercase();
        SourceKind::from_logical_name(&wanted)
            .or_else(|| SourceKind::from_entity_set(&wanted))
            .or_else(|| {
                SourceKind::ALL
                    .into_iter()
                    .find(|k| QueueFamily::for_source(*k).name() == wanted)
            })
            .map(|k| vec![k])
            .ok_or_else(|| {
                ResyncError::BadRequest(format!(
                    "unknown source kind {kind:?}: use list, campaign or campaignactivity"
                ))
            })
    }
}

/// Why the resync could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum ResyncError {
    #[error("{0}")]
    BadRequest(String),
    /// Listing the sources or queueing failed after `queued` requests went out.
    #[error("{queued} resync requests were queued, then: {error}")]
    Failed { queued: usize, error: SyncError },
}

impl Retryable for ResyncError {
    fn is_retryable(&self) -> bool {
        match self {
            ResyncError::BadRequest(_) => false,
            ResyncError::Failed { error, .. } => error.is_retryable(),
        }
    }
}

/// What was queued.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ResyncQueued {
    /// Resync requests queued, in all.
    pub queued: usize,
    /// Per source kind (`list`, `campaign`, `campaignactivity`).
    pub by_kind: BTreeMap<String, usize>,
    /// The run's id: the operation id of every request it queued.
    pub run_id: String,
    /// What the orphan sweep found (runs over every kind with CleverReach only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orphans: Option<OrphanSummary>,
}

/// The orphan sweep in numbers: the connector's groups, and of its orphans those deleted,
/// kept per the settings, and held back by the brake.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrphanSummary {
    pub connector_groups: usize,
    pub deleted: usize,
    pub kept: usize,
    pub held: usize,
    /// The groups the brake held back (their source is gone: delete them in CleverReach, or
    /// raise `cleverreach:safety:maxremovals` for one night).
    pub held_groups: Vec<String>,
}

/// What the handler needs: the CRM to list sources, the queue to send the requests to.
pub struct ResyncDeps<Q: ChangeQueue> {
    pub sources: Arc<dyn SourceStore>,
    pub queue: Q,
    /// Both systems, for the orphan sweep; without it the run only queues resyncs.
    pub sweep: Option<Connector>,
}

/// Queues one resync request per source with sync on. `run_id` is the requests' operation id:
/// a retried invocation with the same id queues nothing twice (FIFO de-duplication).
pub async fn resync_all<Q: ChangeQueue>(
    deps: &ResyncDeps<Q>,
    request: &ResyncRequest,
    run_id: &str,
    now_ms: i64,
) -> Result<ResyncQueued, ResyncError> {
    let kinds = request.kinds()?;
    let mut done = ResyncQueued {
        run_id: run_id.to_string(),
        ..ResyncQueued::default()
    };
    for kind in kinds {
        let before = done.queued;
        queue_resyncs(
            deps.sources.as_ref(),
            &deps.queue,
            kind,
            run_id,
            now_ms,
            &mut done.queued,
        )
        .await
        .map_err(|error| ResyncError::Failed {
            queued: done.queued,
            error,
        })?;
        let sources = done.queued - before;
        info!(kind = kind.logical_name(), sources, "resync queued");
        done.by_kind
            .insert(kind.logical_name().to_string(), sources);
    }
    Ok(done)
}

/// After a run over every kind: the orphan sweep, when the deployment gave the function
/// CleverReach (`None` otherwise, or for a run over one kind).
pub async fn sweep<Q: ChangeQueue>(
    deps: &ResyncDeps<Q>,
    request: &ResyncRequest,
    queued: usize,
) -> Result<Option<OrphanSummary>, ResyncError> {
    let (Some(conn), None) = (&deps.sweep, &request.kind) else {
        return Ok(None);
    };
    {
        let failed = |error| ResyncError::Failed { queued, error };
        let settings = conn.settings().await.map_err(failed)?;
        let report = sweep_orphans(conn, &settings).await.map_err(failed)?;
        let summary = OrphanSummary {
            connector_groups: report.connector_groups,
            deleted: report.count(GroupOutcome::Deleted),
            kept: report.count(GroupOutcome::Kept),
            held: report.count(GroupOutcome::Held),
            held_groups: report
                .orphans
                .iter()
                .filter(|o| o.held.is_some())
                .map(|o| o.group_id.clone())
                .collect(),
        };
        info!(
            groups = summary.connector_groups,
            deleted = summary.deleted,
            kept = summary.kept,
            held = summary.held,
            "orphan sweep"
        );
        Ok(Some(summary))
    }
}

/// Lambda adapter: any JSON event → the number queued.
#[cfg(feature = "aws")]
pub mod lambda {
    use super::*;
    use lambda_runtime::LambdaEvent;

    /// The function's handler. The invocation's request id is the run id, so Lambda's own
    /// retry of a failed invocation does not queue a source twice.
    pub async fn run<Q: ChangeQueue>(
        event: LambdaEvent<Value>,
        deps: &ResyncDeps<Q>,
    ) -> Result<ResyncQueued, lambda_runtime::Error> {
        let request = ResyncRequest::from_event(&event.payload)?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut done = resync_all(deps, &request, &event.context.request_id, now_ms).await?;
        done.orphans = sweep(deps, &request, done.queued).await?;
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(event: Value) -> Result<Vec<SourceKind>, String> {
        ResyncRequest::from_event(&event)
            .and_then(|r| r.kinds())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_event_resyncs_every_kind_and_a_kind_limits_it() {
        assert_eq!(kinds(json!({})), Ok(SourceKind::ALL.to_vec()));
        assert_eq!(kinds(Value::Null), Ok(SourceKind::ALL.to_vec()));
        assert_eq!(
            kinds(json!({"kind": "list"})),
            Ok(vec![SourceKind::MarketingList])
        );
        assert_eq!(
            kinds(json!({"kind": " Campaign-Activity "})),
            Ok(vec![SourceKind::CampaignActivity])
        );
        assert_eq!(
            kinds(json!({"kind": "campaigns"})),
            Ok(vec![SourceKind::Campaign])
        );
    }

    #[test]
    fn an_unknown_kind_or_field_is_refused_with_a_message_naming_it() {
        let err = kinds(json!({"kind": "contact"})).unwrap_err();
        assert!(err.contains("\"contact\""), "{err}");
        let err = kinds(json!({"knid": "list"})).unwrap_err();
        assert!(err.contains("knid"), "{err}");
    }
}
