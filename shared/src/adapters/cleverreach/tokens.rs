//! CleverReach adapter: OAuth tokens and the port that keeps them (Secrets Manager in
//! production, memory in tests and the local run).
//!
//! A refresh rotates the refresh token: the old one is dead the moment CleverReach answers.
//! Whoever refreshes must store the new pair at once, and a worker whose refresh is refused
//! must look in the store before giving up, because another worker may have rotated it.

use super::error::TokenStoreError;
use crate::secret::Secret;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};

/// An access token, the refresh token that renews it, and when the access token expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSet {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Unix seconds.
    pub expires_at_unix: i64,
    /// Set when CleverReach refused the refresh token and nobody holds a newer one: the
    /// connection is dead until an administrator connects again. Kept in the store so that
    /// every worker stops at once instead of each trying (and failing) to refresh.
    pub reconnect_required: Option<String>,
}

impl TokenSet {
    /// A live token set.
    pub fn new(access_token: Secret, refresh_token: Option<Secret>, expires_at_unix: i64) -> Self {
        TokenSet {
            access_token,
            refresh_token,
            expires_at_unix,
            reconnect_required: None,
        }
    }
}

/// Where the tokens live between invocations (a port).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The stored tokens, `None` before the first connect.
    async fn load(&self) -> Result<Option<TokenSet>, TokenStoreError>;
    /// Replaces the stored tokens.
    async fn save(&self, tokens: &TokenSet) -> Result<(), TokenStoreError>;
}

#[async_trait]
impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    async fn load(&self) -> Result<Option<TokenSet>, TokenStoreError> {
        (**self).load().await
    }
    async fn save(&self, tokens: &TokenSet) -> Result<(), TokenStoreError> {
        (**self).save(tokens).await
    }
}

/// Tokens kept in memory. Clones share the same slot, so a test can hand one clone to a
/// client and look at (or change) the stored tokens through another.
#[derive(Debug, Clone, Default)]
pub struct InMemoryTokenStore {
    slot: Arc<Mutex<Option<TokenSet>>>,
}

impl InMemoryTokenStore {
    pub fn new() -> Self {
        InMemoryTokenStore::default()
    }

    pub fn with_tokens(tokens: TokenSet) -> Self {
        InMemoryTokenStore {
            slot: Arc::new(Mutex::new(Some(tokens))),
        }
    }

    /// What is stored now.
    pub fn current(&self) -> Option<TokenSet> {
        self.lock().clone()
    }

    /// Replaces what is stored (as another worker would).
    pub fn set(&self, tokens: Option<TokenSet>) {
        *self.lock() = tokens;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<TokenSet>> {
        // A poisoned slot still holds a whole value: a panic cannot interrupt an assignment.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl TokenStore for InMemoryTokenStore {
    async fn load(&self) -> Result<Option<TokenSet>, TokenStoreError> {
        Ok(self.current())
    }

    async fn save(&self, tokens: &TokenSet) -> Result<(), TokenStoreError> {
        self.set(Some(tokens.clone()));
        Ok(())
    }
}
