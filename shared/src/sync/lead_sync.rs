//! Use case: one new active receiver read back from CleverReach (job `lead-sync`, DESIGN §3).
//! A receiver that no contact or lead in the CRM has the address of (someone who signed up
//! through a CleverReach form) becomes a lead with its e-mail, names, company and salutation,
//! and the group's newsletter types set to 1.
//!
//! Idempotent without a marker: the lead's id is derived from the address, so a rerun finds
//! the lead (or gets "exists" on create) and creates nothing twice. The same person in a second
//! group adds that group's types to the same lead; a "no" someone set is never turned into
//! "yes". Receivers the connector wrote itself carry their CRM record and are passed by.

use super::backflow::{
    JobContext, MODIFIED_BY, ManagedGroup, Outcome, RunSummary, crm_time, derived_id,
};
use super::{Connector, SyncError};
use crate::adapters::cleverreach::{ReceiverRecord, TokenStore};
use crate::adapters::dataverse::schema;
use crate::domain::checklist::{Checklist, ChoiceState};
use crate::domain::receiver::ReceiverState;
use crate::domain::recipient::{CrmRef, PersonEntity, RecipientKind};
use serde_json::{Map, Value, json};

/// The id of the lead made for this address.
pub fn lead_id(email: &str) -> String {
    derived_id("lead", &[&email.trim().to_lowercase()])
}

/// `current` with the group's types set to yes where no choice was made; `None` when nothing
/// changes. An explicit "no" stays.
fn with_group_types(current: &Checklist, group: &ManagedGroup, when: &str) -> Option<Checklist> {
    let mut checklist = current.clone();
    let mut changed = false;
    for t in &group.types {
        if checklist.state_of(*t) == ChoiceState::NoChoice {
            changed |= checklist.set_state(*t, ChoiceState::Yes, MODIFIED_BY, when);
        }
    }
    changed.then_some(checklist)
}

pub(crate) async fn apply<S: TokenStore>(
    conn: &Connector<S>,
    context: &JobContext,
    group: &ManagedGroup,
    record: &ReceiverRecord,
    summary: &mut RunSummary,
) -> Result<Outcome, SyncError> {
    let receiver = &record.receiver;
    if receiver.state != ReceiverState::Active || receiver.crm.is_some() {
        return Ok(Outcome::Ignored);
    }
    if group.types.is_empty() {
        summary.problem(format!(
            "group {}: receiver {} signed up, but the group's sources say yes to no newsletter type; no lead made",
            group.id, record.id
        ));
        return Ok(Outcome::Skipped);
    }
    let email = receiver.email.as_str();
    let ours = lead_id(email);
    let when = crm_time(record.activated.unwrap_or_else(chrono::Utc::now));
    let people = conn.crm.people_with_email(email).await?;
    if people.is_empty() {
        let checklist = with_group_types(
            &Checklist::default().normalized_for(&context.settings.newsletter_types),
            group,
            &when,
        )
        .unwrap_or_default();
        let mut body = Map::new();
        body.insert("emailaddress1".into(), json!(email));
        body.insert(
            "subject".into(),
            json!(format!(
                "Newsletter sign-up in CleverReach (group {})",
                group.id
            )),
        );
        body.insert(schema::CHECKLIST.into(), json!(checklist.to_json()));
        let person = &receiver.person;
        for (column, value, max) in [
            ("firstname", &person.first_name, 50),
            ("lastname", &person.last_name, 50),
            ("companyname", &person.company, 100),
            ("salutation", &person.salutation, 100),
        ] {
            let value = value.trim();
            if !value.is_empty() {
                body.insert(column.into(), json!(schema::fit(value, max)));
            }
        }
        if conn.crm.create_lead(&ours, &Value::Object(body)).await? {
            summary.leads_created += 1;
            return Ok(Outcome::Applied);
        }
        // Created meanwhile by another run: fall through to adding this group's types.
    } else if people
        .iter()
        .any(|(kind, id)| !(*kind == RecipientKind::Lead && *id == ours))
    {
        // Someone in the CRM has this address already: not ours to create.
        return Ok(Outcome::Ignored);
    }
    let lead = CrmRef::new(PersonEntity::Lead, &ours);
    let Some(current) = conn.crm.person(&lead).await? else {
        return Ok(Outcome::Ignored);
    };
    let checklist = match Checklist::parse(&current.checklist) {
        Ok(c) => c,
        Err(e) => {
            summary.problem(format!(
                "group {}: the checklist of lead {ours} cannot be read ({e}); the group's types were not added",
                group.id
            ));
            return Ok(Outcome::Skipped);
        }
    };
    match with_group_types(&checklist, group, &when) {
        Some(updated) => {
            conn.crm.write_checklist(&lead, &updated).await?;
            summary.leads_updated += 1;
            Ok(Outcome::Applied)
        }
        None => Ok(Outcome::AlreadyDone),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::domain::checklist::NewsletterTypeId;

    #[test]
    fn a_second_group_adds_its_types_but_never_overrides_a_no() {
        let current =
            Checklist::parse(r#"[{"id":0,"state":1},{"id":1,"state":2},{"id":2,"state":0}]"#)
                .unwrap();
        let group = ManagedGroup {
            id: "9".into(),
            types: vec![NewsletterTypeId(1), NewsletterTypeId(2)],
        };
        let updated = with_group_types(&current, &group, "t").unwrap();
        assert_eq!(updated.state_of(NewsletterTypeId(0)), ChoiceState::Yes);
        assert_eq!(updated.state_of(NewsletterTypeId(1)), ChoiceState::No);
        assert_eq!(updated.state_of(NewsletterTypeId(2)), ChoiceState::Yes);
        assert!(with_group_types(&updated, &group, "t").is_none());
    }

    #[test]
    fn the_lead_id_is_the_same_for_any_spelling_of_the_address() {
        assert_eq!(lead_id("Anna@Example.com"), lead_id(" anna@example.com"));
        assert_ne!(lead_id("anna@example.com"), lead_id("anne@example.com"));
    }
}
