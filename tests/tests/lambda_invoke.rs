//! The real function binaries under `cargo lambda watch`, invoked with the sample events of
//! `events/` (`cargo lambda invoke <fn> --data-file …`) against the sandbox: the Dataverse and
//! CleverReach simulators, SQS and Secrets Manager on the AWS emulator. Then each binary's
//! cold-start init time (process start to its first "next invocation" request).
//!
//! Also keeps the sample events honest: the SQS batches carry exactly what the intake queues for
//! the matching webhook body, and every webhook body has a function-URL event wrapping it.
//! `UPDATE_EVENTS=1 cargo test -p sandbox --test lambda_invoke` rewrites them.
//!
//! Skips (and says so) when cargo-lambda is not installed (`pip install cargo-lambda==1.9.2`)
//! or when no AWS emulator is configured (as every AWS test; `make test` starts one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::aws::{create_fifo_queues, emulator, unique_name};
use sandbox::cleverreach::{CleverReachSim, CleverReachSimConfig};
use sandbox::dataverse::{
    CONNECTOR_CLIENT_ID, CONNECTOR_CLIENT_SECRET, CONNECTOR_USER_ID, DataverseSim,
    DataverseSimConfig, WebApi,
};
use sandbox::harness::checklist;
use serde_json::{Value, json};
use shared::adapters::cleverreach::{CleverReachClient, CleverReachConfig};
use shared::adapters::dataverse::webhook::parse_change_event;
use shared::adapters::secrets_manager::SecretsManagerTokenStore;
use shared::domain::change::ChangeEvent;
use shared::domain::hooks::{EventsMessage, HookEventKind};
use shared::domain::routing::{QueueFamily, deduplication_id, message_group};
use shared::secret::Secret;
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key in the sample function-URL events (`?code=`).
const WEBHOOK_KEY: &str = "local-webhook-key-5f0c2f6e9a7b4d1c";
/// The organisation the sample events come from (`x-ms-dynamics-organization`).
const ORG_DOMAIN: &str = "contoso.crm4.dynamics.com";
/// The static contact list of the samples (AddMember, sync on, …).
const SAMPLE_LIST: &str = "c1d2e3f4-5a6b-ef11-8409-000d3a4b7c21";
/// The contact of `contact-update.json`.
const SAMPLE_CONTACT: &str = "6d81597f-0f9f-e711-8122-000d3aa2331c";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The connect page's administrator key in the test's connector secret.
const CONNECT_ADMIN_KEY: &str = "invoke-admin-key-2f6b";

fn events() -> PathBuf {
    workspace().join("events")
}

/// The queue each sample webhook body lands on, by worker; checked against the routing.
const WORKER_SAMPLES: &[(&str, &[&str])] = &[
    (
        "sync-marketing-list",
        &[
            "list-update-sync-on",
            "list-query-updated",
            "list-addmember",
            "list-addlistmembers",
            "list-removemember",
            "list-delete",
        ],
    ),
    (
        "sync-contact",
        &[
            "contact-create",
            "contact-update",
            "contact-deactivate",
            "contact-delete",
        ],
    ),
    ("sync-lead", &["lead-update-email"]),
    ("sync-account", &["account-primarycontact-changed"]),
    ("sync-campaign", &["campaign-additem"]),
    (
        "sync-campaign-activity",
        &["campaignactivity-additem", "campaignactivity-removeitem"],
    ),
];

/// Function-URL events made by hand (other keys, base64); not generated.
const HAND_MADE_URL_EVENTS: &[&str] = &[
    "contact-update",
    "contact-update-base64",
    "contact-update-header-key",
    "wrong-key",
];

fn webhook_body(name: &str) -> String {
    std::fs::read_to_string(events().join("webhook-intake").join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("events/webhook-intake/{name}.json: {e}"))
}

/// The change the intake queues for a webhook body (the SQS message body).
fn queued_change(name: &str) -> ChangeEvent {
    parse_change_event(webhook_body(name).as_bytes(), false)
        .unwrap_or_else(|e| panic!("{name}.json does not parse as a webhook: {e}"))
}

/// An SQS event as Lambda delivers a FIFO message the intake sent.
fn sqs_batch(name: &str, family: QueueFamily) -> Value {
    let event = queued_change(name);
    let body = serde_json::to_string(&event).unwrap();
    let sent = event.occurred_at_ms.unwrap_or(1_718_013_600_000);
    json!({ "Records": [{
        "messageId": format!("{}", uuid_from(&event.operation_id)),
        "receiptHandle": format!("sample-receipt-{name}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": sent.to_string(),
            "SequenceNumber": "18886475023546847233",
            "MessageGroupId": message_group(&event),
            "SenderId": "AROAEXAMPLE:crc-webhook-intake",
            "MessageDeduplicationId": deduplication_id(&event),
            "ApproximateFirstReceiveTimestamp": (sent + 40).to_string(),
        },
        "messageAttributes": {
            "correlation_id": {
                "stringValue": event.correlation_id,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "String",
            }
        },
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:eu-central-1:123456789012:crc-{}.fifo", family.name()),
        "awsRegion": "eu-central-1",
    }]})
}

/// A stable message id per operation (the samples must not change on every regeneration).
fn uuid_from(operation_id: &str) -> String {
    let hex: String = operation_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("5a5a5a5a-0000-4000-8000-{hex:0>12}")
}

/// A function-URL (payload 2.0) event carrying a webhook body as Dataverse posts it.
fn function_url_event(name: &str) -> Value {
    let body = webhook_body(name);
    let parsed: Option<Value> = serde_json::from_str(&body).ok();
    let field = |key: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": format!("code={WEBHOOK_KEY}"),
        "queryStringParameters": { "code": WEBHOOK_KEY },
        "headers": {
            "content-type": "application/json",
            "host": "abc123.lambda-url.eu-central-1.on.aws",
            "x-ms-dynamics-organization": ORG_DOMAIN,
            "x-ms-dynamics-entity-name": field("PrimaryEntityName"),
            "x-ms-dynamics-request-name": field("MessageName"),
            "x-ms-correlation-request-id": field("CorrelationId"),
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.eu-central-1.on.aws",
            "domainPrefix": "abc123",
            "http": {
                "method": "POST",
                "path": "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "52.1.2.3",
                "userAgent": "Dataverse"
            },
            "requestId": format!("c0ffee00-0000-4000-8000-{:0>12}", name.len()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "26/Nov/2026:21:00:00 +0000",
            "timeEpoch": 1_795_726_800_000_i64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// Compares a sample file with what it should hold, or rewrites it under `UPDATE_EVENTS=1`.
fn check_sample(path: &Path, expected: &Value, stale: &mut Vec<String>) {
    let update = std::env::var("UPDATE_EVENTS").as_deref() == Ok("1");
    let current: Option<Value> = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if current.as_ref() == Some(expected) {
        return;
    }
    if update {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, serde_json::to_string_pretty(expected).unwrap() + "\n").unwrap();
    } else {
        stale.push(
            path.strip_prefix(workspace())
                .unwrap()
                .display()
                .to_string(),
        );
    }
}

#[test]
fn sample_sqs_batches_carry_what_the_intake_queues_for_their_webhook_body() {
    let mut stale = Vec::new();
    for (function, names) in WORKER_SAMPLES {
        for name in *names {
            let event = queued_change(name);
            let family = QueueFamily::for_entity(&event.entity)
                .unwrap_or_else(|| panic!("{name}: the intake queues no {}", event.entity));
            assert_eq!(
                format!("sync-{}", family.name()),
                *function,
                "{name} goes to the {family} queue"
            );
            let path = events().join(function).join(format!("{name}.json"));
            check_sample(&path, &sqs_batch(name, family), &mut stale);
        }
    }
    assert!(
        stale.is_empty(),
        "stale sample events (regenerate with UPDATE_EVENTS=1): {stale:?}"
    );
}

#[test]
fn the_sample_events_delivery_is_queued_as_the_endpoint_queues_it() {
    let read = |path: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(events().join(path)).unwrap()).unwrap()
    };
    let batch = read("sync-cleverreach-events/receiver-unsubscribed.json");
    let record = &batch["Records"][0];
    let message: EventsMessage =
        serde_json::from_str(record["body"].as_str().unwrap()).expect("an events message");
    assert_eq!(
        record["attributes"]["MessageGroupId"],
        message.message_group()
    );
    assert_eq!(
        record["attributes"]["MessageDeduplicationId"],
        message.deduplication_id()
    );
    // The function-URL sample carries the same receiver in the same group.
    let delivery = read("cleverreach-events/receiver-unsubscribed.json");
    let body: Value = serde_json::from_str(delivery["body"].as_str().unwrap()).unwrap();
    let EventsMessage::Delivery(event) = message else {
        panic!("the sample is a delivery");
    };
    assert_eq!(body["condition"], event.group_id);
    assert_eq!(body["payload"]["pool_id"], event.receiver_id);
}

#[test]
fn sample_function_url_events_wrap_every_webhook_body() {
    let mut stale = Vec::new();
    let dir = events().join("webhook-intake");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 15,
        "the webhook samples are there: {names:?}"
    );
    for name in names
        .iter()
        .filter(|n| !HAND_MADE_URL_EVENTS.contains(&n.as_str()))
    {
        let path = dir.join("function-url").join(format!("{name}.json"));
        check_sample(&path, &function_url_event(name), &mut stale);
    }
    assert!(
        stale.is_empty(),
        "stale sample events (regenerate with UPDATE_EVENTS=1): {stale:?}"
    );
}

// ------------------------------------------------------------------ under cargo lambda watch

/// cargo-lambda: `$CARGO_LAMBDA`, the PATH, or the venvs `make` and CI install it into.
fn cargo_lambda() -> Option<PathBuf> {
    let candidates = std::env::var_os("CARGO_LAMBDA")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(|dir| dir.join("cargo-lambda")),
        )
        .chain(
            [".venv", ".ci/venv"]
                .iter()
                .map(|v| workspace().join(v).join("bin/cargo-lambda")),
        );
    for path in candidates {
        let ok = Command::new(&path)
            .args(["lambda", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Some(path);
        }
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process group started by the test, ended (TERM, then KILL) when dropped.
struct Group {
    child: Child,
}

impl Group {
    fn spawn(mut command: Command) -> Group {
        command.process_group(0);
        Group {
            child: command.spawn().expect("start the process"),
        }
    }

    fn signal(&self, signal: &str) {
        // `--`: a negative id names the process group, not an option of kill.
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal("-TERM");
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The names of the deployment's secrets (one per consumer).
struct Secrets {
    dataverse_client: String,
    cleverreach_client: String,
    webhook_key: String,
    admin_key: String,
    sessions: String,
    tokens: String,
    hooks: String,
}

/// The verify token in the sample hooks secret (what the handshake answers with).
const SAMPLE_VERIFY_TOKEN: &str = "sample-verify-token-4c2e8d1f0a";

/// The environment of every function, as the SAM template sets it (pointing at the sandbox).
fn function_env(
    dataverse: &DataverseSim,
    cleverreach: &CleverReachSim,
    secrets: &Secrets,
    queues: &sandbox::harness::SqsQueues,
    watch_port: u16,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = [
        ("DATAVERSE_URL", dataverse.resource()),
        ("DATAVERSE_API_URL", dataverse.api_url()),
        ("DATAVERSE_TOKEN_URL", dataverse.token_url()),
        (
            "DATAVERSE_SCOPE",
            format!("{}/.default", dataverse.resource()),
        ),
        ("DATAVERSE_CLIENT_ID", CONNECTOR_CLIENT_ID.to_string()),
        ("CONNECTOR_USER_ID", CONNECTOR_USER_ID.to_string()),
        ("DATAVERSE_ORGANIZATION", ORG_DOMAIN.to_string()),
        (
            "DATAVERSE_CLIENT_SECRET_ID",
            secrets.dataverse_client.clone(),
        ),
        (
            "CLEVERREACH_CLIENT_SECRET_ID",
            secrets.cleverreach_client.clone(),
        ),
        ("WEBHOOK_KEY_SECRET_ID", secrets.webhook_key.clone()),
        ("CONNECT_ADMIN_SECRET_ID", secrets.admin_key.clone()),
        ("CONNECT_SESSION_SECRET_ID", secrets.sessions.clone()),
        ("CLEVERREACH_TOKEN_SECRET_ID", secrets.tokens.clone()),
        (
            "CLEVERREACH_CLIENT_ID",
            CleverReachSimConfig::default().client_id,
        ),
        ("CLEVERREACH_API_URL", cleverreach.base_url()),
        ("CLEVERREACH_HOOKS_SECRET_ID", secrets.hooks.clone()),
        // The events function's URL as `cargo lambda watch` serves function URLs.
        (
            "CLEVERREACH_EVENTS_URL",
            format!("http://127.0.0.1:{watch_port}/lambda-url/cleverreach-events/"),
        ),
        ("RUST_LOG", "info".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for family in QueueFamily::ALL
        .iter()
        .chain(QueueFamily::RETROACTIVE.iter())
        .chain([QueueFamily::CleverReachEvents].iter())
    {
        if let Some(url) = queues.urls.get(*family) {
            env.insert(family.queue_url_variable(), url.to_string());
        }
    }
    env
}

/// One `cargo lambda invoke`; the response payload, or the error text.
async fn invoke(
    cargo_lambda: &Path,
    port: u16,
    function: &str,
    event: &Path,
) -> Result<Value, String> {
    let mut command = Command::new(cargo_lambda);
    command
        .current_dir(workspace())
        .args([
            "lambda",
            "invoke",
            function,
            "--invoke-address",
            "127.0.0.1",
        ])
        .args([
            "--invoke-port",
            &port.to_string(),
            "--output-format",
            "json",
        ])
        .arg("--data-file")
        .arg(event);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .map_err(|e| format!("cargo lambda invoke {function}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        return Err(format!(
            "cargo lambda invoke {function} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_str(stdout.trim())
        .map_err(|e| format!("{function} answered {stdout:?}, not JSON: {e}"))
}

fn no_batch_failures(function: &str, response: &Value) {
    let failures = response
        .get("batchItemFailures")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{function}: no batchItemFailures in {response}"));
    assert!(failures.is_empty(), "{function}: failures {failures:?}");
}

async fn create_secret(client: &aws_sdk_secretsmanager::Client, name: &str, value: &str) {
    client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_binaries_answer_their_events_under_cargo_lambda_watch() {
    let Some(cargo_lambda) = cargo_lambda() else {
        eprintln!(
            "lambda invoke: skipped, cargo-lambda is not installed \
             (pip install 'cargo-lambda==1.9.2', or set CARGO_LAMBDA)"
        );
        return;
    };
    let Some(aws) = emulator("lambda invoke").await else {
        return;
    };
    let present = |function: &str| workspace().join("functions").join(function).is_dir();

    // The sandbox, the queues and the secrets, as a deployment has them.
    let dataverse = DataverseSim::spawn(DataverseSimConfig {
        org_domain: ORG_DOMAIN.to_string(),
        ..DataverseSimConfig::default()
    })
    .await
    .unwrap();
    sandbox::provision::install_schema(&dataverse)
        .await
        .unwrap();
    let cleverreach = CleverReachSim::spawn(CleverReachSimConfig::default())
        .await
        .unwrap();
    let prefix = unique_name("crc-invoke");
    let sqs = aws_sdk_sqs::Client::new(&aws.config);
    let mut queues = create_fifo_queues(&sqs, &prefix, 5).await.unwrap();
    // The retroactive-sync and events queues (not change-event families, so not in
    // `create_fifo_queues`).
    for family in QueueFamily::RETROACTIVE
        .into_iter()
        .chain([QueueFamily::CleverReachEvents])
    {
        let created = sqs
            .create_queue()
            .queue_name(format!("{prefix}-{}.fifo", family.name()))
            .attributes(aws_sdk_sqs::types::QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .unwrap();
        queues.urls = queues
            .urls
            .clone()
            .with(family, created.queue_url().unwrap().to_string());
    }
    let secrets = aws_sdk_secretsmanager::Client::new(&aws.config);
    let names = Secrets {
        dataverse_client: format!("{prefix}/dataverse-client-secret"),
        cleverreach_client: format!("{prefix}/cleverreach-client-secret"),
        webhook_key: format!("{prefix}/webhook-key"),
        admin_key: format!("{prefix}/connect-admin-key"),
        sessions: format!("{prefix}/connect-sessions"),
        tokens: format!("{prefix}/cleverreach-tokens"),
        hooks: format!("{prefix}/cleverreach-hooks"),
    };
    let token_secret = names.tokens.clone();
    for (name, value) in [
        (&names.dataverse_client, CONNECTOR_CLIENT_SECRET.to_string()),
        (
            &names.cleverreach_client,
            CleverReachSimConfig::default().client_secret,
        ),
        (&names.webhook_key, WEBHOOK_KEY.to_string()),
        (&names.admin_key, CONNECT_ADMIN_KEY.to_string()),
        (
            &names.hooks,
            json!({ "verify": SAMPLE_VERIFY_TOKEN }).to_string(),
        ),
    ] {
        create_secret(&secrets, name, &value).await;
    }
    // What the connect page does: tokens into the token secret.
    CleverReachClient::new(
        CleverReachConfig::new(
            url::Url::parse(&cleverreach.base_url()).unwrap(),
            CleverReachSimConfig::default().client_id,
            Secret::new(CleverReachSimConfig::default().client_secret),
            format!("Dynamics 365 ({ORG_DOMAIN})"),
        ),
        SecretsManagerTokenStore::new(secrets.clone(), token_secret.clone()),
    )
    .unwrap()
    .connect_client_credentials()
    .await
    .unwrap();

    // The CRM of the samples: the static list (sync on) with James of contact-update.json and
    // one more member; the settings row naming the CleverReach it syncs with.
    let admin = WebApi::admin(&dataverse).await.unwrap();
    admin
        .create(
            "crc_settings",
            &json!({ "crc_key": "cleverreach:connectiondata:apiurl", "crc_value": cleverreach.base_url() }),
        )
        .await
        .unwrap();
    let james = admin
        .create(
            "contacts",
            &json!({ "contactid": SAMPLE_CONTACT, "firstname": "James", "lastname": "Glynn",
                     "emailaddress1": "james.glynn@example.com", "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
    let maria = admin
        .create(
            "contacts",
            &json!({ "firstname": "Maria", "lastname": "Campbell",
                     "emailaddress1": "maria.campbell@example.com", "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
    admin
        .create(
            "lists",
            &json!({ "listid": SAMPLE_LIST, "listname": "Newsletter Kunden", "createdfromcode": 2,
                     "type": false, "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    let members: Vec<Value> = [&james, &maria]
        .iter()
        .map(|id| json!({ "@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": id }))
        .collect();
    let reply = admin
        .post(
            "AddListMembersList",
            &json!({ "List": { "@odata.type": "Microsoft.Dynamics.CRM.list", "listid": SAMPLE_LIST },
                     "Members": members }),
        )
        .await
        .unwrap();
    assert!(reply.status < 300, "members added: {}", reply.text);

    // cargo lambda watch on a free local port, the functions' environment inherited.
    let port = free_port();
    let env = function_env(&dataverse, &cleverreach, &names, &queues, port);
    let mut command = Command::new(&cargo_lambda);
    command
        .current_dir(workspace())
        .args(["lambda", "watch", "--ignore-changes", "--quiet"])
        .args([
            "--invoke-address",
            "127.0.0.1",
            "--invoke-port",
            &port.to_string(),
        ])
        .envs(&env)
        .stdout(Stdio::null());
    let watch = Group::spawn(command);
    let ready = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(60),
            "cargo lambda watch did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut ran = Vec::new();
    let intake_events = events().join("webhook-intake/function-url");
    let events_queue = queues
        .urls
        .get(QueueFamily::CleverReachEvents)
        .unwrap()
        .to_string();
    if present("cleverreach-events") {
        // CleverReach's handshake: "<verify token> <secret>" as plain text.
        let response = invoke(
            &cargo_lambda,
            port,
            "cleverreach-events",
            &events().join("cleverreach-events/handshake.json"),
        )
        .await
        .unwrap();
        assert_eq!(response["statusCode"], 200, "{response}");
        assert_eq!(
            response["body"],
            format!("{SAMPLE_VERIFY_TOKEN} b1946ac92492d2347c6235b4d2611184"),
            "{response}"
        );
        // A delivery with a token that is not the group's is refused and nothing is queued.
        let response = invoke(
            &cargo_lambda,
            port,
            "cleverreach-events",
            &events().join("cleverreach-events/wrong-token.json"),
        )
        .await
        .unwrap();
        assert_eq!(response["statusCode"], 401, "{response}");
        let received = sqs
            .receive_message()
            .queue_url(&events_queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        assert!(received.messages().is_empty(), "nothing queued on 401");
        ran.push("cleverreach-events");
    }
    if present("webhook-intake") {
        // A contact update is acknowledged with 202 and lands on the contact queue.
        let response = invoke(
            &cargo_lambda,
            port,
            "webhook-intake",
            &intake_events.join("contact-update.json"),
        )
        .await
        .unwrap();
        assert_eq!(response["statusCode"], 202, "{response}");
        let contact_queue = queues.urls.get(QueueFamily::Contact).unwrap();
        let received = sqs
            .receive_message()
            .queue_url(contact_queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        let bodies: Vec<ChangeEvent> = received
            .messages()
            .iter()
            .filter_map(|m| serde_json::from_str(m.body()?).ok())
            .collect();
        assert_eq!(bodies.len(), 1, "one message on the contact queue");
        assert_eq!(bodies[0].record_id, SAMPLE_CONTACT);
        assert_eq!(bodies[0], queued_change("contact-update"));
        // A wrong key is refused and nothing is queued.
        let response = invoke(
            &cargo_lambda,
            port,
            "webhook-intake",
            &intake_events.join("wrong-key.json"),
        )
        .await
        .unwrap();
        assert_eq!(response["statusCode"], 401, "{response}");
        // Every message kind is accepted (2xx) and bad bodies are refused with 400.
        for name in [
            "list-addmember",
            "list-addlistmembers",
            "list-removemember",
            "campaign-additem",
            "campaignactivity-removeitem",
            "contact-create",
            "contact-delete",
            "list-delete",
        ] {
            let response = invoke(
                &cargo_lambda,
                port,
                "webhook-intake",
                &intake_events.join(format!("{name}.json")),
            )
            .await
            .unwrap();
            let status = response["statusCode"].as_u64().unwrap_or(0);
            assert!((200..300).contains(&status), "{name}: {response}");
        }
        let response = invoke(
            &cargo_lambda,
            port,
            "webhook-intake",
            &intake_events.join("malformed-not-json.json"),
        )
        .await
        .unwrap();
        assert_eq!(response["statusCode"], 400, "{response}");
        ran.push("webhook-intake");
    }

    if present("sync-marketing-list") {
        // The list's sync was turned on: its group appears with both members.
        let response = invoke(
            &cargo_lambda,
            port,
            "sync-marketing-list",
            &events().join("sync-marketing-list/list-update-sync-on.json"),
        )
        .await
        .unwrap();
        no_batch_failures("sync-marketing-list", &response);
        let group = dataverse
            .row("lists", SAMPLE_LIST)
            .and_then(|row| row.get("crc_groupid")?.as_str().map(str::to_string))
            .expect("the list has its group id");
        let sim_group = cleverreach.group(&group).expect("the group exists");
        assert_eq!(sim_group.name, "Newsletter Kunden");
        let mut emails: Vec<String> = cleverreach
            .receivers(&group)
            .into_iter()
            .filter(|r| r.active)
            .map(|r| r.email.to_lowercase())
            .collect();
        emails.sort();
        assert_eq!(
            emails,
            ["james.glynn@example.com", "maria.campbell@example.com"]
        );
        if present("cleverreach-events") {
            // The new group was registered for receiver events at the events function's URL
            // (CleverReach's handshake went through the binary under watch).
            let registered: Vec<String> = cleverreach
                .hook_registrations()
                .into_iter()
                .filter(|r| r.condition == group)
                .map(|r| r.url)
                .collect();
            assert_eq!(
                registered,
                [env["CLEVERREACH_EVENTS_URL"].clone()],
                "one registration for the group"
            );
        }
        ran.push("sync-marketing-list");
    }

    // The other workers: each answers its samples without a failed message.
    for (function, names) in WORKER_SAMPLES {
        if *function == "sync-marketing-list" || !present(function) {
            continue;
        }
        for name in *names {
            let response = invoke(
                &cargo_lambda,
                port,
                function,
                &events().join(function).join(format!("{name}.json")),
            )
            .await
            .unwrap_or_else(|e| panic!("{function} with {name}: {e}"));
            no_batch_failures(function, &response);
        }
        ran.push(function);
    }
    if present("sync-contact") {
        // James is still in the group after the contact worker re-read him.
        let group = dataverse
            .row("lists", SAMPLE_LIST)
            .and_then(|row| row.get("crc_groupid")?.as_str().map(str::to_string));
        if let Some(group) = group {
            assert!(
                cleverreach
                    .receiver(&group, "james.glynn@example.com")
                    .is_some_and(|r| r.active)
            );
        }
    }
    // The scheduled and on-demand functions.
    if present("resync") {
        // One event queues a full reconcile of every source with sync on (the sample list).
        let response = invoke(
            &cargo_lambda,
            port,
            "resync",
            &events().join("resync/all.json"),
        )
        .await
        .unwrap();
        assert_eq!(response["queued"], 1, "{response}");
        // The orphan sweep ran against CleverReach: the sample list's group is the
        // connector's, and it is no orphan.
        assert_eq!(response["orphans"]["connector_groups"], 1, "{response}");
        assert_eq!(response["orphans"]["deleted"], 0, "{response}");
        ran.push("resync");
    }
    for job in ["receiver-state-sync", "lead-sync"] {
        if present(job) {
            let response = invoke(
                &cargo_lambda,
                port,
                job,
                &events().join(job).join("schedule.json"),
            )
            .await
            .unwrap();
            assert_eq!(response["complete"], true, "{job}: {response}");
            assert_eq!(
                response["groups"], 1,
                "{job} read the sample list's group: {response}"
            );
            ran.push(job);
        }
    }
    if present("connect") {
        let response = invoke(
            &cargo_lambda,
            port,
            "connect",
            &events().join("connect/status.json"),
        )
        .await
        .unwrap();
        assert_eq!(response["statusCode"], 200, "{response}");
        let status: Value =
            serde_json::from_str(response["body"].as_str().unwrap_or_default()).unwrap();
        assert_eq!(status["connected"], true, "{status}");
        let response = invoke(
            &cargo_lambda,
            port,
            "connect",
            &events().join("connect/status-wrong-key.json"),
        )
        .await
        .unwrap();
        assert_eq!(response["statusCode"], 401, "{response}");
        ran.push("connect");
    }
    for (function, sample) in [
        ("sublist-fanout", "list-retroactive-sync-on"),
        ("sublist-update", "sublist"),
    ] {
        if present(function) {
            let response = invoke(
                &cargo_lambda,
                port,
                function,
                &events().join(function).join(format!("{sample}.json")),
            )
            .await
            .unwrap();
            no_batch_failures(function, &response);
            ran.push(function);
        }
    }

    if present("cleverreach-events") && present("sync-cleverreach-events") {
        // James unsubscribes in CleverReach: its delivery reaches the events function (under
        // watch), which queues it; the events worker writes his "no" into the CRM.
        let group = dataverse
            .row("lists", SAMPLE_LIST)
            .and_then(|row| row.get("crc_groupid")?.as_str().map(str::to_string))
            .expect("the list has its group id");
        cleverreach
            .unsubscribe(&group, "james.glynn@example.com")
            .unwrap();
        assert!(
            cleverreach
                .wait_for_hook_deliveries(Duration::from_secs(30))
                .await,
            "the delivery was answered"
        );
        let delivered = cleverreach.hook_deliveries();
        assert!(
            delivered.iter().any(|d| d.status.is_some_and(|s| s < 300)),
            "the events function acknowledged the delivery: {delivered:?}"
        );
        let received = sqs
            .receive_message()
            .queue_url(&events_queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        // Sign-ups made by the syncs were delivered too; the unsubscribe is the one to work.
        let queued: Vec<(String, EventsMessage)> = received
            .messages()
            .iter()
            .filter_map(|m| {
                let body = m.body()?.to_string();
                let message = serde_json::from_str(&body).ok()?;
                Some((body, message))
            })
            .filter(|(_, m)| {
                matches!(m, EventsMessage::Delivery(e) if e.kind == HookEventKind::Unsubscribed)
            })
            .collect();
        assert_eq!(queued.len(), 1, "one unsubscribe queued: {queued:?}");
        let (body, message) = queued.into_iter().next().unwrap();
        let EventsMessage::Delivery(event) = &message else {
            unreachable!()
        };
        assert_eq!(event.group_id, group);
        // The sample SQS event, carrying what the endpoint queued.
        let mut batch: Value = serde_json::from_str(
            &std::fs::read_to_string(
                events().join("sync-cleverreach-events/receiver-unsubscribed.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let record = &mut batch["Records"][0];
        record["body"] = json!(body);
        record["attributes"]["MessageGroupId"] = json!(message.message_group());
        record["attributes"]["MessageDeduplicationId"] = json!(message.deduplication_id());
        let live = std::env::temp_dir().join(format!("{prefix}-events-batch.json"));
        std::fs::write(&live, batch.to_string()).unwrap();
        let response = invoke(&cargo_lambda, port, "sync-cleverreach-events", &live)
            .await
            .unwrap();
        let _ = std::fs::remove_file(&live);
        no_batch_failures("sync-cleverreach-events", &response);
        let checklist: Value = dataverse
            .row("contacts", SAMPLE_CONTACT)
            .and_then(|row| serde_json::from_str(row.get("crc_checklist")?.as_str()?).ok())
            .expect("James has a checklist");
        assert_eq!(
            checklist[0]["state"], 2,
            "James's newsletter says no: {checklist}"
        );
        ran.push("sync-cleverreach-events");
    }

    if present("sync-marketing-list") {
        // The sample list is deleted while a campaign with sync on exists: the list worker
        // queues that campaign's resync on the campaign queue (the list's links to campaigns
        // vanish with it, so which campaigns held it cannot be read any more).
        let campaign = admin
            .create(
                "campaigns",
                &json!({ "name": "Spring", "crc_checklist": checklist(&[(0, 1)]),
                         "crc_syncwithcleverreach": true }),
            )
            .await
            .unwrap();
        let reply = admin
            .delete(&format!("lists({SAMPLE_LIST})"))
            .await
            .unwrap();
        assert!(reply.status < 300, "list deleted: {}", reply.text);
        let response = invoke(
            &cargo_lambda,
            port,
            "sync-marketing-list",
            &events().join("sync-marketing-list/list-delete.json"),
        )
        .await
        .unwrap();
        no_batch_failures("sync-marketing-list", &response);
        let campaign_queue = queues.urls.get(QueueFamily::Campaign).unwrap();
        let mut resyncs = Vec::new();
        for _ in 0..3 {
            let received = sqs
                .receive_message()
                .queue_url(campaign_queue)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap();
            resyncs.extend(
                received
                    .messages()
                    .iter()
                    .filter_map(|m| serde_json::from_str::<ChangeEvent>(m.body()?).ok())
                    .filter(|e| e.is_resync())
                    .map(|e| e.record_id),
            );
        }
        assert_eq!(
            resyncs,
            [campaign.to_ascii_lowercase()],
            "one resync of the synced campaign queued"
        );
    }

    eprintln!("lambda invoke: ran {ran:?} under cargo lambda watch");
    assert!(!ran.is_empty(), "no function of the workspace was invoked");
    drop(watch);

    // Cold start: each binary (as watch built it) from process start to its first
    // "next invocation" request, with the same environment and secrets.
    let mut init = Vec::new();
    for function in ran {
        init.push((function, init_time(function, &env).await));
    }
    for (function, took) in &init {
        eprintln!("cold-start init {function}: {} ms", took.as_millis());
        assert!(
            *took < Duration::from_secs(10),
            "{function} took {took:?} to start"
        );
    }
}

/// Starts the function's binary against a stand-in Runtime API that records when the function
/// first asks for an invocation (its init is done then), and stops it.
async fn init_time(function: &str, env: &BTreeMap<String, String>) -> Duration {
    use axum::routing::get;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let binary = target.join("debug").join(function);
    assert!(binary.is_file(), "{} was built by watch", binary.display());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let app = axum::Router::new().route(
        "/2018-06-01/runtime/invocation/next",
        get(move || {
            let _ = tx.send(Instant::now());
            // Never answers: the function waits here like an idle Lambda sandbox.
            std::future::pending::<()>()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut command = Command::new(&binary);
    command
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "init-time")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "init-time")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = Instant::now();
    let process = Group::spawn(command);
    let mut rx = rx;
    let first = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{function} never asked for an invocation"))
        .unwrap();
    drop(process);
    server.abort();
    first - started
}
