//! End to end through the checklist control: a person changes a choice or presses "Resync now"
//! on a form in a real browser and saves; the Dataverse simulator fires the webhook steps the
//! installer registered, the connector's workers run, and the CleverReach simulator shows the
//! result.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

use crate::checklist_browser::{FRAME, Page};
use sandbox::browser::{self, Browser};
use sandbox::dataverse::{ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET};
use sandbox::form_page::{self, FormApp};
use sandbox::harness::Harness;
use serde_json::json;

/// The connector with its webhooks, settings and the checklist installed; the app; a browser.
async fn connector() -> Option<(Harness, FormApp, Browser)> {
    let program = browser::program()?;
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    sandbox::provision::install_forms(&h.dataverse)
        .await
        .unwrap();
    let app = form_page::serve(&h.dataverse, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET)
        .await
        .unwrap();
    let browser = Browser::launch(&program).await.unwrap();
    Some((h, app, browser))
}

async fn open(browser: &mut Browser, app: &FormApp, table: &str, id: &str) {
    browser.go(&app.record(table, id)).await.unwrap();
    browser
        .wait_for(&format!("{FRAME} && {FRAME}.querySelector('.crc-types')"))
        .await
        .unwrap();
}

async fn save(browser: &mut Browser) {
    browser
        .click("document.getElementById('save')")
        .await
        .unwrap();
    browser
        .wait_for("document.getElementById('save-state').innerText === 'Saved'")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_yes_given_in_the_control_and_saved_puts_the_contact_into_the_group_of_a_synced_list() {
    let Some((h, app, mut browser)) = connector().await else {
        return;
    };
    // A synced list sending newsletter type 0; Ina is a member but has made no choice yet.
    let ina = h.contact("ina@example.com", &[(0, 0)]).await.unwrap();
    let ole = h.contact("ole@example.com", &[(0, 1)]).await.unwrap();
    let (_, group) = h
        .synced_static_list("Newsletter", "contact", &[ina.clone(), ole])
        .await
        .unwrap();
    assert_eq!(h.active_emails(&group), ["ole@example.com"]);

    open(&mut browser, &app, "contact", &ina).await;
    browser.click(&Page::choice(0, 1)).await.unwrap();
    save(&mut browser).await;
    h.settle().await.unwrap();

    assert_eq!(
        h.active_emails(&group),
        ["ina@example.com", "ole@example.com"]
    );
    assert_eq!(h.checklist_states("contacts", &ina), [(0, 1)]);
    assert!(
        h.dataverse
            .deliveries()
            .iter()
            .any(|d| d.step_name.ends_with("Update of contact") && d.record_id == ina),
        "it went through the installed step"
    );
    assert!(h.dead_letters().is_empty(), "{:?}", h.dead_letters());

    // And a "no" takes her out again.
    open(&mut browser, &app, "contact", &ina).await;
    browser.click(&Page::choice(0, 2)).await.unwrap();
    save(&mut browser).await;
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["ole@example.com"]);
}

#[tokio::test]
async fn resync_now_on_a_list_form_leads_through_the_webhook_steps_to_a_full_reconcile() {
    let Some((h, app, mut browser)) = connector().await else {
        return;
    };
    let mut members = Vec::new();
    for who in ["anna", "bert"] {
        members.push(
            h.contact(&format!("{who}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    let (list, group) = h
        .synced_static_list("Drift", "contact", &members)
        .await
        .unwrap();
    // Drift behind the connector's back, which no webhook reports: a stranger added in
    // CleverReach, bert deleted there.
    h.cleverreach
        .add_stranger(&group, "stranger@example.com", true, &[])
        .unwrap();
    h.cleverreach
        .delete_receiver(&group, "bert@example.com")
        .unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "stranger@example.com"]
    );

    open(&mut browser, &app, "list", &list).await;
    let resync = format!("{FRAME}.getElementById('crc-resync')");
    browser.click(&resync).await.unwrap();
    browser
        .wait_for(&format!("{resync}.disabled"))
        .await
        .unwrap();
    assert!(
        browser
            .eval(&format!(
                "{FRAME}.getElementById('crc-resync-note').innerText"
            ))
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .contains("when the record is saved")
    );
    save(&mut browser).await;
    // Saved: the form reloads its data and the control says the connector has it now.
    browser
        .wait_for(&format!(
            "{FRAME}.getElementById('crc-resync-note').innerText.includes('the connector is working on it')"
        ))
        .await
        .unwrap();
    h.settle().await.unwrap();

    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com"],
        "the whole group compared: the stranger removed, bert back"
    );
    let row = h.dataverse.row("lists", &list).unwrap();
    assert_eq!(
        row["crc_resync"],
        json!(false),
        "the connector reset the flag"
    );
    assert!(
        row["crc_syncstatus"]
            .as_str()
            .unwrap()
            .starts_with("all members compared"),
        "{row:?}"
    );
    assert!(
        h.dataverse
            .deliveries()
            .iter()
            .any(|d| d.step_name.ends_with("Update of list") && d.record_id == list),
        "it went through the installed step"
    );
    assert!(h.dead_letters().is_empty(), "{:?}", h.dead_letters());
    // Reopened, the form shows the new state.
    open(&mut browser, &app, "list", &list).await;
    assert!(
        browser
            .eval(&format!("{FRAME}.getElementById('crc-root').innerText"))
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .contains("all members compared")
    );
}
