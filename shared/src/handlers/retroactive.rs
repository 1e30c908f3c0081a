//! Handlers: the two functions of the retroactive sync (DESIGN §5) — `sublist-fanout` works
//! the `retroactive-sync` queue (list updates that turn the flag on, and its own follow-ups),
//! `sublist-update` works the `sublist` queue. Both report failures per message; within a FIFO
//! message group (one run) the messages after a failed one are failed too, so that a run's
//! sublists, its "finish" and its reconciles keep their order.

use super::sync_worker::InboundMessage;
use crate::adapters::cleverreach::TokenStore;
use crate::domain::change::ChangeEvent;
use crate::domain::settings::Settings;
use crate::error::Retryable;
use crate::sync::retroactive::{
    FanoutLimits, FanoutMessage, FanoutOutcome, MessageQueue, SublistMessage, SublistOutcome,
    fan_out, on_sublist, start_run,
};
use crate::sync::{Connector, SyncError};
use std::collections::BTreeSet;
use tracing::{Instrument, error, info, warn};

/// What both functions need.
pub struct RetroactiveDeps<S: TokenStore, Q: MessageQueue> {
    pub conn: Connector<S>,
    /// The `retroactive-sync` and `sublist` queues.
    pub queue: Q,
    pub limits: FanoutLimits,
}

impl<S: TokenStore, Q: MessageQueue> RetroactiveDeps<S, Q> {
    pub fn new(conn: Connector<S>, queue: Q) -> Self {
        RetroactiveDeps {
            conn,
            queue,
            limits: FanoutLimits::default(),
        }
    }

    /// The settings, read fresh (one read per batch of messages), checked against the
    /// CleverReach this deployment talks to: reconciles must not write elsewhere.
    async fn settings(&self) -> Result<Settings, SyncError> {
        let settings = self.conn.settings().await?;
        let norm = |u: &str| u.trim().trim_end_matches('/').to_ascii_lowercase();
        let deployed = self.conn.newsletter.config().base_url.as_str();
        if norm(&settings.api_url) != norm(deployed) {
            return Err(SyncError::Config(format!(
                "the setting cleverreach:connectiondata:apiurl is {:?} but this deployment talks to {:?} (CLEVERREACH_API_URL); make them agree",
                settings.api_url, deployed
            )));
        }
        Ok(settings)
    }
}

/// One body on the fan-out's queue.
enum FanoutBody {
    Trigger(Box<ChangeEvent>),
    Follow(FanoutMessage),
}

fn fanout_body(body: &str) -> Result<FanoutBody, String> {
    if let Ok(message) = serde_json::from_str::<FanoutMessage>(body) {
        return Ok(FanoutBody::Follow(message));
    }
    serde_json::from_str::<ChangeEvent>(body)
        .map(|e| FanoutBody::Trigger(Box::new(e)))
        .map_err(|e| format!("the message is neither a list change nor a fan-out follow-up: {e}"))
}

/// `sublist-fanout`: processes a batch; returns the ids of the messages to leave on the queue.
pub async fn handle_fanout<S: TokenStore, Q: MessageQueue>(
    deps: &RetroactiveDeps<S, Q>,
    messages: Vec<InboundMessage>,
) -> Vec<String> {
    let mut gate = GroupGate::default();
    for message in &messages {
        if gate.blocked(message) {
            continue;
        }
        let span = tracing::info_span!("fanout", message_id = %message.message_id);
        let result = fanout_one(deps, message).instrument(span).await;
        gate.record(message, result);
    }
    gate.failed
}

async fn fanout_one<S: TokenStore, Q: MessageQueue>(
    deps: &RetroactiveDeps<S, Q>,
    message: &InboundMessage,
) -> Result<(), String> {
    let body =
        fanout_body(&message.body).inspect_err(|e| error!(error = %e, "unreadable message"))?;
    let settings = deps.settings().await.map_err(report)?;
    let outcome = match body {
        FanoutBody::Trigger(event) => {
            start_run(
                &deps.conn,
                &deps.queue,
                &settings,
                &event.record_id,
                &event.operation_id,
                deps.limits,
            )
            .await
        }
        FanoutBody::Follow(FanoutMessage::Continue {
            run,
            skip,
            next_index,
        }) => {
            fan_out(
                &deps.conn,
                &deps.queue,
                &settings,
                &run,
                skip,
                next_index,
                deps.limits,
            )
            .await
        }
    };
    match outcome {
        Ok(FanoutOutcome::Refused(reason)) => {
            warn!(%reason, "retroactive sync refused");
            Ok(())
        }
        Ok(outcome) => {
            info!(?outcome, "fan-out");
            Ok(())
        }
        Err(SyncError::Invalid(reason)) => {
            warn!(%reason, "fan-out refused");
            Ok(())
        }
        Err(e) => Err(report(e)),
    }
}

/// `sublist-update`: processes a batch; returns the ids of the messages to leave on the queue.
pub async fn handle_sublists<S: TokenStore, Q: MessageQueue>(
    deps: &RetroactiveDeps<S, Q>,
    messages: Vec<InboundMessage>,
) -> Vec<String> {
    let mut gate = GroupGate::default();
    for message in &messages {
        if gate.blocked(message) {
            continue;
        }
        let span = tracing::info_span!("sublist", message_id = %message.message_id);
        let result = sublist_one(deps, message).instrument(span).await;
        gate.record(message, result);
    }
    gate.failed
}

async fn sublist_one<S: TokenStore, Q: MessageQueue>(
    deps: &RetroactiveDeps<S, Q>,
    message: &InboundMessage,
) -> Result<(), String> {
    let parsed: SublistMessage = serde_json::from_str(&message.body).map_err(|e| {
        error!(error = %e, "message body is not a sublist message");
        format!("message body is not a sublist message: {e}")
    })?;
    let settings = deps.settings().await.map_err(report)?;
    match on_sublist(&deps.conn, &deps.queue, &settings, &parsed).await {
        Ok(SublistOutcome::AlreadyCounted) => {
            info!("delivered again: counted before, nothing done");
            Ok(())
        }
        Ok(outcome) => {
            info!(?outcome, "sublist message done");
            Ok(())
        }
        Err(SyncError::Invalid(reason)) => {
            warn!(%reason, "sublist message refused");
            Ok(())
        }
        Err(e) => Err(report(e)),
    }
}

fn report(e: SyncError) -> String {
    warn!(error = %e, retryable = e.is_retryable(), "failed");
    e.to_string()
}

/// Failed messages, and the message groups that must wait behind them.
#[derive(Default)]
struct GroupGate {
    failed: Vec<String>,
    failed_groups: BTreeSet<String>,
}

impl GroupGate {
    /// A later message of a failed group fails unprocessed.
    fn blocked(&mut self, message: &InboundMessage) -> bool {
        let blocked = message
            .group
            .as_ref()
            .is_some_and(|g| self.failed_groups.contains(g));
        if blocked {
            self.failed.push(message.message_id.clone());
        }
        blocked
    }

    fn record(&mut self, message: &InboundMessage, result: Result<(), String>) {
        if result.is_err() {
            if let Some(group) = &message.group {
                self.failed_groups.insert(group.clone());
            }
            self.failed.push(message.message_id.clone());
        }
    }
}

/// Lambda adapters: SQS event → messages → partial batch response.
#[cfg(feature = "aws")]
pub mod lambda {
    use super::*;
    use crate::handlers::sync_worker::lambda::to_messages;
    use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
    use lambda_runtime::LambdaEvent;

    fn respond(
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

    /// `sublist-fanout`'s handler.
    pub async fn run_fanout<S: TokenStore, Q: MessageQueue>(
        event: LambdaEvent<SqsEvent>,
        deps: &RetroactiveDeps<S, Q>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let messages = to_messages(event.payload);
        let total = messages.len();
        respond(total, handle_fanout(deps, messages).await)
    }

    /// `sublist-update`'s handler.
    pub async fn run_sublists<S: TokenStore, Q: MessageQueue>(
        event: LambdaEvent<SqsEvent>,
        deps: &RetroactiveDeps<S, Q>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let messages = to_messages(event.payload);
        let total = messages.len();
        respond(total, handle_sublists(deps, messages).await)
    }
}

#[cfg(all(test, feature = "aws"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsEvent;

    fn messages(json: &str) -> Vec<InboundMessage> {
        let event: SqsEvent = serde_json::from_str(json).unwrap();
        crate::handlers::sync_worker::lambda::to_messages(event)
    }

    #[test]
    fn the_sample_events_are_read_as_a_trigger_and_a_sublist() {
        let fanout = messages(include_str!(
            "../../../events/sublist-fanout/list-retroactive-sync-on.json"
        ));
        assert_eq!(fanout.len(), 1);
        match fanout_body(&fanout[0].body).unwrap() {
            FanoutBody::Trigger(event) => {
                assert!(crate::domain::routing::starts_retroactive_sync(&event));
            }
            FanoutBody::Follow(_) => panic!("a list change is a trigger"),
        }
        let sublist = messages(include_str!("../../../events/sublist-update/sublist.json"));
        let parsed: SublistMessage = serde_json::from_str(&sublist[0].body).unwrap();
        assert!(matches!(parsed, SublistMessage::Update { index: 0, .. }));
        assert!(sublist[0].group.as_deref().unwrap().starts_with("list:"));
    }

    #[test]
    fn a_failed_message_holds_back_the_rest_of_its_run_only() {
        let message = |id: &str, group: &str| InboundMessage {
            message_id: id.into(),
            body: String::new(),
            group: Some(group.into()),
        };
        let mut gate = GroupGate::default();
        let (a1, a2, b1) = (message("a1", "a"), message("a2", "a"), message("b1", "b"));
        assert!(!gate.blocked(&a1));
        gate.record(&a1, Err("down".into()));
        assert!(gate.blocked(&a2));
        assert!(!gate.blocked(&b1));
        gate.record(&b1, Ok(()));
        assert_eq!(gate.failed, ["a1", "a2"]);
    }
}
