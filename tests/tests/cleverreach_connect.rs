//! The connect page (function `connect`) against the CleverReach simulator: sign-in, the OAuth
//! round trip in headless Chromium, a forged `state` refused, client credentials without a
//! browser, and "reconnect CleverReach" once the connection is dead (workers then stop calling
//! CleverReach).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `cleverreach` module so that `cargo test cleverreach` selects these tests.
mod cleverreach {
    use sandbox::cleverreach::{
        CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint,
    };
    use sandbox::connect_page::{ConnectPage, serve};
    use shared::adapters::cleverreach::{
        CleverReachClient, CleverReachConfig, CleverReachError, InMemoryTokenStore,
    };
    use shared::adapters::http::RetryPolicy;
    use shared::handlers::connect::{ADMIN_KEY_HEADER, ConnectDeps, ConnectSettings};
    use shared::secret::Secret;
    use std::sync::Arc;
    use std::time::Duration;

    const ADMIN_KEY: &str = "admin-key-7c1d0e4b9a";

    fn client(
        sim: &CleverReachSim,
        store: &InMemoryTokenStore,
    ) -> CleverReachClient<InMemoryTokenStore> {
        let mut cfg = CleverReachConfig::new(
            url::Url::parse(&sim.base_url()).unwrap(),
            DEFAULT_CLIENT_ID,
            Secret::new(DEFAULT_CLIENT_SECRET),
            "Dynamics 365 (contoso)",
        );
        cfg.retry = RetryPolicy::fast();
        cfg.request_timeout = Duration::from_secs(5);
        CleverReachClient::new(cfg, store.clone()).unwrap()
    }

    struct Setup {
        sim: CleverReachSim,
        store: InMemoryTokenStore,
        page: ConnectPage,
    }

    async fn setup() -> Setup {
        let sim = CleverReachSim::spawn(CleverReachSimConfig::default())
            .await
            .unwrap();
        let store = InMemoryTokenStore::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public_url = format!("http://{}", listener.local_addr().unwrap());
        let deps = Arc::new(ConnectDeps {
            newsletter: client(&sim, &store),
            admin_key: Secret::new(ADMIN_KEY),
            settings: ConnectSettings {
                public_url: Some(public_url),
            },
        });
        let page = serve(listener, deps).unwrap();
        Setup { sim, store, page }
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_wrong_administrator_key_is_refused_and_nothing_is_connected() {
        let s = setup().await;
        let answer = http()
            .post(format!("{}/login", s.page.url))
            .form(&[("key", "guessed")])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
        assert!(answer.headers().get("set-cookie").is_none());
        assert!(
            answer
                .text()
                .await
                .unwrap()
                .contains("administrator key is wrong")
        );
        let answer = http()
            .post(format!("{}/connect/app", s.page.url))
            .header(ADMIN_KEY_HEADER, "guessed")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
        assert!(s.store.current().is_none());
        assert_eq!(s.sim.stats().calls(Endpoint::Token), 0);
    }

    #[tokio::test]
    async fn a_callback_with_a_state_the_page_did_not_issue_is_refused() {
        let s = setup().await;
        let cookie_of = |answer: &reqwest::Response| {
            answer.headers()["set-cookie"]
                .to_str()
                .unwrap()
                .split(';')
                .next()
                .unwrap()
                .to_string()
        };
        let signed_in = http()
            .post(format!("{}/login", s.page.url))
            .form(&[("key", ADMIN_KEY)])
            .send()
            .await
            .unwrap();
        let session = cookie_of(&signed_in);
        // A connect was started (the page issued a state) …
        let started = http()
            .post(format!("{}/connect", s.page.url))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 303);
        let state = cookie_of(&started);
        let authorize = started.headers()["location"].to_str().unwrap().to_string();
        assert!(authorize.contains("grant=basic") && authorize.contains("state="));
        // … but the callback carries another one (a forged link).
        let answer = http()
            .get(format!(
                "{}/callback?code=stolen-code&state=forged",
                s.page.url
            ))
            .header("cookie", format!("{session}; {state}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400);
        assert!(
            answer
                .text()
                .await
                .unwrap()
                .contains("state value does not match")
        );
        assert_eq!(
            s.sim.token_grants().authorization_code,
            0,
            "no code was exchanged"
        );
        assert!(s.store.current().is_none());
    }

    #[tokio::test]
    async fn client_credentials_connect_without_a_browser_and_the_status_names_the_account() {
        let s = setup().await;
        let answer = http()
            .post(format!("{}/connect/app", s.page.url))
            .header(ADMIN_KEY_HEADER, ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let status: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(status["connected"], true);
        assert_eq!(status["account"], "Sandbox Newsletter GmbH");
        assert!(status["expires_at"].as_str().unwrap().ends_with("UTC"));
        let stored = s.store.current().unwrap();
        assert!(s.sim.access_token_is_valid(stored.access_token.expose()));
    }

    #[tokio::test]
    async fn a_dead_connection_says_reconnect_and_workers_stop_calling_cleverreach() {
        let s = setup().await;
        let worker = client(&s.sim, &s.store);
        worker.connect_client_credentials().await.unwrap();
        s.sim.expire_access_tokens();
        s.sim.revoke_refresh_tokens();
        let mut expired = s.store.current().unwrap();
        expired.expires_at_unix = 0;
        s.store.set(Some(expired));

        let first = worker.whoami().await.unwrap_err();
        assert!(matches!(first, CleverReachError::ReconnectRequired { .. }));
        assert!(first.to_string().starts_with("reconnect CleverReach"));
        // Another worker (its own client, same store) gives up without asking CleverReach.
        let token_calls = s.sim.stats().calls(Endpoint::Token);
        let api_calls = s.sim.stats().total();
        let other = client(&s.sim, &s.store);
        for _ in 0..5 {
            let e = other.whoami().await.unwrap_err();
            assert!(matches!(e, CleverReachError::ReconnectRequired { .. }));
        }
        assert_eq!(
            s.sim.stats().calls(Endpoint::Token),
            token_calls,
            "no refresh attempt"
        );
        assert_eq!(s.sim.stats().total(), api_calls, "no call at all");

        let status: serde_json::Value = http()
            .get(format!("{}/status", s.page.url))
            .header(ADMIN_KEY_HEADER, ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(status["connected"], false);
        assert!(
            status["reconnect_required"]
                .as_str()
                .unwrap()
                .contains("connect CleverReach again")
        );

        // Connecting again revives every worker.
        let answer = http()
            .post(format!("{}/connect/app", s.page.url))
            .header(ADMIN_KEY_HEADER, ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        other.whoami().await.unwrap();
        worker.whoami().await.unwrap();
    }

    // ---- the page in a real browser ---------------------------------------------------

    use futures::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use std::io::BufRead;
    use tokio_tungstenite::tungstenite::Message;

    /// Headless Chromium driven over the DevTools protocol.
    struct Browser {
        child: std::process::Child,
        socket: tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        next_id: u64,
        _profile: TempDir,
    }

    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn chromium() -> Option<String> {
        ["chromium", "chromium-browser", "google-chrome"]
            .iter()
            .find(|name| {
                std::process::Command::new(name)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .map(|name| name.to_string())
    }

    impl Browser {
        async fn launch(program: &str) -> Browser {
            let profile = std::env::temp_dir()
                .join(format!("crc-chromium-{}", uuid::Uuid::new_v4().simple()));
            let mut child = std::process::Command::new(program)
                .args([
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-dev-shm-usage",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg("about:blank")
                .stderr(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            // Chromium prints its DevTools address on stderr; keep draining it afterwards so
            // that it never blocks on a full pipe.
            let stderr = child.stderr.take().unwrap();
            let (found, address) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Some(at) = line.find("ws://") {
                        let _ = found.send(line[at..].trim().to_string());
                    }
                }
            });
            let browser_ws = address
                .recv_timeout(Duration::from_secs(30))
                .expect("chromium printed its DevTools address");
            let port = browser_ws
                .trim_start_matches("ws://127.0.0.1:")
                .split('/')
                .next()
                .unwrap()
                .to_string();
            let targets: Vec<Value> = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let page_ws = targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                .unwrap()
                .to_string();
            let (socket, _) = tokio_tungstenite::connect_async(page_ws).await.unwrap();
            Browser {
                child,
                socket,
                next_id: 0,
                _profile: TempDir(profile),
            }
        }

        async fn call(&mut self, method: &str, params: Value) -> Value {
            self.next_id += 1;
            let id = self.next_id;
            let request = json!({ "id": id, "method": method, "params": params });
            self.socket
                .send(Message::Text(request.to_string().into()))
                .await
                .unwrap();
            loop {
                let message = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                    .await
                    .expect("chromium answered")
                    .unwrap()
                    .unwrap();
                if let Message::Text(text) = message {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["id"] == id {
                        assert!(value.get("error").is_none(), "{method}: {value}");
                        return value["result"].clone();
                    }
                }
            }
        }

        async fn go(&mut self, url: &str) {
            self.call("Page.navigate", json!({ "url": url })).await;
        }

        async fn eval(&mut self, expression: &str) -> Value {
            let result = self
                .call(
                    "Runtime.evaluate",
                    json!({ "expression": expression, "returnByValue": true }),
                )
                .await;
            result["result"]["value"].clone()
        }

        /// Waits until `expression` is true on the current page.
        async fn wait_for(&mut self, expression: &str) {
            for _ in 0..200 {
                if self.eval(&format!("(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()")).await == true {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let body = self
                .eval("document.body ? document.body.innerText : location.href")
                .await;
            panic!("timed out waiting for {expression}; page shows: {body}");
        }

        async fn text(&mut self, selector: &str) -> String {
            self.eval(&format!("document.querySelector('{selector}').innerText"))
                .await
                .as_str()
                .unwrap_or_default()
                .to_string()
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn an_administrator_connects_cleverreach_in_a_browser() {
        let Some(program) = chromium() else {
            assert!(
                std::env::var("REQUIRE_BROWSER").as_deref() != Ok("1"),
                "REQUIRE_BROWSER=1 but no chromium is installed"
            );
            eprintln!("skipped: no chromium installed (apt-get install chromium)");
            return;
        };
        let s = setup().await;
        let mut browser = Browser::launch(&program).await;

        // Sign in.
        browser.go(&format!("{}/", s.page.url)).await;
        browser.wait_for("document.querySelector('#sign-in')").await;
        browser
            .eval(&format!(
                "document.querySelector('input[name=key]').value = '{ADMIN_KEY}'; document.querySelector('#sign-in').click(); true"
            ))
            .await;
        browser.wait_for("document.querySelector('#connect')").await;
        assert!(browser.text("#status").await.contains("not connected"));
        assert_eq!(
            browser.text("#callback").await,
            format!("{}/callback", s.page.url)
        );

        // "Connect CleverReach" → CleverReach's consent page → "Authorize".
        browser
            .eval("document.querySelector('#connect').click(); true")
            .await;
        browser
            .wait_for("document.querySelector('button[value=authorize]')")
            .await;
        let at = browser.eval("location.href").await;
        assert!(
            at.as_str().unwrap().starts_with(&s.sim.base_url()),
            "on CleverReach: {at}"
        );
        browser
            .eval("document.querySelector('button[value=authorize]').click(); true")
            .await;

        // Back on the page, connected.
        browser.wait_for("document.querySelector('#account')").await;
        assert_eq!(browser.text("#account").await, "Sandbox Newsletter GmbH");
        assert!(browser.text("#expires").await.ends_with("UTC"));
        assert_eq!(s.sim.token_grants().authorization_code, 1);
        let stored = s.store.current().expect("tokens stored");
        assert!(s.sim.access_token_is_valid(stored.access_token.expose()));

        // A forged callback in the same (signed-in) browser is refused and changes nothing.
        browser
            .go(&format!("{}/callback?code=stolen&state=forged", s.page.url))
            .await;
        browser
            .wait_for(
                "document.body && document.body.innerText.includes('state value does not match')",
            )
            .await;
        assert_eq!(s.sim.token_grants().authorization_code, 1);
        assert_eq!(s.store.current(), Some(stored));
    }
}
