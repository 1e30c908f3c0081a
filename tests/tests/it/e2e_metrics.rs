//! End to end: the metrics line of a sync (docs/architecture.md §13) carries the counts of the
//! reconcile and the requests each API really answered (counted by the simulators).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::harness::Harness;
use shared::adapters::dataverse::crm::DataverseCrm;
use shared::domain::change::ChangeEvent;
use shared::domain::routing::{QueueFamily, message_group};
use shared::handlers::sync_worker::{InboundMessage, WorkerDeps, handle_messages};
use shared::metrics::{CallMeters, KeptMetrics};
use shared::usecases::Connector;
use std::sync::Arc;

#[tokio::test]
async fn a_syncs_metrics_count_its_changes_and_the_requests_each_api_answered() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let mut ids = Vec::new();
    for who in ["anna", "bert", "carl"] {
        ids.push(
            h.contact(&format!("{who}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    let (list, group) = h
        .synced_static_list("Customers", "contact", &ids)
        .await
        .unwrap();
    h.cleverreach
        .add_stranger(&group, "stranger@example.com", true, &[])
        .unwrap();

    // A worker on the connector's own clients, with their request counters.
    let crm = Arc::new(DataverseCrm::new(h.crm_client().clone()));
    let newsletter = Arc::new(h.newsletter().clone());
    let kept = Arc::new(KeptMetrics::new());
    let worker = WorkerDeps::new(
        QueueFamily::MarketingList,
        Connector::from_shared(crm.clone(), newsletter.clone()),
    )
    .with_metrics(
        kept.clone(),
        Some(CallMeters {
            dataverse: crm,
            cleverreach: newsletter,
        }),
    );
    // Settings and tokens read once before, so that the sync's requests are its own.
    worker.conn.settings().await.unwrap();
    let dataverse_before = h.dataverse.stats().total();
    let cleverreach_before = h.cleverreach.stats().total();

    let event = ChangeEvent::resync_request("list", &list, "night-1", 0);
    let failed = handle_messages(
        &worker,
        vec![InboundMessage {
            message_id: "m1".into(),
            body: serde_json::to_string(&event).unwrap(),
            group: Some(message_group(&event)),
        }],
    )
    .await;
    assert!(failed.is_empty());

    let all = kept.all();
    assert_eq!(all.len(), 1, "one line per sync: {all:?}");
    let m = &all[0];
    assert_eq!(
        (m.outcome, m.full, m.added, m.removed, m.held),
        ("synced", true, 0, 1, false),
        "{m:?}"
    );
    assert_eq!(m.group_id.as_deref(), Some(group.as_str()));
    assert_eq!(
        m.dataverse_calls,
        h.dataverse.stats().total() - dataverse_before,
        "{m:?}"
    );
    assert_eq!(
        m.cleverreach_calls,
        h.cleverreach.stats().total() - cleverreach_before,
        "{m:?}"
    );
    assert!(m.dataverse_calls > 0 && m.cleverreach_calls > 0, "{m:?}");
}
