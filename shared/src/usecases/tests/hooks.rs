//! The event hooks' use case on the fakes: registrations follow the groups, the health check
//! repairs what is missing or left over, a delivery is applied as the scheduled job would.

use super::fixtures::*;
use crate::adapters::memory::{InMemoryChangeQueue, InMemoryHookStore};
use crate::domain::change::{AttrValue, CrmMessage, column};
use crate::domain::checklist::{ChoiceState, NewsletterTypeId};
use crate::domain::hooks::{HookEvent, HookEventKind};
use crate::domain::receiver::ReceiverState;
use crate::domain::recipient::{PersonEntity, RecipientKind};
use crate::domain::routing::QueueFamily;
use crate::domain::source::SourceKind;
use crate::ports::secrets::HookTokenStore;
use crate::usecases::backflow;
use crate::usecases::backflow::model::Outcome;
use crate::usecases::hooks::{self, Hooks};
use crate::usecases::source::on_source_change;
use std::sync::Arc;

const URL: &str = "https://events.example.com/";

fn with_hooks(w: World) -> (World, Arc<InMemoryHookStore>) {
    let store = Arc::new(InMemoryHookStore::new());
    let hooks = Hooks {
        registry: w.newsletter.clone(),
        tokens: store.clone(),
        url: URL.into(),
    };
    let conn = w.conn.clone().with_hooks(hooks);
    (World { conn, ..w }, store)
}

fn registered_groups(w: &World) -> Vec<String> {
    w.newsletter
        .state()
        .hooks
        .iter()
        .map(|(g, _, _)| g.clone())
        .collect()
}

#[tokio::test]
async fn a_group_created_for_a_source_gets_a_registration_and_its_token_is_stored() {
    let (w, store) = with_hooks(World::new());
    w.source(list("l1", "Customers"))
        .contact(person("c1", "anna@example.com"), &["l1"]);
    let settings = w.conn.settings().await.unwrap();
    let sync = on_source_change(
        &w.conn,
        &settings,
        SourceKind::MarketingList,
        &event("list", CrmMessage::Create, "l1").build(),
        None,
    )
    .await
    .unwrap();
    let group = sync.group.unwrap().as_str().to_string();
    assert_eq!(registered_groups(&w), vec![group.clone()]);
    let tokens = store.hook_tokens().await.unwrap();
    assert!(tokens.call_tokens.contains_key(&group));
    assert!(tokens.verify.is_some());
}

#[tokio::test]
async fn a_deleted_group_and_a_kept_group_lose_their_registration_and_token() {
    for keep in [false, true] {
        let mut w = World::new();
        if keep {
            w = w.setting(
                "cleverreach:deletionsettings:deletedisablesynchronization",
                "false",
            );
        }
        let (w, store) = with_hooks(w);
        w.source(list("l1", "Customers").group("7").sync(false))
            .group("7", "Customers", vec![]);
        hooks::register(&w.conn, "7").await.unwrap();
        let settings = w.conn.settings().await.unwrap();
        on_source_change(
            &w.conn,
            &settings,
            SourceKind::MarketingList,
            &event("list", CrmMessage::Update, "l1")
                .touch(column::SYNC_FLAG, AttrValue::Bool(false))
                .build(),
            None,
        )
        .await
        .unwrap();
        assert!(registered_groups(&w).is_empty(), "keep = {keep}");
        assert!(store.hook_tokens().await.unwrap().call_tokens.is_empty());
    }
}

#[tokio::test]
async fn the_health_check_registers_a_missing_hook_and_removes_one_of_an_unsynced_group() {
    let (w, store) = with_hooks(World::new());
    w.source(list("l1", "Customers").group("7"))
        .source(list("l2", "Old").group("8").sync(false))
        .group("7", "Customers", vec![])
        .group("8", "Old", vec![]);
    // Group 8 had one from when it was synced; group 7's was lost in CleverReach.
    hooks::register(&w.conn, "8").await.unwrap();
    // Someone else's registration is not ours to touch.
    w.newsletter
        .state()
        .hooks
        .push(("9".into(), "https://other.example.com/".into(), "t".into()));

    let report = hooks::check(&w.conn).await.unwrap();

    assert_eq!(
        (report.wanted, report.registered, report.removed),
        (1, 1, 1)
    );
    let mut groups = registered_groups(&w);
    groups.sort();
    assert_eq!(groups, ["7", "9"]);
    let tokens = store.hook_tokens().await.unwrap();
    assert!(tokens.call_tokens.contains_key("7"));
    assert!(!tokens.call_tokens.contains_key("8"));

    // In place now: a second check changes nothing.
    let calls_before = w.newsletter.state().calls.len();
    let again = hooks::check(&w.conn).await.unwrap();
    assert_eq!((again.in_place, again.registered, again.removed), (1, 0, 0));
    assert_eq!(
        w.newsletter.state().calls.len(),
        calls_before + 1,
        "one list call"
    );
}

#[tokio::test]
async fn a_registration_whose_token_was_lost_is_made_again() {
    let (w, store) = with_hooks(World::new());
    w.source(list("l1", "Customers").group("7"))
        .group("7", "Customers", vec![]);
    hooks::register(&w.conn, "7").await.unwrap();
    store.forget_call_token("7").await.unwrap();

    let report = hooks::check(&w.conn).await.unwrap();

    assert_eq!(report.registered, 1);
    assert_eq!(registered_groups(&w), ["7"], "replaced, not doubled");
    assert!(
        store
            .hook_tokens()
            .await
            .unwrap()
            .call_tokens
            .contains_key("7")
    );
}

fn anna_in_two_groups() -> World {
    let w = World::new();
    let anna = Some(("c1", PersonEntity::Contact));
    w.source(list("l1", "Customers").group("7").checklist(&[(0, 1)]))
        .source(list("l2", "Partners").group("8").checklist(&[(0, 1)]))
        .group(
            "7",
            "Customers",
            vec![receiver("anna@example.com", ReceiverState::Active, anna)],
        )
        .group(
            "8",
            "Partners",
            vec![receiver("anna@example.com", ReceiverState::Active, anna)],
        )
        .contact(
            person("c1", "anna@example.com").checklist(&[(0, 1)]),
            &["l1", "l2"],
        );
    w
}

fn unsubscribed(group: &str, receiver: &str) -> HookEvent {
    HookEvent {
        kind: HookEventKind::Unsubscribed,
        group_id: group.into(),
        receiver_id: receiver.into(),
        received_at_ms: 1_800_000_000_000,
    }
}

#[tokio::test]
async fn an_unsubscribe_delivery_says_no_in_the_crm_and_queues_the_person_everywhere() {
    let (w, _) = with_hooks(anna_in_two_groups());
    let queue = Arc::new(InMemoryChangeQueue::new());
    let conn = w.conn.clone().with_follow_up(queue.clone());
    w.newsletter.unsubscribe(
        "7",
        &address("anna@example.com"),
        chrono::DateTime::from_timestamp(1_799_999_990, 0).unwrap(),
    );
    let settings = conn.settings().await.unwrap();

    let outcome =
        backflow::events::on_event(&conn, &settings, &unsubscribed("7", "anna@example.com"))
            .await
            .unwrap();

    assert_eq!(outcome, Outcome::Applied);
    let checklist = w.crm.state().recipients[&(RecipientKind::Contact, "c1".to_string())]
        .checklist
        .clone();
    assert_eq!(checklist.state_of(NewsletterTypeId(0)), ChoiceState::No);
    assert_eq!(w.crm.state().receiver_states.len(), 1);
    let queued = queue.pending();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].family, QueueFamily::Contact);
    assert_eq!(queued[0].event.record_id, "c1");

    // The scheduled job reading the same unsubscribe later finds it done.
    let again =
        backflow::events::on_event(&conn, &settings, &unsubscribed("7", "anna@example.com"))
            .await
            .unwrap();
    assert_eq!(again, Outcome::AlreadyDone);
}

#[tokio::test]
async fn an_unsubscribe_delivery_of_a_receiver_active_again_changes_nothing() {
    let (w, _) = with_hooks(anna_in_two_groups());
    let settings = w.conn.settings().await.unwrap();
    let outcome =
        backflow::events::on_event(&w.conn, &settings, &unsubscribed("7", "anna@example.com"))
            .await
            .unwrap();
    assert_eq!(outcome, Outcome::Ignored);
    assert!(w.crm.state().receiver_states.is_empty());
}

#[tokio::test]
async fn a_delivery_for_a_group_the_connector_does_not_manage_is_ignored() {
    let (w, _) = with_hooks(anna_in_two_groups());
    let settings = w.conn.settings().await.unwrap();
    let outcome =
        backflow::events::on_event(&w.conn, &settings, &unsubscribed("99", "anna@example.com"))
            .await
            .unwrap();
    assert_eq!(outcome, Outcome::Ignored);
}

#[tokio::test]
async fn a_sign_up_delivery_makes_a_lead_as_the_scheduled_job_does() {
    let (w, _) = with_hooks(World::new());
    w.source(list("l1", "Customers").group("7").checklist(&[(0, 1)]))
        .group("7", "Customers", vec![]);
    w.signed_up("7", "new@example.com", 1_799_999_000);
    let settings = w.conn.settings().await.unwrap();
    let event = HookEvent {
        kind: HookEventKind::Subscribed,
        ..unsubscribed("7", "new@example.com")
    };

    let outcome = backflow::events::on_event(&w.conn, &settings, &event)
        .await
        .unwrap();

    assert_eq!(outcome, Outcome::Applied);
    assert!(
        w.crm
            .state()
            .recipients
            .keys()
            .any(|(kind, _)| *kind == RecipientKind::Lead)
    );
}
