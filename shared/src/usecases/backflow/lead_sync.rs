//! Use case: one new active receiver read back from CleverReach (job `lead-sync`, docs/architecture.md §3).
//! A receiver that no contact or lead in the CRM has the address of (someone who signed up
//! through a CleverReach form) becomes a lead with its e-mail, names, company and salutation,
//! and the group's newsletter types set to 1.
//!
//! Idempotent without a marker: the lead's id is derived from the address, so a rerun finds
//! the lead (or gets "exists" on create) and creates nothing twice. The same person in a second
//! group adds that group's types to the same lead; a "no" someone set is never turned into
//! "yes". Receivers the connector wrote itself carry their CRM record and are passed by.
//!
//! The lead then joins the group's sources where the CRM lets it (a static lead list: as a
//! member; a campaign or campaign activity: through the lead's lookup, if empty), so that the
//! next full reconcile (docs/architecture.md §2 rule 6) keeps the receiver. A source that cannot hold a lead
//! (a list of contacts or accounts, a dynamic list) is left as it is and the sign-up is
//! reported in the run summary. The connector's own writes are not work for the intake, and
//! the receiver is in the group already.

use super::model::{JobContext, MODIFIED_BY, ManagedGroup, Outcome, RunSummary, crm_time};
use crate::domain::checklist::{Checklist, ChoiceState};
use crate::domain::ids::derived_id;
use crate::domain::receiver::ReceiverState;
use crate::domain::recipient::{CrmRef, PersonEntity, RecipientKind};
use crate::domain::source::SourceKind;
use crate::ports::crm::{CrmError, ManagedSource, NewLead};
use crate::ports::newsletter::ReceiverRecord;
use crate::usecases::connector::{Connector, SyncError};

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

/// Why a source cannot hold a lead, or `None` when it can (a static lead list, a campaign, a
/// campaign activity).
fn cannot_hold_leads(source: &ManagedSource) -> Option<String> {
    if source.kind != SourceKind::MarketingList {
        return None;
    }
    match &source.list {
        None => Some("its member type cannot be read".into()),
        Some(shape) if shape.dynamic => {
            Some("it is a dynamic list; its members come from its query".into())
        }
        Some(shape) if shape.member_kind != RecipientKind::Lead => {
            Some(format!("it is a static list of {}s", shape.member_kind))
        }
        Some(_) => None,
    }
}

/// The CRM said no to this write (4xx, a row gone): reported, not retried.
fn refused(e: &CrmError) -> bool {
    e.is_refusal()
}

fn at_risk(summary: &mut RunSummary, group: &ManagedGroup, lead: &str, source: &str, why: &str) {
    summary.signups_at_risk.push(format!(
        "group {}: sign-up kept as lead {lead}; {source} cannot hold it ({why}), so a resync will remove the receiver",
        group.id
    ));
}

/// Makes lead `lead` a member of the group's sources where the CRM allows it; returns how many
/// sources it joined. `fresh`: the lead was just created (it is in no list and linked to
/// nothing, so nothing needs reading).
async fn keep_in_sources(
    conn: &Connector,
    context: &JobContext,
    group: &ManagedGroup,
    sources: &[&ManagedSource],
    lead: &str,
    fresh: bool,
    summary: &mut RunSummary,
) -> Result<usize, SyncError> {
    let mut joined = 0;
    let mut lists_of_lead: Option<Vec<String>> = fresh.then(Vec::new);
    let mut links_of_lead: Option<Vec<(SourceKind, String)>> = fresh.then(Vec::new);
    let mut new_links: Vec<(SourceKind, String)> = Vec::new();
    for source in sources {
        let name = format!("{} {}", source.kind, source.id);
        if let Some(why) = cannot_hold_leads(source) {
            at_risk(summary, group, lead, &name, &why);
            continue;
        }
        if source.kind == SourceKind::MarketingList {
            if lists_of_lead.is_none() {
                lists_of_lead = Some(conn.people.static_lists_of(lead).await?);
            }
            let lists = lists_of_lead.get_or_insert_with(Vec::new);
            if lists.contains(&source.id) {
                continue;
            }
            match conn.signups.add_list_member(&source.id, lead).await {
                Ok(()) => {
                    lists.push(source.id.clone());
                    joined += 1;
                }
                Err(e) if refused(&e) => {
                    at_risk(
                        summary,
                        group,
                        lead,
                        &name,
                        &format!("it refused the lead: {e}"),
                    );
                }
                Err(e) => return Err(e.into()),
            }
            continue;
        }
        if links_of_lead.is_none() {
            links_of_lead = Some(conn.people.lead_links(lead).await?);
        }
        let links = links_of_lead.get_or_insert_with(Vec::new);
        // A lead has one lookup per kind: the first source of a kind takes it.
        let taken = links
            .iter()
            .chain(&new_links)
            .find(|(kind, _)| *kind == source.kind);
        match taken {
            Some((_, id)) if *id == source.id => {}
            Some((kind, other)) => {
                let why = format!("the lead is linked to {kind} {other}");
                at_risk(summary, group, lead, &name, &why);
            }
            None => new_links.push((source.kind, source.id.clone())),
        }
    }
    if !new_links.is_empty() {
        match conn.signups.link_lead(lead, &new_links).await {
            Ok(()) => joined += new_links.len(),
            Err(e) if refused(&e) => {
                for (kind, id) in &new_links {
                    let why = format!("linking the lead was refused: {e}");
                    at_risk(summary, group, lead, &format!("{kind} {id}"), &why);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if !context
        .settings
        .transfer_entities
        .contains(&RecipientKind::Lead)
    {
        summary.signups_at_risk.push(format!(
            "group {}: sign-up kept as lead {lead}; leads are not transferred (transfersettings:entity), so a resync will remove the receiver",
            group.id
        ));
    }
    summary.leads_linked += joined;
    Ok(joined)
}

/// Conditional writes of one checklist before giving up for now (the event is retried).
const WRITE_ATTEMPTS: usize = 5;

pub async fn apply(
    conn: &Connector,
    context: &JobContext,
    group: &ManagedGroup,
    sources: &[&ManagedSource],
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
    let people = conn.people.people_with_email(email).await?;
    let mut created = false;
    if people.is_empty() {
        let checklist = with_group_types(
            &Checklist::default().normalized_for(&context.settings.newsletter_types),
            group,
            &when,
        )
        .unwrap_or_default();
        let person = &receiver.person;
        let lead = NewLead {
            id: ours.clone(),
            email: receiver.email.clone(),
            subject: format!("Newsletter sign-up in CleverReach (group {})", group.id),
            checklist,
            first_name: person.first_name.clone(),
            last_name: person.last_name.clone(),
            // A form may have set the company account-wide rather than in the group.
            company: if person.company.trim().is_empty() {
                record.global_company.clone()
            } else {
                person.company.clone()
            },
            salutation: person.salutation.clone(),
        };
        created = conn.signups.create_lead(&lead).await?;
        if created {
            summary.leads_created += 1;
        }
        // Not created: made meanwhile by another run; go on as with a lead found.
    } else if people
        .iter()
        .any(|(kind, id)| !(*kind == RecipientKind::Lead && *id == ours))
    {
        // Someone in the CRM has this address already: not ours to create.
        return Ok(Outcome::Ignored);
    }
    let mut changed = created;
    if !created {
        let lead = CrmRef::new(PersonEntity::Lead, &ours);
        // A conditional write, read again when the lead changed in between (a person editing
        // it, another group's sign-up of the same address): neither change is lost.
        let mut written = false;
        for _ in 0..WRITE_ATTEMPTS {
            let Some(current) = conn.persons.person(&lead).await? else {
                return Ok(Outcome::Ignored);
            };
            let checklist = match Checklist::parse(&current.checklist) {
                Ok(checklist) => checklist,
                Err(e) => {
                    summary.problem(format!(
                        "group {}: the checklist of lead {ours} cannot be read ({e}); the group's types were not added",
                        group.id
                    ));
                    return Ok(Outcome::Skipped);
                }
            };
            let Some(updated) = with_group_types(&checklist, group, &when) else {
                written = true;
                break;
            };
            if conn
                .persons
                .write_checklist_if(&lead, &updated, current.version.as_ref())
                .await?
            {
                summary.leads_updated += 1;
                changed = true;
                written = true;
                break;
            }
        }
        if !written {
            return Err(SyncError::Crm(crate::ports::crm::CrmError::Unavailable {
                message: format!(
                    "the checklist of lead {ours} kept changing while the group's types were added; tried {WRITE_ATTEMPTS} times"
                ),
                retry_after: None,
            }));
        }
    }
    let joined = keep_in_sources(conn, context, group, sources, &ours, created, summary).await?;
    Ok(if changed || joined > 0 {
        Outcome::Applied
    } else {
        Outcome::AlreadyDone
    })
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
