//! Domain: the reconcile planner. It compares the receivers a group should have (CRM members
//! after the rule of docs/architecture.md §2) with the receivers it has (read from CleverReach), and produces
//! the fewest batched CleverReach operations that make the group right.
//!
//! # Streaming
//!
//! Only the current group is held, and compactly: [`ReconcilePlanner::new`] keeps each
//! receiver's address (back to back in one buffer, its domain kept once for all addresses
//! sharing it, no allocation per receiver), its state and fingerprints of its person data and
//! CRM record (they are only ever compared): 32 bytes a receiver plus about 4 more than its
//! part before the @, and 2 to 4 bytes in each of its two indexes (`index`). Candidates
//! are then offered one at a time ([`ReconcilePlanner::offer`]), and every op that is ready is
//! handed out at once: an e-mail change as soon as it is found, an upsert batch as soon as it
//! is full. [`ReconcilePlanner::finish`] hands out the last partial batch and the removals.
//! Besides the group, the planner keeps one entry per address new to the group (a fingerprint
//! of the address and what was decided, 24 bytes plus 2 to 4 in its index), because merging
//! candidates and late opt-outs need to know what was already decided; the candidates' data is
//! never accumulated beyond one batch. [`plan`] does the same for callers that have everything
//! in memory. A group of 1,000,000 receivers with addresses like `bench-000123@example.com`
//! takes about 52 MB; a first sync of 1,000,000 about 27 MB (docs/architecture.md §4).
//!
//! # Rules
//!
//! Receivers are keyed by their normalised e-mail ([`Email`]).
//!
//! 1. **Merging.** Candidates with the same address are merged: the first `Wanted` decides, later
//!    ones are counted as `merged` and ignored. An `OptedOut` overrules (rule 7).
//! 2. **New.** A wanted address that is not in the group is upserted with `activate = true`
//!    (`added`), unless it is blocked: on the account blacklist or bounce list
//!    ([`ReconcilePlanner::with_blocked`]), or opted out in this group at the start (an address
//!    whose opted-out receiver moved away in this plan). Blocked addresses are `skipped_blocked`.
//!    The block list only guards additions: a receiver already in the group is treated by its
//!    state in the group.
//! 3. **Active.** A wanted address whose receiver is active is upserted with `activate = false`
//!    when its person data or its stored CRM record differ (`updated`); otherwise nothing is done
//!    (`unchanged`).
//! 4. **Opted out.** A wanted address whose receiver is deactivated, bounced or blacklisted gets
//!    no op at all: it is never re-activated and never touched (`kept_opted_out`).
//! 5. **E-mail change.** A wanted address that is not in the group, whose CRM record is stored on
//!    a receiver at another address that no candidate has claimed yet, moves that receiver:
//!    `ChangeEmail { from, to }` keeps its history in CleverReach (`email_changed`). An active
//!    receiver whose person data differ is then upserted with `activate = false`
//!    (`email_changed_updated`); an opted-out receiver moves and stays opted out, with no upsert.
//!    When the new address is already in the group there is no move: the new address follows
//!    rules 3 and 4 and the old one rule 8. The planner never moves a receiver onto a blocked
//!    address (the candidate is `skipped_blocked`, the old receiver follows rule 8).
//! 6. **A person who opted out stays out.** When the candidate's CRM record is stored on a receiver
//!    of this group that is opted out, the person is never added under a new address: that
//!    receiver is moved to the new address if it is still unclaimed (rule 5), and otherwise the
//!    candidate is `skipped_blocked`. Of several unclaimed receivers with the same CRM record an
//!    opted-out one is moved before an active one, then the earliest read.
//! 7. **Opt-out candidates.** `OptedOut(email)` (someone said "do not allow bulk e-mail" on a
//!    record with this address) wins over every other record with the address: an upsert of it
//!    still waiting in the unfinished batch is dropped; a receiver with it that is active in the
//!    group, or that was already handed out in an upsert or moved there, is removed at the end;
//!    later `Wanted` candidates for it are ignored (`merged`). Each address counts once in
//!    `opted_out`, whether it removed a receiver or only kept one out.
//! 8. **Not wanted.** At the end, receivers no candidate claimed are removed when active
//!    (`removed`) and kept when opted out (`kept_inactive`): they carry the opt-out record that
//!    CleverReach needs, and deleting them would lose it.
//! 9. **Order.** Ops are handed out in the order they must run: e-mail changes when found (so an
//!    upsert of a moved receiver always follows its move), upserts when a batch is full and the
//!    partial batch at the end, removals last. A receiver is never both upserted and removed,
//!    unless an opt-out for it arrived after its upsert was handed out.
//! 10. **Calls.** `ceil(upserted / batch_size)` upsert calls, one call per e-mail change and
//!     `ceil(removed / batch_size)` removal calls.
//!
//! # Counting
//!
//! Every candidate lands in exactly one of `added`, `updated`, `email_changed`, `unchanged`,
//! `kept_opted_out`, `skipped_blocked`, `opted_out` or `merged`. A `Wanted` candidate overruled by
//! a later opt-out before any op for it was handed out moves to `merged`; one whose op was already
//! handed out stays where it was (its ops were made) and the receiver also counts as withdrawn.
//! See [`PlanSummary`] for the identities.

mod index;
#[cfg(test)]
mod tests;

use self::index::{
    ADDED, AddressPrint, Addresses, ChainHeads, CrmPrint, Fingerprinter, FreshIndex, MAX_RECEIVERS,
    NO_ENTRY, OPTED_OUT, PersonPrint, SKIPPED,
};
use super::blocklist::BlockSet;
use super::email::Email;
use super::receiver::{Candidate, CurrentReceiver, ReceiverData, ReceiverState};
use serde::{Deserialize, Serialize};

/// Receivers per CleverReach call unless configured otherwise (what the official clients use).
pub const DEFAULT_BATCH_SIZE: usize = 250;
/// CleverReach's hard limit of receivers per upsert call.
pub const MAX_BATCH_SIZE: usize = 1000;

/// How the planner batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannerOptions {
    /// Receivers per upsert or removal call, 1 to [`MAX_BATCH_SIZE`].
    pub batch_size: usize,
    /// When the plan is made (Unix seconds). The rules do not depend on it; it is recorded in
    /// the summary so that the caller can stamp what it does with the plan.
    pub now_unix: i64,
}

impl PlannerOptions {
    /// Options with the default batch size.
    pub fn new(now_unix: i64) -> Self {
        PlannerOptions {
            batch_size: DEFAULT_BATCH_SIZE,
            now_unix,
        }
    }
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlannerError {
    #[error(
        "batch_size {batch_size} is out of range: CleverReach takes 1 to {MAX_BATCH_SIZE} receivers per call"
    )]
    InvalidBatchSize { batch_size: usize },
    #[error("the group has more than {max} receivers, more than the planner can index")]
    GroupTooLarge { max: usize },
}

/// One receiver row of an upsert call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverUpsert {
    pub receiver: ReceiverData,
    /// True only for receivers new to the group; an existing receiver's state is never changed.
    pub activate: bool,
}

/// One CleverReach call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupOp {
    /// One upsert call; at most `batch_size` rows, each address once.
    Upsert(Vec<ReceiverUpsert>),
    /// One e-mail change call; keeps the receiver's history in CleverReach.
    ChangeEmail { from: Email, to: Email },
    /// One batch-delete call; at most `batch_size` addresses.
    Remove(Vec<Email>),
}

/// What a plan does and why. Identities (checked by the tests):
/// - `candidates == added + updated + email_changed + unchanged + kept_opted_out
///   + skipped_blocked + opted_out + merged`;
/// - `current + withdrawn_in_group == updated + email_changed + unchanged + kept_opted_out
///   + opted_out_in_group + removed + kept_inactive`;
/// - `upserted_receivers == added + updated + email_changed_updated`;
/// - `removed_receivers == removed + opted_out_removed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// Candidates offered.
    pub candidates: usize,
    /// Receivers in the group at the start (one per address).
    pub current: usize,
    /// New receivers upserted with activation.
    pub added: usize,
    /// Active receivers upserted with new person data or CRM record.
    pub updated: usize,
    /// Receivers moved to a new address (one `ChangeEmail` call each).
    pub email_changed: usize,
    /// Active receivers that were already right.
    pub unchanged: usize,
    /// Wanted, but deactivated, bounced or blacklisted in CleverReach: left alone.
    pub kept_opted_out: usize,
    /// New addresses not added: blocked, opted out in this group, or their person opted out.
    pub skipped_blocked: usize,
    /// Addresses decided by an opt-out candidate.
    pub opted_out: usize,
    /// Candidates that decided nothing: a later duplicate, or overruled by an opt-out.
    pub merged: usize,
    /// Active receivers no candidate wanted: removed.
    pub removed: usize,
    /// Opted-out receivers no candidate wanted: kept, they carry the opt-out.
    pub kept_inactive: usize,
    /// Of `email_changed`: also upserted with new person data.
    pub email_changed_updated: usize,
    /// Of `opted_out`: addresses of receivers that were in the group at the start (moved ones
    /// at their new address included).
    pub opted_out_in_group: usize,
    /// Of `opted_out`: receivers removed because of the opt-out.
    pub opted_out_removed: usize,
    /// Receivers added and handed out before an opt-out for them arrived (then removed).
    pub withdrawn_added: usize,
    /// Receivers of the group whose update or move was handed out before an opt-out for them
    /// arrived; they count both under `updated`/`email_changed` and under `opted_out`.
    pub withdrawn_in_group: usize,
    /// Upsert calls and the rows in them.
    pub upsert_calls: usize,
    pub upserted_receivers: usize,
    /// Removal calls and the addresses in them.
    pub remove_calls: usize,
    pub removed_receivers: usize,
    /// [`PlannerOptions::now_unix`].
    pub planned_at_unix: i64,
}

impl PlanSummary {
    /// CleverReach calls the plan makes: upserts, e-mail changes and removals.
    pub fn calls(&self) -> usize {
        self.upsert_calls + self.email_changed + self.remove_calls
    }
}

/// The ops of a whole plan, in execution order, and what they do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<GroupOp>,
    pub summary: PlanSummary,
}

/// What this plan has decided about a receiver of the group. Whether an upsert it caused is
/// still in the unfinished batch is read from the batch itself (each address is in it at most
/// once), so the fate needs no batch number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// No candidate yet: rule 8 applies at the end.
    Unseen,
    Unchanged,
    /// Upserted.
    Updated,
    KeptOptedOut,
    /// Moved to a new address (this address is free again), and upserted there when
    /// `updated`.
    MovedAway {
        updated: bool,
    },
    /// An opt-out candidate decided it.
    OptedOut,
}

/// A receiver of the group at the start, with what the plan decided about it: 32 bytes. Its
/// address is in the group's [`Addresses`] at the same position; its person data and CRM
/// record are only ever compared, so fingerprints of them do.
#[derive(Clone, Copy)]
struct Receiver {
    person: PersonPrint,
    /// Meaningful when `has_crm`.
    crm: CrmPrint,
    /// Next receiver in the same e-mail hash chain.
    next_same_email: u32,
    /// Next receiver in the same CRM record hash chain.
    next_same_crm: u32,
    state: ReceiverState,
    fate: Fate,
    has_crm: bool,
}

// What the group costs per receiver (docs/architecture.md §4): keep it so.
const _: () = assert!(std::mem::size_of::<Receiver>() == 32);

impl Receiver {
    fn crm(&self) -> Option<CrmPrint> {
        self.has_crm.then_some(self.crm)
    }
}

/// The group's receivers in the order read, and their addresses at the same positions.
#[derive(Default)]
struct Group {
    receivers: Vec<Receiver>,
    addresses: Addresses,
}

impl Group {
    /// The receiver's address as an [`Email`] (it was one when it was indexed).
    fn email(&self, position: usize) -> Email {
        let mut address = String::new();
        self.addresses.write(position, &mut address);
        Email::normalised(&address)
    }

    fn find_by_email(&self, index: &ChainHeads, hash: u64, email: &str) -> Option<usize> {
        // No address of the group has its domain: not in the group.
        let key = self.addresses.key(email)?;
        let mut position = index.head(hash);
        while let Some(receiver) = self.receivers.get(position as usize) {
            if self.addresses.is(position as usize, &key) {
                return Some(position as usize);
            }
            position = receiver.next_same_email;
        }
        None
    }
}

/// The group's receivers that belong to one CRM record.
#[derive(Default)]
struct RecordInGroup {
    /// One of them is opted out: the person opted out in this group.
    opted_out: bool,
    /// The earliest unclaimed opted-out one.
    unseen_opted_out: Option<usize>,
    /// The earliest unclaimed active one.
    unseen_active: Option<usize>,
}

/// The streaming planner: build it with the current group, offer the candidates, finish.
pub struct ReconcilePlanner {
    options: PlannerOptions,
    group: Group,
    by_email: ChainHeads,
    by_crm: ChainHeads,
    blocked: std::sync::Arc<BlockSet>,
    /// Addresses decided by this plan that were not (or no longer) in the group, by fingerprint.
    fresh: FreshIndex,
    fingerprints: Fingerprinter,
    /// The upsert batch being filled.
    pending: Vec<ReceiverUpsert>,
    /// Addresses an opt-out removes at the end, in the order the opt-outs arrived.
    opted_out_removals: Vec<Email>,
    summary: PlanSummary,
}

impl std::fmt::Debug for ReconcilePlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconcilePlanner")
            .field("options", &self.options)
            .field("pending", &self.pending.len())
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// Reads a group into the planner page by page, so that a group is never held twice (once as
/// read, once compacted): memory stays at the compact form whatever the group's size.
pub struct GroupIndexer {
    options: PlannerOptions,
    fingerprints: Fingerprinter,
    group: Group,
    by_email: ChainHeads,
}

impl GroupIndexer {
    pub fn new(options: PlannerOptions) -> Result<Self, PlannerError> {
        if !(1..=MAX_BATCH_SIZE).contains(&options.batch_size) {
            return Err(PlannerError::InvalidBatchSize {
                batch_size: options.batch_size,
            });
        }
        Ok(GroupIndexer {
            options,
            fingerprints: Fingerprinter::new(),
            group: Group::default(),
            by_email: ChainHeads::with_capacity(0),
        })
    }

    /// Adds receivers of the group. Two rows for one address (a group that changed while it
    /// was read) become one receiver; if either is opted out, the opt-out is kept.
    pub fn add(
        &mut self,
        current: impl IntoIterator<Item = CurrentReceiver>,
    ) -> Result<(), PlannerError> {
        let current = current.into_iter();
        self.group.receivers.reserve(current.size_hint().0);
        for row in current {
            let address = row.email.as_str();
            let hash = self.fingerprints.address_hash(address);
            let person = self.fingerprints.person(&row.person);
            let crm = row.crm.as_ref().map(|crm| self.fingerprints.crm(crm));
            if let Some(position) = self.group.find_by_email(&self.by_email, hash, address) {
                let kept = &mut self.group.receivers[position];
                if !kept.state.is_opted_out() && row.state.is_opted_out() {
                    kept.state = row.state;
                    kept.person = person;
                    kept.crm = crm.unwrap_or_default();
                    kept.has_crm = crm.is_some();
                }
                continue;
            }
            let too_large = PlannerError::GroupTooLarge {
                max: MAX_RECEIVERS as usize,
            };
            let position = u32::try_from(self.group.receivers.len())
                .ok()
                .filter(|position| *position < MAX_RECEIVERS)
                .ok_or(too_large.clone())?;
            if self.by_email.full_for(self.group.receivers.len() + 1) {
                self.relink_by_email();
            }
            if !self.group.addresses.push(address) {
                return Err(too_large);
            }
            let next_same_email = self.by_email.link(hash, position);
            self.group.receivers.push(Receiver {
                person,
                crm: crm.unwrap_or_default(),
                next_same_email,
                next_same_crm: NO_ENTRY,
                state: row.state,
                fate: Fate::Unseen,
                has_crm: crm.is_some(),
            });
        }
        Ok(())
    }

    /// Twice the buckets for the e-mail index, every receiver linked again.
    fn relink_by_email(&mut self) {
        let mut by_email = self.by_email.doubled();
        let mut address = String::new();
        for position in 0..self.group.receivers.len() {
            self.group.addresses.write(position, &mut address);
            let hash = self.fingerprints.address_hash(&address);
            // Fits: positions were checked against u32 when they were added.
            let next = by_email.link(hash, position as u32);
            self.group.receivers[position].next_same_email = next;
        }
        self.by_email = by_email;
    }

    /// The whole group is read: index it by CRM record and start planning.
    pub fn finish(self) -> ReconcilePlanner {
        let GroupIndexer {
            options,
            fingerprints,
            mut group,
            by_email,
        } = self;
        group.receivers.shrink_to_fit();
        group.addresses.shrink_to_fit();
        let mut by_crm = ChainHeads::with_capacity(group.receivers.len());
        for (position, receiver) in group.receivers.iter_mut().enumerate() {
            if let Some(crm) = receiver.crm() {
                // Fits: positions were checked against u32 in `add`.
                receiver.next_same_crm = by_crm.link(crm.table_hash(), position as u32);
            }
        }
        let summary = PlanSummary {
            current: group.receivers.len(),
            planned_at_unix: options.now_unix,
            ..PlanSummary::default()
        };
        ReconcilePlanner {
            options,
            group,
            by_email,
            by_crm,
            blocked: std::sync::Arc::new(BlockSet::new()),
            fresh: FreshIndex::new(),
            fingerprints,
            pending: Vec::with_capacity(options.batch_size),
            opted_out_removals: Vec::new(),
            summary,
        }
    }
}

impl ReconcilePlanner {
    /// Indexes the group (all of it at once; [`GroupIndexer`] takes it page by page).
    pub fn new(
        current: impl IntoIterator<Item = CurrentReceiver>,
        options: PlannerOptions,
    ) -> Result<Self, PlannerError> {
        let mut indexer = GroupIndexer::new(options)?;
        indexer.add(current)?;
        Ok(indexer.finish())
    }

    /// Addresses never to add: the account blacklist and the bounce list.
    pub fn with_blocked(mut self, emails: impl IntoIterator<Item = Email>) -> Self {
        std::sync::Arc::make_mut(&mut self.blocked).add_emails(emails);
        self
    }

    /// The account's opt-outs (blacklisted addresses and domains, bounced addresses): never
    /// added as active.
    pub fn with_block_set(mut self, blocked: std::sync::Arc<BlockSet>) -> Self {
        self.blocked = blocked;
        self
    }

    /// The options the planner runs with.
    pub fn options(&self) -> PlannerOptions {
        self.options
    }

    /// The counts so far (removals and kept receivers are only counted by [`Self::finish`]).
    pub fn summary(&self) -> &PlanSummary {
        &self.summary
    }

    /// Takes one candidate and returns the ops that are ready now, in execution order: at most
    /// one e-mail change, then at most one full upsert batch.
    pub fn offer(&mut self, candidate: Candidate) -> Vec<GroupOp> {
        self.summary.candidates += 1;
        let mut ops = Vec::new();
        match candidate {
            Candidate::Wanted(data) => self.want(data, &mut ops),
            Candidate::OptedOut(email) => self.opt_out(email),
        }
        ops
    }

    /// Hands out the last partial upsert batch and the removals, and the final counts.
    /// Hands out the upsert batch being filled before it is full: a reconcile that stops
    /// early writes everything it has decided so far.
    pub fn flush(&mut self) -> Vec<GroupOp> {
        let mut ops = Vec::new();
        if !self.pending.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            self.hand_out_upserts(batch, &mut ops);
        }
        ops
    }

    pub fn finish(self) -> (Vec<GroupOp>, PlanSummary) {
        self.finish_with(true)
    }

    /// Like [`ReconcilePlanner::finish`] for a pass that saw only some of the members: the
    /// receivers no candidate wanted may be wanted by a member it did not see, so they are
    /// neither removed nor counted; removals that candidates decided (opt-outs) stay.
    pub fn finish_seen(self) -> (Vec<GroupOp>, PlanSummary) {
        self.finish_with(false)
    }

    fn finish_with(mut self, remove_unseen: bool) -> (Vec<GroupOp>, PlanSummary) {
        let mut ops = Vec::new();
        if !self.pending.is_empty() {
            let batch = std::mem::take(&mut self.pending);
            self.hand_out_upserts(batch, &mut ops);
        }
        let ReconcilePlanner {
            options,
            group,
            opted_out_removals,
            mut summary,
            ..
        } = self;
        let mut removals = Vec::new();
        for (position, receiver) in group.receivers.iter().enumerate() {
            if receiver.fate != Fate::Unseen || !remove_unseen {
                continue;
            }
            if receiver.state.is_opted_out() {
                summary.kept_inactive += 1;
            } else {
                summary.removed += 1;
                removals.push(group.email(position));
            }
        }
        removals.extend(opted_out_removals);
        let mut removals = removals.into_iter().peekable();
        while removals.peek().is_some() {
            let call: Vec<Email> = removals.by_ref().take(options.batch_size).collect();
            summary.remove_calls += 1;
            summary.removed_receivers += call.len();
            ops.push(GroupOp::Remove(call));
        }
        (ops, summary)
    }

    fn want(&mut self, data: ReceiverData, ops: &mut Vec<GroupOp>) {
        let address = self.fingerprints.address(data.email.as_str());
        let at_start =
            self.group
                .find_by_email(&self.by_email, address.table_hash(), data.email.as_str());
        if let Some(position) = at_start {
            let receiver = &mut self.group.receivers[position];
            match receiver.fate {
                // The address is free again: decide it like a new one below.
                Fate::MovedAway { .. } => {}
                Fate::Unseen => {
                    if receiver.state.is_opted_out() {
                        receiver.fate = Fate::KeptOptedOut;
                        self.summary.kept_opted_out += 1;
                    } else if receiver.person == self.fingerprints.person(&data.person)
                        && receiver.crm() == Some(self.fingerprints.crm(&data.crm))
                    {
                        receiver.fate = Fate::Unchanged;
                        self.summary.unchanged += 1;
                    } else {
                        receiver.fate = Fate::Updated;
                        self.summary.updated += 1;
                        self.push_upsert(data, false, ops);
                    }
                    return;
                }
                _ => {
                    self.summary.merged += 1;
                    return;
                }
            }
        }
        if self.fresh.contains(address) {
            self.summary.merged += 1;
            return;
        }
        let blocked = match at_start {
            Some(position) => self.group.receivers[position].state.is_opted_out(),
            None => self.blocked.blocks(&data.email),
        };
        let record = self.record_in_group(self.fingerprints.crm(&data.crm));
        let source = if record.opted_out {
            record.unseen_opted_out.filter(|_| !blocked)
        } else if blocked {
            None
        } else {
            record.unseen_active
        };
        if let Some(source) = source {
            self.move_receiver(source, address, data, ops);
        } else if record.opted_out || blocked {
            self.fresh.insert(address, SKIPPED);
            self.summary.skipped_blocked += 1;
        } else {
            self.fresh.insert(address, ADDED);
            self.summary.added += 1;
            self.push_upsert(data, true, ops);
        }
    }

    fn opt_out(&mut self, email: Email) {
        let address = self.fingerprints.address(email.as_str());
        let at_start =
            self.group
                .find_by_email(&self.by_email, address.table_hash(), email.as_str());
        if let Some(position) = at_start {
            let receiver = &mut self.group.receivers[position];
            let active = !receiver.state.is_opted_out();
            match receiver.fate {
                Fate::MovedAway { .. } => {}
                Fate::OptedOut => {
                    self.summary.merged += 1;
                    return;
                }
                fate => {
                    receiver.fate = Fate::OptedOut;
                    match fate {
                        Fate::Unchanged => {
                            self.summary.unchanged -= 1;
                            self.summary.merged += 1;
                        }
                        Fate::KeptOptedOut => {
                            self.summary.kept_opted_out -= 1;
                            self.summary.merged += 1;
                        }
                        Fate::Updated => {
                            if drop_pending(&mut self.pending, &email) {
                                self.summary.updated -= 1;
                                self.summary.merged += 1;
                            } else {
                                self.summary.withdrawn_in_group += 1;
                            }
                        }
                        Fate::Unseen | Fate::MovedAway { .. } | Fate::OptedOut => {}
                    }
                    self.summary.opted_out += 1;
                    self.summary.opted_out_in_group += 1;
                    if active {
                        self.summary.opted_out_removed += 1;
                        self.opted_out_removals.push(email);
                    }
                    return;
                }
            }
        }
        let Some(slot) = self.fresh.get_mut(address) else {
            self.fresh.insert(address, OPTED_OUT);
            self.summary.opted_out += 1;
            return;
        };
        let remove = match *slot {
            OPTED_OUT => {
                self.summary.merged += 1;
                return;
            }
            SKIPPED => {
                self.summary.skipped_blocked -= 1;
                self.summary.merged += 1;
                false
            }
            ADDED => {
                if drop_pending(&mut self.pending, &email) {
                    self.summary.added -= 1;
                    self.summary.merged += 1;
                    false
                } else {
                    self.summary.withdrawn_added += 1;
                    true
                }
            }
            receiver => {
                // Moved in: the move was handed out when it was found, so the candidate keeps
                // its count.
                let Some(moved) = self.group.receivers.get(receiver as usize) else {
                    return;
                };
                if moved.fate == (Fate::MovedAway { updated: true })
                    && drop_pending(&mut self.pending, &email)
                {
                    self.summary.email_changed_updated -= 1;
                }
                self.summary.withdrawn_in_group += 1;
                self.summary.opted_out_in_group += 1;
                !moved.state.is_opted_out()
            }
        };
        *slot = OPTED_OUT;
        self.summary.opted_out += 1;
        if remove {
            self.summary.opted_out_removed += 1;
            self.opted_out_removals.push(email);
        }
    }

    /// Moves the receiver at `source` to the candidate's address (rule 5).
    fn move_receiver(
        &mut self,
        source: usize,
        address: AddressPrint,
        data: ReceiverData,
        ops: &mut Vec<GroupOp>,
    ) {
        let person = self.fingerprints.person(&data.person);
        let receiver = &mut self.group.receivers[source];
        let update = !receiver.state.is_opted_out() && receiver.person != person;
        receiver.fate = Fate::MovedAway { updated: update };
        ops.push(GroupOp::ChangeEmail {
            from: self.group.email(source),
            to: data.email.clone(),
        });
        self.summary.email_changed += 1;
        // Fits and is a position, not a decision: positions are below MAX_RECEIVERS.
        self.fresh.insert(address, source as u32);
        if update {
            self.summary.email_changed_updated += 1;
            self.push_upsert(data, false, ops);
        }
    }

    fn record_in_group(&self, crm: CrmPrint) -> RecordInGroup {
        let mut record = RecordInGroup::default();
        let mut position = self.by_crm.head(crm.table_hash());
        while let Some(receiver) = self.group.receivers.get(position as usize) {
            if receiver.crm() == Some(crm) {
                let unseen = receiver.fate == Fate::Unseen;
                let earliest = |found: Option<usize>| {
                    Some(found.map_or(position as usize, |f| f.min(position as usize)))
                };
                if receiver.state.is_opted_out() {
                    record.opted_out = true;
                    if unseen {
                        record.unseen_opted_out = earliest(record.unseen_opted_out);
                    }
                } else if unseen {
                    record.unseen_active = earliest(record.unseen_active);
                }
            }
            position = receiver.next_same_crm;
        }
        record
    }

    fn push_upsert(&mut self, receiver: ReceiverData, activate: bool, ops: &mut Vec<GroupOp>) {
        self.pending.push(ReceiverUpsert { receiver, activate });
        if self.pending.len() >= self.options.batch_size {
            let batch = std::mem::replace(
                &mut self.pending,
                Vec::with_capacity(self.options.batch_size),
            );
            self.hand_out_upserts(batch, ops);
        }
    }

    fn hand_out_upserts(&mut self, batch: Vec<ReceiverUpsert>, ops: &mut Vec<GroupOp>) {
        self.summary.upsert_calls += 1;
        self.summary.upserted_receivers += batch.len();
        ops.push(GroupOp::Upsert(batch));
    }
}

/// The ops of a whole plan at once: [`ReconcilePlanner`] without streaming and without a block
/// list.
pub fn plan(
    current: impl IntoIterator<Item = CurrentReceiver>,
    candidates: impl IntoIterator<Item = Candidate>,
    options: PlannerOptions,
) -> Result<Plan, PlannerError> {
    let mut planner = ReconcilePlanner::new(current, options)?;
    let mut ops = Vec::new();
    for candidate in candidates {
        ops.extend(planner.offer(candidate));
    }
    let (rest, summary) = planner.finish();
    ops.extend(rest);
    Ok(Plan { ops, summary })
}

/// Takes the address's row out of the unfinished batch; false when it is not there (its batch
/// was handed out).
fn drop_pending(pending: &mut Vec<ReceiverUpsert>, email: &Email) -> bool {
    match pending.iter().position(|row| row.receiver.email == *email) {
        Some(row) => {
            pending.remove(row);
            true
        }
        None => false,
    }
}
