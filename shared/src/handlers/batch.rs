//! The SQS FIFO batch processor every queue worker uses: messages parsed and worked one by
//! one, each in its own span; a failed message holds back the later messages of its message
//! group (a record's changes, a retroactive run's sublists) so that they are never applied out
//! of order; only the failed ids go back to the queue (partial batch response).

use std::collections::BTreeSet;
use std::future::Future;

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

/// The failed messages of a FIFO batch, and the message groups that must wait behind them.
#[derive(Debug, Default)]
pub struct FifoBatch {
    failed: Vec<String>,
    failed_groups: BTreeSet<String>,
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
            self.failed.push(message.message_id.clone());
        }
        blocked
    }

    /// The message failed: it goes back to the queue, and its group's later messages too.
    pub fn fail(&mut self, message: &InboundMessage) {
        if let Some(group) = &message.group {
            self.failed_groups.insert(group.clone());
        }
        self.failed.push(message.message_id.clone());
    }

    /// The ids to leave on the queue, in the order they failed.
    pub fn into_failed(self) -> Vec<String> {
        self.failed
    }
}

/// Works a batch one message after another with `work`; returns the ids of the messages to
/// leave on the queue.
pub async fn process_fifo<F, Fut>(messages: Vec<InboundMessage>, mut work: F) -> Vec<String>
where
    F: FnMut(InboundMessage) -> Fut,
    Fut: Future<Output = MessageOutcome>,
{
    let mut batch = FifoBatch::default();
    for message in messages {
        if batch.blocked(&message) {
            continue;
        }
        let id = InboundMessage {
            message_id: message.message_id.clone(),
            body: String::new(),
            group: message.group.clone(),
        };
        if let MessageOutcome::Failed(_) = work(message).await {
            batch.fail(&id);
        }
    }
    batch.into_failed()
}

/// Works a batch with the message groups side by side (at most `limit` at once) and each
/// group's messages one after another; a failed message holds back its group's later
/// messages, as in [`process_fifo`]. For work whose messages share nothing across groups (one
/// CleverReach receiver's events): a batch costs the slowest group's time, not the sum.
pub async fn process_groups_concurrently<F, Fut>(
    messages: Vec<InboundMessage>,
    limit: usize,
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
    let failed: Vec<Vec<String>> = futures::stream::iter(groups)
        .map(|(_, list)| async move {
            let mut failed = Vec::new();
            for message in list {
                let id = message.message_id.clone();
                if !failed.is_empty() {
                    failed.push(id);
                    continue;
                }
                if let MessageOutcome::Failed(_) = work(message).await {
                    failed.push(id);
                }
            }
            failed
        })
        .buffer_unordered(limit.max(1))
        .collect()
        .await;
    failed.into_iter().flatten().collect()
}

/// Lambda adapter: SQS events in, partial batch responses out.
#[cfg(feature = "aws")]
pub mod lambda {
    use super::InboundMessage;
    use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};

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
            |m| {
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
}
