//! Many workers, one expired CleverReach token, tokens in Secrets Manager (the AWS emulator):
//! CleverReach rotates the refresh token on every refresh, so the workers must end up with one
//! refresh, all succeed, and keep the rotated pair (docs/architecture.md §4 "Tokens").

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

use sandbox::aws::{emulator, unique_name};
use sandbox::cleverreach::{
    CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
};
use shared::adapters::cleverreach::{CleverReachClient, CleverReachConfig, TokenStore};
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
    let mut cfg = CleverReachConfig::new(
        url::Url::parse(&sim.base_url()).unwrap(),
        DEFAULT_CLIENT_ID,
        Secret::new(DEFAULT_CLIENT_SECRET),
        "Dynamics 365 (contoso)",
    );
    cfg.retry = RetryPolicy::fast();
    cfg.request_timeout = Duration::from_secs(10);
    CleverReachClient::new(
        cfg,
        SecretsManagerTokenStore::new(secrets.clone(), secret_id),
    )
    .unwrap()
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
