//! Full reconciles under an invocation's deadline (docs/architecture.md §4 "Deadlines"): the
//! fakes answer after a latency in tokio time, and the tests pause tokio's clock, so the point
//! where the time runs short is exact.

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
        w.contact(person(&format!("c{i}"), &format!("p{i}@example.com")), &["l1"]);
    }
    w.newsletter.state().upsert_latency = Some(Duration::from_secs(1));
    w
}

fn budget(seconds: f64) -> Budget {
    Budget {
        deadline: Instant::now() + Duration::from_secs_f64(seconds),
        stop_margin: Duration::ZERO,
        start_margin: Duration::ZERO,
    }
}

fn status(w: &World) -> Option<SourceStatus> {
    w.crm.state().statuses.get(&(LIST, "l1".to_string())).cloned()
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
    let conn = w.conn.clone().with_follow_up(queue.clone());
    let resync = event("list", CrmMessage::Resync, "l1").build();

    // Three upserts of 250 fit into 2.5 s (the check comes before each member).
    sync(&conn, &resync, Some(budget(2.5))).await.unwrap();

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
    assert_eq!((carried.pass, carried.added, carried.compared), (2, 750, 750));

    // The continuation, with time enough: the rest, and the status of one pass.
    queue.take(crate::domain::routing::QueueFamily::MarketingList, 10);
    sync(&conn, &next, None).await.unwrap();
    assert_eq!(w.active("9").len(), 1_000);
    assert!(queue.pending().is_empty(), "done: no further message");
    let one_pass = big_list(1_000);
    sync(&one_pass.conn, &resync, None).await.unwrap();
    let Some(SourceStatus::Synced { status: single, .. }) = status(&one_pass) else {
        panic!("the single pass wrote its status");
    };
    assert!(single.starts_with("all members compared: 1000 added"), "{single}");
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
    let w = big_list(600);
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
    let conn = w.conn.clone().with_follow_up(queue.clone());
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
    let w = big_list(600);
    let queue = Arc::new(InMemoryChangeQueue::new());
    let conn = w.conn.clone().with_follow_up(queue.clone());
    let resync = event("list", CrmMessage::Resync, "l1").build();

    // No time at all: nothing compared.
    let err = sync(&conn, &resync, Some(budget(0.0))).await.unwrap_err();

    assert!(matches!(err, SyncError::Config(_)), "{err}");
    assert!(err.to_string().contains("timeout"), "{err}");
    assert!(queue.pending().is_empty(), "no endless continuation");
}

#[tokio::test(start_paused = true)]
async fn a_reconcile_cut_short_without_a_queue_to_continue_on_says_so() {
    let w = big_list(600);
    let resync = event("list", CrmMessage::Resync, "l1").build();

    let err = sync(&w.conn, &resync, Some(budget(1.5))).await.unwrap_err();

    assert!(err.to_string().contains("no queue"), "{err}");
}
