//! A failure in every port: the use case stops with a retryable error (the message goes back to
//! the queue, the job resumes next run) and leaves nothing half-applied that a retry would not
//! repair.

use super::fixtures::*;
use crate::adapters::memory::{CrmPort, NewsletterPort};
use crate::domain::change::{AttrValue, CrmMessage, column};
use crate::domain::receiver::ReceiverState;
use crate::domain::recipient::{PersonEntity, RecipientKind};
use crate::domain::settings::Settings;
use crate::domain::source::SourceKind;
use crate::error::Retryable;
use crate::usecases::backflow::{Job, RunLimits, run_job};
use crate::usecases::people::on_people_change;
use crate::usecases::source::on_source_change;

/// A synced list with a member, and its group holding a stranger.
fn list_world() -> World {
    let w = World::new();
    w.source(list("l1", "Customers").group("7").resync_requested())
        .group(
            "7",
            "Customers",
            vec![receiver(
                "stranger@example.com",
                ReceiverState::Active,
                None,
            )],
        )
        .contact(person("c1", "anna@example.com"), &["l1"]);
    w
}

async fn resync(w: &World) -> Result<(), crate::usecases::SyncError> {
    let settings = w.conn.settings().await?;
    let event = event("list", CrmMessage::Update, "l1")
        .touch(column::RESYNC, AttrValue::Bool(true))
        .build();
    on_source_change(&w.conn, &settings, SourceKind::MarketingList, &event, None)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_failing_crm_or_cleverreach_port_fails_the_source_change_retryably_and_removes_no_one() {
    type Break = Box<dyn Fn(&World)>;
    let cases: Vec<(&str, Break)> = vec![
        (
            "settings",
            Box::new(|w: &World| w.crm.fail(CrmPort::Settings, 1)),
        ),
        (
            "sources",
            Box::new(|w: &World| w.crm.fail(CrmPort::Sources, 1)),
        ),
        (
            "members",
            Box::new(|w: &World| w.crm.fail(CrmPort::Members, 1)),
        ),
        (
            "groups",
            Box::new(|w: &World| w.newsletter.fail(NewsletterPort::Groups, 1)),
        ),
        (
            "receivers",
            Box::new(|w: &World| w.newsletter.fail(NewsletterPort::Receivers, 1)),
        ),
        (
            "blocklist",
            Box::new(|w: &World| w.newsletter.fail(NewsletterPort::BlockList, 1)),
        ),
    ];
    for (port, break_it) in cases {
        let w = list_world();
        break_it(&w);

        let err = resync(&w).await.unwrap_err();

        assert!(err.is_retryable(), "{port}: {err}");
        assert_eq!(
            w.active("7"),
            ["stranger@example.com"],
            "{port}: nobody removed before the failure"
        );
        assert!(
            w.stored(SourceKind::MarketingList, "l1")
                .unwrap()
                .resync_requested,
            "{port}: the resync request stays for the retry"
        );
        // The retry, with the port back, does the whole job.
        resync(&w).await.unwrap();
        assert_eq!(
            w.active("7"),
            ["anna@example.com"],
            "{port}: after the retry"
        );
    }
}

#[tokio::test]
async fn a_failing_people_directory_fails_the_people_change_retryably() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7"))
        .group("7", "Customers", vec![])
        .contact(person("c1", "anna@example.com"), &["l1"]);
    w.crm.fail(CrmPort::People, 1);
    let event = event("contact", CrmMessage::Update, "c1").build();

    let err = on_people_change(
        &w.conn,
        &Settings::default(),
        RecipientKind::Contact,
        std::slice::from_ref(&event),
    )
    .await
    .unwrap_err();

    assert!(err.is_retryable(), "{err}");
    assert!(w.active("7").is_empty());
    on_people_change(
        &w.conn,
        &Settings::default(),
        RecipientKind::Contact,
        &[event],
    )
    .await
    .unwrap();
    assert_eq!(w.active("7"), ["anna@example.com"]);
}

#[tokio::test]
async fn a_failing_backflow_port_stops_the_group_and_the_next_run_applies_the_event_once() {
    for port in [CrmPort::Persons, CrmPort::ReceiverStates, CrmPort::Cursors] {
        let w = World::new();
        w.source(list("l1", "Customers").group("7"))
            .group(
                "7",
                "Customers",
                vec![receiver(
                    "anna@example.com",
                    ReceiverState::Active,
                    Some(("c1", PersonEntity::Contact)),
                )],
            )
            .contact(person("c1", "anna@example.com"), &["l1"]);
        w.newsletter.unsubscribe(
            "7",
            &address("anna@example.com"),
            chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        );
        w.crm.fail(port, 1);

        let first = run_job(
            &w.conn,
            Job::ReceiverState,
            &Settings::default(),
            RunLimits::default(),
        )
        .await
        .unwrap();
        assert!(!first.complete, "{port:?}: {first:?}");
        assert_eq!(first.failed_groups.len(), 1, "{port:?}: {first:?}");

        run_job(
            &w.conn,
            Job::ReceiverState,
            &Settings::default(),
            RunLimits::default(),
        )
        .await
        .unwrap();
        assert_eq!(w.crm.state().receiver_states.len(), 1, "{port:?}");
    }
}

#[tokio::test]
async fn a_failing_signup_store_leaves_the_sign_up_for_the_next_run() {
    let w = World::new();
    w.source(
        list("l1", "Leads")
            .shape(RecipientKind::Lead, false)
            .group("7"),
    )
    .group("7", "Leads", vec![]);
    w.signed_up("7", "new@example.com", 1_700_000_000);
    w.crm.fail(CrmPort::Signups, 1);

    let first = run_job(
        &w.conn,
        Job::LeadSync,
        &Settings::default(),
        RunLimits::default(),
    )
    .await
    .unwrap();
    assert!(!first.complete);
    assert!(w.crm.state().leads_created.is_empty());

    run_job(
        &w.conn,
        Job::LeadSync,
        &Settings::default(),
        RunLimits::default(),
    )
    .await
    .unwrap();
    assert_eq!(w.crm.state().leads_created.len(), 1);
}

#[tokio::test]
async fn a_failing_retroactive_store_fails_the_fan_out_retryably() {
    use crate::adapters::memory::InMemoryMessageQueue;
    use crate::usecases::retroactive::{FanoutLimits, start_run};
    let w = World::new();
    w.source(list("l1", "Customers"));
    w.crm.fail(CrmPort::Retroactive, 1);
    let queue = InMemoryMessageQueue::new();

    let err = start_run(
        &w.conn,
        &queue,
        &Settings::default(),
        "l1",
        "op-1",
        FanoutLimits::default(),
    )
    .await
    .unwrap_err();

    assert!(err.is_retryable(), "{err}");
    assert!(queue.is_empty());
}
