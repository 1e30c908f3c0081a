//! End to end: the nightly resync's orphan sweep. A list deleted and another one's sync turned
//! off, both without a webhook (as when Dataverse gave up on the event), leave groups behind;
//! the nightly run finds them by the connector's creation marker and deletes them per the
//! default settings, while a synced list's group, a group made by hand and a group another
//! CRM organisation's connector made in the same CleverReach account stay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::Method;
use sandbox::harness::Harness;
use serde_json::json;
use shared::adapters::cleverreach::{CleverReachClient, CleverReachConfig, InMemoryTokenStore};
use shared::domain::routing::QueueFamily;
use shared::handlers::resync::{ResyncDeps, ResyncRequest, resync_all, sweep};
use shared::secret::Secret;
use std::sync::Arc;

/// Changes a row without firing webhooks (the event is lost).
async fn quietly(h: &Harness, method: Method, path: &str, body: Option<serde_json::Value>) {
    let reply = h
        .admin
        .send(
            method,
            path,
            &[("MSCRM.BypassCustomPluginExecution", "true")],
            body.as_ref(),
        )
        .await
        .unwrap();
    assert!(
        reply.status < 300,
        "{path}: {} {}",
        reply.status,
        reply.text
    );
}

/// A CleverReach client of another CRM organisation sharing the account.
async fn other_organisation(h: &Harness) -> CleverReachClient<Arc<InMemoryTokenStore>> {
    let sim = sandbox::cleverreach::CleverReachSimConfig::default();
    let client = CleverReachClient::new(
        CleverReachConfig::new(
            url::Url::parse(&h.cleverreach.base_url()).unwrap(),
            sim.client_id.clone(),
            Secret::new(sim.client_secret.clone()),
            "Dynamics 365 (test-org.crm4.dynamics.com)",
        ),
        Arc::new(InMemoryTokenStore::new()),
    )
    .unwrap();
    client.connect_client_credentials().await.unwrap();
    client
}

#[tokio::test]
async fn the_nightly_run_deletes_groups_whose_source_went_without_an_event_and_leaves_the_rest() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let mut lists = Vec::new();
    for name in ["Deleted quietly", "Turned off quietly", "Still synced"] {
        let anna = h
            .contact(&format!("anna.{}@example.com", lists.len()), &[(0, 1)])
            .await
            .unwrap();
        lists.push(
            h.synced_static_list(name, "contact", &[anna])
                .await
                .unwrap(),
        );
    }
    let [
        (deleted, deleted_group),
        (off, off_group),
        (synced, synced_group),
    ] = [lists[0].clone(), lists[1].clone(), lists[2].clone()];
    let by_hand = h
        .newsletter()
        .create_group("Made by hand", false, "")
        .await
        .unwrap();
    // (a group the connector made counts as made by hand once its marker line is gone)
    h.newsletter()
        .set_receiver_info(&by_hand.id, "our own list")
        .await
        .unwrap();
    let other = other_organisation(&h)
        .await
        .create_group("Test org's list", false, "")
        .await
        .unwrap();

    quietly(&h, Method::DELETE, &format!("lists({deleted})"), None).await;
    quietly(
        &h,
        Method::PATCH,
        &format!("lists({off})"),
        Some(json!({ "crc_syncwithcleverreach": false })),
    )
    .await;
    h.settle().await.unwrap();
    assert!(
        h.cleverreach.group(&deleted_group).is_some(),
        "the event was lost"
    );
    assert!(
        h.cleverreach.group(&off_group).is_some(),
        "the event was lost"
    );

    // The nightly run, two hours later (the sweep leaves groups younger than an hour alone).
    let mut conn = h.worker(QueueFamily::MarketingList).unwrap().conn.clone();
    conn.now = || chrono::Utc::now().timestamp() + 7200;
    let deps = ResyncDeps {
        sources: conn.sources.clone(),
        queue: h.queue.clone(),
        sweep: Some(conn),
    };
    let request = ResyncRequest::default();
    let queued = resync_all(&deps, &request, "night-1", 0).await.unwrap();
    let orphans = sweep(&deps, &request, queued.queued)
        .await
        .unwrap()
        .unwrap();
    h.settle().await.unwrap();

    assert_eq!(
        (orphans.deleted, orphans.kept, orphans.held),
        (2, 0, 0),
        "{orphans:?}"
    );
    assert!(h.cleverreach.group(&deleted_group).is_none());
    assert!(h.cleverreach.group(&off_group).is_none());
    assert_eq!(
        h.group_of("lists", &off),
        None,
        "the turned-off list forgets its group"
    );
    assert!(h.cleverreach.group(&synced_group).is_some());
    assert_eq!(h.active_emails(&synced_group), ["anna.2@example.com"]);
    assert!(h.cleverreach.group(&by_hand.id).is_some(), "made by hand");
    assert!(
        h.cleverreach.group(&other.id).is_some(),
        "another organisation's"
    );
    assert!(h.group_of("lists", &synced).is_some());
    assert!(h.dead_letters().is_empty(), "{:?}", h.dead_letters());
}
