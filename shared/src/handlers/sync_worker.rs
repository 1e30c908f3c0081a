//! Handler: the per-entity sync workers (functions `sync-marketing-list`, `sync-contact`,
//! `sync-lead`, `sync-account`, `sync-campaign`, `sync-campaign-activity`), each fed by its
//! FIFO queue.
//!
//! Steps per batch: parse each change on its own → read the settings (cached briefly) →
//! reconcile by re-reading the CRM (a source queue: one message after another; a people queue:
//! every readable change of the batch in one scoped reconcile) → report the failed messages.

use super::batch::{FailureRecorder, FifoBatch, process_fifo};
pub use super::batch::{InboundMessage, MessageOutcome};
use crate::domain::change::ChangeEvent;
use crate::domain::recipient::RecipientKind;
use crate::domain::routing::{QueueFamily, Work};
use crate::domain::source::SourceKind;
use crate::error::Retryable;
use crate::metrics::{CallMeters, MetricsSink, NoMetrics, SyncMetrics};
use crate::ports::failures::FailureLog;
use crate::ports::queue::ChangeQueue;
use crate::usecases::reconcile::ReconcileReport;
use crate::usecases::{Connector, SyncError, people, source};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{Instrument, error, info, warn};

/// How long settings read from the CRM are reused ("cached briefly"): a worker's batches share
/// them.
pub const SETTINGS_TTL: Duration = Duration::from_secs(60);

/// What a worker needs.
pub struct WorkerDeps {
    pub family: QueueFamily,
    /// The ports; its `follow_up` queue takes work for other queues (the marketing-list worker
    /// queues a resync of the campaigns and activities after a list is deleted).
    pub conn: Connector,
    /// Where failed messages are written down with their error.
    pub failures: FailureRecorder,
    /// Where each sync's metrics go (EMF lines in Lambda).
    pub metrics: Arc<dyn MetricsSink>,
    /// The API clients' request counters, for the metrics.
    pub meters: Option<CallMeters>,
}

impl WorkerDeps {
    pub fn new(family: QueueFamily, conn: Connector) -> Self {
        WorkerDeps {
            family,
            conn: conn.with_settings_ttl(SETTINGS_TTL),
            failures: FailureRecorder::none(family.name()),
            metrics: Arc::new(NoMetrics),
            meters: None,
        }
    }

    /// Sends each sync's metrics to `sink`, with the requests counted by `meters`.
    pub fn with_metrics(mut self, sink: Arc<dyn MetricsSink>, meters: Option<CallMeters>) -> Self {
        self.metrics = sink;
        self.meters = meters;
        self
    }

    /// A sync's metrics so far: the queue, what it was about, the requests since `before`.
    fn measure(&self, record: String, started: Instant, before: Option<(u64, u64)>) -> SyncMetrics {
        let (dataverse_calls, cleverreach_calls) = match (&self.meters, before) {
            (Some(meters), Some((dv, cr))) => {
                let (dv_now, cr_now) = meters.read();
                (dv_now.saturating_sub(dv), cr_now.saturating_sub(cr))
            }
            _ => (0, 0),
        };
        SyncMetrics {
            queue: self.family.name().to_string(),
            record,
            dataverse_calls,
            cleverreach_calls,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ..SyncMetrics::default()
        }
    }

    /// Writes failed messages down in this log (for `crc-admin dlq show`).
    pub fn with_failure_log(mut self, log: Arc<dyn FailureLog>) -> Self {
        self.failures = FailureRecorder::new(self.family.name(), log);
        self
    }

    /// The queue for follow-up work on other queues.
    pub fn with_follow_up(mut self, queue: Arc<dyn ChangeQueue>) -> Self {
        self.conn = self.conn.with_follow_up(queue);
        self
    }
}

/// Processes a batch; returns the ids of the messages to leave on the queue.
pub async fn handle_messages(deps: &WorkerDeps, messages: Vec<InboundMessage>) -> Vec<String> {
    match deps.family.work() {
        Work::Source(kind) => {
            process_fifo(messages, &deps.failures, |message| {
                source_message(deps, kind, message)
            })
            .await
        }
        Work::People(kind) => people_batch(deps, kind, messages).await,
        Work::RetroactiveFanout | Work::Sublist | Work::CleverReachEvents => {
            error!(
                queue = deps.family.name(),
                "this queue is worked by its own function, not by a sync worker"
            );
            let mut batch = FifoBatch::default();
            for message in &messages {
                batch.fail(
                    message,
                    "this queue is worked by its own function, not by a sync worker",
                );
            }
            batch.finish(&deps.failures).await
        }
    }
}

fn parse(message: &InboundMessage) -> Result<ChangeEvent, String> {
    serde_json::from_str(&message.body).map_err(|e| {
        // Not ours or damaged: keep it for the dead-letter queue, where it can be looked at.
        // The parser's own text may quote a value from the body: only its kind and position.
        let e = crate::redact::json_error(&e);
        error!(message_id = %message.message_id, error = %e, "message body is not a change event");
        format!("message body is not a change event: {e}")
    })
}

/// One change of a source queue, in its own span.
async fn source_message(
    deps: &WorkerDeps,
    kind: SourceKind,
    message: InboundMessage,
) -> MessageOutcome {
    let span = tracing::info_span!(
        "message",
        message_id = %message.message_id,
        queue = deps.family.name(),
        correlation_id = tracing::field::Empty,
        record_id = tracing::field::Empty,
    );
    async {
        let event = match parse(&message) {
            Ok(event) => event,
            Err(e) => return MessageOutcome::Failed(e),
        };
        let span = tracing::Span::current();
        span.record("correlation_id", event.correlation_id.as_str());
        span.record("record_id", event.record_id.as_str());
        let started = Instant::now();
        let before = deps.meters.as_ref().map(CallMeters::read);
        let result = async {
            let settings = deps.conn.settings().await?;
            let follow_up = deps.conn.follow_up.as_deref();
            source::on_source_change(&deps.conn, &settings, kind, &event, follow_up).await
        }
        .await;
        let mut metrics = deps.measure(
            format!("{} {}", kind.logical_name(), event.record_id),
            started,
            before,
        );
        let outcome = match result {
            Ok(sync) => {
                info!(message = event.message.name(), entity = %event.entity, "change synced");
                metrics.group_id = sync.group.as_ref().map(|g| g.as_str().to_string());
                if let Some(report) = &sync.report {
                    add_report(&mut metrics, report);
                    if report.full {
                        log_drift(report);
                    }
                }
                metrics.held |= sync.held.is_some();
                MessageOutcome::Done
            }
            Err(e) => outcome_of(e),
        };
        metrics.outcome = outcome_name(&outcome);
        deps.metrics.sync(&metrics);
        outcome
    }
    .instrument(span)
    .await
}

/// Adds a reconcile's counts to `m` (several groups of one people batch add up).
fn add_report(m: &mut SyncMetrics, report: &ReconcileReport) {
    let s = &report.summary;
    m.full |= report.full;
    m.added += s.added;
    m.updated += s.updated;
    m.email_changed += s.email_changed;
    m.removed += s.removed;
    m.opted_out += s.kept_opted_out + s.skipped_blocked + s.opted_out;
    m.skipped += report.skipped.values().sum::<usize>();
    m.rejected += report.rejected;
    m.held |= report.held.is_some();
}

/// A full reconcile's comparison in numbers (no addresses): the nightly resync's summary per
/// source, next to its status line and metrics line.
fn log_drift(report: &ReconcileReport) {
    let s = &report.summary;
    let skipped: usize = report.skipped.values().sum();
    info!(
        members = s.candidates + skipped,
        active_receivers = report.active_before,
        missing = s.added,
        attribute_differs = s.updated,
        email_differs = s.email_changed,
        not_eligible_or_stranger = s.removed,
        opted_out = s.kept_opted_out + s.skipped_blocked + s.opted_out,
        skipped,
        differences = s.added + s.updated + s.email_changed + s.removed + s.opted_out_removed,
        held_by_brake = report.held.is_some(),
        "drift"
    );
}

fn outcome_name(outcome: &MessageOutcome) -> &'static str {
    match outcome {
        MessageOutcome::Done => "synced",
        MessageOutcome::Refused(_) => "refused",
        MessageOutcome::Failed(_) => "failed",
    }
}

/// A failure as the queue sees it: bad input is acknowledged (its reason is on the source), the
/// rest goes back to the queue.
fn outcome_of(e: SyncError) -> MessageOutcome {
    match e {
        SyncError::Invalid(reason) => {
            warn!(%reason, "change refused");
            MessageOutcome::Refused(reason)
        }
        e => {
            warn!(error = %e, retryable = e.is_retryable(), "change failed");
            MessageOutcome::Failed(e.to_string())
        }
    }
}

/// People queues: every readable change of the batch goes into one scoped reconcile, so that
/// receivers sharing a group go to CleverReach in one call per group. A body that cannot be
/// read fails alone (and the later messages of its record with it).
async fn people_batch(
    deps: &WorkerDeps,
    kind: RecipientKind,
    messages: Vec<InboundMessage>,
) -> Vec<String> {
    let mut batch = FifoBatch::default();
    let mut readable = Vec::new();
    for message in messages {
        if batch.postponed(&message) || batch.blocked(&message) {
            continue;
        }
        match parse(&message) {
            Ok(event) => readable.push((message, event)),
            Err(e) => batch.fail(&message, &e),
        }
    }
    if readable.is_empty() {
        return batch.finish(&deps.failures).await;
    }
    let records: Vec<&str> = readable.iter().map(|(_, e)| e.record_id.as_str()).collect();
    let span = tracing::info_span!(
        "people",
        queue = deps.family.name(),
        messages = readable.len(),
        records = ?records,
    );
    let events: Vec<ChangeEvent> = readable.iter().map(|(_, e)| e.clone()).collect();
    let started = Instant::now();
    let before = deps.meters.as_ref().map(CallMeters::read);
    let mut metrics = deps.measure(
        format!("{} {}", kind.logical_name(), records.join(",")),
        started,
        before,
    );
    let result = async {
        let settings = deps.conn.settings().await?;
        people::on_people_change(&deps.conn, &settings, kind, &events).await
    }
    .instrument(span)
    .await;
    let outcome = match result {
        Ok(sync) => {
            info!(
                messages = readable.len(),
                groups = sync.groups.len(),
                "people synced"
            );
            for report in sync.groups.values() {
                add_report(&mut metrics, report);
            }
            MessageOutcome::Done
        }
        Err(e) => {
            let outcome = outcome_of(e);
            if let MessageOutcome::Failed(error) = &outcome {
                for (message, _) in &readable {
                    batch.fail(message, error);
                }
            }
            outcome
        }
    };
    let measured = deps.measure(String::new(), started, before);
    metrics.dataverse_calls = measured.dataverse_calls;
    metrics.cleverreach_calls = measured.cleverreach_calls;
    metrics.duration_ms = measured.duration_ms;
    metrics.outcome = outcome_name(&outcome);
    deps.metrics.sync(&metrics);
    batch.finish(&deps.failures).await
}

/// Lambda adapter: SQS event → messages → partial batch response.
#[cfg(feature = "aws")]
pub mod lambda {
    use super::*;
    pub use crate::handlers::batch::lambda::{batch_response, to_messages};
    use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
    use lambda_runtime::LambdaEvent;

    /// The function's handler.
    pub async fn run(
        event: LambdaEvent<SqsEvent>,
        deps: &WorkerDeps,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let budget = crate::handlers::batch::lambda::budget(&event.context);
        let messages = to_messages(event.payload);
        let total = messages.len();
        let failed = crate::deadline::within(budget, handle_messages(deps, messages)).await;
        batch_response(total, failed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::adapters::memory::CrmPort;
    use crate::domain::change::{AttrValue, CrmMessage, column};
    use crate::usecases::tests::fixtures::*;

    fn message(id: &str, group: &str, body: String) -> InboundMessage {
        InboundMessage {
            message_id: id.into(),
            body,
            group: Some(group.into()),
        }
    }

    fn body(event: crate::domain::change::ChangeEvent) -> String {
        serde_json::to_string(&event).unwrap()
    }

    fn worker(family: QueueFamily) -> (World, WorkerDeps) {
        let w = World::new();
        let deps = WorkerDeps::new(family, w.conn.clone());
        (w, deps)
    }

    #[tokio::test]
    async fn an_unreadable_body_goes_back_to_the_queue_and_holds_back_its_records_later_changes() {
        let (w, deps) = worker(QueueFamily::MarketingList);
        w.source(list("l1", "Customers"))
            .source(list("l2", "Partners"));
        let create = |id: &str| body(event("list", CrmMessage::Create, id).build());

        let failed = handle_messages(
            &deps,
            vec![
                message("m1", "list:l1", "not json".into()),
                message("m2", "list:l1", create("l1")),
                message("m3", "list:l2", create("l2")),
            ],
        )
        .await;

        assert_eq!(failed, ["m1", "m2"]);
        assert!(
            w.newsletter
                .state()
                .groups
                .values()
                .any(|g| g.name == "Partners")
        );
        assert!(
            !w.newsletter
                .state()
                .groups
                .values()
                .any(|g| g.name == "Customers")
        );
    }

    #[tokio::test]
    async fn a_change_refused_for_bad_input_is_acknowledged_with_the_reason_on_the_source() {
        let (w, deps) = worker(QueueFamily::MarketingList);
        w.source(list("l1", "Customers").unreadable_checklist());
        let change = event("list", CrmMessage::Update, "l1")
            .touch(column::CHECKLIST, AttrValue::Text("[".into()))
            .build();

        let failed = handle_messages(&deps, vec![message("m1", "list:l1", body(change))]).await;

        assert!(
            failed.is_empty(),
            "retrying cannot fix bad input: {failed:?}"
        );
        assert!(matches!(
            w.crm.state().statuses.values().next(),
            Some(crate::ports::crm::SourceStatus::Failed { .. })
        ));
    }

    #[tokio::test]
    async fn a_people_batch_is_one_scoped_reconcile_and_an_unreadable_body_fails_alone() {
        let (w, deps) = worker(QueueFamily::Contact);
        w.source(list("l1", "Customers").group("7"))
            .group("7", "Customers", vec![])
            .contact(person("c1", "anna@example.com"), &["l1"])
            .contact(person("c2", "bert@example.com"), &["l1"]);
        let update = |id: &str| body(event("contact", CrmMessage::Update, id).build());

        let failed = handle_messages(
            &deps,
            vec![
                message("m1", "contact:c1", update("c1")),
                message("m2", "contact:c3", "{}".into()),
                message("m3", "contact:c2", update("c2")),
            ],
        )
        .await;

        assert_eq!(failed, ["m2"]);
        assert_eq!(w.active("7"), ["anna@example.com", "bert@example.com"]);
        let upserts = w
            .newsletter
            .state()
            .calls
            .iter()
            .filter(|c| c.starts_with("upsert"))
            .count();
        assert_eq!(upserts, 1, "one call for both people of the group");
    }

    #[tokio::test]
    async fn settings_that_cannot_be_read_send_the_whole_people_batch_back() {
        let (w, deps) = worker(QueueFamily::Contact);
        w.crm.fail(CrmPort::Settings, 1);
        let update = |id: &str| body(event("contact", CrmMessage::Update, id).build());

        let failed = handle_messages(
            &deps,
            vec![
                message("m1", "contact:c1", update("c1")),
                message("m2", "contact:c2", update("c2")),
            ],
        )
        .await;

        assert_eq!(failed, ["m1", "m2"]);
    }

    #[tokio::test]
    async fn a_worker_reuses_the_settings_it_read_within_a_minute() {
        let (w, deps) = worker(QueueFamily::MarketingList);
        w.source(list("l1", "Customers"));
        let create = body(event("list", CrmMessage::Create, "l1").build());
        for id in ["m1", "m2"] {
            handle_messages(&deps, vec![message(id, "list:l1", create.clone())]).await;
        }
        assert_eq!(w.crm.state().reads.get(&CrmPort::Settings), Some(&1));
    }

    #[tokio::test]
    async fn every_sync_leaves_one_metrics_line_with_its_counts() {
        let (w, deps) = worker(QueueFamily::MarketingList);
        let kept = Arc::new(crate::metrics::KeptMetrics::new());
        let deps = deps.with_metrics(kept.clone(), None);
        w.source(list("l1", "Customers"))
            .contact(person("c1", "anna@example.com"), &["l1"])
            .contact(person("c2", "bert@example.com").inactive(), &["l1"]);
        let create = body(event("list", CrmMessage::Create, "l1").build());

        handle_messages(&deps, vec![message("m1", "list:l1", create)]).await;
        w.newsletter
            .fail(crate::adapters::memory::NewsletterPort::Groups, 1);
        let again = body(
            event("list", CrmMessage::Update, "l1")
                .touch(column::RESYNC, AttrValue::Bool(true))
                .build(),
        );
        handle_messages(&deps, vec![message("m2", "list:l1", again)]).await;

        let all = kept.all();
        assert_eq!(all.len(), 2, "{all:?}");
        let first = &all[0];
        assert_eq!(
            (
                first.queue.as_str(),
                first.outcome,
                first.full,
                first.added,
                first.skipped
            ),
            ("marketing-list", "synced", true, 1, 1)
        );
        assert_eq!(first.record, "list l1");
        assert!(first.group_id.is_some());
        assert_eq!(all[1].outcome, "failed");
    }
}
