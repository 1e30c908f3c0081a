//! Handler: the per-entity sync workers (functions `sync-marketing-list`, `sync-contact`,
//! `sync-lead`, `sync-account`, …), each fed by its FIFO queue.
//!
//! Steps per message: parse the change on its own → read the settings (cached briefly) →
//! reconcile by re-reading the CRM → report. Failures are reported per message (partial batch
//! response); within a FIFO message group, the messages after a failed one are failed too, so
//! that a record's changes are never applied out of order.

use crate::adapters::cleverreach::TokenStore;
use crate::domain::change::ChangeEvent;
use crate::domain::recipient::RecipientKind;
use crate::domain::routing::QueueFamily;
use crate::domain::settings::Settings;
use crate::domain::source::SourceKind;
use crate::error::Retryable;
use crate::ports::ChangeQueue;
use crate::sync::{Connector, SyncError, people, source};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tracing::{Instrument, error, info, warn};

/// How long settings read from the CRM are reused (DESIGN §4: "cached briefly").
pub const SETTINGS_TTL: Duration = Duration::from_secs(60);

/// One queued message, independent of SQS.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub message_id: String,
    pub body: String,
    /// The FIFO message group (the record), when known.
    pub group: Option<String>,
}

/// What a worker needs.
pub struct WorkerDeps<S: TokenStore> {
    pub family: QueueFamily,
    pub conn: Connector<S>,
    /// Where follow-up work for other queues goes (the marketing-list worker queues a resync of
    /// the campaigns and activities after a list is deleted); without it, that work is done
    /// in the same invocation.
    pub follow_up: Option<Arc<dyn ChangeQueue>>,
    settings: Mutex<Option<(Instant, Settings)>>,
}

impl<S: TokenStore> WorkerDeps<S> {
    pub fn new(family: QueueFamily, conn: Connector<S>) -> Self {
        WorkerDeps {
            family,
            conn,
            follow_up: None,
            settings: Mutex::new(None),
        }
    }

    /// The queue for follow-up work on other queues.
    pub fn with_follow_up(mut self, queue: Arc<dyn ChangeQueue>) -> Self {
        self.follow_up = Some(queue);
        self
    }

    async fn settings(&self) -> Result<Settings, SyncError> {
        let mut cached = self.settings.lock().await;
        if let Some((read_at, settings)) = cached.as_ref()
            && read_at.elapsed() < SETTINGS_TTL
        {
            return Ok(settings.clone());
        }
        let settings = self.conn.settings().await?;
        check_api_url(&settings, self.conn.newsletter.config().base_url.as_str())?;
        *cached = Some((Instant::now(), settings.clone()));
        Ok(settings)
    }
}

/// The CleverReach API base is both a deployment parameter (the client is built with it) and a
/// CRM setting; when they disagree the worker stops with an error naming both rather than
/// writing to a CleverReach the administrator did not mean.
fn check_api_url(settings: &Settings, deployed: &str) -> Result<(), SyncError> {
    let norm = |u: &str| u.trim().trim_end_matches('/').to_ascii_lowercase();
    if norm(&settings.api_url) == norm(deployed) {
        Ok(())
    } else {
        Err(SyncError::Config(format!(
            "the setting cleverreach:connectiondata:apiurl is {:?} but this deployment talks to {:?} (CLEVERREACH_API_URL); make them agree",
            settings.api_url, deployed
        )))
    }
}

/// How one message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    Done,
    /// Acknowledged without effect: retrying cannot help and the reason is recorded where an
    /// administrator sees it (sync status on the source, logs).
    Refused(String),
    /// Left on the queue: SQS redelivers it, and after `maxReceiveCount` parks it in the
    /// dead-letter queue.
    Failed(String),
}

/// Processes a batch; returns the ids of the messages to leave on the queue.
pub async fn handle_messages<S: TokenStore>(
    deps: &WorkerDeps<S>,
    messages: Vec<InboundMessage>,
) -> Vec<String> {
    if let Some(kind) = person_kind(deps.family) {
        return handle_people(deps, kind, messages).await;
    }
    let mut failed = Vec::new();
    let mut failed_groups = BTreeSet::new();
    for message in messages {
        if let Some(group) = &message.group
            && failed_groups.contains(group)
        {
            failed.push(message.message_id);
            continue;
        }
        let span = tracing::info_span!(
            "message",
            message_id = %message.message_id,
            queue = deps.family.name(),
            correlation_id = tracing::field::Empty,
            record_id = tracing::field::Empty,
        );
        let outcome = handle_message(deps, &message).instrument(span).await;
        if let MessageOutcome::Failed(_) = outcome {
            if let Some(group) = message.group.clone() {
                failed_groups.insert(group);
            }
            failed.push(message.message_id);
        }
    }
    failed
}

fn person_kind(family: QueueFamily) -> Option<RecipientKind> {
    match family {
        QueueFamily::Contact => Some(RecipientKind::Contact),
        QueueFamily::Lead => Some(RecipientKind::Lead),
        QueueFamily::Account => Some(RecipientKind::Account),
        _ => None,
    }
}

/// People queues: every readable change of the batch goes into one scoped reconcile. A body
/// that cannot be read fails alone (and the later messages of its record with it).
async fn handle_people<S: TokenStore>(
    deps: &WorkerDeps<S>,
    kind: RecipientKind,
    messages: Vec<InboundMessage>,
) -> Vec<String> {
    let mut failed = Vec::new();
    let mut failed_groups = BTreeSet::new();
    let mut batch = Vec::new();
    for message in messages {
        if let Some(group) = &message.group
            && failed_groups.contains(group)
        {
            failed.push(message.message_id);
            continue;
        }
        match serde_json::from_str::<ChangeEvent>(&message.body) {
            Ok(event) => batch.push((message.message_id, event)),
            Err(e) => {
                error!(message_id = %message.message_id, error = %e, "message body is not a change event");
                if let Some(group) = message.group {
                    failed_groups.insert(group);
                }
                failed.push(message.message_id);
            }
        }
    }
    if batch.is_empty() {
        return failed;
    }
    let records: Vec<&str> = batch.iter().map(|(_, e)| e.record_id.as_str()).collect();
    let span = tracing::info_span!(
        "people",
        queue = deps.family.name(),
        messages = batch.len(),
        records = ?records,
    );
    let events: Vec<ChangeEvent> = batch.iter().map(|(_, e)| e.clone()).collect();
    let result = async {
        let settings = deps.settings().await?;
        people::on_people_change(&deps.conn, &settings, kind, &events).await
    }
    .instrument(span)
    .await;
    match result {
        Ok(sync) => info!(
            messages = batch.len(),
            groups = sync.groups.len(),
            "people synced"
        ),
        Err(SyncError::Invalid(reason)) => warn!(%reason, "changes refused"),
        Err(e) => {
            warn!(error = %e, retryable = e.is_retryable(), "changes failed");
            failed.extend(batch.into_iter().map(|(id, _)| id));
        }
    }
    failed
}

async fn handle_message<S: TokenStore>(
    deps: &WorkerDeps<S>,
    message: &InboundMessage,
) -> MessageOutcome {
    let event: ChangeEvent = match serde_json::from_str(&message.body) {
        Ok(event) => event,
        Err(e) => {
            // Not ours or damaged: keep it for the dead-letter queue, where it can be looked at.
            error!(error = %e, "message body is not a change event");
            return MessageOutcome::Failed(format!("message body is not a change event: {e}"));
        }
    };
    let span = tracing::Span::current();
    span.record("correlation_id", event.correlation_id.as_str());
    span.record("record_id", event.record_id.as_str());
    let result = match deps.settings().await {
        Ok(settings) => work(deps, &settings, &event).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            info!(message = event.message.name(), entity = %event.entity, "change synced");
            MessageOutcome::Done
        }
        Err(SyncError::Invalid(reason)) => {
            warn!(%reason, "change refused");
            MessageOutcome::Refused(reason)
        }
        Err(e) => {
            warn!(error = %e, retryable = e.is_retryable(), "change failed");
            MessageOutcome::Failed(e.to_string())
        }
    }
}

/// The work for one change, by queue family.
async fn work<S: TokenStore>(
    deps: &WorkerDeps<S>,
    settings: &Settings,
    event: &ChangeEvent,
) -> Result<(), SyncError> {
    let conn = &deps.conn;
    let follow_up = deps.follow_up.as_deref();
    match deps.family {
        QueueFamily::MarketingList => {
            let kind = SourceKind::MarketingList;
            source::on_source_change(conn, settings, kind, event, follow_up).await?;
        }
        QueueFamily::Campaign => {
            let kind = SourceKind::Campaign;
            source::on_source_change(conn, settings, kind, event, follow_up).await?;
        }
        QueueFamily::CampaignActivity => {
            let kind = SourceKind::CampaignActivity;
            source::on_source_change(conn, settings, kind, event, follow_up).await?;
        }
        QueueFamily::Contact | QueueFamily::Lead | QueueFamily::Account => {
            if let Some(kind) = person_kind(deps.family) {
                people::on_person_change(conn, settings, kind, event).await?;
            }
        }
        QueueFamily::RetroactiveSync | QueueFamily::Sublist => {
            return Err(SyncError::Config(format!(
                "the {} queue is worked by its own function, not by a sync worker",
                deps.family
            )));
        }
    }
    Ok(())
}

/// Lambda adapter: SQS event → messages → partial batch response.
#[cfg(feature = "aws")]
pub mod lambda {
    use super::*;
    use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
    use lambda_runtime::LambdaEvent;

    pub fn to_messages(event: SqsEvent) -> Vec<InboundMessage> {
        event
            .records
            .into_iter()
            .map(|record| InboundMessage {
                message_id: record.message_id.unwrap_or_default(),
                group: record.attributes.get("MessageGroupId").cloned(),
                body: record.body.unwrap_or_default(),
            })
            .collect()
    }

    /// The function's handler. When every message failed, the invocation fails as a whole so
    /// that Lambda backs off instead of polling at full speed into an outage.
    pub async fn run<S: TokenStore>(
        event: LambdaEvent<SqsEvent>,
        deps: &WorkerDeps<S>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let messages = to_messages(event.payload);
        let total = messages.len();
        let failed = handle_messages(deps, messages).await;
        if total > 0 && failed.len() == total {
            return Err(format!("all {total} messages failed; see the log").into());
        }
        let mut response = SqsBatchResponse::default();
        for id in failed {
            response.add_failure(id);
        }
        Ok(response)
    }
}
