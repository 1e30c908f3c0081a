//! `crc-admin preview` and `crc-admin drift` against the sandbox: they write nothing, and the
//! counts they print are the ones the following reconcile performs (read back from the
//! source's status line and from the CleverReach simulator).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crc_admin::preview::{Difference, drift, preview, print_drift, print_preview};
use crc_admin::{Command, parse, run_on};
use sandbox::harness::Harness;
use serde_json::{Value, json};
use shared::domain::email::Email;
use shared::domain::planner::ReceiverUpsert;
use shared::domain::receiver::{PersonData, ReceiverData};
use shared::domain::recipient::{CrmRef, PersonEntity};
use shared::domain::routing::QueueFamily;
use shared::domain::source::SourceKind;
use shared::usecases::Connector;
use std::collections::BTreeMap;

fn connector(h: &Harness) -> Connector {
    h.worker(QueueFamily::MarketingList).unwrap().conn.clone()
}

/// The counts of a printed preview, by operation (`add`, `update`, `change e-mail`, `remove`,
/// `unchanged`, `opted out`, `skipped`).
fn printed_counts(text: &str) -> BTreeMap<String, usize> {
    text.lines()
        .filter(|l| l.starts_with("  ") && l.len() >= 25 && l.is_char_boundary(25))
        .filter_map(|l| Some((l[2..17].trim().to_string(), l[17..25].trim().parse().ok()?)))
        .collect()
}

/// Everything the CleverReach simulator holds of a group, to see that nothing changed.
fn snapshot(h: &Harness, group: &str) -> Vec<(String, bool, String)> {
    let mut all: Vec<(String, bool, String)> = h
        .cleverreach
        .receivers(group)
        .into_iter()
        .map(|r| {
            let name = r
                .global_attributes
                .get("firstname")
                .cloned()
                .unwrap_or_default();
            (r.email.to_lowercase(), r.active, name)
        })
        .collect();
    all.sort();
    all
}

fn list_row(h: &Harness, list: &str) -> Value {
    Value::Object(h.dataverse.row("lists", list).unwrap())
}

/// A synced list of anna, bert, carl, dora, erik and fritz (fritz says no to the list's type),
/// then, behind the connector's back: bert removed in CleverReach, carl renamed there, a
/// stranger and fritz added there, erik unsubscribed.
async fn drifted_list(h: &Harness) -> (String, String) {
    let mut ids = Vec::new();
    for who in ["anna", "bert", "carl", "dora", "erik"] {
        ids.push(
            h.contact(&format!("{who}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    ids.push(h.contact("fritz@example.com", &[(0, 2)]).await.unwrap());
    let (list, group) = h
        .synced_static_list("Customers", "contact", &ids)
        .await
        .unwrap();
    assert_eq!(h.active_emails(&group).len(), 5);

    let cr = h.newsletter();
    let bert = Email::parse("bert@example.com").unwrap();
    assert!(cr.remove_receiver(&group, &bert).await.unwrap());
    let carl = ReceiverUpsert {
        receiver: ReceiverData {
            email: Email::parse("carl@example.com").unwrap(),
            person: PersonData {
                first_name: "Karl-Heinz".into(),
                last_name: "example.com".into(),
                ..PersonData::default()
            },
            crm: CrmRef::new(PersonEntity::Contact, &ids[2]),
        },
        activate: false,
    };
    cr.upsert_receivers(&group, &[carl]).await.unwrap();
    h.cleverreach
        .add_stranger(&group, "stranger@example.com", true, &[])
        .unwrap();
    h.cleverreach
        .add_stranger(&group, "fritz@example.com", true, &[])
        .unwrap();
    h.cleverreach
        .unsubscribe(&group, "erik@example.com")
        .unwrap();
    (list, group)
}

#[tokio::test]
async fn a_preview_writes_nothing_and_prints_the_counts_the_following_reconcile_performs() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let (list, group) = drifted_list(&h).await;
    let before_group = snapshot(&h, &group);
    let before_row = list_row(&h, &list);
    let conn = connector(&h);

    let p = preview(&conn, SourceKind::MarketingList, &list)
        .await
        .unwrap();
    let mut printed = Vec::new();
    print_preview(&p, &mut printed).unwrap();
    let printed = String::from_utf8(printed).unwrap();

    assert_eq!(snapshot(&h, &group), before_group, "CleverReach unchanged");
    assert_eq!(list_row(&h, &list), before_row, "the list unchanged");
    let counts = printed_counts(&printed);
    assert!(printed.contains("bert@example.com"), "{printed}");
    assert!(printed.contains("stranger@example.com"), "{printed}");

    // The reconcile the preview described.
    h.update("lists", &list, json!({ "crc_resync": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    let status = list_row(&h, &list)["crc_syncstatus"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = format!(
        "all members compared: {} added, {} updated, {} e-mail changed, {} removed, {} unchanged",
        counts["add"],
        counts["update"],
        counts["change e-mail"],
        counts["remove"],
        counts["unchanged"]
    );
    assert!(
        status.starts_with(&expected),
        "preview:\n{printed}\nstatus: {status}"
    );
    // And what it said in numbers is what happened: bert added, carl updated,
    // the stranger and fritz removed, erik left alone.
    assert_eq!(
        (counts["add"], counts["update"], counts["remove"]),
        (1, 1, 2),
        "{printed}"
    );
    assert_eq!(counts["opted out"], 1, "{printed}");
    assert_eq!(counts["skipped"], 1, "{printed}");
    assert_eq!(
        h.active_emails(&group),
        [
            "anna@example.com",
            "bert@example.com",
            "carl@example.com",
            "dora@example.com",
        ]
    );
}

#[tokio::test]
async fn drift_names_every_difference_with_its_reason_and_says_zero_once_in_step() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let (list, group) = drifted_list(&h).await;
    let before_group = snapshot(&h, &group);
    let conn = connector(&h);

    let all = drift(&conn).await.unwrap();
    assert_eq!(snapshot(&h, &group), before_group, "CleverReach unchanged");
    let d = all.iter().find(|d| d.preview.id == list).unwrap();
    let mut reasons: Vec<(String, Difference)> = d
        .differences
        .iter()
        .map(|(e, why)| (e.to_string(), why.clone()))
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("bert@example.com".to_string(), Difference::Missing),
            ("carl@example.com".to_string(), Difference::AttributeDiffers),
            (
                "fritz@example.com".to_string(),
                Difference::NotEligible("no matching newsletter type")
            ),
            ("stranger@example.com".to_string(), Difference::Stranger),
        ]
    );
    assert_eq!(
        d.opted_out
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>(),
        ["erik@example.com"]
    );
    assert_eq!((d.members, d.eligible, d.active_receivers), (6, 5, 5));
    let mut printed = Vec::new();
    print_drift(d, &mut printed).unwrap();
    let printed = String::from_utf8(printed).unwrap();
    assert!(printed.contains("4 differences"), "{printed}");
    assert!(
        printed.contains("stranger@example.com  stranger: no member has this address"),
        "{printed}"
    );

    // The reconcile changes exactly those four; then drift says 0.
    h.update("lists", &list, json!({ "crc_resync": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    let status = list_row(&h, &list)["crc_syncstatus"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        status.starts_with("all members compared: 1 added, 1 updated, 0 e-mail changed, 2 removed"),
        "{status}"
    );
    let mut out = Vec::new();
    run_on(&conn, &parse(&["drift".into()]).unwrap(), &mut out)
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(": 6 CRM members, 5 eligible; 4 active receivers; 0 differences"),
        "{out}"
    );
    assert!(out.ends_with("1 sources, 0 differences in all\n"), "{out}");
}

#[tokio::test]
async fn a_preview_of_a_removal_the_brake_would_hold_back_lists_who_confirming_would_remove() {
    let h = Harness::start().await.unwrap();
    h.install(&[("cleverreach:safety:maxremovals", "2")])
        .await
        .unwrap();
    let mut ids = Vec::new();
    for who in ["anna", "bert", "carl", "dora"] {
        ids.push(
            h.contact(&format!("{who}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    let (list, group) = h
        .synced_static_list("Customers", "contact", &ids)
        .await
        .unwrap();
    // Three strangers: removing them is 3 of 7 (over 20 % and over 2).
    for who in ["x1", "x2", "x3"] {
        h.cleverreach
            .add_stranger(&group, &format!("{who}@example.com"), true, &[])
            .unwrap();
    }
    let conn = connector(&h);

    let mut out = Vec::new();
    let command = parse(&["preview".into(), "lists".into(), list.clone()]).unwrap();
    assert_eq!(
        command,
        Command::Preview {
            kind: SourceKind::MarketingList,
            id: list.clone()
        }
    );
    run_on(&conn, &command, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();

    let held = "would remove 3 of 7 receivers; set crc_confirmremovals to yes to proceed";
    assert!(
        out.contains(&format!("brake: the removals would be held back ({held})")),
        "{out}"
    );
    assert_eq!(printed_counts(&out)["remove"], 3, "{out}");
    assert!(
        out.contains("x1@example.com, x2@example.com, x3@example.com"),
        "{out}"
    );

    // And so the reconcile does.
    h.update("lists", &list, json!({ "crc_resync": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group).len(), 7);
    let error = list_row(&h, &list)["crc_lasterror"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.ends_with(held), "{error}");
}

#[tokio::test]
async fn a_preview_of_a_source_whose_group_is_gone_creates_no_group_and_lists_every_member_to_add()
{
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("Quiet", "contact", &[anna, bert])
        .await
        .unwrap();
    // Someone deletes the group in CleverReach: the next sync would create it again.
    assert!(h.newsletter().delete_group(&group).await.unwrap());
    let groups_before = h.cleverreach.groups().len();

    let p = preview(&connector(&h), SourceKind::MarketingList, &list)
        .await
        .unwrap();
    let mut printed = Vec::new();
    print_preview(&p, &mut printed).unwrap();
    let printed = String::from_utf8(printed).unwrap();

    assert_eq!(
        h.cleverreach.groups().len(),
        groups_before,
        "no group created"
    );
    assert_eq!(
        h.group_of("lists", &list).as_deref(),
        Some(group.as_str()),
        "{printed}"
    );
    assert!(
        printed.contains("would create the group \"Quiet\""),
        "{printed}"
    );
    assert_eq!(printed_counts(&printed)["add"], 2, "{printed}");
    // Members come in the CRM's order (by record id), so either address may come first.
    let add = printed
        .lines()
        .find(|l| l.trim_start().starts_with("add "))
        .unwrap_or_default();
    assert!(
        add.contains("anna@example.com") && add.contains("bert@example.com"),
        "{printed}"
    );
}
