//! One event hook delivery, worked by the back-flow path of its event (docs/architecture.md
//! §10.4): an unsubscribe as the receiver-state job, a sign-up as the lead job.

use super::model::{EventKind, JobContext, Outcome, RunSummary, managed_groups};
use super::{lead_sync, receiver_state};
use crate::domain::hooks::{HookEvent, HookEventKind};
use crate::domain::settings::Settings;
use crate::usecases::connector::{Connector, SyncError};
use tracing::info;

/// Applies one delivery: reads the receiver it names and hands it to the back-flow path of
/// the event. Deliveries of groups the connector does not manage, of receivers gone since,
/// and `updated`/`deleted` events change nothing.
pub async fn on_event(
    conn: &Connector,
    settings: &Settings,
    event: &HookEvent,
) -> Result<Outcome, SyncError> {
    let Some(hooks) = &conn.hooks else {
        return Err(SyncError::Config(
            "a CleverReach event arrived, but this function has no hooks configured".into(),
        ));
    };
    if matches!(event.kind, HookEventKind::Updated | HookEventKind::Deleted) {
        return Ok(Outcome::Ignored);
    }
    let mut summary = RunSummary::default();
    let sources = conn.sources.managed_sources().await?;
    let groups = managed_groups(&sources, &mut summary);
    let Some(group) = groups.iter().find(|g| g.id == event.group_id) else {
        info!(group_id = %event.group_id, "event of a group the connector does not manage");
        return Ok(Outcome::Ignored);
    };
    let Some(record) = hooks
        .registry
        .receiver_by_id(&event.group_id, &event.receiver_id)
        .await?
    else {
        return Ok(Outcome::Ignored);
    };
    let context = JobContext {
        settings: settings.clone(),
    };
    // Problems of other sources (an unreadable checklist) are not this event's.
    let known = summary.problems.len();
    let outcome = match event.kind {
        // The receiver's state now decides: a re-subscribe since the event is not undone.
        HookEventKind::Unsubscribed if record.deactivated.is_some() => {
            receiver_state::apply(
                conn,
                &context,
                group,
                EventKind::Unsubscribed,
                &record,
                &mut summary,
            )
            .await?
        }
        HookEventKind::Unsubscribed => Outcome::Ignored,
        HookEventKind::Subscribed | HookEventKind::Created => {
            let linked: Vec<_> = sources.iter().filter(|s| s.group_id == group.id).collect();
            lead_sync::apply(conn, &context, group, &linked, &record, &mut summary).await?
        }
        HookEventKind::Updated | HookEventKind::Deleted => Outcome::Ignored,
    };
    if let Some(problem) = summary.problems.get(known) {
        return Err(SyncError::Invalid(problem.clone()));
    }
    Ok(outcome)
}
