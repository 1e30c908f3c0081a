//! Metrics: one line per sync in CloudWatch's embedded metric format (EMF), which CloudWatch
//! Logs turns into metrics of the namespace [`NAMESPACE`] without any API call (the dashboard
//! and docs/architecture.md §13 read them). Counts and ids only, never addresses.
//!
//! A line is a JSON object with an `_aws` member naming the metrics; it is written to stdout as
//! it is (Lambda passes a JSON line through unchanged), not through the log subscriber, which
//! would nest it under `fields`.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// The CloudWatch namespace of the connector's own metrics.
pub const NAMESPACE: &str = "CleverReachConnector";

/// What one sync did: a source message, or a batch of person changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncMetrics {
    /// The queue family (`marketing-list`, `contact`, …): the metrics' dimension.
    pub queue: String,
    /// The source (kind and id) or the records of a people batch, for Logs Insights.
    pub record: String,
    /// The group reconciled, when one was.
    pub group_id: Option<String>,
    /// `synced`, `refused` (bad input, acknowledged) or `failed` (back to the queue).
    pub outcome: &'static str,
    /// The whole group was compared (a full reconcile).
    pub full: bool,
    pub added: usize,
    pub updated: usize,
    pub email_changed: usize,
    pub removed: usize,
    /// Kept out or left alone because they opted out (CleverReach or the CRM).
    pub opted_out: usize,
    /// Members the rule leaves out.
    pub skipped: usize,
    /// Rows CleverReach refused.
    pub rejected: usize,
    /// The brake held the removals (or the deletion) back.
    pub held: bool,
    /// Requests sent to Dataverse and to CleverReach during the sync.
    pub dataverse_calls: u64,
    pub cleverreach_calls: u64,
    pub duration_ms: u64,
}

/// The metrics of a line: (name, unit, value).
fn values(m: &SyncMetrics) -> [(&'static str, &'static str, u64); 13] {
    let n = |v: usize| v as u64;
    [
        ("Syncs", "Count", 1),
        ("Failed", "Count", u64::from(m.outcome == "failed")),
        ("Added", "Count", n(m.added)),
        ("Updated", "Count", n(m.updated)),
        ("EmailChanged", "Count", n(m.email_changed)),
        ("Removed", "Count", n(m.removed)),
        ("OptedOut", "Count", n(m.opted_out)),
        ("Skipped", "Count", n(m.skipped)),
        ("Rejected", "Count", n(m.rejected)),
        ("HeldByBrake", "Count", u64::from(m.held)),
        ("DataverseCalls", "Count", m.dataverse_calls),
        ("CleverReachCalls", "Count", m.cleverreach_calls),
        ("Duration", "Milliseconds", m.duration_ms),
    ]
}

/// The EMF line of one sync at `timestamp_ms`.
pub fn emf_line(m: &SyncMetrics, timestamp_ms: i64) -> String {
    let metrics = values(m);
    let definitions: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, unit, _)| serde_json::json!({ "Name": name, "Unit": unit }))
        .collect();
    let mut line = serde_json::Map::new();
    line.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Queue"]],
                "Metrics": definitions,
            }],
        }),
    );
    line.insert("Queue".into(), m.queue.clone().into());
    line.insert("record".into(), m.record.clone().into());
    if let Some(group) = &m.group_id {
        line.insert("group_id".into(), group.clone().into());
    }
    line.insert("outcome".into(), m.outcome.into());
    line.insert("full".into(), m.full.into());
    for (name, _, value) in metrics {
        line.insert(name.into(), value.into());
    }
    serde_json::Value::Object(line).to_string()
}

/// Where sync metrics go.
pub trait MetricsSink: Send + Sync {
    fn sync(&self, metrics: &SyncMetrics);
}

/// EMF lines on stdout (in Lambda: into the function's log group, where CloudWatch extracts
/// the metrics).
pub struct StdoutEmf;

impl MetricsSink for StdoutEmf {
    fn sync(&self, metrics: &SyncMetrics) {
        let line = emf_line(metrics, chrono::Utc::now().timestamp_millis());
        let mut out = std::io::stdout().lock();
        // A metrics line that cannot be written is not worth failing a sync for.
        let _ = writeln!(out, "{line}");
    }
}

/// Metrics dropped (the default outside Lambda).
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn sync(&self, _metrics: &SyncMetrics) {}
}

/// Metrics kept in memory (tests).
#[derive(Default)]
pub struct KeptMetrics {
    kept: Mutex<Vec<SyncMetrics>>,
}

impl KeptMetrics {
    pub fn new() -> Self {
        KeptMetrics::default()
    }

    pub fn all(&self) -> Vec<SyncMetrics> {
        self.kept.lock().map(|k| k.clone()).unwrap_or_default()
    }
}

impl MetricsSink for KeptMetrics {
    fn sync(&self, metrics: &SyncMetrics) {
        if let Ok(mut kept) = self.kept.lock() {
            kept.push(metrics.clone());
        }
    }
}

/// Something that counts the requests it sent (the Dataverse and CleverReach clients).
pub trait CallCounter: Send + Sync {
    fn calls(&self) -> u64;
}

/// The counters of both APIs, read before and after a sync.
#[derive(Clone)]
pub struct CallMeters {
    pub dataverse: Arc<dyn CallCounter>,
    pub cleverreach: Arc<dyn CallCounter>,
}

impl CallMeters {
    /// (Dataverse, CleverReach) requests so far.
    pub fn read(&self) -> (u64, u64) {
        (self.dataverse.calls(), self.cleverreach.calls())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_every_metric_it_carries_under_the_queue_dimension() {
        let m = SyncMetrics {
            queue: "marketing-list".into(),
            record: "list 1".into(),
            group_id: Some("77".into()),
            outcome: "synced",
            full: true,
            added: 3,
            removed: 2,
            held: true,
            dataverse_calls: 4,
            cleverreach_calls: 9,
            duration_ms: 1500,
            ..SyncMetrics::default()
        };
        let line: serde_json::Value =
            serde_json::from_str(&emf_line(&m, 1_800_000_000_000)).unwrap();
        let aws = &line["_aws"];
        assert_eq!(aws["Timestamp"], 1_800_000_000_000i64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], serde_json::json!([["Queue"]]));
        assert_eq!(line["Queue"], "marketing-list");
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["Name"].as_str().unwrap())
            .collect();
        for name in &names {
            assert!(line[*name].is_u64(), "{name} has no number: {line}");
        }
        for (name, value) in [
            ("Added", 3),
            ("Removed", 2),
            ("HeldByBrake", 1),
            ("DataverseCalls", 4),
            ("CleverReachCalls", 9),
            ("Duration", 1500),
            ("Syncs", 1),
            ("Failed", 0),
        ] {
            assert_eq!(line[name], value, "{name}");
        }
    }
}
