//! Use case: a source (campaign, campaign activity, marketing list) changed. Create, reuse,
//! rename, reconcile or delete its group, then write the sync status back; a marketing list's
//! change also reaches the campaigns and activities it is linked to.
//! See `docs/architecture.md` ("A source changed").

use super::backflow;
use super::brake;
use super::connector::{Connector, SyncError};
use super::hooks;
use super::people::{self, PeopleScope};
use super::reconcile::{ReconcileReport, reconcile_group};
use crate::domain::brake::Held;
use crate::domain::change::{AttrValue, ChangeEvent, Continuation, CrmMessage, column};
use crate::domain::checklist::{Checklist, NewsletterTypeId};
use crate::domain::deletion::{DeletionReason, GroupFate, group_fate, lock_new_groups};
use crate::domain::naming::{group_name, receiver_info};
use crate::domain::routing::QueueFamily;
use crate::domain::settings::Settings;
use crate::domain::source::{GroupId, SourceKind, SourceRecord};
use crate::ports::crm::{SourceStatus, SourceStore};
use crate::ports::newsletter::Group;
use crate::ports::queue::ChangeQueue;
use tracing::info;

/// What happened to a source's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Receivers worked out and written.
    Reconciled,
    /// Only the group's name or description changed.
    GroupUpdated,
    Deleted,
    /// Kept per the deletion settings; no longer synced.
    Kept,
    /// Nothing to do (sync off and nothing changed, no group known, …).
    Unchanged,
    /// The group should have been deleted, but the brake held the deletion back: it stays
    /// (docs/architecture.md §2).
    Held,
}

/// The result of handling one source change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSync {
    pub outcome: GroupOutcome,
    pub group: Option<GroupId>,
    pub report: Option<ReconcileReport>,
    /// What the brake held back: the group's deletion, or a reconcile's removals.
    pub held: Option<Held>,
}

impl SourceSync {
    fn unchanged(group: Option<GroupId>) -> Self {
        SourceSync {
            outcome: GroupOutcome::Unchanged,
            group,
            report: None,
            held: None,
        }
    }
}

/// Handles a change of a source: the event says which, the CRM says what it is now. A marketing
/// list's change also reaches the campaigns and activities it is linked to (`follow_up`: where
/// the reconciles a deleted list needs are queued, see [`after_list_deleted`]).
pub async fn on_source_change(
    conn: &Connector,
    settings: &Settings,
    kind: SourceKind,
    event: &ChangeEvent,
    follow_up: Option<&dyn ChangeQueue>,
) -> Result<SourceSync, SyncError> {
    let (record, sync) = sync_source(conn, settings, kind, event).await?;
    if kind != SourceKind::MarketingList || event.is_resync() {
        return Ok(sync);
    }
    match record {
        // Campaigns and activities linked to the list follow its members, synced list or not.
        Some(record) => {
            on_linked_list_change(conn, settings, &record, event, follow_up).await?;
        }
        None if event.message == CrmMessage::Delete => {
            after_list_deleted(conn, settings, event, follow_up).await?;
        }
        None => {}
    }
    Ok(sync)
}

/// Full reconcile of one source whatever the event said ("resync"), the same path as a queued
/// resync request: a deactivated source has its sync turned off, an unreadable checklist leaves
/// the group alone, a source with sync off is left as it is.
pub async fn resync_source(
    conn: &Connector,
    settings: &Settings,
    kind: SourceKind,
    id: &str,
) -> Result<SourceSync, SyncError> {
    let run = format!("resync-{}", (conn.now)());
    let event = ChangeEvent::resync_request(kind.logical_name(), id, &run, (conn.now)() * 1000);
    Ok(sync_source(conn, settings, kind, &event).await?.1)
}

/// Handles a source whose sync is off as its "sync off" event would have (the nightly orphan
/// sweep's way into this path, `usecases::sweep`): the group deleted, kept or held back per the
/// settings, the confirmation used, the status written.
pub async fn apply_sync_off(
    conn: &Connector,
    settings: &Settings,
    kind: SourceKind,
    id: &str,
) -> Result<SourceSync, SyncError> {
    let now = (conn.now)();
    let mut event =
        ChangeEvent::resync_request(kind.logical_name(), id, &format!("sweep-{now}"), now * 1000);
    event
        .target
        .insert(column::SYNC_FLAG.to_string(), AttrValue::Bool(false));
    Ok(sync_source(conn, settings, kind, &event).await?.1)
}

/// A marketing list changed in a way that changes who it feeds: members added or removed, its
/// query or state changed. The campaigns and campaign activities it is linked to follow (rule 6
/// of the membership rule), whether or not the list itself is synced. Returns how many linked
/// sources there are.
///
/// A full reconcile of a linked source goes to that source's own queue when there is one
/// (`follow_up`): only the source's queue, one message of it at a time, may create or delete
/// its group; done here beside a running campaign worker, both could create a group for the
/// same campaign.
pub async fn on_linked_list_change(
    conn: &Connector,
    settings: &Settings,
    list: &SourceRecord,
    event: &ChangeEvent,
    follow_up: Option<&dyn ChangeQueue>,
) -> Result<usize, SyncError> {
    let membership = event.is_membership_change();
    let selection = event.list_selection_may_have_changed();
    let Some(shape) = &list.list else {
        return Ok(0);
    };
    if !(membership || selection) {
        return Ok(0);
    }
    let linked = conn.sources.sources_linking_list(&list.source.id).await?;
    if linked.is_empty() {
        return Ok(0);
    }
    let named = &event.related;
    if event.names_few_members() && !selection {
        // Those members everywhere: their memberships are read afresh, so one still in the
        // campaign through another list or as a linked lead stays.
        let scope = PeopleScope::of_records(shape.member_kind, named.iter().map(|r| &r.id));
        people::reconcile_people(conn, settings, scope, None).await?;
    } else if let Some(queue) = follow_up {
        let run_id = format!("list-changed-{}", event.operation_id);
        let now_ms = (conn.now)() * 1000;
        for (kind, id) in &linked {
            let request = ChangeEvent::resync_request(kind.logical_name(), id, &run_id, now_ms);
            queue
                .enqueue(QueueFamily::for_source(*kind), &request)
                .await?;
        }
    } else {
        for (kind, id) in &linked {
            resync_source(conn, settings, *kind, id).await?;
        }
    }
    Ok(linked.len())
}

/// A marketing list was deleted. The CRM drops its links to campaigns and activities with it,
/// without an event of their own, so which of them held its members can no longer be read:
/// every campaign and activity with sync on is reconciled instead. With a queue, as one resync
/// request per source on its own queue (no single long invocation, however many there are;
/// the delete's operation id keys them, so a redelivered delete queues nothing twice);
/// without one, one after another here. Returns how many sources were reached.
pub async fn after_list_deleted(
    conn: &Connector,
    settings: &Settings,
    event: &ChangeEvent,
    follow_up: Option<&dyn ChangeQueue>,
) -> Result<usize, SyncError> {
    let run_id = format!("list-deleted-{}", event.operation_id);
    let mut reached = 0;
    for kind in [SourceKind::Campaign, SourceKind::CampaignActivity] {
        match follow_up {
            Some(queue) => {
                let now_ms = (conn.now)() * 1000;
                let sources = conn.sources.as_ref();
                queue_resyncs(sources, queue, kind, &run_id, now_ms, &mut reached).await?;
            }
            None => {
                for id in conn.sources.synced_sources(kind).await? {
                    resync_source(conn, settings, kind, &id).await?;
                    reached += 1;
                }
            }
        }
    }
    info!(
        list = %event.record_id,
        sources = reached,
        queued = follow_up.is_some(),
        "list deleted: synced campaigns and activities reconciled"
    );
    Ok(reached)
}

/// Queues one resync request per source of this kind whose sync is on, on the kind's queue;
/// `run_id` is the requests' operation id, so a retried run queues nothing twice (FIFO
/// de-duplication). `queued` counts what was queued, also when a later send fails.
pub async fn queue_resyncs(
    sources: &dyn SourceStore,
    queue: &dyn ChangeQueue,
    kind: SourceKind,
    run_id: &str,
    now_ms: i64,
    queued: &mut usize,
) -> Result<(), SyncError> {
    for id in sources.synced_sources(kind).await? {
        let request = ChangeEvent::resync_request(kind.logical_name(), &id, run_id, now_ms);
        queue
            .enqueue(QueueFamily::for_source(kind), &request)
            .await?;
        *queued += 1;
    }
    Ok(())
}

/// The source's own group: deleted, kept, created, renamed or reconciled; status written.
async fn sync_source(
    conn: &Connector,
    settings: &Settings,
    kind: SourceKind,
    event: &ChangeEvent,
) -> Result<(Option<SourceRecord>, SourceSync), SyncError> {
    let record = conn.sources.source(kind, &event.record_id).await?;
    let Some(record) = record else {
        return Ok((None, on_source_deleted(conn, settings, kind, event).await?));
    };
    let result = sync_existing_source(conn, settings, &record, event).await;
    write_status(conn, &record, &result).await;
    Ok((Some(record), result?))
}

async fn sync_existing_source(
    conn: &Connector,
    settings: &Settings,
    record: &SourceRecord,
    event: &ChangeEvent,
) -> Result<SourceSync, SyncError> {
    let source = &record.source;
    if !source.active && source.sync_enabled {
        // Deactivating a source turns its sync flag off (a write-back), then it is handled as
        // "sync off".
        conn.sources.turn_sync_off(source.kind, &source.id).await?;
        info!("source inactive: sync turned off");
        return sync_disabled(conn, settings, record).await;
    }
    if !source.sync_enabled {
        // A resync request for a source whose sync was turned off since is no "sync off"
        // event: that one comes (or came) on its own and decides the group's fate.
        return if event.sync_flag_or_state_may_have_changed() {
            sync_disabled(conn, settings, record).await
        } else {
            Ok(SourceSync::unchanged(source.group_id.clone()))
        };
    }
    if let Some(problem) = &record.checklist_problem {
        // Reconciling against a checklist we cannot read would remove everyone.
        return Err(SyncError::Invalid(format!(
            "the {} checklist cannot be read, so the group was left as it is: {problem}",
            source.kind.label()
        )));
    }
    let (group, created) = ensure_group(conn, settings, record).await?;
    let continued = event.continuation.is_some();
    if created || event.sync_flag_or_state_may_have_changed() || (event.is_resync() && !continued) {
        // A group created or reused gets its event hooks (a failure waits for the health
        // check of the next scheduled run).
        hooks::register_best_effort(conn, group.as_str(), created).await;
    }
    // "Resync": the flag on the source, or a queued request of "resync every source".
    let full_resync = record.resync_requested || event.is_resync();
    if !(created || full_resync || event.may_change_members()) {
        return Ok(SourceSync {
            outcome: GroupOutcome::GroupUpdated,
            group: Some(group),
            report: None,
            held: None,
        });
    }
    // A bulk add (more than SCOPED_MEMBERS_LIMIT named) reads the list 5000 a request instead.
    let scoped_members = event.names_few_members() && !created && !full_resync;
    let report = if scoped_members {
        // Only the named members: a list of 100,000 is not read again for one new member.
        let ids: Vec<String> = event.related.iter().map(|r| r.id.clone()).collect();
        people::on_list_members_change(conn, settings, record, &group, &ids).await?
    } else {
        reconcile_group(conn, settings, record, &group, event.continuation.as_ref()).await?
    };
    if let Some(compared) = report.unfinished {
        continue_later(conn, record, event, &report, compared).await?;
        return Ok(SourceSync {
            outcome: GroupOutcome::Reconciled,
            group: Some(group),
            held: None,
            report: Some(report),
        });
    }
    if record.resync_requested {
        conn.sources.clear_resync(source.kind, &source.id).await?;
    }
    if record.removals_confirmed && report.full {
        // Used up by this full reconcile, whether or not the brake needed it.
        conn.sources
            .clear_removal_confirmation(source.kind, &source.id)
            .await?;
    }
    Ok(SourceSync {
        outcome: GroupOutcome::Reconciled,
        group: Some(group),
        held: report.held,
        report: Some(report),
    })
}

/// A full reconcile is continued across this many invocations at most (at 1 s per request and a
/// 120 s timeout, one pass writes at least 15,000 receivers, so 1,000,000 fit).
pub const MAX_PASSES: u32 = 100;

/// Queues the message that continues a full reconcile whose invocation ran out of time (or
/// whose last pass must compare every member once more): on the source's own queue, in the
/// record's message group, behind this one. A pass that compared no member, a last pass that
/// could not compare them all, or too many passes fail instead: continuing would never end.
async fn continue_later(
    conn: &Connector,
    record: &SourceRecord,
    event: &ChangeEvent,
    report: &ReconcileReport,
    compared: usize,
) -> Result<(), SyncError> {
    let before = event.continuation.clone().unwrap_or_default();
    if before.final_check && !report.final_check_due {
        return Err(SyncError::Config(format!(
            "every member was written, but comparing all {} of them in one invocation, which \
             removals need, did not fit in its time limit (pass {}, {} compared): nobody was \
             removed; raise the worker function's timeout",
            before.compared, report.pass, report.compared
        )));
    }
    if report.compared == 0 || report.pass >= MAX_PASSES {
        return Err(SyncError::Config(format!(
            "the full reconcile stopped at its time limit in pass {} after {compared} members \
             without getting further than the pass before: raise the worker function's timeout",
            report.pass
        )));
    }
    let Some(queue) = conn.follow_up.as_deref() else {
        return Err(SyncError::Config(
            "the full reconcile must continue in a new message, but this worker has no queue \
             to send it to (its own queue URL is not configured)"
                .into(),
        ));
    };
    let carried = carried_counts(&before, report, compared);
    let next = event.continued(carried, (conn.now)() * 1000);
    queue
        .enqueue(QueueFamily::for_source(record.source.kind), &next)
        .await?;
    info!(
        pass = report.pass + 1,
        compared, "reconcile continues in a new message"
    );
    Ok(())
}

/// What the next pass needs to know of this one and those before.
fn carried_counts(
    before: &Continuation,
    report: &ReconcileReport,
    compared: usize,
) -> Continuation {
    let s = &report.summary;
    let active_at_start = if report.pass <= 1 {
        report.active_before
    } else {
        before.active_at_start
    };
    let mut next = Continuation {
        pass: report.pass.max(1) + 1,
        compared,
        added: before.added + s.added,
        updated: before.updated + s.updated,
        email_changed: before.email_changed + s.email_changed,
        active_at_start,
        ..Continuation::default()
    };
    if report.final_check_due {
        // The counts are this pass's and those before it already (see `reconcile_group`); the
        // last pass counts everything but the writes itself.
        next.added = s.added;
        next.updated = s.updated;
        next.email_changed = s.email_changed;
        next.final_check = true;
    } else if report.resume.is_some() {
        // The next pass sees other members: everything adds up.
        next.resume = report.resume.clone();
        // In step after a first pass that found no active receiver: written by an earlier
        // pass (a person in two lists), so not "unchanged" (see `reconcile_group`).
        if active_at_start > 0 {
            next.unchanged = before.unchanged + s.unchanged;
        }
        next.opted_out = before.opted_out + s.kept_opted_out + s.skipped_blocked + s.opted_out;
        next.rejected = before.rejected + report.rejected;
        next.skipped = before.skipped.clone();
        for (reason, n) in &report.skipped {
            *next.skipped.entry((*reason).to_string()).or_default() += n;
        }
    }
    next
}

/// Makes sure the source has its group, named and described as the source says. Returns the
/// group and whether it was created now (then all members must be added).
pub async fn ensure_group(
    conn: &Connector,
    settings: &Settings,
    record: &SourceRecord,
) -> Result<(GroupId, bool), SyncError> {
    let source = &record.source;
    let name = group_name(&settings.group_prefix, source);
    let info = receiver_info(source);
    if let Some(id) = &source.group_id
        && let Some(group) = conn.groups.get_group(id.as_str()).await?
    {
        update_group(conn, source.kind, &group, &name, &info).await?;
        return Ok((id.clone(), false));
    }
    // No group yet, or it was deleted in CleverReach: create one and store its id.
    let group = conn
        .groups
        .create_group(&name, lock_new_groups(&settings.deletion), &info)
        .await?;
    let id = GroupId::new(&group.id)
        .map_err(|e| SyncError::Invalid(format!("CleverReach returned a group without id: {e}")))?;
    conn.sources
        .record_group(source.kind, &source.id, Some(&id))
        .await?;
    info!(group_id = %group.id, "group created");
    Ok((id, true))
}

async fn update_group(
    conn: &Connector,
    kind: SourceKind,
    group: &Group,
    name: &str,
    info: &str,
) -> Result<(), SyncError> {
    if group.name != name {
        conn.groups.rename_group(&group.id, name).await?;
        info!(group_id = %group.id, "group renamed");
    }
    // Only a campaign activity's description goes to the group; other groups keep whatever
    // receiver_info they have.
    if kind == SourceKind::CampaignActivity && group.receiver_info.trim() != info.trim() {
        conn.groups.set_receiver_info(&group.id, info).await?;
    }
    Ok(())
}

/// The sync flag is off: delete or keep the group per the deletion settings.
async fn sync_disabled(
    conn: &Connector,
    settings: &Settings,
    record: &SourceRecord,
) -> Result<SourceSync, SyncError> {
    let source = &record.source;
    let Some(group_id) = source.group_id.clone() else {
        return Ok(SourceSync::unchanged(None));
    };
    let types = source.checklist.yes_types();
    let confirmed = record.removals_confirmed;
    let (outcome, held) = apply_deletion_policy(
        conn,
        settings,
        DeletionReason::SyncDisabled,
        &group_id,
        types,
        confirmed,
    )
    .await?;
    if outcome == GroupOutcome::Deleted {
        conn.sources
            .record_group(source.kind, &source.id, None)
            .await?;
    }
    if confirmed {
        conn.sources
            .clear_removal_confirmation(source.kind, &source.id)
            .await?;
    }
    Ok(SourceSync {
        outcome,
        group: (outcome != GroupOutcome::Deleted).then_some(group_id),
        report: None,
        held,
    })
}

/// The source is gone: its group id comes from the delete event's pre-image.
async fn on_source_deleted(
    conn: &Connector,
    settings: &Settings,
    kind: SourceKind,
    event: &ChangeEvent,
) -> Result<SourceSync, SyncError> {
    let group = event.group_id_before().and_then(|g| GroupId::new(g).ok());
    let Some(group) = group else {
        if event.message == CrmMessage::Delete {
            tracing::warn!(
                kind = kind.logical_name(),
                "deleted source without a group id in the pre-image: nothing to delete (register a pre-image with crc_groupid on the Delete step)"
            );
        }
        return Ok(SourceSync::unchanged(None));
    };
    // The types the group sent come from the delete's pre-image; without them the opt-outs are
    // still recorded, but no checklist can be set to "no".
    let types = event
        .checklist_before()
        .and_then(|text| Checklist::parse(text).ok())
        .map(|c| c.yes_types())
        .unwrap_or_default();
    // A deleted source carries no confirmation: a group the brake holds back stays, and the
    // nightly orphan sweep reports it until it is deleted in CleverReach.
    let (outcome, held) = apply_deletion_policy(
        conn,
        settings,
        DeletionReason::RecordDeleted,
        &group,
        types,
        false,
    )
    .await?;
    Ok(SourceSync {
        outcome,
        group: (outcome != GroupOutcome::Deleted).then_some(group),
        report: None,
        held,
    })
}

/// Deletes or keeps a group whose source is gone or no longer synced, per the deletion
/// settings; a deletion the brake holds back leaves the group as it is (`confirmed`: the
/// source carries a confirmation).
pub async fn apply_deletion_policy(
    conn: &Connector,
    settings: &Settings,
    reason: DeletionReason,
    group_id: &GroupId,
    types: Vec<NewsletterTypeId>,
    confirmed: bool,
) -> Result<(GroupOutcome, Option<Held>), SyncError> {
    let Some(group) = conn.groups.get_group(group_id.as_str()).await? else {
        return Ok((GroupOutcome::Unchanged, None));
    };
    match group_fate(reason, &settings.deletion, group.locked) {
        GroupFate::Delete => {
            let verdict = brake::group_deletion(conn, settings, group_id, confirmed).await?;
            if let Some(held) = verdict.held() {
                tracing::warn!(group_id = %group_id.as_str(), ?reason, "group not deleted: {held}");
                return Ok((GroupOutcome::Held, Some(held)));
            }
            // Its unsubscribes and bounces go to the CRM first: they die with the group.
            backflow::flush_group(conn, settings, group_id.as_str(), types).await?;
            conn.groups.delete_group(group_id.as_str()).await?;
            info!(group_id = %group_id.as_str(), ?reason, "group deleted");
            hooks::unregister_best_effort(conn, group_id.as_str()).await;
            Ok((GroupOutcome::Deleted, None))
        }
        GroupFate::Keep => {
            info!(group_id = %group_id.as_str(), ?reason, "group kept");
            // A kept group has no live events; the scheduled back-flow still reads it.
            hooks::unregister_best_effort(conn, group_id.as_str()).await;
            Ok((GroupOutcome::Kept, None))
        }
    }
}

/// Writes the sync status on the source (best effort: a failure here is logged, it must not
/// turn a successful sync into a retried one).
async fn write_status(
    conn: &Connector,
    record: &SourceRecord,
    result: &Result<SourceSync, SyncError>,
) {
    let now = chrono::DateTime::from_timestamp((conn.now)(), 0).unwrap_or_default();
    let status = match result {
        // Held back by the brake: the last error says what and how to let it through; the
        // status and last sync time stay those of the last good sync.
        Ok(SourceSync {
            held: Some(held), ..
        }) => SourceStatus::Failed {
            error: format!("{}: {held}", now.format("%Y-%m-%d %H:%M:%S UTC")),
        },
        Ok(sync) => {
            let status = match (&sync.outcome, &sync.report) {
                (GroupOutcome::Reconciled, Some(report)) if report.unfinished.is_some() => {
                    // Progress only: the last sync time waits for the pass that finishes.
                    let status = SourceStatus::InProgress {
                        status: report.status_line(),
                    };
                    let source = &record.source;
                    if let Err(e) = conn
                        .sources
                        .write_status(source.kind, &source.id, &status)
                        .await
                    {
                        tracing::warn!(error = %e, "sync progress not written");
                    }
                    return;
                }
                (GroupOutcome::Reconciled, Some(report)) => report.status_line(),
                (GroupOutcome::GroupUpdated, _) => "group name and description updated".into(),
                (GroupOutcome::Deleted, _) => "group deleted (sync off or source deleted)".into(),
                (GroupOutcome::Kept, _) => {
                    "sync off: group kept in CleverReach per the deletion settings".into()
                }
                _ => return,
            };
            SourceStatus::Synced {
                status,
                at: now.to_rfc3339(),
            }
        }
        // The status and last sync time stay those of the last good sync; the error says when
        // it happened and what went wrong, until a good sync clears it.
        Err(e) => SourceStatus::Failed {
            error: format!(
                "{}: the sync failed: {e}",
                now.format("%Y-%m-%d %H:%M:%S UTC")
            ),
        },
    };
    let source = &record.source;
    if let Err(e) = conn
        .sources
        .write_status(source.kind, &source.id, &status)
        .await
    {
        tracing::warn!(error = %e, "sync status not written");
    }
}
