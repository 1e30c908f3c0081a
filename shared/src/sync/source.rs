//! Use case: a source (campaign, campaign activity, marketing list) changed. Create, reuse,
//! rename, reconcile or delete its group (DESIGN §2 and §3), then write the sync status back.

use super::{Connector, SyncError};
use crate::adapters::cleverreach::CleverReachError;
use crate::adapters::cleverreach::{
    FilterRequest, FilterRule, Group, ListState, ReceiverFilter, TokenStore,
};
use crate::adapters::dataverse::crm::SourceRecord;
use crate::adapters::dataverse::schema;
use crate::domain::change::{AttrValue, ChangeEvent, CrmMessage};
use crate::domain::deletion::{DeletionReason, GroupFate, group_fate, lock_new_groups};
use crate::domain::email::Email;
use crate::domain::naming::{group_name, receiver_info};
use crate::domain::planner::{
    GroupIndexer, GroupOp, PlanSummary, PlannerOptions, ReceiverUpsert, ReconcilePlanner,
};
use crate::domain::receiver::{Candidate, ReceiverData};
use crate::domain::routing::QueueFamily;
use crate::domain::rules::{Assessment, SkipReason, assess};
use crate::domain::settings::Settings;
use crate::domain::source::{GroupId, SourceKind};
use crate::ports::ChangeQueue;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use tracing::info;

/// Columns whose change means the group's receivers must be worked out again.
const MEMBERSHIP_COLUMNS: [&str; 5] = [
    schema::CHECKLIST,
    schema::SYNC_FLAG,
    schema::STATECODE,
    schema::RESYNC,
    "query",
];

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
}

/// What reconciling a group did, for the sync status on the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub summary: PlanSummary,
    /// Members left out, by reason.
    pub skipped: BTreeMap<&'static str, usize>,
    /// Rows CleverReach refused (with their reason in the logs).
    pub rejected: usize,
    /// Dataverse requests for members.
    pub member_requests: u32,
    /// Every member was read and the whole group compared (not only the members an event
    /// named).
    pub full: bool,
    /// Planned removals left alone: the receiver opted out (or was gone) by the time of the
    /// delete, so its opt-out stays for the back-flow.
    pub kept_after_opt_out: usize,
}

impl ReconcileReport {
    /// The status line administrators see on the source.
    pub fn status_line(&self) -> String {
        let s = &self.summary;
        let scope = if self.full {
            "all members compared"
        } else {
            "changed members only"
        };
        let mut line = format!(
            "{scope}: {} added, {} updated, {} e-mail changed, {} removed, {} unchanged",
            s.added, s.updated, s.email_changed, s.removed, s.unchanged
        );
        let opted_out = s.kept_opted_out + s.skipped_blocked + s.opted_out;
        if opted_out > 0 {
            line.push_str(&format!(
                ", {opted_out} opted out in CleverReach or the CRM"
            ));
        }
        let skipped: usize = self.skipped.values().sum();
        if skipped > 0 {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect();
            line.push_str(&format!(", {skipped} skipped ({})", reasons.join(", ")));
        }
        if self.rejected > 0 {
            line.push_str(&format!(", {} refused by CleverReach", self.rejected));
        }
        if self.kept_after_opt_out > 0 {
            line.push_str(&format!(
                ", {} not removed after opting out meanwhile",
                self.kept_after_opt_out
            ));
        }
        line
    }
}

/// A short label per skip reason for the status line.
pub fn skip_label(reason: &SkipReason) -> &'static str {
    match reason {
        SkipReason::EntityNotTransferred(_) => "type not transferred",
        SkipReason::Inactive => "inactive",
        SkipReason::MissingEmail => "no e-mail",
        SkipReason::InvalidEmail => "invalid e-mail",
        SkipReason::DoNotBulkEmail => "no bulk e-mail",
        SkipReason::NoMatchingNewsletterType => "no matching newsletter type",
    }
}

/// The result of handling one source change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSync {
    pub outcome: GroupOutcome,
    pub group: Option<GroupId>,
    pub report: Option<ReconcileReport>,
}

impl SourceSync {
    fn unchanged(group: Option<GroupId>) -> Self {
        SourceSync {
            outcome: GroupOutcome::Unchanged,
            group,
            report: None,
        }
    }
}

/// Handles a change of a source: the event says which, the CRM says what it is now. A marketing
/// list's change also reaches the campaigns and activities it is linked to (`follow_up`: where
/// the reconciles a deleted list needs are queued, see [`after_list_deleted`]).
pub async fn on_source_change<S: TokenStore>(
    conn: &Connector<S>,
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
            super::people::on_linked_list_change(conn, settings, &record, event).await?;
        }
        None if event.message == CrmMessage::Delete => {
            after_list_deleted(conn, settings, event, follow_up).await?;
        }
        None => {}
    }
    Ok(sync)
}

/// A marketing list was deleted. The CRM drops its links to campaigns and activities with it,
/// without an event of their own, so which of them held its members can no longer be read:
/// every campaign and activity with sync on is reconciled instead. With a queue, as one resync
/// request per source on its own queue (no single long invocation, however many there are;
/// the delete's operation id keys them, so a redelivered delete queues nothing twice);
/// without one, one after another here. Returns how many sources were reached.
pub async fn after_list_deleted<S: TokenStore>(
    conn: &Connector<S>,
    settings: &Settings,
    event: &ChangeEvent,
    follow_up: Option<&dyn ChangeQueue>,
) -> Result<usize, SyncError> {
    let run_id = format!("list-deleted-{}", event.operation_id);
    let mut reached = 0;
    for kind in [SourceKind::Campaign, SourceKind::CampaignActivity] {
        let ids = conn.crm.synced_sources(kind).await?;
        for id in &ids {
            match (follow_up, QueueFamily::for_entity(kind.logical_name())) {
                (Some(queue), Some(family)) => {
                    let request = ChangeEvent::resync_request(
                        kind.logical_name(),
                        id,
                        &run_id,
                        (conn.now)() * 1000,
                    );
                    queue.enqueue(family, &request).await?;
                }
                _ => {
                    resync_source(conn, settings, kind, id).await?;
                }
            }
        }
        reached += ids.len();
    }
    info!(
        list = %event.record_id,
        sources = reached,
        queued = follow_up.is_some(),
        "list deleted: synced campaigns and activities reconciled"
    );
    Ok(reached)
}

/// The source's own group: deleted, kept, created, renamed or reconciled; status written.
async fn sync_source<S: TokenStore>(
    conn: &Connector<S>,
    settings: &Settings,
    kind: SourceKind,
    event: &ChangeEvent,
) -> Result<(Option<SourceRecord>, SourceSync), SyncError> {
    let record = conn.crm.source(kind, &event.record_id).await?;
    let Some(record) = record else {
        return Ok((None, on_source_deleted(conn, settings, kind, event).await?));
    };
    let result = sync_existing_source(conn, settings, &record, event).await;
    write_status(conn, &record, &result).await;
    Ok((Some(record), result?))
}

/// Full reconcile of one source whatever the event said ("resync"), the same path as a queued
/// resync request: a deactivated source has its sync turned off, an unreadable checklist leaves
/// the group alone, a source with sync off is left as it is.
pub async fn resync_source<S: TokenStore>(
    conn: &Connector<S>,
    settings: &Settings,
    kind: SourceKind,
    id: &str,
) -> Result<SourceSync, SyncError> {
    let run = format!("resync-{}", (conn.now)());
    let event = ChangeEvent::resync_request(kind.logical_name(), id, &run, (conn.now)() * 1000);
    Ok(sync_source(conn, settings, kind, &event).await?.1)
}

async fn sync_existing_source<S: TokenStore>(
    conn: &Connector<S>,
    settings: &Settings,
    record: &SourceRecord,
    event: &ChangeEvent,
) -> Result<SourceSync, SyncError> {
    let source = &record.source;
    if !source.active && source.sync_enabled {
        // DESIGN §3: deactivating a source turns its sync flag off (a write-back), then it is
        // handled as "sync off".
        turn_sync_off(conn, record).await?;
        return sync_disabled(conn, settings, record).await;
    }
    if !source.sync_enabled {
        // A resync request for a source whose sync was turned off since is no "sync off"
        // event: that one comes (or came) on its own and decides the group's fate.
        let flag_or_state_changed = event.message == CrmMessage::Create
            || event.size_exceeded
            || event.touched(schema::SYNC_FLAG)
            || event.touched(schema::STATECODE);
        return if flag_or_state_changed {
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
    // "Resync": the flag on the source, or a queued request of "resync every source".
    let full_resync = record.resync_requested || event.is_resync();
    let needs_members = created
        || full_resync
        || event.size_exceeded
        || matches!(
            event.message,
            CrmMessage::Create
                | CrmMessage::AddMember
                | CrmMessage::AddListMembers
                | CrmMessage::RemoveMember
                | CrmMessage::AddItem
                | CrmMessage::RemoveItem
                | CrmMessage::Associate
                | CrmMessage::Disassociate
        )
        || MEMBERSHIP_COLUMNS.iter().any(|c| event.touched(c));
    if !needs_members {
        return Ok(SourceSync {
            outcome: GroupOutcome::GroupUpdated,
            group: Some(group),
            report: None,
        });
    }
    let scoped_members = matches!(
        event.message,
        CrmMessage::AddMember | CrmMessage::AddListMembers | CrmMessage::RemoveMember
    ) && !created
        && !full_resync
        && !event.size_exceeded
        && !event.related.is_empty();
    let report = if scoped_members {
        // Only the named members: a list of 100,000 is not read again for one new member.
        let ids: Vec<String> = event.related.iter().map(|r| r.id.clone()).collect();
        super::people::on_list_members_change(conn, settings, record, &group, &ids).await?
    } else {
        reconcile_group(conn, settings, record, &group).await?
    };
    if record.resync_requested {
        let mut columns = Map::new();
        columns.insert(schema::RESYNC.into(), Value::Bool(false));
        conn.crm
            .update_source(source.kind, &source.id, columns)
            .await?;
    }
    Ok(SourceSync {
        outcome: GroupOutcome::Reconciled,
        group: Some(group),
        report: Some(report),
    })
}

/// Makes sure the source has its group, named and described as the source says. Returns the
/// group and whether it was created now (then all members must be added).
pub async fn ensure_group<S: TokenStore>(
    conn: &Connector<S>,
    settings: &Settings,
    record: &SourceRecord,
) -> Result<(GroupId, bool), SyncError> {
    let source = &record.source;
    let name = group_name(&settings.group_prefix, source);
    let info = receiver_info(source);
    if let Some(id) = &source.group_id
        && let Some(group) = conn.newsletter.get_group(id.as_str()).await?
    {
        update_group(conn, source.kind, &group, &name, &info).await?;
        return Ok((id.clone(), false));
    }
    // No group yet, or it was deleted in CleverReach: create one and store its id.
    let group = conn
        .newsletter
        .create_group(&name, lock_new_groups(&settings.deletion), &info)
        .await?;
    let id = GroupId::new(&group.id)
        .map_err(|e| SyncError::Invalid(format!("CleverReach returned a group without id: {e}")))?;
    conn.crm
        .record_group(source.kind, &source.id, Some(&id))
        .await?;
    info!(group_id = %group.id, "group created");
    Ok((id, true))
}

async fn update_group<S: TokenStore>(
    conn: &Connector<S>,
    kind: SourceKind,
    group: &Group,
    name: &str,
    info: &str,
) -> Result<(), SyncError> {
    if group.name != name {
        conn.newsletter.rename_group(&group.id, name).await?;
        info!(group_id = %group.id, "group renamed");
    }
    // Only a campaign activity's description goes to the group (DESIGN §2); other groups keep
    // whatever receiver_info they have.
    if kind == SourceKind::CampaignActivity && group.receiver_info.trim() != info.trim() {
        conn.newsletter.set_receiver_info(&group.id, info).await?;
    }
    Ok(())
}

/// Makes the group's receivers equal to the rule: streams the members through the planner
/// and executes its batches as they come (flat memory whatever the list size).
pub async fn reconcile_group<S: TokenStore>(
    conn: &Connector<S>,
    settings: &Settings,
    record: &SourceRecord,
    group: &GroupId,
) -> Result<ReconcileReport, SyncError> {
    let options = PlannerOptions {
        batch_size: conn.newsletter.config().upsert_batch_size,
        now_unix: (conn.now)(),
    };
    let mut planner = index_group(conn, group, options).await?;
    planner = planner.with_blocked(conn.newsletter.blacklist().await?);
    let mut report = ReconcileReport {
        full: true,
        ..ReconcileReport::default()
    };
    let mut members = conn.crm.members(record);
    while let Some(page) = members.next_page().await? {
        for recipient in page {
            let assessment = assess(&recipient, &record.source.checklist, settings);
            if let Assessment::Skipped(reason) = &assessment {
                *report.skipped.entry(skip_label(reason)).or_default() += 1;
            }
            if let Some(candidate) = assessment.candidate(&recipient) {
                // A move is handed out by the offer of its target: keep that data at hand.
                let target = match &candidate {
                    Candidate::Wanted(data) => Some(data.clone()),
                    Candidate::OptedOut(_) => None,
                };
                let ops = planner.offer(candidate);
                let wanted = |email: &Email| target.clone().filter(|d| &d.email == email);
                execute(conn, group, ops, &mut report, &wanted).await?;
            }
        }
    }
    report.member_requests = members.requests();
    let (ops, summary) = planner.finish();
    execute(conn, group, ops, &mut report, &|_| None).await?;
    report.summary = summary;
    info!(group_id = %group.as_str(), status = %report.status_line(), "group reconciled");
    Ok(report)
}

/// The group's receivers, read page by page (5000 a call) straight into the planner's compact
/// index: a group of any size is never held in memory as read.
async fn index_group<S: TokenStore>(
    conn: &Connector<S>,
    group: &GroupId,
    options: PlannerOptions,
) -> Result<ReconcilePlanner, SyncError> {
    let invalid = |e: crate::domain::planner::PlannerError| SyncError::Invalid(e.to_string());
    let mut indexer = GroupIndexer::new(options).map_err(invalid)?;
    let mut pages = conn.newsletter.receivers(
        group.as_str(),
        ReceiverFilter {
            state: ListState::All,
            ..ReceiverFilter::default()
        },
    );
    while let Some(page) = pages.next_page().await? {
        indexer.add(page).map_err(invalid)?;
    }
    Ok(indexer.finish())
}

/// Executes planned operations in order. `wanted` gives the data of a wanted address (the
/// target of an e-mail change), for when the change has to be made another way.
pub async fn execute<S: TokenStore>(
    conn: &Connector<S>,
    group: &GroupId,
    ops: Vec<GroupOp>,
    report: &mut ReconcileReport,
    wanted: &dyn Fn(&Email) -> Option<ReceiverData>,
) -> Result<(), SyncError> {
    for op in ops {
        match op {
            GroupOp::Upsert(rows) => {
                let done = conn
                    .newsletter
                    .upsert_receivers(group.as_str(), &rows)
                    .await?;
                for refused in &done.rejected {
                    tracing::warn!(group_id = %group.as_str(), reason = %refused.reason, "receiver refused by CleverReach");
                }
                report.rejected += done.rejected.len();
            }
            GroupOp::ChangeEmail { from, to } => {
                change_email(conn, group, &from, &to, wanted, report).await?;
            }
            GroupOp::Remove(planned) => {
                let emails = still_active(conn, group, planned, report).await?;
                if emails.is_empty() {
                    continue;
                }
                let done = conn
                    .newsletter
                    .remove_receivers(group.as_str(), &emails)
                    .await?;
                report.rejected += done.failed.len();
            }
        }
    }
    Ok(())
}

/// Every planned removal was an active receiver when the group was read, but a reconcile can
/// take a while: one who unsubscribed or bounced since must stay, or the opt-out would be
/// deleted with the receiver before the back-flow has brought it into the CRM, and the person
/// could later be added again as active. So the receivers are read again (one filter call per
/// removal batch) right before the delete, which narrows the window to one round trip.
async fn still_active<S: TokenStore>(
    conn: &Connector<S>,
    group: &GroupId,
    planned: Vec<Email>,
    report: &mut ReconcileReport,
) -> Result<Vec<Email>, SyncError> {
    let mut request = FilterRequest::new(
        vec![group.as_str().to_string()],
        planned.iter().cloned().map(FilterRule::EmailIs).collect(),
    );
    request.match_any = true;
    let mut active = HashSet::new();
    loop {
        let page = conn.newsletter.filter_receivers(&request).await?;
        for record in page.items {
            let in_group = record.group_id.is_empty() || record.group_id == group.as_str();
            if in_group && !record.receiver.state.is_opted_out() {
                active.insert(record.receiver.email);
            }
        }
        if page.is_last {
            break;
        }
        request.page += 1;
    }
    let (remove, gone): (Vec<Email>, Vec<Email>) =
        planned.into_iter().partition(|e| active.contains(e));
    if !gone.is_empty() {
        info!(
            group_id = %group.as_str(),
            receivers = gone.len(),
            "receivers that opted out or left during the reconcile are not removed"
        );
        report.kept_after_opt_out += gone.len();
    }
    Ok(remove)
}

/// CleverReach changes an address account-wide (in every group). That keeps the receiver's
/// history when a person's address changes, but it must not happen when the old address is
/// still another CRM record's (it would move that person's receivers too, opt-outs included) or
/// when the new address is already a receiver somewhere (CleverReach refuses with 409). Then
/// this group gets the new address as a new receiver instead — unless the person opted out
/// here — and the old one is left to the rule.
async fn change_email<S: TokenStore>(
    conn: &Connector<S>,
    group: &GroupId,
    from: &Email,
    to: &Email,
    wanted: &dyn Fn(&Email) -> Option<ReceiverData>,
    report: &mut ReconcileReport,
) -> Result<(), SyncError> {
    let data = wanted(to);
    let old_still_used = !conn.crm.people_with_email(from.as_str()).await?.is_empty();
    if !old_still_used {
        match conn.newsletter.change_email(from, to).await {
            Ok(_) => return Ok(()),
            Err(CleverReachError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    info!(group_id = %group.as_str(), old_still_used, "address not moved; new receiver instead");
    let old = conn.newsletter.find_receiver(group.as_str(), from).await?;
    let Some(data) = data else {
        return Ok(());
    };
    let person_opted_out_here = old.as_ref().is_some_and(|r| {
        r.receiver.state.is_opted_out() && r.receiver.crm.as_ref() == Some(&data.crm)
    });
    if person_opted_out_here {
        return Ok(());
    }
    // The old address leaves this group unless someone here still wants it (an opted-out
    // receiver stays: it carries the opt-out).
    if wanted(from).is_none()
        && let Some(old) = &old
        && !old.receiver.state.is_opted_out()
    {
        conn.newsletter
            .remove_receiver(group.as_str(), from)
            .await?;
    }
    let done = conn
        .newsletter
        .upsert_receivers(
            group.as_str(),
            &[ReceiverUpsert {
                receiver: data,
                activate: true,
            }],
        )
        .await?;
    report.rejected += done.rejected.len();
    Ok(())
}

async fn turn_sync_off<S: TokenStore>(
    conn: &Connector<S>,
    record: &SourceRecord,
) -> Result<(), SyncError> {
    let mut columns = Map::new();
    columns.insert(schema::SYNC_FLAG.into(), Value::Bool(false));
    conn.crm
        .update_source(record.source.kind, &record.source.id, columns)
        .await?;
    info!("source inactive: sync turned off");
    Ok(())
}

/// The sync flag is off: delete or keep the group per the deletion settings.
async fn sync_disabled<S: TokenStore>(
    conn: &Connector<S>,
    settings: &Settings,
    record: &SourceRecord,
) -> Result<SourceSync, SyncError> {
    let source = &record.source;
    let Some(group_id) = source.group_id.clone() else {
        return Ok(SourceSync::unchanged(None));
    };
    let outcome =
        apply_deletion_policy(conn, settings, DeletionReason::SyncDisabled, &group_id).await?;
    if outcome == GroupOutcome::Deleted {
        conn.crm.record_group(source.kind, &source.id, None).await?;
    }
    Ok(SourceSync {
        outcome,
        group: (outcome != GroupOutcome::Deleted).then_some(group_id),
        report: None,
    })
}

/// The source is gone: its group id comes from the delete event's pre-image.
async fn on_source_deleted<S: TokenStore>(
    conn: &Connector<S>,
    settings: &Settings,
    kind: SourceKind,
    event: &ChangeEvent,
) -> Result<SourceSync, SyncError> {
    let group = event
        .value_before(schema::GROUP_ID)
        .and_then(AttrValue::as_text)
        .and_then(|g| GroupId::new(g).ok());
    let Some(group) = group else {
        if event.message == CrmMessage::Delete {
            tracing::warn!(
                kind = kind.logical_name(),
                "deleted source without a group id in the pre-image: nothing to delete (register a pre-image with crc_groupid on the Delete step)"
            );
        }
        return Ok(SourceSync::unchanged(None));
    };
    let outcome =
        apply_deletion_policy(conn, settings, DeletionReason::RecordDeleted, &group).await?;
    Ok(SourceSync {
        outcome,
        group: (outcome != GroupOutcome::Deleted).then_some(group),
        report: None,
    })
}

async fn apply_deletion_policy<S: TokenStore>(
    conn: &Connector<S>,
    settings: &Settings,
    reason: DeletionReason,
    group_id: &GroupId,
) -> Result<GroupOutcome, SyncError> {
    let Some(group) = conn.newsletter.get_group(group_id.as_str()).await? else {
        return Ok(GroupOutcome::Unchanged);
    };
    match group_fate(reason, &settings.deletion, group.locked) {
        GroupFate::Delete => {
            conn.newsletter.delete_group(group_id.as_str()).await?;
            info!(group_id = %group_id.as_str(), ?reason, "group deleted");
            Ok(GroupOutcome::Deleted)
        }
        GroupFate::Keep => {
            info!(group_id = %group_id.as_str(), ?reason, "group kept");
            Ok(GroupOutcome::Kept)
        }
    }
}

/// Writes the sync status on the source (best effort: a failure here is logged, it must not
/// turn a successful sync into a retried one).
pub async fn write_status<S: TokenStore>(
    conn: &Connector<S>,
    record: &SourceRecord,
    result: &Result<SourceSync, SyncError>,
) {
    let now = chrono::DateTime::from_timestamp((conn.now)(), 0).unwrap_or_default();
    let mut columns = Map::new();
    match result {
        Ok(sync) => {
            let status = match (&sync.outcome, &sync.report) {
                (GroupOutcome::Reconciled, Some(report)) => report.status_line(),
                (GroupOutcome::GroupUpdated, _) => "group name and description updated".into(),
                (GroupOutcome::Deleted, _) => "group deleted (sync off or source deleted)".into(),
                (GroupOutcome::Kept, _) => {
                    "sync off: group kept in CleverReach per the deletion settings".into()
                }
                _ => return,
            };
            columns.insert(
                schema::SYNC_STATUS.into(),
                json!(schema::fit(&status, schema::SYNC_STATUS_MAX)),
            );
            columns.insert(schema::LAST_SYNC.into(), json!(now.to_rfc3339()));
            columns.insert(schema::LAST_ERROR.into(), Value::Null);
        }
        Err(e) => {
            // The status and last sync time stay those of the last good sync; the error says
            // when it happened and what went wrong, until a good sync clears it.
            let text = format!(
                "{}: the sync failed: {e}",
                now.format("%Y-%m-%d %H:%M:%S UTC")
            );
            columns.insert(
                schema::LAST_ERROR.into(),
                json!(schema::fit(&text, schema::LAST_ERROR_MAX)),
            );
        }
    }
    if let Err(e) = conn
        .crm
        .update_source(record.source.kind, &record.source.id, columns)
        .await
    {
        tracing::warn!(error = %e, "sync status not written");
    }
}
