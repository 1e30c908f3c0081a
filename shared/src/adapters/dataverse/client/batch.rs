//! `$batch`: multipart/mixed request bodies (CRLF line ends) and the parsing of
//! `--batchresponse_…` answers into one result per request (docs/architecture.md §11).
//!
//! Request, as sent (`<api path>` is the Web API root's path, e.g. `/api/data/v9.2/`):
//! ```text
//! --batch_<id>
//! Content-Type: application/http
//! Content-Transfer-Encoding: binary
//!
//! PATCH <api path>contacts(<id>) HTTP/1.1
//! Content-Type: application/json
//! If-Match: *
//!
//! {"crc_checklist":"…"}
//! --batch_<id>--
//! ```

use super::error::{DataverseApiError, DataverseError, json_reason};
use super::{RawResponse, check_relative, encode_query_value, filter};
use reqwest::Method;
use serde_json::Value;

/// Dataverse takes at most 1000 requests per `$batch`.
pub const MAX_BATCH_REQUESTS: usize = 1000;

/// One request inside a `$batch`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchRequest {
    pub method: Method,
    /// Below the Web API root, e.g. `contacts(<id>)`; the query part must be encoded.
    pub relative_url: String,
    pub body: Option<Value>,
    /// Extra headers of this request (`If-Match`, `Prefer`, …).
    pub headers: Vec<(String, String)>,
}

impl BatchRequest {
    pub fn new(method: Method, relative_url: impl Into<String>) -> BatchRequest {
        BatchRequest {
            method,
            relative_url: relative_url.into(),
            body: None,
            headers: Vec::new(),
        }
    }

    pub fn with_body(mut self, body: Value) -> BatchRequest {
        self.body = Some(body);
        self
    }

    pub fn with_header(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> BatchRequest {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// `PATCH set(<id>)` with `If-Match: *`: update an existing row, never create one
    /// (idempotent, so safe in a retried batch).
    pub fn update(entity_set: &str, id: &str, body: Value) -> Result<BatchRequest, DataverseError> {
        let set = filter::identifier("entity set", entity_set)?;
        let id = filter::guid(id)?;
        Ok(BatchRequest::new(Method::PATCH, format!("{set}({id})"))
            .with_body(body)
            .with_header("If-Match", "*"))
    }

    /// `DELETE set(<id>)`; a 404 part means the row was already gone.
    pub fn delete(entity_set: &str, id: &str) -> Result<BatchRequest, DataverseError> {
        let set = filter::identifier("entity set", entity_set)?;
        let id = filter::guid(id)?;
        Ok(BatchRequest::new(Method::DELETE, format!("{set}({id})")))
    }
}

/// The answer to one request of a `$batch`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchPartResult {
    pub status: u16,
    /// The JSON body, when the part had one.
    pub body: Option<Value>,
    /// The row id from the part's `OData-EntityId` header (`…/tasks(<id>)` → `<id>`).
    pub entity_id: Option<String>,
    /// The error object, for a part with a 4xx/5xx status.
    pub error: Option<DataverseApiError>,
}

impl BatchPartResult {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// This part's failure as an error of its own, classified like a direct request's.
    pub fn to_error(&self, request: &str) -> DataverseError {
        DataverseError::from_api_error(
            request,
            self.status,
            None,
            self.error.clone().unwrap_or_default(),
        )
    }
}

/// The multipart body for `requests`, each URL prefixed with `api_path` (`/api/data/v9.2/`);
/// writes get `tag=<write_tag>`.
pub(crate) fn encode(
    boundary: &str,
    api_path: &str,
    requests: &[BatchRequest],
    write_tag: Option<&str>,
) -> Result<Vec<u8>, DataverseError> {
    let mut out = String::with_capacity(requests.len() * 256);
    for (index, request) in requests.iter().enumerate() {
        let what = format!("$batch request {}", index + 1);
        check_relative(&what, &request.relative_url)?;
        let mut url = format!("{api_path}{}", request.relative_url);
        if request.method != Method::GET
            && let Some(tag) = write_tag
        {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("tag=");
            url.push_str(&encode_query_value(tag));
        }
        out.push_str("--");
        out.push_str(boundary);
        out.push_str(
            "\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n",
        );
        out.push_str(request.method.as_str());
        out.push(' ');
        out.push_str(&url);
        out.push_str(" HTTP/1.1\r\n");
        if request.body.is_some() {
            out.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in &request.headers {
            check_header(&what, name, value)?;
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        if let Some(body) = &request.body {
            // Compact JSON never holds a raw line break, so it cannot fake a boundary line.
            let json = serde_json::to_string(body)
                .map_err(|err| DataverseError::invalid(what.clone(), err.to_string()))?;
            out.push_str(&json);
        }
        out.push_str("\r\n");
    }
    out.push_str("--");
    out.push_str(boundary);
    out.push_str("--\r\n");
    Ok(out.into_bytes())
}

fn check_header(what: &str, name: &str, value: &str) -> Result<(), DataverseError> {
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_!#$%&'*+.^`|~".contains(&b));
    if !name_ok {
        return Err(DataverseError::invalid(
            what,
            format!("header name {name:?} is not a valid HTTP header name"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(DataverseError::invalid(
            what,
            format!("header {name} holds control characters"),
        ));
    }
    Ok(())
}

/// Reads a `$batch` answer that must hold `expected` parts.
pub(crate) fn read_answer(
    raw: &RawResponse,
    expected: usize,
) -> Result<Vec<BatchPartResult>, DataverseError> {
    if !raw.is_success() {
        return Err(raw.error());
    }
    let parts = parse_response(raw.header("content-type"), &raw.body)
        .map_err(|reason| DataverseError::decode(&raw.request, "$batch response", reason))?;
    if parts.len() != expected {
        return Err(DataverseError::decode(
            &raw.request,
            "$batch response",
            format!("{} parts for {expected} requests", parts.len()),
        ));
    }
    Ok(parts)
}

/// Splits a `multipart/mixed` `$batch` answer into part results, in order. Change-set parts
/// (nested multiparts) are flattened. Accepts CRLF and bare LF line ends.
pub(crate) fn parse_response(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Vec<BatchPartResult>, String> {
    let text = std::str::from_utf8(body).map_err(|err| format!("not UTF-8: {err}"))?;
    let boundary = match content_type.and_then(boundary_of) {
        Some(boundary) => boundary,
        None => text
            .lines()
            .find_map(|line| line.trim_end().strip_prefix("--"))
            .map(str::to_string)
            .ok_or("no multipart boundary in Content-Type or body")?,
    };
    let mut results = Vec::new();
    for part in split_multipart(text, &boundary)? {
        parse_part(part, &mut results, 0)?;
    }
    Ok(results)
}

fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

/// Index of the next delimiter line `--boundary` at or after `from` (at a line start).
fn find_delimiter(text: &str, delimiter: &str, from: usize) -> Option<usize> {
    let mut search = from;
    while let Some(found) = text.get(search..)?.find(delimiter) {
        let at = search + found;
        if at == 0 || text.as_bytes()[at - 1] == b'\n' {
            return Some(at);
        }
        search = at + delimiter.len();
    }
    None
}

fn split_multipart<'a>(text: &'a str, boundary: &str) -> Result<Vec<&'a str>, String> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut at =
        find_delimiter(text, &delimiter, 0).ok_or_else(|| format!("no delimiter --{boundary}"))?;
    loop {
        let after = at + delimiter.len();
        if text[after..].starts_with("--") {
            return Ok(parts);
        }
        let start = match text[after..].find('\n') {
            Some(newline) => after + newline + 1,
            None => return Err("a part ends without content".to_string()),
        };
        let next = find_delimiter(text, &delimiter, start)
            .ok_or_else(|| format!("the closing delimiter --{boundary}-- is missing"))?;
        // The line break before a delimiter belongs to the delimiter.
        let content = &text[start..next];
        let content = content.strip_suffix('\n').unwrap_or(content);
        let content = content.strip_suffix('\r').unwrap_or(content);
        parts.push(content);
        at = next;
    }
}

/// Splits header lines from what follows the first empty line.
fn split_head(text: &str) -> (&str, &str) {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\r', '\n']).is_empty() {
            return (&text[..offset], &text[offset + line.len()..]);
        }
        offset += line.len();
    }
    (text, "")
}

fn headers_of(head: &str) -> impl Iterator<Item = (String, &str)> {
    head.lines().filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        Some((name.trim().to_ascii_lowercase(), value.trim()))
    })
}

fn parse_part(part: &str, results: &mut Vec<BatchPartResult>, depth: u8) -> Result<(), String> {
    let (mime_head, content) = split_head(part);
    let content_type = headers_of(mime_head)
        .find(|(name, _)| name == "content-type")
        .map(|(_, value)| value.to_string())
        .unwrap_or_default();
    if content_type
        .to_ascii_lowercase()
        .starts_with("multipart/mixed")
    {
        if depth > 0 {
            return Err("change sets nest only one level".to_string());
        }
        let boundary = boundary_of(&content_type).ok_or("a change set part has no boundary")?;
        for inner in split_multipart(content, &boundary)? {
            parse_part(inner, results, depth + 1)?;
        }
        return Ok(());
    }
    results.push(parse_http_response(content)?);
    Ok(())
}

fn parse_http_response(content: &str) -> Result<BatchPartResult, String> {
    let content = content.trim_start_matches(['\r', '\n']);
    let (head, body) = split_head(content);
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/"))
        .ok_or_else(|| {
            format!("a part does not start with an HTTP status line: {status_line:.40}")
        })?;
    let mut entity_id = None;
    let mut location = None;
    let header_lines = head
        .split_once('\n')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    for (name, value) in headers_of(header_lines) {
        match name.as_str() {
            "odata-entityid" => entity_id = Some(id_in(value)),
            "location" => location = Some(id_in(value)),
            _ => {}
        }
    }
    let body = body.trim();
    let success = (200..300).contains(&status);
    let json = if body.is_empty() {
        None
    } else {
        match serde_json::from_str::<Value>(body) {
            Ok(value) => Some(value),
            Err(err) if success => {
                return Err(format!(
                    "part with status {status} has a body that is not JSON: {}",
                    json_reason(&err)
                ));
            }
            Err(_) => None,
        }
    };
    let error = (status >= 400).then(|| DataverseApiError::from_body(body.as_bytes()));
    Ok(BatchPartResult {
        status,
        body: json,
        entity_id: entity_id.or(location),
        error,
    })
}

/// The key in the last parentheses of an entity URL (`…/tasks(<id>)` → `<id>`).
fn id_in(url: &str) -> String {
    url.rfind('(')
        .and_then(|open| {
            let rest = &url[open + 1..];
            rest.find(')').map(|close| rest[..close].to_string())
        })
        .unwrap_or_else(|| url.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_batch_is_encoded_with_crlf_and_a_closing_delimiter() {
        let requests = vec![
            BatchRequest::update(
                "contacts",
                "D31BA648-C592-ED11-AAD1-000D3A993550",
                json!({"crc_checklist": "[]"}),
            )
            .unwrap(),
            BatchRequest::new(Method::GET, "contacts?$select=fullname"),
        ];
        let body = encode("batch_x", "/api/data/v9.2/", &requests, Some("crc sync")).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "--batch_x\r\n\
             Content-Type: application/http\r\n\
             Content-Transfer-Encoding: binary\r\n\
             \r\n\
             PATCH /api/data/v9.2/contacts(d31ba648-c592-ed11-aad1-000d3a993550)?tag=crc%20sync HTTP/1.1\r\n\
             Content-Type: application/json\r\n\
             If-Match: *\r\n\
             \r\n\
             {\"crc_checklist\":\"[]\"}\r\n\
             --batch_x\r\n\
             Content-Type: application/http\r\n\
             Content-Transfer-Encoding: binary\r\n\
             \r\n\
             GET /api/data/v9.2/contacts?$select=fullname HTTP/1.1\r\n\
             \r\n\
             \r\n\
             --batch_x--\r\n"
        );
    }

    #[test]
    fn a_header_or_url_that_could_inject_a_part_is_refused() {
        let bad_header =
            BatchRequest::new(Method::GET, "contacts").with_header("X-A", "v\r\n--batch_x");
        assert!(encode("batch_x", "/", &[bad_header], None).is_err());
        let bad_url = BatchRequest::new(Method::GET, "contacts HTTP/1.1\r\n\r\n");
        assert!(encode("batch_x", "/", &[bad_url], None).is_err());
    }

    /// The continue-on-error answer of PA-batch, with LF line ends as the page shows it.
    const RESPONSE: &str = "--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139\n\
Content-Type: application/http\n\
Content-Transfer-Encoding: binary\n\
\n\
HTTP/1.1 400 Bad Request\n\
REQ_ID: de4c5227-4a28-4ebd-8ced-3392ece1697b\n\
Content-Type: application/json; odata.metadata=minimal\n\
OData-Version: 4.0\n\
\n\
{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred.  The length of the 'subject' attribute of the 'task' entity exceeded the maximum allowed length of '200'.\"}}\n\
--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139\n\
Content-Type: application/http\n\
Content-Transfer-Encoding: binary\n\
\n\
HTTP/1.1 204 No Content\n\
OData-Version: 4.0\n\
Location: https://org.crm.dynamics.com/api/data/v9.2/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)\n\
OData-EntityId: https://org.crm.dynamics.com/api/data/v9.2/tasks(aed2ae8b-3c94-ed11-aad1-000d3a9933c9)\n\
\n\
\n\
--batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139--\n";

    #[test]
    fn a_continue_on_error_answer_gives_one_result_per_request() {
        let parts = parse_response(
            Some("multipart/mixed; boundary=batchresponse_f44bd09d-573f-4a30-bca0-2e500ee7e139"),
            RESPONSE.as_bytes(),
        )
        .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].status, 400);
        assert_eq!(
            parts[0].error.as_ref().map(|e| e.code.as_str()),
            Some("0x80044331")
        );
        assert_eq!(parts[1].status, 204);
        assert_eq!(parts[1].body, None);
        assert_eq!(
            parts[1].entity_id.as_deref(),
            Some("aed2ae8b-3c94-ed11-aad1-000d3a9933c9")
        );
        assert!(parts[1].error.is_none());
        // The same with CRLF line ends and no Content-Type header to read the boundary from.
        let crlf = RESPONSE.replace('\n', "\r\n");
        assert_eq!(parse_response(None, crlf.as_bytes()).unwrap(), parts);
    }

    #[test]
    fn change_set_answers_are_flattened_in_order() {
        let body = "--batchresponse_1\r\n\
Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n\
\r\n\
--changesetresponse_2\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding: binary\r\n\
Content-ID: 1\r\n\
\r\n\
HTTP/1.1 204 No Content\r\n\
OData-EntityId: https://x/api/data/v9.2/leads(425195a4-7a75-e911-a97a-000d3a34a1bd)\r\n\
\r\n\
--changesetresponse_2--\r\n\
--batchresponse_1\r\n\
Content-Type: application/http\r\n\
Content-Transfer-Encoding: binary\r\n\
\r\n\
HTTP/1.1 200 OK\r\n\
Content-Type: application/json; odata.metadata=minimal\r\n\
\r\n\
{\"value\":[{\"subject\":\"Task 1 in batch\"}]}\r\n\
--batchresponse_1--\r\n";
        let parts = parse_response(
            Some("multipart/mixed; boundary=\"batchresponse_1\""),
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0].entity_id.as_deref(),
            Some("425195a4-7a75-e911-a97a-000d3a34a1bd")
        );
        assert_eq!(parts[1].status, 200);
        assert_eq!(
            parts[1].body,
            Some(json!({"value":[{"subject":"Task 1 in batch"}]}))
        );
    }

    #[test]
    fn a_truncated_answer_is_an_error_not_fewer_parts() {
        let cut = &RESPONSE[..RESPONSE.len() - 60];
        assert!(parse_response(None, cut.as_bytes()).is_err());
    }
}
