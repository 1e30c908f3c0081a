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
    /// Shared by every call made with this policy (one per API client, so per API and
    /// invocation): when one call is throttled, all of them wait.
    pub throttle: Arc<Throttle>,
}

/// "Nobody calls this API before …": set by a throttled call (429, 503), honoured by every
/// call that shares it, so that concurrent calls slow down together instead of each finding
/// out on its own (docs/architecture.md §4 "Concurrency").
#[derive(Debug, Default)]
pub struct Throttle {
    until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl Throttle {
    /// Waits until the API may be called again.
    pub async fn wait(&self) {
        let until = *self.until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until
            && until > tokio::time::Instant::now()
        {
            tokio::time::sleep_until(until).await;
        }
    }

    /// Nobody calls for `pause` from now (a later pause already set stays).
    pub fn pause(&self, pause: Duration) {
        let until = tokio::time::Instant::now() + pause;
        let mut current = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_none_or(|c| c < until) {
            *current = Some(until);
        }
    }
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
            throttle: Arc::new(Throttle::default()),
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
            throttle: Arc::new(Throttle::default()),
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
        policy.throttle.wait().await;
        match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(err) if err.is_retryable() => {
                match policy.next_delay(attempt, err.retry_after(), slept) {
                    Some(delay) => {
                        tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, "retrying");
                        if err.is_throttling() {
                            policy.throttle.pause(delay);
                        }
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
            throttle: Arc::new(Throttle::default()),
        }
    }

    #[derive(Debug)]
    struct Throttled(Option<Duration>);
    impl Retryable for Throttled {
        fn is_retryable(&self) -> bool {
            true
        }
        fn retry_after(&self) -> Option<Duration> {
            self.0
        }
        fn is_throttling(&self) -> bool {
            true
        }
    }

    #[tokio::test(start_paused = true)]
    async fn when_one_call_is_throttled_the_others_of_the_same_client_wait_too() {
        let policy = RetryPolicy {
            max_attempts: 3,
            max_delay: Duration::from_secs(5),
            budget: Duration::from_secs(10),
            ..policy()
        };
        let start = tokio::time::Instant::now();
        let sent = std::sync::Mutex::new(Vec::new());
        // The first call is told to wait two seconds; the second starts half a second later.
        let first = with_retries(&policy, |attempt| {
            sent.lock()
                .unwrap()
                .push(("first", attempt, start.elapsed()));
            async move {
                if attempt == 0 {
                    Err(Throttled(Some(Duration::from_secs(2))))
                } else {
                    Ok(())
                }
            }
        });
        let second = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            with_retries(&policy, |attempt| {
                sent.lock()
                    .unwrap()
                    .push(("second", attempt, start.elapsed()));
                async { Ok::<(), Throttled>(()) }
            })
            .await
        };
        let (a, b) = tokio::join!(first, second);
        assert!(a.is_ok() && b.is_ok());
        let sent = sent.into_inner().unwrap();
        let second_at = sent.iter().find(|s| s.0 == "second").unwrap().2;
        assert!(
            second_at >= Duration::from_secs(2),
            "the second call waited for the pause: {sent:?}"
        );
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
