//! Use case: the scheduled back-flow from CleverReach to the CRM (docs/architecture.md §3, "CleverReach to
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

use super::model::{
    CURSOR_KEY_PREFIX, Cursor, EventKind, Job, JobContext, ManagedGroup, Outcome, RunLimits,
    RunSummary, cursor_key, managed_groups,
};
use super::{lead_sync, receiver_state};
use crate::domain::checklist::NewsletterTypeId;
use crate::domain::settings::Settings;
use crate::error::Retryable;
use crate::ports::crm::ManagedSource;
use crate::ports::newsletter::{FilterRequest, NewsletterError, ReceiverRecord};
use crate::usecases::connector::{Connector, SyncError};
use chrono::{DateTime, Utc};
use std::time::Instant;
use tracing::{info, warn};

/// A group and the sources linked to it (the sources a sign-up must join to stay, docs/architecture.md §2
/// rule 6).
struct GroupWork<'a> {
    group: &'a ManagedGroup,
    sources: Vec<&'a ManagedSource>,
}

/// Applies one event of the job's kind.
async fn apply(
    job: Job,
    conn: &Connector,
    context: &JobContext,
    group: &GroupWork<'_>,
    kind: EventKind,
    record: &ReceiverRecord,
    summary: &mut RunSummary,
) -> Result<Outcome, SyncError> {
    match job {
        Job::ReceiverState => {
            receiver_state::apply(conn, context, group.group, kind, record, summary).await
        }
        Job::LeadSync => {
            lead_sync::apply(conn, context, group.group, &group.sources, record, summary).await
        }
    }
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

/// Writes back the unsubscribes and bounces of one group that no run has applied yet: done
/// right before the connector deletes the group, because the opt-outs would go with it and
/// the person could later be added again as active (docs/architecture.md §2 "Opt-outs").
/// `types` are the newsletter types the group sent. Any failure stops here, and the group is
/// then not deleted.
pub async fn flush_group(
    conn: &Connector,
    settings: &Settings,
    group_id: &str,
    types: Vec<NewsletterTypeId>,
) -> Result<RunSummary, SyncError> {
    let context = JobContext {
        settings: settings.clone(),
    };
    let group = ManagedGroup {
        id: group_id.to_string(),
        types,
    };
    let work = GroupWork {
        group: &group,
        sources: Vec::new(),
    };
    let limits = RunLimits::default();
    let mut summary = RunSummary::default();
    let mut run = Run {
        limits,
        // No budget of its own: the caller's invocation limits it.
        deadline: Instant::now() + std::time::Duration::from_secs(24 * 3600),
        applied: 0,
        summary: &mut summary,
    };
    for &kind in Job::ReceiverState.kinds() {
        match group_pass(conn, Job::ReceiverState, &context, &work, kind, &mut run).await {
            Ok(()) => {}
            Err(Stop::Failed(e)) => return Err(e),
            Err(Stop::Limit) => {
                return Err(SyncError::Config(format!(
                    "the opt-outs of group {group_id} could not all be written back in time"
                )));
            }
        }
    }
    summary.groups = 1;
    summary.complete = true;
    info!(
        group = group_id,
        applied = summary.applied,
        "group's opt-outs written back before its deletion"
    );
    Ok(summary)
}

/// The row that remembers when a job last started on its schedule.
pub fn last_start_key(job: Job) -> String {
    format!("{CURSOR_KEY_PREFIX}{}:last-start", job.name())
}

/// The schedule fires every few minutes; the CRM setting `scheduleminutes` decides how often a
/// job really runs, so administrators change the interval without a deployment. True when the
/// job is due (and records this start); false when it started less than `scheduleminutes` ago.
pub async fn due(conn: &Connector, job: Job, settings: &Settings) -> Result<bool, SyncError> {
    let key = last_start_key(job);
    let now = (conn.now)();
    let last = conn
        .cursors
        .cursor(&key)
        .await?
        .and_then(|text| text.trim().parse::<i64>().ok());
    // A minute's slack: the schedule's own jitter must not make a due run wait a whole round.
    let interval = i64::from(settings.schedule_minutes) * 60 - 60;
    if let Some(last) = last
        && now >= last
        && now - last < interval
    {
        info!(
            job = job.name(),
            minutes = settings.schedule_minutes,
            "not due yet"
        );
        return Ok(false);
    }
    conn.cursors.save_cursor(&key, &now.to_string()).await?;
    Ok(true)
}

/// Runs a job over every managed group. Errors only when nothing can start (settings or
/// sources unreadable); a group's failure is reported in the summary and the others go on.
pub async fn run_job(
    conn: &Connector,
    job: Job,
    settings: &Settings,
    limits: RunLimits,
) -> Result<RunSummary, SyncError> {
    let context = JobContext {
        settings: settings.clone(),
    };
    let deadline = Instant::now() + limits.budget;
    let mut summary = RunSummary::default();
    let sources = conn.sources.managed_sources().await?;
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
    // Counts only: the problems' texts are in the returned summary, not in the log.
    info!(
        job = job.name(),
        groups = summary.groups,
        events = summary.events,
        applied = summary.applied,
        skipped = summary.skipped,
        failed_groups = summary.failed_groups.len(),
        complete = summary.complete,
        "back-flow run finished"
    );
    Ok(summary)
}

async fn load_cursor(
    conn: &Connector,
    key: &str,
    summary: &mut RunSummary,
) -> Result<Cursor, SyncError> {
    let Some(text) = conn.cursors.cursor(key).await? else {
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

async fn save_cursor(conn: &Connector, key: &str, cursor: &Cursor) -> Result<(), SyncError> {
    let value = serde_json::to_string(cursor).map_err(|e| SyncError::Invalid(e.to_string()))?;
    conn.cursors.save_cursor(key, &value).await?;
    Ok(())
}

/// One group and kind: continue (or start) the pass, page by page.
async fn group_pass(
    conn: &Connector,
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
        let (records, is_last) = match conn.receivers.filter_receivers(&request).await {
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
            Err(NewsletterError::Unreadable(message)) => {
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
            match apply(job, conn, context, work, kind, record, run.summary).await {
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
async fn one_by_one(
    conn: &Connector,
    group: &ManagedGroup,
    kind: EventKind,
    after: DateTime<Utc>,
    page: u32,
    page_size: usize,
    run: &mut Run<'_>,
) -> Result<(Vec<ReceiverRecord>, bool), NewsletterError> {
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
        match conn.receivers.filter_receivers(&request).await {
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
            Err(NewsletterError::Unreadable(message)) => run.summary.problem(format!(
                "group {} ({}): receiver #{index} is not a readable receiver ({message}); skipped",
                group.id,
                kind.name()
            )),
            Err(e) => return Err(e),
        }
    }
    Ok((records, false))
}
