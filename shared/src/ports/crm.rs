//! Ports to the CRM (Dynamics 365 / Dataverse), one small trait per capability the use cases
//! need: the settings, the sources and their status, the members of a source, the people
//! directory a scoped reconcile searches, what the back-flow writes (checklists, deactivations,
//! receiver-state rows, sign-up leads), the back-flow's cursors, and the retroactive sync's
//! bookkeeping. They take and return domain types; table and column names, OData and JSON
//! bodies live in the Dataverse adapter (`adapters::dataverse::crm`), and an in-memory fake
//! (`adapters::memory::InMemoryCrm`) implements every one of them for unit tests.

use crate::domain::checklist::Checklist;
use crate::domain::email::Email;
use crate::domain::recipient::{CrmRef, PersonEntity, Recipient, RecipientKind};
use crate::domain::settings::{LoadedSettings, SettingsError};
use crate::domain::source::{GroupId, ListShape, SourceKind, SourceRecord};
use crate::error::Retryable;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

/// Why the CRM could not be read or written, classified for the caller. The texts are the
/// adapter's (status, error code, message; never secrets or personal data).
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    /// Refused for good (4xx other than throttling, a malformed answer): retrying cannot help.
    #[error("{0}")]
    Refused(String),
    /// The row or table is not there.
    #[error("{0}")]
    NotFound(String),
    /// Throttled, timed out, 5xx, connection problems: the same request may succeed later.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("the settings table is not valid: {0}")]
    Settings(#[from] SettingsError),
    /// What was read cannot be used (e.g. a list without member type).
    #[error("{what} is not valid: {problem}")]
    Invalid { what: String, problem: String },
}

impl Retryable for CrmError {
    fn is_retryable(&self) -> bool {
        matches!(self, CrmError::Unavailable { .. })
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            CrmError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

impl CrmError {
    /// The CRM said no to this request for good (a 4xx, a row that is gone): report, do not
    /// retry.
    pub fn is_refusal(&self) -> bool {
        matches!(self, CrmError::Refused(_) | CrmError::NotFound(_))
    }
}

/// The settings table.
#[async_trait]
pub trait SettingsSource: Send + Sync {
    /// Every setting, parsed; an invalid value is an error naming the key.
    async fn load_settings(&self) -> Result<LoadedSettings, CrmError>;
}

/// A source that has a group (for the back-flow jobs), whatever its sync flag.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedSource {
    pub kind: SourceKind,
    pub id: String,
    pub group_id: String,
    /// The source's checklist; `Err` holds why it could not be read.
    pub checklist: Result<Checklist, String>,
    /// Marketing lists: static or dynamic, and the member type (`query` is not read here);
    /// `None` for campaigns and activities, and for a list whose member type cannot be read.
    pub list: Option<ListShape>,
    /// Sync is on and the source active: its group gets live events (a kept group does not).
    pub synced: bool,
}

/// What a sync leaves on its source for administrators to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStatus {
    /// A good sync: the status line and its time; the last error is cleared.
    Synced { status: String, at: String },
    /// A failed sync: the error (with its time); status and last sync time stay those of the
    /// last good sync.
    Failed { error: String },
    /// A sync under way across several invocations: how far it got. The last sync time and
    /// the last error stay as they are until it finishes.
    InProgress { status: String },
}

/// Campaigns, campaign activities and marketing lists: read them, find them, and write back
/// what the connector keeps on them (group id, flags, status).
#[async_trait]
pub trait SourceStore: Send + Sync {
    /// One source, or `None` when it no longer exists.
    async fn source(&self, kind: SourceKind, id: &str) -> Result<Option<SourceRecord>, CrmError>;
    /// Every source of this kind whose sync flag is on, inactive ones included.
    async fn synced_sources(&self, kind: SourceKind) -> Result<Vec<String>, CrmError>;
    /// Every active source with sync on, of every kind.
    async fn active_synced_sources(&self) -> Result<Vec<(SourceKind, String)>, CrmError>;
    /// The sources whose stored group id is this group.
    async fn sources_with_group(
        &self,
        group_id: &str,
    ) -> Result<Vec<(SourceKind, String)>, CrmError>;
    /// Campaigns and campaign activities a marketing list is linked to.
    async fn sources_linking_list(
        &self,
        list_id: &str,
    ) -> Result<Vec<(SourceKind, String)>, CrmError>;
    /// Every source with a group id stored on it.
    async fn managed_sources(&self) -> Result<Vec<ManagedSource>, CrmError>;
    /// Stores the group id on the source (or clears it).
    async fn record_group(
        &self,
        kind: SourceKind,
        id: &str,
        group: Option<&GroupId>,
    ) -> Result<(), CrmError>;
    /// Turns the source's sync flag off (a deactivated source stops syncing).
    async fn turn_sync_off(&self, kind: SourceKind, id: &str) -> Result<(), CrmError>;
    /// Resets the "resync" request after the resync.
    async fn clear_resync(&self, kind: SourceKind, id: &str) -> Result<(), CrmError>;
    /// Resets the confirmation of a large removal once it was used.
    async fn clear_removal_confirmation(&self, kind: SourceKind, id: &str) -> Result<(), CrmError>;
    /// Writes the sync status (texts are cut to the columns' sizes, never refused).
    async fn write_status(
        &self,
        kind: SourceKind,
        id: &str,
        status: &SourceStatus,
    ) -> Result<(), CrmError>;
}

/// A source's members, page by page. A failed page can be asked for again.
#[async_trait]
pub trait MemberPages: Send {
    /// The next page of recipients; `None` when every member was read.
    async fn next_page(&mut self) -> Result<Option<Vec<Recipient>>, CrmError>;
    /// CRM requests made so far.
    fn requests(&self) -> u32;
    /// Where a later read goes on after the first `taken` members of the last page (for
    /// [`MemberReader::members_from`]); `None` when this reader cannot resume.
    fn resume_point(&self, _taken: usize) -> Option<String> {
        None
    }
}

/// The members of a source as recipients (rule 6 of the membership rule).
pub trait MemberReader: Send + Sync {
    /// From the first member.
    fn members(&self, source: &SourceRecord) -> Box<dyn MemberPages + '_> {
        self.members_from(source, None)
    }
    /// From a point a [`MemberPages::resume_point`] gave (or the first member). A point this
    /// reader cannot use fails the first page with [`CrmError::Invalid`].
    fn members_from(
        &self,
        source: &SourceRecord,
        resume: Option<&str>,
    ) -> Box<dyn MemberPages + '_>;
}

/// A CRM record as a member: its table and lower-case id.
pub type MemberKey = (RecipientKind, String);

/// The sources a person's change can reach (docs/architecture.md §10.2), read once per scoped
/// reconcile (a worker batch): every active source with sync on, the campaigns and activities
/// each list feeds, and the dynamic lists in use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceDirectory {
    /// Every active source whose sync flag is on, as [`SourceStore::source`] reads it.
    pub synced: BTreeMap<(SourceKind, String), SourceRecord>,
    /// Marketing list → the active campaigns and campaign activities with sync on it is
    /// linked to.
    pub linked: BTreeMap<String, BTreeSet<(SourceKind, String)>>,
    /// The active dynamic lists whose members the connector may need: synced, or linked to a
    /// synced campaign or activity.
    pub dynamic_lists: Vec<(String, ListShape)>,
}

impl SourceDirectory {
    /// The synced sources whose group is this one.
    pub fn sources_with_group<'a>(
        &'a self,
        group: &'a GroupId,
    ) -> impl Iterator<Item = &'a (SourceKind, String)> + 'a {
        self.synced
            .iter()
            .filter(move |(_, r)| r.source.group_id.as_ref() == Some(group))
            .map(|(key, _)| key)
    }
}

/// One round of a scoped reconcile's reads (docs/architecture.md §10.2): everything it asks is
/// read together, in one round trip where the CRM allows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeopleQuery {
    /// Records to read by id.
    pub records: BTreeSet<MemberKey>,
    /// Addresses whose contacts and leads are wanted (read whole, trimmed and in any case).
    pub emails: BTreeSet<Email>,
    /// Contacts whose accounts (where they are the primary contact) are wanted, read whole.
    pub primary_contacts: BTreeSet<String>,
    /// Records whose static marketing lists are wanted.
    pub lists_of: BTreeSet<MemberKey>,
}

impl PeopleQuery {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.emails.is_empty()
            && self.primary_contacts.is_empty()
            && self.lists_of.is_empty()
    }
}

/// What one round of reads found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeopleFound {
    /// Every record read: asked for by id, found by address, or an account of a primary
    /// contact asked for. Records that are gone are absent.
    pub recipients: BTreeMap<MemberKey, Recipient>,
    /// The static lists of each record asked for in `lists_of` (empty when none).
    pub static_lists: BTreeMap<MemberKey, BTreeSet<String>>,
    /// The campaign and campaign activity each lead read is linked to.
    pub lead_links: BTreeMap<String, Vec<(SourceKind, String)>>,
}

/// What a scoped (people) reconcile looks up: records by address, accounts and contacts that
/// belong together, and which sources a record is a member of.
#[async_trait]
pub trait PeopleDirectory: Send + Sync {
    /// One recipient, or `None` when the record is gone.
    async fn recipient(&self, kind: RecipientKind, id: &str)
    -> Result<Option<Recipient>, CrmError>;
    /// Contacts and leads whose address is this one (trimmed, any case).
    async fn people_with_email(&self, email: &str) -> Result<Vec<MemberKey>, CrmError>;
    /// Accounts whose primary contact is this contact.
    async fn accounts_of_primary_contact(&self, contact_id: &str) -> Result<Vec<String>, CrmError>;
    /// Contacts whose parent customer is this account.
    async fn contacts_of_account(&self, account_id: &str) -> Result<Vec<String>, CrmError>;
    /// The static marketing lists a record is a member of.
    async fn static_lists_of(&self, record_id: &str) -> Result<Vec<String>, CrmError>;
    /// The active dynamic lists whose members the connector may need (synced, or linked to a
    /// synced campaign or activity).
    async fn dynamic_lists_in_use(&self) -> Result<Vec<(String, ListShape)>, CrmError>;
    /// Whether a dynamic list's query selects this record.
    async fn dynamic_list_contains(
        &self,
        shape: &ListShape,
        record_id: &str,
    ) -> Result<bool, CrmError>;
    /// The campaign and campaign activity a lead is linked to.
    async fn lead_links(&self, lead_id: &str) -> Result<Vec<(SourceKind, String)>, CrmError>;
    /// The sources in use, read together (one round trip where the CRM allows).
    async fn sources_in_use(&self) -> Result<SourceDirectory, CrmError>;
    /// One round of a scoped reconcile's reads, together (one round trip where the CRM
    /// allows).
    async fn people(&self, query: &PeopleQuery) -> Result<PeopleFound, CrmError>;
    /// The sources in use and one round of people, together: the first round of a scoped
    /// reconcile costs one round trip, not two.
    async fn sources_and_people(
        &self,
        query: &PeopleQuery,
    ) -> Result<(SourceDirectory, PeopleFound), CrmError> {
        Ok((self.sources_in_use().await?, self.people(query).await?))
    }
    /// Which of these records each dynamic list's query selects, as (list id, record); all
    /// lists and records at once (one round trip where the CRM allows).
    async fn dynamic_members(
        &self,
        lists: &[(String, ListShape)],
        records: &BTreeSet<MemberKey>,
    ) -> Result<BTreeSet<(String, MemberKey)>, CrmError>;
}

/// A contact or lead as the back-flow reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRecord {
    pub person: CrmRef,
    pub email: Option<String>,
    /// `Some(true)` active (a lead: open), `Some(false)` not, `None` unknown.
    pub active: Option<bool>,
    /// The checklist text as stored (parsed by the caller, which reports what is wrong).
    pub checklist: String,
    /// The row version it was read at, for a write that must not overwrite a change made
    /// since (`None`: the store keeps no versions).
    pub version: Option<RowVersion>,
}

/// People as the back-flow changes them: their checklist and their state.
#[async_trait]
pub trait PersonStore: Send + Sync {
    /// One contact or lead, `None` when it does not exist.
    async fn person(&self, person: &CrmRef) -> Result<Option<PersonRecord>, CrmError>;
    async fn write_checklist(&self, person: &CrmRef, checklist: &Checklist)
    -> Result<(), CrmError>;
    /// Writes the checklist only if the row is still at `version` (`If-Match`); false when
    /// someone wrote in between (read again, apply again). Without a version, as
    /// [`PersonStore::write_checklist`].
    async fn write_checklist_if(
        &self,
        person: &CrmRef,
        checklist: &Checklist,
        version: Option<&RowVersion>,
    ) -> Result<bool, CrmError> {
        let _ = version;
        self.write_checklist(person, checklist).await.map(|()| true)
    }
    /// A contact becomes inactive, a lead disqualified ("cannot contact").
    async fn deactivate_person(&self, person: &CrmRef) -> Result<(), CrmError>;
}

/// An unsubscribe or bounce as the CRM records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverEvent {
    Unsubscribed,
    Bounced,
}

/// One row of the receiver-state table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverStateRow {
    /// Derived from the event, so the same event never makes two rows.
    pub id: String,
    pub name: String,
    /// `<group>|<e-mail>|<event>|<unix time>`.
    pub event_key: String,
    pub email: Email,
    pub group_id: String,
    pub event: ReceiverEvent,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub time: String,
    /// The recipient the event was matched to.
    pub recipient: Option<CrmRef>,
    /// What was done (cut to the column's size by the adapter).
    pub details: String,
}

/// The receiver-state table: the mark that an event from CleverReach was applied.
#[async_trait]
pub trait ReceiverStateLog: Send + Sync {
    async fn receiver_state_exists(&self, id: &str) -> Result<bool, CrmError>;
    /// `Ok(false)` when the row exists already.
    async fn create_receiver_state(&self, row: &ReceiverStateRow) -> Result<bool, CrmError>;
}

/// A lead made from a sign-up in CleverReach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLead {
    /// Derived from the address, so a rerun creates nothing twice.
    pub id: String,
    pub email: Email,
    pub subject: String,
    pub checklist: Checklist,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub salutation: String,
}

/// Where sign-ups land: new leads, and their membership of the group's sources.
#[async_trait]
pub trait SignupStore: Send + Sync {
    /// `Ok(false)` when a lead with this id exists already.
    async fn create_lead(&self, lead: &NewLead) -> Result<bool, CrmError>;
    /// Adds a record to a static list (a member stays a member).
    async fn add_list_member(&self, list_id: &str, member_id: &str) -> Result<(), CrmError>;
    /// Links a lead to campaigns or campaign activities through its lookups, in one update.
    async fn link_lead(
        &self,
        lead_id: &str,
        links: &[(SourceKind, String)],
    ) -> Result<(), CrmError>;
}

/// Durable progress of the scheduled jobs, by key.
#[async_trait]
pub trait CursorStore: Send + Sync {
    async fn cursor(&self, key: &str) -> Result<Option<String>, CrmError>;
    /// Creates or overwrites.
    async fn save_cursor(&self, key: &str, value: &str) -> Result<(), CrmError>;
}

/// An opaque row version (optimistic concurrency): a write "if unchanged" succeeds only while
/// the row is still at this version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowVersion(pub String);

/// The retroactive-sync columns of a marketing list, with the row version they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetroactiveColumns {
    /// The "retroactive sync" flag.
    pub requested: bool,
    /// The requested checklist JSON, as stored (may be empty).
    pub checklist_json: Option<String>,
    /// The list's own checklist, as stored.
    pub list_checklist: Option<String>,
    /// The run's bookkeeping, as stored.
    pub state: Option<String>,
    pub version: Option<RowVersion>,
}

/// What the retroactive sync writes on its list; `None` leaves a column as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetroactiveUpdate {
    /// Turn the "retroactive sync" flag off.
    pub turn_off: bool,
    pub state: Option<String>,
    /// The readable progress (cut to its column's size by the adapter).
    pub progress: Option<String>,
    /// `Some(None)` clears the source's last error, `Some(Some(text))` sets it.
    pub last_error: Option<Option<String>>,
}

/// One person's checklist as stored, with the row version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChecklist {
    pub checklist: String,
    pub version: Option<RowVersion>,
}

/// One checklist write of a mass update: only if the row is still at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecklistWrite {
    pub id: String,
    pub version: Option<RowVersion>,
    pub checklist: String,
}

/// How one conditional checklist write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteResult {
    Written,
    /// The row changed since it was read: read again.
    Stale,
    /// The row is gone.
    Gone,
    /// Any other failure, with whether trying again may help.
    Failed {
        reason: String,
        retryable: bool,
    },
}

/// The retroactive sync's reads and conditional writes.
#[async_trait]
pub trait RetroactiveStore: Send + Sync {
    /// The list's retroactive-sync columns, or `None` when the list is gone.
    async fn retroactive_columns(
        &self,
        list_id: &str,
    ) -> Result<Option<RetroactiveColumns>, CrmError>;
    /// Writes the list's columns; with a version, only if the list is still at it (`Ok(false)`
    /// when someone wrote in between).
    async fn update_list(
        &self,
        list_id: &str,
        version: Option<&RowVersion>,
        update: &RetroactiveUpdate,
    ) -> Result<bool, CrmError>;
    /// The stored checklists of these contacts or leads; ids not found are left out.
    async fn stored_checklists(
        &self,
        entity: PersonEntity,
        ids: &[String],
    ) -> Result<HashMap<String, StoredChecklist>, CrmError>;
    /// Writes checklists (at most 1000), each only if the row is at its version; one result
    /// per write, in order.
    async fn write_checklists(
        &self,
        entity: PersonEntity,
        writes: &[ChecklistWrite],
    ) -> Result<Vec<WriteResult>, CrmError>;
}
