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

/// Which stored copy of the tokens a reader saw, so that a write can say which copy it
/// replaces. `TokenVersion::default()` stands for "nothing stored yet".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenVersion(Option<String>);

impl TokenVersion {
    pub fn new(id: impl Into<String>) -> TokenVersion {
        TokenVersion(Some(id.into()))
    }

    /// The store's own id of this copy (a Secrets Manager version id); `None`: nothing stored.
    pub fn id(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// What a store holds right now: the tokens (`None` before the first connect) and the copy
/// they were read from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredTokens {
    pub tokens: Option<TokenSet>,
    pub version: TokenVersion,
}

/// Where the tokens live between invocations (a port).
///
/// Writers compare and swap: a refreshed pair replaces the copy its refresh token came from,
/// and only if that copy is still the stored one. Many workers refresh concurrently in
/// different Lambda instances; a blind write could put a dead or stale pair over a fresh one.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// The stored tokens and which copy they are.
    async fn load_versioned(&self) -> Result<StoredTokens, TokenStoreError>;

    /// Stores `tokens` if the stored copy is still `expected`. `Ok(Some(new version))` when
    /// written, `Ok(None)` when someone else wrote first (nothing was changed).
    async fn replace(
        &self,
        expected: &TokenVersion,
        tokens: &TokenSet,
    ) -> Result<Option<TokenVersion>, TokenStoreError>;

    /// The stored tokens, `None` before the first connect.
    async fn load(&self) -> Result<Option<TokenSet>, TokenStoreError> {
        Ok(self.load_versioned().await?.tokens)
    }

    /// Stores `tokens` over whatever is stored: for a new connect, which is newer than anything
    /// in the store. (A compare-and-swap loop, so that every write goes the same way.)
    async fn save(&self, tokens: &TokenSet) -> Result<TokenVersion, TokenStoreError> {
        for _ in 0..SAVE_ATTEMPTS {
            let current = self.load_versioned().await?.version;
            if let Some(version) = self.replace(&current, tokens).await? {
                return Ok(version);
            }
        }
        Err(TokenStoreError::Unavailable(format!(
            "the tokens changed {SAVE_ATTEMPTS} times while being saved; try again"
        )))
    }
}

/// How often [`TokenStore::save`] re-reads when other writers keep getting in first.
const SAVE_ATTEMPTS: usize = 5;

#[async_trait]
impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    async fn load_versioned(&self) -> Result<StoredTokens, TokenStoreError> {
        (**self).load_versioned().await
    }
    async fn replace(
        &self,
        expected: &TokenVersion,
        tokens: &TokenSet,
    ) -> Result<Option<TokenVersion>, TokenStoreError> {
        (**self).replace(expected, tokens).await
    }
    async fn load(&self) -> Result<Option<TokenSet>, TokenStoreError> {
        (**self).load().await
    }
    async fn save(&self, tokens: &TokenSet) -> Result<TokenVersion, TokenStoreError> {
        (**self).save(tokens).await
    }
}

/// Tokens kept in memory. Clones share the same slot, so a test can hand one clone to a
/// client and look at (or change) the stored tokens through another. Every write, including
/// [`InMemoryTokenStore::set`], makes a new version.
#[derive(Debug, Clone, Default)]
pub struct InMemoryTokenStore {
    slot: Arc<Mutex<Slot>>,
}

#[derive(Debug, Default)]
struct Slot {
    tokens: Option<TokenSet>,
    /// 0: never written.
    version: u64,
}

impl Slot {
    fn version(&self) -> TokenVersion {
        if self.version == 0 {
            TokenVersion::default()
        } else {
            TokenVersion::new(self.version.to_string())
        }
    }
}

impl InMemoryTokenStore {
    pub fn new() -> Self {
        InMemoryTokenStore::default()
    }

    pub fn with_tokens(tokens: TokenSet) -> Self {
        let store = InMemoryTokenStore::default();
        store.set(Some(tokens));
        store
    }

    /// What is stored now.
    pub fn current(&self) -> Option<TokenSet> {
        self.lock().tokens.clone()
    }

    /// Replaces what is stored (as another worker would).
    pub fn set(&self, tokens: Option<TokenSet>) {
        let mut slot = self.lock();
        slot.tokens = tokens;
        slot.version += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        // A poisoned slot still holds a whole value: a panic cannot interrupt an assignment.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl TokenStore for InMemoryTokenStore {
    async fn load_versioned(&self) -> Result<StoredTokens, TokenStoreError> {
        let slot = self.lock();
        Ok(StoredTokens {
            tokens: slot.tokens.clone(),
            version: slot.version(),
        })
    }

    async fn replace(
        &self,
        expected: &TokenVersion,
        tokens: &TokenSet,
    ) -> Result<Option<TokenVersion>, TokenStoreError> {
        let mut slot = self.lock();
        if slot.version() != *expected {
            return Ok(None);
        }
        slot.tokens = Some(tokens.clone());
        slot.version += 1;
        Ok(Some(slot.version()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tokens(access: &str) -> TokenSet {
        TokenSet::new(Secret::new(access), Some(Secret::new("r")), 0)
    }

    #[tokio::test]
    async fn a_write_based_on_an_outdated_read_changes_nothing() {
        let store = InMemoryTokenStore::new();
        let empty = store.load_versioned().await.unwrap();
        assert_eq!(empty, StoredTokens::default());
        let first = store.replace(&empty.version, &tokens("a")).await.unwrap();
        assert!(first.is_some());
        // A second writer that read before the first wrote is refused.
        assert_eq!(
            store.replace(&empty.version, &tokens("b")).await.unwrap(),
            None
        );
        assert_eq!(store.current(), Some(tokens("a")));
        // Against the current copy it goes through; a save goes through whatever is stored.
        let now = store.load_versioned().await.unwrap().version;
        assert!(store.replace(&now, &tokens("c")).await.unwrap().is_some());
        store.save(&tokens("d")).await.unwrap();
        assert_eq!(store.current(), Some(tokens("d")));
    }
}
