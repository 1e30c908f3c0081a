//! Dataverse-shaped errors: `{"error":{"code":"0x…","message":"…"}}` with the HTTP status the
//! real service uses for each case
//! (<https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors>).

use axum::http::StatusCode;
use serde_json::{Value, json};

/// Error codes the simulator uses (hex strings as the Web API writes them).
pub mod code {
    /// An OData URL or query problem (unknown property, bad syntax, unsupported option).
    pub const QUERY: &str = "0x80060888";
    /// An unknown URL segment (entity set, navigation property, function or action), as in
    /// Microsoft's examples: `{"error":{"code":"0x8006088a","message":"Resource not found for the
    /// segment 'Account'."}}`
    /// (<https://learn.microsoft.com/troubleshoot/power-platform/power-apps/dataverse/web-api-client-errors>,
    /// <https://learn.microsoft.com/power-apps/developer/data-platform/custom-api>).
    pub const SEGMENT_NOT_FOUND: &str = "0x8006088a";
    /// `NotImplemented`: "The requested functionality is not yet implemented." What the sandbox
    /// leaves out on purpose answers this with 501, the status Dataverse documents for "some
    /// requested operation isn't implemented"
    /// (<https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes>,
    /// <https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors#identify-status-codes>).
    pub const NOT_IMPLEMENTED: &str = "0x80040219";
    /// A payload problem (unknown property, wrong type).
    pub const PAYLOAD: &str = "0x80048d19";
    /// A row that does not exist.
    pub const NOT_FOUND: &str = "0x80040217";
    /// A duplicate primary key.
    pub const DUPLICATE: &str = "0x80040237";
    /// A version (etag) mismatch.
    pub const CONCURRENCY: &str = "0x80060882";
    /// A validation error (length, range, required column).
    pub const VALIDATION: &str = "0x80044331";
    /// A choice value outside its options.
    pub const OUT_OF_RANGE: &str = "0x8004431a";
    /// A rule of the platform refused the operation (member actions on dynamic lists, …).
    pub const REFUSED: &str = "0x80040203";
    /// A synchronous step (webhook) failed and the operation was rolled back.
    pub const PLUGIN: &str = "0x80040265";
    /// Service protection: number of requests.
    pub const THROTTLED_REQUESTS: &str = "0x80072322";
    /// Service protection: concurrent requests.
    pub const THROTTLED_CONCURRENCY: &str = "0x80072326";
    /// Authentication failed.
    pub const UNAUTHORIZED: &str = "0x80072243";
    /// FetchXML problems.
    pub const FETCHXML: &str = "0x80041103";
    /// Batch problems.
    pub const BATCH: &str = "0x80060891";
    /// Unexpected server error.
    pub const INTERNAL: &str = "0x80040216";
}

/// An error answer of the Web API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 only).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A query or URL problem (400, 0x80060888).
    pub fn query(message: impl Into<String>) -> Self {
        Self::bad_request(code::QUERY, message)
    }

    /// A payload problem (400, 0x80048d19).
    pub fn payload(message: impl Into<String>) -> Self {
        Self::bad_request(code::PAYLOAD, message)
    }

    /// A missing row: `Entity 'contact' With Id = … Does Not Exist` (404).
    pub fn row_not_found(logical: &str, id: &uuid::Uuid) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            code::NOT_FOUND,
            format!("Entity '{logical}' With Id = {id} Does Not Exist"),
        )
    }

    /// An unknown URL segment (404, 0x8006088a).
    pub fn segment_not_found(segment: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            code::SEGMENT_NOT_FOUND,
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    /// A feature the sandbox deliberately leaves out (501, 0x80040219): never a silent
    /// success, never a 404 for something Dataverse has.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, code::NOT_IMPLEMENTED, message)
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            code::QUERY,
            format!("The requested resource does not support http method '{method}'."),
        )
    }

    pub fn duplicate() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            code::DUPLICATE,
            "A record with matching key values already exists.",
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code::UNAUTHORIZED, message)
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({ "error": { "code": self.code, "message": self.message } })
    }
}

/// The Dataverse error body for a status, as the fault layer sends it.
pub fn fault_body(status: StatusCode) -> Value {
    let (code, message) = match status.as_u16() {
        429 => (
            code::THROTTLED_REQUESTS,
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
        ),
        500 => (code::INTERNAL, "An unexpected error occurred."),
        502 => (code::INTERNAL, "Bad Gateway"),
        503 => (code::INTERNAL, "Service Unavailable"),
        _ => (code::INTERNAL, "An unexpected error occurred."),
    };
    json!({ "error": { "code": code, "message": message } })
}
