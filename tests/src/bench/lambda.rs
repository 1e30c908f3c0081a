//! Worker invocations as AWS Lambda runs them, for the benchmarks: each invocation is a fresh
//! process of the benchmark binary (`--worker` mode: a cold Lambda, so its peak RSS is its own),
//! with an optional timeout: the worker's deadline is T after its start (it stops and continues
//! in a follow-up message before it, docs/architecture.md §4), and a worker still running at T
//! is killed and its message delivered again, up to the queue's maxReceiveCount, as SQS and
//! Lambda would. Also the simulators' latency switch the benchmarks turn on after seeding.

use super::{
    Control, Endpoints, SOURCE_WORKER_DATAVERSE_REQUESTS, cleverreach_client, cpu_seconds,
    dataverse_client_with, heap_peak, join_cgroup_from_env, reset_heap_peak, rss,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use shared::adapters::dataverse::crm::DataverseCrm;
use shared::adapters::memory::InMemoryChangeQueue;
use shared::deadline::{self, Budget};
use shared::domain::change::ChangeEvent;
use shared::domain::routing::{QueueFamily, message_group};
use shared::handlers::sync_worker::{InboundMessage, WorkerDeps, handle_messages};
use shared::usecases::Connector;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Receivers per CleverReach upsert, as the functions are configured.
pub const BATCH_SIZE: usize = 250;

/// The flag that puts a benchmark binary into worker mode.
pub const WORKER_FLAG: &str = "--worker";

/// What a worker process measured.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Measured {
    pub wall_s: f64,
    pub rss_before: u64,
    pub rss_peak: u64,
    pub heap_peak: u64,
    /// CPU seconds (user + system) of the worker process while it handled the message.
    pub cpu_s: f64,
    /// The cgroup the worker ran in (`BENCH_WORKER_CGROUP`), if any.
    pub cgroup: Option<String>,
    /// The worker left the message on the queue.
    pub failed: bool,
    /// The message the worker queued to continue its reconcile (its time ran short).
    pub continuation: Option<String>,
    /// Killed at the emulated timeout (nothing reported).
    #[serde(default)]
    pub killed: bool,
}

/// The invocations one message (and its continuations) took.
#[derive(Default)]
pub struct Invocations {
    pub runs: Vec<Measured>,
    pub redelivered: usize,
    pub continuations: usize,
    pub dead_lettered: bool,
}

impl Invocations {
    pub fn killed(&self) -> usize {
        self.runs.iter().filter(|r| r.killed).count()
    }

    pub fn longest_s(&self) -> f64 {
        self.runs.iter().map(|r| r.wall_s).fold(0.0, f64::max)
    }

    /// All invocations as one: wall and CPU times added, memory the highest of any.
    pub fn overall(&self) -> Measured {
        Measured {
            wall_s: self.runs.iter().map(|r| r.wall_s).sum(),
            rss_before: self.runs.iter().map(|r| r.rss_before).max().unwrap_or(0),
            rss_peak: self.runs.iter().map(|r| r.rss_peak).max().unwrap_or(0),
            heap_peak: self.runs.iter().map(|r| r.heap_peak).max().unwrap_or(0),
            cpu_s: self.runs.iter().map(|r| r.cpu_s).sum(),
            cgroup: self.runs.iter().find_map(|r| r.cgroup.clone()),
            failed: self.dead_lettered || self.runs.last().is_none_or(|r| r.failed || r.killed),
            continuation: None,
            killed: self.killed() > 0,
        }
    }

    /// Prints the invocation lines of a report; false when one was killed or the message
    /// dead-lettered.
    pub fn report(&self, width: usize, timeout: Option<Duration>, max_receives: u32) -> bool {
        println!(
            "{:<width$} {:>12}  (killed by the timeout: {}, redelivered: {}, continuations: {})",
            "invocations",
            self.runs.len(),
            self.killed(),
            self.redelivered,
            self.continuations
        );
        println!(
            "{:<width$} {:>10.2} s{}",
            "longest invocation",
            self.longest_s(),
            timeout.map_or(String::new(), |t| format!(
                "  (timeout {} s: {})",
                t.as_secs(),
                if self.killed() == 0 {
                    "none killed"
                } else {
                    "KILLED"
                }
            ))
        );
        let mut ok = true;
        if self.dead_lettered {
            ok = false;
            println!("FAILED: the message was dead-lettered after {max_receives} receives");
        }
        if self.killed() > 0 {
            ok = false;
        }
        ok
    }
}

/// The latency and Lambda flags both benchmarks take.
#[derive(Debug, Clone)]
pub struct LambdaArgs {
    pub dataverse_latency_ms: u64,
    pub cleverreach_latency_ms: u64,
    /// The emulated Lambda timeout of one invocation.
    pub timeout: Option<Duration>,
    pub max_receives: u32,
}

impl Default for LambdaArgs {
    fn default() -> Self {
        LambdaArgs {
            dataverse_latency_ms: 0,
            cleverreach_latency_ms: 0,
            timeout: None,
            // The template's maxReceiveCount.
            max_receives: 5,
        }
    }
}

/// The usage text of [`LambdaArgs::parse`]'s flags.
pub const LAMBDA_USAGE: &str = "[--latency-ms L] [--dataverse-latency-ms L] [--cleverreach-latency-ms L] [--timeout-s T] [--max-receives R]";

impl LambdaArgs {
    /// Takes `flag` (and its value from `rest`) when it is one of these flags: `Ok(true)`.
    pub fn parse(
        &mut self,
        flag: &str,
        rest: &mut impl Iterator<Item = String>,
    ) -> Result<bool, String> {
        let mut number = |flag: &str| -> Result<u64, String> {
            let value = rest.next().ok_or(format!("{flag} needs a number"))?;
            value
                .replace('_', "")
                .parse()
                .map_err(|_| format!("{flag} {value:?} is not a number"))
        };
        match flag {
            "--latency-ms" => {
                let ms = number(flag)?;
                self.dataverse_latency_ms = ms;
                self.cleverreach_latency_ms = ms;
            }
            "--dataverse-latency-ms" => self.dataverse_latency_ms = number(flag)?,
            "--cleverreach-latency-ms" => self.cleverreach_latency_ms = number(flag)?,
            "--timeout-s" => self.timeout = Some(Duration::from_secs(number(flag)?)),
            "--max-receives" => self.max_receives = number(flag)?.max(1) as u32,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Turns the simulators' latency switch on (after the seeding), and says so.
    pub async fn apply_latency(&self, control: &Control) -> Result<(), String> {
        if self.dataverse_latency_ms == 0 && self.cleverreach_latency_ms == 0 {
            return Ok(());
        }
        for (base, ms) in [
            (&control.dataverse, self.dataverse_latency_ms),
            (&control.cleverreach, self.cleverreach_latency_ms),
        ] {
            control
                .put(
                    base,
                    "_sim/faults",
                    &json!({ "rate": 0.0, "latency_ms": ms }),
                )
                .await?;
        }
        println!(
            "from here every request is answered after {} ms (Dataverse) and {} ms (CleverReach){}",
            self.dataverse_latency_ms,
            self.cleverreach_latency_ms,
            self.timeout.map_or(String::new(), |t| format!(
                "; Lambda timeout {} s",
                t.as_secs()
            ))
        );
        Ok(())
    }
}

/// Delivers `first` to fresh worker processes of `family` as SQS and Lambda would: a
/// continuation the worker queued is the next message; a message left on the queue (or whose
/// worker was killed at the timeout) is delivered again, up to `max_receives` times.
pub fn run_invocations(
    line: &str,
    family: QueueFamily,
    first: &ChangeEvent,
    args: &LambdaArgs,
) -> Result<Invocations, String> {
    let mut message = serde_json::to_string(first).map_err(|e| e.to_string())?;
    let mut receives = 0;
    let mut done = Invocations::default();
    loop {
        receives += 1;
        let run = run_worker_process(line, family, &message, args.timeout)?;
        let again = run.failed || run.killed;
        let next = run.continuation.clone();
        done.runs.push(run);
        if again {
            if receives >= args.max_receives {
                done.dead_lettered = true;
                return Ok(done);
            }
            done.redelivered += 1;
            continue;
        }
        match next {
            Some(next) => {
                done.continuations += 1;
                message = next;
                receives = 0;
            }
            None => return Ok(done),
        }
    }
}

/// Runs one worker in a fresh process of this binary and reads what it measured; with a
/// timeout, kills it there as Lambda would (then it reports nothing).
fn run_worker_process(
    line: &str,
    family: QueueFamily,
    message: &str,
    timeout: Option<Duration>,
) -> Result<Measured, String> {
    let me = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut command = Command::new(me);
    command
        .arg(WORKER_FLAG)
        .env("BENCH_SIMULATORS", line)
        .env("BENCH_MESSAGE", message)
        .env("BENCH_FAMILY", family.name())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(t) = timeout {
        command.env("BENCH_TIMEOUT_MS", t.as_millis().to_string());
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("starting the worker: {e}"))?;
    if let Some(t) = timeout {
        loop {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            if started.elapsed() >= t {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Measured {
                    wall_s: started.elapsed().as_secs_f64(),
                    killed: true,
                    ..Measured::default()
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("the worker: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim()).map_err(|e| {
        format!(
            "the worker did not report ({e}; exit {}): {text:?}",
            output.status
        )
    })
}

/// Worker mode as a benchmark binary's `main` runs it: tracing on, one message handled, its
/// exit status.
pub fn worker_main() -> std::process::ExitCode {
    super::init_tracing();
    match worker_process() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Worker mode: the message in `BENCH_MESSAGE`, handled by the worker of `BENCH_FAMILY` built
/// as the function's `main` builds it, within the invocation's deadline when
/// `BENCH_TIMEOUT_MS` says there is one (counted from the process start, as Lambda counts from
/// the invocation); prints what it measured as one JSON line.
pub fn worker_process() -> Result<(), String> {
    let started_process = tokio::time::Instant::now();
    let line = std::env::var("BENCH_SIMULATORS").map_err(|_| "BENCH_SIMULATORS is not set")?;
    let body = std::env::var("BENCH_MESSAGE").map_err(|_| "BENCH_MESSAGE is not set")?;
    let family = std::env::var("BENCH_FAMILY").map_err(|_| "BENCH_FAMILY is not set")?;
    let family = QueueFamily::ALL
        .into_iter()
        .find(|f| f.name() == family)
        .ok_or(format!("BENCH_FAMILY {family:?} is not a queue family"))?;
    let timeout = std::env::var("BENCH_TIMEOUT_MS")
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_millis);
    let endpoints: Endpoints = serde_json::from_str(&line).map_err(|e| e.to_string())?;
    let event: ChangeEvent = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let cgroup = join_cgroup_from_env()?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let measured = runtime.block_on(async {
        let budget = timeout.map(|t| Budget::until(started_process + t));
        let dv = &endpoints.dataverse;
        // As deployed: the source workers' DATAVERSE_CONCURRENT_REQUESTS (infra/template.yaml).
        let crm = DataverseCrm::new(dataverse_client_with(
            dv,
            &dv.connector,
            SOURCE_WORKER_DATAVERSE_REQUESTS,
        )?);
        let newsletter = cleverreach_client(&endpoints.cleverreach, BATCH_SIZE)?;
        newsletter
            .connect_client_credentials()
            .await
            .map_err(|e| format!("CleverReach token: {e}"))?;
        // The worker's own queue, for the continuation it may queue.
        let own_queue = Arc::new(InMemoryChangeQueue::new());
        let worker = WorkerDeps::new(family, Connector::new(crm, newsletter))
            .with_follow_up(own_queue.clone());
        let message = InboundMessage {
            message_id: event.operation_id.clone(),
            body,
            group: Some(message_group(&event)),
        };
        let rss_before = rss().now;
        reset_heap_peak();
        let cpu_before = cpu_seconds();
        let started = Instant::now();
        let failed = deadline::within(budget, handle_messages(&worker, vec![message])).await;
        let wall = started.elapsed();
        let continuation = match own_queue.pending().into_iter().next() {
            Some(queued) => Some(serde_json::to_string(&queued.event).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok::<Measured, String>(Measured {
            wall_s: wall.as_secs_f64(),
            rss_before,
            rss_peak: rss().peak,
            heap_peak: heap_peak() as u64,
            cpu_s: cpu_seconds() - cpu_before,
            cgroup: cgroup.clone(),
            failed: !failed.is_empty(),
            continuation,
            killed: false,
        })
    })?;
    println!(
        "{}",
        serde_json::to_string(&measured).map_err(|e| e.to_string())?
    );
    Ok(())
}
