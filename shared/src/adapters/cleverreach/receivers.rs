//! CleverReach adapter: receivers (docs/architecture.md §11): batched upserts that never touch an existing
//! receiver's state, removals, address changes, paged reads, the runtime filter, bounces,
//! the blacklist.

use super::client::{CleverReachClient, JsonBody, check_array, decode, now_unix};
use super::config::{
    DELETE_BATCH, MAX_BOUNCE_PAGE_SIZE, MAX_PAGE_SIZE, MAX_UPSERT_BATCH, attribute,
};
use super::error::CleverReachError;
use super::tokens::TokenStore;
use super::wire::{
    UpsertAnswerRow, UpsertRow, WireBlacklistEntry, WireBounce, WireReceiver, WireWhoami,
};
use crate::domain::blocklist::BlockSet;
use crate::domain::email::Email;
use crate::domain::receiver::{CurrentReceiver, PersonData, ReceiverData, ReceiverState};
use crate::domain::recipient::{CrmRef, PersonEntity};
pub use crate::ports::newsletter::{
    Bounce, EmailChange, FilterRequest, FilterRule, ListState, Page, ReceiverFilter,
    ReceiverRecord, RejectedReceiver, RemoveReport, UpsertReport,
};
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One receiver to write: its data, and whether it is new and should start active.
/// Implemented for `(ReceiverData, bool)`; the planner's upsert rows can implement it too.
pub trait ReceiverWrite {
    fn data(&self) -> &ReceiverData;
    /// True only for receivers new to the group; `false` never changes anyone's state.
    fn activate(&self) -> bool;
}

impl ReceiverWrite for (ReceiverData, bool) {
    fn data(&self) -> &ReceiverData {
        &self.0
    }
    fn activate(&self) -> bool {
        self.1
    }
}

impl ReceiverWrite for crate::domain::planner::ReceiverUpsert {
    fn data(&self) -> &ReceiverData {
        &self.receiver
    }
    fn activate(&self) -> bool {
        self.activate
    }
}

/// A refused row, its reason with any address in it replaced by a tag (`invalid address
/// '[e-mail 1a2b3c4d]'`): reasons are logged and written to the source's last error.
fn rejected(email: &Email, reason: &str) -> RejectedReceiver {
    RejectedReceiver {
        email: email.clone(),
        reason: crate::redact::emails(reason).into_owned(),
    }
}

/// The connected CleverReach account (`debug/whoami`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub email: String,
    pub login_domain: String,
}

/// `type` of the list endpoint.
fn list_state_wire(state: ListState) -> &'static str {
    match state {
        ListState::All => "all",
        ListState::Active => "active",
        ListState::Inactive => "inactive",
        ListState::Bounced => "bounce",
    }
}

/// One rule of the runtime filter (`POST /receivers/filter.json`); an attribute is referenced
/// by its id (`a<id>.value`).
fn filter_rule_wire(rule: &FilterRule, attributes: &BTreeMap<String, String>) -> Value {
    let crm_id_field;
    let (field, logic, condition) = match rule {
        FilterRule::EmailIs(email) => ("email", "eq", email.to_string()),
        FilterRule::CrmIdIs(id) => {
            let attribute = attributes
                .get(attribute::CRM_ID)
                .map(String::as_str)
                .unwrap_or("0");
            crm_id_field = format!("a{attribute}.value");
            (crm_id_field.as_str(), "eq", id.to_ascii_lowercase())
        }
        FilterRule::ActivatedAfter(t) => ("activated", "bg", t.timestamp().to_string()),
        FilterRule::DeactivatedAfter(t) => ("deactivated", "bg", t.timestamp().to_string()),
        FilterRule::RegisteredAfter(t) => ("registered", "bg", t.timestamp().to_string()),
        FilterRule::BouncedAfter(t) => ("bounced", "bg", t.timestamp().to_string()),
    };
    json!({ "field": field, "logic": logic, "condition": condition })
}

/// How long the account's opt-outs are reused: an address blacklisted in CleverReach is kept
/// out of every group within two minutes, while a busy worker reads the lists once per two
/// minutes rather than once per batch.
pub const BLOCKED_TTL: std::time::Duration = std::time::Duration::from_secs(120);

fn time(unix: i64) -> Option<DateTime<Utc>> {
    if unix > 0 {
        DateTime::from_timestamp(unix, 0)
    } else {
        None
    }
}

fn is_guid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A receiver as the domain sees it; `None` when its address is not a valid e-mail.
fn current_receiver(w: &WireReceiver) -> Option<CurrentReceiver> {
    let email = Email::parse(&w.email).ok()?;
    let state = if w.bounced > 0 {
        ReceiverState::Bounced
    } else if w.deactivated > 0 || !w.active {
        ReceiverState::Deactivated
    } else {
        ReceiverState::Active
    };
    let attr = |name: &str| w.global_attributes.get(name).cloned().unwrap_or_default();
    let crm_id = attr(attribute::CRM_ID);
    let crm_id = crm_id.trim().trim_matches(|c| c == '{' || c == '}');
    let crm = PersonEntity::from_logical_name(&attr(attribute::CRM_ENTITY))
        .filter(|_| is_guid(crm_id))
        .map(|entity| CrmRef::new(entity, crm_id));
    Some(CurrentReceiver {
        email,
        state,
        person: PersonData {
            salutation: attr(attribute::SALUTATION),
            first_name: attr(attribute::FIRST_NAME),
            last_name: attr(attribute::LAST_NAME),
            company: w
                .attributes
                .get(attribute::GROUP_COMPANY)
                .cloned()
                .unwrap_or_default(),
        },
        crm,
    })
}

pub(super) fn record_of(w: &WireReceiver, group_id: &str) -> Option<ReceiverRecord> {
    let receiver = current_receiver(w)?;
    Some(ReceiverRecord {
        id: w.id.clone(),
        group_id: if w.group_id.is_empty() || w.group_id == "0" {
            group_id.to_string()
        } else {
            w.group_id.clone()
        },
        receiver,
        source: w.source.clone(),
        registered: time(w.registered),
        activated: time(w.activated),
        deactivated: time(w.deactivated),
        bounced: time(w.bounced),
        global_company: w
            .global_attributes
            .get(attribute::COMPANY)
            .cloned()
            .unwrap_or_default(),
    })
}

/// The body row for one receiver. `activate` sends registered/activated = now; otherwise no
/// stamp at all, so an existing receiver's state (unsubscribed, bounced) stays as it is.
fn upsert_row<'a>(
    data: &'a ReceiverData,
    activate: bool,
    now: i64,
    source: &'a str,
) -> UpsertRow<'a> {
    let mut global = BTreeMap::new();
    global.insert(attribute::SALUTATION, data.person.salutation.as_str());
    global.insert(attribute::FIRST_NAME, data.person.first_name.as_str());
    global.insert(attribute::LAST_NAME, data.person.last_name.as_str());
    global.insert(attribute::CRM_ENTITY, data.crm.entity.logical_name());
    global.insert(attribute::CRM_ID, data.crm.id.as_str());
    UpsertRow {
        email: data.email.as_str(),
        registered: activate.then_some(now),
        activated: activate.then_some(now),
        source,
        global_attributes: global,
        attributes: BTreeMap::from([(attribute::GROUP_COMPANY, data.person.company.as_str())]),
    }
}

/// Whether a batch-delete row's error string means "not in this group".
fn means_not_there(reason: &str) -> bool {
    let reason = reason.to_lowercase();
    reason.contains("invalid receiver") || reason.contains("not found")
}

impl<S: TokenStore> CleverReachClient<S> {
    /// Writes receivers into a group (`/receivers/upsert`), in batches of the configured size
    /// (at most 1000). A 413 halves the batch for the rest of the call. Each `(data,
    /// activate)`: `activate` = this is a new receiver who should start active; `false`
    /// updates data only and never changes anyone's state. The receiver attributes are
    /// created first if missing (once per client).
    pub async fn upsert_receivers<R: ReceiverWrite + Sync>(
        &self,
        group_id: &str,
        receivers: &[R],
    ) -> Result<UpsertReport, CleverReachError> {
        let mut report = UpsertReport {
            batch_size: self
                .inner
                .config
                .upsert_batch_size
                .clamp(1, MAX_UPSERT_BATCH),
            ..UpsertReport::default()
        };
        if receivers.is_empty() {
            return Ok(report);
        }
        self.ensure_receiver_attributes().await?;
        self.ensure_group_attributes(group_id).await?;
        let url = self.api(&["groups.json", group_id, "receivers", "upsert"])?;
        let source = self.inner.config.source.as_str();
        let mut start = 0;
        while start < receivers.len() {
            let end = (start + report.batch_size).min(receivers.len());
            let batch = &receivers[start..end];
            let now = now_unix();
            let rows: Vec<UpsertRow<'_>> = batch
                .iter()
                .map(|r| upsert_row(r.data(), r.activate(), now, source))
                .collect();
            // Straight to JSON text: no tree of the batch in between.
            let body = serde_json::to_vec(&rows)
                .map(bytes::Bytes::from)
                .map_err(|e| CleverReachError::InvalidInput {
                    message: e.to_string(),
                })?;
            drop(rows);
            let answer = self
                .call_read(
                    Method::POST,
                    url.clone(),
                    &[],
                    Some(JsonBody::Text(&body)),
                    check_array::<Vec<UpsertAnswerRow>>,
                )
                .await;
            match answer {
                Ok(Ok(rows)) => {
                    report.calls += 1;
                    tally_rows(&mut report, batch, rows)?;
                    start = end;
                }
                Ok(Err(answer)) => {
                    report.calls += 1;
                    tally(&mut report, batch, answer)?;
                    start = end;
                }
                Err(CleverReachError::TooLarge { .. }) if report.batch_size > 1 => {
                    report.batch_size = (report.batch_size / 2).max(1);
                    tracing::info!(
                        batch_size = report.batch_size,
                        "CleverReach said 413; smaller batches"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Leaves only the address and the state on these receivers of a group: names, company
    /// and the CRM record are emptied (an upsert that sends no state, so an opt-out stays).
    /// For the opted-out receivers of a record deleted in the CRM.
    pub async fn strip_receivers(
        &self,
        group_id: &str,
        emails: &[Email],
    ) -> Result<(), CleverReachError> {
        if emails.is_empty() {
            return Ok(());
        }
        self.ensure_receiver_attributes().await?;
        self.ensure_group_attributes(group_id).await?;
        let url = self.api(&["groups.json", group_id, "receivers", "upsert"])?;
        let source = self.inner.config.source.as_str();
        for batch in emails.chunks(DELETE_BATCH) {
            let rows: Vec<UpsertRow<'_>> = batch
                .iter()
                .map(|email| UpsertRow {
                    email: email.as_str(),
                    registered: None,
                    activated: None,
                    source,
                    global_attributes: attribute::ALL.iter().map(|name| (*name, "")).collect(),
                    attributes: attribute::GROUP.iter().map(|name| (*name, "")).collect(),
                })
                .collect();
            let body = serde_json::to_value(&rows).map_err(|e| CleverReachError::InvalidInput {
                message: e.to_string(),
            })?;
            self.call(Method::POST, url.clone(), &[], Some(&body))
                .await?;
        }
        Ok(())
    }

    /// Removes receivers from a group (batch delete, 250 per call). Addresses not in the
    /// group are reported as already gone.
    pub async fn remove_receivers(
        &self,
        group_id: &str,
        emails: &[Email],
    ) -> Result<RemoveReport, CleverReachError> {
        let mut report = RemoveReport::default();
        let url = self.api(&["groups.json", group_id, "receivers", "delete"])?;
        for batch in emails.chunks(DELETE_BATCH) {
            let body = Value::Array(batch.iter().map(|e| Value::String(e.to_string())).collect());
            let answer = self
                .call(Method::POST, url.clone(), &[], Some(&body))
                .await?;
            let rows = match answer {
                Value::Array(rows) if rows.len() == batch.len() => rows,
                other => {
                    return Err(CleverReachError::Decode {
                        message: format!(
                            "batch delete of {} answered {}",
                            batch.len(),
                            shape(&other)
                        ),
                    });
                }
            };
            for (email, row) in batch.iter().zip(rows) {
                match row {
                    Value::String(reason) if means_not_there(&reason) => {
                        report.already_gone.push(email.clone())
                    }
                    Value::String(reason) => report.failed.push(rejected(email, &reason)),
                    _ => report.removed.push(email.clone()),
                }
            }
        }
        Ok(report)
    }

    /// Removes one receiver; `Ok(false)` when it was not in the group.
    pub async fn remove_receiver(
        &self,
        group_id: &str,
        email: &Email,
    ) -> Result<bool, CleverReachError> {
        let url = self.api(&["groups.json", group_id, "receivers", email.as_str()])?;
        self.delete_once(url).await
    }

    /// Changes a receiver's address in every group, keeping its history. Safe to repeat: a
    /// 404 for the old address while the new one exists means it is already done.
    pub async fn change_email(
        &self,
        old: &Email,
        new: &Email,
    ) -> Result<EmailChange, CleverReachError> {
        if old == new {
            return Ok(EmailChange::AlreadyChanged);
        }
        let url = self.api(&["receivers.json", old.as_str(), "email"])?;
        let body = json!({ "email": new.as_str() });
        match self.call(Method::PUT, url, &[], Some(&body)).await {
            Ok(_) => Ok(EmailChange::Changed),
            Err(CleverReachError::NotFound { message }) => {
                let lookup = self.api(&["receivers.json", new.as_str()])?;
                match self.call(Method::GET, lookup, &[], None).await {
                    Ok(_) => Ok(EmailChange::AlreadyChanged),
                    Err(CleverReachError::NotFound { .. }) => Err(CleverReachError::NotFound {
                        message: format!(
                            "neither the old nor the new address is a receiver ({message})"
                        ),
                    }),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Activates a receiver in a group. Never used on an opt-out: that is the caller's rule.
    pub async fn activate(&self, group_id: &str, email: &Email) -> Result<(), CleverReachError> {
        let url = self.api(&[
            "groups.json",
            group_id,
            "receivers",
            email.as_str(),
            "activate",
        ])?;
        self.call(Method::PUT, url, &[], None).await.map(|_| ())
    }

    pub async fn deactivate(&self, group_id: &str, email: &Email) -> Result<(), CleverReachError> {
        let url = self.api(&[
            "groups.json",
            group_id,
            "receivers",
            email.as_str(),
            "deactivate",
        ])?;
        self.call(Method::PUT, url, &[], None).await.map(|_| ())
    }

    /// Pages through a group's receivers (0-based pages, at most 5000 each). Read the pages
    /// before changing the group: removals shift later pages.
    pub fn receivers(&self, group_id: &str, filter: ReceiverFilter) -> ReceiverPages<S> {
        ReceiverPages {
            client: self.clone(),
            group_id: group_id.to_string(),
            filter: ReceiverFilter {
                page_size: filter.page_size.clamp(1, MAX_PAGE_SIZE),
                ..filter
            },
            next: 0,
            known_pages: None,
            ahead: futures::stream::FuturesOrdered::new(),
            done: false,
            unreadable: 0,
        }
    }

    /// One receiver of a group, `None` when it is not in the group.
    pub async fn find_receiver(
        &self,
        group_id: &str,
        email: &Email,
    ) -> Result<Option<ReceiverRecord>, CleverReachError> {
        let url = self.api(&["groups.json", group_id, "receivers", email.as_str()])?;
        match self.call(Method::GET, url, &[], None).await {
            Ok(value) => {
                let wire: WireReceiver = decode(value)?;
                Ok(record_of(&wire, group_id))
            }
            Err(CleverReachError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One page of the runtime filter, across the given groups (or all).
    pub async fn filter_receivers(
        &self,
        request: &FilterRequest,
    ) -> Result<Page<ReceiverRecord>, CleverReachError> {
        let page_size = request.page_size.clamp(1, MAX_PAGE_SIZE);
        let attributes = if request
            .rules
            .iter()
            .any(|r| matches!(r, FilterRule::CrmIdIs(_)))
        {
            self.ensure_receiver_attributes().await?.clone()
        } else {
            BTreeMap::new()
        };
        let body = json!({
            "groups": request.groups,
            "operator": if request.match_any { "OR" } else { "AND" },
            "rules": request
                .rules
                .iter()
                .map(|r| filter_rule_wire(r, &attributes))
                .collect::<Vec<_>>(),
            "detail": 0,
            "page": request.page,
            "pagesize": page_size,
        });
        let url = self.api(&["receivers", "filter.json"])?;
        let rows: Vec<WireReceiver> = self.call_as(Method::POST, url, &[], Some(&body)).await?;
        let is_last = rows.len() < page_size;
        let mut items = Vec::with_capacity(rows.len());
        let mut unreadable = 0;
        for row in &rows {
            match record_of(row, "") {
                Some(r) => items.push(r),
                None => unreadable += 1,
            }
        }
        Ok(Page {
            items,
            unreadable,
            is_last,
        })
    }

    /// One page of the account's bounce records (0-based, at most 500 per page).
    pub async fn bounces(
        &self,
        page: u32,
        page_size: usize,
    ) -> Result<Page<Bounce>, CleverReachError> {
        let page_size = page_size.clamp(1, MAX_BOUNCE_PAGE_SIZE);
        let url = self.api(&["bounces.json"])?;
        let query = [
            ("page", page.to_string()),
            ("pagesize", page_size.to_string()),
        ];
        let rows: Vec<WireBounce> = self.call_as(Method::GET, url, &query, None).await?;
        let is_last = rows.len() < page_size;
        let mut items = Vec::with_capacity(rows.len());
        let mut unreadable = 0;
        for row in rows {
            match Email::parse(&row.email) {
                Ok(email) => items.push(Bounce {
                    email,
                    category: row.category,
                    occurrences: row.occurences,
                    last_update: time(row.last_update),
                    message: row.bounce_message,
                }),
                Err(_) => unreadable += 1,
            }
        }
        Ok(Page {
            items,
            unreadable,
            is_last,
        })
    }

    /// The account blacklist's addresses (entries that are not plain addresses, such as
    /// domain patterns, are left out; [`Self::blocked`] reads them too).
    pub async fn blacklist(&self) -> Result<Vec<Email>, CleverReachError> {
        Ok(self
            .blacklist_entries()
            .await?
            .iter()
            .filter_map(|entry| Email::parse(entry).ok())
            .collect())
    }

    /// The account blacklist's entries as stored: addresses and domain patterns (`*@domain`).
    pub async fn blacklist_entries(&self) -> Result<Vec<String>, CleverReachError> {
        let url = self.api(&["blacklist.json"])?;
        let rows: Vec<WireBlacklistEntry> = self.call_as(Method::GET, url, &[], None).await?;
        Ok(rows.into_iter().map(|row| row.email).collect())
    }

    /// The account's opt-outs: blacklisted addresses and domains and every bounced address,
    /// read at most every [`BLOCKED_TTL`] (one blacklist call and the bounce list, 500 a page).
    pub async fn blocked(&self) -> Result<Arc<BlockSet>, CleverReachError> {
        let mut cached = self.inner.blocked.lock().await;
        if let Some((read_at, set)) = cached.as_ref()
            && read_at.elapsed() < BLOCKED_TTL
        {
            return Ok(Arc::clone(set));
        }
        let mut set = BlockSet::new();
        let unreadable =
            set.add_entries(self.blacklist_entries().await?.iter().map(String::as_str));
        if !unreadable.is_empty() {
            tracing::warn!(
                entries = unreadable.len(),
                "blacklist entries that are neither an address nor a domain were passed by"
            );
        }
        let mut page = 0;
        loop {
            let bounces = self.bounces(page, MAX_BOUNCE_PAGE_SIZE).await?;
            set.add_emails(bounces.items.into_iter().map(|b| b.email));
            if bounces.is_last {
                break;
            }
            page += 1;
        }
        let set = Arc::new(set);
        *cached = Some((std::time::Instant::now(), Arc::clone(&set)));
        Ok(set)
    }

    /// The connected account; also a cheap check that the tokens work.
    pub async fn whoami(&self) -> Result<Account, CleverReachError> {
        let url = self.api(&["debug", "whoami.json"])?;
        let me: WireWhoami = self.call_as(Method::GET, url, &[], None).await?;
        Ok(Account {
            id: me.id,
            name: me.name,
            email: me.email,
            login_domain: me.login_domain,
        })
    }
}

/// Reads an upsert answer: one entry per row, a status object or a bare error string.
fn tally<R: ReceiverWrite>(
    report: &mut UpsertReport,
    batch: &[R],
    answer: Value,
) -> Result<(), CleverReachError> {
    let rows = match answer {
        Value::Array(rows) if rows.len() == batch.len() => rows,
        other => {
            return Err(CleverReachError::Decode {
                message: format!(
                    "an upsert of {} rows answered {}",
                    batch.len(),
                    shape(&other)
                ),
            });
        }
    };
    for (write, row) in batch.iter().zip(rows) {
        let reject = |reason: String| rejected(&write.data().email, &reason);
        match &row {
            Value::String(reason) => report.rejected.push(reject(reason.clone())),
            Value::Object(obj) => match obj.get("status").and_then(Value::as_str) {
                Some(status) if status.contains("insert") => report.inserted += 1,
                Some(status)
                    if status.contains("update")
                        || status.contains("upsert")
                        || status.contains("success") =>
                {
                    report.updated += 1
                }
                Some(status) => report.rejected.push(reject(status.to_string())),
                // upsertplus-style full receiver objects
                None if obj.contains_key("email") => report.updated += 1,
                None => report.rejected.push(reject("unexpected answer row".into())),
            },
            other => report
                .rejected
                .push(reject(format!("unexpected answer row: {}", shape(other)))),
        }
    }
    Ok(())
}

/// [`tally`] for an answer read straight into its rows (the same counts and reasons).
fn tally_rows<R: ReceiverWrite>(
    report: &mut UpsertReport,
    batch: &[R],
    rows: Vec<UpsertAnswerRow>,
) -> Result<(), CleverReachError> {
    if rows.len() != batch.len() {
        return Err(CleverReachError::Decode {
            message: format!(
                "an upsert of {} rows answered an array of {}",
                batch.len(),
                rows.len()
            ),
        });
    }
    for (write, row) in batch.iter().zip(rows) {
        let reject = |reason: String| rejected(&write.data().email, &reason);
        match row {
            UpsertAnswerRow::Refused(reason) => report.rejected.push(reject(reason)),
            UpsertAnswerRow::Object { status, email } => match status {
                Some(status) if status.contains("insert") => report.inserted += 1,
                Some(status)
                    if status.contains("update")
                        || status.contains("upsert")
                        || status.contains("success") =>
                {
                    report.updated += 1
                }
                Some(status) => report.rejected.push(reject(status)),
                // upsertplus-style full receiver objects
                None if email => report.updated += 1,
                None => report.rejected.push(reject("unexpected answer row".into())),
            },
            UpsertAnswerRow::Other(shape) => report
                .rejected
                .push(reject(format!("unexpected answer row: {shape}"))),
        }
    }
    Ok(())
}

/// A short description of a JSON value for error texts (never its content: it may hold
/// personal data).
fn shape(value: &Value) -> String {
    match value {
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Object(_) => "an object".into(),
        Value::String(_) => "a string".into(),
        Value::Number(_) => "a number".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Null => "nothing".into(),
    }
}

/// Pages of a group's receivers requested at once after the first (docs/architecture.md §4:
/// the same bound as the upserts in flight; an index of a group is read before any write).
/// At real latency a million receivers are 200 pages: 60 s one after another at 300 ms, 15 s
/// four at a time.
pub const PAGES_IN_FLIGHT: usize = 4;

/// A page requested: its number and what it answered.
type PageFuture =
    futures::future::BoxFuture<'static, (u32, Result<Vec<WireReceiver>, CleverReachError>)>;

/// Pages of a group's receivers; see [`CleverReachClient::receivers`]. The first page is read
/// alone; when it is full, the group's (cached) count says how many pages there are, and those
/// are read [`PAGES_IN_FLIGHT`] at a time, in order; after them (the count may be stale) the
/// pages are read one by one until a short one. A page past the end answers empty, so a count
/// that is too high costs an empty read and one that is too low a sequential tail, never a
/// receiver missed.
pub struct ReceiverPages<S: TokenStore> {
    client: CleverReachClient<S>,
    group_id: String,
    filter: ReceiverFilter,
    /// The next page to request.
    next: u32,
    /// Pages the group's count says there are (after a full first page).
    known_pages: Option<u32>,
    ahead: futures::stream::FuturesOrdered<PageFuture>,
    done: bool,
    unreadable: usize,
}

impl<S: TokenStore> ReceiverPages<S> {
    fn request(&mut self, page: u32) -> Result<PageFuture, CleverReachError> {
        let url = self
            .client
            .api(&["groups.json", &self.group_id, "receivers"])?;
        let query = [
            ("page", page.to_string()),
            ("pagesize", self.filter.page_size.to_string()),
            ("type", list_state_wire(self.filter.state).to_string()),
            ("detail", "0".to_string()),
        ];
        let client = self.client.clone();
        Ok(Box::pin(async move {
            let rows = client
                .call_as::<Vec<WireReceiver>>(Method::GET, url, &query, None)
                .await;
            (page, rows)
        }))
    }

    /// Fills the read-ahead up to [`PAGES_IN_FLIGHT`] within the known pages.
    fn read_ahead(&mut self) -> Result<(), CleverReachError> {
        let Some(known) = self.known_pages else {
            return Ok(());
        };
        while self.ahead.len() < PAGES_IN_FLIGHT && self.next < known {
            let page = self.request(self.next)?;
            self.ahead.push_back(page);
            self.next += 1;
        }
        Ok(())
    }

    /// The next page, `None` after the last. Receivers whose address is not a valid e-mail
    /// are skipped and counted in [`Self::unreadable`].
    pub async fn next_page(&mut self) -> Result<Option<Vec<CurrentReceiver>>, CleverReachError> {
        use futures::StreamExt;
        if self.done {
            return Ok(None);
        }
        self.read_ahead()?;
        let answer = match self.ahead.is_empty() {
            true => {
                let page = self.request(self.next)?;
                self.next += 1;
                Some(page.await)
            }
            false => self.ahead.next().await,
        };
        let rows = match answer {
            Some((_, Ok(rows))) => rows,
            Some((page, Err(e))) => {
                // Asked again, the pager starts over from the page that failed.
                self.next = page;
                self.ahead = futures::stream::FuturesOrdered::new();
                return Err(e);
            }
            None => Vec::new(),
        };
        if rows.len() < self.filter.page_size {
            // The end: pages requested after it are dropped unread.
            self.done = true;
            self.ahead = futures::stream::FuturesOrdered::new();
        } else if self.next == 1 && self.known_pages.is_none() {
            let url = self.client.api(&["groups.json", &self.group_id, "stats"])?;
            let count = Self::page_count(self.client.clone(), url, self.filter.page_size);
            self.known_pages = Some(count.await?);
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            match current_receiver(row) {
                Some(r) => page.push(r),
                None => self.unreadable += 1,
            }
        }
        if self.unreadable > 0 {
            tracing::warn!(
                unreadable = self.unreadable,
                "receivers with addresses that are not valid e-mails were skipped"
            );
        }
        Ok(Some(page))
    }

    /// How many pages the group's count says there are: enough for one more receiver than it
    /// counts, so that an exact multiple of the page size ends on a short (empty) page read in
    /// the read-ahead rather than after it.
    /// (The pager itself is not `Sync`, so this owns what it uses across the call.)
    async fn page_count(
        client: CleverReachClient<S>,
        stats_url: url::Url,
        page_size: usize,
    ) -> Result<u32, CleverReachError> {
        #[derive(serde::Deserialize)]
        struct Stats {
            #[serde(default)]
            total_count: u64,
        }
        let stats: Stats = client.call_as(Method::GET, stats_url, &[], None).await?;
        let size = page_size.max(1) as u64;
        Ok(u32::try_from((stats.total_count + 1).div_ceil(size)).unwrap_or(u32::MAX))
    }

    /// Receivers skipped so far because their address is not a valid e-mail.
    pub fn unreadable(&self) -> usize {
        self.unreadable
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn wire(json: Value) -> WireReceiver {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn state_comes_from_bounced_deactivated_and_active() {
        let base = |bounced: i64, deactivated: i64, active: bool| {
            current_receiver(&wire(json!({"email": "a@example.com", "bounced": bounced, "deactivated": deactivated, "active": active})))
                .unwrap()
                .state
        };
        assert_eq!(base(0, 0, true), ReceiverState::Active);
        assert_eq!(base(0, 17, false), ReceiverState::Deactivated);
        assert_eq!(base(0, 0, false), ReceiverState::Deactivated);
        assert_eq!(base(5, 0, false), ReceiverState::Bounced);
        assert_eq!(base(5, 17, true), ReceiverState::Bounced);
    }

    #[test]
    fn the_crm_record_is_read_only_when_entity_and_guid_are_both_valid() {
        let crm = |entity: &str, id: &str| {
            current_receiver(&wire(json!({"email": "a@example.com", "active": true,
                "global_attributes": {"crmentity": entity, "crmid": id}})))
            .unwrap()
            .crm
        };
        let guid = "6F2B1C3A-0D4E-4F5A-8B6C-7D8E9F0A1B2C";
        assert_eq!(
            crm("contact", guid),
            Some(CrmRef::new(PersonEntity::Contact, guid))
        );
        assert_eq!(
            crm("Lead", &format!("{{{guid}}}")).map(|c| c.entity),
            Some(PersonEntity::Lead)
        );
        assert_eq!(crm("account", guid), None);
        assert_eq!(crm("contact", "12345"), None);
        assert_eq!(crm("", ""), None);
    }

    #[test]
    fn an_invalid_address_is_not_a_receiver() {
        assert!(current_receiver(&wire(json!({"email": "no address"}))).is_none());
    }

    #[test]
    fn an_upsert_answer_read_straight_into_rows_counts_as_its_json_tree_does() {
        let batch: Vec<(ReceiverData, bool)> = (0..8)
            .map(|i| {
                let data = ReceiverData {
                    email: Email::parse(&format!("r{i}@example.com")).unwrap(),
                    person: PersonData::default(),
                    crm: CrmRef::new(PersonEntity::Contact, format!("id-{i}")),
                };
                (data, i % 2 == 0)
            })
            .collect();
        let answer = json!([
            {"status": "insert success", "id": "1"},
            {"status": "update success", "id": 2},
            "invalid address 'r2@example.com';",
            {"email": "r3@example.com", "id": 4},
            {"status": 7, "email": "r4@example.com"},
            {"status": "quota exceeded"},
            {"id": 5},
            [1, 2],
        ]);
        let text = answer.to_string();
        let rows: Vec<UpsertAnswerRow> = serde_json::from_str(&text).unwrap();
        let mut straight = UpsertReport::default();
        tally_rows(&mut straight, &batch, rows).unwrap();
        let mut through_tree = UpsertReport::default();
        tally(&mut through_tree, &batch, answer).unwrap();
        assert_eq!(straight, through_tree);
        assert_eq!((straight.inserted, straight.updated), (1, 3));
        assert_eq!(straight.rejected.len(), 4);

        let short: Vec<UpsertAnswerRow> = serde_json::from_str(r#"["x"]"#).unwrap();
        let straight = tally_rows(&mut UpsertReport::default(), &batch, short).unwrap_err();
        let through_tree = tally(&mut UpsertReport::default(), &batch, json!(["x"])).unwrap_err();
        assert_eq!(straight.to_string(), through_tree.to_string());
    }
}
