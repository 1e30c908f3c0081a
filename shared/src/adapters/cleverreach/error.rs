//! CleverReach adapter: what can go wrong talking to CleverReach, and whether to retry.

use crate::error::Retryable;
use std::time::Duration;

/// A failed CleverReach call. Texts never contain tokens or the client secret.
#[derive(Debug, thiserror::Error)]
pub enum CleverReachError {
    /// The API refused the access token (HTTP 401) even after one refresh.
    #[error("CleverReach refused the access token (HTTP 401) even after a token refresh")]
    Unauthorized,
    /// No usable tokens: nothing stored, or the refresh token was refused and the store had
    /// nothing newer. Only a person can fix this, by connecting again.
    #[error("reconnect CleverReach: {reason}")]
    ReconnectRequired { reason: String },
    #[error("CleverReach: not found ({message})")]
    NotFound { message: String },
    #[error("CleverReach: conflict ({message})")]
    Conflict { message: String },
    /// HTTP 413: the batch was too big.
    #[error("CleverReach: request too large ({message})")]
    TooLarge { message: String },
    /// HTTP 429.
    #[error("CleverReach is throttling requests (HTTP 429){}", wait_text(.retry_after))]
    Throttled { retry_after: Option<Duration> },
    /// HTTP 5xx.
    #[error("CleverReach server error (HTTP {status}{}): {message}", code_text(.code))]
    Server {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    /// Any other HTTP 4xx.
    #[error("CleverReach refused the request (HTTP {status}{}): {message}", code_text(.code))]
    Client {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    #[error("CleverReach did not answer within {} ms", .after.as_millis())]
    Timeout { after: Duration },
    /// The connection failed or broke before a complete answer arrived.
    #[error("could not reach CleverReach: {message}")]
    Transport { message: String },
    /// CleverReach answered with something this client does not understand.
    #[error("unexpected answer from CleverReach: {message}")]
    Decode { message: String },
    #[error(transparent)]
    TokenStore(#[from] TokenStoreError),
    #[error("invalid CleverReach configuration: {message}")]
    Config { message: String },
    /// The caller asked for something that cannot be sent (e.g. an empty group name).
    #[error("invalid request to CleverReach: {message}")]
    InvalidInput { message: String },
}

fn wait_text(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!(", retry after {} s", d.as_secs()))
        .unwrap_or_default()
}

fn code_text(code: &Option<i64>) -> String {
    code.map(|c| format!(", code {c}")).unwrap_or_default()
}

impl Retryable for CleverReachError {
    fn is_retryable(&self) -> bool {
        match self {
            CleverReachError::Throttled { .. }
            | CleverReachError::Server { .. }
            | CleverReachError::Timeout { .. }
            | CleverReachError::Transport { .. } => true,
            CleverReachError::TokenStore(e) => e.is_retryable(),
            _ => false,
        }
    }

    fn is_throttling(&self) -> bool {
        matches!(
            self,
            CleverReachError::Throttled { .. } | CleverReachError::Server { status: 503, .. }
        )
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            CleverReachError::Throttled { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// The token store (a port; Secrets Manager in production) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenStoreError {
    /// The store could not be reached; trying again later may work.
    #[error("the CleverReach token store is unavailable: {0}")]
    Unavailable(String),
    /// The stored value cannot be read as tokens.
    #[error("the stored CleverReach tokens are unreadable: {0}")]
    Corrupt(String),
}

impl Retryable for TokenStoreError {
    fn is_retryable(&self) -> bool {
        matches!(self, TokenStoreError::Unavailable(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_server_errors_timeouts_and_transport_failures_are_retryable() {
        let retryable = [
            CleverReachError::Throttled {
                retry_after: Some(Duration::from_secs(3)),
            },
            CleverReachError::Server {
                status: 502,
                code: None,
                message: "Bad Gateway".into(),
            },
            CleverReachError::Timeout {
                after: Duration::from_secs(30),
            },
            CleverReachError::Transport {
                message: "reset".into(),
            },
        ];
        for e in &retryable {
            assert!(e.is_retryable(), "{e}");
        }
        assert_eq!(retryable[0].retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn client_errors_and_reconnects_are_not_retryable() {
        let permanent = [
            CleverReachError::Client {
                status: 400,
                code: Some(400),
                message: "Bad Request".into(),
            },
            CleverReachError::NotFound {
                message: "Not Found: invalid receiver".into(),
            },
            CleverReachError::ReconnectRequired {
                reason: "the refresh token was refused".into(),
            },
            CleverReachError::Decode {
                message: "not JSON".into(),
            },
            CleverReachError::Unauthorized,
        ];
        for e in &permanent {
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn a_reconnect_says_so_in_plain_words() {
        let e = CleverReachError::ReconnectRequired {
            reason: "the refresh token was refused".into(),
        };
        assert!(e.to_string().starts_with("reconnect CleverReach"));
    }
}
