//! Webhooks of the Dataverse simulator: registered through the Web API as an administrator
//! registers them, fired by writes, and delivered the way ref/dataverse.md §1–§2 and the real
//! body in `shared/samples/dataverse-webhook-contact-update.json` describe.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Test names start with `dataverse::` so that `cargo test -p sandbox dataverse` selects them.
mod dataverse {
    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::routing::any;
    use reqwest::Method;
    use sandbox::dataverse::{self, DataverseSim, DataverseSimConfig, WebApi, schema};
    use serde_json::{Value, json};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Top-level members of the real body in `shared/samples/dataverse-webhook-contact-update.json`.
    const SAMPLE_MEMBERS: [&str; 27] = [
        "BusinessUnitId",
        "CorrelationId",
        "Depth",
        "InitiatingUserId",
        "InputParameters",
        "IsExecutingOffline",
        "IsInTransaction",
        "IsOfflinePlayback",
        "IsolationMode",
        "MessageName",
        "Mode",
        "OperationCreatedOn",
        "OperationId",
        "OrganizationId",
        "OrganizationName",
        "OutputParameters",
        "OwningExtension",
        "ParentContext",
        "PostEntityImages",
        "PreEntityImages",
        "PrimaryEntityId",
        "PrimaryEntityName",
        "RequestId",
        "SecondaryEntityName",
        "SharedVariables",
        "Stage",
        "UserId",
    ];
    const ENTITY_TYPE: &str = "Entity:http://schemas.microsoft.com/xrm/2011/Contracts";
    const REFERENCE_TYPE: &str = "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts";
    const OPTIONSET_TYPE: &str = "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts";

    #[derive(Debug, Clone)]
    struct Hit {
        at: std::time::Instant,
        path: String,
        query: String,
        headers: HeaderMap,
        raw: String,
        body: Value,
    }

    impl Hit {
        fn header(&self, name: &str) -> &str {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        }
    }

    /// A webhook endpoint in the test: records requests, answers from a script (status, delay).
    #[derive(Clone, Default)]
    struct Receiver {
        hits: Arc<Mutex<Vec<Hit>>>,
        script: Arc<Mutex<VecDeque<(u16, u64)>>>,
    }

    impl Receiver {
        fn hits(&self) -> Vec<Hit> {
            self.hits.lock().unwrap().clone()
        }

        fn answer(&self, statuses: &[u16]) {
            self.script
                .lock()
                .unwrap()
                .extend(statuses.iter().map(|s| (*s, 0)));
        }

        fn clear(&self) {
            self.hits.lock().unwrap().clear();
        }
    }

    async fn hook(
        State(r): State<Receiver>,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let raw = String::from_utf8(body.to_vec()).unwrap();
        r.hits.lock().unwrap().push(Hit {
            at: std::time::Instant::now(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or_default().to_string(),
            headers,
            body: serde_json::from_str(&raw).unwrap_or(Value::Null),
            raw,
        });
        let (status, delay) = r.script.lock().unwrap().pop_front().unwrap_or((200, 0));
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        StatusCode::from_u16(status).unwrap()
    }

    async fn receiver() -> (String, Receiver) {
        let r = Receiver::default();
        let app = Router::new().fallback(any(hook)).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/api/webhook"), r)
    }

    struct World {
        sim: DataverseSim,
        api: WebApi,
        url: String,
        rx: Receiver,
    }

    async fn world_with(config: DataverseSimConfig) -> World {
        let sim = DataverseSim::spawn(config).await.unwrap();
        let api = WebApi::admin(&sim).await.unwrap();
        let (url, rx) = receiver().await;
        World { sim, api, url, rx }
    }

    async fn world() -> World {
        world_with(DataverseSimConfig::default()).await
    }

    impl World {
        async fn endpoint(&self, authtype: i64, authvalue: &str) -> String {
            self.api
            .create(
                "serviceendpoints",
                &json!({"name": "intake", "contract": 8, "url": self.url, "authtype": authtype, "authvalue": authvalue, "messageformat": 2, "messagecharset": 1}),
            )
            .await
            .unwrap()
        }

        /// Finds the message and filter ids the way a client does, then registers a step.
        async fn step(
            &self,
            endpoint: &str,
            message: &str,
            entity: &str,
            mode: i64,
            filtering: &str,
        ) -> String {
            let m = self
                .api
                .get(&format!(
                    "sdkmessages?$select=sdkmessageid&$filter=name eq '{message}'"
                ))
                .await
                .unwrap();
            let mid = m.body["value"][0]["sdkmessageid"]
                .as_str()
                .unwrap()
                .to_string();
            let f = self
            .api
            .get(&format!("sdkmessagefilters?$select=sdkmessagefilterid&$filter=primaryobjecttypecode eq '{entity}' and _sdkmessageid_value eq {mid}"))
            .await
            .unwrap();
            let fid = f.body["value"][0]["sdkmessagefilterid"]
                .as_str()
                .unwrap()
                .to_string();
            let mut body = json!({
                "name": format!("{message} of {entity}"),
                "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint})"),
                "sdkmessageid@odata.bind": format!("/sdkmessages({mid})"),
                "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({fid})"),
                "stage": 40,
                "mode": mode,
                "rank": 1,
                "asyncautodelete": false,
                "supporteddeployment": 0,
            });
            if !filtering.is_empty() {
                body["filteringattributes"] = json!(filtering);
            }
            self.api
                .create("sdkmessageprocessingsteps", &body)
                .await
                .unwrap()
        }

        async fn image(&self, step: &str, imagetype: i64, alias: &str, attributes: &str) {
            self.api
            .create(
                "sdkmessageprocessingstepimages",
                &json!({
                    "sdkmessageprocessingstepid@odata.bind": format!("/sdkmessageprocessingsteps({step})"),
                    "imagetype": imagetype, "entityalias": alias, "name": alias, "attributes": attributes,
                    "messagepropertyname": "Target",
                }),
            )
            .await
            .unwrap();
        }

        async fn hits(&self) -> Vec<Hit> {
            self.sim.webhooks_idle().await;
            self.rx.hits()
        }
    }

    fn param<'v>(list: &'v Value, key: &str) -> Option<&'v Value> {
        list.as_array()?
            .iter()
            .find(|kv| kv["key"] == key)
            .map(|kv| &kv["value"])
    }

    fn attr<'v>(entity: &'v Value, key: &str) -> Option<&'v Value> {
        param(&entity["Attributes"], key)
    }

    fn attr_names(entity: &Value) -> Vec<String> {
        entity["Attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| kv["key"].as_str().unwrap().to_string())
            .collect()
    }

    fn is_wcf_date(v: &Value) -> bool {
        let s = v.as_str().unwrap_or_default();
        s.starts_with("/Date(") && s.ends_with(")/") && s[6..s.len() - 2].parse::<i64>().is_ok()
    }

    #[tokio::test]
    async fn an_update_is_delivered_with_the_real_body_shape_headers_key_images_and_tag() {
        let w = world().await;
        let endpoint = w.endpoint(4, "k3y-with/special&chars").await;
        let step = w
            .step(&endpoint, "Update", "contact", 1, "firstname,emailaddress1")
            .await;
        w.image(&step, 2, "Image", "emailaddress1,firstname").await;
        let c = w.api.create("contacts", &json!({"firstname": "James", "lastname": "Glynn (sample)", "emailaddress1": "old@example.com"})).await.unwrap();
        assert_eq!(
            w.api
                .patch(
                    &format!("contacts({c})?tag=connector-own-write"),
                    &json!({"firstname": "Jim"})
                )
                .await
                .unwrap()
                .status,
            204
        );
        assert_eq!(
            w.api
                .patch(&format!("contacts({c})"), &json!({"lastname": "Unwatched"}))
                .await
                .unwrap()
                .status,
            204
        );

        let hits = w.hits().await;
        assert_eq!(
            hits.len(),
            1,
            "the create has no step and the lastname change is filtered out"
        );
        let h = &hits[0];
        assert_eq!(h.path, "/api/webhook");
        assert_eq!(h.query, "code=k3y-with%2fspecial%26chars");
        assert_eq!(h.header("content-type"), "application/json; charset=utf-8");
        assert_eq!(
            h.header("x-ms-dynamics-organization"),
            "sandbox.crm4.dynamics.com"
        );
        assert_eq!(h.header("x-ms-dynamics-entity-name"), "contact");
        assert_eq!(h.header("x-ms-dynamics-request-name"), "Update");
        assert!(uuid::Uuid::parse_str(h.header("x-request-id")).is_ok());
        assert!(h.headers.get("x-ms-dynamics-msg-size-exceeded").is_none());
        let b = &h.body;
        assert_eq!(
            h.header("x-ms-correlation-request-id"),
            b["CorrelationId"].as_str().unwrap()
        );
        for m in SAMPLE_MEMBERS {
            assert!(b.get(m).is_some(), "member {m} is missing");
        }
        assert!(h.raw.contains(r#"{"__type":"Entity:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Attributes":"#), "slashes escaped, __type first");
        assert_eq!(b["MessageName"], "Update");
        assert_eq!(b["PrimaryEntityName"], "contact");
        assert_eq!(b["PrimaryEntityId"], c.as_str());
        assert_eq!(b["SecondaryEntityName"], "none");
        assert_eq!(
            (b["Mode"].clone(), b["Stage"].clone(), b["Depth"].clone()),
            (json!(1), json!(40), json!(1))
        );
        assert_eq!(b["IsInTransaction"], false);
        assert_eq!(b["UserId"], dataverse::ADMIN_USER_ID);
        assert_eq!(b["InitiatingUserId"], dataverse::ADMIN_USER_ID);
        assert_eq!(b["OrganizationId"], dataverse::ORGANIZATION_ID);
        assert_eq!(b["OrganizationName"], "unqsandbox");
        assert_eq!(b["BusinessUnitId"], dataverse::BUSINESS_UNIT_ID);
        assert!(is_wcf_date(&b["OperationCreatedOn"]));
        assert!(b["RequestId"].is_null());
        assert_eq!(b["OwningExtension"]["Id"], step.as_str());
        assert_eq!(
            b["OwningExtension"]["LogicalName"],
            "sdkmessageprocessingstep"
        );

        let target = param(&b["InputParameters"], "Target").unwrap();
        assert_eq!(target["__type"], ENTITY_TYPE);
        assert_eq!(target["LogicalName"], "contact");
        assert_eq!(target["Id"], c.as_str());
        assert_eq!(
            attr_names(target),
            [
                "firstname",
                "contactid",
                "fullname",
                "modifiedon",
                "modifiedby",
                "modifiedonbehalfby"
            ]
        );
        assert_eq!(attr(target, "firstname").unwrap(), "Jim");
        assert_eq!(attr(target, "fullname").unwrap(), "Jim Glynn (sample)");
        assert!(is_wcf_date(attr(target, "modifiedon").unwrap()));
        let by = attr(target, "modifiedby").unwrap();
        assert_eq!(
            (
                by["__type"].as_str(),
                by["LogicalName"].as_str(),
                by["Id"].as_str()
            ),
            (
                Some(REFERENCE_TYPE),
                Some("systemuser"),
                Some(dataverse::ADMIN_USER_ID)
            )
        );
        assert!(attr(target, "modifiedonbehalfby").unwrap().is_null());

        let pre = param(&b["PreEntityImages"], "Image").unwrap();
        assert!(pre.get("__type").is_none(), "images carry no __type");
        assert_eq!(attr(pre, "firstname").unwrap(), "James");
        assert_eq!(attr(pre, "emailaddress1").unwrap(), "old@example.com");
        assert_eq!(attr_names(pre).len(), 2, "only the registered attributes");
        let post = param(&b["PostEntityImages"], "Image").unwrap();
        assert_eq!(attr(post, "firstname").unwrap(), "Jim");
        let primary = param(&b["PostEntityImages"], "AsynchronousStepPrimaryName").unwrap();
        assert_eq!(attr_names(primary), ["contactid", "fullname"]);

        let parent = &b["ParentContext"];
        assert_eq!(parent["Stage"], 30);
        assert_eq!(
            attr_names(param(&parent["InputParameters"], "Target").unwrap()),
            ["firstname", "contactid"]
        );
        assert_eq!(
            param(&parent["InputParameters"], "SuppressDuplicateDetection").unwrap(),
            false
        );
        assert_eq!(
            param(&b["SharedVariables"], "tag").unwrap(),
            "connector-own-write"
        );

        let d = w.sim.deliveries();
        assert_eq!(d.len(), 1);
        assert!(d[0].succeeded && d[0].attempts == 1 && d[0].status == Some(200));
        assert!(!d[0].url.contains("k3y"), "the log keeps the key out");
        let jobs = w.sim.rows("asyncoperations");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0]["statuscode"], 30);
        assert_eq!(jobs[0]["asyncoperationid"], b["OperationId"]);
    }

    #[tokio::test]
    async fn creates_deletes_and_state_changes_fire_their_messages_with_typed_values() {
        let w = world().await;
        let endpoint = w
            .endpoint(
                5,
                r#"<settings><setting name="x-api-key" value="h3ader"/></settings>"#,
            )
            .await;
        w.step(&endpoint, "Create", "contact", 1, "").await;
        let update = w.step(&endpoint, "Update", "contact", 1, "").await;
        let delete = w.step(&endpoint, "Delete", "contact", 1, "").await;
        w.image(&delete, 0, "PreImage", "emailaddress1").await;
        w.image(&update, 0, "Before", "statecode").await;
        let account = w
            .api
            .create("accounts", &json!({"name": "Contoso"}))
            .await
            .unwrap();
        let c = w
        .api
        .create("contacts", &json!({"lastname": "New", "emailaddress1": "n@x.de", "parentcustomerid_account@odata.bind": format!("/accounts({account})"), "birthdate": "1990-05-01T00:00:00Z"}))
        .await
        .unwrap();
        let hits = w.hits().await;
        assert_eq!(hits.len(), 1);
        let b = &hits[0].body;
        assert_eq!(hits[0].header("x-api-key"), "h3ader");
        assert_eq!(hits[0].query, "");
        assert_eq!(b["MessageName"], "Create");
        let target = param(&b["InputParameters"], "Target").unwrap();
        assert_eq!(attr(target, "lastname").unwrap(), "New");
        assert_eq!(
            attr(target, "statecode").unwrap(),
            &json!({"__type": OPTIONSET_TYPE, "Value": 0})
        );
        assert_eq!(
            attr(target, "statuscode").unwrap(),
            &json!({"__type": OPTIONSET_TYPE, "Value": 1})
        );
        assert_eq!(attr(target, "donotbulkemail").unwrap(), false);
        assert_eq!(attr(target, "birthdate").unwrap(), "/Date(641520000000)/");
        let parent = attr(target, "parentcustomerid").unwrap();
        assert_eq!(
            (parent["LogicalName"].as_str(), parent["Id"].as_str()),
            (Some("account"), Some(account.as_str()))
        );
        assert_eq!(
            attr(target, "ownerid").unwrap()["Id"],
            dataverse::ADMIN_USER_ID
        );
        assert_eq!(b["OutputParameters"], json!([{"key": "id", "value": c}]));
        assert!(param(&b["PostEntityImages"], "AsynchronousStepPrimaryName").is_some());

        w.rx.clear();
        assert_eq!(
            w.api
                .patch(
                    &format!("contacts({c})"),
                    &json!({"firstname": "Both", "statecode": 1})
                )
                .await
                .unwrap()
                .status,
            204
        );
        let hits = w.hits().await;
        assert_eq!(
            hits.len(),
            2,
            "a change of state and other columns fires two Updates"
        );
        let first = param(&hits[0].body["InputParameters"], "Target").unwrap();
        let second = param(&hits[1].body["InputParameters"], "Target").unwrap();
        assert!(attr(first, "firstname").is_some() && attr(first, "statecode").is_none());
        assert_eq!(attr(second, "statecode").unwrap()["Value"], 1);
        assert_eq!(attr(second, "statuscode").unwrap()["Value"], 2);
        assert_eq!(
            attr(
                param(&hits[1].body["PreEntityImages"], "Before").unwrap(),
                "statecode"
            )
            .unwrap()["Value"],
            0
        );

        w.rx.clear();
        assert_eq!(
            w.api
                .delete(&format!("contacts({c})"))
                .await
                .unwrap()
                .status,
            204
        );
        let hits = w.hits().await;
        assert_eq!(hits.len(), 1);
        let b = &hits[0].body;
        assert_eq!(b["MessageName"], "Delete");
        let target = param(&b["InputParameters"], "Target").unwrap();
        assert_eq!(target["__type"], REFERENCE_TYPE);
        assert_eq!(target["Id"], c.as_str());
        assert_eq!(
            attr(
                param(&b["PreEntityImages"], "PreImage").unwrap(),
                "emailaddress1"
            )
            .unwrap(),
            "n@x.de"
        );
        assert!(param(&b["PreEntityImages"], "AsynchronousStepPrimaryName").is_some());
        assert_eq!(b["PostEntityImages"], json!([]));
    }

    #[tokio::test]
    async fn list_and_campaign_actions_fire_their_messages_with_their_parameters() {
        let w = world().await;
        let endpoint = w.endpoint(6, r#"<settings><setting name="key" value="q1"/><setting name="source" value="crm"/></settings>"#).await;
        for (message, entity) in [
            ("AddMember", "list"),
            ("AddListMembers", "list"),
            ("RemoveMember", "list"),
            ("AddItem", "campaign"),
            ("AddItem", "campaignactivity"),
            ("RemoveItem", "campaign"),
        ] {
            w.step(&endpoint, message, entity, 1, "").await;
        }
        let list = w
            .api
            .create("lists", &json!({"listname": "L", "createdfromcode": 2}))
            .await
            .unwrap();
        let c1 = w
            .api
            .create("contacts", &json!({"lastname": "One"}))
            .await
            .unwrap();
        let c2 = w
            .api
            .create("contacts", &json!({"lastname": "Two"}))
            .await
            .unwrap();
        let campaign = w
            .api
            .create("campaigns", &json!({"name": "C"}))
            .await
            .unwrap();
        let activity = w
        .api
        .create("campaignactivities", &json!({"subject": "A", "regardingobjectid_campaign_campaignactivity@odata.bind": format!("/campaigns({campaign})")}))
        .await
        .unwrap();
        let add = w
            .api
            .post(
                &format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList"),
                &json!({"EntityId": c1}),
            )
            .await
            .unwrap();
        w.api
        .post("AddListMembersList", &json!({"List": {"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list}, "Members": [{"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": c1}, {"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": c2}]}))
        .await
        .unwrap();
        w.api
            .post(
                &format!("lists({list})/Microsoft.Dynamics.CRM.RemoveMemberList"),
                &json!({"EntityId": c2}),
            )
            .await
            .unwrap();
        w.api
            .post(
                &format!("campaigns({campaign})/Microsoft.Dynamics.CRM.AddItemCampaign"),
                &json!({"EntityId": list, "EntityName": "list"}),
            )
            .await
            .unwrap();
        w.api
            .post(
                &format!(
                    "campaignactivities({activity})/Microsoft.Dynamics.CRM.AddItemCampaignActivity"
                ),
                &json!({"ItemId": list, "EntityName": "list"}),
            )
            .await
            .unwrap();
        w.api
            .post(
                &format!("campaigns({campaign})/Microsoft.Dynamics.CRM.RemoveItemCampaign"),
                &json!({"EntityId": list}),
            )
            .await
            .unwrap();

        let hits = w.hits().await;
        let find = |message: &str, entity: &str| {
            hits.iter()
                .find(|h| h.body["MessageName"] == message && h.body["PrimaryEntityName"] == entity)
                .unwrap()
                .clone()
        };
        assert!(
            hits.iter().all(|h| h.query == "key=q1&source=crm"),
            "{:?}",
            hits.iter().map(|h| &h.query).collect::<Vec<_>>()
        );
        let b = find("AddMember", "list").body;
        assert_eq!(b["PrimaryEntityId"], list.as_str());
        assert_eq!(
            param(&b["InputParameters"], "ListId").unwrap(),
            list.as_str()
        );
        assert_eq!(
            param(&b["InputParameters"], "EntityId").unwrap(),
            c1.as_str()
        );
        assert_eq!(
            param(&b["OutputParameters"], "Id").unwrap(),
            &add.body["Id"]
        );
        let b = find("AddListMembers", "list").body;
        assert_eq!(
            param(&b["InputParameters"], "MemberIds").unwrap(),
            &json!([c1, c2])
        );
        let b = find("RemoveMember", "list").body;
        assert_eq!(
            param(&b["InputParameters"], "EntityId").unwrap(),
            c2.as_str()
        );
        let b = find("AddItem", "campaign").body;
        assert_eq!(
            param(&b["InputParameters"], "CampaignId").unwrap(),
            campaign.as_str()
        );
        assert_eq!(
            param(&b["InputParameters"], "EntityId").unwrap(),
            list.as_str()
        );
        assert_eq!(param(&b["InputParameters"], "EntityName").unwrap(), "list");
        let b = find("AddItem", "campaignactivity").body;
        assert_eq!(b["PrimaryEntityId"], activity.as_str());
        assert_eq!(
            param(&b["InputParameters"], "CampaignActivityId").unwrap(),
            activity.as_str()
        );
        assert_eq!(
            param(&b["InputParameters"], "ItemId").unwrap(),
            list.as_str()
        );
        let b = find("RemoveItem", "campaign").body;
        assert_eq!(
            param(&b["InputParameters"], "EntityId").unwrap(),
            list.as_str()
        );
        assert_eq!(hits.len(), 6);
    }

    #[tokio::test]
    async fn a_503_is_retried_once_but_a_500_is_not_and_failures_become_failed_system_jobs() {
        let w = world().await;
        let endpoint = w.endpoint(4, "k").await;
        let step = w.step(&endpoint, "Create", "lead", 1, "").await;
        w.rx.answer(&[503, 200]);
        w.api
            .create("leads", &json!({"lastname": "Retried"}))
            .await
            .unwrap();
        w.sim.webhooks_idle().await;
        let d = w.sim.deliveries();
        assert_eq!(
            (d[0].attempts, d[0].succeeded, d[0].status),
            (2, true, Some(200))
        );

        w.rx.answer(&[500]);
        w.api
            .create("leads", &json!({"lastname": "Failed"}))
            .await
            .unwrap();
        w.rx.answer(&[504, 502]);
        w.api
            .create("leads", &json!({"lastname": "Failed twice"}))
            .await
            .unwrap();
        w.sim.webhooks_idle().await;
        let d = w.sim.deliveries();
        assert_eq!(d.len(), 3);
        assert_eq!(
            (d[1].attempts, d[1].succeeded, d[1].status),
            (1, false, Some(500))
        );
        assert_eq!(
            (d[2].attempts, d[2].succeeded, d[2].status),
            (2, false, Some(502))
        );
        assert_eq!(w.rx.hits().len(), 5);
        let failed = w.api.get(&format!("asyncoperations?$filter=statuscode eq 31 and _owningextensionid_value eq {step}&$select=name,message")).await.unwrap();
        assert_eq!(
            failed.body["value"].as_array().unwrap().len(),
            2,
            "{}",
            failed.text
        );
    }

    #[tokio::test]
    async fn deliveries_of_one_record_run_in_order_and_other_records_do_not_wait() {
        let w = world().await;
        let endpoint = w.endpoint(4, "k").await;
        w.step(&endpoint, "Update", "contact", 1, "").await;
        let a = w
            .api
            .create("contacts", &json!({"firstname": "A0"}))
            .await
            .unwrap();
        let b = w
            .api
            .create("contacts", &json!({"firstname": "B0"}))
            .await
            .unwrap();
        w.rx.script.lock().unwrap().push_back((200, 400));
        w.api
            .patch(&format!("contacts({a})"), &json!({"firstname": "A1"}))
            .await
            .unwrap();
        w.api
            .patch(&format!("contacts({a})"), &json!({"firstname": "A2"}))
            .await
            .unwrap();
        w.api
            .patch(&format!("contacts({b})"), &json!({"firstname": "B1"}))
            .await
            .unwrap();
        let hits = w.hits().await;
        let first_name = |h: &Hit| {
            attr(
                param(&h.body["InputParameters"], "Target").unwrap(),
                "firstname",
            )
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
        };
        let find = |n: &str| hits.iter().find(|h| first_name(h) == n).unwrap().at;
        let (a1, a2, b1) = (find("A1"), find("A2"), find("B1"));
        assert!(
            a2.duration_since(a1) >= Duration::from_millis(380),
            "A2 waited for A1 to finish"
        );
        assert!(
            b1 < a1 + Duration::from_millis(300),
            "B1 did not wait for A's queue"
        );
    }

    #[tokio::test]
    async fn a_slow_endpoint_times_out_as_a_failed_delivery() {
        let w = world_with(DataverseSimConfig {
            webhook_timeout: Duration::from_millis(200),
            ..Default::default()
        })
        .await;
        let endpoint = w.endpoint(4, "k").await;
        w.step(&endpoint, "Create", "lead", 1, "").await;
        w.rx.script.lock().unwrap().push_back((200, 1000));
        w.api
            .create("leads", &json!({"lastname": "Slow"}))
            .await
            .unwrap();
        w.sim.webhooks_idle().await;
        let d = w.sim.deliveries();
        assert!(!d[0].succeeded);
        assert_eq!(d[0].attempts, 1);
        assert!(
            d[0].error.as_deref().unwrap().contains("timeout"),
            "{:?}",
            d[0].error
        );
    }

    #[tokio::test]
    async fn a_body_over_256_kb_loses_parameters_and_images_and_says_so() {
        let w = world().await;
        let endpoint = w.endpoint(4, "k").await;
        let step = w
            .step(&endpoint, "Update", "contact", 1, "description")
            .await;
        w.image(&step, 1, "Post", "").await;
        let c = w
            .api
            .create("contacts", &json!({"lastname": "Big"}))
            .await
            .unwrap();
        let huge = "x".repeat(300 * 1024);
        assert_eq!(
            w.api
                .patch(&format!("contacts({c})"), &json!({"description": huge}))
                .await
                .unwrap()
                .status,
            204
        );
        assert_eq!(
            w.api
                .patch(&format!("contacts({c})"), &json!({"description": "small"}))
                .await
                .unwrap()
                .status,
            204
        );
        let hits = w.hits().await;
        assert_eq!(hits.len(), 2);
        let big = &hits[0];
        assert!(big.headers.get("x-ms-dynamics-msg-size-exceeded").is_some());
        assert!(big.raw.len() < 256 * 1024);
        for gone in [
            "InputParameters",
            "ParentContext",
            "PreEntityImages",
            "PostEntityImages",
        ] {
            assert!(big.body.get(gone).is_none(), "{gone} should be dropped");
        }
        assert_eq!(big.body["PrimaryEntityId"], c.as_str());
        assert_eq!(big.body["MessageName"], "Update");
        assert!(
            hits[1]
                .headers
                .get("x-ms-dynamics-msg-size-exceeded")
                .is_none()
        );
        assert!(param(&hits[1].body["InputParameters"], "Target").is_some());
        assert!(w.sim.deliveries()[0].size_exceeded);
    }

    #[tokio::test]
    async fn a_synchronous_step_is_delivered_before_the_answer_and_its_failure_rolls_the_write_back()
     {
        let w = world().await;
        let endpoint = w.endpoint(4, "k").await;
        w.step(&endpoint, "Update", "contact", 0, "").await;
        let c = w
            .api
            .create("contacts", &json!({"firstname": "Before"}))
            .await
            .unwrap();
        assert_eq!(
            w.api
                .patch(
                    &format!("contacts({c})"),
                    &json!({"firstname": "Delivered"})
                )
                .await
                .unwrap()
                .status,
            204
        );
        let hits = w.rx.hits();
        assert_eq!(hits.len(), 1, "delivered before the write was answered");
        assert_eq!(
            (
                hits[0].body["Mode"].clone(),
                hits[0].body["IsInTransaction"].clone()
            ),
            (json!(0), json!(true))
        );
        assert!(
            param(
                &hits[0].body["PostEntityImages"],
                "AsynchronousStepPrimaryName"
            )
            .is_none()
        );

        w.rx.answer(&[500]);
        let r = w
            .api
            .patch(
                &format!("contacts({c})"),
                &json!({"firstname": "Rolled back"}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(r.body["error"]["code"], "0x80040265");
        assert_eq!(w.sim.row("contacts", &c).unwrap()["firstname"], "Delivered");
    }

    #[tokio::test]
    async fn writes_in_a_batch_fire_webhooks_and_bypass_headers_and_disabled_steps_do_not() {
        let w = world().await;
        let endpoint = w.endpoint(4, "k").await;
        let step = w.step(&endpoint, "Create", "contact", 1, "").await;
        let body = "--batch_1\r\nContent-Type: multipart/mixed; boundary=changeset_1\r\n\r\n\
        --changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPOST contacts?tag=bulk HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"lastname\":\"B1\"}\r\n\
        --changeset_1\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 2\r\n\r\nPOST contacts HTTP/1.1\r\nContent-Type: application/json\r\n\r\n{\"lastname\":\"B2\"}\r\n\
        --changeset_1--\r\n--batch_1--\r\n";
        let r = w
            .api
            .send_raw(
                Method::POST,
                "$batch",
                &[],
                "multipart/mixed; boundary=batch_1",
                body.to_string(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        let hits = w.hits().await;
        assert_eq!(hits.len(), 2);
        assert_eq!(
            hits[0].body["CorrelationId"], hits[1].body["CorrelationId"],
            "one request, one correlation id"
        );
        assert_ne!(hits[0].body["OperationId"], hits[1].body["OperationId"]);
        assert_eq!(
            param(&hits[0].body["SharedVariables"], "tag").unwrap(),
            "bulk"
        );
        assert!(param(&hits[1].body["SharedVariables"], "tag").is_none());

        w.rx.clear();
        let r = w
            .api
            .send(
                Method::POST,
                "contacts",
                &[("MSCRM.BypassCustomPluginExecution", "true")],
                Some(&json!({"lastname": "Quiet"})),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(
            w.api
                .patch(
                    &format!("sdkmessageprocessingsteps({step})"),
                    &json!({"statecode": 1})
                )
                .await
                .unwrap()
                .status,
            204
        );
        w.api
            .create("contacts", &json!({"lastname": "Disabled"}))
            .await
            .unwrap();
        assert!(w.hits().await.is_empty());
    }

    #[tokio::test]
    async fn invalid_registrations_are_refused_with_a_reason() {
        let w = world().await;
        let bad_header = w
        .api
        .post("serviceendpoints", &json!({"name": "x", "contract": 8, "url": w.url, "authtype": 5, "authvalue": "not xml"}))
        .await
        .unwrap();
        assert_eq!(bad_header.status, 400);
        assert!(
            bad_header.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("authvalue")
        );
        let endpoint = w.endpoint(4, "k").await;
        let mid = schema::sdk_message_id("Update").unwrap();
        let fid = schema::sdk_message_filter_id("Update", "contact").unwrap();
        let step = |mode: i64, stage: i64, filtering: &str| {
            json!({
                "name": "s", "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint})"),
                "sdkmessageid@odata.bind": format!("/sdkmessages({mid})"), "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({fid})"),
                "stage": stage, "mode": mode, "filteringattributes": filtering,
            })
        };
        let r = w
            .api
            .post("sdkmessageprocessingsteps", &step(1, 20, "firstname"))
            .await
            .unwrap();
        assert_eq!(r.status, 400, "{}", r.text);
        let r = w
            .api
            .post(
                "sdkmessageprocessingsteps",
                &step(1, 40, "firstname,nosuchcolumn"),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("'nosuchcolumn'")
        );
        let other = schema::sdk_message_filter_id("Create", "contact").unwrap();
        let mut wrong = step(1, 40, "");
        wrong["sdkmessagefilterid@odata.bind"] = json!(format!("/sdkmessagefilters({other})"));
        assert_eq!(
            w.api
                .post("sdkmessageprocessingsteps", &wrong)
                .await
                .unwrap()
                .status,
            400
        );
        assert_eq!(
            w.api
                .post("sdkmessageprocessingsteps", &step(1, 40, "firstname"))
                .await
                .unwrap()
                .status,
            204
        );
        let read = w
            .api
            .get("serviceendpoints?$select=name,url")
            .await
            .unwrap();
        assert!(
            read.body["value"][0].get("authvalue").is_none(),
            "authvalue is write-only"
        );
    }
}
