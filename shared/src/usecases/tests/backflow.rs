use super::fixtures::*;
use crate::domain::checklist::{ChoiceState, NewsletterTypeId};
use crate::domain::receiver::ReceiverState;
use crate::domain::recipient::{PersonEntity, RecipientKind};
use crate::domain::settings::Settings;
use crate::ports::crm::ReceiverEvent;
use crate::usecases::backflow::{Job, RunLimits, run_job};
use chrono::DateTime;

fn at(secs: i64) -> chrono::DateTime<chrono::Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

fn anna_unsubscribed_from_group_7() -> World {
    let w = World::new();
    let anna = Some(("c1", PersonEntity::Contact));
    w.source(
        list("l1", "Customers")
            .group("7")
            .checklist(&[(0, 1), (1, 2)]),
    )
    .group(
        "7",
        "Customers",
        vec![receiver("anna@example.com", ReceiverState::Active, anna)],
    )
    .contact(
        person("c1", "anna@example.com").checklist(&[(0, 1), (1, 1)]),
        &["l1"],
    );
    w.newsletter
        .unsubscribe("7", &address("anna@example.com"), at(1_700_000_000));
    w
}

fn checklist_of(w: &World, id: &str) -> crate::domain::checklist::Checklist {
    w.crm.state().recipients[&(RecipientKind::Contact, id.to_string())]
        .checklist
        .clone()
}

#[tokio::test]
async fn an_unsubscribe_sets_the_groups_types_to_no_and_leaves_one_receiver_state_row() {
    let w = anna_unsubscribed_from_group_7();

    let summary = run_job(
        &w.conn,
        Job::ReceiverState,
        &Settings::default(),
        RunLimits::default(),
    )
    .await
    .unwrap();

    assert!(summary.complete, "{summary:?}");
    assert_eq!(summary.receiver_states_created, 1);
    let checklist = checklist_of(&w, "c1");
    assert_eq!(checklist.state_of(NewsletterTypeId(0)), ChoiceState::No);
    assert_eq!(
        checklist.state_of(NewsletterTypeId(1)),
        ChoiceState::Yes,
        "a type the group does not send is left alone"
    );
    let rows: Vec<_> = w.crm.state().receiver_states.values().cloned().collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event, ReceiverEvent::Unsubscribed);
    assert_eq!(
        rows[0].recipient.as_ref().map(|r| r.id.as_str()),
        Some("c1")
    );
}

#[tokio::test]
async fn the_same_unsubscribe_read_again_changes_nothing_the_second_time() {
    let w = anna_unsubscribed_from_group_7();
    let limits = RunLimits::default();
    run_job(&w.conn, Job::ReceiverState, &Settings::default(), limits)
        .await
        .unwrap();
    // A new pass from the beginning reads the same event.
    w.crm.state().cursors.clear();
    let writes_before = w.crm.state().writes.len();

    let again = run_job(&w.conn, Job::ReceiverState, &Settings::default(), limits)
        .await
        .unwrap();

    assert_eq!(again.applied, 0, "{again:?}");
    assert_eq!(again.already_done, 1);
    assert_eq!(w.crm.state().receiver_states.len(), 1);
    assert_eq!(w.crm.state().writes.len(), writes_before);
}

#[tokio::test]
async fn a_bounce_deactivates_the_contact_only_when_the_settings_say_so() {
    for (disable, expect_active) in [(false, true), (true, false)] {
        let w = World::new();
        w.source(list("l1", "Customers").group("7"))
            .group("7", "Customers", vec![])
            .contact(person("c1", "anna@example.com"), &["l1"]);
        w.bounced("7", "anna@example.com", "c1", 1_700_000_000);
        let mut settings = Settings::default();
        settings.bounce.disable_contact = disable;

        run_job(&w.conn, Job::ReceiverState, &settings, RunLimits::default())
            .await
            .unwrap();

        let active = w.crm.state().recipients[&(RecipientKind::Contact, "c1".into())].active;
        assert_eq!(active, expect_active, "disablecontact = {disable}");
        assert_eq!(w.crm.state().receiver_states.len(), 1);
    }
}

#[tokio::test]
async fn a_sign_up_in_cleverreach_becomes_one_lead_with_the_groups_types() {
    let w = World::new();
    w.source(
        list("l1", "Leads")
            .shape(RecipientKind::Lead, false)
            .group("7"),
    )
    .group("7", "Leads", vec![]);
    w.signed_up("7", "new@example.com", 1_700_000_000);

    for _ in 0..2 {
        w.crm.state().cursors.clear();
        run_job(
            &w.conn,
            Job::LeadSync,
            &Settings::default(),
            RunLimits::default(),
        )
        .await
        .unwrap();
    }

    let st = w.crm.state();
    assert_eq!(st.leads_created.len(), 1, "a rerun creates no second lead");
    let lead = &st.leads_created[0];
    assert_eq!(lead.email.as_str(), "new@example.com");
    assert_eq!(
        lead.checklist.state_of(NewsletterTypeId(0)),
        ChoiceState::Yes
    );
    assert!(
        st.list_members["l1"].contains(&(RecipientKind::Lead, lead.id.clone())),
        "the lead joins the static lead list so a resync keeps the receiver"
    );
}

#[tokio::test]
async fn a_scheduled_start_before_scheduleminutes_have_passed_does_nothing() {
    use crate::usecases::backflow::due;
    let mut w = World::new().setting("cleverreach:synchronization:scheduleminutes", "15");
    let settings = w.conn.settings().await.unwrap();
    w.conn.now = || 1_800_000_000;
    assert!(
        due(&w.conn, Job::ReceiverState, &settings).await.unwrap(),
        "the first start runs"
    );
    w.conn.now = || 1_800_000_000 + 10 * 60;
    assert!(
        !due(&w.conn, Job::ReceiverState, &settings).await.unwrap(),
        "10 minutes later: not due"
    );
    assert!(
        due(&w.conn, Job::LeadSync, &settings).await.unwrap(),
        "each job keeps its own pace"
    );
    w.conn.now = || 1_800_000_000 + 15 * 60;
    assert!(
        due(&w.conn, Job::ReceiverState, &settings).await.unwrap(),
        "15 minutes later: due"
    );
}

#[tokio::test]
async fn an_unsubscribe_takes_the_person_out_of_every_other_group_sending_that_type() {
    let w = World::new();
    let anna = Some(("c1", PersonEntity::Contact));
    w.source(list("l1", "Customers").group("7"))
        .source(list("l2", "Partners").group("8"))
        .source(list("l3", "Offers").group("9").checklist(&[(1, 1)]))
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
        .group(
            "9",
            "Offers",
            vec![receiver("anna@example.com", ReceiverState::Active, anna)],
        )
        .contact(
            person("c1", "anna@example.com").checklist(&[(0, 1), (1, 1)]),
            &["l1", "l2", "l3"],
        );
    w.newsletter
        .unsubscribe("7", &address("anna@example.com"), at(1_700_000_000));

    run_job(
        &w.conn,
        Job::ReceiverState,
        &Settings::default(),
        RunLimits::default(),
    )
    .await
    .unwrap();

    assert!(
        w.active("8").is_empty(),
        "another group sending type 0 dropped her"
    );
    assert_eq!(
        w.active("9"),
        ["anna@example.com"],
        "a group sending only type 1 keeps her"
    );
    let st = w.newsletter.state();
    let kept = &st.receivers["7"][&address("anna@example.com")];
    assert_eq!(
        kept.receiver.state,
        ReceiverState::Deactivated,
        "the opt-out itself stays"
    );
}

#[tokio::test]
async fn a_checklist_saved_between_the_read_and_the_no_keeps_both_changes() {
    // Anna says no to type 0 in CleverReach while a marketer saves her form with type 1 set to
    // "no": the connector's write must not undo the marketer's, nor the marketer's the "no".
    let w = anna_unsubscribed_from_group_7();
    w.crm.state().saved_in_between.push((
        (RecipientKind::Contact, "c1".to_string()),
        checklist(&[(0, 1), (1, 2)]),
    ));

    let summary = run_job(
        &w.conn,
        Job::ReceiverState,
        &Settings::default(),
        RunLimits::default(),
    )
    .await
    .unwrap();

    assert!(summary.complete, "{summary:?}");
    let checklist = checklist_of(&w, "c1");
    assert_eq!(
        checklist.state_of(NewsletterTypeId(0)),
        ChoiceState::No,
        "the unsubscribe"
    );
    assert_eq!(
        checklist.state_of(NewsletterTypeId(1)),
        ChoiceState::No,
        "the marketer's save"
    );
}
