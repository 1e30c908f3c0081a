//! Adapter: AWS Secrets Manager (aws-sdk-secretsmanager; endpoint from `AWS_ENDPOINT_URL`),
//! read through a short cache so that a warm Lambda does not call it on every request.

use crate::ports::{SecretError, SecretSource, secret_field};
use crate::secret::Secret;
use async_trait::async_trait;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a read secret is reused (Powertools' default for parameters is 5 s; secrets change
/// rarely, and a rotated webhook key should take effect within minutes).
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Secret)>>,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        SecretsManagerSource::with_ttl(client, DEFAULT_CACHE_TTL)
    }

    pub fn with_ttl(client: aws_sdk_secretsmanager::Client, ttl: Duration) -> Self {
        SecretsManagerSource {
            client,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The whole secret string, from the cache when fresh.
    pub async fn secret_string(&self, name: &str) -> Result<Secret, SecretError> {
        if let Some((read_at, value)) = self.cache.lock().await.get(name)
            && read_at.elapsed() < self.ttl
        {
            return Ok(value.clone());
        }
        let out = self
            .client
            .get_secret_value()
            .secret_id(name)
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(GetSecretValueError::ResourceNotFoundException(_)) => SecretError::Missing {
                    name: name.to_string(),
                },
                _ => SecretError::Unavailable {
                    name: name.to_string(),
                    reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
                },
            })?;
        let value = Secret::new(out.secret_string().unwrap_or_default());
        self.cache
            .lock()
            .await
            .insert(name.to_string(), (Instant::now(), value.clone()));
        Ok(value)
    }

    /// Forgets a cached secret (after a rotation, or when the cached value was refused).
    pub async fn invalidate(&self, name: &str) {
        self.cache.lock().await.remove(name);
    }
}

#[async_trait]
impl SecretSource for SecretsManagerSource {
    async fn secret(&self, name: &str, field: Option<&str>) -> Result<Secret, SecretError> {
        let whole = self.secret_string(name).await?;
        secret_field(name, &whole, field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_picked_from_a_json_secret() {
        let whole = Secret::new(r#"{"webhook_key":"k-123","other":"x"}"#);
        let key = secret_field("s", &whole, Some("webhook_key")).unwrap();
        assert_eq!(key.expose(), "k-123");
    }

    #[test]
    fn a_missing_field_names_the_secret_and_field_but_not_the_value() {
        let whole = Secret::new(r#"{"other":"very-secret"}"#);
        let err = secret_field("crc/connector", &whole, Some("webhook_key")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("crc/connector") && text.contains("webhook_key"));
        assert!(!text.contains("very-secret"));
    }

    #[test]
    fn a_plain_secret_is_its_own_value() {
        let whole = Secret::new("plain-key");
        assert_eq!(
            secret_field("s", &whole, None).unwrap().expose(),
            "plain-key"
        );
    }
}

/// The staging label a compare-and-swap write gives its new version before promoting it.
/// (Not `AWSPENDING`, which belongs to Secrets Manager's own rotation.)
pub const PENDING_STAGE: &str = "CRC_PENDING";

/// A Secrets Manager secret that several writers share, written by compare-and-swap: a new
/// value is put as a version labelled [`PENDING_STAGE`] and then made `AWSCURRENT` only if the
/// version the writer read still is (`UpdateSecretVersionStage` with `RemoveFromVersionId`
/// refuses otherwise). Reads always ask for `AWSCURRENT` by name.
pub struct VersionedSecret {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

/// One read of a [`VersionedSecret`]: the `AWSCURRENT` version and its text.
#[derive(Debug, Clone)]
pub struct SecretVersion {
    pub version_id: String,
    pub text: Option<Secret>,
}

impl VersionedSecret {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        VersionedSecret {
            client,
            secret_id: secret_id.into(),
        }
    }

    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The current version, `None` when the secret does not exist.
    pub async fn read(&self) -> Result<Option<SecretVersion>, SecretError> {
        let out = match self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .version_stage("AWSCURRENT")
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(GetSecretValueError::ResourceNotFoundException(_))
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(self.unavailable(&e)),
        };
        let version_id = out.version_id().unwrap_or_default().to_string();
        Ok(Some(SecretVersion {
            version_id,
            text: out.secret_string().map(Secret::new),
        }))
    }

    /// Writes `text` if the current version is still `expected` (`None`: the secret does not
    /// exist yet). `Ok(Some(new version id))` when written, `Ok(None)` when another writer got
    /// in first.
    pub async fn write_if(
        &self,
        expected: Option<&str>,
        text: &Secret,
    ) -> Result<Option<String>, SecretError> {
        use aws_sdk_secretsmanager::operation::create_secret::CreateSecretError;
        use aws_sdk_secretsmanager::operation::update_secret_version_stage::UpdateSecretVersionStageError;
        let Some(expected) = expected else {
            return match self
                .client
                .create_secret()
                .name(&self.secret_id)
                .secret_string(text.expose())
                .send()
                .await
            {
                Ok(out) => Ok(Some(out.version_id().unwrap_or_default().to_string())),
                Err(e)
                    if matches!(
                        e.as_service_error(),
                        Some(CreateSecretError::ResourceExistsException(_))
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(self.write_failed(&e)),
            };
        };
        let token = uuid::Uuid::new_v4().to_string();
        let put = self
            .client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .client_request_token(&token)
            .secret_string(text.expose())
            .version_stages(PENDING_STAGE)
            .send()
            .await
            .map_err(|e| self.write_failed(&e))?;
        let new_version = put.version_id().unwrap_or(&token).to_string();
        let promoted = self
            .client
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage("AWSCURRENT")
            .move_to_version_id(&new_version)
            .remove_from_version_id(expected)
            .send()
            .await;
        match promoted {
            Ok(_) => Ok(Some(new_version)),
            // Refused when `expected` no longer holds AWSCURRENT: someone else wrote. Make
            // sure that is the reason before calling it a lost race.
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(UpdateSecretVersionStageError::InvalidParameterException(_))
                        | Some(UpdateSecretVersionStageError::ResourceNotFoundException(_))
                ) =>
            {
                match self.read().await? {
                    Some(current) if current.version_id == expected => Err(self.write_failed(&e)),
                    _ => Ok(None),
                }
            }
            Err(e) => Err(self.write_failed(&e)),
        }
    }

    fn unavailable<E: std::error::Error + 'static>(&self, e: &E) -> SecretError {
        SecretError::Unavailable {
            name: self.secret_id.clone(),
            reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        }
    }

    fn write_failed<E: std::error::Error + 'static>(&self, e: &E) -> SecretError {
        SecretError::WriteFailed {
            name: self.secret_id.clone(),
            reason: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        }
    }
}

/// CleverReach tokens kept in one Secrets Manager secret as JSON
/// `{"access_token","refresh_token","expires_at"}`. Read fresh on every load (never cached):
/// another worker may have rotated the refresh token a moment ago. Written by
/// compare-and-swap ([`VersionedSecret`]).
pub struct SecretsManagerTokenStore {
    secret: VersionedSecret,
}

impl SecretsManagerTokenStore {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerTokenStore {
            secret: VersionedSecret::new(client, secret_id),
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredTokens {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    expires_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reconnect_required: Option<String>,
}

fn token_store_error(e: SecretError) -> crate::adapters::cleverreach::TokenStoreError {
    crate::adapters::cleverreach::TokenStoreError::Unavailable(e.to_string())
}

#[async_trait]
impl crate::adapters::cleverreach::TokenStore for SecretsManagerTokenStore {
    async fn load_versioned(
        &self,
    ) -> Result<
        crate::adapters::cleverreach::StoredTokens,
        crate::adapters::cleverreach::TokenStoreError,
    > {
        use crate::adapters::cleverreach::{TokenSet, TokenStoreError, TokenVersion};
        let Some(current) = self.secret.read().await.map_err(token_store_error)? else {
            return Ok(Default::default());
        };
        let version = TokenVersion::new(current.version_id);
        let Some(text) = current.text.filter(|t| !t.expose().trim().is_empty()) else {
            return Ok(crate::adapters::cleverreach::StoredTokens {
                tokens: None,
                version,
            });
        };
        // The error text must not echo the secret: name the problem only.
        let stored: StoredTokens = serde_json::from_str(text.expose()).map_err(|e| {
            TokenStoreError::Corrupt(format!(
                "secret {} is not token JSON (line {}, column {})",
                self.secret.secret_id(),
                e.line(),
                e.column()
            ))
        })?;
        Ok(crate::adapters::cleverreach::StoredTokens {
            tokens: Some(TokenSet {
                access_token: Secret::new(stored.access_token),
                refresh_token: stored.refresh_token.map(Secret::new),
                expires_at_unix: stored.expires_at,
                reconnect_required: stored.reconnect_required,
            }),
            version,
        })
    }

    async fn replace(
        &self,
        expected: &crate::adapters::cleverreach::TokenVersion,
        tokens: &crate::adapters::cleverreach::TokenSet,
    ) -> Result<
        Option<crate::adapters::cleverreach::TokenVersion>,
        crate::adapters::cleverreach::TokenStoreError,
    > {
        use crate::adapters::cleverreach::{TokenStoreError, TokenVersion};
        let stored = StoredTokens {
            access_token: tokens.access_token.expose().to_string(),
            refresh_token: tokens
                .refresh_token
                .as_ref()
                .map(|s| s.expose().to_string()),
            expires_at: tokens.expires_at_unix,
            reconnect_required: tokens.reconnect_required.clone(),
        };
        let text = Secret::new(
            serde_json::to_string(&stored).map_err(|e| TokenStoreError::Corrupt(e.to_string()))?,
        );
        Ok(self
            .secret
            .write_if(expected.id(), &text)
            .await
            .map_err(token_store_error)?
            .map(TokenVersion::new))
    }
}

/// The connect page's record of ended sessions and used OAuth states, in a secret of its own
/// (JSON `{"entries": {"<id>": <until, unix seconds>}}`): every instance of the page sees the
/// same record, so a logout or a used state holds wherever the next request lands. Entries
/// are dropped once their time is past (a session lasts an hour, a state ten minutes), so the
/// secret stays a few kilobytes. Written by compare-and-swap ([`VersionedSecret`]).
pub struct SecretsManagerSessionStore {
    secret: VersionedSecret,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct SessionRecord {
    #[serde(default)]
    entries: std::collections::BTreeMap<String, i64>,
}

impl SecretsManagerSessionStore {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerSessionStore {
            secret: VersionedSecret::new(client, secret_id),
        }
    }

    async fn read(
        &self,
    ) -> Result<(Option<String>, SessionRecord), crate::handlers::connect::session::AccessError>
    {
        use crate::handlers::connect::session::AccessError;
        let Some(current) = self
            .secret
            .read()
            .await
            .map_err(|e| AccessError::Store(e.to_string()))?
        else {
            return Ok((None, SessionRecord::default()));
        };
        let record = match current.text.filter(|t| !t.expose().trim().is_empty()) {
            None => SessionRecord::default(),
            Some(text) => serde_json::from_str(text.expose()).map_err(|e| {
                AccessError::Store(format!(
                    "secret {} is not a session record (line {}, column {})",
                    self.secret.secret_id(),
                    e.line(),
                    e.column()
                ))
            })?,
        };
        Ok((Some(current.version_id), record))
    }
}

#[async_trait]
impl crate::handlers::connect::SessionStore for SecretsManagerSessionStore {
    async fn contains(
        &self,
        id: &str,
    ) -> Result<bool, crate::handlers::connect::session::AccessError> {
        let now = chrono::Utc::now().timestamp();
        let (_, record) = self.read().await?;
        Ok(record.entries.get(id).is_some_and(|until| *until > now))
    }

    async fn record(
        &self,
        id: &str,
        until_unix: i64,
    ) -> Result<bool, crate::handlers::connect::session::AccessError> {
        use crate::handlers::connect::session::AccessError;
        const ATTEMPTS: u64 = 10;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                // Another instance wrote first: let the writers spread out before trying again.
                let wait = fastrand::u64(10..=50) * attempt;
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
            let now = chrono::Utc::now().timestamp();
            let (version, mut record) = self.read().await?;
            record.entries.retain(|_, until| *until > now);
            if record.entries.contains_key(id) {
                return Ok(false);
            }
            record.entries.insert(id.to_string(), until_unix);
            let text = Secret::new(
                serde_json::to_string(&record).map_err(|e| AccessError::Store(e.to_string()))?,
            );
            if self
                .secret
                .write_if(version.as_deref(), &text)
                .await
                .map_err(|e| AccessError::Store(e.to_string()))?
                .is_some()
            {
                return Ok(true);
            }
        }
        Err(AccessError::Store(format!(
            "secret {} changed {ATTEMPTS} times while being written",
            self.secret.secret_id()
        )))
    }
}

/// The event hooks' tokens in one secret (JSON `{"verify": "…", "call_tokens": {"<group>":
/// "…"}}`), read fresh and written by compare-and-swap ([`VersionedSecret`]): several workers
/// register hooks at once, and a lost write would leave a group's deliveries refused.
pub struct SecretsManagerHookStore {
    secret: VersionedSecret,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct StoredHookTokens {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify: Option<String>,
    #[serde(default)]
    call_tokens: std::collections::BTreeMap<String, String>,
}

/// Attempts at a compare-and-swap before giving up (each loser re-reads and tries again).
const HOOK_WRITE_ATTEMPTS: usize = 20;

impl SecretsManagerHookStore {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerHookStore {
            secret: VersionedSecret::new(client, secret_id),
        }
    }

    async fn read(&self) -> Result<(Option<String>, StoredHookTokens), SecretError> {
        let Some(current) = self.secret.read().await? else {
            return Ok((None, StoredHookTokens::default()));
        };
        let stored = match current.text.as_ref().map(|t| t.expose().trim()) {
            None | Some("") | Some("{}") => StoredHookTokens::default(),
            Some(text) => serde_json::from_str(text).map_err(|e| SecretError::Unavailable {
                name: self.secret.secret_id().to_string(),
                // Position only: the text holds tokens.
                reason: format!(
                    "not hook token JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })?,
        };
        Ok((Some(current.version_id), stored))
    }

    /// Applies `change` by compare-and-swap; `change` returns false when there is nothing to do.
    async fn update(
        &self,
        change: impl Fn(&mut StoredHookTokens) -> bool,
    ) -> Result<(), SecretError> {
        for _ in 0..HOOK_WRITE_ATTEMPTS {
            let (version, mut stored) = self.read().await?;
            if !change(&mut stored) {
                return Ok(());
            }
            let text = Secret::new(serde_json::to_string(&stored).map_err(|e| {
                SecretError::WriteFailed {
                    name: self.secret.secret_id().to_string(),
                    reason: e.to_string(),
                }
            })?);
            if self
                .secret
                .write_if(version.as_deref(), &text)
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(SecretError::WriteFailed {
            name: self.secret.secret_id().to_string(),
            reason: "other writers kept changing it".into(),
        })
    }
}

#[async_trait]
impl crate::ports::secrets::HookTokenStore for SecretsManagerHookStore {
    async fn hook_tokens(&self) -> Result<crate::ports::secrets::HookTokens, SecretError> {
        let (_, stored) = self.read().await?;
        Ok(crate::ports::secrets::HookTokens {
            verify: stored.verify.map(Secret::new),
            call_tokens: stored
                .call_tokens
                .into_iter()
                .map(|(group, token)| (group, Secret::new(token)))
                .collect(),
        })
    }

    async fn verify_token(&self) -> Result<Secret, SecretError> {
        let made = uuid::Uuid::new_v4().simple().to_string();
        self.update(|stored| {
            if stored.verify.is_some() {
                return false;
            }
            stored.verify = Some(made.clone());
            true
        })
        .await?;
        let (_, stored) = self.read().await?;
        stored
            .verify
            .map(Secret::new)
            .ok_or_else(|| SecretError::MissingField {
                name: self.secret.secret_id().to_string(),
                field: "verify".into(),
            })
    }

    async fn save_call_token(&self, group_id: &str, token: &Secret) -> Result<(), SecretError> {
        self.update(|stored| {
            if stored.call_tokens.get(group_id).map(String::as_str) == Some(token.expose()) {
                return false;
            }
            stored
                .call_tokens
                .insert(group_id.to_string(), token.expose().to_string());
            true
        })
        .await
    }

    async fn forget_call_token(&self, group_id: &str) -> Result<(), SecretError> {
        self.update(|stored| stored.call_tokens.remove(group_id).is_some())
            .await
    }
}
