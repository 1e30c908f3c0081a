//! CleverReach adapter: the client core. Builds URLs, sends one request with a valid access
//! token (refreshing once on 401), classifies the answer, and retries what may be retried.
//! Operations live in `groups.rs` and `receivers.rs`.

use super::config::CleverReachConfig;
use super::error::CleverReachError;
use super::tokens::{StoredTokens, TokenSet, TokenStore, TokenVersion};
use super::wire::{ErrorBody, WireTokens};
use crate::adapters::http::with_retries;
use crate::secret::Secret;
use reqwest::{Method, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use url::Url;

/// Refresh the access token when it has less than this left, so that a call never starts
/// with a token about to die.
const REFRESH_MARGIN_SECS: i64 = 60;
/// Error texts quote at most this much of an unexpected body.
const BODY_EXCERPT: usize = 200;
/// After a refused refresh: how long to wait before each look into the token store for the
/// tokens another worker just rotated (about 8 s in all). The winner of a refresh race stores
/// its pair right after CleverReach answers, but a slow Secrets Manager call or a retry can take
/// seconds; giving up early costs every loser its invocation. And should the wait still be too
/// short, the loser's "connection lost" mark does not win: the winner's save replaces a mark
/// that names the refresh token it consumed.
const STORE_REREAD_WAITS_MS: [u64; 9] = [0, 100, 200, 400, 700, 1000, 1500, 2000, 2000];

/// The CleverReach REST v3 client. Cheap to clone; clones share tokens and the HTTP pool.
pub struct CleverReachClient<S: TokenStore> {
    pub(super) inner: Arc<Inner<S>>,
}

impl<S: TokenStore> Clone for CleverReachClient<S> {
    fn clone(&self) -> Self {
        CleverReachClient {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S: TokenStore> std::fmt::Debug for CleverReachClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CleverReachClient")
            .field("base_url", &self.inner.config.base_url.as_str())
            .field("client_id", &self.inner.config.client_id)
            .finish_non_exhaustive()
    }
}

pub(super) struct Inner<S> {
    pub(super) http: reqwest::Client,
    pub(super) config: CleverReachConfig,
    pub(super) store: S,
    tokens: tokio::sync::Mutex<TokenCache>,
    /// The receiver attributes' ids (name → id), once they are known to exist (once per
    /// process).
    pub(super) attributes_ready: tokio::sync::OnceCell<std::collections::BTreeMap<String, String>>,
    /// Groups known to have the group-local receiver attributes.
    pub(super) group_attributes_ready: tokio::sync::Mutex<std::collections::HashSet<String>>,
    /// The account's opt-outs as last read, and when (see `receivers::BLOCKED_TTL`).
    pub(super) blocked:
        tokio::sync::Mutex<Option<(std::time::Instant, Arc<crate::domain::blocklist::BlockSet>)>>,
    /// API requests sent (each attempt counts), for the sync metrics.
    requests: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct TokenCache {
    loaded: bool,
    current: Option<TokenSet>,
    /// The stored copy `current` was read from (or written as).
    version: TokenVersion,
    /// Tokens that could not be stored yet: storing them comes first.
    unsaved: Unsaved,
}

/// Tokens held in memory that the store does not have yet.
#[derive(Default, Clone)]
enum Unsaved {
    #[default]
    Nothing,
    /// From a new connect: they replace whatever is stored.
    Connect,
    /// From a refresh that consumed this refresh token: they replace the copy they came from,
    /// or a "connection lost" mark about that same token.
    Refresh(Option<Secret>),
}

/// One HTTP answer, read to the end.
pub(super) struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: bytes::Bytes,
}

pub(super) fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The start of an unexpected body for an error text, its e-mail addresses tagged (error texts
/// reach logs and the sources' "last error" column).
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = crate::redact::emails(&text);
    let mut cut: String = text.chars().take(BODY_EXCERPT).collect();
    if text.chars().count() > BODY_EXCERPT {
        cut.push('…');
    }
    cut
}

/// Why a token request failed.
enum TokenFailure {
    /// `invalid_grant`: the code or refresh token is used, revoked or unknown.
    Refused(String),
    Other(CleverReachError),
}

impl<S: TokenStore> CleverReachClient<S> {
    /// A client for `config`, keeping its tokens in `store`.
    pub fn new(config: CleverReachConfig, store: S) -> Result<Self, CleverReachError> {
        let mut config = config;
        if !matches!(config.base_url.scheme(), "http" | "https") {
            return Err(CleverReachError::Config {
                message: format!(
                    "the API URL must be http(s), not {:?}",
                    config.base_url.as_str()
                ),
            });
        }
        if !config.base_url.path().ends_with('/') {
            let path = format!("{}/", config.base_url.path());
            config.base_url.set_path(&path);
        }
        if config.client_id.trim().is_empty() {
            return Err(CleverReachError::Config {
                message: "the OAuth client id is empty".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| CleverReachError::Config {
                message: format!("cannot build the HTTP client: {}", e.without_url()),
            })?;
        Ok(CleverReachClient {
            inner: Arc::new(Inner {
                http,
                config,
                store,
                tokens: tokio::sync::Mutex::new(TokenCache::default()),
                attributes_ready: tokio::sync::OnceCell::new(),
                blocked: tokio::sync::Mutex::new(None),
                group_attributes_ready: tokio::sync::Mutex::new(std::collections::HashSet::new()),
                requests: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The token store this client reads and writes.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    pub fn config(&self) -> &CleverReachConfig {
        &self.inner.config
    }

    // ---- URLs -------------------------------------------------------------------------

    /// `{base}{segments…}`, each segment percent-encoded (e-mails go into paths).
    pub(super) fn url(&self, segments: &[&str]) -> Result<Url, CleverReachError> {
        let mut url = self.inner.config.base_url.clone();
        url.path_segments_mut()
            .map_err(|_| CleverReachError::Config {
                message: "the API URL cannot take a path".into(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// `{base}v3/{segments…}`.
    pub(super) fn api(&self, segments: &[&str]) -> Result<Url, CleverReachError> {
        let mut all = Vec::with_capacity(segments.len() + 1);
        all.push("v3");
        all.extend_from_slice(segments);
        self.url(&all)
    }

    // ---- sending ----------------------------------------------------------------------

    /// Sends one request and reads the whole answer: a broken body is a transport failure,
    /// never a success.
    /// API requests this client sent so far (every attempt).
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    async fn send_raw(&self, builder: reqwest::RequestBuilder) -> Result<Answer, CleverReachError> {
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let timeout = self.inner.config.request_timeout;
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                CleverReachError::Timeout { after: timeout }
            } else {
                CleverReachError::Transport {
                    message: e.without_url().to_string(),
                }
            }
        };
        let resp = builder
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.bytes().await.map_err(transport)?;
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    /// One API request with the current access token; on 401 the token is refreshed
    /// once per `refreshed` flag and the request sent again.
    pub(super) async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        query: &[(&str, String)],
        body: Option<&Value>,
        refreshed: &AtomicBool,
    ) -> Result<Value, CleverReachError> {
        self.send_once_with(
            method,
            url,
            query,
            body.map(JsonBody::Value),
            refreshed,
            check,
        )
        .await
    }

    /// [`Self::send_once`], the answer read by `read` (`check`, or `check_as` for a type).
    async fn send_once_with<T>(
        &self,
        method: &Method,
        url: &Url,
        query: &[(&str, String)],
        body: Option<JsonBody<'_>>,
        refreshed: &AtomicBool,
        read: fn(Answer) -> Result<T, CleverReachError>,
    ) -> Result<T, CleverReachError> {
        let build = |token: &Secret| {
            let mut req = self
                .inner
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose());
            if !query.is_empty() {
                req = req.query(query);
            }
            match body {
                Some(JsonBody::Value(body)) => req = req.json(body),
                Some(JsonBody::Text(text)) => {
                    req = req
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(text.clone());
                }
                None => {}
            }
            req
        };
        let token = self.access_token().await?;
        let mut answer = self.send_raw(build(&token)).await?;
        if is_auth_failure(answer.status) && !refreshed.swap(true, Ordering::SeqCst) {
            tracing::info!(
                status = answer.status.as_u16(),
                "CleverReach refused the access token; refreshing once"
            );
            let token = self.renew_after_refusal(&token).await?;
            answer = self.send_raw(build(&token)).await?;
        }
        read(answer)
    }

    /// An API request with retries for what may be retried. Only for idempotent requests.
    pub(super) async fn call(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CleverReachError> {
        let refreshed = AtomicBool::new(false);
        with_retries(&self.inner.config.retry, |_| {
            self.send_once(&method, &url, query, body, &refreshed)
        })
        .await
    }

    /// [`Self::call`] and decode the answer (an array straight from the answer's text, with
    /// no JSON tree in between).
    pub(super) async fn call_as<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<T, CleverReachError> {
        self.call_read(method, url, query, body.map(JsonBody::Value), check_as::<T>)
            .await
    }

    /// An API request with retries (only for idempotent requests) whose answer `read` reads.
    pub(super) async fn call_read<T>(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<JsonBody<'_>>,
        read: fn(Answer) -> Result<T, CleverReachError>,
    ) -> Result<T, CleverReachError> {
        let refreshed = AtomicBool::new(false);
        with_retries(&self.inner.config.retry, |_| {
            self.send_once_with(&method, &url, query, body, &refreshed, read)
        })
        .await
    }

    // ---- tokens -----------------------------------------------------------------------

    /// Connects the account that owns the OAuth app (`client_credentials`) and stores the
    /// tokens.
    pub async fn connect_client_credentials(&self) -> Result<(), CleverReachError> {
        let config = &self.inner.config;
        let url = self.url(&["oauth", "token.php"])?;
        let tokens = with_retries(&config.retry, |_| async {
            let req = self
                .inner
                .http
                .post(url.clone())
                .basic_auth(&config.client_id, Some(config.client_secret.expose()))
                .form(&[("grant_type", "client_credentials")]);
            self.token_request(req).await.map_err(|f| match f {
                TokenFailure::Refused(why) => CleverReachError::Client {
                    status: 400,
                    code: None,
                    message: format!("the client credentials grant was refused: {why}"),
                },
                TokenFailure::Other(e) => e,
            })
        })
        .await?;
        self.adopt(tokens).await
    }

    /// Finishes a browser connect: exchanges the authorization `code` CleverReach sent to
    /// `redirect_uri` for tokens, and stores them.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
    ) -> Result<(), CleverReachError> {
        let config = &self.inner.config;
        let url = self.url(&["oauth", "token.php"])?;
        let body = serde_json::json!({
            "grant_type": "authorization_code",
            "client_id": config.client_id,
            "client_secret": config.client_secret.expose(),
            "code": code,
            "redirect_uri": redirect_uri,
        });
        let tokens = with_retries(&config.retry, |_| async {
            let req = self.inner.http.post(url.clone()).json(&body);
            self.token_request(req).await.map_err(|f| match f {
                // A code is single-use: only a new connect can help.
                TokenFailure::Refused(why) => CleverReachError::ReconnectRequired {
                    reason: format!("the authorization code was refused ({why}); connect again"),
                },
                TokenFailure::Other(e) => e,
            })
        })
        .await?;
        self.adopt(tokens).await
    }

    async fn adopt(&self, tokens: TokenSet) -> Result<(), CleverReachError> {
        let mut cache = self.inner.tokens.lock().await;
        cache.loaded = true;
        cache.current = Some(tokens);
        cache.unsaved = Unsaved::Connect;
        self.store_unsaved(&mut cache).await
    }

    /// The stored tokens as this client sees them now (loading them if needed).
    pub async fn tokens(&self) -> Result<Option<TokenSet>, CleverReachError> {
        let mut cache = self.inner.tokens.lock().await;
        self.ensure_loaded(&mut cache).await?;
        Ok(cache.current.clone())
    }

    async fn ensure_loaded(&self, cache: &mut TokenCache) -> Result<(), CleverReachError> {
        if !cache.loaded {
            self.reload(cache).await?;
        }
        self.store_unsaved(cache).await
    }

    /// Reads the store into the cache.
    async fn reload(&self, cache: &mut TokenCache) -> Result<(), CleverReachError> {
        let StoredTokens { tokens, version } = self.inner.store.load_versioned().await?;
        cache.current = tokens;
        cache.version = version;
        cache.loaded = true;
        Ok(())
    }

    /// Stores the tokens the cache holds but the store does not (yet), by compare-and-swap
    /// against the copy they came from. Someone else's newer tokens (an administrator's new
    /// connect) win over a refreshed pair; only a "connection lost" mark about the refresh
    /// token this client consumed is overwritten, since its pair is the newer one.
    async fn store_unsaved(&self, cache: &mut TokenCache) -> Result<(), CleverReachError> {
        const ATTEMPTS: usize = 5;
        let Some(tokens) = cache.current.clone() else {
            return Ok(());
        };
        let unsaved = cache.unsaved.clone();
        let consumed = match unsaved {
            Unsaved::Nothing => return Ok(()),
            Unsaved::Connect => {
                let version = self.inner.store.save(&tokens).await?;
                cache.version = version;
                cache.unsaved = Unsaved::Nothing;
                return Ok(());
            }
            Unsaved::Refresh(consumed) => consumed,
        };
        for _ in 0..ATTEMPTS {
            if let Some(version) = self.inner.store.replace(&cache.version, &tokens).await? {
                cache.version = version;
                cache.unsaved = Unsaved::Nothing;
                return Ok(());
            }
            let stored = self.inner.store.load_versioned().await?;
            let marks_our_refresh_dead = stored.tokens.as_ref().is_some_and(|t| {
                t.reconnect_required.is_some() && consumed.is_some() && t.refresh_token == consumed
            });
            if marks_our_refresh_dead {
                tracing::info!(
                    "a worker gave up on the refresh token this refresh consumed; storing the refreshed pair over its mark"
                );
                cache.version = stored.version;
                continue;
            }
            // Newer tokens than ours (a new connect): keep them. The pair in hand is still
            // good for the call that refreshed it.
            tracing::info!("newer CleverReach tokens were stored meanwhile; they are kept");
            cache.unsaved = Unsaved::Nothing;
            cache.current = stored.tokens;
            cache.version = stored.version;
            return Ok(());
        }
        Err(CleverReachError::TokenStore(
            super::error::TokenStoreError::Unavailable(format!(
                "the stored tokens changed {ATTEMPTS} times while a refreshed pair was being saved"
            )),
        ))
    }

    /// A valid access token, refreshed first when it is about to expire.
    async fn access_token(&self) -> Result<Secret, CleverReachError> {
        let mut cache = self.inner.tokens.lock().await;
        self.ensure_loaded(&mut cache).await?;
        if cache
            .current
            .as_ref()
            .is_some_and(|t| t.reconnect_required.is_some())
        {
            // An administrator may have connected again, or the refresh winner stored its
            // pair after all: look before refusing.
            self.reload(&mut cache).await?;
        }
        let Some(current) = cache.current.clone() else {
            return Err(CleverReachError::ReconnectRequired {
                reason: "no CleverReach tokens are stored; connect CleverReach first".into(),
            });
        };
        if let Some(reason) = &current.reconnect_required {
            return Err(CleverReachError::ReconnectRequired {
                reason: reason.clone(),
            });
        }
        if current.expires_at_unix - now_unix() > REFRESH_MARGIN_SECS {
            return Ok(current.access_token);
        }
        self.refresh_locked(&mut cache, current).await
    }

    /// After the API refused `used`: refresh, unless another caller already did.
    async fn renew_after_refusal(&self, used: &Secret) -> Result<Secret, CleverReachError> {
        let mut cache = self.inner.tokens.lock().await;
        self.ensure_loaded(&mut cache).await?;
        match cache.current.clone() {
            Some(current) if current.reconnect_required.is_some() => {
                Err(CleverReachError::ReconnectRequired {
                    reason: current.reconnect_required.unwrap_or_default(),
                })
            }
            Some(current) if current.access_token != *used => Ok(current.access_token),
            Some(current) => self.refresh_locked(&mut cache, current).await,
            None => Err(CleverReachError::ReconnectRequired {
                reason: "no CleverReach tokens are stored; connect CleverReach first".into(),
            }),
        }
    }

    /// Refreshes with `tried`'s refresh token while holding the token lock, so that
    /// concurrent callers in this process refresh once. Other processes (workers in other
    /// Lambda instances) may refresh at the same moment: CleverReach then accepts one of them
    /// and refuses the others' (rotated) refresh token, so a refused refresh waits for the
    /// winner's tokens to appear in the store before it gives up.
    async fn refresh_locked(
        &self,
        cache: &mut TokenCache,
        tried: TokenSet,
    ) -> Result<Secret, CleverReachError> {
        let mut tried = tried;
        for _ in 0..3 {
            let Some(refresh) = tried.refresh_token.clone() else {
                return Err(CleverReachError::ReconnectRequired {
                    reason: "the access token expired and there is no refresh token".into(),
                });
            };
            match self.refresh_with(&refresh).await {
                Ok(fresh) => {
                    cache.current = Some(fresh.clone());
                    cache.unsaved = Unsaved::Refresh(Some(refresh));
                    // Stored before use: the old refresh token is already dead.
                    self.store_unsaved(cache).await?;
                    return Ok(fresh.access_token);
                }
                Err(TokenFailure::Refused(why)) => {
                    let newer = match self.newer_in_store(&tried, cache).await? {
                        Some(newer) => newer,
                        None => match self.mark_dead(cache, tried, &why).await {
                            // Marked: the connection is lost.
                            Ok(error) => return Err(error),
                            // Someone stored newer tokens just now: use them.
                            Err(newer) => newer,
                        },
                    };
                    tracing::info!(
                        "the refresh was refused; using the newer tokens from the store"
                    );
                    cache.current = newer.tokens.clone();
                    cache.version = newer.version;
                    let Some(newer) = newer.tokens else {
                        return Err(CleverReachError::ReconnectRequired {
                            reason: "the CleverReach tokens were removed from the store; connect CleverReach again".into(),
                        });
                    };
                    if let Some(reason) = newer.reconnect_required {
                        return Err(CleverReachError::ReconnectRequired { reason });
                    }
                    if newer.expires_at_unix - now_unix() > REFRESH_MARGIN_SECS {
                        return Ok(newer.access_token);
                    }
                    tried = newer;
                }
                Err(TokenFailure::Other(e)) => return Err(e),
            }
        }
        Err(CleverReachError::ReconnectRequired {
            reason: "the tokens kept changing while refreshing; connect CleverReach again".into(),
        })
    }

    /// Tokens in the store other than `tried`, waiting a while: the worker whose refresh won
    /// may still be saving them. Another pair or a "connection lost" mark counts; the same
    /// pair written again (another expiry) does not, but a mark must then replace that copy.
    async fn newer_in_store(
        &self,
        tried: &TokenSet,
        cache: &mut TokenCache,
    ) -> Result<Option<StoredTokens>, CleverReachError> {
        for wait_ms in STORE_REREAD_WAITS_MS {
            if wait_ms > 0 {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
            let stored = self.inner.store.load_versioned().await?;
            let newer = match &stored.tokens {
                Some(t) => {
                    t.refresh_token != tried.refresh_token
                        || t.access_token != tried.access_token
                        || t.reconnect_required.is_some()
                }
                None => stored.version != cache.version,
            };
            if newer {
                return Ok(Some(stored));
            }
            cache.version = stored.version;
        }
        Ok(None)
    }

    /// Nobody stored a working refresh token: record that in the store, so that other workers
    /// stop at once (and the connect page says so), and name what to do. The mark replaces
    /// only the copy whose refresh failed; when the store moved on meanwhile, the newer tokens
    /// come back as `Err` instead.
    async fn mark_dead(
        &self,
        cache: &mut TokenCache,
        tried: TokenSet,
        why: &str,
    ) -> Result<CleverReachError, StoredTokens> {
        let reason = format!(
            "the refresh token was refused ({why}); an administrator must connect CleverReach again"
        );
        let dead = TokenSet {
            reconnect_required: Some(reason.clone()),
            ..tried
        };
        match self.inner.store.replace(&cache.version, &dead).await {
            Ok(Some(version)) => cache.version = version,
            Ok(None) => match self.inner.store.load_versioned().await {
                Ok(newer) => return Err(newer),
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the token store after a refused refresh");
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not record the dead connection in the token store");
            }
        }
        cache.current = Some(dead);
        cache.unsaved = Unsaved::Nothing;
        tracing::error!(%reason, "CleverReach connection lost");
        Ok(CleverReachError::ReconnectRequired { reason })
    }

    /// `grant_type=refresh_token`, with retries for transient failures.
    async fn refresh_with(&self, refresh: &Secret) -> Result<TokenSet, TokenFailure> {
        let config = &self.inner.config;
        let url = self
            .url(&["oauth", "token.php"])
            .map_err(TokenFailure::Other)?;
        with_retries(&config.retry, |_| async {
            let req = self
                .inner
                .http
                .post(url.clone())
                .basic_auth(&config.client_id, Some(config.client_secret.expose()))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.expose()),
                ]);
            self.token_request(req).await
        })
        .await
    }

    /// Sends a token request and reads `{access_token, expires_in, refresh_token}`.
    async fn token_request(&self, req: reqwest::RequestBuilder) -> Result<TokenSet, TokenFailure> {
        let answer = self.send_raw(req).await.map_err(TokenFailure::Other)?;
        let value: Value = if answer.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
        };
        if !answer.status.is_success() {
            let err = ErrorBody::from_value(&value);
            let word = err
                .as_ref()
                .and_then(|e| e.oauth_error.clone())
                .unwrap_or_default();
            let description = err
                .as_ref()
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| excerpt(&answer.body));
            if word == "invalid_grant" {
                return Err(TokenFailure::Refused(description));
            }
            if word == "invalid_client" {
                return Err(TokenFailure::Other(CleverReachError::Client {
                    status: answer.status.as_u16(),
                    code: None,
                    message: format!(
                        "CleverReach refused the OAuth client id or secret ({description})"
                    ),
                }));
            }
            return Err(TokenFailure::Other(classify(
                answer.status.as_u16(),
                None,
                format!("{word} {description}").trim().to_string(),
                answer.retry_after,
            )));
        }
        let wire: WireTokens = serde_json::from_value(value).map_err(|_| {
            TokenFailure::Other(CleverReachError::Decode {
                message: "the token answer has no access_token".into(),
            })
        })?;
        if wire.access_token.is_empty() {
            return Err(TokenFailure::Other(CleverReachError::Decode {
                message: "the token answer has an empty access_token".into(),
            }));
        }
        Ok(TokenSet::new(
            Secret::new(wire.access_token),
            wire.refresh_token
                .filter(|r| !r.is_empty())
                .map(Secret::new),
            now_unix() + wire.expires_in.max(0),
        ))
    }
}

impl crate::error::Retryable for TokenFailure {
    fn is_retryable(&self) -> bool {
        match self {
            TokenFailure::Refused(_) => false,
            TokenFailure::Other(e) => e.is_retryable(),
        }
    }
    fn retry_after(&self) -> Option<Duration> {
        match self {
            TokenFailure::Refused(_) => None,
            TokenFailure::Other(e) => e.retry_after(),
        }
    }
}

/// Only 401 means "token no longer valid". The cores also treat 403 as an auth failure, but
/// CleverReach answers 403 for quota and blocked addresses too, which a refresh cannot fix.
fn is_auth_failure(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED
}

/// Maps a status (CleverReach's `error.code` when it sent one) to an error.
fn classify(
    status: u16,
    code: Option<i64>,
    message: String,
    retry_after: Option<Duration>,
) -> CleverReachError {
    let effective = code
        .filter(|c| (400..600).contains(c))
        .map(|c| c as u16)
        .unwrap_or(status);
    // CleverReach's messages quote the address they refuse.
    let message = crate::redact::emails(&message).into_owned();
    match effective {
        401 => CleverReachError::Unauthorized,
        404 => CleverReachError::NotFound { message },
        409 => CleverReachError::Conflict { message },
        413 => CleverReachError::TooLarge { message },
        429 => CleverReachError::Throttled { retry_after },
        500..=599 => CleverReachError::Server {
            status,
            code,
            message,
        },
        _ => CleverReachError::Client {
            status,
            code,
            message,
        },
    }
}

/// A complete answer → its JSON, or the error it stands for. A 2xx carrying an error body
/// is an error too (the cores prefer `error.code` over the HTTP status).
fn check(answer: Answer) -> Result<Value, CleverReachError> {
    let status = answer.status.as_u16();
    let parsed: Option<Value> = if answer.body.iter().all(u8::is_ascii_whitespace) {
        Some(Value::Null)
    } else {
        serde_json::from_slice(&answer.body).ok()
    };
    let error = parsed.as_ref().and_then(ErrorBody::from_value);
    if answer.status.is_success() {
        match (parsed, error) {
            (Some(_), Some(err)) if err.code.is_some_and(|c| c >= 400) => Err(classify(
                status,
                err.code,
                err.message.unwrap_or_default(),
                answer.retry_after,
            )),
            (Some(value), _) => Ok(value),
            (None, _) => Err(CleverReachError::Decode {
                message: format!(
                    "HTTP {status} with a body that is not JSON: {}",
                    excerpt(&answer.body)
                ),
            }),
        }
    } else {
        let (code, message) = match error {
            Some(err) => (
                err.code,
                err.message
                    .or(err.oauth_error)
                    .unwrap_or_else(|| excerpt(&answer.body)),
            ),
            None => (None, excerpt(&answer.body)),
        };
        Err(classify(status, code, message, answer.retry_after))
    }
}

/// A request body: a JSON tree, or JSON text serialized straight from typed rows (an upsert
/// batch, without a tree of 250 receivers in between).
#[derive(Clone, Copy)]
pub(super) enum JsonBody<'a> {
    Value(&'a Value),
    Text(&'a bytes::Bytes),
}

/// A successful array answer read straight into `T` (`Ok(Ok(rows))`), with no JSON tree in
/// between (an error body is an object, so an array is never one); anything else, or an
/// array that does not decode, as [`check`] reads it (`Ok(Err(value))` or its error).
pub(super) fn check_array<T: DeserializeOwned>(
    answer: Answer,
) -> Result<Result<T, Value>, CleverReachError> {
    let is_array = answer
        .body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'[');
    if answer.status.is_success()
        && is_array
        && let Ok(rows) = serde_json::from_slice::<T>(&answer.body)
    {
        return Ok(Ok(rows));
    }
    check(answer).map(Err)
}

/// [`check`] and [`decode`], without the JSON tree for an array (see [`check_array`]): a page
/// of receivers is read straight into its rows; anything else fails as it would otherwise.
fn check_as<T: DeserializeOwned>(answer: Answer) -> Result<T, CleverReachError> {
    match check_array(answer)? {
        Ok(rows) => Ok(rows),
        Err(value) => decode(value),
    }
}

pub(super) fn decode<T: DeserializeOwned>(value: Value) -> Result<T, CleverReachError> {
    // serde quotes the offending value, which may be an address.
    serde_json::from_value(value).map_err(|e| CleverReachError::Decode {
        message: crate::redact::emails(&e.to_string()).into_owned(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: Some(Duration::from_secs(2)),
            body: bytes::Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn an_error_body_is_classified_by_its_code() {
        let e = check(answer(
            404,
            r#"{"error":{"code":404,"message":"Not Found: invalid receiver"}}"#,
        ));
        assert!(
            matches!(e, Err(CleverReachError::NotFound { ref message }) if message == "Not Found: invalid receiver")
        );
        // error.code wins over the HTTP status.
        let e = check(answer(400, r#"{"error":{"code":409,"message":"exists"}}"#));
        assert!(matches!(e, Err(CleverReachError::Conflict { .. })));
        let e = check(answer(200, r#"{"error":{"code":413,"message":"too big"}}"#));
        assert!(matches!(e, Err(CleverReachError::TooLarge { .. })));
    }

    #[test]
    fn throttling_keeps_retry_after_and_server_errors_keep_status() {
        let e = check(answer(429, "")).unwrap_err();
        assert!(
            matches!(e, CleverReachError::Throttled { retry_after: Some(d) } if d == Duration::from_secs(2))
        );
        let e = check(answer(502, "<html>bad gateway</html>")).unwrap_err();
        assert!(matches!(e, CleverReachError::Server { status: 502, .. }));
    }

    /// Lambda handlers and spawned tasks need a `Send + Sync` client with `Send` futures.
    #[allow(dead_code, clippy::let_underscore_future)]
    fn the_client_and_its_futures_can_cross_threads(
        client: &CleverReachClient<super::super::tokens::InMemoryTokenStore>,
        rows: &[(crate::domain::receiver::ReceiverData, bool)],
        email: &crate::domain::email::Email,
    ) {
        fn send<T: Send>(_: T) {}
        fn send_sync<T: Send + Sync + Clone>(_: &T) {}
        send_sync(client);
        send(client.upsert_receivers("1", rows));
        send(client.create_group("n", true, ""));
        send(client.ensure_global_attributes(&["a"]));
        send(client.change_email(email, email));
        send(client.remove_receivers("1", std::slice::from_ref(email)));
        send(client.filter_receivers(&super::super::receivers::FilterRequest::new(vec![], vec![])));
        let mut pages = client.receivers("1", Default::default());
        send(pages.next_page());
        send(client.connect_client_credentials());
        send(client.exchange_code("c", "r"));
    }

    #[test]
    fn a_success_that_is_not_json_is_a_decode_error() {
        assert!(matches!(
            check(answer(200, "<html>")),
            Err(CleverReachError::Decode { .. })
        ));
        assert_eq!(check(answer(200, "true")).unwrap(), Value::Bool(true));
        assert_eq!(check(answer(200, "")).unwrap(), Value::Null);
    }
}
