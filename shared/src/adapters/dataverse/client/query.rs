//! OData queries (`$select`, `$filter`, `$orderby`, `$top`) and page-by-page reading that
//! follows `@odata.nextLink` unchanged (docs/architecture.md §11), so that memory stays flat as lists grow.

use super::error::DataverseError;
use super::{ApiRequest, DataverseClient, encode_query_value, filter};
use reqwest::header::HeaderName;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

/// An OData query on one entity set. Build `filter` with [`filter::string_literal`] and
/// [`filter::guid_literal`] for any value that comes from data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Columns to return (`$select`); empty returns all columns (avoid: slower, more data).
    pub select: Vec<String>,
    /// `$filter` expression, e.g. `statecode eq 0 and emailaddress1 eq 'a@b.de'`.
    pub filter: Option<String>,
    /// `$orderby` terms, e.g. `createdon desc`.
    pub orderby: Vec<String>,
    /// `$top`; when set, no page size is sent (Dataverse ignores `$top` with one).
    pub top: Option<u32>,
    /// Annotations to ask for in `Prefer: odata.include-annotations="…"`, e.g.
    /// `Microsoft.Dynamics.CRM.lookuplogicalname` or `*`.
    pub annotations: Option<String>,
}

impl Query {
    pub fn new() -> Query {
        Query::default()
    }

    pub fn select<I, S>(mut self, columns: I) -> Query
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.select.extend(columns.into_iter().map(Into::into));
        self
    }

    pub fn filter(mut self, filter: impl Into<String>) -> Query {
        self.filter = Some(filter.into());
        self
    }

    pub fn orderby(mut self, term: impl Into<String>) -> Query {
        self.orderby.push(term.into());
        self
    }

    pub fn top(mut self, top: u32) -> Query {
        self.top = Some(top);
        self
    }

    pub fn annotations(mut self, annotations: impl Into<String>) -> Query {
        self.annotations = Some(annotations.into());
        self
    }

    /// The encoded query string (without `?`). Column names are validated; the filter and
    /// order terms are percent-encoded as a whole.
    pub(crate) fn to_query_string(&self) -> Result<String, DataverseError> {
        let mut parts = Vec::new();
        if !self.select.is_empty() {
            for column in &self.select {
                filter::identifier("$select column", column)?;
            }
            parts.push(format!("$select={}", self.select.join(",")));
        }
        if let Some(filter) = &self.filter {
            if filter.chars().any(char::is_control) {
                return Err(DataverseError::invalid(
                    "$filter",
                    "must not contain control characters",
                ));
            }
            parts.push(format!("$filter={}", encode_query_value(filter)));
        }
        if !self.orderby.is_empty() {
            parts.push(format!(
                "$orderby={}",
                encode_query_value(&self.orderby.join(","))
            ));
        }
        if let Some(top) = self.top {
            parts.push(format!("$top={top}"));
        }
        Ok(parts.join("&"))
    }
}

#[derive(Deserialize)]
struct PageBody<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// The pages of an OData query, read one request at a time.
///
/// A failed [`Pages::next_page`] leaves the position unchanged, so calling it again retries the
/// same page.
pub struct Pages<T> {
    client: DataverseClient,
    next: Option<ApiRequest>,
    /// The URL of the page last read, to read it again when resuming.
    last: Option<String>,
    /// The `Prefer` header of the first request, sent again with every `@odata.nextLink`.
    prefer: Option<String>,
    pending_error: Option<DataverseError>,
    requests: u32,
    row: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Pages<T> {
    pub(crate) fn new(
        client: DataverseClient,
        first: Result<ApiRequest, DataverseError>,
    ) -> Pages<T> {
        let (next, pending_error) = match first {
            Ok(request) => (Some(request), None),
            Err(err) => (None, Some(err)),
        };
        let prefer = next.as_ref().and_then(|request| {
            request
                .headers
                .iter()
                .find(|(name, _)| *name == HeaderName::from_static("prefer"))
                .map(|(_, value)| value.clone())
        });
        Pages {
            client,
            next,
            last: None,
            prefer,
            pending_error,
            requests: 0,
            row: PhantomData,
        }
    }

    /// The next page of rows, or `None` after the last page.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, DataverseError> {
        if let Some(err) = self.pending_error.take() {
            return Err(err);
        }
        let Some(request) = &self.next else {
            return Ok(None);
        };
        self.requests += 1;
        let page: PageBody<T> = self
            .client
            .execute(request, |_, raw| {
                if raw.is_success() {
                    raw.json("page of rows")
                } else {
                    Err(raw.error())
                }
            })
            .await?;
        self.last = Some(request.url.to_string());
        self.next = match page.next_link {
            Some(link) => Some(
                self.client
                    .request_for_link(&link, self.prefer.as_deref())?,
            ),
            None => None,
        };
        Ok(Some(page.value))
    }

    /// How many page requests were made so far (retries of one page count once).
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The URL of the page last read (the query itself, or an `@odata.nextLink`).
    pub fn last_page(&self) -> Option<String> {
        self.last.clone()
    }

    /// Reads on from a URL [`Pages::last_page`] gave (that page comes next), with this query's
    /// preferences. The URL must lie inside the Web API, as a next link must.
    pub fn resume_at(&mut self, link: &str) -> Result<(), DataverseError> {
        self.next = Some(self.client.request_for_link(link, self.prefer.as_deref())?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_encodes_the_filter_and_keeps_the_select_list() {
        let query = Query::new()
            .select(["contactid", "emailaddress1"])
            .filter(format!(
                "emailaddress1 eq {} and statecode eq 0",
                filter::string_literal("o'brien+x@example.com")
            ))
            .orderby("createdon desc")
            .top(10);
        assert_eq!(
            query.to_query_string().ok().as_deref(),
            Some(
                "$select=contactid,emailaddress1\
                 &$filter=emailaddress1%20eq%20%27o%27%27brien%2Bx%40example.com%27%20and%20statecode%20eq%200\
                 &$orderby=createdon%20desc&$top=10"
            )
        );
    }

    #[test]
    fn a_select_column_with_url_syntax_is_refused() {
        let query = Query::new().select(["contactid&$filter=x"]);
        assert!(matches!(
            query.to_query_string(),
            Err(DataverseError::InvalidInput { .. })
        ));
    }
}
