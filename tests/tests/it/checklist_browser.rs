//! The newsletter checklist control in headless Chromium, on forms the installer placed it on:
//! the Dataverse simulator (provisioned by `crc-install`'s schema and forms phases) serves the
//! published form and web resources through a stand-in of the Unified Interface
//! (`sandbox::form_page`) whose form context behaves as Dynamics' documented Client API;
//! `Xrm.WebApi` and saving go to the simulator's Web API. Clicks and keys are real input
//! events. Screenshots go to `target/checklist-screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

use sandbox::browser::{self, Browser};
use sandbox::dataverse::{
    ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, DataverseSim, DataverseSimConfig, WebApi,
};
use sandbox::form_page::{self, FormApp};
use serde_json::{Value, json};

/// The control's frame document, as a JS expression.
pub const FRAME: &str =
    "document.getElementById('frame-WebResource_crc_checklist').contentDocument";

pub struct Page {
    pub sim: DataverseSim,
    pub admin: WebApi,
    pub app: FormApp,
    pub browser: Browser,
}

/// A plain org provisioned as `crc-install` does (schema, then the checklist), its app, a
/// browser. `None` when no Chromium is installed (the test then skips).
pub async fn page() -> Option<Page> {
    let program = browser::program()?;
    let sim = DataverseSim::spawn(DataverseSimConfig::default())
        .await
        .unwrap();
    sandbox::provision::install_schema(&sim).await.unwrap();
    sandbox::provision::install_forms(&sim).await.unwrap();
    let admin = WebApi::admin(&sim).await.unwrap();
    let app = form_page::serve(&sim, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET)
        .await
        .unwrap();
    let browser = Browser::launch(&program).await.unwrap();
    Some(Page {
        sim,
        admin,
        app,
        browser,
    })
}

impl Page {
    /// Opens a record's form (`extra`: more query parameters) and waits for the control to
    /// show its list or a message.
    pub async fn open(&mut self, table: &str, id: &str, extra: &str) {
        let url = format!("{}{extra}", self.app.record(table, id));
        self.browser.go(&url).await.unwrap();
        self.browser
            .wait_for(&format!(
                "{FRAME} && {FRAME}.querySelector('.crc-types, .crc-message.crc-error')"
            ))
            .await
            .unwrap();
    }

    /// The value of a column in the form context (not saved yet).
    pub async fn value(&mut self, column: &str) -> Value {
        self.browser
            .eval(&format!(
                "(() => {{ const v = crcForm.formContext.getAttribute('{column}').getValue(); return v instanceof Date ? v.toISOString() : v; }})()"
            ))
            .await
            .unwrap()
    }

    pub async fn dirty(&mut self) -> bool {
        self.browser.eval("crcForm.dirty()").await.unwrap() == true
    }

    /// A radio of the control, by newsletter type and state (0 no choice, 1 yes, 2 no).
    pub fn radio(type_id: i64, state: i64) -> String {
        format!("{FRAME}.getElementById('crc-t-{type_id}-{state}')")
    }

    /// The label the user clicks for a type's state.
    pub fn choice(type_id: i64, state: i64) -> String {
        format!("{FRAME}.querySelector('label[for=\"crc-t-{type_id}-{state}\"]')")
    }

    pub async fn text(&mut self, expression: &str) -> String {
        self.browser
            .eval(&format!("({expression}).innerText"))
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves the form as the user's Save button does.
    pub async fn save(&mut self) {
        self.browser
            .click("document.getElementById('save')")
            .await
            .unwrap();
        self.browser
            .wait_for("document.getElementById('save-state').innerText === 'Saved'")
            .await
            .unwrap();
    }

    pub async fn screenshot(&mut self, name: &str) -> std::path::PathBuf {
        let path = browser::screenshot_dir().join(format!("{name}.png"));
        self.browser
            .screenshot(
                Some("document.querySelector('[data-section=\"crc_checklist_section\"]')"),
                &path,
            )
            .await
            .unwrap();
        path
    }

    pub async fn contact(&self, checklist: Option<&str>) -> String {
        let mut body = json!({ "firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com" });
        if let Some(c) = checklist {
            body["crc_checklist"] = json!(c);
        }
        self.admin.create("contacts", &body).await.unwrap()
    }
}

fn entries(value: &Value) -> Vec<Value> {
    serde_json::from_str(value.as_str().expect("a checklist text")).unwrap()
}

#[tokio::test]
async fn clicking_a_state_changes_only_that_entry_with_the_users_name_and_the_time() {
    let Some(mut p) = page().await else { return };
    // Stored by hand: an unknown field, an entry for a type no longer configured (7), and no
    // entry for type 1.
    let stored = r#"[{"id":0,"state":0,"description":"Information","modifiedby":"","modifiedon":"","position":1,"source":"import"},{"id":7,"state":1,"description":"Old","modifiedby":"x","modifiedon":"2020-01-01T00:00:00Z","position":9}]"#;
    let contact = p.contact(Some(stored)).await;
    p.open("contact", &contact, "").await;
    assert_eq!(
        p.browser
            .eval(&format!("{}.checked", Page::radio(0, 0)))
            .await
            .unwrap(),
        true
    );
    assert_eq!(
        p.browser
            .eval(&format!("{}.checked", Page::radio(1, 0)))
            .await
            .unwrap(),
        true,
        "a type without an entry shows no choice"
    );
    assert!(!p.dirty().await);

    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    p.browser.click(&Page::choice(0, 1)).await.unwrap();
    p.browser
        .wait_for("crcForm.formContext.getAttribute('crc_checklist').getIsDirty()")
        .await
        .unwrap();
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    let now = entries(&p.value("crc_checklist").await);
    assert_eq!(
        now.len(),
        2,
        "no entry added for the untouched type 1: {now:?}"
    );
    assert_eq!(now[0]["state"], 1);
    assert_eq!(now[0]["modifiedby"], "admin", "the user's name");
    let at = chrono::DateTime::parse_from_rfc3339(now[0]["modifiedon"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(before <= at && at <= after, "{at}");
    assert!(now[0]["modifiedon"].as_str().unwrap().ends_with('Z'), "UTC");
    assert_eq!(now[0]["source"], "import", "unknown fields are kept");
    let old: Vec<Value> = serde_json::from_str(stored).unwrap();
    assert_eq!(
        now[1], old[1],
        "the unconfigured type's entry is kept as it was"
    );
    assert!(
        p.dirty().await,
        "the form is dirty: the user saves as usual"
    );

    // A type without an entry gets one, after the others, with its description and position.
    p.browser.click(&Page::choice(1, 2)).await.unwrap();
    p.browser
        .wait_for(
            "JSON.parse(crcForm.formContext.getAttribute('crc_checklist').getValue()).length === 3",
        )
        .await
        .unwrap();
    let now = entries(&p.value("crc_checklist").await);
    assert_eq!(now[2]["id"], 1);
    assert_eq!(now[2]["state"], 2);
    assert_eq!(now[2]["description"], "Werbung und Spiele");
    assert_eq!(now[2]["position"], 2);
    assert_eq!(now[2]["modifiedby"], "admin");
    assert_eq!(
        p.browser
            .eval(&format!("{}.checked", Page::radio(1, 2)))
            .await
            .unwrap(),
        true
    );

    // Saved as the user saves: the CRM holds exactly the control's JSON.
    let shown = p.value("crc_checklist").await;
    p.save().await;
    let row = p.sim.row("contacts", &contact).unwrap();
    assert_eq!(row["crc_checklist"], shown);
    p.screenshot("contact").await;
}

#[tokio::test]
async fn the_keyboard_moves_between_states_and_types_and_the_focus_is_visible() {
    let Some(mut p) = page().await else { return };
    let contact = p.contact(None).await;
    p.open("contact", &contact, "").await;
    // Into the first type's group (where Tab lands: its checked radio).
    p.browser
        .eval(&format!("{}.focus()", Page::radio(0, 0)))
        .await
        .unwrap();
    p.browser.press("ArrowRight", false).await.unwrap();
    p.browser.press("ArrowRight", false).await.unwrap();
    p.browser.press("ArrowLeft", false).await.unwrap();
    let now = entries(&p.value("crc_checklist").await);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(
        (now[0]["id"].clone(), now[0]["state"].clone()),
        (json!(0), json!(1))
    );
    assert_eq!(
        p.browser
            .eval(&format!("{FRAME}.activeElement.id"))
            .await
            .unwrap(),
        "crc-t-0-1",
        "the focus stays on the chosen state"
    );
    // The focused choice is outlined.
    let outline = p
        .browser
        .eval(&format!(
            "getComputedStyle({}).outlineStyle + ' ' + getComputedStyle({}).outlineWidth",
            Page::choice(0, 1),
            Page::choice(0, 1)
        ))
        .await
        .unwrap();
    assert_eq!(outline, "solid 3px");

    // Tab goes to the next type; Space on a state chooses it.
    p.browser.press("Tab", false).await.unwrap();
    assert_eq!(
        p.browser
            .eval(&format!("{FRAME}.activeElement.id"))
            .await
            .unwrap(),
        "crc-t-1-0"
    );
    p.browser.press("ArrowRight", false).await.unwrap();
    p.browser.press("ArrowRight", false).await.unwrap();
    let now = entries(&p.value("crc_checklist").await);
    assert_eq!(now.len(), 2);
    assert_eq!(
        (now[1]["id"].clone(), now[1]["state"].clone()),
        (json!(1), json!(2))
    );
    // Shift+Tab back, and the first type still says yes.
    p.browser.press("Tab", true).await.unwrap();
    assert_eq!(
        p.browser
            .eval(&format!("{FRAME}.activeElement.id"))
            .await
            .unwrap(),
        "crc-t-0-1"
    );
    // The radio groups are what assistive technology reads.
    let roles = p
        .browser
        .eval(&format!(
            "[...{FRAME}.querySelectorAll('[role=radiogroup]')].map(g => g.getAttribute('aria-labelledby') && {FRAME}.getElementById(g.getAttribute('aria-labelledby')).innerText)"
        ))
        .await
        .unwrap();
    assert_eq!(roles, json!(["Information", "Werbung und Spiele"]));
}

#[tokio::test]
async fn a_read_only_form_or_column_cannot_change_the_checklist() {
    let Some(mut p) = page().await else { return };
    let stored = r#"[{"id":0,"state":1,"description":"Information","modifiedby":"","modifiedon":"","position":1}]"#;
    // A deactivated record opens read only (form type 3).
    let inactive = p.contact(Some(stored)).await;
    let r = p
        .admin
        .patch(&format!("contacts({inactive})"), &json!({ "statecode": 1 }))
        .await
        .unwrap();
    assert!(r.status < 300, "{}", r.text);
    // A column the user may not change (as column security makes it): its control is disabled.
    let secured = p.contact(Some(stored)).await;
    for (id, extra) in [(&inactive, ""), (&secured, "&disabled=crc_checklist")] {
        p.open("contact", id, extra).await;
        assert_eq!(
            p.browser
                .eval(&format!(
                    "[...{FRAME}.querySelectorAll('input[type=radio]')].every(r => r.disabled)"
                ))
                .await
                .unwrap(),
            true,
            "{extra}"
        );
        assert!(
            p.text(&format!("{FRAME}.getElementById('crc-root')"))
                .await
                .contains("Read only")
        );
        p.browser.click(&Page::choice(0, 2)).await.unwrap();
        p.browser.click(&Page::choice(1, 1)).await.unwrap();
        p.browser
            .eval(&format!("{}.focus()", Page::radio(0, 1)))
            .await
            .unwrap();
        p.browser.press("ArrowRight", false).await.unwrap();
        p.browser.press("Space", false).await.unwrap();
        assert_eq!(p.value("crc_checklist").await, json!(stored), "{extra}");
        assert!(!p.dirty().await, "{extra}");
        assert_eq!(
            p.browser
                .eval(&format!("{}.checked", Page::radio(0, 1)))
                .await
                .unwrap(),
            true
        );
    }
    p.screenshot("contact-read-only").await;
}

#[tokio::test]
async fn german_users_get_german_labels() {
    let Some(mut p) = page().await else { return };
    let lead = p
        .admin
        .create(
            "leads",
            &json!({ "subject": "Fair", "lastname": "Müller", "emailaddress1": "m@example.com" }),
        )
        .await
        .unwrap();
    p.open("lead", &lead, "&lang=1031").await;
    let text = p.text(&format!("{FRAME}.getElementById('crc-root')")).await;
    for word in ["Newsletter", "Keine Auswahl", "Ja", "Nein"] {
        assert!(text.contains(word), "{word} in {text}");
    }
    assert!(!text.contains("No choice"), "{text}");
    assert_eq!(
        p.browser
            .eval(&format!("{FRAME}.documentElement.lang"))
            .await
            .unwrap(),
        "de"
    );
    p.screenshot("lead-german").await;
    // The same lead in English.
    p.open("lead", &lead, "").await;
    let text = p.text(&format!("{FRAME}.getElementById('crc-root')")).await;
    assert!(
        text.contains("No choice") && !text.contains("Keine Auswahl"),
        "{text}"
    );
    p.screenshot("lead").await;
}

#[tokio::test]
async fn an_invalid_setting_or_checklist_shows_a_message_and_the_value_stays_as_it_was() {
    let Some(mut p) = page().await else { return };
    let stored = r#"[{"id":0,"state":1,"description":"Information","modifiedby":"","modifiedon":"","position":1}]"#;
    let contact = p.contact(Some(stored)).await;
    // The seed's misspelled key, with a type listed twice.
    let key = "cleverreach:newslettersettings:typjson";
    let setting = p
        .admin
        .create(
            "crc_settings",
            &json!({ "crc_key": key, "crc_value": r#"[{"id":0,"description":"Information"},{"id":0,"description":"Events"}]"# }),
        )
        .await
        .unwrap();
    p.open("contact", &contact, "").await;
    let shown = p.text(&format!("{FRAME}.getElementById('crc-root')")).await;
    assert!(shown.contains("cannot be shown"), "{shown}");
    assert!(
        shown.contains(key),
        "the message names the setting: {shown}"
    );
    assert!(
        shown.contains("more than one"),
        "and what is wrong: {shown}"
    );
    assert_eq!(
        p.browser
            .eval(&format!("{FRAME}.querySelectorAll('input').length"))
            .await
            .unwrap(),
        0,
        "nothing to click"
    );
    assert_eq!(p.value("crc_checklist").await, json!(stored));
    assert!(!p.dirty().await);
    p.screenshot("contact-invalid-setting").await;

    // A valid setting, but the record's own checklist cannot be read.
    let r = p
        .admin
        .patch(
            &format!("crc_settings({setting})"),
            &json!({ "crc_value": r#"[{"id":0,"description":"Information","position":1}]"# }),
        )
        .await
        .unwrap();
    assert!(r.status < 300);
    let broken = r#"[{"id":0,"state":5}]"#;
    let other = p.contact(Some(broken)).await;
    p.open("contact", &other, "").await;
    let shown = p.text(&format!("{FRAME}.getElementById('crc-root')")).await;
    assert!(shown.contains("cannot be read"), "{shown}");
    assert!(shown.contains("not 0, 1 or 2"), "{shown}");
    assert_eq!(p.value("crc_checklist").await, json!(broken));
    assert!(!p.dirty().await);
}

#[tokio::test]
async fn the_control_refuses_exactly_the_newsletter_type_settings_the_connector_refuses() {
    let Some(mut p) = page().await else { return };
    let contact = p.contact(None).await;
    p.open("contact", &contact, "").await;
    let cases = [
        r#"[{"id":0,"description":"Information","position":1}]"#,
        r#"[{"id":"3","description":" Events "},{"id":4,"description":"Press","position":"9"}]"#,
        r#"[{"id":2,"description":"B","position":2},{"id":1,"description":"A","position":1}]"#,
        r#"[{"id":0,"#,
        r#"{"id":0}"#,
        "[]",
        "[5]",
        r#"[{"description":"x"}]"#,
        r#"[{"id":1.5,"description":"x"}]"#,
        r#"[{"id":1,"description":"a"},{"id":1,"description":"b"}]"#,
        r#"[{"id":1,"description":"  "}]"#,
        r#"[{"id":1}]"#,
        r#"[{"id":1,"description":"a","position":"top"}]"#,
        r#"[{"id":-2,"description":"minus","position":null}]"#,
    ];
    for case in cases {
        let rust = shared::domain::settings::Settings::from_rows([(
            shared::domain::settings::keys::TYP_JSON,
            case,
        )]);
        let js = p
            .browser
            .eval(&format!(
                "(() => {{ const w = {FRAME}.defaultView; const r = w.CleverReachChecklist.parseTypes({}, w.CleverReachChecklist.TEXTS.en.reasons); return r.types ? r.types.map(t => [t.id, t.description, t.position]) : null; }})()",
                serde_json::to_string(case).unwrap()
            ))
            .await
            .unwrap();
        match rust {
            Ok(loaded) => {
                let mut types = loaded.settings.newsletter_types.clone();
                types.sort_by_key(|t| t.position);
                let expected: Vec<Value> = types
                    .iter()
                    .map(|t| json!([t.id.0, t.description, t.position]))
                    .collect();
                assert_eq!(js, json!(expected), "{case}");
            }
            Err(_) => assert_eq!(js, Value::Null, "the connector refuses {case}"),
        }
    }
}

#[tokio::test]
async fn the_control_reflows_at_200_percent_zoom_without_scrolling_sideways() {
    let Some(mut p) = page().await else { return };
    // A long description, as administrators write them.
    p.admin
        .create(
            "crc_settings",
            &json!({ "crc_key": "cleverreach:newslettertypsettings:typjson",
                     "crc_value": r#"[{"id":0,"description":"Information"},{"id":1,"description":"Werbung und Spiele"},{"id":2,"description":"Einladungen zu Veranstaltungen und Fachmessen"}]"# }),
        )
        .await
        .unwrap();
    let contact = p.contact(None).await;
    // 200% zoom of a 640-pixel-wide window: 320 CSS pixels (WCAG reflow).
    p.browser.viewport(320, 900, 2.0).await.unwrap();
    p.open("contact", &contact, "").await;
    let overflow = p
        .browser
        .eval(&format!(
            "(() => {{ const d = {FRAME}; const w = d.documentElement.clientWidth;
                return {{ width: w, scroll: d.documentElement.scrollWidth,
                          clipped: [...d.querySelectorAll('.crc-choice, .crc-type-name')]
                              .filter(e => e.getBoundingClientRect().right > w + 0.5 || e.scrollWidth > e.clientWidth + 1)
                              .map(e => e.innerText) }}; }})()"
        ))
        .await
        .unwrap();
    assert!(overflow["width"].as_f64().unwrap() < 320.0, "{overflow}");
    assert!(
        overflow["scroll"].as_f64() <= overflow["width"].as_f64(),
        "no sideways scrolling: {overflow}"
    );
    assert_eq!(overflow["clipped"], json!([]), "{overflow}");
    // Still operable: a click on the third type's "yes".
    p.browser.click(&Page::choice(2, 1)).await.unwrap();
    let now = entries(&p.value("crc_checklist").await);
    assert_eq!(
        (now[0]["id"].clone(), now[0]["state"].clone()),
        (json!(2), json!(1))
    );
    p.screenshot("contact-zoom-200").await;
}

#[tokio::test]
async fn a_source_form_shows_its_sync_state_with_the_last_error_highlighted() {
    let Some(mut p) = page().await else { return };
    let error = "2026-11-27 10:00:00 UTC: the sync failed: the marketing list checklist cannot be read, so the group was left as it is";
    let campaign = p
        .admin
        .create(
            "campaigns",
            &json!({
                "name": "Spring fair",
                "crc_checklist": sandbox::harness::checklist(&[(0, 1)]),
                "crc_syncwithcleverreach": true,
                "crc_groupid": "4711",
                "crc_syncstatus": "all members compared: 3 added, 0 updated, 0 e-mail changed, 1 removed, 40 unchanged",
                "crc_lastsync": "2026-11-27T09:00:00Z",
                "crc_lasterror": error,
            }),
        )
        .await
        .unwrap();
    p.open("campaign", &campaign, "").await;
    let root = format!("{FRAME}.getElementById('crc-root')");
    let shown = p.text(&root).await;
    for part in ["4711", "3 added", "Last error", error] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    assert!(!shown.contains("Last sync\n—"), "{shown}");
    // The error stands out: a red bar and a tinted background.
    let style = p
        .browser
        .eval(&format!(
            "(() => {{ const s = getComputedStyle({FRAME}.getElementById('crc-last-error')); return [s.backgroundColor, s.borderLeftColor, s.borderLeftWidth]; }})()"
        ))
        .await
        .unwrap();
    assert_eq!(
        style,
        json!(["rgb(253, 231, 233)", "rgb(164, 38, 44)", "4px"])
    );
    assert_eq!(
        p.browser
            .eval(&format!(
                "{FRAME}.getElementById('crc-sync-flag').getAttribute('aria-checked')"
            ))
            .await
            .unwrap(),
        "true"
    );
    assert_eq!(
        p.browser
            .eval(&format!("{FRAME}.getElementById('crc-resync').disabled"))
            .await
            .unwrap(),
        false
    );
    // The campaign's own checklist is edited in the same control.
    assert_eq!(
        p.browser
            .eval(&format!("{}.checked", Page::radio(0, 1)))
            .await
            .unwrap(),
        true
    );
    p.screenshot("campaign").await;

    // A campaign activity with sync off: nothing to resync until sync is turned on.
    let activity = p
        .admin
        .create(
            "campaignactivities",
            &json!({
                "subject": "Invitation mail",
                "regardingobjectid_campaign_campaignactivity@odata.bind": format!("/campaigns({campaign})"),
                "crc_checklist": sandbox::harness::checklist(&[(1, 1)]),
            }),
        )
        .await
        .unwrap();
    p.open("campaignactivity", &activity, "").await;
    assert_eq!(
        p.browser
            .eval(&format!("{FRAME}.getElementById('crc-resync').disabled"))
            .await
            .unwrap(),
        true
    );
    assert!(p.text(&root).await.contains("Turn sync on first"));
    assert_eq!(
        p.browser
            .eval(&format!("!!{FRAME}.getElementById('crc-last-error')"))
            .await
            .unwrap(),
        false,
        "no error, no error box"
    );
    p.screenshot("campaignactivity").await;
    p.browser
        .click(&format!("{FRAME}.getElementById('crc-sync-flag')"))
        .await
        .unwrap();
    assert_eq!(p.value("crc_syncwithcleverreach").await, json!(true));
    assert!(p.dirty().await);
    p.browser
        .wait_for(&format!("!{FRAME}.getElementById('crc-resync').disabled"))
        .await
        .unwrap();
}

#[tokio::test]
async fn holders_of_the_list_sync_role_start_a_retroactive_sync_from_the_list_form() {
    let Some(mut p) = page().await else { return };
    let list = p
        .admin
        .create(
            "lists",
            &json!({
                "listname": "Customers 2026", "createdfromcode": 2, "type": false,
                "crc_checklist": sandbox::harness::checklist(&[(0, 1)]),
                "crc_syncwithcleverreach": true, "crc_groupid": "815",
                "crc_syncstatus": "all members compared: 12 added",
                "crc_retroactiveprogress": "last run: 3 of 3 sublists done, 1 member kept an explicit no",
            }),
        )
        .await
        .unwrap();
    p.open("list", &list, "").await;
    assert_eq!(
        p.browser
            .eval(&format!("!!{FRAME}.getElementById('crc-retro-start')"))
            .await
            .unwrap(),
        false,
        "not for people without the role"
    );
    p.screenshot("list").await;

    // The administrator gets the role "CleverReach List Sync".
    let role = p
        .sim
        .rows("roles")
        .into_iter()
        .find(|r| r["name"] == shared::install::LIST_SYNC_ROLE.name)
        .unwrap();
    let r = p
        .admin
        .post(
            &format!("roles({})/systemuserroles_association/$ref", role["roleid"].as_str().unwrap()),
            &json!({ "@odata.id": format!("{}systemusers({})", p.sim.api_url(), sandbox::dataverse::ADMIN_USER_ID) }),
        )
        .await
        .unwrap();
    assert!(r.status < 300, "{}", r.text);
    p.open("list", &list, "").await;
    let root = format!("{FRAME}.getElementById('crc-root')");
    assert!(
        p.text(&root).await.contains("1 member kept an explicit no"),
        "the progress text"
    );
    // Choose: the list's own checklist is not what is wanted; type 1 yes.
    p.browser
        .click(&format!("{FRAME}.getElementById('crc-retro-uselist')"))
        .await
        .unwrap();
    p.browser
        .wait_for(&format!("{FRAME}.getElementById('crc-r-1-1')"))
        .await
        .unwrap();
    p.browser
        .click(&format!(
            "{FRAME}.querySelector('label[for=\"crc-r-1-1\"]')"
        ))
        .await
        .unwrap();
    let wanted = entries(&p.value("crc_retroactivesyncjson").await);
    assert_eq!(wanted.len(), 1, "{wanted:?}");
    assert_eq!(
        (wanted[0]["id"].clone(), wanted[0]["state"].clone()),
        (json!(1), json!(1))
    );
    p.screenshot("list-retroactive").await;
    p.browser
        .click(&format!("{FRAME}.getElementById('crc-retro-start')"))
        .await
        .unwrap();
    assert_eq!(p.value("crc_retroactivesync").await, json!(true));
    p.save().await;
    let row = p.sim.row("lists", &list).unwrap();
    assert_eq!(row["crc_retroactivesync"], true);
    assert_eq!(entries(&row["crc_retroactivesyncjson"]), wanted);
}
