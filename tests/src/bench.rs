//! The benchmark binaries' common toolkit: the counting allocator and RSS readings behind their
//! memory figures, the simulators in a child process and their endpoints, the clients built
//! from those endpoints, the `/_sim` control client and the call counts it reads.

use crate::cleverreach::{CleverReachSim, CleverReachSimConfig};
use crate::dataverse::{self, DataverseSim, DataverseSimConfig};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::adapters::cleverreach::{CleverReachClient, CleverReachConfig, InMemoryTokenStore};
use shared::adapters::dataverse::client::{DataverseClient, DataverseConfig};
use shared::secret::Secret;
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use url::Url;

pub mod lambda;

// ---- memory -------------------------------------------------------------------------------

/// The system allocator, counting live heap bytes and their peak (RSS alone mixes in the
/// allocator's retained pages; the heap peak says what the code actually holds). A bench
/// installs it with `#[global_allocator] static ALLOCATOR: Counting = Counting;`.
pub struct Counting;

static HEAP_NOW: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

fn heap_grew(by: usize) {
    let now = HEAP_NOW.fetch_add(by, Ordering::Relaxed) + by;
    HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            heap_grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            heap_grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        HEAP_NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP_NOW.fetch_sub(layout.size(), Ordering::Relaxed);
            heap_grew(new_size);
        }
        p
    }
}

/// Live heap bytes now (zero unless [`Counting`] is the global allocator).
pub fn heap_now() -> usize {
    HEAP_NOW.load(Ordering::Relaxed)
}

/// The most live heap bytes since the start or the last reset.
pub fn heap_peak() -> usize {
    HEAP_PEAK.load(Ordering::Relaxed)
}

/// Starts a new heap peak at the live heap now.
pub fn reset_heap_peak() {
    HEAP_PEAK.store(HEAP_NOW.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Resident set now and its high-water mark, in bytes (`/proc/self/status`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    /// `VmRSS`.
    pub now: u64,
    /// `VmHWM`.
    pub peak: u64,
}

/// This process's resident set (zeros where `/proc/self/status` cannot be read).
pub fn rss() -> Rss {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |k| k * 1024)
    };
    Rss {
        now: kib("VmRSS:"),
        peak: kib("VmHWM:"),
    }
}

/// CPU seconds (user + system, all threads) this process has used so far, from
/// `/proc/self/stat` (clock ticks of 1/100 s, Linux's `USER_HZ`); 0 where it cannot be read.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold blanks.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// With `BENCH_WORKER_CGROUP` set to a cgroup directory (e.g. a v1 `cpu` cgroup whose
/// `cpu.cfs_quota_us` holds the CPU share of a Lambda size), moves this process into it, so
/// that a worker runs with that share of a core. Returns the directory joined, `None` when the
/// variable is unset; an error when it is set but cannot be joined.
pub fn join_cgroup_from_env() -> Result<Option<String>, String> {
    let Ok(dir) = std::env::var("BENCH_WORKER_CGROUP") else {
        return Ok(None);
    };
    let procs = std::path::Path::new(&dir).join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .map_err(|e| format!("joining the cgroup {dir}: {e}"))?;
    Ok(Some(dir))
}

/// Starts a new peak: RSS high-water mark (Linux ≥ 4.0, `clear_refs` 5) and heap peak. Seeding
/// ran in this process too, and its peak must not count as the worker's. False when the RSS
/// high-water mark could not be reset.
pub fn reset_peaks() -> bool {
    reset_heap_peak();
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/clear_refs")
        .and_then(|mut f| f.write_all(b"5"))
        .is_ok()
}

/// Bytes as megabytes with one decimal, for the reports.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

// ---- the simulators' process ------------------------------------------------------------------

/// Log lines on stderr (stdout carries the reports and the JSON lines), `RUST_LOG` or warnings.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
}

/// Child mode (`--serve-simulators`): both simulators on free ports; the sandbox binary's JSON
/// line on stdout; exit when stdin closes (the bench ended, however it ended).
pub fn serve_simulators() -> ExitCode {
    match serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulators: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> Result<(), String> {
    init_tracing();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let dataverse = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .map_err(|e| format!("Dataverse simulator: {e}"))?;
        let defaults = CleverReachSimConfig::default();
        let cleverreach = CleverReachSim::spawn(defaults.clone())
            .await
            .map_err(|e| format!("CleverReach simulator: {e}"))?;
        // The same line as `src/bin/sandbox.rs` prints, so both children are read alike.
        println!(
            "{}",
            json!({
                "dataverse": {
                    "api_url": dataverse.api_url(),
                    "token_url": dataverse.token_url(),
                    "scope": format!("{}/.default", dataverse.resource()),
                    "admin": { "client_id": dataverse::ADMIN_CLIENT_ID, "client_secret": dataverse::ADMIN_CLIENT_SECRET },
                    "connector": { "client_id": dataverse::CONNECTOR_CLIENT_ID, "client_secret": dataverse::CONNECTOR_CLIENT_SECRET, "user_id": dataverse::CONNECTOR_USER_ID },
                },
                "cleverreach": {
                    "base_url": cleverreach.base_url(),
                    "client_id": defaults.client_id,
                    "client_secret": defaults.client_secret,
                },
            })
        );
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = closed_tx.send(());
        });
        let _ = closed_rx.await;
        Ok(())
    })
}

/// An OAuth client of the sandbox (its fixed test credentials, not a real secret).
#[derive(Deserialize)]
pub struct Credentials {
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: String,
}

/// The Dataverse simulator's part of the sandbox's JSON line.
#[derive(Deserialize)]
pub struct DataverseEndpoints {
    /// The Web API root (`…/api/data/v9.2/`).
    pub api_url: String,
    /// The token endpoint.
    pub token_url: String,
    /// The scope a token is asked for.
    pub scope: String,
    /// The administrator's client, for seeding and reading back.
    pub admin: Credentials,
    /// The connector's client, as the functions use it.
    pub connector: Credentials,
}

/// The CleverReach simulator's part of the sandbox's JSON line.
#[derive(Deserialize)]
pub struct CleverReachEndpoints {
    /// The REST API root.
    pub base_url: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: String,
}

/// The sandbox's JSON line.
#[derive(Deserialize)]
pub struct Endpoints {
    /// Where the Dataverse simulator listens.
    pub dataverse: DataverseEndpoints,
    /// Where the CleverReach simulator listens.
    pub cleverreach: CleverReachEndpoints,
}

/// The simulators' process; killed (by its own handle) when the bench ends.
pub struct Simulators {
    child: Child,
    /// What the simulators printed.
    pub endpoints: Endpoints,
    /// The JSON line as printed, for processes the bench starts itself.
    pub line: String,
}

impl Drop for Simulators {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the simulators on free ports: the sandbox binary at `sandbox`, or else this binary in
/// `--serve-simulators` mode (see [`serve_simulators`]). Returns once they printed their line.
pub fn start_simulators(sandbox: Option<&str>) -> Result<Simulators, String> {
    let mut command = match sandbox {
        Some(path) => Command::new(path),
        None => {
            let me = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
            let mut c = Command::new(me);
            c.arg("--serve-simulators");
            c
        }
    };
    let mut child = command
        // Free ports: other sandboxes may be running on the defaults.
        .env("DATAVERSE_PORT", "0")
        .env("CLEVERREACH_PORT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("starting the simulators: {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        let _ = child.kill();
        return Err("the simulators' stdout is not piped".into());
    };
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let read = reader.read_line(&mut line);
    let endpoints = read
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::from_str::<Endpoints>(&line).map_err(|e| e.to_string()));
    let endpoints = match endpoints {
        Ok(endpoints) => endpoints,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the simulators did not print their endpoints ({e}): {line:?}"
            ));
        }
    };
    // The sandbox binary logs to stdout: keep draining it so that it never blocks.
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&chunk[..n]);
            if let Some(end) = rest.iter().rposition(|b| *b == b'\n') {
                let _ = std::io::stderr().write_all(&rest[..=end]);
                rest.drain(..=end);
            }
        }
    });
    Ok(Simulators {
        child,
        endpoints,
        line: line.trim().to_string(),
    })
}

/// A bench's `main` once its arguments are read: tracing on, the simulators started (see
/// [`start_simulators`]), `bench` run on a fresh runtime, the simulators stopped. Exit status
/// 0 when `bench` passes, 1 when it fails or cannot run (the reason on stderr).
pub fn run<A>(
    args: A,
    sandbox: Option<&str>,
    bench: impl AsyncFnOnce(A, &Simulators) -> Result<bool, String>,
) -> ExitCode {
    init_tracing();
    let sims = match start_simulators(sandbox) {
        Ok(sims) => sims,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The simulators start as a plain org; the installer provisions it first.
    let dv = &sims.endpoints.dataverse;
    if let Err(e) = runtime.block_on(crate::provision::install_schema_at(
        &dv.api_url,
        &dv.token_url,
        &dv.scope,
        &dv.admin.client_id,
        &dv.admin.client_secret,
    )) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let result = runtime.block_on(bench(args, &sims));
    drop(runtime);
    drop(sims);
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- clients ------------------------------------------------------------------------------

/// `text` as a URL; the error names it.
pub fn url(text: &str) -> Result<Url, String> {
    Url::parse(text).map_err(|e| format!("{text}: {e}"))
}

/// A Web API client of the Dataverse simulator signed in as `credentials`.
pub fn dataverse_client(
    dv: &DataverseEndpoints,
    credentials: &Credentials,
) -> Result<DataverseClient, String> {
    // Dataverse's own limit per user: the seeding and the checks are not a deployed function.
    dataverse_client_with(dv, credentials, 52)
}

/// Dataverse requests the template lets a source worker have under way
/// (`DATAVERSE_CONCURRENT_REQUESTS` of the three source functions): the benchmarks' workers
/// run with it, as deployed.
pub const SOURCE_WORKER_DATAVERSE_REQUESTS: usize = 2;

/// The same with at most `requests` requests under way.
pub fn dataverse_client_with(
    dv: &DataverseEndpoints,
    credentials: &Credentials,
    requests: usize,
) -> Result<DataverseClient, String> {
    DataverseClient::new(DataverseConfig {
        max_concurrent_requests: requests,
        ..DataverseConfig::new(
            url(&dv.api_url)?,
            url(&dv.token_url)?,
            credentials.client_id.clone(),
            Secret::new(credentials.client_secret.clone()),
            dv.scope.clone(),
        )
    })
    .map_err(|e| e.to_string())
}

/// A CleverReach client of the simulator as a sync function's `main` builds it (named after
/// the simulated organisation), upserting `upsert_batch_size` receivers a call; not signed in
/// yet.
pub fn cleverreach_client(
    cr: &CleverReachEndpoints,
    upsert_batch_size: usize,
) -> Result<CleverReachClient<Arc<InMemoryTokenStore>>, String> {
    let mut config = CleverReachConfig::new(
        url(&cr.base_url)?,
        cr.client_id.clone(),
        Secret::new(cr.client_secret.clone()),
        format!(
            "Dynamics 365 ({})",
            DataverseSimConfig::default().org_domain
        ),
    );
    config.upsert_batch_size = upsert_batch_size;
    CleverReachClient::new(config, Arc::new(InMemoryTokenStore::new())).map_err(|e| e.to_string())
}

// ---- the simulators' control endpoints --------------------------------------------------------

/// The simulators' `/_sim/…` control endpoints (never faulted, no token).
pub struct Control {
    http: reqwest::Client,
    /// The Dataverse simulator's root.
    pub dataverse: Url,
    /// The CleverReach simulator's root.
    pub cleverreach: Url,
}

impl Control {
    /// A control client for the simulators at `endpoints` (their roots, whatever API path the
    /// endpoints carry).
    pub fn new(endpoints: &Endpoints) -> Result<Control, String> {
        let root = |text: &str| -> Result<Url, String> {
            let mut u = url(text)?;
            u.set_path("/");
            Ok(u)
        };
        Ok(Control {
            http: reqwest::Client::new(),
            dataverse: root(&endpoints.dataverse.api_url)?,
            cleverreach: root(&endpoints.cleverreach.base_url)?,
        })
    }

    /// `method` on `path` below `base`; the JSON answer, or an error naming the URL.
    pub async fn send(&self, method: Method, base: &Url, path: &str) -> Result<Value, String> {
        let target = base.join(path).map_err(|e| e.to_string())?;
        let text = exchange(self.http.request(method, target.clone()), &target).await?;
        serde_json::from_str(&text).map_err(|e| format!("{target}: {e}"))
    }

    /// `body` POSTed to `path` below `base`; the JSON answer, or an error naming the URL.
    pub async fn post(&self, base: &Url, path: &str, body: &Value) -> Result<Value, String> {
        let target = base.join(path).map_err(|e| e.to_string())?;
        let text = exchange(self.http.post(target.clone()).json(body), &target).await?;
        serde_json::from_str(&text).map_err(|e| format!("{target}: {e}"))
    }

    /// `body` PUT to `path` below `base`; only the status counts (a fault switch answers 204
    /// with no body).
    pub async fn put(&self, base: &Url, path: &str, body: &Value) -> Result<(), String> {
        let target = base.join(path).map_err(|e| e.to_string())?;
        exchange(self.http.put(target.clone()).json(body), &target)
            .await
            .map(|_| ())
    }

    /// The Dataverse simulator's request counts since it started.
    pub async fn dataverse_stats(&self) -> Result<DataverseCalls, String> {
        let stats = self
            .send(Method::GET, &self.dataverse, "_sim/stats")
            .await?;
        DataverseCalls::from_json(&stats)
    }

    /// The CleverReach simulator's calls by endpoint since the last reset.
    pub async fn cleverreach_stats(&self) -> Result<BTreeMap<String, u64>, String> {
        let stats = self
            .send(Method::GET, &self.cleverreach, "_sim/stats")
            .await?;
        serde_json::from_value::<BTreeMap<String, u64>>(stats["calls"].clone())
            .map_err(|e| format!("CleverReach stats: {e}"))
    }

    /// Global attributes the CleverReach account lacks: each costs one create on a first sync.
    pub async fn missing_attributes(&self) -> Result<usize, String> {
        let state = self
            .send(Method::GET, &self.cleverreach, "_sim/state")
            .await?;
        let existing: HashSet<String> = state["attributes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["name"].as_str())
                    .map(str::to_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        Ok(shared::adapters::cleverreach::attribute::ALL
            .iter()
            .filter(|a| !existing.contains(**a))
            .count())
    }

    /// Bulk contacts `start..start + count` in the Dataverse simulator (see
    /// [`crate::dataverse::seeding`]), each with `checklist`.
    pub async fn bulk_contacts(
        &self,
        start: usize,
        count: usize,
        checklist: &str,
    ) -> Result<usize, String> {
        let answer = self
            .post(
                &self.dataverse,
                "_sim/bulk/contacts",
                &json!({ "start": start, "count": count, "checklist": checklist }),
            )
            .await?;
        answer["created"]
            .as_u64()
            .map(|n| n as usize)
            .ok_or(format!("bulk contacts: unexpected answer {answer}"))
    }

    /// Bulk contacts `range` added to the static list `list_id` (see
    /// [`crate::dataverse::seeding`]).
    pub async fn bulk_list_members(
        &self,
        list_id: &str,
        range: std::ops::Range<usize>,
    ) -> Result<usize, String> {
        let answer = self
            .post(
                &self.dataverse,
                "_sim/bulk/listmembers",
                &json!({ "listid": list_id, "start": range.start, "end": range.end }),
            )
            .await?;
        answer["added"]
            .as_u64()
            .map(|n| n as usize)
            .ok_or(format!("bulk list members: unexpected answer {answer}"))
    }

    /// Every receiver of a CleverReach group as the simulator holds it, read in slices of
    /// 50,000 (a group of a million in one answer would be gigabytes), each passed to `check`.
    pub async fn each_receiver<T: serde::de::DeserializeOwned>(
        &self,
        group: &str,
        mut check: impl FnMut(T),
    ) -> Result<(), String> {
        const SLICE: usize = 50_000;
        let mut offset = 0;
        loop {
            let slice = self
                .send(
                    Method::GET,
                    &self.cleverreach,
                    &format!("_sim/groups/{group}/receivers?offset={offset}&limit={SLICE}"),
                )
                .await?;
            let rows: Vec<T> =
                serde_json::from_value(slice).map_err(|e| format!("receivers of {group}: {e}"))?;
            let n = rows.len();
            rows.into_iter().for_each(&mut check);
            if n < SLICE {
                return Ok(());
            }
            offset += n;
        }
    }

    /// Sets the CleverReach simulator's call counts to zero.
    pub async fn reset_cleverreach_stats(&self) -> Result<(), String> {
        self.send(Method::DELETE, &self.cleverreach, "_sim/stats")
            .await
            .map(|_| ())
    }
}

/// Sends `request` to `target`; the answer's body when its status is a success, or an error
/// naming `target` (with the status and body when there is an answer).
async fn exchange(request: reqwest::RequestBuilder, target: &Url) -> Result<String, String> {
    let reply = request.send().await.map_err(|e| format!("{target}: {e}"))?;
    let status = reply.status();
    let text = reply.text().await.map_err(|e| format!("{target}: {e}"))?;
    if !status.is_success() {
        return Err(format!("{target}: {status} {text}"));
    }
    Ok(text)
}

// ---- call counts ------------------------------------------------------------------------------

/// Dataverse requests by `"<METHOD> <set or action>"` (each `$batch` part counted), and tokens
/// issued, throttled answers, `$batch` requests and their parts.
#[derive(Debug, Clone, Default)]
pub struct DataverseCalls {
    /// Requests by `"<METHOD> <set or action>"`.
    pub requests: BTreeMap<String, u64>,
    /// Tokens issued.
    pub tokens: u64,
    /// Requests refused by the simulator's concurrency limit.
    pub throttled: u64,
    /// `$batch` requests.
    pub batches: u64,
    /// Parts inside the `$batch` requests.
    pub batch_parts: u64,
}

impl DataverseCalls {
    /// Reads the simulator's `/_sim/stats` answer.
    pub fn from_json(stats: &Value) -> Result<DataverseCalls, String> {
        Ok(DataverseCalls {
            requests: serde_json::from_value(stats["requests"].clone())
                .map_err(|e| format!("Dataverse stats: {e}"))?,
            tokens: stats["tokens"].as_u64().unwrap_or(0),
            throttled: stats["throttled"].as_u64().unwrap_or(0),
            batches: stats["batches"].as_u64().unwrap_or(0),
            batch_parts: stats["batch_parts"].as_u64().unwrap_or(0),
        })
    }

    /// What happened between `before` and `self` (the simulator's stats cannot be reset without
    /// clearing its data).
    pub fn since(&self, before: &DataverseCalls) -> DataverseCalls {
        DataverseCalls {
            requests: self
                .requests
                .iter()
                .map(|(k, v)| (k.clone(), v - before.requests.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect(),
            tokens: self.tokens - before.tokens,
            throttled: self.throttled - before.throttled,
            batches: self.batches - before.batches,
            batch_parts: self.batch_parts - before.batch_parts,
        }
    }
}

/// One line of the call table: actual and minimal count.
pub struct Row {
    /// What is counted.
    pub label: String,
    /// Calls made.
    pub actual: u64,
    /// Calls the job needs at the least.
    pub minimal: u64,
}

/// A [`Row`].
pub fn row(label: &str, actual: u64, minimal: u64) -> Row {
    Row {
        label: label.to_string(),
        actual,
        minimal,
    }
}

/// Prints the call table: a header, then for each API its total calls against the minimal with
/// their ratio and the verdict, followed by its rows; labels in a column `width` wide. True
/// when no API's ratio is over `target`.
pub fn print_call_table(width: usize, apis: &[(&str, &[Row])], target: f64) -> bool {
    let mut ok = true;
    println!(
        "{:<width$} {:>8} {:>8} {:>7}",
        "calls", "actual", "minimal", "ratio"
    );
    for (api, rows) in apis {
        let actual: u64 = rows.iter().map(|r| r.actual).sum();
        let minimal: u64 = rows.iter().map(|r| r.minimal).sum();
        let ratio = actual as f64 / minimal.max(1) as f64;
        let verdict = if ratio <= target {
            "ok"
        } else {
            ok = false;
            "OVER TARGET"
        };
        println!(
            "{:<width$} {actual:>8} {minimal:>8} {ratio:>7.3}  (target ≤ {target}: {verdict})",
            format!("{api}, total")
        );
        for r in rows.iter() {
            println!(
                "{:<width$} {:>8} {:>8}",
                format!("  {}", r.label),
                r.actual,
                r.minimal
            );
        }
    }
    ok
}
