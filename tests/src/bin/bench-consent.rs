//! Benchmark: how long an unsubscribe in CleverReach takes to reach the CRM through the event
//! hooks, with the simulators answering after a real API's latency. People on two synced lists
//! that send the same newsletter type unsubscribe from one group, one every `--every-ms`; an
//! event counts as done when the person's checklist entry is 2 (no) in the CRM **and** the
//! person has left the other group. Reports p50, p99 and the longest time over all events, and
//! the calls each event cost.
//!
//! `cargo run --release -p sandbox --bin bench-consent -- [--events N] [--latency-ms L]
//! [--every-ms E] [--workers W]`
//!
//! The path measured is the simulated one: CleverReach's delivery, the `cleverreach-events`
//! endpoint, the events queue, `sync-cleverreach-events`, the contact queue and the contact
//! worker, every API call answered after `L` ms. The in-process queues hand messages over at
//! once; an SQS event source adds its own polling delay (under a second with long polling).

use sandbox::cleverreach::CleverReachSimConfig;
use sandbox::dataverse::DataverseSimConfig;
use sandbox::faults::FaultConfig;
use sandbox::harness::{Harness, HarnessOptions};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Args {
    events: usize,
    latency_ms: u64,
    every_ms: u64,
    workers: usize,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        events: 100,
        latency_ms: 300,
        every_ms: 500,
        workers: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or(format!("{flag} needs a value"))?
            .parse::<u64>()
            .map_err(|e| format!("{flag}: {e}"))?;
        match flag.as_str() {
            "--events" => args.events = value as usize,
            "--latency-ms" => args.latency_ms = value,
            "--every-ms" => args.every_ms = value,
            "--workers" => args.workers = value.max(1) as usize,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; usage: bench-consent [--events N] [--latency-ms L] [--every-ms E] [--workers W]"
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), String> {
    let args = args()?;
    let h = Arc::new(
        Harness::start_with(
            DataverseSimConfig::default(),
            CleverReachSimConfig::default(),
            HarnessOptions {
                hooks: true,
                workers_per_queue: args.workers,
                ..HarnessOptions::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?,
    );
    h.install(&[]).await.map_err(|e| e.to_string())?;
    let mut people = Vec::new();
    for i in 0..args.events {
        people.push(
            h.contact(&format!("person{i:04}@example.com"), &[(0, 1)])
                .await?,
        );
    }
    let (_, customers) = h
        .synced_static_list("Customers", "contact", &people)
        .await?;
    let (_, partners) = h.synced_static_list("Partners", "contact", &people).await?;
    println!(
        "{} people in two synced groups; API latency {} ms; an unsubscribe every {} ms; {} worker instances per queue",
        args.events, args.latency_ms, args.every_ms, args.workers
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
    let started = Instant::now();
    let mut pending: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut done: Vec<Duration> = Vec::new();
    let mut next = 0;
    let mut next_at = Instant::now();
    let deadline = Duration::from_secs(600);
    while done.len() < args.events && started.elapsed() < deadline {
        if next < args.events && Instant::now() >= next_at {
            h.cleverreach
                .unsubscribe(&customers, &format!("person{next:04}@example.com"))
                .map_err(|e| e.to_string())?;
            pending.insert(next, Instant::now());
            next += 1;
            next_at += Duration::from_millis(args.every_ms);
        }
        let finished: Vec<usize> = pending
            .iter()
            .filter(|(i, _)| {
                let email = format!("person{:04}@example.com", i);
                h.checklist_states("contacts", &people[**i]) == [(0, 2)]
                    && h.cleverreach
                        .receiver(&partners, &email)
                        .is_none_or(|r| !r.active)
            })
            .map(|(i, _)| *i)
            .collect();
        for i in finished {
            if let Some(at) = pending.remove(&i) {
                done.push(at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let _ = pump.await;
    let mut sorted = done.clone();
    sorted.sort();
    let hooks = h.cleverreach.hook_stats();
    let dv = h.dataverse.stats().requests.values().sum::<u64>();
    let cr = h.cleverreach.stats().total();
    println!(
        "events: {} unsubscribed, {} reached the CRM and left the other group, {} not within {} s",
        next,
        done.len(),
        pending.len(),
        deadline.as_secs()
    );
    println!(
        "unsubscribe → checklist 2 and out of the other group: p50 {:.1} s, p99 {:.1} s, longest {:.1} s",
        percentile(&sorted, 50.0).as_secs_f64(),
        percentile(&sorted, 99.0).as_secs_f64(),
        sorted.last().copied().unwrap_or_default().as_secs_f64()
    );
    println!(
        "hook deliveries: {} made, {} refused or unanswered; calls per event: Dataverse {:.1}, CleverReach {:.1} (hook registrations and the simulator's own deliveries not counted)",
        hooks.made,
        hooks.failed,
        dv as f64 / next.max(1) as f64,
        cr as f64 / next.max(1) as f64
    );
    println!("wall time {:.1} s", started.elapsed().as_secs_f64());
    if pending.is_empty() {
        Ok(())
    } else {
        Err(format!("{} events did not arrive", pending.len()))
    }
}
