//! Use case step: make a group's receivers equal to the rule, for a whole source (a full
//! reconcile) or for a few people (a scoped one). One path for both:
//! index what the group holds → offer each member to the planner → execute its batches as they
//! come → read planned removals again right before deleting them → report.
//! See `docs/architecture.md` ("Reconcile").

use super::brake;
use super::connector::{Connector, SyncError};
use crate::domain::brake::Held;
use crate::domain::change::Continuation;
use crate::domain::email::Email;
use crate::domain::planner::{
    GroupIndexer, GroupOp, PlanSummary, PlannerError, PlannerOptions, ReceiverUpsert,
    ReconcilePlanner,
};
use crate::domain::receiver::{Candidate, CurrentReceiver, ReceiverData};
use crate::domain::recipient::Recipient;
use crate::domain::rules::{Assessment, SkipReason, assess};
use crate::domain::settings::Settings;
use crate::domain::source::{GroupId, SourceRecord};
use crate::ports::newsletter::{
    FilterRequest, FilterRule, ListState, NewsletterError, ReceiverFilter,
};
use std::collections::{BTreeMap, HashSet};
use tracing::info;

/// What reconciling a group did, for the sync status on the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub summary: PlanSummary,
    /// Members left out, by reason.
    pub skipped: BTreeMap<&'static str, usize>,
    /// Rows CleverReach refused (their count is logged, never their addresses).
    pub rejected: usize,
    /// CRM requests for members.
    pub member_requests: u32,
    /// Every member was read and the whole group compared (not only the members an event
    /// named).
    pub full: bool,
    /// Planned removals left alone: the receiver opted out (or was gone) by the time of the
    /// delete, so its opt-out stays for the back-flow.
    pub kept_after_opt_out: usize,
    /// Active receivers in the group when it was read (full reconciles).
    pub active_before: usize,
    /// The brake held the planned removals back (nothing was removed); why, in words.
    pub held: Option<Held>,
    /// The reconcile continues in a message of its own: the invocation's time ran short, or
    /// this pass saw only the members after where the one before stopped. How many members
    /// the passes so far compared. Nothing unseen was removed.
    pub unfinished: Option<usize>,
    /// Members this pass compared.
    pub compared: usize,
    /// Where the next pass goes on reading members; `None`: from the first member.
    pub resume: Option<String>,
    /// Every member was compared and written, over several passes, but the group held
    /// active receivers at the start: one more pass from the first member decides removals.
    pub final_check_due: bool,
    /// Which pass of a reconcile continued across invocations this was (1 = the first).
    pub pass: u32,
}

impl ReconcileReport {
    /// The status line administrators see on the source.
    pub fn status_line(&self) -> String {
        if let Some(compared) = self.unfinished {
            if self.final_check_due {
                return format!(
                    "{} members compared and written (pass {}), continuing: a last pass \
                     compares them all to remove those who left",
                    thousands(compared),
                    self.pass.max(1)
                );
            }
            return format!(
                "{} members compared so far (pass {}), continuing",
                thousands(compared),
                self.pass.max(1)
            );
        }
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

    fn count_skip(&mut self, assessment: &Assessment) {
        if let Assessment::Skipped(reason) = assessment {
            *self.skipped.entry(skip_label(reason)).or_default() += 1;
        }
    }
}

/// 62000 → "62,000" (the status line is read by people).
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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

fn invalid(e: PlannerError) -> SyncError {
    SyncError::Invalid(e.to_string())
}

fn planner_options(conn: &Connector) -> PlannerOptions {
    PlannerOptions {
        batch_size: conn.receivers.upsert_batch_size(),
        now_unix: (conn.now)(),
    }
}

/// Full reconcile: streams every member of the source through the planner and executes its
/// batches as they come (flat memory whatever the list size).
///
/// Within an invocation's budget (`crate::deadline`) it stops between members when the time
/// runs short: what it decided is written, nothing is removed, and the report says how far it
/// got (`unfinished`) and where the next pass goes on (`resume`); the caller continues it in a
/// new message. A pass that resumed sees only the members after that point: it removes no one
/// unseen, and asks for a last pass from the first member when the group held active receivers
/// at the start (`final_check_due`). `carried` are the counts of the passes before, added to
/// this pass's so that the final status reads as one pass's (docs/architecture.md §4
/// "Deadlines").
pub async fn reconcile_group(
    conn: &Connector,
    settings: &Settings,
    record: &SourceRecord,
    group: &GroupId,
    carried: Option<&Continuation>,
) -> Result<ReconcileReport, SyncError> {
    let pass = carried.map_or(1, |c| c.pass);
    let resume = carried.and_then(|c| c.resume.as_deref());
    let (mut planner, active_before) = index_group(conn, group, planner_options(conn)).await?;
    info!(group_id = %group.as_str(), active_before, pass, resumed = resume.is_some(), "group indexed");
    planner = planner.with_block_set(conn.blocklist.blocked().await?);
    let mut report = ReconcileReport {
        full: true,
        active_before,
        pass,
        ..ReconcileReport::default()
    };
    let mut members = conn.members.members_from(record, resume);
    let mut writes = Writes::new(conn, group);
    let mut compared = 0;
    // Members of the last page taken before the time ran short.
    let mut stopped_after: Option<usize> = None;
    'pages: loop {
        // The next page is read while the upserts of the last ones are under way.
        let Some(page) = writes.meanwhile(members.next_page(), &mut report).await? else {
            break;
        };
        for (taken, recipient) in page.into_iter().enumerate() {
            if crate::deadline::must_stop() {
                stopped_after = Some(taken);
                break 'pages;
            }
            compared += 1;
            let assessment = assess(&recipient, &record.source.checklist, settings);
            report.count_skip(&assessment);
            if let Some(candidate) = assessment.candidate(&recipient) {
                // A move is handed out by the offer of its target: keep that data at hand.
                let target = match &candidate {
                    Candidate::Wanted(data) => Some(data.clone()),
                    Candidate::OptedOut(_) => None,
                };
                for op in planner.offer(candidate) {
                    match op {
                        GroupOp::Upsert(rows) => writes.upsert(rows, &mut report).await?,
                        op => {
                            // An address change or a removal comes after the upserts before
                            // it, as planned.
                            writes.finish(&mut report).await?;
                            let wanted =
                                |email: &Email| target.clone().filter(|d| &d.email == email);
                            execute(conn, group, vec![op], &mut report, &wanted).await?;
                        }
                    }
                }
            }
        }
    }
    writes.finish(&mut report).await?;
    report.member_requests = members.requests();
    report.compared = compared;
    // Members compared by this pass and the resumed passes before it (a pass from the first
    // member counts them all itself).
    let so_far = compared + resume.and(carried).map_or(0, |c| c.compared);
    if let Some(taken) = stopped_after {
        // Write what was decided (the batch being filled), remove nothing: removals need
        // every member seen.
        let ops = planner.flush();
        execute(conn, group, ops, &mut report, &|_| None).await?;
        report.summary = planner.summary().clone();
        report.resume = members.resume_point(taken);
        report.unfinished = Some(if report.resume.is_some() {
            so_far
        } else {
            compared
        });
        info!(group_id = %group.as_str(), compared, pass, "time running short: reconcile stops here and continues");
        return Ok(report);
    }
    if let Some(before) = carried.filter(|_| resume.is_some()) {
        // This pass saw the members after where the one before stopped: the receivers no
        // one here wanted may be wanted by a member before it.
        let (ops, mut summary) = planner.finish_seen();
        execute(conn, group, ops, &mut report, &|_| None).await?;
        if before.active_at_start == 0 {
            // No receiver was active when the reconcile began: one in step now was written by
            // an earlier pass for the same person from another list, a duplicate.
            summary.merged += summary.unchanged;
            summary.unchanged = 0;
        }
        add_carried(&mut summary, &mut report, before);
        report.summary = summary;
        if before.active_at_start > 0 {
            report.final_check_due = true;
            report.unfinished = Some(so_far);
            info!(group_id = %group.as_str(), compared = so_far, pass, "every member written; a last pass decides removals");
        } else {
            info!(group_id = %group.as_str(), status = %report.status_line(), "group reconciled");
        }
        return Ok(report);
    }
    let (mut ops, mut summary) = planner.finish();
    if let Some(before) = carried {
        // What earlier passes wrote is in step now: it counts as theirs, not as unchanged.
        let earlier = before.added + before.updated + before.email_changed;
        summary.unchanged = summary.unchanged.saturating_sub(earlier);
        summary.added += before.added;
        summary.updated += before.updated;
        summary.email_changed += before.email_changed;
    }
    // The removals come last: the brake may hold them back (docs/architecture.md §2).
    let removal = brake::removals(settings, record, summary.removed_receivers, active_before);
    if let Some(held) = removal.held() {
        ops.retain(|op| !matches!(op, GroupOp::Remove(_)));
        report.held = Some(held);
    }
    execute(conn, group, ops, &mut report, &|_| None).await?;
    report.summary = summary;
    info!(group_id = %group.as_str(), status = %report.status_line(), "group reconciled");
    Ok(report)
}

/// Adds the counts of the resumed passes before to this one's: each saw other members.
fn add_carried(summary: &mut PlanSummary, report: &mut ReconcileReport, before: &Continuation) {
    summary.added += before.added;
    summary.updated += before.updated;
    summary.email_changed += before.email_changed;
    summary.unchanged += before.unchanged;
    // Opted out, in whichever way: the status line shows their sum.
    summary.kept_opted_out += before.opted_out;
    report.rejected += before.rejected;
    for (reason, n) in &before.skipped {
        if let Some(label) = SKIP_LABELS.iter().find(|l| **l == reason.as_str()) {
            *report.skipped.entry(label).or_default() += n;
        }
    }
}

/// Every label [`skip_label`] gives, so that counts carried in a message find theirs.
const SKIP_LABELS: [&str; 6] = [
    "type not transferred",
    "inactive",
    "no e-mail",
    "invalid e-mail",
    "no bulk e-mail",
    "no matching newsletter type",
];

/// Scoped reconcile: only these members against only the receivers given (what the group
/// holds of the people in scope).
pub async fn reconcile_members<'a>(
    conn: &Connector,
    settings: &Settings,
    record: &SourceRecord,
    group: &GroupId,
    current: Vec<CurrentReceiver>,
    members: impl Iterator<Item = &'a Recipient>,
) -> Result<ReconcileReport, SyncError> {
    let blocked = conn.blocklist.blocked().await?;
    let mut planner = ReconcilePlanner::new(current, planner_options(conn))
        .map_err(invalid)?
        .with_block_set(blocked);
    let mut report = ReconcileReport::default();
    let mut ops = Vec::new();
    let mut wanted: BTreeMap<Email, ReceiverData> = BTreeMap::new();
    for recipient in members {
        let assessment = assess(recipient, &record.source.checklist, settings);
        report.count_skip(&assessment);
        if let Some(candidate) = assessment.candidate(recipient) {
            if let Candidate::Wanted(data) = &candidate {
                wanted
                    .entry(data.email.clone())
                    .or_insert_with(|| data.clone());
            }
            ops.extend(planner.offer(candidate));
        }
    }
    let (rest, summary) = planner.finish();
    ops.extend(rest);
    execute(conn, group, ops, &mut report, &|email| {
        wanted.get(email).cloned()
    })
    .await?;
    report.summary = summary;
    Ok(report)
}

/// The group's receivers, read page by page (5000 a call) straight into the planner's compact
/// index: a group of any size is never held in memory as read. Also counts the active ones.
async fn index_group(
    conn: &Connector,
    group: &GroupId,
    options: PlannerOptions,
) -> Result<(ReconcilePlanner, usize), SyncError> {
    let mut indexer = GroupIndexer::new(options).map_err(invalid)?;
    let mut pages = conn.receivers.receivers(
        group.as_str(),
        ReceiverFilter {
            state: ListState::All,
            ..ReceiverFilter::default()
        },
    );
    let mut active = 0;
    while let Some(page) = pages.next_page().await? {
        active += page.iter().filter(|r| !r.state.is_opted_out()).count();
        indexer.add(page).map_err(invalid)?;
    }
    Ok((indexer.finish(), active))
}

/// The upserts of a full reconcile under way, at most `conn.writes_in_flight` at once (their
/// order does not matter: each names different receivers). Everything else waits for them.
struct Writes<'a> {
    conn: &'a Connector,
    group: &'a GroupId,
    under_way: futures::stream::FuturesUnordered<
        futures::future::BoxFuture<
            'a,
            Result<crate::ports::newsletter::UpsertReport, NewsletterError>,
        >,
    >,
}

impl<'a> Writes<'a> {
    fn new(conn: &'a Connector, group: &'a GroupId) -> Self {
        Writes {
            conn,
            group,
            under_way: futures::stream::FuturesUnordered::new(),
        }
    }

    /// Starts an upsert, first waiting for one under way when as many as allowed are.
    async fn upsert(
        &mut self,
        rows: Vec<ReceiverUpsert>,
        report: &mut ReconcileReport,
    ) -> Result<(), SyncError> {
        while self.under_way.len() >= self.conn.writes_in_flight.max(1) {
            self.one_done(report).await?;
        }
        let (receivers, group) = (self.conn.receivers.clone(), self.group.as_str().to_string());
        self.under_way.push(Box::pin(async move {
            receivers.upsert_receivers(&group, &rows).await
        }));
        Ok(())
    }

    /// Runs `work` (a read) while the upserts under way go on; their results are taken as
    /// they come.
    async fn meanwhile<T, E>(
        &mut self,
        work: impl std::future::Future<Output = Result<T, E>>,
        report: &mut ReconcileReport,
    ) -> Result<T, SyncError>
    where
        SyncError: From<E>,
    {
        use futures::StreamExt;
        let work = std::pin::pin!(work);
        let mut work = work;
        loop {
            if self.under_way.is_empty() {
                return Ok(work.await?);
            }
            tokio::select! {
                result = &mut work => return Ok(result?),
                Some(done) = self.under_way.next() => absorb(self.group, done?, report),
            }
        }
    }

    async fn one_done(&mut self, report: &mut ReconcileReport) -> Result<(), SyncError> {
        use futures::StreamExt;
        if let Some(done) = self.under_way.next().await {
            absorb(self.group, done?, report);
        }
        Ok(())
    }

    /// Waits for every upsert under way.
    async fn finish(&mut self, report: &mut ReconcileReport) -> Result<(), SyncError> {
        while !self.under_way.is_empty() {
            self.one_done(report).await?;
        }
        Ok(())
    }
}

/// Takes an upsert's answer into the report (refused rows are counted; the adapter logs
/// reasons with addresses replaced by tags).
fn absorb(
    group: &GroupId,
    done: crate::ports::newsletter::UpsertReport,
    report: &mut ReconcileReport,
) {
    for refused in &done.rejected {
        tracing::warn!(group_id = %group.as_str(), reason = %refused.reason, "receiver refused by CleverReach");
    }
    report.rejected += done.rejected.len();
}

/// Executes planned operations in order. `wanted` gives the data of a wanted address (the
/// target of an e-mail change), for when the change has to be made another way.
async fn execute(
    conn: &Connector,
    group: &GroupId,
    ops: Vec<GroupOp>,
    report: &mut ReconcileReport,
    wanted: &(dyn Fn(&Email) -> Option<ReceiverData> + Sync),
) -> Result<(), SyncError> {
    for op in ops {
        match op {
            GroupOp::Upsert(rows) => {
                let done = conn
                    .receivers
                    .upsert_receivers(group.as_str(), &rows)
                    .await?;
                for refused in &done.rejected {
                    // The adapter has replaced any address in the reason by a tag.
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
                    .receivers
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
/// could later be added again as active. So the receivers are read again (one search per
/// removal batch) right before the delete, which narrows the window to one round trip.
async fn still_active(
    conn: &Connector,
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
        let page = conn.receivers.filter_receivers(&request).await?;
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
async fn change_email(
    conn: &Connector,
    group: &GroupId,
    from: &Email,
    to: &Email,
    wanted: &(dyn Fn(&Email) -> Option<ReceiverData> + Sync),
    report: &mut ReconcileReport,
) -> Result<(), SyncError> {
    let data = wanted(to);
    let old_still_used = !conn
        .people
        .people_with_email(from.as_str())
        .await?
        .is_empty();
    if !old_still_used {
        match conn.receivers.change_email(from, to).await {
            Ok(_) => return Ok(()),
            Err(NewsletterError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    info!(group_id = %group.as_str(), old_still_used, "address not moved; new receiver instead");
    let old = conn.receivers.find_receiver(group.as_str(), from).await?;
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
        conn.receivers.remove_receiver(group.as_str(), from).await?;
    }
    let done = conn
        .receivers
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::recipient::RecipientKind;

    #[test]
    fn every_skip_reason_carried_to_a_later_pass_finds_its_label_again() {
        let reasons = [
            SkipReason::EntityNotTransferred(RecipientKind::Lead),
            SkipReason::Inactive,
            SkipReason::MissingEmail,
            SkipReason::InvalidEmail,
            SkipReason::DoNotBulkEmail,
            SkipReason::NoMatchingNewsletterType,
        ];
        let carried = Continuation {
            skipped: reasons
                .iter()
                .map(|r| (skip_label(r).to_string(), 2))
                .collect(),
            ..Continuation::default()
        };
        let (mut summary, mut report) = (PlanSummary::default(), ReconcileReport::default());
        add_carried(&mut summary, &mut report, &carried);
        assert_eq!(
            report.skipped.values().sum::<usize>(),
            12,
            "{:?}",
            report.skipped
        );
    }
}
