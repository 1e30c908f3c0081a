//! The SQS FIFO batch processor every queue worker uses: messages parsed and worked one by
//! one, each in its own span; a failed message holds back the later messages of its message
//! group (a record's changes, a retroactive run's sublists) so that they are never applied out
//! of order; only the failed ids go back to the queue (partial batch response). Every failed
//! message is written down with its error (`ports::failures`), so that once it is parked in
//! the dead-letter queue `crc-admin dlq show` can say why (docs/architecture.md §13).

use crate::ports::failures::{FailedMessage, FailureLog};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

/// One queued message, independent of SQS.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub message_id: String,
    pub body: String,
    /// The FIFO message group, when known.
    pub group: Option<String>,
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

/// Where a worker writes down its failed messages: the queue's name and the failure log
/// (none in tests that do not look, and locally).
#[derive(Clone)]
pub struct FailureRecorder {
    queue: String,
    log: Option<Arc<dyn FailureLog>>,
    now: fn() -> i64,
}

impl FailureRecorder {
    /// Records nothing.
    pub fn none(queue: &str) -> Self {
        FailureRecorder {
            queue: queue.to_string(),
            log: None,
            now: || chrono::Utc::now().timestamp(),
        }
    }

    /// Records into `log`, naming `queue`.
    pub fn new(queue: &str, log: Arc<dyn FailureLog>) -> Self {
        FailureRecorder {
            log: Some(log),
            ..FailureRecorder::none(queue)
        }
    }

    /// Writes down one failure; a failure log that cannot be reached changes nothing about the
    /// message (it goes back to the queue all the same), it is only logged.
    pub async fn record(&self, message_id: &str, error: &str) {
        let Some(log) = &self.log else {
            return;
        };
        let failure = FailedMessage {
            message_id: message_id.to_string(),
            queue: self.queue.clone(),
            // Errors name ids, never addresses; this is a net under that rule.
            error: crate::redact::emails(error).into_owned(),
            failed_at: (self.now)(),
            failures: 1,
        };
        if let Err(e) = log.record(&failure).await {
            tracing::warn!(message_id, error = %e, "failure not recorded");
        }
    }
}

/// The failed messages of a FIFO batch with their errors, and the message groups that must
/// wait behind them.
#[derive(Debug, Default)]
pub struct FifoBatch {
    failed: Vec<(String, String)>,
    failed_groups: BTreeSet<String>,
    /// Not started: the invocation's time ran short. Back to the queue, not written down as
    /// failures (nothing went wrong).
    postponed: Vec<String>,
}

impl FifoBatch {
    /// True (and the message counted as failed, unprocessed) when an earlier message of its
    /// group failed.
    pub fn blocked(&mut self, message: &InboundMessage) -> bool {
        let blocked = message
            .group
            .as_ref()
            .is_some_and(|g| self.failed_groups.contains(g));
        if blocked {
            self.failed.push((
                message.message_id.clone(),
                "not worked: an earlier message of the same record failed in this batch, and the record's changes are applied in order".to_string(),
            ));
        }
        blocked
    }

    /// True (and the message put back, unprocessed) when the invocation has too little time
    /// left to start it (`crate::deadline`); its group's later messages wait with it.
    pub fn postponed(&mut self, message: &InboundMessage) -> bool {
        let late = !self.postponed.is_empty() || crate::deadline::too_late_to_start();
        if late {
            if let Some(group) = &message.group {
                self.failed_groups.insert(group.clone());
            }
            self.postponed.push(message.message_id.clone());
        }
        late
    }

    /// The message failed with `error`: it goes back to the queue, and its group's later
    /// messages too.
    pub fn fail(&mut self, message: &InboundMessage, error: &str) {
        if let Some(group) = &message.group {
            self.failed_groups.insert(group.clone());
        }
        self.failed
            .push((message.message_id.clone(), error.to_string()));
    }

    /// Writes down every failure, then returns the ids to leave on the queue, in the order
    /// they failed.
    pub async fn finish(self, recorder: &FailureRecorder) -> Vec<String> {
        let mut ids = Vec::with_capacity(self.failed.len() + self.postponed.len());
        for (id, error) in self.failed {
            recorder.record(&id, &error).await;
            ids.push(id);
        }
        if !self.postponed.is_empty() {
            tracing::info!(
                messages = self.postponed.len(),
                "time running short: messages not started go back to the queue"
            );
        }
        ids.extend(self.postponed);
        ids
    }
}

/// Works a batch one message after another with `work`; writes down the failures and returns
/// the ids of the messages to leave on the queue.
pub async fn process_fifo<F, Fut>(
    messages: Vec<InboundMessage>,
    recorder: &FailureRecorder,
    mut work: F,
) -> Vec<String>
where
    F: FnMut(InboundMessage) -> Fut,
    Fut: Future<Output = MessageOutcome>,
{
    let mut batch = FifoBatch::default();
    for message in messages {
        if batch.postponed(&message) || batch.blocked(&message) {
            continue;
        }
        let id = InboundMessage {
            message_id: message.message_id.clone(),
            body: String::new(),
            group: message.group.clone(),
        };
        if let MessageOutcome::Failed(error) = work(message).await {
            batch.fail(&id, &error);
        }
    }
    batch.finish(recorder).await
}

/// Works a batch with the message groups side by side (at most `limit` at once) and each
/// group's messages one after another; a failed message holds back its group's later
/// messages, as in [`process_fifo`]. For work whose messages share nothing across groups (one
/// CleverReach receiver's events): a batch costs the slowest group's time, not the sum.
pub async fn process_groups_concurrently<F, Fut>(
    messages: Vec<InboundMessage>,
    limit: usize,
    recorder: &FailureRecorder,
    work: F,
) -> Vec<String>
where
    F: Fn(InboundMessage) -> Fut,
    Fut: Future<Output = MessageOutcome>,
{
    use futures::StreamExt;
    let mut groups: Vec<(String, Vec<InboundMessage>)> = Vec::new();
    for message in messages {
        let key = message
            .group
            .clone()
            .unwrap_or_else(|| format!("message:{}", message.message_id));
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, list)) => list.push(message),
            None => groups.push((key, vec![message])),
        }
    }
    let work = &work;
    let failed: Vec<FifoBatch> = futures::stream::iter(groups)
        .map(|(_, list)| async move {
            // One group's messages, in order, as `process_fifo` works them.
            let mut batch = FifoBatch::default();
            for message in list {
                if batch.blocked(&message) {
                    continue;
                }
                let id = InboundMessage {
                    message_id: message.message_id.clone(),
                    body: String::new(),
                    group: message.group.clone(),
                };
                if let MessageOutcome::Failed(error) = work(message).await {
                    batch.fail(&id, &error);
                }
            }
            batch
        })
        .buffer_unordered(limit.max(1))
        .collect()
        .await;
    let mut ids = Vec::new();
    for batch in failed {
        ids.extend(batch.finish(recorder).await);
    }
    ids
}

/// Lambda adapter: SQS events in, partial batch responses out.
#[cfg(feature = "aws")]
pub mod lambda {
    use super::InboundMessage;
    use crate::deadline::Budget;
    use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

    /// The invocation's time budget, from the deadline the runtime gives (ms since the epoch).
    /// None when there is no usable deadline: Lambda's shortest timeout is a second, so one
    /// that is missing (0) or less than a second away as the invocation starts comes from a
    /// local emulator (`cargo lambda watch` sends the invocation time), not from Lambda.
    pub fn budget(context: &lambda_runtime::Context) -> Option<Budget> {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if context.deadline < now_ms.saturating_add(1_000) {
            tracing::info!("no usable invocation deadline: working without one");
            return None;
        }
        Some(Budget::from_epoch_ms(context.deadline, now_ms))
    }

    /// The messages of an SQS event.
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

    /// The partial batch response for `failed` of `total` messages. When every message failed,
    /// the invocation fails as a whole so that Lambda backs off instead of polling at full
    /// speed into an outage.
    pub fn batch_response(
        total: usize,
        failed: Vec<String>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
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

#[cfg(test)]
mod concurrent_tests {
    use super::*;
    use std::sync::Mutex;

    fn message(id: &str, group: &str) -> InboundMessage {
        InboundMessage {
            message_id: id.into(),
            body: id.into(),
            group: Some(group.into()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn messages_are_not_started_when_the_invocation_is_about_to_end() {
        let log = Arc::new(crate::adapters::memory::InMemoryFailureLog::new());
        let recorder = FailureRecorder::new("test", log.clone());
        let worked = Mutex::new(Vec::new());
        let budget = crate::deadline::Budget {
            deadline: tokio::time::Instant::now() + std::time::Duration::from_secs(40),
            stop_margin: std::time::Duration::from_secs(15),
            start_margin: std::time::Duration::from_secs(30),
        };
        let back = crate::deadline::within(
            Some(budget),
            process_fifo(
                vec![message("a1", "a"), message("b1", "b"), message("c1", "c")],
                &recorder,
                |m: InboundMessage| {
                    worked
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(m.body.clone());
                    async {
                        // Each message takes six seconds.
                        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
                        MessageOutcome::Done
                    }
                },
            ),
        )
        .await;
        // 40 s left: a1 starts (34 s left after it), b1 starts (28 s), c1 does not.
        assert_eq!(
            *worked.lock().unwrap_or_else(|p| p.into_inner()),
            ["a1", "b1"]
        );
        assert_eq!(back, ["c1"], "back to the queue");
        assert!(log.records().is_empty(), "not written down as a failure");
    }

    #[tokio::test]
    async fn groups_run_side_by_side_and_a_failure_holds_back_only_its_own_group() {
        let order = Mutex::new(Vec::new());
        let failed = process_groups_concurrently(
            vec![
                message("a1", "a"),
                message("b1", "b"),
                message("a2", "a"),
                message("b2", "b"),
            ],
            4,
            &FailureRecorder::none("test"),
            |m: InboundMessage| {
                order
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(m.body.clone());
                async move {
                    if m.body == "a1" {
                        MessageOutcome::Failed("no".into())
                    } else {
                        MessageOutcome::Done
                    }
                }
            },
        )
        .await;
        assert_eq!(failed, ["a1", "a2"], "a2 waits behind a1");
        let order = order.into_inner().unwrap_or_default();
        assert!(order.contains(&"b2".to_string()) && !order.contains(&"a2".to_string()));
        let b1 = order.iter().position(|x| x == "b1");
        let b2 = order.iter().position(|x| x == "b2");
        assert!(b1 < b2, "one group's messages in order: {order:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, group: &str) -> InboundMessage {
        InboundMessage {
            message_id: id.into(),
            body: id.into(),
            group: Some(group.into()),
        }
    }

    #[tokio::test]
    async fn a_failed_message_holds_back_the_rest_of_its_group_only() {
        let mut worked = Vec::new();
        let failed = process_fifo(
            vec![
                message("a1", "a"),
                message("b1", "b"),
                message("a2", "a"),
                message("b2", "b"),
            ],
            &FailureRecorder::none("test"),
            |m| {
                worked.push(m.body.clone());
                async move {
                    if m.body == "a1" {
                        MessageOutcome::Failed("down".into())
                    } else {
                        MessageOutcome::Done
                    }
                }
            },
        )
        .await;
        assert_eq!(failed, ["a1", "a2"]);
        assert_eq!(
            worked,
            ["a1", "b1", "b2"],
            "a2 must not be worked after a1 failed"
        );
    }

    #[tokio::test]
    async fn a_refused_message_is_acknowledged_and_does_not_hold_back_its_group() {
        let failed = process_fifo(
            vec![message("a1", "a"), message("a2", "a")],
            &FailureRecorder::none("test"),
            |m| async move {
                if m.body == "a1" {
                    MessageOutcome::Refused("bad".into())
                } else {
                    MessageOutcome::Done
                }
            },
        )
        .await;
        assert!(failed.is_empty(), "{failed:?}");
    }

    #[tokio::test]
    async fn every_failed_message_is_recorded_with_its_error_and_a_held_back_one_says_why() {
        let log = Arc::new(crate::adapters::memory::InMemoryFailureLog::new());
        let recorder = FailureRecorder::new("contact", log.clone());
        let failed = process_fifo(
            vec![message("a1", "a"), message("a2", "a"), message("b1", "b")],
            &recorder,
            |m| async move {
                if m.body == "a1" {
                    MessageOutcome::Failed("CRM: 503 Service Unavailable".into())
                } else {
                    MessageOutcome::Done
                }
            },
        )
        .await;
        assert_eq!(failed, ["a1", "a2"]);
        let records = log.records();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records["a1"].error, "CRM: 503 Service Unavailable");
        assert_eq!(records["a1"].queue, "contact");
        assert!(
            records["a2"]
                .error
                .contains("an earlier message of the same record failed"),
            "{:?}",
            records["a2"]
        );

        // Failing again counts once more and keeps the last error.
        process_fifo(vec![message("a1", "a")], &recorder, |_| async {
            MessageOutcome::Failed("CleverReach: 401".into())
        })
        .await;
        let again = &log.records()["a1"];
        assert_eq!(
            (again.failures, again.error.as_str()),
            (2, "CleverReach: 401")
        );
    }

    #[tokio::test]
    async fn an_address_in_an_error_is_tagged_before_it_is_recorded() {
        let log = Arc::new(crate::adapters::memory::InMemoryFailureLog::new());
        let recorder = FailureRecorder::new("contact", log.clone());
        recorder
            .record("m1", "refused: anna@example.com is not valid")
            .await;
        let error = &log.records()["m1"].error;
        assert!(!error.contains("anna@example.com"), "{error}");
    }
}
