//! CleverReach simulator, OAuth side: token grants, refresh rotation, expiry, and the
//! browser authorize flow, checked on the wire against ref §1.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `cleverreach` module so that `cargo test cleverreach` selects these tests.
mod cleverreach {
    use reqwest::StatusCode;
    use sandbox::cleverreach::{
        CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    };
    use serde_json::{Value, json};

    async fn sim() -> CleverReachSim {
        CleverReachSim::spawn(CleverReachSimConfig::default())
            .await
            .unwrap()
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    async fn json_of(resp: reqwest::Response) -> (StatusCode, Value) {
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn client_credentials(sim: &CleverReachSim) -> Value {
        let resp = http()
            .post(format!("{}oauth/token.php", sim.base_url()))
            .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn refresh(sim: &CleverReachSim, refresh_token: &str) -> (StatusCode, Value) {
        let resp = http()
            .post(format!("{}oauth/token.php", sim.base_url()))
            .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .unwrap();
        json_of(resp).await
    }

    async fn whoami(sim: &CleverReachSim, token: &str) -> (StatusCode, Value) {
        let resp = http()
            .get(format!("{}v3/debug/whoami.json", sim.base_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        json_of(resp).await
    }

    #[tokio::test]
    async fn client_credentials_give_a_bearer_token_pair() {
        let sim = sim().await;
        let body = client_credentials(&sim).await;
        assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(
            body["refresh_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        );
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 3600);
        assert!(body["scope"].is_string());
        let (status, me) = whoami(&sim, body["access_token"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["name"], "Sandbox Newsletter GmbH");
        assert!(me["login_domain"].is_string());
        assert_eq!(sim.token_grants().client_credentials, 1);
    }

    #[tokio::test]
    async fn client_credentials_are_accepted_as_json_too() {
        let sim = sim().await;
        let resp = http()
            .post(format!("{}oauth/token.php", sim.base_url()))
            .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
            .json(&json!({"grant_type": "client_credentials"}))
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["access_token"].is_string());
    }

    #[tokio::test]
    async fn a_wrong_client_secret_is_refused_as_invalid_client() {
        let sim = sim().await;
        let resp = http()
            .post(format!("{}oauth/token.php", sim.base_url()))
            .basic_auth(DEFAULT_CLIENT_ID, Some("wrong"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "invalid_client");
        assert!(body["error_description"].is_string());
    }

    #[tokio::test]
    async fn a_refresh_rotates_the_refresh_token_and_the_old_one_is_refused() {
        let sim = sim().await;
        let first = client_credentials(&sim).await;
        let old = first["refresh_token"].as_str().unwrap().to_string();

        let (status, second) = refresh(&sim, &old).await;
        assert_eq!(status, StatusCode::OK, "{second}");
        let new = second["refresh_token"].as_str().unwrap();
        assert_ne!(new, old);
        assert_ne!(second["access_token"], first["access_token"]);

        let (status, refused) = refresh(&sim, &old).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(refused["error"], "invalid_grant");
        assert!(refused["error_description"].is_string());

        let (status, _) = refresh(&sim, new).await;
        assert_eq!(status, StatusCode::OK);
        let grants = sim.token_grants();
        assert_eq!(grants.refresh_token, 2);
        assert_eq!(grants.refused_refresh, 1);
    }

    #[tokio::test]
    async fn a_refresh_with_the_client_in_the_form_body_works() {
        let sim = sim().await;
        let first = client_credentials(&sim).await;
        let resp = http()
            .post(format!("{}oauth/token.php", sim.base_url()))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", first["refresh_token"].as_str().unwrap()),
                ("client_id", DEFAULT_CLIENT_ID),
                ("client_secret", DEFAULT_CLIENT_SECRET),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn revoked_refresh_tokens_are_refused() {
        let sim = sim().await;
        let first = client_credentials(&sim).await;
        sim.revoke_refresh_tokens();
        let (status, body) = refresh(&sim, first["refresh_token"].as_str().unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_grant");
    }

    #[tokio::test]
    async fn an_expired_access_token_gets_401_with_the_cleverreach_error_body() {
        let sim = sim().await;
        let tokens = client_credentials(&sim).await;
        let token = tokens["access_token"].as_str().unwrap();
        sim.expire_access_tokens();
        let (status, body) = whoami(&sim, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            json!({"error": {"code": 401, "message": "Unauthorized: token expired"}})
        );
        let (status, _) = whoami(&sim, "made-up").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn ping_needs_no_token_and_ttl_reports_the_remaining_lifetime() {
        let sim = sim().await;
        let resp = http()
            .get(format!("{}v3/debug/ping.json", sim.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let tokens = client_credentials(&sim).await;
        let resp = http()
            .get(format!("{}v3/debug/ttl", sim.base_url()))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let (_, body) = json_of(resp).await;
        let ttl = body["ttl"].as_i64().unwrap();
        assert!((3590..=3600).contains(&ttl), "{ttl}");
    }

    /// Pulls `name="x" value="y"` pairs out of the consent page's form.
    fn hidden_fields(html: &str) -> Vec<(String, String)> {
        html.split("<input")
            .skip(1)
            .filter_map(|chunk| {
                let name = chunk.split("name=\"").nth(1)?.split('"').next()?;
                let value = chunk.split("value=\"").nth(1)?.split('"').next()?;
                Some((name.to_string(), value.replace("&amp;", "&")))
            })
            .collect()
    }

    #[tokio::test]
    async fn the_authorize_button_redirects_back_with_a_code_and_the_state() {
        let sim = sim().await;
        let redirect = "https://connector.example/connect/callback";
        let page = http()
            .get(format!("{}oauth/authorize.php", sim.base_url()))
            .query(&[
                ("response_type", "code"),
                ("grant", "basic"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("redirect_uri", redirect),
                ("state", "csrf-42"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains("Authorize"));
        assert!(html.contains("method=\"post\""));

        let resp = http()
            .post(format!("{}oauth/authorize.php", sim.base_url()))
            .form(&hidden_fields(&html))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_redirection(), "{}", resp.status());
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let target = url::Url::parse(&location).unwrap();
        assert!(location.starts_with(redirect));
        let query: std::collections::HashMap<_, _> = target.query_pairs().into_owned().collect();
        assert_eq!(query["state"], "csrf-42");
        let code = query["code"].clone();

        // The official cores url-encode redirect_uri inside the JSON body; that must work too.
        let exchange = |code: String, redirect: String| {
            let sim_base = sim.base_url();
            async move {
                let resp = http()
                    .post(format!("{sim_base}oauth/token.php"))
                    .json(&json!({
                        "grant_type": "authorization_code",
                        "client_id": DEFAULT_CLIENT_ID,
                        "client_secret": DEFAULT_CLIENT_SECRET,
                        "code": code,
                        "redirect_uri": redirect,
                    }))
                    .send()
                    .await
                    .unwrap();
                json_of(resp).await
            }
        };
        let encoded: String = url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect();
        let (status, tokens) = exchange(code.clone(), encoded).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        assert!(tokens["refresh_token"].is_string());
        assert_eq!(sim.token_grants().authorization_code, 1);

        let (status, again) = exchange(code, redirect.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "a code is single-use");
        assert_eq!(again["error"], "invalid_grant");
    }

    #[tokio::test]
    async fn a_code_for_another_redirect_uri_is_refused() {
        let sim = sim().await;
        let resp = http()
            .post(format!("{}oauth/authorize.php", sim.base_url()))
            .form(&[
                ("response_type", "code"),
                ("grant", "basic"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("redirect_uri", "https://a.example/cb"),
            ])
            .send()
            .await
            .unwrap();
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let code = url::Url::parse(&location)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.to_string())
            .unwrap();
        let resp = http()
            .post(format!("{}oauth/token.php", sim.base_url()))
            .json(&json!({
                "grant_type": "authorization_code",
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
                "code": code,
                "redirect_uri": "https://evil.example/cb",
            }))
            .send()
            .await
            .unwrap();
        let (status, body) = json_of(resp).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "invalid_grant");
    }

    #[tokio::test]
    async fn the_authorize_page_refuses_a_missing_grant_or_an_unknown_client() {
        let sim = sim().await;
        for (grant, client) in [("", DEFAULT_CLIENT_ID), ("basic", "someone-else")] {
            let resp = http()
                .get(format!("{}oauth/authorize.php", sim.base_url()))
                .query(&[
                    ("response_type", "code"),
                    ("grant", grant),
                    ("client_id", client),
                    ("redirect_uri", "https://a.example/cb"),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
            let html = resp.text().await.unwrap();
            assert!(!html.contains("Authorize</button>"));
            assert!(html.contains("Authorization failed"));
        }
    }
}
