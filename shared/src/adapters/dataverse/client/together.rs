//! Several reads in one round trip: GETs inside `$batch` (docs/architecture.md §11). Dataverse
//! counts a `$batch` as one request against service protection (its operations' execution
//! time combined), so a scoped reconcile's handful of small reads costs one request, not one
//! each. A read whose answer is longer than one page is read on page by page afterwards (more
//! requests only then).

use super::batch::{BatchRequest, MAX_BATCH_REQUESTS};
use super::error::DataverseError;
use super::fetchxml::{INCLUDE_ALL_ANNOTATIONS, MAX_BATCH_URL, Paging, set_paging};
use super::{DataverseClient, Query, encode_query_value, fetchxml, filter};
use crate::domain::recipient::RecipientKind;
use reqwest::Method;
use serde_json::Value;

/// One read of [`DataverseClient::read_together`].
#[derive(Clone, Debug, PartialEq)]
pub enum Read {
    /// An OData query on an entity set (no `$top`).
    Query { entity_set: String, query: Query },
    /// A FetchXML query on an entity set.
    FetchXml {
        entity_set: String,
        fetch_xml: String,
    },
}

impl Read {
    pub fn query(entity_set: &str, query: Query) -> Read {
        Read::Query {
            entity_set: entity_set.to_string(),
            query,
        }
    }

    pub fn fetch_xml(entity_set: &str, fetch_xml: String) -> Read {
        Read::FetchXml {
            entity_set: entity_set.to_string(),
            fetch_xml,
        }
    }

    fn entity_set(&self) -> &str {
        match self {
            Read::Query { entity_set, .. } | Read::FetchXml { entity_set, .. } => entity_set,
        }
    }
}

impl DataverseClient {
    /// Runs `reads` together, as GETs in `$batch` requests (up to 1000 a batch; one batch for
    /// a scoped reconcile's reads), and returns each read's rows, in order. A read whose first
    /// page says more rows follow is read on page by page on its own afterwards.
    pub async fn read_together(&self, reads: &[Read]) -> Result<Vec<Vec<Value>>, DataverseError> {
        let mut rows = Vec::with_capacity(reads.len());
        for chunk in reads.chunks(MAX_BATCH_REQUESTS) {
            let requests = chunk
                .iter()
                .map(|read| self.batch_get(read))
                .collect::<Result<Vec<_>, _>>()?;
            let answers = self.batch(requests).await?;
            for (read, answer) in chunk.iter().zip(answers) {
                let label = format!("GET {} (in $batch)", read.entity_set());
                if !answer.is_success() {
                    return Err(answer.to_error(&label));
                }
                let body = answer.body.unwrap_or_default();
                let more = body.get("@odata.nextLink").is_some()
                    || body.get("@Microsoft.Dynamics.CRM.morerecords") == Some(&Value::Bool(true));
                if more {
                    rows.push(self.read_all_pages(read).await?);
                    continue;
                }
                let page: Vec<Value> = match body.get("value") {
                    Some(Value::Array(items)) => items.clone(),
                    _ => {
                        return Err(DataverseError::decode(
                            &label,
                            "collection",
                            "no \"value\" array in the answer",
                        ));
                    }
                };
                rows.push(page);
            }
        }
        Ok(rows)
    }

    /// Which of these records a dynamic list's query selects, as a read for
    /// [`DataverseClient::read_together`] (the query restricted to the records' ids; at most
    /// a few hundred ids, so that the URL stays inside a `$batch` part's limit).
    pub fn dynamic_list_selects(
        &self,
        fetch_xml_query: &str,
        member_kind: RecipientKind,
        record_ids: &[String],
    ) -> Result<Read, DataverseError> {
        let (set, key, _) = super::member_table(member_kind);
        let xml = fetchxml::prepare_membership_check_of(
            fetch_xml_query,
            member_kind.logical_name(),
            key,
            record_ids,
        )?;
        Ok(Read::fetch_xml(set, xml))
    }

    /// The GET of one read, as a `$batch` part.
    fn batch_get(&self, read: &Read) -> Result<BatchRequest, DataverseError> {
        let page_size = self.config().max_page_size;
        let (relative_url, prefer) = match read {
            Read::Query { entity_set, query } => {
                let set = filter::identifier("entity set", entity_set)?;
                let query_string = query.to_query_string()?;
                let mut prefer = format!("odata.maxpagesize={page_size}");
                if let Some(annotations) = &query.annotations {
                    prefer.push_str(&format!(",odata.include-annotations=\"{annotations}\""));
                }
                let url = if query_string.is_empty() {
                    set.to_string()
                } else {
                    format!("{set}?{query_string}")
                };
                (url, prefer)
            }
            Read::FetchXml {
                entity_set,
                fetch_xml,
            } => {
                let set = filter::identifier("entity set", entity_set)?;
                let paged = set_paging(
                    fetch_xml,
                    Some(&Paging {
                        page: 1,
                        count: page_size,
                        cookie: None,
                    }),
                )
                .map_err(|reason| DataverseError::invalid("FetchXML", reason))?;
                (
                    format!("{set}?fetchXml={}", encode_query_value(&paged)),
                    INCLUDE_ALL_ANNOTATIONS.to_string(),
                )
            }
        };
        let inner_url_len = self.api_url().path().len() + relative_url.len();
        if inner_url_len > MAX_BATCH_URL {
            return Err(DataverseError::invalid(
                "$batch GET",
                format!(
                    "the URL is {inner_url_len} characters; Dataverse takes at most {MAX_BATCH_URL}"
                ),
            ));
        }
        Ok(BatchRequest::new(Method::GET, relative_url).with_header("Prefer", prefer))
    }

    /// Every row of a read, page by page (a read too big for one page of a `$batch`).
    async fn read_all_pages(&self, read: &Read) -> Result<Vec<Value>, DataverseError> {
        let mut rows = Vec::new();
        match read {
            Read::Query { entity_set, query } => {
                let mut pages = self.query::<Value>(entity_set, query);
                while let Some(page) = pages.next_page().await? {
                    rows.extend(page);
                }
            }
            Read::FetchXml {
                entity_set,
                fetch_xml,
            } => {
                let mut pages = self.fetch_xml::<Value>(entity_set, fetch_xml);
                while let Some(page) = pages.next_page().await? {
                    rows.extend(page);
                }
            }
        }
        Ok(rows)
    }
}
