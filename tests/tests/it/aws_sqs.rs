//! The SQS adapter against the AWS emulator: FIFO order per record, de-duplication of a change
//! delivered twice, and a message that keeps failing ends in the dead-letter queue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use sandbox::aws::{emulator, unique_name};
use shared::adapters::sqs::{QueueUrls, SqsChangeQueue};
use shared::domain::change::{Attributes, ChangeEvent, CrmMessage};
use shared::domain::routing::QueueFamily;
use shared::error::Retryable;
use shared::ports::ChangeQueue;

const RECORD: &str = "6d81597f-0f9f-e711-8122-000d3aa2331c";

fn change(operation: &str) -> ChangeEvent {
    ChangeEvent {
        operation_id: operation.to_string(),
        correlation_id: format!("corr-{operation}"),
        message: CrmMessage::Update,
        entity: "contact".into(),
        record_id: RECORD.to_string(),
        user_id: "u".into(),
        initiating_user_id: "u".into(),
        organization_id: "o".into(),
        organization_name: "org".into(),
        occurred_at_ms: None,
        depth: 1,
        target: Attributes::new(),
        pre_image: None,
        post_image: None,
        related: vec![],
        size_exceeded: false,
        tag: None,
        continuation: None,
    }
}

/// A FIFO queue with a FIFO dead-letter queue; returns (queue url, dead-letter queue url).
async fn fifo_queue(sqs: &aws_sdk_sqs::Client, max_receive_count: u32) -> (String, String) {
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{}.fifo", unique_name("dlq")))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let main = sqs
        .create_queue()
        .queue_name(format!("{}.fifo", unique_name("contact")))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(
                r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{max_receive_count}"}}"#
            ),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    (main, dlq)
}

async fn receive_all(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    loop {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if got.is_empty() {
            return all;
        }
        for m in &got {
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        all.extend(got);
    }
}

#[tokio::test]
async fn changes_to_one_record_arrive_in_order_and_a_duplicate_delivery_is_queued_once() {
    let Some(aws) = emulator("fifo order and dedup").await else {
        return;
    };
    let sqs = aws_sdk_sqs::Client::new(&aws.config);
    let (url, _dlq) = fifo_queue(&sqs, 3).await;
    let queue = SqsChangeQueue::new(
        sqs.clone(),
        QueueUrls::new().with(QueueFamily::Contact, &url),
    );

    for op in ["op-1", "op-2", "op-1", "op-3"] {
        queue
            .enqueue(QueueFamily::Contact, &change(op))
            .await
            .unwrap();
    }

    let received = receive_all(&sqs, &url).await;
    let ops: Vec<String> = received
        .iter()
        .map(|m| {
            serde_json::from_str::<ChangeEvent>(m.body().unwrap())
                .unwrap()
                .operation_id
        })
        .collect();
    assert_eq!(
        ops,
        ["op-1", "op-2", "op-3"],
        "in order, the duplicate dropped"
    );
    let first = &received[0];
    assert_eq!(
        first.message_attributes().unwrap()["correlation_id"].string_value(),
        Some("corr-op-1")
    );
    assert_eq!(
        first
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .map(String::as_str),
        Some(format!("contact:{RECORD}").as_str()),
        "the message group is the record"
    );
}

#[tokio::test]
async fn a_change_for_a_family_without_a_queue_is_refused_by_name() {
    let Some(aws) = emulator("family without a queue").await else {
        return;
    };
    let queue = SqsChangeQueue::new(aws_sdk_sqs::Client::new(&aws.config), QueueUrls::new());
    let err = queue
        .enqueue(QueueFamily::Lead, &change("op"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("lead"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_queue_that_does_not_accept_the_message_is_a_retryable_failure() {
    let Some(aws) = emulator("unreachable queue").await else {
        return;
    };
    let queue = SqsChangeQueue::new(
        aws_sdk_sqs::Client::new(&aws.config),
        QueueUrls::new().with(
            QueueFamily::Contact,
            format!(
                "{}/123456789012/{}.fifo",
                aws.endpoint,
                unique_name("missing")
            ),
        ),
    );
    let err = queue
        .enqueue(QueueFamily::Contact, &change("op"))
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn a_message_that_keeps_failing_moves_to_the_dead_letter_queue() {
    let Some(aws) = emulator("dead-letter redrive").await else {
        return;
    };
    let sqs = aws_sdk_sqs::Client::new(&aws.config);
    let (url, dlq) = fifo_queue(&sqs, 2).await;
    let queue = SqsChangeQueue::new(
        sqs.clone(),
        QueueUrls::new().with(QueueFamily::Contact, &url),
    );
    queue
        .enqueue(QueueFamily::Contact, &change("op-bad"))
        .await
        .unwrap();

    // A worker that always fails the message: receive it, never delete it.
    let mut receives = 0;
    for _ in 0..10 {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        receives += got.len();
        if got.is_empty() && receives >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    assert_eq!(receives, 2, "delivered maxReceiveCount times, then no more");
    let dead = receive_all(&sqs, &dlq).await;
    assert_eq!(
        dead.len(),
        1,
        "the failed change sits in the dead-letter queue"
    );
    let event: ChangeEvent = serde_json::from_str(dead[0].body().unwrap()).unwrap();
    assert_eq!(event.operation_id, "op-bad");
}
