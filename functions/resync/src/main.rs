//! Function `resync`: queues a full reconcile of every source with sync on (one message per
//! source on its family's queue). Event `{}` for all kinds, `{"kind": "list"}` for one.

use lambda_runtime::{Error, run, service_fn};
use shared::handlers::resync::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::resync_deps().await?;
    run(service_fn(|event| lambda::run(event, &deps))).await
}
