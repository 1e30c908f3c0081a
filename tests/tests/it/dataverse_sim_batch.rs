//! `$batch` on the Dataverse simulator, compared with the request and response shapes of
//! ref/dataverse.md §4.4 (PA-batch): parts and change sets, Content-ID references, the
//! 1000-request limit, stop-at-first-failure and `odata.continue-on-error`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Test names start with `dataverse::` so that `cargo test -p sandbox dataverse` selects them.
mod dataverse {
    use reqwest::Method;
    use sandbox::dataverse::{DataverseSim, DataverseSimConfig, Reply, WebApi};
    use serde_json::{Value, json};

    async fn sim() -> (DataverseSim, WebApi) {
        let sim = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap();
        let api = WebApi::admin(&sim).await.unwrap();
        (sim, api)
    }

    fn part(request: &str, content_id: Option<u32>) -> String {
        let cid = content_id
            .map(|c| format!("Content-ID: {c}\r\n"))
            .unwrap_or_default();
        format!(
            "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n{cid}\r\n{request}"
        )
    }

    fn post(url: &str, body: &Value) -> String {
        format!(
            "POST {url} HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{body}\r\n"
        )
    }

    /// A batch body from items; an item is a part text or a change set of part texts.
    enum Item {
        Part(String),
        ChangeSet(Vec<String>),
    }

    fn batch(items: &[Item]) -> String {
        let mut out = String::new();
        for item in items {
            out.push_str("--batch_AAA123\r\n");
            match item {
                Item::Part(p) => out.push_str(p),
                Item::ChangeSet(parts) => {
                    out.push_str(
                        "Content-Type: multipart/mixed; boundary=changeset_BBB456\r\n\r\n",
                    );
                    for p in parts {
                        out.push_str("--changeset_BBB456\r\n");
                        out.push_str(p);
                    }
                    out.push_str("--changeset_BBB456--\r\n");
                }
            }
        }
        out.push_str("--batch_AAA123--\r\n");
        out
    }

    async fn send(api: &WebApi, body: String, prefer: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = prefer.map(|p| vec![("Prefer", p)]).unwrap_or_default();
        api.send_raw(
            Method::POST,
            "$batch",
            &headers,
            "multipart/mixed; boundary=\"batch_AAA123\"",
            body,
        )
        .await
        .unwrap()
    }

    /// The HTTP status lines of the response parts, in order.
    fn status_lines(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("HTTP/1.1 "))
            .map(|l| l.trim_end().to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_batch_with_three_parts_and_a_change_set_answers_like_dataverse() {
        let (sim, api) = sim().await;
        let existing = api
            .create("contacts", &json!({"firstname": "Read", "lastname": "Me"}))
            .await
            .unwrap();
        let api_url = sim.api_url();
        let body = batch(&[
            Item::Part(part(
                &post("/api/data/v9.2/accounts", &json!({"name": "Single"})),
                None,
            )),
            Item::ChangeSet(vec![
                part(
                    &post(
                        &format!("{api_url}accounts"),
                        &json!({"name": "In change set"}),
                    ),
                    Some(1),
                ),
                part(
                    &post(
                        "/api/data/v9.2/contacts",
                        &json!({"lastname": "Bound", "parentcustomerid_account@odata.bind": "$1"}),
                    ),
                    Some(2),
                ),
                part(
                    "PATCH $2 HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"firstname\":\"Patched\"}\r\n",
                    Some(3),
                ),
            ]),
            Item::Part(part(
                &format!(
                    "GET /api/data/v9.2/contacts({existing})?$select=fullname HTTP/1.1\r\nAccept: application/json\r\n\r\n"
                ),
                None,
            )),
        ]);
        let r = send(&api, body, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let ct = r.header("Content-Type").unwrap();
        let boundary = ct.strip_prefix("multipart/mixed; boundary=").unwrap();
        assert!(
            boundary.starts_with("batchresponse_")
                && uuid::Uuid::parse_str(&boundary["batchresponse_".len()..]).is_ok(),
            "{ct}"
        );
        assert!(r.text.starts_with(&format!("--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 204 No Content\r\n")), "{}", r.text);
        assert!(r.text.ends_with(&format!("--{boundary}--\r\n")));
        assert_eq!(
            status_lines(&r.text),
            [
                "HTTP/1.1 204 No Content",
                "HTTP/1.1 204 No Content",
                "HTTP/1.1 204 No Content",
                "HTTP/1.1 204 No Content",
                "HTTP/1.1 200 OK"
            ]
        );
        assert!(
            r.text
                .contains("Content-Type: multipart/mixed; boundary=changesetresponse_")
        );
        assert!(r.text.contains(
            "Content-ID: 1\r\n\r\nHTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\nLocation: "
        ));
        assert_eq!(r.text.matches("OData-EntityId: ").count(), 4);
        assert!(r.text.contains("\"fullname\":\"Read Me\""));
        assert!(r.text.contains(
            "Content-Type: application/json; odata.metadata=minimal; odata.streaming=true"
        ));

        let contact = sim
            .rows("contacts")
            .into_iter()
            .find(|c| c["lastname"] == "Bound")
            .unwrap();
        assert_eq!(
            contact["firstname"], "Patched",
            "$2 in the URL addressed the row created by part 2"
        );
        let account = sim
            .rows("accounts")
            .into_iter()
            .find(|a| a["name"] == "In change set")
            .unwrap();
        assert_eq!(
            contact["_parentcustomerid_value"], account["accountid"],
            "$1 in the body bound the account of part 1"
        );
        let stats = sim.stats();
        assert_eq!((stats.batches, stats.batch_parts), (1, 5));
    }

    #[tokio::test]
    async fn a_batch_of_more_than_1000_requests_is_refused_and_nothing_runs() {
        let (sim, api) = sim().await;
        let parts: Vec<Item> = (0..1001)
            .map(|i| {
                Item::Part(part(
                    &post("contacts", &json!({"lastname": format!("n{i}")})),
                    None,
                ))
            })
            .collect();
        let r = send(&api, batch(&parts), None).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("1000")
        );
        assert!(sim.rows("contacts").is_empty());

        let parts: Vec<Item> = (0..1000)
            .map(|i| {
                Item::Part(part(
                    &post("contacts", &json!({"lastname": format!("n{i}")})),
                    None,
                ))
            })
            .collect();
        let r = send(&api, batch(&parts), None).await;
        assert_eq!(r.status, 200);
        assert_eq!(sim.rows("contacts").len(), 1000);
    }

    #[tokio::test]
    async fn a_batch_stops_at_the_first_failure_unless_asked_to_continue() {
        let (sim, api) = sim().await;
        let items = || {
            vec![
                Item::Part(part(
                    &post("contacts", &json!({"lastname": "x".repeat(51)})),
                    None,
                )),
                Item::Part(part(
                    &post("contacts", &json!({"lastname": "Second"})),
                    None,
                )),
            ]
        };
        let r = send(&api, batch(&items()), None).await;
        assert_eq!(r.status, 400);
        assert_eq!(status_lines(&r.text), ["HTTP/1.1 400 Bad Request"]);
        assert!(r.text.contains("REQ_ID: "));
        assert!(r.text.contains("{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred.  The length of the 'lastname' attribute of the 'contact' entity exceeded the maximum allowed length of '50'.\"}}"));
        assert!(
            sim.rows("contacts").is_empty(),
            "the second request never ran"
        );

        let r = send(&api, batch(&items()), Some("odata.continue-on-error")).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            status_lines(&r.text),
            ["HTTP/1.1 400 Bad Request", "HTTP/1.1 204 No Content"]
        );
        assert_eq!(sim.rows("contacts").len(), 1);
    }

    #[tokio::test]
    async fn a_failing_change_set_rolls_back_every_part_of_it() {
        let (sim, api) = sim().await;
        let missing = "00000000-0000-4000-8000-00000000beef";
        let body = batch(&[
            Item::ChangeSet(vec![
                part(&post("accounts", &json!({"name": "A"})), Some(1)),
                part(
                    &post(
                        "contacts",
                        &json!({"lastname": "C", "parentcustomerid_account@odata.bind": "$1"}),
                    ),
                    Some(2),
                ),
                part(
                    &format!(
                        "PATCH contacts({missing}) HTTP/1.1\r\nIf-Match: *\r\nContent-Type: application/json\r\n\r\n{{\"firstname\":\"x\"}}\r\n"
                    ),
                    Some(3),
                ),
            ]),
            Item::Part(part(&post("contacts", &json!({"lastname": "After"})), None)),
        ]);
        let r = send(&api, body, Some("odata.continue-on-error")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            status_lines(&r.text),
            ["HTTP/1.1 404 Not Found", "HTTP/1.1 204 No Content"]
        );
        assert!(
            r.text
                .contains("Content-Type: multipart/mixed; boundary=changesetresponse_"),
            "a failed change set answers with one error part, inside its changesetresponse"
        );
        assert!(sim.rows("accounts").is_empty());
        let contacts = sim.rows("contacts");
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0]["lastname"], "After");

        let forward = batch(&[Item::ChangeSet(vec![part(
            &post(
                "contacts",
                &json!({"lastname": "F", "parentcustomerid_account@odata.bind": "$9"}),
            ),
            Some(1),
        )])]);
        let r = send(&api, forward, None).await;
        assert_eq!(r.status, 400);
        assert!(
            r.text
                .contains("Content-ID Reference: '$9' does not exist in the batch context.")
        );

        let get_in_cs = batch(&[Item::ChangeSet(vec![part(
            "GET contacts HTTP/1.1\r\n\r\n",
            Some(1),
        )])]);
        assert_eq!(send(&api, get_in_cs, None).await.status, 400);
        let bad_ct = api
            .send_raw(Method::POST, "$batch", &[], "application/json", "{}".into())
            .await
            .unwrap();
        assert_eq!(bad_ct.status, 400);
    }
}
