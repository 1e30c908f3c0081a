//! Function `lead-sync`: on a schedule, receivers who signed up in CleverReach and are not in
//! the CRM become leads.

use lambda_runtime::{Error, run, service_fn};
use shared::handlers::receiver_state_sync::{JobDeps, lambda, limits_from_env};
use shared::sync::backflow::Job;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let config = shared::config::Config::from_env()?;
    let aws = shared::bootstrap::aws().await;
    let deps = JobDeps {
        conn: shared::bootstrap::connector(&config, &aws).await?,
        limits: limits_from_env()?,
    };
    run(service_fn(|event| lambda::run(event, &deps, Job::LeadSync))).await
}
