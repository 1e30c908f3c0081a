//! The sandbox on its own: the Dataverse and CleverReach simulators on 127.0.0.1, in the
//! foreground until Ctrl-C. Ports from `DATAVERSE_PORT` (8801) and `CLEVERREACH_PORT` (8802).
//! Prints one JSON line with the endpoints and the sandbox credentials.

use sandbox::cleverreach::{CleverReachSim, CleverReachSimConfig};
use sandbox::dataverse::{self, DataverseSim, DataverseSimConfig};
use std::net::SocketAddr;

fn port(variable: &str, default: u16) -> Result<u16, String> {
    match std::env::var(variable) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| format!("{variable}={value:?} is not a port number")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let dataverse_port = port("DATAVERSE_PORT", 8801)?;
    let cleverreach_port = port("CLEVERREACH_PORT", 8802)?;
    let dataverse = DataverseSim::spawn(DataverseSimConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], dataverse_port)),
        ..DataverseSimConfig::default()
    })
    .await?;
    let cleverreach = CleverReachSim::spawn(CleverReachSimConfig {
        bind: SocketAddr::from(([127, 0, 0, 1], cleverreach_port)),
        ..CleverReachSimConfig::default()
    })
    .await?;
    let defaults = CleverReachSimConfig::default();
    println!(
        "{}",
        serde_json::json!({
            "dataverse": {
                "api_url": dataverse.api_url(),
                "token_url": dataverse.token_url(),
                "scope": format!("{}/.default", dataverse.resource()),
                "admin": { "client_id": dataverse::ADMIN_CLIENT_ID, "client_secret": dataverse::ADMIN_CLIENT_SECRET },
                "connector": { "client_id": dataverse::CONNECTOR_CLIENT_ID, "client_secret": dataverse::CONNECTOR_CLIENT_SECRET, "user_id": dataverse::CONNECTOR_USER_ID },
                "faults": format!("{}/_sim/faults", dataverse.base_url()),
            },
            "cleverreach": {
                "base_url": cleverreach.base_url(),
                "client_id": defaults.client_id,
                "client_secret": defaults.client_secret,
                "state": format!("{}_sim/state", cleverreach.base_url()),
                "faults": format!("{}_sim/faults", cleverreach.base_url()),
            },
        })
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
