//! The connector's Dataverse client against the Dataverse simulator: every client operation end
//! to end, checked on the simulator's side (rows, request statistics), and a fault run in which
//! 20 % of requests are throttled, fail, come late or lose their connection before or after
//! the simulator applied them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `dataverse` module so that `cargo test -p sandbox dataverse` selects these tests.
mod dataverse {
    use reqwest::Method;
    use sandbox::dataverse::{
        CONNECTOR_CLIENT_ID, CONNECTOR_CLIENT_SECRET, CONNECTOR_USER_ID, DataverseSim,
        DataverseSimConfig, WebApi,
    };
    use serde_json::{Map, Value, json};
    use shared::adapters::dataverse::client::{
        BatchRequest, DataverseClient, DataverseConfig, DataverseError, Query, filter,
    };
    use shared::adapters::http::RetryPolicy;
    use shared::domain::recipient::RecipientKind;
    use shared::secret::Secret;
    use std::collections::{BTreeSet, HashSet};
    use url::Url;

    /// What `shared::adapters::dataverse::schema::LOOKUP_ANNOTATIONS` asks for.
    const LOOKUP_ANNOTATIONS: &str =
        "OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname";

    async fn sim() -> DataverseSim {
        DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap()
    }

    /// The client as the connector configures it, talking to `sim`.
    fn client_with_page_size(sim: &DataverseSim, max_page_size: u32) -> DataverseClient {
        let mut config = DataverseConfig::new(
            Url::parse(&sim.api_url()).unwrap(),
            Url::parse(&sim.token_url()).unwrap(),
            CONNECTOR_CLIENT_ID,
            Secret::new(CONNECTOR_CLIENT_SECRET),
            format!("{}/.default", sim.resource()),
        );
        config.retry = RetryPolicy::fast();
        config.max_page_size = max_page_size;
        DataverseClient::new(config).unwrap()
    }

    fn client(sim: &DataverseSim) -> DataverseClient {
        client_with_page_size(sim, 5000)
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    /// Seeds `n` contacts `first{i}` / `last{i}` / `c{i}@example.com`; returns their ids.
    fn seed_contacts(sim: &DataverseSim, n: usize, last: &str) -> Vec<String> {
        let rows = (0..n)
            .map(|i| {
                object(json!({
                    "firstname": format!("first{i:05}"),
                    "lastname": last,
                    "emailaddress1": format!("c{i:05}.{last}@example.com"),
                }))
            })
            .collect();
        sim.seed("contacts", rows).unwrap()
    }

    /// Every row of every page, with the number of pages read.
    async fn all_pages(
        mut pages: shared::adapters::dataverse::client::Pages<Value>,
    ) -> (Vec<Value>, usize) {
        let mut rows = Vec::new();
        let mut count = 0;
        while let Some(page) = pages.next_page().await.unwrap() {
            count += 1;
            rows.extend(page);
        }
        (rows, count)
    }

    async fn all_fetch_pages(
        mut pages: shared::adapters::dataverse::client::FetchPages<Value>,
    ) -> (Vec<Value>, usize) {
        let mut rows = Vec::new();
        let mut count = 0;
        while let Some(page) = pages.next_page().await.unwrap() {
            count += 1;
            rows.extend(page);
        }
        (rows, count)
    }

    fn ids_of(rows: &[Value], key: &str) -> Vec<String> {
        rows.iter()
            .map(|r| r[key].as_str().unwrap().to_string())
            .collect()
    }

    fn lowercase(ids: &[String]) -> BTreeSet<String> {
        ids.iter().map(|id| id.to_ascii_lowercase()).collect()
    }

    /// Creates a list as the admin would in the CRM.
    async fn admin_list(admin: &WebApi, name: &str, body: Value) -> String {
        let mut body = object(body);
        body.insert("listname".into(), json!(name));
        admin.create("lists", &Value::Object(body)).await.unwrap()
    }

    #[tokio::test]
    async fn one_token_serves_many_calls() {
        let sim = sim().await;
        let ids = seed_contacts(&sim, 5, "token");
        let client = client(&sim);
        for id in &ids {
            let row: Option<Value> = client
                .retrieve("contacts", id, &["firstname"])
                .await
                .unwrap();
            assert!(row.is_some());
        }
        client.whoami().await.unwrap();
        client
            .update("contacts", &ids[0], &json!({"jobtitle": "Tester"}))
            .await
            .unwrap();
        // A clone shares the token cache.
        client.clone().whoami().await.unwrap();
        let stats = sim.stats();
        assert_eq!(stats.tokens, 1, "{stats:?}");
        assert_eq!(stats.count("GET contacts"), 5);
        assert_eq!(stats.count("GET WhoAmI"), 2);
    }

    #[tokio::test]
    async fn a_query_pages_over_12000_contacts_in_three_pages_and_returns_every_row_once() {
        let sim = sim().await;
        let seeded = seed_contacts(&sim, 12_000, "paged");
        seed_contacts(&sim, 10, "other");
        let client = client(&sim);
        sim.reset_stats();
        let query = Query::new()
            .select(["contactid", "emailaddress1", "firstname"])
            .filter(format!(
                "lastname eq {} and statecode eq 0",
                filter::string_literal("paged")
            ))
            .orderby("firstname desc");
        let (rows, pages) = all_pages(client.query("contacts", &query)).await;
        assert_eq!(pages, 3);
        assert_eq!(rows.len(), 12_000);
        let ids = ids_of(&rows, "contactid");
        assert_eq!(
            lowercase(&ids),
            lowercase(&seeded),
            "every row exactly once"
        );
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 12_000);
        // Ordered as asked, across page boundaries.
        let names: Vec<&str> = rows
            .iter()
            .map(|r| r["firstname"].as_str().unwrap())
            .collect();
        assert!(names.windows(2).all(|w| w[0] > w[1]));
        assert_eq!(names[0], "first11999");
        // Only the selected columns (and the etag) came back.
        let keys: BTreeSet<&str> = rows[0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["@odata.etag", "contactid", "emailaddress1", "firstname"])
        );
        let stats = sim.stats();
        assert_eq!(stats.count("GET contacts"), 3, "{stats:?}");
        assert_eq!(stats.pages, 3);

        // With $top no page size is sent, and Dataverse answers one short page.
        let top = Query::new()
            .select(["contactid"])
            .filter("lastname eq 'paged'")
            .top(7);
        let (rows, pages) = all_pages(client.query("contacts", &top)).await;
        assert_eq!((rows.len(), pages), (7, 1));
    }

    #[tokio::test]
    async fn static_list_members_and_related_rows_are_read_through_the_navigation_properties() {
        let sim = sim().await;
        let admin = WebApi::admin(&sim).await.unwrap();
        let contacts = seed_contacts(&sim, 7, "member");
        let outsider = seed_contacts(&sim, 1, "outsider");
        let list = admin_list(&admin, "Static", json!({"createdfromcode": 2})).await;
        // The admin fills the list with the list actions, as the CRM does.
        for id in &contacts[..2] {
            let r = admin
                .post(
                    &format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList"),
                    &json!({"EntityId": id}),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.text);
        }
        let members: Vec<Value> = contacts[2..]
            .iter()
            .map(|id| json!({"@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": id}))
            .collect();
        let r = admin
            .post(
                "AddListMembersList",
                &json!({
                    "List": {"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list},
                    "Members": members,
                }),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 204, "{}", r.text);

        let client = client_with_page_size(&sim, 3);
        sim.reset_stats();
        let query = Query::new().select(["contactid", "emailaddress1", "lastname"]);
        let (rows, pages) =
            all_pages(client.static_list_members(&list, RecipientKind::Contact, &query)).await;
        assert_eq!(lowercase(&ids_of(&rows, "contactid")), lowercase(&contacts));
        assert_eq!(rows.len(), 7);
        assert_eq!(pages, 3, "7 members in pages of 3");
        assert!(!ids_of(&rows, "contactid").contains(&outsider[0]));
        assert_eq!(
            sim.stats().count("GET lists/listcontact_association"),
            3,
            "{:?}",
            sim.stats()
        );

        // The same rows through `related`, with a filter.
        let query = Query::new()
            .select(["contactid", "firstname"])
            .filter("firstname eq 'first00003'");
        let (rows, _) =
            all_pages(client.related("lists", &list, "listcontact_association", &query)).await;
        assert_eq!(ids_of(&rows, "contactid"), vec![contacts[3].clone()]);

        // A campaign's lists.
        let campaign = admin
            .create("campaigns", &json!({"name": "Spring"}))
            .await
            .unwrap();
        client
            .execute_action(
                &format!("campaigns({campaign})/Microsoft.Dynamics.CRM.AddItemCampaign"),
                &json!({"EntityId": list, "EntityName": "list"}),
            )
            .await
            .unwrap();
        let (rows, _) = all_pages(client.related(
            "campaigns",
            &campaign,
            "campaignlist_association",
            &Query::new().select(["listid", "listname", "type", "createdfromcode"]),
        ))
        .await;
        assert_eq!(ids_of(&rows, "listid"), vec![list.clone()]);
        assert_eq!(rows[0]["createdfromcode"], json!(2));
        assert_eq!(rows[0]["type"], json!(false));
        let raw = client
            .get_json(&format!(
                "campaigns({campaign})/campaignlist_association?$select=listname"
            ))
            .await
            .unwrap();
        assert_eq!(raw["value"][0]["listname"], "Static");

        // Lead lists read through their own navigation property.
        let lead = sim
            .seed(
                "leads",
                vec![object(json!({"lastname": "Lead", "subject": "x"}))],
            )
            .unwrap()
            .remove(0);
        let leads = admin_list(&admin, "Leads", json!({"createdfromcode": 4})).await;
        let r = admin
            .post(
                &format!("lists({leads})/Microsoft.Dynamics.CRM.AddMemberList"),
                &json!({"EntityId": lead}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text);
        let (rows, _) = all_pages(client.static_list_members(
            &leads,
            RecipientKind::Lead,
            &Query::new().select(["leadid", "lastname"]),
        ))
        .await;
        assert_eq!(ids_of(&rows, "leadid"), vec![lead]);
    }

    fn contact_fetch(last: &str, order: &str) -> String {
        format!(
            r#"<fetch><entity name="contact"><attribute name="contactid"/><attribute name="firstname"/><filter><condition attribute="lastname" operator="eq" value="{last}"/></filter><order attribute="{order}"/></entity></fetch>"#
        )
    }

    #[tokio::test]
    async fn fetch_xml_pages_with_paging_cookies_over_several_pages() {
        let sim = sim().await;
        let seeded = seed_contacts(&sim, 23, "fetched");
        seed_contacts(&sim, 4, "not fetched");
        let client = client_with_page_size(&sim, 5);
        sim.reset_stats();
        let mut pages =
            client.fetch_xml::<Value>("contacts", &contact_fetch("fetched", "firstname"));
        let mut rows = Vec::new();
        let mut sizes = Vec::new();
        while let Some(page) = pages.next_page().await.unwrap() {
            sizes.push(page.len());
            rows.extend(page);
        }
        assert_eq!(sizes, vec![5, 5, 5, 5, 3]);
        assert_eq!(pages.requests(), 5);
        let ids = ids_of(&rows, "contactid");
        assert_eq!(lowercase(&ids), lowercase(&seeded));
        assert_eq!(ids.len(), 23, "no row twice");
        let names: Vec<&str> = rows
            .iter()
            .map(|r| r["firstname"].as_str().unwrap())
            .collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        let stats = sim.stats();
        assert_eq!(stats.count("GET contacts"), 5, "{stats:?}");
        assert_eq!(stats.pages, 5);

        // A query with `top` is not paged: one answer.
        let top = contact_fetch("fetched", "firstname").replace("<fetch>", "<fetch top=\"8\">");
        let (rows, pages) = all_fetch_pages(client.fetch_xml("contacts", &top)).await;
        assert_eq!((rows.len(), pages), (8, 1));
    }

    #[tokio::test]
    async fn a_dynamic_lists_fetch_xml_selects_its_members() {
        let sim = sim().await;
        let admin = WebApi::admin(&sim).await.unwrap();
        let berlin: Vec<String> = (0..12)
            .map(|i| {
                object(json!({
                    "firstname": format!("B{i:02}"),
                    "lastname": "Dyn",
                    "address1_city": "Berlin",
                    "emailaddress1": format!("b{i}@example.com"),
                }))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|row| sim.seed("contacts", vec![row]).unwrap().remove(0))
            .collect();
        let elsewhere = sim
            .seed(
                "contacts",
                vec![object(
                    json!({"firstname": "H", "lastname": "Dyn", "address1_city": "Hamburg"}),
                )],
            )
            .unwrap()
            .remove(0);
        // As the CRM's query designer writes it: no paging attributes, no order.
        let query = r#"<fetch version="1.0" output-format="xml-platform" mapping="logical" distinct="false"><entity name="contact"><attribute name="fullname"/><filter type="and"><condition attribute="address1_city" operator="eq" value="Berlin"/><condition attribute="statecode" operator="eq" value="0"/></filter></entity></fetch>"#;
        let list = admin_list(
            &admin,
            "Dynamic",
            json!({"createdfromcode": 2, "type": true, "query": query}),
        )
        .await;
        let stored = sim.row("lists", &list).unwrap();
        let stored_query = stored["query"].as_str().unwrap();

        let client = client_with_page_size(&sim, 5);
        let (rows, pages) = all_fetch_pages(client.dynamic_list_members(
            stored_query,
            RecipientKind::Contact,
            &["emailaddress1", "firstname"],
        ))
        .await;
        assert_eq!(pages, 3);
        assert_eq!(lowercase(&ids_of(&rows, "contactid")), lowercase(&berlin));
        assert_eq!(rows.len(), 12);
        assert!(rows.iter().all(|r| r["emailaddress1"].is_string()));

        assert!(
            client
                .dynamic_list_contains(stored_query, RecipientKind::Contact, &berlin[7])
                .await
                .unwrap()
        );
        assert!(
            !client
                .dynamic_list_contains(stored_query, RecipientKind::Contact, &elsewhere)
                .await
                .unwrap()
        );
        // Deactivated: the query no longer selects it.
        client
            .update("contacts", &berlin[7], &json!({"statecode": 1}))
            .await
            .unwrap();
        assert!(
            !client
                .dynamic_list_contains(stored_query, RecipientKind::Contact, &berlin[7])
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn retrieve_returns_the_row_or_none_for_a_missing_one() {
        let sim = sim().await;
        let id = seed_contacts(&sim, 1, "single").remove(0);
        let client = client(&sim);
        let row: Value = client
            .retrieve("contacts", &id, &["firstname", "emailaddress1"])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row["firstname"], "first00000");
        assert_eq!(row["contactid"].as_str().unwrap(), id);
        let missing: Option<Value> = client
            .retrieve(
                "contacts",
                &uuid::Uuid::new_v4().to_string(),
                &["firstname"],
            )
            .await
            .unwrap();
        assert!(missing.is_none());
    }

    #[tokio::test]
    async fn writes_change_the_crm_rows_as_reported() {
        let sim = sim().await;
        let client = client(&sim);

        // create: the id it returns names the new row.
        let id = client
            .create(
                "contacts",
                &json!({"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@example.com"}),
            )
            .await
            .unwrap();
        let row = sim.row("contacts", &id).unwrap();
        assert_eq!(row["fullname"], "Ada Lovelace");
        assert_eq!(row["_createdby_value"], CONNECTOR_USER_ID);

        // create_with_id: the given key; a second time it is a conflict.
        let chosen = uuid::Uuid::new_v4().to_string();
        let got = client
            .create_with_id("contacts", &chosen, &json!({"lastname": "Chosen"}))
            .await
            .unwrap();
        assert_eq!(got, chosen);
        assert_eq!(sim.row("contacts", &chosen).unwrap()["lastname"], "Chosen");
        let again = client
            .create_with_id("contacts", &chosen, &json!({"lastname": "Again"}))
            .await;
        assert!(
            matches!(again, Err(DataverseError::Conflict { .. })),
            "{again:?}"
        );
        assert_eq!(sim.row("contacts", &chosen).unwrap()["lastname"], "Chosen");

        // update: changes only the columns sent; a missing row is NotFound, not created.
        client
            .update("contacts", &id, &json!({"jobtitle": "Countess"}))
            .await
            .unwrap();
        let row = sim.row("contacts", &id).unwrap();
        assert_eq!(row["jobtitle"], "Countess");
        assert_eq!(row["emailaddress1"], "ada@example.com");
        let ghost = uuid::Uuid::new_v4().to_string();
        let missing = client
            .update("contacts", &ghost, &json!({"jobtitle": "Ghost"}))
            .await;
        assert!(
            matches!(missing, Err(DataverseError::NotFound { .. })),
            "{missing:?}"
        );
        assert!(sim.row("contacts", &ghost).is_none());

        // upsert: creates a missing row, updates a present one.
        let upserted = uuid::Uuid::new_v4().to_string();
        client
            .upsert("contacts", &upserted, &json!({"lastname": "Upserted"}))
            .await
            .unwrap();
        assert_eq!(
            sim.row("contacts", &upserted).unwrap()["lastname"],
            "Upserted"
        );
        client
            .upsert("contacts", &upserted, &json!({"firstname": "Now"}))
            .await
            .unwrap();
        let row = sim.row("contacts", &upserted).unwrap();
        assert_eq!(row["fullname"], "Now Upserted");

        // delete: true when it was there, false when it was not.
        assert!(client.delete("contacts", &upserted).await.unwrap());
        assert!(sim.row("contacts", &upserted).is_none());
        assert!(!client.delete("contacts", &upserted).await.unwrap());

        let stats = sim.stats();
        assert_eq!(stats.count("PATCH contacts"), 7, "{stats:?}");
        assert_eq!(stats.count("DELETE contacts"), 2);
        assert_eq!(sim.rows("contacts").len(), 2);
    }

    #[tokio::test]
    async fn list_and_campaign_actions_change_memberships() {
        let sim = sim().await;
        let admin = WebApi::admin(&sim).await.unwrap();
        let contacts = seed_contacts(&sim, 4, "actions");
        let list = admin_list(&admin, "Actions", json!({"createdfromcode": 2})).await;
        let client = client(&sim);

        let answer = client
            .execute_action(
                &format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList"),
                &json!({"EntityId": contacts[0]}),
            )
            .await
            .unwrap();
        let listmember = answer["Id"].as_str().expect("AddMemberListResponse.Id");
        let rows = sim.rows("listmembers");
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["listmemberid"].as_str(), Some(listmember));
        // Adding a present member changes nothing.
        client
            .execute_action(
                &format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList"),
                &json!({"EntityId": contacts[0]}),
            )
            .await
            .unwrap();
        assert_eq!(sim.rows("listmembers").len(), 1);

        let answer = client
            .execute_action(
                "AddListMembersList",
                &json!({
                    "List": {"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list},
                    "Members": contacts[1..].iter().map(|id| json!({
                        "@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": id
                    })).collect::<Vec<_>>(),
                }),
            )
            .await
            .unwrap();
        assert_eq!(answer, Value::Null, "AddListMembersList returns nothing");
        let members = |sim: &DataverseSim| -> BTreeSet<String> {
            sim.rows("listmembers")
                .iter()
                .filter(|r| r["_listid_value"] == json!(list))
                .map(|r| r["_entityid_value"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(members(&sim), lowercase(&contacts));

        client
            .execute_action(
                &format!("lists({list})/Microsoft.Dynamics.CRM.RemoveMemberList"),
                &json!({"EntityId": contacts[2]}),
            )
            .await
            .unwrap();
        let mut expected = lowercase(&contacts);
        expected.remove(&contacts[2].to_ascii_lowercase());
        assert_eq!(members(&sim), expected);

        let campaign = admin
            .create("campaigns", &json!({"name": "Autumn"}))
            .await
            .unwrap();
        let answer = client
            .execute_action(
                &format!("campaigns({campaign})/Microsoft.Dynamics.CRM.AddItemCampaign"),
                &json!({"EntityId": list, "EntityName": "list"}),
            )
            .await
            .unwrap();
        let items = sim.rows("campaignitems");
        assert_eq!(items.len(), 1);
        assert_eq!(answer["CampaignItemId"], items[0]["campaignitemid"]);
        assert_eq!(items[0]["_campaignid_value"], json!(campaign));
        assert_eq!(items[0]["entityid"], json!(list));

        let stats = sim.stats();
        assert_eq!(stats.count("POST AddMemberList"), 2, "{stats:?}");
        assert_eq!(stats.count("POST AddListMembersList"), 1);
        assert_eq!(stats.count("POST RemoveMemberList"), 1);
        assert_eq!(stats.count("POST AddItemCampaign"), 1);
    }

    #[tokio::test]
    async fn a_batch_answers_each_part_in_order_and_a_failing_part_does_not_stop_the_rest() {
        let sim = sim().await;
        let ids = seed_contacts(&sim, 3, "batch");
        let client = client(&sim);
        let ghost = uuid::Uuid::new_v4().to_string();
        let requests = vec![
            BatchRequest::update("contacts", &ids[0], json!({"jobtitle": "one"})).unwrap(),
            BatchRequest::update("contacts", &ghost, json!({"jobtitle": "ghost"})).unwrap(),
            BatchRequest::update("contacts", &ids[1], json!({"jobtitle": "two"})).unwrap(),
            BatchRequest::update("contacts", &ids[2], json!({"gendercode": 99})).unwrap(),
            BatchRequest::new(
                Method::GET,
                format!("contacts({})?$select=jobtitle", ids[0]),
            ),
            BatchRequest::delete("contacts", &ids[2]).unwrap(),
        ];
        let results = client.batch(requests).await.unwrap();
        let statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
        assert_eq!(statuses, vec![204, 404, 204, 400, 200, 204]);
        assert!(matches!(
            results[1].to_error("PATCH contacts"),
            DataverseError::NotFound { .. }
        ));
        let refused = results[3].error.as_ref().unwrap();
        assert!(!refused.code.is_empty(), "{refused:?}");
        assert_eq!(results[4].body.as_ref().unwrap()["jobtitle"], "one");
        assert_eq!(sim.row("contacts", &ids[0]).unwrap()["jobtitle"], "one");
        assert_eq!(sim.row("contacts", &ids[1]).unwrap()["jobtitle"], "two");
        assert!(sim.row("contacts", &ids[2]).is_none());
        assert!(
            sim.row("contacts", &ghost).is_none(),
            "no upsert in a batch"
        );
        let stats = sim.stats();
        assert_eq!(stats.batches, 1, "{stats:?}");
        assert_eq!(stats.batch_parts, 6);
    }

    #[tokio::test]
    async fn a_fetch_xml_longer_than_32_kb_goes_through_a_batch() {
        let sim = sim().await;
        let seeded = seed_contacts(&sim, 30, "long");
        let client = client_with_page_size(&sim, 10);
        // An `in` condition with every id plus many that match nothing: > 32 KB encoded.
        let mut values: Vec<String> = seeded.clone();
        values.extend((0..800).map(|_| uuid::Uuid::new_v4().to_string()));
        let conditions: String = values
            .iter()
            .map(|id| format!("<value>{id}</value>"))
            .collect();
        let xml = format!(
            r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="contactid" operator="in">{conditions}</condition></filter><order attribute="contactid"/></entity></fetch>"#
        );
        assert!(xml.len() > 32 * 1024);
        // Sent as a plain GET, Dataverse (and the sandbox) refuse a URL this long.
        let admin = WebApi::admin(&sim).await.unwrap();
        let encoded: String = url::form_urlencoded::byte_serialize(xml.as_bytes()).collect();
        let direct = admin
            .get(&format!("contacts?fetchXml={encoded}"))
            .await
            .unwrap();
        assert_eq!(direct.status, 414, "{}", direct.text);
        sim.reset_stats();
        let (rows, pages) = all_fetch_pages(client.fetch_xml("contacts", &xml)).await;
        assert_eq!(pages, 3);
        assert_eq!(lowercase(&ids_of(&rows, "contactid")), lowercase(&seeded));
        assert_eq!(rows.len(), 30);
        let stats = sim.stats();
        assert_eq!(stats.batches, 3, "{stats:?}");
        assert_eq!(
            stats.count("GET contacts"),
            3,
            "the GETs ran inside the batches"
        );
    }

    #[tokio::test]
    async fn whoami_names_the_connectors_application_user() {
        let sim = sim().await;
        let me = client(&sim).whoami().await.unwrap();
        assert_eq!(me.user_id, CONNECTOR_USER_ID);
        assert_eq!(me.business_unit_id, sandbox::dataverse::BUSINESS_UNIT_ID);
        assert_eq!(me.organization_id, sandbox::dataverse::ORGANIZATION_ID);
    }

    #[tokio::test]
    async fn lookup_annotations_come_back_when_the_query_asks_for_them() {
        let sim = sim().await;
        let account = sim
            .seed("accounts", vec![object(json!({"name": "Contoso"}))])
            .unwrap()
            .remove(0);
        sim.seed(
            "contacts",
            vec![object(json!({
                "lastname": "Annotated",
                "parentcustomerid_account@odata.bind": format!("/accounts({account})"),
            }))],
        )
        .unwrap();
        let client = client(&sim);
        let select = ["contactid", "_parentcustomerid_value"];
        let plain = Query::new()
            .select(select)
            .filter("lastname eq 'Annotated'");
        let (rows, _) = all_pages(client.query("contacts", &plain)).await;
        assert_eq!(rows[0]["_parentcustomerid_value"], json!(account));
        assert!(
            rows[0]
                .get("_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname")
                .is_none()
        );
        let annotated = plain.annotations(LOOKUP_ANNOTATIONS);
        let (rows, _) = all_pages(client.query("contacts", &annotated)).await;
        let row = &rows[0];
        assert_eq!(
            row["_parentcustomerid_value@OData.Community.Display.V1.FormattedValue"],
            "Contoso"
        );
        assert_eq!(
            row["_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"],
            "account"
        );
    }

    #[tokio::test]
    async fn an_email_filter_matches_regardless_of_case() {
        let sim = sim().await;
        let ids = sim
            .seed(
                "contacts",
                vec![
                    object(json!({"lastname": "Case", "emailaddress1": "Mixed.Case@Example.COM"})),
                    object(json!({"lastname": "Other", "emailaddress1": "other@example.com"})),
                ],
            )
            .unwrap();
        let client = client(&sim);
        let query = Query::new()
            .select(["contactid", "emailaddress1"])
            .filter(format!(
                "emailaddress1 eq {}",
                filter::string_literal("mixed.case@example.com")
            ));
        let (rows, _) = all_pages(client.query("contacts", &query)).await;
        assert_eq!(ids_of(&rows, "contactid"), vec![ids[0].clone()]);
        assert_eq!(rows[0]["emailaddress1"], "Mixed.Case@Example.COM");
        // A quote in the address cannot break out of the literal.
        let query = Query::new().select(["contactid"]).filter(format!(
            "emailaddress1 eq {}",
            filter::string_literal("x' or lastname eq 'Other")
        ));
        let (rows, _) = all_pages(client.query("contacts", &query)).await;
        assert!(rows.is_empty(), "{rows:?}");
    }

    #[tokio::test]
    async fn paging_keeps_every_row_once_when_order_values_hold_url_and_xml_syntax_or_nulls() {
        let sim = sim().await;
        let names = [
            "O'Brien & Co",
            "a\"quote",
            "<tag>",
            "100% sure",
            "%25 literal",
            "plus+sign",
            "Müller",
            "two  spaces",
            "hash#x",
            "slash/x",
            "amp&amp;",
            "comma,x",
            "q?x=y",
            "tab\tx",
            "日本",
        ];
        let mut rows: Vec<Map<String, Value>> = names
            .iter()
            .map(|n| object(json!({"firstname": n, "lastname": "tricky"})))
            .collect();
        rows.push(object(json!({"lastname": "tricky"})));
        rows.push(object(json!({"lastname": "tricky"})));
        let seeded = sim.seed("contacts", rows).unwrap();
        let client = client_with_page_size(&sim, 2);
        let mut sorted: Vec<Option<&str>> = names.iter().copied().map(Some).collect();
        sorted.extend([None, None]);
        // Dataverse's collation is case-insensitive; nulls sort first.
        sorted.sort_by_key(|n| n.map(str::to_lowercase));
        for descending in [false, true] {
            let mut expected = sorted.clone();
            if descending {
                expected.reverse();
            }
            let query = Query::new()
                .select(["contactid", "firstname"])
                .filter("lastname eq 'tricky'")
                .orderby(if descending {
                    "firstname desc"
                } else {
                    "firstname"
                });
            let (by_query, pages) = all_pages(client.query("contacts", &query)).await;
            assert_eq!(pages, 9);
            let xml = format!(
                r#"<fetch><entity name="contact"><attribute name="contactid"/><attribute name="firstname"/><filter><condition attribute="lastname" operator="eq" value="tricky"/></filter><order attribute="firstname" descending="{descending}"/></entity></fetch>"#
            );
            let (by_fetch, pages) = all_fetch_pages(client.fetch_xml("contacts", &xml)).await;
            assert_eq!(pages, 9);
            for (how, rows) in [("query", &by_query), ("fetch", &by_fetch)] {
                let ids = ids_of(rows, "contactid");
                assert_eq!(ids.len(), seeded.len(), "{how}: a row twice or missing");
                assert_eq!(lowercase(&ids), lowercase(&seeded), "{how}");
                let got: Vec<Option<&str>> = rows
                    .iter()
                    .map(|r| r.get("firstname").and_then(Value::as_str))
                    .collect();
                assert_eq!(got, expected, "{how}, descending {descending}");
            }
        }
    }

    #[tokio::test]
    async fn refused_credentials_are_unauthorized_and_not_retried() {
        let sim = sim().await;
        let config = |client_id: &str, secret: &str, scope: String| {
            let mut config = DataverseConfig::new(
                Url::parse(&sim.api_url()).unwrap(),
                Url::parse(&sim.token_url()).unwrap(),
                client_id,
                Secret::new(secret),
                scope,
            );
            config.retry = RetryPolicy::fast();
            DataverseClient::new(config).unwrap()
        };
        let scope = format!("{}/.default", sim.resource());
        let cases = [
            (
                config(CONNECTOR_CLIENT_ID, "wrong", scope.clone()),
                "invalid_client",
            ),
            (
                config("c0c0c0c0-0000-4000-8000-0000000000ff", "x", scope.clone()),
                "unauthorized_client",
            ),
            (
                config(
                    CONNECTOR_CLIENT_ID,
                    CONNECTOR_CLIENT_SECRET,
                    "https://elsewhere.crm.dynamics.com/.default".to_string(),
                ),
                "invalid_resource",
            ),
        ];
        for (client, error) in cases {
            let before = sim.faults().stats().requests;
            let err = client.whoami().await.unwrap_err();
            assert!(
                matches!(&err, DataverseError::Unauthorized { message, .. } if message.contains(error)),
                "{err}"
            );
            assert!(
                !err.to_string().contains("wrong"),
                "the secret leaked: {err}"
            );
            assert_eq!(sim.faults().stats().requests - before, 1, "retried: {err}");
        }
        assert_eq!(sim.stats().tokens, 0);
        assert_eq!(sim.stats().count("GET WhoAmI"), 0);
    }

    #[tokio::test]
    async fn an_expired_token_is_replaced_once_and_the_call_goes_through() {
        let sim = sim().await;
        let client = client(&sim);
        client.whoami().await.unwrap();
        sim.expire_tokens();
        let me = client.whoami().await.unwrap();
        assert_eq!(me.user_id, CONNECTOR_USER_ID);
        client.whoami().await.unwrap();
        let stats = sim.stats();
        assert_eq!(stats.tokens, 2, "{stats:?}");
        // The refused call, its repeat with the new token, and the next call.
        assert_eq!(stats.count("GET WhoAmI"), 3);
    }

    /// A webhook endpoint that records the bodies it gets.
    async fn webhook_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
        use axum::routing::post;
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = bodies.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    store
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice::<Value>(&body).unwrap());
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook"), bodies)
    }

    /// Registers an asynchronous webhook step as an administrator does.
    async fn register_step(admin: &WebApi, endpoint: &str, message: &str, entity: &str) {
        let message_id = sandbox::dataverse::schema::sdk_message_id(message)
            .unwrap()
            .to_string();
        let filter_id = sandbox::dataverse::schema::sdk_message_filter_id(message, entity)
            .unwrap()
            .to_string();
        admin
            .create(
                "sdkmessageprocessingsteps",
                &json!({
                    "name": format!("{message} of {entity}"),
                    "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint})"),
                    "sdkmessageid@odata.bind": format!("/sdkmessages({message_id})"),
                    "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({filter_id})"),
                    "stage": 40, "mode": 1, "rank": 1, "asyncautodelete": false,
                }),
            )
            .await
            .unwrap();
    }

    fn shared_variable<'v>(body: &'v Value, key: &str) -> Option<&'v Value> {
        body["SharedVariables"]
            .as_array()?
            .iter()
            .find(|kv| kv["key"] == key)
            .map(|kv| &kv["value"])
    }

    #[tokio::test]
    async fn the_write_tag_reaches_the_webhooks_of_every_kind_of_write() {
        let sim = sim().await;
        let admin = WebApi::admin(&sim).await.unwrap();
        let (url, bodies) = webhook_receiver().await;
        let endpoint = admin
            .create(
                "serviceendpoints",
                &json!({"name": "intake", "contract": 8, "url": url, "authtype": 5,
                        "authvalue": "<settings><setting name=\"x-key\" value=\"k\"/></settings>",
                        "messageformat": 2, "messagecharset": 1}),
            )
            .await
            .unwrap();
        for message in ["Create", "Update", "Delete"] {
            register_step(&admin, &endpoint, message, "contact").await;
        }
        register_step(&admin, &endpoint, "AddMember", "list").await;
        let list = admin_list(&admin, "Tagged", json!({"createdfromcode": 2})).await;
        let untagged = seed_contacts(&sim, 1, "untagged").remove(0);

        let mut config = DataverseConfig::new(
            Url::parse(&sim.api_url()).unwrap(),
            Url::parse(&sim.token_url()).unwrap(),
            CONNECTOR_CLIENT_ID,
            Secret::new(CONNECTOR_CLIENT_SECRET),
            format!("{}/.default", sim.resource()),
        );
        config.retry = RetryPolicy::fast();
        config.write_tag = Some("crc-connector".to_string());
        let client = DataverseClient::new(config).unwrap();
        let id = client
            .create("contacts", &json!({"lastname": "Tagged"}))
            .await
            .unwrap();
        client
            .update("contacts", &id, &json!({"jobtitle": "direct"}))
            .await
            .unwrap();
        let parts = client
            .batch(vec![
                BatchRequest::update("contacts", &id, json!({"firstname": "Batched"})).unwrap(),
            ])
            .await
            .unwrap();
        assert_eq!(parts[0].status, 204);
        client
            .execute_action(
                &format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList"),
                &json!({"EntityId": id}),
            )
            .await
            .unwrap();
        assert!(client.delete("contacts", &id).await.unwrap());
        // A person's change in the CRM carries no tag.
        let r = admin
            .patch(
                &format!("contacts({untagged})"),
                &json!({"jobtitle": "by hand"}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 204);

        sim.webhooks_idle().await;
        let bodies = bodies.lock().unwrap().clone();
        let seen: Vec<(String, String, Option<Value>)> = bodies
            .iter()
            .map(|b| {
                (
                    b["MessageName"].as_str().unwrap().to_string(),
                    b["PrimaryEntityId"].as_str().unwrap().to_string(),
                    shared_variable(b, "tag").cloned(),
                )
            })
            .collect();
        let tag = Some(json!("crc-connector"));
        let expected = vec![
            ("Create".to_string(), id.clone(), tag.clone()),
            ("Update".to_string(), id.clone(), tag.clone()),
            ("Update".to_string(), id.clone(), tag.clone()),
            ("AddMember".to_string(), list.clone(), tag.clone()),
            ("Delete".to_string(), id.clone(), tag.clone()),
            ("Update".to_string(), untagged.clone(), None),
        ];
        let sorted = |mut v: Vec<(String, String, Option<Value>)>| {
            v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            v
        };
        assert_eq!(sorted(seen), sorted(expected));
        // The connector's own writes also name its user.
        let own = bodies
            .iter()
            .filter(|b| b["PrimaryEntityId"] == json!(id))
            .all(|b| b["InitiatingUserId"] == CONNECTOR_USER_ID);
        assert!(own);
    }

    #[tokio::test]
    async fn a_create_or_delete_whose_answer_is_lost_is_applied_once() {
        let sim = sim().await;
        let doomed = seed_contacts(&sim, 20, "doomed");
        let client = client(&sim);
        client.whoami().await.unwrap(); // the token, before the faults
        sim.reset_stats();
        sim.faults().set(sandbox::faults::FaultConfig {
            seed: Some(5),
            kinds: vec![sandbox::faults::FaultKind::DropAfterApply],
            ..sandbox::faults::FaultConfig::at_rate(0.5)
        });
        let mut ids = Vec::new();
        for i in 0..20 {
            let id = client
                .create(
                    "contacts",
                    &json!({"lastname": "lost answer", "description": format!("m{i}")}),
                )
                .await
                .unwrap();
            ids.push(id);
        }
        let mut reported_missing = 0;
        for id in &doomed {
            if !client.delete("contacts", id).await.unwrap() {
                // An earlier attempt deleted it; only its answer was lost.
                reported_missing += 1;
            }
        }
        sim.faults().off();
        let rows: Vec<_> = sim
            .rows("contacts")
            .into_iter()
            .filter(|r| r["lastname"] == "lost answer")
            .collect();
        assert_eq!(rows.len(), 20, "one row per create");
        let markers: BTreeSet<&str> = rows
            .iter()
            .map(|r| r["description"].as_str().unwrap())
            .collect();
        assert_eq!(markers.len(), 20);
        assert!(doomed.iter().all(|id| sim.row("contacts", id).is_none()));
        let stats = sim.stats();
        let injected = sim.faults().stats().injected;
        let lost = injected
            .get(&sandbox::faults::FaultKind::DropAfterApply)
            .copied()
            .unwrap_or(0);
        assert!(lost >= 10, "{injected:?}");
        // Every lost answer was followed by a retry of the same request.
        assert_eq!(
            stats.count("PATCH contacts") + stats.count("DELETE contacts"),
            40 + lost
        );
        assert!(reported_missing > 0, "no delete answer was lost");
    }
}
