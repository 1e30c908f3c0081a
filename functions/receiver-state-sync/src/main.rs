//! Function `receiver-state-sync`: on a schedule, unsubscribes and bounces from CleverReach
//! back into the CRM (receiver-state rows, checklists, deactivations).

use lambda_runtime::{Error, run, service_fn};
use shared::handlers::receiver_state_sync::lambda;
use shared::usecases::backflow::Job;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::job_deps().await?;
    run(service_fn(|event| {
        lambda::run(event, &deps, Job::ReceiverState)
    }))
    .await
}
