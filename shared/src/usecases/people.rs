//! Use case: people changed — a contact, lead or account was created, edited, deactivated or
//! deleted, or members were added to or removed from a list. Only their receivers are worked
//! out, in every group they belong to or were in (docs/architecture.md §3), never the whole group.
//!
//! Steps: widen the scope (every CRM record that shares an address with the people, accounts
//! whose primary contact they are) → read them → find the sources each belongs to → find the
//! groups that hold their addresses now → plan and write per group.

use super::connector::{Connector, SyncError};
use super::reconcile::{ReconcileReport, reconcile_members};
use crate::domain::change::{ChangeEvent, CrmMessage};
use crate::domain::email::Email;
use crate::domain::receiver::CurrentReceiver;
use crate::domain::recipient::{CrmRef, PersonEntity, Recipient, RecipientKind};
use crate::domain::settings::Settings;
use crate::domain::source::{GroupId, SourceKind, SourceRecord};
use crate::ports::crm::MemberKey;
use crate::ports::newsletter::{FilterRequest, FilterRule};
use std::collections::{BTreeMap, BTreeSet};

/// Who a scoped reconcile is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeopleScope {
    pub records: BTreeSet<MemberKey>,
    pub emails: BTreeSet<Email>,
    /// Contacts and leads deleted in the CRM: their opted-out receivers keep only the address
    /// and the opt-out.
    pub deleted: BTreeSet<CrmRef>,
}

impl PeopleScope {
    fn add_email(&mut self, text: &str) {
        if let Ok(email) = Email::parse(text) {
            self.emails.insert(email);
        }
    }

    /// These records of one kind.
    pub fn of_records<'a>(kind: RecipientKind, ids: impl Iterator<Item = &'a String>) -> Self {
        let mut scope = PeopleScope::default();
        for id in ids {
            scope.records.insert((kind, id.to_ascii_lowercase()));
        }
        scope
    }

    /// The people a change event names: the record itself, its old and new addresses, and for
    /// an account its old and new primary contact.
    pub fn from_event(kind: RecipientKind, event: &ChangeEvent) -> PeopleScope {
        let mut scope = PeopleScope::default();
        scope
            .records
            .insert((kind, event.record_id.to_ascii_lowercase()));
        for email in event.emails_before_and_after() {
            scope.add_email(email);
        }
        let person = match kind {
            RecipientKind::Contact => Some(PersonEntity::Contact),
            RecipientKind::Lead => Some(PersonEntity::Lead),
            RecipientKind::Account => None,
        };
        if let Some(entity) = person
            && event.message == CrmMessage::Delete
        {
            scope.deleted.insert(CrmRef::new(entity, &event.record_id));
        }
        if kind == RecipientKind::Account {
            for contact in event.primary_contacts_before_and_after() {
                scope
                    .records
                    .insert((RecipientKind::Contact, contact.id.to_ascii_lowercase()));
            }
        }
        scope
    }
}

/// What a scoped reconcile did, per group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeopleSync {
    pub groups: BTreeMap<GroupId, ReconcileReport>,
}

/// A contact, lead or account changed: reconcile its receivers everywhere.
pub async fn on_person_change(
    conn: &Connector,
    settings: &Settings,
    kind: RecipientKind,
    event: &ChangeEvent,
) -> Result<PeopleSync, SyncError> {
    on_people_change(conn, settings, kind, std::slice::from_ref(event)).await
}

/// Several people of one kind changed (one queue batch): one scoped reconcile for all of them,
/// so that receivers sharing a group go to CleverReach in one call per group, not one per
/// change. Re-reading makes the order of the changes irrelevant.
pub async fn on_people_change(
    conn: &Connector,
    settings: &Settings,
    kind: RecipientKind,
    events: &[ChangeEvent],
) -> Result<PeopleSync, SyncError> {
    let mut scope = PeopleScope::default();
    for event in events {
        let one = PeopleScope::from_event(kind, event);
        scope.records.extend(one.records);
        scope.emails.extend(one.emails);
        scope.deleted.extend(one.deleted);
        if kind == RecipientKind::Account && event.account_name_may_have_changed() {
            // A renamed account is the company of its contacts.
            for contact in conn.people.contacts_of_account(&event.record_id).await? {
                scope.records.insert((RecipientKind::Contact, contact));
            }
        }
    }
    reconcile_people(conn, settings, scope, None).await
}

/// Members were added to or removed from one list: reconcile them in that list's group only.
pub async fn on_list_members_change(
    conn: &Connector,
    settings: &Settings,
    list: &SourceRecord,
    group: &GroupId,
    members: &[String],
) -> Result<ReconcileReport, SyncError> {
    let Some(shape) = &list.list else {
        return Ok(ReconcileReport::default());
    };
    let scope = PeopleScope::of_records(shape.member_kind, members.iter());
    let sync = reconcile_people(conn, settings, scope, Some((list, group))).await?;
    Ok(sync.groups.into_values().next().unwrap_or_default())
}

/// The scoped reconcile. With `only`, just that source's group is worked out.
pub async fn reconcile_people(
    conn: &Connector,
    settings: &Settings,
    mut scope: PeopleScope,
    only: Option<(&SourceRecord, &GroupId)>,
) -> Result<PeopleSync, SyncError> {
    let recipients = widen_and_read(conn, &mut scope).await?;
    let memberships = match only {
        Some((list, _)) => memberships_in_one_list(conn, list, &recipients).await?,
        None => memberships_everywhere(conn, &recipients).await?,
    };
    let persons: BTreeSet<String> = recipients
        .values()
        .map(|r| r.person.id.clone())
        .chain(scope.deleted.iter().map(|d| d.id.clone()))
        .collect();
    let mut held = receivers_holding(conn, &scope.emails, &persons).await?;

    // The groups to work on: where the people belong, and where their addresses are now.
    let mut sources: BTreeSet<(SourceKind, String)> =
        memberships.values().flatten().cloned().collect();
    if let Some((list, _)) = only {
        // Members removed from the list are members of nothing here, yet their receivers
        // must go: the list's own group is always worked out.
        sources.insert((list.source.kind, list.source.id.clone()));
    } else {
        for group in held.keys() {
            for source in conn.sources.sources_with_group(group.as_str()).await? {
                sources.insert(source);
            }
        }
    }

    let mut result = PeopleSync::default();
    for (kind, id) in sources {
        let record = match only {
            Some((list, _)) if list.source.id == id => list.clone(),
            Some(_) => continue,
            None => match conn.sources.source(kind, &id).await? {
                Some(record) => record,
                None => continue,
            },
        };
        let source = &record.source;
        let Some(group) = source.group_id.clone() else {
            continue;
        };
        // A source with sync off keeps its (kept) group untouched; a broken checklist would
        // remove everyone, so that source waits for its own error to be fixed.
        if !(source.sync_enabled && source.active) || record.checklist_problem.is_some() {
            continue;
        }
        let members = recipients
            .iter()
            .filter(|(key, _)| {
                memberships
                    .get(*key)
                    .is_some_and(|s| s.contains(&(kind, id.clone())))
            })
            .map(|(_, r)| r);
        let current = held.get(&group).cloned().unwrap_or_default();
        let report = reconcile_members(conn, settings, &record, &group, current, members).await?;
        // CleverReach moves an address in every group at once: what the other groups hold
        // has changed, so read it again before planning them.
        let moved = report.summary.email_changed > 0;
        result.groups.insert(group, report);
        if moved {
            held = receivers_holding(conn, &scope.emails, &persons).await?;
        }
    }
    strip_deleted(conn, &scope.deleted, &held).await?;
    Ok(result)
}

/// Data minimisation: the opted-out receivers of records deleted in the CRM keep only their
/// address and the opt-out (which CleverReach needs so the address is not mailed again); names,
/// company and the CRM record go. Active ones were removed by the reconcile.
async fn strip_deleted(
    conn: &Connector,
    deleted: &BTreeSet<CrmRef>,
    held: &BTreeMap<GroupId, Vec<CurrentReceiver>>,
) -> Result<(), SyncError> {
    if deleted.is_empty() {
        return Ok(());
    }
    for (group, receivers) in held {
        let emails: Vec<Email> = receivers
            .iter()
            .filter(|r| r.state.is_opted_out())
            .filter(|r| r.crm.as_ref().is_some_and(|c| deleted.contains(c)))
            .map(|r| r.email.clone())
            .collect();
        if !emails.is_empty() {
            conn.receivers
                .strip_receivers(group.as_str(), &emails)
                .await?;
            tracing::info!(group_id = %group.as_str(), receivers = emails.len(), "opted-out receivers of deleted records stripped to address and opt-out");
        }
    }
    Ok(())
}

/// Adds every record that shares an address with the scope, and the accounts whose primary
/// contact is in it; reads them all.
async fn widen_and_read(
    conn: &Connector,
    scope: &mut PeopleScope,
) -> Result<BTreeMap<MemberKey, Recipient>, SyncError> {
    let mut recipients = BTreeMap::new();
    let mut searched_emails = BTreeSet::new();
    let mut searched_contacts = BTreeSet::new();
    // Two rounds: addresses lead to records, records' current addresses lead to more records.
    for _ in 0..2 {
        for email in scope.emails.clone() {
            if searched_emails.insert(email.clone()) {
                for key in conn.people.people_with_email(email.as_str()).await? {
                    scope.records.insert(key);
                }
            }
        }
        let contacts: Vec<String> = scope
            .records
            .iter()
            .filter(|(k, _)| *k == RecipientKind::Contact)
            .map(|(_, id)| id.clone())
            .collect();
        for contact in contacts {
            if searched_contacts.insert(contact.clone()) {
                for account in conn.people.accounts_of_primary_contact(&contact).await? {
                    scope.records.insert((RecipientKind::Account, account));
                }
            }
        }
        for key in scope.records.clone() {
            if recipients.contains_key(&key) {
                continue;
            }
            if let Some(recipient) = conn.people.recipient(key.0, &key.1).await? {
                if let Some(email) = recipient
                    .email
                    .as_deref()
                    .and_then(|e| Email::parse(e).ok())
                {
                    scope.emails.insert(email);
                }
                recipients.insert(key, recipient);
            }
        }
    }
    Ok(recipients)
}

async fn memberships_in_one_list(
    conn: &Connector,
    list: &SourceRecord,
    recipients: &BTreeMap<MemberKey, Recipient>,
) -> Result<BTreeMap<MemberKey, BTreeSet<(SourceKind, String)>>, SyncError> {
    let mut memberships = BTreeMap::new();
    let Some(shape) = &list.list else {
        return Ok(memberships);
    };
    let me = (SourceKind::MarketingList, list.source.id.clone());
    for key in recipients.keys() {
        if key.0 != shape.member_kind {
            continue;
        }
        let member = if shape.dynamic {
            conn.people.dynamic_list_contains(shape, &key.1).await?
        } else {
            conn.people
                .static_lists_of(&key.1)
                .await?
                .contains(&list.source.id)
        };
        if member {
            memberships.insert(key.clone(), BTreeSet::from([me.clone()]));
        }
    }
    Ok(memberships)
}

/// For each record, the sources it is a member of (docs/architecture.md §2 rule 6).
async fn memberships_everywhere(
    conn: &Connector,
    recipients: &BTreeMap<MemberKey, Recipient>,
) -> Result<BTreeMap<MemberKey, BTreeSet<(SourceKind, String)>>, SyncError> {
    let dynamic: Vec<(String, crate::domain::source::ListShape)> = if recipients.is_empty() {
        Vec::new()
    } else {
        conn.people.dynamic_lists_in_use().await?
    };
    let mut linked: BTreeMap<String, Vec<(SourceKind, String)>> = BTreeMap::new();
    let mut memberships = BTreeMap::new();
    for key in recipients.keys() {
        let mut lists: BTreeSet<String> = conn
            .people
            .static_lists_of(&key.1)
            .await?
            .into_iter()
            .collect();
        for (list_id, shape) in &dynamic {
            if shape.member_kind == key.0
                && conn.people.dynamic_list_contains(shape, &key.1).await?
            {
                lists.insert(list_id.clone());
            }
        }
        let mut sources = BTreeSet::new();
        for list in lists {
            if !linked.contains_key(&list) {
                let via = conn.sources.sources_linking_list(&list).await?;
                linked.insert(list.clone(), via);
            }
            sources.extend(linked.get(&list).into_iter().flatten().cloned());
            sources.insert((SourceKind::MarketingList, list));
        }
        if key.0 == RecipientKind::Lead {
            sources.extend(conn.people.lead_links(&key.1).await?);
        }
        memberships.insert(key.clone(), sources);
    }
    Ok(memberships)
}

/// The receivers that hold these addresses or carry these people's CRM records now, by group
/// (one search across all groups). Searching by the CRM record too finds a person's receiver
/// under an address the CRM no longer has, so that an address change is made as one (the
/// receiver and its history kept) even when the change that names the old address has not
/// been worked yet.
async fn receivers_holding(
    conn: &Connector,
    emails: &BTreeSet<Email>,
    persons: &BTreeSet<String>,
) -> Result<BTreeMap<GroupId, Vec<CurrentReceiver>>, SyncError> {
    let mut held: BTreeMap<GroupId, Vec<CurrentReceiver>> = BTreeMap::new();
    if emails.is_empty() && persons.is_empty() {
        return Ok(held);
    }
    let rules = emails
        .iter()
        .cloned()
        .map(FilterRule::EmailIs)
        .chain(persons.iter().cloned().map(FilterRule::CrmIdIs))
        .collect();
    let mut request = FilterRequest::new(Vec::new(), rules);
    request.match_any = true;
    loop {
        let page = conn.receivers.filter_receivers(&request).await?;
        for record in page.items {
            if let Ok(group) = GroupId::new(&record.group_id) {
                let receivers = held.entry(group).or_default();
                // A receiver matching an address and a CRM record comes once.
                if !receivers.iter().any(|r| r.email == record.receiver.email) {
                    receivers.push(record.receiver);
                }
            }
        }
        if page.is_last {
            return Ok(held);
        }
        request.page += 1;
    }
}
