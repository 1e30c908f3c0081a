//! End to end: CleverReach's event hooks (docs/architecture.md §3 "Event hooks"). The CRM is
//! changed through the Dataverse simulator's Web API; people act in the CleverReach simulator,
//! which verifies every registration by calling the endpoint and delivers `receiver.*` events
//! with the call token it handed out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::cleverreach::HookDeliveryConfig;
use sandbox::harness::Harness;
use serde_json::json;
use shared::domain::routing::QueueFamily;

/// The registrations of our endpoint, by group.
fn registered(h: &Harness) -> Vec<String> {
    let url = &h.events.as_ref().unwrap().url;
    let mut groups: Vec<String> = h
        .cleverreach
        .hook_registrations()
        .into_iter()
        .filter(|r| &r.url == url && r.event == "receiver")
        .map(|r| r.condition)
        .collect();
    groups.sort();
    groups
}

/// Anna and Bert in two synced lists that both send newsletter type 0.
async fn two_lists(h: &Harness) -> (String, String, (String, String), (String, String)) {
    two_lists_with(h, &[]).await
}

async fn two_lists_with(
    h: &Harness,
    settings: &[(&str, &str)],
) -> (String, String, (String, String), (String, String)) {
    h.install(settings).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let people = [anna.clone(), bert.clone()];
    let customers = h
        .synced_static_list("Customers", "contact", &people)
        .await
        .unwrap();
    let partners = h
        .synced_static_list("Partners", "contact", &people)
        .await
        .unwrap();
    (anna, bert, customers, partners)
}

#[tokio::test]
async fn each_synced_group_gets_a_registration_verified_by_cleverreach_through_the_endpoint() {
    let h = Harness::start_with_hooks().await.unwrap();
    let (_, _, (_, customers), (_, partners)) = two_lists(&h).await;

    let mut both = vec![customers, partners];
    both.sort();
    assert_eq!(registered(&h), both);
    let stats = h.cleverreach.hook_stats();
    assert_eq!(stats.verification_failed, 0);
    assert_eq!(stats.registered, 2, "one registration per group, no more");
    let tokens = h.events.as_ref().unwrap().tokens.clone();
    use shared::ports::secrets::HookTokenStore;
    let stored = tokens.hook_tokens().await.unwrap();
    assert_eq!(stored.call_tokens.len(), 2, "a call token per group");
}

#[tokio::test]
async fn an_unsubscribe_in_cleverreach_says_no_in_the_crm_and_leaves_the_other_group_without_any_scheduled_run()
 {
    let h = Harness::start_with_hooks().await.unwrap();
    let (anna, _, (_, customers), (_, partners)) = two_lists(&h).await;

    h.cleverreach
        .unsubscribe(&customers, "anna@example.com")
        .unwrap();
    h.settle().await.unwrap();

    assert_eq!(h.checklist_states("contacts", &anna), [(0, 2)]);
    assert_eq!(h.dataverse.rows("crc_receiverstates").len(), 1);
    assert_eq!(
        h.active_emails(&partners),
        ["bert@example.com"],
        "Anna left the other group sending that type"
    );
    assert!(h.cleverreach.hook_stats().made >= 1);
    // The hourly job finds the unsubscribe applied already.
    let summary = h.run_receiver_state_sync().await.unwrap();
    assert_eq!(summary.receiver_states_created, 0, "{summary:?}");
    assert!(h.cleverreach.reactivations().is_empty());
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn a_sign_up_in_a_cleverreach_form_becomes_a_lead_without_the_lead_sync_job() {
    let h = Harness::start_with_hooks().await.unwrap();
    let (_, _, (_, customers), _) = two_lists(&h).await;

    h.cleverreach
        .signup(&customers, "new@example.com", &[("firstname", "Nele")])
        .unwrap();
    h.settle().await.unwrap();

    let leads = h.dataverse.rows("leads");
    assert!(
        leads
            .iter()
            .any(|l| l["emailaddress1"] == "new@example.com"),
        "{leads:?}"
    );
}

#[tokio::test]
async fn a_delivery_with_a_wrong_call_token_is_refused_with_401_and_nothing_is_queued() {
    let h = Harness::start_with_hooks().await.unwrap();
    let (_, _, (_, customers), _) = two_lists(&h).await;
    let events = h.events.as_ref().unwrap();
    let http = reqwest::Client::new();
    let body = json!({ "event": "receiver.unsubscribed", "condition": customers,
                       "payload": { "pool_id": "1", "group_id": customers } });

    for token in [Some("not-the-token"), None] {
        let mut request = http.post(&events.url).json(&body);
        if let Some(token) = token {
            request = request.header("X-CR-Calltoken", token);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 401, "token {token:?}");
    }
    assert!(events.queue.is_empty());

    // The handshake answers "<verify> <secret>" as plain text.
    let answer = http
        .get(format!("{}?secret=abc123", events.url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = answer.text().await.unwrap();
    assert!(text.ends_with(" abc123") && text.len() > 17, "{text}");
    let _ = QueueFamily::CleverReachEvents;
}

#[tokio::test]
async fn a_registration_lost_in_cleverreach_is_made_again_by_the_next_scheduled_run() {
    let h = Harness::start_with_hooks().await.unwrap();
    let (anna, _, (_, customers), (_, partners)) = two_lists(&h).await;
    h.newsletter().delete_hook(&customers).await.unwrap();
    assert!(!registered(&h).contains(&customers));

    let summary = h.run_receiver_state_sync().await.unwrap();
    assert!(summary.complete);
    assert!(registered(&h).contains(&customers), "re-registered");
    assert_eq!(registered(&h).len(), 2, "nothing doubled");

    // Its deliveries are accepted again (the new token was stored).
    h.cleverreach
        .unsubscribe(&customers, "anna@example.com")
        .unwrap();
    h.cleverreach
        .wait_for_hook_deliveries(std::time::Duration::from_secs(10))
        .await;
    let last = h.cleverreach.hook_deliveries();
    assert_eq!(last.last().unwrap().outcome, "delivered", "{last:?}");
    h.settle().await.unwrap();
    assert_eq!(h.checklist_states("contacts", &anna), [(0, 2)]);
    assert_eq!(h.active_emails(&partners), ["bert@example.com"]);
}

#[tokio::test]
async fn a_deleted_group_and_a_kept_group_lose_their_registrations() {
    let h = Harness::start_with_hooks().await.unwrap();
    // Sync off keeps the group; a deleted list's group goes (the default for deleted records).
    let (_, _, (customers_list, customers), (partners_list, partners)) = two_lists_with(
        &h,
        &[(
            "cleverreach:deletionsettings:deletedisablesynchronization",
            "false",
        )],
    )
    .await;

    h.delete("lists", &customers_list).await.unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&customers).is_none());
    assert_eq!(registered(&h), vec![partners.clone()]);

    // The kept group stays (the scheduled back-flow still reads it); its live events stop.
    h.update(
        "lists",
        &partners_list,
        json!({ "crc_syncwithcleverreach": false }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&partners).is_some());
    assert!(registered(&h).is_empty());
    // And the health check does not bring it back.
    h.run_receiver_state_sync().await.unwrap();
    assert!(registered(&h).is_empty());
}

#[tokio::test]
async fn with_a_fifth_of_deliveries_dropped_the_next_scheduled_run_catches_every_unsubscribe() {
    let h = Harness::start_with_hooks().await.unwrap();
    h.install(&[]).await.unwrap();
    let mut people = Vec::new();
    for i in 0..40 {
        people.push(
            h.contact(&format!("p{i:02}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    let (_, customers) = h
        .synced_static_list("Customers", "contact", &people)
        .await
        .unwrap();
    let (_, partners) = h
        .synced_static_list("Partners", "contact", &people)
        .await
        .unwrap();
    h.cleverreach
        .set_hook_delivery(HookDeliveryConfig {
            drop_rate: 0.2,
            seed: Some(5),
            ..HookDeliveryConfig::default()
        })
        .unwrap();

    for i in 0..40 {
        h.cleverreach
            .unsubscribe(&customers, &format!("p{i:02}@example.com"))
            .unwrap();
    }
    h.settle().await.unwrap();
    let stats = h.cleverreach.hook_stats();
    let said_no = |h: &Harness| {
        people
            .iter()
            .filter(|p| h.checklist_states("contacts", p) == [(0, 2)])
            .count()
    };
    let by_hooks = said_no(&h);
    println!(
        "hooks: {} unsubscribes, {} deliveries dropped, {} applied through the hooks",
        40, stats.dropped, by_hooks
    );
    assert!(stats.dropped > 0, "some deliveries were dropped: {stats:?}");
    assert!(by_hooks < 40 && by_hooks > 0, "{by_hooks}");

    let summary = h.run_receiver_state_sync().await.unwrap();
    h.settle().await.unwrap();

    assert!(summary.complete, "{summary:?}");
    assert_eq!(said_no(&h), 40, "the poll caught every dropped delivery");
    assert!(
        h.active_emails(&partners).is_empty(),
        "everyone left the other group"
    );
    assert_eq!(h.dataverse.rows("crc_receiverstates").len(), 40);
}
