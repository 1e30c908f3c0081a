//! Benchmark: how long a contact's change in the CRM takes to show in CleverReach, with both
//! simulators answering every request after a real API's latency. 100 contacts are members of a
//! synced static list that is linked to a synced campaign, and a synced dynamic list is in use
//! as well (the common case of docs/architecture.md §10.2). The contacts change through the
//! Dataverse simulator's Web API, one every `--every-ms`, in turn: checklist ticked yes (the
//! receiver is added), e-mail changed, name changed, deactivated (the receiver is removed). A
//! change counts from the moment the CRM answered the write until the list's group and the
//! campaign's group both show it. Reports p50, p99 and the longest time, and the Dataverse and
//! CleverReach requests per change (Dataverse: round trips, a `$batch` counting once, and the
//! operations inside them).
//!
//! `cargo run --release -p sandbox --bin bench-person-change -- [--changes N] [--latency-ms L]
//! [--every-ms E] [--workers W]`
//!
//! The path measured is the simulated one: the webhook, the intake, the contact queue and the
//! contact worker, every API call answered after `L` ms. The in-process queues hand messages
//! over at once; an SQS event source adds its own polling delay (under a second with long
//! polling).

use sandbox::cleverreach::CleverReachSimConfig;
use sandbox::dataverse::DataverseSimConfig;
use sandbox::faults::FaultConfig;
use sandbox::harness::{Harness, HarnessOptions, checklist};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Args {
    changes: usize,
    latency_ms: u64,
    every_ms: u64,
    workers: usize,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        changes: 100,
        latency_ms: 100,
        every_ms: 250,
        workers: 5,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or(format!("{flag} needs a value"))?
            .parse::<u64>()
            .map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--changes" => args.changes = value.max(1) as usize,
            "--latency-ms" => args.latency_ms = value,
            "--every-ms" => args.every_ms = value,
            "--workers" => args.workers = value.max(1) as usize,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; usage: bench-person-change [--changes N] [--latency-ms L] [--every-ms E] [--workers W]"
                ));
            }
        }
    }
    Ok(args)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The four kinds of change, in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// The checklist goes from "no choice" to yes: the receiver is added.
    TickedYes,
    /// A new address: the receiver's address changes.
    EmailChanged,
    /// A new first name: the receiver's attribute changes.
    NameChanged,
    /// The contact is deactivated: the receiver is removed.
    Deactivated,
}

impl Change {
    fn of(i: usize) -> Change {
        match i % 4 {
            0 => Change::TickedYes,
            1 => Change::EmailChanged,
            2 => Change::NameChanged,
            _ => Change::Deactivated,
        }
    }
}

fn email(i: usize) -> String {
    format!("person{i:04}@example.com")
}

fn new_email(i: usize) -> String {
    format!("moved{i:04}@example.com")
}

fn new_name(i: usize) -> String {
    format!("Renamed{i:04}")
}

/// Whether the change of person `i` shows in this group.
fn visible(h: &Harness, group: &str, i: usize) -> bool {
    let active = |address: &str| {
        h.cleverreach
            .receiver(group, address)
            .is_some_and(|r| r.active)
    };
    match Change::of(i) {
        Change::TickedYes => active(&email(i)),
        Change::EmailChanged => active(&new_email(i)) && !active(&email(i)),
        Change::NameChanged => h
            .cleverreach
            .receiver(group, &email(i))
            .is_some_and(|r| r.global_attributes.get("firstname") == Some(&new_name(i))),
        Change::Deactivated => !active(&email(i)),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let args = args()?;
    let h = Arc::new(
        Harness::start_with(
            DataverseSimConfig::default(),
            CleverReachSimConfig::default(),
            HarnessOptions {
                workers_per_queue: args.workers,
                ..HarnessOptions::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?,
    );
    h.install(&[]).await.map_err(|e| e.to_string())?;
    let mut people = Vec::new();
    for i in 0..args.changes {
        // Those whose change ticks "yes" start with no choice.
        let consent = if Change::of(i) == Change::TickedYes {
            [(0, 0)]
        } else {
            [(0, 1)]
        };
        people.push(h.contact(&email(i), &consent).await?);
    }
    let (list, list_group) = h
        .synced_static_list("Customers", "contact", &people)
        .await?;
    let campaign = h
        .create(
            "campaigns",
            json!({ "name": "Spring", "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await?;
    h.action(
        &format!("campaigns({campaign})/Microsoft.Dynamics.CRM.AddItemCampaign"),
        json!({ "EntityId": list, "EntityName": "list" }),
    )
    .await?;
    let query = r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="emailaddress1" operator="like" value="%@dynamic.example.com"/></filter></entity></fetch>"#;
    h.create(
        "lists",
        json!({ "listname": "Dynamic", "createdfromcode": 2, "type": true, "query": query,
                "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
    )
    .await?;
    h.settle().await.map_err(|e| e.to_string())?;
    let campaign_group = h
        .group_of("campaigns", &campaign)
        .ok_or("the campaign has no group")?;
    let groups = [list_group, campaign_group];
    println!(
        "{} contacts on a synced static list linked to a synced campaign, a synced dynamic list in use; API latency {} ms; a change every {} ms; {} worker instances per queue",
        args.changes, args.latency_ms, args.every_ms, args.workers
    );
    for faults in [h.dataverse.faults(), h.cleverreach.faults()] {
        faults.set(FaultConfig {
            latency_ms: args.latency_ms,
            ..FaultConfig::off()
        });
    }
    h.dataverse.reset_stats();
    h.cleverreach.reset_stats();

    // The connector works all the time, as the queues' event sources would.
    let stop = Arc::new(AtomicBool::new(false));
    let pump = {
        let (h, stop) = (h.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let _ = h.settle().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    // The benchmark's own writes go through the simulator too: counted to subtract them.
    let writes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut pending: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut done: Vec<Duration> = Vec::new();
    let mut next = 0;
    let mut next_at = Instant::now();
    let deadline = Duration::from_secs(600);
    while done.len() < args.changes && started.elapsed() < deadline {
        if next < args.changes && Instant::now() >= next_at {
            let id = &people[next];
            let body = match Change::of(next) {
                Change::TickedYes => json!({ "crc_checklist": checklist(&[(0, 1)]) }),
                Change::EmailChanged => json!({ "emailaddress1": new_email(next) }),
                Change::NameChanged => json!({ "firstname": new_name(next) }),
                Change::Deactivated => json!({ "statecode": 1, "statuscode": 2 }),
            };
            // The write's answer comes after the simulator's latency (and the synchronous
            // webhook); the clock starts when the CRM has answered.
            h.update("contacts", id, body).await?;
            writes.fetch_add(1, Ordering::SeqCst);
            pending.insert(next, Instant::now());
            next += 1;
            next_at += Duration::from_millis(args.every_ms);
        }
        let finished: Vec<usize> = pending
            .keys()
            .filter(|i| groups.iter().all(|g| visible(&h, g, **i)))
            .copied()
            .collect();
        for i in finished {
            if let Some(at) = pending.remove(&i) {
                done.push(at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let _ = pump.await;
    let mut sorted = done.clone();
    sorted.sort();
    let dv = h.dataverse.stats();
    let operations = dv.total().saturating_sub(writes.load(Ordering::SeqCst));
    let round_trips = operations - dv.batch_parts + dv.batches;
    let cr = h.cleverreach.stats().total();
    let n = next.max(1) as f64;
    println!(
        "changes: {} made, {} visible in both groups, {} not within {} s",
        next,
        done.len(),
        pending.len(),
        deadline.as_secs()
    );
    println!(
        "CRM write answered → visible in CleverReach: p50 {:.2} s, p99 {:.2} s, longest {:.2} s",
        percentile(&sorted, 50.0).as_secs_f64(),
        percentile(&sorted, 99.0).as_secs_f64(),
        sorted.last().copied().unwrap_or_default().as_secs_f64()
    );
    println!(
        "per change: Dataverse {:.1} requests ({} $batch holding {} operations; {:.1} operations), CleverReach {:.1} requests (the benchmark's own writes not counted)",
        round_trips as f64 / n,
        dv.batches,
        dv.batch_parts,
        operations as f64 / n,
        cr as f64 / n
    );
    let by_kind: Vec<String> = dv
        .requests
        .iter()
        .map(|(key, n)| format!("{key} {n}"))
        .collect();
    println!(
        "Dataverse operations by kind ($batch parts included, the benchmark's {} writes too): {}",
        writes.load(Ordering::SeqCst),
        by_kind.join(", ")
    );
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
    if pending.is_empty() {
        Ok(())
    } else {
        Err(format!("{} changes did not arrive", pending.len()))
    }
}
