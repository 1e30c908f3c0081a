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
