//! The time an invocation has left (docs/architecture.md §4 "Deadlines"). Lambda kills an
//! invocation at its timeout, mid-write and without a word on the source; so a handler runs its
//! work within a [`Budget`] taken from the invocation's deadline, a worker starts no message when
//! little time is left, and a full reconcile stops between writes in time to say how far it got
//! and to queue its own continuation.
//!
//! The budget travels as a task-local value: it belongs to one invocation, not to the
//! connector that every invocation of a warm container shares. Outside a budget (tests, local
//! runs, the scheduled jobs with budgets of their own) there is no deadline.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Time kept back at the end of an invocation for a reconcile to finish its last write, write
/// its progress and queue its continuation.
pub const STOP_MARGIN: Duration = Duration::from_secs(15);
/// A message is not started with less than this left (a person reconcile is a few dozen calls
/// of up to about a second each); it goes back to the queue and comes again at once.
pub const START_MARGIN: Duration = Duration::from_secs(30);

/// One invocation's deadline and the margins kept before it.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub deadline: Instant,
    pub stop_margin: Duration,
    pub start_margin: Duration,
}

impl Budget {
    /// The budget of an invocation ending at `deadline`, with the standard margins, narrowed
    /// for short timeouts so that some work is always possible: no margin takes more than a
    /// quarter (stop) or a half (start) of the time there is.
    pub fn until(deadline: Instant) -> Budget {
        let total = deadline.saturating_duration_since(Instant::now());
        Budget {
            deadline,
            stop_margin: STOP_MARGIN.min(total / 4),
            start_margin: START_MARGIN.min(total / 2),
        }
    }

    /// The budget of a Lambda invocation whose deadline is `deadline_ms` (ms since the epoch,
    /// as the runtime's context gives it) while the clock says `now_ms`.
    pub fn from_epoch_ms(deadline_ms: u64, now_ms: u64) -> Budget {
        Budget::until(Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
    }

    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

tokio::task_local! {
    static BUDGET: Budget;
}

/// Runs `work` within `budget` (no deadline with `None`).
pub async fn within<F: Future>(budget: Option<Budget>, work: F) -> F::Output {
    match budget {
        Some(budget) => BUDGET.scope(budget, work).await,
        None => work.await,
    }
}

/// Time left before the deadline, when there is one.
pub fn time_left() -> Option<Duration> {
    BUDGET.try_with(Budget::left).ok()
}

/// True when a running reconcile must stop now: the stop margin is all that is left.
pub fn must_stop() -> bool {
    BUDGET
        .try_with(|b| b.left() <= b.stop_margin)
        .unwrap_or(false)
}

/// True when no new message should be started.
pub fn too_late_to_start() -> bool {
    BUDGET
        .try_with(|b| b.left() <= b.start_margin)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_budget_there_is_no_deadline() {
        assert_eq!(time_left(), None);
        assert!(!must_stop());
        assert!(!too_late_to_start());
    }

    #[tokio::test]
    async fn the_margins_decide_when_to_stop_and_when_not_to_start() {
        let budget = Budget {
            deadline: Instant::now() + Duration::from_secs(20),
            stop_margin: Duration::from_secs(15),
            start_margin: Duration::from_secs(30),
        };
        within(Some(budget), async {
            assert!(time_left().is_some_and(|t| t <= Duration::from_secs(20)));
            assert!(!must_stop(), "20 s left, 15 s kept back");
            assert!(too_late_to_start(), "a new message needs 30 s");
        })
        .await;
    }

    #[test]
    fn a_short_timeout_keeps_room_for_work() {
        let budget = Budget::until(Instant::now() + Duration::from_secs(20));
        assert!(budget.stop_margin <= Duration::from_secs(5));
        assert!(budget.start_margin <= Duration::from_secs(10));
        let long = Budget::until(Instant::now() + Duration::from_secs(120));
        assert_eq!(long.stop_margin, STOP_MARGIN);
        assert_eq!(long.start_margin, START_MARGIN);
    }
}
