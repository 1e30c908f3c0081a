//! End to end: a first sync that cannot finish in one invocation goes on in follow-up messages,
//! each pass reading the members from where the one before stopped (docs/architecture.md §4
//! "Deadlines"). Dataverse answers pages of 100 after 100 ms each, so 2,000 members take 2 s to
//! read, and every worker batch runs as an invocation of 2 s (stopping 0.5 s before its end).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::dataverse::DataverseSimConfig;
use sandbox::dataverse::seeding::contact_email;
use sandbox::faults::FaultConfig;
use sandbox::harness::{Harness, HarnessOptions, checklist};
use std::time::Duration;

const MEMBERS: usize = 2_000;
const PAGE: usize = 100;

fn status(h: &Harness, set: &str, id: &str) -> String {
    h.dataverse
        .row(set, id)
        .and_then(|row| row.get("crc_syncstatus")?.as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn harness() -> Harness {
    let h = Harness::start_with(
        DataverseSimConfig {
            max_page_size: PAGE,
            ..DataverseSimConfig::default()
        },
        Default::default(),
        HarnessOptions {
            invocation_time: Some(Duration::from_secs(2)),
            ..HarnessOptions::default()
        },
    )
    .await
    .unwrap();
    h.install(&[]).await.unwrap();
    let consent = checklist(&[(0, 1)]);
    h.dataverse
        .bulk_contacts(0..MEMBERS, Some(&consent))
        .unwrap();
    h
}

fn member_pages(h: &Harness) -> u64 {
    h.dataverse
        .stats()
        .count("GET lists/listcontact_association")
}

fn slow_dataverse(h: &Harness) {
    h.dataverse.faults().set(FaultConfig {
        latency_ms: 100,
        ..FaultConfig::off()
    });
}

fn assert_every_member_once(h: &Harness, group: &str) {
    let mut active = h.active_emails(group);
    active.sort();
    let mut expected: Vec<String> = (0..MEMBERS).map(contact_email).collect();
    expected.sort();
    assert_eq!(active.len(), MEMBERS, "every member once");
    assert_eq!(active, expected);
}

#[tokio::test]
async fn a_first_sync_longer_than_an_invocation_reads_each_member_page_once_across_its_passes() {
    let h = harness().await;
    let list = h
        .create(
            "lists",
            serde_json::json!({ "listname": "Big", "createdfromcode": 2, "type": false,
                                "crc_checklist": checklist(&[(0, 1)]),
                                "crc_syncwithcleverreach": false }),
        )
        .await
        .unwrap();
    // The list's creation is worked before sync is on: one reconcile follows, not two.
    h.settle().await.unwrap();
    h.dataverse.bulk_list_members(&list, 0..MEMBERS).unwrap();
    slow_dataverse(&h);
    let pages_before = member_pages(&h);

    h.update(
        "lists",
        &list,
        serde_json::json!({ "crc_syncwithcleverreach": true }),
    )
    .await
    .unwrap();
    let processed = h.settle().await.unwrap();

    let pages = member_pages(&h) - pages_before;
    let group = h.group_of("lists", &list).expect("the group was created");
    let passes = processed as u64;
    eprintln!("{MEMBERS} members in pages of {PAGE}: {processed} messages, {pages} member pages");
    assert!(
        passes >= 2,
        "did not need a continuation: {processed} message(s)"
    );
    // Every page once, and per continuation at most two again: the page where the pass before
    // stopped (to go on after the members it took) and the one it had read ahead.
    let once = (MEMBERS / PAGE) as u64;
    assert!(
        pages <= once + 2 * (passes - 1),
        "{pages} member pages in {passes} passes: members were read again"
    );
    assert_every_member_once(&h, &group);
    assert_eq!(
        status(&h, "lists", &list),
        format!(
            "all members compared: {MEMBERS} added, 0 updated, 0 e-mail changed, 0 removed, 0 unchanged"
        ),
        "the status of one pass"
    );
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn a_campaign_of_two_lists_read_side_by_side_goes_on_in_each_list_where_it_stopped() {
    // Two lists of 1,200 sharing 400 (members 0..1200 and 800..2000): 24 pages, 2,400 rows.
    let h = harness().await;
    let campaign = h
        .create(
            "campaigns",
            serde_json::json!({ "name": "Big campaign", "crc_checklist": checklist(&[(0, 1)]),
                                "crc_syncwithcleverreach": false }),
        )
        .await
        .unwrap();
    for (name, range) in [("A", 0..1_200), ("B", 800..MEMBERS)] {
        let list = h
            .create(
                "lists",
                serde_json::json!({ "listname": name, "createdfromcode": 2, "type": false,
                                    "crc_syncwithcleverreach": false }),
            )
            .await
            .unwrap();
        h.dataverse.bulk_list_members(&list, range).unwrap();
        h.action(
            &format!("campaigns({campaign})/Microsoft.Dynamics.CRM.AddItemCampaign"),
            serde_json::json!({ "EntityId": list, "EntityName": "list" }),
        )
        .await
        .unwrap();
    }
    h.settle().await.unwrap();
    slow_dataverse(&h);
    let pages_before = member_pages(&h);

    h.update(
        "campaigns",
        &campaign,
        serde_json::json!({ "crc_syncwithcleverreach": true }),
    )
    .await
    .unwrap();
    let processed = h.settle().await.unwrap();

    let pages = member_pages(&h) - pages_before;
    let passes = processed as u64;
    eprintln!("two lists of 1,200 in pages of {PAGE}: {processed} messages, {pages} member pages");
    assert!(
        passes >= 2,
        "did not need a continuation: {processed} message(s)"
    );
    // 24 pages once, and per continuation at most two of each list under way again (where it
    // stopped, and the page read ahead).
    assert!(
        pages <= 24 + 4 * (passes - 1),
        "{pages} member pages in {passes} passes: members were read again"
    );
    let group = h
        .group_of("campaigns", &campaign)
        .expect("the group was created");
    assert_every_member_once(&h, &group);
    assert_eq!(
        status(&h, "campaigns", &campaign),
        format!(
            "all members compared: {MEMBERS} added, 0 updated, 0 e-mail changed, 0 removed, 0 unchanged"
        ),
        "the status of one pass"
    );
    assert!(h.dead_letters().is_empty());
}
