//! Ports to the secret store (Secrets Manager in Lambda, a map locally): the webhook key, client
//! secrets, the connect page's administrator key.

use crate::error::Retryable;
use crate::secret::Secret;
use async_trait::async_trait;

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name} does not exist")]
    Missing { name: String },
    #[error("secret {name} has no field {field}")]
    MissingField { name: String, field: String },
    #[error("secret {name} could not be read: {reason}")]
    Unavailable { name: String, reason: String },
    #[error("secret {name} could not be written: {reason}")]
    WriteFailed { name: String, reason: String },
}

impl Retryable for SecretError {
    fn is_retryable(&self) -> bool {
        matches!(
            self,
            SecretError::Unavailable { .. } | SecretError::WriteFailed { .. }
        )
    }
}

/// Reads secrets (webhook key, client secrets). Implementations cache briefly.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The secret value of `name`; for a JSON secret, `field` picks one of its string fields.
    async fn secret(&self, name: &str, field: Option<&str>) -> Result<Secret, SecretError>;
}

#[async_trait]
impl<T: SecretSource + ?Sized> SecretSource for std::sync::Arc<T> {
    async fn secret(&self, name: &str, field: Option<&str>) -> Result<Secret, SecretError> {
        (**self).secret(name, field).await
    }
}

/// Picks `field` out of a JSON secret; a secret that is not JSON is its own only value.
pub fn secret_field(
    name: &str,
    whole: &Secret,
    field: Option<&str>,
) -> Result<Secret, SecretError> {
    let Some(field) = field else {
        return Ok(whole.clone());
    };
    let missing = || SecretError::MissingField {
        name: name.to_string(),
        field: field.to_string(),
    };
    let json: serde_json::Value = serde_json::from_str(whole.expose()).map_err(|_| missing())?;
    json.get(field)
        .and_then(|v| v.as_str())
        .map(Secret::new)
        .ok_or_else(missing)
}

/// The hooks' shared secrets: the verify token the endpoint answers registrations with, and
/// the call token of each group's registration that deliveries must carry.
#[derive(Debug, Clone, Default)]
pub struct HookTokens {
    pub verify: Option<Secret>,
    /// group id → call token.
    pub call_tokens: std::collections::BTreeMap<String, Secret>,
}

/// Where the hooks' tokens live (a Secrets Manager secret in Lambda). Writers are several
/// workers at once: each change is a compare-and-swap, retried, so none is lost.
#[async_trait]
pub trait HookTokenStore: Send + Sync {
    /// The tokens as stored now.
    async fn hook_tokens(&self) -> Result<HookTokens, SecretError>;
    /// The verify token, made (once, whoever is first) when there is none.
    async fn verify_token(&self) -> Result<Secret, SecretError>;
    async fn save_call_token(&self, group_id: &str, token: &Secret) -> Result<(), SecretError>;
    async fn forget_call_token(&self, group_id: &str) -> Result<(), SecretError>;
}
