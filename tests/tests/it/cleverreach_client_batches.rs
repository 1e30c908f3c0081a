//! CleverReach client, batching and the wire: 413 shrinks the batch, per-row refusals are
//! reported, the upsert body carries no state for receivers not to be activated, and what is
//! retried (429, 5xx, broken answers) versus what is not (4xx).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `cleverreach` module so that `cargo test cleverreach` selects these tests.
mod cleverreach {
    use axum::{
        Router,
        body::Bytes,
        extract::State,
        http::{HeaderMap, Method, StatusCode, Uri},
        response::{IntoResponse, Response},
    };
    use sandbox::cleverreach::{
        CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint,
    };
    use sandbox::faults::{FaultConfig, FaultKind};
    use serde_json::{Value, json};
    use shared::adapters::cleverreach::{
        CleverReachClient, CleverReachConfig, CleverReachError, InMemoryTokenStore, TokenSet,
        attribute,
    };
    use shared::adapters::http::RetryPolicy;
    use shared::domain::email::Email;
    use shared::domain::receiver::{PersonData, ReceiverData};
    use shared::domain::recipient::{CrmRef, PersonEntity};
    use shared::secret::Secret;
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const SOURCE: &str = "Dynamics 365 (contoso)";

    fn person(address: &str) -> ReceiverData {
        ReceiverData {
            email: Email::parse(address).unwrap(),
            person: PersonData {
                salutation: "Herr".into(),
                first_name: "Max".into(),
                last_name: "Muster".into(),
                company: String::new(),
            },
            crm: CrmRef::new(PersonEntity::Lead, uuid::Uuid::new_v4().to_string()),
        }
    }

    fn config(base: &str, batch: usize, retry: RetryPolicy) -> CleverReachConfig {
        let mut cfg = CleverReachConfig::new(
            url::Url::parse(base).unwrap(),
            DEFAULT_CLIENT_ID,
            Secret::new(DEFAULT_CLIENT_SECRET),
            SOURCE,
        );
        cfg.retry = retry;
        cfg.upsert_batch_size = batch;
        cfg.request_timeout = Duration::from_secs(5);
        cfg
    }

    async fn sim_client(
        max_batch: usize,
        client_batch: usize,
    ) -> (CleverReachSim, CleverReachClient<InMemoryTokenStore>) {
        let sim = CleverReachSim::spawn(CleverReachSimConfig {
            max_upsert_batch: max_batch,
            ..CleverReachSimConfig::default()
        })
        .await
        .unwrap();
        let client = CleverReachClient::new(
            config(&sim.base_url(), client_batch, RetryPolicy::fast()),
            InMemoryTokenStore::new(),
        )
        .unwrap();
        client.connect_client_credentials().await.unwrap();
        (sim, client)
    }

    #[tokio::test]
    async fn a_413_halves_the_batch_and_the_rest_of_the_call_keeps_the_smaller_size() {
        let (sim, client) = sim_client(100, 250).await;
        let group = client.create_group("Big", false, "").await.unwrap();
        let rows: Vec<(ReceiverData, bool)> = (0..260)
            .map(|i| (person(&format!("r{i}@example.com")), true))
            .collect();
        sim.reset_stats();
        let report = client.upsert_receivers(&group.id, &rows).await.unwrap();
        assert_eq!(report.inserted, 260);
        assert!(report.rejected.is_empty());
        assert_eq!(report.batch_size, 62, "250 → 125 → 62");
        assert_eq!(report.calls, 5, "ceil(260 / 62)");
        let stats = sim.stats();
        assert_eq!(
            stats.calls(Endpoint::ReceiversUpsert),
            7,
            "two refused, five accepted"
        );
        assert_eq!(stats.largest_upsert_batch, 250);
        assert_eq!(sim.receivers(&group.id).len(), 260);
    }

    #[tokio::test]
    async fn the_batch_size_never_exceeds_1000() {
        let (sim, client) = sim_client(1000, 5000).await;
        let group = client.create_group("Huge", false, "").await.unwrap();
        let rows: Vec<(ReceiverData, bool)> = (0..1001)
            .map(|i| (person(&format!("h{i}@example.com")), true))
            .collect();
        let report = client.upsert_receivers(&group.id, &rows).await.unwrap();
        assert_eq!(report.calls, 2);
        assert_eq!(sim.stats().largest_upsert_batch, 1000);
    }

    #[tokio::test]
    async fn rows_cleverreach_refuses_are_reported_with_their_address() {
        let (sim, client) = sim_client(1000, 250).await;
        let group = client.create_group("List", false, "").await.unwrap();
        let twice = person("twice@example.com");
        let report = client
            .upsert_receivers(
                &group.id,
                &[
                    (person("ok@example.com"), true),
                    (twice.clone(), true),
                    (twice, true),
                ],
            )
            .await
            .unwrap();
        assert_eq!(report.inserted, 2);
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].email.as_str(), "twice@example.com");
        assert!(report.rejected[0].reason.contains("duplicate address"));
        assert_eq!(sim.receivers(&group.id).len(), 2);
    }

    // ---- a scripted CleverReach, to see exactly what goes over the wire ----------------------

    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        path: String,
        authorization: String,
        body: Value,
    }

    /// A scripted answer: status, `Retry-After`, body.
    type Answer = (u16, Option<&'static str>, String);

    #[derive(Clone, Default)]
    struct Script {
        seen: Arc<Mutex<Vec<Seen>>>,
        /// Answers for non-attribute requests, in order: (status, Retry-After, body).
        answers: Arc<Mutex<VecDeque<Answer>>>,
    }

    impl Script {
        fn answer(&self, status: u16, retry_after: Option<&'static str>, body: Value) {
            self.answers
                .lock()
                .unwrap()
                .push_back((status, retry_after, body.to_string()));
        }
        fn seen(&self, path_part: &str) -> Vec<Seen> {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.path.contains(path_part))
                .cloned()
                .collect()
        }
    }

    async fn scripted(
        State(script): State<Script>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        script.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: uri.path().to_string(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        if uri.path() == "/v3/attributes.json" && method == Method::GET {
            let list: Vec<Value> = attribute::ALL
                .iter()
                .enumerate()
                .map(|(i, n)| json!({"id": i + 1, "name": n, "type": "text"}))
                .collect();
            return axum::Json(Value::Array(list)).into_response();
        }
        // The group-local attributes exist in every scripted group.
        if uri.path().ends_with("/attributes") && method == Method::GET {
            let list: Vec<Value> = attribute::GROUP
                .iter()
                .enumerate()
                .map(|(i, n)| json!({"id": 100 + i, "name": n, "type": "text"}))
                .collect();
            return axum::Json(Value::Array(list)).into_response();
        }
        let next = script.answers.lock().unwrap().pop_front();
        let (status, retry_after, body) = next.unwrap_or((200, None, "true".to_string()));
        let mut resp = (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            body,
        )
            .into_response();
        if let Some(wait) = retry_after {
            resp.headers_mut()
                .insert("retry-after", wait.parse().unwrap());
        }
        resp
    }

    async fn scripted_client(
        retry: RetryPolicy,
    ) -> (
        Script,
        CleverReachClient<InMemoryTokenStore>,
        tokio::task::JoinHandle<()>,
    ) {
        let script = Script::default();
        let app = Router::new().fallback(scripted).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let store = InMemoryTokenStore::with_tokens(TokenSet {
            access_token: Secret::new("scripted-access"),
            refresh_token: None,
            expires_at_unix: chrono::Utc::now().timestamp() + 3600,
            reconnect_required: None,
        });
        let client = CleverReachClient::new(config(&base, 250, retry), store).unwrap();
        (script, client, server)
    }

    #[tokio::test]
    async fn only_receivers_to_activate_carry_stamps_and_none_ever_carries_deactivated() {
        let (script, client, server) = scripted_client(RetryPolicy::none()).await;
        script.answer(
        200,
        None,
        json!([{"status": "insert success", "id": "1"}, {"status": "update success", "id": "2"}]),
    );
        let new = person("new@example.com");
        let known = person("known@example.com");
        let before = chrono::Utc::now().timestamp();
        client
            .upsert_receivers("77", &[(new.clone(), true), (known.clone(), false)])
            .await
            .unwrap();
        let upserts = script.seen("/receivers/upsert");
        assert_eq!(upserts.len(), 1);
        let sent = &upserts[0];
        assert_eq!(sent.method, Method::POST);
        assert_eq!(sent.path, "/v3/groups.json/77/receivers/upsert");
        assert_eq!(sent.authorization, "Bearer scripted-access");
        let rows = sent.body.as_array().unwrap();
        let activated = rows[0]["activated"].as_i64().unwrap();
        assert!(activated >= before);
        assert_eq!(rows[0]["registered"], rows[0]["activated"]);
        let second = rows[1].as_object().unwrap();
        for key in ["activated", "registered", "deactivated"] {
            assert!(
                !second.contains_key(key),
                "{key} sent for an existing receiver"
            );
        }
        assert!(!rows[0].as_object().unwrap().contains_key("deactivated"));
        for row in rows {
            assert_eq!(row["source"], SOURCE);
            let attrs = row["global_attributes"].as_object().unwrap();
            let mut keys: Vec<&str> = attrs.keys().map(String::as_str).collect();
            keys.sort();
            let mut expected = attribute::ALL.to_vec();
            expected.sort();
            assert_eq!(keys, expected);
        }
        assert_eq!(rows[1]["global_attributes"]["crmentity"], "lead");
        assert_eq!(rows[1]["global_attributes"]["crmid"], known.crm.id);
        server.abort();
    }

    #[tokio::test]
    async fn a_mixed_upsert_answer_is_read_row_by_row() {
        let (script, client, server) = scripted_client(RetryPolicy::none()).await;
        script.answer(
        200,
        None,
        json!([{"status": "insert success", "id": "1"}, "invalid address 'b@example.com';", {"status": "upsert success", "id": "3"}]),
    );
        let report = client
            .upsert_receivers(
                "1",
                &[
                    (person("a@example.com"), true),
                    (person("b@example.com"), true),
                    (person("c@example.com"), false),
                ],
            )
            .await
            .unwrap();
        assert_eq!(report.inserted, 1);
        assert_eq!(report.updated, 1);
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(report.rejected[0].email.as_str(), "b@example.com");
        // CleverReach's reason, with the address it quotes replaced by a tag (reasons are
        // logged and written to the source's last error).
        assert_eq!(
            report.rejected[0].reason,
            format!(
                "invalid address '{}';",
                shared::redact::email_tag("b@example.com")
            )
        );

        // An answer that does not line up with the rows is an error, not a guess.
        script.answer(200, None, json!([{"status": "insert success", "id": "1"}]));
        let err = client
            .upsert_receivers(
                "1",
                &[
                    (person("a@example.com"), true),
                    (person("b@example.com"), true),
                ],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, CleverReachError::Decode { .. }), "{err}");
        server.abort();
    }

    #[tokio::test]
    async fn server_errors_and_throttling_are_retried_and_client_errors_are_not() {
        let (script, client, server) = scripted_client(RetryPolicy::fast()).await;
        script.answer(
            503,
            None,
            json!({"error": {"code": 503, "message": "Service Unavailable"}}),
        );
        script.answer(
            429,
            Some("0"),
            json!({"error": {"code": 429, "message": "Too Many Requests"}}),
        );
        script.answer(200, None, json!([{"id": "5", "name": "A"}]));
        let groups = client.list_groups().await.unwrap();
        assert_eq!(groups[0].id, "5");
        assert_eq!(script.seen("/v3/groups.json").len(), 3);

        script.answer(
            400,
            None,
            json!({"error": {"code": 400, "message": "Bad Request: name"}}),
        );
        let err = client.rename_group("5", "B").await.unwrap_err();
        assert!(
            matches!(
                err,
                CleverReachError::Client {
                    status: 400,
                    code: Some(400),
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(script.seen("/v3/groups.json/5").len(), 1);
        server.abort();
    }

    #[tokio::test]
    async fn a_long_retry_after_ends_the_retries_with_a_throttled_error() {
        let (script, client, server) = scripted_client(RetryPolicy::fast()).await;
        script.answer(
            429,
            Some("120"),
            json!({"error": {"code": 429, "message": "slow down"}}),
        );
        let err = client.list_groups().await.unwrap_err();
        assert!(
            matches!(err, CleverReachError::Throttled { retry_after: Some(d) } if d == Duration::from_secs(120)),
            "{err}"
        );
        assert_eq!(script.seen("/v3/groups.json").len(), 1);
        server.abort();
    }

    #[tokio::test]
    async fn an_answer_that_breaks_off_is_never_taken_for_success() {
        let (sim, client) = sim_client(1000, 250).await;
        let client = CleverReachClient::new(
            config(&sim.base_url(), 250, RetryPolicy::none()),
            client.store().clone(),
        )
        .unwrap();
        sim.faults().set(FaultConfig {
            kinds: vec![FaultKind::DropAfterApply],
            ..FaultConfig::at_rate(1.0)
        });
        let err = client.list_groups().await.unwrap_err();
        assert!(matches!(err, CleverReachError::Transport { .. }), "{err}");
        assert!(shared::error::Retryable::is_retryable(&err));
    }

    #[tokio::test]
    async fn a_create_retried_after_a_lost_answer_makes_one_group() {
        let (sim, client) = sim_client(1000, 250).await;
        // Every other request breaks after CleverReach applied it.
        sim.faults().set(FaultConfig {
            kinds: vec![FaultKind::DropAfterApply],
            seed: Some(11),
            ..FaultConfig::at_rate(0.5)
        });
        let mut created = 0;
        for i in 0..12 {
            let name = format!("Campaign {i}");
            let result = client.create_group(&name, true, "").await;
            sim.faults().off();
            let same_name: Vec<_> = sim
                .groups()
                .into_iter()
                .filter(|g| g.name == name)
                .collect();
            assert!(
                same_name.len() <= 1,
                "{name} created {} times",
                same_name.len()
            );
            if let Ok(group) = result {
                created += 1;
                assert_eq!(same_name.len(), 1);
                assert_eq!(same_name[0].id, group.id);
            }
            sim.faults().set(FaultConfig {
                kinds: vec![FaultKind::DropAfterApply],
                seed: Some(100 + i),
                ..FaultConfig::at_rate(0.5)
            });
        }
        assert!(created >= 8, "only {created} of 12 creates got through");
        assert!(sim.faults().stats().injected.values().sum::<u64>() > 0);
    }
}
