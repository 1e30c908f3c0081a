//! Handlers: the two functions of the retroactive sync (docs/architecture.md §5) — `sublist-fanout` works
//! the `retroactive-sync` queue (list updates that turn the flag on, and its own follow-ups),
//! `sublist-update` works the `sublist` queue. Both report failures per message; within a FIFO
//! message group (one run) the messages after a failed one are failed too, so that a run's
//! sublists, its "finish" and its reconciles keep their order.

use super::batch::{FailureRecorder, InboundMessage, MessageOutcome, process_fifo};
use crate::domain::change::ChangeEvent;
use crate::domain::routing::QueueFamily;
use crate::domain::settings::Settings;
use crate::error::Retryable;
use crate::ports::failures::FailureLog;
use crate::ports::queue::MessageQueue;
use crate::usecases::retroactive::{
    FanoutLimits, FanoutMessage, FanoutOutcome, SublistMessage, SublistOutcome, fan_out,
    on_sublist, start_run,
};
use crate::usecases::{Connector, SyncError};
use std::sync::Arc;
use tracing::{Instrument, error, info, warn};

/// What both functions need.
pub struct RetroactiveDeps<Q: MessageQueue> {
    pub conn: Connector,
    /// The `retroactive-sync` and `sublist` queues.
    pub queue: Q,
    pub limits: FanoutLimits,
    /// Where failed messages are written down with their error.
    pub failure_log: Option<Arc<dyn FailureLog>>,
}

impl<Q: MessageQueue> RetroactiveDeps<Q> {
    pub fn new(conn: Connector, queue: Q) -> Self {
        RetroactiveDeps {
            conn,
            queue,
            limits: FanoutLimits::default(),
            failure_log: None,
        }
    }

    /// Writes failed messages down in this log (for `crc-admin dlq show`).
    pub fn with_failure_log(mut self, log: Arc<dyn FailureLog>) -> Self {
        self.failure_log = Some(log);
        self
    }

    fn recorder(&self, family: QueueFamily) -> FailureRecorder {
        match &self.failure_log {
            Some(log) => FailureRecorder::new(family.name(), log.clone()),
            None => FailureRecorder::none(family.name()),
        }
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
        .map_err(|e| {
            format!(
                "the message is neither a list change nor a fan-out follow-up: {}",
                crate::redact::json_error(&e)
            )
        })
}

/// `sublist-fanout`: processes a batch; returns the ids of the messages to leave on the queue.
pub async fn handle_fanout<Q: MessageQueue>(
    deps: &RetroactiveDeps<Q>,
    messages: Vec<InboundMessage>,
) -> Vec<String> {
    let recorder = deps.recorder(QueueFamily::RetroactiveSync);
    process_fifo(messages, &recorder, |message| async move {
        let span = tracing::info_span!("fanout", message_id = %message.message_id);
        outcome(fanout_one(deps, &message).instrument(span).await)
    })
    .await
}

fn outcome(result: Result<(), String>) -> MessageOutcome {
    match result {
        Ok(()) => MessageOutcome::Done,
        Err(e) => MessageOutcome::Failed(e),
    }
}

async fn fanout_one<Q: MessageQueue>(
    deps: &RetroactiveDeps<Q>,
    message: &InboundMessage,
) -> Result<(), String> {
    let body =
        fanout_body(&message.body).inspect_err(|e| error!(error = %e, "unreadable message"))?;
    let settings: Settings = deps.conn.settings().await.map_err(report)?;
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
pub async fn handle_sublists<Q: MessageQueue>(
    deps: &RetroactiveDeps<Q>,
    messages: Vec<InboundMessage>,
) -> Vec<String> {
    let recorder = deps.recorder(QueueFamily::Sublist);
    process_fifo(messages, &recorder, |message| async move {
        let span = tracing::info_span!("sublist", message_id = %message.message_id);
        outcome(sublist_one(deps, &message).instrument(span).await)
    })
    .await
}

async fn sublist_one<Q: MessageQueue>(
    deps: &RetroactiveDeps<Q>,
    message: &InboundMessage,
) -> Result<(), String> {
    let parsed: SublistMessage = serde_json::from_str(&message.body).map_err(|e| {
        let e = crate::redact::json_error(&e);
        error!(error = %e, "message body is not a sublist message");
        format!("message body is not a sublist message: {e}")
    })?;
    let settings: Settings = deps.conn.settings().await.map_err(report)?;
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

/// Lambda adapters: SQS event → messages → partial batch response.
#[cfg(feature = "aws")]
pub mod lambda {
    use super::*;
    use crate::handlers::batch::lambda::{batch_response as respond, to_messages};
    use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
    use lambda_runtime::LambdaEvent;

    /// `sublist-fanout`'s handler.
    pub async fn run_fanout<Q: MessageQueue>(
        event: LambdaEvent<SqsEvent>,
        deps: &RetroactiveDeps<Q>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let budget = crate::handlers::batch::lambda::budget(&event.context);
        let messages = to_messages(event.payload);
        let total = messages.len();
        respond(
            total,
            crate::deadline::within(budget, handle_fanout(deps, messages)).await,
        )
    }

    /// `sublist-update`'s handler.
    pub async fn run_sublists<Q: MessageQueue>(
        event: LambdaEvent<SqsEvent>,
        deps: &RetroactiveDeps<Q>,
    ) -> Result<SqsBatchResponse, lambda_runtime::Error> {
        let budget = crate::handlers::batch::lambda::budget(&event.context);
        let messages = to_messages(event.payload);
        let total = messages.len();
        respond(
            total,
            crate::deadline::within(budget, handle_sublists(deps, messages)).await,
        )
    }
}

#[cfg(all(test, feature = "aws"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsEvent;

    fn messages(json: &str) -> Vec<InboundMessage> {
        let event: SqsEvent = serde_json::from_str(json).unwrap();
        crate::handlers::batch::lambda::to_messages(event)
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
}
