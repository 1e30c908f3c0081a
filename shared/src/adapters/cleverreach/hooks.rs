//! CleverReach adapter: event hooks (`/hooks/eventhook`, outside `v3/`): one registration for
//! the `receiver` category per group, its call token, listing and deleting registrations, and
//! reading the receiver a delivery names.

use super::client::{CleverReachClient, decode};
use super::error::CleverReachError;
use super::receivers::ReceiverRecord;
use super::tokens::TokenStore;
use super::wire::WireReceiver;
use crate::ports::newsletter::{HookRegistration, HookRegistry, NewsletterError, RegisteredHook};
use crate::secret::Secret;
use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

/// The category the connector registers for.
const RECEIVER_EVENTS: &str = "receiver";

impl<S: TokenStore> CleverReachClient<S> {
    /// Registers `url` for the receiver events of a group. CleverReach calls the URL with a
    /// `secret` before it answers; the answer carries the call token.
    pub async fn register_hook(
        &self,
        url: &str,
        group_id: &str,
        verify: &Secret,
    ) -> Result<Secret, CleverReachError> {
        let endpoint = self.url(&["hooks", "eventhook"])?;
        let body = json!({
            "url": url,
            "event": RECEIVER_EVENTS,
            "condition": group_id,
            "verify": verify.expose(),
        });
        let answer = self.call(Method::POST, endpoint, &[], Some(&body)).await?;
        let success = answer.get("success").and_then(Value::as_bool) == Some(true);
        let token = answer
            .get("call_token")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty());
        match (success, token) {
            (true, Some(token)) => Ok(Secret::new(token)),
            _ => Err(CleverReachError::Client {
                status: 200,
                code: None,
                // CleverReach's own words (they name the URL, never a token).
                message: format!(
                    "the hook registration for group {group_id} failed: {}",
                    answer
                        .get("error")
                        .and_then(Value::as_str)
                        .unwrap_or("no call token in the answer")
                ),
            }),
        }
    }

    /// The account's registrations.
    pub async fn list_hooks(&self) -> Result<Vec<RegisteredHook>, CleverReachError> {
        let endpoint = self.url(&["hooks", "eventhook"])?;
        let answer = self.call(Method::GET, endpoint, &[], None).await?;
        let rows = match answer {
            Value::Array(rows) => rows,
            Value::Object(map) if map.is_empty() => Vec::new(),
            _ => {
                return Err(CleverReachError::Decode {
                    message: "the hook list is not an array".into(),
                });
            }
        };
        let text = |row: &Value, key: &str| match row.get(key) {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        };
        Ok(rows
            .iter()
            .map(|row| RegisteredHook {
                event: text(row, "event"),
                condition: text(row, "condition"),
                url: text(row, "url"),
            })
            .collect())
    }

    /// Deletes the receiver-event registrations of a group (none is not an error).
    pub async fn delete_hook(&self, group_id: &str) -> Result<(), CleverReachError> {
        let endpoint = self.url(&["hooks", "eventhook", RECEIVER_EVENTS])?;
        match self
            .call(
                Method::DELETE,
                endpoint,
                &[("condition", group_id.to_string())],
                None,
            )
            .await
        {
            Ok(_) | Err(CleverReachError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One receiver of a group by its id; `None` when it is not in the group.
    pub async fn receiver_by_id(
        &self,
        group_id: &str,
        receiver_id: &str,
    ) -> Result<Option<ReceiverRecord>, CleverReachError> {
        let url = self.api(&["groups.json", group_id, "receivers", receiver_id])?;
        match self.call(Method::GET, url, &[], None).await {
            Ok(value) => {
                let wire: WireReceiver = decode(value)?;
                Ok(super::receivers::record_of(&wire, group_id))
            }
            Err(CleverReachError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl<S: TokenStore> HookRegistry for CleverReachClient<S> {
    async fn register_hook(
        &self,
        url: &str,
        group_id: &str,
        verify: &Secret,
    ) -> Result<HookRegistration, NewsletterError> {
        Ok(HookRegistration {
            call_token: CleverReachClient::register_hook(self, url, group_id, verify).await?,
        })
    }

    async fn list_hooks(&self) -> Result<Vec<RegisteredHook>, NewsletterError> {
        Ok(CleverReachClient::list_hooks(self).await?)
    }

    async fn delete_hook(&self, group_id: &str) -> Result<(), NewsletterError> {
        Ok(CleverReachClient::delete_hook(self, group_id).await?)
    }

    async fn receiver_by_id(
        &self,
        group_id: &str,
        receiver_id: &str,
    ) -> Result<Option<ReceiverRecord>, NewsletterError> {
        Ok(CleverReachClient::receiver_by_id(self, group_id, receiver_id).await?)
    }
}
