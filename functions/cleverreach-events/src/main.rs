//! Function `cleverreach-events`: CleverReach's event hooks in (function URL): the
//! registration handshake, and deliveries checked against their call token and queued.

use lambda_http::{Error, run, service_fn};
use shared::handlers::cleverreach_events::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::events_endpoint_deps().await?;
    run(service_fn(|request| lambda::receive(request, &deps))).await
}
