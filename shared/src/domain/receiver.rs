//! Domain: receivers, the people inside a CleverReach group, as the connector sees them.

use super::email::Email;
use super::recipient::CrmRef;
use serde::{Deserialize, Serialize};

/// The person data a receiver carries (CleverReach global attributes). Empty text = not set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PersonData {
    pub salutation: String,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
}

/// What a receiver should look like according to the CRM (docs/architecture.md §2 "Receiver data").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverData {
    pub email: Email,
    pub person: PersonData,
    pub crm: CrmRef,
}

/// A receiver's state in its group as CleverReach reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverState {
    Active,
    /// Unsubscribed or otherwise deactivated inside CleverReach.
    Deactivated,
    Bounced,
    /// On the account's blacklist.
    Blacklisted,
}

impl ReceiverState {
    /// Deactivated, bounced and blacklisted receivers are opt-outs: the connector never makes
    /// them active again (docs/architecture.md §2 "Opt-outs are never undone").
    pub fn is_opted_out(self) -> bool {
        !matches!(self, ReceiverState::Active)
    }
}

/// One receiver currently in a group, as read from CleverReach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentReceiver {
    pub email: Email,
    pub state: ReceiverState,
    pub person: PersonData,
    /// The CRM record stored on the receiver, when the connector put it there.
    pub crm: Option<CrmRef>,
}

/// One member of a source after the rule was applied: the planner's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// The rule says this person belongs to the group with this data.
    Wanted(ReceiverData),
    /// The person said "do not allow bulk e-mail"; another record with the same address must
    /// not bring them back into the group (an explicit opt-out wins for a shared address).
    OptedOut(Email),
}
