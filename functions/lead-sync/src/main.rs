//! Function `lead-sync`: on a schedule, receivers who signed up in CleverReach and are not in
//! the CRM become leads.

use lambda_runtime::{Error, run, service_fn};
use shared::handlers::receiver_state_sync::lambda;
use shared::usecases::backflow::Job;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::job_deps().await?;
    run(service_fn(|event| lambda::run(event, &deps, Job::LeadSync))).await
}
