//! Dataverse client errors: one enum for every failure, classified for retries.
//!
//! Each variant that comes from a request names it as `METHOD path` (the path below the Web API
//! root, never the query string: `$filter` values, FetchXML and tokens stay out of error texts).

use crate::error::Retryable;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// The error object of a Dataverse response body: `{"error":{"code":"0x…","message":"…"}}`.
/// `code` is often empty and unrelated to the HTTP status (docs/architecture.md §11).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DataverseApiError {
    pub code: String,
    pub message: String,
}

impl fmt::Display for DataverseApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, true) => f.write_str("no error details"),
            (true, false) => f.write_str(&self.message),
            (false, true) => write!(f, "[{}]", self.code),
            (false, false) => write!(f, "[{}] {}", self.code, self.message),
        }
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorObject,
}

#[derive(Deserialize)]
struct ErrorObject {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl DataverseApiError {
    /// Reads the error object from a response body. A body that is not the OData error shape
    /// gives a short, cut excerpt of the text so that a proxy's HTML page still says something.
    pub fn from_body(body: &[u8]) -> DataverseApiError {
        if let Ok(envelope) = serde_json::from_slice::<ErrorEnvelope>(body) {
            return DataverseApiError {
                code: envelope.error.code.unwrap_or_default(),
                message: envelope.error.message.unwrap_or_default(),
            };
        }
        let text = String::from_utf8_lossy(body);
        DataverseApiError {
            code: String::new(),
            message: excerpt(text.trim(), 300),
        }
    }
}

fn excerpt(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Everything that can go wrong talking to Dataverse.
#[derive(Debug, thiserror::Error)]
pub enum DataverseError {
    /// 429: service protection limits hit; `retry_after` is the server's `Retry-After`.
    #[error("{request}: throttled by Dataverse (429){}", retry_after_text(.retry_after))]
    Throttled {
        request: String,
        retry_after: Option<Duration>,
    },
    /// 5xx.
    #[error("{request}: Dataverse server error {status}: {}", api_text(.code, .message))]
    Server {
        request: String,
        status: u16,
        code: String,
        message: String,
    },
    /// A 4xx other than 401, 404, 412 and 429 (and any unexpected status).
    #[error("{request}: refused by Dataverse with {status}: {}", api_text(.code, .message))]
    Client {
        request: String,
        status: u16,
        code: String,
        message: String,
    },
    /// 404: the row (or entity set, or action) does not exist.
    #[error("{request}: not found (404)")]
    NotFound { request: String },
    /// 412: a row with this key already exists (`If-None-Match: *`) or the ETag did not match.
    #[error("{request}: precondition failed (412): {message}")]
    Conflict { request: String, message: String },
    /// The token endpoint refused the client credentials, or the API refused a fresh token.
    #[error("{request}: not authorised: {message}")]
    Unauthorized { request: String, message: String },
    /// No complete answer within the configured request timeout.
    #[error("{request}: timed out")]
    Timeout { request: String },
    /// Connection refused or reset, or the body broke off: the request may or may not have
    /// taken effect.
    #[error("{request}: transport error: {reason}")]
    Transport { request: String, reason: String },
    /// A 2xx answer whose body is not what the Web API documents.
    #[error("{request}: cannot read {what}: {reason}")]
    Decode {
        request: String,
        what: String,
        reason: String,
    },
    /// A `$batch` may carry at most 1000 requests; refused before anything was sent.
    #[error("a $batch may carry at most 1000 requests, got {parts}")]
    BatchTooLarge { parts: usize },
    /// The caller passed something that cannot be sent (bad GUID, entity set, FetchXML, …).
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: String, reason: String },
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(wait) => format!(", retry after {} s", wait.as_secs_f64()),
        None => String::new(),
    }
}

fn api_text(code: &str, message: &str) -> String {
    DataverseApiError {
        code: code.to_string(),
        message: message.to_string(),
    }
    .to_string()
}

impl DataverseError {
    /// The HTTP status behind this error, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            DataverseError::Throttled { .. } => Some(429),
            DataverseError::Server { status, .. } | DataverseError::Client { status, .. } => {
                Some(*status)
            }
            DataverseError::NotFound { .. } => Some(404),
            DataverseError::Conflict { .. } => Some(412),
            _ => None,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> DataverseError {
        DataverseError::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn decode(
        request: &str,
        what: impl Into<String>,
        reason: impl fmt::Display,
    ) -> DataverseError {
        DataverseError::Decode {
            request: request.to_string(),
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Classifies a non-success answer. `retry_after` is the parsed `Retry-After` header.
    pub(crate) fn from_status(
        request: &str,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> DataverseError {
        DataverseError::from_api_error(
            request,
            status,
            retry_after,
            DataverseApiError::from_body(body),
        )
    }

    /// Classifies a non-success status whose error object was already read (a `$batch` part).
    pub(crate) fn from_api_error(
        request: &str,
        status: u16,
        retry_after: Option<Duration>,
        api: DataverseApiError,
    ) -> DataverseError {
        let request = request.to_string();
        match status {
            401 => DataverseError::Unauthorized {
                request,
                message: "the access token was refused (401)".to_string(),
            },
            404 => DataverseError::NotFound { request },
            412 => DataverseError::Conflict {
                request,
                message: api.to_string(),
            },
            429 => DataverseError::Throttled {
                request,
                retry_after,
            },
            500..=599 => DataverseError::Server {
                request,
                status,
                code: api.code,
                message: api.message,
            },
            _ => DataverseError::Client {
                request,
                status,
                code: api.code,
                message: api.message,
            },
        }
    }

    /// Classifies a reqwest failure. The URL is stripped: it may carry `$filter` values or
    /// FetchXML with personal data.
    pub(crate) fn from_transport(request: &str, err: reqwest::Error) -> DataverseError {
        let request = request.to_string();
        if err.is_timeout() {
            return DataverseError::Timeout { request };
        }
        if err.is_builder() {
            return DataverseError::InvalidInput {
                what: format!("request {request}"),
                reason: error_chain(&err.without_url()),
            };
        }
        DataverseError::Transport {
            request,
            reason: error_chain(&err.without_url()),
        }
    }
}

/// A serde_json error as an error text without the offending value: "invalid type: string
/// \"max@example.com\", expected u32" would put personal data into logs.
pub(crate) fn json_reason(err: &serde_json::Error) -> String {
    let text = err.to_string();
    let quotes_value = ["invalid type", "invalid value", "unknown variant"]
        .iter()
        .any(|prefix| text.starts_with(prefix));
    if err.classify() != serde_json::error::Category::Data || !quotes_value {
        return text;
    }
    let expected = text
        .split_once(", expected ")
        .map(|(_, rest)| rest)
        .unwrap_or("another value");
    let expected = expected
        .rsplit_once(" at line ")
        .map(|(expected, _)| expected)
        .unwrap_or(expected);
    format!(
        "unexpected value (expected {expected}) at line {} column {}",
        err.line(),
        err.column()
    )
}

/// `err: cause: cause…`, so that "error sending request" says why.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Retryable for DataverseError {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            DataverseError::Throttled { .. }
                | DataverseError::Server { .. }
                | DataverseError::Timeout { .. }
                | DataverseError::Transport { .. }
        )
    }

    fn is_throttling(&self) -> bool {
        matches!(
            self,
            DataverseError::Throttled { .. } | DataverseError::Server { status: 503, .. }
        )
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            DataverseError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_odata_error_object_is_read_from_a_body() {
        let body = br#"{"error":{"code":"0x80044331","message":"A validation error occurred."}}"#;
        let api = DataverseApiError::from_body(body);
        assert_eq!(api.code, "0x80044331");
        assert_eq!(api.message, "A validation error occurred.");
    }

    #[test]
    fn a_body_that_is_not_json_becomes_a_short_message() {
        let body = "x".repeat(1000);
        let api = DataverseApiError::from_body(body.as_bytes());
        assert!(api.code.is_empty());
        assert!(api.message.chars().count() <= 301);
    }

    #[test]
    fn statuses_are_classified_for_retries() {
        let retryable =
            |status| DataverseError::from_status("GET x", status, None, b"").is_retryable();
        assert!(retryable(429));
        assert!(retryable(500));
        assert!(retryable(503));
        assert!(!retryable(400));
        assert!(!retryable(401));
        assert!(!retryable(403));
        assert!(!retryable(404));
        assert!(!retryable(412));
    }

    #[test]
    fn a_json_error_names_what_was_expected_but_not_the_value() {
        #[derive(Debug, serde::Deserialize)]
        struct Row {
            #[allow(dead_code)]
            statecode: u32,
        }
        let err = serde_json::from_str::<Row>(r#"{"statecode":"max@example.com"}"#)
            .err()
            .map(|e| json_reason(&e))
            .unwrap_or_default();
        assert!(err.contains("expected u32"), "{err}");
        assert!(!err.contains("max@example.com"), "{err}");
        let missing = serde_json::from_str::<Row>("{}")
            .err()
            .map(|e| json_reason(&e))
            .unwrap_or_default();
        assert!(missing.contains("missing field `statecode`"), "{missing}");
    }

    #[test]
    fn a_throttled_error_carries_the_servers_wait() {
        let err = DataverseError::from_status("GET x", 429, Some(Duration::from_secs(7)), b"");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert!(err.to_string().contains("retry after 7 s"), "{err}");
    }
}
