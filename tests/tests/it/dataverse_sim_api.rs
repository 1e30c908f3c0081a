//! The Dataverse simulator's Web API: tokens, error bodies, reads with query options and
//! paging, navigation, conditional writes, status changes, list and campaign actions, cascades.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Test names start with `dataverse::` so that `cargo test -p sandbox dataverse` selects them.
mod dataverse {
    use reqwest::Method;
    use sandbox::dataverse::{self, DataverseSim, DataverseSimConfig, WebApi};
    use serde_json::{Map, Value, json};
    use std::collections::HashSet;

    async fn sim() -> DataverseSim {
        DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap()
    }

    const ANNOTATIONS: (&str, &str) = ("Prefer", "odata.include-annotations=\"*\"");

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    async fn token_request(sim: &DataverseSim, client_id: &str, secret: &str) -> reqwest::Response {
        let scope = format!("{}/.default", sim.resource());
        reqwest::Client::new()
            .post(sim.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope.as_str()),
            ])
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_token_is_issued_for_the_right_secret_and_refused_for_a_wrong_one() {
        let sim = sim().await;
        let ok = token_request(
            &sim,
            dataverse::CONNECTOR_CLIENT_ID,
            dataverse::CONNECTOR_CLIENT_SECRET,
        )
        .await;
        assert_eq!(ok.status(), 200);
        let body: Value = ok.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3599);
        assert_eq!(body["ext_expires_in"], 3599);
        assert!(body["access_token"].as_str().unwrap().split('.').count() == 3);

        let wrong = token_request(&sim, dataverse::CONNECTOR_CLIENT_ID, "not-the-secret").await;
        assert_eq!(wrong.status(), 401);
        let body: Value = wrong.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("AADSTS7000215: Invalid client secret")
        );
        assert_eq!(body["error_codes"], json!([7000215]));

        let unknown = token_request(&sim, "00000000-0000-0000-0000-00000000dead", "x").await;
        assert_eq!(unknown.status(), 400);
        let body: Value = unknown.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized_client");
    }

    #[tokio::test]
    async fn api_calls_without_a_valid_unexpired_token_are_refused() {
        let sim = sim().await;
        let http = reqwest::Client::new();
        let none = http
            .get(format!("{}WhoAmI", sim.api_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 401);
        assert!(
            none.headers()
                .get("WWW-Authenticate")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Bearer authorization_uri=")
        );
        let body: Value = none.json().await.unwrap();
        assert!(body["error"]["code"].is_string() && body["error"]["message"].is_string());

        let bogus = http
            .get(format!("{}WhoAmI", sim.api_url()))
            .bearer_auth("eyJ.bogus.token")
            .send()
            .await
            .unwrap();
        assert_eq!(bogus.status(), 401);

        let api = WebApi::connector(&sim).await.unwrap();
        let me = api.get("WhoAmI").await.unwrap();
        assert_eq!(me.status, 200);
        assert_eq!(me.body["UserId"], dataverse::CONNECTOR_USER_ID);
        assert_eq!(me.body["OrganizationId"], dataverse::ORGANIZATION_ID);
        assert_eq!(me.body["BusinessUnitId"], dataverse::BUSINESS_UNIT_ID);
        assert!(
            me.body["@odata.context"]
                .as_str()
                .unwrap()
                .ends_with("$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse")
        );

        sim.expire_tokens();
        let expired = api.get("WhoAmI").await.unwrap();
        assert_eq!(expired.status, 401);
        assert!(
            expired.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expired")
        );
    }

    #[tokio::test]
    async fn a_create_answers_204_with_the_entity_id_and_reads_back_with_lookups_and_annotations() {
        let sim = sim().await;
        let api = WebApi::admin(&sim).await.unwrap();
        let account = api
            .create("accounts", &json!({"name": "Contoso"}))
            .await
            .unwrap();
        let r = api
            .post(
                "contacts",
                &json!({
                    "firstname": "Ada",
                    "lastname": "Lovelace",
                    "emailaddress1": "ada@example.com",
                    "parentcustomerid_account@odata.bind": format!("/accounts({account})"),
                }),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        assert!(r.text.is_empty());
        let id = r.entity_id().unwrap();
        assert_eq!(
            r.header("OData-EntityId").unwrap(),
            format!("{}contacts({id})", sim.api_url())
        );

        let plain = api
            .get(&format!(
                "contacts({id})?$select=fullname,emailaddress1,_parentcustomerid_value"
            ))
            .await
            .unwrap();
        assert_eq!(plain.status, 200);
        let b = &plain.body;
        assert_eq!(
            b["@odata.context"],
            format!(
                "{}$metadata#contacts(fullname,emailaddress1,_parentcustomerid_value,contactid)/$entity",
                sim.api_url()
            )
        );
        assert!(b["@odata.etag"].as_str().unwrap().starts_with("W/\""));
        assert_eq!(b["fullname"], "Ada Lovelace");
        assert_eq!(b["contactid"], id.as_str());
        assert_eq!(b["_parentcustomerid_value"], account.as_str());
        assert!(
            b.get("_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname")
                .is_none()
        );
        assert!(
            b.get("lastname").is_none(),
            "only the selected columns come back"
        );

        let annotated = api
            .send(
                Method::GET,
                &format!(
                    "contacts({id})?$select=statecode,_parentcustomerid_value,_createdby_value"
                ),
                &[ANNOTATIONS],
                None,
            )
            .await
            .unwrap();
        let b = &annotated.body;
        assert_eq!(
            b["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
            "account"
        );
        assert_eq!(
            b["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"],
            "Contoso"
        );
        assert_eq!(
            b["_parentcustomerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"],
            "parentcustomerid_account"
        );
        assert_eq!(b["statecode"], 0);
        assert_eq!(
            b["statecode@OData.Community.Display.V1.FormattedValue"],
            "Active"
        );
        assert_eq!(b["_createdby_value"], dataverse::ADMIN_USER_ID);

        let all = api.get(&format!("contacts({id})")).await.unwrap();
        assert_eq!(all.body["statuscode"], 1);
        assert_eq!(all.body["donotbulkemail"], false);
        assert_eq!(all.body["lastname"], "Lovelace");
        assert!(
            all.body["jobtitle"].is_null(),
            "unset columns come back as null"
        );

        let expanded = api
            .get(&format!(
                "contacts({id})?$select=fullname&$expand=parentcustomerid_account($select=name)"
            ))
            .await
            .unwrap();
        assert_eq!(expanded.body["parentcustomerid_account"]["name"], "Contoso");

        let rep = api
            .send(
                Method::POST,
                "contacts?$select=firstname",
                &[("Prefer", "return=representation")],
                Some(&json!({"firstname": "Grace"})),
            )
            .await
            .unwrap();
        assert_eq!(rep.status, 201);
        assert_eq!(rep.body["firstname"], "Grace");
        assert!(rep.body["contactid"].is_string());
        assert_eq!(
            rep.header("Preference-Applied"),
            Some("return=representation")
        );
    }

    #[tokio::test]
    async fn errors_have_the_dataverse_shape_and_name_what_is_wrong() {
        let sim = sim().await;
        let api = WebApi::admin(&sim).await.unwrap();
        let assert_error = |r: &dataverse::Reply, status: u16, code: &str, needle: &str| {
            assert_eq!(r.status, status, "{}", r.text);
            let e = r.body["error"].as_object().unwrap();
            assert_eq!(e.len(), 2, "error has exactly code and message: {}", r.text);
            assert_eq!(e["code"], code);
            assert!(
                e["message"].as_str().unwrap().contains(needle),
                "{}",
                r.text
            );
        };
        assert_error(
            &api.post("contacts", &json!({"nosuchcolumn": 1}))
                .await
                .unwrap(),
            400,
            "0x80048d19",
            "'nosuchcolumn'",
        );
        assert_error(
            &api.get("contacts?$select=fullname,nosuchcolumn")
                .await
                .unwrap(),
            400,
            "0x80060888",
            "'nosuchcolumn'",
        );
        assert_error(
            &api.get("contacts?$filter=nosuchcolumn eq 1").await.unwrap(),
            400,
            "0x80060888",
            "'nosuchcolumn'",
        );
        assert_error(
            &api.get("contacts?$filter=statecode eq 'active'")
                .await
                .unwrap(),
            400,
            "0x80060888",
            "incompatible types",
        );
        let missing = "00000000-0000-0000-0000-0000000000aa";
        assert_error(
            &api.get(&format!("contacts({missing})")).await.unwrap(),
            404,
            "0x80040217",
            missing,
        );
        assert_error(
            &api.get("nosuchset").await.unwrap(),
            404,
            "0x8006088a",
            "'nosuchset'",
        );
        assert_error(
            &api.post("contacts", &json!({"firstname": "x".repeat(51)}))
                .await
                .unwrap(),
            400,
            "0x80044331",
            "'firstname'",
        );
        assert_error(
            &api.post("lists", &json!({"listname": "L", "createdfromcode": 3}))
                .await
                .unwrap(),
            400,
            "0x8004431a",
            "createdfromcode",
        );
        assert_error(
            &api.post("contacts", &json!({"parentcustomerid": missing}))
                .await
                .unwrap(),
            400,
            "0x80048d19",
            "'parentcustomerid'",
        );
        assert_error(
            &api.post(
                "contacts",
                &json!({"parentcustomerid_account@odata.bind": format!("/accounts({missing})")}),
            )
            .await
            .unwrap(),
            404,
            "0x80040217",
            missing,
        );
        assert_error(
            &api.send(Method::PUT, "contacts", &[], Some(&json!({})))
                .await
                .unwrap(),
            405,
            "0x80060888",
            "PUT",
        );
        assert_error(
            &api.get("contacts?$skip=10").await.unwrap(),
            400,
            "0x80060888",
            "$skip",
        );
    }

    fn contact(last: &str, state: i64) -> Map<String, Value> {
        obj(
            json!({"lastname": last, "emailaddress1": format!("{last}@example.com"), "statecode": state}),
        )
    }

    #[tokio::test]
    async fn filters_orders_top_and_count_select_the_right_rows() {
        let sim = sim().await;
        let rows = (0..30)
            .map(|i| contact(&format!("L{i:02}"), i % 2))
            .collect();
        sim.seed("contacts", rows).unwrap();
        let api = WebApi::connector(&sim).await.unwrap();

        let r = api
        .get("contacts?$select=lastname&$filter=statecode eq 1 and (startswith(lastname,'l1') or lastname eq 'L21')&$orderby=lastname")
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        let names: Vec<&str> = r.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["lastname"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["L11", "L13", "L15", "L17", "L19", "L21"]);

        let r = api
            .get("contacts?$select=lastname&$orderby=lastname desc&$top=3&$count=true")
            .await
            .unwrap();
        let names: Vec<&str> = r.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["lastname"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["L29", "L28", "L27"]);
        assert_eq!(r.body["@odata.count"], 30);
        assert!(r.body.get("@odata.nextLink").is_none());

        let r = api.get("contacts?$filter=not contains(emailaddress1,'L0') and emailaddress1 ne null&$count=true&$select=contactid").await.unwrap();
        assert_eq!(r.body["@odata.count"], 20);
    }

    #[tokio::test]
    async fn paging_with_next_links_over_12000_rows_yields_every_row_once_despite_concurrent_writes()
     {
        let sim = sim().await;
        let rows: Vec<_> = (0..12_000)
            .map(|i| contact(&format!("P{i:05}"), 0))
            .collect();
        let seeded: HashSet<String> = sim.seed("contacts", rows).unwrap().into_iter().collect();
        let api = WebApi::connector(&sim).await.unwrap();
        let admin = WebApi::admin(&sim).await.unwrap();
        let prefer = ("Prefer", "odata.maxpagesize=5000");

        let mut seen: Vec<String> = Vec::new();
        let mut next = "contacts?$select=contactid,lastname".to_string();
        let mut pages = Vec::new();
        let mut deleted = HashSet::new();
        loop {
            let r = api.send(Method::GET, &next, &[prefer], None).await.unwrap();
            assert_eq!(r.status, 200, "{}", r.text);
            assert_eq!(
                r.header("Preference-Applied"),
                Some("odata.maxpagesize=5000")
            );
            let values = r.body["value"].as_array().unwrap();
            pages.push(values.len());
            seen.extend(
                values
                    .iter()
                    .map(|v| v["contactid"].as_str().unwrap().to_string()),
            );
            if pages.len() == 1 {
                // Writes between pages: new rows, and deletes of rows not read yet.
                for i in 0..20 {
                    admin
                        .create("contacts", &json!({"lastname": format!("new{i}")}))
                        .await
                        .unwrap();
                }
                let unread: Vec<String> = seeded
                    .iter()
                    .filter(|id| !seen.contains(id))
                    .take(5)
                    .cloned()
                    .collect();
                for id in unread {
                    assert_eq!(
                        admin
                            .delete(&format!("contacts({id})"))
                            .await
                            .unwrap()
                            .status,
                        204
                    );
                    deleted.insert(id);
                }
            }
            match r.body.get("@odata.nextLink").and_then(|v| v.as_str()) {
                Some(link) => {
                    assert!(link.starts_with(&sim.api_url()), "{link}");
                    if pages.len() == 1 {
                        assert!(link.contains("$skiptoken=%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%253ccookie%2520page%253d%25221%2522"), "{link}");
                    }
                    next = link.to_string();
                }
                None => break,
            }
        }
        assert_eq!(pages[0], 5000);
        assert_eq!(pages[1], 5000);
        assert!(pages.len() == 3, "{pages:?}");
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "no row comes twice");
        for id in seeded.difference(&deleted) {
            assert!(unique.contains(id), "row {id} was never served");
        }
        for id in &deleted {
            assert!(!unique.contains(id));
        }
        assert_eq!(sim.stats().pages, 3);
    }

    #[tokio::test]
    async fn navigation_properties_return_list_members_and_the_lists_of_campaigns() {
        let sim = sim().await;
        let api = WebApi::admin(&sim).await.unwrap();
        let a = api
            .create("contacts", &json!({"firstname": "A", "lastname": "One"}))
            .await
            .unwrap();
        let b = api
            .create("contacts", &json!({"firstname": "B", "lastname": "Two"}))
            .await
            .unwrap();
        let _c = api
            .create("contacts", &json!({"firstname": "C", "lastname": "Three"}))
            .await
            .unwrap();
        let list = api
            .create(
                "lists",
                &json!({"listname": "Newsletter", "createdfromcode": 2}),
            )
            .await
            .unwrap();
        for m in [&a, &b] {
            let r = api
                .post(
                    &format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList"),
                    &json!({"EntityId": m}),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.text);
        }
        let members = api
            .get(&format!(
                "lists({list})/listcontact_association?$select=fullname&$orderby=fullname"
            ))
            .await
            .unwrap();
        assert_eq!(members.status, 200, "{}", members.text);
        let names: Vec<&str> = members.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["fullname"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["A One", "B Two"]);
        let filtered = api
            .get(&format!(
                "lists({list})/listcontact_association?$select=fullname&$filter=firstname eq 'B'"
            ))
            .await
            .unwrap();
        assert_eq!(filtered.body["value"].as_array().unwrap().len(), 1);
        let leads = api
            .get(&format!("lists({list})/listlead_association"))
            .await
            .unwrap();
        assert_eq!(leads.body["value"], json!([]));

        let campaign = api
            .create("campaigns", &json!({"name": "Spring"}))
            .await
            .unwrap();
        let r = api
            .post(
                &format!("campaigns({campaign})/Microsoft.Dynamics.CRM.AddItemCampaign"),
                &json!({"EntityId": list, "EntityName": "list"}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.body["CampaignItemId"].is_string());
        let lists = api
        .get(&format!(
            "campaigns({campaign})/campaignlist_association?$select=listname,type,createdfromcode"
        ))
        .await
        .unwrap();
        assert_eq!(lists.body["value"][0]["listname"], "Newsletter");
        assert_eq!(lists.body["value"][0]["createdfromcode"], 2);

        let activity = api
        .create(
            "campaignactivities",
            &json!({"subject": "Mail 1", "regardingobjectid_campaign_campaignactivity@odata.bind": format!("/campaigns({campaign})")}),
        )
        .await
        .unwrap();
        let r = api
            .post(
                &format!(
                    "campaignactivities({activity})/Microsoft.Dynamics.CRM.AddItemCampaignActivity"
                ),
                &json!({"ItemId": list, "EntityName": "list"}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        let lists = api
            .get(&format!(
                "campaignactivities({activity})/campaignactivitylist_association?$select=listname"
            ))
            .await
            .unwrap();
        assert_eq!(lists.body["value"][0]["listname"], "Newsletter");
        let assoc = api
            .post(
                &format!("lists({list})/listcontact_association/$ref"),
                &json!({"@odata.id": format!("contacts({a})")}),
            )
            .await
            .unwrap();
        assert_eq!(assoc.status, 400);
        assert_eq!(
            assoc.body["error"]["message"],
            "Associate is not supported for ListMember"
        );
    }

    #[tokio::test]
    async fn upserts_and_conditional_writes_follow_their_headers() {
        let sim = sim().await;
        let api = WebApi::admin(&sim).await.unwrap();
        let id = "3f1d2c9e-0000-4000-8000-000000000123";
        let created = api
            .patch(&format!("contacts({id})"), &json!({"firstname": "Up"}))
            .await
            .unwrap();
        assert_eq!(created.status, 204);
        assert_eq!(sim.row("contacts", id).unwrap()["firstname"], "Up");

        let missing = "3f1d2c9e-0000-4000-8000-000000000999";
        let r = api
            .send(
                Method::PATCH,
                &format!("contacts({missing})"),
                &[("If-Match", "*")],
                Some(&json!({"firstname": "x"})),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 404);
        assert!(sim.row("contacts", missing).is_none());

        let dup = api
            .post("contacts", &json!({"contactid": id, "firstname": "Dup"}))
            .await
            .unwrap();
        assert_eq!(dup.status, 412);
        assert_eq!(
            dup.body,
            json!({"error": {"code": "0x80040237", "message": "A record with matching key values already exists."}})
        );

        let r = api
            .send(
                Method::PATCH,
                &format!("contacts({id})"),
                &[("If-None-Match", "*")],
                Some(&json!({"firstname": "x"})),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 412);
        let r = api
            .send(
                Method::PATCH,
                &format!("contacts({id})"),
                &[("If-Match", "W/\"1\"")],
                Some(&json!({"firstname": "x"})),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 412);
        let etag = api
            .get(&format!("contacts({id})?$select=firstname"))
            .await
            .unwrap()
            .body["@odata.etag"]
            .as_str()
            .unwrap()
            .to_string();
        let r = api
            .send(
                Method::PATCH,
                &format!("contacts({id})"),
                &[("If-Match", &etag), ("If-None-Match", "null")],
                Some(&json!({"firstname": "Ok"})),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 204, "{}", r.text);
        let rep = api
            .send(
                Method::PATCH,
                &format!("contacts({id})?$select=firstname"),
                &[("Prefer", "return=representation")],
                Some(&json!({"lastname": "Rep"})),
            )
            .await
            .unwrap();
        assert_eq!(rep.status, 200);
        assert_eq!(rep.body["firstname"], "Ok");
        assert_eq!(sim.row("contacts", id).unwrap()["fullname"], "Ok Rep");

        assert_eq!(
            api.delete(&format!("contacts({id})")).await.unwrap().status,
            204
        );
        assert_eq!(
            api.delete(&format!("contacts({id})")).await.unwrap().status,
            404
        );
    }

    #[tokio::test]
    async fn status_changes_keep_state_and_status_consistent() {
        let sim = sim().await;
        let api = WebApi::admin(&sim).await.unwrap();
        let c = api
            .create("contacts", &json!({"lastname": "S"}))
            .await
            .unwrap();
        assert_eq!(
            api.patch(&format!("contacts({c})"), &json!({"statecode": 1}))
                .await
                .unwrap()
                .status,
            204
        );
        let row = sim.row("contacts", &c).unwrap();
        assert_eq!(
            (row["statecode"].clone(), row["statuscode"].clone()),
            (json!(1), json!(2))
        );

        let l = api
            .create(
                "leads",
                &json!({"lastname": "L", "companyname": "Fabrikam"}),
            )
            .await
            .unwrap();
        assert_eq!(
            api.patch(&format!("leads({l})"), &json!({"statuscode": 6}))
                .await
                .unwrap()
                .status,
            204
        );
        let row = sim.row("leads", &l).unwrap();
        assert_eq!(
            (row["statecode"].clone(), row["statuscode"].clone()),
            (json!(2), json!(6))
        );
        let bad = api
            .patch(
                &format!("leads({l})"),
                &json!({"statecode": 0, "statuscode": 6}),
            )
            .await
            .unwrap();
        assert_eq!(bad.status, 400, "{}", bad.text);
    }

    #[tokio::test]
    async fn list_actions_maintain_members_and_refuse_wrong_types_and_dynamic_lists() {
        let sim = sim().await;
        let api = WebApi::admin(&sim).await.unwrap();
        let contacts: Vec<String> = {
            let mut v = Vec::new();
            for i in 0..4 {
                v.push(
                    api.create("contacts", &json!({"lastname": format!("M{i}")}))
                        .await
                        .unwrap(),
                );
            }
            v
        };
        let lead = api
            .create("leads", &json!({"lastname": "Lead"}))
            .await
            .unwrap();
        let list = api
            .create(
                "lists",
                &json!({"listname": "Static", "createdfromcode": 2}),
            )
            .await
            .unwrap();
        let add = |m: &str| {
            let api = api.clone();
            let path = format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList");
            let body = json!({"EntityId": m});
            async move { api.post(&path, &body).await.unwrap() }
        };
        let first = add(&contacts[0]).await;
        assert_eq!(first.status, 200);
        assert_eq!(
            first.body["@odata.context"],
            format!(
                "{}$metadata#Microsoft.Dynamics.CRM.AddMemberListResponse",
                sim.api_url()
            )
        );
        let again = add(&contacts[0]).await;
        assert_eq!(
            again.body["Id"], first.body["Id"],
            "adding a member twice is a no-op"
        );
        assert_eq!(sim.rows("listmembers").len(), 1);
        let wrong = add(&lead).await;
        assert_eq!(wrong.status, 400, "{}", wrong.text);

        let many = json!({
            "List": {"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list},
            "Members": contacts.iter().map(|c| json!({"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": c})).collect::<Vec<_>>(),
        });
        let r = api.post("AddListMembersList", &many).await.unwrap();
        assert_eq!(r.status, 204, "{}", r.text);
        assert_eq!(sim.rows("listmembers").len(), 4);
        assert_eq!(sim.row("lists", &list).unwrap()["membercount"], 4);

        let mixed = json!({
            "List": {"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list},
            "Members": [{"@odata.type": "Microsoft.Dynamics.CRM.lead", "leadid": lead}],
        });
        assert_eq!(
            api.post("AddListMembersList", &mixed).await.unwrap().status,
            400
        );
        assert_eq!(sim.rows("listmembers").len(), 4);

        let r = api
            .post(
                &format!("lists({list})/Microsoft.Dynamics.CRM.RemoveMemberList"),
                &json!({"EntityId": contacts[1]}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(sim.rows("listmembers").len(), 3);
        assert_eq!(sim.row("lists", &list).unwrap()["membercount"], 3);

        let dynamic = api
        .create("lists", &json!({"listname": "Dynamic", "createdfromcode": 2, "type": true, "query": "<fetch><entity name=\"contact\"/></fetch>"}))
        .await
        .unwrap();
        let r = api
            .post(
                &format!("lists({dynamic})/Microsoft.Dynamics.CRM.AddMemberList"),
                &json!({"EntityId": contacts[0]}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("dynamic")
        );
        let r = api
            .post(
                "AddListMembersList",
                &json!({"List": {"listid": dynamic}, "Members": [{"contactid": contacts[0]}]}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(
            api.patch(&format!("lists({dynamic})"), &json!({"type": false}))
                .await
                .unwrap()
                .status,
            204
        );
        assert_eq!(
            sim.row("lists", &dynamic).unwrap()["type"],
            true,
            "type is not updatable"
        );
    }

    #[tokio::test]
    async fn deleting_members_lists_and_campaigns_cascades_like_dataverse() {
        let sim = sim().await;
        let api = WebApi::admin(&sim).await.unwrap();
        let c = api
            .create("contacts", &json!({"lastname": "Gone"}))
            .await
            .unwrap();
        let keep = api
            .create("contacts", &json!({"lastname": "Kept"}))
            .await
            .unwrap();
        let account = api
            .create(
                "accounts",
                &json!({"name": "A", "primarycontactid@odata.bind": format!("/contacts({c})")}),
            )
            .await
            .unwrap();
        let l1 = api
            .create("lists", &json!({"listname": "L1", "createdfromcode": 2}))
            .await
            .unwrap();
        let l2 = api
            .create("lists", &json!({"listname": "L2", "createdfromcode": 2}))
            .await
            .unwrap();
        for l in [&l1, &l2] {
            for m in [&c, &keep] {
                assert_eq!(
                    api.post(
                        &format!("lists({l})/Microsoft.Dynamics.CRM.AddMemberList"),
                        &json!({"EntityId": m})
                    )
                    .await
                    .unwrap()
                    .status,
                    200
                );
            }
        }
        assert_eq!(
            api.delete(&format!("contacts({c})")).await.unwrap().status,
            204
        );
        assert_eq!(sim.rows("listmembers").len(), 2);
        assert_eq!(sim.row("lists", &l1).unwrap()["membercount"], 1);
        assert!(
            sim.row("accounts", &account)
                .unwrap()
                .get("_primarycontactid_value")
                .is_none()
        );

        let campaign = api
            .create("campaigns", &json!({"name": "C"}))
            .await
            .unwrap();
        let activity = api
        .create("campaignactivities", &json!({"subject": "S", "regardingobjectid_campaign_campaignactivity@odata.bind": format!("/campaigns({campaign})")}))
        .await
        .unwrap();
        api.post(
            &format!("campaigns({campaign})/Microsoft.Dynamics.CRM.AddItemCampaign"),
            &json!({"EntityId": l1, "EntityName": "list"}),
        )
        .await
        .unwrap();
        api.post(
            &format!(
                "campaignactivities({activity})/Microsoft.Dynamics.CRM.AddItemCampaignActivity"
            ),
            &json!({"ItemId": l1, "EntityName": "list"}),
        )
        .await
        .unwrap();
        assert_eq!(sim.rows("campaignitems").len(), 1);
        assert_eq!(sim.rows("campaignactivityitems").len(), 1);
        assert_eq!(
            api.delete(&format!("lists({l1})")).await.unwrap().status,
            204
        );
        assert!(sim.rows("campaignitems").is_empty());
        assert!(sim.rows("campaignactivityitems").is_empty());
        assert_eq!(sim.rows("listmembers").len(), 1, "only l2's member is left");

        assert_eq!(
            api.delete(&format!("campaigns({campaign})"))
                .await
                .unwrap()
                .status,
            204
        );
        assert!(
            sim.row("campaignactivities", &activity).is_none(),
            "a campaign's activities go with it"
        );
    }
}
