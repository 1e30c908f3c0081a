//! Everything the connector logs at TRACE, captured through the subscriber the functions
//! install (`shared::telemetry`), while the handlers run inside the real Lambda runtime loop
//! (a Runtime API stand-in feeds them events) and talk to Secrets Manager and SQS on the AWS
//! emulator: the intake with the key in `?code=`, the connect page's sign-in and OAuth
//! callback, a sync worker whose token has expired (a refresh written to Secrets Manager)
//! and whose upsert CleverReach refuses for one row, and both back-flow jobs. No line may
//! hold a secret, a token, the OAuth code, a session, or a person's address or name.
//!
//! One test in its own binary: the subscriber is global.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use sandbox::aws::{create_fifo_queues, emulator, unique_name};
use sandbox::cleverreach::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use sandbox::dataverse::{CONNECTOR_CLIENT_ID, CONNECTOR_CLIENT_SECRET};
use sandbox::harness::{Harness, checklist};
use serde_json::{Value, json};
use shared::adapters::cleverreach::{CleverReachClient, CleverReachConfig, TokenStore};
use shared::adapters::dataverse::client::{DataverseClient, DataverseConfig};
use shared::adapters::dataverse::crm::DataverseCrm;
use shared::adapters::http::RetryPolicy;
use shared::adapters::secrets_manager::{
    SecretsManagerSessionStore, SecretsManagerSource, SecretsManagerTokenStore,
};
use shared::adapters::sqs::SqsChangeQueue;
use shared::domain::routing::QueueFamily;
use shared::handlers::connect::{ConnectDeps, ConnectSettings, PageAccess};
use shared::handlers::receiver_state_sync::JobDeps;
use shared::handlers::sync_worker::WorkerDeps;
use shared::handlers::webhook_intake::{IntakeDeps, IntakeSettings};
use shared::secret::Secret;
use shared::telemetry::LogSettings;
use shared::usecases::Connector;
use shared::usecases::backflow::Job;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing_subscriber::filter::LevelFilter;

const WEBHOOK_KEY: &str = "webhook-key-7d1f3a9c2e5b4f60aa11";
const ADMIN_KEY: &str = "admin-key-40c9e2b7d15a8f36bb22";
const PAGE: &str = "https://connect-page.example";

/// The people of the test and their data: none of it may reach a log line.
const PEOPLE: [(&str, &str, &str); 3] = [
    ("Zelinda", "Quarrington", "zelinda.quarrington@example.org"),
    ("Yorvick", "Vantongeren", "yorvick.vantongeren@example.net"),
    ("Xaveria", "Ulmenthal", "xaveria.ulmenthal@example.com"),
];
/// Signs up in CleverReach; lead-sync makes a lead of her.
const SIGNUP: &str = "wilhelmina.tessarolo@example.de";
/// Her new last name, written while the worker runs.
const NEW_LAST_NAME: &str = "Ulmenthal-Brightwater";

// ---- capturing what the functions log ----------------------------------------------------

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Capture {
    type Writer = Capture;
    fn make_writer(&'w self) -> Capture {
        self.clone()
    }
}

// ---- a stand-in for the Lambda Runtime API -------------------------------------------------

/// One function's Runtime API: hands out events on `/next`, collects the answers.
#[derive(Clone)]
struct RuntimeApi {
    events: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>>,
    send: mpsc::UnboundedSender<(String, Value)>,
    answers: Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>,
    polled: Arc<Notify>,
}

impl RuntimeApi {
    /// Starts the API and the function (`start` runs the function's `main` loop) with the
    /// environment Lambda gives it; returns once the function asked for its first event.
    async fn start<F>(name: &str, start: F) -> RuntimeApi
    where
        F: FnOnce(),
    {
        let (send, receive) = mpsc::unbounded_channel();
        let api = RuntimeApi {
            events: Arc::new(tokio::sync::Mutex::new(receive)),
            send,
            answers: Arc::new(Mutex::new(HashMap::new())),
            polled: Arc::new(Notify::new()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new()
            .route(
                "/2018-06-01/runtime/invocation/next",
                axum::routing::get(next),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/{kind}",
                axum::routing::post(answer),
            )
            .with_state(api.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        // SAFETY: the runtime reads these when it starts, below, before the next function's
        // are set; nothing else in this test reads them.
        unsafe {
            std::env::set_var("AWS_LAMBDA_RUNTIME_API", &address);
            std::env::set_var("AWS_LAMBDA_FUNCTION_NAME", name);
            std::env::set_var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
            std::env::set_var("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
        }
        let polled = api.polled.notified();
        start();
        tokio::time::timeout(Duration::from_secs(30), polled)
            .await
            .expect("the function asks for its first event");
        api
    }

    /// One invocation: the function's answer (its response, or its error document).
    async fn invoke(&self, event: Value) -> Value {
        let id = uuid::Uuid::new_v4().to_string();
        let (done, answer) = oneshot::channel();
        self.answers.lock().unwrap().insert(id.clone(), done);
        self.send.send((id, event)).unwrap();
        tokio::time::timeout(Duration::from_secs(60), answer)
            .await
            .expect("the function answered")
            .unwrap()
    }
}

async fn next(State(api): State<RuntimeApi>) -> Response {
    api.polled.notify_one();
    let Some((id, event)) = api.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = (chrono::Utc::now().timestamp_millis() + 60_000).to_string();
    (
        [
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", deadline),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:eu-central-1:123456789012:function:crc-test".to_string(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000".to_string(),
            ),
            ("content-type", "application/json".to_string()),
        ],
        event.to_string(),
    )
        .into_response()
}

async fn answer(
    State(api): State<RuntimeApi>,
    Path((id, kind)): Path<(String, String)>,
    body: Bytes,
) -> StatusCode {
    let mut value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if kind == "error" {
        value = json!({ "error": value });
    }
    if let Some(done) = api.answers.lock().unwrap().remove(&id) {
        let _ = done.send(value);
    }
    StatusCode::ACCEPTED
}

/// A function-URL event (payload 2.0) as Lambda delivers it.
fn url_event(
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    headers: &[(&str, &str)],
    cookies: &[String],
    body: &str,
) -> Value {
    let raw_query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let mut header_map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    header_map.insert("host".into(), json!("connect-page.example"));
    header_map.insert("x-forwarded-proto".into(), json!("https"));
    let query_map: serde_json::Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": raw_query,
        "cookies": cookies,
        "headers": header_map,
        "queryStringParameters": query_map,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "connect-page",
            "domainName": "connect-page.example",
            "domainPrefix": "connect-page",
            "http": { "method": method, "path": path, "protocol": "HTTP/1.1",
                      "sourceIp": "203.0.113.7", "userAgent": "test" },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": "06/Dec/2026:12:00:00 +0000",
            "timeEpoch": 1_796_558_400_000_i64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

fn header(response: &Value, name: &str) -> String {
    response["headers"][name]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// ---- CleverReach refusing one row ----------------------------------------------------------

/// Forwards everything to the simulator; in an upsert answer, the row for `refused` becomes
/// CleverReach's refusal, which names the address.
async fn refusing_proxy(target: String, refused: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let http = http.clone();
            let target = target.clone();
            async move {
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let mut forward =
                    http.request(method, format!("{}{}", target.trim_end_matches('/'), path));
                for name in ["authorization", "content-type", "accept"] {
                    if let Some(value) = headers.get(name) {
                        forward = forward.header(name, value.clone());
                    }
                }
                let answer = forward.body(body.clone()).send().await.unwrap();
                let status = answer.status().as_u16();
                let mut text = answer.text().await.unwrap();
                if path.contains("/receivers/upsert") || path.contains("/receivers/insert") {
                    let rows: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
                    if let Ok(Value::Array(mut results)) = serde_json::from_str::<Value>(&text) {
                        for (row, result) in rows.iter().zip(results.iter_mut()) {
                            if row["email"]
                                .as_str()
                                .is_some_and(|e| e.eq_ignore_ascii_case(refused))
                            {
                                *result = json!(format!("invalid address '{refused}';"));
                            }
                        }
                        text = Value::Array(results).to_string();
                    }
                }
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/json")],
                    text,
                )
            }
        },
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_trace_level_no_log_line_holds_a_secret_or_a_persons_address() {
    let Some(aws) = emulator("log capture").await else {
        return;
    };
    let capture = Capture::default();
    shared::telemetry::install(
        &LogSettings {
            level: Some(LevelFilter::TRACE),
            directives: None,
            json: true,
        },
        capture.clone(),
    )
    .unwrap();

    // ---- the world: a CRM with three people on a synced list, CleverReach with their group
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let mut people = Vec::new();
    for (first, last, email) in PEOPLE {
        people.push(
            h.create(
                "contacts",
                json!({ "firstname": first, "lastname": last, "emailaddress1": email,
                        "crc_checklist": checklist(&[(0, 1)]) }),
            )
            .await
            .unwrap(),
        );
    }
    let (_, group) = h
        .synced_static_list("Newsletter", "contact", &people)
        .await
        .unwrap();
    assert_eq!(h.active_emails(&group).len(), 3);

    // ---- the secrets, in Secrets Manager
    let secrets = aws_sdk_secretsmanager::Client::new(&aws.config);
    let prefix = unique_name("crc-logs");
    let webhook_secret = format!("{prefix}/webhook-key");
    let admin_secret = format!("{prefix}/connect-admin-key");
    let token_secret = format!("{prefix}/cleverreach-tokens");
    let session_secret = format!("{prefix}/connect-sessions");
    for (name, value) in [
        (&webhook_secret, WEBHOOK_KEY),
        (&admin_secret, ADMIN_KEY),
        (&token_secret, " "),
        (&session_secret, " "),
    ] {
        secrets
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }
    // From here on the connector talks to CleverReach through a proxy that refuses her row.
    let proxy = refusing_proxy(h.cleverreach.base_url(), PEOPLE[2].2).await;
    let api_url_row = h
        .dataverse
        .rows("crc_settings")
        .into_iter()
        .find(|row| row["crc_key"] == "cleverreach:connectiondata:apiurl")
        .and_then(|row| row["crc_settingid"].as_str().map(str::to_string))
        .expect("the API URL setting");
    h.update("crc_settings", &api_url_row, json!({ "crc_value": proxy }))
        .await
        .unwrap();
    let newsletter = || {
        CleverReachClient::new(
            CleverReachConfig {
                retry: RetryPolicy::fast(),
                ..CleverReachConfig::new(
                    url::Url::parse(&proxy).unwrap(),
                    DEFAULT_CLIENT_ID,
                    Secret::new(DEFAULT_CLIENT_SECRET),
                    "Dynamics 365 (sandbox)",
                )
            },
            SecretsManagerTokenStore::new(secrets.clone(), &token_secret),
        )
        .unwrap()
    };
    let connector = || {
        Connector::new(
            DataverseCrm::new(
                DataverseClient::new(DataverseConfig {
                    retry: RetryPolicy::fast(),
                    ..DataverseConfig::new(
                        url::Url::parse(&h.dataverse.api_url()).unwrap(),
                        url::Url::parse(&h.dataverse.token_url()).unwrap(),
                        CONNECTOR_CLIENT_ID,
                        Secret::new(CONNECTOR_CLIENT_SECRET),
                        format!("{}/.default", h.dataverse.resource()),
                    )
                })
                .unwrap(),
            ),
            newsletter(),
        )
    };

    // ---- webhook-intake: a change to a person, the key in ?code=
    let sqs = aws_sdk_sqs::Client::new(&aws.config);
    let queues = create_fifo_queues(&sqs, &unique_name("crc-logs"), 5)
        .await
        .unwrap();
    let intake = Arc::new(IntakeDeps {
        queue: SqsChangeQueue::new(sqs.clone(), queues.urls.clone()),
        secrets: SecretsManagerSource::new(secrets.clone()),
        settings: IntakeSettings {
            key_secret: webhook_secret.clone(),
            key_field: None,
            expected_organization: None,
            connector_user_id: None,
        },
    });
    let api = RuntimeApi::start("crc-webhook-intake", || {
        let deps = intake.clone();
        on_own_thread(move || async move {
            let _ = lambda_http::run(lambda_http::service_fn(|request| {
                let deps = deps.clone();
                async move { shared::handlers::webhook_intake::lambda::run(request, &deps).await }
            }))
            .await;
        });
    })
    .await;
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../events/webhook-intake/contact-update.json"
    ))
    .unwrap()
    .replace("6d81597f-0f9f-e711-8122-000d3aa2331c", &people[0])
    .replace(
        "James Glynn (sample)",
        &format!("{} {}", PEOPLE[0].0, PEOPLE[0].1),
    )
    .replace("\"James\"", &format!("\"{}\"", PEOPLE[0].0));
    let answer = api
        .invoke(url_event(
            "POST",
            "/",
            &[("code", WEBHOOK_KEY)],
            &[("content-type", "application/json")],
            &[],
            &body,
        ))
        .await;
    assert_eq!(answer["statusCode"], 202, "{answer}");

    // ---- connect: sign in, connect, come back from CleverReach, confirm
    let page = Arc::new(ConnectDeps {
        newsletter: newsletter(),
        admin_key: PageAccess {
            keys: SecretsManagerSource::new(secrets.clone()),
            key_secret_id: admin_secret.clone(),
            sessions: SecretsManagerSessionStore::new(secrets.clone(), &session_secret),
        },
        settings: ConnectSettings {
            public_url: Some(PAGE.into()),
        },
        after_connect: None,
    });
    let api = RuntimeApi::start("crc-connect", || {
        let deps = page.clone();
        on_own_thread(move || async move {
            let _ = lambda_http::run(lambda_http::service_fn(|request| {
                let deps = deps.clone();
                async move { shared::handlers::connect::lambda::run(request, &deps).await }
            }))
            .await;
        });
    })
    .await;
    let form = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("origin", PAGE),
        ("sec-fetch-site", "same-origin"),
    ];
    let signed_in = api
        .invoke(url_event(
            "POST",
            "/login",
            &[],
            &form,
            &[],
            &format!("key={ADMIN_KEY}"),
        ))
        .await;
    assert_eq!(signed_in["statusCode"], 303, "{signed_in}");
    let session = signed_in["cookies"][0]
        .as_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let session_value = session.split_once('=').unwrap().1.to_string();
    let started = api
        .invoke(url_event(
            "POST",
            "/connect",
            &[],
            &form,
            std::slice::from_ref(&session),
            "",
        ))
        .await;
    assert_eq!(started["statusCode"], 303, "{started}");
    let authorize = url::Url::parse(&header(&started, "location")).unwrap();
    let fields: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    let consent = url::Url::parse(&h.cleverreach.base_url())
        .unwrap()
        .join("oauth/authorize.php")
        .unwrap();
    let approved = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(consent)
        .form(&fields)
        .send()
        .await
        .unwrap();
    let callback = url::Url::parse(approved.headers()["location"].to_str().unwrap()).unwrap();
    let param = |name: &str| {
        callback
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let (code, state) = (param("code"), param("state"));
    let landing = api
        .invoke(url_event(
            "GET",
            "/callback",
            &[("code", &code), ("state", &state)],
            &[],
            &[],
            "",
        ))
        .await;
    assert_eq!(landing["statusCode"], 200, "{landing}");
    let confirm_body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("code", &code), ("state", &state)])
        .finish();
    let confirmed = api
        .invoke(url_event(
            "POST",
            "/callback",
            &[],
            &form,
            std::slice::from_ref(&session),
            &confirm_body,
        ))
        .await;
    assert_eq!(confirmed["statusCode"], 303, "{confirmed}");
    let store = SecretsManagerTokenStore::new(secrets.clone(), &token_secret);
    let mut connected = store.load().await.unwrap().expect("connected");
    let mut tokens = vec![
        connected.access_token.expose().to_string(),
        connected
            .refresh_token
            .clone()
            .unwrap()
            .expose()
            .to_string(),
    ];

    // ---- a sync worker: her last name changes; the token has expired; CleverReach refuses her row
    h.update("contacts", &people[2], json!({ "lastname": NEW_LAST_NAME }))
        .await
        .unwrap();
    h.dataverse.webhooks_idle().await;
    let change = h
        .queue
        .pending()
        .into_iter()
        .find(|c| c.event.record_id == people[2])
        .expect("the CRM's webhook queued her change");
    connected.expires_at_unix = 0;
    store.save(&connected).await.unwrap();
    h.cleverreach.expire_access_tokens();
    let worker = Arc::new(WorkerDeps::new(QueueFamily::Contact, connector()));
    let api = RuntimeApi::start("crc-sync-contact", || {
        let deps = worker.clone();
        // As in `main`: the runtime loop is awaited, not spawned (the worker's future is not
        // Send), so it gets a thread of its own.
        on_own_thread(move || async move {
            let _ = lambda_runtime::run(lambda_runtime::service_fn(|event| {
                let deps = deps.clone();
                async move { shared::handlers::sync_worker::lambda::run(event, &deps).await }
            }))
            .await;
        });
    })
    .await;
    let sqs_event = json!({ "Records": [{
        "messageId": "m-1",
        "receiptHandle": "r-1",
        "body": serde_json::to_string(&change.event).unwrap(),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1796558400000",
            "MessageGroupId": shared::domain::routing::message_group(&change.event),
            "MessageDeduplicationId": shared::domain::routing::deduplication_id(&change.event),
            "SenderId": "AROAEXAMPLE:crc-webhook-intake",
            "ApproximateFirstReceiveTimestamp": "1796558400040",
        },
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:crc-contact.fifo",
        "awsRegion": "eu-central-1",
    }]});
    let answer = api.invoke(sqs_event).await;
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    let refreshed = store.load().await.unwrap().unwrap();
    assert_ne!(
        refreshed.access_token.expose(),
        tokens[0],
        "the worker refreshed the token"
    );
    tokens.push(refreshed.access_token.expose().to_string());
    tokens.push(refreshed.refresh_token.unwrap().expose().to_string());

    // ---- both back-flow jobs: an unsubscribe, a damaged receiver, a sign-up
    h.cleverreach.unsubscribe(&group, PEOPLE[1].2).unwrap();
    h.cleverreach
        .corrupt_receiver(&group, PEOPLE[0].2, json!({ "deactivated": "soon" }))
        .unwrap();
    h.cleverreach
        .signup(
            &group,
            SIGNUP,
            &[("firstname", "Wilhelmina"), ("lastname", "Tessarolo")],
        )
        .unwrap();
    let jobs = Arc::new(JobDeps {
        conn: connector(),
        limits: shared::usecases::backflow::RunLimits::default(),
    });
    for (name, job) in [
        ("crc-receiver-state-sync", Job::ReceiverState),
        ("crc-lead-sync", Job::LeadSync),
    ] {
        let api = RuntimeApi::start(name, || {
            let deps = jobs.clone();
            on_own_thread(move || async move {
                let _ = lambda_runtime::run(lambda_runtime::service_fn(|event| {
                    let deps = deps.clone();
                    async move {
                        shared::handlers::receiver_state_sync::lambda::run(event, &deps, job).await
                    }
                }))
                .await;
            });
        })
        .await;
        let schedule: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../events/receiver-state-sync/schedule.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let summary = api.invoke(schedule).await;
        assert!(summary.get("error").is_none(), "{name}: {summary}");
    }

    // ---- what was logged
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = capture.text();
    if let Ok(path) = std::env::var("LOG_CAPTURE_DUMP") {
        std::fs::write(path, &log).unwrap();
    }
    let lower = log.to_lowercase();
    let mut secrets_used = vec![
        WEBHOOK_KEY.to_string(),
        ADMIN_KEY.to_string(),
        DEFAULT_CLIENT_SECRET.to_string(),
        CONNECTOR_CLIENT_SECRET.to_string(),
        code,
        session_value,
    ];
    secrets_used.extend(tokens);
    for secret in &secrets_used {
        assert!(
            !log.contains(secret.as_str()),
            "a secret in the log: {}",
            around(&log, secret)
        );
    }
    let mut personal: Vec<&str> = vec![SIGNUP, "Wilhelmina", "Tessarolo", NEW_LAST_NAME];
    for (first, last, email) in &PEOPLE {
        personal.extend([*first, *last, *email]);
    }
    for item in personal {
        assert!(
            !lower.contains(&item.to_lowercase()),
            "personal data in the log: {}",
            around(&log, item)
        );
    }
    // The run did what it should, and the log shows it (else the above proves nothing).
    for expected in [
        "\"level\":\"DEBUG\"",
        "queued",
        "CleverReach connected",
        "receiver refused by CleverReach",
        "[e-mail ",
        "back-flow run finished",
    ] {
        assert!(log.contains(expected), "the log has {expected:?}");
    }
}

/// Runs a function's runtime loop on a thread of its own (until the test ends).
fn on_own_thread<F, Fut>(main: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(main());
    });
}

/// The log line holding `needle` (for the failure message), with the needle marked.
fn around(log: &str, needle: &str) -> String {
    let lower = needle.to_lowercase();
    log.lines()
        .find(|line| line.to_lowercase().contains(&lower))
        .map(|line| line.chars().take(600).collect::<String>())
        .unwrap_or_default()
        .replace(needle, &format!(">>>{needle}<<<"))
}
