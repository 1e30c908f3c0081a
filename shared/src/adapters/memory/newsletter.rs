//! An in-memory CleverReach behind every newsletter port, for the use cases' unit tests: groups,
//! their receivers and the blacklist, in maps; any port can be made to fail. Like the real API
//! it changes addresses account-wide and refuses an address change to an address in use; it is
//! pessimistic where the real one is unknown: an upsert that asks to activate an opted-out
//! receiver re-activates it, and the re-activation is counted, so a test of the opt-out rule
//! can fail.

use crate::domain::blocklist::BlockSet;
use crate::domain::email::Email;
use crate::domain::planner::ReceiverUpsert;
use crate::domain::receiver::{CurrentReceiver, ReceiverState};
use crate::ports::newsletter::{
    BlockList, EmailChange, FilterRequest, FilterRule, Group, GroupStore, NewsletterEndpoint,
    NewsletterError, Page, ReceiverFilter, ReceiverPages, ReceiverRecord, ReceiverStore,
    RemoveReport, UpsertReport,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};

/// The ports of the newsletter tool, by name, for [`InMemoryNewsletter::fail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NewsletterPort {
    Groups,
    Receivers,
    BlockList,
    Hooks,
}

/// One receiver as the fake keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceiver {
    pub receiver: CurrentReceiver,
    pub activated: Option<DateTime<Utc>>,
    pub deactivated: Option<DateTime<Utc>>,
    pub bounced: Option<DateTime<Utc>>,
}

/// Everything the fake holds. Tests arrange it directly and look at it afterwards.
#[derive(Debug, Default)]
pub struct NewsletterState {
    pub groups: BTreeMap<String, Group>,
    pub receivers: BTreeMap<String, BTreeMap<Email, StoredReceiver>>,
    /// Blacklist entries: addresses, or whole domains written `*@domain`.
    pub blacklist: Vec<String>,
    /// The account's bounce list.
    pub bounced: Vec<Email>,
    /// Opted-out receivers an upsert made active again (must stay empty).
    pub reactivated: Vec<(String, Email)>,
    /// Event-hook registrations: (group, url, call token).
    pub hooks: Vec<(String, String, String)>,
    /// Calls, in order, in words (`"upsert 7 3"`).
    pub calls: Vec<String>,
    pub failing: BTreeMap<NewsletterPort, usize>,
    /// How long an upsert call takes (tokio time: tests pause the clock), as a real API's
    /// latency.
    pub upsert_latency: Option<std::time::Duration>,
    next_group: u64,
}

impl NewsletterState {
    /// The receivers of a group by address.
    pub fn group(&self, group: &str) -> Vec<&StoredReceiver> {
        self.receivers
            .get(group)
            .map(|r| r.values().collect())
            .unwrap_or_default()
    }

    /// The active addresses of a group.
    pub fn active(&self, group: &str) -> Vec<String> {
        self.group(group)
            .into_iter()
            .filter(|r| r.receiver.state == ReceiverState::Active)
            .map(|r| r.receiver.email.to_string())
            .collect()
    }
}

/// The fake newsletter tool.
#[derive(Debug, Default)]
pub struct InMemoryNewsletter {
    state: Mutex<NewsletterState>,
}

impl InMemoryNewsletter {
    pub fn new() -> Self {
        InMemoryNewsletter::default()
    }

    pub fn state(&self) -> MutexGuard<'_, NewsletterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `times` calls of `port` fail as an unreachable API would.
    pub fn fail(&self, port: NewsletterPort, times: usize) {
        self.state().failing.insert(port, times);
    }

    fn call(
        &self,
        port: NewsletterPort,
        what: String,
    ) -> Result<MutexGuard<'_, NewsletterState>, NewsletterError> {
        let mut st = self.state();
        if let Some(left) = st.failing.get_mut(&port)
            && *left > 0
        {
            *left -= 1;
            return Err(NewsletterError::Unavailable {
                message: format!("the in-memory newsletter's {port:?} port is switched off"),
                retry_after: None,
            });
        }
        st.calls.push(what);
        Ok(st)
    }

    /// Puts a receiver into a group as it is (any state).
    pub fn put(&self, group: &str, receiver: CurrentReceiver) {
        self.put_stored(
            group,
            StoredReceiver {
                receiver,
                activated: None,
                deactivated: None,
                bounced: None,
            },
        );
    }

    /// Puts a receiver with its event times into a group.
    pub fn put_stored(&self, group: &str, stored: StoredReceiver) {
        self.state()
            .receivers
            .entry(group.to_string())
            .or_default()
            .insert(stored.receiver.email.clone(), stored);
    }

    /// A receiver unsubscribes from a group at `at`.
    pub fn unsubscribe(&self, group: &str, email: &Email, at: DateTime<Utc>) {
        if let Some(r) = self
            .state()
            .receivers
            .get_mut(group)
            .and_then(|g| g.get_mut(email))
        {
            r.receiver.state = ReceiverState::Deactivated;
            r.deactivated = Some(at);
        }
    }
}

fn record(group: &str, stored: &StoredReceiver) -> ReceiverRecord {
    ReceiverRecord {
        id: stored.receiver.email.to_string(),
        group_id: group.to_string(),
        receiver: stored.receiver.clone(),
        source: String::new(),
        registered: None,
        activated: stored.activated,
        deactivated: stored.deactivated,
        bounced: stored.bounced,
        global_company: String::new(),
    }
}

fn matches(rule: &FilterRule, stored: &StoredReceiver) -> bool {
    match rule {
        FilterRule::EmailIs(email) => &stored.receiver.email == email,
        FilterRule::CrmIdIs(id) => stored.receiver.crm.as_ref().is_some_and(|c| &c.id == id),
        FilterRule::ActivatedAfter(t) => stored.activated.is_some_and(|a| a > *t),
        FilterRule::DeactivatedAfter(t) => stored.deactivated.is_some_and(|a| a > *t),
        FilterRule::RegisteredAfter(t) => stored.activated.is_some_and(|a| a > *t),
        FilterRule::BouncedAfter(t) => stored.bounced.is_some_and(|a| a > *t),
    }
}

#[async_trait]
impl GroupStore for InMemoryNewsletter {
    async fn get_group(&self, group_id: &str) -> Result<Option<Group>, NewsletterError> {
        let st = self.call(NewsletterPort::Groups, format!("get_group {group_id}"))?;
        Ok(st.groups.get(group_id).cloned())
    }

    async fn create_group(
        &self,
        name: &str,
        locked: bool,
        receiver_info: &str,
    ) -> Result<Group, NewsletterError> {
        let mut st = self.call(NewsletterPort::Groups, format!("create_group {name}"))?;
        st.next_group += 1;
        let group = Group {
            id: format!("{}", 1000 + st.next_group),
            name: name.to_string(),
            locked,
            receiver_info: receiver_info.to_string(),
            created_by_connector: true,
            created_at: None,
        };
        st.groups.insert(group.id.clone(), group.clone());
        Ok(group)
    }

    async fn list_groups(&self) -> Result<Vec<Group>, NewsletterError> {
        let st = self.call(NewsletterPort::Groups, "list_groups".to_string())?;
        Ok(st.groups.values().cloned().collect())
    }

    async fn rename_group(&self, group_id: &str, name: &str) -> Result<(), NewsletterError> {
        let mut st = self.call(NewsletterPort::Groups, format!("rename_group {group_id}"))?;
        match st.groups.get_mut(group_id) {
            Some(g) => {
                g.name = name.to_string();
                Ok(())
            }
            None => Err(NewsletterError::NotFound(format!("group {group_id}"))),
        }
    }

    async fn set_receiver_info(
        &self,
        group_id: &str,
        receiver_info: &str,
    ) -> Result<(), NewsletterError> {
        let mut st = self.call(
            NewsletterPort::Groups,
            format!("set_receiver_info {group_id}"),
        )?;
        match st.groups.get_mut(group_id) {
            Some(g) => {
                g.receiver_info = receiver_info.to_string();
                Ok(())
            }
            None => Err(NewsletterError::NotFound(format!("group {group_id}"))),
        }
    }

    async fn delete_group(&self, group_id: &str) -> Result<bool, NewsletterError> {
        let mut st = self.call(NewsletterPort::Groups, format!("delete_group {group_id}"))?;
        st.receivers.remove(group_id);
        Ok(st.groups.remove(group_id).is_some())
    }
}

struct OnePage(Option<Vec<CurrentReceiver>>);

#[async_trait]
impl ReceiverPages for OnePage {
    async fn next_page(&mut self) -> Result<Option<Vec<CurrentReceiver>>, NewsletterError> {
        Ok(self.0.take().filter(|p| !p.is_empty()))
    }
}

struct FailedPage(Option<NewsletterError>);

#[async_trait]
impl ReceiverPages for FailedPage {
    async fn next_page(&mut self) -> Result<Option<Vec<CurrentReceiver>>, NewsletterError> {
        match self.0.take() {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl ReceiverStore for InMemoryNewsletter {
    fn upsert_batch_size(&self) -> usize {
        250
    }

    fn receivers(&self, group_id: &str, _filter: ReceiverFilter) -> Box<dyn ReceiverPages + '_> {
        match self.call(NewsletterPort::Receivers, format!("receivers {group_id}")) {
            Ok(st) => Box::new(OnePage(Some(
                st.group(group_id)
                    .into_iter()
                    .map(|r| r.receiver.clone())
                    .collect(),
            ))),
            Err(e) => Box::new(FailedPage(Some(e))),
        }
    }

    async fn upsert_receivers(
        &self,
        group_id: &str,
        rows: &[ReceiverUpsert],
    ) -> Result<UpsertReport, NewsletterError> {
        let latency = self.state().upsert_latency;
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
        let mut st = self.call(
            NewsletterPort::Receivers,
            format!("upsert {group_id} {}", rows.len()),
        )?;
        let now = Utc::now();
        let mut report = UpsertReport {
            calls: 1,
            batch_size: 250,
            ..UpsertReport::default()
        };
        let mut blacklisted = BlockSet::new();
        blacklisted.add_entries(st.blacklist.iter().map(String::as_str));
        blacklisted.add_emails(st.bounced.iter().cloned());
        let mut reactivated = Vec::new();
        let group = st.receivers.entry(group_id.to_string()).or_default();
        for row in rows {
            let data = &row.receiver;
            match group.get_mut(&data.email) {
                Some(existing) => {
                    existing.receiver.person = data.person.clone();
                    existing.receiver.crm = Some(data.crm.clone());
                    if row.activate && existing.receiver.state.is_opted_out() {
                        existing.receiver.state = ReceiverState::Active;
                        reactivated.push(data.email.clone());
                    }
                    report.updated += 1;
                }
                None => {
                    let state = if blacklisted.blocks(&data.email) && row.activate {
                        reactivated.push(data.email.clone());
                        ReceiverState::Active
                    } else if row.activate {
                        ReceiverState::Active
                    } else {
                        ReceiverState::Deactivated
                    };
                    group.insert(
                        data.email.clone(),
                        StoredReceiver {
                            receiver: CurrentReceiver {
                                email: data.email.clone(),
                                state,
                                person: data.person.clone(),
                                crm: Some(data.crm.clone()),
                            },
                            activated: row.activate.then_some(now),
                            deactivated: None,
                            bounced: None,
                        },
                    );
                    report.inserted += 1;
                }
            }
        }
        st.reactivated
            .extend(reactivated.into_iter().map(|e| (group_id.to_string(), e)));
        Ok(report)
    }

    async fn remove_receivers(
        &self,
        group_id: &str,
        emails: &[Email],
    ) -> Result<RemoveReport, NewsletterError> {
        let mut st = self.call(
            NewsletterPort::Receivers,
            format!("remove {group_id} {}", emails.len()),
        )?;
        let mut report = RemoveReport::default();
        let group = st.receivers.entry(group_id.to_string()).or_default();
        for email in emails {
            if group.remove(email).is_some() {
                report.removed.push(email.clone());
            } else {
                report.already_gone.push(email.clone());
            }
        }
        Ok(report)
    }

    async fn strip_receivers(
        &self,
        group_id: &str,
        emails: &[Email],
    ) -> Result<(), NewsletterError> {
        let mut st = self.call(
            NewsletterPort::Receivers,
            format!("strip {group_id} {}", emails.len()),
        )?;
        if let Some(group) = st.receivers.get_mut(group_id) {
            for email in emails {
                if let Some(r) = group.get_mut(email) {
                    r.receiver.person = Default::default();
                    r.receiver.crm = None;
                }
            }
        }
        Ok(())
    }

    async fn remove_receiver(
        &self,
        group_id: &str,
        email: &Email,
    ) -> Result<bool, NewsletterError> {
        let mut st = self.call(NewsletterPort::Receivers, format!("remove {group_id} 1"))?;
        Ok(st
            .receivers
            .get_mut(group_id)
            .is_some_and(|g| g.remove(email).is_some()))
    }

    async fn change_email(&self, from: &Email, to: &Email) -> Result<EmailChange, NewsletterError> {
        let mut st = self.call(NewsletterPort::Receivers, "change_email".to_string())?;
        if st.receivers.values().any(|g| g.contains_key(to)) {
            return Err(NewsletterError::Conflict(
                "the new address is a receiver already".into(),
            ));
        }
        let mut changed = false;
        for group in st.receivers.values_mut() {
            if let Some(mut stored) = group.remove(from) {
                stored.receiver.email = to.clone();
                group.insert(to.clone(), stored);
                changed = true;
            }
        }
        if changed {
            Ok(EmailChange::Changed)
        } else {
            Err(NewsletterError::NotFound(
                "the old address is no receiver".into(),
            ))
        }
    }

    async fn find_receiver(
        &self,
        group_id: &str,
        email: &Email,
    ) -> Result<Option<ReceiverRecord>, NewsletterError> {
        let st = self.call(NewsletterPort::Receivers, format!("find {group_id}"))?;
        Ok(st
            .receivers
            .get(group_id)
            .and_then(|g| g.get(email))
            .map(|r| record(group_id, r)))
    }

    async fn filter_receivers(
        &self,
        request: &FilterRequest,
    ) -> Result<Page<ReceiverRecord>, NewsletterError> {
        let st = self.call(NewsletterPort::Receivers, "filter".to_string())?;
        let mut found = Vec::new();
        for (group, receivers) in &st.receivers {
            if !request.groups.is_empty() && !request.groups.contains(group) {
                continue;
            }
            for stored in receivers.values() {
                let hit = if request.match_any {
                    request.rules.iter().any(|r| matches(r, stored))
                } else {
                    request.rules.iter().all(|r| matches(r, stored))
                };
                if hit {
                    found.push(record(group, stored));
                }
            }
        }
        let size = request.page_size.max(1);
        let start = request.page as usize * size;
        let items: Vec<ReceiverRecord> = found.into_iter().skip(start).take(size).collect();
        Ok(Page {
            is_last: items.len() < size,
            items,
            unreadable: 0,
        })
    }
}

#[async_trait]
impl BlockList for InMemoryNewsletter {
    async fn blocked(&self) -> Result<Arc<BlockSet>, NewsletterError> {
        let st = self.call(NewsletterPort::BlockList, "blocked".to_string())?;
        let mut set = BlockSet::new();
        set.add_entries(st.blacklist.iter().map(String::as_str));
        set.add_emails(st.bounced.iter().cloned());
        Ok(Arc::new(set))
    }
}

impl NewsletterEndpoint for InMemoryNewsletter {
    fn api_url(&self) -> String {
        crate::domain::settings::DEFAULT_API_URL.to_string()
    }
}

#[async_trait]
impl crate::ports::newsletter::HookRegistry for InMemoryNewsletter {
    async fn register_hook(
        &self,
        url: &str,
        group_id: &str,
        verify: &crate::secret::Secret,
    ) -> Result<crate::ports::newsletter::HookRegistration, NewsletterError> {
        let mut st = self.call(NewsletterPort::Hooks, format!("register_hook {group_id}"))?;
        if verify.expose().len() < 10 {
            return Err(NewsletterError::Refused(
                "the verify token must have 10 to 50 characters".into(),
            ));
        }
        let token = format!("call-token-{group_id}-{}", st.hooks.len() + 1);
        st.hooks
            .push((group_id.to_string(), url.to_string(), token.clone()));
        Ok(crate::ports::newsletter::HookRegistration {
            call_token: crate::secret::Secret::new(token),
        })
    }

    async fn list_hooks(
        &self,
    ) -> Result<Vec<crate::ports::newsletter::RegisteredHook>, NewsletterError> {
        let st = self.call(NewsletterPort::Hooks, "list_hooks".to_string())?;
        Ok(st
            .hooks
            .iter()
            .map(|(group, url, _)| crate::ports::newsletter::RegisteredHook {
                event: "receiver".into(),
                condition: group.clone(),
                url: url.clone(),
            })
            .collect())
    }

    async fn delete_hook(&self, group_id: &str) -> Result<(), NewsletterError> {
        let mut st = self.call(NewsletterPort::Hooks, format!("delete_hook {group_id}"))?;
        st.hooks.retain(|(group, _, _)| group != group_id);
        Ok(())
    }

    async fn receiver_by_id(
        &self,
        group_id: &str,
        receiver_id: &str,
    ) -> Result<Option<ReceiverRecord>, NewsletterError> {
        let st = self.call(
            NewsletterPort::Receivers,
            format!("receiver_by_id {group_id} {receiver_id}"),
        )?;
        Ok(st
            .receivers
            .get(group_id)
            .and_then(|g| {
                g.values()
                    .find(|r| r.receiver.email.as_str() == receiver_id)
            })
            .map(|r| record(group_id, r)))
    }
}
