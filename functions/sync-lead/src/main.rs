//! Function `sync-lead`: works the lead queue; re-reads the CRM and reconciles CleverReach.

use lambda_runtime::{Error, run, service_fn};
use shared::domain::routing::QueueFamily;
use shared::handlers::sync_worker::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::worker_deps(QueueFamily::Lead).await?;
    run(service_fn(|event| lambda::run(event, &deps))).await
}
