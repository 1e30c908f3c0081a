//! Use case: the scheduled back-flow from CleverReach to the CRM (DESIGN §3, "CleverReach to
//! CRM"). This module is the engine both jobs share; `receiver_state` (unsubscribes, bounces)
//! and `lead_sync` (sign-ups) say what one event does.
//!
//! For every connector-managed group (a group id stored on a source) and every event kind of
//! the job, the receivers whose event time is after the cursor are paged through with the
//! runtime filter, and each is applied idempotently: applying an event that was applied
//! before changes nothing.
//!
//! The cursor is durable (a row of the settings table per job, group and kind) and works in
//! passes: a pass reads every event after `since`; the page reached is saved after each page,
//! so a run stopped by its time budget, its event cap or a failure resumes at that page (one
//! page earlier, in case receivers left the result and shifted it); a finished pass moves
//! `since` to the pass's start minus an overlap (clock skew between CleverReach and here,
//! events that became visible late). Re-read events cost a look-up, never a second effect.

use super::{Connector, SyncError};
use crate::adapters::cleverreach::{
    CleverReachError, FilterRequest, FilterRule, ReceiverRecord, TokenStore,
};
use crate::adapters::dataverse::crm::ManagedSource;
use crate::adapters::dataverse::schema;
use crate::domain::checklist::NewsletterTypeId;
use crate::domain::settings::Settings;
use crate::error::Retryable;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Who the connector names as the author of checklist changes that came from CleverReach.
pub const MODIFIED_BY: &str = "CleverReach";

/// One kind of CleverReach event the jobs read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The receiver was deactivated in the group (unsubscribe link, CleverReach user).
    Unsubscribed,
    /// A mailing to the receiver bounced.
    Bounced,
    /// The receiver became active (a sign-up through a CleverReach form, an import).
    Activated,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Unsubscribed => "unsubscribed",
            EventKind::Bounced => "bounced",
            EventKind::Activated => "activated",
        }
    }

    fn rule(self, after: DateTime<Utc>) -> FilterRule {
        match self {
            EventKind::Unsubscribed => FilterRule::DeactivatedAfter(after),
            EventKind::Bounced => FilterRule::BouncedAfter(after),
            EventKind::Activated => FilterRule::ActivatedAfter(after),
        }
    }

    /// When the event happened, as CleverReach reports it; `None` when the receiver does not
    /// carry a usable time for it.
    pub fn time_of(self, record: &ReceiverRecord) -> Option<DateTime<Utc>> {
        match self {
            EventKind::Unsubscribed => record.deactivated,
            EventKind::Bounced => record.bounced,
            EventKind::Activated => record.activated,
        }
    }
}

/// Limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Stop starting new work after this long (keep it well under the function's timeout:
    /// the event in hand is finished, and the cursor saved).
    pub budget: Duration,
    /// Receivers asked for per filter page (1..=5000).
    pub page_size: usize,
    /// Stop after this many events were applied (all kinds and groups together; events found
    /// applied before do not count, so a resumed run always gets further); `None`: no cap.
    pub max_events: Option<usize>,
    /// How far back a new pass starts before the previous pass began.
    pub overlap: Duration,
}

impl Default for RunLimits {
    /// 10 minutes (the functions run with a 15-minute timeout), pages of 500, no cap, 5
    /// minutes of overlap.
    fn default() -> Self {
        RunLimits {
            budget: Duration::from_secs(600),
            page_size: 500,
            max_events: None,
            overlap: Duration::from_secs(300),
        }
    }
}

/// What one run did; logged and returned by the handlers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Managed groups looked at.
    pub groups: usize,
    /// Events read from CleverReach (including ones applied before).
    pub events: usize,
    /// Events applied in this run.
    pub applied: usize,
    /// Events that had been applied before (re-read after an interruption or in the overlap).
    pub already_done: usize,
    /// Events that need nothing (e.g. a receiver the connector itself created).
    pub ignored: usize,
    /// Bad input: events or receivers that could not be used; each is described in `problems`.
    pub skipped: usize,
    pub receiver_states_created: usize,
    pub checklists_written: usize,
    pub people_deactivated: usize,
    pub leads_created: usize,
    pub leads_updated: usize,
    /// Sign-up leads made members of their group's sources (added to a static lead list, or
    /// linked to a campaign or campaign activity), so that a full resync keeps the receiver.
    pub leads_linked: usize,
    /// Sign-ups kept as leads that a source of their group cannot hold (a static list of
    /// contacts or accounts, a dynamic list, a lead linked elsewhere already): a full resync
    /// of that source removes the receiver from the group. One line per event and source,
    /// with ids only.
    pub signups_at_risk: Vec<String>,
    /// Readable descriptions of bad input and failures (never personal data).
    pub problems: Vec<String>,
    /// Groups whose events could not all be read or applied in this run, with the reason.
    pub failed_groups: Vec<String>,
    /// Every pass of every group and kind finished: nothing is left for the next run.
    pub complete: bool,
}

impl RunSummary {
    pub(crate) fn problem(&mut self, text: String) {
        warn!(problem = %text, "back-flow: skipped");
        self.skipped += 1;
        self.problems.push(text);
    }
}

/// How applying one event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Applied,
    AlreadyDone,
    Ignored,
    /// Bad input; already recorded in the summary.
    Skipped,
}

/// A managed group and the newsletter types its sources say yes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedGroup {
    pub id: String,
    pub types: Vec<NewsletterTypeId>,
}

/// The managed groups, each once; a group linked to several sources gets all their types.
/// A source whose checklist cannot be read contributes no types and is reported.
pub fn managed_groups(sources: &[ManagedSource], summary: &mut RunSummary) -> Vec<ManagedGroup> {
    let mut groups: BTreeMap<String, Vec<NewsletterTypeId>> = BTreeMap::new();
    for source in sources {
        let types = groups.entry(source.group_id.clone()).or_default();
        match &source.checklist {
            Ok(checklist) => {
                for t in checklist.yes_types() {
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
            }
            Err(problem) => summary.problems.push(format!(
                "{} {}: its checklist cannot be read ({problem}); group {} gets no newsletter types from it",
                source.kind, source.id, source.group_id
            )),
        }
    }
    groups
        .into_iter()
        .map(|(id, types)| ManagedGroup { id, types })
        .collect()
}

/// A job's progress for one group and event kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Events after this unix time are read (0: from the beginning).
    pub since: i64,
    /// When the unfinished pass began (unix time); `None` between passes.
    #[serde(default)]
    pub pass_started: Option<i64>,
    /// The next page of the unfinished pass.
    #[serde(default)]
    pub page: u32,
}

/// The key of a cursor row in the settings table.
pub fn cursor_key(job: &str, group_id: &str, kind: EventKind) -> String {
    format!(
        "{}{job}:{group_id}:{}",
        schema::CURSOR_KEY_PREFIX,
        kind.name()
    )
}

/// A GUID derived from `parts` (FNV-1a, 128 bits, marked as a custom version-8 UUID): the same
/// parts give the same id on every run and machine, which makes creates idempotent.
pub fn derived_id(namespace: &str, parts: &[&str]) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u128::from(*b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    feed(namespace.as_bytes());
    for part in parts {
        // A separator that cannot occur in the parts' text keeps ("ab","c") apart from ("a","bc").
        feed(&[0xff]);
        feed(part.as_bytes());
    }
    let mut bytes = hash.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
}

/// A time as the CRM stores it (UTC, seconds).
pub fn crm_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The two scheduled jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Unsubscribes and bounces → receiver-state rows, checklists, deactivations.
    ReceiverState,
    /// New active receivers unknown to the CRM → leads.
    LeadSync,
}

impl Job {
    /// The job's name in cursor keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            Job::ReceiverState => "receiver-state-sync",
            Job::LeadSync => "lead-sync",
        }
    }

    pub fn kinds(self) -> &'static [EventKind] {
        match self {
            Job::ReceiverState => &[EventKind::Unsubscribed, EventKind::Bounced],
            Job::LeadSync => &[EventKind::Activated],
        }
    }

    async fn apply<S: TokenStore>(
        self,
        conn: &Connector<S>,
        context: &JobContext,
        group: &GroupWork<'_>,
        kind: EventKind,
        record: &ReceiverRecord,
        summary: &mut RunSummary,
    ) -> Result<Outcome, SyncError> {
        match self {
            Job::ReceiverState => {
                super::receiver_state::apply(conn, context, group.group, kind, record, summary)
                    .await
            }
            Job::LeadSync => {
                super::lead_sync::apply(conn, context, group.group, &group.sources, record, summary)
                    .await
            }
        }
    }
}

/// What every event of a run needs besides the connector.
#[derive(Debug, Clone)]
pub(crate) struct JobContext {
    pub settings: Settings,
}

/// A group and the sources linked to it (the sources a sign-up must join to stay, DESIGN §2
/// rule 6).
struct GroupWork<'a> {
    group: &'a ManagedGroup,
    sources: Vec<&'a ManagedSource>,
}

/// Why a group's pass stopped early.
enum Stop {
    /// Budget or event cap reached: the run ends, the cursor says where to go on.
    Limit,
    /// A failure: this group waits for the next run, the others go on.
    Failed(SyncError),
}

struct Run<'a> {
    limits: RunLimits,
    deadline: Instant,
    /// Events applied in this run (for `max_events`).
    applied: usize,
    summary: &'a mut RunSummary,
}

impl Run<'_> {
    fn out_of_budget(&self) -> bool {
        Instant::now() >= self.deadline
            || self
                .limits
                .max_events
                .is_some_and(|max| self.applied >= max)
    }
}

/// Runs a job over every managed group. Errors only when nothing can start (settings or
/// sources unreadable); a group's failure is reported in the summary and the others go on.
pub async fn run_job<S: TokenStore>(
    conn: &Connector<S>,
    job: Job,
    settings: &Settings,
    limits: RunLimits,
) -> Result<RunSummary, SyncError> {
    let context = JobContext {
        settings: settings.clone(),
    };
    let deadline = Instant::now() + limits.budget;
    let mut summary = RunSummary::default();
    let sources = conn.crm.managed_sources().await?;
    let groups = managed_groups(&sources, &mut summary);
    summary.groups = groups.len();
    let mut run = Run {
        limits,
        deadline,
        applied: 0,
        summary: &mut summary,
    };
    let mut complete = true;
    'groups: for group in &groups {
        let work = GroupWork {
            group,
            sources: sources.iter().filter(|s| s.group_id == group.id).collect(),
        };
        for &kind in job.kinds() {
            match group_pass(conn, job, &context, &work, kind, &mut run).await {
                Ok(()) => {}
                Err(Stop::Limit) => {
                    complete = false;
                    break 'groups;
                }
                Err(Stop::Failed(e)) => {
                    complete = false;
                    warn!(job = job.name(), group = %group.id, kind = kind.name(), error = %e, retryable = e.is_retryable(), "group stopped; the next run resumes it");
                    run.summary.failed_groups.push(format!(
                        "group {} ({}): {e}",
                        group.id,
                        kind.name()
                    ));
                    // The other kinds of this group wait too: their cursors are independent,
                    // but a failing group is usually failing for all of them.
                    continue 'groups;
                }
            }
        }
    }
    summary.complete = complete;
    info!(job = job.name(), summary = ?summary, "back-flow run finished");
    Ok(summary)
}

async fn load_cursor<S: TokenStore>(
    conn: &Connector<S>,
    key: &str,
    summary: &mut RunSummary,
) -> Result<Cursor, SyncError> {
    let row_id = derived_id("cursor", &[key]);
    let Some(text) = conn.crm.cursor(&row_id).await? else {
        return Ok(Cursor::default());
    };
    match serde_json::from_str(&text) {
        Ok(cursor) => Ok(cursor),
        Err(e) => {
            // Starting again from the beginning re-reads events, which is safe; guessing is not.
            summary.problems.push(format!(
                "the cursor {key} could not be read ({e}); starting that pass from the beginning"
            ));
            Ok(Cursor::default())
        }
    }
}

async fn save_cursor<S: TokenStore>(
    conn: &Connector<S>,
    key: &str,
    cursor: &Cursor,
) -> Result<(), SyncError> {
    let row_id = derived_id("cursor", &[key]);
    let value = serde_json::to_string(cursor).map_err(|e| SyncError::Invalid(e.to_string()))?;
    conn.crm.save_cursor(&row_id, key, &value).await?;
    Ok(())
}

/// One group and kind: continue (or start) the pass, page by page.
async fn group_pass<S: TokenStore>(
    conn: &Connector<S>,
    job: Job,
    context: &JobContext,
    work: &GroupWork<'_>,
    kind: EventKind,
    run: &mut Run<'_>,
) -> Result<(), Stop> {
    let group = work.group;
    if run.out_of_budget() {
        return Err(Stop::Limit);
    }
    let key = cursor_key(job.name(), &group.id, kind);
    let mut cursor = load_cursor(conn, &key, run.summary)
        .await
        .map_err(Stop::Failed)?;
    let started = match cursor.pass_started {
        Some(started) => started,
        None => {
            let now = (conn.now)();
            cursor.pass_started = Some(now);
            cursor.page = 0;
            now
        }
    };
    let after = DateTime::from_timestamp(cursor.since, 0).unwrap_or(DateTime::UNIX_EPOCH);
    let page_size = run.limits.page_size.clamp(1, 5000);
    // Back up one page on resume: receivers that left the result since would otherwise shift
    // unread ones onto the page already done.
    let mut page = cursor.page.saturating_sub(1);
    loop {
        if run.out_of_budget() {
            cursor.page = page;
            save_cursor(conn, &key, &cursor)
                .await
                .map_err(Stop::Failed)?;
            return Err(Stop::Limit);
        }
        let request = FilterRequest {
            page,
            page_size,
            ..FilterRequest::new(vec![group.id.clone()], vec![kind.rule(after)])
        };
        let (records, is_last) = match conn.newsletter.filter_receivers(&request).await {
            Ok(found) => {
                if found.unreadable > 0 {
                    run.summary.problem(format!(
                        "group {} ({}): {} receiver(s) on page {page} have an address that is not a valid e-mail",
                        group.id,
                        kind.name(),
                        found.unreadable
                    ));
                }
                (found.items, found.is_last)
            }
            Err(CleverReachError::Decode { message }) => {
                run.summary.problem(format!(
                    "group {} ({}): page {page} could not be read ({message}); reading its receivers one by one",
                    group.id,
                    kind.name()
                ));
                one_by_one(conn, group, kind, after, page, page_size, run)
                    .await
                    .map_err(|e| Stop::Failed(e.into()))?
            }
            Err(e) => {
                cursor.page = page;
                let _ = save_cursor(conn, &key, &cursor).await;
                return Err(Stop::Failed(e.into()));
            }
        };
        for record in &records {
            if run.out_of_budget() {
                cursor.page = page;
                save_cursor(conn, &key, &cursor)
                    .await
                    .map_err(Stop::Failed)?;
                return Err(Stop::Limit);
            }
            run.summary.events += 1;
            match job
                .apply(conn, context, work, kind, record, run.summary)
                .await
            {
                Ok(Outcome::Applied) => {
                    run.applied += 1;
                    run.summary.applied += 1;
                }
                Ok(Outcome::AlreadyDone) => run.summary.already_done += 1,
                Ok(Outcome::Ignored) => run.summary.ignored += 1,
                Ok(Outcome::Skipped) => {}
                Err(e) => {
                    cursor.page = page;
                    let _ = save_cursor(conn, &key, &cursor).await;
                    return Err(Stop::Failed(e));
                }
            }
        }
        page += 1;
        if is_last {
            let overlap = i64::try_from(run.limits.overlap.as_secs()).unwrap_or(i64::MAX);
            cursor = Cursor {
                since: cursor.since.max(started.saturating_sub(overlap)),
                pass_started: None,
                page: 0,
            };
            save_cursor(conn, &key, &cursor)
                .await
                .map_err(Stop::Failed)?;
            return Ok(());
        }
        cursor.page = page;
        save_cursor(conn, &key, &cursor)
            .await
            .map_err(Stop::Failed)?;
    }
}

/// A page that could not be decoded, read again one receiver at a time, so that only the
/// broken receiver is skipped. Returns the readable ones and whether the result ended.
async fn one_by_one<S: TokenStore>(
    conn: &Connector<S>,
    group: &ManagedGroup,
    kind: EventKind,
    after: DateTime<Utc>,
    page: u32,
    page_size: usize,
    run: &mut Run<'_>,
) -> Result<(Vec<ReceiverRecord>, bool), CleverReachError> {
    let mut records = Vec::new();
    let first = u64::from(page) * page_size as u64;
    for index in first..first + page_size as u64 {
        let Ok(single) = u32::try_from(index) else {
            return Ok((records, true));
        };
        let request = FilterRequest {
            page: single,
            page_size: 1,
            ..FilterRequest::new(vec![group.id.clone()], vec![kind.rule(after)])
        };
        match conn.newsletter.filter_receivers(&request).await {
            Ok(found) => {
                if found.unreadable > 0 {
                    run.summary.problem(format!(
                        "group {} ({}): receiver #{index} has an address that is not a valid e-mail",
                        group.id,
                        kind.name()
                    ));
                }
                let ended = found.items.is_empty() && found.unreadable == 0;
                records.extend(found.items);
                if ended {
                    return Ok((records, true));
                }
            }
            Err(CleverReachError::Decode { message }) => run.summary.problem(format!(
                "group {} ({}): receiver #{index} is not a readable receiver ({message}); skipped",
                group.id,
                kind.name()
            )),
            Err(e) => return Err(e),
        }
    }
    Ok((records, false))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::checklist::Checklist;
    use crate::domain::source::SourceKind;

    #[test]
    fn derived_ids_are_stable_guids_that_differ_per_event() {
        let a = derived_id(
            "receiverstate",
            &["7", "a@example.com", "unsubscribed", "100"],
        );
        assert_eq!(
            a,
            derived_id(
                "receiverstate",
                &["7", "a@example.com", "unsubscribed", "100"]
            )
        );
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8", "version nibble: {a}");
        assert!(crate::adapters::dataverse::client::filter::guid(&a).is_ok());
        for other in [
            derived_id(
                "receiverstate",
                &["7", "a@example.com", "unsubscribed", "101"],
            ),
            derived_id("receiverstate", &["7", "a@example.com", "bounced", "100"]),
            derived_id(
                "receiverstate",
                &["8", "a@example.com", "unsubscribed", "100"],
            ),
            derived_id(
                "receiverstate",
                &["7a", "@example.com", "unsubscribed", "100"],
            ),
            derived_id("lead", &["7", "a@example.com", "unsubscribed", "100"]),
        ] {
            assert_ne!(a, other);
        }
    }

    #[test]
    fn a_cursor_round_trips_and_an_old_value_without_pass_fields_reads() {
        let c = Cursor {
            since: 5,
            pass_started: Some(9),
            page: 3,
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Cursor>(&text).unwrap(), c);
        assert_eq!(
            serde_json::from_str::<Cursor>(r#"{"since":42}"#).unwrap(),
            Cursor {
                since: 42,
                pass_started: None,
                page: 0
            }
        );
    }

    #[test]
    fn a_group_linked_to_two_sources_gets_both_sources_types_once() {
        let source = |id: &str, group: &str, json: &str| ManagedSource {
            kind: SourceKind::MarketingList,
            id: id.into(),
            group_id: group.into(),
            checklist: Checklist::parse(json).map_err(|e| e.to_string()),
            list: None,
        };
        let mut summary = RunSummary::default();
        let groups = managed_groups(
            &[
                source("a", "1", r#"[{"id":0,"state":1},{"id":1,"state":2}]"#),
                source("b", "1", r#"[{"id":1,"state":1},{"id":0,"state":1}]"#),
                source("c", "2", r#"[{"id":0,"state":7}]"#),
            ],
            &mut summary,
        );
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0].types,
            vec![NewsletterTypeId(0), NewsletterTypeId(1)]
        );
        assert!(groups[1].types.is_empty());
        assert_eq!(summary.problems.len(), 1, "{:?}", summary.problems);
        assert!(summary.problems[0].contains("state 7"));
    }
}
