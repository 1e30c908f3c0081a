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

/// CleverReach tokens kept in one Secrets Manager secret as JSON
/// `{"access_token","refresh_token","expires_at"}`. Read fresh on every load (never cached):
/// another worker may have rotated the refresh token a moment ago.
pub struct SecretsManagerTokenStore {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerTokenStore {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerTokenStore {
            client,
            secret_id: secret_id.into(),
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

#[async_trait]
impl crate::adapters::cleverreach::TokenStore for SecretsManagerTokenStore {
    async fn load(
        &self,
    ) -> Result<
        Option<crate::adapters::cleverreach::TokenSet>,
        crate::adapters::cleverreach::TokenStoreError,
    > {
        use crate::adapters::cleverreach::{TokenSet, TokenStoreError};
        let out = match self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
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
            Err(e) => {
                return Err(TokenStoreError::Unavailable(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
                ));
            }
        };
        let Some(text) = out.secret_string().filter(|t| !t.trim().is_empty()) else {
            return Ok(None);
        };
        // The error text must not echo the secret: name the problem only.
        let stored: StoredTokens = serde_json::from_str(text).map_err(|e| {
            TokenStoreError::Corrupt(format!(
                "secret {} is not token JSON (line {}, column {})",
                self.secret_id,
                e.line(),
                e.column()
            ))
        })?;
        Ok(Some(TokenSet {
            access_token: Secret::new(stored.access_token),
            refresh_token: stored.refresh_token.map(Secret::new),
            expires_at_unix: stored.expires_at,
            reconnect_required: stored.reconnect_required,
        }))
    }

    async fn save(
        &self,
        tokens: &crate::adapters::cleverreach::TokenSet,
    ) -> Result<(), crate::adapters::cleverreach::TokenStoreError> {
        use crate::adapters::cleverreach::TokenStoreError;
        let stored = StoredTokens {
            access_token: tokens.access_token.expose().to_string(),
            refresh_token: tokens
                .refresh_token
                .as_ref()
                .map(|s| s.expose().to_string()),
            expires_at: tokens.expires_at_unix,
            reconnect_required: tokens.reconnect_required.clone(),
        };
        let text =
            serde_json::to_string(&stored).map_err(|e| TokenStoreError::Corrupt(e.to_string()))?;
        let put = self
            .client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(text.clone())
            .send()
            .await;
        match put {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(aws_sdk_secretsmanager::operation::put_secret_value::PutSecretValueError::ResourceNotFoundException(_))
                ) =>
            {
                self.client
                    .create_secret()
                    .name(&self.secret_id)
                    .secret_string(text)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        TokenStoreError::Unavailable(
                            aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
                        )
                    })
            }
            Err(e) => Err(TokenStoreError::Unavailable(
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            )),
        }
    }
}
