//! Function `connect`: the CleverReach set-up page (function URL): sign in with the
//! administrator key, connect CleverReach (OAuth or client credentials), see the connection.

use lambda_http::{Error, run, service_fn};
use shared::handlers::connect::lambda;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init();
    let deps = shared::bootstrap::connect_deps().await?;
    run(service_fn(|request| lambda::run(request, &deps))).await
}
