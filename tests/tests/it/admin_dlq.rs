//! `crc-admin dlq` against the AWS emulator with really dead-lettered messages: a worker whose
//! CleverReach is down fails two list changes until SQS parks them in the dead-letter queue
//! (the worker writes each failure into the failure table); `list` counts them, `show` decodes
//! one with the error it failed with, `redrive` moves one back and the worker then syncs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use crc_admin::dlq::Dlq;
use crc_admin::{parse, run_dlq};
use sandbox::aws::{create_fifo_queues, emulator, unique_name};
use sandbox::harness::SqsQueues;
use shared::adapters::dynamodb::DynamoFailureLog;
use shared::adapters::memory::{InMemoryCrm, InMemoryNewsletter, NewsletterPort};
use shared::adapters::sqs::SqsChangeQueue;
use shared::domain::change::{ChangeEvent, CrmMessage};
use shared::domain::checklist::Checklist;
use shared::domain::routing::{QueueFamily, message_group};
use shared::domain::source::{Source, SourceKind, SourceRecord};
use shared::handlers::sync_worker::{InboundMessage, WorkerDeps, handle_messages};
use shared::ports::ChangeQueue;
use shared::ports::failures::FailureLog;
use shared::usecases::Connector;
use std::sync::Arc;

fn list(id: &str, name: &str) -> SourceRecord {
    SourceRecord {
        source: Source {
            kind: SourceKind::MarketingList,
            id: id.to_string(),
            name: name.to_string(),
            checklist: Checklist::parse(r#"[{"id":0,"state":1}]"#).unwrap(),
            sync_enabled: true,
            active: true,
            group_id: None,
            description: None,
        },
        list: Some(shared::domain::source::ListShape {
            dynamic: false,
            member_kind: shared::domain::recipient::RecipientKind::Contact,
            query: None,
        }),
        checklist_problem: None,
        resync_requested: false,
        removals_confirmed: false,
    }
}

fn change(list: &str) -> ChangeEvent {
    let mut event =
        ChangeEvent::resync_request("list", list, &format!("op-{list}"), 1_800_000_000_000);
    event.message = CrmMessage::Update;
    event.correlation_id = format!("corr-{list}");
    event
}

async fn failure_table(config: &aws_config::SdkConfig) -> String {
    let table = unique_name("failures");
    aws_sdk_dynamodb::Client::new(config)
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("message_id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("message_id")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    table
}

/// Receives from the list queue and runs the worker until the queue is empty (SQS moves a
/// message that failed `maxReceiveCount` times to the dead-letter queue). Returns the ids of
/// the messages that were worked successfully.
async fn work_until_empty(queues: &SqsQueues, worker: &WorkerDeps) -> Vec<String> {
    let url = queues.urls.get(QueueFamily::MarketingList).unwrap();
    let mut done = Vec::new();
    for _ in 0..20 {
        let received = queues
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if received.is_empty() {
            return done;
        }
        let messages: Vec<InboundMessage> = received
            .iter()
            .map(|m| {
                let body = m.body().unwrap().to_string();
                let event: ChangeEvent = serde_json::from_str(&body).unwrap();
                InboundMessage {
                    message_id: m.message_id().unwrap().to_string(),
                    body,
                    group: Some(message_group(&event)),
                }
            })
            .collect();
        let failed = handle_messages(worker, messages).await;
        for m in &received {
            let receipt = m.receipt_handle().unwrap();
            if failed.iter().any(|f| Some(f.as_str()) == m.message_id()) {
                queues
                    .client
                    .change_message_visibility()
                    .queue_url(url)
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .send()
                    .await
                    .unwrap();
            } else {
                done.push(m.message_id().unwrap().to_string());
                queues
                    .client
                    .delete_message()
                    .queue_url(url)
                    .receipt_handle(receipt)
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    panic!("the queue did not empty");
}

async fn run(dlq: &Dlq, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut out = Vec::new();
    run_dlq(dlq, &parse(&args).unwrap(), &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn parked_messages_are_listed_shown_with_their_error_and_one_is_redriven_and_synced() {
    let Some(aws) = emulator("admin_dlq").await else {
        return;
    };
    let sqs = aws_sdk_sqs::Client::new(&aws.config);
    let stack = unique_name("crc");
    let queues = create_fifo_queues(&sqs, &stack, 2).await.unwrap();
    let table = failure_table(&aws.config).await;
    let log: Arc<dyn FailureLog> = Arc::new(DynamoFailureLog::new(
        aws_sdk_dynamodb::Client::new(&aws.config),
        &table,
    ));

    // A connector whose CleverReach is down.
    let crm = Arc::new(InMemoryCrm::new());
    crm.add_source(list("l1", "Customers"));
    crm.add_source(list("l2", "Partners"));
    let newsletter = Arc::new(InMemoryNewsletter::new());
    newsletter.fail(NewsletterPort::Groups, 1000);
    let worker = WorkerDeps::new(
        QueueFamily::MarketingList,
        Connector::from_shared(crm.clone(), newsletter.clone()),
    )
    .with_failure_log(log.clone());

    let queue = SqsChangeQueue::new(sqs.clone(), queues.urls.clone());
    for id in ["l1", "l2"] {
        queue
            .enqueue(QueueFamily::MarketingList, &change(id))
            .await
            .unwrap();
    }
    assert!(work_until_empty(&queues, &worker).await.is_empty());

    let dlq = Dlq {
        sqs: sqs.clone(),
        stack: stack.clone(),
        failures: Some(log.clone()),
    };
    let listed = run(&dlq, &["dlq", "list"]).await;
    let line = listed
        .lines()
        .find(|l| l.starts_with("marketing-list "))
        .unwrap_or_else(|| panic!("{listed}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(columns[1], "2", "{listed}");
    assert!(
        line.ends_with(&format!("{stack}-marketing-list.fifo")),
        "{listed}"
    );
    assert!(listed.ends_with("2 messages parked\n"), "{listed}");

    // Which message is l1's? Show both and pick.
    let parked = dlq.list(Some("marketing-list")).await.unwrap();
    assert_eq!(parked[0].messages, 2);
    let states = dlq.queues().await.unwrap();
    let dead = states.iter().find(|q| q.short == "marketing-list").unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let got = sqs
            .receive_message()
            .queue_url(&dead.url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
        for m in got.messages.unwrap_or_default() {
            let id = m.message_id().unwrap().to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let mut shown = Vec::new();
    for id in &ids {
        shown.push((id.clone(), run(&dlq, &["dlq", "show", id]).await));
    }
    let (l1_id, l1_text) = shown
        .iter()
        .find(|(_, text)| text.contains("change: Update of list l1"))
        .unwrap_or_else(|| panic!("{shown:?}"));
    assert!(
        l1_text.contains("operation: op-l1, correlation: corr-l1"),
        "{l1_text}"
    );
    assert!(
        l1_text.contains("failed: 2 times in marketing-list"),
        "{l1_text}"
    );
    assert!(
        l1_text.contains(
            "last error: CleverReach: the in-memory newsletter's Groups port is switched off"
        ),
        "{l1_text}"
    );

    // CleverReach is back: redrive l1's message only; the worker then syncs it.
    newsletter.fail(NewsletterPort::Groups, 0);
    let moved = run(
        &dlq,
        &["dlq", "redrive", "--queue", "marketing-list", l1_id],
    )
    .await;
    assert_eq!(moved, "1 messages moved back to their queues\n");
    assert_eq!(
        dlq.list(Some("marketing-list")).await.unwrap()[0].messages,
        1
    );
    assert_eq!(work_until_empty(&queues, &worker).await.len(), 1);
    let groups: Vec<String> = newsletter
        .state()
        .groups
        .values()
        .map(|g| g.name.clone())
        .collect();
    assert_eq!(groups, ["Customers"], "l1 synced, l2 still parked");

    // The rest.
    assert_eq!(
        run(&dlq, &["dlq", "redrive"]).await,
        "1 messages moved back to their queues\n"
    );
    assert_eq!(work_until_empty(&queues, &worker).await.len(), 1);
    assert_eq!(newsletter.state().groups.len(), 2);
    assert!(
        run(&dlq, &["dlq", "list"])
            .await
            .ends_with("0 messages parked\n")
    );
}
