//! Adapter: SQS FIFO queues for CRM changes (aws-sdk-sqs; endpoint from `AWS_ENDPOINT_URL`).

use crate::domain::change::ChangeEvent;
use crate::domain::routing::{QueueFamily, deduplication_id, message_group};
use crate::ports::queue::{ChangeQueue, QueueError};
use async_trait::async_trait;
use aws_sdk_sqs::types::MessageAttributeValue;

/// The message attribute carrying the correlation id from the webhook into the workers.
pub const CORRELATION_ATTRIBUTE: &str = "correlation_id";

pub use crate::config::QueueUrls;

/// Sends changes to the SQS FIFO queue of their family.
#[derive(Clone)]
pub struct SqsChangeQueue {
    client: aws_sdk_sqs::Client,
    urls: QueueUrls,
}

impl SqsChangeQueue {
    pub fn new(client: aws_sdk_sqs::Client, urls: QueueUrls) -> Self {
        SqsChangeQueue { client, urls }
    }
}

#[async_trait]
impl ChangeQueue for SqsChangeQueue {
    async fn enqueue(&self, family: QueueFamily, event: &ChangeEvent) -> Result<(), QueueError> {
        let url = self
            .urls
            .get(family)
            .ok_or(QueueError::NotConfigured(family))?;
        let body = serde_json::to_string(event).map_err(|e| QueueError::Encode(e.to_string()))?;
        let bytes = body.len() + CORRELATION_ATTRIBUTE.len() + event.correlation_id.len() + 6;
        if bytes > crate::ports::queue::MAX_MESSAGE_BYTES {
            return Err(QueueError::TooLarge { family, bytes });
        }
        let correlation = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(if event.correlation_id.is_empty() {
                "none"
            } else {
                event.correlation_id.as_str()
            })
            .build()
            .map_err(|e| QueueError::Encode(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(url)
            .message_body(body)
            .message_group_id(message_group(event))
            .message_deduplication_id(deduplication_id(event))
            .message_attributes(CORRELATION_ATTRIBUTE, correlation)
            .send()
            .await
            .map_err(|e| QueueError::Unavailable {
                family,
                reason: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
            })?;
        Ok(())
    }
}

/// Sends retroactive-sync messages (docs/architecture.md §5) to their SQS FIFO queues, ten per
/// `SendMessageBatch` and at most 200 KB a batch, in order.
#[derive(Clone)]
pub struct SqsMessageQueue {
    client: aws_sdk_sqs::Client,
    urls: QueueUrls,
}

impl SqsMessageQueue {
    pub fn new(client: aws_sdk_sqs::Client, urls: QueueUrls) -> Self {
        SqsMessageQueue { client, urls }
    }

    async fn send_batch(
        &self,
        family: QueueFamily,
        batch: &[crate::ports::queue::OutboundMessage],
    ) -> Result<(), QueueError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        let url = self
            .urls
            .get(family)
            .ok_or(QueueError::NotConfigured(family))?;
        let mut entries = Vec::with_capacity(batch.len());
        for (i, message) in batch.iter().enumerate() {
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(&message.body)
                    .message_group_id(&message.group)
                    .message_deduplication_id(&message.deduplication_id)
                    .build()
                    .map_err(|e| QueueError::Encode(e.to_string()))?,
            );
        }
        let answer = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| QueueError::Unavailable {
                family,
                reason: aws_sdk_sqs::error::DisplayErrorContext(&e).to_string(),
            })?;
        if let Some(refused) = answer.failed.first() {
            // Retried as a whole: the de-duplication ids keep the accepted ones single.
            return Err(QueueError::Unavailable {
                family,
                reason: format!(
                    "{} of {} messages refused ({}: {})",
                    answer.failed.len(),
                    batch.len(),
                    refused.code,
                    refused.message.as_deref().unwrap_or("")
                ),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl crate::ports::queue::MessageQueue for SqsMessageQueue {
    async fn send(
        &self,
        messages: Vec<crate::ports::queue::OutboundMessage>,
    ) -> Result<(), QueueError> {
        const MAX_ENTRIES: usize = 10;
        const MAX_BYTES: usize = 200 * 1024;
        let mut start = 0;
        while start < messages.len() {
            let family = messages[start].family;
            let mut end = start;
            let mut bytes = 0;
            while end < messages.len()
                && end - start < MAX_ENTRIES
                && messages[end].family == family
                && (end == start || bytes + messages[end].body.len() <= MAX_BYTES)
            {
                bytes += messages[end].body.len();
                end += 1;
            }
            self.send_batch(family, &messages[start..end]).await?;
            start = end;
        }
        Ok(())
    }
}
