//! Benchmark: the first sync of a static marketing list of N contacts (default 100,000) against
//! the sandbox. Counts Dataverse and CleverReach calls against the minimal count, and measures
//! wall time and the worker's peak memory. The simulators run in a child process and the
//! worker in others, so the memory measured is the worker's alone.
//!
//! `cargo run --release -p sandbox --bin bench-first-sync -- [--contacts N] [--web-api-seeding]
//! [--latency-ms L] [--dataverse-latency-ms L] [--cleverreach-latency-ms L] [--timeout-s T]
//! [--max-receives R] [--sandbox PATH]`
//!
//! The worker runs as a Lambda would run it (`sandbox::bench::lambda`): each invocation in a
//! fresh process of this binary, so the peak RSS is the worker's alone; with `--timeout-s` its
//! deadline is T seconds after its start and it is killed at T, its message delivered again up
//! to `--max-receives` times (default 5); continuations are followed. With `--latency-ms` both
//! simulators answer every request after the seeding that late, as real APIs do (0.3–2 s).
//!
//! Without `--sandbox`, the child is this binary in `--serve-simulators` mode (it prints the
//! sandbox binary's JSON line and stops when its stdin closes, so it never outlives the bench).
//! With `--sandbox PATH` it is the sandbox binary (`target/release/sandbox`). Exit status 0 when
//! the group ends up right and the targets are met, 1 otherwise.
//!
//! The contacts and the list's members are seeded with the Dataverse simulator's bulk control
//! (`/_sim/bulk/…`, a million in well under two minutes), the list itself through the Web API.
//! `--web-api-seeding` seeds everything through the Web API (`$batch` of 1000 creates,
//! `AddListMembersList` of 1000 members) instead, which takes minutes per 100,000.

use reqwest::Method;
use sandbox::bench::lambda::{
    self, BATCH_SIZE, LAMBDA_USAGE, LambdaArgs, WORKER_FLAG, run_invocations,
};
use sandbox::bench::{
    Control, Counting, DataverseCalls, Row, Simulators, dataverse_client, mb, print_call_table,
    row, run, serve_simulators,
};
use sandbox::dataverse::seeding::{contact_email, contact_id, first_name};
use sandbox::dataverse::{ADMIN_USER_ID, DataverseSimConfig, ORGANIZATION_ID};
use sandbox::harness::checklist;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::adapters::dataverse::client::{BatchRequest, DataverseClient, MAX_BATCH_REQUESTS};
use shared::adapters::dataverse::schema;
use shared::domain::change::{AttrValue, ChangeEvent, CrmMessage};
use shared::domain::routing::QueueFamily;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

// ---- memory -------------------------------------------------------------------------------

/// Counts the heap for the report's heap figures.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---- arguments ------------------------------------------------------------------------------

struct Args {
    contacts: usize,
    web_api_seeding: bool,
    lambda: LambdaArgs,
    sandbox: Option<String>,
}

fn usage() -> String {
    format!(
        "usage: bench-first-sync [--contacts N] [--web-api-seeding] {LAMBDA_USAGE} [--sandbox PATH-TO-SANDBOX-BINARY]"
    )
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        contacts: 100_000,
        web_api_seeding: false,
        lambda: LambdaArgs::default(),
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
            "--web-api-seeding" => parsed.web_api_seeding = true,
            "--sandbox" => parsed.sandbox = Some(args.next().ok_or("--sandbox needs a path")?),
            "-h" | "--help" => return Err(usage()),
            other if parsed.lambda.parse(other, &mut args)? => {}
            other => return Err(format!("unknown argument {other:?}\n{}", usage())),
        }
    }
    Ok(parsed)
}

// ---- seeding (test data, as an administrator) ---------------------------------------------------

/// What a reader of the report needs to know about the seeding.
struct Seeded {
    list_id: String,
    requests: usize,
    contacts_took: Duration,
    members_took: Duration,
}

/// N contacts with consent for newsletter type 0, a static list with checklist type 0 = yes and
/// sync off, all contacts as its members, then the sync flag turned on (the change the worker
/// is told about). The contacts and members through the bulk control (`bulk`) or the Web API.
async fn seed(
    admin: &DataverseClient,
    control: &Control,
    contacts: usize,
    bulk: bool,
) -> Result<Seeded, String> {
    let started = Instant::now();
    let mut requests = 0;
    let consent = checklist(&[(0, 1)]);
    if bulk {
        control.bulk_contacts(0, contacts, &consent).await?;
        requests += 1;
    }
    for chunk_start in (0..contacts).step_by(MAX_BATCH_REQUESTS).filter(|_| !bulk) {
        let chunk_end = (chunk_start + MAX_BATCH_REQUESTS).min(contacts);
        let creates: Vec<BatchRequest> = (chunk_start..chunk_end)
            .map(|i| {
                BatchRequest::new(Method::PATCH, format!("contacts({})", contact_id(i)))
                    .with_header("If-None-Match", "*")
                    .with_body(json!({
                        "firstname": first_name(i),
                        "lastname": "Contact",
                        "emailaddress1": contact_email(i),
                        "crc_checklist": consent,
                    }))
            })
            .collect();
        let answers = admin
            .batch(creates)
            .await
            .map_err(|e| format!("creating contacts {chunk_start}..{chunk_end}: {e}"))?;
        requests += 1;
        if let Some(failed) = answers.iter().find(|a| !a.is_success()) {
            return Err(format!(
                "creating contacts {chunk_start}..{chunk_end}: a part answered {}: {:?}",
                failed.status,
                failed.error.as_ref().map(|e| &e.message)
            ));
        }
    }
    let contacts_took = started.elapsed();
    let started = Instant::now();
    let list_id = admin
        .create(
            "lists",
            &json!({
                "listname": format!("Bench {contacts}"),
                "createdfromcode": 2,
                "type": false,
                "crc_checklist": consent,
                "crc_syncwithcleverreach": false,
            }),
        )
        .await
        .map_err(|e| format!("creating the list: {e}"))?;
    requests += 1;
    if bulk {
        control.bulk_list_members(&list_id, 0..contacts).await?;
        requests += 1;
    }
    for chunk_start in (0..contacts).step_by(MAX_BATCH_REQUESTS).filter(|_| !bulk) {
        let chunk_end = (chunk_start + MAX_BATCH_REQUESTS).min(contacts);
        let members: Vec<Value> = (chunk_start..chunk_end)
            .map(|i| json!({ "@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": contact_id(i) }))
            .collect();
        admin
            .execute_action(
                "AddListMembersList",
                &json!({
                    "List": { "@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list_id },
                    "Members": members,
                }),
            )
            .await
            .map_err(|e| format!("adding members {chunk_start}..{chunk_end}: {e}"))?;
        requests += 1;
    }
    admin
        .update("lists", &list_id, &json!({ schema::SYNC_FLAG: true }))
        .await
        .map_err(|e| format!("turning sync on: {e}"))?;
    requests += 1;
    Ok(Seeded {
        list_id,
        requests,
        contacts_took,
        members_took: started.elapsed(),
    })
}

// ---- call counts ------------------------------------------------------------------------------

/// Dataverse calls by kind, with the minimal model: one token, the settings read, the source
/// read, ceil(N/5000) member pages, the group id written on the source, the status written.
fn dataverse_rows(calls: &DataverseCalls, contacts: usize) -> Vec<Row> {
    let member_key = "GET lists/listcontact_association";
    let member_pages = calls.requests.get(member_key).copied().unwrap_or(0);
    let mut reads = 0;
    let mut writes = 0;
    for (key, n) in &calls.requests {
        if key == member_key {
            continue;
        }
        if key.starts_with("GET ") {
            reads += n;
        } else {
            writes += n;
        }
    }
    vec![
        row("token", calls.tokens, 1),
        row(
            "member pages (5000 a page)",
            member_pages,
            contacts.div_ceil(5000) as u64,
        ),
        row("other reads (settings, the list)", reads, 2),
        row("writes (group id, sync status)", writes, 2),
    ]
}

/// CleverReach calls by kind, with the minimal model: one token, the group created, the
/// global attributes listed and each missing one created, the group's own attribute
/// (`crm_company`) listed and created, one (empty) receivers page, the blacklist and the
/// bounces (the rule needs both), ceil(N/250) upserts.
fn cleverreach_rows(
    calls: &BTreeMap<String, u64>,
    contacts: usize,
    batch_size: usize,
    missing_attributes: usize,
) -> Vec<Row> {
    let sum = |names: &[&str]| -> u64 {
        names
            .iter()
            .map(|n| calls.get(*n).copied().unwrap_or(0))
            .sum()
    };
    let token = sum(&["token"]);
    let upserts = sum(&[
        "receivers_upsert",
        "receivers_upsert_plus",
        "receivers_insert",
    ]);
    let groups = sum(&[
        "groups_list",
        "group_get",
        "group_create",
        "group_update",
        "group_delete",
        "group_stats",
    ]);
    let attributes = sum(&[
        "attributes_list",
        "attribute_create",
        "group_attributes_list",
        "group_attribute_create",
    ]);
    let reads = sum(&[
        "receivers_list",
        "receiver_get",
        "receiver_pool_get",
        "receivers_filter",
    ]);
    let opt_outs = sum(&["blacklist_list", "blacklist_get", "bounces"]);
    let other =
        calls.values().sum::<u64>() - token - upserts - groups - attributes - reads - opt_outs;
    vec![
        row("token", token, 1),
        row(
            &format!("upserts ({batch_size} a call)"),
            upserts,
            contacts.div_ceil(batch_size) as u64,
        ),
        row("group calls (create)", groups, 1),
        row(
            "attributes (global and group's: list + create)",
            attributes,
            1 + missing_attributes as u64 + 2,
        ),
        row("receiver reads (group's receivers)", reads, 1),
        row("blacklist / bounces", opt_outs, 2),
        row("other", other, 0),
    ]
}

// ---- verification -----------------------------------------------------------------------------

#[derive(Deserialize)]
struct SimReceiver {
    email: String,
    active: bool,
}

/// The group's receivers as the CleverReach simulator holds them: exactly the N seeded
/// addresses, each once, all active.
async fn verify_group(control: &Control, group: &str, contacts: usize) -> Result<String, String> {
    let mut receivers: Vec<SimReceiver> = Vec::new();
    control
        .each_receiver(group, |r: SimReceiver| receivers.push(r))
        .await?;
    let active = receivers.iter().filter(|r| r.active).count();
    let expected: HashSet<String> = (0..contacts).map(contact_email).collect();
    let found: HashSet<String> = receivers.iter().map(|r| r.email.to_lowercase()).collect();
    let missing = expected.difference(&found).count();
    let unexpected = found.difference(&expected).count();
    let summary = format!(
        "group {group}: {} receivers, {active} active; {missing} seeded addresses missing, {unexpected} unexpected",
        receivers.len()
    );
    if receivers.len() == contacts && active == contacts && missing == 0 && unexpected == 0 {
        Ok(summary)
    } else {
        Err(summary)
    }
}

// ---- the run ----------------------------------------------------------------------------------

/// The change a Dataverse webhook gives for "sync flag turned on" on the list, as the intake
/// hands it to the marketing-list queue.
fn sync_turned_on(list_id: &str) -> ChangeEvent {
    let operation = uuid::Uuid::new_v4().hyphenated().to_string();
    let mut target = BTreeMap::new();
    target.insert(schema::SYNC_FLAG.to_string(), AttrValue::Bool(true));
    target.insert("listid".to_string(), AttrValue::Text(list_id.to_string()));
    ChangeEvent {
        operation_id: operation.clone(),
        correlation_id: operation,
        message: CrmMessage::Update,
        entity: "list".into(),
        record_id: list_id.to_string(),
        user_id: ADMIN_USER_ID.into(),
        initiating_user_id: ADMIN_USER_ID.into(),
        organization_id: ORGANIZATION_ID.into(),
        organization_name: DataverseSimConfig::default().org_name,
        occurred_at_ms: Some(chrono::Utc::now().timestamp_millis()),
        depth: 1,
        target,
        pre_image: None,
        post_image: None,
        related: Vec::new(),
        size_exceeded: false,
        tag: None,
        continuation: None,
    }
}

const RSS_TARGET: u64 = 128 * 1024 * 1024;
const CALL_RATIO_TARGET: f64 = 1.1;

async fn bench(args: Args, sims: &Simulators) -> Result<bool, String> {
    let endpoints = &sims.endpoints;
    let control = Control::new(endpoints)?;
    let n = args.contacts;

    println!("first sync of a static marketing list of {n} contacts");
    let seeded = {
        let admin = dataverse_client(&endpoints.dataverse, &endpoints.dataverse.admin)?;
        // The CRM names the CleverReach it syncs with (here the simulator), as an administrator
        // configures it; the worker refuses to sync when it disagrees with the deployment.
        admin
            .create(
                "crc_settings",
                &json!({ "crc_key": "cleverreach:connectiondata:apiurl", "crc_value": endpoints.cleverreach.base_url }),
            )
            .await
            .map_err(|e| format!("writing the apiurl setting: {e}"))?;
        seed(&admin, &control, n, !args.web_api_seeding).await?
    };
    if args.web_api_seeding {
        println!(
            "seeded through the Web API with {} requests: contacts in {:.1} s ($batch of {MAX_BATCH_REQUESTS} creates), list and members in {:.1} s (AddListMembersList of {MAX_BATCH_REQUESTS})",
            seeded.requests,
            seeded.contacts_took.as_secs_f64(),
            seeded.members_took.as_secs_f64(),
        );
    } else {
        println!(
            "seeded in bulk with {} requests: contacts in {:.1} s (/_sim/bulk/contacts), list and members in {:.1} s (the list through the Web API, /_sim/bulk/listmembers)",
            seeded.requests,
            seeded.contacts_took.as_secs_f64(),
            seeded.members_took.as_secs_f64(),
        );
    }

    let missing_attributes = control.missing_attributes().await?;

    args.lambda.apply_latency(&control).await?;
    let dataverse_before = control.dataverse_stats().await?;
    control.reset_cleverreach_stats().await?;

    // The worker, built as a function's `main` builds it, in fresh processes (cold Lambdas).
    let event = sync_turned_on(&seeded.list_id);
    let invocations =
        run_invocations(&sims.line, QueueFamily::MarketingList, &event, &args.lambda)?;
    let measured = invocations.overall();
    let dv = &endpoints.dataverse;

    let dataverse_calls = control.dataverse_stats().await?.since(&dataverse_before);
    let cleverreach_calls = control.cleverreach_stats().await?;

    // The list as the worker left it.
    let admin = dataverse_client(dv, &dv.admin)?;
    let list = admin
        .retrieve::<Value>(
            "lists",
            &seeded.list_id,
            &[schema::GROUP_ID, schema::SYNC_STATUS, schema::LAST_ERROR],
        )
        .await
        .map_err(|e| format!("reading the list back: {e}"))?
        .unwrap_or_default();
    let group = list[schema::GROUP_ID].as_str().map(str::to_string);

    // ---- report
    let dv_rows = dataverse_rows(&dataverse_calls, n);
    let cr_rows = cleverreach_rows(&cleverreach_calls, n, BATCH_SIZE, missing_attributes);
    println!();
    let mut ok = print_call_table(
        56,
        &[
            ("Dataverse", dv_rows.as_slice()),
            ("CleverReach", cr_rows.as_slice()),
        ],
        CALL_RATIO_TARGET,
    );
    println!();
    println!(
        "Dataverse requests by key (tokens: {}, throttled: {}):",
        dataverse_calls.tokens, dataverse_calls.throttled
    );
    for (key, count) in &dataverse_calls.requests {
        println!("  {key:<54} {count:>8}");
    }
    println!("CleverReach calls by endpoint:");
    for (key, count) in &cleverreach_calls {
        println!("  {key:<54} {count:>8}");
    }
    println!();
    println!(
        "{:<56} {:>10.2} s",
        "wall time (worker handlers, all invocations)", measured.wall_s
    );
    ok &= invocations.report(56, args.lambda.timeout, args.lambda.max_receives);
    println!(
        "{:<56} {:>10.2} s  (the worker processes; the simulators run in another){}",
        "CPU time (user + system)",
        measured.cpu_s,
        measured
            .cgroup
            .as_deref()
            .map(|c| format!(" (in cgroup {c})"))
            .unwrap_or_default()
    );
    println!(
        "{:<56} {:>10.0} contacts/s",
        "throughput",
        n as f64 / measured.wall_s.max(1e-9)
    );
    let rss_verdict = if measured.rss_peak <= RSS_TARGET {
        "ok"
    } else {
        ok = false;
        "OVER TARGET"
    };
    println!(
        "{:<56} {:>12}  (target ≤ {}: {rss_verdict}; VmRSS of the fresh process before the message {})",
        "peak RSS of the worker process (VmHWM)",
        mb(measured.rss_peak),
        mb(RSS_TARGET),
        mb(measured.rss_before),
    );
    println!(
        "{:<56} {:>12}",
        "peak heap during the sync",
        mb(measured.heap_peak)
    );
    println!();

    if measured.failed {
        ok = false;
        println!("FAILED: the worker left the message on the queue");
    }
    println!(
        "sync status on the list: {:?}; last error: {:?}",
        list[schema::SYNC_STATUS].as_str().unwrap_or(""),
        list[schema::LAST_ERROR].as_str().unwrap_or("")
    );
    match group {
        None => {
            ok = false;
            println!("FAILED: no group id stored on the list");
        }
        Some(group) => match verify_group(&control, &group, n).await {
            Ok(summary) => println!("verified: {summary}"),
            Err(summary) => {
                ok = false;
                println!("FAILED: {summary}");
            }
        },
    }
    println!("result: {}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some(WORKER_FLAG) {
        return lambda::worker_main();
    }
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
