//! The Secrets Manager adapters against the AWS emulator: reading the connector's secret (and a
//! field of it), a missing secret named in the error, the CleverReach token store, and the
//! connect page's session record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::aws::{emulator, unique_name};
use shared::adapters::cleverreach::{TokenSet, TokenStore};
use shared::adapters::secrets_manager::{
    SecretsManagerSessionStore, SecretsManagerSource, SecretsManagerTokenStore,
};
use shared::error::Retryable;
use shared::handlers::connect::SessionStore;
use shared::ports::{SecretError, SecretSource};
use shared::secret::Secret;
use std::time::Duration;

#[tokio::test]
async fn a_field_of_the_connector_secret_is_read_and_cached() {
    let Some(aws) = emulator("secret field").await else {
        return;
    };
    let client = aws_sdk_secretsmanager::Client::new(&aws.config);
    let name = unique_name("crc-connector");
    client
        .create_secret()
        .name(&name)
        .secret_string(r#"{"webhook_key":"k-1","dataverse_client_secret":"d-1"}"#)
        .send()
        .await
        .unwrap();
    let source = SecretsManagerSource::with_ttl(client.clone(), Duration::from_secs(60));
    assert_eq!(
        source
            .secret(&name, Some("webhook_key"))
            .await
            .unwrap()
            .expose(),
        "k-1"
    );
    // A rotation is seen only after the cache expires or is invalidated.
    client
        .put_secret_value()
        .secret_id(&name)
        .secret_string(r#"{"webhook_key":"k-2"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        source
            .secret(&name, Some("webhook_key"))
            .await
            .unwrap()
            .expose(),
        "k-1"
    );
    source.invalidate(&name).await;
    assert_eq!(
        source
            .secret(&name, Some("webhook_key"))
            .await
            .unwrap()
            .expose(),
        "k-2"
    );
}

#[tokio::test]
async fn a_missing_secret_or_field_is_named_and_not_retried() {
    let Some(aws) = emulator("missing secret").await else {
        return;
    };
    let client = aws_sdk_secretsmanager::Client::new(&aws.config);
    let source = SecretsManagerSource::new(client.clone());
    let name = unique_name("absent");
    let err = source.secret(&name, None).await.unwrap_err();
    assert!(matches!(err, SecretError::Missing { .. }), "{err}");
    assert!(err.to_string().contains(&name));
    assert!(!err.is_retryable());

    let present = unique_name("present");
    client
        .create_secret()
        .name(&present)
        .secret_string(r#"{"other":"top-secret-value"}"#)
        .send()
        .await
        .unwrap();
    let err = source
        .secret(&present, Some("webhook_key"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("webhook_key"));
    assert!(!err.to_string().contains("top-secret-value"));
}

#[tokio::test]
async fn the_token_store_keeps_the_rotated_pair_and_creates_its_secret_on_first_save() {
    let Some(aws) = emulator("token store").await else {
        return;
    };
    let client = aws_sdk_secretsmanager::Client::new(&aws.config);
    let store = SecretsManagerTokenStore::new(client.clone(), unique_name("crc-tokens"));
    assert!(
        store.load().await.unwrap().is_none(),
        "nothing before the first connect"
    );
    let first = TokenSet {
        access_token: Secret::new("access-1"),
        refresh_token: Some(Secret::new("refresh-1")),
        expires_at_unix: 1_800_000_000,
        reconnect_required: None,
    };
    store.save(&first).await.unwrap();
    assert_eq!(store.load().await.unwrap(), Some(first));
    let rotated = TokenSet {
        access_token: Secret::new("access-2"),
        refresh_token: Some(Secret::new("refresh-2")),
        expires_at_unix: 1_800_003_600,
        reconnect_required: None,
    };
    store.save(&rotated).await.unwrap();
    assert_eq!(store.load().await.unwrap(), Some(rotated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instance_of_the_connect_page_sees_a_sign_out_and_a_state_counts_once() {
    let Some(aws) = emulator("session record").await else {
        return;
    };
    let client = aws_sdk_secretsmanager::Client::new(&aws.config);
    let name = unique_name("crc-connect-sessions");
    // As the template creates it: blank.
    client
        .create_secret()
        .name(&name)
        .secret_string(" ")
        .send()
        .await
        .unwrap();
    let one = SecretsManagerSessionStore::new(client.clone(), &name);
    let other = SecretsManagerSessionStore::new(client.clone(), &name);
    let until = chrono::Utc::now().timestamp() + 600;

    assert!(!other.contains("ended:s1").await.unwrap());
    assert!(one.record("ended:s1", until).await.unwrap());
    assert!(
        other.contains("ended:s1").await.unwrap(),
        "seen by another instance"
    );
    assert!(
        !other.record("ended:s1", until).await.unwrap(),
        "recorded once"
    );

    // Instances writing at the same moment lose nothing.
    let writes: Vec<_> = (0..6)
        .map(|i| {
            let store = SecretsManagerSessionStore::new(client.clone(), &name);
            tokio::spawn(async move { store.record(&format!("state:{i}"), until).await })
        })
        .collect();
    for write in writes {
        assert!(write.await.unwrap().unwrap());
    }
    for i in 0..6 {
        assert!(
            one.contains(&format!("state:{i}")).await.unwrap(),
            "state:{i}"
        );
    }
    // Past entries are forgotten.
    assert!(one.record("state:old", 1).await.unwrap());
    assert!(!one.contains("state:old").await.unwrap());
}
