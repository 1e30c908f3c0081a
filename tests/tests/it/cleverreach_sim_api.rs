//! CleverReach simulator, REST v3 side: the JSON shapes of ref §2–§6 and the rules that
//! protect people (DESIGN §2), checked with raw HTTP calls.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `cleverreach` module so that `cargo test cleverreach` selects these tests.
mod cleverreach {
    use reqwest::{Method, StatusCode};
    use sandbox::cleverreach::{
        CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint,
    };
    use sandbox::faults::{FaultConfig, FaultKind};
    use serde_json::{Value, json};

    struct Api {
        sim: CleverReachSim,
        http: reqwest::Client,
        token: String,
    }

    impl Api {
        async fn start() -> Api {
            Api::with(CleverReachSimConfig::default()).await
        }

        async fn with(cfg: CleverReachSimConfig) -> Api {
            let sim = CleverReachSim::spawn(cfg).await.unwrap();
            let http = reqwest::Client::new();
            let tokens: Value = http
                .post(format!("{}oauth/token.php", sim.base_url()))
                .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let token = tokens["access_token"].as_str().unwrap().to_string();
            Api { sim, http, token }
        }

        async fn call(
            &self,
            method: Method,
            path: &str,
            body: Option<Value>,
        ) -> (StatusCode, Value) {
            let mut req = self
                .http
                .request(method, format!("{}{}", self.sim.base_url(), path))
                .bearer_auth(&self.token);
            if let Some(body) = body {
                req = req.json(&body);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }

        async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
            let (status, value) = self.call(method, path, body).await;
            assert_eq!(status, StatusCode::OK, "{path}: {value}");
            value
        }

        async fn group(&self, name: &str) -> String {
            let g = self
                .ok(Method::POST, "v3/groups.json", Some(json!({"name": name})))
                .await;
            g["id"].as_str().unwrap().to_string()
        }

        async fn attribute(&self, name: &str) {
            self.ok(
                Method::POST,
                "v3/attributes.json",
                Some(json!({"name": name, "type": "text"})),
            )
            .await;
        }

        async fn upsert(&self, gid: &str, rows: Value) -> Value {
            self.ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/upsert"),
                Some(rows),
            )
            .await
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[tokio::test]
    async fn a_created_group_has_the_fixture_shape_and_a_string_id() {
        let api = Api::start().await;
        let g = api
        .ok(
            Method::POST,
            "v3/groups.json",
            Some(json!({"name": "CRM: Newsletter", "locked": true, "backup": true, "receiver_info": "from the CRM"})),
        )
        .await;
        let id = g["id"].as_str().unwrap();
        assert!(id.parse::<u64>().is_ok());
        assert_eq!(g["name"], "CRM: Newsletter");
        assert_eq!(g["locked"], true);
        assert_eq!(g["backup"], true);
        assert_eq!(g["receiver_info"], "from the CRM");
        for key in ["stamp", "last_mailing", "last_changed"] {
            assert!(g[key].is_i64(), "{key}");
        }
        let listed = api.ok(Method::GET, "v3/groups.json", None).await;
        assert_eq!(listed.as_array().unwrap().len(), 1);
        // Paths work with and without `.json`.
        let fetched = api.ok(Method::GET, &format!("v3/groups/{id}"), None).await;
        assert_eq!(fetched, g);
    }

    #[tokio::test]
    async fn a_group_is_renamed_and_deleted_and_then_answers_404() {
        let api = Api::start().await;
        let gid = api.group("Old").await;
        let renamed = api
            .ok(
                Method::PUT,
                &format!("v3/groups.json/{gid}"),
                Some(json!({"name": "New", "receiver_info": "changed"})),
            )
            .await;
        assert_eq!(renamed["name"], "New");
        assert_eq!(renamed["receiver_info"], "changed");
        let deleted = api
            .ok(Method::DELETE, &format!("v3/groups.json/{gid}"), None)
            .await;
        assert_eq!(deleted, json!(true));
        let (status, body) = api
            .call(Method::DELETE, &format!("v3/groups.json/{gid}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"error": {"code": 404, "message": "Not Found: invalid group"}})
        );
    }

    #[tokio::test]
    async fn creating_an_existing_attribute_answers_409() {
        let api = Api::start().await;
        api.attribute("firstname").await;
        let (status, body) = api
            .call(
                Method::POST,
                "v3/attributes.json",
                Some(json!({"name": "firstname", "type": "text"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], 409);
        let list = api.ok(Method::GET, "v3/attributes.json", None).await;
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0]["name"], "firstname");
        assert_eq!(list[0]["groups_id"], 0);
        assert_eq!(list[0]["tag"], "{FIRSTNAME}");
    }

    #[tokio::test]
    async fn an_upsert_answers_per_row_with_status_objects_and_bare_error_strings() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        api.upsert(&gid, json!([{"email": "known@example.com"}]))
            .await;
        let result = api
            .upsert(
                &gid,
                json!([
                    {"email": "new@example.com", "registered": now(), "activated": now()},
                    {"email": "KNOWN@example.com"},
                    {"email": "not-an-address"},
                    {"email": "New@example.com"},
                ]),
            )
            .await;
        let rows = result.as_array().unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0]["status"], "insert success");
        assert!(rows[0]["id"].as_str().unwrap().parse::<u64>().is_ok());
        assert_eq!(rows[1]["status"], "update success");
        assert_eq!(rows[2], json!("invalid address 'not-an-address';"));
        assert_eq!(rows[3], json!("duplicate address 'New@example.com'"));
        assert_eq!(
            api.sim.receivers(&gid).len(),
            2,
            "addresses compare case-insensitively"
        );
    }

    #[tokio::test]
    async fn global_attribute_values_need_an_existing_attribute() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        api.attribute("firstname").await;
        api.upsert(
        &gid,
        json!([{"email": "a@example.com", "global_attributes": {"firstname": "Anna", "crmid": "x"}}]),
    )
    .await;
        let r = api.sim.receiver(&gid, "a@example.com").unwrap();
        assert_eq!(r.global_attributes.get("firstname").unwrap(), "Anna");
        assert!(!r.global_attributes.contains_key("crmid"));
        let ignored = api.sim.ignored_global_attributes();
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].name, "crmid");
        let got = api
            .ok(
                Method::GET,
                &format!("v3/groups.json/{gid}/receivers/a@example.com"),
                None,
            )
            .await;
        assert_eq!(got["global_attributes"], json!({"firstname": "Anna"}));
    }

    #[tokio::test]
    async fn an_upsert_above_the_batch_limit_answers_413_and_changes_nothing() {
        let api = Api::with(CleverReachSimConfig {
            max_upsert_batch: 5,
            ..CleverReachSimConfig::default()
        })
        .await;
        let gid = api.group("List").await;
        let rows = |n: usize| {
            Value::Array(
                (0..n)
                    .map(|i| json!({"email": format!("r{i}@example.com")}))
                    .collect(),
            )
        };
        let (status, body) = api
            .call(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/upsert"),
                Some(rows(6)),
            )
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error"]["code"], 413);
        assert!(api.sim.receivers(&gid).is_empty());
        assert_eq!(api.upsert(&gid, rows(5)).await.as_array().unwrap().len(), 5);
        assert_eq!(api.sim.stats().largest_upsert_batch, 6);
    }

    #[tokio::test]
    async fn an_unknown_receiver_answers_the_documented_404_body() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        let (status, body) = api
            .call(
                Method::GET,
                &format!("v3/groups.json/{gid}/receivers/nobody@example.com"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"error": {"code": 404, "message": "Not Found: invalid receiver"}})
        );
    }

    #[tokio::test]
    async fn a_receiver_object_has_the_fields_of_the_reference() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        let row = api
        .upsert(
            &gid,
            json!([{"email": "Anna@Example.com", "source": "Dynamics 365 (org)", "tags": ["CRM-Source.x"]}]),
        )
        .await;
        let id = row[0]["id"].as_str().unwrap().to_string();
        for key in [&id, "anna@example.com", "ANNA@EXAMPLE.COM"] {
            let r = api
                .ok(
                    Method::GET,
                    &format!("v3/groups.json/{gid}/receivers/{key}"),
                    None,
                )
                .await;
            assert_eq!(r["id"], id.as_str());
            assert_eq!(r["email"], "Anna@Example.com");
            assert_eq!(r["group_id"], gid.as_str());
            assert_eq!(r["source"], "Dynamics 365 (org)");
            assert_eq!(r["active"], true);
            assert_eq!(r["tags"], json!(["CRM-Source.x"]));
            assert_eq!(r["events"][0]["type"], "api");
            assert_eq!(r["events"][0]["type_id"], "REST insert");
            for key in [
                "imported",
                "bounced",
                "activated",
                "registered",
                "deactivated",
                "points",
                "stars",
            ] {
                assert!(r[key].is_i64(), "{key}");
            }
            for key in ["attributes", "global_attributes"] {
                assert!(r[key].is_object(), "{key}");
            }
            assert!(r["orders"].is_array());
        }
    }

    #[tokio::test]
    async fn an_upsert_never_reactivates_an_unsubscribed_receiver() {
        // Without pessimistic mode (that one re-activates, see cleverreach_sim_pessimistic).
        let api = Api::with(CleverReachSimConfig {
            pessimistic: false,
            ..CleverReachSimConfig::default()
        })
        .await;
        let gid = api.group("List").await;
        api.upsert(
            &gid,
            json!([{"email": "anna@example.com", "activated": now(), "registered": now()}]),
        )
        .await;
        api.sim.unsubscribe(&gid, "anna@example.com").unwrap();
        let before = api.sim.receiver(&gid, "anna@example.com").unwrap();
        assert!(!before.active);
        assert!(before.deactivated > 0);
        assert_eq!(before.events[0].kind, "user_unsubscribe");

        for path in ["upsert", "upsertplus"] {
            let rows = api
                .ok(
                    Method::POST,
                    &format!("v3/groups.json/{gid}/receivers/{path}"),
                    Some(json!([
                        {"email": "ANNA@example.com", "activated": now() + 5, "registered": now()},
                        {"email": "anna@example.com", "activated": now(), "deactivated": 0},
                    ])),
                )
                .await;
            assert!(rows[0].is_object(), "{rows}");
        }
        let after = api.sim.receiver(&gid, "anna@example.com").unwrap();
        assert!(!after.active);
        assert_eq!(after.deactivated, before.deactivated);
        assert!(api.sim.reactivations().is_empty());

        let listed = api
            .ok(
                Method::GET,
                &format!("v3/groups.json/{gid}/receivers?type=inactive"),
                None,
            )
            .await;
        assert_eq!(listed.as_array().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn bounced_and_blacklisted_addresses_are_never_made_active_by_an_upsert() {
        // Without pessimistic mode (that one re-activates, see cleverreach_sim_pessimistic).
        let api = Api::with(CleverReachSimConfig {
            pessimistic: false,
            ..CleverReachSimConfig::default()
        })
        .await;
        let gid = api.group("List").await;
        api.upsert(&gid, json!([{"email": "b@example.com"}])).await;
        api.sim.bounce("b@example.com").unwrap();
        api.sim.blacklist("x@example.com").unwrap();
        api.upsert(
            &gid,
            json!([
                {"email": "b@example.com", "activated": now()},
                {"email": "x@example.com", "activated": now(), "registered": now()},
            ]),
        )
        .await;
        assert!(!api.sim.receiver(&gid, "b@example.com").unwrap().active);
        let x = api.sim.receiver(&gid, "x@example.com").unwrap();
        assert!(!x.active);
        assert_eq!(x.activated, 0);
        assert!(api.sim.reactivations().is_empty());
        // Only an explicit /activate brings someone back, and that is logged.
        let (status, _) = api
            .call(
                Method::PUT,
                &format!("v3/groups.json/{gid}/receivers/x@example.com/activate"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let yes = api
            .ok(
                Method::PUT,
                &format!("v3/groups.json/{gid}/receivers/b@example.com/activate"),
                None,
            )
            .await;
        assert_eq!(yes, json!(true));
        assert!(api.sim.receiver(&gid, "b@example.com").unwrap().active);
        let log = api.sim.reactivations();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].email, "b@example.com");
    }

    #[tokio::test]
    async fn deactivate_and_activate_answer_true_and_flip_active() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        api.upsert(&gid, json!([{"email": "a@example.com"}])).await;
        let path = format!("v3/groups.json/{gid}/receivers/a@example.com");
        assert_eq!(
            api.ok(Method::PUT, &format!("{path}/deactivate"), None)
                .await,
            json!(true)
        );
        assert_eq!(api.ok(Method::GET, &path, None).await["active"], false);
        assert_eq!(
            api.ok(Method::PUT, &format!("{path}/activate"), None).await,
            json!(true)
        );
        assert_eq!(api.ok(Method::GET, &path, None).await["active"], true);
    }

    #[tokio::test]
    async fn pages_read_out_of_order_and_after_a_change_hold_exactly_the_rows_of_their_place() {
        let api = Api::with(CleverReachSimConfig {
            max_page_size: 50,
            ..CleverReachSimConfig::default()
        })
        .await;
        let gid = api.group("List").await;
        let rows: Vec<Value> = (0..23)
            .map(|i| json!({"email": format!("p{i:02}@example.com")}))
            .collect();
        api.upsert(&gid, Value::Array(rows)).await;
        let page = |n: usize| {
            let api = &api;
            let gid = gid.clone();
            async move {
                api.ok(
                    Method::GET,
                    &format!("v3/groups.json/{gid}/receivers?page={n}&pagesize=5&type=all"),
                    None,
                )
                .await
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["email"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
            }
        };
        let expect = |from: usize, to: usize, skip: Option<usize>| -> Vec<String> {
            (0..23)
                .filter(|i| Some(*i) != skip)
                .map(|i| format!("p{i:02}@example.com"))
                .skip(from)
                .take(to - from)
                .collect()
        };
        // Read ahead, out of order: each page is its place's rows.
        for n in [3, 0, 4, 1, 2, 6, 5] {
            assert_eq!(page(n).await, expect(n * 5, n * 5 + 5, None), "page {n}");
        }
        // A receiver leaves: the pages after it move up by one.
        api.ok(
            Method::DELETE,
            &format!("v3/groups.json/{gid}/receivers/p07@example.com"),
            None,
        )
        .await;
        for n in [2, 1, 4] {
            assert_eq!(
                page(n).await,
                expect(n * 5, n * 5 + 5, Some(7)),
                "page {n} after"
            );
        }
    }

    #[tokio::test]
    async fn receivers_are_paged_from_zero_in_a_stable_order() {
        let api = Api::with(CleverReachSimConfig {
            max_page_size: 50,
            ..CleverReachSimConfig::default()
        })
        .await;
        let gid = api.group("List").await;
        let rows: Vec<Value> = (0..7)
            .map(|i| json!({"email": format!("p{i}@example.com")}))
            .collect();
        api.upsert(&gid, Value::Array(rows)).await;
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        for page in 0..4 {
            let got = api
                .ok(
                    Method::GET,
                    &format!(
                        "v3/groups.json/{gid}/receivers?page={page}&pagesize=3&type=all&detail=0"
                    ),
                    None,
                )
                .await;
            let got = got.as_array().unwrap().clone();
            sizes.push(got.len());
            assert!(
                got.iter().all(|r| r.get("events").is_none()),
                "detail=0 has no events"
            );
            seen.extend(
                got.into_iter()
                    .map(|r| r["email"].as_str().unwrap().to_string()),
            );
        }
        assert_eq!(sizes, [3, 3, 1, 0]);
        let expected: Vec<String> = (0..7).map(|i| format!("p{i}@example.com")).collect();
        assert_eq!(seen, expected);

        let (status, body) = api
            .call(
                Method::GET,
                &format!("v3/groups.json/{gid}/receivers?pagesize=51"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], 400);
    }

    #[tokio::test]
    async fn list_types_select_active_inactive_and_bounced_receivers() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        api.upsert(
        &gid,
        json!([{"email": "a@example.com"}, {"email": "u@example.com"}, {"email": "b@example.com"}]),
    )
    .await;
        api.sim.unsubscribe(&gid, "u@example.com").unwrap();
        api.sim.bounce("b@example.com").unwrap();
        let emails = |v: Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|r| r["email"].as_str().unwrap().to_string())
                .collect()
        };
        let list = |t: &'static str| {
            let path = format!("v3/groups.json/{gid}/receivers?type={t}");
            let api = &api;
            async move { emails(api.ok(Method::GET, &path, None).await) }
        };
        assert_eq!(list("active").await, ["a@example.com"]);
        assert_eq!(list("inactive").await, ["u@example.com", "b@example.com"]);
        assert_eq!(list("bounce").await, ["b@example.com"]);
        assert_eq!(list("all").await.len(), 3);
        let stats = api
            .ok(Method::GET, &format!("v3/groups.json/{gid}/stats"), None)
            .await;
        assert_eq!(stats["total_count"], 3);
        assert_eq!(stats["active_count"], 1);
        assert_eq!(stats["inactive_count"], 2);
        assert_eq!(stats["bounce_count"], 1);
    }

    #[tokio::test]
    async fn the_filter_finds_by_email_and_by_deactivation_time_across_groups() {
        let api = Api::start().await;
        let g1 = api.group("One").await;
        let g2 = api.group("Two").await;
        api.upsert(
            &g1,
            json!([{"email": "a@example.com"}, {"email": "b@example.com"}]),
        )
        .await;
        api.upsert(&g2, json!([{"email": "a@example.com"}])).await;
        let before = now() - 1;
        api.sim.unsubscribe(&g2, "a@example.com").unwrap();

        let by_email = api
            .ok(
                Method::POST,
                "v3/receivers/filter.json",
                Some(json!({"groups": [g1], "operator": "AND",
                "rules": [{"field": "email", "logic": "eq", "condition": "A@example.com"}]})),
            )
            .await;
        let by_email = by_email.as_array().unwrap();
        assert_eq!(by_email.len(), 1);
        assert_eq!(by_email[0]["group_id"], g1.as_str());

        let unsubscribed = api
        .ok(
            Method::POST,
            "v3/receivers.json/filter.json",
            Some(json!({"groups": [], "rules": [{"field": "deactivated", "logic": "bg", "condition": before.to_string()}], "page": 0, "pagesize": 100})),
        )
        .await;
        let unsubscribed = unsubscribed.as_array().unwrap();
        assert_eq!(unsubscribed.len(), 1);
        assert_eq!(unsubscribed[0]["email"], "a@example.com");
        assert_eq!(unsubscribed[0]["group_id"], g2.as_str());

        let either = api
            .ok(
                Method::POST,
                "v3/receivers/filter.json",
                Some(json!({"groups": [g1, g2], "operator": "OR", "rules": [
                {"field": "email", "logic": "eq", "condition": "b@example.com"},
                {"field": "deactivated", "logic": "notisnull", "condition": ""}]})),
            )
            .await;
        assert_eq!(either.as_array().unwrap().len(), 2);

        let (status, body) = api
            .call(
                Method::POST,
                "v3/receivers/filter.json",
                Some(json!({"rules": [{"field": "shoe_size", "logic": "eq", "condition": "42"}]})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("shoe_size")
        );
    }

    #[tokio::test]
    async fn bounces_have_the_shape_of_the_reference() {
        let api = Api::start().await;
        api.sim.bounce("Gone@Example.com").unwrap();
        api.sim.bounce("gone@example.com").unwrap();
        let bounces = api
            .ok(Method::GET, "v3/bounces.json?page=0&pagesize=500", None)
            .await;
        let bounces = bounces.as_array().unwrap();
        assert_eq!(bounces.len(), 1);
        let b = bounces[0].as_object().unwrap();
        let mut keys: Vec<&str> = b.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "bounce_message",
                "category",
                "email",
                "expires_by",
                "expires_by_gmt",
                "last_update",
                "last_update_gmt",
                "occurences",
                "type",
                "type_id"
            ]
        );
        assert_eq!(b["occurences"], 2);
        assert_eq!(b["category"], "hardbounce");
        assert_eq!(b["type"], "mailing");
        assert!(b["last_update"].is_i64());
        assert!(b["last_update_gmt"].as_str().unwrap().ends_with("+00:00"));
        let (status, _) = api
            .call(Method::GET, "v3/bounces.json?pagesize=501", None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn the_blacklist_is_listed_added_to_and_removed_from() {
        let api = Api::start().await;
        api.sim.blacklist("spam@example.com").unwrap();
        api.ok(
            Method::POST,
            "v3/blacklist.json",
            Some(json!({"email": "no@example.com", "comment": "asked by phone"})),
        )
        .await;
        let list = api.ok(Method::GET, "v3/blacklist.json", None).await;
        let emails: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["email"].as_str().unwrap())
            .collect();
        assert_eq!(emails, ["spam@example.com", "no@example.com"]);
        assert_eq!(
            api.ok(Method::DELETE, "v3/blacklist.json/no@example.com", None)
                .await,
            json!(true)
        );
        let (status, _) = api
            .call(Method::DELETE, "v3/blacklist.json/no@example.com", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn batch_delete_answers_per_address_and_single_delete_answers_true() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        api.upsert(
            &gid,
            json!([{"email": "a@example.com"}, {"email": "b@example.com"}]),
        )
        .await;
        let result = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/delete"),
                Some(json!(["A@example.com", "nobody@example.com"])),
            )
            .await;
        assert_eq!(result[0], json!({"status": "success"}));
        assert!(result[1].is_string());
        let one = api
            .ok(
                Method::DELETE,
                &format!("v3/groups.json/{gid}/receivers/b@example.com"),
                None,
            )
            .await;
        assert_eq!(one, json!(true));
        assert!(api.sim.receivers(&gid).is_empty());
    }

    #[tokio::test]
    async fn an_email_change_moves_the_address_in_every_group_and_keeps_history() {
        let api = Api::start().await;
        let g1 = api.group("One").await;
        let g2 = api.group("Two").await;
        api.upsert(&g1, json!([{"email": "old@example.com"}])).await;
        api.upsert(&g2, json!([{"email": "old@example.com"}])).await;
        let id_before = api.sim.receiver(&g1, "old@example.com").unwrap().id;
        let changed = api
            .ok(
                Method::PUT,
                "v3/receivers.json/old@example.com/email",
                Some(json!({"email": "new@example.com"})),
            )
            .await;
        assert_eq!(changed, json!(true));
        for g in [&g1, &g2] {
            assert!(api.sim.receiver(g, "old@example.com").is_none());
            let r = api.sim.receiver(g, "new@example.com").unwrap();
            assert_eq!(r.id, id_before);
            assert!(r.events.iter().any(|e| e.type_id == "REST insert"));
        }
        let (status, body) = api
            .call(
                Method::PUT,
                "v3/receivers.json/old@example.com/email",
                Some(json!({"email": "new@example.com"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"]["message"], "Not Found: invalid receiver");
        let found = api
            .ok(Method::GET, "v3/receivers.json/new@example.com", None)
            .await;
        assert_eq!(found["email"], "new@example.com");
    }

    #[tokio::test]
    async fn upsertplus_returns_full_receivers_and_insert_refuses_duplicates() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        let plus = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/upsertplus"),
                Some(json!([{"email": "a@example.com", "tags": ["X.y"]}])),
            )
            .await;
        assert_eq!(plus[0]["email"], "a@example.com");
        assert_eq!(plus[0]["active"], true);
        assert_eq!(plus[0]["tags"], json!(["X.y"]));
        let insert = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/insert"),
                Some(json!([{"email": "a@example.com"}, {"email": "c@example.com"}])),
            )
            .await;
        assert_eq!(insert[0], json!("duplicate address 'a@example.com'"));
        assert_eq!(insert[1]["status"], "insert success");
    }

    #[tokio::test]
    async fn injected_faults_use_the_cleverreach_error_body_and_spare_the_controls() {
        let api = Api::start().await;
        api.sim.faults().set(FaultConfig {
            kinds: vec![FaultKind::InternalError],
            ..FaultConfig::at_rate(1.0)
        });
        let (status, body) = api.call(Method::GET, "v3/groups.json", None).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], 500);
        let state = reqwest::get(format!("{}_sim/state", api.sim.base_url()))
            .await
            .unwrap();
        assert_eq!(state.status(), StatusCode::OK);
        assert_eq!(api.sim.stats().calls(Endpoint::GroupsList), 0);
    }

    #[tokio::test]
    async fn a_person_can_drive_the_sandbox_through_the_sim_endpoints() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        let base = api.sim.base_url();
        let post = |path: &'static str, body: Value| {
            let http = api.http.clone();
            let url = format!("{base}_sim/{path}");
            async move { http.post(url).json(&body).send().await.unwrap().status() }
        };
        assert_eq!(
            post("signup", json!({"group_id": gid, "email": "s@example.com"})).await,
            StatusCode::OK
        );
        assert_eq!(
            post(
                "unsubscribe",
                json!({"group_id": gid, "email": "s@example.com"})
            )
            .await,
            StatusCode::OK
        );
        assert_eq!(
            post("bounce", json!({"email": "s@example.com"})).await,
            StatusCode::OK
        );
        assert_eq!(
            post(
                "unsubscribe",
                json!({"group_id": gid, "email": "nobody@example.com"})
            )
            .await,
            StatusCode::NOT_FOUND
        );
        let s = api.sim.receiver(&gid, "s@example.com").unwrap();
        assert!(s.deactivated > 0 && s.bounced > 0 && !s.active);
        let state: Value = reqwest::get(format!("{base}_sim/state"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(state["groups"][0]["receivers"][0]["email"], "s@example.com");
    }
}
