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
    use shared::adapters::memory::StaticSecrets;
    use shared::handlers::connect::{
        ADMIN_KEY_HEADER, ConnectDeps, ConnectSettings, InMemorySessionStore, PageAccess,
        SESSION_COOKIE,
    };
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
        // As deployed: the key read from a secret on each request, sessions in a record.
        let deps = Arc::new(ConnectDeps {
            newsletter: client(&sim, &store),
            admin_key: PageAccess {
                keys: StaticSecrets::new().with("connect-admin", ADMIN_KEY),
                key_secret_id: "connect-admin".into(),
                sessions: InMemorySessionStore::new(),
            },
            settings: ConnectSettings {
                public_url: Some(public_url),
            },
            after_connect: None,
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

    /// `name=value` of the answer's cookie.
    fn cookie_of(answer: &reqwest::Response) -> String {
        answer.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
    }

    /// Signs in as a browser on the page would (a same-origin form) and returns the cookie.
    async fn sign_in(s: &Setup) -> String {
        let answer = http()
            .post(format!("{}/login", s.page.url))
            .header("origin", &s.page.url)
            .form(&[("key", ADMIN_KEY)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 303);
        cookie_of(&answer)
    }

    /// "Connect CleverReach" in the session of `cookie`: the authorize URL with its state.
    async fn start_connect(s: &Setup, cookie: &str) -> url::Url {
        let started = http()
            .post(format!("{}/connect", s.page.url))
            .header("origin", &s.page.url)
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 303);
        url::Url::parse(started.headers()["location"].to_str().unwrap()).unwrap()
    }

    /// The account owner presses "Authorize" on CleverReach's page for `authorize`: the
    /// callback URL CleverReach sends the browser to (with a fresh code).
    async fn approve(authorize: &url::Url) -> url::Url {
        let fields: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
        let mut submit = authorize.clone();
        submit.set_query(None);
        let answer = http().post(submit).form(&fields).send().await.unwrap();
        assert!(answer.status().is_redirection(), "{}", answer.status());
        url::Url::parse(answer.headers()["location"].to_str().unwrap()).unwrap()
    }

    fn param(url: &url::Url, name: &str) -> String {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    }

    /// The confirming form post of the callback page.
    async fn confirm(s: &Setup, cookie: &str, code: &str, state: &str) -> reqwest::Response {
        http()
            .post(format!("{}/callback", s.page.url))
            .header("origin", &s.page.url)
            .header("cookie", cookie)
            .form(&[("code", code), ("state", state)])
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_wrong_administrator_key_is_refused_and_nothing_is_connected() {
        let s = setup().await;
        let answer = http()
            .post(format!("{}/login", s.page.url))
            .header("origin", &s.page.url)
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
        let session = sign_in(&s).await;
        // A connect was started (the page issued a state) …
        let authorize = start_connect(&s, &session).await;
        assert!(param(&authorize, "state").len() > 32);
        assert_eq!(param(&authorize, "grant"), "basic");
        // … but the callback carries another one (a forged link), with a cookie of that name.
        let answer = http()
            .get(format!(
                "{}/callback?code=stolen-code&state=forged",
                s.page.url
            ))
            .header("cookie", format!("{session}; crc_oauth_state=forged"))
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
        let answer = confirm(&s, &session, "stolen-code", "forged").await;
        assert_eq!(answer.status(), 400);
        assert_eq!(
            s.sim.token_grants().authorization_code,
            0,
            "no code was exchanged"
        );
        assert!(s.store.current().is_none());
    }

    #[tokio::test]
    async fn a_state_works_once_and_only_for_the_session_it_was_issued_to() {
        let s = setup().await;
        let mine = sign_in(&s).await;
        let callback = approve(&start_connect(&s, &mine).await).await;
        let (code, state) = (param(&callback, "code"), param(&callback, "state"));

        // Coming back from CleverReach shows a confirmation; nothing is exchanged yet.
        let landing = http().get(callback.clone()).send().await.unwrap();
        assert_eq!(landing.status(), 200);
        assert!(landing.text().await.unwrap().contains("id=\"finish\""));
        assert_eq!(s.sim.token_grants().authorization_code, 0);

        // Another signed-in browser cannot finish this connect.
        let other = sign_in(&s).await;
        let answer = confirm(&s, &other, &code, &state).await;
        assert_eq!(answer.status(), 400);
        assert_eq!(s.sim.token_grants().authorization_code, 0);

        // The browser that started it can, once.
        let answer = confirm(&s, &mine, &code, &state).await;
        assert_eq!(answer.status(), 303, "{:?}", answer.text().await);
        assert_eq!(s.sim.token_grants().authorization_code, 1);
        let stored = s.store.current().expect("tokens stored");
        let again = confirm(&s, &mine, &code, &state).await;
        assert_eq!(again.status(), 400);
        assert!(again.text().await.unwrap().contains("used already"));
        let replay = http().get(callback).send().await.unwrap();
        assert_eq!(replay.status(), 400);
        assert_eq!(s.sim.token_grants().authorization_code, 1);
        assert_eq!(s.store.current(), Some(stored));
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

        /// The browser's cookies for `url`, HttpOnly ones included (name, value).
        async fn cookies(&mut self, url: &str) -> Vec<(String, String)> {
            let result = self
                .call("Network.getCookies", json!({ "urls": [url] }))
                .await;
            result["cookies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().to_string(),
                        c["value"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        }

        /// Puts a cookie back into the browser as the page would have set it.
        async fn set_session_cookie(&mut self, url: &str, value: &str) {
            let result = self
                .call(
                    "Network.setCookie",
                    json!({ "name": SESSION_COOKIE, "value": value, "url": url, "path": "/",
                            "secure": true, "httpOnly": true, "sameSite": "Strict" }),
                )
                .await;
            assert_eq!(result["success"], true, "{result}");
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

        // Back on the page: confirm, then connected.
        browser.wait_for("document.querySelector('#finish')").await;
        assert_eq!(
            s.sim.token_grants().authorization_code,
            0,
            "not before the confirmation"
        );
        browser
            .eval("document.querySelector('#finish').click(); true")
            .await;
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

    /// A page on a sibling origin (another port of 127.0.0.1 here; another function URL under
    /// the shared `on.aws` site in AWS): same site, so the browser shares cookies with it and
    /// sends SameSite cookies along. Serves `pages` as (path, HTML).
    async fn sibling(pages: Vec<(&'static str, String)>) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut app = axum::Router::new();
        for (path, html) in pages {
            app = app.route(
                path,
                axum::routing::get(move || {
                    let html = html.clone();
                    async move { axum::response::Html(html) }
                }),
            );
        }
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (url, server)
    }

    async fn signed_in_browser(s: &Setup, program: &str) -> Browser {
        let mut browser = Browser::launch(program).await;
        browser.go(&format!("{}/", s.page.url)).await;
        browser.wait_for("document.querySelector('#sign-in')").await;
        browser
            .eval(&format!(
                "document.querySelector('input[name=key]').value = '{ADMIN_KEY}'; document.querySelector('#sign-in').click(); true"
            ))
            .await;
        browser.wait_for("document.querySelector('#status')").await;
        browser
    }

    fn browser_program() -> Option<String> {
        let program = chromium();
        if program.is_none() {
            assert!(
                std::env::var("REQUIRE_BROWSER").as_deref() != Ok("1"),
                "REQUIRE_BROWSER=1 but no chromium is installed"
            );
            eprintln!("skipped: no chromium installed (apt-get install chromium)");
        }
        program
    }

    #[tokio::test]
    async fn a_sibling_page_can_neither_finish_a_connect_with_a_planted_state_nor_post_to_the_page()
    {
        let Some(program) = browser_program() else {
            return;
        };
        let s = setup().await;
        let mut browser = signed_in_browser(&s, &program).await;

        // The attacker gets a real code for their own CleverReach account, issued for this
        // page's callback, with a state of their choosing …
        let mut authorize = url::Url::parse(&s.sim.base_url())
            .unwrap()
            .join("oauth/authorize.php")
            .unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("client_id", DEFAULT_CLIENT_ID)
            .append_pair("grant", "basic")
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &format!("{}/callback", s.page.url))
            .append_pair("state", "planted-state");
        let attack = approve(&authorize).await;
        // … and a sibling page plants that state as a cookie and sends the administrator's
        // browser to the callback.
        let plant = format!(
            "<!doctype html><script>document.cookie = 'crc_oauth_state=planted-state; path=/'; \
             location.href = '{attack}';</script>"
        );
        // Another sibling page posts a form to the page ("connect the app's own account").
        let post = format!(
            "<!doctype html><form id=f method=post action='{}/connect/app'></form>\
             <script>document.getElementById('f').submit();</script>",
            s.page.url
        );
        let (evil, _server) = sibling(vec![("/plant", plant), ("/post", post)]).await;

        browser.go(&format!("{evil}/plant")).await;
        browser
            .wait_for(
                "document.body && document.body.innerText.includes('state value does not match')",
            )
            .await;
        assert!(
            browser
                .cookies(&s.page.url)
                .await
                .iter()
                .any(|(name, _)| name == "crc_oauth_state"),
            "the planted cookie did reach the page (else this test proves nothing)"
        );
        // Even a press on a confirm button could not help: there is none, and a post of the
        // planted state is refused too.
        assert_eq!(
            s.sim.token_grants().authorization_code,
            0,
            "nothing exchanged"
        );
        assert!(s.store.current().is_none());

        browser.go(&format!("{evil}/post")).await;
        browser
            .wait_for("document.body && document.body.innerText.includes('Refused')")
            .await;
        assert!(
            browser
                .eval("location.href")
                .await
                .as_str()
                .unwrap()
                .starts_with(&s.page.url),
            "the post did reach the page"
        );
        assert_eq!(
            s.sim.token_grants().client_credentials,
            0,
            "nothing connected"
        );
        assert!(s.store.current().is_none());
    }

    #[tokio::test]
    async fn signing_out_ends_the_session_and_the_old_cookie_no_longer_works() {
        let Some(program) = browser_program() else {
            return;
        };
        let s = setup().await;
        let mut browser = signed_in_browser(&s, &program).await;
        let session = browser
            .cookies(&s.page.url)
            .await
            .into_iter()
            .find(|(name, _)| name == SESSION_COOKIE)
            .map(|(_, value)| value)
            .expect("a session cookie");
        assert!(!session.contains(ADMIN_KEY), "the cookie is not the key");

        browser
            .eval("document.querySelector('#sign-out').click(); true")
            .await;
        browser.wait_for("document.querySelector('#sign-in')").await;
        assert!(
            !browser
                .cookies(&s.page.url)
                .await
                .iter()
                .any(|(name, _)| name == SESSION_COOKIE),
            "the browser forgot the session"
        );

        // The old cookie, put back, opens nothing: not in the browser, not for a script.
        browser.set_session_cookie(&s.page.url, &session).await;
        browser.go(&format!("{}/", s.page.url)).await;
        browser
            .wait_for("document.body && document.body.innerText.includes('You signed out')")
            .await;
        assert!(
            browser
                .eval("document.querySelector('#status') === null")
                .await
                .as_bool()
                .unwrap()
        );
        let answer = http()
            .get(format!("{}/status", s.page.url))
            .header("cookie", format!("{SESSION_COOKIE}={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401);
    }
}
