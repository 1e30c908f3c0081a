//! `POST $batch`
//! (<https://learn.microsoft.com/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api>):
//! multipart/mixed requests with
//! `application/http` parts and change sets, at most 1000 operations, change sets atomic with
//! `Content-ID` references, stop at the first failure unless `Prefer: odata.continue-on-error`,
//! and a `batchresponse_<guid>` multipart answer written the way Dataverse writes it.

use super::Shared;
use super::api::{self, ApiRequest, ApiResponse, Ctx, Done, JSON_TYPE};
use super::error::{ApiError, code};
use super::webhooks;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// The most operations one batch may hold.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone)]
struct Part {
    content_id: Option<String>,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Debug, Clone)]
enum Item {
    Single(Part),
    ChangeSet(Vec<Part>),
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code::BATCH, message)
}

/// The `boundary` parameter of a multipart content type.
fn boundary(content_type: &str) -> Option<String> {
    let mut parts = content_type.split(';').map(str::trim);
    let kind = parts.next()?;
    if !kind.eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty())
}

/// Splits a multipart body into its parts (text between the delimiter lines).
fn split_multipart<'a>(body: &'a str, boundary: &str) -> Result<Vec<&'a str>, ApiError> {
    let delimiter = format!("--{boundary}");
    let mut positions = Vec::new();
    let mut from = 0;
    while let Some(off) = body[from..].find(&delimiter) {
        let i = from + off;
        if i == 0 || body[..i].ends_with('\n') {
            positions.push(i);
        }
        from = i + delimiter.len();
    }
    if positions.is_empty() {
        return Err(bad(format!(
            "The multipart body has no part delimited by '--{boundary}'."
        )));
    }
    let mut parts = Vec::new();
    for (n, &p) in positions.iter().enumerate() {
        let after = &body[p + delimiter.len()..];
        if after.starts_with("--") {
            return Ok(parts);
        }
        let Some(line_end) = after.find('\n') else {
            break;
        };
        let start = p + delimiter.len() + line_end + 1;
        let Some(&next) = positions.get(n + 1) else {
            break;
        };
        let mut end = next;
        if body[..end].ends_with('\n') {
            end -= 1;
        }
        if body[..end].ends_with('\r') {
            end -= 1;
        }
        parts.push(body.get(start..end.max(start)).unwrap_or_default());
    }
    Err(bad(format!(
        "The multipart body is missing its closing delimiter '--{boundary}--'."
    )))
}

/// Splits MIME-style headers from what follows the first blank line.
fn split_head(text: &str) -> (Vec<(String, String)>, &str) {
    let (head, rest) = match (text.find("\r\n\r\n"), text.find("\n\n")) {
        (Some(a), Some(b)) if b < a => (&text[..b], &text[b + 2..]),
        (Some(a), _) => (&text[..a], &text[a + 4..]),
        (None, Some(b)) => (&text[..b], &text[b + 2..]),
        (None, None) => (text, ""),
    };
    let headers = head
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (headers, rest)
}

fn find<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads an `application/http` part: its request line, headers and body.
fn parse_http(mime: &[(String, String)], text: &str) -> Result<Part, ApiError> {
    let text = text.trim_start_matches(['\r', '\n']);
    let (line, rest) = match text.find('\n') {
        Some(i) => (text[..i].trim_end_matches('\r'), &text[i + 1..]),
        None => (text, ""),
    };
    // The URL is everything between the first and the last space, as the OData batch reader
    // takes it: clients write query values unencoded (`$filter=lastname eq 'x'`).
    let line = line.trim();
    let request_line = line.split_once(' ').and_then(|(method, rest)| {
        let (url, version) = rest.rsplit_once(' ')?;
        let url = url.trim();
        (version.starts_with("HTTP/") && !url.is_empty()).then_some((method, url))
    });
    let Some((method, url)) = request_line else {
        return Err(bad(format!(
            "The batch part's request line '{line}' is not 'METHOD URL HTTP/1.1'."
        )));
    };
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| bad(format!("'{method}' is not an HTTP method.")))?;
    // Headers end at the first blank line; a part without a body may end right after them.
    let (headers, body) = if rest.starts_with("\r\n") || rest.starts_with('\n') {
        (Vec::new(), rest.trim_start_matches(['\r', '\n']))
    } else {
        split_head(rest)
    };
    let mut map = HeaderMap::new();
    for (k, v) in &headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.append(k, v);
        }
    }
    let content_id = find(mime, "Content-ID")
        .or_else(|| find(&headers, "Content-ID"))
        .map(str::to_string);
    Ok(Part {
        content_id,
        method,
        url: url.to_string(),
        headers: map,
        body: Bytes::from(body.trim_end_matches(['\r', '\n']).to_string()),
    })
}

fn parse_batch(body: &str, boundary: &str) -> Result<Vec<Item>, ApiError> {
    let mut items = Vec::new();
    for part in split_multipart(body, boundary)? {
        let (mime, rest) = split_head(part);
        let ct = find(&mime, "Content-Type").unwrap_or_default();
        if let Some(cs) = self::boundary(ct) {
            let mut parts = Vec::new();
            for inner in split_multipart(rest, &cs)? {
                let (mime, rest) = split_head(inner);
                parts.push(parse_http(&mime, rest)?);
            }
            items.push(Item::ChangeSet(parts));
        } else if ct.to_ascii_lowercase().starts_with("application/http") {
            items.push(Item::Single(parse_http(&mime, rest)?));
        } else {
            return Err(bad(format!(
                "A batch part has Content-Type '{ct}'; expected application/http or multipart/mixed."
            )));
        }
    }
    Ok(items)
}

/// Turns a part into a Web API request: resolves `$n` references and absolute URLs.
fn to_request(
    part: &Part,
    batch_headers: &HeaderMap,
    content_ids: &HashMap<String, String>,
) -> Result<ApiRequest, ApiError> {
    if part.url.len() > api::MAX_BATCH_URL_CHARS {
        return Err(api::url_too_long(part.url.len(), api::MAX_BATCH_URL_CHARS));
    }
    let mut url = part.url.clone();
    if let Some(reference) = url.strip_prefix('$') {
        let (n, rest) = match reference.find(|c: char| !c.is_ascii_alphanumeric()) {
            Some(i) => (&reference[..i], &reference[i..]),
            None => (reference, ""),
        };
        let base = content_ids.get(n).ok_or_else(|| {
            bad(format!(
                "Content-ID Reference: '${n}' does not exist in the batch context."
            ))
        })?;
        url = format!("{base}{rest}");
    }
    let relative = match url.find("/api/data/v9.2/") {
        Some(i) => url[i + "/api/data/v9.2/".len()..].to_string(),
        None if url.contains("://") || url.starts_with('/') => {
            return Err(bad(format!(
                "The batch part URL '{url}' is not below /api/data/v9.2/."
            )));
        }
        None => url.clone(),
    };
    // Spaces a client left unencoded in the request line are encoded here, so that the
    // query reads as one sent over HTTP (and a nextLink built from it is a valid URL).
    let relative = relative.replace(' ', "%20");
    let (path, query) = match relative.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (relative, None),
    };
    let path = percent_encoding::percent_decode_str(&path)
        .decode_utf8_lossy()
        .into_owned();
    let mut headers = part.headers.clone();
    for name in [
        "prefer",
        "mscrm.bypasscustompluginexecution",
        "mscrm.bypassbusinesslogicexecution",
    ] {
        if !headers.contains_key(name)
            && let Some(v) = batch_headers.get(name)
            && let Ok(n) = HeaderName::from_bytes(name.as_bytes())
        {
            // A part inherits the batch's preferences, except continue-on-error which is the batch's own.
            if name == "prefer" {
                let kept: Vec<String> = v
                    .to_str()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.eq_ignore_ascii_case("odata.continue-on-error"))
                    .map(str::to_string)
                    .collect();
                if let Ok(v) = HeaderValue::from_str(&kept.join(",")) {
                    headers.insert(n, v);
                }
            } else {
                headers.insert(n, v.clone());
            }
        }
    }
    let mut req = ApiRequest::new(
        part.method.clone(),
        &path,
        query.as_deref(),
        headers,
        part.body.clone(),
    );
    req.content_ids = content_ids.clone();
    Ok(req)
}

enum Out {
    Single(ApiResponse, Option<String>),
    ChangeSet(Vec<(ApiResponse, Option<String>)>),
}

/// The axum answer to `POST $batch`.
pub async fn handle(sim: &Arc<Shared>, ctx: &Ctx, req: ApiRequest) -> Response {
    match run(sim, ctx, req).await {
        Ok(r) => r,
        Err(e) => ApiResponse::from_error(&e).into_axum(),
    }
}

async fn run(sim: &Arc<Shared>, ctx: &Ctx, req: ApiRequest) -> Result<Response, ApiError> {
    if req.method != Method::POST {
        return Err(ApiError::method_not_allowed(req.method.as_str()));
    }
    let ct = req.header("content-type").unwrap_or_default();
    let b = boundary(ct).ok_or_else(|| {
        bad("The batch request must have a 'Content-Type: multipart/mixed; boundary=…' header.")
    })?;
    let text =
        std::str::from_utf8(&req.body).map_err(|_| bad("The batch body is not UTF-8 text."))?;
    let items = parse_batch(text, &b)?;
    let operations: usize = items
        .iter()
        .map(|i| match i {
            Item::Single(_) => 1,
            Item::ChangeSet(p) => p.len(),
        })
        .sum();
    if operations > MAX_OPERATIONS {
        return Err(bad(format!(
            "The batch contains {operations} requests; the maximum number of requests in a batch is {MAX_OPERATIONS}."
        )));
    }
    sim.count_batch(operations);
    let continue_on_error = req.prefer().continue_on_error;
    let part_ctx = Ctx {
        in_batch: true,
        ..ctx.clone()
    };
    let mut outs = Vec::new();
    let mut status = StatusCode::OK;
    for item in items {
        let failure = match item {
            Item::Single(part) => {
                let resp = match to_request(&part, &req.headers, &HashMap::new()) {
                    Ok(r) if r.path.trim_matches('/') == "$batch" => ApiResponse::from_error(&bad(
                        "A $batch request cannot contain another $batch request.",
                    )),
                    Ok(r) => api::handle(sim, &part_ctx, r).await,
                    Err(e) => ApiResponse::from_error(&e),
                };
                let failed = resp.status.is_client_error() || resp.status.is_server_error();
                let s = resp.status;
                outs.push(Out::Single(resp, part.content_id));
                failed.then_some(s)
            }
            Item::ChangeSet(parts) => match change_set(sim, &part_ctx, &req.headers, parts).await {
                Ok(responses) => {
                    outs.push(Out::ChangeSet(responses));
                    None
                }
                Err((resp, cid)) => {
                    // A failed change set is still answered as a change set: one
                    // `changesetresponse` multipart holding the failing request's answer.
                    let s = resp.status;
                    outs.push(Out::ChangeSet(vec![(resp, cid)]));
                    Some(s)
                }
            },
        };
        if let Some(s) = failure
            && !continue_on_error
        {
            status = s;
            break;
        }
    }
    Ok(render(status, &outs))
}

/// Runs a change set atomically: any failure rolls back the parts already applied.
async fn change_set(
    sim: &Arc<Shared>,
    ctx: &Ctx,
    batch_headers: &HeaderMap,
    parts: Vec<Part>,
) -> Result<Vec<(ApiResponse, Option<String>)>, (ApiResponse, Option<String>)> {
    let mut content_ids: HashMap<String, String> = HashMap::new();
    let mut undo = Vec::new();
    let mut jobs = Vec::new();
    let mut responses = Vec::new();
    for part in parts {
        let fail = |e: ApiError, undo: Vec<super::store::Undo>| {
            sim.lock_store().rollback(undo);
            (ApiResponse::from_error(&e), part.content_id.clone())
        };
        if part.method == Method::GET {
            return Err(fail(
                bad("GET requests are not allowed in a change set."),
                undo,
            ));
        }
        let req = match to_request(&part, batch_headers, &content_ids) {
            Ok(r) => r,
            Err(e) => return Err(fail(e, undo)),
        };
        match api::execute(sim, ctx, &req) {
            Err(e) => return Err(fail(e, undo)),
            Ok(Done::Read(r)) => responses.push((r, part.content_id.clone())),
            Ok(Done::Write(applied)) => {
                let delivered = api::deliver_sync(sim, &applied).await;
                undo.extend(applied.undo);
                match delivered {
                    Err(e) => return Err(fail(e, undo)),
                    Ok(j) => jobs.extend(j),
                }
                if let (Some(cid), Some(url)) =
                    (&part.content_id, applied.response.header("OData-EntityId"))
                {
                    content_ids.insert(cid.clone(), url.to_string());
                }
                responses.push((applied.response, part.content_id.clone()));
            }
        }
    }
    webhooks::enqueue(sim, jobs);
    Ok(responses)
}

fn render_part(out: &mut String, resp: &ApiResponse, content_id: Option<&str>) {
    out.push_str("Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n");
    if let Some(cid) = content_id {
        out.push_str(&format!("Content-ID: {cid}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&format!(
        "HTTP/1.1 {} {}\r\n",
        resp.status.as_u16(),
        resp.status.canonical_reason().unwrap_or("")
    ));
    let failed = resp.status.is_client_error() || resp.status.is_server_error();
    if failed {
        out.push_str(&format!("REQ_ID: {}\r\n", Uuid::new_v4()));
    }
    if resp.body.is_some() {
        let ct = if failed {
            JSON_TYPE.to_string()
        } else {
            format!("{JSON_TYPE}; odata.streaming=true")
        };
        out.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    out.push_str("OData-Version: 4.0\r\n");
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    if let Some(body) = &resp.body {
        out.push_str(&body.to_string());
    }
    out.push_str("\r\n");
}

fn render(status: StatusCode, outs: &[Out]) -> Response {
    let batch = format!("batchresponse_{}", Uuid::new_v4());
    let mut body = String::new();
    for out in outs {
        body.push_str(&format!("--{batch}\r\n"));
        match out {
            Out::Single(resp, cid) => render_part(&mut body, resp, cid.as_deref()),
            Out::ChangeSet(responses) => {
                let cs = format!("changesetresponse_{}", Uuid::new_v4());
                body.push_str(&format!(
                    "Content-Type: multipart/mixed; boundary={cs}\r\n\r\n"
                ));
                for (resp, cid) in responses {
                    body.push_str(&format!("--{cs}\r\n"));
                    render_part(&mut body, resp, cid.as_deref());
                }
                body.push_str(&format!("--{cs}--\r\n"));
            }
        }
    }
    body.push_str(&format!("--{batch}--\r\n"));
    Response::builder()
        .status(status)
        .header("OData-Version", "4.0")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/mixed; boundary={batch}"),
        )
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_with_a_change_set_is_split_into_its_requests() {
        let body = "--batch_A\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET /api/data/v9.2/contacts?$select=fullname HTTP/1.1\r\nAccept: application/json\r\n\r\n\r\n--batch_A\r\nContent-Type: multipart/mixed; boundary=changeset_B\r\n\r\n--changeset_B\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: 1\r\n\r\nPOST https://org.crm.dynamics.com/api/data/v9.2/contacts HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{\"firstname\":\"A\"}\r\n--changeset_B--\r\n--batch_A--\r\n";
        let items = parse_batch(body, "batch_A").unwrap();
        assert_eq!(items.len(), 2);
        let Item::Single(get) = &items[0] else {
            panic!("first is not a single request")
        };
        assert_eq!(get.method, Method::GET);
        assert_eq!(get.url, "/api/data/v9.2/contacts?$select=fullname");
        assert!(get.body.is_empty());
        let Item::ChangeSet(cs) = &items[1] else {
            panic!("second is not a change set")
        };
        assert_eq!(cs[0].content_id.as_deref(), Some("1"));
        assert_eq!(&cs[0].body[..], b"{\"firstname\":\"A\"}");
        let req = to_request(&cs[0], &HeaderMap::new(), &HashMap::new()).unwrap();
        assert_eq!(req.path, "contacts");
    }

    #[test]
    fn lf_only_bodies_and_quoted_boundaries_are_accepted() {
        assert_eq!(
            boundary("multipart/mixed; boundary=\"batch_x\"").as_deref(),
            Some("batch_x")
        );
        let body = "--b\nContent-Type: application/http\n\nDELETE contacts(00000000-0000-0000-0000-000000000001) HTTP/1.1\n\n--b--\n";
        let items = parse_batch(body, "b").unwrap();
        let Item::Single(p) = &items[0] else {
            panic!("not single")
        };
        assert_eq!(p.method, Method::DELETE);
    }

    #[test]
    fn a_batch_without_its_closing_delimiter_is_refused() {
        assert!(
            parse_batch(
                "--b\r\nContent-Type: application/http\r\n\r\nGET contacts HTTP/1.1\r\n",
                "b"
            )
            .is_err()
        );
    }
}
