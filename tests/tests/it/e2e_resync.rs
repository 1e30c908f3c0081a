//! End to end: resync repairs drift (docs/architecture.md §3 "resync"). CleverReach is changed behind the
//! connector's back — through its API, as a CleverReach user or another tool would — and the CRM
//! changes in ways no webhook reports (a dynamic list's query starts selecting someone); then a
//! resync, by `crc_resync` on the source or by "resync every source", restores exactly the rule's
//! state and never re-activates anyone who unsubscribed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::harness::{Harness, TokenStore, checklist};
use serde_json::{Value, json};
use shared::adapters::cleverreach::CleverReachClient;
use shared::domain::email::Email;
use shared::domain::planner::ReceiverUpsert;
use shared::domain::receiver::{PersonData, ReceiverData};
use shared::domain::recipient::{CrmRef, PersonEntity};
use shared::domain::routing::QueueFamily;
use shared::handlers::resync::{ResyncDeps, ResyncRequest, resync_all};

/// A CleverReach client with the connector's account: what a CleverReach user does by hand.
fn cleverreach_user(h: &Harness) -> &CleverReachClient<TokenStore> {
    h.newsletter()
}

fn email(text: &str) -> Email {
    Email::parse(text).unwrap()
}

fn first_name(h: &Harness, group: &str, address: &str) -> String {
    h.cleverreach
        .receiver(group, address)
        .and_then(|r| r.global_attributes.get("firstname").cloned())
        .unwrap_or_default()
}

fn list_row(h: &Harness, list: &str) -> Value {
    Value::Object(h.dataverse.row("lists", list).unwrap())
}

/// A synced static list of anna, bert, carl and erik (all say yes to type 0); erik then
/// unsubscribes in CleverReach. Returns the list, its group and carl's contact id.
async fn list_with_members(h: &Harness, name: &str, prefix: &str) -> (String, String, String) {
    let mut ids = Vec::new();
    for who in ["anna", "bert", "carl", "erik"] {
        ids.push(
            h.contact(&format!("{prefix}{who}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    let (list, group) = h.synced_static_list(name, "contact", &ids).await.unwrap();
    h.cleverreach
        .unsubscribe(&group, &format!("{prefix}erik@example.com"))
        .unwrap();
    (list, group, ids[2].clone())
}

/// Drift, all of it behind the connector's back: a stranger added, bert removed, the group
/// renamed, carl's first name overwritten.
async fn drift(h: &Harness, group: &str, prefix: &str, carl: &str) {
    h.cleverreach
        .add_stranger(group, &format!("{prefix}stranger@example.com"), true, &[])
        .unwrap();
    let cr = cleverreach_user(h);
    assert!(
        cr.remove_receiver(group, &email(&format!("{prefix}bert@example.com")))
            .await
            .unwrap()
    );
    cr.rename_group(group, "renamed in CleverReach")
        .await
        .unwrap();
    let wrong = ReceiverUpsert {
        receiver: ReceiverData {
            email: email(&format!("{prefix}carl@example.com")),
            person: PersonData {
                first_name: "Karl-Heinz".into(),
                last_name: "example.com".into(),
                ..PersonData::default()
            },
            crm: CrmRef::new(PersonEntity::Contact, carl),
        },
        activate: false,
    };
    cr.upsert_receivers(group, &[wrong]).await.unwrap();
    assert_eq!(
        first_name(h, group, &format!("{prefix}carl@example.com")),
        "Karl-Heinz"
    );
}

/// The rule's state: anna, bert, carl active with their CRM data; erik still there and still
/// unsubscribed; no stranger; the group named after the list.
fn assert_restored(h: &Harness, group: &str, prefix: &str, name: &str) {
    let p = |who: &str| format!("{prefix}{who}@example.com");
    assert_eq!(
        h.active_emails(group),
        [p("anna"), p("bert"), p("carl")],
        "active receivers of {name}"
    );
    assert_eq!(h.cleverreach.group(group).unwrap().name, name);
    assert_eq!(first_name(h, group, &p("carl")), format!("{prefix}carl"));
    let erik = h
        .cleverreach
        .receiver(group, &p("erik"))
        .expect("the unsubscribed receiver is kept (it carries the opt-out)");
    assert!(!erik.active, "erik stays unsubscribed");
    assert!(
        h.cleverreach.receiver(group, &p("stranger")).is_none(),
        "the stranger is gone"
    );
    assert!(
        h.cleverreach.reactivations().is_empty(),
        "nobody re-activated: {:?}",
        h.cleverreach.reactivations()
    );
    assert!(h.dead_letters().is_empty(), "{:?}", h.dead_letters());
}

#[tokio::test]
async fn setting_crc_resync_restores_the_rules_state_and_resets_the_flag() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let (list, group, carl) = list_with_members(&h, "Drift", "").await;
    drift(&h, &group, "", &carl).await;

    h.update("lists", &list, json!({ "crc_resync": true }))
        .await
        .unwrap();
    let processed = h.settle().await.unwrap();

    assert_restored(&h, &group, "", "Drift");
    let row = list_row(&h, &list);
    assert_eq!(row["crc_resync"], json!(false), "flag reset");
    assert_eq!(
        processed, 1,
        "the flag's reset and the status are the connector's own writes: no second round"
    );
    let status = row["crc_syncstatus"].as_str().unwrap_or_default();
    assert!(
        status.starts_with(
            "all members compared: 1 added, 1 updated, 0 e-mail changed, 1 removed, 1 unchanged"
        ),
        "status: {status}"
    );
    assert!(row.get("crc_lasterror").is_none_or(Value::is_null));
}

#[tokio::test]
async fn resync_of_every_source_repairs_each_synced_group_and_leaves_unsynced_ones_alone() {
    let h = Harness::start().await.unwrap();
    h.install(&[(
        "cleverreach:deletionsettings:deletedisablesynchronization",
        "false",
    )])
    .await
    .unwrap();
    let (list_a, group_a, carl_a) = list_with_members(&h, "North", "n.").await;
    let (list_b, group_b, carl_b) = list_with_members(&h, "South", "s.").await;
    drift(&h, &group_a, "n.", &carl_a).await;
    drift(&h, &group_b, "s.", &carl_b).await;
    // A third list's sync is off; its kept group is not the connector's business any more.
    let (list_off, group_off, _) = list_with_members(&h, "Off", "o.").await;
    h.update(
        "lists",
        &list_off,
        json!({ "crc_syncwithcleverreach": false }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    h.cleverreach
        .add_stranger(&group_off, "o.stranger@example.com", true, &[])
        .unwrap();
    let off_before = h.active_emails(&group_off);

    let deps = ResyncDeps {
        sources: h
            .worker(QueueFamily::MarketingList)
            .unwrap()
            .conn
            .sources
            .clone(),
        queue: h.queue.clone(),
        sweep: None,
    };
    let queued = resync_all(&deps, &ResyncRequest::default(), "run-1", 0)
        .await
        .unwrap();
    assert_eq!(queued.queued, 2);
    assert_eq!(queued.by_kind.get("list"), Some(&2));
    assert_eq!(queued.by_kind.get("campaign"), Some(&0));
    assert_eq!(queued.by_kind.get("campaignactivity"), Some(&0));
    let processed = h.settle().await.unwrap();
    assert_eq!(processed, 2, "one worker message per source");

    assert_restored(&h, &group_a, "n.", "North");
    assert_restored(&h, &group_b, "s.", "South");
    assert_eq!(
        h.active_emails(&group_off),
        off_before,
        "sync off: untouched"
    );
    for list in [&list_a, &list_b] {
        let row = list_row(&h, list);
        let status = row["crc_syncstatus"].as_str().unwrap_or_default();
        assert!(status.starts_with("all members compared"), "{status}");
    }

    // Limited to campaigns: no list is queued.
    let campaigns = ResyncRequest {
        kind: Some("campaign".into()),
    };
    let queued = resync_all(&deps, &campaigns, "run-2", 0).await.unwrap();
    assert_eq!(queued.queued, 0);
    assert_eq!(h.settle().await.unwrap(), 0);
}

#[tokio::test]
async fn a_resync_of_a_group_in_step_changes_nothing_in_cleverreach() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let (list, group, _) = list_with_members(&h, "Steady", "").await;
    let before = h.cleverreach.receivers(&group);
    h.cleverreach.reset_stats();

    h.update("lists", &list, json!({ "crc_resync": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();

    assert_eq!(h.cleverreach.receivers(&group), before);
    let stats = h.cleverreach.stats();
    use sandbox::cleverreach::Endpoint;
    for write in [
        Endpoint::ReceiversUpsert,
        Endpoint::ReceiversDeleteBatch,
        Endpoint::ReceiverDelete,
        Endpoint::ReceiverActivate,
    ] {
        assert_eq!(stats.calls(write), 0, "{write:?}");
    }
    let status = list_row(&h, &list)["crc_syncstatus"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        status.starts_with(
            "all members compared: 0 added, 0 updated, 0 e-mail changed, 0 removed, 3 unchanged"
        ),
        "{status}"
    );
}

const CITY_QUERY: &str = r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="address1_city" operator="eq" value="Berlin"/></filter></entity></fetch>"#;

#[tokio::test]
async fn a_contact_a_dynamic_list_starts_selecting_without_any_event_joins_on_resync() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h
        .create(
            "contacts",
            json!({ "firstname": "Anna", "lastname": "A", "emailaddress1": "anna@example.com",
                    "address1_city": "Berlin", "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
    let bert = h
        .create(
            "contacts",
            json!({ "firstname": "Bert", "lastname": "B", "emailaddress1": "bert@example.com",
                    "address1_city": "Hamburg", "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
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
    assert_eq!(h.active_emails(&group), ["anna@example.com"]);

    // The city is no column the connector registers for: Dataverse sends no webhook, so the
    // query's new selection goes unnoticed (the gap the seed's documentation warns about).
    let deliveries = h.dataverse.deliveries().len();
    h.update("contacts", &bert, json!({ "address1_city": "Berlin" }))
        .await
        .unwrap();
    h.update("contacts", &anna, json!({ "address1_city": "Potsdam" }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.dataverse.deliveries().len(), deliveries, "no webhook");
    assert_eq!(h.active_emails(&group), ["anna@example.com"], "the gap");

    h.update("lists", &list, json!({ "crc_resync": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["bert@example.com"]);
    assert_eq!(list_row(&h, &list)["crc_resync"], json!(false));
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn a_resync_of_every_source_closes_the_dynamic_list_gap_too() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let bert = h
        .create(
            "contacts",
            json!({ "firstname": "Bert", "lastname": "B", "emailaddress1": "bert@example.com",
                    "address1_city": "Hamburg", "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
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
    h.update("contacts", &bert, json!({ "address1_city": "Berlin" }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert!(h.active_emails(&group).is_empty(), "the gap");

    let deps = ResyncDeps {
        sources: h
            .worker(QueueFamily::MarketingList)
            .unwrap()
            .conn
            .sources
            .clone(),
        queue: h.queue.clone(),
        sweep: None,
    };
    let queued = resync_all(&deps, &ResyncRequest::default(), "run-1", 0)
        .await
        .unwrap();
    assert_eq!(queued.queued, 1);
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["bert@example.com"]);
}

// ---- sync status on the source (docs/architecture.md §7) ---------------------------------------------------

#[tokio::test]
async fn the_sync_status_counts_what_happened_and_an_error_shows_in_plain_words_until_a_good_sync()
{
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(1, 1)]).await.unwrap();
    let carl = h
        .create(
            "contacts",
            json!({ "firstname": "Carl", "lastname": "C", "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
    // Members first, then sync on, each settled: one reconcile, so the status counts it alone.
    let list = h
        .create(
            "lists",
            json!({ "listname": "Status", "createdfromcode": 2, "type": false,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": false }),
        )
        .await
        .unwrap();
    h.add_members(&list, "contact", &[anna, bert, carl])
        .await
        .unwrap();
    h.settle().await.unwrap();
    h.update("lists", &list, json!({ "crc_syncwithcleverreach": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    let group = h.group_of("lists", &list).unwrap();
    let row = list_row(&h, &list);
    assert_eq!(
        row["crc_syncstatus"].as_str(),
        Some(
            "all members compared: 1 added, 0 updated, 0 e-mail changed, 0 removed, 0 unchanged, 2 skipped (1 no e-mail, 1 no matching newsletter type)"
        )
    );
    let first_sync = row["crc_lastsync"].as_str().unwrap().to_string();
    assert!(
        chrono::DateTime::parse_from_rfc3339(&first_sync).is_ok(),
        "{first_sync}"
    );
    assert!(row.get("crc_lasterror").is_none_or(Value::is_null));

    // An administrator breaks the list's checklist: the group is left alone and the error is
    // on the list, in words.
    h.update("lists", &list, json!({ "crc_checklist": "[{\"id\": 0, " }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com"],
        "group untouched"
    );
    let row = list_row(&h, &list);
    let error = row["crc_lasterror"].as_str().unwrap_or_default();
    assert!(
        error.contains("the sync failed: the marketing list checklist cannot be read, so the group was left as it is: the checklist is not valid JSON"),
        "last error: {error}"
    );
    assert!(error.contains(" UTC: "), "the error says when: {error}");
    assert_eq!(
        row["crc_lastsync"].as_str(),
        Some(first_sync.as_str()),
        "the last good sync's time stays"
    );
    assert!(h.dead_letters().is_empty(), "refused, not retried forever");

    // Fixed: the next good sync clears the error and counts again.
    h.update(
        "lists",
        &list,
        json!({ "crc_checklist": checklist(&[(0, 1), (1, 1)]) }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    let row = list_row(&h, &list);
    assert!(
        row.get("crc_lasterror").is_none_or(Value::is_null),
        "error cleared: {:?}",
        row.get("crc_lasterror")
    );
    assert_eq!(
        row["crc_syncstatus"].as_str(),
        Some(
            "all members compared: 1 added, 0 updated, 0 e-mail changed, 0 removed, 1 unchanged, 1 skipped (1 no e-mail)"
        )
    );
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com"]
    );
}

#[tokio::test]
async fn writing_the_sync_status_starts_no_new_work() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, _) = h
        .synced_static_list("Quiet", "contact", &[anna])
        .await
        .unwrap();
    let deliveries = h.dataverse.deliveries().len();

    h.update("lists", &list, json!({ "listname": "Quiet 2" }))
        .await
        .unwrap();
    let processed = h.settle().await.unwrap();

    assert_eq!(processed, 1);
    let row = list_row(&h, &list);
    assert_eq!(
        row["crc_syncstatus"].as_str(),
        Some("group name and description updated")
    );
    // One webhook: the rename. The status written afterwards called none.
    assert_eq!(h.dataverse.deliveries().len(), deliveries + 1);
}
