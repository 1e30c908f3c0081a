//! Wiring for the Lambda functions: configuration from the environment, secrets from Secrets
//! Manager, adapters built once per cold start. `main` of each function calls one of these.

use crate::adapters::cleverreach::{CleverReachClient, CleverReachConfig};
use crate::adapters::dataverse::client::{DataverseClient, DataverseConfig};
use crate::adapters::dataverse::crm::DataverseCrm;
use crate::adapters::secrets_manager::{SecretsManagerSource, SecretsManagerTokenStore};
use crate::adapters::sqs::{QueueUrls, SqsChangeQueue};
use crate::config::{Config, secret_fields};
use crate::domain::routing::QueueFamily;
use crate::handlers::sync_worker::WorkerDeps;
use crate::handlers::webhook_intake::{IntakeDeps, IntakeSettings};
use crate::ports::SecretSource;
use crate::sync::Connector;
use aws_config::BehaviorVersion;

/// The tag the connector puts on its own CRM writes (`?tag=`), visible in webhook bodies.
pub const WRITE_TAG: &str = "crc-connector";

/// Why a function could not start (logged by the runtime as an init error).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Secret(#[from] crate::ports::SecretError),
    #[error("{0}")]
    Adapter(String),
}

fn url(name: &str, text: &str) -> Result<url::Url, StartError> {
    url::Url::parse(text).map_err(|e| StartError::Adapter(format!("{name} {text:?}: {e}")))
}

/// AWS SDK configuration from the environment (`AWS_ENDPOINT_URL` reaches an emulator).
pub async fn aws() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// The connector (Dataverse + CleverReach) as a worker uses it.
pub async fn connector(
    config: &Config,
    aws: &aws_config::SdkConfig,
) -> Result<Connector<SecretsManagerTokenStore>, StartError> {
    let secrets_client = aws_sdk_secretsmanager::Client::new(aws);
    let secrets = SecretsManagerSource::new(secrets_client.clone());
    let dataverse_secret = secrets
        .secret(
            &config.connector_secret_id,
            Some(secret_fields::DATAVERSE_CLIENT_SECRET),
        )
        .await?;
    let cleverreach_secret = secrets
        .secret(
            &config.connector_secret_id,
            Some(secret_fields::CLEVERREACH_CLIENT_SECRET),
        )
        .await?;
    let dataverse = DataverseClient::new(DataverseConfig {
        write_tag: Some(WRITE_TAG.to_string()),
        ..DataverseConfig::new(
            url("DATAVERSE_API_URL", &config.dataverse_api_url)?,
            url("DATAVERSE_TOKEN_URL", &config.dataverse_token_url)?,
            config.dataverse_client_id.clone(),
            dataverse_secret,
            config.dataverse_scope.clone(),
        )
    })
    .map_err(|e| StartError::Adapter(e.to_string()))?;
    let organisation = config
        .dataverse_url
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let newsletter = CleverReachClient::new(
        CleverReachConfig::new(
            url("CLEVERREACH_API_URL", &config.cleverreach_api_url)?,
            config.cleverreach_client_id.clone(),
            cleverreach_secret,
            format!("Dynamics 365 ({organisation})"),
        ),
        SecretsManagerTokenStore::new(secrets_client, config.cleverreach_token_secret_id.clone()),
    )
    .map_err(|e| StartError::Adapter(e.to_string()))?;
    Ok(Connector::new(DataverseCrm::new(dataverse), newsletter))
}

/// Everything the worker of one queue family needs.
pub async fn worker_deps(
    family: QueueFamily,
) -> Result<WorkerDeps<SecretsManagerTokenStore>, StartError> {
    let config = Config::from_env()?;
    let aws = aws().await;
    let deps = WorkerDeps::new(family, connector(&config, &aws).await?);
    // The marketing-list worker queues the campaign and activity resyncs a deleted list needs,
    // when the deployment gives it those queues (the SAM template does).
    let mut urls = QueueUrls::new();
    let mut any = false;
    if family == QueueFamily::MarketingList {
        for target in [QueueFamily::Campaign, QueueFamily::CampaignActivity] {
            if let Some(url) = config.queue_urls.get(target.name()) {
                urls = urls.with(target, url.clone());
                any = true;
            }
        }
    }
    Ok(if any {
        deps.with_follow_up(std::sync::Arc::new(SqsChangeQueue::new(
            aws_sdk_sqs::Client::new(&aws),
            urls,
        )))
    } else {
        deps
    })
}

/// Everything the webhook intake needs.
pub async fn intake_deps() -> Result<IntakeDeps<SqsChangeQueue, SecretsManagerSource>, StartError> {
    let config = Config::from_env()?;
    let aws = aws().await;
    let mut urls = QueueUrls::new();
    for family in QueueFamily::ALL {
        if let Some(url) = config.queue_urls.get(family.name()) {
            urls = urls.with(family, url.clone());
        }
    }
    // A list update that turns retroactive sync on also goes to the fan-out's queue.
    if let Some(url) = crate::config::queue_url(QueueFamily::RetroactiveSync) {
        urls = urls.with(QueueFamily::RetroactiveSync, url);
    }
    Ok(IntakeDeps {
        queue: SqsChangeQueue::new(aws_sdk_sqs::Client::new(&aws), urls),
        secrets: SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&aws)),
        settings: IntakeSettings {
            key_secret: config.connector_secret_id.clone(),
            key_field: Some(secret_fields::WEBHOOK_KEY.to_string()),
            expected_organization: config.expected_organization.clone(),
            connector_user_id: config.connector_user_id.clone(),
        },
    })
}

/// Everything the connect page needs: the CleverReach client (tokens in Secrets Manager) and
/// the administrator key. `CONNECT_PUBLIC_URL` fixes the page's address when the function URL
/// sits behind another name; otherwise the request's host is used.
pub async fn connect_deps()
-> Result<crate::handlers::connect::ConnectDeps<SecretsManagerTokenStore>, StartError> {
    let config = Config::from_env()?;
    let aws = aws().await;
    let connector = connector(&config, &aws).await?;
    let secrets = SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&aws));
    // The SAM template keeps the key in a secret of its own (`CONNECT_ADMIN_SECRET_ID`, the
    // whole secret is the key); without it, a field of the connector secret.
    let admin_key = match std::env::var("CONNECT_ADMIN_SECRET_ID") {
        Ok(id) if !id.trim().is_empty() => secrets.secret(id.trim(), None).await?,
        _ => {
            secrets
                .secret(
                    &config.connector_secret_id,
                    Some(secret_fields::CONNECT_ADMIN_KEY),
                )
                .await?
        }
    };
    let public_url = std::env::var("CONNECT_PUBLIC_URL")
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    Ok(crate::handlers::connect::ConnectDeps {
        newsletter: connector.newsletter,
        admin_key,
        settings: crate::handlers::connect::ConnectSettings { public_url },
    })
}

/// Everything the `resync` function needs: the CRM (to list sources) and the queues.
pub async fn resync_deps() -> Result<crate::handlers::resync::ResyncDeps<SqsChangeQueue>, StartError>
{
    let config = Config::from_env()?;
    let aws = aws().await;
    let mut urls = QueueUrls::new();
    for family in QueueFamily::ALL {
        if let Some(url) = config.queue_urls.get(family.name()) {
            urls = urls.with(family, url.clone());
        }
    }
    let connector = connector(&config, &aws).await?;
    Ok(crate::handlers::resync::ResyncDeps {
        crm: connector.crm,
        queue: SqsChangeQueue::new(aws_sdk_sqs::Client::new(&aws), urls),
    })
}

/// Everything `sublist-fanout` and `sublist-update` need: the connector and the two
/// retroactive-sync queues (`RETROACTIVE_SYNC_QUEUE_URL`, `SUBLIST_QUEUE_URL`).
pub async fn retroactive_deps() -> Result<
    crate::handlers::retroactive::RetroactiveDeps<
        SecretsManagerTokenStore,
        crate::adapters::sqs::SqsMessageQueue,
    >,
    StartError,
> {
    let config = Config::from_env()?;
    let aws = aws().await;
    let mut urls = QueueUrls::new();
    for family in QueueFamily::RETROACTIVE {
        let url = crate::config::queue_url(family).ok_or_else(|| {
            StartError::Adapter(format!(
                "environment variable {} is not set",
                family.queue_url_variable()
            ))
        })?;
        urls = urls.with(family, url);
    }
    Ok(crate::handlers::retroactive::RetroactiveDeps::new(
        connector(&config, &aws).await?,
        crate::adapters::sqs::SqsMessageQueue::new(aws_sdk_sqs::Client::new(&aws), urls),
    ))
}
