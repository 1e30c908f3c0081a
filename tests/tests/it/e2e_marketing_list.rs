//! End to end: marketing lists. The CRM side changes through the Dataverse simulator's Web API;
//! the result is read from the CleverReach simulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::harness::{Harness, checklist};
use serde_json::json;

async fn static_list(h: &Harness, name: &str, sync: bool) -> String {
    h.create(
        "lists",
        json!({ "listname": name, "createdfromcode": 2, "type": false, "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": sync }),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn turning_sync_on_creates_a_group_with_the_eligible_members() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(1, 1)]).await.unwrap();
    let carl = h.contact("carl@example.com", &[(0, 2)]).await.unwrap();
    let list = static_list(&h, "Newsletter", false).await;
    h.add_members(&list, "contact", &[anna, bert, carl])
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert!(
        h.group_of("lists", &list).is_none(),
        "no group while sync is off"
    );

    h.update("lists", &list, json!({ "crc_syncwithcleverreach": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();

    let group = h
        .group_of("lists", &list)
        .expect("group id stored on the list");
    assert_eq!(h.cleverreach.group(&group).unwrap().name, "Newsletter");
    assert_eq!(h.active_emails(&group), ["anna@example.com"]);
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn members_added_to_and_removed_from_a_synced_static_list_follow_into_the_group() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let list = static_list(&h, "Members", true).await;
    h.settle().await.unwrap();
    let group = h
        .group_of("lists", &list)
        .expect("created with sync on: group exists");
    assert!(h.active_emails(&group).is_empty());

    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    h.add_member(&list, &anna).await.unwrap();
    h.add_members(&list, "contact", std::slice::from_ref(&bert))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com"]
    );

    h.remove_member(&list, &anna).await.unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["bert@example.com"]);
    assert!(h.dead_letters().is_empty());
}

async fn synced_list_with(h: &Harness, name: &str, members: &[String]) -> (String, String) {
    let list = static_list(h, name, false).await;
    h.add_members(&list, "contact", members).await.unwrap();
    h.update("lists", &list, json!({ "crc_syncwithcleverreach": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    let group = h.group_of("lists", &list).expect("group");
    (list, group)
}

#[tokio::test]
async fn a_dynamic_list_created_with_sync_on_gets_a_group_with_the_contacts_its_query_selects() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    h.contact("ann.berlin@example.com", &[(0, 1)])
        .await
        .unwrap();
    h.contact("bob.berlin@example.com", &[(0, 2)])
        .await
        .unwrap();
    h.contact("cem.hamburg@example.com", &[(0, 1)])
        .await
        .unwrap();
    let query = r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="emailaddress1" operator="like" value="%berlin%"/></filter></entity></fetch>"#;
    let list = h
        .create(
            "lists",
            json!({ "listname": "Berlin", "createdfromcode": 2, "type": true, "query": query,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.settle().await.unwrap();
    let group = h.group_of("lists", &list).expect("group");
    assert_eq!(h.active_emails(&group), ["ann.berlin@example.com"]);

    // The query changes: the group follows it.
    let query = query.replace("%berlin%", "%hamburg%");
    h.update("lists", &list, json!({ "query": query }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["cem.hamburg@example.com"]);

    // A new contact the query selects joins the group.
    h.contact("dora.hamburg@example.com", &[(0, 1)])
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["cem.hamburg@example.com", "dora.hamburg@example.com"]
    );
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn a_changed_source_checklist_adds_those_who_now_qualify_and_removes_the_others() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let info = h.contact("info@example.com", &[(0, 1)]).await.unwrap();
    let ads = h.contact("ads@example.com", &[(1, 1)]).await.unwrap();
    let (list, group) = synced_list_with(&h, "Checklist", &[info, ads]).await;
    assert_eq!(h.active_emails(&group), ["info@example.com"]);

    h.update(
        "lists",
        &list,
        json!({ "crc_checklist": checklist(&[(0, 0), (1, 1)]) }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["ads@example.com"]);
}

#[tokio::test]
async fn renaming_a_list_renames_its_group_with_the_configured_prefix() {
    let h = Harness::start().await.unwrap();
    h.install(&[("cleverreach:groupsettings:groupprefix", "CRM - ")])
        .await
        .unwrap();
    let (list, group) = synced_list_with(&h, "Spring", &[]).await;
    assert_eq!(h.cleverreach.group(&group).unwrap().name, "CRM - Spring");
    h.update("lists", &list, json!({ "listname": "Summer" }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.cleverreach.group(&group).unwrap().name, "CRM - Summer");
    assert_eq!(h.group_of("lists", &list).as_deref(), Some(group.as_str()));
}

#[tokio::test]
async fn turning_sync_off_deletes_the_group_by_default_and_keeps_it_when_the_settings_say_so() {
    // Default: deletedisablesynchronization = true.
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = synced_list_with(&h, "Off", &[anna]).await;
    h.update("lists", &list, json!({ "crc_syncwithcleverreach": false }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&group).is_none(), "group deleted");
    assert!(h.group_of("lists", &list).is_none(), "group id cleared");

    // Kept: turning sync on again reuses the kept group.
    let h = Harness::start().await.unwrap();
    h.install(&[(
        "cleverreach:deletionsettings:deletedisablesynchronization",
        "false",
    )])
    .await
    .unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = synced_list_with(&h, "Kept", &[anna]).await;
    h.update("lists", &list, json!({ "crc_syncwithcleverreach": false }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&group).is_some(), "group kept");
    h.update("lists", &list, json!({ "crc_syncwithcleverreach": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.group_of("lists", &list).as_deref(),
        Some(group.as_str()),
        "reused"
    );
    assert_eq!(h.cleverreach.groups().len(), 1);
    assert_eq!(h.active_emails(&group), ["anna@example.com"]);
}

#[tokio::test]
async fn deactivating_a_list_turns_its_sync_off_and_activating_it_with_sync_on_brings_the_group_back()
 {
    let h = Harness::start().await.unwrap();
    h.install(&[(
        "cleverreach:deletionsettings:deletedisablesynchronization",
        "false",
    )])
    .await
    .unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = synced_list_with(&h, "State", &[anna]).await;

    h.update("lists", &list, json!({ "statecode": 1 }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    let row = h.dataverse.row("lists", &list).unwrap();
    assert_eq!(
        row["crc_syncwithcleverreach"],
        json!(false),
        "sync flag written back"
    );
    assert!(h.cleverreach.group(&group).is_some(), "kept per settings");

    h.update(
        "lists",
        &list,
        json!({ "statecode": 0, "crc_syncwithcleverreach": true }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.group_of("lists", &list).as_deref(), Some(group.as_str()));
    assert_eq!(h.active_emails(&group), ["anna@example.com"]);
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn deleting_a_list_deletes_its_group_unless_deletecampaign_is_off() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let (list, group) = synced_list_with(&h, "Gone", &[]).await;
    h.delete("lists", &list).await.unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&group).is_none());

    let h = Harness::start().await.unwrap();
    h.install(&[("cleverreach:deletionsettings:deletecampaign", "false")])
        .await
        .unwrap();
    let (list, group) = synced_list_with(&h, "Stays", &[]).await;
    h.delete("lists", &list).await.unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&group).is_some());
    assert!(h.dead_letters().is_empty());
}
