//! Handler: the CleverReach set-up page (function `connect`, behind a function URL).
//!
//! An administrator signs in with the connect key, presses "Connect CleverReach", approves the
//! connector on CleverReach's authorize page, and comes back to `/callback`, where the code is
//! exchanged and the tokens are stored (Secrets Manager in Lambda). The page then shows the
//! connected account and when the access token expires, or "Reconnect CleverReach" when the
//! connection died. `client_credentials` connects without a browser (`POST /connect/app`).
//!
//! Steps per request: route → authenticate (admin key in a header or the session cookie) →
//! act (redirect, exchange, connect) → render.

use super::keys_match;
use crate::adapters::cleverreach::{CleverReachClient, CleverReachError, TokenStore};
use crate::secret::Secret;
use std::collections::BTreeMap;
use tracing::{info, warn};

/// Header a script uses instead of the sign-in form.
pub const ADMIN_KEY_HEADER: &str = "x-crc-admin-key";
/// Cookie holding the administrator key after sign-in (HttpOnly, SameSite=Lax).
pub const SESSION_COOKIE: &str = "crc_admin";
/// Cookie holding the `state` value of a connect in progress (CSRF protection).
pub const STATE_COOKIE: &str = "crc_oauth_state";
/// A sign-in lasts an hour.
const SESSION_SECONDS: u32 = 3600;
/// A connect must be finished within ten minutes.
const STATE_SECONDS: u32 = 600;

/// Deployment settings of the page.
#[derive(Debug, Clone, Default)]
pub struct ConnectSettings {
    /// The page's public base URL (`https://…lambda-url…on.aws`). When `None`, it is derived
    /// from the request's `host` and `x-forwarded-proto` headers.
    pub public_url: Option<String>,
}

/// What the page needs.
pub struct ConnectDeps<S: TokenStore> {
    pub newsletter: CleverReachClient<S>,
    pub admin_key: Secret,
    pub settings: ConnectSettings,
}

/// A request, independent of the HTTP framework that carried it.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl PageRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn cookie(&self, name: &str) -> Option<String> {
        let header = self.header("cookie")?;
        header.split(';').find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| {
                percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned()
            })
        })
    }

    fn form_value(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(&self.body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn is_https(&self, settings: &ConnectSettings) -> bool {
        match &settings.public_url {
            Some(url) => url.starts_with("https://"),
            None => self.header("x-forwarded-proto").unwrap_or("https") == "https",
        }
    }

    /// Where CleverReach sends the browser back to.
    fn callback_url(&self, settings: &ConnectSettings) -> Result<String, PageResponse> {
        let base = match &settings.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => {
                let host = self.header("host").ok_or_else(|| {
                    page(
                        400,
                        "Bad request",
                        "<p class=\"error\">The request has no Host header, so the page cannot tell CleverReach where to come back to.</p>",
                    )
                })?;
                let scheme = self.header("x-forwarded-proto").unwrap_or("https");
                format!("{scheme}://{host}")
            }
        };
        Ok(format!("{base}/callback"))
    }
}

/// The page's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageResponse {
    pub status: u16,
    /// Extra headers (`location`, `set-cookie`); content type is HTML unless `json`.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub json: bool,
}

impl PageResponse {
    fn redirect(to: &str) -> Self {
        PageResponse {
            status: 303,
            headers: vec![("location".into(), to.into())],
            body: String::new(),
            json: false,
        }
    }

    fn with_cookie(mut self, cookie: String) -> Self {
        self.headers.push(("set-cookie".into(), cookie));
        self
    }
}

/// Handles one request to the page.
pub async fn handle<S: TokenStore>(request: &PageRequest, deps: &ConnectDeps<S>) -> PageResponse {
    let route = (request.method.to_ascii_uppercase(), request.path.as_str());
    match (route.0.as_str(), route.1) {
        ("POST", "/login") => sign_in(request, deps),
        ("GET", "/callback") => match authenticate(request, deps) {
            Ok(()) => finish_connect(request, deps).await,
            Err(refused) => refused,
        },
        ("GET", "/" | "") => match authenticate(request, deps) {
            Ok(()) => status_page(request, deps).await,
            Err(_) => sign_in_page(200, None),
        },
        ("GET", "/status") => match authenticate(request, deps) {
            Ok(()) => status_json(deps).await,
            Err(refused) => refused,
        },
        ("POST", "/connect") => match authenticate(request, deps) {
            Ok(()) => start_connect(request, deps),
            Err(refused) => refused,
        },
        ("POST", "/connect/app") => match authenticate(request, deps) {
            Ok(()) => connect_app(request, deps).await,
            Err(refused) => refused,
        },
        _ => page(
            404,
            "Not found",
            "<p>There is no such page. <a href=\"/\">Back</a></p>",
        ),
    }
}

/// The administrator key from the header (scripts) or the session cookie (browser).
fn authenticate<S: TokenStore>(
    request: &PageRequest,
    deps: &ConnectDeps<S>,
) -> Result<(), PageResponse> {
    let given = request
        .header(ADMIN_KEY_HEADER)
        .map(str::to_string)
        .or_else(|| request.cookie(SESSION_COOKIE));
    match given {
        Some(key) if keys_match(&deps.admin_key, &key) => Ok(()),
        Some(_) => Err(sign_in_page(401, Some("The administrator key is wrong."))),
        None => Err(sign_in_page(401, Some("Sign in first."))),
    }
}

fn cookie(name: &str, value: &str, max_age: u32, secure: bool) -> String {
    let value: String =
        percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

fn sign_in<S: TokenStore>(request: &PageRequest, deps: &ConnectDeps<S>) -> PageResponse {
    let key = request.form_value("key").unwrap_or_default();
    if !keys_match(&deps.admin_key, key.trim()) {
        warn!("connect page: wrong administrator key");
        return sign_in_page(401, Some("The administrator key is wrong."));
    }
    let secure = request.is_https(&deps.settings);
    PageResponse::redirect("/").with_cookie(cookie(
        SESSION_COOKIE,
        key.trim(),
        SESSION_SECONDS,
        secure,
    ))
}

/// "Connect CleverReach": off to CleverReach's authorize page with a fresh `state`.
fn start_connect<S: TokenStore>(request: &PageRequest, deps: &ConnectDeps<S>) -> PageResponse {
    let callback = match request.callback_url(&deps.settings) {
        Ok(url) => url,
        Err(response) => return response,
    };
    let config = deps.newsletter.config();
    let mut authorize = config.base_url.clone();
    authorize.set_path("/oauth/authorize.php");
    let state = uuid::Uuid::new_v4().simple().to_string();
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &config.client_id)
        .append_pair("grant", "basic")
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &callback)
        .append_pair("state", &state);
    info!("connect page: sending the administrator to CleverReach");
    let secure = request.is_https(&deps.settings);
    PageResponse::redirect(authorize.as_str()).with_cookie(cookie(
        STATE_COOKIE,
        &state,
        STATE_SECONDS,
        secure,
    ))
}

/// Back from CleverReach: check `state`, exchange the code, store the tokens.
async fn finish_connect<S: TokenStore>(
    request: &PageRequest,
    deps: &ConnectDeps<S>,
) -> PageResponse {
    if let Some(error) = request.query_value("error") {
        let why = request.query_value("error_description").unwrap_or(error);
        return page(
            400,
            "Not connected",
            &format!(
                "<p class=\"error\">CleverReach did not grant access: {}</p><p><a href=\"/\">Back</a></p>",
                escape(why)
            ),
        );
    }
    let expected = request.cookie(STATE_COOKIE);
    let given = request.query_value("state");
    let state_ok = match (&expected, given) {
        (Some(expected), Some(given)) => keys_match(&Secret::new(expected.clone()), given),
        _ => false,
    };
    if !state_ok {
        warn!("connect page: callback with a state this page did not issue");
        return page(
            400,
            "Not connected",
            "<p class=\"error\">Refused: the state value does not match the one this page issued, so this answer may not come from your own connect. Start again with \"Connect CleverReach\".</p><p><a href=\"/\">Back</a></p>",
        );
    }
    let Some(code) = request.query_value("code").filter(|c| !c.is_empty()) else {
        return page(
            400,
            "Not connected",
            "<p class=\"error\">CleverReach sent no authorization code. Start again.</p><p><a href=\"/\">Back</a></p>",
        );
    };
    let callback = match request.callback_url(&deps.settings) {
        Ok(url) => url,
        Err(response) => return response,
    };
    let secure = request.is_https(&deps.settings);
    match deps.newsletter.exchange_code(code, &callback).await {
        Ok(()) => {
            info!("connect page: CleverReach connected");
            PageResponse::redirect("/").with_cookie(cookie(STATE_COOKIE, "", 0, secure))
        }
        Err(e) => {
            warn!(error = %e, "connect page: code exchange failed");
            page(
                502,
                "Not connected",
                &format!(
                    "<p class=\"error\">CleverReach refused to connect: {}</p><p><a href=\"/\">Back</a></p>",
                    escape(&e.to_string())
                ),
            )
        }
    }
}

/// `client_credentials`: connects the account that owns the OAuth app, no browser needed.
async fn connect_app<S: TokenStore>(request: &PageRequest, deps: &ConnectDeps<S>) -> PageResponse {
    let result = deps.newsletter.connect_client_credentials().await;
    let wants_json = request.header(ADMIN_KEY_HEADER).is_some();
    match (result, wants_json) {
        (Ok(()), true) => status_json(deps).await,
        (Ok(()), false) => PageResponse::redirect("/"),
        (Err(e), _) => {
            warn!(error = %e, "connect page: client credentials refused");
            page(
                502,
                "Not connected",
                &format!(
                    "<p class=\"error\">CleverReach refused to connect: {}</p>",
                    escape(&e.to_string())
                ),
            )
        }
    }
}

/// The connection as the page reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    NotConnected,
    Connected {
        account: String,
        account_id: String,
        expires_at_unix: i64,
    },
    ReconnectRequired(String),
    /// CleverReach did not answer (an outage, not a dead connection).
    Unknown(String),
}

/// Asks CleverReach who we are (refreshing the token if it is due) and reads the expiry.
pub async fn connection<S: TokenStore>(newsletter: &CleverReachClient<S>) -> Connection {
    match newsletter.tokens().await {
        Ok(None) => return Connection::NotConnected,
        Ok(Some(tokens)) => {
            if let Some(reason) = tokens.reconnect_required {
                return Connection::ReconnectRequired(reason);
            }
        }
        Err(e) => return Connection::Unknown(e.to_string()),
    }
    match newsletter.whoami().await {
        Ok(account) => {
            let expires_at_unix = match newsletter.tokens().await {
                Ok(Some(tokens)) => tokens.expires_at_unix,
                _ => 0,
            };
            Connection::Connected {
                account: account.name,
                account_id: account.id,
                expires_at_unix,
            }
        }
        Err(CleverReachError::ReconnectRequired { reason }) => {
            Connection::ReconnectRequired(reason)
        }
        Err(e) => Connection::Unknown(e.to_string()),
    }
}

fn time_text(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "unknown".into())
}

async fn status_page<S: TokenStore>(request: &PageRequest, deps: &ConnectDeps<S>) -> PageResponse {
    let connect_buttons = "<form method=\"post\" action=\"/connect\"><button id=\"connect\" type=\"submit\">Connect CleverReach</button></form>\
         <form method=\"post\" action=\"/connect/app\"><button id=\"connect-app\" type=\"submit\">Connect the app's own account (client credentials)</button></form>";
    let (title, body) = match connection(&deps.newsletter).await {
        Connection::NotConnected => (
            "Not connected",
            format!("<p id=\"status\">CleverReach is not connected yet.</p>{connect_buttons}"),
        ),
        Connection::Connected {
            account,
            account_id,
            expires_at_unix,
        } => (
            "Connected",
            format!(
                "<p id=\"status\">Connected to CleverReach account <b id=\"account\">{}</b> (id {}).</p>\
                 <p>The access token is valid until <span id=\"expires\">{}</span> and is refreshed automatically.</p>\
                 <p>To connect another account:</p>{connect_buttons}",
                escape(&account),
                escape(&account_id),
                time_text(expires_at_unix)
            ),
        ),
        Connection::ReconnectRequired(reason) => (
            "Reconnect CleverReach",
            format!(
                "<p id=\"status\" class=\"error\">Reconnect CleverReach: {}</p><p>Until then the workers stop and keep their changes on the queues (then in the dead-letter queues); after connecting, run a resync of every source.</p>{connect_buttons}",
                escape(&reason)
            ),
        ),
        Connection::Unknown(why) => (
            "CleverReach did not answer",
            format!(
                "<p id=\"status\" class=\"error\">CleverReach did not answer: {}. Try again later.</p>",
                escape(&why)
            ),
        ),
    };
    // CleverReach only sends the browser back to a redirect URL registered on the OAuth app.
    let callback = request
        .callback_url(&deps.settings)
        .map(|url| {
            format!(
                "<p>Redirect URL to register on your CleverReach OAuth app: <code id=\"callback\">{}</code></p>",
                escape(&url)
            )
        })
        .unwrap_or_default();
    page(200, title, &format!("{body}{callback}"))
}

async fn status_json<S: TokenStore>(deps: &ConnectDeps<S>) -> PageResponse {
    let value = match connection(&deps.newsletter).await {
        Connection::NotConnected => serde_json::json!({ "connected": false }),
        Connection::Connected {
            account,
            account_id,
            expires_at_unix,
        } => serde_json::json!({
            "connected": true,
            "account": account,
            "account_id": account_id,
            "expires_at": time_text(expires_at_unix),
        }),
        Connection::ReconnectRequired(reason) => {
            serde_json::json!({ "connected": false, "reconnect_required": reason })
        }
        Connection::Unknown(why) => serde_json::json!({ "connected": null, "error": why }),
    };
    PageResponse {
        status: 200,
        headers: Vec::new(),
        body: value.to_string(),
        json: true,
    }
}

fn sign_in_page(status: u16, problem: Option<&str>) -> PageResponse {
    let problem = problem
        .map(|p| format!("<p class=\"error\" id=\"problem\">{}</p>", escape(p)))
        .unwrap_or_default();
    page(
        status,
        "Sign in",
        &format!(
            "{problem}<form method=\"post\" action=\"/login\"><label>Administrator key \
             <input type=\"password\" name=\"key\" autocomplete=\"off\"></label> \
             <button id=\"sign-in\" type=\"submit\">Sign in</button></form>"
        ),
    )
}

fn page(status: u16, title: &str, body: &str) -> PageResponse {
    PageResponse {
        status,
        headers: Vec::new(),
        body: format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>CleverReach connector: {title}</title></head>\
             <body><h1>{title}</h1>{body}</body></html>",
            title = escape(title)
        ),
        json: false,
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Lambda adapter: function URL request → [`PageRequest`] → HTTP response.
pub mod lambda {
    use super::*;
    use crate::handlers::function_url_parts;
    use lambda_http::{Body, Request, Response};

    pub fn to_page_request(request: &Request) -> PageRequest {
        let parts = function_url_parts(request);
        PageRequest {
            method: request.method().as_str().to_string(),
            path: request.uri().path().to_string(),
            query: parts.query,
            headers: parts.headers,
            body: parts.body,
        }
    }

    pub fn to_response(response: PageResponse) -> Result<Response<Body>, lambda_http::Error> {
        let content_type = if response.json {
            "application/json"
        } else {
            "text/html; charset=utf-8"
        };
        let mut builder = Response::builder()
            .status(response.status)
            .header("content-type", content_type)
            .header("cache-control", "no-store")
            .header("x-frame-options", "DENY");
        for (name, value) in response.headers {
            builder = builder.header(name, value);
        }
        Ok(builder.body(Body::Text(response.body))?)
    }

    /// The function's handler.
    pub async fn run<S: TokenStore>(
        request: Request,
        deps: &ConnectDeps<S>,
    ) -> Result<Response<Body>, lambda_http::Error> {
        to_response(handle(&to_page_request(&request), deps).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, path: &str) -> PageRequest {
        PageRequest {
            method: method.into(),
            path: path.into(),
            ..PageRequest::default()
        }
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut r = request("GET", "/");
        r.headers.insert(
            "cookie".into(),
            "a=1; crc_admin=k%20ey; crc_oauth_state=abc".into(),
        );
        assert_eq!(r.cookie(SESSION_COOKIE).as_deref(), Some("k ey"));
        assert_eq!(r.cookie(STATE_COOKIE).as_deref(), Some("abc"));
        assert_eq!(r.cookie("missing"), None);
    }

    #[test]
    fn the_callback_url_follows_the_public_url_or_the_host() {
        let mut r = request("POST", "/connect");
        r.headers
            .insert("host".into(), "abc.lambda-url.eu-central-1.on.aws".into());
        assert_eq!(
            r.callback_url(&ConnectSettings::default()).ok().as_deref(),
            Some("https://abc.lambda-url.eu-central-1.on.aws/callback")
        );
        let fixed = ConnectSettings {
            public_url: Some("http://127.0.0.1:8804/".into()),
        };
        assert_eq!(
            r.callback_url(&fixed).ok().as_deref(),
            Some("http://127.0.0.1:8804/callback")
        );
        assert!(!r.is_https(&fixed));
    }

    #[test]
    fn session_cookies_are_http_only_and_secure_on_https() {
        let c = cookie(SESSION_COOKIE, "k", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Lax"));
        assert!(!cookie(SESSION_COOKIE, "k", 60, false).contains("Secure"));
    }

    #[test]
    fn page_text_is_escaped() {
        assert_eq!(escape("<b>\"x\"&'"), "&lt;b&gt;&quot;x&quot;&amp;&#39;");
    }
}
