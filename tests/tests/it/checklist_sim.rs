//! The Dataverse simulator keeps web resources and forms as Dataverse does, so that the
//! installer's placement is checked for real: a change reaches the app (and a plain read) only
//! when published; form XML the org cannot show is refused with the reason; web resource names
//! carry a publisher's prefix and are unique, their content is base64, and writing them takes
//! the customization privileges.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

use crc_install::forms_phase::base64;
use sandbox::dataverse::{
    ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, DataverseSim, DataverseSimConfig, SimClient, WebApi,
};
use serde_json::json;

async fn installed() -> (DataverseSim, WebApi) {
    let sim = DataverseSim::spawn(DataverseSimConfig::default())
        .await
        .unwrap();
    sandbox::provision::install_schema(&sim).await.unwrap();
    let api = WebApi::admin(&sim).await.unwrap();
    (sim, api)
}

fn contact_form(sim: &DataverseSim) -> (String, String) {
    let row = sim
        .rows("systemforms")
        .into_iter()
        .find(|f| f["objecttypecode"] == "contact" && f["name"] == "Contact")
        .unwrap();
    (
        row["formid"].as_str().unwrap().to_string(),
        row["formxml"].as_str().unwrap().to_string(),
    )
}

const PUBLISH_CONTACT: &str =
    "<importexportxml><entities><entity>contact</entity></entities></importexportxml>";

#[tokio::test]
async fn a_form_change_reaches_reads_and_the_app_only_when_published() {
    let (sim, api) = installed().await;
    let (id, shipped) = contact_form(&sim);
    let changed = shipped.replacen(
        "<row>",
        "<row><cell id=\"{0badc0de-0000-4000-8000-000000000002}\"><labels><label description=\"Mobile\" languagecode=\"1033\" /></labels><control id=\"mobilephone\" datafieldname=\"mobilephone\" /></cell></row><row>",
        1,
    );
    let r = api
        .patch(
            &format!("systemforms({id})"),
            &json!({ "formxml": changed }),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text);
    let read = api
        .get(&format!("systemforms({id})?$select=formxml,componentstate"))
        .await
        .unwrap();
    assert_eq!(read.body["formxml"], shipped, "still the published form");
    assert_eq!(
        sim.row("systemforms", &id).unwrap()["formxml"],
        changed,
        "saved"
    );

    let r = api
        .post("PublishXml", &json!({ "ParameterXml": PUBLISH_CONTACT }))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text);
    let read = api
        .get(&format!("systemforms({id})?$select=formxml,componentstate"))
        .await
        .unwrap();
    assert_eq!(read.body["formxml"], changed);
    assert_eq!(read.body["componentstate"], 0);
}

#[tokio::test]
async fn form_xml_the_org_cannot_show_is_refused_naming_the_problem() {
    let (sim, api) = installed().await;
    let (id, shipped) = contact_form(&sim);
    let page = api
        .create(
            "webresourceset",
            &json!({ "name": "crc_/page.html", "webresourcetype": 1, "content": base64(b"<p>x</p>") }),
        )
        .await
        .unwrap();
    assert!(!page.is_empty());
    let cell = |control: &str| {
        shipped.replacen(
            "<row>",
            &format!("<row><cell id=\"{{0badc0de-0000-4000-8000-000000000003}}\">{control}</cell></row><row>"),
            1,
        )
    };
    let end = |tail: &str| shipped.replace("</form>", &format!("{tail}</form>"));
    let cases = [
        ("<form><tabs>".to_string(), "not valid"),
        ("<forms><tabs /></forms>".to_string(), "not <form>"),
        (
            shipped.replace("<tabs>", "<tabs><bogus />"),
            "<bogus> is not allowed",
        ),
        (
            cell("<control id=\"x\" datafieldname=\"crc_nosuchcolumn\" />"),
            "'crc_nosuchcolumn', which is not a column of contact",
        ),
        (
            cell("<control id=\"firstname\" datafieldname=\"firstname\" />"),
            "the control id 'firstname' is used more than once",
        ),
        (
            cell(
                "<control id=\"WebResource_x\" classid=\"{9FDF5F91-88B1-47f4-AD53-C11EFC01A01D}\"><parameters><Url>crc_/missing.html</Url></parameters></control>",
            ),
            "'crc_/missing.html', which is not a web resource",
        ),
        (
            end(
                "<formLibraries><Library name=\"crc_/page.html\" libraryUniqueId=\"{0badc0de-0000-4000-8000-000000000004}\" /></formLibraries>",
            ),
            "the form library 'crc_/page.html' is not a script",
        ),
        (
            end(
                "<events><event name=\"onload\"><Handlers><Handler functionName=\"A.b\" libraryName=\"crc_/lib.js\" handlerUniqueId=\"{0badc0de-0000-4000-8000-000000000005}\" /></Handlers></event></events>",
            ),
            "'crc_/lib.js', which is not in the form's <formLibraries>",
        ),
        (
            shipped.replace("<column width=\"100%\">", "<column width=\"wide\">"),
            "needs a width",
        ),
    ];
    for (xml, reason) in cases {
        let r = api
            .patch(&format!("systemforms({id})"), &json!({ "formxml": xml }))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{reason}: {}", r.text);
        assert!(r.text.contains(reason), "{reason}: {}", r.text);
        assert_eq!(sim.row("systemforms", &id).unwrap()["formxml"], shipped);
    }
}

#[tokio::test]
async fn web_resources_need_a_prefixed_unique_name_base64_content_and_the_privilege() {
    let (sim, api) = installed().await;
    let body = |name: &str, content: &str| json!({ "name": name, "displayname": "x", "webresourcetype": 3, "content": content });
    let ok = base64(b"var x = 1;");
    for (name, content, reason) in [
        ("checklist.js", ok.as_str(), "customization prefix"),
        ("crc_//a.js", ok.as_str(), "not valid"),
        ("crc_/a b.js", ok.as_str(), "not valid"),
        ("crc_/a.js", "not base64!", "not valid base64"),
    ] {
        let r = api
            .post("webresourceset", &body(name, content))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{name}: {}", r.text);
        assert!(r.text.contains(reason), "{name}: {}", r.text);
    }
    api.create("webresourceset", &body("crc_/a.js", &ok))
        .await
        .unwrap();
    let r = api
        .post("webresourceset", &body("CRC_/A.js", &ok))
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text.contains("0x80047010"), "{}", r.text);

    // A user without customization privileges cannot create or change them.
    drop(sim);
    let mut config = DataverseSimConfig::default();
    config.clients.push(SimClient {
        client_id: "c0c0c0c0-0000-4000-8000-000000000009".into(),
        client_secret: "sandbox-basic-secret".into(),
        user_id: "aaaaaaaa-0000-4000-8000-000000000009".into(),
        name: "basic".into(),
        roles: vec!["Basic User".into()],
    });
    let sim = DataverseSim::spawn(config).await.unwrap();
    sandbox::provision::install_schema(&sim).await.unwrap();
    let basic = WebApi::connect(
        &sim,
        "c0c0c0c0-0000-4000-8000-000000000009",
        "sandbox-basic-secret",
    )
    .await
    .unwrap();
    let r = basic
        .post("webresourceset", &body("crc_/b.js", &ok))
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("prvCreateWebResource"), "{}", r.text);
    let (id, shipped) = contact_form(&sim);
    let r = basic
        .patch(
            &format!("systemforms({id})"),
            &json!({ "formxml": shipped }),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("prvWriteSystemForm"), "{}", r.text);
    // Reading forms and web resources is what every user does.
    let r = basic
        .get("systemforms?$select=name&$filter=objecttypecode eq 'contact'")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn the_app_serves_a_web_resource_only_once_it_is_published() {
    let (sim, api) = installed().await;
    let id = api
        .create(
            "webresourceset",
            &json!({ "name": "crc_/hello.html", "webresourcetype": 1, "content": base64("<p>Grüß dich</p>".as_bytes()) }),
        )
        .await
        .unwrap();
    let app = sandbox::form_page::serve(&sim, ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET)
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = || {
        http.get(format!("{}/WebResources/crc_/hello.html", app.url))
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 404, "not published yet");
    let r = api
        .post(
            "PublishXml",
            &json!({ "ParameterXml": format!("<importexportxml><webresources><webresource>{{{id}}}</webresource></webresources></importexportxml>") }),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.text);
    let answer = get().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers()["content-type"].to_str().unwrap(),
        "text/html; charset=utf-8"
    );
    assert_eq!(answer.text().await.unwrap(), "<p>Grüß dich</p>");
    // A change is served once published again.
    api.patch(
        &format!("webresourceset({id})"),
        &json!({ "content": base64(b"<p>new</p>") }),
    )
    .await
    .unwrap();
    assert_eq!(
        get().await.unwrap().text().await.unwrap(),
        "<p>Grüß dich</p>"
    );
}
