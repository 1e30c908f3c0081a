//! Adapter: the CRM ports (`ports::crm`) on top of the Dataverse Web API client. Rows become
//! domain types here and nowhere else; every table and column name comes from `schema`.
//! One module per port group:
//! - `sources`: settings, sources and their status;
//! - `members`: a source's members, page by page (5000 rows a request, flat memory);
//! - `people`: the directory a scoped reconcile searches;
//! - `backflow`: what the back-flow writes (checklists, deactivations, receiver-state rows,
//!   sign-up leads) and its cursors;
//! - `retroactive`: the retroactive sync's conditional reads and writes.

mod backflow;
mod members;
pub use members::SEGMENTS_IN_FLIGHT;
mod people;
mod retroactive;
mod rows;
mod sources;

pub use members::MemberStream;
pub use rows::{account_recipient, contact_recipient, lead_recipient};

use super::client::{DataverseClient, DataverseError, Query, filter};
use super::schema;
use crate::error::Retryable;
use crate::ports::crm::CrmError;
use serde_json::Value;

/// Ids per FetchXML `in` condition: each id takes about 70 characters of the percent-encoded
/// URL, and a GET inside `$batch` may be at most 64 KB long, so 5000 ids would be refused;
/// 400 keep it under 32 KB.
const IDS_PER_FETCH: usize = 400;

/// The CRM through the Web API.
#[derive(Clone)]
pub struct DataverseCrm {
    client: DataverseClient,
}

impl crate::metrics::CallCounter for DataverseCrm {
    fn calls(&self) -> u64 {
        self.client.requests_sent()
    }
}

impl DataverseCrm {
    pub fn new(client: DataverseClient) -> Self {
        DataverseCrm { client }
    }

    pub fn client(&self) -> &DataverseClient {
        &self.client
    }

    /// Reads every row of a query (for small result sets: memberships of one record, sources
    /// of one group).
    async fn all_rows(&self, entity_set: &str, query: &Query) -> Result<Vec<Value>, CrmError> {
        let mut pages = self.client.query::<Value>(entity_set, query);
        let mut rows = Vec::new();
        while let Some(page) = pages.next_page().await? {
            rows.extend(page);
        }
        Ok(rows)
    }

    /// The ids (`key`) of the rows of `entity_set` whose `column` holds this GUID.
    async fn ids_where(
        &self,
        entity_set: &str,
        column: &str,
        guid: &str,
        key: &str,
    ) -> Result<Vec<String>, CrmError> {
        let filter = format!("{column} eq {}", filter::guid_literal(guid)?);
        let rows = self
            .all_rows(entity_set, &Query::new().select([key]).filter(filter))
            .await?;
        Ok(rows.iter().filter_map(|r| rows::id(r, key)).collect())
    }
}

/// Dataverse's failures, classified for the use cases: throttling, timeouts, 5xx and broken
/// connections may succeed later; 404 is "not there"; everything else is a refusal. The text
/// keeps the client's (request, status, code and message).
impl From<DataverseError> for CrmError {
    fn from(e: DataverseError) -> Self {
        if e.is_retryable() {
            return CrmError::Unavailable {
                retry_after: e.retry_after(),
                message: e.to_string(),
            };
        }
        match e {
            DataverseError::NotFound { .. } => CrmError::NotFound(e.to_string()),
            other => CrmError::Refused(other.to_string()),
        }
    }
}
