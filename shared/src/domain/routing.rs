//! Domain: which queue a CRM change goes to, and how it is keyed there (docs/architecture.md §4 "Queues").
//!
//! One FIFO queue per entity family; the message group is the record, so changes to one record
//! are worked in order while different records run in parallel; the de-duplication id comes from
//! the operation, so a webhook Dataverse delivers twice is queued once.

use super::change::ChangeEvent;
use super::recipient::RecipientKind;
use super::source::SourceKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A family of entities that share a queue and a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueueFamily {
    MarketingList,
    Contact,
    Lead,
    Account,
    Campaign,
    CampaignActivity,
    /// Retroactive sync (docs/architecture.md §5): list updates that turn it on, and the fan-out's own
    /// follow-ups; worked by `sublist-fanout`. Not in [`QueueFamily::ALL`]: its messages are
    /// not all change events.
    RetroactiveSync,
    /// One message per sublist of a retroactive sync; worked by `sublist-update`.
    Sublist,
    /// CleverReach's event-hook deliveries (docs/architecture.md §3 "Event hooks"); worked by
    /// `sync-cleverreach-events`. Not in [`QueueFamily::ALL`]: not change events either.
    CleverReachEvents,
}

impl QueueFamily {
    pub const ALL: [QueueFamily; 6] = [
        QueueFamily::MarketingList,
        QueueFamily::Contact,
        QueueFamily::Lead,
        QueueFamily::Account,
        QueueFamily::Campaign,
        QueueFamily::CampaignActivity,
    ];

    /// The two queues of the retroactive sync (docs/architecture.md §5), apart from the change queues.
    pub const RETROACTIVE: [QueueFamily; 2] = [QueueFamily::RetroactiveSync, QueueFamily::Sublist];

    /// The family of a CRM table, or `None` when the connector has no interest in it.
    pub fn for_entity(logical_name: &str) -> Option<QueueFamily> {
        match logical_name {
            "list" | "listmember" => Some(QueueFamily::MarketingList),
            "contact" => Some(QueueFamily::Contact),
            "lead" => Some(QueueFamily::Lead),
            "account" => Some(QueueFamily::Account),
            "campaign" | "campaignitem" => Some(QueueFamily::Campaign),
            "campaignactivity" | "campaignactivityitem" => Some(QueueFamily::CampaignActivity),
            _ => None,
        }
    }

    /// The queue of a source kind's changes (and of its resync requests).
    pub fn for_source(kind: SourceKind) -> QueueFamily {
        match kind {
            SourceKind::MarketingList => QueueFamily::MarketingList,
            SourceKind::Campaign => QueueFamily::Campaign,
            SourceKind::CampaignActivity => QueueFamily::CampaignActivity,
        }
    }

    /// The queue of a person kind's changes.
    pub fn for_people(kind: RecipientKind) -> QueueFamily {
        match kind {
            RecipientKind::Contact => QueueFamily::Contact,
            RecipientKind::Lead => QueueFamily::Lead,
            RecipientKind::Account => QueueFamily::Account,
        }
    }

    /// What this family's messages ask for: the one mapping from queue to work.
    pub fn work(self) -> Work {
        match self {
            QueueFamily::MarketingList => Work::Source(SourceKind::MarketingList),
            QueueFamily::Campaign => Work::Source(SourceKind::Campaign),
            QueueFamily::CampaignActivity => Work::Source(SourceKind::CampaignActivity),
            QueueFamily::Contact => Work::People(RecipientKind::Contact),
            QueueFamily::Lead => Work::People(RecipientKind::Lead),
            QueueFamily::Account => Work::People(RecipientKind::Account),
            QueueFamily::RetroactiveSync => Work::RetroactiveFanout,
            QueueFamily::Sublist => Work::Sublist,
            QueueFamily::CleverReachEvents => Work::CleverReachEvents,
        }
    }

    /// The short name used for queue names, function names and environment variables.
    pub fn name(self) -> &'static str {
        match self {
            QueueFamily::MarketingList => "marketing-list",
            QueueFamily::Contact => "contact",
            QueueFamily::Lead => "lead",
            QueueFamily::Account => "account",
            QueueFamily::Campaign => "campaign",
            QueueFamily::CampaignActivity => "campaign-activity",
            QueueFamily::RetroactiveSync => "retroactive-sync",
            QueueFamily::Sublist => "sublist",
            QueueFamily::CleverReachEvents => "cleverreach-events",
        }
    }

    /// The environment variable holding this family's queue URL, e.g. `CONTACT_QUEUE_URL`.
    pub fn queue_url_variable(self) -> String {
        format!("{}_QUEUE_URL", self.name().replace('-', "_").to_uppercase())
    }
}

/// The work a queue carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Changes of one source kind: its group is created, renamed, reconciled or deleted.
    Source(SourceKind),
    /// Changes of people of one kind: their receivers, in every group.
    People(RecipientKind),
    /// Retroactive sync starts and follow-ups (`sublist-fanout`).
    RetroactiveFanout,
    /// Retroactive sync sublists (`sublist-update`).
    Sublist,
    /// CleverReach event-hook deliveries (`sync-cleverreach-events`).
    CleverReachEvents,
}

impl fmt::Display for QueueFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The FIFO message group: the record, so its changes are processed in order.
pub fn message_group(event: &ChangeEvent) -> String {
    format!("{}:{}", event.entity, event.record_id)
}

/// The FIFO de-duplication id: operation, message and record. SQS allows up to 128 characters
/// of letters, digits and punctuation; GUIDs and message names keep well inside that. (When
/// Dataverse sends no operation id, the webhook adapter makes one from the change's content,
/// so that two changes never share an id by accident.)
pub fn deduplication_id(event: &ChangeEvent) -> String {
    let raw = format!(
        "{}:{}:{}",
        event.operation_id,
        event.message.name(),
        event.record_id
    );
    raw.chars()
        .filter(|c| c.is_ascii_alphanumeric() || c.is_ascii_punctuation())
        .take(128)
        .collect()
}

/// A marketing list change that turns retroactive sync on (docs/architecture.md §5): it goes to the
/// fan-out's queue as well as to the list's own queue. Turning it off (which the fan-out itself
/// does when it is done) starts nothing.
pub fn starts_retroactive_sync(event: &ChangeEvent) -> bool {
    event.entity == "list" && event.turns_retroactive_sync_on()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::change::{Attributes, CrmMessage};

    fn event(entity: &str, message: CrmMessage) -> ChangeEvent {
        ChangeEvent {
            operation_id: "4af10637-4ea2-e711-8122-000d3aa2331c".into(),
            correlation_id: "c".into(),
            message,
            entity: entity.into(),
            record_id: "6d81597f-0f9f-e711-8122-000d3aa2331c".into(),
            user_id: "u".into(),
            initiating_user_id: "u".into(),
            organization_id: "o".into(),
            organization_name: "org".into(),
            occurred_at_ms: None,
            depth: 1,
            target: Attributes::new(),
            pre_image: None,
            post_image: None,
            related: vec![],
            size_exceeded: false,
            tag: None,
            continuation: None,
        }
    }

    #[test]
    fn each_entity_the_connector_cares_about_has_a_queue_and_others_have_none() {
        assert_eq!(
            QueueFamily::for_entity("list"),
            Some(QueueFamily::MarketingList)
        );
        assert_eq!(
            QueueFamily::for_entity("contact"),
            Some(QueueFamily::Contact)
        );
        assert_eq!(QueueFamily::for_entity("lead"), Some(QueueFamily::Lead));
        assert_eq!(
            QueueFamily::for_entity("account"),
            Some(QueueFamily::Account)
        );
        assert_eq!(
            QueueFamily::for_entity("campaignactivity"),
            Some(QueueFamily::CampaignActivity)
        );
        assert_eq!(QueueFamily::for_entity("incident"), None);
        assert_eq!(QueueFamily::for_entity(""), None);
    }

    #[test]
    fn a_resync_run_queues_each_source_once_and_the_next_run_queues_it_again() {
        let first = ChangeEvent::resync_request("list", "6d81597f", "run-1", 0);
        let again = ChangeEvent::resync_request("list", "6d81597f", "run-1", 9);
        let next_run = ChangeEvent::resync_request("list", "6d81597f", "run-2", 0);
        let other_list = ChangeEvent::resync_request("list", "7e81597f", "run-1", 0);
        assert_eq!(deduplication_id(&first), deduplication_id(&again));
        assert_ne!(deduplication_id(&first), deduplication_id(&next_run));
        assert_ne!(deduplication_id(&first), deduplication_id(&other_list));
        assert_eq!(message_group(&first), "list:6d81597f");
        assert_eq!(
            QueueFamily::for_entity(&first.entity),
            Some(QueueFamily::MarketingList)
        );
    }

    #[test]
    fn only_turning_retroactive_sync_on_starts_it() {
        use crate::domain::change::AttrValue;
        let mut on = event("list", CrmMessage::Update);
        on.target
            .insert("crc_retroactivesync".into(), AttrValue::Bool(true));
        assert!(starts_retroactive_sync(&on));
        let mut off = on.clone();
        off.target
            .insert("crc_retroactivesync".into(), AttrValue::Bool(false));
        assert!(!starts_retroactive_sync(&off));
        let mut other = on.clone();
        other.entity = "campaign".into();
        assert!(!starts_retroactive_sync(&other));
        assert!(!starts_retroactive_sync(&event("list", CrmMessage::Update)));
        assert_eq!(
            QueueFamily::Sublist.queue_url_variable(),
            "SUBLIST_QUEUE_URL"
        );
        assert_eq!(
            QueueFamily::RetroactiveSync.queue_url_variable(),
            "RETROACTIVE_SYNC_QUEUE_URL"
        );
    }

    #[test]
    fn queue_url_variables_are_named_after_the_family() {
        assert_eq!(
            QueueFamily::MarketingList.queue_url_variable(),
            "MARKETING_LIST_QUEUE_URL"
        );
        assert_eq!(
            QueueFamily::CampaignActivity.queue_url_variable(),
            "CAMPAIGN_ACTIVITY_QUEUE_URL"
        );
    }

    #[test]
    fn the_same_operation_gets_the_same_deduplication_id_and_other_messages_do_not() {
        let a = event("contact", CrmMessage::Update);
        let b = event("contact", CrmMessage::Update);
        let c = event("contact", CrmMessage::Delete);
        assert_eq!(deduplication_id(&a), deduplication_id(&b));
        assert_ne!(deduplication_id(&a), deduplication_id(&c));
        assert!(deduplication_id(&a).len() <= 128);
        assert_eq!(
            message_group(&a),
            "contact:6d81597f-0f9f-e711-8122-000d3aa2331c"
        );
    }
}
