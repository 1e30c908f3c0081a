//! Provisioning a simulated org as a real one is provisioned: the Dataverse simulator starts as
//! a plain org, and the installer's schema phase (`crc-install`, the same library code) creates
//! the connector's tables, columns, lookups, keys and roles through the metadata Web API, as
//! an administrator, and gives the connector's application user its role and field security
//! profile. The harness, `make demo`/`make up`, the benches and the simulator tests that need
//! `crc_` columns all go through here.

use crate::dataverse::{ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, CONNECTOR_USER_ID, DataverseSim};
use crc_install::SchemaPlan;
use shared::adapters::dataverse::client::{DataverseClient, DataverseConfig};
use shared::adapters::http::RetryPolicy;
use shared::secret::Secret;

/// Installs the connector's schema into the simulator (as its administrator).
pub async fn install_schema(sim: &DataverseSim) -> Result<SchemaPlan, String> {
    install_schema_at(
        &sim.api_url(),
        &sim.token_url(),
        &format!("{}/.default", sim.resource()),
        ADMIN_CLIENT_ID,
        ADMIN_CLIENT_SECRET,
    )
    .await
}

/// Installs the newsletter checklist (web resources, the main forms) into a simulator whose
/// schema is installed, as `crc-install` does (its forms phase, as an administrator).
pub async fn install_forms(sim: &DataverseSim) -> Result<crc_install::FormsPlan, String> {
    let client = admin_client(
        &sim.api_url(),
        &sim.token_url(),
        &format!("{}/.default", sim.resource()),
        ADMIN_CLIENT_ID,
        ADMIN_CLIENT_SECRET,
    )?;
    crc_install::install_forms(&client)
        .await
        .map_err(|e| format!("installing the newsletter checklist: {e}"))
}

fn admin_client(
    api_url: &str,
    token_url: &str,
    scope: &str,
    client_id: &str,
    client_secret: &str,
) -> Result<DataverseClient, String> {
    let url = |text: &str| url::Url::parse(text).map_err(|e| format!("{text}: {e}"));
    DataverseClient::new(DataverseConfig {
        retry: RetryPolicy::fast(),
        ..DataverseConfig::new(
            url(api_url)?,
            url(token_url)?,
            client_id,
            Secret::new(client_secret),
            scope,
        )
    })
    .map_err(|e| e.to_string())
}

/// The same against a simulator in another process (its endpoints and administrator).
pub async fn install_schema_at(
    api_url: &str,
    token_url: &str,
    scope: &str,
    client_id: &str,
    client_secret: &str,
) -> Result<SchemaPlan, String> {
    let client = admin_client(api_url, token_url, scope, client_id, client_secret)?;
    crc_install::install_schema(&client, Some(CONNECTOR_USER_ID))
        .await
        .map_err(|e| format!("installing the connector's schema: {e}"))
}
