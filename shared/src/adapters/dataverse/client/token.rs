//! Microsoft Entra ID client-credentials tokens for Dataverse, cached and shared by all clones.
//!
//! One `tokio::sync::Mutex` guards the cache and is held while a token is fetched, so that many
//! concurrent callers with an empty or stale cache cause one token request, not one each.

use super::DataverseConfig;
use super::error::{DataverseError, json_reason};
use crate::secret::Secret;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A token is replaced this long before it expires, so that a request never starts with a
/// token that runs out on the way.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Names the token request in errors and logs; the token URL's tenant is not needed there.
pub(crate) const TOKEN_REQUEST: &str = "POST oauth2 token";

struct CachedToken {
    token: Secret,
    refresh_at: Instant,
}

#[derive(Default)]
pub(crate) struct TokenCache {
    slot: Mutex<Option<CachedToken>>,
}

impl TokenCache {
    /// A token that is valid for at least the refresh margin, fetched if needed.
    pub(crate) async fn current(
        &self,
        http: &reqwest::Client,
        config: &DataverseConfig,
    ) -> Result<Secret, DataverseError> {
        let mut slot = self.slot.lock().await;
        if let Some(cached) = slot.as_ref()
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let fresh = fetch(http, config).await?;
        let token = fresh.token.clone();
        *slot = Some(fresh);
        Ok(token)
    }

    /// The API answered 401 to `rejected`: fetch a new token, unless another caller already
    /// replaced it while we waited for the lock.
    pub(crate) async fn replace_rejected(
        &self,
        rejected: &Secret,
        http: &reqwest::Client,
        config: &DataverseConfig,
    ) -> Result<Secret, DataverseError> {
        let mut slot = self.slot.lock().await;
        if let Some(cached) = slot.as_ref()
            && cached.token != *rejected
            && Instant::now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        *slot = None;
        let fresh = fetch(http, config).await?;
        let token = fresh.token.clone();
        *slot = Some(fresh);
        Ok(token)
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Seconds,
}

/// Entra ID v2 sends `expires_in` as a number; the v1 endpoint sent a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Seconds {
    Number(u64),
    Text(String),
}

impl Seconds {
    fn get(&self) -> Option<u64> {
        match self {
            Seconds::Number(n) => Some(*n),
            Seconds::Text(s) => s.trim().parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

async fn fetch(
    http: &reqwest::Client,
    config: &DataverseConfig,
) -> Result<CachedToken, DataverseError> {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", config.client_id.as_str()),
        ("client_secret", config.client_secret.expose()),
        ("scope", config.scope.as_str()),
    ];
    tracing::debug!("requesting a Dataverse access token");
    let started = Instant::now();
    let response = http
        .post(config.token_url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|err| DataverseError::from_transport(TOKEN_REQUEST, err))?;
    let status = response.status().as_u16();
    let retry_after = super::retry_after(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|err| DataverseError::from_transport(TOKEN_REQUEST, err))?;
    tracing::debug!(
        status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "token endpoint answered"
    );
    match status {
        200 => {}
        400 | 401 | 403 => {
            // Entra ID answers a wrong secret or client id with 400/401 and an
            // `invalid_client` body; retrying cannot help.
            let message = match serde_json::from_slice::<TokenError>(&body) {
                Ok(err) => {
                    let first_line = err.error_description.lines().next().unwrap_or_default();
                    format!("{} ({status}): {first_line}", err.error)
                }
                Err(_) => format!("token endpoint answered {status}"),
            };
            return Err(DataverseError::Unauthorized {
                request: TOKEN_REQUEST.to_string(),
                message,
            });
        }
        _ => {
            return Err(DataverseError::from_status(
                TOKEN_REQUEST,
                status,
                retry_after,
                &body,
            ));
        }
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|err| {
        DataverseError::decode(TOKEN_REQUEST, "token response", json_reason(&err))
    })?;
    let expires_in = parsed.expires_in.get().ok_or_else(|| {
        DataverseError::decode(
            TOKEN_REQUEST,
            "token response",
            "expires_in is not a number",
        )
    })?;
    if parsed.access_token.is_empty() {
        return Err(DataverseError::decode(
            TOKEN_REQUEST,
            "token response",
            "access_token is empty",
        ));
    }
    let lifetime = Duration::from_secs(expires_in);
    Ok(CachedToken {
        token: Secret::new(parsed.access_token),
        refresh_at: started + lifetime.saturating_sub(REFRESH_MARGIN),
    })
}
