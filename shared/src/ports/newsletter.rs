//! Ports to the newsletter tool (CleverReach): its groups, the receivers in them, and the
//! account's blacklist. The use cases see these traits and the plain types below; the
//! CleverReach adapter translates them to REST v3 calls (`adapters::cleverreach`) and the
//! in-memory fake (`adapters::memory::InMemoryNewsletter`) keeps them in maps for unit tests.

use crate::domain::blocklist::BlockSet;
use crate::domain::email::Email;
use crate::domain::planner::ReceiverUpsert;
use crate::domain::receiver::CurrentReceiver;
use crate::error::Retryable;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// Receivers asked for per page when reading a group or the runtime filter (CleverReach's
/// maximum).
pub const MAX_PAGE_SIZE: usize = 5000;

/// Why the newsletter tool could not be read or written, classified for the caller. The texts
/// are the adapter's (they name status and reason, never tokens or secrets).
#[derive(Debug, thiserror::Error)]
pub enum NewsletterError {
    /// No usable connection: only a person can fix it by connecting again.
    #[error("{0}")]
    ReconnectRequired(String),
    #[error("{0}")]
    NotFound(String),
    /// The change conflicts with what is there (e.g. the new address of an address change is
    /// a receiver already).
    #[error("{0}")]
    Conflict(String),
    /// An answer that could not be read (e.g. one broken receiver on a page): the caller may
    /// read the items one by one.
    #[error("{0}")]
    Unreadable(String),
    /// Refused for good (4xx other than throttling, bad input, bad configuration).
    #[error("{0}")]
    Refused(String),
    /// Throttled, timed out, 5xx, connection problems: the same call may succeed later.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
}

impl Retryable for NewsletterError {
    fn is_retryable(&self) -> bool {
        matches!(self, NewsletterError::Unavailable { .. })
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            NewsletterError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A group as the connector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: String,
    pub name: String,
    /// Protected against deletion (CleverReach `locked`).
    pub locked: bool,
    /// The group's description, without the connector's creation marker.
    pub receiver_info: String,
    /// The connector created this group (it carries the connector's creation marker; the
    /// nightly orphan sweep looks only at such groups).
    pub created_by_connector: bool,
    /// When the group was created (seconds since the epoch), when known.
    pub created_at: Option<i64>,
}

/// Which receivers of a group to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListState {
    #[default]
    All,
    Active,
    /// Not active: unsubscribed, bounced, or never activated.
    Inactive,
    Bounced,
}

/// Which receivers to page through, and how many per page (at most 5000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverFilter {
    pub state: ListState,
    pub page_size: usize,
}

impl Default for ReceiverFilter {
    fn default() -> Self {
        ReceiverFilter {
            state: ListState::All,
            page_size: MAX_PAGE_SIZE,
        }
    }
}

/// A receiver with the details the back-flow needs (which group, when what happened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverRecord {
    /// CleverReach's receiver ("pool") id.
    pub id: String,
    pub group_id: String,
    pub receiver: CurrentReceiver,
    pub source: String,
    pub registered: Option<DateTime<Utc>>,
    pub activated: Option<DateTime<Utc>>,
    /// When the receiver unsubscribed (or was deactivated).
    pub deactivated: Option<DateTime<Utc>>,
    pub bounced: Option<DateTime<Utc>>,
    /// The company as an account-wide attribute (what a sign-up form may have set; the
    /// connector itself writes the company per group).
    pub global_company: String,
}

/// One rule of a receiver search across groups (CleverReach's runtime filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterRule {
    EmailIs(Email),
    /// The receiver carries this CRM record (lower-case GUID) as its `crmid`.
    CrmIdIs(String),
    ActivatedAfter(DateTime<Utc>),
    /// Unsubscribed/deactivated after this time: the back-flow's cursor.
    DeactivatedAfter(DateTime<Utc>),
    RegisteredAfter(DateTime<Utc>),
    BouncedAfter(DateTime<Utc>),
}

/// A receiver search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRequest {
    /// Group ids; empty = every group of the account.
    pub groups: Vec<String>,
    /// `true`: any rule may match (OR); `false`: all must (AND).
    pub match_any: bool,
    pub rules: Vec<FilterRule>,
    /// 0-based.
    pub page: u32,
    /// At most 5000.
    pub page_size: usize,
}

impl FilterRequest {
    /// All rules must match, first page of 5000.
    pub fn new(groups: Vec<String>, rules: Vec<FilterRule>) -> Self {
        FilterRequest {
            groups,
            match_any: false,
            rules,
            page: 0,
            page_size: MAX_PAGE_SIZE,
        }
    }
}

/// One page of a paged read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Rows skipped because their address is not a valid e-mail.
    pub unreadable: usize,
    /// Fewer rows than asked for: there is no next page.
    pub is_last: bool,
}

/// What one upsert call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpsertReport {
    pub inserted: usize,
    pub updated: usize,
    /// Rows the newsletter tool refused, with its reason.
    pub rejected: Vec<RejectedReceiver>,
    /// Upsert requests that succeeded.
    pub calls: usize,
    /// The batch size in use at the end (smaller than configured after a 413).
    pub batch_size: usize,
}

/// A receiver the newsletter tool did not take, and why. The reason may quote the address:
/// log the count, not the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedReceiver {
    pub email: Email,
    pub reason: String,
}

/// What a removal did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoveReport {
    pub removed: Vec<Email>,
    /// Not in the group (any more): nothing to do.
    pub already_gone: Vec<Email>,
    pub failed: Vec<RejectedReceiver>,
}

/// How an address change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailChange {
    Changed,
    /// The old address was gone and the new one present: an earlier attempt did it.
    AlreadyChanged,
}

/// An account-level bounce record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    pub email: Email,
    /// `hardbounce`, `permanent`, …
    pub category: String,
    pub occurrences: i64,
    pub last_update: Option<DateTime<Utc>>,
    pub message: String,
}

/// The groups of the account.
///
/// Contract: groups are addressed by id (names are not unique); `create_group` creates exactly
/// one group even when retried.
#[async_trait]
pub trait GroupStore: Send + Sync {
    /// The group, or `None` when the newsletter tool does not know the id (deleted there).
    async fn get_group(&self, group_id: &str) -> Result<Option<Group>, NewsletterError>;
    /// Every group of the account.
    async fn list_groups(&self) -> Result<Vec<Group>, NewsletterError>;
    async fn create_group(
        &self,
        name: &str,
        locked: bool,
        receiver_info: &str,
    ) -> Result<Group, NewsletterError>;
    async fn rename_group(&self, group_id: &str, name: &str) -> Result<(), NewsletterError>;
    /// Sets the description; a group the connector created keeps its creation marker.
    async fn set_receiver_info(
        &self,
        group_id: &str,
        receiver_info: &str,
    ) -> Result<(), NewsletterError>;
    /// `Ok(false)`: it did not exist.
    async fn delete_group(&self, group_id: &str) -> Result<bool, NewsletterError>;
}

/// A group's receivers, page by page. A failed page can be asked for again.
#[async_trait]
pub trait ReceiverPages: Send {
    /// The next page; `None` when every receiver was read.
    async fn next_page(&mut self) -> Result<Option<Vec<CurrentReceiver>>, NewsletterError>;
}

/// The receivers in groups.
///
/// Contract: an upsert never changes the state of a receiver that exists (only rows marked
/// `activate` start active, and only when new); removals and address changes are safe to
/// retry.
#[async_trait]
pub trait ReceiverStore: Send + Sync {
    /// Rows per upsert call the store starts with (the planner fills batches of this size).
    fn upsert_batch_size(&self) -> usize;
    /// Every receiver of a group (any state), page by page.
    fn receivers(&self, group_id: &str, filter: ReceiverFilter) -> Box<dyn ReceiverPages + '_>;
    async fn upsert_receivers(
        &self,
        group_id: &str,
        rows: &[ReceiverUpsert],
    ) -> Result<UpsertReport, NewsletterError>;
    async fn remove_receivers(
        &self,
        group_id: &str,
        emails: &[Email],
    ) -> Result<RemoveReport, NewsletterError>;
    /// Leaves only address and state on these receivers: names, company and CRM record are
    /// emptied, the state is not touched (data minimisation for a record deleted in the CRM).
    async fn strip_receivers(
        &self,
        group_id: &str,
        emails: &[Email],
    ) -> Result<(), NewsletterError>;
    /// `Ok(false)`: it was not in the group.
    async fn remove_receiver(&self, group_id: &str, email: &Email)
    -> Result<bool, NewsletterError>;
    /// Changes an address account-wide (in every group). [`NewsletterError::Conflict`] when
    /// the new address is a receiver already.
    async fn change_email(&self, from: &Email, to: &Email) -> Result<EmailChange, NewsletterError>;
    /// One receiver of a group by address.
    async fn find_receiver(
        &self,
        group_id: &str,
        email: &Email,
    ) -> Result<Option<ReceiverRecord>, NewsletterError>;
    /// A receiver search across groups.
    async fn filter_receivers(
        &self,
        request: &FilterRequest,
    ) -> Result<Page<ReceiverRecord>, NewsletterError>;
}

/// The account-wide opt-outs: the blacklist (addresses and domains) and the bounce list.
#[async_trait]
pub trait BlockList: Send + Sync {
    /// What may never be added as active; adapters read it at most every few minutes.
    async fn blocked(&self) -> Result<Arc<BlockSet>, NewsletterError>;
}

/// Which newsletter API a connection talks to (compared with the CRM's `apiurl` setting).
pub trait NewsletterEndpoint: Send + Sync {
    fn api_url(&self) -> String;
}

/// A registration of the connector's endpoint for a group's receiver events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredHook {
    pub event: String,
    /// The group id the registration watches.
    pub condition: String,
    pub url: String,
}

/// What a successful registration hands out: the token every delivery carries.
#[derive(Debug, Clone)]
pub struct HookRegistration {
    pub call_token: crate::secret::Secret,
}

/// The newsletter tool's event hooks (CleverReach `hooks/eventhook`).
///
/// Contract: `register_hook` returns only once the tool has checked the endpoint (it calls
/// the endpoint, which must answer with the verify token); `delete_hook` of a group without a
/// registration is not an error.
#[async_trait]
pub trait HookRegistry: Send + Sync {
    async fn register_hook(
        &self,
        url: &str,
        group_id: &str,
        verify: &crate::secret::Secret,
    ) -> Result<HookRegistration, NewsletterError>;
    async fn list_hooks(&self) -> Result<Vec<RegisteredHook>, NewsletterError>;
    async fn delete_hook(&self, group_id: &str) -> Result<(), NewsletterError>;
    /// One receiver of a group by its id (a delivery names only the id).
    async fn receiver_by_id(
        &self,
        group_id: &str,
        receiver_id: &str,
    ) -> Result<Option<ReceiverRecord>, NewsletterError>;
}
