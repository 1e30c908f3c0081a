//! The webhook intake handler with in-memory queue and secrets: what Dataverse gets back, and
//! what is (and is not) queued.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use shared::adapters::memory::{InMemoryChangeQueue, StaticSecrets};
use shared::domain::change::CrmMessage;
use shared::domain::routing::QueueFamily;
use shared::handlers::webhook_intake::{
    IntakeDeps, IntakeSettings, WebhookRequest, WebhookResponse, handle,
};
use std::collections::BTreeMap;

const KEY: &str = "s3cr3t-webhook-key-0123456789";
const CONNECTOR_USER: &str = "f0e1d2c3-2b7c-ef11-8409-000d3a4b7c21";

fn sample(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../events/webhook-intake/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn deps() -> IntakeDeps<InMemoryChangeQueue, StaticSecrets> {
    IntakeDeps {
        queue: InMemoryChangeQueue::new(),
        secrets: StaticSecrets::new()
            .with("crc/connector", &format!(r#"{{"webhook_key":"{KEY}"}}"#)),
        settings: IntakeSettings {
            key_secret: "crc/connector".into(),
            key_field: Some("webhook_key".into()),
            expected_organization: None,
            connector_user_id: Some(CONNECTOR_USER.into()),
        },
    }
}

fn request(body: Vec<u8>, key: Option<&str>) -> WebhookRequest {
    WebhookRequest {
        query: key
            .map(|k| vec![("code".to_string(), k.to_string())])
            .unwrap_or_default(),
        headers: BTreeMap::new(),
        body,
    }
}

async fn deliver(
    deps: &IntakeDeps<InMemoryChangeQueue, StaticSecrets>,
    req: WebhookRequest,
) -> WebhookResponse {
    handle(&req, deps).await
}

#[tokio::test]
async fn a_contact_update_with_the_right_key_is_queued_on_the_contact_queue() {
    let deps = deps();
    let resp = deliver(&deps, request(sample("contact-update.json"), Some(KEY))).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let queued = deps.queue.pending();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].family, QueueFamily::Contact);
    assert_eq!(queued[0].event.message, CrmMessage::Update);
    assert_eq!(
        queued[0].event.record_id,
        "6d81597f-0f9f-e711-8122-000d3aa2331c"
    );
    assert_eq!(resp.body["queue"], "contact");
}

#[tokio::test]
async fn the_key_may_come_in_the_http_header_instead_of_the_query() {
    let deps = deps();
    let mut req = request(sample("list-addmember.json"), None);
    req.headers.insert("x-crc-webhook-key".into(), KEY.into());
    let resp = deliver(&deps, req).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    assert_eq!(deps.queue.pending()[0].family, QueueFamily::MarketingList);
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_refused_and_nothing_is_queued() {
    let deps = deps();
    for key in [Some("wrong"), Some(""), Some(&KEY[..KEY.len() - 1]), None] {
        let resp = deliver(&deps, request(sample("contact-update.json"), key)).await;
        assert_eq!(resp.status, 401, "key {key:?}");
        assert!(!resp.body.to_string().contains(KEY));
    }
    assert!(deps.queue.is_empty());
}

#[tokio::test]
async fn a_malformed_body_is_refused_with_the_reason_and_nothing_is_queued() {
    let deps = deps();
    for (file, reason) in [
        ("malformed-not-json.json", "not JSON"),
        ("malformed-missing-primaryentityid.json", "PrimaryEntityId"),
        ("malformed-bad-guid.json", "GUID"),
    ] {
        let resp = deliver(&deps, request(sample(file), Some(KEY))).await;
        assert_eq!(resp.status, 400, "{file}");
        let detail = resp.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(reason), "{file}: {detail}");
    }
    assert!(deps.queue.is_empty());
}

#[tokio::test]
async fn a_change_to_an_entity_of_no_interest_is_acknowledged_and_not_queued() {
    let deps = deps();
    let body = String::from_utf8(sample("contact-update.json"))
        .unwrap()
        .replace(
            "\"PrimaryEntityName\": \"contact\"",
            "\"PrimaryEntityName\": \"incident\"",
        );
    let resp = deliver(&deps, request(body.into_bytes(), Some(KEY))).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["outcome"], "ignored");
    assert!(deps.queue.is_empty());
}

#[tokio::test]
async fn the_connectors_own_writes_are_acknowledged_and_not_queued() {
    let deps = deps();
    let resp = deliver(
        &deps,
        request(sample("contact-update-by-connector.json"), Some(KEY)),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body["outcome"], "ignored");
    assert!(deps.queue.is_empty());
}

#[tokio::test]
async fn a_delivery_dataverse_repeats_is_queued_once() {
    let deps = deps();
    for _ in 0..3 {
        let resp = deliver(&deps, request(sample("contact-update.json"), Some(KEY))).await;
        assert_eq!(resp.status, 202);
    }
    assert_eq!(deps.queue.pending().len(), 1);
}

#[tokio::test]
async fn an_unreachable_queue_answers_503_so_that_dataverse_retries() {
    let deps = deps();
    deps.queue.set_unavailable(true);
    let resp = deliver(&deps, request(sample("contact-update.json"), Some(KEY))).await;
    assert_eq!(resp.status, 503);
    deps.queue.set_unavailable(false);
    let resp = deliver(&deps, request(sample("contact-update.json"), Some(KEY))).await;
    assert_eq!(resp.status, 202, "the retry is accepted");
    assert_eq!(deps.queue.pending().len(), 1);
}

#[tokio::test]
async fn an_unreadable_webhook_key_answers_503_and_queues_nothing() {
    let deps = deps();
    deps.secrets.remove("crc/connector");
    let resp = deliver(&deps, request(sample("contact-update.json"), Some(KEY))).await;
    assert_eq!(resp.status, 503);
    assert!(deps.queue.is_empty());
}

#[tokio::test]
async fn a_webhook_from_another_organisation_is_refused() {
    let mut deps = deps();
    deps.settings.expected_organization = Some("contoso.crm4.dynamics.com".into());
    let mut req = request(sample("contact-update.json"), Some(KEY));
    req.headers.insert(
        "x-ms-dynamics-organization".into(),
        "fabrikam.crm.dynamics.com".into(),
    );
    assert_eq!(deliver(&deps, req.clone()).await.status, 403);
    req.headers.insert(
        "x-ms-dynamics-organization".into(),
        "Contoso.crm4.dynamics.com".into(),
    );
    assert_eq!(deliver(&deps, req).await.status, 202);
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_queued_for_a_full_re_read() {
    let deps = deps();
    let mut req = request(sample("contact-update-size-exceeded.json"), Some(KEY));
    req.headers
        .insert("x-ms-dynamics-msg-size-exceeded".into(), "".into());
    let resp = deliver(&deps, req).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let event = &deps.queue.pending()[0].event;
    assert!(event.size_exceeded);
    assert!(event.target.is_empty());
}

mod function_url {
    //! The Lambda side: a function URL event (as Lambda hands it to `lambda_http`) becomes the
    //! same request the handler understands, whether the body arrives as text or base64.

    use super::*;
    use shared::handlers::webhook_intake::lambda::to_webhook_request;

    const LOCAL_KEY: &str = "local-webhook-key-5f0c2f6e9a7b4d1c";

    fn event(name: &str) -> lambda_http::Request {
        let path = format!(
            "{}/../events/webhook-intake/function-url/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn local_deps() -> IntakeDeps<InMemoryChangeQueue, StaticSecrets> {
        let mut deps = deps();
        deps.secrets = StaticSecrets::new().with(
            "crc/connector",
            &format!(r#"{{"webhook_key":"{LOCAL_KEY}"}}"#),
        );
        deps
    }

    #[tokio::test]
    async fn a_function_url_event_is_queued_with_its_query_key_headers_and_body() {
        for file in [
            "contact-update.json",
            "contact-update-base64.json",
            "contact-update-header-key.json",
        ] {
            let deps = local_deps();
            let request = to_webhook_request(&event(file));
            assert_eq!(
                request
                    .headers
                    .get("x-ms-dynamics-organization")
                    .map(String::as_str),
                Some("contoso.crm4.dynamics.com"),
                "{file}"
            );
            let resp = handle(&request, &deps).await;
            assert_eq!(resp.status, 202, "{file}: {}", resp.body);
            assert_eq!(deps.queue.pending().len(), 1, "{file}");
        }
    }

    #[tokio::test]
    async fn a_function_url_event_with_a_wrong_key_is_refused() {
        let deps = local_deps();
        let resp = handle(&to_webhook_request(&event("wrong-key.json")), &deps).await;
        assert_eq!(resp.status, 401);
        assert!(deps.queue.is_empty());
    }
}

/// An AddListMembers body naming `n` members (Dataverse sends up to 256 KB of body).
fn add_list_members(n: usize) -> Vec<u8> {
    let mut body: serde_json::Value =
        serde_json::from_slice(&sample("list-addlistmembers.json")).unwrap();
    let ids: Vec<String> = (0..n)
        .map(|i| format!("{i:08x}-6b7c-ef11-8409-000d3a4b7c21"))
        .collect();
    for parameter in body["InputParameters"].as_array_mut().unwrap() {
        if parameter["key"] == "MemberIds" {
            parameter["value"] = serde_json::json!(ids);
        }
    }
    serde_json::to_vec(&body).unwrap()
}

#[tokio::test]
async fn a_change_too_large_for_a_queue_message_is_queued_without_its_members_for_a_full_read() {
    let deps = deps();
    let body = add_list_members(5_000);
    assert!(
        body.len() < 256_000,
        "Dataverse sends it: {} bytes",
        body.len()
    );
    let resp = deliver(&deps, request(body, Some(KEY))).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let queued = deps.queue.pending();
    assert_eq!(queued.len(), 1, "one message");
    let event = &queued[0].event;
    assert!(event.size_exceeded, "the worker re-reads the list");
    assert!(event.related.is_empty());
    assert_eq!(event.message, CrmMessage::AddListMembers);
    assert_eq!(event.record_id, "c1d2e3f4-5a6b-ef11-8409-000d3a4b7c21");
    let bytes = serde_json::to_vec(event).unwrap().len();
    assert!(
        bytes <= shared::handlers::webhook_intake::MAX_QUEUED_CHANGE_BYTES,
        "{bytes} bytes"
    );
}

#[tokio::test]
async fn a_change_that_fits_keeps_its_named_members() {
    let deps = deps();
    let resp = deliver(&deps, request(add_list_members(1_000), Some(KEY))).await;
    assert_eq!(resp.status, 202, "{}", resp.body);
    let event = &deps.queue.pending()[0].event;
    assert!(!event.size_exceeded);
    assert_eq!(event.related.len(), 1_000);
}
