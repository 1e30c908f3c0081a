//! CleverReach client tokens against the simulator: connect, code exchange, proactive
//! refresh, one refresh on 401, rotation kept in the store, refused refresh → store re-read
//! → reconnect, one refresh for concurrent callers, and no secret in any text.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `cleverreach` module so that `cargo test cleverreach` selects these tests.
mod cleverreach {
    use sandbox::cleverreach::{
        CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint,
    };
    use shared::adapters::cleverreach::{
        CleverReachClient, CleverReachConfig, CleverReachError, InMemoryTokenStore, TokenSet,
    };
    use shared::adapters::http::RetryPolicy;
    use shared::error::Retryable;
    use shared::secret::Secret;
    use std::time::Duration;

    async fn sim() -> CleverReachSim {
        CleverReachSim::spawn(CleverReachSimConfig::default())
            .await
            .unwrap()
    }

    fn config(sim: &CleverReachSim, secret: &str) -> CleverReachConfig {
        let mut cfg = CleverReachConfig::new(
            url::Url::parse(&sim.base_url()).unwrap(),
            DEFAULT_CLIENT_ID,
            Secret::new(secret),
            "Dynamics 365 (contoso)",
        );
        cfg.retry = RetryPolicy::fast();
        cfg.request_timeout = Duration::from_secs(5);
        cfg
    }

    fn client(
        sim: &CleverReachSim,
        store: &InMemoryTokenStore,
    ) -> CleverReachClient<InMemoryTokenStore> {
        CleverReachClient::new(config(sim, DEFAULT_CLIENT_SECRET), store.clone()).unwrap()
    }

    fn refresh_of(tokens: &TokenSet) -> String {
        tokens.refresh_token.as_ref().unwrap().expose().to_string()
    }

    #[tokio::test]
    async fn connecting_with_client_credentials_stores_a_token_pair() {
        let sim = sim().await;
        let store = InMemoryTokenStore::new();
        let client = client(&sim, &store);
        client.connect_client_credentials().await.unwrap();
        let stored = store.current().unwrap();
        assert!(sim.access_token_is_valid(stored.access_token.expose()));
        assert!(sim.refresh_token_is_valid(&refresh_of(&stored)));
        let in_an_hour = chrono::Utc::now().timestamp() + 3600;
        assert!((in_an_hour - 5..=in_an_hour).contains(&stored.expires_at_unix));
        client.whoami().await.unwrap();
    }

    #[tokio::test]
    async fn without_stored_tokens_the_client_asks_for_a_connect_and_calls_nothing() {
        let sim = sim().await;
        let client = client(&sim, &InMemoryTokenStore::new());
        let err = client.whoami().await.unwrap_err();
        assert!(
            matches!(err, CleverReachError::ReconnectRequired { .. }),
            "{err}"
        );
        assert!(!err.is_retryable());
        assert_eq!(sim.stats().total(), 0);
    }

    #[tokio::test]
    async fn a_browser_connect_exchanges_the_code_once() {
        let sim = sim().await;
        let redirect = "https://connector.example/connect/callback";
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = http
            .post(format!("{}oauth/authorize.php", sim.base_url()))
            .form(&[
                ("response_type", "code"),
                ("grant", "basic"),
                ("client_id", DEFAULT_CLIENT_ID),
                ("redirect_uri", redirect),
                ("state", "s1"),
            ])
            .send()
            .await
            .unwrap();
        let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        let code = location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .to_string();
        let store = InMemoryTokenStore::new();
        let client = client(&sim, &store);
        client.exchange_code(&code, redirect).await.unwrap();
        assert!(store.current().is_some());
        client.whoami().await.unwrap();
        assert_eq!(sim.token_grants().authorization_code, 1);

        let again = client.exchange_code(&code, redirect).await.unwrap_err();
        assert!(
            matches!(again, CleverReachError::ReconnectRequired { .. }),
            "{again}"
        );
    }

    #[tokio::test]
    async fn a_401_refreshes_once_and_the_rotated_pair_is_stored() {
        let sim = sim().await;
        let store = InMemoryTokenStore::new();
        let client = client(&sim, &store);
        client.connect_client_credentials().await.unwrap();
        let before = store.current().unwrap();
        sim.expire_access_tokens();

        client.whoami().await.unwrap();
        assert_eq!(sim.token_grants().refresh_token, 1);
        assert_eq!(
            sim.stats().calls(Endpoint::Whoami),
            2,
            "one refused, one retried"
        );
        let after = store.current().unwrap();
        assert_ne!(after.access_token, before.access_token);
        assert!(!sim.refresh_token_is_valid(&refresh_of(&before)));
        assert!(sim.refresh_token_is_valid(&refresh_of(&after)));

        // A second process starting from the store can refresh with what was stored.
        sim.expire_access_tokens();
        let other = self::client(&sim, &store);
        other.whoami().await.unwrap();
        assert_eq!(sim.token_grants().refresh_token, 2);
        assert_eq!(sim.token_grants().refused_refresh, 0);
    }

    #[tokio::test]
    async fn a_token_about_to_expire_is_refreshed_before_the_call() {
        let sim = sim().await;
        let store = InMemoryTokenStore::new();
        let client = client(&sim, &store);
        client.connect_client_credentials().await.unwrap();
        let mut tokens = store.current().unwrap();
        tokens.expires_at_unix = chrono::Utc::now().timestamp() + 10;
        store.set(Some(tokens));

        let fresh = self::client(&sim, &store);
        fresh.whoami().await.unwrap();
        assert_eq!(sim.token_grants().refresh_token, 1);
        assert_eq!(sim.stats().calls(Endpoint::Whoami), 1, "no 401 needed");
    }

    #[tokio::test]
    async fn a_refused_refresh_with_nothing_newer_stored_asks_for_a_reconnect() {
        let sim = sim().await;
        let store = InMemoryTokenStore::new();
        let client = client(&sim, &store);
        client.connect_client_credentials().await.unwrap();
        sim.revoke_refresh_tokens();
        sim.expire_access_tokens();

        let err = client.whoami().await.unwrap_err();
        assert!(
            matches!(err, CleverReachError::ReconnectRequired { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("reconnect CleverReach"));
        assert!(!err.is_retryable());
        assert_eq!(
            sim.token_grants().refused_refresh,
            1,
            "no second try with the same token"
        );
    }

    #[tokio::test]
    async fn a_refused_refresh_uses_the_pair_another_worker_stored() {
        let sim = sim().await;
        let store = InMemoryTokenStore::new();
        let worker_a = client(&sim, &store);
        worker_a.connect_client_credentials().await.unwrap();
        let worker_b = client(&sim, &store);
        worker_b.whoami().await.unwrap(); // both now hold the same pair in memory

        sim.expire_access_tokens();
        worker_b.whoami().await.unwrap(); // B rotates and stores the new pair
        worker_a.whoami().await.unwrap(); // A's refresh is refused; it finds B's pair

        let grants = sim.token_grants();
        assert_eq!(grants.refresh_token, 1);
        assert_eq!(grants.refused_refresh, 1);
        let stored = store.current().unwrap();
        assert!(sim.refresh_token_is_valid(&refresh_of(&stored)));
        assert_eq!(
            worker_a.tokens().await.unwrap().unwrap().access_token,
            stored.access_token
        );
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let sim = sim().await;
        let store = InMemoryTokenStore::new();
        let client = client(&sim, &store);
        client.connect_client_credentials().await.unwrap();
        client.whoami().await.unwrap();
        sim.expire_access_tokens();

        let calls: Vec<_> = (0..10)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.whoami().await })
            })
            .collect();
        for call in calls {
            call.await.unwrap().unwrap();
        }
        assert_eq!(sim.token_grants().refresh_token, 1);
        assert_eq!(sim.token_grants().refused_refresh, 0);
    }

    #[tokio::test]
    async fn secrets_and_tokens_never_show_in_debug_or_error_texts() {
        let sim = sim().await;
        let store = InMemoryTokenStore::new();
        let client = client(&sim, &store);
        client.connect_client_credentials().await.unwrap();
        let tokens = store.current().unwrap();
        let access = tokens.access_token.expose().to_string();
        let refresh = refresh_of(&tokens);

        let wrong =
            CleverReachClient::new(config(&sim, "not-the-secret"), InMemoryTokenStore::new())
                .unwrap();
        let err = wrong.connect_client_credentials().await.unwrap_err();
        assert!(
            matches!(err, CleverReachError::Client { status: 401, .. }),
            "{err}"
        );
        assert!(!err.is_retryable());

        sim.revoke_refresh_tokens();
        sim.expire_access_tokens();
        let reconnect = client.whoami().await.unwrap_err();

        let texts = [
            format!("{client:?}"),
            format!("{:?}", client.config()),
            format!("{tokens:?}"),
            format!("{store:?}"),
            format!("{err} {err:?}"),
            format!("{wrong:?}"),
            format!("{reconnect} {reconnect:?}"),
        ];
        for text in &texts {
            for secret in [DEFAULT_CLIENT_SECRET, "not-the-secret", &access, &refresh] {
                assert!(!text.contains(secret), "{text} leaks a secret");
            }
        }
    }
}
