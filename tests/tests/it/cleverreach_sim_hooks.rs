//! CleverReach simulator: event hooks. Registration with the verification handshake, the
//! list and the deletion of registrations, and deliveries of `receiver.*` events with the
//! call token, dropped or delayed on request, counted, never retried.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `cleverreach` module so that `cargo test cleverreach` selects these tests.
mod cleverreach {
    use axum::{
        Router,
        body::Bytes,
        extract::{Query, State},
        http::{HeaderMap, Method as HttpMethod, StatusCode as HttpStatus, header},
        response::{IntoResponse, Response},
        routing::any,
    };
    use reqwest::{Method, StatusCode};
    use sandbox::cleverreach::{
        CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
        HookDeliveryConfig,
    };
    use serde_json::{Value, json};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    const VERIFY: &str = "damnSecretBatTokenForVerify";
    const SETTLE: Duration = Duration::from_secs(10);

    /// How the test endpoint answers the verification GET.
    #[derive(Clone, Copy, PartialEq)]
    enum Handshake {
        Correct,
        WrongText,
        JsonContentType,
        NotFound,
    }

    #[derive(Clone, Debug)]
    struct Call {
        method: String,
        query: HashMap<String, String>,
        call_token: Option<String>,
        content_type: String,
        body: Value,
        at: Instant,
    }

    struct Behaviour {
        handshake: Handshake,
        post_status: u16,
    }

    #[derive(Clone)]
    struct Receiver {
        calls: Arc<Mutex<Vec<Call>>>,
        behaviour: Arc<Mutex<Behaviour>>,
    }

    /// A hook endpoint on a loopback port that records every call.
    struct HookEndpoint {
        url: String,
        receiver: Receiver,
        server: tokio::task::JoinHandle<()>,
    }

    impl Drop for HookEndpoint {
        fn drop(&mut self) {
            self.server.abort();
        }
    }

    async fn endpoint_handler(
        State(r): State<Receiver>,
        method: HttpMethod,
        Query(query): Query<HashMap<String, String>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let header_text = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        r.calls.lock().unwrap().push(Call {
            method: method.to_string(),
            query: query.clone(),
            call_token: header_text("x-cr-calltoken"),
            content_type: header_text("content-type").unwrap_or_default(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            at: Instant::now(),
        });
        let behaviour = r.behaviour.lock().unwrap();
        if method == HttpMethod::GET {
            let secret = query.get("secret").cloned().unwrap_or_default();
            let text = format!("{VERIFY} {secret}");
            return match behaviour.handshake {
                Handshake::Correct => {
                    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
                }
                Handshake::WrongText => (
                    [(header::CONTENT_TYPE, "text/plain")],
                    format!("{VERIFY}{secret}"),
                )
                    .into_response(),
                Handshake::JsonContentType => {
                    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
                }
                Handshake::NotFound => HttpStatus::NOT_FOUND.into_response(),
            };
        }
        HttpStatus::from_u16(behaviour.post_status)
            .unwrap_or(HttpStatus::OK)
            .into_response()
    }

    impl HookEndpoint {
        async fn start() -> HookEndpoint {
            let receiver = Receiver {
                calls: Arc::default(),
                behaviour: Arc::new(Mutex::new(Behaviour {
                    handshake: Handshake::Correct,
                    post_status: 200,
                })),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/cleverreach", listener.local_addr().unwrap());
            let app = Router::new()
                .route("/cleverreach", any(endpoint_handler))
                .with_state(receiver.clone());
            let server = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            HookEndpoint {
                url,
                receiver,
                server,
            }
        }

        fn answer(&self, handshake: Handshake, post_status: u16) {
            *self.receiver.behaviour.lock().unwrap() = Behaviour {
                handshake,
                post_status,
            };
        }

        fn calls(&self, method: &str) -> Vec<Call> {
            self.receiver
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.method == method)
                .cloned()
                .collect()
        }

        /// `(event, pool_id)` of every delivery received, in arrival order.
        fn events(&self) -> Vec<(String, String)> {
            self.calls("POST")
                .iter()
                .map(|c| {
                    (
                        c.body["event"].as_str().unwrap_or_default().to_string(),
                        c.body["payload"]["pool_id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect()
        }
    }

    struct Api {
        sim: CleverReachSim,
        http: reqwest::Client,
        token: String,
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

        async fn control(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
            let resp = self
                .http
                .request(method, format!("{}_sim/{path}", self.sim.base_url()))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json().await.unwrap_or(Value::Null))
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

        /// Registers `event` on `gid` and returns the call token.
        async fn hook(&self, url: &str, event: &str, gid: &str) -> String {
            let answer = self
                .ok(
                    Method::POST,
                    "hooks/eventhook",
                    Some(json!({"url": url, "event": event, "condition": gid, "verify": VERIFY})),
                )
                .await;
            assert_eq!(answer["success"], true, "{answer}");
            answer["call_token"].as_str().unwrap().to_string()
        }

        async fn settle(&self) {
            assert!(self.sim.wait_for_hook_deliveries(SETTLE).await);
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(e, p)| (e.to_string(), p.to_string()))
            .collect()
    }

    // ---- registration ---------------------------------------------------------------------

    #[tokio::test]
    async fn a_hook_is_registered_once_the_verification_get_is_answered_with_verify_and_secret() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let gid = api.group("List").await;
        let answer = api
            .ok(
                Method::POST,
                "hooks/eventhook",
                Some(json!({"url": hook.url, "event": "receiver", "condition": gid, "verify": VERIFY})),
            )
            .await;
        assert_eq!(answer["success"], true);
        assert_eq!(answer["call_token"].as_str().unwrap().len(), 64);
        assert_eq!(answer["secret"].as_str().unwrap().len(), 32);

        let gets = hook.calls("GET");
        assert_eq!(gets.len(), 1, "one verification request");
        let secret = gets[0].query.get("secret").unwrap();
        assert!(!secret.is_empty());
        assert_ne!(secret, answer["secret"].as_str().unwrap());

        let listed = api.ok(Method::GET, "hooks/eventhook", None).await;
        assert_eq!(
            listed,
            json!([{"event": "receiver", "condition": gid, "url": hook.url}])
        );
        assert!(
            !listed
                .to_string()
                .contains(answer["call_token"].as_str().unwrap()),
            "the list never shows a call token"
        );
        assert_eq!(api.sim.hook_registrations().len(), 1);
        assert_eq!(api.sim.hook_stats().registered, 1);
    }

    #[tokio::test]
    async fn a_registration_whose_verification_answer_is_wrong_is_refused() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let gid = api.group("List").await;
        for handshake in [
            Handshake::WrongText,
            Handshake::JsonContentType,
            Handshake::NotFound,
        ] {
            hook.answer(handshake, 200);
            let answer = api
                .ok(
                    Method::POST,
                    "hooks/eventhook",
                    Some(json!({"url": hook.url, "event": "receiver", "condition": gid, "verify": VERIFY})),
                )
                .await;
            assert_eq!(answer["success"], false, "{answer}");
            assert!(answer.get("call_token").is_none(), "{answer}");
            let why = answer["error"].as_str().unwrap();
            assert!(why.contains("verification"), "{why}");
            assert!(!why.contains(VERIFY), "the verify token stays out: {why}");
        }
        assert!(api.sim.hook_registrations().is_empty());
        assert_eq!(api.sim.hook_stats().verification_failed, 3);

        // A URL where nothing listens fails the same way, without waiting long.
        let dead = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            format!("http://{}/gone", l.local_addr().unwrap())
        };
        let answer = api
            .ok(
                Method::POST,
                "hooks/eventhook",
                Some(json!({"url": dead, "event": "receiver", "condition": gid, "verify": VERIFY})),
            )
            .await;
        assert_eq!(answer["success"], false);
    }

    #[tokio::test]
    async fn a_bad_registration_is_refused_with_an_error_naming_what_is_wrong() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let gid = api.group("List").await;
        let good =
            json!({"url": hook.url, "event": "receiver", "condition": gid, "verify": VERIFY});
        let with = |key: &str, value: Value| {
            let mut body = good.clone();
            body[key] = value;
            body
        };
        let cases = [
            (with("verify", json!("123456789")), 400, "verify"),
            (with("verify", json!("x".repeat(51))), 400, "verify"),
            (
                with("url", json!("http://hook.example.com/cr")),
                400,
                "https",
            ),
            (with("url", json!("not a url")), 400, "url"),
            (with("event", json!("group")), 400, "not simulated"),
            (
                with("event", json!("receiver.bounced")),
                400,
                "unknown event",
            ),
            (with("condition", json!("abc")), 400, "condition"),
            (with("condition", json!("999")), 404, "invalid group"),
            (
                json!({"event": "receiver", "condition": gid, "verify": VERIFY}),
                400,
                "url",
            ),
        ];
        for (body, status, named) in cases {
            let (got, answer) = api
                .call(Method::POST, "hooks/eventhook", Some(body.clone()))
                .await;
            assert_eq!(got.as_u16(), status, "{body}: {answer}");
            assert_eq!(answer["error"]["code"], status, "{body}");
            let message = answer["error"]["message"].as_str().unwrap();
            assert!(message.contains(named), "{body}: {message}");
        }
        assert!(
            hook.calls("GET").is_empty(),
            "no handshake for a bad request"
        );
        // The hook endpoints need a valid token like every other call.
        let resp = api
            .http
            .post(format!("{}hooks/eventhook", api.sim.base_url()))
            .json(&good)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(api.sim.hook_registrations().is_empty());
    }

    #[tokio::test]
    async fn deleting_an_event_for_one_group_removes_only_that_registration() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let one = api.group("One").await;
        let two = api.group("Two").await;
        api.hook(&hook.url, "receiver", &one).await;
        api.hook(&hook.url, "receiver", &two).await;
        api.hook(&hook.url, "receiver.unsubscribed", &two).await;
        assert_eq!(
            api.ok(
                Method::DELETE,
                &format!("hooks/eventhook/receiver?condition={one}"),
                None
            )
            .await,
            json!(true)
        );
        let left: Vec<(String, String)> = api
            .sim
            .hook_registrations()
            .into_iter()
            .map(|r| (r.event, r.condition))
            .collect();
        assert_eq!(
            left,
            [
                ("receiver".to_string(), two.clone()),
                ("receiver.unsubscribed".to_string(), two.clone())
            ]
        );
        let (status, body) = api
            .call(
                Method::DELETE,
                &format!("hooks/eventhook/receiver?condition={one}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], 404);

        // Without a condition every registration of the event goes.
        api.ok(Method::DELETE, "hooks/eventhook/receiver", None)
            .await;
        assert_eq!(api.sim.hook_registrations().len(), 1);

        api.upsert(&one, json!([{"email": "a@example.com"}])).await;
        api.sim.unsubscribe(&one, "a@example.com").unwrap();
        api.settle().await;
        assert!(hook.events().is_empty(), "{:?}", hook.events());
    }

    // ---- deliveries -----------------------------------------------------------------------

    #[tokio::test]
    async fn an_unsubscribe_is_delivered_with_the_call_token_and_the_documented_body() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let gid = api.group("List").await;
        let rows = api.upsert(&gid, json!([{"email": "a@example.com"}])).await;
        let pool_id = rows[0]["id"].as_str().unwrap().to_string();
        let call_token = api.hook(&hook.url, "receiver", &gid).await;

        api.sim.unsubscribe(&gid, "a@example.com").unwrap();
        api.settle().await;
        let posts = hook.calls("POST");
        assert_eq!(posts.len(), 1);
        assert_eq!(posts[0].call_token.as_deref(), Some(call_token.as_str()));
        assert!(posts[0].content_type.starts_with("application/json"));
        assert_eq!(
            posts[0].body,
            json!({"event": "receiver.unsubscribed", "condition": gid,
                   "payload": {"pool_id": pool_id, "group_id": gid}})
        );
        let stats = api.sim.hook_stats();
        assert_eq!((stats.events, stats.made, stats.failed), (1, 1, 0));
        let log = api.sim.hook_deliveries();
        assert_eq!(log[0].outcome, "delivered");
        assert_eq!(log[0].status, Some(200));

        // Unsubscribing again changes nothing and sends nothing.
        api.sim.unsubscribe(&gid, "a@example.com").unwrap();
        api.settle().await;
        assert_eq!(hook.calls("POST").len(), 1);
    }

    #[tokio::test]
    async fn sign_ups_and_deletions_made_through_the_sim_controls_are_delivered() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let gid = api.group("List").await;
        api.hook(&hook.url, "receiver", &gid).await;

        let (status, signed_up) = api
            .control(
                Method::POST,
                "signup",
                json!({"group_id": gid, "email": "new@example.com"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let pool_id = signed_up["id"].as_str().unwrap().to_string();
        api.settle().await;
        let mut got = hook.events();
        got.sort();
        assert_eq!(
            got,
            pairs(&[
                ("receiver.created", &pool_id),
                ("receiver.subscribed", &pool_id)
            ])
        );

        let (status, _) = api
            .control(
                Method::POST,
                "delete",
                json!({"group_id": gid, "email": "new@example.com"}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        api.settle().await;
        assert_eq!(
            hook.events().last().unwrap(),
            &("receiver.deleted".to_string(), pool_id)
        );
        assert!(api.sim.receiver(&gid, "new@example.com").is_none());
        let (status, _) = api
            .control(
                Method::POST,
                "delete",
                json!({"group_id": gid, "email": "new@example.com"}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn there_is_no_event_for_a_bounce_or_a_blacklist_entry() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let gid = api.group("List").await;
        api.upsert(&gid, json!([{"email": "a@example.com"}])).await;
        api.hook(&hook.url, "receiver", &gid).await;
        api.sim.bounce("a@example.com").unwrap();
        api.sim.blacklist("a@example.com").unwrap();
        api.ok(
            Method::POST,
            "v3/blacklist.json",
            Some(json!({"email": "b@example.com"})),
        )
        .await;
        api.settle().await;
        assert!(hook.events().is_empty(), "{:?}", hook.events());
        assert!(!api.sim.receiver(&gid, "a@example.com").unwrap().active);
    }

    #[tokio::test]
    async fn a_hook_gets_only_its_event_and_its_group() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let mine = api.group("Mine").await;
        let other = api.group("Other").await;
        for gid in [&mine, &other] {
            api.upsert(
                gid,
                json!([{"email": "a@example.com"}, {"email": "b@example.com"}]),
            )
            .await;
        }
        api.hook(&hook.url, "receiver.unsubscribed", &mine).await;
        api.sim.unsubscribe(&other, "a@example.com").unwrap();
        api.sim.signup(&mine, "c@example.com", &[]).unwrap();
        api.sim.unsubscribe(&mine, "b@example.com").unwrap();
        api.settle().await;
        let b = api.sim.receiver(&mine, "b@example.com").unwrap().id;
        assert_eq!(hook.events(), pairs(&[("receiver.unsubscribed", &b)]));
    }

    #[tokio::test]
    async fn changes_made_through_the_api_fire_events_unless_switched_off() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let gid = api.group("List").await;
        api.hook(&hook.url, "receiver", &gid).await;
        let rows = api.upsert(&gid, json!([{"email": "a@example.com"}])).await;
        let a = rows[0]["id"].as_str().unwrap().to_string();
        api.upsert(&gid, json!([{"email": "a@example.com", "source": "CRM"}]))
            .await;
        let path = format!("v3/groups.json/{gid}/receivers/a@example.com");
        api.ok(Method::PUT, &format!("{path}/deactivate"), None)
            .await;
        api.ok(Method::PUT, &format!("{path}/activate"), None).await;
        api.ok(
            Method::PUT,
            "v3/receivers.json/a@example.com/email",
            Some(json!({"email": "a2@example.com"})),
        )
        .await;
        api.ok(
            Method::DELETE,
            &format!("v3/groups.json/{gid}/receivers/a2@example.com"),
            None,
        )
        .await;
        api.settle().await;
        // Order is not promised; the set of events is.
        let mut got = hook.events();
        got.sort();
        let mut want = pairs(&[
            ("receiver.created", &a),
            ("receiver.updated", &a),
            ("receiver.unsubscribed", &a),
            ("receiver.subscribed", &a),
            ("receiver.updated", &a),
            ("receiver.deleted", &a),
        ]);
        want.sort();
        assert_eq!(got, want);

        let before = hook.calls("POST").len();
        api.sim
            .set_hook_delivery(HookDeliveryConfig {
                api_events: false,
                ..HookDeliveryConfig::default()
            })
            .unwrap();
        api.upsert(&gid, json!([{"email": "b@example.com"}])).await;
        api.ok(
            Method::PUT,
            &format!("v3/groups.json/{gid}/receivers/b@example.com/deactivate"),
            None,
        )
        .await;
        api.settle().await;
        assert_eq!(
            hook.calls("POST").len(),
            before,
            "API changes are quiet now"
        );
        api.sim.signup(&gid, "c@example.com", &[]).unwrap();
        api.settle().await;
        assert_eq!(
            hook.calls("POST").len(),
            before + 2,
            "a sign-up inside CleverReach still fires"
        );
    }

    #[tokio::test]
    async fn a_chosen_share_of_deliveries_is_dropped_counted_and_never_retried() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let gid = api.group("List").await;
        let rows: Vec<Value> = (0..200)
            .map(|i| json!({"email": format!("r{i}@example.com")}))
            .collect();
        api.upsert(&gid, Value::Array(rows)).await;
        api.hook(&hook.url, "receiver.unsubscribed", &gid).await;
        let (status, _) = api
            .control(
                Method::PUT,
                "hooks/delivery",
                json!({"drop_rate": 0.2, "seed": 11}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        for i in 0..200 {
            api.sim
                .unsubscribe(&gid, &format!("r{i}@example.com"))
                .unwrap();
        }
        api.settle().await;
        let stats = api.sim.hook_stats();
        assert_eq!(stats.events, 200);
        assert_eq!(stats.made + stats.dropped, 200);
        assert!((20..=60).contains(&stats.dropped), "{stats:?}");
        assert_eq!(hook.calls("POST").len() as u64, stats.made);
        // Give a retry every chance to show up: none does.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(hook.calls("POST").len() as u64, stats.made);
        let dropped = api
            .sim
            .hook_deliveries()
            .iter()
            .filter(|d| d.outcome == "dropped")
            .count();
        assert_eq!(dropped as u64, stats.dropped);

        let (_, shown) = api.control(Method::GET, "hooks", Value::Null).await;
        assert_eq!(shown["stats"]["dropped"], stats.dropped);
        assert_eq!(shown["delivery"]["drop_rate"], 0.2);
    }

    #[tokio::test]
    async fn a_delayed_delivery_arrives_late() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let gid = api.group("List").await;
        api.upsert(&gid, json!([{"email": "a@example.com"}])).await;
        api.hook(&hook.url, "receiver", &gid).await;
        api.sim
            .set_hook_delivery(HookDeliveryConfig {
                delay_rate: 1.0,
                delay_ms: 400,
                ..HookDeliveryConfig::default()
            })
            .unwrap();
        let start = Instant::now();
        api.sim.unsubscribe(&gid, "a@example.com").unwrap();
        api.settle().await;
        let posts = hook.calls("POST");
        assert_eq!(posts.len(), 1);
        assert!(
            posts[0].at.duration_since(start) >= Duration::from_millis(400),
            "{:?}",
            posts[0].at.duration_since(start)
        );
        assert_eq!(api.sim.hook_stats().delayed, 1);
        assert_eq!(api.sim.hook_deliveries()[0].delayed_ms, 400);
    }

    #[tokio::test]
    async fn a_delivery_the_endpoint_refuses_counts_as_failed_and_is_not_sent_again() {
        let api = Api::start().await;
        let hook = HookEndpoint::start().await;
        let gid = api.group("List").await;
        api.upsert(&gid, json!([{"email": "a@example.com"}])).await;
        api.hook(&hook.url, "receiver", &gid).await;
        hook.answer(Handshake::Correct, 401);
        api.sim.unsubscribe(&gid, "a@example.com").unwrap();
        api.settle().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(hook.calls("POST").len(), 1);
        let stats = api.sim.hook_stats();
        assert_eq!((stats.made, stats.failed), (1, 1));
        let log = api.sim.hook_deliveries();
        assert_eq!(log[0].outcome, "failed");
        assert_eq!(log[0].status, Some(401));
    }

    #[tokio::test]
    async fn the_delivery_control_refuses_a_share_outside_zero_to_one() {
        let api = Api::start().await;
        let (status, body) = api
            .control(Method::PUT, "hooks/delivery", json!({"drop_rate": 1.5}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("drop_rate")
        );
    }
}
