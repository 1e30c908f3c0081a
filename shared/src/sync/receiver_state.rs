//! Use case: one unsubscribe or bounce read back from CleverReach (job `receiver-state-sync`,
//! DESIGN §3). Effects first, the receiver-state row last: the row is the mark that the event
//! was applied, so an event found again (same group, address, kind and time → same row id)
//! changes nothing, and one interrupted half-way is applied again in full.
//!
//! - Unsubscribe: the recipient's checklist entries for the group's newsletter types become
//!   2 (no), by "CleverReach", at the event time. The connector's own CRM writes do not come
//!   back through the webhook intake, and the rule then keeps the person out of the group.
//! - Bounce: the contact or lead is deactivated when `disablecontact` / `disablelead` is set.
//!
//! The recipient is the CRM record stored on the receiver; when there is none (or it is gone),
//! every contact and lead with the receiver's address.

use super::backflow::{
    EventKind, JobContext, MODIFIED_BY, ManagedGroup, Outcome, RunSummary, crm_time, derived_id,
};
use super::{Connector, SyncError};
use crate::adapters::cleverreach::{ReceiverRecord, TokenStore};
use crate::adapters::dataverse::crm::PersonRecord;
use crate::adapters::dataverse::schema;
use crate::domain::checklist::{Checklist, ChecklistEntry, ChoiceState};
use crate::domain::recipient::{CrmRef, PersonEntity, RecipientKind};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// The id of the receiver-state row of one event.
pub fn receiver_state_id(group_id: &str, email: &str, kind: EventKind, at: i64) -> String {
    derived_id(
        "receiverstate",
        &[
            group_id,
            &email.trim().to_lowercase(),
            kind.name(),
            &at.to_string(),
        ],
    )
}

/// The CRM records a receiver stands for: the one stored on it if it still exists, else every
/// contact and lead with its address.
pub(crate) async fn recipients_of<S: TokenStore>(
    conn: &Connector<S>,
    record: &ReceiverRecord,
) -> Result<Vec<PersonRecord>, SyncError> {
    if let Some(stored) = &record.receiver.crm
        && let Some(person) = conn.crm.person(stored).await?
    {
        return Ok(vec![person]);
    }
    let mut found = Vec::new();
    for (kind, id) in conn
        .crm
        .people_with_email(record.receiver.email.as_str())
        .await?
    {
        let entity = match kind {
            RecipientKind::Lead => PersonEntity::Lead,
            _ => PersonEntity::Contact,
        };
        if let Some(person) = conn.crm.person(&CrmRef::new(entity, &id)).await? {
            found.push(person);
        }
    }
    Ok(found)
}

/// The checklist with every one of `group`'s types set to "no" at `at`; `None` when nothing
/// changes. Missing entries are added with the configured description and position.
fn unsubscribed_checklist(
    current: &Checklist,
    context: &JobContext,
    group: &ManagedGroup,
    at: DateTime<Utc>,
) -> Option<Checklist> {
    let mut checklist = current.clone();
    let mut changed = false;
    let when = crm_time(at);
    for t in &group.types {
        if checklist.entries.iter().any(|e| e.id == *t) {
            changed |= checklist.set_state(*t, ChoiceState::No, MODIFIED_BY, &when);
            continue;
        }
        let mut entry = match context
            .settings
            .newsletter_types
            .iter()
            .find(|nt| nt.id == *t)
        {
            Some(configured) => ChecklistEntry::for_type(configured, ChoiceState::No),
            None => ChecklistEntry {
                id: *t,
                state: ChoiceState::No,
                ..ChecklistEntry::default()
            },
        };
        entry.modified_by = MODIFIED_BY.to_string();
        entry.modified_on = when.clone();
        checklist.entries.push(entry);
        changed = true;
    }
    changed.then_some(checklist)
}

pub(crate) async fn apply<S: TokenStore>(
    conn: &Connector<S>,
    context: &JobContext,
    group: &ManagedGroup,
    kind: EventKind,
    record: &ReceiverRecord,
    summary: &mut RunSummary,
) -> Result<Outcome, SyncError> {
    let Some(at) = kind.time_of(record) else {
        summary.problem(format!(
            "group {}: receiver {} is reported as {} but has no valid {} time (state unknown); skipped",
            group.id,
            record.id,
            kind.name(),
            kind.name()
        ));
        return Ok(Outcome::Skipped);
    };
    let email = record.receiver.email.as_str();
    let row_id = receiver_state_id(&group.id, email, kind, at.timestamp());
    if conn.crm.receiver_state_exists(&row_id).await? {
        return Ok(Outcome::AlreadyDone);
    }
    let people = recipients_of(conn, record).await?;
    let mut details = Vec::new();
    for person in &people {
        let who = format!("{} {}", person.person.entity, person.person.id);
        match kind {
            EventKind::Unsubscribed => match Checklist::parse(&person.checklist) {
                Err(e) => {
                    summary.problem(format!(
                        "group {}: the checklist of {who} cannot be read ({e}); it was not changed",
                        group.id
                    ));
                    details.push(format!(
                        "{who}: checklist not changed, it cannot be read: {e}"
                    ));
                }
                Ok(current) => {
                    if group.types.is_empty() {
                        details.push(format!(
                            "{who}: checklist not changed, the group's sources say yes to no newsletter type"
                        ));
                    } else if let Some(updated) =
                        unsubscribed_checklist(&current, context, group, at)
                    {
                        conn.crm.write_checklist(&person.person, &updated).await?;
                        summary.checklists_written += 1;
                        details.push(format!("{who}: checklist set to no"));
                    } else {
                        details.push(format!("{who}: checklist already said no"));
                    }
                }
            },
            EventKind::Bounced => {
                let wanted = match person.person.entity {
                    PersonEntity::Contact => context.settings.bounce.disable_contact,
                    PersonEntity::Lead => context.settings.bounce.disable_lead,
                };
                // statecode 0 is "active" for contacts and "open" for leads.
                if !wanted {
                    details.push(format!("{who}: left active (bounce settings)"));
                } else if person.statecode == Some(0) {
                    conn.crm.deactivate_person(&person.person).await?;
                    summary.people_deactivated += 1;
                    details.push(format!("{who}: deactivated"));
                } else {
                    details.push(format!("{who}: already inactive"));
                }
            }
            EventKind::Activated => {}
        }
    }
    if people.is_empty() {
        details.push("no contact or lead found for this receiver".to_string());
    }
    let mut body = json!({
        schema::RECEIVER_STATE_NAME: schema::fit(&format!("{} in group {}", kind.name(), group.id), 200),
        schema::RECEIVER_STATE_KEY: format!("{}|{}|{}|{}", group.id, email, kind.name(), at.timestamp()),
        schema::RECEIVER_STATE_EMAIL: email,
        schema::RECEIVER_STATE_GROUP: group.id,
        schema::RECEIVER_STATE_EVENT: match kind {
            EventKind::Bounced => schema::EVENT_BOUNCED,
            _ => schema::EVENT_UNSUBSCRIBED,
        },
        schema::RECEIVER_STATE_TIME: crm_time(at),
        schema::RECEIVER_STATE_DETAILS: schema::fit(&details.join("; "), schema::RECEIVER_STATE_DETAILS_MAX),
    });
    if let (Some(first), Value::Object(map)) = (people.first(), &mut body) {
        let (navigation, set) = match first.person.entity {
            PersonEntity::Contact => (schema::RECEIVER_STATE_CONTACT_NAV, "contacts"),
            PersonEntity::Lead => (schema::RECEIVER_STATE_LEAD_NAV, "leads"),
        };
        map.insert(
            format!("{navigation}@odata.bind"),
            Value::String(format!("/{set}({})", first.person.id)),
        );
    }
    if conn.crm.create_receiver_state(&row_id, &body).await? {
        summary.receiver_states_created += 1;
    }
    Ok(Outcome::Applied)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::checklist::NewsletterTypeId;
    use crate::domain::settings::Settings;

    fn context() -> JobContext {
        JobContext {
            settings: Settings::default(),
        }
    }

    #[test]
    fn an_unsubscribe_sets_the_groups_types_to_no_and_keeps_the_others() {
        let current = Checklist::parse(
            r#"[{"id":0,"state":1,"description":"Information","modifiedby":"","modifiedon":"","position":1},
                {"id":1,"state":1,"description":"Werbung","modifiedby":"x","modifiedon":"y","position":2}]"#,
        )
        .unwrap();
        let group = ManagedGroup {
            id: "7".into(),
            types: vec![NewsletterTypeId(0)],
        };
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let updated = unsubscribed_checklist(&current, &context(), &group, at).unwrap();
        assert_eq!(updated.state_of(NewsletterTypeId(0)), ChoiceState::No);
        assert_eq!(updated.entries[0].modified_by, "CleverReach");
        assert_eq!(updated.entries[0].modified_on, "2023-11-14T22:13:20Z");
        assert_eq!(updated.entries[1], current.entries[1]);
        assert!(unsubscribed_checklist(&updated, &context(), &group, at).is_none());
    }

    #[test]
    fn a_missing_entry_is_added_as_no_with_the_configured_description() {
        let group = ManagedGroup {
            id: "7".into(),
            types: vec![NewsletterTypeId(1)],
        };
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let updated =
            unsubscribed_checklist(&Checklist::default(), &context(), &group, at).unwrap();
        assert_eq!(updated.entries.len(), 1);
        assert_eq!(updated.entries[0].description, "Werbung und Spiele");
        assert_eq!(updated.entries[0].state, ChoiceState::No);
    }

    #[test]
    fn the_row_id_ignores_the_case_of_the_address_but_not_the_time() {
        let a = receiver_state_id("7", "Anna@Example.com", EventKind::Unsubscribed, 5);
        assert_eq!(
            a,
            receiver_state_id("7", "anna@example.com ", EventKind::Unsubscribed, 5)
        );
        assert_ne!(
            a,
            receiver_state_id("7", "anna@example.com", EventKind::Unsubscribed, 6)
        );
    }
}
