//! Ports to the queues: CRM changes to the queue of their family, and the retroactive sync's
//! own messages. SQS FIFO queues in Lambda (`adapters::sqs`), in memory locally and in tests
//! (`adapters::memory`).

use crate::domain::change::ChangeEvent;
use crate::domain::routing::QueueFamily;
use crate::error::Retryable;
use async_trait::async_trait;

/// Why a change could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("no queue is configured for the {0} family")]
    NotConfigured(QueueFamily),
    #[error("the {family} queue did not accept the message: {reason}")]
    Unavailable { family: QueueFamily, reason: String },
    #[error("the change could not be encoded for the queue: {0}")]
    Encode(String),
    /// Larger than a queue message may be ([`MAX_MESSAGE_BYTES`]); the queue would refuse it.
    #[error(
        "the {family} queue takes at most {MAX_MESSAGE_BYTES} bytes per message; this one has {bytes}"
    )]
    TooLarge { family: QueueFamily, bytes: usize },
}

/// The most an SQS message may hold, its body and attributes together: the queues' default
/// `MaximumMessageSize` of 256 KiB, which the template keeps. The adapters refuse larger ones
/// themselves, so that no emulator more lenient than SQS hides one.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

impl Retryable for QueueError {
    fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable { .. })
    }
}

/// Sends normalised CRM changes to the queue of their family.
///
/// Contract: `Ok` only once the queue durably accepted the message (the intake answers Dataverse
/// 2xx only then). The message group is the record and the de-duplication id the operation
/// (see `domain::routing`), so sending the same change twice queues it once.
#[async_trait]
pub trait ChangeQueue: Send + Sync {
    async fn enqueue(&self, family: QueueFamily, event: &ChangeEvent) -> Result<(), QueueError>;
}

#[async_trait]
impl<T: ChangeQueue + ?Sized> ChangeQueue for std::sync::Arc<T> {
    async fn enqueue(&self, family: QueueFamily, event: &ChangeEvent) -> Result<(), QueueError> {
        (**self).enqueue(family, event).await
    }
}

/// One message for a queue that carries more than change events (the retroactive sync's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub family: QueueFamily,
    /// The FIFO message group: messages of one group are worked in order.
    pub group: String,
    pub deduplication_id: String,
    pub body: String,
}

/// Sends messages to the retroactive-sync queues.
///
/// Contract: `Ok` only once every message was durably accepted, in the order given; a message
/// sent again with the same de-duplication id is queued once.
#[async_trait]
pub trait MessageQueue: Send + Sync {
    async fn send(&self, messages: Vec<OutboundMessage>) -> Result<(), QueueError>;
}

#[async_trait]
impl<T: MessageQueue + ?Sized> MessageQueue for std::sync::Arc<T> {
    async fn send(&self, messages: Vec<OutboundMessage>) -> Result<(), QueueError> {
        (**self).send(messages).await
    }
}
