//! Conformance of the CleverReach simulator with the CleverReach API reference the project
//! works from (§1 OAuth and tokens, §2 groups, §3 receivers, §4 attributes, §5 back-flow and
//! §5.1 webhooks, §6 limits and errors): for every endpoint the simulator serves, the
//! request it accepts and the answer it gives (field names, JSON types, status codes, error
//! bodies), and the requests it sends itself (event hooks). Each check names the section of the
//! reference it follows. The last test proves every endpoint has a check.
//!
//! CleverReach's official SDK is PHP and not installable here, so the shapes are written down
//! from the reference rather than driven by the vendor's client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `cleverreach` module so that `cargo test cleverreach` selects these tests.
mod cleverreach {
    use axum::{
        Router,
        body::Bytes,
        extract::{Query, State},
        http::{HeaderMap, Method as HttpMethod, header},
        response::IntoResponse,
        routing::any,
    };
    use reqwest::{Method, StatusCode};
    use sandbox::cleverreach::{
        CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint,
    };
    use serde_json::{Value, json};
    use std::collections::{BTreeSet, HashMap};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A JSON type as the reference describes a field.
    #[derive(Clone, Copy, Debug)]
    enum T {
        Str,
        /// An id: a string of digits (ref "General conventions": ids are strings).
        Id,
        Int,
        Num,
        Bool,
        Obj,
        Arr,
        /// Anything, present.
        Any,
    }

    fn is(value: &Value, t: T) -> bool {
        match t {
            T::Str => value.is_string(),
            T::Id => value
                .as_str()
                .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())),
            T::Int => value.is_i64() || value.is_u64(),
            T::Num => value.is_number(),
            T::Bool => value.is_boolean(),
            T::Obj => value.is_object(),
            T::Arr => value.is_array(),
            T::Any => true,
        }
    }

    /// `value` is an object with exactly these fields of these types.
    fn exact(section: &str, value: &Value, fields: &[(&str, T)]) {
        let obj = value
            .as_object()
            .unwrap_or_else(|| panic!("{section}: expected an object, got {value}"));
        let got: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
        let want: BTreeSet<&str> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(got, want, "{section}: field names of {value}");
        for (key, t) in fields {
            assert!(
                is(&obj[*key], *t),
                "{section}: {key} should be {t:?} in {value}"
            );
        }
    }

    /// `value` is an object with at least these fields of these types.
    fn has(section: &str, value: &Value, fields: &[(&str, T)]) {
        for (key, t) in fields {
            let field = value
                .get(*key)
                .unwrap_or_else(|| panic!("{section}: {key} missing in {value}"));
            assert!(is(field, *t), "{section}: {key} should be {t:?} in {value}");
        }
    }

    /// The REST error body: `{"error": {"code": <int>, "message": "<text>"}}` (ref §6).
    fn error_body(section: &str, status: StatusCode, body: &Value, code: u16) {
        assert_eq!(status.as_u16(), code, "{section}: {body}");
        exact(section, body, &[("error", T::Obj)]);
        exact(
            section,
            &body["error"],
            &[("code", T::Int), ("message", T::Str)],
        );
        assert_eq!(
            body["error"]["code"], code,
            "{section}: code matches the status"
        );
    }

    const GROUP: &[(&str, T)] = &[
        ("id", T::Id),
        ("name", T::Str),
        ("locked", T::Bool),
        ("backup", T::Bool),
        ("receiver_info", T::Str),
        ("stamp", T::Int),
        ("last_mailing", T::Int),
        ("last_changed", T::Int),
    ];

    /// Receiver object (read), ref §3.3, without the `detail` parts.
    const RECEIVER: &[(&str, T)] = &[
        ("id", T::Id),
        ("email", T::Str),
        ("imported", T::Int),
        ("bounced", T::Int),
        ("group_id", T::Id),
        ("activated", T::Int),
        ("registered", T::Int),
        ("deactivated", T::Int),
        ("last_ip", T::Str),
        ("last_location", T::Str),
        ("last_client", T::Str),
        ("points", T::Num),
        ("stars", T::Num),
        ("source", T::Str),
        ("attributes", T::Obj),
        ("global_attributes", T::Obj),
        ("active", T::Bool),
        ("conversion_rate", T::Num),
        ("open_rate", T::Num),
        ("click_rate", T::Num),
    ];

    fn receiver_with(detail: &[(&'static str, T)]) -> Vec<(&'static str, T)> {
        RECEIVER
            .iter()
            .copied()
            .chain(detail.iter().copied())
            .collect()
    }

    const FULL: &[(&str, T)] = &[("tags", T::Arr), ("events", T::Arr), ("orders", T::Arr)];

    const ATTRIBUTE: &[(&str, T)] = &[
        ("id", T::Int),
        ("groups_id", T::Int),
        ("name", T::Str),
        ("description", T::Str),
        ("preview_value", T::Str),
        ("default_value", T::Str),
        ("type", T::Str),
        ("tag", T::Str),
    ];

    struct Api {
        sim: CleverReachSim,
        http: reqwest::Client,
        token: String,
    }

    impl Api {
        async fn start() -> Api {
            let sim = CleverReachSim::spawn(CleverReachSimConfig {
                pessimistic: false,
                ..CleverReachSimConfig::default()
            })
            .await
            .unwrap();
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let mut api = Api {
                sim,
                http,
                token: String::new(),
            };
            api.token = api.new_token().await["access_token"]
                .as_str()
                .unwrap()
                .to_string();
            api
        }

        async fn new_token(&self) -> Value {
            let resp = self
                .http
                .post(self.url("oauth/token.php"))
                .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            resp.json().await.unwrap()
        }

        fn url(&self, path: &str) -> String {
            format!("{}{}", self.sim.base_url(), path)
        }

        async fn send(&self, req: reqwest::RequestBuilder) -> (StatusCode, Value) {
            let resp = req.send().await.unwrap();
            let status = resp.status();
            let text = resp.text().await.unwrap();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }

        async fn call(
            &self,
            method: Method,
            path: &str,
            body: Option<Value>,
        ) -> (StatusCode, Value) {
            let mut req = self
                .http
                .request(method, self.url(path))
                .bearer_auth(&self.token);
            if let Some(body) = body {
                req = req.json(&body);
            }
            self.send(req).await
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
    }

    // ---- §1 OAuth / tokens ----------------------------------------------------------------

    async fn oauth_token_and_authorize(api: &Api) {
        let s = "§1 OAuth: token response";
        let token = api.new_token().await;
        exact(
            s,
            &token,
            &[
                ("access_token", T::Str),
                ("expires_in", T::Int),
                ("refresh_token", T::Str),
                ("scope", T::Str),
                ("token_type", T::Str),
            ],
        );
        let s = "§1 OAuth: refresh_token grant (form, Basic auth) rotates the refresh token";
        let (status, refreshed) = api
            .send(
                api.http
                    .post(api.url("oauth/token.php"))
                    .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
                    .form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", token["refresh_token"].as_str().unwrap()),
                    ]),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{s}");
        assert_ne!(refreshed["refresh_token"], token["refresh_token"], "{s}");
        let s = "§1 OAuth / §6: OAuth error shape";
        let (status, err) = api
            .send(
                api.http
                    .post(api.url("oauth/token.php"))
                    .basic_auth(DEFAULT_CLIENT_ID, Some("wrong"))
                    .form(&[("grant_type", "client_credentials")]),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{s}");
        exact(s, &err, &[("error", T::Str), ("error_description", T::Str)]);
        assert_eq!(err["error"], "invalid_client", "{s}");

        let s = "§1 OAuth: authorize URL with response_type=code and grant=basic";
        let resp = api
            .http
            .get(api.url("oauth/authorize.php"))
            .query(&[
                ("response_type", "code"),
                ("grant", "basic"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("redirect_uri", "https://crm.example.com/connect"),
                ("state", "xyz"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{s}");
        assert!(resp.text().await.unwrap().contains("Authorize"), "{s}");
    }

    async fn token_utilities(api: &Api) {
        let s = "§1 token utilities: GET /v3/debug/ttl.json → {ttl}";
        let ttl = api.ok(Method::GET, "v3/debug/ttl.json", None).await;
        exact(s, &ttl, &[("ttl", T::Int)]);
        assert!(ttl["ttl"].as_i64().unwrap() > 0, "{s}");
        let s = "§1 token utilities: GET /v3/debug/validate.json → 2xx";
        let (status, _) = api.call(Method::GET, "v3/debug/validate.json", None).await;
        assert!(status.is_success(), "{s}");
        let s = "§1 token utilities: GET /v3/debug/whoami.json";
        let me = api.ok(Method::GET, "v3/debug/whoami.json", None).await;
        has(
            s,
            &me,
            &[
                ("id", T::Any),
                ("name", T::Str),
                ("firstname", T::Str),
                ("email", T::Str),
                ("login_domain", T::Str),
            ],
        );
        let s = "§1 token utilities: GET /v3/debug/ping.json needs no token";
        let (status, _) = api.send(api.http.get(api.url("v3/debug/ping.json"))).await;
        assert_eq!(status, StatusCode::OK, "{s}");
    }

    async fn token_revoke(api: &Api) {
        let s = "§1 token utilities: DELETE /v3/oauth/token.json revokes the current token";
        for path in ["v3/oauth/token.json", "oauth/token"] {
            let token = api.new_token().await["access_token"]
                .as_str()
                .unwrap()
                .to_string();
            let (status, body) = api
                .send(api.http.delete(api.url(path)).bearer_auth(&token))
                .await;
            assert_eq!(status, StatusCode::OK, "{s} ({path}): {body}");
            assert_eq!(body, json!(true), "{s} ({path})");
            let (status, body) = api
                .send(api.http.get(api.url("v3/groups.json")).bearer_auth(&token))
                .await;
            error_body(
                "§1 401 handling: a revoked token is refused",
                status,
                &body,
                401,
            );
        }
    }

    // ---- §2 Groups -------------------------------------------------------------------------

    async fn groups(api: &Api) {
        let s = "§2 Groups: create with name, locked, backup, receiver_info → group object";
        let g = api
            .ok(
                Method::POST,
                "v3/groups.json",
                Some(json!({"name": "CRM: News", "locked": true, "backup": true,
                            "receiver_info": "[2024] Automatically created"})),
            )
            .await;
        exact(s, &g, GROUP);
        let id = g["id"].as_str().unwrap().to_string();
        let s = "§2 Groups: list → array of group objects (with and without .json)";
        for path in ["v3/groups.json", "v3/groups"] {
            let list = api.ok(Method::GET, path, None).await;
            for item in list.as_array().unwrap() {
                exact(s, item, GROUP);
            }
        }
        let s = "§2 Groups: get one";
        exact(
            s,
            &api.ok(Method::GET, &format!("v3/groups.json/{id}"), None)
                .await,
            GROUP,
        );
        let s = "§2 Groups: rename/update → group object";
        let renamed = api
            .ok(
                Method::PUT,
                &format!("v3/groups.json/{id}"),
                Some(json!({"name": "CRM: News 2"})),
            )
            .await;
        exact(s, &renamed, GROUP);
        assert_eq!(renamed["name"], "CRM: News 2", "{s}");
        let s = "§2 Groups: stats";
        let stats = api
            .ok(Method::GET, &format!("v3/groups.json/{id}/stats"), None)
            .await;
        exact(
            s,
            &stats,
            &[
                ("total_count", T::Int),
                ("inactive_count", T::Int),
                ("active_count", T::Int),
                ("bounce_count", T::Int),
                ("avg_points", T::Num),
                ("quality", T::Num),
                ("time", T::Int),
                ("order_count", T::Int),
            ],
        );
        let s = "§2 Groups: delete → true, then §6 404 error body";
        assert_eq!(
            api.ok(Method::DELETE, &format!("v3/groups.json/{id}"), None)
                .await,
            json!(true),
            "{s}"
        );
        let (status, body) = api
            .call(Method::GET, &format!("v3/groups.json/{id}"), None)
            .await;
        error_body(s, status, &body, 404);
        assert_eq!(body["error"]["message"], "Not Found: invalid group");
    }

    // ---- §3.1 Receivers: writes -------------------------------------------------------------

    async fn receiver_writes(api: &Api) {
        let gid = api.group("Writes").await;
        let now = chrono::Utc::now().timestamp();
        let s =
            "§3.1 upsert many: one entry per input, {status, id} or a bare error string, HTTP 200";
        let rows = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/upsert"),
                Some(json!([
                    {"email": "a@example.com", "registered": now, "activated": now, "source": "CRM",
                     "global_attributes": {}, "attributes": {}},
                    {"email": "broken"},
                ])),
            )
            .await;
        assert_eq!(rows.as_array().unwrap().len(), 2, "{s}");
        exact(s, &rows[0], &[("status", T::Str), ("id", T::Id)]);
        assert!(rows[1].is_string(), "{s}: {}", rows[1]);
        let s = "§3.1 upsertplus: array of full receiver objects";
        let plus = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/upsertplus"),
                Some(json!([{"email": "a@example.com", "tags": ["CRM-List.x"]}])),
            )
            .await;
        exact(s, &plus[0], &receiver_with(FULL));
        let s = "§3.1 insert many: {status:\"insert success\"} or \"duplicate address …\"";
        let ins = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/insert"),
                Some(json!([{"email": "a@example.com"}, {"email": "b@example.com"}])),
            )
            .await;
        assert!(
            ins[0].as_str().unwrap().starts_with("duplicate address"),
            "{s}"
        );
        exact(s, &ins[1], &[("status", T::Str), ("id", T::Id)]);
        assert_eq!(ins[1]["status"], "insert success", "{s}");
        let s = "§3.1 add one: POST one receiver object → receiver object";
        let added = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers"),
                Some(json!({"email": "c@example.com", "registered": now, "activated": now})),
            )
            .await;
        exact(s, &added, &receiver_with(FULL));
        let (status, body) = api
            .call(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers"),
                Some(json!({"email": "c@example.com"})),
            )
            .await;
        error_body("§6 409 create conflict", status, &body, 409);
        let s = "§3.1 update one: PUT partial receiver → receiver object";
        let updated = api
            .ok(
                Method::PUT,
                &format!("v3/groups.json/{gid}/receivers/c@example.com"),
                Some(json!({"source": "CRM 2", "attributes": {}, "global_attributes": {}, "tags": ["t.x"]})),
            )
            .await;
        exact(s, &updated, &receiver_with(FULL));
        let s = "§3.1 activate / deactivate → true";
        for action in ["deactivate", "activate"] {
            assert_eq!(
                api.ok(
                    Method::PUT,
                    &format!("v3/groups.json/{gid}/receivers/c@example.com/{action}"),
                    None
                )
                .await,
                json!(true),
                "{s}"
            );
        }
        let s = "§3 change an address: PUT /receivers/{old}/email {email}";
        api.ok(
            Method::PUT,
            "v3/receivers.json/c@example.com/email",
            Some(json!({"email": "c2@example.com"})),
        )
        .await;
        assert!(api.sim.receiver(&gid, "c2@example.com").is_some(), "{s}");
        let s = "§3.1 remove many: array of {status:\"success\"}";
        let removed = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/delete"),
                Some(json!(["b@example.com"])),
            )
            .await;
        exact(s, &removed[0], &[("status", T::Str)]);
        assert_eq!(removed[0]["status"], "success", "{s}");
        let s = "§3.1 remove from group: true; unknown → 404 \"Not Found: invalid receiver\"";
        let path = format!("v3/groups.json/{gid}/receivers/c2@example.com");
        assert_eq!(
            api.ok(Method::DELETE, &path, None).await,
            json!(true),
            "{s}"
        );
        let (status, body) = api.call(Method::DELETE, &path, None).await;
        error_body(s, status, &body, 404);
        assert_eq!(
            body["error"]["message"], "Not Found: invalid receiver",
            "{s}"
        );
    }

    async fn batch_limits(api: &Api) {
        let s = "§3.2 batch sizes / §6 413: above 1000 rows per upsert answers 413";
        let gid = api.group("Limits").await;
        let rows: Vec<Value> = (0..1001)
            .map(|i| json!({"email": format!("r{i}@example.com")}))
            .collect();
        let (status, body) = api
            .call(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/upsert"),
                Some(Value::Array(rows)),
            )
            .await;
        error_body(s, status, &body, 413);
    }

    // ---- §3.3 Receivers: reads --------------------------------------------------------------

    async fn receiver_reads(api: &Api) {
        let gid = api.group("Reads").await;
        let rows: Vec<Value> = (0..3)
            .map(|i| json!({"email": format!("r{i}@example.com")}))
            .collect();
        let written = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/upsert"),
                Some(Value::Array(rows)),
            )
            .await;
        let id = written[0]["id"].as_str().unwrap().to_string();
        let s =
            "§3.3 get receiver in group (by id or e-mail): full object incl. events, tags, orders";
        for key in [id.as_str(), "r0@example.com"] {
            let r = api
                .ok(
                    Method::GET,
                    &format!("v3/groups.json/{gid}/receivers/{key}"),
                    None,
                )
                .await;
            exact(s, &r, &receiver_with(FULL));
            exact(
                "§3.3 event entry",
                &r["events"][0],
                &[
                    ("stamp", T::Int),
                    ("type", T::Str),
                    ("type_id", T::Str),
                    ("value", T::Str),
                    ("mailing_id", T::Id),
                    ("groups_id", T::Id),
                ],
            );
        }
        let s = "§3.3 get receiver (pool), optional group_id";
        exact(
            s,
            &api.ok(Method::GET, "v3/receivers.json/r0@example.com", None)
                .await,
            &receiver_with(FULL),
        );
        exact(
            s,
            &api.ok(
                Method::GET,
                &format!("v3/receivers.json/{id}?group_id={gid}"),
                None,
            )
            .await,
            &receiver_with(FULL),
        );
        let s = "§3.3 list group: page 0-based, pagesize, type, detail bitmask";
        for (detail, extra) in [
            (0, vec![]),
            (1, vec![("events", T::Arr)]),
            (2, vec![("orders", T::Arr)]),
            (4, vec![("tags", T::Arr)]),
            (7, FULL.to_vec()),
        ] {
            let page = api
                .ok(
                    Method::GET,
                    &format!(
                        "v3/groups.json/{gid}/receivers?page=0&pagesize=2&type=all&detail={detail}"
                    ),
                    None,
                )
                .await;
            assert_eq!(page.as_array().unwrap().len(), 2, "{s}");
            exact(s, &page[0], &receiver_with(&extra));
        }
        let last = api
            .ok(
                Method::GET,
                &format!(
                    "v3/groups.json/{gid}/receivers?page=1&pagesize=2&order_by=registered%20DESC"
                ),
                None,
            )
            .await;
        assert_eq!(
            last.as_array().unwrap().len(),
            1,
            "{s}: the last page is short"
        );
        let (status, body) = api
            .call(
                Method::GET,
                &format!("v3/groups.json/{gid}/receivers?pagesize=5001"),
                None,
            )
            .await;
        error_body("§3.3 pagesize max 5000 / §6", status, &body, 400);
        let (status, body) = api
            .call(
                Method::GET,
                &format!("v3/groups.json/{gid}/receivers?type=sometimes"),
                None,
            )
            .await;
        error_body(
            "§3.3 type ∈ all, active, inactive, bounce",
            status,
            &body,
            400,
        );
        let s = "§3.3 runtime filter: {groups, operator, rules, activeonly, orderby, detail, page, pagesize}";
        let found = api
            .ok(
                Method::POST,
                "v3/receivers.json/filter.json",
                Some(json!({"groups": [gid], "operator": "AND",
                    "rules": [{"field": "email", "logic": "eq", "condition": "r1@example.com"}],
                    "activeonly": false, "orderby": "activated desc", "detail": 0,
                    "page": 0, "pagesize": 10})),
            )
            .await;
        assert_eq!(found.as_array().unwrap().len(), 1, "{s}");
        exact(s, &found[0], RECEIVER);
    }

    // ---- §4 Attributes -----------------------------------------------------------------------

    async fn attributes(api: &Api) {
        let s = "§4 create global: {name, type, description?} → attribute object; 409 if it exists";
        let attr = api
            .ok(
                Method::POST,
                "v3/attributes.json",
                Some(json!({"name": "firstname", "type": "text", "description": "First name"})),
            )
            .await;
        exact(s, &attr, ATTRIBUTE);
        assert_eq!(attr["groups_id"], 0, "{s}: 0 for global");
        assert_eq!(attr["tag"], "{FIRSTNAME}", "{s}");
        let (status, body) = api
            .call(
                Method::POST,
                "v3/attributes.json",
                Some(json!({"name": "firstname", "type": "text"})),
            )
            .await;
        error_body(s, status, &body, 409);
        let s = "§4 types: text, number, gender, date";
        for kind in ["number", "gender", "date"] {
            api.ok(
                Method::POST,
                "v3/attributes.json",
                Some(json!({"name": format!("a_{kind}"), "type": kind})),
            )
            .await;
        }
        let (status, body) = api
            .call(
                Method::POST,
                "v3/attributes.json",
                Some(json!({"name": "x", "type": "colour"})),
            )
            .await;
        error_body(s, status, &body, 400);
        let s = "§4 list global: GET /attributes returns globals only";
        let list = api.ok(Method::GET, "v3/attributes.json", None).await;
        for a in list.as_array().unwrap() {
            exact(s, a, ATTRIBUTE);
            assert_eq!(a["groups_id"], 0, "{s}");
        }
        let gid = api.group("Attrs").await;
        let s = "§4 create local: POST /groups/{gid}/attributes (or /attributes with group_id)";
        let local = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/attributes"),
                Some(json!({"name": "membership", "type": "text"})),
            )
            .await;
        exact(s, &local, ATTRIBUTE);
        assert_eq!(local["groups_id"], gid.parse::<u64>().unwrap(), "{s}");
        let s = "§4 list local: GET /attributes?group_id= or /groups/{gid}/attributes";
        for path in [
            format!("v3/attributes.json?group_id={gid}"),
            format!("v3/groups.json/{gid}/attributes"),
        ] {
            let list = api.ok(Method::GET, &path, None).await;
            assert_eq!(list.as_array().unwrap().len(), 1, "{s}");
            exact(s, &list[0], ATTRIBUTE);
        }
        let s = "§4 receiver payloads: attributes = group-local, global_attributes = account-wide, keyed by name";
        api.ok(
            Method::POST,
            &format!("v3/groups.json/{gid}/receivers/upsert"),
            Some(
                json!([{"email": "a@example.com", "attributes": {"membership": "static"},
                         "global_attributes": {"firstname": "Anna"}}]),
            ),
        )
        .await;
        let r = api
            .ok(
                Method::GET,
                &format!("v3/groups.json/{gid}/receivers/a@example.com"),
                None,
            )
            .await;
        assert_eq!(r["attributes"]["membership"], "static", "{s}");
        assert_eq!(r["global_attributes"]["firstname"], "Anna", "{s}");
        let s = "§4 delete: DELETE /attributes/{id}, DELETE /groups/{gid}/attributes/{id}";
        assert_eq!(
            api.ok(
                Method::DELETE,
                &format!("v3/groups.json/{gid}/attributes/{}", local["id"]),
                None
            )
            .await,
            json!(true),
            "{s}"
        );
        assert_eq!(
            api.ok(
                Method::DELETE,
                &format!("v3/attributes.json/{}", attr["id"]),
                None
            )
            .await,
            json!(true),
            "{s}"
        );
        let (status, body) = api
            .call(
                Method::DELETE,
                &format!("v3/attributes.json/{}", attr["id"]),
                None,
            )
            .await;
        error_body(s, status, &body, 404);
    }

    // ---- §5 Back-flow: bounces, blacklist ------------------------------------------------------

    async fn bounces_and_blacklist(api: &Api) {
        api.sim.bounce("gone@example.com").unwrap();
        let s = "§5 bounces (account): GET /bounces.json?page&pagesize (≤ 500), note `occurences`";
        let bounces = api
            .ok(Method::GET, "v3/bounces.json?page=0&pagesize=500", None)
            .await;
        exact(
            s,
            &bounces[0],
            &[
                ("email", T::Str),
                ("category", T::Str),
                ("occurences", T::Int),
                ("last_update", T::Int),
                ("last_update_gmt", T::Str),
                ("expires_by", T::Int),
                ("expires_by_gmt", T::Str),
                ("bounce_message", T::Str),
                ("type", T::Str),
                ("type_id", T::Str),
            ],
        );
        let entry: &[(&str, T)] = &[("email", T::Str), ("comment", T::Str), ("stamp", T::Int)];
        let s = "§5 blacklist: POST {email, comment} → entry";
        exact(
            s,
            &api.ok(
                Method::POST,
                "v3/blacklist.json",
                Some(json!({"email": "no@example.com", "comment": "phone"})),
            )
            .await,
            entry,
        );
        let s = "§5 blacklist: GET /blacklist.json → [{email, comment, stamp}]";
        let list = api.ok(Method::GET, "v3/blacklist.json", None).await;
        exact(s, &list[0], entry);
        let s = "§5 blacklist: GET /blacklist.json/{email}";
        exact(
            s,
            &api.ok(Method::GET, "v3/blacklist.json/no@example.com", None)
                .await,
            entry,
        );
        let s = "§5 blacklist: DELETE /blacklist.json/{email}";
        assert_eq!(
            api.ok(Method::DELETE, "v3/blacklist.json/no@example.com", None)
                .await,
            json!(true),
            "{s}"
        );
        let (status, body) = api
            .call(Method::GET, "v3/blacklist.json/no@example.com", None)
            .await;
        error_body(s, status, &body, 404);
    }

    // ---- §5.1 Webhooks ------------------------------------------------------------------------

    /// One call the simulator made to the hook endpoint: method, query, headers, body.
    type HookCall = (String, HashMap<String, String>, HeaderMap, Bytes);

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<HookCall>>>);

    const VERIFY: &str = "myMegaFancyverifyToken";

    async fn hook_endpoint(
        State(seen): State<Seen>,
        method: HttpMethod,
        Query(query): Query<HashMap<String, String>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> impl IntoResponse {
        let secret = query.get("secret").cloned().unwrap_or_default();
        seen.0
            .lock()
            .unwrap()
            .push((method.to_string(), query, headers, body));
        (
            [(header::CONTENT_TYPE, "text/plain")],
            format!("{VERIFY} {secret}"),
        )
    }

    async fn webhooks(api: &Api) {
        let seen = Seen::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // A query string of its own, as in the official core's test: the secret is added to it.
        let url = format!(
            "http://{}/hookhandler?param1=paramvalue",
            listener.local_addr().unwrap()
        );
        let app = Router::new()
            .route("/hookhandler", any(hook_endpoint))
            .with_state(seen.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let gid = api.group("Hooks").await;
        let written = api
            .ok(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/upsert"),
                Some(json!([{"email": "a@example.com"}])),
            )
            .await;
        let pool_id = written[0]["id"].as_str().unwrap().to_string();

        let s = "§5.1 register: POST /hooks/eventhook {url, event, condition, verify} → {success, call_token (64), secret (32)}";
        let answer = api
            .ok(
                Method::POST,
                "hooks/eventhook",
                Some(json!({"url": url, "event": "receiver", "condition": gid, "verify": VERIFY})),
            )
            .await;
        exact(
            s,
            &answer,
            &[
                ("success", T::Bool),
                ("call_token", T::Str),
                ("secret", T::Str),
            ],
        );
        assert_eq!(answer["call_token"].as_str().unwrap().len(), 64, "{s}");
        assert_eq!(answer["secret"].as_str().unwrap().len(), 32, "{s}");
        let call_token = answer["call_token"].as_str().unwrap().to_string();
        {
            let s = "§5.1 verification handshake: GET <url>?secret=<s> on the registered URL";
            let calls = seen.0.lock().unwrap();
            assert_eq!(calls.len(), 1, "{s}");
            let (method, query, _, _) = &calls[0];
            assert_eq!(method, "GET", "{s}");
            assert!(query.contains_key("secret"), "{s}");
            assert_eq!(
                query.get("param1").map(String::as_str),
                Some("paramvalue"),
                "{s}"
            );
        }
        let s = "§5.1 list: GET /hooks/eventhook";
        let list = api.ok(Method::GET, "hooks/eventhook", None).await;
        exact(
            s,
            &list[0],
            &[("event", T::Str), ("condition", T::Id), ("url", T::Str)],
        );

        api.sim.unsubscribe(&gid, "a@example.com").unwrap();
        assert!(
            api.sim
                .wait_for_hook_deliveries(Duration::from_secs(10))
                .await
        );
        {
            let s = "§5.1 delivery: POST <url> {event, condition, payload:{pool_id, group_id}} with X-CR-Calltoken";
            let calls = seen.0.lock().unwrap();
            let (method, _, headers, body) = calls.last().unwrap();
            assert_eq!(method, "POST", "{s}");
            assert_eq!(
                headers.get("x-cr-calltoken").and_then(|v| v.to_str().ok()),
                Some(call_token.as_str()),
                "{s}"
            );
            let body: Value = serde_json::from_slice(body).unwrap();
            exact(
                s,
                &body,
                &[("event", T::Str), ("condition", T::Id), ("payload", T::Obj)],
            );
            exact(
                s,
                &body["payload"],
                &[("pool_id", T::Id), ("group_id", T::Id)],
            );
            assert_eq!(body["event"], "receiver.unsubscribed", "{s}");
            assert_eq!(body["condition"], gid.as_str(), "{s}");
            assert_eq!(body["payload"]["pool_id"], pool_id.as_str(), "{s}");
        }
        let s = "§5.1 delete: DELETE /hooks/eventhook/{event}?condition={group_id}";
        assert_eq!(
            api.ok(
                Method::DELETE,
                &format!("hooks/eventhook/receiver?condition={gid}"),
                None
            )
            .await,
            json!(true),
            "{s}"
        );
        assert_eq!(
            api.ok(Method::GET, "hooks/eventhook", None).await,
            json!([])
        );
        server.abort();
    }

    // ---- §6 Limits and errors -----------------------------------------------------------------

    async fn errors(api: &Api) {
        let s = "§6 401: a missing or unknown token";
        for token in [None, Some("not-a-token")] {
            let mut req = api.http.get(api.url("v3/groups.json"));
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            let (status, body) = api.send(req).await;
            error_body(s, status, &body, 401);
        }
        let s = "§6 error body on an unknown path and on a method the path does not have";
        let (status, body) = api.call(Method::GET, "v3/nothing.json", None).await;
        error_body(s, status, &body, 404);
        let (status, body) = api.call(Method::PATCH, "v3/groups.json", None).await;
        error_body(s, status, &body, 405);
        let s = "§6 400: a body that is not JSON";
        let (status, body) = api
            .send(
                api.http
                    .post(api.url("v3/groups.json"))
                    .bearer_auth(&api.token)
                    .header("content-type", "application/json")
                    .body("{not json"),
            )
            .await;
        error_body(s, status, &body, 400);
        let s = "§6 per-row errors: inside a 200 upsert answer as strings";
        let gid = api.group("Errors").await;
        let (status, rows) = api
            .call(
                Method::POST,
                &format!("v3/groups.json/{gid}/receivers/upsert"),
                Some(json!([{"email": "x@example.com"}, {"email": "x@example.com"}, {"email": "bad"}])),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{s}");
        assert_eq!(rows[1], json!("duplicate address 'x@example.com'"), "{s}");
        assert_eq!(rows[2], json!("invalid address 'bad';"), "{s}");
    }

    /// Features the simulator leaves out answer an error in the §6 shape, never a success.
    #[tokio::test]
    async fn features_left_out_answer_an_error_never_a_silent_success() {
        let api = Api::start().await;
        let gid = api.group("Left out").await;
        api.ok(
            Method::POST,
            &format!("v3/groups.json/{gid}/receivers/upsert"),
            Some(json!([{"email": "a@example.com"}])),
        )
        .await;
        let cases: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("v3/groups.json/{gid}/forms"), None),
            (
                Method::POST,
                "v3/forms.json/1/send/activate".into(),
                Some(json!({"email": "a@example.com"})),
            ),
            (Method::GET, format!("v3/groups.json/{gid}/filters"), None),
            (Method::GET, "v3/receivers/tags.json".into(), None),
            (Method::GET, "v3/tags.json".into(), None),
            (Method::GET, "v3/reports.json".into(), None),
            (Method::GET, format!("v3/groups.json/{gid}/blacklist"), None),
            (
                Method::GET,
                format!("v3/groups.json/{gid}/advancedstats"),
                None,
            ),
            (Method::DELETE, format!("v3/groups.json/{gid}/clear"), None),
            (
                Method::GET,
                format!("v3/groups.json/{gid}/receivers/a@example.com/events"),
                None,
            ),
            (
                Method::DELETE,
                "v3/receivers.json/a@example.com".into(),
                None,
            ),
            (
                Method::POST,
                "v3/receivers/delete.json".into(),
                Some(json!({"receivers": ["a@example.com"]})),
            ),
            (
                Method::PUT,
                "v3/receivers.json/a@example.com/attributes/1".into(),
                Some(json!({"value": "x"})),
            ),
            (
                Method::POST,
                "v3/receivers/isvalid.json".into(),
                Some(json!({"emails": ["a@example.com"]})),
            ),
            (
                Method::POST,
                "v3/blacklist/validate.json".into(),
                Some(json!(["a@example.com"])),
            ),
            (Method::GET, "v3/receivers/bounced.json".into(), None),
            (Method::GET, "v3/debug/exchange.json".into(), None),
            (Method::GET, "v3/clients/1/token".into(), None),
            (
                Method::POST,
                "v3/oauth/finish.json".into(),
                Some(json!({"finished": true})),
            ),
            (
                Method::PUT,
                "v3/attributes.json/1".into(),
                Some(json!({"type": "text"})),
            ),
            (
                Method::POST,
                "hooks/eventhook".into(),
                Some(
                    json!({"url": "https://example.com/h", "event": "group", "condition": gid, "verify": "0123456789"}),
                ),
            ),
        ];
        for (method, path, body) in cases {
            let (status, answer) = api.call(method.clone(), &path, body).await;
            assert!(
                [400, 404, 405].contains(&status.as_u16()),
                "{method} {path}: {status} {answer}"
            );
            error_body(
                &format!("§6 {method} {path}"),
                status,
                &answer,
                status.as_u16(),
            );
        }
        assert!(api.sim.receiver(&gid, "a@example.com").unwrap().active);
    }

    // ---- the tests ----------------------------------------------------------------------------

    macro_rules! check {
        ($($name:ident => $check:ident),* $(,)?) => {
            $(
                #[tokio::test]
                async fn $name() {
                    let api = Api::start().await;
                    $check(&api).await;
                }
            )*

            /// Runs every check against one simulator.
            async fn all(api: &Api) {
                $( $check(api).await; )*
            }
        };
    }

    check! {
        oauth_tokens_refresh_errors_and_authorize_follow_section_1 => oauth_token_and_authorize,
        the_token_utilities_follow_section_1 => token_utilities,
        token_revocation_follows_section_1 => token_revoke,
        groups_follow_section_2 => groups,
        receiver_writes_follow_section_3_1 => receiver_writes,
        batch_limits_follow_section_3_2 => batch_limits,
        receiver_reads_follow_section_3_3 => receiver_reads,
        attributes_follow_section_4 => attributes,
        bounces_and_the_blacklist_follow_section_5 => bounces_and_blacklist,
        event_hooks_follow_section_5_1 => webhooks,
        errors_follow_section_6 => errors,
    }

    #[tokio::test]
    async fn every_endpoint_the_simulator_serves_has_a_conformance_check() {
        let api = Api::start().await;
        all(&api).await;
        let stats = api.sim.stats();
        let missing: Vec<Endpoint> = Endpoint::ALL
            .into_iter()
            .filter(|e| stats.calls(*e) == 0)
            .collect();
        assert!(missing.is_empty(), "endpoints without a check: {missing:?}");
    }
}
