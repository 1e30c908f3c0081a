//! What a scoped reconcile reads (docs/architecture.md §10.2): the sources in use once per
//! batch, the people in rounds (not one read per person), every dynamic list for everyone at
//! once; and that the rounds still find everyone a person's change concerns.

use super::fixtures::*;
use crate::adapters::memory::CrmPort;
use crate::domain::change::{AttrValue, ChangeEvent, CrmMessage, column};
use crate::domain::recipient::RecipientKind;
use crate::domain::settings::Settings;
use crate::domain::source::SourceKind;
use crate::usecases::people::{on_list_members_change, on_people_change};
use std::collections::BTreeSet;

fn ticked_yes(id: &str) -> ChangeEvent {
    event("contact", CrmMessage::Update, id)
        .touch(column::CHECKLIST, AttrValue::Text("[…]".into()))
        .build()
}

/// Contacts on a static list linked to a campaign, with a dynamic list in use as well.
fn common_case(w: &World, people: &[(&str, &str)]) {
    w.source(list("l1", "Customers").group("7"))
        .source(campaign("k1", "Spring").group("8"))
        .source(
            list("d1", "Everyone")
                .shape(RecipientKind::Contact, true)
                .group("9"),
        )
        .group("7", "Customers", vec![])
        .group("8", "Spring", vec![])
        .group("9", "Everyone", vec![]);
    w.crm.state().linked_lists.insert(
        (SourceKind::Campaign, "k1".into()),
        BTreeSet::from(["l1".into()]),
    );
    for (id, email) in people {
        w.contact(person(id, email), &["l1", "d1"]);
    }
}

#[tokio::test]
async fn a_batch_of_contact_changes_reads_the_sources_in_use_once_and_each_dynamic_list_once() {
    let w = World::new();
    common_case(
        &w,
        &[
            ("c1", "anna@example.com"),
            ("c2", "ben@example.com"),
            ("c3", "cem@example.com"),
        ],
    );

    let events = [ticked_yes("c1"), ticked_yes("c2"), ticked_yes("c3")];
    let sync = on_people_change(
        &w.conn,
        &Settings::default(),
        RecipientKind::Contact,
        &events,
    )
    .await
    .unwrap();

    let everyone = ["anna@example.com", "ben@example.com", "cem@example.com"];
    for group in ["7", "8", "9"] {
        assert_eq!(w.active(group), everyone, "group {group}");
    }
    assert_eq!(sync.groups.len(), 3);
    let st = w.crm.state();
    assert_eq!(
        st.directory_reads, 1,
        "the sources in use are read once per batch"
    );
    assert_eq!(
        st.dynamic_rounds, 1,
        "every dynamic list for every person at once"
    );
    // The first round comes with the sources; the second searches the addresses the records
    // hold now (the events named none).
    assert!(
        st.people_rounds <= 2,
        "{} rounds of people reads",
        st.people_rounds
    );
    assert_eq!(
        st.reads.get(&CrmPort::People).copied().unwrap_or(0),
        st.people_rounds + st.dynamic_rounds,
        "nothing read one person at a time"
    );
    assert_eq!(
        st.reads.get(&CrmPort::Sources).copied().unwrap_or(0),
        0,
        "no source read on its own"
    );
}

#[tokio::test]
async fn a_lead_found_only_through_a_changed_contacts_address_joins_the_group_of_its_own_list() {
    // The event names the contact only; its address is read from the CRM, and the lead that
    // shares it is found in the second round: its lists must still be read.
    let w = World::new();
    w.source(list("l1", "Customers").group("7"))
        .source(
            list("l2", "Leads")
                .shape(RecipientKind::Lead, false)
                .group("8"),
        )
        .group("7", "Customers", vec![])
        .group("8", "Leads", vec![])
        .contact(person("c1", "anna@example.com"), &["l1"])
        .lead(person("ld1", "anna@example.com"), &["l2"]);

    on_people_change(
        &w.conn,
        &Settings::default(),
        RecipientKind::Contact,
        &[ticked_yes("c1")],
    )
    .await
    .unwrap();

    assert_eq!(w.active("7"), ["anna@example.com"]);
    assert_eq!(w.active("8"), ["anna@example.com"]);
}

#[tokio::test]
async fn forty_members_added_to_a_list_are_read_in_a_few_rounds_not_one_read_per_member() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7"))
        .group("7", "Customers", vec![]);
    let mut ids = Vec::new();
    for i in 0..40 {
        let id = format!("c{i:02}");
        w.contact(person(&id, &format!("member{i:02}@example.com")), &["l1"]);
        ids.push(id);
    }
    let list = w.stored(SourceKind::MarketingList, "l1").unwrap();
    let group = list.source.group_id.clone().unwrap();

    let report = on_list_members_change(&w.conn, &Settings::default(), &list, &group, &ids)
        .await
        .unwrap();

    assert_eq!(report.summary.added, 40);
    assert_eq!(w.active("7").len(), 40);
    let st = w.crm.state();
    let reads = st.reads.get(&CrmPort::People).copied().unwrap_or(0);
    assert!(reads <= 3, "40 members cost {reads} reads");
    assert_eq!(
        st.directory_reads, 0,
        "a list's own members need no other source"
    );
}

#[tokio::test]
async fn an_account_found_through_a_contact_sharing_the_changed_contacts_address_keeps_its_receiver()
 {
    // Anna (c1) and the primary contact of an account (c2) share an address; the account is on
    // an account list. Anna's change names only her record: her address is read, c2 is found
    // through it, and the account through c2 — a record two steps away, whose receiver must
    // not be taken for a stranger's and removed.
    let w = World::new();
    let c2 = Some(("c2", crate::domain::recipient::PersonEntity::Contact));
    w.source(
        list("la", "Accounts")
            .shape(RecipientKind::Account, false)
            .group("7"),
    )
    .group(
        "7",
        "Accounts",
        vec![receiver(
            "anna@example.com",
            crate::domain::receiver::ReceiverState::Active,
            c2,
        )],
    )
    .contact(person("c1", "anna@example.com"), &[])
    .account("a1", person("c2", "anna@example.com"), &["la"]);

    on_people_change(
        &w.conn,
        &Settings::default(),
        RecipientKind::Contact,
        &[ticked_yes("c1")],
    )
    .await
    .unwrap();

    assert_eq!(w.active("7"), ["anna@example.com"]);
}
