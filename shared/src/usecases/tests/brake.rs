//! The brake on mass removal (docs/architecture.md §2): a reconcile or a deletion that would
//! remove an unusual share and number of a group's active receivers writes no removal, says why
//! on the source, and goes ahead once an administrator confirms it.

use super::fixtures::*;
use crate::domain::change::{AttrValue, ChangeEvent, CrmMessage, column};
use crate::domain::receiver::ReceiverState;
use crate::domain::recipient::PersonEntity;
use crate::domain::source::SourceKind;
use crate::ports::crm::SourceStatus;
use crate::usecases::source::{GroupOutcome, SourceSync, on_source_change};

const LIST: SourceKind = SourceKind::MarketingList;
const HELD: &str =
    "would remove 1,000 of 1,000 receivers; set crc_confirmremovals to yes to proceed";

/// Group 7 with `n` active receivers `r<i>@example.com`, each carrying contact `c<i>`.
fn group_of(w: &World, n: usize) {
    let receivers = (0..n)
        .map(|i| {
            receiver(
                &format!("r{i}@example.com"),
                ReceiverState::Active,
                Some((&format!("c{i}"), PersonEntity::Contact)),
            )
        })
        .collect();
    w.group("7", "Customers", receivers);
}

/// Contacts `c<i>` for `i` in `range`, members of list l1 (the same people as the receivers).
fn members(w: &World, range: std::ops::Range<usize>) {
    for i in range {
        w.contact(
            person(&format!("c{i}"), &format!("r{i}@example.com")),
            &["l1"],
        );
    }
}

fn resync() -> ChangeEvent {
    event("list", CrmMessage::Update, "l1")
        .touch(column::RESYNC, AttrValue::Bool(true))
        .build()
}

async fn change(w: &World, event: ChangeEvent) -> SourceSync {
    let settings = w.conn.settings().await.unwrap();
    on_source_change(&w.conn, &settings, LIST, &event, None)
        .await
        .unwrap()
}

fn last_error(w: &World) -> Option<String> {
    match w.crm.state().statuses.get(&(LIST, "l1".to_string())) {
        Some(SourceStatus::Failed { error }) => Some(error.clone()),
        _ => None,
    }
}

fn removal_calls(w: &World) -> usize {
    let st = w.newsletter.state();
    st.calls.iter().filter(|c| c.starts_with("remove")).count()
}

#[tokio::test]
async fn a_group_of_a_thousand_whose_member_read_returns_nothing_loses_no_one_and_the_source_says_why()
 {
    let w = World::new();
    w.source(list("l1", "Customers").group("7"));
    group_of(&w, 1000);

    let sync = change(&w, resync()).await;

    assert_eq!(w.active("7").len(), 1000, "nobody removed");
    assert_eq!(removal_calls(&w), 0, "no removal call was made");
    let error = last_error(&w).expect("the last error is written");
    assert!(error.ends_with(HELD), "{error}");
    assert_eq!(sync.held.map(|h| h.to_string()).as_deref(), Some(HELD));
}

#[tokio::test]
async fn a_confirmation_on_the_source_lets_the_removal_through_once_and_is_reset() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7").removals_confirmed());
    group_of(&w, 1000);

    let confirm = event("list", CrmMessage::Update, "l1")
        .touch(column::CONFIRM_REMOVALS, AttrValue::Bool(true))
        .build();
    let sync = change(&w, confirm).await;

    assert_eq!(sync.outcome, GroupOutcome::Reconciled);
    assert!(w.active("7").is_empty(), "the confirmed removal went ahead");
    assert!(
        !w.stored(LIST, "l1").unwrap().removals_confirmed,
        "the confirmation is reset"
    );
    assert_eq!(last_error(&w), None);

    // Once: the next mass removal is held again.
    group_of(&w, 1000);
    change(&w, resync()).await;
    assert_eq!(w.active("7").len(), 1000);
    assert!(last_error(&w).unwrap().ends_with(HELD));
}

#[tokio::test]
async fn ordinary_removals_are_not_held() {
    // 150 of 1000 leave: more than 100, but 15 %.
    let w = World::new();
    w.source(list("l1", "Customers").group("7"));
    group_of(&w, 1000);
    members(&w, 150..1000);
    change(&w, resync()).await;
    assert_eq!(w.active("7").len(), 850);
    assert_eq!(last_error(&w), None);

    // A small group emptied: every one of 60, but not more than 100.
    let w = World::new();
    w.source(list("l1", "Customers").group("7"));
    group_of(&w, 60);
    change(&w, resync()).await;
    assert!(w.active("7").is_empty());
    assert_eq!(last_error(&w), None);
}

#[tokio::test]
async fn the_thresholds_come_from_the_settings_table() {
    let w = World::new()
        .setting("cleverreach:safety:maxremovals", "1000")
        .setting("cleverreach:safety:maxremovalpercent", "20");
    w.source(list("l1", "Customers").group("7"));
    group_of(&w, 1000);
    change(&w, resync()).await;
    assert!(w.active("7").is_empty(), "1,000 is not more than 1,000");

    let w = World::new().setting("cleverreach:safety:maxremovals", "10");
    w.source(list("l1", "Customers").group("7"));
    group_of(&w, 60);
    change(&w, resync()).await;
    assert_eq!(w.active("7").len(), 60, "60 of 60 is more than 10");
    assert!(last_error(&w).unwrap().contains("would remove 60 of 60"));
}

#[tokio::test]
async fn while_the_removals_are_held_new_members_are_still_added() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7"));
    group_of(&w, 1000);
    w.contact(person("n1", "new@example.com"), &["l1"]);

    change(&w, resync()).await;

    let active = w.active("7");
    assert_eq!(active.len(), 1001);
    assert!(active.contains(&"new@example.com".to_string()));
    assert!(
        last_error(&w)
            .unwrap()
            .contains("would remove 1,000 of 1,000")
    );
}

#[tokio::test]
async fn turning_sync_off_does_not_delete_a_big_group_until_confirmed() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7").sync(false));
    group_of(&w, 1000);
    let off = event("list", CrmMessage::Update, "l1")
        .touch(column::SYNC_FLAG, AttrValue::Bool(false))
        .build();

    let sync = change(&w, off).await;

    assert_eq!(sync.outcome, GroupOutcome::Held);
    assert!(w.newsletter.state().groups.contains_key("7"), "group kept");
    assert!(w.stored(LIST, "l1").unwrap().source.group_id.is_some());
    let error = last_error(&w).unwrap();
    assert!(
        error.ends_with(
            "would delete the group with its 1,000 active receivers; set crc_confirmremovals to yes to proceed"
        ),
        "{error}"
    );

    // The administrator confirms: the change of the column starts the deletion again.
    w.crm
        .state()
        .sources
        .get_mut(&(LIST, "l1".to_string()))
        .unwrap()
        .removals_confirmed = true;
    let confirm = event("list", CrmMessage::Update, "l1")
        .touch(column::CONFIRM_REMOVALS, AttrValue::Bool(true))
        .build();
    let sync = change(&w, confirm).await;

    assert_eq!(sync.outcome, GroupOutcome::Deleted);
    assert!(!w.newsletter.state().groups.contains_key("7"));
    let stored = w.stored(LIST, "l1").unwrap();
    assert_eq!(stored.source.group_id, None);
    assert!(!stored.removals_confirmed, "the confirmation is reset");
}

#[tokio::test]
async fn a_deleted_sources_big_group_is_kept_because_no_one_can_confirm_on_a_deleted_record() {
    let w = World::new();
    group_of(&w, 1000);
    let delete = event("list", CrmMessage::Delete, "l1")
        .before(column::GROUP_ID, AttrValue::Text("7".into()))
        .build();

    let sync = change(&w, delete).await;

    assert_eq!(sync.outcome, GroupOutcome::Held);
    assert!(w.newsletter.state().groups.contains_key("7"));
}

#[tokio::test]
async fn a_small_group_is_deleted_as_the_settings_say() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7").sync(false));
    group_of(&w, 100);
    let off = event("list", CrmMessage::Update, "l1")
        .touch(column::SYNC_FLAG, AttrValue::Bool(false))
        .build();

    let sync = change(&w, off).await;

    assert_eq!(sync.outcome, GroupOutcome::Deleted);
}
