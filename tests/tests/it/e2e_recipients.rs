//! End to end: contacts, leads and accounts changing in the CRM, receivers following in every
//! group they belong to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::harness::{Harness, checklist};
use serde_json::json;

#[tokio::test]
async fn a_recipients_checklist_change_adds_or_removes_them_in_every_group() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 2)]).await.unwrap();
    let (_, g1) = h
        .synced_static_list("One", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    let (_, g2) = h
        .synced_static_list("Two", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    assert!(h.active_emails(&g1).is_empty());

    h.update(
        "contacts",
        &anna,
        json!({ "crc_checklist": checklist(&[(0, 1)]) }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&g1), ["anna@example.com"]);
    assert_eq!(h.active_emails(&g2), ["anna@example.com"]);

    h.update(
        "contacts",
        &anna,
        json!({ "crc_checklist": checklist(&[(0, 2)]) }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert!(h.active_emails(&g1).is_empty());
    assert!(h.active_emails(&g2).is_empty());
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn an_email_change_moves_the_receiver_to_the_new_address_keeping_its_history() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (_, g1) = h
        .synced_static_list("One", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    let (_, g2) = h
        .synced_static_list("Two", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    let before = h.cleverreach.receiver(&g1, "anna@example.com").unwrap();

    h.update(
        "contacts",
        &anna,
        json!({ "emailaddress1": "anna.new@example.com" }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&g1), ["anna.new@example.com"]);
    assert_eq!(h.active_emails(&g2), ["anna.new@example.com"]);
    let after = h.cleverreach.receiver(&g1, "anna.new@example.com").unwrap();
    assert_eq!(after.id, before.id, "the same receiver, history kept");
    assert_eq!(after.registered, before.registered);
}

#[tokio::test]
async fn name_and_salutation_changes_update_the_receivers_attributes() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (_, group) = h
        .synced_static_list("Names", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    h.update(
        "contacts",
        &anna,
        json!({ "firstname": "Anna-Lena", "lastname": "Schmidt", "salutation": "Frau Dr." }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    let r = h.cleverreach.receiver(&group, "anna@example.com").unwrap();
    assert_eq!(r.global_attributes["firstname"], "Anna-Lena");
    assert_eq!(r.global_attributes["lastname"], "Schmidt");
    assert_eq!(r.global_attributes["salutation"], "Frau Dr.");
    assert_eq!(r.global_attributes["crmentity"], "contact");
    assert_eq!(r.global_attributes["crmid"], anna);
}

#[tokio::test]
async fn the_company_follows_the_parent_account_and_its_name() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let acme = h
        .create("accounts", json!({ "name": "Acme" }))
        .await
        .unwrap();
    let globex = h
        .create("accounts", json!({ "name": "Globex" }))
        .await
        .unwrap();
    let anna = h
        .create(
            "contacts",
            json!({ "firstname": "Anna", "lastname": "A", "emailaddress1": "anna@example.com",
                    "crc_checklist": checklist(&[(0, 1)]),
                    "parentcustomerid_account@odata.bind": format!("/accounts({acme})") }),
        )
        .await
        .unwrap();
    let (_, group) = h
        .synced_static_list("Company", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    let company = |h: &Harness| {
        h.cleverreach
            .receiver(&group, "anna@example.com")
            .unwrap()
            .attributes["crm_company"]
            .clone()
    };
    assert_eq!(company(&h), "Acme");

    h.update(
        "contacts",
        &anna,
        json!({ "parentcustomerid_account@odata.bind": format!("/accounts({globex})") }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(company(&h), "Globex");

    h.update("accounts", &globex, json!({ "name": "Globex Corp" }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(company(&h), "Globex Corp");
}

#[tokio::test]
async fn deactivating_or_deleting_a_recipient_removes_its_receiver_everywhere() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let (_, group) = h
        .synced_static_list("People", "contact", &[anna.clone(), bert.clone()])
        .await
        .unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com"]
    );

    h.update("contacts", &anna, json!({ "statecode": 1 }))
        .await
        .unwrap();
    h.delete("contacts", &bert).await.unwrap();
    h.settle().await.unwrap();
    assert!(h.active_emails(&group).is_empty());
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn leads_in_a_lead_list_are_synced_and_follow_their_changes() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let lead = h
        .create(
            "leads",
            json!({ "firstname": "Lea", "lastname": "Lead", "emailaddress1": "lea@example.com",
                    "companyname": "Leadworks", "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
    let (_, group) = h
        .synced_static_list("Leads", "lead", std::slice::from_ref(&lead))
        .await
        .unwrap();
    let r = h.cleverreach.receiver(&group, "lea@example.com").unwrap();
    assert_eq!(r.attributes["crm_company"], "Leadworks");
    assert_eq!(r.global_attributes["crmentity"], "lead");

    h.update("leads", &lead, json!({ "donotbulkemail": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert!(
        h.active_emails(&group).is_empty(),
        "do not bulk e-mail removes"
    );
}

#[tokio::test]
async fn an_account_list_sends_the_primary_contact_and_follows_a_new_primary_contact() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let old = h.contact("old.boss@example.com", &[(0, 1)]).await.unwrap();
    let new = h.contact("new.boss@example.com", &[(0, 1)]).await.unwrap();
    let acme = h
        .create(
            "accounts",
            json!({ "name": "Acme", "primarycontactid@odata.bind": format!("/contacts({old})") }),
        )
        .await
        .unwrap();
    let (_, group) = h
        .synced_static_list("Accounts", "account", std::slice::from_ref(&acme))
        .await
        .unwrap();
    assert_eq!(h.active_emails(&group), ["old.boss@example.com"]);
    let r = h
        .cleverreach
        .receiver(&group, "old.boss@example.com")
        .unwrap();
    assert_eq!(r.attributes["crm_company"], "Acme");

    h.update(
        "accounts",
        &acme,
        json!({ "primarycontactid@odata.bind": format!("/contacts({new})") }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["new.boss@example.com"]);

    h.update("accounts", &acme, json!({ "statecode": 1 }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert!(h.active_emails(&group).is_empty(), "inactive account: out");
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn deleting_an_account_removes_its_primary_contact_from_the_account_lists() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let boss = h.contact("boss@example.com", &[(0, 1)]).await.unwrap();
    let acme = h
        .create(
            "accounts",
            json!({ "name": "Acme", "primarycontactid@odata.bind": format!("/contacts({boss})") }),
        )
        .await
        .unwrap();
    let (_, accounts) = h
        .synced_static_list("Accounts", "account", std::slice::from_ref(&acme))
        .await
        .unwrap();
    let (_, contacts) = h
        .synced_static_list("Contacts", "contact", std::slice::from_ref(&boss))
        .await
        .unwrap();
    h.delete("accounts", &acme).await.unwrap();
    h.settle().await.unwrap();
    assert!(h.active_emails(&accounts).is_empty());
    assert_eq!(
        h.active_emails(&contacts),
        ["boss@example.com"],
        "still a member in their own right"
    );
}

#[tokio::test]
async fn a_lead_created_that_a_synced_dynamic_lead_list_selects_becomes_a_receiver() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let query = r#"<fetch><entity name="lead"><attribute name="leadid"/><filter><condition attribute="companyname" operator="like" value="%Fair%"/></filter></entity></fetch>"#;
    let list = h
        .create(
            "lists",
            json!({ "listname": "Fair leads", "createdfromcode": 4, "type": true, "query": query,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.settle().await.unwrap();
    let group = h.group_of("lists", &list).expect("group");
    assert!(h.active_emails(&group).is_empty());

    h.create(
        "leads",
        json!({ "lastname": "Visitor", "companyname": "Fair GmbH", "emailaddress1": "visitor@fair.example",
                "crc_checklist": checklist(&[(0, 1)]) }),
    )
    .await
    .unwrap();
    h.create(
        "leads",
        json!({ "lastname": "Other", "companyname": "Elsewhere", "emailaddress1": "other@example.com",
                "crc_checklist": checklist(&[(0, 1)]) }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["visitor@fair.example"]);
    assert!(h.dead_letters().is_empty());
}
