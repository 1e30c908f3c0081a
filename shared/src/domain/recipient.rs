//! Domain: recipients, the CRM people who may become receivers of a source's group.

use super::checklist::Checklist;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The CRM table a member of a source comes from. `transfersettings:entity` enables each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientKind {
    Contact,
    Account,
    Lead,
}

impl RecipientKind {
    pub const ALL: [RecipientKind; 3] = [
        RecipientKind::Contact,
        RecipientKind::Account,
        RecipientKind::Lead,
    ];

    /// The CRM logical name (`contact`, `account`, `lead`).
    pub fn logical_name(self) -> &'static str {
        match self {
            RecipientKind::Contact => "contact",
            RecipientKind::Account => "account",
            RecipientKind::Lead => "lead",
        }
    }

    pub fn from_logical_name(name: &str) -> Option<RecipientKind> {
        match name.trim().to_ascii_lowercase().as_str() {
            "contact" => Some(RecipientKind::Contact),
            "account" => Some(RecipientKind::Account),
            "lead" => Some(RecipientKind::Lead),
            _ => None,
        }
    }
}

impl fmt::Display for RecipientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.logical_name())
    }
}

/// The CRM table of the person a receiver stands for. An account is never a person: its
/// recipient is its primary contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonEntity {
    Contact,
    Lead,
}

impl PersonEntity {
    pub fn logical_name(self) -> &'static str {
        match self {
            PersonEntity::Contact => "contact",
            PersonEntity::Lead => "lead",
        }
    }

    pub fn from_logical_name(name: &str) -> Option<PersonEntity> {
        match name.trim().to_ascii_lowercase().as_str() {
            "contact" => Some(PersonEntity::Contact),
            "lead" => Some(PersonEntity::Lead),
            _ => None,
        }
    }
}

impl fmt::Display for PersonEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.logical_name())
    }
}

/// The CRM record a receiver stands for, stored on the receiver so that anything coming back
/// from CleverReach can be matched to its record. `id` is a lower-case GUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CrmRef {
    pub entity: PersonEntity,
    pub id: String,
}

impl CrmRef {
    pub fn new(entity: PersonEntity, id: impl AsRef<str>) -> Self {
        CrmRef {
            entity,
            id: id.as_ref().trim().to_ascii_lowercase(),
        }
    }
}

/// What the rule of docs/architecture.md §2 needs to know about one member of a source, read from the CRM.
/// Rule 6 (membership) is the reader's business: a `Recipient` is already a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// How the person is a member: as a contact, a lead, or as an account's primary contact.
    pub kind: RecipientKind,
    /// The person: the contact, the lead, or the account's primary contact.
    pub person: CrmRef,
    /// statecode 0; for an account: the account and its primary contact are both active.
    pub active: bool,
    /// The e-mail as stored in the CRM (not yet validated).
    pub email: Option<String>,
    /// Dynamics' "do not allow bulk e-mail"; for an account: set on the account or on its
    /// primary contact.
    pub do_not_bulk_email: bool,
    /// The person's newsletter checklist.
    pub checklist: Checklist,
    pub salutation: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Contact: parent account name; lead: `companyname`; account: the account name.
    pub company: Option<String>,
}
