//! Wiring for the Lambda functions (the composition root): the environment read once
//! (`config`), secrets from Secrets Manager (each function reads only the secrets it uses),
//! adapters built once per cold start. `main` of each function calls one of these.

use crate::adapters::cleverreach::{CleverReachClient, CleverReachConfig};
use crate::adapters::dataverse::client::{DataverseClient, DataverseConfig};
use crate::adapters::dataverse::crm::DataverseCrm;
use crate::adapters::dynamodb::DynamoFailureLog;
use crate::adapters::secrets_manager::{
    SecretsManagerHookStore, SecretsManagerSessionStore, SecretsManagerSource,
    SecretsManagerTokenStore,
};
use crate::adapters::sqs::{SqsChangeQueue, SqsMessageQueue};
use crate::config::{
    BackflowLimits, CleverReachSettings, ConnectConfig, DataverseSettings, Env, HooksConfig,
    IntakeConfig, QueueUrls,
};
use crate::domain::routing::QueueFamily;
use crate::handlers::cleverreach_events::{EndpointDeps, WorkerDeps as EventsWorkerDeps};
use crate::handlers::connect::session::PageAccess;
use crate::handlers::connect::{ConnectDeps, ConnectSettings};
use crate::handlers::receiver_state_sync::{JobDeps, limits};
use crate::handlers::resync::ResyncDeps;
use crate::handlers::retroactive::RetroactiveDeps;
use crate::handlers::sync_worker::WorkerDeps;
use crate::handlers::webhook_intake::{IntakeDeps, IntakeSettings};
use crate::metrics::{CallMeters, StdoutEmf};
use crate::ports::failures::FailureLog;
use crate::ports::newsletter::HookRegistry;
use crate::ports::queue::ChangeQueue;
use crate::ports::secrets::SecretSource;
use crate::usecases::Connector;
use crate::usecases::hooks::Hooks;
use aws_config::BehaviorVersion;
use std::sync::Arc;

/// The tag the connector puts on its own CRM writes (`?tag=`), visible in webhook bodies.
pub const WRITE_TAG: &str = "crc-connector";

/// Why a function could not start (logged by the runtime as an init error).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Secret(#[from] crate::ports::secrets::SecretError),
    #[error("{0}")]
    Adapter(String),
    /// A secret the template creates empty and an administrator has not filled in yet.
    #[error("the secret {0} is empty: put its value into it (see docs/deploy.md, secrets)")]
    EmptySecret(String),
}

fn url(name: &str, text: &str) -> Result<url::Url, StartError> {
    url::Url::parse(text).map_err(|e| StartError::Adapter(format!("{name} {text:?}: {e}")))
}

/// What every function starts from: the environment and the AWS SDK configuration
/// (`AWS_ENDPOINT_URL` reaches an emulator).
pub struct Start {
    pub env: Env,
    pub aws: aws_config::SdkConfig,
}

impl Start {
    pub async fn new() -> Start {
        Start {
            env: Env::capture(),
            aws: aws_config::defaults(BehaviorVersion::latest()).load().await,
        }
    }

    fn secrets(&self) -> SecretsManagerSource {
        SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&self.aws))
    }

    /// A secret whose whole value is what the function needs; a blank one stops the start with
    /// an error naming it (the template creates the client secrets blank).
    async fn required_secret(&self, id: &str) -> Result<crate::secret::Secret, StartError> {
        let value = self.secrets().secret(id, None).await?;
        if value.expose().trim().is_empty() {
            return Err(StartError::EmptySecret(id.to_string()));
        }
        Ok(value)
    }

    fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.aws)
    }

    /// The CRM, signed in with the connector's app registration.
    pub async fn crm(&self) -> Result<DataverseCrm, StartError> {
        let settings = DataverseSettings::from_env(&self.env)?;
        let secret = self.required_secret(&settings.client_secret_id).await?;
        let client = DataverseClient::new(DataverseConfig {
            write_tag: Some(WRITE_TAG.to_string()),
            max_concurrent_requests: settings.concurrent_requests,
            ..DataverseConfig::new(
                url("DATAVERSE_API_URL", &settings.api_url)?,
                url("DATAVERSE_TOKEN_URL", &settings.token_url)?,
                settings.client_id.clone(),
                secret,
                settings.scope.clone(),
            )
        })
        .map_err(|e| StartError::Adapter(e.to_string()))?;
        Ok(DataverseCrm::new(client))
    }

    /// CleverReach, with its tokens in Secrets Manager.
    pub async fn cleverreach(
        &self,
    ) -> Result<CleverReachClient<SecretsManagerTokenStore>, StartError> {
        let settings = CleverReachSettings::from_env(&self.env)?;
        let secret = self.required_secret(&settings.client_secret_id).await?;
        let tokens = SecretsManagerTokenStore::new(
            aws_sdk_secretsmanager::Client::new(&self.aws),
            settings.token_secret_id.clone(),
        );
        CleverReachClient::new(
            CleverReachConfig::new(
                url("CLEVERREACH_API_URL", &settings.api_url)?,
                settings.client_id.clone(),
                secret,
                settings.source.clone(),
            ),
            tokens,
        )
        .map_err(|e| StartError::Adapter(e.to_string()))
    }

    /// Both systems, as the use cases see them; with the event hooks when the deployment has
    /// them (`CLEVERREACH_HOOKS_SECRET_ID`, `CLEVERREACH_EVENTS_URL`).
    pub async fn connector(&self) -> Result<Connector, StartError> {
        let newsletter = self.cleverreach().await?;
        let hooks = self.hooks(Arc::new(newsletter.clone()))?;
        let conn = Connector::new(self.crm().await?, newsletter)
            .with_writes_in_flight(CleverReachSettings::from_env(&self.env)?.writes_in_flight);
        Ok(match hooks {
            Some(hooks) => conn.with_hooks(hooks),
            None => conn,
        })
    }

    fn hook_store(&self, secret_id: &str) -> Arc<SecretsManagerHookStore> {
        Arc::new(SecretsManagerHookStore::new(
            aws_sdk_secretsmanager::Client::new(&self.aws),
            secret_id,
        ))
    }

    /// The hooks, when configured; a secret without the URL to register is a setup error.
    fn hooks(&self, registry: Arc<dyn HookRegistry>) -> Result<Option<Hooks>, StartError> {
        let Some(config) = HooksConfig::from_env(&self.env)? else {
            return Ok(None);
        };
        let url = config
            .events_url
            .ok_or(crate::config::ConfigError::Missing(
                "CLEVERREACH_EVENTS_URL",
            ))?;
        Ok(Some(Hooks {
            registry,
            tokens: self.hook_store(&config.secret_id),
            url,
        }))
    }

    /// The person queues, for the reconcile a "no" written back by the back-flow asks for.
    fn people_queues(&self) -> Option<Arc<dyn ChangeQueue>> {
        let urls = self
            .queues()
            .only(&[QueueFamily::Contact, QueueFamily::Lead]);
        (!urls.is_empty())
            .then(|| Arc::new(SqsChangeQueue::new(self.sqs(), urls)) as Arc<dyn ChangeQueue>)
    }

    fn queues(&self) -> QueueUrls {
        QueueUrls::from_env(&self.env)
    }

    /// The failure log (`FAILURE_TABLE`), when the deployment has one.
    pub fn failure_log(&self) -> Option<Arc<dyn FailureLog>> {
        crate::config::failure_table(&self.env).map(|table| {
            Arc::new(DynamoFailureLog::new(
                aws_sdk_dynamodb::Client::new(&self.aws),
                table,
            )) as Arc<dyn FailureLog>
        })
    }
}

/// Everything the worker of one queue family needs.
pub async fn worker_deps(family: QueueFamily) -> Result<WorkerDeps, StartError> {
    let start = Start::new().await;
    let crm = Arc::new(start.crm().await?);
    let cleverreach = Arc::new(start.cleverreach().await?);
    let meters = CallMeters {
        dataverse: crm.clone(),
        cleverreach: cleverreach.clone(),
    };
    let writes = CleverReachSettings::from_env(&start.env)?.writes_in_flight;
    let hooks = start.hooks(cleverreach.clone())?;
    let mut conn = Connector::from_shared(crm, cleverreach).with_writes_in_flight(writes);
    if let Some(hooks) = hooks {
        // A source worker registers the hooks of the groups it creates or reuses.
        conn = conn.with_hooks(hooks);
    }
    let mut deps = WorkerDeps::new(family, conn).with_metrics(Arc::new(StdoutEmf), Some(meters));
    if let Some(log) = start.failure_log() {
        deps = deps.with_failure_log(log);
    }
    // A source worker continues a full reconcile its time limit cut short on its own queue;
    // the marketing-list worker also queues the campaign and activity resyncs a list change
    // needs. Each only when the deployment gives it those queues (the SAM template does).
    let follow_up = match family {
        QueueFamily::MarketingList => start.queues().only(&[
            QueueFamily::MarketingList,
            QueueFamily::Campaign,
            QueueFamily::CampaignActivity,
        ]),
        QueueFamily::Campaign | QueueFamily::CampaignActivity => start.queues().only(&[family]),
        _ => QueueUrls::new(),
    };
    Ok(if follow_up.is_empty() {
        deps
    } else {
        deps.with_follow_up(Arc::new(SqsChangeQueue::new(start.sqs(), follow_up)))
    })
}

/// Everything the webhook intake needs: the queues and its key, nothing of the CRM's or
/// CleverReach's secrets.
pub async fn intake_deps() -> Result<IntakeDeps<SqsChangeQueue, SecretsManagerSource>, StartError> {
    let start = Start::new().await;
    let config = IntakeConfig::from_env(&start.env)?;
    // A list update that turns retroactive sync on also goes to the fan-out's queue.
    let mut families = QueueFamily::ALL.to_vec();
    families.push(QueueFamily::RetroactiveSync);
    Ok(IntakeDeps {
        queue: SqsChangeQueue::new(start.sqs(), start.queues().only(&families)),
        secrets: start.secrets(),
        settings: IntakeSettings {
            key_secret: config.webhook_key_secret_id,
            key_field: None,
            expected_organization: config.expected_organization,
            connector_user_id: config.connector_user_id,
        },
    })
}

/// What the connect page's access is built from: the administrator key, re-read through the
/// secrets cache (a rotated key takes effect within minutes), and the shared session record.
pub type ConnectAccess = PageAccess<SecretsManagerSource, SecretsManagerSessionStore>;

/// Everything the connect page needs: CleverReach (tokens in Secrets Manager), the
/// administrator key and the session record; nothing of the CRM.
pub async fn connect_deps()
-> Result<ConnectDeps<SecretsManagerTokenStore, ConnectAccess>, StartError> {
    let start = Start::new().await;
    let config = ConnectConfig::from_env(&start.env)?;
    // The key must be there before the page can sign anyone in.
    start.required_secret(&config.admin_secret_id).await?;
    Ok(ConnectDeps {
        newsletter: start.cleverreach().await?,
        admin_key: PageAccess {
            keys: start.secrets(),
            key_secret_id: config.admin_secret_id,
            sessions: SecretsManagerSessionStore::new(
                aws_sdk_secretsmanager::Client::new(&start.aws),
                config.session_secret_id,
            ),
        },
        settings: ConnectSettings {
            public_url: config.public_url,
        },
        // With hooks deployed, a connect asks the events worker to register them at once.
        after_connect: start.queues().get(QueueFamily::CleverReachEvents).map(|_| {
            Arc::new(SqsMessageQueue::new(
                start.sqs(),
                start.queues().only(&[QueueFamily::CleverReachEvents]),
            )) as Arc<dyn crate::ports::queue::MessageQueue>
        }),
    })
}

/// Everything the `resync` function needs: the CRM (to list sources), the source queues, and
/// CleverReach for the orphan sweep.
pub async fn resync_deps() -> Result<ResyncDeps<SqsChangeQueue>, StartError> {
    let start = Start::new().await;
    let crm = Arc::new(start.crm().await?);
    let sweep = Connector::from_shared(crm.clone(), Arc::new(start.cleverreach().await?));
    Ok(ResyncDeps {
        sources: crm,
        queue: SqsChangeQueue::new(start.sqs(), start.queues().only(&QueueFamily::ALL)),
        sweep: Some(sweep),
    })
}

/// Everything `sublist-fanout` and `sublist-update` need: the connector and the two
/// retroactive-sync queues (`RETROACTIVE_SYNC_QUEUE_URL`, `SUBLIST_QUEUE_URL`).
pub async fn retroactive_deps() -> Result<RetroactiveDeps<SqsMessageQueue>, StartError> {
    let start = Start::new().await;
    let urls = start.queues().require(&QueueFamily::RETROACTIVE)?;
    let deps = RetroactiveDeps::new(
        start.connector().await?,
        SqsMessageQueue::new(start.sqs(), urls),
    );
    Ok(match start.failure_log() {
        Some(log) => deps.with_failure_log(log),
        None => deps,
    })
}

/// Everything a back-flow job needs: the connector (with the person queues, when given, so
/// that a "no" reaches every other group through the contact and lead workers) and its limits
/// (`BACKFLOW_*`).
pub async fn job_deps() -> Result<JobDeps, StartError> {
    let start = Start::new().await;
    let conn = start.connector().await?;
    Ok(JobDeps {
        limits: limits(BackflowLimits::from_env(&start.env)?),
        conn: match start.people_queues() {
            Some(queue) => conn.with_follow_up(queue),
            None => conn,
        },
    })
}

/// Everything `cleverreach-events` needs: the events queue and the hooks' tokens; nothing of
/// the CRM or of CleverReach's own credentials.
pub async fn events_endpoint_deps() -> Result<EndpointDeps<SqsMessageQueue>, StartError> {
    let start = Start::new().await;
    let config = HooksConfig::from_env(&start.env)?.ok_or(crate::config::ConfigError::Missing(
        "CLEVERREACH_HOOKS_SECRET_ID",
    ))?;
    let urls = start.queues().require(&[QueueFamily::CleverReachEvents])?;
    Ok(EndpointDeps::new(
        SqsMessageQueue::new(start.sqs(), urls),
        start.hook_store(&config.secret_id),
    ))
}

/// Everything `sync-cleverreach-events` needs: the connector with the hooks and the person
/// queues.
pub async fn events_worker_deps() -> Result<EventsWorkerDeps, StartError> {
    let start = Start::new().await;
    let conn = start.connector().await?;
    if conn.hooks.is_none() {
        return Err(crate::config::ConfigError::Missing("CLEVERREACH_HOOKS_SECRET_ID").into());
    }
    let conn = conn.with_settings_ttl(crate::handlers::sync_worker::SETTINGS_TTL);
    let queue = QueueFamily::CleverReachEvents.name();
    Ok(EventsWorkerDeps {
        conn: match start.people_queues() {
            Some(queue) => conn.with_follow_up(queue),
            None => conn,
        },
        failures: match start.failure_log() {
            Some(log) => crate::handlers::batch::FailureRecorder::new(queue, log),
            None => crate::handlers::batch::FailureRecorder::none(queue),
        },
    })
}
