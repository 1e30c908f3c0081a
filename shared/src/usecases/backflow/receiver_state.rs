//! Use case: one unsubscribe or bounce read back from CleverReach (job `receiver-state-sync`,
//! docs/architecture.md §3). Effects first, the receiver-state row last: the row is the mark that the event
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

use super::model::{
    EventKind, JobContext, MODIFIED_BY, ManagedGroup, Outcome, RunSummary, crm_time,
};
use crate::domain::change::ChangeEvent;
use crate::domain::checklist::{Checklist, ChecklistEntry, ChoiceState};
use crate::domain::ids::derived_id;
use crate::domain::recipient::{CrmRef, PersonEntity, RecipientKind};
use crate::ports::crm::{PersonRecord, ReceiverEvent, ReceiverStateRow};
use crate::ports::newsletter::ReceiverRecord;
use crate::usecases::connector::{Connector, SyncError};
use crate::usecases::people;
use chrono::{DateTime, Utc};

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
pub async fn recipients_of(
    conn: &Connector,
    record: &ReceiverRecord,
) -> Result<Vec<PersonRecord>, SyncError> {
    if let Some(stored) = &record.receiver.crm
        && let Some(person) = conn.persons.person(stored).await?
    {
        return Ok(vec![person]);
    }
    let mut found = Vec::new();
    for (kind, id) in conn
        .people
        .people_with_email(record.receiver.email.as_str())
        .await?
    {
        let entity = match kind {
            RecipientKind::Lead => PersonEntity::Lead,
            _ => PersonEntity::Contact,
        };
        if let Some(person) = conn.persons.person(&CrmRef::new(entity, &id)).await? {
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

pub async fn apply(
    conn: &Connector,
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
    if conn.receiver_states.receiver_state_exists(&row_id).await? {
        return Ok(Outcome::AlreadyDone);
    }
    let people = recipients_of(conn, record).await?;
    let mut details = Vec::new();
    let mut said_no = Vec::new();
    for person in &people {
        let who = format!("{} {}", person.person.entity, person.person.id);
        match kind {
            EventKind::Unsubscribed => match say_no(conn, context, group, at, person).await? {
                SaidNo::Unreadable(e) => {
                    summary.problem(format!(
                        "group {}: the checklist of {who} cannot be read ({e}); it was not changed",
                        group.id
                    ));
                    details.push(format!(
                        "{who}: checklist not changed, it cannot be read: {e}"
                    ));
                }
                SaidNo::NoTypes => details.push(format!(
                    "{who}: checklist not changed, the group's sources say yes to no newsletter type"
                )),
                SaidNo::Written => {
                    summary.checklists_written += 1;
                    details.push(format!("{who}: checklist set to no"));
                    said_no.push(person.person.clone());
                }
                SaidNo::Already => {
                    details.push(format!("{who}: checklist already said no"));
                    said_no.push(person.person.clone());
                }
                SaidNo::Gone => details.push(format!("{who}: deleted meanwhile")),
            },
            EventKind::Bounced => {
                let wanted = match person.person.entity {
                    PersonEntity::Contact => context.settings.bounce.disable_contact,
                    PersonEntity::Lead => context.settings.bounce.disable_lead,
                };
                // statecode 0 is "active" for contacts and "open" for leads.
                if !wanted {
                    details.push(format!("{who}: left active (bounce settings)"));
                } else if person.active == Some(true) {
                    conn.persons.deactivate_person(&person.person).await?;
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
    // The "no" travels before the row marks the event applied: every other group sending these
    // types drops the person now, not at its next full reconcile; an event applied again
    // (a failure in between) sends it again.
    reconcile_people(conn, context, &row_id, &said_no).await?;
    let row = ReceiverStateRow {
        id: row_id,
        name: format!("{} in group {}", kind.name(), group.id),
        event_key: format!("{}|{}|{}|{}", group.id, email, kind.name(), at.timestamp()),
        email: record.receiver.email.clone(),
        group_id: group.id.clone(),
        event: match kind {
            EventKind::Bounced => ReceiverEvent::Bounced,
            _ => ReceiverEvent::Unsubscribed,
        },
        time: crm_time(at),
        recipient: people.first().map(|p| p.person.clone()),
        details: details.join("; "),
    };
    if conn.receiver_states.create_receiver_state(&row).await? {
        summary.receiver_states_created += 1;
    }
    Ok(Outcome::Applied)
}

/// How writing a "no" ended.
enum SaidNo {
    Written,
    Already,
    NoTypes,
    Unreadable(String),
    /// The record was deleted while the "no" was being written.
    Gone,
}

/// Conditional writes of one checklist before giving up for now (the message is retried).
const WRITE_ATTEMPTS: usize = 5;

/// Sets the group's types to "no" on the person's checklist, by a write that fails when the row
/// changed since it was read (a marketer saving the form, another unsubscribe of the same
/// person worked at the same time); then it is read and applied again, so neither change is
/// lost.
async fn say_no(
    conn: &Connector,
    context: &JobContext,
    group: &ManagedGroup,
    at: DateTime<Utc>,
    person: &PersonRecord,
) -> Result<SaidNo, SyncError> {
    if group.types.is_empty() {
        return Ok(SaidNo::NoTypes);
    }
    let mut current = person.clone();
    for _ in 0..WRITE_ATTEMPTS {
        let checklist = match Checklist::parse(&current.checklist) {
            Ok(checklist) => checklist,
            Err(e) => return Ok(SaidNo::Unreadable(e.to_string())),
        };
        let Some(updated) = unsubscribed_checklist(&checklist, context, group, at) else {
            return Ok(SaidNo::Already);
        };
        if conn
            .persons
            .write_checklist_if(&current.person, &updated, current.version.as_ref())
            .await?
        {
            return Ok(SaidNo::Written);
        }
        match conn.persons.person(&current.person).await? {
            Some(again) => current = again,
            None => return Ok(SaidNo::Gone),
        }
    }
    Err(SyncError::Crm(crate::ports::crm::CrmError::Unavailable {
        message: format!(
            "the checklist of {} {} kept changing while a 'no' was written; tried {WRITE_ATTEMPTS} times",
            person.person.entity, person.person.id
        ),
        retry_after: None,
    }))
}

/// Reconciles these people everywhere: queued on their family's queue (the row id keys the
/// requests, so an event read twice queues once), or here when there is no queue.
async fn reconcile_people(
    conn: &Connector,
    context: &JobContext,
    row_id: &str,
    people: &[CrmRef],
) -> Result<(), SyncError> {
    for person in people {
        let kind = match person.entity {
            PersonEntity::Contact => RecipientKind::Contact,
            PersonEntity::Lead => RecipientKind::Lead,
        };
        let request = ChangeEvent::resync_request(
            kind.logical_name(),
            &person.id,
            row_id,
            (conn.now)() * 1000,
        );
        match &conn.follow_up {
            Some(queue) => {
                queue
                    .enqueue(
                        crate::domain::routing::QueueFamily::for_people(kind),
                        &request,
                    )
                    .await?;
            }
            None => {
                people::on_people_change(conn, &context.settings, kind, &[request]).await?;
            }
        }
    }
    Ok(())
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
