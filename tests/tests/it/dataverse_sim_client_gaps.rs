//! Dataverse simulator: the requests Microsoft's Python client (`powerplatform-dataverse-client`)
//! makes that the simulator used to get wrong (a batch URL split at its first space, a failed
//! change set answered outside its `changesetresponse`, the wrong code for an unknown segment,
//! 404 for the bulk actions, `?sql=` silently ignored, no `x-ms-service-request-id`, no option
//! sets on the metadata it reads before a write, no way to sit behind a TLS front). Each test
//! here failed before the simulator learned the request. The client itself runs against the
//! simulator in `dataverse_conformance.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// Test names start with `dataverse::` so that `cargo test -p sandbox dataverse` selects them.
mod dataverse {
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::any;
    use reqwest::Method;
    use sandbox::dataverse::{
        ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, DataverseSim, DataverseSimConfig, Reply, TENANT_ID,
        WebApi,
    };
    use sandbox::faults::{FaultConfig, FaultKind};
    use serde_json::{Value, json};
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    async fn sim() -> (DataverseSim, WebApi) {
        let sim = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap();
        let api = WebApi::admin(&sim).await.unwrap();
        (sim, api)
    }

    async fn contact(api: &WebApi, last: &str) -> String {
        api.create("contacts", &json!({"lastname": last}))
            .await
            .unwrap()
    }

    fn lastnames(sim: &DataverseSim) -> Vec<String> {
        let mut names: Vec<String> = sim
            .rows("contacts")
            .iter()
            .map(|r| r["lastname"].as_str().unwrap_or_default().to_string())
            .collect();
        names.sort();
        names
    }

    async fn batch(api: &WebApi, body: String, prefer: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = prefer.map(|p| vec![("Prefer", p)]).unwrap_or_default();
        api.send_raw(
            Method::POST,
            "$batch",
            &headers,
            "multipart/mixed; boundary=\"batch_py\"",
            body,
        )
        .await
        .unwrap()
    }

    // --- $batch ------------------------------------------------------------------------------

    /// The Python client writes `$filter` values into the batch request line as they are:
    /// `GET …/contacts?$select=lastname&$filter=lastname eq 'Lovelace' HTTP/1.1`.
    #[tokio::test]
    async fn a_batch_request_line_with_unencoded_spaces_keeps_its_whole_url() {
        let (sim, api) = sim().await;
        contact(&api, "Lovelace").await;
        contact(&api, "Hopper").await;
        let url = format!(
            "{}contacts?$select=lastname&$filter=lastname eq 'Lovelace'",
            sim.api_url()
        );
        let body = format!(
            "--batch_py\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET {url} HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n--batch_py--\r\n"
        );
        let r = batch(&api, body, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.text.contains("HTTP/1.1 200 OK"), "{}", r.text);
        let json_line = r.text.lines().find(|l| l.starts_with('{')).unwrap();
        let page: Value = serde_json::from_str(json_line).unwrap();
        let names: Vec<&str> = page["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["lastname"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["Lovelace"], "the whole filter was applied");
    }

    #[tokio::test]
    async fn a_batch_request_line_without_its_http_version_is_refused() {
        let (_sim, api) = sim().await;
        let body = "--batch_py\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET contacts?$filter=lastname eq 'x'\r\n\r\n\r\n--batch_py--\r\n".to_string();
        let r = batch(&api, body, None).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.body["error"]["code"], "0x80060891", "{}", r.text);
    }

    /// OData's multipart format answers a change set with a `changesetresponse` multipart,
    /// also when it failed: the failing request's answer is its only part.
    #[tokio::test]
    async fn a_failed_change_set_answers_its_error_inside_a_changesetresponse_multipart() {
        let (sim, api) = sim().await;
        let good = json!({"lastname": "Kept out"});
        let bad = json!({"lastname": "x".repeat(51), "firstname": "y".repeat(51)});
        let body = format!(
            "--batch_py\r\nContent-Type: multipart/mixed; boundary=\"changeset_py\"\r\n\r\n\
--changeset_py\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\n\
POST {api}contacts HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{good}\r\n\
--changeset_py\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\n\
POST {api}contacts HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{bad}\r\n\
--changeset_py--\r\n\r\n--batch_py--\r\n",
            api = sim.api_url()
        );
        let r = batch(&api, body, None).await;
        assert_eq!(r.status, 400, "{}", r.text);
        let batch_boundary = r
            .header("Content-Type")
            .unwrap()
            .strip_prefix("multipart/mixed; boundary=")
            .unwrap()
            .to_string();
        let after_first = r
            .text
            .strip_prefix(&format!("--{batch_boundary}\r\n"))
            .unwrap();
        let cs = after_first
            .strip_prefix("Content-Type: multipart/mixed; boundary=changesetresponse_")
            .unwrap_or_else(|| panic!("the change set's answer is a multipart: {}", r.text));
        let cs_boundary = format!("changesetresponse_{}", &cs[..36]);
        assert_eq!(
            r.text.matches(&format!("--{cs_boundary}\r\n")).count(),
            1,
            "one part: {}",
            r.text
        );
        let inner = r
            .text
            .split(&format!("--{cs_boundary}\r\n"))
            .nth(1)
            .unwrap();
        assert!(
            inner.starts_with("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nHTTP/1.1 400 Bad Request\r\n"),
            "{inner}"
        );
        assert!(inner.contains("\"code\":\"0x80044331\""), "{inner}");
        assert!(
            r.text
                .ends_with(&format!("--{cs_boundary}--\r\n--{batch_boundary}--\r\n")),
            "{}",
            r.text
        );
        assert!(
            sim.rows("contacts").is_empty(),
            "the change set rolled back"
        );
    }

    // --- error codes and headers -------------------------------------------------------------

    /// Microsoft's example of an unknown function: `{"error":{"code":"0x8006088a","message":
    /// "Resource not found for the segment 'your_function_name'."}}` (404).
    #[tokio::test]
    async fn an_unknown_url_segment_answers_404_with_code_0x8006088a() {
        let (_sim, api) = sim().await;
        for path in [
            "nosuchset",
            "contacts/nosuchsegment",
            "Microsoft.Dynamics.CRM.NoSuchFunction()",
        ] {
            let r = api.get(path).await.unwrap();
            assert_eq!(r.status, 404, "{path}: {}", r.text);
            assert_eq!(r.body["error"]["code"], "0x8006088a", "{path}: {}", r.text);
            assert!(
                r.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("Resource not found for the segment '"),
                "{}",
                r.text
            );
        }
        let bad_property = api.get("contacts?$select=nosuchcolumn").await.unwrap();
        assert_eq!(
            bad_property.body["error"]["code"], "0x80060888",
            "an unknown property keeps the query code"
        );
    }

    fn request_id(headers: &reqwest::header::HeaderMap) -> Option<String> {
        headers
            .get("x-ms-service-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    #[tokio::test]
    async fn every_top_level_web_api_response_carries_an_x_ms_service_request_id() {
        let (sim, api) = sim().await;
        let mut seen = HashSet::new();
        let mut check = |what: &str, headers: &reqwest::header::HeaderMap| {
            let id = request_id(headers).unwrap_or_else(|| panic!("{what}: no request id"));
            assert!(uuid::Uuid::parse_str(&id).is_ok(), "{what}: {id}");
            assert!(seen.insert(id), "{what}: a request id is not reused");
        };
        let created = api
            .post("contacts", &json!({"lastname": "Id"}))
            .await
            .unwrap();
        check("204 create", &created.headers);
        check("200 read", &api.get("contacts").await.unwrap().headers);
        check(
            "404",
            &api.get("contacts(00000000-0000-0000-0000-0000000000aa)")
                .await
                .unwrap()
                .headers,
        );
        let body = "--batch_py\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET contacts HTTP/1.1\r\n\r\n\r\n--batch_py--\r\n".to_string();
        check("$batch", &batch(&api, body, None).await.headers);
        let anonymous = reqwest::get(format!("{}contacts", sim.api_url()))
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401);
        check("401", anonymous.headers());
        sim.faults().set(FaultConfig {
            kinds: vec![FaultKind::TooManyRequests],
            ..FaultConfig::at_rate(1.0)
        });
        let throttled = api.get("contacts").await.unwrap();
        sim.faults().off();
        assert_eq!(throttled.status, 429);
        check("injected 429", &throttled.headers);
    }

    /// `GET contacts?sql=…` is a Dataverse preview the sandbox leaves out: it must say so
    /// instead of ignoring the parameter and answering the whole table.
    #[tokio::test]
    async fn a_sql_query_answers_501_not_implemented_instead_of_the_whole_table() {
        let (sim, api) = sim().await;
        contact(&api, "Lovelace").await;
        let r = api
            .get("contacts?sql=SELECT%20TOP%201%20lastname%20FROM%20contact")
            .await
            .unwrap();
        assert_eq!(r.status, 501, "{}", r.text);
        assert_eq!(r.body["error"]["code"], "0x80040219", "{}", r.text);
        assert!(r.body.get("value").is_none(), "{}", r.text);
        assert_eq!(sim.stats().pages, 0, "no page was served");
    }

    // --- bulk operations ---------------------------------------------------------------------

    /// A webhook endpoint in the test that records the messages it receives.
    #[derive(Clone, Default)]
    struct Hooks(Arc<Mutex<Vec<Value>>>);

    async fn hook(State(h): State<Hooks>, body: Bytes) -> StatusCode {
        h.0.lock()
            .unwrap()
            .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
        StatusCode::OK
    }

    impl Hooks {
        /// Registers asynchronous steps for `messages` on contacts, pointing at a local receiver.
        async fn register(api: &WebApi, messages: &[&str]) -> Hooks {
            let hooks = Hooks::default();
            let app = Router::new().fallback(any(hook)).with_state(hooks.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            let endpoint = api
                .create(
                    "serviceendpoints",
                    &json!({"name": "hook", "contract": 8, "url": format!("http://{addr}/hook"), "authtype": 5, "authvalue": "<settings><setting name=\"x-key\" value=\"k\" /></settings>", "messageformat": 2}),
                )
                .await
                .unwrap();
            for message in messages {
                let m = api
                    .get(&format!(
                        "sdkmessages?$select=sdkmessageid&$filter=name eq '{message}'"
                    ))
                    .await
                    .unwrap();
                let mid = m.body["value"][0]["sdkmessageid"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let f = api
                    .get(&format!("sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode eq 'contact' and _sdkmessageid_value eq {mid}"))
                    .await
                    .unwrap();
                let fid = f.body["value"][0]["sdkmessagefilterid"]
                    .as_str()
                    .unwrap()
                    .to_string();
                api.create(
                    "sdkmessageprocessingsteps",
                    &json!({
                        "name": format!("{message} of contact"),
                        "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint})"),
                        "sdkmessageid@odata.bind": format!("/sdkmessages({mid})"),
                        "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({fid})"),
                        "stage": 40, "mode": 1, "rank": 1, "asyncautodelete": true, "supporteddeployment": 0,
                    }),
                )
                .await
                .unwrap();
            }
            hooks
        }

        /// `(MessageName, PrimaryEntityId)` of every delivery so far, sorted.
        async fn messages(&self, sim: &DataverseSim) -> Vec<(String, String)> {
            sim.webhooks_idle().await;
            let mut out: Vec<(String, String)> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|b| {
                    (
                        b["MessageName"].as_str().unwrap_or_default().to_string(),
                        b["PrimaryEntityId"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect();
            out.sort();
            out
        }
    }

    fn target(last: &str) -> Value {
        json!({"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": last})
    }

    #[tokio::test]
    async fn create_multiple_creates_every_target_fires_create_for_each_and_answers_their_ids() {
        let (sim, api) = sim().await;
        let hooks = Hooks::register(&api, &["Create"]).await;
        let r = api
            .post(
                "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
                &json!({"Targets": [target("A"), target("B"), target("C")]}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.body["@odata.context"],
            format!(
                "{}$metadata#Microsoft.Dynamics.CRM.CreateMultipleResponse",
                sim.api_url()
            )
        );
        let ids: Vec<String> = r.body["Ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(lastnames(&sim), ["A", "B", "C"]);
        for (id, last) in ids.iter().zip(["A", "B", "C"]) {
            assert_eq!(sim.row("contacts", id).unwrap()["lastname"], last);
        }
        let mut expected: Vec<(String, String)> = ids
            .iter()
            .map(|id| ("Create".to_string(), id.clone()))
            .collect();
        expected.sort();
        assert_eq!(
            hooks.messages(&sim).await,
            expected,
            "one Create per target (merged pipelines)"
        );
    }

    #[tokio::test]
    async fn create_multiple_is_all_or_nothing_and_needs_the_odata_type_of_every_target() {
        let (sim, api) = sim().await;
        let too_long = api
            .post(
                "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
                &json!({"Targets": [target("A"), target(&"x".repeat(51))]}),
            )
            .await
            .unwrap();
        assert_eq!(too_long.status, 400, "{}", too_long.text);
        assert_eq!(too_long.body["error"]["code"], "0x80044331");
        let untyped = api
            .post(
                "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
                &json!({"Targets": [target("A"), {"lastname": "B"}]}),
            )
            .await
            .unwrap();
        assert_eq!(untyped.status, 400, "{}", untyped.text);
        assert!(
            untyped.text.contains("@odata.type"),
            "the error names the missing annotation: {}",
            untyped.text
        );
        let other_table = api
            .post(
                "contacts/Microsoft.Dynamics.CRM.CreateMultiple",
                &json!({"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.account", "name": "A"}]}),
            )
            .await
            .unwrap();
        assert_eq!(other_table.status, 400, "{}", other_table.text);
        assert!(sim.rows("contacts").is_empty(), "nothing was created");
        assert!(sim.rows("accounts").is_empty(), "nothing was created");
    }

    #[tokio::test]
    async fn update_multiple_updates_every_target_fires_update_for_each_and_answers_204() {
        let (sim, api) = sim().await;
        let a = contact(&api, "A").await;
        let b = contact(&api, "B").await;
        let hooks = Hooks::register(&api, &["Update"]).await;
        let r = api
            .post(
                "contacts/Microsoft.Dynamics.CRM.UpdateMultiple",
                &json!({"Targets": [
                    {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": a, "jobtitle": "Engineer"},
                    {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": b, "jobtitle": "Admiral"},
                ]}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 204, "{}", r.text);
        assert_eq!(sim.row("contacts", &a).unwrap()["jobtitle"], "Engineer");
        assert_eq!(sim.row("contacts", &b).unwrap()["jobtitle"], "Admiral");
        let mut expected = vec![
            ("Update".to_string(), a.clone()),
            ("Update".to_string(), b.clone()),
        ];
        expected.sort();
        assert_eq!(hooks.messages(&sim).await, expected);
    }

    #[tokio::test]
    async fn update_multiple_never_creates_and_rolls_back_when_one_target_is_missing() {
        let (sim, api) = sim().await;
        let a = contact(&api, "A").await;
        let missing = "00000000-0000-0000-0000-0000000000bb";
        let r = api
            .post(
                "contacts/Microsoft.Dynamics.CRM.UpdateMultiple",
                &json!({"Targets": [
                    {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": a, "jobtitle": "Engineer"},
                    {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": missing, "jobtitle": "Ghost"},
                ]}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 404, "{}", r.text);
        assert_eq!(r.body["error"]["code"], "0x80040217");
        assert!(
            sim.row("contacts", &a).unwrap().get("jobtitle").is_none(),
            "the first update was rolled back"
        );
        assert_eq!(sim.rows("contacts").len(), 1, "nothing was created");
        let no_key = api
            .post(
                "contacts/Microsoft.Dynamics.CRM.UpdateMultiple",
                &json!({"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.contact", "jobtitle": "Nobody"}]}),
            )
            .await
            .unwrap();
        assert_eq!(no_key.status, 400, "{}", no_key.text);
    }

    #[tokio::test]
    async fn the_bulk_actions_the_sandbox_leaves_out_answer_501_not_implemented_never_404() {
        let (sim, api) = sim().await;
        let a = contact(&api, "A").await;
        for (action, body) in [
            (
                "UpsertMultiple",
                json!({"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.contact", "@odata.id": "contacts(emailaddress1='a@example.com')", "lastname": "A"}]}),
            ),
            (
                "DeleteMultiple",
                json!({"Targets": [{"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": a}]}),
            ),
        ] {
            let r = api
                .post(&format!("contacts/Microsoft.Dynamics.CRM.{action}"), &body)
                .await
                .unwrap();
            assert_eq!(r.status, 501, "{action}: {}", r.text);
            assert_eq!(
                r.body["error"]["code"], "0x80040219",
                "{action}: {}",
                r.text
            );
        }
        assert_eq!(lastnames(&sim), ["A"], "nothing changed");
        let unknown = api
            .post(
                "contacts/Microsoft.Dynamics.CRM.NoSuchAction",
                &json!({"Targets": []}),
            )
            .await
            .unwrap();
        assert_eq!(unknown.status, 404, "{}", unknown.text);
    }

    /// The `BulkDelete` body Microsoft's Python client sends for `records.delete(table, ids)`.
    fn bulk_delete(entity: &str, pk: &str, ids: &[&str]) -> Value {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        json!({
            "JobName": format!("Bulk delete {entity} records @ {now}"),
            "SendEmailNotification": false,
            "ToRecipients": [],
            "CCRecipients": [],
            "RecurrencePattern": "",
            "StartDateTime": now,
            "QuerySet": [{
                "@odata.type": "Microsoft.Dynamics.CRM.QueryExpression",
                "EntityName": entity,
                "ColumnSet": {"@odata.type": "Microsoft.Dynamics.CRM.ColumnSet", "AllColumns": false, "Columns": []},
                "Criteria": {
                    "@odata.type": "Microsoft.Dynamics.CRM.FilterExpression",
                    "FilterOperator": "And",
                    "Conditions": [{
                        "@odata.type": "Microsoft.Dynamics.CRM.ConditionExpression",
                        "AttributeName": pk,
                        "Operator": "In",
                        "Values": ids.iter().map(|id| json!({"Value": id, "Type": "System.Guid"})).collect::<Vec<_>>(),
                    }],
                },
            }],
        })
    }

    async fn finished_job(api: &WebApi, job: &str) -> Value {
        for _ in 0..100 {
            let r = api
                .get(&format!(
                    "asyncoperations({job})?$select=statecode,statuscode,operationtype,name,message"
                ))
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.text);
            if r.body["statecode"] == 3 {
                return r.body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the bulk delete job did not finish")
    }

    #[tokio::test]
    async fn bulk_delete_answers_a_job_id_and_a_system_job_deletes_the_matching_rows() {
        let (sim, api) = sim().await;
        let a = contact(&api, "A").await;
        let b = contact(&api, "B").await;
        contact(&api, "Kept").await;
        let hooks = Hooks::register(&api, &["Delete"]).await;
        let r = api
            .post(
                "BulkDelete",
                &bulk_delete("contact", "contactid", &[&a, &b]),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.body["@odata.context"],
            format!(
                "{}$metadata#Microsoft.Dynamics.CRM.BulkDeleteResponse",
                sim.api_url()
            )
        );
        let job = r.body["JobId"].as_str().unwrap().to_string();
        let done = finished_job(&api, &job).await;
        assert_eq!(done["statuscode"], 30, "succeeded: {done}");
        assert_eq!(done["operationtype"], 13, "a bulk delete job: {done}");
        assert_eq!(lastnames(&sim), ["Kept"]);
        let mut expected = vec![("Delete".to_string(), a), ("Delete".to_string(), b)];
        expected.sort();
        assert_eq!(hooks.messages(&sim).await, expected);
    }

    #[tokio::test]
    async fn bulk_delete_refuses_what_it_cannot_evaluate_and_deletes_nothing() {
        let (sim, api) = sim().await;
        let a = contact(&api, "A").await;
        let mut recurring = bulk_delete("contact", "contactid", &[&a]);
        recurring["RecurrencePattern"] = json!("FREQ=DAILY;INTERVAL=1;");
        let r = api.post("BulkDelete", &recurring).await.unwrap();
        assert_eq!(r.status, 501, "{}", r.text);
        assert_eq!(r.body["error"]["code"], "0x80040219");
        let mut unknown_operator = bulk_delete("contact", "contactid", &[&a]);
        unknown_operator["QuerySet"][0]["Criteria"]["Conditions"][0]["Operator"] =
            json!("LastXDays");
        let r = api.post("BulkDelete", &unknown_operator).await.unwrap();
        assert_eq!(r.status, 501, "{}", r.text);
        let mut no_job_name = bulk_delete("contact", "contactid", &[&a]);
        no_job_name.as_object_mut().unwrap().remove("JobName");
        let r = api.post("BulkDelete", &no_job_name).await.unwrap();
        assert_eq!(r.status, 400, "{}", r.text);
        let r = api
            .post("BulkDelete", &bulk_delete("contact", "nosuchcolumn", &[&a]))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(lastnames(&sim), ["A"]);
    }

    // --- metadata the client reads -----------------------------------------------------------

    /// Before a write with string values the client resolves choice labels:
    /// `EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)`.
    #[tokio::test]
    async fn picklist_columns_expand_their_option_set_as_the_client_reads_them_before_a_write() {
        let (_sim, api) = sim().await;
        let r = api
            .get("EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        let gender = r.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["LogicalName"] == "gendercode")
            .unwrap_or_else(|| panic!("gendercode is a picklist of contact: {}", r.text));
        let options = gender["OptionSet"]["Options"].as_array().unwrap();
        let labels: Vec<(i64, &str)> = options
            .iter()
            .map(|o| {
                (
                    o["Value"].as_i64().unwrap(),
                    o["Label"]["LocalizedLabels"][0]["Label"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(labels, [(1, "Male"), (2, "Female")]);
        assert!(
            r.body["value"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a.get("IsCustomAttribute").is_none()),
            "$select keeps the answer small"
        );
        // Microsoft's example expands both option sets; the sandbox has no global ones.
        let both = api
            .get("EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet,GlobalOptionSet")
            .await
            .unwrap();
        assert_eq!(both.status, 200, "{}", both.text);
        let gender = both.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["LogicalName"] == "gendercode")
            .unwrap();
        assert_eq!(gender["OptionSet"]["Name"], "contact_gendercode");
        assert_eq!(gender["OptionSet"]["Options"][1]["Value"], 2);
        assert!(gender["GlobalOptionSet"].is_null(), "{gender}");
        let without_expand = api
            .get("EntityDefinitions(LogicalName='contact')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName")
            .await
            .unwrap();
        assert!(
            without_expand.body["value"][0].get("OptionSet").is_none(),
            "option sets come only when expanded"
        );
    }

    #[tokio::test]
    async fn the_entity_lookup_the_client_makes_before_its_first_request_finds_the_table() {
        let (_sim, api) = sim().await;
        let r = api
            .get("EntityDefinitions?%24select=LogicalName%2CEntitySetName%2CPrimaryIdAttribute&%24filter=LogicalName+eq+%27contact%27")
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["value"].as_array().unwrap().len(), 1, "{}", r.text);
        assert_eq!(r.body["value"][0]["EntitySetName"], "contacts");
        assert_eq!(r.body["value"][0]["PrimaryIdAttribute"], "contactid");
    }

    // --- tokens and a TLS front --------------------------------------------------------------

    /// msal (under azure-identity's `ClientSecretCredential`) asks the authority for its
    /// OpenID configuration before it asks for a token.
    #[tokio::test]
    async fn the_tenant_publishes_its_openid_configuration_for_token_clients() {
        let (sim, _api) = sim().await;
        let http = reqwest::Client::new();
        let r = http
            .get(format!(
                "{}/{TENANT_ID}/v2.0/.well-known/openid-configuration",
                sim.base_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let config: Value = r.json().await.unwrap();
        assert_eq!(config["token_endpoint"], sim.token_url());
        assert_eq!(
            config["issuer"],
            format!("https://login.microsoftonline.com/{TENANT_ID}/v2.0")
        );
        assert!(config["authorization_endpoint"].is_string());
        let unknown = http
            .get(format!(
                "{}/00000000-0000-0000-0000-000000000000/v2.0/.well-known/openid-configuration",
                sim.base_url()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 400);
    }

    /// A TLS front on 127.0.0.1 forwards requests with `X-Forwarded-Proto: https`: links,
    /// discovery and token scopes use the URL the client sees.
    #[tokio::test]
    async fn behind_a_tls_front_links_discovery_and_token_scopes_use_the_https_origin() {
        let (sim, api) = sim().await;
        for last in ["A", "B", "C"] {
            contact(&api, last).await;
        }
        let front = "127.0.0.1:8443";
        let http = reqwest::Client::new();
        let page: Value = http
            .get(format!("{}contacts?$select=lastname", sim.api_url()))
            .bearer_auth(api.token())
            .header("Host", front)
            .header("X-Forwarded-Proto", "https")
            .header("Prefer", "odata.maxpagesize=2")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let next = page["@odata.nextLink"].as_str().unwrap();
        assert!(
            next.starts_with(&format!("https://{front}/api/data/v9.2/contacts?")),
            "{next}"
        );
        let config: Value = http
            .get(format!(
                "{}/{TENANT_ID}/v2.0/.well-known/openid-configuration",
                sim.base_url()
            ))
            .header("Host", front)
            .header("X-Forwarded-Proto", "https")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            config["token_endpoint"],
            format!("https://{front}/{TENANT_ID}/oauth2/v2.0/token")
        );
        let token = |scope: String, proto: Option<&'static str>| {
            let mut req = http.post(sim.token_url()).header("Host", front).form(&[
                ("grant_type", "client_credentials".to_string()),
                ("client_id", ADMIN_CLIENT_ID.to_string()),
                ("client_secret", ADMIN_CLIENT_SECRET.to_string()),
                ("scope", scope),
            ]);
            if let Some(p) = proto {
                req = req.header("X-Forwarded-Proto", p);
            }
            req.send()
        };
        let through_front = token(format!("https://{front}/.default"), Some("https"))
            .await
            .unwrap();
        assert_eq!(through_front.status(), 200);
        let plain = token(format!("https://{front}/.default"), None)
            .await
            .unwrap();
        assert_eq!(
            plain.status(),
            400,
            "without the front's header the https resource is not this org"
        );
    }
}
