//! Function `webhook-intake`: Dataverse webhooks in (function URL), CRM changes out to the
//! FIFO queue of their entity family.

use lambda_http::{Error, run, service_fn};
use shared::handlers::webhook_intake::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::intake_deps().await?;
    run(service_fn(|request| lambda::run(request, &deps))).await
}
