//! Function `sync-campaign-activity`: works the campaign-activity FIFO queue (the intake sends to it through `CAMPAIGN_ACTIVITY_QUEUE_URL`); re-reads the CRM and reconciles CleverReach.

use lambda_runtime::{Error, run, service_fn};
use shared::domain::routing::QueueFamily;
use shared::handlers::sync_worker::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::worker_deps(QueueFamily::CampaignActivity).await?;
    run(service_fn(|event| lambda::run(event, &deps))).await
}
