//! Function `receiver-state-sync`: on a schedule, unsubscribes and bounces from CleverReach
//! back into the CRM (receiver-state rows, checklists, deactivations).

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
    run(service_fn(|event| {
        lambda::run(event, &deps, Job::ReceiverState)
    }))
    .await
}
