//! Use case: the orphan sweep of the nightly resync (docs/architecture.md §10.6). A group the
//! connector created can outlive its purpose without the connector hearing of it: its source
//! was deleted, or its sync turned off, while the event was lost. The sweep lists the groups
//! this connector created (they carry its creation marker naming this CRM organisation),
//! finds those no source with sync on points at, and handles them as the lost event would
//! have: per the deletion settings, behind the brake.
//!
//! Steps: list the connector's groups → skip those created in the last hour (a sync may be
//! creating one right now and not have stored its id yet) → the sources that name each group
//! → none: the source was deleted (`RecordDeleted`) → only sources with sync off: handled as
//! "sync off" through the source path (status, confirmation and all) when the settings would
//! delete the group → report.

use super::connector::{Connector, SyncError};
use super::source::{GroupOutcome, apply_deletion_policy, apply_sync_off};
use crate::domain::brake::Held;
use crate::domain::deletion::{DeletionReason, GroupFate, group_fate};
use crate::domain::settings::Settings;
use crate::domain::source::{GroupId, SourceKind};
use std::collections::BTreeMap;
use tracing::{info, warn};

/// A group created less than this long ago is left for the next sweep.
pub const MIN_AGE_SECS: i64 = 3600;

/// What the sweep did with one orphaned group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptGroup {
    pub group_id: String,
    pub reason: DeletionReason,
    /// The sources (with sync off) that still name the group; empty when it has none.
    pub sources: Vec<(SourceKind, String)>,
    pub outcome: GroupOutcome,
    pub held: Option<Held>,
}

/// What the sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Groups this connector created.
    pub connector_groups: usize,
    /// Of those, the orphans, with what happened to each.
    pub orphans: Vec<SweptGroup>,
}

impl SweepReport {
    pub fn count(&self, outcome: GroupOutcome) -> usize {
        self.orphans.iter().filter(|o| o.outcome == outcome).count()
    }
}

/// Finds the connector's orphaned groups and handles each per the deletion settings.
pub async fn sweep_orphans(
    conn: &Connector,
    settings: &Settings,
) -> Result<SweepReport, SyncError> {
    let now = (conn.now)();
    let groups: Vec<_> = conn
        .groups
        .list_groups()
        .await?
        .into_iter()
        .filter(|g| g.created_by_connector)
        .collect();
    let mut named: BTreeMap<String, Vec<(SourceKind, String)>> = BTreeMap::new();
    for source in conn.sources.managed_sources().await? {
        named
            .entry(source.group_id.trim().to_string())
            .or_default()
            .push((source.kind, source.id));
    }
    let mut report = SweepReport {
        connector_groups: groups.len(),
        ..SweepReport::default()
    };
    for group in groups {
        if group.created_at.is_some_and(|at| now - at < MIN_AGE_SECS) {
            continue;
        }
        let Ok(group_id) = GroupId::new(&group.id) else {
            continue;
        };
        let sources = named.get(group_id.as_str()).cloned().unwrap_or_default();
        let swept = if sources.is_empty() {
            let (outcome, held) = apply_deletion_policy(
                conn,
                settings,
                DeletionReason::RecordDeleted,
                &group_id,
                // The source is gone with its checklist: the group's opt-outs are still
                // recorded as receiver-state rows before the delete, but no type is set to no.
                Vec::new(),
                false,
            )
            .await?;
            SweptGroup {
                group_id: group.id.clone(),
                reason: DeletionReason::RecordDeleted,
                sources,
                outcome,
                held,
            }
        } else {
            let Some(swept) = sync_off(conn, settings, &group_id, group.locked, sources).await?
            else {
                continue;
            };
            swept
        };
        match (&swept.held, swept.reason) {
            (Some(held), DeletionReason::RecordDeleted) => warn!(
                group_id = %swept.group_id,
                active = held.0.removing(),
                "orphaned group of a deleted source not deleted: it holds more active receivers than cleverreach:safety:maxremovals; delete it in CleverReach if it is no longer wanted"
            ),
            (Some(held), _) => {
                warn!(group_id = %swept.group_id, "orphaned group not deleted: {held}")
            }
            (None, reason) => {
                info!(group_id = %swept.group_id, ?reason, outcome = ?swept.outcome, "orphaned group handled")
            }
        }
        report.orphans.push(swept);
    }
    Ok(report)
}

/// A group whose sources all exist: an orphan when every one has sync off; then handled as
/// "sync off" on each (the first deletes or holds, the status goes on each source). `None`
/// when some source still syncs it or the settings keep it.
async fn sync_off(
    conn: &Connector,
    settings: &Settings,
    group_id: &GroupId,
    locked: bool,
    sources: Vec<(SourceKind, String)>,
) -> Result<Option<SweptGroup>, SyncError> {
    let mut records = Vec::new();
    for (kind, id) in &sources {
        match conn.sources.source(*kind, id).await? {
            Some(record) if record.source.sync_enabled => return Ok(None),
            Some(record) => records.push(record),
            None => {}
        }
    }
    let fate = group_fate(DeletionReason::SyncDisabled, &settings.deletion, locked);
    if fate == GroupFate::Keep || records.is_empty() {
        // Kept per the settings: as the "sync off" event itself would have left it.
        return Ok(None);
    }
    let mut swept = SweptGroup {
        group_id: group_id.as_str().to_string(),
        reason: DeletionReason::SyncDisabled,
        sources,
        outcome: GroupOutcome::Unchanged,
        held: None,
    };
    for record in records {
        let sync = apply_sync_off(conn, settings, record.source.kind, &record.source.id).await?;
        if swept.outcome == GroupOutcome::Unchanged || sync.outcome != GroupOutcome::Unchanged {
            swept.outcome = sync.outcome;
            swept.held = sync.held;
        }
    }
    Ok(Some(swept))
}
