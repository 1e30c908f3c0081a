//! The sync workers as Lambda runs them: an SQS batch in, a partial batch response out; changes
//! of one batch that share a group reach CleverReach together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use lambda_runtime::{Context, LambdaEvent};
use sandbox::cleverreach::Endpoint;
use sandbox::harness::{Harness, checklist};
use serde_json::json;
use shared::domain::change::{Attributes, ChangeEvent, CrmMessage};
use shared::domain::routing::QueueFamily;
use shared::handlers::sync_worker::lambda;

fn change(entity: &str, record: &str, operation: &str) -> ChangeEvent {
    ChangeEvent {
        operation_id: operation.into(),
        correlation_id: format!("corr-{operation}"),
        message: CrmMessage::Update,
        entity: entity.into(),
        record_id: record.into(),
        user_id: sandbox::dataverse::ADMIN_USER_ID.into(),
        initiating_user_id: sandbox::dataverse::ADMIN_USER_ID.into(),
        organization_id: String::new(),
        organization_name: String::new(),
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

fn sqs_event(bodies: &[(&str, String)]) -> LambdaEvent<SqsEvent> {
    let mut event = SqsEvent::default();
    for (id, body) in bodies {
        let mut message = SqsMessage::default();
        message.message_id = Some(id.to_string());
        message.body = Some(body.clone());
        message
            .attributes
            .insert("MessageGroupId".into(), format!("group-of-{id}"));
        event.records.push(message);
    }
    LambdaEvent::new(event, Context::default())
}

#[tokio::test]
async fn a_malformed_message_is_reported_alone_and_the_rest_of_the_batch_is_done() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h
        .create(
            "contacts",
            json!({ "lastname": "Anna", "emailaddress1": "anna@example.com", "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
    h.settle().await.unwrap();
    let worker = h.worker(QueueFamily::Contact).unwrap();
    let good = serde_json::to_string(&change("contact", &anna, "op-1")).unwrap();
    let response = lambda::run(
        sqs_event(&[
            ("m-1", good.clone()),
            ("m-bad", "{not json".into()),
            ("m-3", good),
        ]),
        worker,
    )
    .await
    .unwrap();
    let failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(failed, ["m-bad"]);

    let all_bad = lambda::run(sqs_event(&[("m-x", "[]".into())]), worker).await;
    assert!(
        all_bad.is_err(),
        "a batch where everything failed fails as a whole"
    );
}

#[tokio::test]
async fn changes_of_one_batch_that_share_a_group_are_written_in_one_call() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let mut people = Vec::new();
    for i in 0..8 {
        people.push(
            h.create(
                "contacts",
                json!({ "lastname": format!("P{i}"), "emailaddress1": format!("p{i}@example.com"),
                        "crc_checklist": checklist(&[(0, 2)]) }),
            )
            .await
            .unwrap(),
        );
    }
    let list = h
        .create(
            "lists",
            json!({ "listname": "Batch", "createdfromcode": 2, "type": false,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.add_members(&list, "contact", &people).await.unwrap();
    h.settle().await.unwrap();
    let group = h.group_of("lists", &list).unwrap();
    assert!(h.active_emails(&group).is_empty(), "nobody said yes yet");

    for person in &people {
        h.update(
            "contacts",
            person,
            json!({ "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
    }
    h.cleverreach.reset_stats();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group).len(), 8);
    assert_eq!(
        h.cleverreach.stats().calls(Endpoint::ReceiversUpsert),
        1,
        "eight changes, one batch, one upsert"
    );
}
