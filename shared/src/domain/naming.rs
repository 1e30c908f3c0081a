//! Domain: how a source's group is named and described in CleverReach (docs/architecture.md §2 "Group
//! naming"): name = `groupprefix` + source name; a campaign activity's description becomes the
//! group's `receiver_info`.
//!
//! Both are recomputed from the source every time, so a renamed source gives a new group name
//! and the sync only has to compare. Groups are addressed by id, never by these names.

use super::source::{Source, SourceKind};

/// The group name for a source. The prefix is used exactly as configured (it may end in a
/// blank on purpose); the source name is trimmed. A source without a name still gets a
/// readable, distinct name made of its kind and id, so that its group can be found.
pub fn group_name(group_prefix: &str, source: &Source) -> String {
    let name = source.name.trim();
    if name.is_empty() {
        format!("{group_prefix}{}", unnamed(source.kind, &source.id))
    } else {
        format!("{group_prefix}{name}")
    }
}

/// The group's `receiver_info`: a campaign activity's description (trimmed), otherwise empty.
pub fn receiver_info(source: &Source) -> String {
    match source.kind {
        SourceKind::CampaignActivity => source
            .description
            .as_deref()
            .map(str::trim)
            .unwrap_or_default()
            .to_string(),
        SourceKind::Campaign | SourceKind::MarketingList => String::new(),
    }
}

fn unnamed(kind: SourceKind, id: &str) -> String {
    let id = id.trim();
    if id.is_empty() {
        format!("unnamed {}", kind.label())
    } else {
        format!("unnamed {} {id}", kind.label())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::domain::checklist::Checklist;

    fn source(kind: SourceKind, name: &str, description: Option<&str>) -> Source {
        Source {
            kind,
            id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            name: name.into(),
            checklist: Checklist::default(),
            sync_enabled: true,
            active: true,
            group_id: None,
            description: description.map(str::to_string),
        }
    }

    #[test]
    fn the_group_name_is_the_prefix_followed_by_the_source_name() {
        for kind in SourceKind::ALL {
            assert_eq!(
                group_name("CRM - ", &source(kind, "Spring Sale", None)),
                "CRM - Spring Sale",
                "{kind}"
            );
        }
    }

    #[test]
    fn without_a_prefix_the_group_has_the_source_name() {
        assert_eq!(
            group_name(
                "",
                &source(SourceKind::MarketingList, "Newsletter DE", None)
            ),
            "Newsletter DE"
        );
    }

    #[test]
    fn blanks_around_the_source_name_are_dropped_but_the_prefix_is_kept_exactly() {
        assert_eq!(
            group_name(
                " [D365] ",
                &source(SourceKind::Campaign, "  Summer \t", None)
            ),
            " [D365] Summer"
        );
    }

    #[test]
    fn renaming_the_source_gives_a_new_group_name() {
        let before = source(SourceKind::CampaignActivity, "Invitation", None);
        let after = Source {
            name: "Invitation (2nd wave)".into(),
            ..before.clone()
        };
        assert_ne!(group_name("X ", &before), group_name("X ", &after));
        assert_eq!(group_name("X ", &after), "X Invitation (2nd wave)");
    }

    #[test]
    fn a_source_without_a_name_gets_a_readable_name_with_its_kind_and_id() {
        let s = source(SourceKind::CampaignActivity, "   ", None);
        assert_eq!(
            group_name("CRM ", &s),
            "CRM unnamed campaign activity 0f8fad5b-d9cb-469f-a165-70867728950e"
        );
        let list = source(SourceKind::MarketingList, "", None);
        assert!(group_name("", &list).contains("marketing list"));
    }

    #[test]
    fn an_activity_description_becomes_the_receiver_info() {
        let s = source(
            SourceKind::CampaignActivity,
            "Invitation",
            Some("  Send to VIPs first\nthen everyone "),
        );
        assert_eq!(receiver_info(&s), "Send to VIPs first\nthen everyone");
        assert_eq!(
            receiver_info(&source(SourceKind::CampaignActivity, "x", None)),
            ""
        );
    }

    #[test]
    fn campaigns_and_lists_have_no_receiver_info_even_with_a_description() {
        for kind in [SourceKind::Campaign, SourceKind::MarketingList] {
            assert_eq!(
                receiver_info(&source(kind, "x", Some("text"))),
                "",
                "{kind}"
            );
        }
    }
}
