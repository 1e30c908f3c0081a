//! Benchmark: full resync of a campaign whose recipients come from two overlapping static
//! marketing lists (default 100,000 contacts: lists of 60,000 and 60,000 sharing 20,000),
//! against the sandbox. Two runs, each one `Resync` message handled by the campaign worker as a
//! Lambda invocation would: first from no group at all, then with the group in step plus drift
//! made behind the connector's back (receivers removed, attributes overwritten, strangers added,
//! some unsubscribed, the group renamed). Counts Dataverse and CleverReach calls against the
//! minimal count, measures wall time and the worker's peak memory, and checks the group.
//!
//! `cargo run --release -p sandbox --bin bench-resync -- [--recipients N] [--overlap K]
//! [--drift D] [--latency-ms L] [--dataverse-latency-ms L] [--cleverreach-latency-ms L]
//! [--timeout-s T] [--max-receives R] [--web-api-seeding] [--sandbox PATH]`
//!
//! With `--latency-ms`, both simulators answer every request (after the seeding) that late, as
//! real APIs do (0.3–2 s). With `--timeout-s`, each worker invocation runs as Lambda would run
//! it with that timeout: its deadline is T seconds after its start (the worker stops and
//! continues in a new message before it), and a worker still running at T is killed and its
//! message delivered again, at most `--max-receives` times (default 5, the template's
//! maxReceiveCount) before it counts as dead-lettered. Each run reports the invocations used,
//! the longest one, and the calls, memory and group over all of them.
//!
//! The contacts and list members are seeded with the Dataverse simulator's bulk control
//! (`/_sim/bulk/…`: a million in well under two minutes); `--web-api-seeding` seeds them
//! through the Web API instead (`$batch` creates, `AddListMembersList`), slow above 100,000.
//! The lists and the campaign are made through the Web API either way.
//!
//! The simulators run in a child process (this binary in `--serve-simulators` mode, or the
//! sandbox binary with `--sandbox`), and each run's worker in another (this binary in
//! `--worker` mode: a cold Lambda), so the peak RSS measured is the worker's alone, not the
//! seeding's or the verification's. `BENCH_WORKER_CGROUP=<cgroup dir>` puts each worker into
//! that cgroup (e.g. a `cpu.cfs_quota_us` holding a Lambda size's CPU share); the worker's CPU
//! seconds are reported either way. Exit status 0 when the group ends up right and the
//! targets are met (calls ≤ 1.1 × minimal per API, peak RSS ≤ 128 MB), 1 otherwise.

use reqwest::Method;
use sandbox::bench::lambda::{self, BATCH_SIZE, LambdaArgs, WORKER_FLAG, run_invocations};
use sandbox::bench::{
    Control, Counting, DataverseCalls, Endpoints, Row, Simulators, cleverreach_client,
    dataverse_client, mb, print_call_table, row, run, serve_simulators,
};
use sandbox::dataverse::seeding::{contact_email, contact_id, first_name};
use sandbox::harness::checklist;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::adapters::dataverse::client::{BatchRequest, DataverseClient, MAX_BATCH_REQUESTS};
use shared::adapters::dataverse::schema;
use shared::domain::change::ChangeEvent;
use shared::domain::email::Email;
use shared::domain::planner::ReceiverUpsert;
use shared::domain::receiver::{PersonData, ReceiverData};
use shared::domain::recipient::{CrmRef, PersonEntity};
use shared::domain::routing::QueueFamily;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

// ---- memory -------------------------------------------------------------------------------

/// Counts the heap for the worker's heap figure.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---- arguments ------------------------------------------------------------------------------

struct Args {
    recipients: usize,
    overlap: usize,
    drift: usize,
    lambda: LambdaArgs,
    web_api_seeding: bool,
    sandbox: Option<String>,
}

const USAGE: &str = "usage: bench-resync [--recipients N] [--overlap K] [--drift D] [--latency-ms L] [--dataverse-latency-ms L] [--cleverreach-latency-ms L] [--timeout-s T] [--max-receives R] [--web-api-seeding] [--sandbox PATH-TO-SANDBOX-BINARY]";

fn number(flag: &str, value: Option<String>) -> Result<usize, String> {
    let value = value.ok_or(format!("{flag} needs a number"))?;
    value
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{flag} {value:?} is not a number"))
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        recipients: 100_000,
        overlap: 20_000,
        drift: 500,
        lambda: LambdaArgs::default(),
        web_api_seeding: false,
        sandbox: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--recipients" => parsed.recipients = number("--recipients", args.next())?,
            "--overlap" => parsed.overlap = number("--overlap", args.next())?,
            "--drift" => parsed.drift = number("--drift", args.next())?,
            "--web-api-seeding" => parsed.web_api_seeding = true,
            "--sandbox" => parsed.sandbox = Some(args.next().ok_or("--sandbox needs a path")?),
            "-h" | "--help" => return Err(USAGE.into()),
            other if parsed.lambda.parse(other, &mut args)? => {}
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if parsed.recipients == 0
        || parsed.overlap > parsed.recipients
        || !(parsed.recipients + parsed.overlap).is_multiple_of(2)
    {
        return Err(format!(
            "--recipients must be positive, --overlap at most that, and their sum even (two lists of equal size)\n{USAGE}"
        ));
    }
    if parsed.drift * 4 > parsed.recipients {
        return Err(format!(
            "--drift {} is too large for {} recipients",
            parsed.drift, parsed.recipients
        ));
    }
    Ok(parsed)
}

// ---- seeding (test data, as an administrator) ---------------------------------------------------

const CAMPAIGN_NAME: &str = "Bench campaign";

struct Seeded {
    campaign_id: String,
    requests: usize,
    took: Duration,
}

/// The two lists: `[0, size)` and `[n - size, n)`, so that `overlap` contacts are in both.
fn list_ranges(n: usize, overlap: usize) -> [std::ops::Range<usize>; 2] {
    let size = (n + overlap) / 2;
    [0..size, n - size..n]
}

/// N contacts with consent for newsletter type 0; two static lists (sync off) with their
/// members; a campaign with sync on and checklist type 0 = yes, linked to both lists. The
/// contacts and members through the bulk control (`bulk`) or the Web API.
async fn seed(
    admin: &DataverseClient,
    control: &Control,
    n: usize,
    overlap: usize,
    bulk: bool,
) -> Result<Seeded, String> {
    let started = Instant::now();
    let mut requests = 0;
    let consent = checklist(&[(0, 1)]);
    if bulk {
        control.bulk_contacts(0, n, &consent).await?;
        requests += 1;
    }
    for chunk_start in (0..n).step_by(MAX_BATCH_REQUESTS).filter(|_| !bulk) {
        let chunk_end = (chunk_start + MAX_BATCH_REQUESTS).min(n);
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
    let mut lists = Vec::new();
    for (number, range) in list_ranges(n, overlap).into_iter().enumerate() {
        let list_id = admin
            .create(
                "lists",
                &json!({
                    "listname": format!("Bench list {}", number + 1),
                    "createdfromcode": 2,
                    "type": false,
                    "crc_checklist": consent,
                    "crc_syncwithcleverreach": false,
                }),
            )
            .await
            .map_err(|e| format!("creating a list: {e}"))?;
        requests += 1;
        if bulk {
            control.bulk_list_members(&list_id, range.clone()).await?;
            requests += 1;
        }
        for chunk_start in range.clone().step_by(MAX_BATCH_REQUESTS).filter(|_| !bulk) {
            let chunk_end = (chunk_start + MAX_BATCH_REQUESTS).min(range.end);
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
        lists.push(list_id);
    }
    let campaign_id = admin
        .create(
            "campaigns",
            &json!({ "name": CAMPAIGN_NAME, "crc_checklist": consent, schema::SYNC_FLAG: true }),
        )
        .await
        .map_err(|e| format!("creating the campaign: {e}"))?;
    requests += 1;
    for list in &lists {
        admin
            .execute_action(
                &format!("campaigns({campaign_id})/Microsoft.Dynamics.CRM.AddItemCampaign"),
                &json!({ "EntityId": list, "EntityName": "list" }),
            )
            .await
            .map_err(|e| format!("linking list {list} to the campaign: {e}"))?;
        requests += 1;
    }
    Ok(Seeded {
        campaign_id,
        requests,
        took: started.elapsed(),
    })
}

// ---- the minimal call counts ------------------------------------------------------------------

/// Dataverse calls by kind. Minimal: one token; the settings; the campaign; its linked lists;
/// ceil(size/5000) member pages per list; the leads linked to the campaign (one page); the
/// group id written (first run only) and the status written.
fn dataverse_rows(calls: &DataverseCalls, n: usize, overlap: usize, first: bool) -> Vec<Row> {
    let member_pages: u64 = calls
        .requests
        .iter()
        .filter(|(k, _)| k.contains("listcontact_association"))
        .map(|(_, v)| *v)
        .sum();
    let minimal_pages: u64 = list_ranges(n, overlap)
        .iter()
        .map(|r| r.len().div_ceil(5000) as u64)
        .sum();
    let mut reads = 0;
    let mut writes = 0;
    for (key, count) in &calls.requests {
        if key.contains("listcontact_association") {
            continue;
        }
        if key.starts_with("GET ") {
            reads += count;
        } else {
            writes += count;
        }
    }
    vec![
        row("token", calls.tokens, 1),
        row("member pages (5000 a page)", member_pages, minimal_pages),
        row(
            "other reads (settings, campaign, its lists, its leads)",
            reads,
            4,
        ),
        row(
            if first {
                "writes (group id, sync status)"
            } else {
                "writes (sync status)"
            },
            writes,
            if first { 2 } else { 1 },
        ),
    ]
}

/// What the second run has to change.
#[derive(Debug, Clone, Copy, Default)]
struct Drift {
    removed: usize,
    altered: usize,
    strangers: usize,
    unsubscribed: usize,
    renamed: bool,
}

/// CleverReach calls by kind. Minimal, first run: one token, the group created, the attribute
/// list and each missing attribute created, one (empty) receivers page, the blacklist,
/// ceil(N/250) upserts. Second run: one token, the group read (and renamed if it was), the
/// attribute list, floor(receivers/5000)+1 receiver pages (the last full page cannot be known
/// to be the last), the blacklist, ceil((removed + altered)/250) upserts (re-add and repair in
/// the same batches), ceil(strangers/250) removal batches of two calls each (the receivers
/// read again just before the delete, so that one who unsubscribed meanwhile is kept, and the
/// delete).
fn cleverreach_rows(
    calls: &BTreeMap<String, u64>,
    n: usize,
    batch_size: usize,
    missing_attributes: usize,
    drift: Option<Drift>,
) -> Vec<Row> {
    let sum = |names: &[&str]| -> u64 {
        names
            .iter()
            .map(|name| calls.get(*name).copied().unwrap_or(0))
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
    let reads = sum(&["receivers_list", "receiver_get", "receiver_pool_get"]);
    let removals = sum(&[
        "receivers_filter",
        "receivers_delete_batch",
        "receiver_delete",
    ]);
    let opt_outs = sum(&["blacklist_list", "blacklist_get", "bounces"]);
    let other = calls.values().sum::<u64>()
        - token
        - upserts
        - groups
        - attributes
        - reads
        - removals
        - opt_outs;
    let (minimal_upserts, minimal_groups, minimal_attributes, minimal_reads, minimal_removals) =
        match drift {
            // The global attributes listed (and the missing ones created); the group's own
            // (`crm_company`) listed, and created in a new group.
            None => (
                n.div_ceil(batch_size) as u64,
                1,
                1 + missing_attributes as u64 + 2,
                1,
                0,
            ),
            Some(d) => {
                let in_group = n - d.removed + d.strangers;
                (
                    (d.removed + d.altered).div_ceil(batch_size) as u64,
                    1 + u64::from(d.renamed),
                    2,
                    (in_group / 5000 + 1) as u64,
                    2 * d.strangers.div_ceil(batch_size) as u64,
                )
            }
        };
    vec![
        row("token", token, 1),
        row(
            &format!("upserts ({batch_size} a call)"),
            upserts,
            minimal_upserts,
        ),
        row(
            "group calls (create / read, rename)",
            groups,
            minimal_groups,
        ),
        row(
            "attribute calls (global and group's: list + create missing)",
            attributes,
            minimal_attributes,
        ),
        row(
            "receiver reads (group's receivers, 5000 a page)",
            reads,
            minimal_reads,
        ),
        row(
            "removals (re-check + delete a batch)",
            removals,
            minimal_removals,
        ),
        // Both read once by a worker (the scoped path and the full one share them).
        row("blacklist / bounces", opt_outs, 2),
        row("other", other, 0),
    ]
}

// ---- verification -----------------------------------------------------------------------------

#[derive(Deserialize)]
struct SimReceiver {
    email: String,
    active: bool,
    #[serde(default)]
    global_attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct SimGroup {
    name: String,
}

/// The group as the CleverReach simulator holds it: every seeded address once, active unless
/// it unsubscribed (`inactive`), with its first name from the CRM; nothing else.
async fn verify_group(
    control: &Control,
    group: &str,
    n: usize,
    inactive: &HashSet<String>,
) -> Result<String, String> {
    let mut receivers: Vec<SimReceiver> = Vec::new();
    control
        .each_receiver(group, |mut r: SimReceiver| {
            // Only the first name is checked: the rest would hold a million maps.
            r.global_attributes.retain(|k, _| k == "firstname");
            receivers.push(r);
        })
        .await?;
    let info = control
        .send(
            Method::GET,
            &control.cleverreach,
            &format!("_sim/groups/{group}"),
        )
        .await?;
    let info: SimGroup = serde_json::from_value(info).map_err(|e| format!("group {group}: {e}"))?;
    let expected: HashSet<String> = (0..n).map(contact_email).collect();
    let found: HashSet<String> = receivers.iter().map(|r| r.email.to_lowercase()).collect();
    let missing = expected.difference(&found).count();
    let unexpected = found.difference(&expected).count();
    let wrong_state = receivers
        .iter()
        .filter(|r| r.active == inactive.contains(&r.email.to_lowercase()))
        .count();
    let wrong_name = receivers
        .iter()
        .filter(|r| {
            let i = r
                .email
                .strip_prefix("bench-")
                .and_then(|rest| rest.split('@').next())
                .and_then(|digits| digits.parse::<usize>().ok());
            i.is_some_and(|i| r.global_attributes.get("firstname") != Some(&first_name(i)))
        })
        .count();
    let summary = format!(
        "group {group} {:?}: {} receivers, {} active; {missing} seeded addresses missing, {unexpected} unexpected, {wrong_state} in the wrong state, {wrong_name} with a wrong first name",
        info.name,
        receivers.len(),
        receivers.iter().filter(|r| r.active).count(),
    );
    if receivers.len() == n
        && missing == 0
        && unexpected == 0
        && wrong_state == 0
        && wrong_name == 0
        && info.name == CAMPAIGN_NAME
    {
        Ok(summary)
    } else {
        Err(summary)
    }
}

// ---- the runs ---------------------------------------------------------------------------------

const RSS_TARGET: u64 = 128 * 1024 * 1024;
const CALL_RATIO_TARGET: f64 = 1.1;

/// What every run shares.
struct Setup<'a> {
    endpoints: &'a Endpoints,
    /// The simulators' JSON line, for the worker processes.
    line: &'a str,
    control: &'a Control,
    campaign_id: &'a str,
    n: usize,
    overlap: usize,
    missing_attributes: usize,
    lambda: &'a LambdaArgs,
}

/// One resync: a `Resync` message handled by fresh workers (cold Lambdas), one invocation
/// after another, until no continuation is left (or the message is dead-lettered), measured.
async fn run_once(
    setup: &Setup<'_>,
    label: &str,
    drift: Option<Drift>,
    inactive: &HashSet<String>,
) -> Result<bool, String> {
    let Setup {
        endpoints,
        line: _,
        control,
        campaign_id,
        n,
        overlap,
        missing_attributes,
        lambda,
    } = *setup;
    println!("== {label}");
    let dataverse_before = control.dataverse_stats().await?;
    control.reset_cleverreach_stats().await?;
    let run_id = uuid::Uuid::new_v4().hyphenated().to_string();
    let first = ChangeEvent::resync_request(
        "campaign",
        campaign_id,
        &run_id,
        chrono::Utc::now().timestamp_millis(),
    );
    let invocations = run_invocations(setup.line, QueueFamily::Campaign, &first, lambda)?;
    let measured = invocations.overall();
    let dv = &endpoints.dataverse;

    let dataverse_calls = control.dataverse_stats().await?.since(&dataverse_before);
    let cleverreach_calls = control.cleverreach_stats().await?;
    let admin = dataverse_client(dv, &dv.admin)?;
    let campaign = admin
        .retrieve::<Value>(
            "campaigns",
            campaign_id,
            &[schema::GROUP_ID, schema::SYNC_STATUS, schema::LAST_ERROR],
        )
        .await
        .map_err(|e| format!("reading the campaign back: {e}"))?
        .unwrap_or_default();

    let dv_rows = dataverse_rows(&dataverse_calls, n, overlap, drift.is_none());
    let cr_rows = cleverreach_rows(&cleverreach_calls, n, BATCH_SIZE, missing_attributes, drift);
    let mut ok = print_call_table(
        56,
        &[
            ("Dataverse", dv_rows.as_slice()),
            ("CleverReach", cr_rows.as_slice()),
        ],
        CALL_RATIO_TARGET,
    );
    println!(
        "Dataverse requests by key (tokens: {}):",
        dataverse_calls.tokens
    );
    for (key, count) in &dataverse_calls.requests {
        println!("  {key:<54} {count:>8}");
    }
    println!("CleverReach calls by endpoint:");
    for (key, count) in &cleverreach_calls {
        println!("  {key:<54} {count:>8}");
    }
    println!(
        "{:<56} {:>10.2} s",
        "wall time (worker handlers, all invocations)", measured.wall_s
    );
    ok &= invocations.report(56, lambda.timeout, lambda.max_receives);
    println!(
        "{:<56} {:>10.2} s{}",
        "CPU time of the worker (user + system)",
        measured.cpu_s,
        measured
            .cgroup
            .as_deref()
            .map(|c| format!("  (in cgroup {c})"))
            .unwrap_or_default()
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
        "peak heap during the run",
        mb(measured.heap_peak)
    );
    if measured.failed {
        ok = false;
        println!("FAILED: the worker left the message on the queue");
    }
    println!(
        "sync status on the campaign: {:?}; last error: {:?}",
        campaign[schema::SYNC_STATUS].as_str().unwrap_or(""),
        campaign[schema::LAST_ERROR].as_str().unwrap_or("")
    );
    match campaign[schema::GROUP_ID].as_str() {
        None => {
            ok = false;
            println!("FAILED: no group id stored on the campaign");
        }
        Some(group) => match verify_group(control, group, n, inactive).await {
            Ok(summary) => println!("verified: {summary}"),
            Err(summary) => {
                ok = false;
                println!("FAILED: {summary}");
            }
        },
    }
    println!("{label}: {}", if ok { "PASS" } else { "FAIL" });
    println!();
    Ok(ok)
}

/// Drift behind the connector's back, through CleverReach's API (as a CleverReach user or an
/// import would): `d` receivers removed, `d` with their first name overwritten, `d` strangers
/// added, `d / 5` unsubscribed, the group renamed. Returns it and the unsubscribed addresses.
async fn make_drift(
    endpoints: &Endpoints,
    control: &Control,
    group: &str,
    d: usize,
) -> Result<(Drift, HashSet<String>), String> {
    let cr = cleverreach_client(&endpoints.cleverreach, BATCH_SIZE)?;
    cr.connect_client_credentials()
        .await
        .map_err(|e| format!("CleverReach token: {e}"))?;
    let email = |i: usize| Email::parse(&contact_email(i)).map_err(|e| e.to_string());
    let removed: Vec<Email> = (0..d).map(email).collect::<Result<_, _>>()?;
    cr.remove_receivers(group, &removed)
        .await
        .map_err(|e| format!("removing receivers: {e}"))?;
    let altered: Vec<ReceiverUpsert> = (d..2 * d)
        .map(|i| {
            Ok(ReceiverUpsert {
                receiver: ReceiverData {
                    email: email(i)?,
                    person: PersonData {
                        first_name: "Overwritten".into(),
                        last_name: "Contact".into(),
                        ..PersonData::default()
                    },
                    crm: CrmRef::new(PersonEntity::Contact, contact_id(i)),
                },
                activate: false,
            })
        })
        .collect::<Result<_, String>>()?;
    cr.upsert_receivers(group, &altered)
        .await
        .map_err(|e| format!("overwriting attributes: {e}"))?;
    let strangers: Vec<ReceiverUpsert> = (0..d)
        .map(|i| {
            Ok(ReceiverUpsert {
                receiver: ReceiverData {
                    email: Email::parse(&format!("stranger-{i:06}@example.org"))
                        .map_err(|e| e.to_string())?,
                    person: PersonData::default(),
                    crm: CrmRef::new(
                        PersonEntity::Contact,
                        format!("5e5e0000-0000-4000-8000-{i:012x}"),
                    ),
                },
                activate: true,
            })
        })
        .collect::<Result<_, String>>()?;
    cr.upsert_receivers(group, &strangers)
        .await
        .map_err(|e| format!("adding strangers: {e}"))?;
    let mut unsubscribed = HashSet::new();
    for i in 2 * d..2 * d + d / 5 {
        control
            .post(
                &control.cleverreach,
                "_sim/unsubscribe",
                &json!({ "group_id": group, "email": contact_email(i) }),
            )
            .await?;
        unsubscribed.insert(contact_email(i));
    }
    cr.rename_group(group, "renamed in CleverReach")
        .await
        .map_err(|e| format!("renaming the group: {e}"))?;
    Ok((
        Drift {
            removed: d,
            altered: d,
            strangers: d,
            unsubscribed: d / 5,
            renamed: true,
        },
        unsubscribed,
    ))
}

async fn bench(args: Args, sims: &Simulators) -> Result<bool, String> {
    let endpoints = &sims.endpoints;
    let control = Control::new(endpoints)?;
    let n = args.recipients;
    let [a, b] = list_ranges(n, args.overlap);
    println!(
        "full resync of a campaign of {n} recipients: two static lists of {} and {} contacts sharing {}",
        a.len(),
        b.len(),
        args.overlap
    );
    let seeded = {
        let admin = dataverse_client(&endpoints.dataverse, &endpoints.dataverse.admin)?;
        admin
            .create(
                "crc_settings",
                &json!({ "crc_key": "cleverreach:connectiondata:apiurl", "crc_value": endpoints.cleverreach.base_url }),
            )
            .await
            .map_err(|e| format!("writing the apiurl setting: {e}"))?;
        seed(&admin, &control, n, args.overlap, !args.web_api_seeding).await?
    };
    println!(
        "seeded {} with {} requests in {:.1} s",
        if args.web_api_seeding {
            "through the Web API"
        } else {
            "in bulk (contacts and members through /_sim/bulk, lists and campaign through the Web API)"
        },
        seeded.requests,
        seeded.took.as_secs_f64()
    );
    let missing_attributes = control.missing_attributes().await?;
    println!();

    let setup = Setup {
        endpoints,
        line: &sims.line,
        control: &control,
        campaign_id: &seeded.campaign_id,
        n,
        overlap: args.overlap,
        missing_attributes,
        lambda: &args.lambda,
    };
    args.lambda.apply_latency(&control).await?;
    let mut ok = run_once(&setup, "run 1: from no group", None, &HashSet::new()).await?;

    let admin = dataverse_client(&endpoints.dataverse, &endpoints.dataverse.admin)?;
    let group = admin
        .retrieve::<Value>("campaigns", &seeded.campaign_id, &[schema::GROUP_ID])
        .await
        .map_err(|e| e.to_string())?
        .and_then(|row| row[schema::GROUP_ID].as_str().map(str::to_string))
        .ok_or("no group after the first run")?;
    let (drift, unsubscribed) = make_drift(endpoints, &control, &group, args.drift).await?;
    println!(
        "drift made behind the connector's back: {} removed, {} attributes overwritten, {} strangers added, {} unsubscribed, group renamed",
        drift.removed, drift.altered, drift.strangers, drift.unsubscribed
    );
    println!();
    ok &= run_once(
        &setup,
        "run 2: group in step plus drift",
        Some(drift),
        &unsubscribed,
    )
    .await?;

    let reactivations = control
        .send(Method::GET, &control.cleverreach, "_sim/reactivations")
        .await?;
    let count = reactivations.as_array().map_or(0, Vec::len);
    if count > 0 {
        ok = false;
        println!("FAILED: {count} unsubscribed receivers re-activated");
    } else {
        println!("no unsubscribed receiver re-activated");
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
