//! Chaotic webhook delivery: an HTTP proxy in front of the intake that holds the webhooks
//! Dataverse fires and passes them on later, shuffled, some twice, some late, some redelivered
//! as new deliveries. Dataverse promises none of the order, uniqueness or timeliness the
//! connector could otherwise come to rely on (docs/architecture.md §4 "level-triggered").
//!
//! Use: start it with the intake's URL, register the webhooks at [`WebhookChaos::url`], and
//! call [`WebhookChaos::release`] whenever the held deliveries should go on (the convergence
//! test does so between `Harness::settle` calls). Dataverse gets `202` at once: for it, every
//! delivery succeeded.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use std::sync::{Arc, Mutex, MutexGuard};

/// How chaotic the delivery is. Rates are per held delivery, drawn from a seeded generator.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosConfig {
    pub seed: u64,
    /// Sent twice in the same release, byte for byte (the queue's de-duplication id is the
    /// same, so at most one of them may become work).
    pub duplicate_rate: f64,
    /// Delivered once more one release later as a new delivery (a new `OperationId`, as after
    /// the FIFO de-duplication window or when an administrator resumes a system job): the
    /// worker gets the change twice, the second time after newer changes.
    pub redeliver_rate: f64,
    /// Held back for one more release, so that it arrives after deliveries of later changes.
    pub delay_rate: f64,
    /// Whether a release sends in random order (otherwise in the order received).
    pub shuffle: bool,
}

impl ChaosConfig {
    /// Every delivery once, in order (no chaos).
    pub fn calm(seed: u64) -> Self {
        ChaosConfig {
            seed,
            duplicate_rate: 0.0,
            redeliver_rate: 0.0,
            delay_rate: 0.0,
            shuffle: false,
        }
    }

    /// The mix the convergence test uses.
    pub fn rough(seed: u64) -> Self {
        ChaosConfig {
            seed,
            duplicate_rate: 0.15,
            redeliver_rate: 0.10,
            delay_rate: 0.15,
            shuffle: true,
        }
    }
}

/// What the proxy did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChaosStats {
    /// Deliveries Dataverse made to the proxy.
    pub received: u64,
    /// Requests passed on to the intake (copies included).
    pub forwarded: u64,
    /// Byte-for-byte second copies sent.
    pub duplicated: u64,
    /// Copies sent again as new deliveries.
    pub redelivered: u64,
    /// Deliveries held back for one release.
    pub delayed: u64,
    /// Releases in which the order was shuffled (more than one delivery).
    pub shuffled_releases: u64,
    /// Intake answers other than 2xx, with the status and the intake's body.
    pub refused: Vec<(u16, String)>,
    /// Requests the intake did not answer.
    pub unreachable: u64,
}

#[derive(Clone)]
struct Held {
    path_and_query: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    /// Already held back once, or a redelivered copy: goes out with the next release.
    late: bool,
    /// A redelivered copy: never redelivered again.
    copy: bool,
}

struct ChaosState {
    config: ChaosConfig,
    rng: fastrand::Rng,
    held: Vec<Held>,
    stats: ChaosStats,
}

/// The proxy. Dropping it stops the server.
pub struct WebhookChaos {
    url: String,
    target: String,
    state: Arc<Mutex<ChaosState>>,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookChaos {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(state: &Mutex<ChaosState>) -> MutexGuard<'_, ChaosState> {
    // A poisoned lock only means a panicking test; the state is still usable.
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn hold(State(state): State<Arc<Mutex<ChaosState>>>, request: Request) -> StatusCode {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST;
    };
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "host" | "content-length"))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut st = lock(&state);
    st.stats.received += 1;
    st.held.push(Held {
        path_and_query,
        headers,
        body,
        late: false,
        copy: false,
    });
    StatusCode::ACCEPTED
}

/// The body with a new `OperationId` (a new system job delivering the same change).
fn with_new_operation_id(body: &Bytes) -> Option<Bytes> {
    const KEY: &str = "\"OperationId\":\"";
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(KEY)? + KEY.len();
    let end = start + text.get(start..)?.find('"')?;
    let mut changed = String::with_capacity(text.len());
    changed.push_str(&text[..start]);
    changed.push_str(&uuid::Uuid::new_v4().to_string());
    changed.push_str(&text[end..]);
    Some(Bytes::from(changed))
}

impl WebhookChaos {
    /// Starts the proxy on a free local port; `target` is the intake's URL (scheme, host and
    /// port are used; the path comes from each delivery).
    pub async fn start(target: &str, config: ChaosConfig) -> std::io::Result<WebhookChaos> {
        let target = url::Url::parse(target)
            .map(|u| u.origin().ascii_serialization())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let state = Arc::new(Mutex::new(ChaosState {
            rng: fastrand::Rng::with_seed(config.seed),
            config,
            held: Vec::new(),
            stats: ChaosStats::default(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(hold).with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(WebhookChaos {
            url: format!("http://{addr}/api/webhook"),
            target,
            state,
            http: reqwest::Client::new(),
            server,
        })
    }

    /// Where Dataverse should deliver (instead of the intake).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Deliveries waiting for a release.
    pub fn held(&self) -> usize {
        lock(&self.state).held.len()
    }

    pub fn stats(&self) -> ChaosStats {
        lock(&self.state).stats.clone()
    }

    /// Passes the held deliveries on to the intake, one at a time in shuffled order: some
    /// twice, some held back for the next release, some also queued as a new delivery for the
    /// next release. Returns the number of requests sent.
    pub async fn release(&self) -> usize {
        let batch = {
            let mut st = lock(&self.state);
            let held = std::mem::take(&mut st.held);
            let mut batch = Vec::new();
            for mut delivery in held {
                let config = st.config.clone();
                if !delivery.late && st.rng.f64() < config.delay_rate {
                    delivery.late = true;
                    st.stats.delayed += 1;
                    st.held.push(delivery);
                    continue;
                }
                if !delivery.copy
                    && st.rng.f64() < config.redeliver_rate
                    && let Some(body) = with_new_operation_id(&delivery.body)
                {
                    st.stats.redelivered += 1;
                    st.held.push(Held {
                        body,
                        late: true,
                        copy: true,
                        ..delivery.clone()
                    });
                }
                if st.rng.f64() < config.duplicate_rate {
                    st.stats.duplicated += 1;
                    batch.push(delivery.clone());
                }
                batch.push(delivery);
            }
            if st.config.shuffle && batch.len() > 1 {
                st.stats.shuffled_releases += 1;
                st.rng.shuffle(&mut batch);
            }
            batch
        };
        let sent = batch.len();
        for delivery in batch {
            self.forward(delivery).await;
        }
        sent
    }

    async fn forward(&self, delivery: Held) {
        let mut request = self
            .http
            .post(format!("{}{}", self.target, delivery.path_and_query))
            .body(delivery.body);
        for (name, value) in &delivery.headers {
            request = request.header(name, value);
        }
        let outcome = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let text = response.text().await.unwrap_or_default();
                Some((status, text))
            }
            Err(_) => None,
        };
        let mut st = lock(&self.state);
        st.stats.forwarded += 1;
        match outcome {
            Some((status, _)) if (200..300).contains(&status) => {}
            Some(refused) => st.stats.refused.push(refused),
            None => st.stats.unreachable += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivery_gets_a_new_operation_id_and_keeps_everything_else() {
        let body = Bytes::from(
            r#"{"__type":"RemoteExecutionContext","OperationId":"0a0a0a0a-0000-4000-8000-000000000001","PrimaryEntityName":"contact"}"#,
        );
        let changed = with_new_operation_id(&body).unwrap();
        let before: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let after: serde_json::Value = serde_json::from_slice(&changed).unwrap();
        assert_ne!(before["OperationId"], after["OperationId"]);
        assert_eq!(before["PrimaryEntityName"], after["PrimaryEntityName"]);
        assert_eq!(after["OperationId"].as_str().unwrap().len(), 36);
    }
}
