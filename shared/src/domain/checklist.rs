//! Domain: the newsletter checklist stored as JSON on sources and recipients.
//!
//! `[{"id":0,"state":1,"description":"Information","modifiedby":"","modifiedon":"","position":1}, …]`
//! state 0 = no choice, 1 = yes, 2 = no.

use serde::{Deserialize, Serialize};

/// The id of a newsletter type (configured in `typjson`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NewsletterTypeId(pub i64);

/// A person's (or a source's) choice for one newsletter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChoiceState {
    /// 0: no choice made.
    #[default]
    NoChoice,
    /// 1: yes (green tick).
    Yes,
    /// 2: no (red cross).
    No,
}

/// One row of a checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecklistEntry {
    pub id: NewsletterTypeId,
    pub state: ChoiceState,
    pub description: String,
    pub modified_by: String,
    pub modified_on: String,
    pub position: i64,
}

/// A checklist: one entry per newsletter type. A type without an entry counts as no choice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checklist {
    pub entries: Vec<ChecklistEntry>,
}

impl Checklist {
    /// The state for one newsletter type; no entry means no choice.
    pub fn state_of(&self, id: NewsletterTypeId) -> ChoiceState {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.state)
            .unwrap_or_default()
    }
}
