//! Error classification shared by every edge: may the caller retry, and when.
//!
//! Adapters classify their failures once (HTTP status, transport, decoding); handlers map the
//! class to the edge's answer (SQS: report the item as failed or acknowledge it; HTTP: 5xx or 4xx).

use std::time::Duration;

/// Whether an error is worth retrying: timeouts, throttling and 5xx are; bad input, 4xx and
/// decoding failures are not.
pub trait Retryable {
    /// True when the same request may succeed later.
    fn is_retryable(&self) -> bool;

    /// How long the server asked us to wait (HTTP `Retry-After`), if it said so.
    fn retry_after(&self) -> Option<Duration> {
        None
    }

    /// True when the server said it is overloaded or limiting us (429, 503): then every call
    /// to it waits, not only this one.
    fn is_throttling(&self) -> bool {
        false
    }
}
