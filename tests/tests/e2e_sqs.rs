//! End to end through real SQS FIFO queues on the AWS emulator (moto here, LocalStack where it
//! exists): the intake sends to SQS, a poller standing in for the event-source mapping feeds
//! the workers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::aws::{create_fifo_queues, emulator, unique_name};
use sandbox::cleverreach::CleverReachSimConfig;
use sandbox::dataverse::DataverseSimConfig;
use sandbox::harness::{Harness, HarnessOptions, checklist};
use serde_json::json;

#[tokio::test]
async fn a_list_syncs_through_sqs_fifo_queues_with_nothing_left_in_the_dead_letter_queues() {
    let Some(aws) = emulator("sync through SQS").await else {
        return;
    };
    let sqs = aws_sdk_sqs::Client::new(&aws.config);
    let queues = create_fifo_queues(&sqs, &unique_name("crc"), 5)
        .await
        .unwrap();
    let h = Harness::start_with(
        DataverseSimConfig::default(),
        CleverReachSimConfig::default(),
        HarnessOptions {
            sqs: Some(queues),
            ..HarnessOptions::default()
        },
    )
    .await
    .unwrap();
    h.install(&[]).await.unwrap();
    let mut members = Vec::new();
    for name in ["anna", "bert", "cleo"] {
        members.push(
            h.create(
                "contacts",
                json!({ "lastname": name, "emailaddress1": format!("{name}@example.com"),
                        "crc_checklist": checklist(&[(0, 1)]) }),
            )
            .await
            .unwrap(),
        );
    }
    let list = h
        .create(
            "lists",
            json!({ "listname": "Via SQS", "createdfromcode": 2, "type": false,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.add_members(&list, "contact", &members).await.unwrap();
    h.update(
        "contacts",
        &members[1],
        json!({ "emailaddress1": "bert.new@example.com" }),
    )
    .await
    .unwrap();
    let processed = h.settle().await.unwrap();
    assert!(processed >= 3, "messages went through SQS ({processed})");
    assert!(h.queue.is_empty(), "nothing went through the local queue");

    let group = h.group_of("lists", &list).expect("group");
    assert_eq!(
        h.active_emails(&group),
        [
            "anna@example.com",
            "bert.new@example.com",
            "cleo@example.com"
        ]
    );
    assert_eq!(h.sqs_dead_letters().await.unwrap(), 0);
}
