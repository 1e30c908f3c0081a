//! CleverReach adapter: configuration and the names of the receiver attributes.

use crate::adapters::http::RetryPolicy;
use crate::secret::Secret;
use std::time::Duration;
use url::Url;

/// The API base of `cleverreach:connectiondata:apiurl` when the setting is empty.
pub const DEFAULT_BASE_URL: &str = "https://rest.cleverreach.com/";

/// Official clients send 250 receivers per upsert; CleverReach takes at most 1000.
pub const DEFAULT_UPSERT_BATCH: usize = 250;
pub const MAX_UPSERT_BATCH: usize = 1000;
/// Receiver lists and the filter serve at most 5000 rows per page.
pub const MAX_PAGE_SIZE: usize = 5000;
/// Bounces come in pages of at most 500.
pub const MAX_BOUNCE_PAGE_SIZE: usize = 500;
/// Batch deletes use the official cores' size.
pub const DELETE_BATCH: usize = 250;

/// The CleverReach attributes the connector writes on every receiver (docs/architecture.md §2
/// "Receiver data"). The one place these names live.
pub mod attribute {
    pub const SALUTATION: &str = "salutation";
    pub const FIRST_NAME: &str = "firstname";
    pub const LAST_NAME: &str = "lastname";
    /// The company, group-local: it depends on the source (a contact's parent account in a
    /// contact list, the account itself in an account list), and global attributes are one
    /// value per address for the whole account. Its own name, so that it clashes with no
    /// global attribute an account already has (CleverReach may refuse such a clash).
    pub const GROUP_COMPANY: &str = "crm_company";
    /// A global `company`, as many accounts and their sign-up forms have it: read for a
    /// sign-up whose group-local company is empty, never written.
    pub const COMPANY: &str = "company";
    /// The CRM table of the person (`contact` or `lead`).
    pub const CRM_ENTITY: &str = "crmentity";
    /// The CRM record id (a GUID).
    pub const CRM_ID: &str = "crmid";

    /// The global ones the connector writes, in the order they are created.
    pub const ALL: [&str; 5] = [SALUTATION, FIRST_NAME, LAST_NAME, CRM_ENTITY, CRM_ID];

    /// The group-local ones, created in every group the connector writes to.
    pub const GROUP: [&str; 1] = [GROUP_COMPANY];
}

/// How to reach CleverReach.
#[derive(Debug, Clone)]
pub struct CleverReachConfig {
    /// `https://rest.cleverreach.com/` (setting `cleverreach:connectiondata:apiurl`); the API
    /// is under `v3/`, OAuth under `oauth/`.
    pub base_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// Per HTTP request, body included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Receivers per upsert call: default 250, never above 1000.
    pub upsert_batch_size: usize,
    /// Names the CRM organisation; sent as every receiver's `source`.
    pub source: String,
}

impl CleverReachConfig {
    /// A configuration with the defaults: 30 s timeout, the default retry policy, batches
    /// of 250.
    pub fn new(
        base_url: Url,
        client_id: impl Into<String>,
        client_secret: Secret,
        source: impl Into<String>,
    ) -> Self {
        CleverReachConfig {
            base_url,
            client_id: client_id.into(),
            client_secret,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            upsert_batch_size: DEFAULT_UPSERT_BATCH,
            source: source.into(),
        }
    }
}
