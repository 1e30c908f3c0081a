//! CleverReach simulator: OAuth (`/oauth/token.php`, `/oauth/authorize.php`, and
//! `DELETE /oauth/token` to revoke a token).
//!
//! Grants: `client_credentials` (Basic auth, form or JSON body), `refresh_token` (form or
//! JSON; client in Basic auth or in the body; the refresh token rotates and a used one answers
//! `invalid_grant`), `authorization_code` (JSON body; the code is single-use and tied to its
//! `redirect_uri`, which may arrive url-encoded as the official cores send it).

use super::state::SimState;
use super::{Endpoint, Shared};
use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use serde_json::{Value, json};
use std::collections::HashMap;

pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/oauth/token.php", post(token))
        .route("/oauth/token", post(token).delete(revoke))
        .route(
            "/oauth/authorize.php",
            get(authorize_page).post(authorize_submit),
        )
        .with_state(shared)
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// The token request's fields, from a form or a JSON body.
fn fields(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"))
        || body.first() == Some(&b'{');
    if is_json {
        match serde_json::from_slice::<serde_json::Map<String, Value>>(body) {
            Ok(map) => map
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect(),
            Err(_) => HashMap::new(),
        }
    } else {
        url::form_urlencoded::parse(body).into_owned().collect()
    }
}

/// `Authorization: Basic base64(id:secret)`.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = String::from_utf8(base64_decode(encoded.trim())?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let clean: Vec<u8> = input.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= value(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&bytes[1..4]),
            3 => out.extend_from_slice(&bytes[1..3]),
            2 => out.push(bytes[1]),
            _ => return None,
        }
    }
    Some(out)
}

fn token_response(st: &mut SimState) -> Response {
    let (access, refresh) = st.issue_tokens();
    axum::Json(json!({
        "access_token": access,
        "expires_in": st.cfg.access_token_ttl_secs,
        "token_type": "bearer",
        "scope": "basic",
        "refresh_token": refresh,
    }))
    .into_response()
}

async fn token(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = fields(&headers, &body);
    let mut st = shared.lock();
    st.count(Endpoint::Token);
    let (client_id, client_secret) = match basic_auth(&headers) {
        Some(pair) => pair,
        None => (
            fields.get("client_id").cloned().unwrap_or_default(),
            fields.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if client_id != st.cfg.client_id || client_secret != st.cfg.client_secret {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The client credentials are invalid",
        );
    }
    match fields.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            st.tokens.grants.client_credentials += 1;
            token_response(&mut st)
        }
        Some("refresh_token") => {
            let Some(refresh) = fields.get("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "The refresh token parameter is missing",
                );
            };
            if !st.take_refresh_token(refresh) {
                st.tokens.grants.refused_refresh += 1;
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Invalid refresh token",
                );
            }
            st.tokens.grants.refresh_token += 1;
            token_response(&mut st)
        }
        Some("authorization_code") => {
            let code = fields.get("code").cloned().unwrap_or_default();
            let redirect = fields.get("redirect_uri").cloned().unwrap_or_default();
            let Some(issued_for) = st.take_code(&code) else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "Authorization code doesn't exist or is invalid for the client",
                );
            };
            let decoded = percent_encoding::percent_decode_str(&redirect)
                .decode_utf8_lossy()
                .to_string();
            if redirect != issued_for && decoded != issued_for {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "The redirect URI is missing or do not match",
                );
            }
            st.tokens.grants.authorization_code += 1;
            token_response(&mut st)
        }
        Some(other) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("The grant type \"{other}\" is not supported"),
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The grant type was not specified in the request",
        ),
    }
}

/// `DELETE /oauth/token` with `Authorization: Bearer <token>` (the official SDK's logout):
/// the token and the refresh token issued with it stop working.
async fn revoke(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    let mut st = shared.lock();
    st.count(Endpoint::TokenRevoke);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or_default();
    if token.is_empty() || !st.revoke_access_token(token) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The access token is missing, invalid or expired",
        );
    }
    axum::Json(json!(true)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn error_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(format!(
            "<!doctype html><html><head><title>CleverReach</title></head><body>\
             <h1>Authorization failed</h1><p class=\"error\">{}</p></body></html>",
            escape(message)
        )),
    )
        .into_response()
}

/// Checks the authorize parameters; `Err` is the error page's text.
fn check_authorize(st: &SimState, q: &HashMap<String, String>) -> Result<(), &'static str> {
    if q.get("response_type").map(String::as_str) != Some("code") {
        return Err("response_type must be 'code'");
    }
    if q.get("grant").map(String::as_str) != Some("basic") {
        return Err("grant=basic is required");
    }
    if q.get("client_id") != Some(&st.cfg.client_id) {
        return Err("Unknown client_id");
    }
    match q.get("redirect_uri").map(|u| url::Url::parse(u)) {
        Some(Ok(u)) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err("redirect_uri is missing or not an absolute http(s) URL"),
    }
}

/// The consent page: the account owner presses "Authorize".
async fn authorize_page(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut st = shared.lock();
    st.count(Endpoint::Authorize);
    if let Err(message) = check_authorize(&st, &q) {
        return error_page(message);
    }
    let hidden = [
        "response_type",
        "grant",
        "client_id",
        "redirect_uri",
        "state",
    ]
    .iter()
    .filter_map(|k| {
        q.get(*k).map(|v| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                escape(v)
            )
        })
    })
    .collect::<String>();
    Html(format!(
        "<!doctype html><html><head><title>CleverReach: connect an application</title></head>\
         <body><h1>{account}</h1><p>The application <b>{client}</b> asks for access to your \
         CleverReach account.</p><form method=\"post\" action=\"/oauth/authorize.php\">{hidden}\
         <button type=\"submit\" name=\"action\" value=\"authorize\">Authorize</button></form>\
         </body></html>",
        account = escape(&st.cfg.account_name),
        client = escape(&st.cfg.client_id),
    ))
    .into_response()
}

/// The "Authorize" button: redirect back with a single-use code and the caller's `state`.
async fn authorize_submit(State(shared): State<Shared>, body: Bytes) -> Response {
    let q: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut st = shared.lock();
    st.count(Endpoint::Authorize);
    if let Err(message) = check_authorize(&st, &q) {
        return error_page(message);
    }
    let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
    let Ok(mut target) = url::Url::parse(&redirect) else {
        return error_page("redirect_uri is not a URL");
    };
    let code = st.issue_code(&redirect);
    {
        let mut pairs = target.query_pairs_mut();
        pairs.append_pair("code", &code);
        if let Some(state) = q.get("state") {
            pairs.append_pair("state", state);
        }
    }
    Redirect::to(target.as_str()).into_response()
}

#[cfg(test)]
mod tests {
    use super::base64_decode;

    #[test]
    fn basic_auth_values_decode() {
        assert_eq!(
            base64_decode("c2FuZGJveC1jbGllbnQ6c2FuZGJveC1zZWNyZXQ="),
            Some(b"sandbox-client:sandbox-secret".to_vec())
        );
        assert_eq!(base64_decode("YQ=="), Some(b"a".to_vec()));
        assert_eq!(base64_decode("YWI="), Some(b"ab".to_vec()));
        assert_eq!(base64_decode("!!!!"), None);
    }
}
