//! Adapter: the failure log (`ports::failures`) in a DynamoDB table (aws-sdk-dynamodb; endpoint
//! from `AWS_ENDPOINT_URL`). One item per message id: queue, error, time of the last failure,
//! how many failures, and a time to live a little past the dead-letter queues' retention, so
//! that the table holds exactly what `crc-admin dlq show` may still be asked about.
//!
//! Why a table: the record must be found by message id once the message sits in its
//! dead-letter queue (SQS cannot attach anything to a message after it was sent), written by
//! every worker on every failure at the cost of one request, and readable when the CRM is the
//! thing that is down; log searches by id are slow and cannot expire with the message.

use crate::ports::failures::{FailedMessage, FailureLog, FailureLogError};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

/// How long a record lives: the dead-letter queues keep messages 14 days; a day more.
pub const RECORD_DAYS: i64 = 15;

/// The table's key and attributes.
pub mod attribute {
    pub const MESSAGE_ID: &str = "message_id";
    pub const QUEUE: &str = "queue";
    pub const ERROR: &str = "error";
    pub const FAILED_AT: &str = "failed_at";
    pub const FAILURES: &str = "failures";
    /// The TTL attribute (seconds since the epoch).
    pub const EXPIRES_AT: &str = "expires_at";
}

/// The failure log in a DynamoDB table.
#[derive(Clone)]
pub struct DynamoFailureLog {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoFailureLog {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        DynamoFailureLog {
            client,
            table: table.into(),
        }
    }
}

fn error<E: std::error::Error + 'static>(
    e: aws_sdk_dynamodb::error::SdkError<E>,
) -> FailureLogError {
    FailureLogError(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string())
}

fn number(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

#[async_trait]
impl FailureLog for DynamoFailureLog {
    async fn record(&self, failure: &FailedMessage) -> Result<(), FailureLogError> {
        use attribute::*;
        self.client
            .update_item()
            .table_name(&self.table)
            .key(MESSAGE_ID, AttributeValue::S(failure.message_id.clone()))
            .update_expression("SET #q = :q, #e = :e, #t = :t, #x = :x ADD #n :n")
            .expression_attribute_names("#q", QUEUE)
            .expression_attribute_names("#e", ERROR)
            .expression_attribute_names("#t", FAILED_AT)
            .expression_attribute_names("#x", EXPIRES_AT)
            .expression_attribute_names("#n", FAILURES)
            .expression_attribute_values(":q", AttributeValue::S(failure.queue.clone()))
            .expression_attribute_values(":e", AttributeValue::S(failure.error.clone()))
            .expression_attribute_values(":t", number(failure.failed_at))
            .expression_attribute_values(":x", number(failure.failed_at + RECORD_DAYS * 86_400))
            .expression_attribute_values(":n", number(i64::from(failure.failures.max(1))))
            .send()
            .await
            .map_err(error)?;
        Ok(())
    }

    async fn failure(&self, message_id: &str) -> Result<Option<FailedMessage>, FailureLogError> {
        use attribute::*;
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(MESSAGE_ID, AttributeValue::S(message_id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(error)?
            .item;
        let Some(item) = item else {
            return Ok(None);
        };
        let text = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let whole = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
                .unwrap_or_default()
        };
        Ok(Some(FailedMessage {
            message_id: message_id.to_string(),
            queue: text(QUEUE),
            error: text(ERROR),
            failed_at: whole(FAILED_AT),
            failures: u32::try_from(whole(FAILURES)).unwrap_or(u32::MAX),
        }))
    }
}
