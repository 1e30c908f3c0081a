//! Who may use the connect page: the administrator key, the signed sessions a sign-in hands
//! out, the OAuth `state` bound to a session, and the record of ended sessions and used states.
//!
//! Nothing secret travels in a cookie or URL: a session is `v1.<id>.<expiry>.<mac>` and a
//! state `<session id>.<nonce>.<expiry>.<mac>`, MACs by HMAC-SHA256 under a key derived from
//! the administrator key. Rotating the administrator key therefore ends every session and
//! every connect in progress. Logging out and using a state are recorded in a
//! [`SessionStore`] shared by every instance of the page, so an old cookie or a replayed
//! callback is refused whichever instance it reaches.

use crate::ports::SecretSource;
use crate::secret::Secret;
use async_trait::async_trait;
use hmac::{KeyInit, Mac};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// What the session MACs are keyed with: derived from the administrator key, never the key.
const SESSION_KEY_LABEL: &[u8] = b"crc-connect session signing key v1";

/// Why the page cannot tell who is asking right now (the key or the session record could not
/// be read). Texts never hold the key.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("the administrator key cannot be read: {0}")]
    Key(String),
    #[error("the session record cannot be read or written: {0}")]
    Store(String),
}

/// Where ended sessions and used OAuth states are recorded (a port). Entries are needed only
/// until the session or state would have expired anyway.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Whether `id` is recorded.
    async fn contains(&self, id: &str) -> Result<bool, AccessError>;
    /// Records `id` until `until_unix`; `Ok(false)` when it was recorded already.
    async fn record(&self, id: &str, until_unix: i64) -> Result<bool, AccessError>;
}

/// The record in memory: for tests, the local run, and one process.
#[derive(Debug, Default)]
pub struct InMemorySessionStore {
    entries: Mutex<HashMap<String, i64>>,
}

impl InMemorySessionStore {
    pub fn new() -> Self {
        InMemorySessionStore::default()
    }
}

#[async_trait]
impl SessionStore for InMemorySessionStore {
    async fn contains(&self, id: &str) -> Result<bool, AccessError> {
        let now = now_unix();
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(entries.get(id).is_some_and(|until| *until > now))
    }

    async fn record(&self, id: &str, until_unix: i64) -> Result<bool, AccessError> {
        let now = now_unix();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, until| *until > now);
        Ok(entries.insert(id.to_string(), until_unix).is_none())
    }
}

/// The administrator key and the session record: everything that decides who may use the page.
#[async_trait]
pub trait AdminAccess: Send + Sync {
    /// The administrator key as it is now.
    async fn admin_key(&self) -> Result<Secret, AccessError>;
    /// The record of ended sessions and used states.
    fn sessions(&self) -> &dyn SessionStore;
}

/// A fixed key, with sessions recorded in this process only: the local run and tests. A
/// deployed page uses [`PageAccess`], so that a rotated key takes effect and a logout holds
/// across instances.
#[async_trait]
impl AdminAccess for Secret {
    async fn admin_key(&self) -> Result<Secret, AccessError> {
        Ok(self.clone())
    }

    fn sessions(&self) -> &dyn SessionStore {
        static PROCESS_SESSIONS: LazyLock<InMemorySessionStore> =
            LazyLock::new(InMemorySessionStore::new);
        &*PROCESS_SESSIONS
    }
}

/// The deployed page: the key read from a secret through `keys` on every request (a caching
/// source such as `SecretsManagerSource` re-reads it every few minutes, so a rotated key takes
/// effect without a cold start), sessions recorded in a store every instance shares.
pub struct PageAccess<K, V> {
    pub keys: K,
    /// The secret whose whole value is the administrator key.
    pub key_secret_id: String,
    pub sessions: V,
}

#[async_trait]
impl<K: SecretSource, V: SessionStore> AdminAccess for PageAccess<K, V> {
    async fn admin_key(&self) -> Result<Secret, AccessError> {
        self.keys
            .secret(&self.key_secret_id, None)
            .await
            .map_err(|e| AccessError::Key(e.to_string()))
    }

    fn sessions(&self) -> &dyn SessionStore {
        &self.sessions
    }
}

pub(super) fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The MAC key for sessions and states, derived from the administrator key.
pub(super) struct SigningKey([u8; 32]);

impl SigningKey {
    pub(super) fn derive(admin_key: &Secret) -> Option<SigningKey> {
        if admin_key.is_empty() {
            return None;
        }
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(admin_key.expose().as_bytes()).ok()?;
        mac.update(SESSION_KEY_LABEL);
        Some(SigningKey(mac.finalize().into_bytes().into()))
    }

    fn mac(&self, parts: &[&str]) -> String {
        let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(&self.0) else {
            return String::new();
        };
        for part in parts {
            mac.update(part.as_bytes());
            mac.update(b"|");
        }
        hex(&mac.finalize().into_bytes())
    }

    fn verify(&self, parts: &[&str], given: &str) -> bool {
        let expected = self.mac(parts);
        !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Session {
    pub id: String,
    pub expires_unix: i64,
}

impl Session {
    /// A new session and its cookie value.
    pub(super) fn issue(key: &SigningKey, lifetime_secs: i64) -> (Session, String) {
        let session = Session {
            id: random_id(),
            expires_unix: now_unix() + lifetime_secs,
        };
        let expires = session.expires_unix.to_string();
        let mac = key.mac(&["session", "v1", &session.id, &expires]);
        let value = format!("v1.{}.{expires}.{mac}", session.id);
        (session, value)
    }

    /// The session a cookie value stands for, if it was signed with `key` and has not expired.
    /// (Whether it was ended is the store's to say.)
    pub(super) fn verify(key: &SigningKey, value: &str) -> Option<Session> {
        let mut parts = value.split('.');
        let (Some("v1"), Some(id), Some(expires), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if !key.verify(&["session", "v1", id, expires], mac) {
            return None;
        }
        let expires_unix: i64 = expires.parse().ok()?;
        (expires_unix > now_unix()).then(|| Session {
            id: id.to_string(),
            expires_unix,
        })
    }

    /// The record entry that says this session was ended.
    pub(super) fn ended_entry(&self) -> String {
        format!("ended:{}", self.id)
    }
}

/// An OAuth `state`: one connect started by one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OAuthState {
    pub session_id: String,
    pub nonce: String,
    pub expires_unix: i64,
}

impl OAuthState {
    /// A new state for `session`, valid for `lifetime_secs` (never beyond the session).
    pub(super) fn issue(key: &SigningKey, session: &Session, lifetime_secs: i64) -> String {
        let expires = (now_unix() + lifetime_secs).min(session.expires_unix);
        let nonce = random_id();
        let expires = expires.to_string();
        let mac = key.mac(&["state", &session.id, &nonce, &expires]);
        format!("{}.{nonce}.{expires}.{mac}", session.id)
    }

    /// The state a value stands for, if it was signed with `key` and has not expired.
    pub(super) fn verify(key: &SigningKey, value: &str) -> Option<OAuthState> {
        let mut parts = value.split('.');
        let (Some(session_id), Some(nonce), Some(expires), Some(mac), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        if !key.verify(&["state", session_id, nonce, expires], mac) {
            return None;
        }
        let expires_unix: i64 = expires.parse().ok()?;
        (expires_unix > now_unix()).then(|| OAuthState {
            session_id: session_id.to_string(),
            nonce: nonce.to_string(),
            expires_unix,
        })
    }

    /// The record entry that says this state was used.
    pub(super) fn used_entry(&self) -> String {
        format!("state:{}", self.nonce)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(text: &str) -> SigningKey {
        SigningKey::derive(&Secret::new(text)).unwrap()
    }

    #[test]
    fn a_session_holds_only_under_the_key_that_signed_it() {
        let (session, value) = Session::issue(&key("admin-key-1"), 60);
        assert!(!value.contains("admin-key-1"));
        assert_eq!(Session::verify(&key("admin-key-1"), &value), Some(session));
        // A rotated administrator key ends it.
        assert_eq!(Session::verify(&key("admin-key-2"), &value), None);
        // Tampering with any part breaks it.
        let longer = value.replacen(".", ".0", 2);
        assert_eq!(Session::verify(&key("admin-key-1"), &longer), None);
        assert_eq!(Session::verify(&key("admin-key-1"), "admin-key-1"), None);
        assert!(SigningKey::derive(&Secret::new("")).is_none());
    }

    #[test]
    fn an_expired_session_or_state_is_refused() {
        let (session, expired) = Session::issue(&key("k"), -1);
        assert_eq!(Session::verify(&key("k"), &expired), None);
        let state = OAuthState::issue(&key("k"), &session, 600);
        assert_eq!(
            OAuthState::verify(&key("k"), &state),
            None,
            "a state never outlives its session"
        );
    }

    #[test]
    fn a_state_names_its_session_and_cannot_be_moved_to_another() {
        let (session, _) = Session::issue(&key("k"), 60);
        let state = OAuthState::issue(&key("k"), &session, 600);
        let read = OAuthState::verify(&key("k"), &state).unwrap();
        assert_eq!(read.session_id, session.id);
        let (other, _) = Session::issue(&key("k"), 60);
        let moved = state.replacen(&session.id, &other.id, 1);
        assert_eq!(OAuthState::verify(&key("k"), &moved), None);
        assert_eq!(OAuthState::verify(&key("k"), "planted-state"), None);
    }

    #[tokio::test]
    async fn the_record_says_once_whether_something_was_new() {
        let store = InMemorySessionStore::new();
        assert!(!store.contains("state:a").await.unwrap());
        assert!(store.record("state:a", now_unix() + 60).await.unwrap());
        assert!(!store.record("state:a", now_unix() + 60).await.unwrap());
        assert!(store.contains("state:a").await.unwrap());
        // Entries past their time are gone.
        assert!(store.record("state:b", now_unix() - 1).await.unwrap());
        assert!(!store.contains("state:b").await.unwrap());
    }
}
