//! Handler: the CleverReach set-up page (function `connect`, behind a function URL).
//!
//! An administrator signs in with the administrator key, presses "Connect CleverReach",
//! approves the connector on CleverReach's authorize page, comes back to `/callback` and
//! confirms there, and the code is exchanged and the tokens are stored (Secrets Manager in
//! Lambda). The page then shows the connected account and when the access token expires, or
//! "Reconnect CleverReach" when the connection died. `client_credentials` connects without a
//! browser (`POST /connect/app`).
//!
//! Steps per request: refuse cross-site state changes (`Origin`, `Sec-Fetch-Site`) → route →
//! authenticate (the administrator key in a header for scripts, a signed session cookie for
//! browsers; see [`session`]) → act (redirect, exchange, connect) → render, with headers that
//! keep the page out of frames, caches and referrers.
//!
//! The OAuth callback arrives cross-site (from CleverReach), where a `SameSite=Strict` session
//! cookie is not sent; so `GET /callback` only checks the signed `state` and asks the
//! administrator to confirm, and the exchange happens on the confirming same-origin `POST`,
//! where the session is known and must be the one the state was issued to.

pub mod session;

use super::keys_match;
use crate::adapters::cleverreach::{CleverReachClient, CleverReachError, TokenStore};
use crate::secret::Secret;
pub use session::{AccessError, AdminAccess, InMemorySessionStore, PageAccess, SessionStore};
use session::{OAuthState, Session, SigningKey};
use std::collections::BTreeMap;
use tracing::{info, warn};

/// Header a script uses instead of the sign-in form.
pub const ADMIN_KEY_HEADER: &str = "x-crc-admin-key";
/// The session cookie: `__Host-` (set by this host only, over https, for the whole path),
/// Secure, HttpOnly, SameSite=Strict. It holds a signed session id, never the key. Browsers
/// treat `http://127.0.0.1` and `http://localhost` as secure, so the local run keeps the same
/// attributes; on any other plain-http address the browser drops the cookie.
pub const SESSION_COOKIE: &str = "__Host-crc_session";
/// A sign-in lasts an hour.
const SESSION_SECONDS: i64 = 3600;
/// A connect must be finished within ten minutes.
const STATE_SECONDS: i64 = 600;

/// Deployment settings of the page.
#[derive(Debug, Clone, Default)]
pub struct ConnectSettings {
    /// The page's public base URL (`https://…lambda-url…on.aws`). When `None`, it is derived
    /// from the request's `host` and `x-forwarded-proto` headers.
    pub public_url: Option<String>,
}

/// What the page needs. `admin_key` decides who may use the page: a plain [`Secret`] is a
/// fixed key with sessions recorded in this process (tests, the local run); a deployed page
/// passes a [`PageAccess`] (key re-read from Secrets Manager, sessions in a shared record).
pub struct ConnectDeps<S: TokenStore, A: AdminAccess = Secret> {
    pub newsletter: CleverReachClient<S>,
    pub admin_key: A,
    pub settings: ConnectSettings,
    /// The events queue: after a connect, the registrations of the event hooks are checked
    /// there at once (none when the deployment has no hooks).
    pub after_connect: Option<std::sync::Arc<dyn crate::ports::queue::MessageQueue>>,
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

    fn form_value(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(&self.body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// Every value of cookie `name` (a sibling page may have planted more than one).
    fn cookies(&self, name: &str) -> Vec<String> {
        let Some(header) = self.header("cookie") else {
            return Vec::new();
        };
        header
            .split(';')
            .filter_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                (k == name).then(|| {
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned()
                })
            })
            .collect()
    }

    /// The page's own origin (`https://host`), from the public URL or the request.
    fn origin(&self, settings: &ConnectSettings) -> Option<String> {
        match &settings.public_url {
            Some(url) => url::Url::parse(url)
                .ok()
                .map(|u| u.origin().ascii_serialization()),
            None => {
                let host = self.header("host")?;
                let scheme = self.header("x-forwarded-proto").unwrap_or("https");
                Some(format!("{scheme}://{host}"))
            }
        }
    }

    /// Where CleverReach sends the browser back to.
    fn callback_url(&self, settings: &ConnectSettings) -> Result<String, PageResponse> {
        let base = match &settings.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => self.origin(settings).ok_or_else(|| {
                page(
                    400,
                    "Bad request",
                    "<p class=\"error\">The request has no Host header, so the page cannot tell CleverReach where to come back to.</p>",
                )
            })?,
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
pub async fn handle<S: TokenStore, A: AdminAccess>(
    request: &PageRequest,
    deps: &ConnectDeps<S, A>,
) -> PageResponse {
    let response = route(request, deps).await;
    with_protective_headers(response, deps)
}

async fn route<S: TokenStore, A: AdminAccess>(
    request: &PageRequest,
    deps: &ConnectDeps<S, A>,
) -> PageResponse {
    let method = request.method.to_ascii_uppercase();
    if method != "GET"
        && method != "HEAD"
        && let Err(refused) = same_origin(request, &deps.settings)
    {
        return refused;
    }
    let key = match deps.admin_key.admin_key().await {
        Ok(key) => key,
        Err(e) => return unavailable(&e),
    };
    let Some(signing) = SigningKey::derive(&key) else {
        warn!("connect page: the administrator key is empty; nobody can sign in");
        return sign_in_page(503, Some("The page has no administrator key configured."));
    };
    let gate = Gate {
        key: &key,
        signing: &signing,
        sessions: deps.admin_key.sessions(),
    };
    let caller = match gate.caller(request).await {
        Ok(caller) => caller,
        Err(e) => return unavailable(&e),
    };
    match (method.as_str(), request.path.as_str()) {
        ("POST", "/login") => sign_in(request, &gate),
        ("POST", "/logout") => sign_out(&gate, caller).await,
        ("GET", "/callback") => confirm_callback(request, &gate).await,
        ("POST", "/callback") => match caller {
            Caller::Browser(session) => finish_connect(request, deps, &gate, &session).await,
            _ => sign_in_page(401, Some("Sign in first, then connect again.")),
        },
        ("GET", "/" | "") => match caller {
            Caller::Nobody(why) => sign_in_page(200, why),
            _ => status_page(request, deps).await,
        },
        ("GET", "/status") => match caller {
            Caller::Nobody(why) => sign_in_page(401, Some(why.unwrap_or("Sign in first."))),
            _ => status_json(deps).await,
        },
        ("POST", "/connect") => match caller {
            Caller::Browser(session) => start_connect(request, deps, &gate, &session),
            Caller::Script => page(
                400,
                "Not connected",
                "<p class=\"error\">A browser connect needs a signed-in browser; scripts use POST /connect/app.</p>",
            ),
            Caller::Nobody(why) => sign_in_page(401, Some(why.unwrap_or("Sign in first."))),
        },
        ("POST", "/connect/app") => match caller {
            Caller::Nobody(why) => sign_in_page(401, Some(why.unwrap_or("Sign in first."))),
            caller => connect_app(deps, &caller).await,
        },
        _ => page(
            404,
            "Not found",
            "<p>There is no such page. <a href=\"/\">Back</a></p>",
        ),
    }
}

/// A state-changing request must come from the page itself: a browser says where a request
/// comes from (`Sec-Fetch-Site`, `Origin`), and another site, or a sibling function URL
/// sharing the site, is refused even though a same-site cookie came along. A request that says
/// neither is a script, which must then authenticate with the key header (no cookie).
fn same_origin(request: &PageRequest, settings: &ConnectSettings) -> Result<(), PageResponse> {
    let refused = |why: &str| {
        warn!(why, "connect page: cross-origin request refused");
        Err(page(
            403,
            "Refused",
            &format!(
                "<p class=\"error\" id=\"problem\">Refused: {}. Use the page itself.</p><p><a href=\"/\">Back</a></p>",
                escape(why)
            ),
        ))
    };
    let fetch_site = request.header("sec-fetch-site");
    if let Some(site) = fetch_site
        && !site.eq_ignore_ascii_case("same-origin")
    {
        return refused("the request came from another site or page");
    }
    match request.header("origin") {
        Some(origin) => match request.origin(settings) {
            Some(own) if origin.eq_ignore_ascii_case(&own) => Ok(()),
            _ => refused("the request came from another origin"),
        },
        None if fetch_site.is_some() => Ok(()),
        None if request.header(ADMIN_KEY_HEADER).is_some() => Ok(()),
        None => refused("the request does not say where it came from"),
    }
}

/// Who is asking.
enum Caller {
    /// A script with the administrator key in [`ADMIN_KEY_HEADER`].
    Script,
    /// A signed-in browser.
    Browser(Session),
    /// Nobody known; why, when a key or cookie was presented (for the sign-in page).
    Nobody(Option<&'static str>),
}

/// The key and the session record of one request.
struct Gate<'a> {
    key: &'a Secret,
    signing: &'a SigningKey,
    sessions: &'a dyn SessionStore,
}

impl Gate<'_> {
    async fn caller(&self, request: &PageRequest) -> Result<Caller, AccessError> {
        if let Some(given) = request.header(ADMIN_KEY_HEADER) {
            return Ok(if keys_match(self.key, given) {
                Caller::Script
            } else {
                warn!("connect page: wrong administrator key in the header");
                Caller::Nobody(Some("The administrator key is wrong."))
            });
        }
        let values = request.cookies(SESSION_COOKIE);
        if values.is_empty() {
            return Ok(Caller::Nobody(None));
        }
        for value in values {
            if let Some(session) = Session::verify(self.signing, &value) {
                if self.sessions.contains(&session.ended_entry()).await? {
                    return Ok(Caller::Nobody(Some("You signed out. Sign in again.")));
                }
                return Ok(Caller::Browser(session));
            }
        }
        Ok(Caller::Nobody(Some(
            "Your sign-in expired or the administrator key changed. Sign in again.",
        )))
    }
}

fn session_cookie(value: &str, max_age: i64) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    )
}

fn unavailable(e: &AccessError) -> PageResponse {
    warn!(error = %e, "connect page: access cannot be checked");
    page(
        503,
        "Unavailable",
        "<p class=\"error\">The page cannot check who you are right now (the administrator key or the session record cannot be read). Try again in a minute.</p>",
    )
}

fn sign_in(request: &PageRequest, gate: &Gate<'_>) -> PageResponse {
    let key = request.form_value("key").unwrap_or_default();
    if !keys_match(gate.key, key.trim()) {
        warn!("connect page: wrong administrator key");
        return sign_in_page(401, Some("The administrator key is wrong."));
    }
    let (_, value) = Session::issue(gate.signing, SESSION_SECONDS);
    info!("connect page: an administrator signed in");
    PageResponse::redirect("/").with_cookie(session_cookie(&value, SESSION_SECONDS))
}

/// Ends the session for good (recorded, so the old cookie is refused everywhere) and clears
/// the cookie.
async fn sign_out(gate: &Gate<'_>, caller: Caller) -> PageResponse {
    if let Caller::Browser(session) = &caller {
        if let Err(e) = gate
            .sessions
            .record(&session.ended_entry(), session.expires_unix)
            .await
        {
            return unavailable(&e);
        }
        info!("connect page: an administrator signed out");
    }
    PageResponse::redirect("/").with_cookie(session_cookie("", 0))
}

/// "Connect CleverReach": off to CleverReach's authorize page with a `state` signed for this
/// session.
fn start_connect<S: TokenStore, A: AdminAccess>(
    request: &PageRequest,
    deps: &ConnectDeps<S, A>,
    gate: &Gate<'_>,
    session: &Session,
) -> PageResponse {
    let callback = match request.callback_url(&deps.settings) {
        Ok(url) => url,
        Err(response) => return response,
    };
    let config = deps.newsletter.config();
    let mut authorize = config.base_url.clone();
    authorize.set_path("/oauth/authorize.php");
    let state = OAuthState::issue(gate.signing, session, STATE_SECONDS);
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &config.client_id)
        .append_pair("grant", "basic")
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", &callback)
        .append_pair("state", &state);
    info!("connect page: sending the administrator to CleverReach");
    PageResponse::redirect(authorize.as_str())
}

const STATE_REFUSED: &str = "<p class=\"error\" id=\"problem\">Refused: the state value does not match the one this page issued, so this answer may not come from your own connect. Start again with \"Connect CleverReach\".</p><p><a href=\"/\">Back</a></p>";

/// Checks what came back from CleverReach; refuses a state this page did not sign, or one
/// already used.
async fn checked_state(
    request_state: Option<&str>,
    gate: &Gate<'_>,
) -> Result<OAuthState, PageResponse> {
    let Some(state) = request_state.and_then(|s| OAuthState::verify(gate.signing, s)) else {
        warn!("connect page: callback with a state this page did not issue");
        return Err(page(400, "Not connected", STATE_REFUSED));
    };
    match gate.sessions.contains(&state.used_entry()).await {
        Ok(false) => Ok(state),
        Ok(true) => {
            warn!("connect page: callback with a state that was used already");
            Err(page(
                400,
                "Not connected",
                "<p class=\"error\" id=\"problem\">Refused: this answer from CleverReach was used already. Start again with \"Connect CleverReach\".</p><p><a href=\"/\">Back</a></p>",
            ))
        }
        Err(e) => Err(unavailable(&e)),
    }
}

/// Back from CleverReach (`GET /callback`): nothing is exchanged here. The state is checked
/// and the administrator confirms with a same-origin form, which brings the session along.
async fn confirm_callback(request: &PageRequest, gate: &Gate<'_>) -> PageResponse {
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
    if let Err(refused) = checked_state(request.query_value("state"), gate).await {
        return refused;
    }
    let Some(code) = request.query_value("code").filter(|c| !c.is_empty()) else {
        return no_code();
    };
    let state = request.query_value("state").unwrap_or_default();
    page(
        200,
        "Finish connecting",
        &format!(
            "<p>CleverReach approved the connection. Finish connecting this connector to that CleverReach account?</p>\
             <form method=\"post\" action=\"/callback\"><input type=\"hidden\" name=\"code\" value=\"{}\">\
             <input type=\"hidden\" name=\"state\" value=\"{}\">\
             <button id=\"finish\" type=\"submit\">Finish connecting</button></form><p><a href=\"/\">Cancel</a></p>",
            escape(code),
            escape(state)
        ),
    )
}

fn no_code() -> PageResponse {
    page(
        400,
        "Not connected",
        "<p class=\"error\">CleverReach sent no authorization code. Start again.</p><p><a href=\"/\">Back</a></p>",
    )
}

/// The confirmation (`POST /callback`): the state must be this session's and unused; it is
/// used up before the code is exchanged and the tokens are stored.
async fn finish_connect<S: TokenStore, A: AdminAccess>(
    request: &PageRequest,
    deps: &ConnectDeps<S, A>,
    gate: &Gate<'_>,
    session: &Session,
) -> PageResponse {
    let given = request.form_value("state");
    let state = match checked_state(given.as_deref(), gate).await {
        Ok(state) => state,
        Err(refused) => return refused,
    };
    if state.session_id != session.id {
        warn!("connect page: callback state issued to another session");
        return page(400, "Not connected", STATE_REFUSED);
    }
    let Some(code) = request.form_value("code").filter(|c| !c.is_empty()) else {
        return no_code();
    };
    match gate
        .sessions
        .record(&state.used_entry(), state.expires_unix)
        .await
    {
        Ok(true) => {}
        Ok(false) => return page(400, "Not connected", STATE_REFUSED),
        Err(e) => return unavailable(&e),
    }
    let callback = match request.callback_url(&deps.settings) {
        Ok(url) => url,
        Err(response) => return response,
    };
    match deps.newsletter.exchange_code(&code, &callback).await {
        Ok(()) => {
            info!("connect page: CleverReach connected");
            after_connect(deps).await;
            PageResponse::redirect("/")
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

/// A new connection may be a new account: its groups need their event hooks now.
async fn after_connect<S: TokenStore, A: AdminAccess>(deps: &ConnectDeps<S, A>) {
    if let Some(queue) = &deps.after_connect {
        crate::handlers::cleverreach_events::request_check(
            queue.as_ref(),
            chrono::Utc::now().timestamp_millis(),
        )
        .await;
    }
}

/// `client_credentials`: connects the account that owns the OAuth app, no browser needed.
async fn connect_app<S: TokenStore, A: AdminAccess>(
    deps: &ConnectDeps<S, A>,
    caller: &Caller,
) -> PageResponse {
    let result = deps.newsletter.connect_client_credentials().await;
    if result.is_ok() {
        after_connect(deps).await;
    }
    let wants_json = matches!(caller, Caller::Script);
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

/// Headers on every answer: not cached, not framed, no referrer to other sites (the callback
/// URL holds the code; `no-referrer` would also blank the `Origin` of the page's own forms),
/// and a content policy that allows no scripts and sends forms only to the page
/// itself and to CleverReach's authorize page.
fn with_protective_headers<S: TokenStore, A: AdminAccess>(
    mut response: PageResponse,
    deps: &ConnectDeps<S, A>,
) -> PageResponse {
    let cleverreach = deps
        .newsletter
        .config()
        .base_url
        .origin()
        .ascii_serialization();
    let policy = format!(
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' {cleverreach}; frame-ancestors 'none'; base-uri 'none'"
    );
    for (name, value) in [
        ("cache-control", "no-store".to_string()),
        ("x-frame-options", "DENY".to_string()),
        ("referrer-policy", "same-origin".to_string()),
        ("x-content-type-options", "nosniff".to_string()),
        ("content-security-policy", policy),
    ] {
        response.headers.push((name.to_string(), value));
    }
    response
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

async fn status_page<S: TokenStore, A: AdminAccess>(
    request: &PageRequest,
    deps: &ConnectDeps<S, A>,
) -> PageResponse {
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
    let sign_out = "<form method=\"post\" action=\"/logout\"><button id=\"sign-out\" type=\"submit\">Sign out</button></form>";
    page(200, title, &format!("{body}{callback}{sign_out}"))
}

async fn status_json<S: TokenStore, A: AdminAccess>(deps: &ConnectDeps<S, A>) -> PageResponse {
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
            .header("content-type", content_type);
        for (name, value) in response.headers {
            builder = builder.header(name, value);
        }
        Ok(builder.body(Body::Text(response.body))?)
    }

    /// The function's handler.
    pub async fn run<S: TokenStore, A: AdminAccess>(
        request: Request,
        deps: &ConnectDeps<S, A>,
    ) -> Result<Response<Body>, lambda_http::Error> {
        to_response(handle(&to_page_request(&request), deps).await)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::adapters::cleverreach::{CleverReachConfig, InMemoryTokenStore};
    use crate::adapters::memory::StaticSecrets;

    const PAGE: &str = "https://abc.lambda-url.eu-central-1.on.aws";

    fn request(method: &str, path: &str) -> PageRequest {
        let mut r = PageRequest {
            method: method.into(),
            path: path.into(),
            ..PageRequest::default()
        };
        r.headers
            .insert("host".into(), "abc.lambda-url.eu-central-1.on.aws".into());
        r
    }

    fn from_page(mut r: PageRequest) -> PageRequest {
        r.headers.insert("origin".into(), PAGE.into());
        r.headers
            .insert("sec-fetch-site".into(), "same-origin".into());
        r
    }

    fn deps(
        keys: StaticSecrets,
    ) -> ConnectDeps<InMemoryTokenStore, PageAccess<StaticSecrets, InMemorySessionStore>> {
        let newsletter = CleverReachClient::new(
            CleverReachConfig::new(
                url::Url::parse("https://rest.cleverreach.com/").unwrap(),
                "client",
                Secret::new("client-secret"),
                "test",
            ),
            InMemoryTokenStore::new(),
        )
        .unwrap();
        ConnectDeps {
            newsletter,
            admin_key: PageAccess {
                keys,
                key_secret_id: "admin".into(),
                sessions: InMemorySessionStore::new(),
            },
            settings: ConnectSettings::default(),
            after_connect: None,
        }
    }

    fn cookie_of(response: &PageResponse) -> String {
        response
            .headers
            .iter()
            .find(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.split(';').next().unwrap().to_string())
            .unwrap()
    }

    async fn signed_in(
        deps: &ConnectDeps<InMemoryTokenStore, PageAccess<StaticSecrets, InMemorySessionStore>>,
        key: &str,
    ) -> String {
        let mut login = from_page(request("POST", "/login"));
        login.body = format!("key={key}").into_bytes();
        let answer = handle(&login, deps).await;
        assert_eq!(answer.status, 303, "{}", answer.body);
        cookie_of(&answer)
    }

    async fn home(
        deps: &ConnectDeps<InMemoryTokenStore, PageAccess<StaticSecrets, InMemorySessionStore>>,
        cookie: &str,
    ) -> PageResponse {
        let mut r = request("GET", "/");
        r.headers.insert("cookie".into(), cookie.into());
        handle(&r, deps).await
    }

    #[tokio::test]
    async fn the_session_cookie_is_host_only_secure_strict_and_never_the_key() {
        let deps = deps(StaticSecrets::new().with("admin", "admin-key-1"));
        let mut login = from_page(request("POST", "/login"));
        login.body = b"key=admin-key-1".to_vec();
        let answer = handle(&login, &deps).await;
        let set = &answer
            .headers
            .iter()
            .find(|(n, _)| n == "set-cookie")
            .unwrap()
            .1;
        assert!(set.starts_with("__Host-crc_session=v1."), "{set}");
        for attribute in [
            "Path=/",
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=3600",
        ] {
            assert!(set.contains(attribute), "{attribute} in {set}");
        }
        assert!(
            !set.contains("Domain") && !set.contains("admin-key-1"),
            "{set}"
        );
    }

    #[tokio::test]
    async fn a_rotated_administrator_key_ends_every_session() {
        let keys = StaticSecrets::new().with("admin", "admin-key-1");
        let deps = deps(keys);
        let cookie = signed_in(&deps, "admin-key-1").await;
        assert!(home(&deps, &cookie).await.body.contains("id=\"status\""));
        deps.admin_key.keys.set("admin", "admin-key-2");
        let after = home(&deps, &cookie).await;
        assert!(after.body.contains("id=\"sign-in\""), "{}", after.body);
        assert!(
            after.body.contains("administrator key changed"),
            "{}",
            after.body
        );
        // The new key signs in.
        let fresh = signed_in(&deps, "admin-key-2").await;
        assert!(home(&deps, &fresh).await.body.contains("id=\"status\""));
    }

    #[tokio::test]
    async fn a_post_from_another_origin_or_site_is_refused_before_anything_happens() {
        let deps = deps(StaticSecrets::new().with("admin", "admin-key-1"));
        let cookie = signed_in(&deps, "admin-key-1").await;
        for (origin, site) in [
            (
                Some("https://evil.lambda-url.eu-central-1.on.aws"),
                Some("same-site"),
            ),
            (Some("https://evil.example"), None),
            (None, Some("cross-site")),
            (None, None),
        ] {
            let mut r = request("POST", "/connect/app");
            r.headers.insert("cookie".into(), cookie.clone());
            if let Some(origin) = origin {
                r.headers.insert("origin".into(), origin.into());
            }
            if let Some(site) = site {
                r.headers.insert("sec-fetch-site".into(), site.into());
            }
            let answer = handle(&r, &deps).await;
            assert_eq!(answer.status, 403, "{origin:?} {site:?}: {}", answer.body);
        }
        assert!(deps.newsletter.store().current().is_none());
        // A script with the key header needs no Origin.
        let mut script = request("GET", "/status");
        script
            .headers
            .insert(ADMIN_KEY_HEADER.into(), "admin-key-1".into());
        assert_eq!(handle(&script, &deps).await.status, 200);
    }

    #[tokio::test]
    async fn every_answer_keeps_out_of_frames_caches_and_referrers() {
        let deps = deps(StaticSecrets::new().with("admin", "admin-key-1"));
        let answer = handle(&request("GET", "/"), &deps).await;
        let header = |name: &str| {
            answer
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert_eq!(header("x-frame-options"), "DENY");
        assert_eq!(header("referrer-policy"), "same-origin");
        assert_eq!(header("cache-control"), "no-store");
        assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
        assert!(
            header("content-security-policy")
                .contains("form-action 'self' https://rest.cleverreach.com")
        );
    }

    #[tokio::test]
    async fn an_unreadable_administrator_key_answers_unavailable() {
        let deps = deps(StaticSecrets::new());
        let answer = handle(&request("GET", "/"), &deps).await;
        assert_eq!(answer.status, 503, "{}", answer.body);
    }

    #[test]
    fn cookies_are_read_by_name_and_all_values_kept() {
        let mut r = request("GET", "/");
        r.headers.insert(
            "cookie".into(),
            "a=1; __Host-crc_session=v1.x; crc_oauth_state=abc; __Host-crc_session=v1.y".into(),
        );
        assert_eq!(r.cookies(SESSION_COOKIE), ["v1.x", "v1.y"]);
        assert!(r.cookies("missing").is_empty());
    }

    #[test]
    fn the_callback_url_follows_the_public_url_or_the_host() {
        let r = request("POST", "/connect");
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
        assert_eq!(r.origin(&fixed).as_deref(), Some("http://127.0.0.1:8804"));
    }

    #[test]
    fn page_text_is_escaped() {
        assert_eq!(escape("<b>\"x\"&'"), "&lt;b&gt;&quot;x&quot;&amp;&#39;");
    }
}
