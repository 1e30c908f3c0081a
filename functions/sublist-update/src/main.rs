//! Function `sublist-update`: works the sublist queue; writes one sublist's checklists with
//! `$batch`, then reconciles the affected groups (docs/architecture.md §5).

use lambda_runtime::{Error, run, service_fn};
use shared::handlers::retroactive::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::retroactive_deps().await?;
    run(service_fn(|event| lambda::run_sublists(event, &deps))).await
}
