//! Adapter: Dataverse Web API client (OAuth client credentials, OData reads with paging,
//! FetchXML with paging cookies, idempotent writes, `$batch`, list membership reads).
//!
//! Wire formats follow `ref/dataverse.md` §4–§5. Every request:
//! - carries `Accept: application/json`, `OData-MaxVersion: 4.0`, `OData-Version: 4.0`, a bearer
//!   token, `If-None-Match: null` on reads (so that no cached `304` comes back) and
//!   `Content-Type` on bodies;
//! - reads the whole response body before it counts as a success: a connection that breaks
//!   mid-body is a [`DataverseError::Transport`] error (ambiguous, retryable);
//! - runs under [`with_retries`] with the configured [`RetryPolicy`]: 429 waits for
//!   `Retry-After`, 5xx / timeouts / transport errors back off with jitter, within a budget;
//! - on a 401 fetches a new token once and sends the request again.
//!
//! **Retries and writes.** A retried write must not take effect twice:
//! - [`DataverseClient::create`] picks the primary key itself and sends
//!   `PATCH set(<id>)` with `If-None-Match: *` (create, never update). If a *retry* gets
//!   `412`, the earlier attempt reached Dataverse and created the row: that is success. A `412`
//!   on the *first* attempt means the key exists already: a real [`DataverseError::Conflict`].
//! - `update` (`PATCH` + `If-Match: *`), `upsert` (`PATCH`) and `delete` are idempotent; a
//!   `404` on a retried delete means an earlier attempt deleted the row.
//! - `$batch` is retried as a whole when it fails as a whole; put only idempotent requests in
//!   it (PATCH with `If-Match: *`, upserts, deletes, the list actions). Part results come back
//!   in order, one per request.
//! - List actions (`AddMemberList`, `RemoveMemberList`, `AddListMembersList`, the campaign
//!   `AddItem…` actions) are idempotent in effect: adding a present member changes nothing.
//!
//! **Own writes.** With `write_tag` set, every write carries `?tag=<value>`; Dataverse puts it in
//! the execution context's `SharedVariables`, so that webhooks about the connector's own writes
//! can be recognised (docs/architecture.md §11).
//!
//! **Secrets.** The client secret and tokens are [`Secret`]s: never in `Debug`, errors or logs.
//! Errors and log spans name a request as `METHOD path` without the query string.

mod batch;
mod custom;
mod error;
mod fetchxml;
pub mod filter;
mod query;
mod together;
mod token;

pub use batch::{BatchPartResult, BatchRequest, MAX_BATCH_REQUESTS};
pub use custom::{CustomRequest, CustomResponse};
pub use error::{DataverseApiError, DataverseError};

use error::json_reason;
pub use fetchxml::FetchPages;
pub use query::{Pages, Query};
pub use together::Read;

use crate::adapters::http::{RetryPolicy, with_retries};
use crate::domain::recipient::RecipientKind;
use crate::secret::Secret;
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use url::Url;

/// Dataverse's maximum page size (docs/architecture.md §11) and FetchXML `count`.
pub const MAX_PAGE_SIZE: u32 = 5000;

/// How to reach one Dataverse environment.
#[derive(Clone, Debug)]
pub struct DataverseConfig {
    /// Web API root, e.g. `https://org.crm.dynamics.com/api/data/v9.2/` (a missing trailing
    /// slash is added).
    pub api_url: Url,
    /// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token`.
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Secret,
    /// `<environment url>/.default`.
    pub scope: String,
    /// Rows per page (`Prefer: odata.maxpagesize`, FetchXML `count`), 1..=5000.
    pub max_page_size: u32,
    /// Time for one whole request, the body included.
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// Sent as `?tag=` on writes so that the connector recognises its own writes in webhooks.
    pub write_tag: Option<String>,
    /// Requests this client has under way at once, at most (Dataverse allows 52 per user
    /// across the deployment; docs/architecture.md §4 "Concurrency").
    pub max_concurrent_requests: usize,
}

impl DataverseConfig {
    /// A configuration with the defaults: 5000 rows per page, 30 s per request, the default
    /// retry policy, no write tag.
    pub fn new(
        api_url: Url,
        token_url: Url,
        client_id: impl Into<String>,
        client_secret: Secret,
        scope: impl Into<String>,
    ) -> DataverseConfig {
        DataverseConfig {
            api_url,
            token_url,
            client_id: client_id.into(),
            client_secret,
            scope: scope.into(),
            max_page_size: MAX_PAGE_SIZE,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            write_tag: None,
            max_concurrent_requests: 52,
        }
    }
}

/// The identity the client acts as (`WhoAmI`): compare `user_id` with a webhook's
/// `InitiatingUserId` to recognise the connector's own writes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WhoAmI {
    #[serde(rename = "UserId")]
    pub user_id: String,
    #[serde(rename = "BusinessUnitId")]
    pub business_unit_id: String,
    #[serde(rename = "OrganizationId")]
    pub organization_id: String,
}

/// The Dataverse Web API client. Cheap to clone: clones share the HTTP connection pool and the
/// token cache.
#[derive(Clone)]
pub struct DataverseClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: DataverseConfig,
    /// `config.api_url` with a trailing slash.
    api_base: Url,
    tokens: token::TokenCache,
    /// Requests sent (each attempt counts), for the sync metrics.
    requests: std::sync::atomic::AtomicU64,
    /// One permit per request under way (`config.max_concurrent_requests`).
    under_way: tokio::sync::Semaphore,
}

impl fmt::Debug for DataverseClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataverseClient")
            .field("api_url", &self.inner.api_base.as_str())
            .field("client_id", &self.inner.config.client_id)
            .finish_non_exhaustive()
    }
}

/// One HTTP request to the Web API, ready to be sent (and sent again on a retry).
pub(crate) struct ApiRequest {
    method: Method,
    url: Url,
    /// The path below the API root without the query: names the request in errors and logs.
    path: String,
    headers: Vec<(HeaderName, String)>,
    body: Option<(&'static str, Bytes)>,
}

impl ApiRequest {
    fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn header(mut self, name: HeaderName, value: impl Into<String>) -> ApiRequest {
        self.headers.push((name, value.into()));
        self
    }

    fn json_body(mut self, body: &Value) -> Result<ApiRequest, DataverseError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|err| DataverseError::invalid("JSON body", err.to_string()))?;
        self.body = Some(("application/json", Bytes::from(bytes)));
        Ok(self)
    }
}

/// A complete answer: status, headers and the whole body.
pub(crate) struct RawResponse {
    request: String,
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl RawResponse {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error this answer stands for (for a non-2xx status).
    fn error(&self) -> DataverseError {
        DataverseError::from_status(
            &self.request,
            self.status,
            retry_after(&self.headers),
            &self.body,
        )
    }

    fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, DataverseError> {
        serde_json::from_slice(&self.body)
            .map_err(|err| DataverseError::decode(&self.request, what, json_reason(&err)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `Retry-After` in seconds (Dataverse sends seconds; an HTTP date is ignored).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    // `try_`: a huge or negative value must not panic.
    Duration::try_from_secs_f64(seconds).ok()
}

/// Percent-encoding for one query value: everything but unreserved characters and `,`.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b',');

pub(crate) fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// The entity set a path starts with (`contacts(…)/x` → `contacts`), for log spans.
fn entity_set_of(path: &str) -> &str {
    let end = path.find(['(', '/', '?']).unwrap_or(path.len());
    &path[..end]
}

/// Refuses paths that would leave the API root or break the request line.
fn check_relative(what: &str, relative: &str) -> Result<(), DataverseError> {
    let reason = if relative.is_empty() {
        Some("is empty")
    } else if relative.starts_with('/') {
        Some("must be relative to the Web API root (no leading '/')")
    } else if relative.contains("://") {
        Some("must be relative to the Web API root, not a full URL")
    } else if relative
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        Some("must not contain spaces or control characters (percent-encode them)")
    } else if relative.split(['/', '?']).any(|segment| segment == "..") {
        Some("must not contain '..'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(DataverseError::invalid(what, reason)),
        None => Ok(()),
    }
}

/// Where a member kind's rows live: entity set, primary key, static-list navigation property.
pub(crate) fn member_table(kind: RecipientKind) -> (&'static str, &'static str, &'static str) {
    match kind {
        RecipientKind::Contact => ("contacts", "contactid", "listcontact_association"),
        RecipientKind::Lead => ("leads", "leadid", "listlead_association"),
        RecipientKind::Account => ("accounts", "accountid", "listaccount_association"),
    }
}

impl DataverseClient {
    /// Builds the client. Fails when the configuration cannot work (page size out of range,
    /// a URL that is not http(s)), naming the field.
    pub fn new(config: DataverseConfig) -> Result<DataverseClient, DataverseError> {
        if !(1..=MAX_PAGE_SIZE).contains(&config.max_page_size) {
            return Err(DataverseError::invalid(
                "max_page_size",
                format!(
                    "{} is outside 1..={MAX_PAGE_SIZE} (Dataverse's page limit)",
                    config.max_page_size
                ),
            ));
        }
        for (field, url) in [
            ("api_url", &config.api_url),
            ("token_url", &config.token_url),
        ] {
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(DataverseError::invalid(
                    field,
                    format!("{url} is not an http(s) URL"),
                ));
            }
        }
        if config.api_url.query().is_some() {
            return Err(DataverseError::invalid(
                "api_url",
                "must not carry a query string",
            ));
        }
        let mut api_base = config.api_url.clone();
        if !api_base.path().ends_with('/') {
            let path = format!("{}/", api_base.path());
            api_base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|err| DataverseError::invalid("HTTP client", err.to_string()))?;
        Ok(DataverseClient {
            inner: Arc::new(Inner {
                http,
                under_way: tokio::sync::Semaphore::new(config.max_concurrent_requests.max(1)),
                config,
                api_base,
                tokens: token::TokenCache::default(),
                requests: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The Web API root this client talks to (with a trailing slash).
    pub fn api_url(&self) -> &Url {
        &self.inner.api_base
    }

    pub(crate) fn config(&self) -> &DataverseConfig {
        &self.inner.config
    }

    // ----- reads -----------------------------------------------------------------------------

    /// Pages through `entity_set` with an OData query. Pages come `max_page_size` rows at a
    /// time (`Prefer: odata.maxpagesize`); `@odata.nextLink` is followed unchanged with the
    /// same preference. With `top` set, no page size is sent (Dataverse would ignore `$top`).
    pub fn query<T: DeserializeOwned>(&self, entity_set: &str, query: &Query) -> Pages<T> {
        let built = filter::identifier("entity set", entity_set)
            .and_then(|set| self.query_request(set, query));
        Pages::new(self.clone(), built)
    }

    fn query_request(&self, path: &str, query: &Query) -> Result<ApiRequest, DataverseError> {
        let request = self.request(Method::GET, path, &query.to_query_string()?)?;
        let mut prefer = Vec::new();
        if query.top.is_none() {
            prefer.push(format!(
                "odata.maxpagesize={}",
                self.inner.config.max_page_size
            ));
        }
        if let Some(annotations) = &query.annotations {
            prefer.push(format!("odata.include-annotations=\"{annotations}\""));
        }
        Ok(if prefer.is_empty() {
            request
        } else {
            request.header(HeaderName::from_static("prefer"), prefer.join(","))
        })
    }

    /// One row by id, or `None` when it does not exist (404). `select` limits the columns.
    pub async fn retrieve<T: DeserializeOwned>(
        &self,
        entity_set: &str,
        id: &str,
        select: &[&str],
    ) -> Result<Option<T>, DataverseError> {
        let set = filter::identifier("entity set", entity_set)?;
        let id = filter::guid(id)?;
        let query = Query::new().select(select.iter().copied());
        let request = self.request(
            Method::GET,
            &format!("{set}({id})"),
            &query.to_query_string()?,
        )?;
        self.execute(&request, |_, raw| {
            if raw.status == 404 {
                Ok(None)
            } else if raw.is_success() {
                raw.json(&format!("{set} row")).map(Some)
            } else {
                Err(raw.error())
            }
        })
        .await
    }

    /// GET any path below the API root (`"campaigns(<id>)/campaignlist_association?$select=listid"`)
    /// and return the JSON body. The query part is sent as given: encode user data in it.
    pub async fn get_json(&self, relative_path_and_query: &str) -> Result<Value, DataverseError> {
        check_relative("relative URL", relative_path_and_query)?;
        let (path, query) = relative_path_and_query
            .split_once('?')
            .unwrap_or((relative_path_and_query, ""));
        let request = self.request(Method::GET, path, query)?;
        self.execute(&request, |_, raw| {
            if raw.is_success() {
                raw.json("response body")
            } else {
                Err(raw.error())
            }
        })
        .await
    }

    /// Runs a FetchXML query against `entity_set`, page by page with paging cookies
    /// (docs/architecture.md §11). The root `<fetch>`'s `page`, `count` and `paging-cookie` are set by the
    /// client; a query with `top` runs as one page.
    pub fn fetch_xml<T: DeserializeOwned>(
        &self,
        entity_set: &str,
        fetch_xml: &str,
    ) -> FetchPages<T> {
        FetchPages::new(self.clone(), entity_set, fetch_xml.to_string())
    }

    /// The identity the client acts as.
    pub async fn whoami(&self) -> Result<WhoAmI, DataverseError> {
        let request = self.request(Method::GET, "WhoAmI", "")?;
        self.execute(&request, |_, raw| {
            if raw.is_success() {
                raw.json("WhoAmI response")
            } else {
                Err(raw.error())
            }
        })
        .await
    }

    // ----- list membership -------------------------------------------------------------------

    /// Members of a static marketing list (`lists(<id>)/listcontact_association`, …), paged.
    pub fn static_list_members<T: DeserializeOwned>(
        &self,
        list_id: &str,
        member_kind: RecipientKind,
        query: &Query,
    ) -> Pages<T> {
        let (_, _, navigation) = member_table(member_kind);
        self.related("lists", list_id, navigation, query)
    }

    /// Rows related to one row through a collection-valued navigation property
    /// (`campaigns(<id>)/campaignlist_association`), paged like [`DataverseClient::query`].
    pub fn related<T: DeserializeOwned>(
        &self,
        entity_set: &str,
        id: &str,
        navigation: &str,
        query: &Query,
    ) -> Pages<T> {
        let built = filter::identifier("entity set", entity_set)
            .and_then(|set| Ok((set, filter::guid(id)?)))
            .and_then(|(set, id)| {
                let navigation = filter::identifier("navigation property", navigation)?;
                self.query_request(&format!("{set}({id})/{navigation}"), query)
            });
        Pages::new(self.clone(), built)
    }

    /// Members of a dynamic marketing list: runs the list's `query` FetchXML against the member
    /// table, paged with cookies. The primary key, the `attributes` asked for and an `<order>`
    /// on the primary key (for stable paging) are added when the query lacks them.
    pub fn dynamic_list_members<T: DeserializeOwned>(
        &self,
        fetch_xml_query: &str,
        member_kind: RecipientKind,
        attributes: &[&str],
    ) -> FetchPages<T> {
        let (set, key, _) = member_table(member_kind);
        match fetchxml::prepare_member_query(
            fetch_xml_query,
            member_kind.logical_name(),
            key,
            attributes,
        ) {
            Ok(xml) => FetchPages::new(self.clone(), set, xml),
            Err(err) => FetchPages::failed(self.clone(), set, err),
        }
    }

    /// Whether a dynamic marketing list's `query` selects one record: the query restricted to
    /// that record's id, one request.
    pub async fn dynamic_list_contains(
        &self,
        fetch_xml_query: &str,
        member_kind: RecipientKind,
        record_id: &str,
    ) -> Result<bool, DataverseError> {
        let (set, key, _) = member_table(member_kind);
        let xml = fetchxml::prepare_membership_check(
            fetch_xml_query,
            member_kind.logical_name(),
            key,
            record_id,
        )?;
        let mut pages: FetchPages<Value> = FetchPages::new(self.clone(), set, xml);
        Ok(pages
            .next_page()
            .await?
            .is_some_and(|rows| !rows.is_empty()))
    }

    // ----- writes ----------------------------------------------------------------------------

    /// Creates a row with a primary key chosen here and returns it. Safe to retry: see the
    /// module documentation (`PATCH` + `If-None-Match: *`; a 412 on a retry is success).
    /// `body` must not hold the primary key.
    pub async fn create(&self, entity_set: &str, body: &Value) -> Result<String, DataverseError> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        self.create_with_id(entity_set, &id, body).await
    }

    /// Creates a row with the given primary key (e.g. one derived from the data, so that a
    /// repeated run creates nothing new: it gets [`DataverseError::Conflict`]).
    pub async fn create_with_id(
        &self,
        entity_set: &str,
        id: &str,
        body: &Value,
    ) -> Result<String, DataverseError> {
        let set = filter::identifier("entity set", entity_set)?;
        let id = filter::guid(id)?;
        let request = self
            .request(Method::PATCH, &format!("{set}({id})"), "")?
            .header(reqwest::header::IF_NONE_MATCH, "*")
            .json_body(body)?;
        self.execute(&request, |attempt, raw| {
            if raw.is_success() {
                Ok(())
            } else if raw.status == 412 && attempt > 0 {
                // An earlier attempt created the row but its answer was lost.
                tracing::info!(
                    attempt,
                    "create retried after an ambiguous failure: row exists"
                );
                Ok(())
            } else {
                Err(raw.error())
            }
        })
        .await?;
        Ok(id)
    }

    /// Updates an existing row (`PATCH` + `If-Match: *`): never creates one; a missing row is
    /// [`DataverseError::NotFound`]. Send only the changed columns.
    pub async fn update(
        &self,
        entity_set: &str,
        id: &str,
        body: &Value,
    ) -> Result<(), DataverseError> {
        let set = filter::identifier("entity set", entity_set)?;
        let id = filter::guid(id)?;
        let request = self
            .request(Method::PATCH, &format!("{set}({id})"), "")?
            .header(reqwest::header::IF_MATCH, "*")
            .json_body(body)?;
        self.execute(&request, expect_success).await.map(|_| ())
    }

    /// Creates or updates the row with this id (`PATCH` without conditions).
    pub async fn upsert(
        &self,
        entity_set: &str,
        id: &str,
        body: &Value,
    ) -> Result<(), DataverseError> {
        let set = filter::identifier("entity set", entity_set)?;
        let id = filter::guid(id)?;
        let request = self
            .request(Method::PATCH, &format!("{set}({id})"), "")?
            .json_body(body)?;
        self.execute(&request, expect_success).await.map(|_| ())
    }

    /// Deletes a row. `Ok(false)` when it was not there (404), also when an earlier attempt
    /// of this call deleted it and only the answer was lost.
    pub async fn delete(&self, entity_set: &str, id: &str) -> Result<bool, DataverseError> {
        let set = filter::identifier("entity set", entity_set)?;
        let id = filter::guid(id)?;
        let request = self.request(Method::DELETE, &format!("{set}({id})"), "")?;
        self.execute(&request, |_, raw| {
            if raw.status == 404 {
                Ok(false)
            } else if raw.is_success() {
                Ok(true)
            } else {
                Err(raw.error())
            }
        })
        .await
    }

    /// POSTs to an action, bound (`lists(<id>)/Microsoft.Dynamics.CRM.AddMemberList`) or
    /// unbound (`AddListMembersList`). Returns the JSON answer, or `Null` for `204`.
    /// Retried like any request: use it for actions that are idempotent in effect.
    pub async fn execute_action(&self, path: &str, body: &Value) -> Result<Value, DataverseError> {
        check_relative("action path", path)?;
        if path.contains('?') {
            return Err(DataverseError::invalid(
                "action path",
                "must not carry a query string",
            ));
        }
        let request = self.request(Method::POST, path, "")?.json_body(body)?;
        self.execute(&request, |_, raw| {
            if !raw.is_success() {
                Err(raw.error())
            } else if raw.body.iter().all(u8::is_ascii_whitespace) {
                Ok(Value::Null)
            } else {
                raw.json("action response")
            }
        })
        .await
    }

    /// Sends up to 1000 requests in one `$batch` with `Prefer: odata.continue-on-error` and
    /// returns one result per request, in order. More than 1000 requests are refused before
    /// anything is sent. The batch is retried as a whole on a retryable failure, so it must
    /// hold only idempotent requests.
    pub async fn batch(
        &self,
        requests: Vec<BatchRequest>,
    ) -> Result<Vec<BatchPartResult>, DataverseError> {
        if requests.len() > MAX_BATCH_REQUESTS {
            return Err(DataverseError::BatchTooLarge {
                parts: requests.len(),
            });
        }
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let request = self.batch_request(&requests)?;
        let expected = requests.len();
        self.execute(&request, |_, raw| batch::read_answer(&raw, expected))
            .await
    }

    /// The `POST $batch` request carrying `requests`.
    fn batch_request(&self, requests: &[BatchRequest]) -> Result<ApiRequest, DataverseError> {
        let boundary = format!("batch_{}", uuid::Uuid::new_v4().hyphenated());
        let body = batch::encode(
            &boundary,
            self.inner.api_base.path(),
            requests,
            self.inner.config.write_tag.as_deref(),
        )?;
        let mut request = self.request(Method::POST, "$batch", "")?;
        // The tag goes on each write inside the batch, not on the envelope.
        request.url.set_query(None);
        request.body = Some(("multipart/mixed", Bytes::from(body)));
        Ok(request
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/mixed; boundary=\"{boundary}\""),
            )
            .header(reqwest::header::IF_NONE_MATCH, "null")
            .header(HeaderName::from_static("prefer"), "odata.continue-on-error"))
    }

    // ----- plumbing --------------------------------------------------------------------------

    /// A request for `path` (below the API root, already validated) with an encoded query.
    /// Writes get `tag=<write_tag>`.
    fn request(
        &self,
        method: Method,
        path: &str,
        query: &str,
    ) -> Result<ApiRequest, DataverseError> {
        let mut target = format!("{}{path}", self.inner.api_base);
        let mut query = query.to_string();
        if method != Method::GET
            && let Some(tag) = &self.inner.config.write_tag
        {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str("tag=");
            query.push_str(&encode_query_value(tag));
        }
        if !query.is_empty() {
            target.push('?');
            target.push_str(&query);
        }
        let url = Url::parse(&target)
            .map_err(|err| DataverseError::invalid("request URL", err.to_string()))?;
        self.check_inside_api(&url)?;
        let mut headers = Vec::new();
        if method == Method::GET {
            headers.push((reqwest::header::IF_NONE_MATCH, "null".to_string()));
        }
        Ok(ApiRequest {
            method,
            url,
            path: path.to_string(),
            headers,
            body: None,
        })
    }

    /// A request for an absolute URL the server gave us (`@odata.nextLink`), which must stay
    /// on the API's origin: the bearer token goes with it.
    pub(crate) fn request_for_link(
        &self,
        link: &str,
        prefer: Option<&str>,
    ) -> Result<ApiRequest, DataverseError> {
        let url = self
            .inner
            .api_base
            .join(link)
            .map_err(|err| DataverseError::invalid("@odata.nextLink", err.to_string()))?;
        self.check_inside_api(&url)?;
        let path = url
            .path()
            .strip_prefix(self.inner.api_base.path())
            .unwrap_or(url.path())
            .to_string();
        let mut headers = vec![(reqwest::header::IF_NONE_MATCH, "null".to_string())];
        if let Some(prefer) = prefer {
            headers.push((HeaderName::from_static("prefer"), prefer.to_string()));
        }
        Ok(ApiRequest {
            method: Method::GET,
            url,
            path,
            headers,
            body: None,
        })
    }

    fn check_inside_api(&self, url: &Url) -> Result<(), DataverseError> {
        let base = &self.inner.api_base;
        let same_origin = url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default();
        if same_origin && url.path().starts_with(base.path()) {
            Ok(())
        } else {
            Err(DataverseError::invalid(
                "URL",
                format!(
                    "{}://{}{} is outside the Web API root {base}",
                    url.scheme(),
                    url.host_str().unwrap_or_default(),
                    url.path()
                ),
            ))
        }
    }

    /// Sends `request` under the retry policy. `accept` turns a complete answer into the
    /// result or an error; it gets the attempt number (0 for the first) so that a write can
    /// tell a retry from a first try.
    pub(crate) async fn execute<T, F>(
        &self,
        request: &ApiRequest,
        accept: F,
    ) -> Result<T, DataverseError>
    where
        F: Fn(u32, RawResponse) -> Result<T, DataverseError>,
    {
        let label = request.label();
        let entity_set = entity_set_of(&request.path);
        with_retries(&self.inner.config.retry, |attempt| {
            let span = tracing::info_span!(
                "dataverse_request",
                method = %request.method,
                entity_set,
                attempt
            );
            let accept = &accept;
            let label = label.as_str();
            async move {
                let raw = self.exchange(request, label).await?;
                let result = accept(attempt, raw);
                if let Err(err) = &result {
                    tracing::debug!(error = %err, "Dataverse request failed");
                }
                result
            }
            .instrument(span)
        })
        .await
    }

    /// One attempt: token, request, and on a 401 one more try with a fresh token.
    async fn exchange(
        &self,
        request: &ApiRequest,
        label: &str,
    ) -> Result<RawResponse, DataverseError> {
        let inner = &self.inner;
        // Never closed, so the permit always comes; the error arm is only for completeness.
        let _permit = inner
            .under_way
            .acquire()
            .await
            .map_err(|_| DataverseError::Transport {
                request: label.to_string(),
                reason: "the client is shutting down".into(),
            })?;
        let token = inner.tokens.current(&inner.http, &inner.config).await?;
        let answer = self.send_once(request, label, &token).await?;
        if answer.status != 401 {
            return Ok(answer);
        }
        tracing::info!("access token refused (401), fetching a new one");
        let token = inner
            .tokens
            .replace_rejected(&token, &inner.http, &inner.config)
            .await?;
        self.send_once(request, label, &token).await
    }

    /// Requests this client sent so far (every attempt, every page).
    pub fn requests_sent(&self) -> u64 {
        self.inner
            .requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn send_once(
        &self,
        request: &ApiRequest,
        label: &str,
        token: &Secret,
    ) -> Result<RawResponse, DataverseError> {
        self.inner
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| DataverseError::Unauthorized {
                request: label.to_string(),
                message: "the access token holds characters not allowed in a header".to_string(),
            })?;
        authorization.set_sensitive(true);
        let mut builder = self
            .inner
            .http
            .request(request.method.clone(), request.url.clone())
            .header(reqwest::header::AUTHORIZATION, authorization)
            .header(reqwest::header::ACCEPT, "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0");
        let mut has_content_type = false;
        for (name, value) in &request.headers {
            has_content_type |= *name == reqwest::header::CONTENT_TYPE;
            builder = builder.header(name.clone(), value.as_str());
        }
        if let Some((content_type, body)) = &request.body {
            if !has_content_type {
                builder = builder.header(reqwest::header::CONTENT_TYPE, *content_type);
            }
            builder = builder.body(body.clone());
        }
        let started = tokio::time::Instant::now();
        let response = builder
            .send()
            .await
            .map_err(|err| DataverseError::from_transport(label, err))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        // The whole body, before anything counts as done: a body that breaks off is an
        // ambiguous failure, not a success.
        let body = response
            .bytes()
            .await
            .map_err(|err| DataverseError::from_transport(label, err))?;
        tracing::debug!(
            status,
            elapsed_ms = started.elapsed().as_millis() as u64,
            bytes = body.len(),
            "Dataverse answered"
        );
        Ok(RawResponse {
            request: label.to_string(),
            status,
            headers,
            body,
        })
    }
}

fn expect_success(_attempt: u32, raw: RawResponse) -> Result<RawResponse, DataverseError> {
    if raw.is_success() {
        Ok(raw)
    } else {
        Err(raw.error())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn client(write_tag: Option<&str>) -> DataverseClient {
        let mut config = DataverseConfig::new(
            Url::parse("https://org.crm.dynamics.com/api/data/v9.2").unwrap(),
            Url::parse("https://login.microsoftonline.com/t/oauth2/v2.0/token").unwrap(),
            "client",
            Secret::new("s3cr3t"),
            "https://org.crm.dynamics.com/.default",
        );
        config.write_tag = write_tag.map(str::to_string);
        DataverseClient::new(config).unwrap()
    }

    #[test]
    fn a_missing_trailing_slash_on_the_api_url_is_added() {
        assert_eq!(
            client(None).api_url().as_str(),
            "https://org.crm.dynamics.com/api/data/v9.2/"
        );
    }

    #[test]
    fn a_page_size_above_dataverses_limit_is_refused_naming_the_field() {
        let mut config = client(None).inner.config.clone();
        config.max_page_size = 5001;
        let err = DataverseClient::new(config).err().map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("max_page_size"));
    }

    #[test]
    fn writes_carry_the_tag_and_reads_do_not() {
        let c = client(Some("cleverreach connector"));
        let write = c.request(Method::PATCH, "contacts(1)", "").unwrap();
        assert_eq!(write.url.query(), Some("tag=cleverreach%20connector"));
        let read = c.request(Method::GET, "contacts", "$top=1").unwrap();
        assert_eq!(read.url.query(), Some("$top=1"));
        assert!(
            read.headers
                .iter()
                .any(|(n, v)| n == "if-none-match" && v == "null")
        );
        assert!(!write.headers.iter().any(|(n, _)| n == "if-none-match"));
    }

    #[test]
    fn a_next_link_to_another_host_is_refused() {
        let c = client(None);
        assert!(
            c.request_for_link(
                "https://org.crm.dynamics.com/api/data/v9.2/contacts?$skiptoken=x",
                None
            )
            .is_ok()
        );
        assert!(
            c.request_for_link("https://evil.example.com/api/data/v9.2/contacts", None)
                .is_err()
        );
        assert!(
            c.request_for_link("https://org.crm.dynamics.com/other/contacts", None)
                .is_err()
        );
    }

    #[test]
    fn relative_paths_that_leave_the_api_root_are_refused() {
        for bad in [
            "",
            "/contacts",
            "https://x/y",
            "a b",
            "../x",
            "contacts/../../x",
        ] {
            assert!(check_relative("path", bad).is_err(), "{bad}");
        }
        assert!(check_relative("path", "lists(1)/Microsoft.Dynamics.CRM.AddMemberList").is_ok());
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_nonsense_is_ignored() {
        let headers = |value: &str| {
            let mut map = HeaderMap::new();
            map.insert(
                reqwest::header::RETRY_AFTER,
                HeaderValue::from_str(value).unwrap(),
            );
            map
        };
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("0.5")),
            Some(Duration::from_millis(500))
        );
        assert_eq!(retry_after(&headers("1e30")), None);
        assert_eq!(retry_after(&headers("-1")), None);
        assert_eq!(retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn the_entity_set_is_read_from_a_path() {
        assert_eq!(entity_set_of("contacts(1)/x"), "contacts");
        assert_eq!(entity_set_of("contacts"), "contacts");
        assert_eq!(entity_set_of("$batch"), "$batch");
    }
}
