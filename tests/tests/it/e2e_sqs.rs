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

/// A contact-update webhook body as a synchronous step sends it (an empty operation id) for
/// `contact`, setting its first name to `first_name` at `at_ms`.
fn sync_step_update(contact: &str, first_name: &str, at_ms: i64) -> Vec<u8> {
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/webhook-intake/contact-update.json"
    ))
    .unwrap()
    .replace("6d81597f-0f9f-e711-8122-000d3aa2331c", contact)
    .replace("\"James\"", &format!("\"{first_name}\""));
    let mut body: serde_json::Value = serde_json::from_str(&sample).unwrap();
    body["OperationId"] = json!("00000000-0000-0000-0000-000000000000");
    body["Mode"] = json!(0);
    body["OperationCreatedOn"] = json!(format!("/Date({at_ms})/"));
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn changes_without_an_operation_id_each_reach_the_worker_and_a_redelivered_one_arrives_once()
{
    let Some(aws) = emulator("changes without an operation id").await else {
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
    let contact = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    h.settle().await.unwrap();

    let deliver = |body: Vec<u8>| {
        let url = h.intake_url.clone();
        let org = h.dataverse.config().org_domain.clone();
        async move {
            let answer = reqwest::Client::new()
                .post(url)
                .query(&[("code", sandbox::harness::WEBHOOK_KEY)])
                .header("x-ms-dynamics-organization", org)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 202);
            let reply: serde_json::Value = answer.json().await.unwrap();
            reply["deduplication_id"].as_str().unwrap().to_string()
        }
    };
    // Two changes of one record within a second, then Dataverse delivering the first again.
    let first = sync_step_update(&contact, "Anna", 1_765_000_000_000);
    let second = sync_step_update(&contact, "Anne", 1_765_000_000_900);
    let first_id = deliver(first.clone()).await;
    let second_id = deliver(second).await;
    let again_id = deliver(first).await;
    let processed = h.settle().await.unwrap();
    assert_eq!(
        processed, 2,
        "both changes reach the contact worker, the redelivered one once"
    );
    assert_ne!(first_id, second_id, "distinct changes, distinct ids");
    assert_eq!(first_id, again_id, "a redelivery keeps its id");
    assert_eq!(h.sqs_dead_letters().await.unwrap(), 0);
}

/// Dataverse delivers an AddListMembers of 5,000 ids (under its 256 KB webhook limit, over what
/// an SQS message holds as queued): the intake answers 202 with one message, and the list
/// worker, reading the list afresh, compares all its members.
#[tokio::test]
async fn an_add_of_five_thousand_members_is_queued_as_one_message_and_read_in_full() {
    let Some(aws) = emulator("an add of 5,000 members").await else {
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
            h.contact(&format!("{name}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    let list = h
        .create(
            "lists",
            json!({ "listname": "Big add", "createdfromcode": 2, "type": false,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.add_members(&list, "contact", &members).await.unwrap();
    h.settle().await.unwrap();

    // The body as Dataverse sends it for 5,000 members (ours among them).
    let mut body: serde_json::Value = serde_json::from_str(include_str!(
        "../../../events/webhook-intake/list-addlistmembers.json"
    ))
    .unwrap();
    let ids: Vec<String> = members
        .iter()
        .cloned()
        .chain((members.len()..5_000).map(|i| format!("{i:08x}-6b7c-ef11-8409-000d3a4b7c21")))
        .collect();
    body["PrimaryEntityId"] = json!(list);
    body["OperationId"] = json!("0b0b0b0b-1111-4222-8333-444455556666");
    for parameter in body["InputParameters"].as_array_mut().unwrap() {
        match parameter["key"].as_str() {
            Some("MemberIds") => parameter["value"] = json!(ids),
            Some("ListId") => parameter["value"] = json!(list),
            _ => {}
        }
    }
    let body = serde_json::to_vec(&body).unwrap();
    assert!(body.len() < 256 * 1000, "{} bytes", body.len());
    let answer = reqwest::Client::new()
        .post(h.intake_url.clone())
        .query(&[("code", sandbox::harness::WEBHOOK_KEY)])
        .header(
            "x-ms-dynamics-organization",
            h.dataverse.config().org_domain.clone(),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap());
    let processed = h.settle().await.unwrap();
    assert_eq!(processed, 1, "one message");
    let status = h
        .dataverse
        .row("lists", &list)
        .and_then(|row| row.get("crc_syncstatus")?.as_str().map(str::to_string))
        .unwrap_or_default();
    assert!(
        status.starts_with("all members compared"),
        "a full reconcile: {status}"
    );
    let group = h.group_of("lists", &list).expect("group");
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com", "cleo@example.com"]
    );
    assert_eq!(h.sqs_dead_letters().await.unwrap(), 0);
}
