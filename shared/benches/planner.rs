//! Benchmark of the reconcile planner: a 100,000-receiver group against 100,000 desired
//! receivers that differ by 10 %, and first syncs into an empty group through the streaming API.
//! Prints time, calls and peak memory (heap counted by a wrapping global allocator, and the
//! process's VmHWM). Run with `cargo bench -p shared --bench planner`.

use shared::domain::email::Email;
use shared::domain::planner::{GroupOp, PlanSummary, PlannerOptions, ReconcilePlanner};
use shared::domain::receiver::{
    Candidate, CurrentReceiver, PersonData, ReceiverData, ReceiverState,
};
use shared::domain::recipient::{CrmRef, PersonEntity};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Heap accounting

/// The system allocator, counting live and peak heap bytes (requested sizes).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            grew(layout.size());
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            grew(layout.size());
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's block and layout.
        unsafe { System.dealloc(block, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's block, layout and size.
        let moved = unsafe { System.realloc(block, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_heap() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a new peak measurement at the current live heap; returns that baseline.
fn reset_heap_peak() -> usize {
    let live = live_heap();
    PEAK.store(live, Ordering::Relaxed);
    live
}

fn heap_peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// VmHWM (peak resident set) of this process, in bytes.
fn vm_hwm() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

// ---------------------------------------------------------------------------------------------
// Deterministic data

const GROUP: usize = 100_000;
/// People 0..93,000: active, wanted, unchanged.
const UNCHANGED: usize = 93_000;
/// Next 3,000: active, wanted with a new last name.
const ATTRIBUTE_CHANGES: usize = 3_000;
/// Next 500: active, wanted at a new address (every second one with a new last name too).
const EMAIL_CHANGES: usize = 500;
/// Next 500: deactivated/bounced/blacklisted in CleverReach, still wanted (with new data).
const WANTED_OPTED_OUT: usize = 500;
/// Next 2,000: active, no longer wanted.
const GONE_ACTIVE: usize = 2_000;
/// Next 1,000: deactivated/bounced/blacklisted, no longer wanted.
const GONE_OPTED_OUT: usize = 1_000;
/// People 100,000..103,000: new.
const NEW: usize = 3_000;
/// Addresses on the account blacklist / bounce list (none of them in play).
const BLOCKED: usize = 1_000;

const FIRST_CHANGED: usize = UNCHANGED;
const FIRST_MOVED: usize = FIRST_CHANGED + ATTRIBUTE_CHANGES;
const FIRST_WANTED_OPTED_OUT: usize = FIRST_MOVED + EMAIL_CHANGES;
const FIRST_GONE_ACTIVE: usize = FIRST_WANTED_OPTED_OUT + WANTED_OPTED_OUT;
const FIRST_GONE_OPTED_OUT: usize = FIRST_GONE_ACTIVE + GONE_ACTIVE;
const FIRST_NEW: usize = FIRST_GONE_OPTED_OUT + GONE_OPTED_OUT;
const FIRST_BLOCKED: usize = 10_000_000;

fn address(person: usize, moved: bool) -> Email {
    let suffix = if moved { ".neu" } else { "" };
    let raw = format!("person{person}{suffix}@example{}.de", person % 97);
    match Email::parse(&raw) {
        Ok(email) => email,
        Err(error) => panic!("benchmark data: {error}"),
    }
}

fn record(person: usize) -> CrmRef {
    let entity = if person.is_multiple_of(5) {
        PersonEntity::Lead
    } else {
        PersonEntity::Contact
    };
    let scrambled = (person as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    CrmRef::new(
        entity,
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            scrambled >> 32,
            (scrambled >> 16) & 0xffff,
            scrambled & 0xfff,
            (scrambled >> 12) & 0xfff,
            person
        ),
    )
}

fn person_data(person: usize, renamed: bool) -> PersonData {
    PersonData {
        salutation: ["Frau", "Herr", ""][person % 3].to_string(),
        first_name: format!("Vorname{person}"),
        last_name: if renamed {
            format!("Neuname{person}")
        } else {
            format!("Nachname{person}")
        },
        company: format!("Firma {} GmbH", person % 1_000),
    }
}

fn opted_out_state(person: usize) -> ReceiverState {
    [
        ReceiverState::Deactivated,
        ReceiverState::Bounced,
        ReceiverState::Blacklisted,
    ][person % 3]
}

/// The group as CleverReach returns it, in a shuffled (but fixed) order.
fn current_group() -> Vec<CurrentReceiver> {
    let mut group: Vec<CurrentReceiver> = (0..GROUP)
        .map(|person| {
            let opted_out = (FIRST_WANTED_OPTED_OUT..FIRST_GONE_ACTIVE).contains(&person)
                || person >= FIRST_GONE_OPTED_OUT;
            CurrentReceiver {
                email: address(person, false),
                state: if opted_out {
                    opted_out_state(person)
                } else {
                    ReceiverState::Active
                },
                person: person_data(person, false),
                crm: Some(record(person)),
            }
        })
        .collect();
    fastrand::Rng::with_seed(7).shuffle(&mut group);
    group
}

/// The order in which the CRM delivers the desired receivers: a fixed shuffle.
fn desired_order() -> Vec<u32> {
    let mut people: Vec<u32> = (0..FIRST_GONE_ACTIVE as u32)
        .chain(FIRST_NEW as u32..(FIRST_NEW + NEW) as u32)
        .collect();
    fastrand::Rng::with_seed(42).shuffle(&mut people);
    people
}

fn desired(person: usize) -> Candidate {
    let moved = (FIRST_MOVED..FIRST_WANTED_OPTED_OUT).contains(&person);
    let renamed = (FIRST_CHANGED..FIRST_MOVED).contains(&person)
        || (moved && person.is_multiple_of(2))
        || (FIRST_WANTED_OPTED_OUT..FIRST_GONE_ACTIVE).contains(&person);
    Candidate::Wanted(ReceiverData {
        email: address(person, moved),
        person: person_data(person, renamed),
        crm: record(person),
    })
}

fn blocked() -> Vec<Email> {
    (FIRST_BLOCKED..FIRST_BLOCKED + BLOCKED)
        .map(|person| address(person, false))
        .collect()
}

fn first_sync_candidate(person: usize) -> Candidate {
    Candidate::Wanted(ReceiverData {
        email: address(person, false),
        person: person_data(person, false),
        crm: record(person),
    })
}

// ---------------------------------------------------------------------------------------------
// Running a plan

/// What the ops of one plan amount to; the ops themselves are dropped as they come, the way a
/// worker executes and forgets them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Calls {
    upserts: usize,
    upsert_rows: usize,
    upsert_activations: usize,
    email_changes: usize,
    removals: usize,
    removal_rows: usize,
    largest_call: usize,
}

impl Calls {
    fn count(&mut self, ops: Vec<GroupOp>) {
        for op in ops {
            match &op {
                GroupOp::Upsert(rows) => {
                    self.upserts += 1;
                    self.upsert_rows += rows.len();
                    self.upsert_activations += rows.iter().filter(|row| row.activate).count();
                    self.largest_call = self.largest_call.max(rows.len());
                }
                GroupOp::ChangeEmail { .. } => self.email_changes += 1,
                GroupOp::Remove(emails) => {
                    self.removals += 1;
                    self.removal_rows += emails.len();
                    self.largest_call = self.largest_call.max(emails.len());
                }
            }
            black_box(op);
        }
    }

    fn total(&self) -> usize {
        self.upserts + self.email_changes + self.removals
    }
}

struct Run {
    /// Indexing the group (`new` and `with_blocked`), offering the candidates, `finish`.
    phases: [Duration; 3],
    calls: Calls,
    summary: PlanSummary,
    heap_baseline: usize,
    /// Live heap once the group is indexed: inputs not yet consumed plus the planner's state.
    heap_after_index: usize,
    heap_peak: usize,
    vm_hwm_before: Option<usize>,
    vm_hwm_after: Option<usize>,
}

impl Run {
    fn elapsed(&self) -> Duration {
        self.phases.iter().sum()
    }
}

fn run_plan(
    current: Vec<CurrentReceiver>,
    blocked: Vec<Email>,
    candidates: impl Iterator<Item = Candidate>,
) -> Run {
    let vm_hwm_before = vm_hwm();
    let heap_baseline = reset_heap_peak();
    let started = Instant::now();
    let mut planner = match ReconcilePlanner::new(current, PlannerOptions::new(1_700_000_000)) {
        Ok(planner) => planner.with_blocked(blocked),
        Err(error) => panic!("benchmark options: {error}"),
    };
    let indexed = Instant::now();
    let heap_after_index = live_heap();
    let mut calls = Calls::default();
    for candidate in candidates {
        calls.count(planner.offer(candidate));
    }
    let offered = Instant::now();
    let (rest, summary) = planner.finish();
    calls.count(rest);
    let finished = Instant::now();
    Run {
        phases: [indexed - started, offered - indexed, finished - offered],
        calls,
        summary,
        heap_baseline,
        heap_after_index,
        heap_peak: heap_peak(),
        vm_hwm_before,
        vm_hwm_after: vm_hwm(),
    }
}

// ---------------------------------------------------------------------------------------------
// Printing

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn per_call(rows: usize, calls: usize) -> String {
    if calls == 0 {
        "-".into()
    } else {
        format!("{:.1}", rows as f64 / calls as f64)
    }
}

fn vm(bytes: Option<usize>) -> String {
    bytes.map_or_else(|| "n/a".into(), mib)
}

/// Each case runs in a child process of its own, so that its VmHWM is its own.
const CASE_VARIABLE: &str = "PLANNER_BENCH_CASE";
const RUNS: usize = 5;

fn main() {
    if let Ok(case) = std::env::var(CASE_VARIABLE) {
        run_case(&case);
        return;
    }
    println!("reconcile planner benchmark (batch size 250, release build)");
    println!();
    println!(
        "diff case: group {GROUP}, desired {}, both in a fixed shuffled order; blocked list {BLOCKED} (none in play)",
        UNCHANGED + ATTRIBUTE_CHANGES + EMAIL_CHANGES + WANTED_OPTED_OUT + NEW
    );
    println!(
        "  mix: {UNCHANGED} unchanged, {ATTRIBUTE_CHANGES} attribute changes, {EMAIL_CHANGES} e-mail changes \
         (half with a new name), {WANTED_OPTED_OUT} wanted but opted out, {NEW} new, \
         {} gone ({GONE_ACTIVE} active + {GONE_OPTED_OUT} opted out)",
        GONE_ACTIVE + GONE_OPTED_OUT
    );
    println!();
    println!("| diff case | value |");
    println!("|---|---|");
    spawn_case("diff-timing");
    spawn_case("diff-prebuilt");
    spawn_case("diff-streamed");
    println!();
    println!("first sync: empty group, candidates made one at a time, ops dropped as handed out");
    println!();
    println!(
        "| new receivers | plan time | calls | heap peak while planning | per new address | VmHWM before → after |"
    );
    println!("|---|---|---|---|---|---|");
    for size in [10_000, 100_000, 1_000_000] {
        spawn_case(&format!("first-sync-{size}"));
    }
}

fn spawn_case(case: &str) {
    let outcome = std::env::current_exe().and_then(|bench| {
        std::process::Command::new(bench)
            .env(CASE_VARIABLE, case)
            .status()
    });
    match outcome {
        Ok(status) if status.success() => {}
        Ok(status) => println!("| {case} | failed: {status} |"),
        Err(error) => println!("| {case} | could not start: {error} |"),
    }
}

fn run_case(case: &str) {
    match case {
        "diff-timing" => diff_timing(),
        "diff-prebuilt" => {
            let before = live_heap();
            let group = current_group();
            let group_heap = live_heap() - before;
            let before = live_heap();
            let candidates: Vec<Candidate> = desired_order()
                .iter()
                .map(|p| desired(*p as usize))
                .collect();
            let candidates_heap = live_heap() - before;
            let run = run_plan(group, blocked(), candidates.into_iter());
            println!(
                "| input heap (outside planning) | group {}, candidates {} |",
                mib(group_heap),
                mib(candidates_heap)
            );
            println!(
                "| heap, candidates prebuilt in a Vec | peak {} = inputs {} + planning {} |",
                mib(run.heap_peak),
                mib(run.heap_baseline),
                mib(run.heap_peak - run.heap_baseline)
            );
            println!(
                "| VmHWM, candidates prebuilt | {} before planning → {} after |",
                vm(run.vm_hwm_before),
                vm(run.vm_hwm_after)
            );
        }
        "diff-streamed" => {
            let order = desired_order();
            let blocked = blocked();
            let before_group = live_heap();
            let group = current_group();
            let group_heap = live_heap() - before_group;
            let run = run_plan(
                group,
                blocked,
                order.iter().map(|person| desired(*person as usize)),
            );
            println!(
                "| group as read from CleverReach → held by the planner once indexed | {} → {} |",
                mib(group_heap),
                mib(run.heap_after_index.saturating_sub(before_group))
            );
            println!(
                "| heap, candidates made one at a time | peak {} = group, order and block list {} + planning {} |",
                mib(run.heap_peak),
                mib(run.heap_baseline),
                mib(run.heap_peak - run.heap_baseline)
            );
            println!(
                "| VmHWM, candidates made one at a time | {} before planning → {} after |",
                vm(run.vm_hwm_before),
                vm(run.vm_hwm_after)
            );
        }
        other => {
            let Some(size) = other
                .strip_prefix("first-sync-")
                .and_then(|size| size.parse::<usize>().ok())
            else {
                panic!("unknown benchmark case {other:?}");
            };
            let run = run_plan(Vec::new(), Vec::new(), (0..size).map(first_sync_candidate));
            assert_eq!(run.summary.added, size);
            let planning = run.heap_peak - run.heap_baseline;
            println!(
                "| {size} | {} | {} | {} | {} B | {} → {} |",
                ms(run.elapsed()),
                run.calls.total(),
                mib(planning),
                planning / size,
                vm(run.vm_hwm_before),
                vm(run.vm_hwm_after)
            );
        }
    }
}

fn diff_timing() {
    let group = current_group();
    let candidates: Vec<Candidate> = desired_order()
        .iter()
        .map(|p| desired(*p as usize))
        .collect();
    let blocked = blocked();
    let mut runs: Vec<Run> = Vec::new();
    for _ in 0..RUNS {
        // Fresh copies, made before the clock starts.
        let (group, blocked, candidates) = (group.clone(), blocked.clone(), candidates.clone());
        runs.push(run_plan(group, blocked, candidates.into_iter()));
    }
    if runs.windows(2).any(|pair| pair[0].calls != pair[1].calls) {
        panic!("plans differ between runs");
    }
    runs.sort_by_key(Run::elapsed);
    let (best, median) = (&runs[0], &runs[RUNS / 2]);
    let phases = |run: &Run| {
        format!(
            "{} + {} + {}",
            ms(run.phases[0]),
            ms(run.phases[1]),
            ms(run.phases[2])
        )
    };
    let s = &best.summary;
    let c = &best.calls;
    println!(
        "| plan time, best / median of {RUNS} runs | {} / {} |",
        ms(best.elapsed()),
        ms(median.elapsed())
    );
    println!(
        "| phases (index group + offer 100,000 + finish), best / median | {} / {} |",
        phases(best),
        phases(median)
    );
    println!(
        "| outcome | added {}, updated {}, e-mail changed {} ({} with new data), unchanged {}, kept opted out {}, removed {}, kept inactive {}, skipped blocked {} |",
        s.added,
        s.updated,
        s.email_changed,
        s.email_changed_updated,
        s.unchanged,
        s.kept_opted_out,
        s.removed,
        s.kept_inactive,
        s.skipped_blocked
    );
    println!(
        "| ops = calls | {} ({} upsert, {} e-mail change, {} remove) |",
        c.total(),
        c.upserts,
        c.email_changes,
        c.removals
    );
    println!(
        "| receivers per call | upsert {} ({} rows, {} activating), remove {} ({} rows); largest call {} |",
        per_call(c.upsert_rows, c.upserts),
        c.upsert_rows,
        c.upsert_activations,
        per_call(c.removal_rows, c.removals),
        c.removal_rows,
        c.largest_call
    );
}
