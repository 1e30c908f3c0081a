//! Domain: sources, the CRM records (campaign, campaign activity, marketing list) whose
//! "sync with CleverReach" flag gives them one CleverReach group each (docs/architecture.md §1).

use super::checklist::Checklist;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The CRM table a source comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Campaign,
    CampaignActivity,
    MarketingList,
}

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [
        SourceKind::Campaign,
        SourceKind::CampaignActivity,
        SourceKind::MarketingList,
    ];

    /// The CRM logical name (`campaign`, `campaignactivity`, `list`).
    pub fn logical_name(self) -> &'static str {
        match self {
            SourceKind::Campaign => "campaign",
            SourceKind::CampaignActivity => "campaignactivity",
            SourceKind::MarketingList => "list",
        }
    }

    /// The Web API entity set (`campaigns`, `campaignactivities`, `lists`).
    pub fn entity_set(self) -> &'static str {
        match self {
            SourceKind::Campaign => "campaigns",
            SourceKind::CampaignActivity => "campaignactivities",
            SourceKind::MarketingList => "lists",
        }
    }

    /// The primary key attribute (`campaignid`, `activityid`, `listid`).
    pub fn primary_key(self) -> &'static str {
        match self {
            SourceKind::Campaign => "campaignid",
            SourceKind::CampaignActivity => "activityid",
            SourceKind::MarketingList => "listid",
        }
    }

    /// The attribute that names the source, and so its group (`name`, `subject`, `listname`).
    pub fn name_attribute(self) -> &'static str {
        match self {
            SourceKind::Campaign => "name",
            SourceKind::CampaignActivity => "subject",
            SourceKind::MarketingList => "listname",
        }
    }

    /// The kind in plain words, for texts administrators read.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Campaign => "campaign",
            SourceKind::CampaignActivity => "campaign activity",
            SourceKind::MarketingList => "marketing list",
        }
    }

    /// Reads a CRM logical name; case and surrounding blanks do not matter.
    pub fn from_logical_name(name: &str) -> Option<SourceKind> {
        let name = name.trim().to_ascii_lowercase();
        SourceKind::ALL
            .into_iter()
            .find(|k| k.logical_name() == name)
    }

    /// Reads a Web API entity set name; case and surrounding blanks do not matter.
    pub fn from_entity_set(name: &str) -> Option<SourceKind> {
        let name = name.trim().to_ascii_lowercase();
        SourceKind::ALL.into_iter().find(|k| k.entity_set() == name)
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.logical_name())
    }
}

/// The id of a CleverReach group, as stored on the source. Names are not unique in
/// CleverReach, so a group is always addressed by this id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupId(String);

/// A group id that is empty or blank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a CleverReach group id must not be empty")]
pub struct EmptyGroupId;

impl GroupId {
    /// Trims the id; an empty id is refused.
    pub fn new(id: impl AsRef<str>) -> Result<GroupId, EmptyGroupId> {
        let id = id.as_ref().trim();
        if id.is_empty() {
            return Err(EmptyGroupId);
        }
        Ok(GroupId(id.to_string()))
    }

    /// Reads the id stored on a source, where empty means "no group yet".
    pub fn from_stored(value: Option<&str>) -> Option<GroupId> {
        value.and_then(|v| GroupId::new(v).ok())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for GroupId {
    type Error = EmptyGroupId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        GroupId::new(value)
    }
}

impl From<GroupId> for String {
    fn from(value: GroupId) -> Self {
        value.0
    }
}

/// A source as read from the CRM: what naming, the rule and the sync need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    /// The record's GUID.
    pub id: String,
    /// The value of [`SourceKind::name_attribute`] (empty when not set).
    pub name: String,
    /// The newsletter types this source sends (`crc_checklist`).
    pub checklist: Checklist,
    /// `crc_syncwithcleverreach`.
    pub sync_enabled: bool,
    /// statecode 0.
    pub active: bool,
    /// `crc_groupid`: the group created for this source, if any.
    pub group_id: Option<GroupId>,
    /// A campaign activity's `description`; `None` for other kinds or when not set.
    pub description: Option<String>,
}

/// How a marketing list selects its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListShape {
    /// Members come from the list's query (a dynamic list).
    pub dynamic: bool,
    /// Which table the members are.
    pub member_kind: super::recipient::RecipientKind,
    /// A dynamic list's query (FetchXML), as stored.
    pub query: Option<String>,
}

/// A source as read from the CRM, with what the sync needs besides the rule's view.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub source: Source,
    /// Marketing lists only.
    pub list: Option<ListShape>,
    /// The source's checklist could not be read (the source then has an empty checklist).
    pub checklist_problem: Option<String>,
    /// An administrator asked for a full resync ("Resync now").
    pub resync_requested: bool,
    /// An administrator confirmed a removal the brake held back (`domain::brake`): the next
    /// full reconcile or deletion may go ahead once.
    pub removals_confirmed: bool,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn each_kind_names_its_crm_table_key_and_name_attribute() {
        let expected = [
            (
                SourceKind::Campaign,
                "campaign",
                "campaigns",
                "campaignid",
                "name",
            ),
            (
                SourceKind::CampaignActivity,
                "campaignactivity",
                "campaignactivities",
                "activityid",
                "subject",
            ),
            (
                SourceKind::MarketingList,
                "list",
                "lists",
                "listid",
                "listname",
            ),
        ];
        for (kind, logical, set, key, name) in expected {
            assert_eq!(kind.logical_name(), logical);
            assert_eq!(kind.entity_set(), set);
            assert_eq!(kind.primary_key(), key);
            assert_eq!(kind.name_attribute(), name);
            assert_eq!(SourceKind::from_logical_name(logical), Some(kind));
            assert_eq!(SourceKind::from_entity_set(set), Some(kind));
        }
    }

    #[test]
    fn logical_names_are_read_regardless_of_case_and_blanks() {
        assert_eq!(
            SourceKind::from_logical_name(" CampaignActivity "),
            Some(SourceKind::CampaignActivity)
        );
        assert_eq!(SourceKind::from_logical_name("contact"), None);
        assert_eq!(SourceKind::from_logical_name(""), None);
    }

    #[test]
    fn a_group_id_is_trimmed_and_must_not_be_empty() {
        assert_eq!(GroupId::new(" 12345 ").unwrap().as_str(), "12345");
        assert_eq!(GroupId::new("  "), Err(EmptyGroupId));
        assert_eq!(GroupId::from_stored(Some("")), None);
        assert_eq!(GroupId::from_stored(None), None);
        assert_eq!(
            GroupId::from_stored(Some("77")),
            Some(GroupId::new("77").unwrap())
        );
    }

    #[test]
    fn a_group_id_travels_as_a_plain_json_text_and_an_empty_one_is_refused() {
        let id = GroupId::new("42").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"42\"");
        assert_eq!(serde_json::from_str::<GroupId>("\"42\"").unwrap(), id);
        assert!(serde_json::from_str::<GroupId>("\"\"").is_err());
    }
}
