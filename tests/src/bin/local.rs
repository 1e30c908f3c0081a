//! The connector's main job, locally: the sandbox (simulated Dataverse and CleverReach), the
//! webhook intake and every worker in one process, on a local queue (or on SQS when
//! `AWS_ENDPOINT_URL` and the `<FAMILY>_QUEUE_URL` variables are set).
//!
//! `local demo`: creates demo data, registers the webhooks like an administrator, makes a
//! scripted series of CRM changes, waits until CleverReach converged, prints every group and a
//! summary, exits 0 (1 if anything ended in a dead-letter queue).
//! `local up`: the same without the script, in the foreground until Ctrl-C, on fixed ports
//! (`DATAVERSE_PORT` 8801, `CLEVERREACH_PORT` 8802, `INTAKE_PORT` 8803); prints the endpoints and
//! sandbox credentials as one JSON line. Both also run the scheduled back-flow jobs
//! (`receiver-state-sync`, `lead-sync`) every `BACKFLOW_INTERVAL_SECS` (default 30 for `up`, 2
//! for `demo`), as EventBridge Scheduler does hourly in AWS.
//! `local run-job receiver-state-sync|lead-sync`: runs one job once against a running
//! `local up` (its fixed ports), with its own clients, and prints the run's summary.
//! `up` also serves `POST /resync` on `RESYNC_PORT` (8805):
//! the `resync` function's handler, queueing a full reconcile of every source with sync on.
//! `local resync [list|campaign|campaignactivity]`: asks a running `local up` for that and
//! prints how many sources were queued; `up` then works them like any other change.

use sandbox::cleverreach::{CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use sandbox::dataverse::{self, DataverseSimConfig};
use sandbox::harness::{Harness, HarnessOptions, SqsQueues, checklist};
use serde_json::json;
use shared::adapters::cleverreach::{CleverReachClient, CleverReachConfig, InMemoryTokenStore};
use shared::adapters::dataverse::client::{DataverseClient, DataverseConfig};
use shared::adapters::dataverse::crm::DataverseCrm;
use shared::adapters::sqs::QueueUrls;
use shared::adapters::sqs::SqsChangeQueue;
use shared::config::{BackflowLimits, Env};
use shared::domain::routing::QueueFamily;
use shared::handlers::receiver_state_sync::{JobDeps, limits, run_once};
use shared::handlers::resync::{ResyncDeps, ResyncError, ResyncRequest, resync_all};
use shared::ports::ChangeQueue;
use shared::secret::Secret;
use shared::usecases::Connector;
use shared::usecases::backflow::{Job, RunSummary};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

type Run<T> = Result<T, String>;

fn port(variable: &str, default: u16) -> Run<u16> {
    match std::env::var(variable) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{variable}={v:?} is not a port number")),
        Err(_) => Ok(default),
    }
}

/// SQS when an AWS endpoint and every queue URL are configured; otherwise the local queue.
async fn sqs_from_env() -> Option<SqsQueues> {
    std::env::var("AWS_ENDPOINT_URL").ok()?;
    let urls = QueueUrls::from_env(&Env::capture());
    if urls.families().count() < QueueFamily::ALL.len() {
        return None;
    }
    let mut dead = QueueUrls::new();
    for family in QueueFamily::ALL {
        let var = format!("{}_DLQ_URL", family.name().replace('-', "_").to_uppercase());
        if let Ok(url) = std::env::var(var) {
            dead = dead.with(family, url);
        }
    }
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    Some(SqsQueues {
        client: aws_sdk_sqs::Client::new(&config),
        urls,
        dead_letter_urls: dead,
    })
}

async fn start(fixed_ports: bool) -> Run<Harness> {
    let mut dataverse = DataverseSimConfig::default();
    let mut cleverreach = CleverReachSimConfig::default();
    let mut options = HarnessOptions {
        sqs: sqs_from_env().await,
        ..HarnessOptions::default()
    };
    if fixed_ports {
        dataverse.bind = SocketAddr::from(([127, 0, 0, 1], port("DATAVERSE_PORT", 8801)?));
        cleverreach.bind = SocketAddr::from(([127, 0, 0, 1], port("CLEVERREACH_PORT", 8802)?));
        options.intake_bind = Some(SocketAddr::from((
            [127, 0, 0, 1],
            port("INTAKE_PORT", 8803)?,
        )));
    }
    let h = Harness::start_with(dataverse, cleverreach, options)
        .await
        .map_err(|e| e.to_string())?;
    h.install(&[
        (
            "cleverreach:newslettertypsettings:typjson",
            r#"[{"id":0,"description":"Information","position":1},{"id":1,"description":"Werbung und Spiele","position":2}]"#,
        ),
        ("cleverreach:transfersettings:entity", "contact,account,lead"),
    ])
    .await
    .map_err(|e| e.to_string())?;
    Ok(h)
}

/// Seconds between runs of the scheduled jobs (`BACKFLOW_INTERVAL_SECS`).
fn backflow_interval(default: u64) -> Run<Duration> {
    match std::env::var("BACKFLOW_INTERVAL_SECS") {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("BACKFLOW_INTERVAL_SECS={v:?} is not a positive number")),
        Err(_) => Ok(Duration::from_secs(default)),
    }
}

/// One tick of the schedule: both jobs once; a line for each that did something.
async fn scheduled_jobs(h: &Harness) -> Run<(RunSummary, RunSummary)> {
    let states = h.run_receiver_state_sync().await?;
    let leads = h.run_lead_sync().await?;
    if states.applied + states.skipped > 0 || !states.failed_groups.is_empty() {
        println!(
            "receiver-state-sync: {} event(s) applied ({} receiver-state rows, {} checklists set to no, {} deactivated), {} skipped, {} group(s) failed",
            states.applied,
            states.receiver_states_created,
            states.checklists_written,
            states.people_deactivated,
            states.skipped,
            states.failed_groups.len()
        );
    }
    if leads.applied + leads.skipped > 0 || !leads.failed_groups.is_empty() {
        println!(
            "lead-sync: {} lead(s) created, {} updated, {} skipped, {} group(s) failed",
            leads.leads_created,
            leads.leads_updated,
            leads.skipped,
            leads.failed_groups.len()
        );
    }
    Ok((states, leads))
}

/// `local run-job <job>`: one run against the sandbox of a running `local up`.
async fn run_job(name: &str) -> Run<bool> {
    let job = match name {
        "receiver-state-sync" => Job::ReceiverState,
        "lead-sync" => Job::LeadSync,
        other => {
            return Err(format!(
                "unknown job {other:?}: receiver-state-sync or lead-sync"
            ));
        }
    };
    let url = |text: String| url::Url::parse(&text).map_err(|e| format!("{text}: {e}"));
    let dataverse_base = format!("http://127.0.0.1:{}", port("DATAVERSE_PORT", 8801)?);
    let tenant = DataverseSimConfig::default().tenant_id;
    let crm = DataverseClient::new(DataverseConfig::new(
        url(format!("{dataverse_base}/api/data/v9.2/"))?,
        url(format!("{dataverse_base}/{tenant}/oauth2/v2.0/token"))?,
        dataverse::CONNECTOR_CLIENT_ID,
        Secret::new(dataverse::CONNECTOR_CLIENT_SECRET),
        format!("{dataverse_base}/.default"),
    ))
    .map_err(|e| e.to_string())?;
    let newsletter = CleverReachClient::new(
        CleverReachConfig::new(
            url(format!(
                "http://127.0.0.1:{}/",
                port("CLEVERREACH_PORT", 8802)?
            ))?,
            DEFAULT_CLIENT_ID,
            Secret::new(DEFAULT_CLIENT_SECRET),
            "Dynamics 365 (local)",
        ),
        InMemoryTokenStore::new(),
    )
    .map_err(|e| e.to_string())?;
    newsletter
        .connect_client_credentials()
        .await
        .map_err(|e| format!("is `make up` running? CleverReach sandbox: {e}"))?;
    let deps = JobDeps {
        conn: Connector::new(DataverseCrm::new(crm), newsletter),
        limits: limits(BackflowLimits::from_env(&Env::capture()).map_err(|e| e.to_string())?),
    };
    let summary = run_once(&deps, job, &json!({}))
        .await
        .map_err(|e| format!("{}: {e}", job.name()))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?
    );
    Ok(summary.failed_groups.is_empty())
}

const FIRST: [&str; 10] = [
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannes", "Ida", "Jonas",
];
const LAST: [&str; 5] = ["Becker", "Fischer", "Klein", "Wagner", "Wolf"];

async fn demo() -> Run<bool> {
    let started = Instant::now();
    let h = start(false).await?;
    println!(
        "sandbox up; org provisioned by the installer; webhooks registered; creating demo data"
    );

    // 50 contacts: 35 say yes to "Information", 10 only to "Werbung und Spiele", 5 say no.
    let mut contacts = Vec::new();
    for i in 0..50 {
        let consent = match i % 10 {
            0..=6 => vec![(0, 1)],
            7 | 8 => vec![(0, 0), (1, 1)],
            _ => vec![(0, 2), (1, 2)],
        };
        let first = FIRST[i % 10];
        let last = LAST[i / 10];
        let domain = if i % 4 == 0 {
            "example.org"
        } else {
            "example.com"
        };
        let id = h
            .create(
                "contacts",
                json!({ "firstname": first, "lastname": last, "salutation": if i % 2 == 0 { "Frau" } else { "Herr" },
                        "emailaddress1": format!("{}.{}{i}@{domain}", first.to_lowercase(), last.to_lowercase()),
                        "crc_checklist": checklist(&consent) }),
            )
            .await?;
        contacts.push(id);
    }
    let mut leads = Vec::new();
    for (i, first) in FIRST.iter().enumerate() {
        leads.push(
            h.create(
                "leads",
                json!({ "firstname": first, "lastname": "Lead", "companyname": format!("Lead GmbH {i}"),
                        "emailaddress1": format!("lead{i}@example.net"), "crc_checklist": checklist(&[(0, 1)]) }),
            )
            .await?,
        );
    }
    let mut accounts = Vec::new();
    for i in 0..5 {
        let boss = h
            .create(
                "contacts",
                json!({ "firstname": "Chef", "lastname": format!("Nummer{i}"), "emailaddress1": format!("chef{i}@firma{i}.de"),
                        "crc_checklist": checklist(&[(0, 1), (1, 1)]) }),
            )
            .await?;
        accounts.push(
            h.create(
                "accounts",
                json!({ "name": format!("Firma {i} AG"), "primarycontactid@odata.bind": format!("/contacts({boss})") }),
            )
            .await?,
        );
    }
    let source_checklist = checklist(&[(0, 1)]);
    let customers = h
        .create(
            "lists",
            json!({ "listname": "Customers", "createdfromcode": 2, "type": false,
                    "crc_checklist": source_checklist, "crc_syncwithcleverreach": true }),
        )
        .await?;
    h.add_members(&customers, "contact", &contacts[..30])
        .await?;
    let query = r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="emailaddress1" operator="like" value="%@example.org"/></filter></entity></fetch>"#;
    let org_list = h
        .create(
            "lists",
            json!({ "listname": "example.org readers", "createdfromcode": 2, "type": true, "query": query,
                    "crc_checklist": checklist(&[(0, 1), (1, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await?;
    let lead_list = h
        .create(
            "lists",
            json!({ "listname": "Leads", "createdfromcode": 4, "type": false,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await?;
    h.add_members(&lead_list, "lead", &leads).await?;
    let account_list = h
        .create(
            "lists",
            json!({ "listname": "Key accounts", "createdfromcode": 1, "type": false,
                    "crc_checklist": checklist(&[(1, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await?;
    h.add_members(&account_list, "account", &accounts).await?;
    let first = h.settle().await.map_err(|e| e.to_string())?;
    println!("initial sync: {first} messages");

    println!("scripted CRM changes");
    h.add_member(&customers, &contacts[30]).await?;
    h.add_members(&customers, "contact", &contacts[31..35])
        .await?;
    h.remove_member(&customers, &contacts[1]).await?;
    h.update(
        "contacts",
        &contacts[2],
        json!({ "crc_checklist": checklist(&[(0, 2)]) }),
    )
    .await?;
    h.update(
        "contacts",
        &contacts[3],
        json!({ "emailaddress1": "new.address@example.com" }),
    )
    .await?;
    h.update("contacts", &contacts[5], json!({ "statecode": 1 }))
        .await?;
    h.update("contacts", &contacts[6], json!({ "lastname": "Umbenannt" }))
        .await?;
    h.update("lists", &customers, json!({ "listname": "Customers 2026" }))
        .await?;
    h.create(
        "contacts",
        json!({ "firstname": "Neu", "lastname": "Leserin", "emailaddress1": "neu.leserin@example.org",
                "crc_checklist": checklist(&[(1, 1)]) }),
    )
    .await?;
    h.update("leads", &leads[0], json!({ "donotbulkemail": true }))
        .await?;
    h.delete("leads", &leads[1]).await?;
    h.update("accounts", &accounts[0], json!({ "name": "Firma 0 SE" }))
        .await?;
    let changes = h.settle().await.map_err(|e| e.to_string())?;
    println!("changes synced: {changes} messages");

    // Back from CleverReach: someone unsubscribes, someone signs up; the scheduled jobs run
    // every BACKFLOW_INTERVAL_SECS until both arrived in the CRM.
    let interval = backflow_interval(2)?;
    let customers_group = h
        .group_of("lists", &customers)
        .ok_or("the Customers list has no group")?;
    let leaving = h
        .dataverse
        .row("contacts", &contacts[0])
        .and_then(|r| {
            r.get("emailaddress1")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .ok_or("demo contact without e-mail")?;
    h.cleverreach
        .unsubscribe(&customers_group, &leaving)
        .map_err(|e| e.to_string())?;
    h.cleverreach
        .signup(
            &customers_group,
            "neue.abonnentin@example.com",
            &[
                ("firstname", "Nina"),
                ("lastname", "Neumann"),
                ("company", "Formular AG"),
            ],
        )
        .map_err(|e| e.to_string())?;
    println!(
        "in CleverReach: {leaving} unsubscribed from group {customers_group}; neue.abonnentin@example.com signed up; jobs every {} s",
        interval.as_secs()
    );
    let mut back = false;
    for _ in 0..10 {
        tokio::time::sleep(interval).await;
        scheduled_jobs(&h).await?;
        let row = h
            .dataverse
            .rows("crc_receiverstates")
            .into_iter()
            .find(|r| r.get("crc_email").and_then(|v| v.as_str()) == Some(leaving.as_str()));
        let lead = h.dataverse.rows("leads").into_iter().any(|r| {
            r.get("emailaddress1").and_then(|v| v.as_str()) == Some("neue.abonnentin@example.com")
        });
        if let Some(row) = row
            && lead
        {
            let checklist = h
                .dataverse
                .row("contacts", &contacts[0])
                .and_then(|r| {
                    r.get("crc_checklist")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            println!(
                "unsubscribe travelled back: {leaving} → receiver-state row ({} at {}), contact checklist now {checklist}",
                match row.get("crc_event").and_then(|v| v.as_i64()) {
                    Some(shared::adapters::dataverse::schema::EVENT_UNSUBSCRIBED) => "unsubscribed",
                    Some(shared::adapters::dataverse::schema::EVENT_BOUNCED) => "bounced",
                    _ => "unknown event",
                },
                row.get("crc_eventtime")
                    .and_then(|v| v.as_str())
                    .unwrap_or(""),
            );
            println!("sign-up travelled back: neue.abonnentin@example.com → a lead in the CRM");
            back = true;
            break;
        }
    }
    if !back {
        return Err("the unsubscribe or the sign-up did not come back to the CRM".into());
    }
    // A full resync of the list afterwards leaves the unsubscribed receiver out.
    h.update("lists", &customers, json!({ "crc_resync": true }))
        .await?;
    h.settle().await.map_err(|e| e.to_string())?;
    let still_out = h
        .cleverreach
        .receiver(&customers_group, &leaving)
        .is_none_or(|r| !r.active);
    println!(
        "after a full resync of the list: {leaving} is {}",
        if still_out {
            "still out (opt-out kept)"
        } else {
            "ACTIVE AGAIN (bug)"
        }
    );
    if !still_out || !h.cleverreach.reactivations().is_empty() {
        return Err("an opt-out was undone".into());
    }

    println!();
    for list in [&customers, &org_list, &lead_list, &account_list] {
        let row = h.dataverse.row("lists", list).unwrap_or_default();
        let name = row.get("listname").and_then(|v| v.as_str()).unwrap_or("?");
        let status = row
            .get("crc_syncstatus")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let Some(group) = h.group_of("lists", list) else {
            println!("list {name:?}: no group");
            continue;
        };
        let g = h.cleverreach.group(&group);
        let receivers = h.cleverreach.receivers(&group);
        let active = receivers.iter().filter(|r| r.active).count();
        println!(
            "group {group} {:?} — {active} active of {} receivers (list status: {status})",
            g.map(|g| g.name).unwrap_or_default(),
            receivers.len()
        );
        for r in receivers {
            let a = &r.global_attributes;
            println!(
                "  {} {:<38} {} {} {}, {}",
                if r.active { "+" } else { "-" },
                r.email,
                a.get("salutation").map(String::as_str).unwrap_or(""),
                a.get("firstname").map(String::as_str).unwrap_or(""),
                a.get("lastname").map(String::as_str).unwrap_or(""),
                r.attributes
                    .get("crm_company")
                    .map(String::as_str)
                    .unwrap_or(""),
            );
        }
    }
    let dead =
        h.dead_letters().len() as u64 + h.sqs_dead_letters().await.map_err(|e| e.to_string())?;
    let dv = h.dataverse.stats();
    let cr = h.cleverreach.stats();
    println!();
    println!(
        "summary: {} webhooks delivered, {} messages processed, {} Dataverse requests, {} CleverReach calls, {} dead letters, {:.1} s",
        h.dataverse.deliveries().len(),
        first + changes,
        dv.requests.values().sum::<u64>(),
        cr.total(),
        dead,
        started.elapsed().as_secs_f64()
    );
    Ok(dead == 0)
}

/// The key for the local connect page (the deployed page takes it from Secrets Manager).
const LOCAL_ADMIN_KEY: &str = "local-admin-key";

/// The connect page on `CONNECT_PORT` (8804), sharing the workers' CleverReach tokens.
async fn connect_page(h: &Harness) -> Run<sandbox::connect_page::ConnectPage> {
    let port = port("CONNECT_PORT", 8804)?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .map_err(|e| format!("connect page on 127.0.0.1:{port}: {e}"))?;
    let newsletter = h.newsletter().clone();
    let deps = shared::handlers::connect::ConnectDeps {
        newsletter,
        admin_key: shared::secret::Secret::new(LOCAL_ADMIN_KEY),
        settings: shared::handlers::connect::ConnectSettings {
            public_url: Some(format!("http://127.0.0.1:{port}")),
        },
        after_connect: None,
    };
    sandbox::connect_page::serve(listener, std::sync::Arc::new(deps)).map_err(|e| e.to_string())
}

type ResyncState = std::sync::Arc<ResyncDeps<std::sync::Arc<dyn ChangeQueue>>>;

async fn resync_route(
    axum::extract::State(deps): axum::extract::State<ResyncState>,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    use axum::http::StatusCode;
    let event = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(event) => event,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({ "error": format!("the body is not JSON: {e}") })),
                );
            }
        }
    };
    let run_id = uuid::Uuid::new_v4().hyphenated().to_string();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let result = match ResyncRequest::from_event(&event) {
        Ok(request) => resync_all(&deps, &request, &run_id, now_ms).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(queued) => (
            StatusCode::OK,
            axum::Json(serde_json::to_value(queued).unwrap_or_default()),
        ),
        Err(e @ ResyncError::BadRequest(_)) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": e.to_string() })),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": e.to_string() })),
        ),
    }
}

/// Serves `POST /resync` for `local resync`, with the run's CRM connection and queue.
async fn serve_resync(h: &Harness) -> Run<(String, tokio::task::JoinHandle<()>)> {
    let sources = h
        .worker(QueueFamily::MarketingList)
        .map(|w| w.conn.sources.clone())
        .ok_or("no marketing-list worker")?;
    let queue: std::sync::Arc<dyn ChangeQueue> = match &h.sqs {
        Some(sqs) => std::sync::Arc::new(SqsChangeQueue::new(sqs.client.clone(), sqs.urls.clone())),
        None => h.queue.clone(),
    };
    // Only the queueing: the orphan sweep (`handlers::resync::sweep`) runs in the nightly
    // function; this HTTP route needs a Send future, and the reconcile path is not one.
    let state: ResyncState = std::sync::Arc::new(ResyncDeps {
        sources,
        queue,
        sweep: None,
    });
    let bind = SocketAddr::from(([127, 0, 0, 1], port("RESYNC_PORT", 8805)?));
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| format!("resync endpoint on {bind}: {e}"))?;
    let url = format!(
        "http://{}/resync",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let app = axum::Router::new()
        .route("/resync", axum::routing::post(resync_route))
        .with_state(state);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, server))
}

/// `local resync [kind]`: asks the running `local up` to queue a resync of every source.
async fn resync(kind: Option<String>) -> Run<bool> {
    let url = format!("http://127.0.0.1:{}/resync", port("RESYNC_PORT", 8805)?);
    let body = match kind {
        Some(kind) => json!({ "kind": kind }),
        None => json!({}),
    };
    let reply = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e} (is `make up` running?)"))?;
    let ok = reply.status().is_success();
    let text = reply.text().await.map_err(|e| format!("{url}: {e}"))?;
    println!("{text}");
    Ok(ok)
}

async fn up() -> Run<bool> {
    let h = start(true).await?;
    let page = connect_page(&h).await?;
    let (resync_url, resync_server) = serve_resync(&h).await?;
    println!(
        "{}",
        json!({
            "dataverse": {
                "api_url": h.dataverse.api_url(),
                "token_url": h.dataverse.token_url(),
                "scope": format!("{}/.default", h.dataverse.resource()),
                "admin": { "client_id": dataverse::ADMIN_CLIENT_ID, "client_secret": dataverse::ADMIN_CLIENT_SECRET },
            },
            "cleverreach": {
                "base_url": h.cleverreach.base_url(),
                "state": format!("{}_sim/state", h.cleverreach.base_url()),
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": DEFAULT_CLIENT_SECRET,
            },
            "intake_url": h.intake_url,
            "webhook": {
                "key": sandbox::harness::WEBHOOK_KEY,
                "query": format!("{}?code={}", h.intake_url, sandbox::harness::WEBHOOK_KEY),
                "organization_header": { "x-ms-dynamics-organization": h.dataverse.config().org_domain },
            },
            "connect_page": { "url": page.url, "admin_key": LOCAL_ADMIN_KEY },
            "resync_url": resync_url,
            "queue": if h.sqs.is_some() { "sqs" } else { "local" },
        })
    );
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut schedule = tokio::time::interval(backflow_interval(30)?);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                resync_server.abort();
                return Ok(true);
            }
            _ = tick.tick() => {
                if let Err(e) = h.settle().await {
                    eprintln!("{e}");
                }
            }
            _ = schedule.tick() => {
                if let Err(e) = scheduled_jobs(&h).await {
                    eprintln!("{e}");
                }
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let command = std::env::args().nth(1).unwrap_or_default();
    let result = match command.as_str() {
        "demo" => demo().await,
        "up" => up().await,
        "run-job" => run_job(&std::env::args().nth(2).unwrap_or_default()).await,
        "resync" => resync(std::env::args().nth(2)).await,
        _ => Err(
            "usage: local demo | local up | local run-job receiver-state-sync|lead-sync | local resync [list|campaign|campaignactivity]"
                .to_string(),
        ),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
