//! End to end: what a person's change and a small membership change cost in Dataverse requests
//! (docs/architecture.md §10.2). A request is a round trip: a `$batch` counts once (as
//! Dataverse's service protection counts it), whatever it holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::dataverse::RequestStats;
use sandbox::harness::{Harness, checklist};
use serde_json::json;

/// Round trips between two snapshots of the simulator's statistics, and the operations they
/// held, with the requests by kind (for the failure message).
fn round_trips(before: &RequestStats, after: &RequestStats) -> (u64, u64, String) {
    let operations = after.total() - before.total();
    let batches = after.batches - before.batches;
    let parts = after.batch_parts - before.batch_parts;
    let mut detail = Vec::new();
    for (key, n) in &after.requests {
        let was = before.count(key);
        if *n > was {
            detail.push(format!("{key} ×{}", n - was));
        }
    }
    (
        operations - parts + batches,
        operations,
        format!(
            "{batches} $batch holding {parts} operations; {}",
            detail.join(", ")
        ),
    )
}

/// A contact on a synced static list that is linked to a synced campaign, with a synced
/// dynamic list in use as well: the common case.
async fn common_case(h: &Harness) -> (String, String, String) {
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, list_group) = h
        .synced_static_list("Customers", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    let campaign = h
        .create(
            "campaigns",
            json!({ "name": "Spring", "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.action(
        &format!("campaigns({campaign})/Microsoft.Dynamics.CRM.AddItemCampaign"),
        json!({ "EntityId": list, "EntityName": "list" }),
    )
    .await
    .unwrap();
    let query = r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="emailaddress1" operator="like" value="%@example.com"/></filter></entity></fetch>"#;
    let dynamic = h
        .create(
            "lists",
            json!({ "listname": "Everyone", "createdfromcode": 2, "type": true, "query": query,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.settle().await.unwrap();
    let campaign_group = h.group_of("campaigns", &campaign).unwrap();
    let dynamic_group = h.group_of("lists", &dynamic).unwrap();
    for group in [&list_group, &campaign_group, &dynamic_group] {
        assert_eq!(h.active_emails(group), ["anna@example.com"]);
    }
    (anna, list_group, campaign_group)
}

#[tokio::test]
async fn a_contact_change_reaches_every_group_in_at_most_four_dataverse_requests() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let (anna, list_group, campaign_group) = common_case(&h).await;

    h.update("contacts", &anna, json!({ "firstname": "Anna-Lena" }))
        .await
        .unwrap();
    let before = h.dataverse.stats();
    h.settle().await.unwrap();
    let after = h.dataverse.stats();

    for group in [&list_group, &campaign_group] {
        let receiver = h.cleverreach.receiver(group, "anna@example.com").unwrap();
        assert_eq!(receiver.global_attributes["firstname"], "Anna-Lena");
    }
    let (requests, operations, detail) = round_trips(&before, &after);
    println!("a contact's change: {requests} requests, {operations} operations ({detail})");
    assert!(
        requests <= 4,
        "a contact's change cost {requests} Dataverse requests ({detail})"
    );
}

#[tokio::test]
async fn an_email_change_costs_at_most_four_dataverse_requests_and_moves_the_receiver() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let (anna, list_group, campaign_group) = common_case(&h).await;

    h.update(
        "contacts",
        &anna,
        json!({ "emailaddress1": "anna.new@example.com" }),
    )
    .await
    .unwrap();
    let before = h.dataverse.stats();
    h.settle().await.unwrap();
    let after = h.dataverse.stats();

    for group in [&list_group, &campaign_group] {
        assert_eq!(h.active_emails(group), ["anna.new@example.com"]);
    }
    let (requests, _, detail) = round_trips(&before, &after);
    assert!(
        requests <= 4,
        "an address change cost {requests} Dataverse requests ({detail})"
    );
}

#[tokio::test]
async fn forty_members_added_to_a_list_at_once_join_its_group_in_a_handful_of_requests() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let mut people = Vec::new();
    for i in 0..40 {
        people.push(
            h.contact(&format!("member{i:02}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    let (list, group) = h
        .synced_static_list("Customers", "contact", &[])
        .await
        .unwrap();
    assert!(h.active_emails(&group).is_empty());

    h.add_members(&list, "contact", &people).await.unwrap();
    let before = h.dataverse.stats();
    h.settle().await.unwrap();
    let after = h.dataverse.stats();

    let expected: Vec<String> = (0..40)
        .map(|i| format!("member{i:02}@example.com"))
        .collect();
    assert_eq!(h.active_emails(&group), expected);
    let (requests, operations, detail) = round_trips(&before, &after);
    println!("40 members added: {requests} requests, {operations} operations ({detail})");
    // One by one, each member cost several reads (160 and more for 40).
    assert!(
        requests <= 10,
        "40 members added at once cost {requests} Dataverse requests ({detail})"
    );
}
