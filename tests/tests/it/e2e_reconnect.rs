//! End to end: the CleverReach connection dies (the refresh token is revoked). Changes are
//! kept (dead-letter queue, not dropped), the source's sync status says "reconnect
//! CleverReach", and the workers stop asking CleverReach for tokens instead of hammering it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::cleverreach::Endpoint;
use sandbox::harness::Harness;
use serde_json::json;

#[tokio::test]
async fn a_dead_connection_is_reported_on_the_source_and_the_workers_stop_refreshing() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("Newsletter", "contact", &[anna])
        .await
        .unwrap();
    assert_eq!(h.active_emails(&group), ["anna@example.com"]);

    // The account owner revokes the connector's access; the access token runs out.
    h.cleverreach.revoke_refresh_tokens();
    h.cleverreach.expire_access_tokens();
    let store = h.newsletter().store().clone();
    let mut tokens = store.current().unwrap();
    tokens.expires_at_unix = 0;
    store.set(Some(tokens));
    let token_calls_before = h.cleverreach.stats().calls(Endpoint::Token);

    h.update("lists", &list, json!({ "listname": "Newsletter 2027" }))
        .await
        .unwrap();
    h.settle().await.unwrap();

    assert_eq!(
        h.dead_letters().len(),
        1,
        "the change is kept for a redrive, not dropped"
    );
    let row = h.dataverse.row("lists", &list).unwrap();
    let last_error = row["crc_lasterror"].as_str().unwrap_or_default();
    assert!(
        last_error.contains("reconnect CleverReach"),
        "the list says what to do: {last_error}"
    );
    // One refused refresh, then every further delivery stops before calling CleverReach.
    assert_eq!(
        h.cleverreach.stats().calls(Endpoint::Token) - token_calls_before,
        1
    );
    assert!(store.current().unwrap().reconnect_required.is_some());
    assert_eq!(h.cleverreach.group(&group).unwrap().name, "Newsletter");
}
