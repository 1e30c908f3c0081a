//! Port: where failed queue messages are written down with the error they failed with, so that
//! `crc-admin dlq show` can say why a parked message failed (docs/architecture.md §13). A small
//! DynamoDB table with a time to live in AWS (`adapters::dynamodb`), a map in tests.

use async_trait::async_trait;

/// One queue message that failed, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedMessage {
    /// The SQS message id (kept when SQS moves the message to its dead-letter queue).
    pub message_id: String,
    /// The queue family it came from (`contact`, `marketing-list`, …).
    pub queue: String,
    /// The error it last failed with: what failed and why, ids only (never addresses).
    pub error: String,
    /// When it last failed, seconds since the epoch.
    pub failed_at: i64,
    /// How many failures were recorded (1 when recording; the sum when read back).
    pub failures: u32,
}

/// Why a failure could not be recorded or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the failure log: {0}")]
pub struct FailureLogError(pub String);

/// The record of failed messages.
///
/// Contract: recording the same message again replaces the error and time and counts one more
/// failure; a record lives at least as long as a dead-letter queue keeps its message.
#[async_trait]
pub trait FailureLog: Send + Sync {
    async fn record(&self, failure: &FailedMessage) -> Result<(), FailureLogError>;
    /// The last failure recorded for this message, if any.
    async fn failure(&self, message_id: &str) -> Result<Option<FailedMessage>, FailureLogError>;
}
