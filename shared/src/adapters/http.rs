//! Adapter support: bounded, jittered retries for outbound HTTP calls.
//!
//! Retry a little in-process (a few attempts, full jitter, `Retry-After` honoured up to a cap,
//! a total sleep budget), and let the platform (SQS redelivery, the next schedule) retry the
//! rest. Only errors that say they are retryable are retried.

use crate::error::Retryable;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How hard to retry one call.
#[derive(Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First back-off step; doubled on each retry.
    pub base_delay: Duration,
    /// No single wait is longer than this (a longer `Retry-After` ends the retries).
    pub max_delay: Duration,
    /// Total time we may spend sleeping between attempts.
    pub budget: Duration,
    /// Source of jitter in [0, 1); injected so that tests are deterministic.
    pub jitter: Arc<dyn Fn() -> f64 + Send + Sync>,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("max_attempts", &self.max_attempts)
            .field("base_delay", &self.base_delay)
            .field("max_delay", &self.max_delay)
            .field("budget", &self.budget)
            .finish()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            budget: Duration::from_secs(30),
            jitter: Arc::new(fastrand::f64),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The same policy with short waits, for tests against the local sandbox.
    pub fn fast() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(200),
            budget: Duration::from_secs(5),
            jitter: Arc::new(fastrand::f64),
        }
    }

    /// The wait before attempt `attempt + 1` (attempt counts from 0), or `None` when the policy
    /// says stop: attempts used up, a `Retry-After` above the cap, or the budget spent.
    pub fn next_delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        slept: Duration,
    ) -> Option<Duration> {
        if attempt + 1 >= self.max_attempts {
            return None;
        }
        let delay = match retry_after {
            Some(wait) if wait > self.max_delay => return None,
            Some(wait) => wait,
            None => {
                let exp = self
                    .base_delay
                    .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX));
                let ceiling = exp.min(self.max_delay);
                ceiling.mul_f64((self.jitter)().clamp(0.0, 1.0))
            }
        };
        if slept + delay > self.budget {
            return None;
        }
        Some(delay)
    }
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or the policy says stop.
/// `op` gets the attempt number (0 for the first), so that a non-idempotent call can tell a
/// retry from a first try and check whether an earlier attempt already took effect.
pub async fn with_retries<T, E, F, Fut>(policy: &RetryPolicy, mut op: F) -> Result<T, E>
where
    E: Retryable,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut attempt = 0;
    let mut slept = Duration::ZERO;
    loop {
        match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(err) if err.is_retryable() => {
                match policy.next_delay(attempt, err.retry_after(), slept) {
                    Some(delay) => {
                        tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, "retrying");
                        tokio::time::sleep(delay).await;
                        slept += delay;
                        attempt += 1;
                    }
                    None => return Err(err),
                }
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Flaky {
        retryable: bool,
        retry_after: Option<Duration>,
    }
    impl Retryable for Flaky {
        fn is_retryable(&self) -> bool {
            self.retryable
        }
        fn retry_after(&self) -> Option<Duration> {
            self.retry_after
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(50),
            budget: Duration::from_millis(100),
            jitter: Arc::new(|| 0.5),
        }
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_until_it_succeeds() {
        let calls = AtomicU32::new(0);
        let result: Result<u32, Flaky> = with_retries(&policy(), |attempt| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt < 2 {
                    Err(Flaky {
                        retryable: true,
                        retry_after: None,
                    })
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert_eq!(result.ok(), Some(2));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Flaky> = with_retries(&policy(), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err(Flaky {
                    retryable: false,
                    retry_after: None,
                })
            }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_stop_after_the_last_attempt() {
        let calls = AtomicU32::new(0);
        let result: Result<(), Flaky> = with_retries(&policy(), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async {
                Err(Flaky {
                    retryable: true,
                    retry_after: None,
                })
            }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn a_retry_after_longer_than_the_cap_ends_the_retries() {
        let p = policy();
        assert_eq!(
            p.next_delay(0, Some(Duration::from_millis(20)), Duration::ZERO),
            Some(Duration::from_millis(20))
        );
        assert_eq!(
            p.next_delay(0, Some(Duration::from_secs(60)), Duration::ZERO),
            None
        );
    }

    #[test]
    fn the_sleep_budget_bounds_the_total_wait() {
        let p = policy();
        assert_eq!(
            p.next_delay(
                1,
                Some(Duration::from_millis(30)),
                Duration::from_millis(80)
            ),
            None
        );
    }

    #[test]
    fn backoff_grows_exponentially_up_to_the_cap_with_jitter() {
        let p = policy();
        assert_eq!(
            p.next_delay(0, None, Duration::ZERO),
            Some(Duration::from_micros(500))
        );
        assert_eq!(
            p.next_delay(2, None, Duration::ZERO),
            Some(Duration::from_millis(2))
        );
    }
}
