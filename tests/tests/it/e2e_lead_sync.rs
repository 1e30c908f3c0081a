//! End to end: people who sign up in CleverReach become leads in the CRM (`lead-sync`, docs/architecture.md
//! §3). Sign-ups happen in the CleverReach simulator; the leads are read from the Dataverse
//! simulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::harness::{Harness, checklist};
use serde_json::{Map, Value, json};

fn leads_with(h: &Harness, email: &str) -> Vec<Map<String, Value>> {
    h.dataverse
        .rows("leads")
        .into_iter()
        .filter(|r| {
            r.get("emailaddress1")
                .and_then(Value::as_str)
                .is_some_and(|e| e.eq_ignore_ascii_case(email))
        })
        .collect()
}

fn lead_id(row: &Map<String, Value>) -> String {
    row["leadid"].as_str().unwrap().to_string()
}

/// A synced static contact list whose checklist says yes to these types.
async fn synced_list(h: &Harness, name: &str, types: &[(i64, i64)]) -> String {
    let list = h
        .create(
            "lists",
            json!({ "listname": name, "createdfromcode": 2, "type": false,
                    "crc_checklist": checklist(types), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.settle().await.unwrap();
    h.group_of("lists", &list).expect("group created")
}

#[tokio::test]
async fn a_signup_becomes_exactly_one_lead_with_its_data_and_types_and_a_rerun_adds_none() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (_, group) = h
        .synced_static_list("News", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    // The account has a global "company", as most do; the sign-up form sets it.
    h.newsletter()
        .ensure_global_attributes(&["company"])
        .await
        .unwrap();

    h.cleverreach
        .signup(
            &group,
            "Nora.Neu@example.com",
            &[
                ("salutation", "Frau"),
                ("firstname", "Nora"),
                ("lastname", "Neu"),
                ("company", "Neu & Co"),
            ],
        )
        .unwrap();
    let summary = h.run_lead_sync().await.unwrap();
    assert_eq!(summary.leads_created, 1, "{summary:?}");
    assert!(summary.complete);

    let leads = leads_with(&h, "nora.neu@example.com");
    assert_eq!(leads.len(), 1, "{leads:?}");
    let lead = &leads[0];
    assert_eq!(lead["firstname"], "Nora");
    assert_eq!(lead["lastname"], "Neu");
    assert_eq!(lead["companyname"], "Neu & Co");
    assert_eq!(lead["salutation"], "Frau");
    assert_eq!(lead["statecode"], 0);
    // The list says yes to type 0: the lead gets 0 = yes, type 1 no choice.
    assert_eq!(
        h.checklist_states("leads", &lead_id(lead)),
        [(0, 1), (1, 0)]
    );
    // Anna came from the CRM: no lead for her.
    assert_eq!(h.dataverse.rows("leads").len(), 1);
    assert_eq!(
        h.settle().await.unwrap(),
        0,
        "creating the lead queued no work"
    );

    let again = h.run_lead_sync().await.unwrap();
    assert_eq!(
        (again.leads_created, again.leads_updated),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(h.dataverse.rows("leads").len(), 1);
}

#[tokio::test]
async fn a_receiver_in_two_groups_becomes_one_lead_with_both_groups_types() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let info = synced_list(&h, "Information", &[(0, 1)]).await;
    let games = synced_list(&h, "Spiele", &[(1, 1)]).await;
    h.cleverreach
        .signup(&info, "otto@example.com", &[])
        .unwrap();
    h.cleverreach
        .signup(&games, "otto@example.com", &[])
        .unwrap();

    let summary = h.run_lead_sync().await.unwrap();
    assert_eq!(
        (summary.leads_created, summary.leads_updated),
        (1, 1),
        "{summary:?}"
    );
    let leads = leads_with(&h, "otto@example.com");
    assert_eq!(leads.len(), 1);
    assert_eq!(
        h.checklist_states("leads", &lead_id(&leads[0])),
        [(0, 1), (1, 1)]
    );
    assert_eq!(h.run_lead_sync().await.unwrap().applied, 0);
    assert_eq!(h.dataverse.rows("leads").len(), 1);
}

#[tokio::test]
async fn no_lead_is_made_for_a_known_address_an_inactive_receiver_or_a_no_that_was_given() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let group = synced_list(&h, "News", &[(0, 1)]).await;
    // Known to the CRM as a contact that is in no synced list.
    h.contact("KNOWN@example.com", &[]).await.unwrap();
    h.cleverreach
        .signup(&group, "known@example.com", &[])
        .unwrap();
    h.cleverreach
        .add_stranger(&group, "sleeper@example.com", false, &[])
        .unwrap();
    h.cleverreach
        .signup(&group, "nora@example.com", &[])
        .unwrap();

    let summary = h.run_lead_sync().await.unwrap();
    assert_eq!(summary.leads_created, 1, "{summary:?}");
    assert_eq!(h.dataverse.rows("leads").len(), 1);
    let nora = lead_id(&leads_with(&h, "nora@example.com")[0]);

    // Nora says no to type 0 in the CRM; signing up again elsewhere does not undo that.
    h.update(
        "leads",
        &nora,
        json!({ "crc_checklist": checklist(&[(0, 2)]) }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    let other = synced_list(&h, "Other", &[(0, 1)]).await;
    h.cleverreach
        .signup(&other, "nora@example.com", &[])
        .unwrap();
    h.run_lead_sync().await.unwrap();
    assert_eq!(h.checklist_states("leads", &nora), [(0, 2)]);
    assert_eq!(h.dataverse.rows("leads").len(), 1);
}

/// The static lists (ids) a record is a member of.
fn lists_of(h: &Harness, member: &str) -> Vec<String> {
    h.dataverse
        .rows("listmembers")
        .into_iter()
        .filter(|m| m.get("_entityid_value").and_then(Value::as_str) == Some(member))
        .filter_map(|m| {
            m.get("_listid_value")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

/// Asks for a full resync of a source and waits until it is done.
async fn resync(h: &Harness, set: &str, id: &str) {
    h.update(set, id, json!({ "crc_resync": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
}

#[tokio::test]
async fn a_signup_into_a_lead_lists_group_joins_the_list_and_survives_a_full_resync() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let (list, group) = h.synced_static_list("Leads", "lead", &[]).await.unwrap();
    h.cleverreach
        .signup(&group, "nora@example.com", &[("firstname", "Nora")])
        .unwrap();

    let summary = h.run_lead_sync().await.unwrap();
    assert_eq!(
        (summary.leads_created, summary.leads_linked),
        (1, 1),
        "{summary:?}"
    );
    assert!(summary.signups_at_risk.is_empty(), "{summary:?}");
    let leads = leads_with(&h, "nora@example.com");
    assert_eq!(leads.len(), 1);
    let lead = lead_id(&leads[0]);
    assert_eq!(lists_of(&h, &lead), std::slice::from_ref(&list));
    assert_eq!(
        h.settle().await.unwrap(),
        0,
        "the connector's writes queued no work"
    );

    resync(&h, "lists", &list).await;
    assert_eq!(h.active_emails(&group), ["nora@example.com"]);
    assert!(h.dead_letters().is_empty());

    let again = h.run_lead_sync().await.unwrap();
    assert_eq!(
        (again.applied, again.leads_created, again.leads_linked),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!(h.dataverse.rows("leads").len(), 1);
    assert_eq!(lists_of(&h, &lead), [list]);
}

#[tokio::test]
async fn a_signup_into_a_campaigns_group_is_linked_to_the_campaign_and_survives_a_full_resync() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let campaign = h
        .create(
            "campaigns",
            json!({ "name": "Spring", "crc_checklist": checklist(&[(0, 1)]),
                    "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.settle().await.unwrap();
    let group = h.group_of("campaigns", &campaign).expect("group created");
    h.cleverreach
        .signup(&group, "otto@example.com", &[])
        .unwrap();

    let summary = h.run_lead_sync().await.unwrap();
    assert_eq!(
        (summary.leads_created, summary.leads_linked),
        (1, 1),
        "{summary:?}"
    );
    assert!(summary.signups_at_risk.is_empty(), "{summary:?}");
    let leads = leads_with(&h, "otto@example.com");
    assert_eq!(leads.len(), 1);
    assert_eq!(leads[0]["_campaignid_value"], json!(campaign));
    assert_eq!(h.settle().await.unwrap(), 0);

    resync(&h, "campaigns", &campaign).await;
    assert_eq!(h.active_emails(&group), ["otto@example.com"]);

    let again = h.run_lead_sync().await.unwrap();
    assert_eq!((again.applied, again.leads_linked), (0, 0), "{again:?}");
    assert_eq!(h.dataverse.rows("leads").len(), 1);
}

#[tokio::test]
async fn a_signup_into_a_contact_lists_group_is_kept_as_a_lead_and_reported_as_at_risk() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let list = h
        .create(
            "lists",
            json!({ "listname": "Contacts", "createdfromcode": 2, "type": false,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.settle().await.unwrap();
    let group = h.group_of("lists", &list).expect("group created");
    h.cleverreach
        .signup(&group, "paula@example.com", &[])
        .unwrap();

    let summary = h.run_lead_sync().await.unwrap();
    assert_eq!(
        (summary.leads_created, summary.leads_linked),
        (1, 0),
        "{summary:?}"
    );
    assert_eq!(summary.signups_at_risk.len(), 1, "{summary:?}");
    let report = &summary.signups_at_risk[0];
    assert!(report.contains(&list), "{report}");
    assert!(report.contains("static list of contacts"), "{report}");
    assert!(
        report.contains("a resync will remove the receiver"),
        "{report}"
    );
    assert!(!report.contains("paula"), "no personal data: {report}");
    let lead = lead_id(&leads_with(&h, "paula@example.com")[0]);
    assert!(lists_of(&h, &lead).is_empty());

    // What the report warns of: the list cannot hold the lead, so a full resync removes it.
    resync(&h, "lists", &list).await;
    assert!(h.active_emails(&group).is_empty());
}
