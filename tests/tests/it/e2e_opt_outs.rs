//! End to end: no path loses or undoes an opt-out (docs/architecture.md §2 "Opt-outs"). The CRM
//! is changed through the Dataverse simulator's Web API; people act in the CleverReach simulator,
//! which is pessimistic: an upsert that asks to activate an opted-out receiver re-activates it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::harness::Harness;
use serde_json::json;

#[tokio::test]
async fn an_unsubscribe_not_yet_read_back_survives_turning_sync_off_and_on_again() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("News", "contact", &[anna.clone(), bert])
        .await
        .unwrap();
    // Anna unsubscribes; no back-flow run reads it before sync is turned off.
    h.cleverreach
        .unsubscribe(&group, "anna@example.com")
        .unwrap();

    h.update("lists", &list, json!({ "crc_syncwithcleverreach": false }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert!(
        h.cleverreach.group(&group).is_none(),
        "the group is deleted (default settings)"
    );
    assert_eq!(
        h.checklist_states("contacts", &anna),
        [(0, 2)],
        "her unsubscribe was written into the CRM before the group went"
    );

    h.update("lists", &list, json!({ "crc_syncwithcleverreach": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    let new_group = h.group_of("lists", &list).unwrap();
    assert_ne!(new_group, group);
    assert_eq!(h.active_emails(&new_group), ["bert@example.com"]);
    assert!(h.cleverreach.reactivations().is_empty());
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn a_deleted_list_writes_its_groups_unsubscribes_back_before_the_group_goes() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("News", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    h.cleverreach
        .unsubscribe(&group, "anna@example.com")
        .unwrap();

    h.delete("lists", &list).await.unwrap();
    h.settle().await.unwrap();

    assert!(h.cleverreach.group(&group).is_none());
    assert_eq!(h.checklist_states("contacts", &anna), [(0, 2)]);
    let rows = h.dataverse.rows("crc_receiverstates");
    assert_eq!(rows.len(), 1, "{rows:?}");
}

#[tokio::test]
async fn blacklisted_and_bounced_addresses_are_never_added_as_active_when_people_change() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    // The account's opt-outs (read by the connector at most every two minutes: set first).
    h.cleverreach.blacklist("*@spam.example").unwrap();
    h.cleverreach.blacklist("black@example.com").unwrap();
    h.cleverreach.bounce("gone@example.com").unwrap();
    let (list, group) = h.synced_static_list("News", "contact", &[]).await.unwrap();

    // People join the list one by one: the scoped (person) path.
    for email in [
        "anna@spam.example",
        "black@example.com",
        "gone@example.com",
        "cleo@example.com",
    ] {
        let id = h.contact(email, &[(0, 1)]).await.unwrap();
        h.add_member(&list, &id).await.unwrap();
        h.settle().await.unwrap();
    }

    assert_eq!(h.active_emails(&group), ["cleo@example.com"]);
    assert!(
        h.cleverreach.reactivations().is_empty(),
        "{:?}",
        h.cleverreach.reactivations()
    );
}

#[tokio::test]
async fn an_address_change_worked_after_a_members_change_of_the_same_list_keeps_the_receiver() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@old.example", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("News", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    let before = h.cleverreach.receiver(&group, "anna@old.example").unwrap();

    // Her address changes, and before that change is worked, a change of the list's members
    // naming her is (the list queue is worked first).
    h.update(
        "contacts",
        &anna,
        json!({ "emailaddress1": "anna@new.example" }),
    )
    .await
    .unwrap();
    h.add_members(&list, "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    h.settle().await.unwrap();

    assert_eq!(h.active_emails(&group), ["anna@new.example"]);
    let after = h.cleverreach.receiver(&group, "anna@new.example").unwrap();
    assert_eq!(
        after.id, before.id,
        "the same receiver, moved: its history stays"
    );
    assert!(h.cleverreach.receiver(&group, "anna@old.example").is_none());
}

#[tokio::test]
async fn a_deleted_contacts_opted_out_receivers_keep_only_the_address_and_the_opt_out() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let (_, group) = h
        .synced_static_list("News", "contact", &[anna.clone(), bert.clone()])
        .await
        .unwrap();
    h.cleverreach
        .unsubscribe(&group, "anna@example.com")
        .unwrap();
    let before = h.cleverreach.receiver(&group, "anna@example.com").unwrap();
    assert_eq!(
        before
            .global_attributes
            .get("firstname")
            .map(String::as_str),
        Some("anna")
    );

    h.delete("contacts", &anna).await.unwrap();
    h.delete("contacts", &bert).await.unwrap();
    h.settle().await.unwrap();

    let kept = h.cleverreach.receiver(&group, "anna@example.com").unwrap();
    assert!(!kept.active && kept.deactivated > 0, "the opt-out stays");
    for attribute in ["firstname", "lastname", "crmid", "crmentity"] {
        let value = kept
            .global_attributes
            .get(attribute)
            .cloned()
            .unwrap_or_default();
        assert!(value.is_empty(), "{attribute} = {value:?}");
    }
    let company = kept
        .attributes
        .get("crm_company")
        .cloned()
        .unwrap_or_default();
    assert!(company.is_empty(), "crm_company = {company:?}");
    assert!(
        h.cleverreach.receiver(&group, "bert@example.com").is_none(),
        "an active receiver of a deleted contact leaves the group"
    );
}
