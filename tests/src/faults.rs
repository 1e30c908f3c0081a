//! Fault injection for both simulators: throttling, server errors, slow answers and dropped
//! connections at a chosen rate, switchable while running.
//!
//! Control endpoint (on each simulator): `GET /_sim/faults` shows the configuration and the
//! counts of injected faults, `PUT /_sim/faults` sets it (JSON [`FaultConfig`]), `DELETE
//! /_sim/faults` switches faults off. Paths under `/_sim/` are never faulted.

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// 429 with `Retry-After: retry_after_secs`; the request is not applied.
    TooManyRequests,
    /// 500; the request is not applied.
    InternalError,
    /// 502; the request is not applied.
    BadGateway,
    /// 503; the request is not applied.
    Unavailable,
    /// The answer comes `slow_ms` late (the request is applied).
    Slow,
    /// The connection breaks before the request is applied (the client sees no answer).
    DropBeforeApply,
    /// The request is applied, then the connection breaks (the client sees no answer and
    /// cannot tell whether it took effect).
    DropAfterApply,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::TooManyRequests,
        FaultKind::InternalError,
        FaultKind::BadGateway,
        FaultKind::Unavailable,
        FaultKind::Slow,
        FaultKind::DropBeforeApply,
        FaultKind::DropAfterApply,
    ];
}

/// What to inject: each request is faulted with probability `rate`, the kind drawn uniformly
/// from `kinds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultConfig {
    pub rate: f64,
    #[serde(default = "all_kinds")]
    pub kinds: Vec<FaultKind>,
    #[serde(default = "one")]
    pub retry_after_secs: u64,
    #[serde(default = "slow_default")]
    pub slow_ms: u64,
    /// Seed for a reproducible fault sequence.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Every answer (faulted or not) is delayed by this much: a slow server.
    #[serde(default)]
    pub latency_ms: u64,
}

fn all_kinds() -> Vec<FaultKind> {
    FaultKind::ALL.to_vec()
}
fn one() -> u64 {
    1
}
fn slow_default() -> u64 {
    300
}

impl FaultConfig {
    /// No faults.
    pub fn off() -> Self {
        FaultConfig {
            rate: 0.0,
            kinds: all_kinds(),
            retry_after_secs: 1,
            slow_ms: slow_default(),
            seed: None,
            latency_ms: 0,
        }
    }

    /// Faults of every kind at `rate`.
    pub fn at_rate(rate: f64) -> Self {
        FaultConfig {
            rate,
            ..FaultConfig::off()
        }
    }
}

/// What was injected so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultStats {
    pub requests: u64,
    pub injected: BTreeMap<FaultKind, u64>,
}

/// Renders the simulated API's own error body for a status (Dataverse and CleverReach differ).
pub type ErrorBodyFn = fn(StatusCode) -> serde_json::Value;

struct FaultState {
    config: FaultConfig,
    rng: fastrand::Rng,
    stats: FaultStats,
}

/// Shared, switchable fault injector. Cheap to clone.
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
    error_body: ErrorBodyFn,
}

impl Faults {
    pub fn new(error_body: ErrorBodyFn) -> Self {
        Faults {
            state: Arc::new(Mutex::new(FaultState {
                config: FaultConfig::off(),
                rng: fastrand::Rng::new(),
                stats: FaultStats::default(),
            })),
            error_body,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // A poisoned lock only means another request panicked; the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Switches to a new configuration (and reseeds when it has a seed).
    pub fn set(&self, config: FaultConfig) {
        let mut st = self.lock();
        st.rng = match config.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        st.config = config;
    }

    pub fn off(&self) {
        self.set(FaultConfig::off());
    }

    pub fn config(&self) -> FaultConfig {
        self.lock().config.clone()
    }

    pub fn stats(&self) -> FaultStats {
        self.lock().stats.clone()
    }

    /// Decides the fate of one request.
    fn draw(&self) -> (Option<FaultKind>, FaultConfig) {
        let mut st = self.lock();
        st.stats.requests += 1;
        let cfg = st.config.clone();
        if cfg.rate <= 0.0 || cfg.kinds.is_empty() {
            return (None, cfg);
        }
        if st.rng.f64() >= cfg.rate {
            return (None, cfg);
        }
        let kind = cfg.kinds[st.rng.usize(..cfg.kinds.len())];
        *st.stats.injected.entry(kind).or_default() += 1;
        (Some(kind), cfg)
    }

    /// The control routes (`/_sim/faults`), to merge into a simulator's router.
    pub fn control_router(&self) -> Router {
        Router::new()
            .route(
                "/_sim/faults",
                get(get_faults).put(put_faults).delete(delete_faults),
            )
            .with_state(self.clone())
    }
}

async fn get_faults(State(faults): State<Faults>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "config": faults.config(), "stats": faults.stats() }))
}

async fn put_faults(State(faults): State<Faults>, Json(config): Json<FaultConfig>) -> StatusCode {
    faults.set(config);
    StatusCode::NO_CONTENT
}

async fn delete_faults(State(faults): State<Faults>) -> StatusCode {
    faults.off();
    StatusCode::NO_CONTENT
}

/// A response whose body breaks off: the peer sees the connection fail before it has a
/// complete answer. The status is 200 so that no client can take the head alone for success
/// without reading the body (a 204 would carry no body to break).
fn broken_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox fault: connection dropped",
        ))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The middleware: apply it with `axum::middleware::from_fn_with_state(faults, fault_layer)`.
pub async fn fault_layer(State(faults): State<Faults>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/_sim/") {
        return next.run(req).await;
    }
    let (kind, cfg) = faults.draw();
    if cfg.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(cfg.latency_ms)).await;
    }
    let error = |status: StatusCode| {
        let mut resp = (status, Json((faults.error_body)(status))).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS
            && let Ok(v) = HeaderValue::from_str(&cfg.retry_after_secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    };
    match kind {
        None => next.run(req).await,
        Some(FaultKind::TooManyRequests) => error(StatusCode::TOO_MANY_REQUESTS),
        Some(FaultKind::InternalError) => error(StatusCode::INTERNAL_SERVER_ERROR),
        Some(FaultKind::BadGateway) => error(StatusCode::BAD_GATEWAY),
        Some(FaultKind::Unavailable) => error(StatusCode::SERVICE_UNAVAILABLE),
        Some(FaultKind::Slow) => {
            tokio::time::sleep(Duration::from_millis(cfg.slow_ms)).await;
            next.run(req).await
        }
        Some(FaultKind::DropBeforeApply) => broken_connection(),
        Some(FaultKind::DropAfterApply) => {
            let applied = next.run(req).await;
            // Read the whole answer so that the change is complete before the connection breaks.
            let _ = axum::body::to_bytes(applied.into_body(), usize::MAX).await;
            broken_connection()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(_: StatusCode) -> serde_json::Value {
        serde_json::json!({"error": {"code": 0, "message": "fault"}})
    }

    #[test]
    fn with_rate_zero_nothing_is_injected() {
        let f = Faults::new(body);
        for _ in 0..100 {
            assert_eq!(f.draw().0, None);
        }
        assert_eq!(f.stats().requests, 100);
    }

    #[test]
    fn a_seeded_rate_injects_about_that_share_of_faults() {
        let f = Faults::new(body);
        f.set(FaultConfig {
            seed: Some(7),
            ..FaultConfig::at_rate(0.2)
        });
        let injected = (0..10_000).filter(|_| f.draw().0.is_some()).count();
        assert!((1_700..2_300).contains(&injected), "{injected}");
    }
}
