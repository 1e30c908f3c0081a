//! Use case: people changed — a contact, lead or account was created, edited, deactivated or
//! deleted, or members were added to or removed from a list. Only their receivers are worked
//! out, in every group they belong to or were in (docs/architecture.md §3), never the whole group.
//!
//! Steps: read the sources in use and widen the scope (every CRM record that shares an address
//! with the people, accounts whose primary contact they are), reading them with their static
//! lists → find the sources each belongs to (dynamic lists for all of them at once) → find the
//! groups that hold their addresses now → plan and write per group.

use super::connector::{Connector, SyncError};
use super::reconcile::{ReconcileReport, reconcile_members};
use crate::domain::change::{ChangeEvent, CrmMessage};
use crate::domain::email::Email;
use crate::domain::receiver::CurrentReceiver;
use crate::domain::recipient::{CrmRef, PersonEntity, Recipient, RecipientKind};
use crate::domain::settings::Settings;
use crate::domain::source::{GroupId, SourceKind, SourceRecord};
use crate::ports::crm::{MemberKey, PeopleFound, PeopleQuery, SourceDirectory};
use crate::ports::newsletter::{FilterRequest, FilterRule};
use futures::{StreamExt, TryStreamExt};
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
///
/// The CRM is read in a few round trips, whatever the number of people (docs/architecture.md
/// §10.2): the sources in use together with the people, their accounts and their static lists
/// (one round); people found only through a shared address or an account (one more round, the
/// uncommon case); then every dynamic list in use for all of them (one round).
pub async fn reconcile_people(
    conn: &Connector,
    settings: &Settings,
    mut scope: PeopleScope,
    only: Option<(&SourceRecord, &GroupId)>,
) -> Result<PeopleSync, SyncError> {
    let (directory, people) = widen_and_read(conn, &mut scope, only.is_none()).await?;
    let memberships = match only {
        Some((list, _)) => memberships_in_one_list(conn, list, &people).await?,
        None => memberships_everywhere(conn, &directory, &people).await?,
    };
    let recipients = people.recipients;
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
            sources.extend(directory.sources_with_group(group).cloned());
        }
    }

    // The groups' records, those whose groups are worked out here.
    let mut work = Vec::new();
    for (kind, id) in sources {
        let record = match only {
            Some((list, _)) if list.source.id == id => list.clone(),
            Some(_) => continue,
            // Only active sources with sync on are in the directory: the others keep their
            // (kept) group untouched.
            None => match directory.synced.get(&(kind, id.clone())) {
                Some(record) => record.clone(),
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
        work.push((kind, id, record, group));
    }
    let members_of = |kind: SourceKind, id: &str| -> Vec<&Recipient> {
        recipients
            .iter()
            .filter(|(key, _)| {
                memberships
                    .get(*key)
                    .is_some_and(|s| s.contains(&(kind, id.to_string())))
            })
            .map(|(_, r)| r)
            .collect()
    };

    let mut result = PeopleSync::default();
    if !address_may_move(&recipients, &held) {
        // Nothing moves an address across groups: the groups are independent, and their
        // writes go out side by side (at most `writes_in_flight` at once).
        let held = &held;
        let mut jobs = Vec::with_capacity(work.len());
        for (kind, id, record, group) in &work {
            let members = members_of(*kind, id);
            jobs.push(async move {
                let current = held.get(group).cloned().unwrap_or_default();
                reconcile_members(conn, settings, record, group, current, members.into_iter())
                    .await
                    .map(|report| (group.clone(), report))
            });
        }
        let reports: Vec<(GroupId, ReconcileReport)> = futures::stream::iter(jobs)
            .buffer_unordered(conn.writes_in_flight.max(1))
            .try_collect()
            .await?;
        result.groups.extend(reports);
    } else {
        for (kind, id, record, group) in &work {
            let current = held.get(group).cloned().unwrap_or_default();
            let members = members_of(*kind, id);
            let report =
                reconcile_members(conn, settings, record, group, current, members.into_iter())
                    .await?;
            // CleverReach moves an address in every group at once: what the other groups
            // hold has changed, so read it again before planning them.
            let moved = report.summary.email_changed > 0;
            result.groups.insert(group.clone(), report);
            if moved {
                held = receivers_holding(conn, &scope.emails, &persons).await?;
            }
        }
    }
    strip_deleted(conn, &scope.deleted, &held).await?;
    Ok(result)
}

/// Whether a group's plan may move an address (`change_email`, account-wide in CleverReach):
/// some receiver carries one of these people's CRM records under an address that is not the
/// record's current one. Only then must the groups be worked one after another.
fn address_may_move(
    recipients: &BTreeMap<MemberKey, Recipient>,
    held: &BTreeMap<GroupId, Vec<CurrentReceiver>>,
) -> bool {
    held.values().flatten().any(|receiver| {
        receiver.crm.as_ref().is_some_and(|crm| {
            recipients.values().any(|r| {
                r.person == *crm
                    && r.email
                        .as_deref()
                        .and_then(|e| Email::parse(e).ok())
                        .as_ref()
                        != Some(&receiver.email)
            })
        })
    })
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

/// Rounds that widen the scope. Each round reads what the one before found out: records named
/// → their addresses → the records holding those addresses → the accounts whose primary
/// contact those are. A record read in one round only has its own accounts looked for in the
/// next, so it takes three rounds to reach an account through a shared address when the event
/// named no address. A last round reads the static lists of what the third found, so every
/// record read has its memberships. Rounds with nothing new to read are not made: the common
/// case is one.
const WIDENING_ROUNDS: usize = 3;

/// Adds every record that shares an address with the scope, and the accounts whose primary
/// contact is in it; reads them all, with their static lists and lead links. With
/// `with_sources`, the sources in use come in the first round's round trip.
async fn widen_and_read(
    conn: &Connector,
    scope: &mut PeopleScope,
    with_sources: bool,
) -> Result<(SourceDirectory, PeopleFound), SyncError> {
    let mut people = PeopleFound::default();
    let mut asked = PeopleQuery::default();
    let mut directory = SourceDirectory::default();
    for round in 0..=WIDENING_ROUNDS {
        let query = next_round(scope, &people, &asked, round < WIDENING_ROUNDS);
        let found = if round == 0 && with_sources {
            let (sources, found) = conn.people.sources_and_people(&query).await?;
            directory = sources;
            found
        } else if query.is_empty() {
            break;
        } else {
            conn.people.people(&query).await?
        };
        asked.records.extend(query.records);
        asked.emails.extend(query.emails);
        asked.primary_contacts.extend(query.primary_contacts);
        asked.lists_of.extend(query.lists_of);
        for (key, recipient) in found.recipients {
            if let Some(email) = recipient
                .email
                .as_deref()
                .and_then(|e| Email::parse(e).ok())
            {
                scope.emails.insert(email);
            }
            scope.records.insert(key.clone());
            people.recipients.insert(key, recipient);
        }
        people.static_lists.extend(found.static_lists);
        people.lead_links.extend(found.lead_links);
    }
    Ok((directory, people))
}

/// What the next round must read: the static lists of every record named or read whose lists
/// were not asked for yet, and when widening, records named but not read yet, addresses not
/// searched yet and contacts whose accounts were not looked for yet.
fn next_round(
    scope: &PeopleScope,
    people: &PeopleFound,
    asked: &PeopleQuery,
    widen: bool,
) -> PeopleQuery {
    let everyone: BTreeSet<&MemberKey> = scope
        .records
        .iter()
        .chain(people.recipients.keys())
        .collect();
    let lists_of = everyone
        .iter()
        .filter(|k| !asked.lists_of.contains(**k))
        .map(|k| (*k).clone())
        .collect();
    if !widen {
        return PeopleQuery {
            lists_of,
            ..PeopleQuery::default()
        };
    }
    PeopleQuery {
        records: scope
            .records
            .iter()
            .filter(|k| !people.recipients.contains_key(*k) && !asked.records.contains(*k))
            .cloned()
            .collect(),
        emails: scope.emails.difference(&asked.emails).cloned().collect(),
        primary_contacts: everyone
            .iter()
            .filter(|(kind, _)| *kind == RecipientKind::Contact)
            .map(|(_, id)| id.clone())
            .filter(|id| !asked.primary_contacts.contains(id))
            .collect(),
        lists_of,
    }
}

/// For the records of one list's member type, whether they are members of that list.
async fn memberships_in_one_list(
    conn: &Connector,
    list: &SourceRecord,
    people: &PeopleFound,
) -> Result<BTreeMap<MemberKey, BTreeSet<(SourceKind, String)>>, SyncError> {
    let mut memberships = BTreeMap::new();
    let Some(shape) = &list.list else {
        return Ok(memberships);
    };
    let me = (SourceKind::MarketingList, list.source.id.clone());
    let candidates: BTreeSet<MemberKey> = people
        .recipients
        .keys()
        .filter(|key| key.0 == shape.member_kind)
        .cloned()
        .collect();
    let members: BTreeSet<MemberKey> = if shape.dynamic {
        conn.people
            .dynamic_members(&[(list.source.id.clone(), shape.clone())], &candidates)
            .await?
            .into_iter()
            .map(|(_, key)| key)
            .collect()
    } else {
        candidates
            .into_iter()
            .filter(|key| {
                people
                    .static_lists
                    .get(key)
                    .is_some_and(|lists| lists.contains(&list.source.id))
            })
            .collect()
    };
    for key in members {
        memberships.insert(key, BTreeSet::from([me.clone()]));
    }
    Ok(memberships)
}

/// For each record, the sources it is a member of (docs/architecture.md §2 rule 6): its static
/// lists and the dynamic lists in use that select it, the campaigns and activities those lists
/// are linked to, and for a lead the campaign and activity it is linked to.
async fn memberships_everywhere(
    conn: &Connector,
    directory: &SourceDirectory,
    people: &PeopleFound,
) -> Result<BTreeMap<MemberKey, BTreeSet<(SourceKind, String)>>, SyncError> {
    let keys: BTreeSet<MemberKey> = people.recipients.keys().cloned().collect();
    let dynamic = if keys.is_empty() || directory.dynamic_lists.is_empty() {
        BTreeSet::new()
    } else {
        conn.people
            .dynamic_members(&directory.dynamic_lists, &keys)
            .await?
    };
    let mut memberships = BTreeMap::new();
    for key in keys {
        let mut lists: BTreeSet<String> =
            people.static_lists.get(&key).cloned().unwrap_or_default();
        lists.extend(
            dynamic
                .iter()
                .filter(|(_, k)| *k == key)
                .map(|(list, _)| list.clone()),
        );
        let mut sources = BTreeSet::new();
        for list in lists {
            sources.extend(directory.linked.get(&list).into_iter().flatten().cloned());
            sources.insert((SourceKind::MarketingList, list));
        }
        if key.0 == RecipientKind::Lead {
            sources.extend(people.lead_links.get(&key.1).into_iter().flatten().cloned());
        }
        memberships.insert(key, sources);
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
