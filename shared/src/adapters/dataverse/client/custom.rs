//! Requests with headers of the caller's choosing, for the customization (metadata) Web API:
//! `MSCRM.SolutionUniqueName` so that a created component lands in a solution,
//! `MSCRM.MergeLabels` on a `PUT` of a definition, `Consistency: Strong` so that a read sees a
//! customization made a moment ago. Same retries, token handling and error texts as every other
//! request of [`DataverseClient`].

use super::{DataverseClient, DataverseError, check_relative};
use reqwest::Method;
use reqwest::header::HeaderName;
use serde_json::Value;

/// One request below the Web API root.
#[derive(Debug, Clone)]
pub struct CustomRequest {
    pub method: Method,
    /// Relative to the API root, with the query already encoded
    /// (`EntityDefinitions(LogicalName='contact')/Attributes?$select=LogicalName`).
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl CustomRequest {
    pub fn new(method: Method, path: impl Into<String>) -> CustomRequest {
        CustomRequest {
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(path: impl Into<String>) -> CustomRequest {
        CustomRequest::new(Method::GET, path)
    }

    pub fn post(path: impl Into<String>) -> CustomRequest {
        CustomRequest::new(Method::POST, path)
    }

    pub fn put(path: impl Into<String>) -> CustomRequest {
        CustomRequest::new(Method::PUT, path)
    }

    pub fn patch(path: impl Into<String>) -> CustomRequest {
        CustomRequest::new(Method::PATCH, path)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> CustomRequest {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Value) -> CustomRequest {
        self.body = Some(body);
        self
    }
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomResponse {
    pub status: u16,
    /// The id in `OData-EntityId: …/set(<id>)` of a create, when sent.
    pub entity_id: Option<String>,
    /// The JSON body, `Null` when there was none.
    pub body: Value,
    /// A create that was retried after an ambiguous failure and then found its object
    /// already there: the first attempt most likely created it. Read it back by name.
    pub created_by_earlier_attempt: bool,
}

/// Dataverse's error codes for "an object with this name exists" (its web service error codes).
const DUPLICATE_CODES: [&str; 5] = [
    "0x80047010", // DuplicateName
    "0x80047013", // DuplicateAttributeSchemaName
    "0x80060304", // DuplicateAttributePhysicalName
    "0x80041403", // RoleAlreadyExists
    "0x80060892", // DuplicateRecordEntityKey
];

fn is_duplicate(err: &DataverseError) -> bool {
    match err {
        DataverseError::Client { code, .. } => {
            DUPLICATE_CODES.iter().any(|c| code.eq_ignore_ascii_case(c))
        }
        DataverseError::Conflict { .. } => true,
        _ => false,
    }
}

/// The id at the end of an `OData-EntityId` URL: `…/EntityDefinitions(<id>)`.
fn id_of(url: &str) -> Option<String> {
    let open = url.rfind('(')?;
    let inner = url.get(open + 1..)?.strip_suffix(')')?;
    Some(inner.to_string())
}

impl DataverseClient {
    /// Sends `request` under the retry policy. A `POST` is a create: when a retry meets
    /// "already exists", the answer is a success with `created_by_earlier_attempt` set.
    pub async fn send_custom(
        &self,
        request: &CustomRequest,
    ) -> Result<CustomResponse, DataverseError> {
        check_relative("relative URL", &request.path)?;
        let (path, query) = request
            .path
            .split_once('?')
            .unwrap_or((request.path.as_str(), ""));
        let mut api = self.request(request.method.clone(), path, query)?;
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| DataverseError::invalid("header name", e.to_string()))?;
            api = api.header(name, value.clone());
        }
        if let Some(body) = &request.body {
            api = api.json_body(body)?;
        }
        let creating = request.method == Method::POST;
        self.execute(&api, |attempt, raw| {
            if raw.is_success() {
                let body = if raw.body.iter().all(u8::is_ascii_whitespace) {
                    Value::Null
                } else {
                    raw.json("response body")?
                };
                return Ok(CustomResponse {
                    status: raw.status,
                    entity_id: raw.header("OData-EntityId").and_then(id_of),
                    body,
                    created_by_earlier_attempt: false,
                });
            }
            let err = raw.error();
            if creating && attempt > 0 && is_duplicate(&err) {
                tracing::info!(attempt, "create retried after an ambiguous failure: exists");
                return Ok(CustomResponse {
                    status: raw.status,
                    entity_id: None,
                    body: Value::Null,
                    created_by_earlier_attempt: true,
                });
            }
            Err(err)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_read_from_the_entity_url() {
        assert_eq!(
            id_of("https://x/api/data/v9.2/EntityDefinitions(1b2c)").as_deref(),
            Some("1b2c")
        );
        assert_eq!(id_of("https://x/api/data/v9.2/none"), None);
    }

    #[test]
    fn only_duplicate_codes_count_as_already_there() {
        let client = |code: &str| DataverseError::Client {
            request: "POST EntityDefinitions".into(),
            status: 400,
            code: code.into(),
            message: String::new(),
        };
        assert!(is_duplicate(&client("0x80047013")));
        assert!(!is_duplicate(&client("0x80040220")));
    }
}
