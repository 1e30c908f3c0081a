//! Adapter: in-process stand-ins for the ports, for tests and the local run: queues and secrets
//! here; a CRM and a CleverReach behind every port in `crm` and `newsletter`.

mod crm;
mod newsletter;

pub use crm::{CrmPort, CrmState, InMemoryCrm};
pub use newsletter::{InMemoryNewsletter, NewsletterPort, NewsletterState, StoredReceiver};

use crate::domain::change::ChangeEvent;
use crate::domain::routing::{QueueFamily, deduplication_id};
use crate::ports::{ChangeQueue, QueueError, SecretError, SecretSource, secret_field};
use crate::secret::Secret;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A queued change as the local queue holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedChange {
    pub family: QueueFamily,
    pub message_id: String,
    pub event: ChangeEvent,
}

/// FIFO queues in memory: de-duplicates by the same id SQS uses, keeps order of arrival.
#[derive(Default)]
pub struct InMemoryChangeQueue {
    state: Mutex<LocalQueues>,
    unavailable: AtomicBool,
}

#[derive(Default)]
struct LocalQueues {
    queues: BTreeMap<QueueFamily, VecDeque<QueuedChange>>,
    seen: HashSet<String>,
    next_id: u64,
}

impl InMemoryChangeQueue {
    pub fn new() -> Self {
        InMemoryChangeQueue::default()
    }

    /// Makes every following enqueue fail as an unreachable queue would.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalQueues> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything queued and not yet taken, in order, per family.
    pub fn pending(&self) -> Vec<QueuedChange> {
        self.lock().queues.values().flatten().cloned().collect()
    }

    /// Takes up to `max` changes of one family, oldest first.
    pub fn take(&self, family: QueueFamily, max: usize) -> Vec<QueuedChange> {
        let mut st = self.lock();
        let queue = st.queues.entry(family).or_default();
        let n = max.min(queue.len());
        queue.drain(..n).collect()
    }

    /// Puts changes back at the front (a failed delivery), keeping their order.
    pub fn put_back(&self, family: QueueFamily, changes: Vec<QueuedChange>) {
        let mut st = self.lock();
        let queue = st.queues.entry(family).or_default();
        for change in changes.into_iter().rev() {
            queue.push_front(change);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lock().queues.values().all(VecDeque::is_empty)
    }
}

#[async_trait]
impl ChangeQueue for InMemoryChangeQueue {
    async fn enqueue(&self, family: QueueFamily, event: &ChangeEvent) -> Result<(), QueueError> {
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(QueueError::Unavailable {
                family,
                reason: "the local queue is switched off".into(),
            });
        }
        // As strict as SQS about the size.
        let bytes = serde_json::to_vec(event).map_or(usize::MAX, |b| b.len());
        if bytes > crate::ports::queue::MAX_MESSAGE_BYTES {
            return Err(QueueError::TooLarge { family, bytes });
        }
        let mut st = self.lock();
        // SQS FIFO keeps de-duplication ids for five minutes; the local queue keeps them for
        // the whole run, which is stricter and fine for tests and demos.
        // Per queue, as SQS de-duplicates per queue (one change may go to two families).
        if !st
            .seen
            .insert(format!("{family}:{}", deduplication_id(event)))
        {
            return Ok(());
        }
        st.next_id += 1;
        let message_id = format!("local-{}", st.next_id);
        st.queues
            .entry(family)
            .or_default()
            .push_back(QueuedChange {
                family,
                message_id,
                event: event.clone(),
            });
        Ok(())
    }
}

/// Secrets from a fixed map (name → whole secret string).
#[derive(Default)]
pub struct StaticSecrets {
    values: Mutex<BTreeMap<String, Secret>>,
}

impl StaticSecrets {
    pub fn new() -> Self {
        StaticSecrets::default()
    }

    pub fn with(self, name: &str, value: &str) -> Self {
        self.set(name, value);
        self
    }

    pub fn set(&self, name: &str, value: &str) {
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Secret::new(value));
    }

    pub fn remove(&self, name: &str) {
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

#[async_trait]
impl SecretSource for StaticSecrets {
    async fn secret(&self, name: &str, field: Option<&str>) -> Result<Secret, SecretError> {
        let whole = self
            .values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| SecretError::Unavailable {
                name: name.to_string(),
                reason: "not in the local secret store".into(),
            })?;
        secret_field(name, &whole, field)
    }
}

/// A retroactive-sync message as the local queue holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub message_id: String,
    pub message: crate::ports::queue::OutboundMessage,
}

/// The retroactive-sync queues in memory: FIFO per family, de-duplicated per family by the
/// message's de-duplication id (for the whole run, stricter than SQS's five minutes).
#[derive(Default)]
pub struct InMemoryMessageQueue {
    state: Mutex<LocalMessages>,
}

#[derive(Default)]
struct LocalMessages {
    queues: BTreeMap<QueueFamily, VecDeque<QueuedMessage>>,
    seen: HashSet<(QueueFamily, String)>,
    next_id: u64,
}

impl InMemoryMessageQueue {
    pub fn new() -> Self {
        InMemoryMessageQueue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LocalMessages> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes up to `max` messages of one family, oldest first.
    pub fn take(&self, family: QueueFamily, max: usize) -> Vec<QueuedMessage> {
        let mut st = self.lock();
        let queue = st.queues.entry(family).or_default();
        let n = max.min(queue.len());
        queue.drain(..n).collect()
    }

    /// Puts messages back at the front (a failed delivery), keeping their order.
    pub fn put_back(&self, family: QueueFamily, messages: Vec<QueuedMessage>) {
        let mut st = self.lock();
        let queue = st.queues.entry(family).or_default();
        for message in messages.into_iter().rev() {
            queue.push_front(message);
        }
    }

    /// Queues a message again as if it were delivered twice (for redelivery tests), ignoring
    /// de-duplication.
    pub fn redeliver(&self, message: QueuedMessage) {
        let mut st = self.lock();
        st.queues
            .entry(message.message.family)
            .or_default()
            .push_back(message);
    }

    pub fn is_empty(&self) -> bool {
        self.lock().queues.values().all(VecDeque::is_empty)
    }
}

#[async_trait]
impl crate::ports::queue::MessageQueue for InMemoryMessageQueue {
    async fn send(
        &self,
        messages: Vec<crate::ports::queue::OutboundMessage>,
    ) -> Result<(), QueueError> {
        let mut st = self.lock();
        for message in messages {
            if !st
                .seen
                .insert((message.family, message.deduplication_id.clone()))
            {
                continue;
            }
            st.next_id += 1;
            let message_id = format!("local-m{}", st.next_id);
            st.queues
                .entry(message.family)
                .or_default()
                .push_back(QueuedMessage {
                    message_id,
                    message,
                });
        }
        Ok(())
    }
}

/// The hooks' tokens in memory (tests and the local run).
#[derive(Default)]
pub struct InMemoryHookStore {
    tokens: Mutex<crate::ports::secrets::HookTokens>,
}

impl InMemoryHookStore {
    pub fn new() -> Self {
        InMemoryHookStore::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, crate::ports::secrets::HookTokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl crate::ports::secrets::HookTokenStore for InMemoryHookStore {
    async fn hook_tokens(&self) -> Result<crate::ports::secrets::HookTokens, SecretError> {
        Ok(self.lock().clone())
    }

    async fn verify_token(&self) -> Result<Secret, SecretError> {
        let mut tokens = self.lock();
        let verify = tokens
            .verify
            .get_or_insert_with(|| Secret::new(uuid::Uuid::new_v4().simple().to_string()));
        Ok(verify.clone())
    }

    async fn save_call_token(&self, group_id: &str, token: &Secret) -> Result<(), SecretError> {
        self.lock()
            .call_tokens
            .insert(group_id.to_string(), token.clone());
        Ok(())
    }

    async fn forget_call_token(&self, group_id: &str) -> Result<(), SecretError> {
        self.lock().call_tokens.remove(group_id);
        Ok(())
    }
}

/// The failure log in memory (tests and the local run).
#[derive(Default)]
pub struct InMemoryFailureLog {
    records: Mutex<BTreeMap<String, crate::ports::failures::FailedMessage>>,
}

impl InMemoryFailureLog {
    pub fn new() -> Self {
        InMemoryFailureLog::default()
    }

    /// Every record, by message id.
    pub fn records(&self) -> BTreeMap<String, crate::ports::failures::FailedMessage> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl crate::ports::failures::FailureLog for InMemoryFailureLog {
    async fn record(
        &self,
        failure: &crate::ports::failures::FailedMessage,
    ) -> Result<(), crate::ports::failures::FailureLogError> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let failures = records
            .get(&failure.message_id)
            .map_or(0, |r| r.failures)
            .saturating_add(failure.failures.max(1));
        records.insert(
            failure.message_id.clone(),
            crate::ports::failures::FailedMessage {
                failures,
                ..failure.clone()
            },
        );
        Ok(())
    }

    async fn failure(
        &self,
        message_id: &str,
    ) -> Result<
        Option<crate::ports::failures::FailedMessage>,
        crate::ports::failures::FailureLogError,
    > {
        Ok(self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(message_id)
            .cloned())
    }
}
