//! The nightly orphan sweep (docs/architecture.md §10.6): groups the connector created whose
//! source was deleted or turned off while the event was lost are handled per the deletion
//! settings, behind the brake; everything else is left alone.

use super::fixtures::*;
use crate::domain::deletion::DeletionReason;
use crate::domain::receiver::ReceiverState;
use crate::domain::source::SourceKind;
use crate::ports::crm::SourceStatus;
use crate::usecases::source::GroupOutcome;
use crate::usecases::sweep::{SweepReport, sweep_orphans};

const LIST: SourceKind = SourceKind::MarketingList;

async fn sweep(w: &World) -> SweepReport {
    let settings = w.conn.settings().await.unwrap();
    sweep_orphans(&w.conn, &settings).await.unwrap()
}

fn receivers(n: usize) -> Vec<crate::domain::receiver::CurrentReceiver> {
    (0..n)
        .map(|i| receiver(&format!("r{i}@example.com"), ReceiverState::Active, None))
        .collect()
}

fn exists(w: &World, group: &str) -> bool {
    w.newsletter.state().groups.contains_key(group)
}

#[tokio::test]
async fn a_group_whose_source_was_deleted_while_the_event_was_lost_is_deleted() {
    let w = World::new();
    w.group("7", "Customers", receivers(3));

    let report = sweep(&w).await;

    assert!(!exists(&w, "7"));
    assert_eq!(report.connector_groups, 1);
    assert_eq!(report.orphans.len(), 1);
    assert_eq!(report.orphans[0].reason, DeletionReason::RecordDeleted);
    assert_eq!(report.orphans[0].outcome, GroupOutcome::Deleted);
}

#[tokio::test]
async fn groups_the_connector_did_not_create_or_that_a_synced_source_names_stay() {
    let w = World::new();
    w.group("7", "Made by hand", receivers(3))
        .group("8", "Customers", receivers(3))
        .source(list("l1", "Customers").group("8"));
    w.newsletter
        .state()
        .groups
        .get_mut("7")
        .unwrap()
        .created_by_connector = false;

    let report = sweep(&w).await;

    assert!(exists(&w, "7") && exists(&w, "8"));
    assert!(report.orphans.is_empty(), "{report:?}");
    assert_eq!(report.connector_groups, 1);
}

#[tokio::test]
async fn a_group_created_in_the_last_hour_is_left_for_the_next_sweep() {
    let w = World::new();
    w.group("7", "Customers", vec![]);
    let now = (w.conn.now)();
    w.newsletter.state().groups.get_mut("7").unwrap().created_at = Some(now - 600);

    assert!(sweep(&w).await.orphans.is_empty());
    assert!(exists(&w, "7"), "a sync may be about to store its id");

    w.newsletter.state().groups.get_mut("7").unwrap().created_at = Some(now - 7200);
    sweep(&w).await;
    assert!(!exists(&w, "7"));
}

#[tokio::test]
async fn a_group_whose_sync_was_turned_off_while_the_event_was_lost_goes_as_sync_off_would() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7").sync(false))
        .group("7", "Customers", receivers(3));

    let report = sweep(&w).await;

    assert!(!exists(&w, "7"));
    assert_eq!(report.orphans[0].reason, DeletionReason::SyncDisabled);
    assert_eq!(w.stored(LIST, "l1").unwrap().source.group_id, None);
    assert!(matches!(
        w.crm.state().statuses.get(&(LIST, "l1".to_string())),
        Some(SourceStatus::Synced { .. })
    ));
}

#[tokio::test]
async fn the_deletion_settings_decide_and_a_kept_group_is_not_touched() {
    let w = World::new()
        .setting("cleverreach:deletionsettings:deletecampaign", "false")
        .setting(
            "cleverreach:deletionsettings:deletedisablesynchronization",
            "false",
        );
    w.group("7", "Gone", receivers(3))
        .group("8", "Off", receivers(3))
        .source(list("l1", "Off").group("8").sync(false));

    let report = sweep(&w).await;

    assert!(exists(&w, "7") && exists(&w, "8"));
    assert_eq!(report.count(GroupOutcome::Kept), 1, "{report:?}");
    assert!(
        w.crm.state().writes.is_empty(),
        "{:?}",
        w.crm.state().writes
    );
}

#[tokio::test]
async fn a_big_orphan_is_held_by_the_brake_and_reported() {
    let w = World::new();
    w.group("7", "Customers", receivers(1000));

    let report = sweep(&w).await;

    assert!(exists(&w, "7"), "not deleted");
    assert_eq!(report.count(GroupOutcome::Held), 1);
    assert_eq!(
        report.orphans[0].held.map(|h| h.to_string()).as_deref(),
        Some(
            "would delete the group with its 1,000 active receivers; set crc_confirmremovals to yes to proceed"
        )
    );
}
