//! CleverReach simulator, pessimistic mode: nobody knows whether the real API re-activates an
//! unsubscribed, bounced or blacklisted receiver when an upsert sends `activated > 0`, so in
//! this mode it does, and records each time it happens. A connector that never sends that for
//! an opted-out address sees no difference; one that does is caught.

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
    }

    impl Api {
        async fn start(pessimistic: bool) -> Api {
            let sim = CleverReachSim::spawn(CleverReachSimConfig {
                pessimistic,
                ..CleverReachSimConfig::default()
            })
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
            let token = tokens["access_token"].as_str().unwrap().to_string();
            Api { sim, http, token }
        }

        async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
            let mut req = self
                .http
                .request(method, format!("{}{}", self.sim.base_url(), path))
                .bearer_auth(&self.token);
            if let Some(body) = body {
                req = req.json(&body);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            resp.json().await.unwrap()
        }

        async fn sim_state(&self) -> Value {
            reqwest::get(format!("{}_sim/state", self.sim.base_url()))
                .await
                .unwrap()
                .json()
                .await
                .unwrap()
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

        /// A group with an unsubscribed `u@`, a bounced `b@` and an active, then blacklisted
        /// `x@`, all written through the API.
        async fn opted_out(&self) -> String {
            let gid = self.group("List").await;
            self.upsert(
                &gid,
                json!([{"email": "u@example.com"}, {"email": "b@example.com"}]),
            )
            .await;
            self.sim.unsubscribe(&gid, "u@example.com").unwrap();
            self.sim.bounce("b@example.com").unwrap();
            self.sim.blacklist("x@example.com").unwrap();
            gid
        }
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    fn activate_all() -> Value {
        json!([
            {"email": "u@example.com", "activated": now(), "registered": now()},
            {"email": "B@example.com", "activated": now()},
            {"email": "x@example.com", "activated": now(), "registered": now()},
        ])
    }

    #[tokio::test]
    async fn an_upsert_with_activated_reactivates_unsubscribed_bounced_and_blacklisted_receivers() {
        let api = Api::start(true).await;
        let gid = api.opted_out().await;
        api.upsert(&gid, activate_all()).await;
        for email in ["u@example.com", "b@example.com", "x@example.com"] {
            let r = api.sim.receiver(&gid, email).unwrap();
            assert!(r.active, "{email} is active again: {r:?}");
            assert_eq!((r.deactivated, r.bounced), (0, 0), "{email}");
        }
        let log = api.sim.reactivations();
        let seen: Vec<(&str, &str, &str)> = log
            .iter()
            .map(|r| (r.email.as_str(), r.reason.as_str(), r.via.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("u@example.com", "deactivated", "upsert"),
                ("B@example.com", "bounced", "upsert"),
                ("x@example.com", "blacklisted", "upsert"),
            ]
        );
        assert!(log.iter().all(|r| r.group_id == gid));
        assert_eq!(api.sim.reactivation_attempts(), 3);

        let state = api.sim_state().await;
        assert_eq!(state["pessimistic"], true);
        assert_eq!(state["reactivation_count"], 3);
        assert_eq!(state["reactivations"].as_array().unwrap().len(), 3);
        assert_eq!(state["reactivations"][0]["reason"], "deactivated");
        let listed: Value = reqwest::get(format!("{}_sim/reactivations", api.sim.base_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn every_write_path_with_activated_reactivates_in_pessimistic_mode() {
        let api = Api::start(true).await;
        let gid = api.opted_out().await;
        api.ok(
            Method::POST,
            &format!("v3/groups.json/{gid}/receivers/upsertplus"),
            Some(json!([{"email": "u@example.com", "activated": now()}])),
        )
        .await;
        api.ok(
            Method::PUT,
            &format!("v3/groups.json/{gid}/receivers/b@example.com"),
            Some(json!({"activated": now()})),
        )
        .await;
        let added = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers"),
                Some(json!({"email": "x@example.com", "activated": now()})),
            )
            .await;
        assert_eq!(added["active"], true);
        // A new group knows nothing of the old opt-outs but the bounce list does.
        let fresh = api.group("Fresh").await;
        api.upsert(&fresh, json!([{"email": "b@example.com"}]))
            .await;
        let reasons: Vec<String> = api
            .sim
            .reactivations()
            .into_iter()
            .map(|r| format!("{} {} {}", r.email, r.reason, r.via))
            .collect();
        assert_eq!(
            reasons,
            [
                "u@example.com deactivated upsert",
                "b@example.com bounced upsert",
                "x@example.com blacklisted insert",
                "b@example.com bounced upsert",
            ]
        );
        assert!(api.sim.receiver(&fresh, "b@example.com").unwrap().active);
    }

    #[tokio::test]
    async fn an_upsert_that_only_updates_data_reactivates_nobody_even_in_pessimistic_mode() {
        let api = Api::start(true).await;
        let gid = api.opted_out().await;
        api.upsert(&gid, json!([{"email": "x@example.com", "activated": 0}]))
            .await;
        api.upsert(
            &gid,
            json!([
                {"email": "u@example.com", "source": "CRM"},
                {"email": "b@example.com", "source": "CRM", "activated": 0},
                {"email": "x@example.com", "source": "CRM"},
            ]),
        )
        .await;
        for email in ["u@example.com", "b@example.com", "x@example.com"] {
            let r = api.sim.receiver(&gid, email).unwrap();
            assert!(!r.active, "{email}");
            assert_eq!(r.source, "CRM");
        }
        assert!(api.sim.reactivations().is_empty());
        assert_eq!(api.sim.reactivation_attempts(), 0);
    }

    #[tokio::test]
    async fn without_pessimistic_mode_the_attempts_are_counted_and_nothing_changes() {
        let api = Api::start(false).await;
        let gid = api.opted_out().await;
        api.upsert(&gid, activate_all()).await;
        for email in ["u@example.com", "b@example.com", "x@example.com"] {
            assert!(!api.sim.receiver(&gid, email).unwrap().active, "{email}");
        }
        assert!(api.sim.reactivations().is_empty());
        assert_eq!(api.sim.reactivation_attempts(), 3);
        let state = api.sim_state().await;
        assert_eq!(state["pessimistic"], false);
        assert_eq!(state["reactivation_count"], 0);
        assert_eq!(state["reactivation_attempts"], 3);
    }

    #[tokio::test]
    async fn pessimistic_mode_is_switched_at_run_time_through_the_sim_control() {
        let api = Api::start(false).await;
        let gid = api.opted_out().await;
        let url = format!("{}_sim/pessimistic", api.sim.base_url());
        let put = |body: Value| {
            let http = api.http.clone();
            let url = url.clone();
            async move { http.put(url).json(&body).send().await.unwrap().status() }
        };
        assert_eq!(put(json!({"enabled": true})).await, StatusCode::OK);
        assert!(api.sim.pessimistic());
        api.upsert(
            &gid,
            json!([{"email": "u@example.com", "activated": now()}]),
        )
        .await;
        assert!(api.sim.receiver(&gid, "u@example.com").unwrap().active);
        let shown: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        assert_eq!(shown["enabled"], true);
        assert_eq!(shown["reactivation_count"], 1);

        assert_eq!(put(json!({"enabled": false})).await, StatusCode::OK);
        api.upsert(
            &gid,
            json!([{"email": "b@example.com", "activated": now()}]),
        )
        .await;
        assert!(!api.sim.receiver(&gid, "b@example.com").unwrap().active);
        assert_eq!(api.sim.reactivations().len(), 1);
        assert_eq!(
            put(json!({"enabled": "yes please"})).await,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn a_sign_up_inside_cleverreach_is_not_a_reactivation() {
        let api = Api::start(true).await;
        let gid = api.group("List").await;
        api.sim.bounce("b@example.com").unwrap();
        api.sim.signup(&gid, "b@example.com", &[]).unwrap();
        assert!(!api.sim.receiver(&gid, "b@example.com").unwrap().active);
        assert!(api.sim.reactivations().is_empty());
        assert_eq!(api.sim.reactivation_attempts(), 0);
    }
}
