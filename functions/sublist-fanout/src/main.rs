//! Function `sublist-fanout`: works the retroactive-sync queue; pages through a marketing list's
//! members and queues one message per sublist (docs/architecture.md §5).

use lambda_runtime::{Error, run, service_fn};
use shared::handlers::retroactive::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::retroactive_deps().await?;
    run(service_fn(|event| lambda::run_fanout(event, &deps))).await
}
