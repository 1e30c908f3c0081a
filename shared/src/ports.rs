//! Ports: the small traits through which handlers reach the outside world. Adapters implement
//! them for SQS, Secrets Manager, Dataverse and CleverReach; `adapters::memory` has in-process
//! versions for tests and the local run.

use crate::domain::change::ChangeEvent;
use crate::domain::routing::QueueFamily;
use crate::error::Retryable;
use crate::secret::Secret;
use async_trait::async_trait;

/// Why a change could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("no queue is configured for the {0} family")]
    NotConfigured(QueueFamily),
    #[error("the {family} queue did not accept the message: {reason}")]
    Unavailable { family: QueueFamily, reason: String },
    #[error("the change could not be encoded for the queue: {0}")]
    Encode(String),
}

impl Retryable for QueueError {
    fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable { .. })
    }
}

/// Sends normalised CRM changes to the queue of their family.
///
/// Contract: `Ok` only once the queue durably accepted the message (the intake answers Dataverse
/// 2xx only then). The message group is the record and the de-duplication id the operation
/// (see `domain::routing`), so sending the same change twice queues it once.
#[async_trait]
pub trait ChangeQueue: Send + Sync {
    async fn enqueue(&self, family: QueueFamily, event: &ChangeEvent) -> Result<(), QueueError>;
}

#[async_trait]
impl<T: ChangeQueue + ?Sized> ChangeQueue for std::sync::Arc<T> {
    async fn enqueue(&self, family: QueueFamily, event: &ChangeEvent) -> Result<(), QueueError> {
        (**self).enqueue(family, event).await
    }
}

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
