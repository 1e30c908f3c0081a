//! An in-memory CRM behind every CRM port, for the use cases' unit tests: sources, people,
//! memberships and what the connector writes back, in maps; any port can be made to fail.

use crate::domain::checklist::Checklist;
use crate::domain::email::Email;
use crate::domain::recipient::{CrmRef, PersonEntity, Recipient, RecipientKind};
use crate::domain::settings::{LoadedSettings, Settings};
use crate::domain::source::{GroupId, ListShape, SourceKind, SourceRecord};
use crate::ports::crm::{
    ChecklistWrite, CrmError, CursorStore, ManagedSource, MemberKey, MemberPages, MemberReader,
    NewLead, PeopleDirectory, PeopleFound, PeopleQuery, PersonRecord, PersonStore,
    ReceiverStateLog, ReceiverStateRow, RetroactiveColumns, RetroactiveStore, RetroactiveUpdate,
    RowVersion, SettingsSource, SignupStore, SourceDirectory, SourceStatus, SourceStore,
    StoredChecklist, WriteResult,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

/// The ports of the CRM, by name, for [`InMemoryCrm::fail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CrmPort {
    Settings,
    Sources,
    Members,
    People,
    Persons,
    ReceiverStates,
    Signups,
    Cursors,
    Retroactive,
}

/// Everything the fake CRM holds. Tests arrange it directly and look at it afterwards.
#[derive(Debug, Default)]
pub struct CrmState {
    /// Settings rows (key, value).
    pub settings: Vec<(String, String)>,
    pub sources: BTreeMap<(SourceKind, String), SourceRecord>,
    /// Every recipient by its table and id (an account's recipient is its primary contact).
    pub recipients: BTreeMap<MemberKey, Recipient>,
    /// Members of each list (static members, or what a dynamic list's query selects).
    pub list_members: BTreeMap<String, BTreeSet<MemberKey>>,
    /// Lists linked to each campaign or campaign activity.
    pub linked_lists: BTreeMap<(SourceKind, String), BTreeSet<String>>,
    /// Leads linked to campaigns and campaign activities.
    pub lead_links: BTreeMap<String, Vec<(SourceKind, String)>>,
    /// Account → its primary contact.
    pub primary_contacts: BTreeMap<String, String>,
    /// Contact → its parent account.
    pub parent_accounts: BTreeMap<String, String>,
    /// Status written on each source, last write wins.
    pub statuses: BTreeMap<(SourceKind, String), SourceStatus>,
    pub receiver_states: BTreeMap<String, ReceiverStateRow>,
    pub leads_created: Vec<NewLead>,
    pub cursors: BTreeMap<String, String>,
    pub retroactive: BTreeMap<String, RetroactiveColumns>,
    /// Every write, in order, in words (`"turn_sync_off list l1"`).
    pub writes: Vec<String>,
    /// Ports that fail their next calls, with how many calls are left to fail.
    pub failing: BTreeMap<CrmPort, usize>,
    /// Read requests made, per port.
    pub reads: BTreeMap<CrmPort, usize>,
    /// Reads of the sources in use (`sources_in_use`, `sources_and_people`).
    pub directory_reads: usize,
    /// Rounds of people reads (`people`, `sources_and_people`), each one round trip.
    pub people_rounds: usize,
    /// Dynamic-list membership reads (`dynamic_members`), each one round trip.
    pub dynamic_rounds: usize,
    /// Row versions of people (bumped by every checklist write).
    pub versions: BTreeMap<MemberKey, u64>,
    /// Someone else saves these checklists right before the connector's next conditional
    /// write of that person (a marketer's form save, another event): tests of lost updates.
    pub saved_in_between: Vec<(MemberKey, Checklist)>,
}

/// The fake CRM.
#[derive(Debug, Default)]
pub struct InMemoryCrm {
    state: Mutex<CrmState>,
}

fn unavailable(port: CrmPort) -> CrmError {
    CrmError::Unavailable {
        message: format!("the in-memory CRM's {port:?} port is switched off"),
        retry_after: None,
    }
}

impl InMemoryCrm {
    pub fn new() -> Self {
        InMemoryCrm::default()
    }

    /// The state, to arrange or inspect.
    pub fn state(&self) -> MutexGuard<'_, CrmState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `times` calls of `port` fail as an unreachable CRM would.
    pub fn fail(&self, port: CrmPort, times: usize) {
        self.state().failing.insert(port, times);
    }

    /// Counts a call of `port`, or fails it when it is switched off.
    fn call(&self, port: CrmPort) -> Result<MutexGuard<'_, CrmState>, CrmError> {
        let mut st = self.state();
        if let Some(left) = st.failing.get_mut(&port)
            && *left > 0
        {
            *left -= 1;
            return Err(unavailable(port));
        }
        *st.reads.entry(port).or_default() += 1;
        Ok(st)
    }

    /// Adds a source.
    pub fn add_source(&self, record: SourceRecord) {
        let key = (record.source.kind, record.source.id.clone());
        self.state().sources.insert(key, record);
    }

    /// Adds a recipient (a contact or lead in its own right, or an account's recipient).
    pub fn add_recipient(&self, recipient: Recipient, id: &str) {
        self.state()
            .recipients
            .insert((recipient.kind, id.to_ascii_lowercase()), recipient);
    }

    /// Makes a record a member of a list.
    pub fn add_list_member_of(&self, list: &str, kind: RecipientKind, id: &str) {
        self.state()
            .list_members
            .entry(list.to_string())
            .or_default()
            .insert((kind, id.to_ascii_lowercase()));
    }
}

impl CrmState {
    /// The members of a source (rule 6): a list's members; a campaign's or activity's linked
    /// lists' members plus the leads linked to it.
    fn members_of(&self, record: &SourceRecord) -> Vec<Recipient> {
        let source = &record.source;
        let mut keys: BTreeSet<MemberKey> = BTreeSet::new();
        match source.kind {
            SourceKind::MarketingList => {
                keys.extend(
                    self.list_members
                        .get(&source.id)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
            }
            kind => {
                for list in self
                    .linked_lists
                    .get(&(kind, source.id.clone()))
                    .into_iter()
                    .flatten()
                {
                    let active = self
                        .sources
                        .get(&(SourceKind::MarketingList, list.clone()))
                        .is_none_or(|l| l.source.active);
                    if active {
                        keys.extend(self.list_members.get(list).into_iter().flatten().cloned());
                    }
                }
                for (lead, links) in &self.lead_links {
                    if links.contains(&(kind, source.id.clone())) {
                        keys.insert((RecipientKind::Lead, lead.clone()));
                    }
                }
            }
        }
        keys.iter()
            .filter_map(|k| self.recipients.get(k).cloned())
            .collect()
    }

    fn record_write(&mut self, text: String) {
        self.writes.push(text);
    }

    fn person_key(person: &CrmRef) -> MemberKey {
        let kind = match person.entity {
            PersonEntity::Contact => RecipientKind::Contact,
            PersonEntity::Lead => RecipientKind::Lead,
        };
        (kind, person.id.clone())
    }
}

#[async_trait]
impl SettingsSource for InMemoryCrm {
    async fn load_settings(&self) -> Result<LoadedSettings, CrmError> {
        let st = self.call(CrmPort::Settings)?;
        Ok(Settings::from_rows(
            st.settings.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?)
    }
}

#[async_trait]
impl SourceStore for InMemoryCrm {
    async fn source(&self, kind: SourceKind, id: &str) -> Result<Option<SourceRecord>, CrmError> {
        let st = self.call(CrmPort::Sources)?;
        Ok(st.sources.get(&(kind, id.to_ascii_lowercase())).cloned())
    }

    async fn synced_sources(&self, kind: SourceKind) -> Result<Vec<String>, CrmError> {
        let st = self.call(CrmPort::Sources)?;
        Ok(st
            .sources
            .values()
            .filter(|r| r.source.kind == kind && r.source.sync_enabled)
            .map(|r| r.source.id.clone())
            .collect())
    }

    async fn active_synced_sources(&self) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let st = self.call(CrmPort::Sources)?;
        Ok(st
            .sources
            .values()
            .filter(|r| r.source.sync_enabled && r.source.active)
            .map(|r| (r.source.kind, r.source.id.clone()))
            .collect())
    }

    async fn sources_with_group(
        &self,
        group_id: &str,
    ) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let st = self.call(CrmPort::Sources)?;
        Ok(st
            .sources
            .values()
            .filter(|r| {
                r.source
                    .group_id
                    .as_ref()
                    .is_some_and(|g| g.as_str() == group_id)
            })
            .map(|r| (r.source.kind, r.source.id.clone()))
            .collect())
    }

    async fn sources_linking_list(
        &self,
        list_id: &str,
    ) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let st = self.call(CrmPort::Sources)?;
        Ok(st
            .linked_lists
            .iter()
            .filter(|(_, lists)| lists.contains(list_id))
            .map(|(source, _)| source.clone())
            .collect())
    }

    async fn managed_sources(&self) -> Result<Vec<ManagedSource>, CrmError> {
        let st = self.call(CrmPort::Sources)?;
        Ok(st
            .sources
            .values()
            .filter_map(|r| {
                let group = r.source.group_id.as_ref()?;
                Some(ManagedSource {
                    kind: r.source.kind,
                    id: r.source.id.clone(),
                    group_id: group.as_str().to_string(),
                    checklist: match &r.checklist_problem {
                        Some(problem) => Err(problem.clone()),
                        None => Ok(r.source.checklist.clone()),
                    },
                    list: r.list.clone(),
                    synced: r.source.sync_enabled && r.source.active,
                })
            })
            .collect())
    }

    async fn record_group(
        &self,
        kind: SourceKind,
        id: &str,
        group: Option<&GroupId>,
    ) -> Result<(), CrmError> {
        let mut st = self.call(CrmPort::Sources)?;
        if let Some(record) = st.sources.get_mut(&(kind, id.to_string())) {
            record.source.group_id = group.cloned();
        }
        st.record_write(format!(
            "record_group {kind} {id} {}",
            group.map_or("none", GroupId::as_str)
        ));
        Ok(())
    }

    async fn turn_sync_off(&self, kind: SourceKind, id: &str) -> Result<(), CrmError> {
        let mut st = self.call(CrmPort::Sources)?;
        if let Some(record) = st.sources.get_mut(&(kind, id.to_string())) {
            record.source.sync_enabled = false;
        }
        st.record_write(format!("turn_sync_off {kind} {id}"));
        Ok(())
    }

    async fn clear_resync(&self, kind: SourceKind, id: &str) -> Result<(), CrmError> {
        let mut st = self.call(CrmPort::Sources)?;
        if let Some(record) = st.sources.get_mut(&(kind, id.to_string())) {
            record.resync_requested = false;
        }
        st.record_write(format!("clear_resync {kind} {id}"));
        Ok(())
    }

    async fn clear_removal_confirmation(&self, kind: SourceKind, id: &str) -> Result<(), CrmError> {
        let mut st = self.call(CrmPort::Sources)?;
        if let Some(record) = st.sources.get_mut(&(kind, id.to_string())) {
            record.removals_confirmed = false;
        }
        st.record_write(format!("clear_removal_confirmation {kind} {id}"));
        Ok(())
    }

    async fn write_status(
        &self,
        kind: SourceKind,
        id: &str,
        status: &SourceStatus,
    ) -> Result<(), CrmError> {
        let mut st = self.call(CrmPort::Sources)?;
        st.statuses.insert((kind, id.to_string()), status.clone());
        Ok(())
    }
}

/// The members, one page of all of them from where the read starts (paging is the Dataverse
/// adapter's business); a resume point is the position in that order.
struct FakePages {
    page: Option<Vec<Recipient>>,
    start: usize,
    requests: u32,
    failure: Option<CrmError>,
}

#[async_trait]
impl MemberPages for FakePages {
    async fn next_page(&mut self) -> Result<Option<Vec<Recipient>>, CrmError> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        self.requests += 1;
        Ok(self.page.take())
    }

    fn requests(&self) -> u32 {
        self.requests
    }

    fn resume_point(&self, taken: usize) -> Option<String> {
        Some((self.start + taken).to_string())
    }
}

impl MemberReader for InMemoryCrm {
    fn members_from(
        &self,
        source: &SourceRecord,
        resume: Option<&str>,
    ) -> Box<dyn MemberPages + '_> {
        let start = match resume.map(str::parse::<usize>) {
            None => Ok(0),
            Some(Ok(n)) => Ok(n),
            Some(Err(_)) => Err(CrmError::Invalid {
                what: "the members' resume point".into(),
                problem: "not a position".into(),
            }),
        };
        let members = start.and_then(|start| {
            let st = self.call(CrmPort::Members)?;
            Ok((
                start,
                st.members_of(source).into_iter().skip(start).collect(),
            ))
        });
        match members {
            Ok((start, page)) => Box::new(FakePages {
                page: Some(page),
                start,
                requests: 0,
                failure: None,
            }),
            Err(e) => Box::new(FakePages {
                page: None,
                start: 0,
                requests: 0,
                failure: Some(e),
            }),
        }
    }
}

#[async_trait]
impl PeopleDirectory for InMemoryCrm {
    async fn recipient(
        &self,
        kind: RecipientKind,
        id: &str,
    ) -> Result<Option<Recipient>, CrmError> {
        let st = self.call(CrmPort::People)?;
        Ok(st.recipients.get(&(kind, id.to_ascii_lowercase())).cloned())
    }

    async fn people_with_email(&self, email: &str) -> Result<Vec<MemberKey>, CrmError> {
        let st = self.call(CrmPort::People)?;
        let wanted = Email::parse(email).ok();
        Ok(st
            .recipients
            .iter()
            .filter(|((kind, _), r)| {
                *kind != RecipientKind::Account
                    && wanted.is_some()
                    && r.email.as_deref().and_then(|e| Email::parse(e).ok()) == wanted
            })
            .map(|(key, _)| key.clone())
            .collect())
    }

    async fn accounts_of_primary_contact(&self, contact_id: &str) -> Result<Vec<String>, CrmError> {
        let st = self.call(CrmPort::People)?;
        Ok(st
            .primary_contacts
            .iter()
            .filter(|(_, contact)| contact.as_str() == contact_id)
            .map(|(account, _)| account.clone())
            .collect())
    }

    async fn contacts_of_account(&self, account_id: &str) -> Result<Vec<String>, CrmError> {
        let st = self.call(CrmPort::People)?;
        Ok(st
            .parent_accounts
            .iter()
            .filter(|(_, account)| account.as_str() == account_id)
            .map(|(contact, _)| contact.clone())
            .collect())
    }

    async fn static_lists_of(&self, record_id: &str) -> Result<Vec<String>, CrmError> {
        let st = self.call(CrmPort::People)?;
        Ok(st
            .list_members
            .iter()
            .filter(|(list, members)| {
                let dynamic = st
                    .sources
                    .get(&(SourceKind::MarketingList, (*list).clone()))
                    .and_then(|l| l.list.as_ref())
                    .is_some_and(|shape| shape.dynamic);
                !dynamic && members.iter().any(|(_, id)| id == record_id)
            })
            .map(|(list, _)| list.clone())
            .collect())
    }

    async fn dynamic_lists_in_use(&self) -> Result<Vec<(String, ListShape)>, CrmError> {
        let st = self.call(CrmPort::People)?;
        Ok(st
            .sources
            .values()
            .filter(|r| r.source.active)
            .filter_map(|r| Some((r.source.id.clone(), r.list.clone()?)))
            .filter(|(_, shape)| shape.dynamic)
            .collect())
    }

    async fn dynamic_list_contains(
        &self,
        shape: &ListShape,
        record_id: &str,
    ) -> Result<bool, CrmError> {
        let st = self.call(CrmPort::People)?;
        // The fake's dynamic lists keep what their query selects as members; the query text
        // names the list.
        let list = shape.query.clone().unwrap_or_default();
        Ok(st
            .list_members
            .get(&list)
            .is_some_and(|m| m.contains(&(shape.member_kind, record_id.to_string()))))
    }

    async fn lead_links(&self, lead_id: &str) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let st = self.call(CrmPort::People)?;
        Ok(st.lead_links.get(lead_id).cloned().unwrap_or_default())
    }

    async fn sources_in_use(&self) -> Result<SourceDirectory, CrmError> {
        let mut st = self.call(CrmPort::People)?;
        st.directory_reads += 1;
        Ok(st.directory())
    }

    async fn people(&self, query: &PeopleQuery) -> Result<PeopleFound, CrmError> {
        let mut st = self.call(CrmPort::People)?;
        st.people_rounds += 1;
        Ok(st.people(query))
    }

    async fn sources_and_people(
        &self,
        query: &PeopleQuery,
    ) -> Result<(SourceDirectory, PeopleFound), CrmError> {
        let mut st = self.call(CrmPort::People)?;
        st.directory_reads += 1;
        st.people_rounds += 1;
        Ok((st.directory(), st.people(query)))
    }

    async fn dynamic_members(
        &self,
        lists: &[(String, ListShape)],
        records: &BTreeSet<MemberKey>,
    ) -> Result<BTreeSet<(String, MemberKey)>, CrmError> {
        let mut st = self.call(CrmPort::People)?;
        st.dynamic_rounds += 1;
        let mut found = BTreeSet::new();
        for (list, shape) in lists {
            // The fake's dynamic lists keep what their query selects as members; the query
            // text names the list.
            let selected = st
                .list_members
                .get(shape.query.as_deref().unwrap_or_default());
            for key in records {
                if key.0 == shape.member_kind && selected.is_some_and(|m| m.contains(key)) {
                    found.insert((list.clone(), key.clone()));
                }
            }
        }
        Ok(found)
    }
}

impl CrmState {
    /// The sources in use, as the Dataverse adapter reads them.
    fn directory(&self) -> SourceDirectory {
        let synced: BTreeMap<(SourceKind, String), SourceRecord> = self
            .sources
            .iter()
            .filter(|(_, r)| r.source.sync_enabled && r.source.active)
            .map(|(k, r)| (k.clone(), r.clone()))
            .collect();
        let mut linked: BTreeMap<String, BTreeSet<(SourceKind, String)>> = BTreeMap::new();
        for (source, lists) in &self.linked_lists {
            if synced.contains_key(source) {
                for list in lists {
                    linked
                        .entry(list.clone())
                        .or_default()
                        .insert(source.clone());
                }
            }
        }
        let dynamic_lists = self
            .sources
            .values()
            .filter(|r| r.source.active)
            .filter(|r| (r.source.sync_enabled) || linked.contains_key(&r.source.id))
            .filter_map(|r| Some((r.source.id.clone(), r.list.clone()?)))
            .filter(|(_, shape)| shape.dynamic)
            .collect();
        SourceDirectory {
            synced,
            linked,
            dynamic_lists,
        }
    }

    /// One round of people reads.
    fn people(&self, query: &PeopleQuery) -> PeopleFound {
        let mut found = PeopleFound::default();
        for key in &query.records {
            if let Some(r) = self.recipients.get(key) {
                found.recipients.insert(key.clone(), r.clone());
            }
        }
        for (key, r) in &self.recipients {
            let by_email = key.0 != RecipientKind::Account
                && r.email
                    .as_deref()
                    .and_then(|e| Email::parse(e).ok())
                    .is_some_and(|e| query.emails.contains(&e));
            if by_email {
                found.recipients.insert(key.clone(), r.clone());
            }
        }
        for (account, contact) in &self.primary_contacts {
            let key = (RecipientKind::Account, account.clone());
            if query.primary_contacts.contains(contact)
                && let Some(r) = self.recipients.get(&key)
            {
                found.recipients.insert(key, r.clone());
            }
        }
        for key in &query.lists_of {
            let lists = self
                .list_members
                .iter()
                .filter(|(list, members)| {
                    let dynamic = self
                        .sources
                        .get(&(SourceKind::MarketingList, (*list).clone()))
                        .and_then(|l| l.list.as_ref())
                        .is_some_and(|shape| shape.dynamic);
                    !dynamic && members.iter().any(|(_, id)| *id == key.1)
                })
                .map(|(list, _)| list.clone())
                .collect();
            found.static_lists.insert(key.clone(), lists);
        }
        for (kind, id) in found.recipients.keys() {
            if *kind == RecipientKind::Lead {
                found.lead_links.insert(
                    id.clone(),
                    self.lead_links.get(id).cloned().unwrap_or_default(),
                );
            }
        }
        found
    }
}

#[async_trait]
impl PersonStore for InMemoryCrm {
    async fn person(&self, person: &CrmRef) -> Result<Option<PersonRecord>, CrmError> {
        let st = self.call(CrmPort::Persons)?;
        Ok(st
            .recipients
            .get(&CrmState::person_key(person))
            .map(|r| PersonRecord {
                person: person.clone(),
                email: r.email.clone(),
                active: Some(r.active),
                checklist: r.checklist.to_json(),
                version: Some(crate::ports::crm::RowVersion(
                    st.versions
                        .get(&CrmState::person_key(person))
                        .copied()
                        .unwrap_or_default()
                        .to_string(),
                )),
            }))
    }

    async fn write_checklist(
        &self,
        person: &CrmRef,
        checklist: &Checklist,
    ) -> Result<(), CrmError> {
        let mut st = self.call(CrmPort::Persons)?;
        let key = CrmState::person_key(person);
        if let Some(r) = st.recipients.get_mut(&key) {
            r.checklist = checklist.clone();
            *st.versions.entry(key).or_default() += 1;
        }
        st.record_write(format!("write_checklist {} {}", person.entity, person.id));
        Ok(())
    }

    async fn write_checklist_if(
        &self,
        person: &CrmRef,
        checklist: &Checklist,
        version: Option<&crate::ports::crm::RowVersion>,
    ) -> Result<bool, CrmError> {
        {
            let mut st = self.call(CrmPort::Persons)?;
            // A writer scheduled to come in between (a test's concurrent change).
            let key = CrmState::person_key(person);
            if let Some(at) = st.saved_in_between.iter().position(|(k, _)| *k == key) {
                let (_, saved) = st.saved_in_between.remove(at);
                if let Some(r) = st.recipients.get_mut(&key) {
                    r.checklist = saved;
                    *st.versions.entry(key.clone()).or_default() += 1;
                }
            }
            let current = st
                .versions
                .get(&key)
                .copied()
                .unwrap_or_default()
                .to_string();
            if let Some(version) = version
                && version.0 != current
            {
                return Ok(false);
            }
        }
        self.write_checklist(person, checklist).await.map(|()| true)
    }

    async fn deactivate_person(&self, person: &CrmRef) -> Result<(), CrmError> {
        let mut st = self.call(CrmPort::Persons)?;
        if let Some(r) = st.recipients.get_mut(&CrmState::person_key(person)) {
            r.active = false;
        }
        st.record_write(format!("deactivate {} {}", person.entity, person.id));
        Ok(())
    }
}

#[async_trait]
impl ReceiverStateLog for InMemoryCrm {
    async fn receiver_state_exists(&self, id: &str) -> Result<bool, CrmError> {
        let st = self.call(CrmPort::ReceiverStates)?;
        Ok(st.receiver_states.contains_key(id))
    }

    async fn create_receiver_state(&self, row: &ReceiverStateRow) -> Result<bool, CrmError> {
        let mut st = self.call(CrmPort::ReceiverStates)?;
        if st.receiver_states.contains_key(&row.id) {
            return Ok(false);
        }
        st.receiver_states.insert(row.id.clone(), row.clone());
        Ok(true)
    }
}

#[async_trait]
impl SignupStore for InMemoryCrm {
    async fn create_lead(&self, lead: &NewLead) -> Result<bool, CrmError> {
        let mut st = self.call(CrmPort::Signups)?;
        let key = (RecipientKind::Lead, lead.id.clone());
        if st.recipients.contains_key(&key) {
            return Ok(false);
        }
        st.recipients.insert(
            key,
            Recipient {
                kind: RecipientKind::Lead,
                person: CrmRef::new(PersonEntity::Lead, &lead.id),
                active: true,
                email: Some(lead.email.to_string()),
                do_not_bulk_email: false,
                checklist: lead.checklist.clone(),
                salutation: Some(lead.salutation.clone()),
                first_name: Some(lead.first_name.clone()),
                last_name: Some(lead.last_name.clone()),
                company: Some(lead.company.clone()),
            },
        );
        st.leads_created.push(lead.clone());
        Ok(true)
    }

    async fn add_list_member(&self, list_id: &str, member_id: &str) -> Result<(), CrmError> {
        let mut st = self.call(CrmPort::Signups)?;
        st.list_members
            .entry(list_id.to_string())
            .or_default()
            .insert((RecipientKind::Lead, member_id.to_string()));
        st.record_write(format!("add_list_member {list_id} {member_id}"));
        Ok(())
    }

    async fn link_lead(
        &self,
        lead_id: &str,
        links: &[(SourceKind, String)],
    ) -> Result<(), CrmError> {
        let mut st = self.call(CrmPort::Signups)?;
        st.lead_links
            .entry(lead_id.to_string())
            .or_default()
            .extend(links.iter().cloned());
        st.record_write(format!("link_lead {lead_id}"));
        Ok(())
    }
}

#[async_trait]
impl CursorStore for InMemoryCrm {
    async fn cursor(&self, key: &str) -> Result<Option<String>, CrmError> {
        let st = self.call(CrmPort::Cursors)?;
        Ok(st.cursors.get(key).cloned())
    }

    async fn save_cursor(&self, key: &str, value: &str) -> Result<(), CrmError> {
        let mut st = self.call(CrmPort::Cursors)?;
        st.cursors.insert(key.to_string(), value.to_string());
        Ok(())
    }
}

#[async_trait]
impl RetroactiveStore for InMemoryCrm {
    async fn retroactive_columns(
        &self,
        list_id: &str,
    ) -> Result<Option<RetroactiveColumns>, CrmError> {
        let st = self.call(CrmPort::Retroactive)?;
        Ok(st.retroactive.get(list_id).cloned())
    }

    async fn update_list(
        &self,
        list_id: &str,
        version: Option<&RowVersion>,
        update: &RetroactiveUpdate,
    ) -> Result<bool, CrmError> {
        let mut st = self.call(CrmPort::Retroactive)?;
        let Some(columns) = st.retroactive.get_mut(list_id) else {
            return Err(CrmError::NotFound(format!("list {list_id}")));
        };
        if version.is_some() && version != columns.version.as_ref() {
            return Ok(false);
        }
        if update.turn_off {
            columns.requested = false;
        }
        if let Some(state) = &update.state {
            columns.state = Some(state.clone());
        }
        let next = columns
            .version
            .as_ref()
            .and_then(|v| v.0.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        columns.version = Some(RowVersion(next.to_string()));
        Ok(true)
    }

    async fn stored_checklists(
        &self,
        entity: PersonEntity,
        ids: &[String],
    ) -> Result<HashMap<String, StoredChecklist>, CrmError> {
        let st = self.call(CrmPort::Retroactive)?;
        let mut found = HashMap::new();
        for id in ids {
            let key = CrmState::person_key(&CrmRef::new(entity, id));
            if let Some(r) = st.recipients.get(&key) {
                found.insert(
                    id.clone(),
                    StoredChecklist {
                        checklist: r.checklist.to_json(),
                        version: None,
                    },
                );
            }
        }
        Ok(found)
    }

    async fn write_checklists(
        &self,
        entity: PersonEntity,
        writes: &[ChecklistWrite],
    ) -> Result<Vec<WriteResult>, CrmError> {
        let mut st = self.call(CrmPort::Retroactive)?;
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let key = CrmState::person_key(&CrmRef::new(entity, &write.id));
            match (
                st.recipients.get_mut(&key),
                Checklist::parse(&write.checklist),
            ) {
                (Some(r), Ok(checklist)) => {
                    r.checklist = checklist;
                    results.push(WriteResult::Written);
                }
                (None, _) => results.push(WriteResult::Gone),
                (_, Err(e)) => results.push(WriteResult::Failed {
                    reason: e.to_string(),
                    retryable: false,
                }),
            }
        }
        Ok(results)
    }
}
