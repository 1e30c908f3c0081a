//! End to end: marketing lists. The CRM side changes through the Dataverse simulator's Web API;
//! the result is read from the CleverReach simulator.

use sandbox::harness::{Harness, checklist};
use serde_json::json;

async fn contact(h: &Harness, email: &str, consent: &[(i64, i64)]) -> String {
    let (first, last) = email.split_once('@').unwrap();
    h.create(
        "contacts",
        json!({ "firstname": first, "lastname": last, "emailaddress1": email, "crc_checklist": checklist(consent) }),
    )
    .await
    .unwrap()
}

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
    let anna = contact(&h, "anna@example.com", &[(0, 1)]).await;
    let bert = contact(&h, "bert@example.com", &[(1, 1)]).await;
    let carl = contact(&h, "carl@example.com", &[(0, 2)]).await;
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

    let anna = contact(&h, "anna@example.com", &[(0, 1)]).await;
    let bert = contact(&h, "bert@example.com", &[(0, 1)]).await;
    h.add_member(&list, &anna).await.unwrap();
    h.add_members(&list, "contact", &[bert.clone()])
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
