//! Logging: `tracing` with JSON output in Lambda (`AWS_LAMBDA_LOG_FORMAT=JSON`, set by the
//! template), plain text locally; the level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`.

/// Installs the subscriber once per process.
pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
}
