//! Handlers: one module per function. Each turns its trigger's event into domain commands, runs
//! them through the ports, and turns the result into the trigger's answer.

pub mod batch;
pub mod cleverreach_events;
#[cfg(feature = "aws")]
pub mod connect;
pub mod lead_sync;
pub mod receiver_state_sync;
pub mod resync;
pub mod retroactive;
pub mod sync_worker;
pub mod webhook_intake;

use crate::secret::Secret;

/// A presented key against the expected one, in constant time (no timing hint at the key);
/// an empty expected key matches nothing. Used by the webhook intake and the connect page.
pub(crate) fn keys_match(expected: &Secret, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let expected = expected.expose().as_bytes();
    !expected.is_empty() && bool::from(expected.ct_eq(given.as_bytes()))
}

/// What the function-URL handlers read from a request: query pairs, headers (names in lower
/// case) and the body bytes.
#[cfg(feature = "aws")]
pub(crate) struct FunctionUrlParts {
    pub query: Vec<(String, String)>,
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Vec<u8>,
}

#[cfg(feature = "aws")]
pub(crate) fn function_url_parts(request: &lambda_http::Request) -> FunctionUrlParts {
    use lambda_http::{Body, RequestExt};
    let query = request
        .query_string_parameters_ref()
        .map(|params| {
            params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            value
                .to_str()
                .ok()
                .map(|v| (name.as_str().to_ascii_lowercase(), v.to_string()))
        })
        .collect();
    let body = match request.body() {
        Body::Text(text) => text.as_bytes().to_vec(),
        Body::Binary(bytes) => bytes.clone(),
        _ => Vec::new(),
    };
    FunctionUrlParts {
        query,
        headers,
        body,
    }
}
