use super::fixtures::*;
use crate::domain::change::{AttrValue, CrmMessage, column};
use crate::domain::receiver::ReceiverState;
use crate::domain::recipient::{PersonEntity, RecipientKind};
use crate::domain::settings::Settings;
use crate::usecases::people::{PeopleSync, on_people_change};

async fn contact_changed(w: &World, event: crate::domain::change::ChangeEvent) -> PeopleSync {
    on_people_change(
        &w.conn,
        &Settings::default(),
        RecipientKind::Contact,
        &[event],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_contact_who_says_yes_now_joins_the_group_of_every_synced_list_it_is_in() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7"))
        .source(list("l2", "Partners").group("8"))
        .source(list("l3", "Not synced").group("9").sync(false))
        .group("7", "Customers", vec![])
        .group("8", "Partners", vec![])
        .group("9", "Not synced", vec![])
        .contact(person("c1", "anna@example.com"), &["l1", "l2", "l3"]);

    let event = event("contact", CrmMessage::Update, "c1")
        .touch(column::CHECKLIST, AttrValue::Text("[…]".into()))
        .build();
    let sync = contact_changed(&w, event).await;

    assert_eq!(w.active("7"), ["anna@example.com"]);
    assert_eq!(w.active("8"), ["anna@example.com"]);
    assert!(
        w.active("9").is_empty(),
        "a list with sync off keeps its group untouched"
    );
    assert_eq!(sync.groups.len(), 2);
}

#[tokio::test]
async fn a_deactivated_contact_leaves_every_group_it_was_in() {
    let w = World::new();
    let anna = Some(("c1", PersonEntity::Contact));
    w.source(list("l1", "Customers").group("7"))
        .group(
            "7",
            "Customers",
            vec![receiver("anna@example.com", ReceiverState::Active, anna)],
        )
        .contact(person("c1", "anna@example.com").inactive(), &["l1"]);

    let event = event("contact", CrmMessage::Update, "c1")
        .touch(column::STATECODE, AttrValue::Choice(1))
        .build();
    contact_changed(&w, event).await;

    assert!(w.active("7").is_empty());
}

#[tokio::test]
async fn an_email_change_moves_the_receivers_address_instead_of_replacing_the_receiver() {
    let w = World::new();
    let anna = Some(("c1", PersonEntity::Contact));
    w.source(list("l1", "Customers").group("7"))
        .group(
            "7",
            "Customers",
            vec![receiver("anna@old.example", ReceiverState::Active, anna)],
        )
        .contact(person("c1", "anna@new.example"), &["l1"]);

    let event = event("contact", CrmMessage::Update, "c1")
        .touch(column::EMAIL, AttrValue::Text("anna@new.example".into()))
        .before(column::EMAIL, AttrValue::Text("anna@old.example".into()))
        .build();
    contact_changed(&w, event).await;

    assert_eq!(w.active("7"), ["anna@new.example"]);
    let calls = w.newsletter.state().calls.clone();
    assert!(calls.contains(&"change_email".to_string()), "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.starts_with("remove")),
        "the receiver (and its history) is kept: {calls:?}"
    );
}

#[tokio::test]
async fn a_contact_that_opted_out_in_cleverreach_is_not_made_active_again_by_its_own_change() {
    let w = World::new();
    let anna = Some(("c1", PersonEntity::Contact));
    w.source(list("l1", "Customers").group("7"))
        .group(
            "7",
            "Customers",
            vec![receiver(
                "anna@example.com",
                ReceiverState::Deactivated,
                anna,
            )],
        )
        .contact(person("c1", "anna@example.com"), &["l1"]);

    let event = event("contact", CrmMessage::Update, "c1")
        .touch("firstname", AttrValue::Text("Anne".into()))
        .build();
    contact_changed(&w, event).await;

    assert!(w.active("7").is_empty());
    assert!(w.newsletter.state().reactivated.is_empty());
}

#[tokio::test]
async fn a_blacklisted_domain_or_a_bounced_address_is_not_added_when_its_person_changes() {
    let w = World::new();
    {
        let mut st = w.newsletter.state();
        st.blacklist.push("*@spam.example".into());
        st.bounced.push(address("gone@example.com"));
    }
    w.source(list("l1", "Customers").group("7"))
        .group("7", "Customers", vec![])
        .contact(person("c1", "anna@spam.example"), &["l1"])
        .contact(person("c2", "gone@example.com"), &["l1"])
        .contact(person("c3", "cleo@example.com"), &["l1"]);

    for id in ["c1", "c2", "c3"] {
        contact_changed(&w, event("contact", CrmMessage::Update, id).build()).await;
    }

    assert_eq!(w.active("7"), ["cleo@example.com"]);
    assert!(w.newsletter.state().reactivated.is_empty());
}

#[tokio::test]
async fn a_members_change_worked_before_the_persons_own_email_change_moves_the_receiver() {
    // The contact's address changed in the CRM, and a change of the list's members is worked
    // before the contact's own change (which names the old address): the receiver is found by
    // the CRM record it carries and moved, not replaced.
    let w = World::new();
    let anna = Some(("c1", PersonEntity::Contact));
    w.source(list("l1", "Customers").group("7"))
        .group(
            "7",
            "Customers",
            vec![receiver("anna@old.example", ReceiverState::Active, anna)],
        )
        .contact(person("c1", "anna@new.example"), &["l1"]);
    let settings = Settings::default();
    let list = w
        .stored(crate::domain::source::SourceKind::MarketingList, "l1")
        .unwrap();
    let group = list.source.group_id.clone().unwrap();

    crate::usecases::people::on_list_members_change(
        &w.conn,
        &settings,
        &list,
        &group,
        &["c1".into()],
    )
    .await
    .unwrap();

    assert_eq!(w.active("7"), ["anna@new.example"]);
    let calls = w.newsletter.state().calls.clone();
    assert!(calls.contains(&"change_email".to_string()), "{calls:?}");
    assert!(!calls.iter().any(|c| c.starts_with("remove")), "{calls:?}");
}
