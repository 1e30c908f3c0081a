//! Benchmark: a retroactive sync (docs/architecture.md §5) of a marketing list of N contacts (default
//! 100,000) against the sandbox answering every request after a fixed latency (default 50 ms,
//! the simulators' `latency_ms` fault switch). Reports the `$batch` requests against
//! ceil(N / updaterequestcount), the longest single invocation of `sublist-fanout` /
//! `sublist-update` (target under 60 s), this process's peak RSS (target 128 MB) and the wall
//! time. The simulators run in a child process, so this process's memory is the functions'.
//!
//! `cargo run --release -p sandbox --bin bench-retroactive -- [--contacts N] [--latency-ms MS]`
//!
//! The list is dynamic (FetchXML on a city), so seeding needs no list-member rows; its group is
//! synced once before the run (not measured). The functions run in this process on a local
//! queue, ten messages per invocation as a Lambda SQS batch; every handler call is timed.

use reqwest::Method;
use sandbox::bench::{
    Control, Counting, Endpoints, Simulators, dataverse_client, heap_now, heap_peak, mb,
    reset_peaks, rss, run, serve_simulators, url,
};
use sandbox::dataverse;
use sandbox::harness::checklist;
use serde_json::{Value, json};
use shared::adapters::cleverreach::{CleverReachClient, CleverReachConfig, InMemoryTokenStore};
use shared::adapters::dataverse::client::{BatchRequest, DataverseClient, MAX_BATCH_REQUESTS};
use shared::adapters::dataverse::crm::DataverseCrm;
use shared::adapters::dataverse::schema;
use shared::adapters::memory::InMemoryMessageQueue;
use shared::domain::change::{AttrValue, ChangeEvent, CrmMessage};
use shared::domain::routing::QueueFamily;
use shared::domain::source::SourceKind;
use shared::handlers::retroactive::{RetroactiveDeps, handle_fanout, handle_sublists};
use shared::handlers::sync_worker::InboundMessage;
use shared::secret::Secret;
use shared::usecases::Connector;
use shared::usecases::retroactive::RunState;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RSS_TARGET: u64 = 128 * 1024 * 1024;
const INVOCATION_TARGET: Duration = Duration::from_secs(60);
const CITY: &str = "Benchville";

// ---- memory -------------------------------------------------------------------------------

/// Counts the heap for the report's heap figures.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---- arguments ------------------------------------------------------------------------------

struct Args {
    contacts: usize,
    latency_ms: u64,
    sandbox: Option<String>,
}

const USAGE: &str =
    "usage: bench-retroactive [--contacts N] [--latency-ms MS] [--sandbox PATH-TO-SANDBOX-BINARY]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        contacts: 100_000,
        latency_ms: 50,
        sandbox: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--contacts" => {
                let value = args.next().ok_or("--contacts needs a number")?;
                parsed.contacts = value
                    .replace('_', "")
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("--contacts {value:?} is not a positive number"))?;
            }
            "--latency-ms" => {
                let value = args.next().ok_or("--latency-ms needs a number")?;
                parsed.latency_ms = value
                    .parse()
                    .map_err(|_| format!("--latency-ms {value:?} is not a number"))?;
            }
            "--sandbox" => parsed.sandbox = Some(args.next().ok_or("--sandbox needs a path")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(parsed)
}

// ---- seeding (test data, through the Web API as an administrator) ---------------------------

fn contact_id(i: usize) -> String {
    format!("be9c0000-0000-4000-8000-{i:012x}")
}

fn contact_email(i: usize) -> String {
    format!("retro-{i:06}@example.com")
}

/// Contact `i`'s checklist before the run: every 20th an explicit "no" to type 0, one in 20
/// already "yes", the rest no choice.
fn consent(i: usize) -> String {
    match i % 20 {
        0 => checklist(&[(0, 2)]),
        1 => checklist(&[(0, 1)]),
        _ => checklist(&[(0, 0)]),
    }
}

/// N contacts in `CITY`, the settings, and a dynamic list of them with sync on.
async fn seed(admin: &DataverseClient, contacts: usize, api_url: &str) -> Result<String, String> {
    for chunk_start in (0..contacts).step_by(MAX_BATCH_REQUESTS) {
        let chunk_end = (chunk_start + MAX_BATCH_REQUESTS).min(contacts);
        let creates: Vec<BatchRequest> = (chunk_start..chunk_end)
            .map(|i| {
                BatchRequest::new(Method::PATCH, format!("contacts({})", contact_id(i)))
                    .with_header("If-None-Match", "*")
                    .with_body(json!({
                        "firstname": format!("Retro{i}"),
                        "lastname": "Contact",
                        "emailaddress1": contact_email(i),
                        "address1_city": CITY,
                        "crc_checklist": consent(i),
                    }))
            })
            .collect();
        let answers = admin
            .batch(creates)
            .await
            .map_err(|e| format!("creating contacts {chunk_start}..{chunk_end}: {e}"))?;
        if let Some(failed) = answers.iter().find(|a| !a.is_success()) {
            return Err(format!(
                "creating contacts {chunk_start}..{chunk_end}: a part answered {}",
                failed.status
            ));
        }
    }
    admin
        .create(
            schema::SETTINGS_SET,
            &json!({ schema::SETTING_KEY: "cleverreach:connectiondata:apiurl", schema::SETTING_VALUE: api_url }),
        )
        .await
        .map_err(|e| format!("settings: {e}"))?;
    let query = format!(
        r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="address1_city" operator="eq" value="{CITY}"/></filter></entity></fetch>"#
    );
    admin
        .create(
            "lists",
            &json!({
                "listname": format!("Retro bench {contacts}"),
                "createdfromcode": 2,
                "type": true,
                "query": query,
                "crc_checklist": checklist(&[(0, 1)]),
                "crc_syncwithcleverreach": true,
            }),
        )
        .await
        .map_err(|e| format!("creating the list: {e}"))
}

// ---- the simulators' control endpoints ------------------------------------------------------

/// Every answer of both simulators `ms` late (no faults otherwise).
async fn latency(control: &Control, ms: u64) -> Result<(), String> {
    for base in [&control.dataverse, &control.cleverreach] {
        control
            .put(
                base,
                "_sim/faults",
                &json!({ "rate": 0.0, "latency_ms": ms }),
            )
            .await?;
    }
    Ok(())
}

/// The rows of an entity set as the Dataverse simulator holds them.
async fn rows(control: &Control, set: &str) -> Result<Vec<Value>, String> {
    let rows = control
        .send(Method::GET, &control.dataverse, &format!("_sim/rows/{set}"))
        .await?;
    Ok(match rows {
        Value::Array(rows) => rows,
        other => other["value"].as_array().cloned().unwrap_or_default(),
    })
}

// ---- the run ----------------------------------------------------------------------------------

type Deps = RetroactiveDeps<Arc<InMemoryMessageQueue>>;

async fn connector(endpoints: &Endpoints) -> Result<Connector, String> {
    let dataverse = dataverse_client(&endpoints.dataverse, &endpoints.dataverse.connector)?;
    let cr = &endpoints.cleverreach;
    let newsletter = CleverReachClient::new(
        CleverReachConfig::new(
            url(&cr.base_url)?,
            cr.client_id.clone(),
            Secret::new(cr.client_secret.clone()),
            "Dynamics 365 (bench)".to_string(),
        ),
        Arc::new(InMemoryTokenStore::new()),
    )
    .map_err(|e| e.to_string())?;
    newsletter
        .connect_client_credentials()
        .await
        .map_err(|e| format!("CleverReach token: {e}"))?;
    Ok(Connector::new(DataverseCrm::new(dataverse), newsletter))
}

fn turned_on(list_id: &str) -> ChangeEvent {
    let mut target = std::collections::BTreeMap::new();
    target.insert(schema::RETROACTIVE_SYNC.to_string(), AttrValue::Bool(true));
    ChangeEvent {
        operation_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: "bench".into(),
        message: CrmMessage::Update,
        entity: "list".into(),
        record_id: list_id.to_string(),
        user_id: dataverse::ADMIN_USER_ID.into(),
        initiating_user_id: dataverse::ADMIN_USER_ID.into(),
        organization_id: dataverse::ORGANIZATION_ID.into(),
        organization_name: "bench".into(),
        occurred_at_ms: None,
        depth: 1,
        target,
        pre_image: None,
        post_image: None,
        related: vec![],
        size_exceeded: false,
        tag: None,
        continuation: None,
    }
}

/// Works the local queues until they are empty, ten messages per invocation. Returns each
/// invocation's function, messages and time.
async fn drain(
    deps: &Deps,
    queue: &InMemoryMessageQueue,
) -> Result<Vec<(&'static str, usize, Duration)>, String> {
    let mut invocations = Vec::new();
    loop {
        let mut moved = false;
        for family in QueueFamily::RETROACTIVE {
            let batch = queue.take(family, 10);
            if batch.is_empty() {
                continue;
            }
            moved = true;
            let messages: Vec<InboundMessage> = batch
                .iter()
                .map(|m| InboundMessage {
                    message_id: m.message_id.clone(),
                    body: m.message.body.clone(),
                    group: Some(m.message.group.clone()),
                })
                .collect();
            let started = Instant::now();
            let (name, failed) = match family {
                QueueFamily::Sublist => ("sublist-update", handle_sublists(deps, messages).await),
                _ => ("sublist-fanout", handle_fanout(deps, messages).await),
            };
            invocations.push((name, batch.len(), started.elapsed()));
            if !failed.is_empty() {
                return Err(format!("{name}: {} messages failed", failed.len()));
            }
        }
        if !moved {
            return Ok(invocations);
        }
    }
}

async fn bench(args: Args, sims: &Simulators) -> Result<bool, String> {
    let n = args.contacts;
    let endpoints = &sims.endpoints;
    let control = Control::new(endpoints)?;
    let admin = dataverse_client(&endpoints.dataverse, &endpoints.dataverse.admin)?;
    println!("seeding {n} contacts …");
    let seeding = Instant::now();
    let list_id = seed(&admin, n, &endpoints.cleverreach.base_url).await?;
    let conn = connector(endpoints).await?;
    let settings = conn.settings().await.map_err(|e| e.to_string())?;
    shared::usecases::source::resync_source(&conn, &settings, SourceKind::MarketingList, &list_id)
        .await
        .map_err(|e| format!("first sync: {e}"))?;
    println!("seeded and synced once in {:.1?}", seeding.elapsed());
    admin
        .update(
            "lists",
            &list_id,
            &json!({ schema::RETROACTIVE_SYNC: true, schema::RETROACTIVE_SYNC_JSON: checklist(&[(0, 1)]) }),
        )
        .await
        .map_err(|e| format!("turning retroactive sync on: {e}"))?;

    let queue = Arc::new(InMemoryMessageQueue::new());
    let deps: Deps = RetroactiveDeps::new(conn, queue.clone());
    latency(&control, args.latency_ms).await?;
    let before = control.dataverse_stats().await?;
    let rss_seeding = rss();
    let peaks_reset = reset_peaks();
    let heap_start = heap_now();
    let rss_start = rss();

    let started = Instant::now();
    let trigger = turned_on(&list_id);
    let first = Instant::now();
    let failed = handle_fanout(
        &deps,
        vec![InboundMessage {
            message_id: "trigger".into(),
            body: serde_json::to_string(&trigger).map_err(|e| e.to_string())?,
            group: Some(format!("list:{list_id}")),
        }],
    )
    .await;
    let mut invocations = vec![("sublist-fanout", 1, first.elapsed())];
    if !failed.is_empty() {
        return Err("the fan-out failed on the trigger".into());
    }
    invocations.extend(drain(&deps, &queue).await?);
    let wall = started.elapsed();
    let rss_end = rss();
    let heap_peak = heap_peak();
    latency(&control, 0).await?;
    let calls = control.dataverse_stats().await?.since(&before);

    let batches = calls.batches;
    let parts = calls.batch_parts;
    let contact_patches = calls.requests.get("PATCH contacts").copied().unwrap_or(0);
    let requests_total: u64 = calls.requests.values().sum();
    // State writes are one-part batches; checklist batches hold only contact updates.
    let state_batches = parts - contact_patches;
    let checklist_batches = batches - state_batches;
    let per_batch = u64::from(settings.update_request_count);
    let changed = (0..n).filter(|i| i % 20 > 1).count() as u64;

    let lists = rows(&control, "lists").await?;
    let list = lists
        .iter()
        .find(|l| l["listid"].as_str() == Some(list_id.as_str()))
        .cloned()
        .unwrap_or(Value::Null);
    let state: RunState =
        serde_json::from_str(list[schema::RETROACTIVE_STATE].as_str().unwrap_or("{}"))
            .map_err(|e| format!("run state: {e}"))?;

    let mut ok = true;
    let longest = invocations
        .iter()
        .max_by_key(|(_, _, d)| *d)
        .cloned()
        .unwrap_or(("none", 0, Duration::ZERO));
    let count = |name: &str| invocations.iter().filter(|(f, _, _)| *f == name).count();
    println!();
    println!(
        "retroactive sync of {n} contacts, sandbox latency {} ms per request, sublistcount {}, updaterequestcount {}",
        args.latency_ms, settings.sublist_count, settings.update_request_count
    );
    println!("{:<48} {:>12}", "wall time", format!("{wall:.1?}"));
    println!(
        "{:<48} {:>12}  (ceil(changed {changed} / {per_batch}) = {}; retries none without faults)",
        "checklist $batch requests",
        checklist_batches,
        changed.div_ceil(per_batch)
    );
    println!(
        "{:<48} {:>12}  (ceil(N / updaterequestcount) = {})",
        "  target",
        "",
        (n as u64).div_ceil(per_batch)
    );
    println!(
        "{:<48} {:>12}  (one per sublist, fan-out end, finish, reconcile: conditional list writes)",
        "bookkeeping $batch requests", state_batches
    );
    println!(
        "{:<48} {:>12}  ({contact_patches} contact updates inside them)",
        "$batch requests in all", batches
    );
    println!(
        "{:<48} {:>12}",
        "Dataverse requests in all (batch parts counted)", requests_total
    );
    let verdict = if longest.2 < INVOCATION_TARGET {
        "ok"
    } else {
        ok = false;
        "OVER TARGET"
    };
    println!(
        "{:<48} {:>12}  ({} with {} messages; target < 60 s: {verdict})",
        "longest invocation",
        format!("{:.1?}", longest.2),
        longest.0,
        longest.1
    );
    println!(
        "{:<48} {:>12}  ({} sublist-fanout, {} sublist-update)",
        "invocations",
        invocations.len(),
        count("sublist-fanout"),
        count("sublist-update")
    );
    let rss_verdict = if !peaks_reset {
        "the peak could not be reset: it includes seeding"
    } else if rss_end.peak <= RSS_TARGET {
        "ok"
    } else {
        ok = false;
        "OVER TARGET"
    };
    println!(
        "{:<48} {:>12}  (target ≤ {}: {rss_verdict}; before the run {}, while seeding {})",
        "peak RSS of this process (VmHWM)",
        mb(rss_end.peak),
        mb(RSS_TARGET),
        mb(rss_start.now),
        mb(rss_seeding.peak)
    );
    println!(
        "{:<48} {:>12}  (live heap before the run {})",
        "peak heap during the run",
        mb(heap_peak as u64),
        mb(heap_start as u64)
    );
    println!(
        "progress on the list: {}",
        list[schema::RETROACTIVE_PROGRESS].as_str().unwrap_or("")
    );
    let expected_sublists = (n as u64).div_ceil(u64::from(settings.sublist_count));
    if !state.is_complete()
        || u64::from(state.sublists.unwrap_or(0)) != expected_sublists
        || state.sublists_done() != expected_sublists
        || state.updated != changed
        || state.failed != 0
    {
        ok = false;
        println!("FAILED: the run did not finish as expected: {state:?}");
    }
    let contacts = rows(&control, "contacts").await?;
    let wrong = contacts
        .iter()
        .filter(|c| c["address1_city"].as_str() == Some(CITY))
        .filter(|c| {
            let text = c[schema::CHECKLIST].as_str().unwrap_or("");
            let explicit_no = text.contains("\"state\":2");
            !(explicit_no || text.contains("\"state\":1"))
        })
        .count();
    if wrong > 0 {
        ok = false;
        println!("FAILED: {wrong} contacts without the requested checklist");
    } else {
        println!("verified: every contact has type 0 = yes, or its explicit no");
    }
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("--serve-simulators") {
        return serve_simulators();
    }
    let args = match parse_args(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let sandbox = args.sandbox.clone();
    run(args, sandbox.as_deref(), bench)
}
