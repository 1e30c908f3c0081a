//! `crc-install` places the newsletter checklist, checked for real in the Dataverse simulator
//! (which keeps web resources and forms as Dataverse does: saved and published versions, form
//! XML checked against the org): the web resources uploaded by name with exactly the files'
//! content, the default main form of each of the five tables given the control, its hidden
//! fields, the library and the OnLoad handler, everything published and in the solution; a
//! second run writes nothing; an outdated web resource is replaced; a form an administrator
//! changed gets only what is missing; a conflict stops it before any change.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

use crc_install::forms_phase::{
    self, CONTROL_ID, FORM_TABLES, HANDLER, LIBRARY, PAGE, SECTION, WEB_RESOURCES,
};
use crc_install::formxml::{self, Node};
use sandbox::browser::decode_base64;
use sandbox::dataverse::forms::seed_forms;
use sandbox::dataverse::{
    ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, CONNECTOR_USER_ID, DataverseSim, DataverseSimConfig,
    WebApi,
};
use serde_json::{Value, json};
use shared::adapters::dataverse::schema;

fn env(sim: &DataverseSim) -> impl Fn(&str) -> Option<String> + use<> {
    let pairs: Vec<(String, String)> = vec![
        ("DATAVERSE_URL".into(), sim.resource()),
        ("DATAVERSE_API_URL".into(), sim.api_url()),
        ("DATAVERSE_TOKEN_URL".into(), sim.token_url()),
        ("DATAVERSE_CLIENT_ID".into(), ADMIN_CLIENT_ID.into()),
        ("DATAVERSE_CLIENT_SECRET".into(), ADMIN_CLIENT_SECRET.into()),
        ("INTAKE_URL".into(), "http://127.0.0.1:9/api/webhook".into()),
        ("WEBHOOK_KEY".into(), "key-4f1b".into()),
        ("CONNECTOR_USER_ID".into(), CONNECTOR_USER_ID.into()),
    ];
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// Runs the installer; its output with runs of blanks squeezed to one (the plan's columns).
async fn install(
    sim: &DataverseSim,
    args: &[&str],
) -> (Result<(), crc_install::InstallError>, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut out = Vec::new();
    let result = crc_install::run(&args, env(sim), &mut out).await;
    let text = String::from_utf8(out).unwrap();
    let squeezed = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    (result, squeezed)
}

async fn plain() -> DataverseSim {
    DataverseSim::spawn(DataverseSimConfig::default())
        .await
        .unwrap()
}

/// The rows of a set, by name.
fn by_name(sim: &DataverseSim, set: &str, name: &str) -> Option<serde_json::Map<String, Value>> {
    sim.rows(set).into_iter().find(|r| r["name"] == name)
}

/// The main form of a table the app shows (default, active), as published.
fn published_form(sim: &DataverseSim, table: &str, name: &str) -> (String, String) {
    let row = sim
        .rows("systemforms")
        .into_iter()
        .find(|f| f["objecttypecode"] == table && f["name"] == name)
        .unwrap_or_else(|| panic!("{table} form {name}"));
    let id = row["formid"].as_str().unwrap().to_string();
    let published = sim.published("systemforms", &id).unwrap();
    assert_eq!(
        published["componentstate"], 0,
        "{table} {name} is published"
    );
    (id, published["formxml"].as_str().unwrap().to_string())
}

fn default_form_name(table: &str) -> &'static str {
    seed_forms()
        .into_iter()
        .find(|f| f.entity == table && f.form_type == 2 && f.is_default)
        .map(|f| f.name)
        .unwrap()
}

fn descendants<'a>(form: &'a Node, name: &str) -> Vec<&'a Node> {
    form.descendants()
        .into_iter()
        .filter(|n| n.name == name)
        .collect()
}

/// Checks that a form has the checklist: control, hidden fields, library, handler.
fn assert_has_checklist(table: &str, xml: &str) {
    let form = formxml::parse(xml).unwrap();
    let controls = descendants(&form, "control");
    let control = controls
        .iter()
        .find(|c| c.attr("id") == Some(CONTROL_ID))
        .unwrap_or_else(|| panic!("{table}: no {CONTROL_ID}"));
    assert_eq!(
        control
            .child("parameters")
            .unwrap()
            .child("Url")
            .unwrap()
            .text,
        PAGE
    );
    let section = form
        .find_path(&|n| n.name == "section" && n.attr("name") == Some(SECTION))
        .unwrap_or_else(|| panic!("{table}: no section {SECTION}"));
    let section = section.last().unwrap();
    for field in forms_phase::form_fields(table) {
        let cell = section
            .descendants()
            .into_iter()
            .filter(|n| n.name == "cell")
            .find(|cell| {
                cell.child("control")
                    .is_some_and(|c| c.attr("datafieldname") == Some(field.logical_name))
            })
            .unwrap_or_else(|| panic!("{table}: no field {}", field.logical_name));
        assert_eq!(
            cell.attr("visible"),
            Some("false"),
            "{table}.{} hidden",
            field.logical_name
        );
    }
    assert_eq!(
        descendants(&form, "Library")
            .iter()
            .filter(|l| l.attr("name") == Some(LIBRARY))
            .count(),
        1,
        "{table}"
    );
    let handlers: Vec<&Node> = descendants(&form, "Handler")
        .into_iter()
        .filter(|h| h.attr("functionName") == Some(HANDLER))
        .collect();
    assert_eq!(handlers.len(), 1, "{table}");
    assert_eq!(handlers[0].attr("libraryName"), Some(LIBRARY));
    assert_eq!(handlers[0].attr("passExecutionContext"), Some("true"));
}

#[tokio::test]
async fn the_installer_uploads_the_web_resources_and_places_the_checklist_on_each_default_main_form()
 {
    let sim = plain().await;
    let (result, out) = install(&sim, &[]).await;
    result.unwrap_or_else(|e| panic!("{e}\n{out}"));

    // The web resources: exactly the files, published.
    let solution = sim
        .rows("solutions")
        .into_iter()
        .find(|s| s["uniquename"] == schema::SOLUTION_UNIQUE_NAME)
        .unwrap();
    let components: Vec<Value> = sim
        .rows("solutioncomponents")
        .into_iter()
        .filter(|c| c["_solutionid_value"] == solution["solutionid"])
        .map(|c| json!([c["componenttype"], c["objectid"]]))
        .collect();
    for spec in &WEB_RESOURCES {
        let row = by_name(&sim, "webresourceset", spec.name)
            .unwrap_or_else(|| panic!("{} uploaded", spec.name));
        let id = row["webresourceid"].as_str().unwrap();
        let published = sim.published("webresourceset", id).unwrap();
        assert_eq!(published["componentstate"], 0, "{} published", spec.name);
        assert_eq!(published["webresourcetype"], spec.kind);
        let bytes = decode_base64(published["content"].as_str().unwrap()).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            spec.content,
            "{}",
            spec.name
        );
        assert!(
            components.contains(&json!([61, id])),
            "{} is in the solution",
            spec.name
        );
    }
    assert_eq!(sim.published_web_resources().len(), WEB_RESOURCES.len());

    // The forms: the default main form of each table has the checklist, published.
    for table in FORM_TABLES {
        let name = default_form_name(table);
        let (id, xml) = published_form(&sim, table, name);
        assert_has_checklist(table, &xml);
        assert!(
            components.contains(&json!([60, id])),
            "the {table} form is in the solution"
        );
        // What the form had stays: every control of the shipped form is still there.
        let shipped = seed_forms()
            .into_iter()
            .find(|f| f.entity == table && f.name == name)
            .unwrap();
        let before = formxml::parse(&shipped.xml).unwrap();
        let after = formxml::parse(&xml).unwrap();
        for c in descendants(&before, "control") {
            assert!(
                descendants(&after, "control")
                    .iter()
                    .any(|a| a.attr("id") == c.attr("id")),
                "{table}: {:?} kept",
                c.attr("id")
            );
        }
    }
    let published_tables: std::collections::BTreeSet<String> =
        sim.publishes().into_iter().flatten().collect();
    for table in FORM_TABLES {
        assert!(published_tables.contains(table), "{table} published");
    }
    // Other forms are left alone: the second main form and the quick create form of contact.
    for name in ["Contact (Sales Insights)", "Contact Quick Create"] {
        let shipped = seed_forms().into_iter().find(|f| f.name == name).unwrap();
        let (_, xml) = published_form(&sim, "contact", name);
        assert_eq!(xml, shipped.xml, "{name} untouched");
    }
    for needle in [
        "created resource crc_/checklist/checklist.html",
        "changed form contact main form 'Contact': add section crc_checklist_section",
        "PublishXml: forms of contact, lead, list, campaign, campaignactivity; web resources",
    ] {
        assert!(out.contains(needle), "{needle}:\n{out}");
    }
}

/// Customization requests that write web resources or forms, or publish.
fn checklist_writes(sim: &DataverseSim) -> Vec<String> {
    sim.customization_requests()
        .into_iter()
        .filter(|r| {
            r.path.starts_with("webresourceset")
                || r.path.starts_with("systemforms")
                || r.path == "PublishXml"
        })
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_second_run_writes_no_web_resource_or_form_and_publishes_nothing() {
    let sim = plain().await;
    install(&sim, &[]).await.0.unwrap();
    let before = checklist_writes(&sim);
    assert!(
        before.len() > WEB_RESOURCES.len() + FORM_TABLES.len(),
        "{before:?}"
    );
    let (result, out) = install(&sim, &[]).await;
    result.unwrap();
    assert_eq!(checklist_writes(&sim), before, "{out}");
    for table in FORM_TABLES {
        assert!(
            out.contains(&format!("exists form {table} main form")),
            "{table}:\n{out}"
        );
    }
    assert!(out.contains("nothing to do"), "{out}");
}

#[tokio::test]
async fn an_outdated_web_resource_is_replaced_by_name_and_published_again() {
    let sim = plain().await;
    install(&sim, &[]).await.0.unwrap();
    let api = WebApi::admin(&sim).await.unwrap();
    // An older version of the script, published by someone.
    let script = by_name(&sim, "webresourceset", "crc_/checklist/checklist.js").unwrap();
    let id = script["webresourceid"].as_str().unwrap().to_string();
    let old = forms_phase::base64(b"// an older checklist\n");
    let r = api
        .patch(&format!("webresourceset({id})"), &json!({ "content": old }))
        .await
        .unwrap();
    assert!(r.status < 300, "{}", r.text);
    let r = api
        .post(
            "PublishXml",
            &json!({ "ParameterXml": format!("<importexportxml><webresources><webresource>{{{id}}}</webresource></webresources></importexportxml>") }),
        )
        .await
        .unwrap();
    assert!(r.status < 300, "{}", r.text);
    assert_eq!(
        sim.published("webresourceset", &id).unwrap()["content"],
        old
    );

    let (_, plan) = install(&sim, &["--dry-run"]).await;
    assert!(
        plan.contains("would change resource crc_/checklist/checklist.js"),
        "{plan}"
    );
    assert!(
        plan.contains("would create publish PublishXml: web resources crc_/checklist/checklist.js"),
        "{plan}"
    );
    assert!(plan.contains("dry run: 1 to create, 1 to change"), "{plan}");
    install(&sim, &[]).await.0.unwrap();
    let published = sim.published("webresourceset", &id).unwrap();
    let spec = WEB_RESOURCES
        .iter()
        .find(|w| w.name == "crc_/checklist/checklist.js")
        .unwrap();
    assert_eq!(
        published["content"],
        spec.base64(),
        "replaced and published"
    );
    assert_eq!(
        sim.rows("webresourceset")
            .iter()
            .filter(|r| r["name"] == spec.name)
            .count(),
        1,
        "updated in place, not created again"
    );
}

/// The span of the first element of `form` for which `wanted` holds.
fn span(xml: &str, wanted: &dyn Fn(&Node) -> bool) -> (usize, usize) {
    let form = formxml::parse(xml).unwrap();
    let path = form.find_path(wanted).unwrap();
    let n = path.last().unwrap();
    (n.start, n.end)
}

fn cut(xml: &str, (from, to): (usize, usize)) -> String {
    format!("{}{}", &xml[..from], &xml[to..])
}

#[tokio::test]
async fn a_form_an_administrator_changed_gets_only_what_is_missing() {
    let sim = plain().await;
    install(&sim, &[]).await.0.unwrap();
    let api = WebApi::admin(&sim).await.unwrap();
    let (id, installed) = published_form(&sim, "contact", "Contact");
    // The administrator removed the OnLoad handler and the hidden checklist field (as the form
    // editor does when a field is removed), and put a field of their own in its place.
    let handler = span(&installed, &|n| {
        n.name == "Handler" && n.attr("functionName") == Some(HANDLER)
    });
    let without_handler = cut(&installed, handler);
    let field_row = span(&without_handler, &|n| {
        n.name == "row"
            && n.descendants()
                .iter()
                .any(|c| c.attr("datafieldname") == Some(schema::CHECKLIST))
    });
    let admin_xml = cut(&without_handler, field_row).replacen(
        "<row><cell id=\"{",
        "<row><cell id=\"{0badc0de-0000-4000-8000-000000000001}\" showlabel=\"true\"><labels><label description=\"Mobile\" languagecode=\"1033\" /></labels><control id=\"mobilephone\" datafieldname=\"mobilephone\" /></cell></row><row><cell id=\"{",
        1,
    );
    let r = api
        .patch(
            &format!("systemforms({id})"),
            &json!({ "formxml": admin_xml }),
        )
        .await
        .unwrap();
    assert!(r.status < 300, "{}", r.text);
    api.post(
        "PublishXml",
        &json!({ "ParameterXml": "<importexportxml><entities><entity>contact</entity></entities></importexportxml>" }),
    )
    .await
    .unwrap();

    let (result, out) = install(&sim, &[]).await;
    result.unwrap();
    assert!(
        out.contains(&format!(
            "changed form contact main form 'Contact': add hidden field crc_checklist, OnLoad handler {HANDLER}"
        )),
        "{out}"
    );
    let (_, now) = published_form(&sim, "contact", "Contact");
    assert_has_checklist("contact", &now);
    // Take out the two pieces the installer added: what remains is the administrator's form,
    // byte for byte.
    let added_handler = span(&now, &|n| {
        n.name == "Handler" && n.attr("functionName") == Some(HANDLER)
    });
    let rest = cut(&now, added_handler);
    let added_field = span(&rest, &|n| {
        n.name == "row"
            && n.descendants()
                .iter()
                .any(|c| c.attr("datafieldname") == Some(schema::CHECKLIST))
    });
    assert_eq!(cut(&rest, added_field), admin_xml);
}

#[tokio::test]
async fn a_conflicting_web_resource_or_a_missing_main_form_stops_the_installer_before_any_change() {
    let sim = plain().await;
    sandbox::provision::install_schema(&sim).await.unwrap();
    let api = WebApi::admin(&sim).await.unwrap();
    // Someone else's page under the script's name, and no active main form for leads.
    let r = api
        .create(
            "webresourceset",
            &json!({ "name": LIBRARY, "displayname": "other", "webresourcetype": 1,
                     "content": forms_phase::base64(b"<p>other</p>") }),
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    let lead_form = sim
        .rows("systemforms")
        .into_iter()
        .find(|f| f["objecttypecode"] == "lead" && f["type"] == 2)
        .unwrap();
    let r = api
        .patch(
            &format!("systemforms({})", lead_form["formid"].as_str().unwrap()),
            &json!({ "formactivationstate": 0 }),
        )
        .await
        .unwrap();
    assert!(r.status < 300, "{}", r.text);
    let before = checklist_writes(&sim).len();

    let (result, out) = install(&sim, &[]).await;
    let err = result.unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "web resource {LIBRARY}: found web resource type Some(1), expected type 3 (script (JScript))"
        )),
        "{err}"
    );
    assert!(
        err.contains("table lead: found no active main form"),
        "{err}"
    );
    assert_eq!(checklist_writes(&sim).len(), before, "{out}");
    assert!(
        sim.rows("serviceendpoints").is_empty(),
        "nothing else either"
    );
}
