//! End to end: unsubscribes and bounces travel back from CleverReach into the CRM
//! (`receiver-state-sync`, docs/architecture.md §3). People act in the CleverReach simulator; the CRM is read
//! through the Dataverse simulator; a full resync afterwards shows the opt-out holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::cleverreach::Endpoint;
use sandbox::dataverse::{CONNECTOR_CLIENT_ID, CONNECTOR_CLIENT_SECRET};
use sandbox::faults::{FaultConfig, FaultKind};
use sandbox::harness::Harness;
use serde_json::{Map, Value, json};
use shared::adapters::dataverse::client::{DataverseClient, DataverseConfig};
use shared::adapters::dataverse::crm::DataverseCrm;
use shared::adapters::http::RetryPolicy;
use shared::domain::routing::QueueFamily;
use shared::handlers::receiver_state_sync::{JobDeps, run_once};
use shared::secret::Secret;
use shared::usecases::Connector;
use shared::usecases::backflow::{Job, RunLimits};
use std::time::Duration;

fn rows_for(h: &Harness, email: &str) -> Vec<Map<String, Value>> {
    h.dataverse
        .rows("crc_receiverstates")
        .into_iter()
        .filter(|r| r.get("crc_email").and_then(Value::as_str) == Some(email))
        .collect()
}

fn statecode(h: &Harness, set: &str, id: &str) -> i64 {
    h.dataverse.row(set, id).unwrap()["statecode"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn an_unsubscribe_comes_back_as_one_row_and_a_no_that_a_full_resync_respects() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h
        .contact("anna@example.com", &[(0, 1), (1, 1)])
        .await
        .unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("News", "contact", &[anna.clone(), bert])
        .await
        .unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com"]
    );

    h.cleverreach
        .unsubscribe(&group, "anna@example.com")
        .unwrap();
    let summary = h.run_receiver_state_sync().await.unwrap();
    assert_eq!(summary.applied, 1, "{summary:?}");
    assert!(summary.complete && summary.failed_groups.is_empty());

    let rows = rows_for(&h, "anna@example.com");
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["crc_groupid"], json!(group));
    assert_eq!(
        row["crc_event"],
        json!(shared::adapters::dataverse::schema::EVENT_UNSUBSCRIBED)
    );
    assert_eq!(row["_crc_contactid_value"], json!(anna));
    let deactivated = h
        .cleverreach
        .receiver(&group, "anna@example.com")
        .unwrap()
        .deactivated;
    let event_time = chrono::DateTime::parse_from_rfc3339(row["crc_eventtime"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(event_time, deactivated);
    // The list says yes to type 0 only: that entry becomes no, type 1 stays.
    assert_eq!(h.checklist_states("contacts", &anna), [(0, 2), (1, 1)]);
    let stored: Vec<Value> = serde_json::from_str(
        h.dataverse.row("contacts", &anna).unwrap()["crc_checklist"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(stored[0]["modifiedby"], "CleverReach");
    assert!(stored[0]["modifiedon"].as_str().unwrap().starts_with("20"));
    // The connector's own write-back is not work for the intake; the one message is the
    // person's reconcile that carries her "no" to every other group.
    assert_eq!(
        h.settle().await.unwrap(),
        1,
        "only the person's reconcile was queued"
    );

    // The same run again: the event is found again and changes nothing.
    let again = h.run_receiver_state_sync().await.unwrap();
    assert_eq!(again.applied, 0, "{again:?}");
    assert_eq!(rows_for(&h, "anna@example.com").len(), 1);

    // A full resync of the list does not bring Anna back.
    h.update("lists", &list, json!({ "crc_resync": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["bert@example.com"]);
    assert!(h.cleverreach.reactivations().is_empty());
    assert!(h.dead_letters().is_empty());
}

/// Bounces of a contact (in one list) and a lead (in another) with these bounce settings;
/// returns whether each was deactivated.
async fn bounce_with(disable_contact: bool, disable_lead: bool) -> (bool, bool) {
    let h = Harness::start().await.unwrap();
    let flag = |b: bool| if b { "true" } else { "false" };
    h.install(&[
        (
            "cleverreach:bouncesettings:disablecontact",
            flag(disable_contact),
        ),
        ("cleverreach:bouncesettings:disablelead", flag(disable_lead)),
    ])
    .await
    .unwrap();
    let carl = h.contact("carl@example.com", &[(0, 1)]).await.unwrap();
    let lena = h
        .create(
            "leads",
            json!({ "firstname": "Lena", "lastname": "Lead", "emailaddress1": "lena@example.com",
                    "crc_checklist": sandbox::harness::checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
    let (_, contacts) = h
        .synced_static_list("Contacts", "contact", std::slice::from_ref(&carl))
        .await
        .unwrap();
    let (_, leads) = h
        .synced_static_list("Leads", "lead", std::slice::from_ref(&lena))
        .await
        .unwrap();
    h.cleverreach.bounce("carl@example.com").unwrap();
    h.cleverreach.bounce("lena@example.com").unwrap();

    let summary = h.run_receiver_state_sync().await.unwrap();
    assert_eq!(summary.applied, 2, "{summary:?}");
    for (email, group) in [
        ("carl@example.com", &contacts),
        ("lena@example.com", &leads),
    ] {
        let rows = rows_for(&h, email);
        assert_eq!(rows.len(), 1, "{email}: {rows:?}");
        assert_eq!(
            rows[0]["crc_event"],
            json!(shared::adapters::dataverse::schema::EVENT_BOUNCED)
        );
        assert_eq!(rows[0]["crc_groupid"], json!(group));
    }
    assert_eq!(
        rows_for(&h, "lena@example.com")[0]["_crc_leadid_value"],
        json!(lena)
    );
    assert_eq!(h.run_receiver_state_sync().await.unwrap().applied, 0);
    assert_eq!(h.dataverse.rows("crc_receiverstates").len(), 2);
    // Bounced people keep their checklist: a bounce is not an opt-out of the person.
    assert_eq!(h.checklist_states("contacts", &carl), [(0, 1)]);
    (
        statecode(&h, "contacts", &carl) == 1,
        statecode(&h, "leads", &lena) == 2,
    )
}

#[tokio::test]
async fn a_bounce_deactivates_the_contact_and_the_lead_only_when_the_settings_say_so() {
    assert_eq!(bounce_with(true, false).await, (true, false));
    assert_eq!(bounce_with(false, true).await, (false, true));
}

#[tokio::test]
async fn broken_receivers_and_unknown_states_are_reported_and_skipped_and_the_rest_applied() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let mut people = Vec::new();
    for name in ["anna", "bert", "carl", "dora"] {
        people.push(
            h.contact(&format!("{name}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    let (_, group) = h
        .synced_static_list("News", "contact", &people)
        .await
        .unwrap();
    for name in ["anna", "bert", "carl", "dora"] {
        h.cleverreach
            .unsubscribe(&group, &format!("{name}@example.com"))
            .unwrap();
    }
    // Anna: a state CleverReach reports without a usable time; Bert: an address that is not
    // one; Carl: not a receiver object at all.
    h.cleverreach
        .corrupt_receiver(&group, "anna@example.com", json!({ "deactivated": "soon" }))
        .unwrap();
    h.cleverreach
        .corrupt_receiver(
            &group,
            "bert@example.com",
            json!({ "email": "bert at example" }),
        )
        .unwrap();
    h.cleverreach
        .corrupt_receiver(&group, "carl@example.com", json!("garbage"))
        .unwrap();

    let summary = h.run_receiver_state_sync().await.unwrap();
    assert_eq!(summary.applied, 1, "{summary:?}");
    assert!(summary.skipped >= 3, "{summary:?}");
    assert!(
        summary.complete,
        "bad input does not stop the run: {summary:?}"
    );
    let problems = summary.problems.join("\n");
    assert!(
        problems.contains("no valid unsubscribed time"),
        "{problems}"
    );
    assert!(problems.contains("not a valid e-mail"), "{problems}");
    assert!(problems.contains("not a readable receiver"), "{problems}");
    assert!(
        !problems.contains("@example.com"),
        "no addresses in reports: {problems}"
    );

    assert_eq!(rows_for(&h, "dora@example.com").len(), 1);
    assert_eq!(h.dataverse.rows("crc_receiverstates").len(), 1);
    assert_eq!(h.checklist_states("contacts", &people[3]), [(0, 2)]);
    for skipped in &people[..3] {
        assert_eq!(h.checklist_states("contacts", skipped), [(0, 1)]);
    }
}

#[tokio::test]
async fn a_broken_checklist_in_the_crm_is_reported_and_the_event_still_recorded() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (_, group) = h
        .synced_static_list("News", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    h.cleverreach
        .unsubscribe(&group, "anna@example.com")
        .unwrap();
    let broken = r#"[{"id":0,"state":7}]"#;
    h.update("contacts", &anna, json!({ "crc_checklist": broken }))
        .await
        .unwrap();
    h.settle().await.unwrap();

    let summary = h.run_receiver_state_sync().await.unwrap();
    assert_eq!(summary.skipped, 1, "{summary:?}");
    assert!(summary.problems[0].contains("state 7"), "{summary:?}");
    let rows = rows_for(&h, "anna@example.com");
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0]["crc_details"]
            .as_str()
            .unwrap()
            .contains("cannot be read")
    );
    assert_eq!(
        h.dataverse.row("contacts", &anna).unwrap()["crc_checklist"],
        json!(broken),
        "an unreadable checklist is never overwritten"
    );
}

async fn five_unsubscribed(h: &Harness) -> (Vec<String>, String) {
    h.install(&[]).await.unwrap();
    let mut people = Vec::new();
    for i in 0..5 {
        people.push(
            h.contact(&format!("p{i}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    let (_, group) = h
        .synced_static_list("News", "contact", &people)
        .await
        .unwrap();
    for i in 0..5 {
        h.cleverreach
            .unsubscribe(&group, &format!("p{i}@example.com"))
            .unwrap();
    }
    (people, group)
}

fn every_event_applied_once(h: &Harness, people: &[String]) {
    assert_eq!(h.dataverse.rows("crc_receiverstates").len(), 5);
    for (i, person) in people.iter().enumerate() {
        assert_eq!(rows_for(h, &format!("p{i}@example.com")).len(), 1);
        assert_eq!(h.checklist_states("contacts", person), [(0, 2)]);
    }
}

#[tokio::test]
async fn a_run_stopped_by_its_budget_resumes_from_the_cursor_and_applies_every_event_once() {
    let h = Harness::start().await.unwrap();
    let (people, _) = five_unsubscribed(&h).await;
    let capped = RunLimits {
        page_size: 2,
        max_events: Some(2),
        ..RunLimits::default()
    };

    let first = h.run_job_with(Job::ReceiverState, capped).await.unwrap();
    assert_eq!(first.applied, 2, "{first:?}");
    assert!(!first.complete);
    assert_eq!(h.dataverse.rows("crc_receiverstates").len(), 2);

    // No time left at all: nothing happens, and nothing is lost.
    let no_time = RunLimits {
        budget: Duration::ZERO,
        ..RunLimits::default()
    };
    let idle = h.run_job_with(Job::ReceiverState, no_time).await.unwrap();
    assert_eq!((idle.events, idle.complete), (0, false), "{idle:?}");

    let mut applied = first.applied;
    let mut runs = 1;
    loop {
        let run = h.run_job_with(Job::ReceiverState, capped).await.unwrap();
        applied += run.applied;
        runs += 1;
        if run.complete {
            break;
        }
        assert!(runs < 10, "the runs never finish: {run:?}");
    }
    assert_eq!(
        applied, 5,
        "every event applied exactly once over {runs} runs"
    );
    every_event_applied_once(&h, &people);
}

#[tokio::test]
async fn runs_failing_on_crm_faults_resume_and_apply_every_event_once() {
    let h = Harness::start().await.unwrap();
    let (people, _) = five_unsubscribed(&h).await;
    // A connector whose CRM calls are not retried: every injected fault fails the run at that
    // point (lost answers of applied writes included), and the next run must pick up.
    let crm = DataverseClient::new(DataverseConfig {
        retry: RetryPolicy::none(),
        ..DataverseConfig::new(
            url::Url::parse(&h.dataverse.api_url()).unwrap(),
            url::Url::parse(&h.dataverse.token_url()).unwrap(),
            CONNECTOR_CLIENT_ID,
            Secret::new(CONNECTOR_CLIENT_SECRET),
            format!("{}/.default", h.dataverse.resource()),
        )
    })
    .unwrap();
    let worker = h.worker(QueueFamily::Contact).unwrap();
    let mut conn = Connector::new(DataverseCrm::new(crm), h.newsletter().clone());
    conn.now = worker.conn.now;
    let deps = JobDeps {
        conn,
        limits: RunLimits {
            page_size: 2,
            ..RunLimits::default()
        },
    };
    h.dataverse.faults().set(FaultConfig {
        rate: 0.1,
        kinds: vec![
            FaultKind::InternalError,
            FaultKind::Unavailable,
            FaultKind::DropAfterApply,
        ],
        seed: Some(11),
        ..FaultConfig::off()
    });
    let mut complete = false;
    let mut interrupted = 0;
    for _ in 0..100 {
        match run_once(&deps, Job::ReceiverState, &json!({})).await {
            Ok(run) if run.complete => {
                complete = true;
                break;
            }
            _ => interrupted += 1,
        }
    }
    let injected: u64 = h.dataverse.faults().stats().injected.values().sum();
    h.dataverse.faults().off();
    assert!(
        complete,
        "the runs never finished under faults ({interrupted} interrupted)"
    );
    assert!(
        injected > 0 && interrupted > 0,
        "faults {injected}, interrupted runs {interrupted}"
    );
    every_event_applied_once(&h, &people);
}

/// How the connector comes to remove Anna's receiver.
#[derive(Debug, Clone, Copy)]
enum Removal {
    /// She leaves the list: the scoped reconcile of one person.
    MemberRemoved,
    /// The list's checklist stops asking for what she said yes to: a full reconcile.
    ChecklistChanged,
}

/// Anna unsubscribes in CleverReach while the connector, having read her receiver as active,
/// is about to delete it (CleverReach answers after 300 ms, and she unsubscribes as soon as the
/// connector's first read of receivers is answered). Her receiver must stay, so that the
/// back-flow brings her "no" into the CRM, and she is not re-added when she is wanted again.
async fn unsubscribe_during_removal(removal: Removal) {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h
        .contact("anna@example.com", &[(0, 1), (1, 2)])
        .await
        .unwrap();
    let (list, group) = h
        .synced_static_list("Newsletter", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    assert_eq!(h.active_emails(&group), ["anna@example.com"]);
    let reads = |h: &Harness| {
        let stats = h.cleverreach.stats();
        [
            Endpoint::ReceiversList,
            Endpoint::ReceiversFilter,
            Endpoint::ReceiverGet,
            Endpoint::ReceiverPoolGet,
        ]
        .iter()
        .map(|e| stats.calls(*e))
        .sum::<u64>()
    };
    h.cleverreach.faults().set(FaultConfig {
        latency_ms: 300,
        ..FaultConfig::off()
    });
    let before = reads(&h);
    match removal {
        Removal::MemberRemoved => h.remove_member(&list, &anna).await.unwrap(),
        Removal::ChecklistChanged => h
            .update(
                "lists",
                &list,
                json!({ "crc_checklist": sandbox::harness::checklist(&[(0, 0), (1, 1)]) }),
            )
            .await
            .unwrap(),
    }
    let unsubscribe = async {
        while reads(&h) == before {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        h.cleverreach
            .unsubscribe(&group, "anna@example.com")
            .unwrap();
    };
    let (settled, ()) = tokio::join!(h.settle(), unsubscribe);
    settled.unwrap();
    h.cleverreach.faults().off();
    let receiver = h.cleverreach.receiver(&group, "anna@example.com");
    assert!(
        receiver.as_ref().is_some_and(|r| !r.active),
        "her unsubscribed receiver stays: {receiver:?}"
    );

    // The back-flow brings her "no" into the CRM; wanted again, she is not re-added.
    h.run_receiver_state_sync().await.unwrap();
    match removal {
        Removal::MemberRemoved => h.add_member(&list, &anna).await.unwrap(),
        Removal::ChecklistChanged => h
            .update(
                "lists",
                &list,
                json!({ "crc_checklist": sandbox::harness::checklist(&[(0, 1)]) }),
            )
            .await
            .unwrap(),
    }
    h.settle().await.unwrap();
    assert!(
        h.active_emails(&group).is_empty(),
        "anna unsubscribed and is active again: {:?}",
        h.cleverreach.receivers(&group)
    );
    assert_eq!(
        rows_for(&h, "anna@example.com").len(),
        1,
        "one receiver-state row for her unsubscribe"
    );
    if let Removal::MemberRemoved = removal {
        // The list asks for type 0: her yes to it became a no from CleverReach.
        let checklist = h.dataverse.row("contacts", &anna).unwrap()["crc_checklist"]
            .as_str()
            .unwrap()
            .to_string();
        let entries: Vec<Value> = serde_json::from_str(&checklist).unwrap();
        assert!(
            entries
                .iter()
                .any(|e| e["id"] == 0 && e["state"] == 2 && e["modifiedby"] == "CleverReach"),
            "her no reached the CRM: {checklist}"
        );
    }
}

#[tokio::test]
async fn an_unsubscribe_made_while_a_member_removal_is_under_way_is_kept_and_travels_back() {
    unsubscribe_during_removal(Removal::MemberRemoved).await;
}

#[tokio::test]
async fn an_unsubscribe_made_while_a_full_reconcile_removes_the_receiver_is_kept_and_travels_back()
{
    unsubscribe_during_removal(Removal::ChecklistChanged).await;
}
