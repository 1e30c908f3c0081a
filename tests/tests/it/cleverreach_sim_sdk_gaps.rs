//! CleverReach simulator: the calls CleverReach's official PHP SDK makes that the simulator
//! used to get wrong (answered with the whole group, ignored, 404 or an empty 405). Each test
//! here failed before the simulator learned the call.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `cleverreach` module so that `cargo test cleverreach` selects these tests.
mod cleverreach {
    use reqwest::{Method, StatusCode};
    use sandbox::cleverreach::{
        CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    };
    use serde_json::{Value, json};

    struct Api {
        sim: CleverReachSim,
        http: reqwest::Client,
        token: String,
        refresh: String,
    }

    impl Api {
        async fn start() -> Api {
            let sim = CleverReachSim::spawn(CleverReachSimConfig::default())
                .await
                .unwrap();
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
            Api {
                token: tokens["access_token"].as_str().unwrap().to_string(),
                refresh: tokens["refresh_token"].as_str().unwrap().to_string(),
                sim,
                http,
            }
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

        async fn upsert(&self, gid: &str, rows: Value) -> Value {
            self.ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/upsert"),
                Some(rows),
            )
            .await
        }
    }

    fn emails(list: &Value) -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|r| r["email"].as_str().unwrap().to_string())
            .collect()
    }

    fn ids(list: &Value) -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|g| g["id"].as_str().unwrap().to_string())
            .collect()
    }

    // ---- GET groups/{id}/receivers?email_list=…&id_list=… --------------------------------

    #[tokio::test]
    async fn email_list_returns_only_the_named_receivers_of_the_group() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        api.upsert(
            &gid,
            json!([{"email": "a@example.com"}, {"email": "b@example.com"}, {"email": "c@example.com"}]),
        )
        .await;
        let got = api
            .ok(
                Method::GET,
                &format!(
                    "v3/groups.json/{gid}/receivers?email_list=C@example.com,a@example.com,nobody@example.com"
                ),
                None,
            )
            .await;
        assert_eq!(emails(&got), ["a@example.com", "c@example.com"]);
    }

    #[tokio::test]
    async fn id_list_returns_only_the_receivers_with_those_ids() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        let rows = api
            .upsert(
                &gid,
                json!([{"email": "a@example.com"}, {"email": "b@example.com"}, {"email": "c@example.com"}]),
            )
            .await;
        let b = rows[1]["id"].as_str().unwrap();
        let got = api
            .ok(
                Method::GET,
                &format!("v3/groups.json/{gid}/receivers?id_list={b},999999999"),
                None,
            )
            .await;
        assert_eq!(emails(&got), ["b@example.com"]);
    }

    #[tokio::test]
    async fn an_empty_or_malformed_receiver_list_filter_is_refused_rather_than_ignored() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        api.upsert(&gid, json!([{"email": "a@example.com"}])).await;
        for (query, named) in [
            ("email_list=", "email_list"),
            ("id_list=12,abc", "id_list"),
            ("email_list=a@example.com&id_list=1", "email_list"),
        ] {
            let (status, body) = api
                .call(
                    Method::GET,
                    &format!("v3/groups.json/{gid}/receivers?{query}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
            assert_eq!(body["error"]["code"], 400, "{query}");
            assert!(
                body["error"]["message"].as_str().unwrap().contains(named),
                "{query}: {body}"
            );
        }
    }

    // ---- GET groups?order=… ---------------------------------------------------------------

    #[tokio::test]
    async fn groups_are_listed_newest_first_when_ordered_by_created_desc() {
        let api = Api::start().await;
        let first = api.group("First").await;
        let second = api.group("Second").await;
        let third = api.group("Third").await;
        let got = api
            .ok(Method::GET, "v3/groups.json?order=created%20DESC", None)
            .await;
        assert_eq!(ids(&got), [third.clone(), second.clone(), first.clone()]);
        let got = api
            .ok(Method::GET, "v3/groups.json?order=created", None)
            .await;
        assert_eq!(ids(&got), [first, second, third]);
        let (status, body) = api
            .call(Method::GET, "v3/groups.json?order=shoe_size", None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("shoe_size")
        );
    }

    #[tokio::test]
    async fn groups_are_listed_by_their_last_change_when_ordered_by_changed() {
        let api = Api::start().await;
        let first = api.group("First").await;
        let second = api.group("Second").await;
        api.sim.advance_clock(60);
        api.ok(
            Method::PUT,
            &format!("v3/groups.json/{first}"),
            Some(json!({"name": "First, renamed"})),
        )
        .await;
        let got = api
            .ok(Method::GET, "v3/groups.json?order=changed%20DESC", None)
            .await;
        assert_eq!(ids(&got), [first.clone(), second.clone()]);
        let got = api
            .ok(Method::GET, "v3/groups.json?order=changed%20ASC", None)
            .await;
        assert_eq!(ids(&got), [second, first]);
        let (status, body) = api
            .call(Method::GET, "v3/groups.json?order=changed%20sideways", None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }

    // ---- POST groups/{id}/receivers (add one) --------------------------------------------

    #[tokio::test]
    async fn one_receiver_is_added_with_post_and_comes_back_as_a_receiver_object() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        let now = chrono::Utc::now().timestamp();
        let r = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers"),
                Some(
                    json!({"email": "john.doe@example.org", "registered": now, "activated": now,
                    "source": "Random Source", "tags": ["tag"]}),
                ),
            )
            .await;
        assert_eq!(r["email"], "john.doe@example.org");
        assert!(r["id"].as_str().unwrap().parse::<u64>().is_ok());
        assert_eq!(r["group_id"], gid.as_str());
        assert_eq!(r["active"], true);
        assert_eq!(r["source"], "Random Source");
        let stored = api.sim.receiver(&gid, "john.doe@example.org").unwrap();
        assert!(stored.active);
        assert_eq!(stored.tags, ["tag"]);
    }

    #[tokio::test]
    async fn adding_an_address_that_is_already_in_the_group_is_a_conflict() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        api.upsert(&gid, json!([{"email": "a@example.com", "source": "first"}]))
            .await;
        let (status, body) = api
            .call(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers"),
                Some(json!({"email": "A@example.com", "source": "second"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], 409);
        assert_eq!(
            api.sim.receiver(&gid, "a@example.com").unwrap().source,
            "first"
        );
        let (status, body) = api
            .call(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers"),
                Some(json!({"email": "not-an-address"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not-an-address")
        );
    }

    // ---- PUT groups/{id}/receivers/{receiver} (update one) -------------------------------

    #[tokio::test]
    async fn one_receiver_is_updated_with_put_and_unknown_receivers_answer_404() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        api.ok(
            Method::POST,
            "v3/attributes.json",
            Some(json!({"name": "firstname", "type": "text"})),
        )
        .await;
        api.upsert(
            &gid,
            json!([{"email": "john.doe@example.org", "source": "old", "global_attributes": {"firstname": "Jon"}}]),
        )
        .await;
        let r = api
            .ok(
                Method::PUT,
                &format!("v3/groups.json/{gid}/receivers/john.doe@example.org"),
                Some(json!({"source": "Random Source", "global_attributes": {"firstname": "John"}, "tags": ["tag"]})),
            )
            .await;
        assert_eq!(r["email"], "john.doe@example.org");
        assert_eq!(r["source"], "Random Source");
        assert_eq!(r["global_attributes"]["firstname"], "John");
        let stored = api.sim.receiver(&gid, "john.doe@example.org").unwrap();
        assert_eq!(stored.source, "Random Source");
        assert_eq!(stored.tags, ["tag"]);

        let (status, body) = api
            .call(
                Method::PUT,
                &format!("v3/groups.json/{gid}/receivers/jane.doe@example.org"),
                Some(json!({"source": "x"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"error": {"code": 404, "message": "Not Found: invalid receiver"}})
        );
        assert!(api.sim.receiver(&gid, "jane.doe@example.org").is_none());
    }

    // ---- token revoke ---------------------------------------------------------------------

    #[tokio::test]
    async fn a_token_revoked_at_the_oauth_endpoint_is_refused_afterwards() {
        let api = Api::start().await;
        assert_eq!(
            api.call(Method::GET, "v3/debug/validate.json", None)
                .await
                .0,
            StatusCode::OK
        );
        let resp = api
            .http
            .delete(format!("{}oauth/token", api.sim.base_url()))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let (status, body) = api.call(Method::GET, "v3/debug/validate.json", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], 401);
        assert!(!api.sim.access_token_is_valid(&api.token));
        // The refresh token issued with it goes too: a revoked app cannot quietly come back.
        assert!(!api.sim.refresh_token_is_valid(&api.refresh));
    }

    #[tokio::test]
    async fn a_token_revoked_through_the_v3_api_is_refused_afterwards() {
        for path in ["v3/oauth/token.json", "v3/oauth/token"] {
            let api = Api::start().await;
            let (status, body) = api.call(Method::DELETE, path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            assert_eq!(body, json!(true));
            let (status, _) = api.call(Method::GET, "v3/groups.json", None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            // Revoking again with the dead token is itself refused.
            let (status, body) = api.call(Method::DELETE, path, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(body["error"]["code"], 401);
        }
    }

    // ---- 405 ------------------------------------------------------------------------------

    #[tokio::test]
    async fn a_method_the_endpoint_does_not_have_answers_405_with_the_json_error_body() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        for (method, path) in [
            (Method::PATCH, "v3/groups.json".to_string()),
            (Method::DELETE, "v3/groups.json".to_string()),
            (
                Method::GET,
                format!("v3/groups.json/{gid}/receivers/upsert"),
            ),
            (Method::GET, "oauth/token.php".to_string()),
        ] {
            let (status, body) = api.call(method.clone(), &path, None).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_eq!(
                body,
                json!({"error": {"code": 405, "message": "Method Not Allowed"}}),
                "{method} {path}"
            );
        }
    }

    // ---- group-local attributes -----------------------------------------------------------

    #[tokio::test]
    async fn a_group_attribute_is_created_and_listed_for_its_group_only() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        let other = api.group("Other").await;
        let created = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/attributes"),
                Some(json!({"name": "membership", "type": "text", "description": "why this person is here"})),
            )
            .await;
        assert!(created["id"].is_u64(), "{created}");
        assert_eq!(created["name"], "membership");
        assert_eq!(created["groups_id"], gid.parse::<u64>().unwrap());
        assert_eq!(created["type"], "text");
        for path in [
            format!("v3/groups.json/{gid}/attributes"),
            format!("v3/attributes.json?group_id={gid}"),
        ] {
            let listed = api.ok(Method::GET, &path, None).await;
            assert_eq!(listed.as_array().unwrap().len(), 1, "{path}");
            assert_eq!(listed[0]["name"], "membership", "{path}");
        }
        let others = api
            .ok(
                Method::GET,
                &format!("v3/groups.json/{other}/attributes"),
                None,
            )
            .await;
        assert_eq!(others, json!([]));
        let globals = api.ok(Method::GET, "v3/attributes.json", None).await;
        assert_eq!(globals, json!([]), "the global list holds globals only");
        let (status, body) = api
            .call(
                Method::POST,
                &format!("v3/groups.json/{gid}/attributes"),
                Some(json!({"name": "membership", "type": "text"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }

    #[tokio::test]
    async fn a_group_attribute_value_is_stored_and_an_undefined_one_is_dropped() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        api.ok(
            Method::POST,
            &format!("v3/groups.json/{gid}/attributes"),
            Some(json!({"name": "membership", "type": "text"})),
        )
        .await;
        api.upsert(
            &gid,
            json!([{"email": "a@example.com", "attributes": {"membership": "static list", "undefined_one": "x"}}]),
        )
        .await;
        let r = api
            .ok(
                Method::GET,
                &format!("v3/groups.json/{gid}/receivers/a@example.com"),
                None,
            )
            .await;
        assert_eq!(r["attributes"], json!({"membership": "static list"}));
        let stored = api.sim.receiver(&gid, "a@example.com").unwrap();
        assert!(!stored.attributes.contains_key("undefined_one"));
        let ignored = api.sim.ignored_group_attributes();
        assert_eq!(ignored.len(), 1);
        assert_eq!(ignored[0].name, "undefined_one");
        assert_eq!(ignored[0].group_id, gid);
        // The attribute of one group means nothing in another.
        let other = api.group("Other").await;
        api.upsert(
            &other,
            json!([{"email": "a@example.com", "attributes": {"membership": "x"}}]),
        )
        .await;
        assert!(
            api.sim
                .receiver(&other, "a@example.com")
                .unwrap()
                .attributes
                .is_empty()
        );
        assert_eq!(api.sim.ignored_group_attributes().len(), 2);
    }

    #[tokio::test]
    async fn a_group_attribute_is_deleted_with_its_values_and_with_its_group() {
        let api = Api::start().await;
        let gid = api.group("List").await;
        let attr = api
            .ok(
                Method::POST,
                "v3/attributes.json",
                Some(json!({"name": "membership", "type": "text", "group_id": gid})),
            )
            .await;
        assert_eq!(attr["groups_id"], gid.parse::<u64>().unwrap());
        let id = attr["id"].as_u64().unwrap();
        api.upsert(
            &gid,
            json!([{"email": "a@example.com", "attributes": {"membership": "x"}}]),
        )
        .await;
        let other = api.group("Other").await;
        let (status, _) = api
            .call(
                Method::DELETE,
                &format!("v3/groups.json/{other}/attributes/{id}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "another group's attribute");
        assert_eq!(
            api.ok(
                Method::DELETE,
                &format!("v3/groups.json/{gid}/attributes/{id}"),
                None
            )
            .await,
            json!(true)
        );
        assert!(api.sim.group_attributes(&gid).is_empty());
        assert!(
            api.sim
                .receiver(&gid, "a@example.com")
                .unwrap()
                .attributes
                .is_empty()
        );

        api.ok(
            Method::POST,
            &format!("v3/groups.json/{gid}/attributes"),
            Some(json!({"name": "membership", "type": "text"})),
        )
        .await;
        api.ok(Method::DELETE, &format!("v3/groups.json/{gid}"), None)
            .await;
        let (status, _) = api
            .call(
                Method::GET,
                &format!("v3/attributes.json?group_id={gid}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(api.sim.group_attributes(&gid).is_empty());
    }
}
