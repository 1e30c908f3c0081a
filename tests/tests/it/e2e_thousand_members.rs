//! End to end: a synced static list gains 1,000 members in one AddListMembersList, both
//! simulators answering every request after 50 ms (docs/architecture.md §4, bulk member
//! changes). Over the scoped cap the change is one message and one full reconcile of the list's
//! group: a handful of Dataverse reads, not four or five per member.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::faults::FaultConfig;
use sandbox::harness::{Harness, checklist};
use std::time::Instant;

/// Dataverse requests made so far (tokens aside; a `$batch` counts once).
fn dataverse_requests(h: &Harness) -> u64 {
    let stats = h.dataverse.stats();
    stats.requests.values().sum::<u64>() - stats.batch_parts + stats.batches
}

#[tokio::test]
async fn a_list_gaining_a_thousand_members_at_once_is_one_message_and_a_handful_of_reads() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let consent = checklist(&[(0, 1)]);
    h.dataverse.bulk_contacts(0..1000, Some(&consent)).unwrap();
    let members: Vec<String> = (0..1000)
        .map(sandbox::dataverse::seeding::contact_id)
        .collect();
    let (list, group) = h
        .synced_static_list("Thousand", "contact", &[])
        .await
        .unwrap();
    assert!(h.active_emails(&group).is_empty());

    let latency = FaultConfig {
        latency_ms: 50,
        ..FaultConfig::off()
    };
    h.dataverse.faults().set(latency.clone());
    h.cleverreach.faults().set(latency);
    h.add_members(&list, "contact", &members).await.unwrap();
    let before = dataverse_requests(&h);
    let started = Instant::now();
    let processed = h.settle().await.unwrap();
    let took = started.elapsed();
    let requests = dataverse_requests(&h) - before;
    eprintln!(
        "1,000 members added at 50 ms: {processed} message(s), {requests} Dataverse requests, {:.2} s",
        took.as_secs_f64()
    );

    assert_eq!(processed, 1, "one message");
    // Settings, the list, one page of members, the status and group written back: the same
    // few whatever the number added (person by person it was 4-5 reads each).
    assert!(
        requests <= 8,
        "{requests} Dataverse requests for 1,000 members"
    );
    let status = h
        .dataverse
        .row("lists", &list)
        .and_then(|row| row.get("crc_syncstatus")?.as_str().map(str::to_string))
        .unwrap_or_default();
    assert!(
        status.starts_with("all members compared: 1000 added"),
        "a full reconcile, finished in one pass: {status}"
    );
    let expected: Vec<String> = (0..1000)
        .map(sandbox::dataverse::seeding::contact_email)
        .collect();
    let mut active = h.active_emails(&group);
    active.sort();
    assert_eq!(active, expected);
    assert!(h.dead_letters().is_empty());
}
