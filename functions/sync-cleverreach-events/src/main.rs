//! Function `sync-cleverreach-events`: works the queued CleverReach events (an unsubscribe
//! becomes "no" in the CRM and a person reconcile, a sign-up a lead) and registration checks.

use lambda_runtime::{Error, run, service_fn};
use shared::handlers::cleverreach_events::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::events_worker_deps().await?;
    run(service_fn(|event| lambda::work(event, &deps))).await
}
