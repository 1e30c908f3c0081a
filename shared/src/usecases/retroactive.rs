//! Use case: retroactive recipient sync on a marketing list (docs/architecture.md §5), replacing the seed's
//! multi-process worker.
//!
//! 1. **Fan-out** (`sublist-fanout`): the list's "retroactive sync" flag was turned on. Check the
//!    requested checklist (`crc_retroactivesyncjson`, or the list's own checklist when empty),
//!    page through the members and queue one message per sublist of `sublistcount` members, then
//!    a "finish" message; turn the flag off. A list too big for one invocation continues in a
//!    follow-up message to the fan-out's own queue.
//! 2. **Sublist update** (`sublist-update`): read the sublist's checklists, apply the mass update
//!    (an explicit "no" is never turned into "yes": counted as skipped), write them with `$batch`
//!    requests of `updaterequestcount` conditional updates, and count the sublist once.
//! 3. **Finish and reconcile**: after the last sublist (FIFO order within the run), every synced
//!    group gets one full reconcile through the source sync — one message per group, batched
//!    calls, not one message or lookup per member.
//!
//! Bookkeeping lives on the list (`crc_retroactivestate`, summarised in
//! `crc_retroactiveprogress`) and is written only if the list is unchanged since it was read
//! (`If-Match`), so the fan-out and the sublist updates never overwrite each other's counts,
//! and a redelivered sublist is recognised and counted once.

use super::connector::{Connector, SyncError};
use super::source::resync_source;
use crate::domain::checklist::{Checklist, ChoiceState, MassUpdateOutcome};
use crate::domain::recipient::PersonEntity;
use crate::domain::routing::QueueFamily;
use crate::domain::settings::Settings;
use crate::domain::source::SourceKind;
use crate::ports::crm::{ChecklistWrite, RetroactiveColumns, RetroactiveUpdate, WriteResult};
use crate::ports::queue::QueueError;
pub use crate::ports::queue::{MessageQueue, OutboundMessage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// `modifiedby` of the checklist entries a retroactive sync changes.
pub const MODIFIED_BY: &str = "CleverReach connector (retroactive sync)";

/// Rounds of re-reading members whose write was refused as stale (412) or failed retryably.
const WRITE_ROUNDS: usize = 5;
/// Attempts at writing the run's bookkeeping when others keep writing the list in between.
const STATE_ATTEMPTS: usize = 20;

// ----- messages ----------------------------------------------------------------------------------

/// What every message of one run carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub list_id: String,
    /// The run: the operation that turned the flag on (a redelivered trigger is the same run).
    pub run_id: String,
    /// `modifiedon` of every entry the run changes (RFC 3339); with [`MODIFIED_BY`] it lets a
    /// redelivered sublist recognise the run's own earlier writes.
    pub stamp: String,
    /// The requested checklist, validated, as JSON.
    pub requested: String,
}

impl Run {
    /// The FIFO message group of the run (at most 128 characters: two GUIDs and a prefix).
    pub fn group(&self) -> String {
        format!("list:{}:{}", self.list_id, self.run_id)
    }

    fn message(&self, family: QueueFamily, dedup: String, body: String) -> OutboundMessage {
        OutboundMessage {
            family,
            group: self.group(),
            deduplication_id: dedup.chars().take(128).collect(),
            body,
        }
    }
}

/// A message on the fan-out's own queue besides the triggering change events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FanoutMessage {
    /// Carry on paging: the first `skip` members were queued by earlier invocations.
    Continue {
        run: Run,
        skip: u64,
        next_index: u32,
    },
}

/// A message on the sublist queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SublistMessage {
    /// Overwrite these people's checklists.
    Update {
        run: Run,
        index: u32,
        entity: PersonEntity,
        ids: Vec<String>,
    },
    /// Every sublist was queued before this one: find the groups to reconcile.
    Finish { run: Run, sublists: u32 },
    /// Reconcile one source's group against the new checklists.
    Reconcile {
        run: Run,
        source: SourceKind,
        source_id: String,
    },
}

/// A queue that did not take a message: the message being worked stays on its own queue and
/// is retried (the de-duplication ids keep what was sent already single).
fn queue_error(e: QueueError) -> SyncError {
    SyncError::Config(format!("queue: {e}"))
}

fn encode<T: Serialize>(value: &T) -> Result<String, SyncError> {
    serde_json::to_string(value).map_err(|e| SyncError::Invalid(format!("message encoding: {e}")))
}

// ----- the run's bookkeeping -----------------------------------------------------------------------

/// The state of one run, stored as JSON in `crc_retroactivestate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: String,
    /// When the run started (RFC 3339).
    pub started: String,
    /// Members queued so far.
    pub members: u64,
    /// Sublists in all, known once the fan-out has finished.
    pub sublists: Option<u32>,
    /// Sublists counted, as inclusive ranges of their indexes.
    pub done: Vec<[u32; 2]>,
    pub updated: u64,
    /// Members whose checklist already was as requested.
    pub unchanged: u64,
    /// Members with an explicit "no" where a "yes" was requested: left alone.
    pub skipped: u64,
    pub failed: u64,
    /// Groups to reconcile, known once the last sublist is done.
    pub groups: Option<u32>,
    /// Sources whose group was reconciled.
    pub reconciled: BTreeSet<String>,
}

/// What one sublist did to its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SublistCounts {
    pub updated: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    /// `$batch` requests with checklist writes.
    pub batches: u32,
}

impl RunState {
    pub fn is_done(&self, index: u32) -> bool {
        self.done.iter().any(|[a, b]| (*a..=*b).contains(&index))
    }

    /// Marks a sublist as counted; false when it already was.
    pub fn mark_done(&mut self, index: u32) -> bool {
        if self.is_done(index) {
            return false;
        }
        self.done.push([index, index]);
        self.done.sort_unstable();
        let mut merged: Vec<[u32; 2]> = Vec::with_capacity(self.done.len());
        for [a, b] in self.done.drain(..) {
            match merged.last_mut() {
                Some(last) if a <= last[1].saturating_add(1) => last[1] = last[1].max(b),
                _ => merged.push([a, b]),
            }
        }
        self.done = merged;
        true
    }

    pub fn sublists_done(&self) -> u64 {
        self.done.iter().map(|[a, b]| u64::from(b - a) + 1).sum()
    }

    /// Every sublist counted and every group reconciled.
    pub fn is_complete(&self) -> bool {
        self.sublists
            .is_some_and(|total| self.sublists_done() >= u64::from(total))
            && self
                .groups
                .is_some_and(|g| self.reconciled.len() >= g as usize)
    }

    /// The line administrators see in `crc_retroactiveprogress`.
    pub fn summary(&self) -> String {
        let done = self.sublists_done();
        let sublists = match self.sublists {
            Some(total) => {
                let percent = if total == 0 {
                    100
                } else {
                    done * 100 / u64::from(total)
                };
                format!("{done} of {total} sublists done ({percent}%)")
            }
            None => format!(
                "{done} sublists done, fan-out in progress ({} members queued so far)",
                self.members
            ),
        };
        let mut line = format!(
            "Retroactive sync started {}: {sublists}; members: {} updated, {} already as requested, {} skipped (explicit no), {} failed",
            self.started, self.updated, self.unchanged, self.skipped, self.failed
        );
        match self.groups {
            Some(groups) => line.push_str(&format!(
                "; {} of {groups} groups reconciled",
                self.reconciled.len()
            )),
            None => line.push_str("; groups are reconciled after the last sublist"),
        }
        if self.is_complete() {
            line.push_str(". Finished.");
        }
        line
    }
}

fn parse_state(columns: &RetroactiveColumns) -> Option<RunState> {
    let text = columns.state.as_deref()?;
    match serde_json::from_str(text) {
        Ok(state) => Some(state),
        Err(e) => {
            warn!(error = %e, "retroactive state on the list is not readable; a new run starts afresh");
            None
        }
    }
}

/// The run's state and its readable summary, with `extra` (flag, last error) along.
fn state_update(
    state: &RunState,
    extra: &RetroactiveUpdate,
) -> Result<RetroactiveUpdate, SyncError> {
    Ok(RetroactiveUpdate {
        state: Some(encode(state)?),
        progress: Some(state.summary()),
        ..extra.clone()
    })
}

/// How a change of the run's state ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateChange {
    Changed(RunState),
    /// The change was already there (e.g. the sublist was counted before).
    AlreadyThere(RunState),
    /// The list holds another run's state now (a newer run replaced this one).
    Superseded,
    /// The list is gone.
    Gone,
}

/// Applies `change` to the run's state on the list, only if nobody wrote the list in between
/// (read, change, `If-Match` write, again on 412). `change` returns false when there is
/// nothing to do. `extra` columns are written along.
async fn change_state(
    conn: &Connector,
    run: &Run,
    mut change: impl FnMut(&mut RunState) -> bool,
    extra: &RetroactiveUpdate,
) -> Result<StateChange, SyncError> {
    for _ in 0..STATE_ATTEMPTS {
        let Some(columns) = conn.retroactive.retroactive_columns(&run.list_id).await? else {
            return Ok(StateChange::Gone);
        };
        let Some(mut state) = parse_state(&columns).filter(|s| s.run_id == run.run_id) else {
            return Ok(StateChange::Superseded);
        };
        if !change(&mut state) {
            return Ok(StateChange::AlreadyThere(state));
        }
        let write = state_update(&state, extra)?;
        let written = conn
            .retroactive
            .update_list(&run.list_id, columns.version.as_ref(), &write)
            .await?;
        if written {
            return Ok(StateChange::Changed(state));
        }
    }
    Err(SyncError::Config(format!(
        "the retroactive state of list {} could not be written: the list kept changing",
        run.list_id
    )))
}

// ----- fan-out ------------------------------------------------------------------------------------

/// How much one fan-out invocation does before it continues in a follow-up message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutLimits {
    /// Pages of members (up to 5000 each).
    pub max_pages: u32,
    /// Time spent paging.
    pub time_budget: Duration,
}

impl Default for FanoutLimits {
    /// 40 pages (200,000 members) or 40 seconds, far inside Lambda's 15 minutes.
    fn default() -> Self {
        FanoutLimits {
            max_pages: 40,
            time_budget: Duration::from_secs(40),
        }
    }
}

/// What a fan-out invocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanoutOutcome {
    /// The flag is off: nothing requested (or the run already finished).
    NotRequested,
    /// The request cannot be carried out; the reason is on the list, the flag is off.
    Refused(String),
    /// Sublists queued; `finished` when the member list was read to its end.
    Queued {
        sublists: u32,
        members: u64,
        finished: bool,
    },
    /// The list is gone, or a newer run replaced this one.
    Dropped,
}

/// The columns named in the messages administrators read on the list.
const RETROACTIVE_SYNC_JSON_COLUMN: &str = "crc_retroactivesyncjson";
const CHECKLIST_COLUMN: &str = "crc_checklist";

/// The checklist a run writes: `crc_retroactivesyncjson`, or the list's own checklist when that
/// is empty. Errors name the column and what is wrong.
pub fn requested_checklist(
    columns: &RetroactiveColumns,
    settings: &Settings,
) -> Result<Checklist, String> {
    let (what, text) = match &columns.checklist_json {
        Some(json) => (RETROACTIVE_SYNC_JSON_COLUMN.to_string(), json.clone()),
        None => (
            format!(
                "the list's checklist ({CHECKLIST_COLUMN}, used because {RETROACTIVE_SYNC_JSON_COLUMN} is empty)"
            ),
            columns.list_checklist.clone().unwrap_or_default(),
        ),
    };
    let checklist = Checklist::parse(&text).map_err(|e| format!("{what} is not valid: {e}"))?;
    checklist
        .validate(&settings.newsletter_types)
        .map_err(|e| format!("{what} is not valid: {e}"))?;
    if !checklist
        .entries
        .iter()
        .any(|e| e.state != ChoiceState::NoChoice)
    {
        return Err(format!(
            "{what} requests no change: no newsletter type has state 1 (yes) or 2 (no)"
        ));
    }
    Ok(checklist)
}

/// A list update turned retroactive sync on (`operation_id` names the run).
pub async fn start_run<Q: MessageQueue>(
    conn: &Connector,
    queue: &Q,
    settings: &Settings,
    list_id: &str,
    operation_id: &str,
    limits: FanoutLimits,
) -> Result<FanoutOutcome, SyncError> {
    let list_id = list_id.to_ascii_lowercase();
    let Some(columns) = conn.retroactive.retroactive_columns(&list_id).await? else {
        return Ok(FanoutOutcome::Dropped);
    };
    if !columns.requested {
        return Ok(FanoutOutcome::NotRequested);
    }
    let requested = match requested_checklist(&columns, settings) {
        Ok(checklist) => checklist,
        Err(problem) => {
            refuse(conn, &list_id, &problem).await?;
            return Ok(FanoutOutcome::Refused(problem));
        }
    };
    let run_id: String = operation_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    let run_id = if run_id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        run_id.to_ascii_lowercase()
    };
    let existing = parse_state(&columns).filter(|s| s.run_id == run_id);
    let stamp = match &existing {
        // The same trigger again (a crash, a redelivery): carry on with the run as it was.
        Some(state) => state.started.clone(),
        None => chrono::DateTime::from_timestamp((conn.now)(), 0)
            .unwrap_or_default()
            .to_rfc3339(),
    };
    let run = Run {
        list_id: list_id.clone(),
        run_id: run_id.clone(),
        stamp: stamp.clone(),
        requested: requested.to_json(),
    };
    if existing.is_none() {
        let state = RunState {
            run_id,
            started: stamp,
            ..RunState::default()
        };
        let clear_error = RetroactiveUpdate {
            last_error: Some(None),
            ..RetroactiveUpdate::default()
        };
        conn.retroactive
            .update_list(&list_id, None, &state_update(&state, &clear_error)?)
            .await?;
        info!(list_id, run_id = %run.run_id, "retroactive sync started");
    }
    fan_out(conn, queue, settings, &run, 0, 0, limits).await
}

/// Invalid request: say why on the list, turn the flag off, change nothing else.
async fn refuse(conn: &Connector, list_id: &str, problem: &str) -> Result<(), SyncError> {
    warn!(list_id, problem, "retroactive sync refused");
    let now = chrono::DateTime::from_timestamp((conn.now)(), 0).unwrap_or_default();
    let text = format!("Retroactive sync not started, nothing was changed: {problem}");
    let update = RetroactiveUpdate {
        turn_off: true,
        progress: Some(text.clone()),
        last_error: Some(Some(format!("{}: {text}", now.to_rfc3339()))),
        state: None,
    };
    conn.retroactive.update_list(list_id, None, &update).await?;
    Ok(())
}

/// Pages through the members from `skip` on and queues their sublists (messages go out ten at
/// a time as pages come, so memory holds about one page). Past the limits, queues a follow-up
/// and returns; at the end, queues "finish", records the total and turns the flag off.
pub async fn fan_out<Q: MessageQueue>(
    conn: &Connector,
    queue: &Q,
    settings: &Settings,
    run: &Run,
    skip: u64,
    next_index: u32,
    limits: FanoutLimits,
) -> Result<FanoutOutcome, SyncError> {
    let Some(record) = conn
        .sources
        .source(SourceKind::MarketingList, &run.list_id)
        .await?
    else {
        return Ok(FanoutOutcome::Dropped);
    };
    let size = settings.sublist_count.max(1) as usize;
    let started = Instant::now();
    let mut members = conn.members.members(&record);
    let mut seen = 0u64;
    let mut index = next_index;
    let mut pages = 0u32;
    let mut sublist: Vec<String> = Vec::with_capacity(size);
    let mut entity = PersonEntity::Contact;
    let mut out = Vec::new();
    let sublist_message = |index: u32, entity: PersonEntity, ids: Vec<String>| {
        encode(&SublistMessage::Update {
            run: run.clone(),
            index,
            entity,
            ids,
        })
        .map(|body| {
            run.message(
                QueueFamily::Sublist,
                format!("{}-s{index}", run.run_id),
                body,
            )
        })
    };
    while let Some(page) = members.next_page().await? {
        // Pages read again only to skip what earlier invocations queued do not count.
        if seen + page.len() as u64 > skip {
            pages += 1;
        }
        for recipient in page {
            seen += 1;
            if seen <= skip {
                continue;
            }
            // A list has one member table; an account's recipient is its primary contact.
            if recipient.person.entity != entity && !sublist.is_empty() {
                out.push(sublist_message(
                    index,
                    entity,
                    std::mem::take(&mut sublist),
                )?);
                index += 1;
            }
            entity = recipient.person.entity;
            if !sublist.contains(&recipient.person.id) {
                sublist.push(recipient.person.id);
            }
            if sublist.len() >= size {
                out.push(sublist_message(
                    index,
                    entity,
                    std::mem::take(&mut sublist),
                )?);
                index += 1;
            }
        }
        if !out.is_empty() {
            queue
                .send(std::mem::take(&mut out))
                .await
                .map_err(queue_error)?;
        }
        if pages > 0 && (pages >= limits.max_pages || started.elapsed() >= limits.time_budget) {
            // The members of the unfinished sublist are read again by the follow-up.
            let skip = seen - sublist.len() as u64;
            let body = encode(&FanoutMessage::Continue {
                run: run.clone(),
                skip,
                next_index: index,
            })?;
            queue
                .send(vec![run.message(
                    QueueFamily::RetroactiveSync,
                    format!("{}-c{skip}", run.run_id),
                    body,
                )])
                .await
                .map_err(queue_error)?;
            let change = change_state(
                conn,
                run,
                |s| {
                    let changed = s.members != skip;
                    s.members = s.members.max(skip);
                    changed
                },
                &RetroactiveUpdate::default(),
            )
            .await?;
            if matches!(change, StateChange::Superseded | StateChange::Gone) {
                return Ok(FanoutOutcome::Dropped);
            }
            info!(list_id = %run.list_id, sublists = index, members = skip, "fan-out continues in a follow-up");
            return Ok(FanoutOutcome::Queued {
                sublists: index,
                members: skip,
                finished: false,
            });
        }
    }
    if !sublist.is_empty() {
        out.push(sublist_message(
            index,
            entity,
            std::mem::take(&mut sublist),
        )?);
        index += 1;
    }
    let body = encode(&SublistMessage::Finish {
        run: run.clone(),
        sublists: index,
    })?;
    out.push(run.message(QueueFamily::Sublist, format!("{}-finish", run.run_id), body));
    queue.send(out).await.map_err(queue_error)?;
    let flag_off = RetroactiveUpdate {
        turn_off: true,
        ..RetroactiveUpdate::default()
    };
    let change = change_state(
        conn,
        run,
        |s| {
            s.members = seen;
            s.sublists = Some(index);
            true
        },
        &flag_off,
    )
    .await?;
    if matches!(change, StateChange::Superseded | StateChange::Gone) {
        return Ok(FanoutOutcome::Dropped);
    }
    info!(list_id = %run.list_id, sublists = index, members = seen, "fan-out finished");
    Ok(FanoutOutcome::Queued {
        sublists: index,
        members: seen,
        finished: true,
    })
}

// ----- sublist update -----------------------------------------------------------------------------

/// What a sublist message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SublistOutcome {
    /// Checklists written and the sublist counted.
    Counted(SublistCounts),
    /// Counted before (a redelivery): nothing written, nothing counted.
    AlreadyCounted,
    /// Groups to reconcile queued.
    Finished { groups: u32 },
    /// A group reconciled.
    Reconciled,
    /// The list is gone, or a newer run replaced this one.
    Dropped,
}

/// True when `current` is what this run wrote: every requested state is there and at least
/// one of those entries carries the run's stamp. A redelivered sublist then counts the member
/// as updated (by the earlier attempt), not as "already as requested".
fn written_by_run(current: &Checklist, requested: &Checklist, stamp: &str) -> bool {
    let wanted: Vec<_> = requested
        .entries
        .iter()
        .filter(|e| e.state != ChoiceState::NoChoice)
        .collect();
    wanted.iter().all(|w| current.state_of(w.id) == w.state)
        && current.entries.iter().any(|e| {
            wanted.iter().any(|w| w.id == e.id)
                && e.modified_on == stamp
                && e.modified_by == MODIFIED_BY
        })
}

/// Processes one sublist message.
pub async fn on_sublist<Q: MessageQueue>(
    conn: &Connector,
    queue: &Q,
    settings: &Settings,
    message: &SublistMessage,
) -> Result<SublistOutcome, SyncError> {
    match message {
        SublistMessage::Update {
            run,
            index,
            entity,
            ids,
        } => update_sublist(conn, settings, run, *index, *entity, ids).await,
        SublistMessage::Finish { run, .. } => finish_run(conn, queue, run).await,
        SublistMessage::Reconcile {
            run,
            source,
            source_id,
        } => reconcile_for_run(conn, settings, run, *source, source_id).await,
    }
}

/// Writes one sublist's checklists and counts it once.
pub async fn update_sublist(
    conn: &Connector,
    settings: &Settings,
    run: &Run,
    index: u32,
    entity: PersonEntity,
    ids: &[String],
) -> Result<SublistOutcome, SyncError> {
    let Some(columns) = conn.retroactive.retroactive_columns(&run.list_id).await? else {
        return Ok(SublistOutcome::Dropped);
    };
    match parse_state(&columns).filter(|s| s.run_id == run.run_id) {
        None => return Ok(SublistOutcome::Dropped),
        Some(state) if state.is_done(index) => return Ok(SublistOutcome::AlreadyCounted),
        Some(_) => {}
    }
    let requested = Checklist::parse(&run.requested)
        .map_err(|e| SyncError::Invalid(format!("the run's requested checklist: {e}")))?;
    let per_batch = settings.update_request_count.clamp(1, 1000) as usize;
    let mut counts = SublistCounts::default();
    let mut pending: Vec<String> = {
        let mut seen = BTreeSet::new();
        ids.iter()
            .map(|id| id.to_ascii_lowercase())
            .filter(|id| seen.insert(id.clone()))
            .collect()
    };
    for _ in 0..WRITE_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let stored = conn.retroactive.stored_checklists(entity, &pending).await?;
        let mut writes = Vec::new();
        for id in pending.drain(..) {
            let Some(row) = stored.get(&id) else {
                warn!(%entity, record_id = %id, "member no longer exists");
                counts.failed += 1;
                continue;
            };
            let current = match Checklist::parse(&row.checklist) {
                Ok(c) => c,
                Err(e) => {
                    // Overwriting a checklist nobody can read could undo an opt-out.
                    warn!(%entity, record_id = %id, error = %e, "unreadable checklist left alone");
                    counts.failed += 1;
                    continue;
                }
            };
            match current.apply_mass_update(&requested, MODIFIED_BY, &run.stamp) {
                MassUpdateOutcome::Changed(new) => writes.push(ChecklistWrite {
                    id,
                    version: row.version.clone(),
                    checklist: new.to_json(),
                }),
                MassUpdateOutcome::Unchanged => {
                    if written_by_run(&current, &requested, &run.stamp) {
                        counts.updated += 1;
                    } else {
                        counts.unchanged += 1;
                    }
                }
                MassUpdateOutcome::SkippedExplicitNo => counts.skipped += 1,
            }
        }
        for chunk in writes.chunks(per_batch) {
            let results = conn.retroactive.write_checklists(entity, chunk).await?;
            counts.batches += 1;
            for (write, result) in chunk.iter().zip(results) {
                match result {
                    WriteResult::Written => counts.updated += 1,
                    // Changed since read — by a person, or by this batch's lost first attempt:
                    // read again and decide again.
                    WriteResult::Stale => pending.push(write.id.clone()),
                    WriteResult::Gone => counts.failed += 1,
                    WriteResult::Failed {
                        retryable: true, ..
                    } => pending.push(write.id.clone()),
                    WriteResult::Failed { reason, .. } => {
                        warn!(%entity, record_id = %write.id, error = %reason, "checklist not written");
                        counts.failed += 1;
                    }
                }
            }
        }
    }
    if !pending.is_empty() {
        warn!(
            members = pending.len(),
            "checklists still not written after {WRITE_ROUNDS} rounds"
        );
        counts.failed += pending.len() as u64;
    }
    let change = change_state(
        conn,
        run,
        |s| {
            if !s.mark_done(index) {
                return false;
            }
            s.updated += counts.updated;
            s.unchanged += counts.unchanged;
            s.skipped += counts.skipped;
            s.failed += counts.failed;
            true
        },
        &RetroactiveUpdate::default(),
    )
    .await?;
    Ok(match change {
        StateChange::Changed(_) => {
            info!(list_id = %run.list_id, index, updated = counts.updated, skipped = counts.skipped, failed = counts.failed, "sublist done");
            SublistOutcome::Counted(counts)
        }
        StateChange::AlreadyThere(_) => SublistOutcome::AlreadyCounted,
        StateChange::Superseded | StateChange::Gone => SublistOutcome::Dropped,
    })
}

/// After the last sublist: one reconcile message per synced group (when anything changed).
async fn finish_run<Q: MessageQueue>(
    conn: &Connector,
    queue: &Q,
    run: &Run,
) -> Result<SublistOutcome, SyncError> {
    let Some(columns) = conn.retroactive.retroactive_columns(&run.list_id).await? else {
        return Ok(SublistOutcome::Dropped);
    };
    let Some(state) = parse_state(&columns).filter(|s| s.run_id == run.run_id) else {
        return Ok(SublistOutcome::Dropped);
    };
    // Only the groups of synced sources can change; nothing changed, nothing to reconcile.
    let sources = if state.updated > 0 {
        conn.sources.active_synced_sources().await?
    } else {
        Vec::new()
    };
    let mut messages = Vec::with_capacity(sources.len());
    for (kind, id) in &sources {
        let body = encode(&SublistMessage::Reconcile {
            run: run.clone(),
            source: *kind,
            source_id: id.clone(),
        })?;
        messages.push(run.message(QueueFamily::Sublist, format!("{}-r{id}", run.run_id), body));
    }
    let groups = sources.len() as u32;
    // Recorded first: a group reconciled before its count is known would look finished.
    let change = change_state(
        conn,
        run,
        |s| {
            if s.groups.is_some() {
                return false;
            }
            s.groups = Some(groups);
            true
        },
        &RetroactiveUpdate::default(),
    )
    .await?;
    if matches!(change, StateChange::Superseded | StateChange::Gone) {
        return Ok(SublistOutcome::Dropped);
    }
    if !messages.is_empty() {
        queue.send(messages).await.map_err(queue_error)?;
    }
    Ok(SublistOutcome::Finished { groups })
}

/// Reconciles one group through the source sync (streamed, batched) and counts it once.
async fn reconcile_for_run(
    conn: &Connector,
    settings: &Settings,
    run: &Run,
    kind: SourceKind,
    source_id: &str,
) -> Result<SublistOutcome, SyncError> {
    let Some(columns) = conn.retroactive.retroactive_columns(&run.list_id).await? else {
        return Ok(SublistOutcome::Dropped);
    };
    match parse_state(&columns).filter(|s| s.run_id == run.run_id) {
        None => return Ok(SublistOutcome::Dropped),
        Some(state) if state.reconciled.contains(source_id) => {
            return Ok(SublistOutcome::AlreadyCounted);
        }
        Some(_) => {}
    }
    resync_source(conn, settings, kind, source_id).await?;
    let change = change_state(
        conn,
        run,
        |s| s.reconciled.insert(source_id.to_string()),
        &RetroactiveUpdate::default(),
    )
    .await?;
    Ok(match change {
        StateChange::Changed(_) => SublistOutcome::Reconciled,
        StateChange::AlreadyThere(_) => SublistOutcome::AlreadyCounted,
        StateChange::Superseded | StateChange::Gone => SublistOutcome::Dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checklist::NewsletterTypeId;

    #[test]
    fn sublists_counted_out_of_order_merge_into_ranges_and_count_once() {
        let mut state = RunState::default();
        for i in [0, 2, 1, 5, 4, 3] {
            assert!(state.mark_done(i));
        }
        assert!(!state.mark_done(3));
        assert_eq!(state.done, vec![[0, 5]]);
        assert_eq!(state.sublists_done(), 6);
        assert!(state.mark_done(9));
        assert_eq!(state.done, vec![[0, 5], [9, 9]]);
        assert!(state.is_done(9) && !state.is_done(7));
    }

    #[test]
    fn the_summary_shows_percent_and_finishes_only_after_the_groups() {
        let mut state = RunState {
            run_id: "r".into(),
            started: "2026-11-27T00:00:00+00:00".into(),
            sublists: Some(4),
            updated: 1900,
            skipped: 100,
            ..RunState::default()
        };
        state.mark_done(0);
        assert!(state.summary().contains("1 of 4 sublists done (25%)"));
        for i in 1..4 {
            state.mark_done(i);
        }
        state.groups = Some(1);
        assert!(state.summary().contains("(100%)"));
        assert!(!state.is_complete());
        state.reconciled.insert("g".into());
        assert!(state.is_complete());
        assert!(state.summary().contains("100 skipped (explicit no)"));
        assert!(state.summary().ends_with("Finished."));
    }

    fn checklist(entries: &[(i64, ChoiceState, &str, &str)]) -> Checklist {
        let mut c = Checklist::default();
        for (id, state, by, on) in entries {
            c.set_state(NewsletterTypeId(*id), *state, by, on);
        }
        c
    }

    #[test]
    fn a_member_written_by_the_run_is_recognised_by_its_stamp() {
        let requested = checklist(&[(0, ChoiceState::Yes, "", "")]);
        let ours = checklist(&[(0, ChoiceState::Yes, MODIFIED_BY, "t1")]);
        let before = checklist(&[(0, ChoiceState::Yes, "someone", "t0")]);
        assert!(written_by_run(&ours, &requested, "t1"));
        assert!(!written_by_run(&ours, &requested, "t2"));
        assert!(!written_by_run(&before, &requested, "t1"));
    }

    #[test]
    fn an_empty_request_or_unknown_type_is_refused_by_name() {
        let settings = Settings::default();
        let columns = |json: Option<&str>, list: Option<&str>| RetroactiveColumns {
            requested: true,
            checklist_json: json.map(str::to_string),
            list_checklist: list.map(str::to_string),
            state: None,
            version: None,
        };
        let err = requested_checklist(&columns(Some("[{\"id\":0,"), None), &settings).unwrap_err();
        assert!(
            err.contains("crc_retroactivesyncjson is not valid"),
            "{err}"
        );
        let err = requested_checklist(&columns(Some(r#"[{"id":7,"state":1}]"#), None), &settings)
            .unwrap_err();
        assert!(err.contains("newsletter type 7"), "{err}");
        let err = requested_checklist(&columns(None, None), &settings).unwrap_err();
        assert!(err.contains("crc_checklist"), "{err}");
        let ok = requested_checklist(&columns(None, Some(r#"[{"id":1,"state":1}]"#)), &settings)
            .unwrap();
        assert_eq!(ok.state_of(NewsletterTypeId(1)), ChoiceState::Yes);
    }
}
