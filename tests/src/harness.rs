//! The connector running locally: both simulators, the webhook intake on an HTTP port, a queue
//! and every worker, in one process. End-to-end tests and `make demo` drive it through the
//! Dataverse simulator's Web API and look at the CleverReach simulator.

use crate::cleverreach::{CleverReachSim, CleverReachSimConfig};
use crate::dataverse::{
    CONNECTOR_CLIENT_ID, CONNECTOR_CLIENT_SECRET, CONNECTOR_USER_ID, DataverseSim,
    DataverseSimConfig, WebApi,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use shared::adapters::cleverreach::{CleverReachClient, CleverReachConfig, InMemoryTokenStore};
use shared::adapters::dataverse::client::{DataverseClient, DataverseConfig};
use shared::adapters::dataverse::crm::DataverseCrm;
use shared::adapters::http::RetryPolicy;
use shared::adapters::memory::{
    InMemoryChangeQueue, InMemoryHookStore, InMemoryMessageQueue, QueuedChange, QueuedMessage,
    StaticSecrets,
};
use shared::adapters::sqs::{QueueUrls, SqsChangeQueue};
use shared::domain::change::ChangeEvent;
use shared::domain::routing::QueueFamily;
use shared::handlers::cleverreach_events::{
    self, EndpointDeps, EventRequest, WorkerDeps as EventsWorkerDeps,
};
use shared::handlers::retroactive::{RetroactiveDeps, handle_fanout, handle_sublists};
use shared::handlers::sync_worker::{InboundMessage, WorkerDeps, handle_messages};
use shared::handlers::webhook_intake::{IntakeDeps, IntakeSettings, WebhookRequest, handle};
use shared::ports::ChangeQueue;
use shared::secret::Secret;
use shared::usecases::Connector;
use shared::usecases::hooks::Hooks;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;

pub type TokenStore = Arc<InMemoryTokenStore>;

/// The webhook key the local intake expects.
pub const WEBHOOK_KEY: &str = "local-webhook-key-5f0c2f6e9a7b4d1c";
/// Deliveries of one message before it is parked as a dead letter (as SQS maxReceiveCount).
pub const MAX_RECEIVE_COUNT: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("could not start: {0}")]
    Start(String),
    #[error("the queues did not drain after {0} rounds")]
    NotSettled(usize),
    #[error("queue: {0}")]
    Queue(String),
}

/// A message that failed `MAX_RECEIVE_COUNT` times.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub change: QueuedChange,
}

pub struct Harness {
    pub dataverse: DataverseSim,
    pub cleverreach: CleverReachSim,
    /// A person changing CRM data through the Web API.
    pub admin: WebApi,
    /// The local queue (always there; unused when the run goes through SQS).
    pub queue: Arc<InMemoryChangeQueue>,
    /// SQS queues when the run goes through an AWS endpoint (LocalStack, moto).
    pub sqs: Option<SqsQueues>,
    pub intake_url: String,
    workers: Vec<WorkerDeps>,
    /// The connector's own CRM client (what the installer and the harness's helpers use).
    crm_client: DataverseClient,
    /// The connector's CleverReach client (shared by every worker).
    newsletter: CleverReachClient<TokenStore>,
    /// `sublist-fanout` and `sublist-update` (docs/architecture.md §5); their limits may be changed.
    pub retroactive: RetroactiveDeps<Arc<InMemoryMessageQueue>>,
    /// The local retroactive-sync queues (follow-ups, sublists, reconciles).
    pub retroactive_queue: Arc<InMemoryMessageQueue>,
    retroactive_log: Mutex<RetroactiveLog>,
    receive_counts: Mutex<HashMap<String, u32>>,
    dead_letters: Mutex<Vec<DeadLetter>>,
    intake: tokio::task::JoinHandle<()>,
    /// CleverReach's event hooks, when the options ask for them.
    pub events: Option<EventsSide>,
    /// Batches worked at once per queue (each by its own "instance" of the worker).
    workers_per_queue: usize,
    invocation_time: Option<std::time::Duration>,
}

/// The event hooks' side: the `cleverreach-events` endpoint on a local port, its queue, the
/// tokens' store and the `sync-cleverreach-events` worker.
pub struct EventsSide {
    /// The endpoint's URL, as registered with CleverReach.
    pub url: String,
    pub tokens: Arc<InMemoryHookStore>,
    pub queue: Arc<InMemoryMessageQueue>,
    pub worker: EventsWorkerDeps,
    /// Deliveries that failed `MAX_RECEIVE_COUNT` times.
    pub dead_letters: Mutex<Vec<QueuedMessage>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.intake.abort();
        if let Some(events) = &self.events {
            events.server.abort();
        }
    }
}

type Endpoint = Arc<EndpointDeps<Arc<InMemoryMessageQueue>>>;

async fn events_route(
    State(deps): State<Endpoint>,
    method: axum::http::Method,
    QueryParams(query): QueryParams<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let request = EventRequest {
        method: method.as_str().to_string(),
        query,
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().ok()?.to_string(),
                ))
            })
            .collect(),
        body: body.to_vec(),
    };
    let answer = cleverreach_events::receive(&request, &deps).await;
    (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [(axum::http::header::CONTENT_TYPE, answer.content_type)],
        answer.body,
    )
}

type Intake = Arc<IntakeDeps<Arc<dyn ChangeQueue>, StaticSecrets>>;

/// SQS FIFO queues (one per family) and their dead-letter queues.
#[derive(Clone)]
pub struct SqsQueues {
    pub client: aws_sdk_sqs::Client,
    pub urls: QueueUrls,
    pub dead_letter_urls: QueueUrls,
}

/// Where the run's changes travel.
#[derive(Clone, Default)]
pub struct HarnessOptions {
    /// Address of the webhook intake (`127.0.0.1:0` when unset).
    pub intake_bind: Option<std::net::SocketAddr>,
    /// Go through these SQS queues instead of the local queue.
    pub sqs: Option<SqsQueues>,
    /// CleverReach's event hooks: the endpoint served locally, registrations made by the
    /// workers, deliveries worked by `settle` (off by default: most tests count calls).
    pub hooks: bool,
    /// Batches worked at once per queue, as several instances of a worker would (0 or 1: one
    /// at a time). Messages of one message group never run in two batches at once, as SQS FIFO
    /// guarantees.
    pub workers_per_queue: usize,
    /// Each worker batch runs as an invocation with this much time (its deadline and margins
    /// as in Lambda, `shared::deadline`); none: no time limit.
    pub invocation_time: Option<std::time::Duration>,
}

async fn intake_route(
    State(deps): State<Intake>,
    QueryParams(query): QueryParams<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let request = WebhookRequest {
        query,
        headers: headers
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().ok()?.to_string(),
                ))
            })
            .collect::<BTreeMap<_, _>>(),
        body: body.to_vec(),
    };
    let response = handle(&request, &deps).await;
    (
        StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(response.body),
    )
}

fn url(text: &str) -> Result<url::Url, HarnessError> {
    url::Url::parse(text).map_err(|e| HarnessError::Start(format!("{text}: {e}")))
}

impl Harness {
    /// Starts everything on free local ports.
    pub async fn start() -> Result<Harness, HarnessError> {
        Harness::start_with(
            DataverseSimConfig::default(),
            CleverReachSimConfig::default(),
            HarnessOptions::default(),
        )
        .await
    }

    /// Starts everything with CleverReach's event hooks on.
    pub async fn start_with_hooks() -> Result<Harness, HarnessError> {
        Harness::start_with(
            DataverseSimConfig::default(),
            CleverReachSimConfig::default(),
            HarnessOptions {
                hooks: true,
                ..HarnessOptions::default()
            },
        )
        .await
    }

    pub async fn start_with(
        dataverse_config: DataverseSimConfig,
        cleverreach_config: CleverReachSimConfig,
        options: HarnessOptions,
    ) -> Result<Harness, HarnessError> {
        let start = |e: std::io::Error| HarnessError::Start(e.to_string());
        let dataverse = DataverseSim::spawn(dataverse_config).await.map_err(start)?;
        // The simulator starts as a plain org; the installer provisions it (README "CRM schema").
        crate::provision::install_schema(&dataverse)
            .await
            .map_err(HarnessError::Start)?;
        let cleverreach = CleverReachSim::spawn(cleverreach_config.clone())
            .await
            .map_err(start)?;
        let admin = WebApi::admin(&dataverse)
            .await
            .map_err(|e| HarnessError::Start(e.to_string()))?;

        let queue = Arc::new(InMemoryChangeQueue::new());
        let intake_queue: Arc<dyn ChangeQueue> = match &options.sqs {
            Some(sqs) => Arc::new(SqsChangeQueue::new(sqs.client.clone(), sqs.urls.clone())),
            None => queue.clone(),
        };
        let intake_deps: Intake = Arc::new(IntakeDeps {
            queue: intake_queue.clone(),
            secrets: StaticSecrets::new().with("connector", WEBHOOK_KEY),
            settings: IntakeSettings {
                key_secret: "connector".into(),
                key_field: None,
                expected_organization: Some(dataverse.config().org_domain.clone()),
                connector_user_id: Some(CONNECTOR_USER_ID.into()),
            },
        });
        let bind = options
            .intake_bind
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = tokio::net::TcpListener::bind(bind).await.map_err(start)?;
        let intake_url = format!(
            "http://{}/api/webhook",
            listener.local_addr().map_err(start)?
        );
        let app = Router::new()
            .route("/api/webhook", post(intake_route))
            .with_state(intake_deps);
        let intake = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let hook_side = if options.hooks {
            let store = Arc::new(InMemoryHookStore::new());
            let queue = Arc::new(InMemoryMessageQueue::new());
            let listener =
                tokio::net::TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                    .await
                    .map_err(start)?;
            let url = format!(
                "http://{}/cleverreach/events",
                listener.local_addr().map_err(start)?
            );
            let endpoint: Endpoint = Arc::new(EndpointDeps::new(queue.clone(), store.clone()));
            let app = Router::new()
                .route("/cleverreach/events", get(events_route).post(events_route))
                .with_state(endpoint);
            let server = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            Some((store, queue, url, server))
        } else {
            None
        };
        let hook_config = hook_side
            .as_ref()
            .map(|(store, _, url, _)| (store.clone(), url.clone()));
        let with_hooks =
            |conn: Connector, newsletter: &CleverReachClient<TokenStore>| match &hook_config {
                Some((store, url)) => conn.with_hooks(Hooks {
                    registry: Arc::new(newsletter.clone()),
                    tokens: store.clone(),
                    url: url.clone(),
                }),
                None => conn,
            };
        let tokens: TokenStore = Arc::new(InMemoryTokenStore::new());
        let mut workers = Vec::new();
        let mut first_client = None;
        for family in QueueFamily::ALL {
            let dataverse_client = DataverseClient::new(DataverseConfig {
                retry: RetryPolicy::fast(),
                // Tagged as a deployment's writes are (the intake can tell them apart).
                write_tag: Some(shared::bootstrap::WRITE_TAG.to_string()),
                ..DataverseConfig::new(
                    url(&dataverse.api_url())?,
                    url(&dataverse.token_url())?,
                    CONNECTOR_CLIENT_ID,
                    Secret::new(CONNECTOR_CLIENT_SECRET),
                    format!("{}/.default", dataverse.resource()),
                )
            })
            .map_err(|e| HarnessError::Start(e.to_string()))?;
            let newsletter = CleverReachClient::new(
                CleverReachConfig {
                    retry: RetryPolicy::fast(),
                    ..CleverReachConfig::new(
                        url(&cleverreach.base_url())?,
                        cleverreach_config.client_id.clone(),
                        Secret::new(cleverreach_config.client_secret.clone()),
                        format!("Dynamics 365 ({})", dataverse.config().org_domain),
                    )
                },
                tokens.clone(),
            )
            .map_err(|e| HarnessError::Start(e.to_string()))?;
            if workers.is_empty() {
                newsletter
                    .connect_client_credentials()
                    .await
                    .map_err(|e| HarnessError::Start(e.to_string()))?;
            }
            if first_client.is_none() {
                first_client = Some((dataverse_client.clone(), newsletter.clone()));
            }
            let conn = with_hooks(
                Connector::new(DataverseCrm::new(dataverse_client), newsletter.clone()),
                &newsletter,
            );
            workers.push(WorkerDeps::new(family, conn).with_follow_up(intake_queue.clone()));
        }
        let retroactive_queue = Arc::new(InMemoryMessageQueue::new());
        let retroactive = RetroactiveDeps::new(
            Connector::new(
                DataverseCrm::new(
                    DataverseClient::new(DataverseConfig {
                        retry: RetryPolicy::fast(),
                        write_tag: Some(shared::bootstrap::WRITE_TAG.to_string()),
                        ..DataverseConfig::new(
                            url(&dataverse.api_url())?,
                            url(&dataverse.token_url())?,
                            CONNECTOR_CLIENT_ID,
                            Secret::new(CONNECTOR_CLIENT_SECRET),
                            format!("{}/.default", dataverse.resource()),
                        )
                    })
                    .map_err(|e| HarnessError::Start(e.to_string()))?,
                ),
                CleverReachClient::new(
                    CleverReachConfig {
                        retry: RetryPolicy::fast(),
                        ..CleverReachConfig::new(
                            url(&cleverreach.base_url())?,
                            cleverreach_config.client_id.clone(),
                            Secret::new(cleverreach_config.client_secret.clone()),
                            format!("Dynamics 365 ({})", dataverse.config().org_domain),
                        )
                    },
                    tokens.clone(),
                )
                .map_err(|e| HarnessError::Start(e.to_string()))?,
            ),
            retroactive_queue.clone(),
        );
        let (crm_client, newsletter) =
            first_client.ok_or(HarnessError::Start("no worker".into()))?;
        let events = hook_side.map(|(store, queue, url, server)| EventsSide {
            worker: EventsWorkerDeps {
                conn: with_hooks(
                    Connector::new(DataverseCrm::new(crm_client.clone()), newsletter.clone()),
                    &newsletter,
                )
                .with_settings_ttl(shared::handlers::sync_worker::SETTINGS_TTL)
                .with_follow_up(intake_queue.clone()),
                failures: shared::handlers::batch::FailureRecorder::none("cleverreach-events"),
            },
            url,
            tokens: store,
            queue,
            dead_letters: Mutex::new(Vec::new()),
            server,
        });
        Ok(Harness {
            crm_client,
            newsletter,
            retroactive,
            retroactive_queue,
            retroactive_log: Mutex::new(RetroactiveLog::default()),
            dataverse,
            cleverreach,
            admin,
            queue,
            sqs: options.sqs,
            intake_url,
            workers,
            receive_counts: Mutex::new(HashMap::new()),
            dead_letters: Mutex::new(Vec::new()),
            intake,
            events,
            workers_per_queue: options.workers_per_queue.max(1),
            invocation_time: options.invocation_time,
        })
    }

    /// The worker of one family (its connector reads and writes like the real one).
    pub fn worker(&self, family: QueueFamily) -> Option<&WorkerDeps> {
        self.workers.iter().find(|w| w.family == family)
    }

    /// The connector's own CRM client.
    pub fn crm_client(&self) -> &DataverseClient {
        &self.crm_client
    }

    /// The connector's CleverReach client (its token store is the workers').
    pub fn newsletter(&self) -> &CleverReachClient<TokenStore> {
        &self.newsletter
    }

    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead_letters
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// Registers the webhooks (as the installer does) and writes the given settings rows.
    pub async fn install(&self, settings: &[(&str, &str)]) -> Result<(), HarnessError> {
        let client = self.crm_client.clone();
        // The installer runs as an administrator; the sandbox's connector user may register.
        shared::install::install_webhooks(&client, &self.intake_url, &Secret::new(WEBHOOK_KEY))
            .await
            .map_err(|e| HarnessError::Start(format!("installing the webhooks: {e}")))?;
        // The CRM names the CleverReach it syncs with; here, the simulator.
        let api_url = self.cleverreach.base_url();
        let mut rows: Vec<(&str, &str)> = vec![("cleverreach:connectiondata:apiurl", &api_url)];
        rows.extend(settings.iter().copied());
        for (key, value) in rows {
            self.admin
                .create(
                    "crc_settings",
                    &serde_json::json!({ "crc_key": key, "crc_value": value }),
                )
                .await
                .map_err(|e| HarnessError::Start(format!("setting {key}: {e}")))?;
        }
        Ok(())
    }

    /// Lets everything happen: webhooks delivered, queues drained by the workers (failed
    /// messages redelivered, parked after `MAX_RECEIVE_COUNT`), until nothing moves.
    /// Returns how many messages were processed.
    pub async fn settle(&self) -> Result<usize, HarnessError> {
        const MAX_ROUNDS: usize = 10_000;
        let mut processed = 0;
        for _ in 0..MAX_ROUNDS {
            self.dataverse.webhooks_idle().await;
            let mut moved = false;
            let mut jobs = Vec::new();
            for worker in &self.workers {
                for batch in self.take_batches(worker.family).await? {
                    jobs.push((worker, batch));
                }
            }
            moved |= !jobs.is_empty();
            let results =
                futures::future::join_all(jobs.into_iter().map(|(worker, batch)| async move {
                    let messages = batch
                        .iter()
                        .map(|(c, _)| InboundMessage {
                            message_id: c.message_id.clone(),
                            body: serde_json::to_string(&c.event).unwrap_or_default(),
                            group: Some(shared::domain::routing::message_group(&c.event)),
                        })
                        .collect();
                    let budget = self.invocation_time.map(|time| {
                        shared::deadline::Budget::until(tokio::time::Instant::now() + time)
                    });
                    let failed =
                        shared::deadline::within(budget, handle_messages(worker, messages)).await;
                    (worker.family, batch, failed)
                }))
                .await;
            for (family, batch, failed) in results {
                processed += batch.len();
                self.finish(family, batch, &failed).await?;
            }
            let (moved_events, count) = self.events_round().await;
            moved |= moved_events;
            processed += count;
            if self.sqs.is_none() {
                let (moved_retroactive, count) = self.retroactive_round().await;
                moved |= moved_retroactive;
                processed += count;
            }
            if !moved {
                self.dataverse.webhooks_idle().await;
                // Hook deliveries on their way are work too.
                if let Some(events) = &self.events {
                    self.cleverreach
                        .wait_for_hook_deliveries(std::time::Duration::from_secs(10))
                        .await;
                    if !events.queue.is_empty() {
                        continue;
                    }
                }
                if self.is_drained().await? {
                    return Ok(processed);
                }
            }
        }
        Err(HarnessError::NotSettled(MAX_ROUNDS))
    }

    /// The batches of one family for this round: one per worker instance, a message group
    /// in one batch only (SQS FIFO hands a group to one consumer at a time).
    async fn take_batches(
        &self,
        family: QueueFamily,
    ) -> Result<Vec<Vec<(QueuedChange, Option<String>)>>, HarnessError> {
        let n = self.workers_per_queue;
        if self.sqs.is_some() {
            let mut batches = Vec::new();
            for _ in 0..n {
                let batch = self.take(family).await?;
                if batch.is_empty() {
                    break;
                }
                batches.push(batch);
            }
            return Ok(batches);
        }
        let all = self.queue.take(family, 10 * n);
        let mut batches: Vec<Vec<(QueuedChange, Option<String>)>> = vec![Vec::new(); n];
        let mut assigned: HashMap<String, usize> = HashMap::new();
        for change in all {
            let group = shared::domain::routing::message_group(&change.event);
            let next = assigned.len() % n;
            let index = *assigned.entry(group).or_insert(next);
            batches[index].push((change, None));
        }
        Ok(batches.into_iter().filter(|b| !b.is_empty()).collect())
    }

    /// One round of `sync-cleverreach-events`: up to ten deliveries (and registration checks)
    /// per worker instance, a receiver's deliveries in one batch.
    async fn events_round(&self) -> (bool, usize) {
        let Some(events) = &self.events else {
            return (false, 0);
        };
        let n = self.workers_per_queue;
        let all = events.queue.take(QueueFamily::CleverReachEvents, 10 * n);
        if all.is_empty() {
            return (false, 0);
        }
        let count = all.len();
        let mut batches: Vec<Vec<QueuedMessage>> = vec![Vec::new(); n];
        let mut assigned: HashMap<String, usize> = HashMap::new();
        for message in all {
            let next = assigned.len() % n;
            let index = *assigned
                .entry(message.message.group.clone())
                .or_insert(next);
            batches[index].push(message);
        }
        let results = futures::future::join_all(batches.into_iter().filter(|b| !b.is_empty()).map(
            |batch| async move {
                let messages = batch
                    .iter()
                    .map(|m| InboundMessage {
                        message_id: m.message_id.clone(),
                        body: m.message.body.clone(),
                        group: Some(m.message.group.clone()),
                    })
                    .collect();
                let failed = cleverreach_events::work(&events.worker, messages).await;
                (batch, failed)
            },
        ))
        .await;
        for (batch, failed) in results {
            let mut back = Vec::new();
            for message in batch {
                if !failed.contains(&message.message_id) {
                    continue;
                }
                if self.count_receive(&message.message_id) < MAX_RECEIVE_COUNT {
                    back.push(message);
                } else {
                    events
                        .dead_letters
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(message);
                }
            }
            events.queue.put_back(QueueFamily::CleverReachEvents, back);
        }
        (true, count)
    }

    /// Up to ten messages of one family (with the SQS receipt handle when on SQS).
    async fn take(
        &self,
        family: QueueFamily,
    ) -> Result<Vec<(QueuedChange, Option<String>)>, HarnessError> {
        let Some(sqs) = &self.sqs else {
            return Ok(self
                .queue
                .take(family, 10)
                .into_iter()
                .map(|c| (c, None))
                .collect());
        };
        let Some(url) = sqs.urls.get(family) else {
            return Ok(Vec::new());
        };
        let received = sqs
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .send()
            .await
            .map_err(|e| {
                HarnessError::Queue(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
            })?;
        Ok(received
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let event: ChangeEvent = serde_json::from_str(m.body()?).ok()?;
                Some((
                    QueuedChange {
                        family,
                        message_id: m.message_id()?.to_string(),
                        event,
                    },
                    m.receipt_handle().map(str::to_string),
                ))
            })
            .collect())
    }

    /// Acknowledges the processed messages and puts the failed ones back for redelivery.
    async fn finish(
        &self,
        family: QueueFamily,
        batch: Vec<(QueuedChange, Option<String>)>,
        failed: &[String],
    ) -> Result<(), HarnessError> {
        if let Some(sqs) = &self.sqs {
            let Some(url) = sqs.urls.get(family) else {
                return Ok(());
            };
            for (change, receipt) in batch {
                let Some(receipt) = receipt else { continue };
                let done = if failed.contains(&change.message_id) {
                    // Visible again at once: the redrive policy counts the receives.
                    sqs.client
                        .change_message_visibility()
                        .queue_url(url)
                        .receipt_handle(receipt)
                        .visibility_timeout(0)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
                } else {
                    sqs.client
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(receipt)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(&e).to_string())
                };
                done.map_err(HarnessError::Queue)?;
            }
            return Ok(());
        }
        let mut back = Vec::new();
        for (change, _) in batch {
            if !failed.contains(&change.message_id) {
                continue;
            }
            let count = {
                let mut counts = self
                    .receive_counts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let c = counts.entry(change.message_id.clone()).or_default();
                *c += 1;
                *c
            };
            if count >= MAX_RECEIVE_COUNT {
                self.dead_letters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(DeadLetter { change });
            } else {
                back.push(change);
            }
        }
        self.queue.put_back(family, back);
        Ok(())
    }

    async fn is_drained(&self) -> Result<bool, HarnessError> {
        let Some(sqs) = &self.sqs else {
            return Ok(self.queue.is_empty() && self.retroactive_queue.is_empty());
        };
        for family in sqs.urls.families() {
            let Some(url) = sqs.urls.get(family) else {
                continue;
            };
            if queue_depth(&sqs.client, url).await? > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Messages in the SQS dead-letter queues (0 for a local run: see `dead_letters`).
    pub async fn sqs_dead_letters(&self) -> Result<u64, HarnessError> {
        let Some(sqs) = &self.sqs else {
            return Ok(0);
        };
        let mut total = 0;
        for family in sqs.dead_letter_urls.families() {
            if let Some(url) = sqs.dead_letter_urls.get(family) {
                total += queue_depth(&sqs.client, url).await?;
            }
        }
        Ok(total)
    }
}

/// Visible plus in-flight messages of a queue.
async fn queue_depth(client: &aws_sdk_sqs::Client, url: &str) -> Result<u64, HarnessError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attrs = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| HarnessError::Queue(aws_sdk_sqs::error::DisplayErrorContext(&e).to_string()))?
        .attributes
        .unwrap_or_default();
    Ok([
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .filter_map(|a| attrs.get(a)?.parse::<u64>().ok())
    .sum())
}

/// A checklist JSON with these (newsletter type id, state) entries.
pub fn checklist(entries: &[(i64, i64)]) -> String {
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .enumerate()
        .map(|(i, (id, state))| {
            serde_json::json!({
                "id": id, "state": state, "description": format!("type {id}"),
                "modifiedby": "", "modifiedon": "", "position": i + 1,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// Errors of the scenario helpers, as text (they are for tests and the demo).
pub type Step<T> = Result<T, String>;

impl Harness {
    /// Creates a row as the administrator and returns its id.
    pub async fn create(&self, set: &str, body: serde_json::Value) -> Step<String> {
        self.admin
            .create(set, &body)
            .await
            .map_err(|e| format!("create {set}: {e}"))
    }

    /// Changes a row as the administrator.
    pub async fn update(&self, set: &str, id: &str, body: serde_json::Value) -> Step<()> {
        let reply = self
            .admin
            .patch(&format!("{set}({id})"), &body)
            .await
            .map_err(|e| format!("update {set}({id}): {e}"))?;
        if reply.status >= 300 {
            return Err(format!(
                "update {set}({id}): {} {}",
                reply.status, reply.text
            ));
        }
        Ok(())
    }

    pub async fn delete(&self, set: &str, id: &str) -> Step<()> {
        let reply = self
            .admin
            .delete(&format!("{set}({id})"))
            .await
            .map_err(|e| format!("delete {set}({id}): {e}"))?;
        if reply.status >= 300 {
            return Err(format!(
                "delete {set}({id}): {} {}",
                reply.status, reply.text
            ));
        }
        Ok(())
    }

    /// Runs a Web API action as the administrator (`lists(<id>)/Microsoft.Dynamics.CRM.AddMemberList`).
    pub async fn action(&self, path: &str, body: serde_json::Value) -> Step<serde_json::Value> {
        let reply = self
            .admin
            .post(path, &body)
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        if reply.status >= 300 {
            return Err(format!("{path}: {} {}", reply.status, reply.text));
        }
        Ok(reply.body)
    }

    /// Adds one member to a static list (AddMemberList).
    pub async fn add_member(&self, list: &str, member: &str) -> Step<()> {
        self.action(
            &format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList"),
            serde_json::json!({ "EntityId": member }),
        )
        .await
        .map(|_| ())
    }

    /// Adds many members to a static list at once (AddListMembersList).
    pub async fn add_members(&self, list: &str, entity: &str, members: &[String]) -> Step<()> {
        let key = format!("{entity}id");
        let members: Vec<serde_json::Value> = members
            .iter()
            .map(|id| serde_json::json!({ "@odata.type": format!("Microsoft.Dynamics.CRM.{entity}"), key.clone(): id }))
            .collect();
        self.action(
            "AddListMembersList",
            serde_json::json!({
                "List": { "@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list },
                "Members": members,
            }),
        )
        .await
        .map(|_| ())
    }

    /// Removes one member from a static list (RemoveMemberList).
    pub async fn remove_member(&self, list: &str, member: &str) -> Step<()> {
        self.action(
            &format!("lists({list})/Microsoft.Dynamics.CRM.RemoveMemberList"),
            serde_json::json!({ "EntityId": member }),
        )
        .await
        .map(|_| ())
    }

    /// Creates a contact named after its address (`first@…` → first name `first`, last name the
    /// domain) with this consent checklist.
    pub async fn contact(&self, email: &str, consent: &[(i64, i64)]) -> Step<String> {
        let (first, last) = email.split_once('@').unwrap_or((email, ""));
        self.create(
            "contacts",
            serde_json::json!({ "firstname": first, "lastname": last, "emailaddress1": email,
                                "crc_checklist": checklist(consent) }),
        )
        .await
    }

    /// Creates a static list of `entity` (`contact`, `lead`, `account`) whose checklist says yes
    /// to newsletter type 0, adds the members, turns sync on and settles. Returns the list id
    /// and its group id.
    pub async fn synced_static_list(
        &self,
        name: &str,
        entity: &str,
        members: &[String],
    ) -> Step<(String, String)> {
        let code = match entity {
            "account" => 1,
            "contact" => 2,
            _ => 4,
        };
        let list = self
            .create(
                "lists",
                serde_json::json!({ "listname": name, "createdfromcode": code, "type": false,
                                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": false }),
            )
            .await?;
        if !members.is_empty() {
            self.add_members(&list, entity, members).await?;
        }
        self.update(
            "lists",
            &list,
            serde_json::json!({ "crc_syncwithcleverreach": true }),
        )
        .await?;
        self.settle().await.map_err(|e| e.to_string())?;
        let group = self
            .group_of("lists", &list)
            .ok_or_else(|| format!("list {name} has no group after sync was turned on"))?;
        Ok((list, group))
    }

    /// The group id stored on a source.
    pub fn group_of(&self, set: &str, id: &str) -> Option<String> {
        self.dataverse.row(set, id).and_then(|row| {
            row.get("crc_groupid")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
    }

    /// The active receivers' addresses (lower case) of a group, sorted.
    pub fn active_emails(&self, group: &str) -> Vec<String> {
        let mut emails: Vec<String> = self
            .cleverreach
            .receivers(group)
            .into_iter()
            .filter(|r| r.active)
            .map(|r| r.email.to_lowercase())
            .collect();
        emails.sort();
        emails
    }
}

/// The scheduled back-flow jobs (`receiver-state-sync`, `lead-sync`), run on demand.
impl Harness {
    /// What a back-flow job needs, on the connector's own CRM and CleverReach clients.
    pub fn job_deps(
        &self,
        limits: shared::usecases::backflow::RunLimits,
    ) -> Step<shared::handlers::receiver_state_sync::JobDeps> {
        let worker = self
            .worker(QueueFamily::Contact)
            .ok_or("the harness has no worker")?;
        // Settings read fresh per run, as the scheduled function does.
        Ok(shared::handlers::receiver_state_sync::JobDeps {
            conn: worker
                .conn
                .clone()
                .with_settings_ttl(std::time::Duration::ZERO),
            limits,
        })
    }

    /// Runs one job once with these limits, as its schedule would (payload `{}`).
    pub async fn run_job_with(
        &self,
        job: shared::usecases::backflow::Job,
        limits: shared::usecases::backflow::RunLimits,
    ) -> Step<shared::usecases::backflow::RunSummary> {
        let deps = self.job_deps(limits)?;
        shared::handlers::receiver_state_sync::run_once(&deps, job, &serde_json::json!({}))
            .await
            .map_err(|e| format!("{}: {e}", job.name()))
    }

    /// Runs `receiver-state-sync` once with the default limits.
    pub async fn run_receiver_state_sync(&self) -> Step<shared::usecases::backflow::RunSummary> {
        self.run_job_with(
            shared::usecases::backflow::Job::ReceiverState,
            shared::usecases::backflow::RunLimits::default(),
        )
        .await
    }

    /// Runs `lead-sync` once with the default limits.
    pub async fn run_lead_sync(&self) -> Step<shared::usecases::backflow::RunSummary> {
        self.run_job_with(
            shared::usecases::backflow::Job::LeadSync,
            shared::usecases::backflow::RunLimits::default(),
        )
        .await
    }

    /// The state (`[(type id, state)]`, in entry order) of a person's checklist as stored.
    pub fn checklist_states(&self, set: &str, id: &str) -> Vec<(i64, i64)> {
        let text = self
            .dataverse
            .row(set, id)
            .and_then(|row| {
                row.get("crc_checklist")
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        serde_json::from_str::<Vec<serde_json::Value>>(&text)
            .unwrap_or_default()
            .iter()
            .map(|e| {
                (
                    e.get("id").and_then(|v| v.as_i64()).unwrap_or(-1),
                    e.get("state").and_then(|v| v.as_i64()).unwrap_or(-1),
                )
            })
            .collect()
    }
}

/// What the local run of the retroactive-sync functions did.
#[derive(Debug, Clone, Default)]
pub struct RetroactiveLog {
    /// Each invocation: the function and how long it took.
    pub invocations: Vec<(&'static str, std::time::Duration)>,
    /// Messages that failed `MAX_RECEIVE_COUNT` times.
    pub dead_letters: Vec<QueuedMessage>,
    /// Messages delivered (a redelivery counts again).
    pub deliveries: usize,
}

impl Harness {
    /// One round of the retroactive-sync functions (local queues only): up to ten triggers
    /// and follow-ups for `sublist-fanout`, then up to ten messages for `sublist-update`, each
    /// batch one "invocation". Returns whether anything moved, and how many messages.
    async fn retroactive_round(&self) -> (bool, usize) {
        let mut moved = false;
        let mut processed = 0;
        // Triggers come from the intake as change events.
        let triggers = self.queue.take(QueueFamily::RetroactiveSync, 10);
        if !triggers.is_empty() {
            moved = true;
            processed += triggers.len();
            let messages = triggers
                .iter()
                .map(|c| InboundMessage {
                    message_id: c.message_id.clone(),
                    body: serde_json::to_string(&c.event).unwrap_or_default(),
                    group: Some(shared::domain::routing::message_group(&c.event)),
                })
                .collect();
            let started = std::time::Instant::now();
            let failed = handle_fanout(&self.retroactive, messages).await;
            self.log_invocation("sublist-fanout", started.elapsed(), triggers.len());
            let back: Vec<QueuedChange> = triggers
                .into_iter()
                .filter(|c| failed.contains(&c.message_id))
                .filter(|c| self.count_receive(&c.message_id) < MAX_RECEIVE_COUNT)
                .collect();
            self.queue.put_back(QueueFamily::RetroactiveSync, back);
        }
        for family in QueueFamily::RETROACTIVE {
            let batch = self.retroactive_queue.take(family, 10);
            if batch.is_empty() {
                continue;
            }
            moved = true;
            processed += batch.len();
            let messages = batch
                .iter()
                .map(|m| InboundMessage {
                    message_id: m.message_id.clone(),
                    body: m.message.body.clone(),
                    group: Some(m.message.group.clone()),
                })
                .collect();
            let started = std::time::Instant::now();
            let (name, failed) = match family {
                QueueFamily::Sublist => (
                    "sublist-update",
                    handle_sublists(&self.retroactive, messages).await,
                ),
                _ => (
                    "sublist-fanout",
                    handle_fanout(&self.retroactive, messages).await,
                ),
            };
            self.log_invocation(name, started.elapsed(), batch.len());
            let mut back = Vec::new();
            for message in batch {
                if !failed.contains(&message.message_id) {
                    continue;
                }
                if self.count_receive(&message.message_id) < MAX_RECEIVE_COUNT {
                    back.push(message);
                } else if let Ok(mut log) = self.retroactive_log.lock() {
                    log.dead_letters.push(message);
                }
            }
            self.retroactive_queue.put_back(family, back);
        }
        (moved, processed)
    }

    fn count_receive(&self, message_id: &str) -> u32 {
        let mut counts = self
            .receive_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let c = counts.entry(message_id.to_string()).or_default();
        *c += 1;
        *c
    }

    fn log_invocation(&self, name: &'static str, took: std::time::Duration, messages: usize) {
        if let Ok(mut log) = self.retroactive_log.lock() {
            log.invocations.push((name, took));
            log.deliveries += messages;
        }
    }

    /// Rebuilds the retroactive-sync functions' Dataverse client with pages of `rows` rows
    /// (`odata.maxpagesize`, FetchXML `count`), so that tests reach many pages with few rows.
    pub fn set_retroactive_page_size(&mut self, rows: u32) -> Result<(), HarnessError> {
        let client = DataverseClient::new(DataverseConfig {
            retry: RetryPolicy::fast(),
            max_page_size: rows,
            write_tag: Some(shared::bootstrap::WRITE_TAG.to_string()),
            ..DataverseConfig::new(
                url(&self.dataverse.api_url())?,
                url(&self.dataverse.token_url())?,
                CONNECTOR_CLIENT_ID,
                Secret::new(CONNECTOR_CLIENT_SECRET),
                format!("{}/.default", self.dataverse.resource()),
            )
        })
        .map_err(|e| HarnessError::Start(e.to_string()))?;
        let limits = self.retroactive.limits;
        self.retroactive = RetroactiveDeps::new(
            Connector::new(DataverseCrm::new(client), self.newsletter.clone()),
            self.retroactive_queue.clone(),
        );
        self.retroactive.limits = limits;
        Ok(())
    }

    /// What the retroactive-sync functions did so far.
    pub fn retroactive_log(&self) -> RetroactiveLog {
        self.retroactive_log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}
