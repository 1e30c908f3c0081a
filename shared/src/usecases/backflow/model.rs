//! The back-flow's words: event kinds, jobs, limits, the run summary, managed groups and the
//! durable cursor. Shared by the engine and the two kinds of event it applies.

use crate::domain::checklist::NewsletterTypeId;
use crate::domain::settings::Settings;
use crate::ports::crm::ManagedSource;
use crate::ports::newsletter::{FilterRule, ReceiverRecord};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::warn;

/// Who the connector names as the author of checklist changes that came from CleverReach.
pub const MODIFIED_BY: &str = "CleverReach";

/// One kind of CleverReach event the jobs read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The receiver was deactivated in the group (unsubscribe link, CleverReach user).
    Unsubscribed,
    /// A mailing to the receiver bounced.
    Bounced,
    /// The receiver became active (a sign-up through a CleverReach form, an import).
    Activated,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Unsubscribed => "unsubscribed",
            EventKind::Bounced => "bounced",
            EventKind::Activated => "activated",
        }
    }

    pub fn rule(self, after: DateTime<Utc>) -> FilterRule {
        match self {
            EventKind::Unsubscribed => FilterRule::DeactivatedAfter(after),
            EventKind::Bounced => FilterRule::BouncedAfter(after),
            EventKind::Activated => FilterRule::ActivatedAfter(after),
        }
    }

    /// When the event happened, as CleverReach reports it; `None` when the receiver does not
    /// carry a usable time for it.
    pub fn time_of(self, record: &ReceiverRecord) -> Option<DateTime<Utc>> {
        match self {
            EventKind::Unsubscribed => record.deactivated,
            EventKind::Bounced => record.bounced,
            EventKind::Activated => record.activated,
        }
    }
}

/// Limits of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Stop starting new work after this long (keep it well under the function's timeout:
    /// the event in hand is finished, and the cursor saved).
    pub budget: Duration,
    /// Receivers asked for per filter page (1..=5000).
    pub page_size: usize,
    /// Stop after this many events were applied (all kinds and groups together; events found
    /// applied before do not count, so a resumed run always gets further); `None`: no cap.
    pub max_events: Option<usize>,
    /// How far back a new pass starts before the previous pass began.
    pub overlap: Duration,
}

impl Default for RunLimits {
    /// 10 minutes (the functions run with a 15-minute timeout), pages of 500, no cap, 5
    /// minutes of overlap.
    fn default() -> Self {
        RunLimits {
            budget: Duration::from_secs(600),
            page_size: 500,
            max_events: None,
            overlap: Duration::from_secs(300),
        }
    }
}

/// What one run did; logged and returned by the handlers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Managed groups looked at.
    pub groups: usize,
    /// Events read from CleverReach (including ones applied before).
    pub events: usize,
    /// Events applied in this run.
    pub applied: usize,
    /// Events that had been applied before (re-read after an interruption or in the overlap).
    pub already_done: usize,
    /// Events that need nothing (e.g. a receiver the connector itself created).
    pub ignored: usize,
    /// Bad input: events or receivers that could not be used; each is described in `problems`.
    pub skipped: usize,
    pub receiver_states_created: usize,
    pub checklists_written: usize,
    pub people_deactivated: usize,
    pub leads_created: usize,
    pub leads_updated: usize,
    /// Sign-up leads made members of their group's sources (added to a static lead list, or
    /// linked to a campaign or campaign activity), so that a full resync keeps the receiver.
    pub leads_linked: usize,
    /// Sign-ups kept as leads that a source of their group cannot hold (a static list of
    /// contacts or accounts, a dynamic list, a lead linked elsewhere already): a full resync
    /// of that source removes the receiver from the group. One line per event and source,
    /// with ids only.
    pub signups_at_risk: Vec<String>,
    /// Readable descriptions of bad input and failures (never personal data).
    pub problems: Vec<String>,
    /// Groups whose events could not all be read or applied in this run, with the reason.
    pub failed_groups: Vec<String>,
    /// Every pass of every group and kind finished: nothing is left for the next run.
    pub complete: bool,
    /// A scheduled start before `scheduleminutes` had passed since the last: nothing was done.
    pub not_due: bool,
}

impl RunSummary {
    pub(crate) fn problem(&mut self, text: String) {
        warn!(problem = %text, "back-flow: skipped");
        self.skipped += 1;
        self.problems.push(text);
    }
}

/// How applying one event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    AlreadyDone,
    Ignored,
    /// Bad input; already recorded in the summary.
    Skipped,
}

/// A managed group and the newsletter types its sources say yes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedGroup {
    pub id: String,
    pub types: Vec<NewsletterTypeId>,
}

/// The managed groups, each once; a group linked to several sources gets all their types.
/// A source whose checklist cannot be read contributes no types and is reported.
pub fn managed_groups(sources: &[ManagedSource], summary: &mut RunSummary) -> Vec<ManagedGroup> {
    let mut groups: BTreeMap<String, Vec<NewsletterTypeId>> = BTreeMap::new();
    for source in sources {
        let types = groups.entry(source.group_id.clone()).or_default();
        match &source.checklist {
            Ok(checklist) => {
                for t in checklist.yes_types() {
                    if !types.contains(&t) {
                        types.push(t);
                    }
                }
            }
            Err(problem) => summary.problems.push(format!(
                "{} {}: its checklist cannot be read ({problem}); group {} gets no newsletter types from it",
                source.kind, source.id, source.group_id
            )),
        }
    }
    groups
        .into_iter()
        .map(|(id, types)| ManagedGroup { id, types })
        .collect()
}

/// A job's progress for one group and event kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Events after this unix time are read (0: from the beginning).
    pub since: i64,
    /// When the unfinished pass began (unix time); `None` between passes.
    #[serde(default)]
    pub pass_started: Option<i64>,
    /// The next page of the unfinished pass.
    #[serde(default)]
    pub page: u32,
}

/// The key of a cursor row in the settings table.
pub fn cursor_key(job: &str, group_id: &str, kind: EventKind) -> String {
    format!("{CURSOR_KEY_PREFIX}{job}:{group_id}:{}", kind.name())
}

/// Cursor keys start with this (not `cleverreach:`, so the settings reader passes them by).
pub const CURSOR_KEY_PREFIX: &str = "connector:cursor:";

/// A time as the CRM stores it (UTC, seconds).
pub fn crm_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The two scheduled jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Unsubscribes and bounces → receiver-state rows, checklists, deactivations.
    ReceiverState,
    /// New active receivers unknown to the CRM → leads.
    LeadSync,
}

impl Job {
    /// The job's name in cursor keys and logs.
    pub fn name(self) -> &'static str {
        match self {
            Job::ReceiverState => "receiver-state-sync",
            Job::LeadSync => "lead-sync",
        }
    }

    pub fn kinds(self) -> &'static [EventKind] {
        match self {
            Job::ReceiverState => &[EventKind::Unsubscribed, EventKind::Bounced],
            Job::LeadSync => &[EventKind::Activated],
        }
    }
}

/// What every event of a run needs besides the connector.
#[derive(Debug, Clone)]
pub struct JobContext {
    pub settings: Settings,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::checklist::Checklist;
    use crate::domain::source::SourceKind;

    #[test]
    fn a_cursor_round_trips_and_an_old_value_without_pass_fields_reads() {
        let c = Cursor {
            since: 5,
            pass_started: Some(9),
            page: 3,
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Cursor>(&text).unwrap(), c);
        assert_eq!(
            serde_json::from_str::<Cursor>(r#"{"since":42}"#).unwrap(),
            Cursor {
                since: 42,
                pass_started: None,
                page: 0
            }
        );
    }

    #[test]
    fn a_group_linked_to_two_sources_gets_both_sources_types_once() {
        let source = |id: &str, group: &str, json: &str| ManagedSource {
            kind: SourceKind::MarketingList,
            id: id.into(),
            group_id: group.into(),
            checklist: Checklist::parse(json).map_err(|e| e.to_string()),
            list: None,
            synced: true,
        };
        let mut summary = RunSummary::default();
        let groups = managed_groups(
            &[
                source("a", "1", r#"[{"id":0,"state":1},{"id":1,"state":2}]"#),
                source("b", "1", r#"[{"id":1,"state":1},{"id":0,"state":1}]"#),
                source("c", "2", r#"[{"id":0,"state":7}]"#),
            ],
            &mut summary,
        );
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0].types,
            vec![NewsletterTypeId(0), NewsletterTypeId(1)]
        );
        assert!(groups[1].types.is_empty());
        assert_eq!(summary.problems.len(), 1, "{:?}", summary.problems);
        assert!(summary.problems[0].contains("state 7"));
    }
}
