//! Many workers, one expired CleverReach token, tokens in Secrets Manager (the AWS emulator):
//! CleverReach rotates the refresh token on every refresh, so the workers must end up with one
//! refresh, all succeed, and keep the rotated pair (docs/architecture.md §4 "Tokens").

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

use sandbox::aws::{emulator, unique_name};
use sandbox::cleverreach::{
    CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
};
use shared::adapters::cleverreach::{
    CleverReachClient, CleverReachConfig, StoredTokens, TokenSet, TokenStore, TokenStoreError,
    TokenVersion,
};
use shared::adapters::http::RetryPolicy;
use shared::adapters::secrets_manager::SecretsManagerTokenStore;
use shared::secret::Secret;
use std::time::Duration;

const WORKERS: usize = 20;

/// A worker as a Lambda instance has it: its own client and its own view of the secret.
fn worker(
    sim: &CleverReachSim,
    secrets: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> CleverReachClient<SecretsManagerTokenStore> {
    client_with(
        sim,
        SecretsManagerTokenStore::new(secrets.clone(), secret_id),
    )
}

fn client_with<S: TokenStore>(sim: &CleverReachSim, store: S) -> CleverReachClient<S> {
    let mut cfg = CleverReachConfig::new(
        url::Url::parse(&sim.base_url()).unwrap(),
        DEFAULT_CLIENT_ID,
        Secret::new(DEFAULT_CLIENT_SECRET),
        "Dynamics 365 (contoso)",
    );
    cfg.retry = RetryPolicy::fast();
    cfg.request_timeout = Duration::from_secs(10);
    CleverReachClient::new(cfg, store).unwrap()
}

/// The token secret as a worker sees it when Secrets Manager is slow: every write of live
/// tokens (what the winner of a refresh stores) lands only after `delay`.
struct SlowLiveWrites {
    inner: SecretsManagerTokenStore,
    delay: Duration,
}

#[async_trait::async_trait]
impl TokenStore for SlowLiveWrites {
    async fn load_versioned(&self) -> Result<StoredTokens, TokenStoreError> {
        self.inner.load_versioned().await
    }

    async fn replace(
        &self,
        expected: &TokenVersion,
        tokens: &TokenSet,
    ) -> Result<Option<TokenVersion>, TokenStoreError> {
        if tokens.reconnect_required.is_none() {
            tokio::time::sleep(self.delay).await;
        }
        self.inner.replace(expected, tokens).await
    }
}

/// A connected token secret whose access token has expired (in CleverReach and in the
/// stored expiry); returns the refresh token it holds.
async fn expired_connection(
    sim: &CleverReachSim,
    secrets: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Secret {
    worker(sim, secrets, secret_id)
        .connect_client_credentials()
        .await
        .unwrap();
    let store = SecretsManagerTokenStore::new(secrets.clone(), secret_id);
    let mut stored = store.load().await.unwrap().unwrap();
    stored.expires_at_unix = 0;
    store.save(&stored).await.unwrap();
    sim.expire_access_tokens();
    stored.refresh_token.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_workers_with_an_expired_token_refresh_once_and_keep_the_rotated_token() {
    let Some(aws) = emulator("token race").await else {
        return;
    };
    let secrets = aws_sdk_secretsmanager::Client::new(&aws.config);
    let secret_id = unique_name("crc-cleverreach-tokens");
    let sim = CleverReachSim::spawn(CleverReachSimConfig::default())
        .await
        .unwrap();

    // Connected once; then the access token expires (in CleverReach and in the stored expiry).
    worker(&sim, &secrets, &secret_id)
        .connect_client_credentials()
        .await
        .unwrap();
    let store = SecretsManagerTokenStore::new(secrets.clone(), &secret_id);
    let mut stored = store.load().await.unwrap().unwrap();
    let first_refresh = stored.refresh_token.clone().unwrap();
    stored.expires_at_unix = 0;
    store.save(&stored).await.unwrap();
    sim.expire_access_tokens();

    // Every worker has read the (expired) tokens before any of them refreshes, as warm Lambda
    // instances have: then they all refresh at the same moment.
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(WORKERS));
    let calls: Vec<_> = (0..WORKERS)
        .map(|_| {
            let client = worker(&sim, &secrets, &secret_id);
            let ready = ready.clone();
            tokio::spawn(async move {
                client.tokens().await?;
                ready.wait().await;
                client.list_groups().await.map(|_| ())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for call in calls {
        if let Err(e) = call.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    assert!(failures.is_empty(), "every worker succeeds: {failures:?}");
    assert!(
        sim.token_grants().refused_refresh > 0,
        "the workers did race (else this test proves nothing)"
    );

    let grants = sim.token_grants();
    assert_eq!(grants.refresh_token, 1, "one refresh: {grants:?}");
    eprintln!(
        "{WORKERS} workers: {} refresh granted, {} refused (losers read the winner's tokens from the store)",
        grants.refresh_token, grants.refused_refresh
    );
    let kept = store.load().await.unwrap().unwrap();
    assert!(kept.reconnect_required.is_none());
    let kept_refresh = kept.refresh_token.unwrap();
    assert_ne!(
        kept_refresh, first_refresh,
        "the rotated refresh token is stored"
    );
    assert!(sim.refresh_token_is_valid(kept_refresh.expose()));
    assert!(sim.access_token_is_valid(kept.access_token.expose()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_winner_that_saves_three_seconds_late_leaves_the_store_valid_and_every_worker_succeeds()
 {
    let Some(aws) = emulator("delayed refresh winner").await else {
        return;
    };
    let secrets = aws_sdk_secretsmanager::Client::new(&aws.config);
    let secret_id = unique_name("crc-cleverreach-tokens");
    let sim = CleverReachSim::spawn(CleverReachSimConfig::default())
        .await
        .unwrap();
    let first_refresh = expired_connection(&sim, &secrets, &secret_id).await;

    const RACERS: usize = 8;
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let calls: Vec<_> = (0..RACERS)
        .map(|_| {
            let client = client_with(
                &sim,
                SlowLiveWrites {
                    inner: SecretsManagerTokenStore::new(secrets.clone(), &secret_id),
                    delay: Duration::from_secs(3),
                },
            );
            let ready = ready.clone();
            tokio::spawn(async move {
                client.tokens().await?;
                ready.wait().await;
                client.list_groups().await.map(|_| ())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for call in calls {
        if let Err(e) = call.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    let grants = sim.token_grants();
    assert!(
        grants.refused_refresh > 0,
        "the workers did race (else this test proves nothing): {grants:?}"
    );
    assert!(failures.is_empty(), "every worker succeeds: {failures:?}");
    let kept = SecretsManagerTokenStore::new(secrets.clone(), &secret_id)
        .load()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.reconnect_required, None,
        "the store ends valid, not dead"
    );
    let kept_refresh = kept.refresh_token.unwrap();
    assert_ne!(kept_refresh, first_refresh);
    assert!(sim.refresh_token_is_valid(kept_refresh.expose()));
    assert!(sim.access_token_is_valid(kept.access_token.expose()));
}

#[tokio::test]
async fn a_connection_lost_mark_based_on_an_outdated_read_does_not_overwrite_fresh_tokens() {
    let Some(aws) = emulator("token compare-and-swap").await else {
        return;
    };
    let secrets = aws_sdk_secretsmanager::Client::new(&aws.config);
    let secret_id = unique_name("crc-tokens");
    let store = SecretsManagerTokenStore::new(secrets.clone(), &secret_id);
    let pair = |access: &str, refresh: &str| {
        TokenSet::new(
            Secret::new(access),
            Some(Secret::new(refresh)),
            1_800_000_000,
        )
    };
    store.save(&pair("access-1", "refresh-1")).await.unwrap();
    // A loser reads the first pair; the winner then stores the refreshed one.
    let read_by_loser = store.load_versioned().await.unwrap();
    let fresh = pair("access-2", "refresh-2");
    let written = store.replace(&read_by_loser.version, &fresh).await.unwrap();
    assert!(written.is_some(), "the winner's write goes through");
    // The loser, whose refresh was refused, marks the connection lost against what it read.
    let dead = TokenSet {
        reconnect_required: Some("the refresh token was refused".into()),
        ..read_by_loser.tokens.clone().unwrap()
    };
    let marked = store.replace(&read_by_loser.version, &dead).await.unwrap();
    assert_eq!(marked, None, "the outdated mark is refused");
    assert_eq!(store.load().await.unwrap(), Some(fresh.clone()));
    // Every other reader sees the same current copy.
    let other = SecretsManagerTokenStore::new(secrets.clone(), &secret_id);
    assert_eq!(other.load().await.unwrap(), Some(fresh));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_saved_after_an_administrators_new_connect_leaves_the_new_connect_in_place() {
    let Some(aws) = emulator("refresh after a new connect").await else {
        return;
    };
    let secrets = aws_sdk_secretsmanager::Client::new(&aws.config);
    let secret_id = unique_name("crc-cleverreach-tokens");
    let sim = CleverReachSim::spawn(CleverReachSimConfig::default())
        .await
        .unwrap();
    expired_connection(&sim, &secrets, &secret_id).await;

    // A worker refreshes; its save is slow.
    let slow = client_with(
        &sim,
        SlowLiveWrites {
            inner: SecretsManagerTokenStore::new(secrets.clone(), &secret_id),
            delay: Duration::from_secs(3),
        },
    );
    let refreshing = tokio::spawn(async move { slow.list_groups().await.map(|_| ()) });
    // Meanwhile an administrator connects again on the connect page.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let page = worker(&sim, &secrets, &secret_id);
    page.connect_client_credentials().await.unwrap();
    let connected = page.tokens().await.unwrap().unwrap();

    refreshing
        .await
        .unwrap()
        .expect("the worker's call succeeds");
    let kept = SecretsManagerTokenStore::new(secrets.clone(), &secret_id)
        .load()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.access_token, connected.access_token,
        "the administrator's connect is what stays stored"
    );
    assert_eq!(kept.refresh_token, connected.refresh_token);
}
