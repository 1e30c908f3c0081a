//! The AWS emulator the tests talk to: whatever `AWS_ENDPOINT_URL` names (moto's server started
//! by `make test` / `.ci/run`, or LocalStack at `http://localhost:4566`).
//!
//! Without `AWS_ENDPOINT_URL` the AWS tests skip and say so, unless `REQUIRE_AWS_EMULATOR=1`
//! (set by `make test` and CI), where a missing emulator is a failure.

use aws_config::{BehaviorVersion, SdkConfig};

pub struct AwsEmulator {
    pub endpoint: String,
    pub config: SdkConfig,
}

/// The emulator, or `None` (with a note on stderr) when none is configured and none is required.
pub async fn emulator(test: &str) -> Option<AwsEmulator> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let Some(endpoint) = endpoint else {
        assert!(
            std::env::var("REQUIRE_AWS_EMULATOR").as_deref() != Ok("1"),
            "{test}: REQUIRE_AWS_EMULATOR=1 but AWS_ENDPOINT_URL is not set"
        );
        eprintln!("{test}: skipped, AWS_ENDPOINT_URL is not set (run it through `make test`)");
        return None;
    };
    // Emulators accept any credentials; set them only when the environment has none.
    if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        // SAFETY: tests set these before any SDK client reads them; the values are identical
        // in every thread that might race here.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        }
    }
    if std::env::var("AWS_REGION").is_err() {
        // SAFETY: as above.
        unsafe { std::env::set_var("AWS_REGION", "us-east-1") };
    }
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    Some(AwsEmulator { endpoint, config })
}

/// A name no other test run uses, so tests can share one emulator.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Creates one FIFO queue per family, each with a FIFO dead-letter queue after
/// `max_receive_count` receives, named `<prefix>-<family>.fifo` (as the SAM template does).
pub async fn create_fifo_queues(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    max_receive_count: u32,
) -> Result<crate::harness::SqsQueues, String> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    use shared::adapters::sqs::QueueUrls;
    use shared::domain::routing::QueueFamily;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut urls = QueueUrls::new();
    let mut dead = QueueUrls::new();
    for family in QueueFamily::ALL {
        let dlq = client
            .create_queue()
            .queue_name(format!("{prefix}-{}-dlq.fifo", family.name()))
            .attributes(A::FifoQueue, "true")
            .send()
            .await
            .map_err(|e| err(&aws_sdk_sqs::error::DisplayErrorContext(&e)))?
            .queue_url
            .ok_or("no queue url")?;
        let arn = client
            .get_queue_attributes()
            .queue_url(&dlq)
            .attribute_names(A::QueueArn)
            .send()
            .await
            .map_err(|e| err(&aws_sdk_sqs::error::DisplayErrorContext(&e)))?
            .attributes
            .and_then(|a| a.get(&A::QueueArn).cloned())
            .ok_or("no queue arn")?;
        let main = client
            .create_queue()
            .queue_name(format!("{prefix}-{}.fifo", family.name()))
            .attributes(A::FifoQueue, "true")
            .attributes(A::VisibilityTimeout, "30")
            .attributes(
                A::RedrivePolicy,
                format!(
                    r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{max_receive_count}"}}"#
                ),
            )
            .send()
            .await
            .map_err(|e| err(&aws_sdk_sqs::error::DisplayErrorContext(&e)))?
            .queue_url
            .ok_or("no queue url")?;
        urls = urls.with(family, main);
        dead = dead.with(family, dlq);
    }
    Ok(crate::harness::SqsQueues {
        client: client.clone(),
        urls,
        dead_letter_urls: dead,
    })
}
