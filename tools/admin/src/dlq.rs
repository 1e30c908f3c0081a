//! `crc-admin dlq list|show|redrive`: the deployment's dead-letter queues (found by the stack's
//! name prefix and the queues' redrive policies), a parked message decoded with the error it
//! last failed with (from the failure log the workers write, `ports::failures`), and moving
//! parked messages back to the queue they came from.
//!
//! Looking at a message means receiving it: messages are received with a short visibility
//! timeout and released again at once, so the queue is left as it was. What is printed about a
//! message names ids and column names, never values (a change's pre-image may hold addresses).

use crate::AdminError;
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName as Sys, QueueAttributeName as Attr,
};
use shared::domain::change::ChangeEvent;
use shared::ports::failures::FailureLog;
use shared::usecases::retroactive::{FanoutMessage, SublistMessage};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;

/// How long looked-at messages stay invisible before they are released (a crash of the tool
/// leaves them hidden no longer than this).
const LOOK_SECONDS: i32 = 30;
/// Most messages looked at in one command.
const LOOK_LIMIT: usize = 10_000;

/// The dead-letter queues of one deployment.
pub struct Dlq {
    pub sqs: aws_sdk_sqs::Client,
    /// The stack name: every queue of the deployment is named `<stack>-…`.
    pub stack: String,
    pub failures: Option<Arc<dyn FailureLog>>,
}

/// One dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterQueue {
    /// The name without the stack prefix, `-dlq` and `.fifo`: `contact`, `schedule`, `failed-runs`.
    pub short: String,
    pub name: String,
    pub url: String,
    /// The queue whose messages it parks (name, url); `None` for the schedules' queues.
    pub source: Option<(String, String)>,
    pub fifo: bool,
}

/// A dead-letter queue's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    pub queue: DeadLetterQueue,
    pub messages: u64,
    /// Received by someone right now (another look, a redrive).
    pub in_flight: u64,
    /// Age of the oldest message looked at (up to ten), in seconds.
    pub oldest_seconds: Option<i64>,
}

/// A received message, with what is needed to release, delete or resend it.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    body: String,
    receipt: String,
    group: Option<String>,
    sent_at_ms: Option<i64>,
    receives: Option<u64>,
    attributes: HashMap<String, MessageAttributeValue>,
}

fn sqs_error<E: std::error::Error + 'static>(e: aws_sdk_sqs::error::SdkError<E>) -> AdminError {
    AdminError::Queue(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
}

fn queue_name(url: &str) -> String {
    url.rsplit('/').next().unwrap_or(url).to_string()
}

impl Dlq {
    fn short_name(&self, name: &str) -> String {
        let rest = name
            .strip_prefix(&format!("{}-", self.stack))
            .unwrap_or(name);
        let rest = rest.strip_suffix(".fifo").unwrap_or(rest);
        rest.strip_suffix("-dlq").unwrap_or(rest).to_string()
    }

    /// Every dead-letter queue of the stack: the targets of the stack's redrive policies, and
    /// the queues named `…-dlq` or `…-failed-runs` (scheduled runs that failed).
    pub async fn queues(&self) -> Result<Vec<DeadLetterQueue>, AdminError> {
        let mut urls = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .sqs
                .list_queues()
                .queue_name_prefix(format!("{}-", self.stack))
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .map_err(sqs_error)?;
            urls.extend(page.queue_urls().iter().cloned());
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let mut by_arn = BTreeMap::new();
        let mut targets: BTreeMap<String, String> = BTreeMap::new();
        for url in &urls {
            let attributes = self
                .sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(Attr::QueueArn)
                .attribute_names(Attr::RedrivePolicy)
                .send()
                .await
                .map_err(sqs_error)?
                .attributes
                .unwrap_or_default();
            if let Some(arn) = attributes.get(&Attr::QueueArn) {
                by_arn.insert(arn.clone(), url.clone());
            }
            let target = attributes
                .get(&Attr::RedrivePolicy)
                .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
                .and_then(|p| p.get("deadLetterTargetArn")?.as_str().map(str::to_string));
            if let Some(target) = target {
                targets.insert(target, url.clone());
            }
        }
        let mut queues = Vec::new();
        for url in &urls {
            let name = queue_name(url);
            let arn = by_arn
                .iter()
                .find(|(_, u)| *u == url)
                .map(|(a, _)| a.clone());
            let source = arn
                .as_ref()
                .and_then(|a| targets.get(a))
                .map(|u| (queue_name(u), u.clone()));
            let named = name.ends_with("-dlq")
                || name.ends_with("-dlq.fifo")
                || name.ends_with("-failed-runs");
            if source.is_some() || named {
                queues.push(DeadLetterQueue {
                    short: self.short_name(&name),
                    fifo: name.ends_with(".fifo"),
                    name,
                    url: url.clone(),
                    source,
                });
            }
        }
        queues.sort_by(|a, b| a.short.cmp(&b.short));
        Ok(queues)
    }

    /// The dead-letter queues `--queue` names (all when `None`): by short name (`contact`) or
    /// full name.
    pub async fn selected(&self, only: Option<&str>) -> Result<Vec<DeadLetterQueue>, AdminError> {
        let all = self.queues().await?;
        let Some(wanted) = only else {
            return Ok(all);
        };
        let wanted = wanted.trim();
        let chosen: Vec<DeadLetterQueue> = all
            .iter()
            .filter(|q| {
                q.short == wanted
                    || q.name == wanted
                    || self.short_name(wanted) == q.short
                    || q.source.as_ref().is_some_and(|(s, _)| s == wanted)
            })
            .cloned()
            .collect();
        if chosen.is_empty() {
            let names: Vec<&str> = all.iter().map(|q| q.short.as_str()).collect();
            return Err(AdminError::NotFound(format!(
                "no dead-letter queue {wanted:?} in stack {}; there are: {}",
                self.stack,
                names.join(", ")
            )));
        }
        Ok(chosen)
    }

    /// Counts and the age of the oldest message of each dead-letter queue.
    pub async fn list(&self, only: Option<&str>) -> Result<Vec<QueueState>, AdminError> {
        let mut states = Vec::new();
        for queue in self.selected(only).await? {
            let attributes = self
                .sqs
                .get_queue_attributes()
                .queue_url(&queue.url)
                .attribute_names(Attr::ApproximateNumberOfMessages)
                .attribute_names(Attr::ApproximateNumberOfMessagesNotVisible)
                .send()
                .await
                .map_err(sqs_error)?
                .attributes
                .unwrap_or_default();
            let count = |a: &Attr| {
                attributes
                    .get(a)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            let messages = count(&Attr::ApproximateNumberOfMessages);
            let oldest_seconds = if messages > 0 {
                let looked = self.receive(&queue, 10, 0).await?;
                let now = chrono::Utc::now().timestamp_millis();
                looked
                    .iter()
                    .filter_map(|m| m.sent_at_ms)
                    .min()
                    .map(|sent| (now - sent).max(0) / 1000)
            } else {
                None
            };
            states.push(QueueState {
                messages,
                in_flight: count(&Attr::ApproximateNumberOfMessagesNotVisible),
                oldest_seconds,
                queue,
            });
        }
        Ok(states)
    }

    /// One receive call of up to `max` messages (at most 10), hidden for `visibility` seconds.
    async fn receive(
        &self,
        queue: &DeadLetterQueue,
        max: i32,
        visibility: i32,
    ) -> Result<Vec<Received>, AdminError> {
        let answer = self
            .sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(max.clamp(1, 10))
            .visibility_timeout(visibility)
            .wait_time_seconds(0)
            .message_system_attribute_names(Sys::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(sqs_error)?;
        Ok(answer
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let system = m.attributes.clone().unwrap_or_default();
                Some(Received {
                    id: m.message_id?,
                    body: m.body.unwrap_or_default(),
                    receipt: m.receipt_handle?,
                    group: system.get(&Sys::MessageGroupId).cloned(),
                    sent_at_ms: system.get(&Sys::SentTimestamp).and_then(|v| v.parse().ok()),
                    receives: system
                        .get(&Sys::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok()),
                    attributes: m.message_attributes.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Every message of a queue (up to [`LOOK_LIMIT`]), each hidden for a short while; release
    /// what you do not delete.
    async fn receive_all(&self, queue: &DeadLetterQueue) -> Result<Vec<Received>, AdminError> {
        let mut all: Vec<Received> = Vec::new();
        while all.len() < LOOK_LIMIT {
            let batch = self.receive(queue, 10, LOOK_SECONDS).await?;
            if batch.is_empty() {
                break;
            }
            for m in batch {
                if !all.iter().any(|seen| seen.id == m.id) {
                    all.push(m);
                }
            }
        }
        Ok(all)
    }

    /// Makes looked-at messages visible again.
    async fn release(&self, queue: &DeadLetterQueue, messages: &[Received]) {
        for m in messages {
            let released = self
                .sqs
                .change_message_visibility()
                .queue_url(&queue.url)
                .receipt_handle(&m.receipt)
                .visibility_timeout(0)
                .send()
                .await;
            if let Err(e) = released {
                eprintln!(
                    "crc-admin: message {} stays hidden for up to {LOOK_SECONDS} s: {}",
                    m.id,
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                );
            }
        }
    }

    /// Finds one message by id in the chosen queues and describes it, with the error it last
    /// failed with.
    pub async fn show(
        &self,
        message_id: &str,
        only: Option<&str>,
    ) -> Result<Vec<String>, AdminError> {
        for queue in self.selected(only).await? {
            let all = self.receive_all(&queue).await?;
            let found = all.iter().find(|m| m.id == message_id).cloned();
            self.release(&queue, &all).await;
            let Some(message) = found else {
                continue;
            };
            let mut lines = vec![format!("message {} in {}", message.id, queue.name)];
            if let Some(sent) = message.sent_at_ms {
                let at = chrono::DateTime::from_timestamp_millis(sent).unwrap_or_default();
                lines.push(format!(
                    "  parked since: {}",
                    at.format("%Y-%m-%d %H:%M:%S UTC")
                ));
            }
            if let Some(group) = &message.group {
                lines.push(format!("  message group: {group}"));
            }
            if let Some(receives) = message.receives {
                lines.push(format!("  received from this queue: {receives} times"));
            }
            lines.extend(describe(&message.body, &message.attributes));
            lines.extend(self.failure_lines(&message.id).await);
            match &queue.source {
                Some((source, _)) => lines.push(format!(
                    "  redrive: crc-admin dlq redrive --queue {} {}   (back to {source})",
                    queue.short, message.id
                )),
                None => lines.push(
                    "  redrive: not queued work; run the function again once the cause is fixed (docs/deploy.md section 8)"
                        .into(),
                ),
            }
            return Ok(lines);
        }
        Err(AdminError::NotFound(format!(
            "no message {message_id} in the dead-letter queues{}",
            only.map(|q| format!(" named {q:?}")).unwrap_or_default()
        )))
    }

    async fn failure_lines(&self, message_id: &str) -> Vec<String> {
        let Some(log) = &self.failures else {
            return vec![
                "  last error: not known here (set FAILURE_TABLE to the stack's failures table)"
                    .into(),
            ];
        };
        match log.failure(message_id).await {
            Ok(Some(f)) => {
                let at = chrono::DateTime::from_timestamp(f.failed_at, 0).unwrap_or_default();
                vec![
                    format!(
                        "  failed: {} times in {}, last at {}",
                        f.failures,
                        f.queue,
                        at.format("%Y-%m-%d %H:%M:%S UTC")
                    ),
                    format!("  last error: {}", f.error),
                ]
            }
            Ok(None) => vec![format!(
                "  last error: none recorded (the function may have timed out or crashed; its log: filter @message like \"{message_id}\")"
            )],
            Err(e) => vec![format!("  last error: could not be read: {e}")],
        }
    }

    /// Moves the parked messages of the chosen queues (or the one with `message_id`) back to
    /// the queue they came from; returns how many moved.
    pub async fn redrive(
        &self,
        only: Option<&str>,
        message_id: Option<&str>,
    ) -> Result<usize, AdminError> {
        let queues = self.selected(only).await?;
        let mut moved = 0;
        let mut found = false;
        for queue in &queues {
            let Some((_, source_url)) = &queue.source else {
                if only.is_some() {
                    return Err(AdminError::Usage(format!(
                        "{} holds scheduled runs, not queued work: there is no queue to move them to; run the function again once the cause is fixed",
                        queue.name
                    )));
                }
                continue;
            };
            let all = self.receive_all(queue).await?;
            let mut keep = Vec::new();
            for message in all {
                if message_id.is_some_and(|id| id != message.id) {
                    keep.push(message);
                    continue;
                }
                found = true;
                let mut send = self
                    .sqs
                    .send_message()
                    .queue_url(source_url)
                    .message_body(&message.body)
                    .set_message_attributes(
                        (!message.attributes.is_empty()).then(|| message.attributes.clone()),
                    );
                if queue.fifo {
                    // A new de-duplication id: the original may still be inside the queue's
                    // five-minute window. Derived from the message, so a redrive repeated
                    // after a crash between send and delete sends it once.
                    send = send
                        .message_group_id(message.group.clone().unwrap_or_else(|| "redrive".into()))
                        .message_deduplication_id(format!("redrive-{}", message.id));
                }
                if let Err(e) = send.send().await {
                    keep.push(message);
                    self.release(queue, &keep).await;
                    return Err(sqs_error(e));
                }
                self.sqs
                    .delete_message()
                    .queue_url(&queue.url)
                    .receipt_handle(&message.receipt)
                    .send()
                    .await
                    .map_err(sqs_error)?;
                moved += 1;
            }
            self.release(queue, &keep).await;
        }
        if let Some(id) = message_id
            && !found
        {
            return Err(AdminError::NotFound(format!(
                "no message {id} in the dead-letter queues"
            )));
        }
        Ok(moved)
    }
}

fn ids(refs: &[shared::domain::change::RecordRef]) -> String {
    refs.iter()
        .map(|r| format!("{} {}", r.entity, r.id))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a parked message is, in lines: the change (message, table, record, operation, the
/// columns it touched by name), a retroactive-sync step, or a failed scheduled run. Values
/// of columns are never shown.
pub fn describe(body: &str, attributes: &HashMap<String, MessageAttributeValue>) -> Vec<String> {
    if let Ok(change) = serde_json::from_str::<ChangeEvent>(body) {
        let mut lines = vec![
            format!(
                "  change: {} of {} {}",
                change.message.name(),
                change.entity,
                change.record_id
            ),
            format!(
                "  operation: {}, correlation: {}",
                change.operation_id, change.correlation_id
            ),
        ];
        if let Some(ms) = change.occurred_at_ms {
            let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            lines.push(format!(
                "  happened: {}",
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        if !change.target.is_empty() {
            let columns: Vec<&str> = change.target.keys().map(String::as_str).collect();
            lines.push(format!("  columns changed: {}", columns.join(", ")));
        }
        if !change.related.is_empty() {
            lines.push(format!("  records named: {}", ids(&change.related)));
        }
        if change.size_exceeded {
            lines.push("  the webhook body was too large: the worker re-reads everything".into());
        }
        return lines;
    }
    if let Ok(sublist) = serde_json::from_str::<SublistMessage>(body) {
        return vec![match sublist {
            SublistMessage::Update {
                run,
                index,
                entity,
                ids,
            } => format!(
                "  retroactive sync of list {} (run {}): sublist {index}, {} {entity:?} records",
                run.list_id,
                run.run_id,
                ids.len()
            ),
            SublistMessage::Finish { run, sublists } => format!(
                "  retroactive sync of list {} (run {}): finish after {sublists} sublists",
                run.list_id, run.run_id
            ),
            SublistMessage::Reconcile {
                run,
                source,
                source_id,
            } => format!(
                "  retroactive sync of list {} (run {}): reconcile {} {source_id}",
                run.list_id,
                run.run_id,
                source.label()
            ),
        }];
    }
    if let Ok(FanoutMessage::Continue { run, skip, .. }) = serde_json::from_str(body) {
        return vec![format!(
            "  retroactive sync of list {} (run {}): fan-out continuing after {skip} members",
            run.list_id, run.run_id
        )];
    }
    if let Ok(record) = serde_json::from_str::<serde_json::Value>(body)
        && let Some(context) = record.get("requestContext")
    {
        // A Lambda on-failure destination record: an asynchronous (scheduled) run that failed.
        let text =
            |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).unwrap_or("?").to_string();
        let function = text(context.get("functionArn"));
        let function = function
            .rsplit(':')
            .find(|p| !p.is_empty() && *p != "$LATEST")
            .unwrap_or("?");
        let response = record.get("responsePayload");
        return vec![
            format!(
                "  failed run of {function} ({}, {} attempts)",
                text(context.get("condition")),
                context
                    .get("approximateInvokeCount")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
            ),
            format!(
                "  error: {}: {}",
                text(response.and_then(|r| r.get("errorType"))),
                text(response.and_then(|r| r.get("errorMessage")))
            ),
        ];
    }
    if let Some(code) = attributes.get("ERROR_CODE").and_then(|a| a.string_value()) {
        // EventBridge Scheduler could not deliver a run.
        let message = attributes
            .get("ERROR_MESSAGE")
            .and_then(|a| a.string_value())
            .unwrap_or("");
        return vec![format!("  scheduled run not delivered: {code}: {message}")];
    }
    vec![format!(
        "  a message the connector does not know ({} bytes; not shown)",
        body.len()
    )]
}

/// Prints the list.
pub fn print_list(states: &[QueueState], out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<22} {:>8} {:>10}  parks messages of",
        "dead-letter queue", "messages", "oldest"
    )?;
    for s in states {
        let age = s.oldest_seconds.map_or("-".to_string(), age);
        let source = s
            .queue
            .source
            .as_ref()
            .map_or("scheduled runs".to_string(), |(name, _)| name.clone());
        writeln!(
            out,
            "{:<22} {:>8} {:>10}  {source}",
            s.queue.short, s.messages, age
        )?;
    }
    let total: u64 = states.iter().map(|s| s.messages).sum();
    writeln!(out, "{total} messages parked")
}

/// An age in words: `42 s`, `5 min`, `3 h`, `2 days`.
pub fn age(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_described_by_ids_and_column_names_never_by_values() {
        let body = serde_json::json!({
            "operation_id": "op-1", "correlation_id": "corr-1", "message": "Update",
            "entity": "contact", "record_id": "c-1", "user_id": "u", "initiating_user_id": "u",
            "organization_id": "o", "organization_name": "org", "occurred_at_ms": 1800000000000i64,
            "depth": 1,
            "target": { "emailaddress1": { "type": "text", "value": "anna@example.com" } },
            "pre_image": { "emailaddress1": { "type": "text", "value": "old@example.com" } },
            "post_image": null, "related": [], "size_exceeded": false, "tag": null
        })
        .to_string();
        let lines = describe(&body, &HashMap::new()).join("\n");
        assert!(lines.contains("change: Update of contact c-1"), "{lines}");
        assert!(lines.contains("columns changed: emailaddress1"), "{lines}");
        assert!(!lines.contains("example.com"), "{lines}");
    }

    #[test]
    fn a_failed_scheduled_run_names_its_function_and_error() {
        let body = serde_json::json!({
            "version": "1.0", "timestamp": "2026-12-01T02:00:00.000Z",
            "requestContext": { "requestId": "r-1", "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
                "functionArn": "arn:aws:lambda:eu-central-1:1:function:crc-resync:$LATEST" },
            "requestPayload": {}, "responseContext": { "statusCode": 200, "functionError": "Unhandled" },
            "responsePayload": { "errorType": "&alloc::boxed::Box", "errorMessage": "CRM: 503 Service Unavailable" }
        })
        .to_string();
        let lines = describe(&body, &HashMap::new()).join("\n");
        assert!(
            lines.contains("failed run of crc-resync (RetriesExhausted, 3 attempts)"),
            "{lines}"
        );
        assert!(lines.contains("CRM: 503 Service Unavailable"), "{lines}");
    }

    #[test]
    fn an_unknown_body_is_not_shown() {
        let lines = describe("anna@example.com wants out", &HashMap::new()).join("\n");
        assert!(!lines.contains("anna"), "{lines}");
    }

    #[test]
    fn ages_read_as_words() {
        assert_eq!(age(5), "5 s");
        assert_eq!(age(300), "5 min");
        assert_eq!(age(7200), "2 h");
        assert_eq!(age(3 * 86_400), "3 days");
    }
}
