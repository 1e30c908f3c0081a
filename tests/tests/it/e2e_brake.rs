//! End to end: the brake on mass removal (docs/architecture.md §2). A dynamic list of 1,000
//! whose query is edited to select nobody, and a list of 1,000 whose sync is turned off under
//! the default deletion settings: nothing is removed until an administrator sets
//! `crc_confirmremovals`, which the connector then resets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::harness::{Harness, checklist};
use serde_json::{Map, Value, json};

const CITY_QUERY: &str = r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="address1_city" operator="eq" value="Berlin"/></filter></entity></fetch>"#;

/// 1,000 contacts in Berlin who say yes to type 0, inserted without webhooks.
fn seed_berliners(h: &Harness) -> Vec<String> {
    let rows: Vec<Map<String, Value>> = (0..1000)
        .map(|i| {
            let row = json!({ "firstname": format!("B{i}"), "lastname": "Berlin",
                "emailaddress1": format!("b{i:04}@berlin.example"), "address1_city": "Berlin",
                "crc_checklist": checklist(&[(0, 1)]) });
            row.as_object().cloned().unwrap()
        })
        .collect();
    h.dataverse.seed("contacts", rows).unwrap()
}

fn column(h: &Harness, list: &str, name: &str) -> Value {
    h.dataverse
        .row("lists", list)
        .and_then(|row| row.get(name).cloned())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_query_edited_to_select_nobody_removes_no_one_until_crc_confirmremovals_says_yes() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    seed_berliners(&h);
    let list = h
        .create(
            "lists",
            json!({ "listname": "Berlin", "createdfromcode": 2, "type": true, "query": CITY_QUERY,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.settle().await.unwrap();
    let group = h.group_of("lists", &list).unwrap();
    assert_eq!(h.active_emails(&group).len(), 1000);

    // A typo in the query: it selects nobody any more.
    h.update(
        "lists",
        &list,
        json!({ "query": CITY_QUERY.replace("Berlin", "Berln") }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();

    assert_eq!(h.active_emails(&group).len(), 1000, "nobody removed");
    let error = column(&h, &list, "crc_lasterror");
    assert!(
        error.as_str().unwrap_or_default().ends_with(
            "would remove 1,000 of 1,000 receivers; set crc_confirmremovals to yes to proceed"
        ),
        "{error}"
    );
    assert!(h.dead_letters().is_empty(), "{:?}", h.dead_letters());

    // The administrator means it.
    h.update("lists", &list, json!({ "crc_confirmremovals": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();

    assert!(h.active_emails(&group).is_empty(), "the removal went ahead");
    assert_eq!(column(&h, &list, "crc_confirmremovals"), json!(false));
    assert_eq!(column(&h, &list, "crc_lasterror"), Value::Null);
}

#[tokio::test]
async fn turning_sync_off_keeps_a_group_of_a_thousand_until_the_deletion_is_confirmed() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let members = seed_berliners(&h);
    let (list, group) = h
        .synced_static_list("Berliners", "contact", &members)
        .await
        .unwrap();
    assert_eq!(h.active_emails(&group).len(), 1000);

    h.update("lists", &list, json!({ "crc_syncwithcleverreach": false }))
        .await
        .unwrap();
    h.settle().await.unwrap();

    assert!(h.cleverreach.group(&group).is_some(), "the group stays");
    assert_eq!(h.group_of("lists", &list).as_deref(), Some(group.as_str()));
    let error = column(&h, &list, "crc_lasterror");
    assert!(
        error.as_str().unwrap_or_default().ends_with(
            "would delete the group with its 1,000 active receivers; set crc_confirmremovals to yes to proceed"
        ),
        "{error}"
    );

    h.update("lists", &list, json!({ "crc_confirmremovals": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();

    assert!(
        h.cleverreach.group(&group).is_none(),
        "deleted once confirmed"
    );
    assert_eq!(h.group_of("lists", &list), None);
    assert_eq!(column(&h, &list, "crc_confirmremovals"), json!(false));
}
