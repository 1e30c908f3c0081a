//! Full reconciles under an invocation's deadline (docs/architecture.md §4 "Deadlines"): the
//! fakes answer after a latency in tokio time, and the tests pause tokio's clock, so the point
//! where the time runs short is exact. One upsert at a time, so that the arithmetic is simple:
//! a batch of 250 is written while the next 250 members are compared.

use super::fixtures::*;
use crate::adapters::memory::InMemoryChangeQueue;
use crate::deadline::{self, Budget};
use crate::domain::change::{ChangeEvent, CrmMessage};
use crate::domain::source::SourceKind;
use crate::ports::crm::SourceStatus;
use crate::usecases::SyncError;
use crate::usecases::connector::Connector;
use crate::usecases::source::on_source_change;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const LIST: SourceKind = SourceKind::MarketingList;

/// A synced list of `n` contacts with an empty group "9"; CleverReach takes a second per upsert.
fn big_list(n: usize) -> World {
    let w = World::new();
    w.source(list("l1", "Customers").group("9"))
        .group("9", "Customers", vec![]);
    for i in 0..n {
        w.contact(
            person(&format!("c{i}"), &format!("p{i}@example.com")),
            &["l1"],
        );
    }
    w.newsletter.state().upsert_latency = Some(Duration::from_secs(1));
    w
}

fn connector(w: &World) -> Connector {
    w.conn.clone().with_writes_in_flight(1)
}

fn budget(seconds: f64) -> Budget {
    Budget {
        deadline: Instant::now() + Duration::from_secs_f64(seconds),
        stop_margin: Duration::ZERO,
        start_margin: Duration::ZERO,
    }
}

fn status(w: &World) -> Option<SourceStatus> {
    w.crm
        .state()
        .statuses
        .get(&(LIST, "l1".to_string()))
        .cloned()
}

async fn sync(
    conn: &Connector,
    event: &ChangeEvent,
    budget: Option<Budget>,
) -> Result<(), SyncError> {
    let settings = conn.settings().await?;
    deadline::within(budget, on_source_change(conn, &settings, LIST, event, None))
        .await
        .map(|_| ())
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_cut_short_by_the_deadline_continues_in_its_own_message_and_ends_as_one_pass() {
    let w = big_list(1_000);
    let queue = Arc::new(InMemoryChangeQueue::new());
    let conn = connector(&w).with_follow_up(queue.clone());
    let resync = event("list", CrmMessage::Resync, "l1").build();

    // The second upsert waits for the first (1 s), the third for the second (2 s): member 751
    // comes after 1.5 s, and the third batch is written before stopping.
    sync(&conn, &resync, Some(budget(1.5))).await.unwrap();

    assert_eq!(w.active("9").len(), 750, "what was decided was written");
    assert_eq!(
        status(&w),
        Some(SourceStatus::InProgress {
            status: "750 members compared so far (pass 1), continuing".into()
        })
    );
    let queued = queue.pending();
    assert_eq!(queued.len(), 1, "one continuation");
    let next = queued[0].event.clone();
    assert_eq!(next.record_id, "l1");
    assert!(next.is_resync());
    let carried = next.continuation.clone().expect("carries the counts");
    assert_eq!(
        (carried.pass, carried.added, carried.compared),
        (2, 750, 750)
    );

    // The continuation, with time enough: the rest, and the status of one pass.
    queue.take(crate::domain::routing::QueueFamily::MarketingList, 10);
    sync(&conn, &next, None).await.unwrap();
    assert_eq!(w.active("9").len(), 1_000);
    assert!(queue.pending().is_empty(), "done: no further message");
    let one_pass = big_list(1_000);
    sync(&connector(&one_pass), &resync, None).await.unwrap();
    let Some(SourceStatus::Synced { status: single, .. }) = status(&one_pass) else {
        panic!("the single pass wrote its status");
    };
    assert!(
        single.starts_with("all members compared: 1000 added"),
        "{single}"
    );
    assert!(
        matches!(status(&w), Some(SourceStatus::Synced { status, .. }) if status == single),
        "{:?} vs {single}",
        status(&w)
    );
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_cut_short_removes_no_one() {
    // 300 receivers of the group are no longer members: removals wait for the pass that sees
    // every member.
    let w = big_list(1_000)
        // The brake would hold these removals anyway; here only the deadline may.
        .setting("cleverreach:safety:maxremovalpercent", "100")
        .setting("cleverreach:safety:maxremovals", "1000000");
    let strangers: Vec<_> = (0..300)
        .map(|i| {
            receiver(
                &format!("gone{i}@example.com"),
                crate::domain::receiver::ReceiverState::Active,
                None,
            )
        })
        .collect();
    w.group("9", "Customers", strangers);
    let queue = Arc::new(InMemoryChangeQueue::new());
    let conn = connector(&w).with_follow_up(queue.clone());
    let resync = event("list", CrmMessage::Resync, "l1").build();

    sync(&conn, &resync, Some(budget(1.5))).await.unwrap();

    let active = w.active("9");
    assert_eq!(
        active.iter().filter(|e| e.starts_with("gone")).count(),
        300,
        "nobody removed by the pass that was cut short"
    );
    assert_eq!(queue.pending().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_gets_no_further_than_the_one_before_fails_instead_of_continuing_forever() {
    let w = big_list(1_000);
    let queue = Arc::new(InMemoryChangeQueue::new());
    let conn = connector(&w).with_follow_up(queue.clone());
    let resync = event("list", CrmMessage::Resync, "l1").build();

    // No time at all: nothing compared.
    let err = sync(&conn, &resync, Some(budget(0.0))).await.unwrap_err();

    assert!(matches!(err, SyncError::Config(_)), "{err}");
    assert!(err.to_string().contains("timeout"), "{err}");
    assert!(queue.pending().is_empty(), "no endless continuation");
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_cut_short_without_a_queue_to_continue_on_says_so() {
    let w = big_list(1_000);
    let resync = event("list", CrmMessage::Resync, "l1").build();

    let err = sync(&connector(&w), &resync, Some(budget(1.5)))
        .await
        .unwrap_err();

    assert!(err.to_string().contains("no queue"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn upserts_go_out_a_few_at_a_time_and_never_more() {
    // 2,000 members: eight upserts of a second each.
    let timed = |in_flight: usize| async move {
        let w = big_list(2_000);
        let conn = w.conn.clone().with_writes_in_flight(in_flight);
        let resync = event("list", CrmMessage::Resync, "l1").build();
        let started = Instant::now();
        sync(&conn, &resync, None).await.unwrap();
        assert_eq!(w.active("9").len(), 2_000);
        started.elapsed()
    };
    assert_eq!(timed(1).await, Duration::from_secs(8), "one after another");
    assert_eq!(timed(4).await, Duration::from_secs(2), "four at a time");
    assert_eq!(timed(8).await, Duration::from_secs(1), "all eight at once");
}

/// A synced list of 1,000 contacts whose group holds each of them with other data (every one
/// needs an update) and 300 receivers who are no longer members.
fn drifted_list_with_strangers() -> World {
    let w = big_list(1_000)
        // The brake would hold these removals anyway; here only the passes may.
        .setting("cleverreach:safety:maxremovalpercent", "100")
        .setting("cleverreach:safety:maxremovals", "1000000");
    let receivers: Vec<_> = (0..1_000)
        .map(|i| format!("p{i}@example.com"))
        .chain((0..300).map(|i| format!("gone{i}@example.com")))
        .map(|email| receiver(&email, crate::domain::receiver::ReceiverState::Active, None))
        .collect();
    w.group("9", "Customers", receivers);
    w
}

fn strangers(w: &World) -> usize {
    w.active("9")
        .iter()
        .filter(|e| e.starts_with("gone"))
        .count()
}

#[tokio::test(start_paused = true)]
async fn a_resumed_pass_removes_no_one_and_a_last_pass_from_the_first_member_removes_those_who_left()
 {
    let w = drifted_list_with_strangers();
    let queue = Arc::new(InMemoryChangeQueue::new());
    let conn = connector(&w).with_follow_up(queue.clone());
    let resync = event("list", CrmMessage::Resync, "l1").build();
    let take = |queue: &InMemoryChangeQueue| {
        let next = queue.pending()[0].event.clone();
        queue.take(crate::domain::routing::QueueFamily::MarketingList, 10);
        next
    };

    // Pass 1 updates 750 members and stops.
    sync(&conn, &resync, Some(budget(1.5))).await.unwrap();
    let pass2 = take(&queue);
    let carried = pass2.continuation.clone().expect("a continuation");
    assert!(carried.resume.is_some(), "pass 2 goes on after member 750");
    assert_eq!(carried.active_at_start, 1_300);

    // Pass 2 reads only the last 250: it must not take the 750 it did not see, nor the
    // strangers, for receivers no one wants.
    sync(&conn, &pass2, None).await.unwrap();
    assert_eq!(
        w.active("9").len(),
        1_300,
        "nobody removed by a pass that saw a part"
    );
    assert_eq!(
        status(&w),
        Some(SourceStatus::InProgress {
            status: "1,000 members compared and written (pass 2), continuing: a last pass \
                     compares them all to remove those who left"
                .into()
        })
    );
    let pass3 = take(&queue);
    let carried = pass3.continuation.clone().expect("the last pass");
    assert!(
        carried.final_check && carried.resume.is_none(),
        "{carried:?}"
    );

    // Pass 3 compares every member: in step, nothing to write; the strangers go.
    sync(&conn, &pass3, None).await.unwrap();
    assert_eq!(strangers(&w), 0);
    assert_eq!(w.active("9").len(), 1_000);
    assert!(queue.pending().is_empty(), "done: no further message");
    let one_pass = drifted_list_with_strangers();
    sync(&connector(&one_pass), &resync, None).await.unwrap();
    let Some(SourceStatus::Synced { status: single, .. }) = status(&one_pass) else {
        panic!("the single pass wrote its status");
    };
    assert!(
        single.contains("1000 updated") && single.contains("300 removed"),
        "{single}"
    );
    assert!(
        matches!(status(&w), Some(SourceStatus::Synced { status, .. }) if status == single),
        "{:?} vs {single}",
        status(&w)
    );
}

#[tokio::test(start_paused = true)]
async fn a_last_pass_that_cannot_compare_every_member_in_time_removes_no_one_and_says_why() {
    let w = drifted_list_with_strangers();
    let queue = Arc::new(InMemoryChangeQueue::new());
    let conn = connector(&w).with_follow_up(queue.clone());
    let resync = event("list", CrmMessage::Resync, "l1").build();
    sync(&conn, &resync, Some(budget(1.5))).await.unwrap();
    let pass2 = queue.pending()[0].event.clone();
    queue.take(crate::domain::routing::QueueFamily::MarketingList, 10);
    sync(&conn, &pass2, None).await.unwrap();
    let pass3 = queue.pending()[0].event.clone();
    queue.take(crate::domain::routing::QueueFamily::MarketingList, 10);

    let err = sync(&conn, &pass3, Some(budget(0.0))).await.unwrap_err();

    assert!(matches!(err, SyncError::Config(_)), "{err}");
    assert!(err.to_string().contains("removals"), "{err}");
    assert!(err.to_string().contains("timeout"), "{err}");
    assert_eq!(strangers(&w), 300, "nobody removed");
    assert!(queue.pending().is_empty(), "no endless continuation");
}
