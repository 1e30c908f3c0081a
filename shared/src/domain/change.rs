//! Domain: a change in the CRM, normalised from a Dataverse webhook body.
//!
//! Level-triggered design (docs/architecture.md §4): the event says *which* record changed and carries what a
//! worker cannot re-read any more (the pre-image of a deleted record, the members named by a
//! membership message). Workers re-read the current state and reconcile.
//!
//! This is the connector's own message format (it travels through SQS as JSON), not the wire
//! format of Dataverse.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The SDK message that caused the change (`MessageName`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub enum CrmMessage {
    Create,
    Update,
    Delete,
    /// One member added to a static list (AddMemberList).
    AddMember,
    /// Many members added to a static list (AddListMembersList).
    AddListMembers,
    /// One member removed from a static list (RemoveMemberList).
    RemoveMember,
    /// A list (or other item) added to a campaign or campaign activity.
    AddItem,
    /// A list (or other item) removed from a campaign or campaign activity.
    RemoveItem,
    Associate,
    Disassociate,
    /// Not a Dataverse message: the connector's own request for a full reconcile of one source
    /// ("resync every source", docs/architecture.md §3), queued like a change so that each source's reconcile
    /// runs in its own worker invocation. Webhook bodies never produce it (`from_name` does not
    /// map it), so no CRM user can send it through the intake.
    Resync,
    /// Any other message, kept by name so that it can be logged and ignored.
    Other(String),
}

impl CrmMessage {
    pub fn from_name(name: &str) -> CrmMessage {
        match name {
            "Create" => CrmMessage::Create,
            "Update" => CrmMessage::Update,
            "Delete" => CrmMessage::Delete,
            "AddMember" => CrmMessage::AddMember,
            "AddListMembers" => CrmMessage::AddListMembers,
            "RemoveMember" => CrmMessage::RemoveMember,
            "AddItem" => CrmMessage::AddItem,
            "RemoveItem" => CrmMessage::RemoveItem,
            "Associate" => CrmMessage::Associate,
            "Disassociate" => CrmMessage::Disassociate,
            other => CrmMessage::Other(other.to_string()),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            CrmMessage::Create => "Create",
            CrmMessage::Update => "Update",
            CrmMessage::Delete => "Delete",
            CrmMessage::AddMember => "AddMember",
            CrmMessage::AddListMembers => "AddListMembers",
            CrmMessage::RemoveMember => "RemoveMember",
            CrmMessage::AddItem => "AddItem",
            CrmMessage::RemoveItem => "RemoveItem",
            CrmMessage::Associate => "Associate",
            CrmMessage::Disassociate => "Disassociate",
            CrmMessage::Resync => "Resync",
            CrmMessage::Other(name) => name,
        }
    }
}

/// A reference to a CRM row: logical name and lower-case GUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordRef {
    pub entity: String,
    pub id: String,
}

/// One attribute value of a CRM row, decoded from the webhook's typed JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum AttrValue {
    Null,
    Bool(bool),
    Int(i64),
    Number(f64),
    Text(String),
    /// A date-time as milliseconds since the Unix epoch, UTC (`/Date(ms±hhmm)/`).
    DateTime(i64),
    /// A choice (OptionSetValue), e.g. statecode.
    Choice(i64),
    /// A multi-select choice.
    Choices(Vec<i64>),
    Money(f64),
    /// A lookup (EntityReference).
    Reference {
        entity: String,
        id: String,
        name: Option<String>,
    },
    /// A value of a type the connector does not interpret, kept as its JSON text.
    Opaque(String),
}

impl AttrValue {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            AttrValue::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_choice(&self) -> Option<i64> {
        match self {
            AttrValue::Choice(v) | AttrValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn as_reference(&self) -> Option<RecordRef> {
        match self {
            AttrValue::Reference { entity, id, .. } => Some(RecordRef {
                entity: entity.clone(),
                id: id.clone(),
            }),
            _ => None,
        }
    }
}

/// Attribute values of one row, keyed by logical attribute name.
pub type Attributes = BTreeMap<String, AttrValue>;

/// Up to this many named members, a membership change is reconciled person by person (a few
/// CRM reads each), in the list's own group and in the groups of the campaigns and activities
/// linked to it; beyond it (bulk adds), each group is reconciled in full, reading its members
/// 5000 a request, which costs less than the people one by one and fits an invocation.
pub const SCOPED_MEMBERS_LIMIT: usize = 50;

/// A CRM change, normalised. Built by the Dataverse webhook adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Dataverse's `OperationId`: the same operation delivered twice has the same id.
    pub operation_id: String,
    /// Dataverse's `CorrelationId`, carried through queues and logs.
    pub correlation_id: String,
    pub message: CrmMessage,
    /// `PrimaryEntityName`, e.g. `contact`, `list`, `campaign`.
    pub entity: String,
    /// `PrimaryEntityId` (lower-case GUID). For list membership messages: the list; for
    /// AddItem/RemoveItem: the campaign or campaign activity.
    pub record_id: String,
    /// `UserId`: the user the operation ran as.
    pub user_id: String,
    /// `InitiatingUserId`: who started it (compare with the connector's application user to
    /// recognise the connector's own writes).
    pub initiating_user_id: String,
    pub organization_id: String,
    pub organization_name: String,
    /// `OperationCreatedOn` in ms since the epoch, when present.
    pub occurred_at_ms: Option<i64>,
    pub depth: i64,
    /// The changed attributes (the `Target` entity of Create/Update), without images.
    pub target: Attributes,
    /// The registered pre-image (or the merged pre-images), when the step has one.
    pub pre_image: Option<Attributes>,
    /// The registered post-image (or the merged post-images), when the step has one.
    pub post_image: Option<Attributes>,
    /// Rows the message names besides the primary one: the member(s) of AddMember,
    /// AddListMembers and RemoveMember, the item of AddItem/RemoveItem, the related rows of
    /// Associate/Disassociate.
    pub related: Vec<RecordRef>,
    /// Dataverse dropped the parameters and images because the body exceeded 256 KB
    /// (`x-ms-dynamics-msg-size-exceeded`): the worker must re-read everything.
    pub size_exceeded: bool,
    /// The `tag` shared variable, when the writer set one (the connector tags its own writes).
    pub tag: Option<String>,
    /// Set on the message a full reconcile queues for itself when its invocation's time ran
    /// short: which pass comes next and what the earlier passes did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuation: Option<Continuation>,
}

/// A full reconcile continued in a message of its own (docs/architecture.md §4 "Deadlines").
/// A pass resumes the members' read where the pass before stopped (`resume`), so that no
/// member is read twice while the receivers are written. Removals need every member seen in
/// one pass, and a message cannot carry 1,000,000 addresses: when the group held active
/// receivers at the start, one more pass from the first member (`final_check`) compares them
/// all once more, writes nothing that is in step and decides the removals. A group that held
/// none needs no such pass: every receiver in it was written for a member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Continuation {
    /// The pass this message starts (the first continuation is pass 2).
    pub pass: u32,
    /// Members compared by the passes so far (for the progress text).
    pub compared: usize,
    /// Receivers added, updated and moved by the passes so far.
    pub added: usize,
    pub updated: usize,
    pub email_changed: usize,
    /// What else the passes so far counted, so that the final status adds up as one pass's.
    #[serde(default)]
    pub unchanged: usize,
    #[serde(default)]
    pub opted_out: usize,
    #[serde(default)]
    pub skipped: BTreeMap<String, usize>,
    #[serde(default)]
    pub rejected: usize,
    /// Where the members' read goes on (the member reader's own words); none: at the first
    /// member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// Active receivers the group held when the first pass read it.
    #[serde(default)]
    pub active_at_start: usize,
    /// This pass compares every member once more to decide the removals.
    #[serde(default)]
    pub final_check: bool,
}

impl ChangeEvent {
    /// The value of an attribute after the change: from the target, else the post-image.
    pub fn value_after(&self, attribute: &str) -> Option<&AttrValue> {
        self.target
            .get(attribute)
            .or_else(|| self.post_image.as_ref().and_then(|img| img.get(attribute)))
    }

    /// The value of an attribute before the change (pre-image).
    pub fn value_before(&self, attribute: &str) -> Option<&AttrValue> {
        self.pre_image.as_ref().and_then(|img| img.get(attribute))
    }

    /// True when the change touched this attribute (it is in the target).
    pub fn touched(&self, attribute: &str) -> bool {
        self.target.contains_key(attribute)
    }

    /// A request for a full reconcile of one source (`entity`: `list`, `campaign`,
    /// `campaignactivity`), made by the connector itself, not by a CRM change. `run_id` names
    /// the run that asked (one per "resync every source"): it is the operation id, so a run
    /// queues each source once and a later run queues it again.
    pub fn resync_request(entity: &str, record_id: &str, run_id: &str, now_ms: i64) -> Self {
        ChangeEvent {
            operation_id: run_id.to_string(),
            correlation_id: run_id.to_string(),
            message: CrmMessage::Resync,
            entity: entity.to_string(),
            record_id: record_id.to_ascii_lowercase(),
            user_id: String::new(),
            initiating_user_id: String::new(),
            organization_id: String::new(),
            organization_name: String::new(),
            occurred_at_ms: Some(now_ms),
            depth: 0,
            target: Attributes::new(),
            pre_image: None,
            post_image: None,
            related: Vec::new(),
            size_exceeded: false,
            tag: None,
            continuation: None,
        }
    }

    /// The message that continues this change's full reconcile in a new invocation: a resync
    /// of the same record (same queue, same message group), with the counts so far. Its
    /// operation id names the pass, so each continuation is queued once.
    pub fn continued(&self, carried: Continuation, now_ms: i64) -> ChangeEvent {
        let base = match self.operation_id.rsplit_once("-pass") {
            Some((base, pass)) if pass.chars().all(|c| c.is_ascii_digit()) => base,
            _ => self.operation_id.as_str(),
        };
        let run_id = format!("{base}-pass{}", carried.pass);
        ChangeEvent {
            correlation_id: self.correlation_id.clone(),
            continuation: Some(carried),
            ..ChangeEvent::resync_request(&self.entity, &self.record_id, &run_id, now_ms)
        }
    }

    /// The change is a resync request, not a CRM change.
    pub fn is_resync(&self) -> bool {
        self.message == CrmMessage::Resync
    }

    /// The named members of a membership change are few enough to reconcile person by person
    /// (at most [`SCOPED_MEMBERS_LIMIT`]); more (or none named) take a full reconcile.
    pub fn names_few_members(&self) -> bool {
        self.is_membership_change()
            && !self.size_exceeded
            && !self.related.is_empty()
            && self.related.len() <= SCOPED_MEMBERS_LIMIT
    }

    /// The change without what it carries besides its identity (named rows, images, changed
    /// attributes), marked as Dataverse marks a body over its size limit: whoever works it
    /// must read the record and its members afresh.
    pub fn without_details(self) -> ChangeEvent {
        ChangeEvent {
            target: Attributes::default(),
            pre_image: None,
            post_image: None,
            related: Vec::new(),
            size_exceeded: true,
            ..self
        }
    }

    /// Members were named: AddMember, AddListMembers or RemoveMember of a static list.
    pub fn is_membership_change(&self) -> bool {
        matches!(
            self.message,
            CrmMessage::AddMember | CrmMessage::AddListMembers | CrmMessage::RemoveMember
        )
    }

    /// A source's sync flag or state changed (or may have: a create, or a body without its
    /// attributes): the group's fate must be decided again.
    pub fn sync_flag_or_state_may_have_changed(&self) -> bool {
        self.message == CrmMessage::Create
            || self.size_exceeded
            || self.touched(column::SYNC_FLAG)
            || self.touched(column::STATECODE)
            // A confirmation of a deletion the brake held back: decide again.
            || self.touched(column::CONFIRM_REMOVALS)
    }

    /// The change can change who belongs to a source's group: a membership message, a linked
    /// list or lead added or removed, or a column the rule reads (checklist, sync flag, state,
    /// the resync request, a dynamic list's query), or the confirmation of a removal the brake
    /// held back.
    pub fn may_change_members(&self) -> bool {
        self.size_exceeded
            || matches!(
                self.message,
                CrmMessage::Create
                    | CrmMessage::AddMember
                    | CrmMessage::AddListMembers
                    | CrmMessage::RemoveMember
                    | CrmMessage::AddItem
                    | CrmMessage::RemoveItem
                    | CrmMessage::Associate
                    | CrmMessage::Disassociate
            )
            || [
                column::CHECKLIST,
                column::SYNC_FLAG,
                column::STATECODE,
                column::RESYNC,
                column::QUERY,
                column::CONFIRM_REMOVALS,
            ]
            .iter()
            .any(|c| self.touched(c))
    }

    /// A list's selection changed as a whole: its query or its state (or may have).
    pub fn list_selection_may_have_changed(&self) -> bool {
        self.size_exceeded || self.touched(column::QUERY) || self.touched(column::STATECODE)
    }

    /// The group id a deleted source had (from the delete's pre-image).
    pub fn group_id_before(&self) -> Option<String> {
        self.value_before(column::GROUP_ID)
            .and_then(AttrValue::as_text)
            .map(str::to_string)
    }

    /// The checklist a deleted source had (from the delete's pre-image), as stored.
    pub fn checklist_before(&self) -> Option<&str> {
        self.value_before(column::CHECKLIST)
            .and_then(AttrValue::as_text)
    }

    /// The person's e-mail address before and after the change, as stored.
    pub fn emails_before_and_after(&self) -> Vec<&str> {
        [
            self.value_before(column::EMAIL),
            self.value_after(column::EMAIL),
        ]
        .into_iter()
        .flatten()
        .filter_map(AttrValue::as_text)
        .collect()
    }

    /// An account's primary contact before and after the change.
    pub fn primary_contacts_before_and_after(&self) -> Vec<RecordRef> {
        [
            self.value_before(column::PRIMARY_CONTACT),
            self.value_after(column::PRIMARY_CONTACT),
        ]
        .into_iter()
        .flatten()
        .filter_map(AttrValue::as_reference)
        .collect()
    }

    /// An account's name changed (or may have): it is its contacts' company.
    pub fn account_name_may_have_changed(&self) -> bool {
        self.size_exceeded || self.touched(column::NAME)
    }

    /// The change turns a list's retroactive sync on.
    pub fn turns_retroactive_sync_on(&self) -> bool {
        self.target
            .get(column::RETROACTIVE_SYNC)
            .and_then(AttrValue::as_bool)
            == Some(true)
    }
}

/// The CRM columns whose presence in a change tells the connector what it means (their logical
/// names as the webhook carries them; the adapter's schema module names the same columns).
pub mod column {
    pub const SYNC_FLAG: &str = "crc_syncwithcleverreach";
    pub const CHECKLIST: &str = "crc_checklist";
    pub const STATECODE: &str = "statecode";
    pub const RESYNC: &str = "crc_resync";
    /// An administrator confirms a removal the brake held back (`domain::brake`).
    pub const CONFIRM_REMOVALS: &str = "crc_confirmremovals";
    /// A dynamic list's FetchXML.
    pub const QUERY: &str = "query";
    pub const GROUP_ID: &str = "crc_groupid";
    pub const RETROACTIVE_SYNC: &str = "crc_retroactivesync";
    pub const EMAIL: &str = "emailaddress1";
    pub const PRIMARY_CONTACT: &str = "primarycontactid";
    /// An account's name.
    pub const NAME: &str = "name";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resync_request_travels_through_the_queue_as_json_and_stays_a_resync() {
        let event = ChangeEvent::resync_request("list", "ABC-1", "run-1", 5);
        let json = serde_json::to_string(&event).unwrap_or_default();
        let back: ChangeEvent = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert!(back.is_resync());
        assert_eq!(back.record_id, "abc-1");
        assert_eq!(back.entity, "list");
    }

    #[test]
    fn a_webhook_message_named_resync_is_not_a_resync_request() {
        assert_eq!(
            CrmMessage::from_name("Resync"),
            CrmMessage::Other("Resync".into())
        );
    }
}
