//! Domain: CleverReach's event hooks, the fast path back into the CRM (docs/architecture.md §3):
//! one registration per group, a delivery per receiver event naming only the group and the
//! receiver; the connector reads the receiver and applies the event as the scheduled back-flow
//! does. There is no bounce or blacklist event: those stay on the schedule.

use serde::{Deserialize, Serialize};

/// The receiver events a registration for the `receiver` category delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookEventKind {
    Subscribed,
    Unsubscribed,
    Created,
    Updated,
    Deleted,
}

impl HookEventKind {
    /// Reads `receiver.<kind>`; any other event is not the connector's.
    pub fn from_event_name(name: &str) -> Option<HookEventKind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "receiver.subscribed" => Some(HookEventKind::Subscribed),
            "receiver.unsubscribed" => Some(HookEventKind::Unsubscribed),
            "receiver.created" => Some(HookEventKind::Created),
            "receiver.updated" => Some(HookEventKind::Updated),
            "receiver.deleted" => Some(HookEventKind::Deleted),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HookEventKind::Subscribed => "receiver.subscribed",
            HookEventKind::Unsubscribed => "receiver.unsubscribed",
            HookEventKind::Created => "receiver.created",
            HookEventKind::Updated => "receiver.updated",
            HookEventKind::Deleted => "receiver.deleted",
        }
    }
}

/// One delivery, as queued for the worker: which event, in which group, of which receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEvent {
    pub kind: HookEventKind,
    pub group_id: String,
    /// CleverReach's receiver ("pool") id.
    pub receiver_id: String,
    /// When the delivery arrived (unix milliseconds), for the delivery-time figures.
    pub received_at_ms: i64,
}

impl HookEvent {
    /// The FIFO message group: the receiver, so one receiver's events are worked in order.
    pub fn message_group(&self) -> String {
        format!("receiver:{}:{}", self.group_id, self.receiver_id)
    }

    /// The de-duplication id: the same event of the same receiver delivered twice within a
    /// second is queued once; a later one (unsubscribed again after a re-subscribe) is queued
    /// again. Either way the worker reads the receiver's state, so a duplicate costs a look-up.
    pub fn deduplication_id(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.kind.name(),
            self.group_id,
            self.receiver_id,
            self.received_at_ms / 1000
        )
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || c.is_ascii_punctuation())
        .take(128)
        .collect()
    }
}

/// What the events queue carries: a delivery, or the request to check the registrations (sent
/// by the connect page after a connect, so that a new account gets its hooks at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "work", rename_all = "kebab-case")]
pub enum EventsMessage {
    Delivery(HookEvent),
    CheckRegistrations { requested_at_ms: i64 },
}

impl EventsMessage {
    pub fn message_group(&self) -> String {
        match self {
            EventsMessage::Delivery(event) => event.message_group(),
            EventsMessage::CheckRegistrations { .. } => "check-registrations".to_string(),
        }
    }

    pub fn deduplication_id(&self) -> String {
        match self {
            EventsMessage::Delivery(event) => event.deduplication_id(),
            // One check per minute is plenty.
            EventsMessage::CheckRegistrations { requested_at_ms } => {
                format!("check-registrations:{}", requested_at_ms / 60_000)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_events_are_read_by_name_and_others_are_not_ours() {
        assert_eq!(
            HookEventKind::from_event_name("receiver.unsubscribed"),
            Some(HookEventKind::Unsubscribed)
        );
        assert_eq!(
            HookEventKind::from_event_name(" Receiver.Subscribed "),
            Some(HookEventKind::Subscribed)
        );
        assert_eq!(HookEventKind::from_event_name("form.created"), None);
        for kind in [
            HookEventKind::Subscribed,
            HookEventKind::Unsubscribed,
            HookEventKind::Created,
            HookEventKind::Updated,
            HookEventKind::Deleted,
        ] {
            assert_eq!(HookEventKind::from_event_name(kind.name()), Some(kind));
        }
    }

    #[test]
    fn a_queued_delivery_reads_back_as_it_was_sent() {
        let message = EventsMessage::Delivery(HookEvent {
            kind: HookEventKind::Unsubscribed,
            group_id: "7".into(),
            receiver_id: "42".into(),
            received_at_ms: 1_000,
        });
        let text = serde_json::to_string(&message).unwrap_or_default();
        assert!(text.contains("\"work\":\"delivery\""), "{text}");
        assert_eq!(
            serde_json::from_str::<EventsMessage>(&text).ok(),
            Some(message)
        );
        let check: Result<EventsMessage, _> =
            serde_json::from_str(r#"{"work":"check-registrations","requested_at_ms":5}"#);
        assert!(matches!(
            check,
            Ok(EventsMessage::CheckRegistrations { requested_at_ms: 5 })
        ));
    }
}
