//! The CleverReach simulator's account state (groups, receivers, attributes, blacklist,
//! bounces, tokens) and the rules that change it. Pure and synchronous: the HTTP layer locks
//! it, calls one method and renders the answer.

use super::hooks::Hooks;
use super::{
    CallStats, CleverReachSimConfig, Endpoint, IgnoredAttribute, IgnoredGroupAttribute,
    Reactivation, SimAttribute, SimEvent, SimGroup, SimReceiver, TokenGrants,
};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

/// An answer the API gives instead of a result: HTTP status and CleverReach's message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(what: impl std::fmt::Display) -> Self {
        ApiError::new(400, format!("Bad Request: {what}"))
    }
    pub fn invalid_group() -> Self {
        ApiError::new(404, "Not Found: invalid group")
    }
    pub fn invalid_receiver() -> Self {
        ApiError::new(404, "Not Found: invalid receiver")
    }
    pub fn unauthorized() -> Self {
        ApiError::new(401, "Unauthorized: token expired")
    }
}

/// How a batch row is written: `/insert` refuses existing addresses, `/upsert` and
/// `/upsertplus` update them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    Insert,
    Upsert,
}

/// Who makes a receiver write: the REST API, or someone inside CleverReach (a form sign-up,
/// an import by a CleverReach user). Decides which hook events fire and whether the
/// pessimistic rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    Api,
    Signup,
    Import,
}

/// The outcome of one batch row.
pub(crate) enum RowOutcome {
    Inserted(u64),
    Updated(u64),
    /// CleverReach's bare error string for a rejected row.
    Rejected(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub stamp: i64,
    pub kind: &'static str,
    pub type_id: String,
    pub value: String,
    pub group_id: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Membership {
    pub registered: i64,
    pub activated: i64,
    pub deactivated: i64,
    pub bounced: i64,
    pub source: String,
    pub attributes: BTreeMap<String, String>,
    pub tags: Vec<String>,
    /// Newest first, at most [`MAX_EVENTS`] (CleverReach attaches the last 250).
    pub events: Vec<Event>,
}

const MAX_EVENTS: usize = 250;

impl Membership {
    /// Active means: activated, and neither deactivated (unsubscribed) nor bounced.
    pub fn active(&self) -> bool {
        self.activated > 0 && self.deactivated == 0 && self.bounced == 0
    }

    /// An opt-out that nothing but an explicit `/activate` may undo.
    fn opted_out(&self) -> bool {
        self.deactivated > 0 || self.bounced > 0
    }

    fn push_event(&mut self, event: Event) {
        self.events.insert(0, event);
        self.events.truncate(MAX_EVENTS);
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub id: u64,
    pub name: String,
    pub locked: bool,
    pub backup: bool,
    pub receiver_info: String,
    pub stamp: i64,
    pub last_mailing: i64,
    pub last_changed: i64,
    /// Keyed by pool id, so listing order is the order receivers entered the account.
    pub members: BTreeMap<u64, Membership>,
    /// Bumped whenever a receiver enters or leaves the group (page positions move then).
    pub members_version: u64,
}

/// A receiver's account-wide ("pool") record: its address and global attribute values.
#[derive(Debug, Clone)]
pub(crate) struct PoolReceiver {
    pub email: String,
    pub global_attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Attribute {
    pub id: u64,
    /// 0 for a global attribute, else the group it belongs to.
    pub group_id: u64,
    pub name: String,
    pub kind: String,
    pub description: String,
    pub preview_value: String,
    pub default_value: String,
}

#[derive(Debug, Clone)]
pub(crate) struct BlacklistEntry {
    pub email: String,
    pub comment: String,
    pub stamp: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct BounceRecord {
    pub email: String,
    pub category: String,
    pub occurences: u64,
    pub last_update: i64,
    pub expires_by: i64,
    pub bounce_message: String,
}

/// How long a bounce record keeps an address blocked (CleverReach shows several years).
const BOUNCE_EXPIRY_SECS: i64 = 5 * 365 * 24 * 3600;
/// Authorization codes are short-lived and single-use.
const CODE_TTL_SECS: i64 = 600;

#[derive(Debug, Default)]
pub(crate) struct Tokens {
    /// access token → expiry (simulated unix time)
    pub access: HashMap<String, i64>,
    /// refresh tokens that may still be used once
    pub refresh: HashMap<String, ()>,
    /// access token → the refresh token issued with it (revoking one revokes both)
    pub pairs: HashMap<String, String>,
    /// authorization code → (redirect_uri, issued at)
    pub codes: HashMap<String, (String, i64)>,
    pub grants: TokenGrants,
}

pub(crate) struct SimState {
    pub cfg: CleverReachSimConfig,
    pub clock_offset: i64,
    next_group_id: u64,
    next_pool_id: u64,
    next_attribute_id: u64,
    pub groups: BTreeMap<u64, Group>,
    pub pool: BTreeMap<u64, PoolReceiver>,
    by_email: HashMap<String, u64>,
    pub attributes: BTreeMap<u64, Attribute>,
    pub blacklist: Vec<BlacklistEntry>,
    pub bounces: Vec<BounceRecord>,
    pub reactivations: Vec<Reactivation>,
    /// Upserts that asked to activate an opted-out or blacklisted receiver, whether or not
    /// it took effect.
    pub reactivation_attempts: u64,
    /// Pessimistic mode: such an upsert re-activates (see [`CleverReachSimConfig`]).
    pub pessimistic: bool,
    pub ignored_attributes: Vec<IgnoredAttribute>,
    pub ignored_group_attributes: Vec<IgnoredGroupAttribute>,
    pub hooks: Hooks,
    /// Damaged receiver renderings, keyed by (group id, pool id): an object's fields replace
    /// the rendered ones, anything else replaces the whole receiver (see
    /// [`super::CleverReachSim::corrupt_receiver`]).
    pub corruptions: HashMap<(u64, u64), Value>,
    pub tokens: Tokens,
    pub stats: CallStats,
    /// Where the pages of a group's unfiltered listing start, so that page 150 of a group of
    /// a million is not found by stepping over 750,000 receivers (see [`SimState::page_of`]).
    page_starts: std::sync::Mutex<HashMap<u64, PageStarts>>,
}

/// The first pool id of pages 0, 1, 2, … of a group's listing as of a members version.
#[derive(Debug, Default)]
struct PageStarts {
    version: u64,
    pagesize: usize,
    starts: Vec<u64>,
}

/// CleverReach keys receivers by address, whatever the case.
pub(crate) fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The domain a blacklist entry blocks as a whole (`*@domain` or `@domain`), lower case.
fn blacklisted_domain(entry: &str) -> Option<String> {
    let domain = entry
        .trim()
        .strip_prefix("*@")
        .or_else(|| entry.trim().strip_prefix('@'))?
        .to_lowercase();
    valid_email(&format!("x@{domain}")).then_some(domain)
}

/// The simulator's own address check: one `@`, something before it, a dotted domain after
/// it, no blanks. Looser than the connector's rule on purpose: CleverReach accepts addresses
/// the CRM side may not.
pub(crate) fn valid_email(email: &str) -> bool {
    let email = email.trim();
    if email.is_empty() || email.len() > 254 || email.chars().any(char::is_whitespace) {
        return false;
    }
    let mut parts = email.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// A timestamp field as CleverReach accepts it: a number or a numeric string.
fn timestamp(value: Option<&Value>) -> Result<Option<i64>, ()> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or(()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| ()),
        Some(Value::Bool(b)) => Ok(Some(if *b { 1 } else { 0 })),
        Some(_) => Err(()),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Group and receiver ids travel as strings but numbers are accepted too.
pub(crate) fn parse_id(raw: &str) -> Option<u64> {
    raw.trim().parse::<u64>().ok()
}

impl SimState {
    pub fn new(cfg: CleverReachSimConfig) -> Self {
        let pessimistic = cfg.pessimistic;
        SimState {
            cfg,
            clock_offset: 0,
            next_group_id: 1_100_001,
            next_pool_id: 5_000_001,
            next_attribute_id: 1_200_001,
            groups: BTreeMap::new(),
            pool: BTreeMap::new(),
            by_email: HashMap::new(),
            attributes: BTreeMap::new(),
            blacklist: Vec::new(),
            bounces: Vec::new(),
            reactivations: Vec::new(),
            reactivation_attempts: 0,
            pessimistic,
            ignored_attributes: Vec::new(),
            ignored_group_attributes: Vec::new(),
            hooks: Hooks::new(),
            corruptions: HashMap::new(),
            tokens: Tokens::default(),
            stats: CallStats::default(),
            page_starts: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The pool ids of page `page` of the group's whole listing (pool order), found from the
    /// nearest page start already known.
    pub fn page_of(&self, group: &Group, page: usize, pagesize: usize) -> Vec<u64> {
        if pagesize == 0 {
            return Vec::new();
        }
        let mut cache = self.page_starts.lock().unwrap_or_else(|p| p.into_inner());
        let known = cache.entry(group.id).or_default();
        if known.version != group.members_version || known.pagesize != pagesize {
            *known = PageStarts {
                version: group.members_version,
                pagesize,
                starts: Vec::new(),
            };
        }
        if known.starts.is_empty() {
            match group.members.keys().next() {
                Some(first) => known.starts.push(*first),
                None => return Vec::new(),
            }
        }
        loop {
            let from = page.min(known.starts.len() - 1);
            let mut keys = group
                .members
                .range(known.starts[from]..)
                .map(|(pid, _)| *pid);
            if from == page {
                let rows: Vec<u64> = keys.by_ref().take(pagesize).collect();
                if rows.len() == pagesize
                    && known.starts.len() == page + 1
                    && let Some(next) = keys.next()
                {
                    known.starts.push(next);
                }
                return rows;
            }
            // Step over the last page known to learn where the next one starts.
            match keys.nth(pagesize) {
                Some(next) => known.starts.push(next),
                None => return Vec::new(),
            }
        }
    }

    pub fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.clock_offset
    }

    pub fn count(&mut self, endpoint: Endpoint) {
        *self.stats.calls.entry(endpoint).or_default() += 1;
    }

    // ---- tokens -------------------------------------------------------------------------

    pub fn check_access_token(&self, token: &str) -> Result<(), ApiError> {
        match self.tokens.access.get(token) {
            Some(expires) if *expires > self.now() => Ok(()),
            _ => Err(ApiError::unauthorized()),
        }
    }

    pub fn access_ttl(&self, token: &str) -> i64 {
        self.tokens
            .access
            .get(token)
            .map(|e| (e - self.now()).max(0))
            .unwrap_or(0)
    }

    /// Issues a new access + refresh token pair.
    pub fn issue_tokens(&mut self) -> (String, String) {
        let access = new_token();
        let refresh = new_token();
        let expires = self.now() + self.cfg.access_token_ttl_secs as i64;
        self.tokens.access.insert(access.clone(), expires);
        self.tokens.refresh.insert(refresh.clone(), ());
        self.tokens.pairs.insert(access.clone(), refresh.clone());
        (access, refresh)
    }

    /// Revokes an access token and the refresh token issued with it; false when the access
    /// token was not valid.
    pub fn revoke_access_token(&mut self, token: &str) -> bool {
        if self.check_access_token(token).is_err() {
            return false;
        }
        self.tokens.access.remove(token);
        if let Some(refresh) = self.tokens.pairs.remove(token) {
            self.tokens.refresh.remove(&refresh);
        }
        true
    }

    /// Moves the simulated clock forward (stamps, token expiry, `order=changed`).
    pub fn advance_clock(&mut self, secs: i64) {
        self.clock_offset += secs;
    }

    /// Uses a refresh token up (rotation): true when it was valid.
    pub fn take_refresh_token(&mut self, token: &str) -> bool {
        self.tokens.refresh.remove(token).is_some()
    }

    pub fn issue_code(&mut self, redirect_uri: &str) -> String {
        let code = new_token();
        let now = self.now();
        self.tokens
            .codes
            .insert(code.clone(), (redirect_uri.to_string(), now));
        code
    }

    /// Uses an authorization code up; returns the redirect URI it was issued for.
    pub fn take_code(&mut self, code: &str) -> Option<String> {
        let (uri, issued) = self.tokens.codes.remove(code)?;
        (self.now() - issued <= CODE_TTL_SECS).then_some(uri)
    }

    pub fn expire_access_tokens(&mut self) {
        let past = self.now() - 1;
        for expiry in self.tokens.access.values_mut() {
            *expiry = past;
        }
    }

    pub fn revoke_refresh_tokens(&mut self) {
        self.tokens.refresh.clear();
    }

    // ---- groups -------------------------------------------------------------------------

    pub fn group(&self, id: &str) -> Result<&Group, ApiError> {
        parse_id(id)
            .and_then(|id| self.groups.get(&id))
            .ok_or_else(ApiError::invalid_group)
    }

    fn group_mut(&mut self, id: &str) -> Result<&mut Group, ApiError> {
        parse_id(id)
            .and_then(|id| self.groups.get_mut(&id))
            .ok_or_else(ApiError::invalid_group)
    }

    pub fn create_group(
        &mut self,
        name: &str,
        locked: bool,
        backup: bool,
        receiver_info: &str,
    ) -> Result<u64, ApiError> {
        if name.trim().is_empty() {
            return Err(ApiError::bad_request("name is required"));
        }
        let id = self.next_group_id;
        self.next_group_id += 1;
        let now = self.now();
        self.groups.insert(
            id,
            Group {
                id,
                name: name.to_string(),
                locked,
                backup,
                receiver_info: receiver_info.to_string(),
                stamp: now,
                last_mailing: 0,
                last_changed: now,
                members: BTreeMap::new(),
                members_version: 0,
            },
        );
        Ok(id)
    }

    pub fn update_group(&mut self, id: &str, body: &Map<String, Value>) -> Result<u64, ApiError> {
        let now = self.now();
        let group = self.group_mut(id)?;
        if let Some(name) = body.get("name") {
            let name = text(name);
            if name.trim().is_empty() {
                return Err(ApiError::bad_request("name must not be empty"));
            }
            group.name = name;
        }
        if let Some(info) = body.get("receiver_info") {
            group.receiver_info = text(info);
        }
        if let Some(locked) = body.get("locked") {
            group.locked = truthy(locked);
        }
        if let Some(backup) = body.get("backup") {
            group.backup = truthy(backup);
        }
        group.last_changed = now;
        Ok(group.id)
    }

    pub fn delete_group(&mut self, id: &str) -> Result<(), ApiError> {
        let id = parse_id(id).ok_or_else(ApiError::invalid_group)?;
        self.groups
            .remove(&id)
            .ok_or_else(ApiError::invalid_group)?;
        // The group's own attributes go with it. Hook registrations stay: nothing says
        // CleverReach removes them, so a client has to.
        self.attributes.retain(|_, a| a.group_id != id);
        Ok(())
    }

    // ---- attributes ---------------------------------------------------------------------

    /// Creates a global attribute (`group_id` 0) or one of a group.
    pub fn create_attribute(
        &mut self,
        body: &Map<String, Value>,
        group_id: u64,
    ) -> Result<u64, ApiError> {
        if group_id != 0 && !self.groups.contains_key(&group_id) {
            return Err(ApiError::invalid_group());
        }
        let name = body.get("name").map(text).unwrap_or_default();
        let name = name.trim().to_lowercase();
        if name.is_empty() {
            return Err(ApiError::bad_request("name is required"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(ApiError::bad_request(format!(
                "attribute name '{name}' has characters that are not allowed"
            )));
        }
        let kind = body
            .get("type")
            .map(text)
            .unwrap_or_else(|| "text".to_string());
        if !["text", "number", "gender", "date"].contains(&kind.as_str()) {
            return Err(ApiError::bad_request(format!(
                "unknown attribute type '{kind}'"
            )));
        }
        // A name is taken when the account or the same group has it; a global name and a
        // group's name must not clash either, or a receiver's value would be ambiguous.
        let taken = self.attributes.values().any(|a| {
            a.name == name && (a.group_id == 0 || group_id == 0 || a.group_id == group_id)
        });
        if taken {
            return Err(ApiError::new(409, "Conflict: attribute already exists"));
        }
        let id = self.next_attribute_id;
        self.next_attribute_id += 1;
        self.attributes.insert(
            id,
            Attribute {
                id,
                group_id,
                name,
                kind,
                description: body.get("description").map(text).unwrap_or_default(),
                preview_value: body.get("preview_value").map(text).unwrap_or_default(),
                default_value: body.get("default_value").map(text).unwrap_or_default(),
            },
        );
        Ok(id)
    }

    /// A global attribute by name.
    fn attribute_by_name(&self, name: &str) -> Option<&Attribute> {
        let name = name.trim().to_lowercase();
        self.attributes
            .values()
            .find(|a| a.group_id == 0 && a.name == name)
    }

    /// The attributes of one group (`group_id` 0: the global ones), in id order.
    pub fn attributes_of(&self, group_id: u64) -> impl Iterator<Item = &Attribute> {
        self.attributes
            .values()
            .filter(move |a| a.group_id == group_id)
    }

    /// Deletes an attribute and every value stored for it. With `group_id`, only an
    /// attribute of that group qualifies.
    pub fn delete_attribute(&mut self, id: &str, group_id: Option<u64>) -> Result<(), ApiError> {
        let not_found = || ApiError::new(404, "Not Found: invalid attribute");
        let id = parse_id(id).ok_or_else(not_found)?;
        let attr = self.attributes.get(&id).cloned().ok_or_else(not_found)?;
        if group_id.is_some_and(|g| g != attr.group_id) {
            return Err(not_found());
        }
        self.attributes.remove(&id);
        if attr.group_id == 0 {
            for entry in self.pool.values_mut() {
                entry.global_attributes.remove(&attr.name);
            }
        } else if let Some(group) = self.groups.get_mut(&attr.group_id) {
            for member in group.members.values_mut() {
                member.attributes.remove(&attr.name);
            }
        }
        Ok(())
    }

    // ---- receivers ----------------------------------------------------------------------

    pub fn pool_id(&self, email_or_id: &str) -> Option<u64> {
        match parse_id(email_or_id) {
            Some(id) if self.pool.contains_key(&id) => Some(id),
            _ => self.by_email.get(&email_key(email_or_id)).copied(),
        }
    }

    /// The pool id of an address (not of an id).
    pub fn by_email_id(&self, email: &str) -> Option<u64> {
        self.by_email.get(&email_key(email)).copied()
    }

    /// An entry is an address or a whole domain (`*@domain` or `@domain`).
    fn is_blacklisted(&self, email: &str) -> bool {
        let key = email_key(email);
        let domain = key.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        self.blacklist
            .iter()
            .any(|e| match blacklisted_domain(&e.email) {
                Some(blocked) => blocked == domain,
                None => email_key(&e.email) == key,
            })
    }

    fn bounce_time(&self, email: &str) -> i64 {
        let key = email_key(email);
        self.bounces
            .iter()
            .find(|b| email_key(&b.email) == key)
            .map(|b| b.last_update)
            .unwrap_or(0)
    }

    /// Finds or creates the pool record of an address.
    fn pool_entry(&mut self, email: &str) -> u64 {
        if let Some(id) = self.by_email.get(&email_key(email)) {
            return *id;
        }
        let id = self.next_pool_id;
        self.next_pool_id += 1;
        self.pool.insert(
            id,
            PoolReceiver {
                email: email.trim().to_string(),
                global_attributes: BTreeMap::new(),
            },
        );
        self.by_email.insert(email_key(email), id);
        id
    }

    /// Stores global attribute values; names that are not attributes of the account are
    /// dropped (as CleverReach does) and recorded for tests.
    fn set_global_attributes(&mut self, pool_id: u64, values: &Map<String, Value>) {
        let mut known = Vec::new();
        for (name, value) in values {
            match self.attribute_by_name(name) {
                Some(attr) => known.push((attr.name.clone(), text(value))),
                None => {
                    let email = self
                        .pool
                        .get(&pool_id)
                        .map(|p| p.email.clone())
                        .unwrap_or_default();
                    self.ignored_attributes.push(IgnoredAttribute {
                        email,
                        name: name.clone(),
                    });
                }
            }
        }
        if let Some(entry) = self.pool.get_mut(&pool_id) {
            entry.global_attributes.extend(known);
        }
    }

    /// Keeps the values of `attributes` that name an attribute of the group; the others are
    /// dropped, as CleverReach drops unknown global attributes, and remembered for tests.
    fn known_local(
        &mut self,
        group_id: u64,
        email: &str,
        values: Option<&Value>,
    ) -> Map<String, Value> {
        let Some(values) = values.and_then(Value::as_object) else {
            return Map::new();
        };
        let names: Vec<String> = self
            .attributes_of(group_id)
            .map(|a| a.name.clone())
            .collect();
        let mut known = Map::new();
        for (name, value) in values {
            let key = name.trim().to_lowercase();
            if names.contains(&key) {
                known.insert(key, value.clone());
            } else {
                self.ignored_group_attributes.push(IgnoredGroupAttribute {
                    group_id: group_id.to_string(),
                    email: email.to_string(),
                    name: name.clone(),
                });
            }
        }
        known
    }

    /// One row of `/insert`, `/upsert`, `/upsertplus` or a single add or update (`origin`
    /// API), or of a sign-up or import inside CleverReach.
    pub fn write_row(
        &mut self,
        group_id: u64,
        row: &Value,
        mode: WriteMode,
        origin: Origin,
    ) -> RowOutcome {
        let Some(obj) = row.as_object() else {
            return RowOutcome::Rejected("invalid receiver data;".to_string());
        };
        let email = obj.get("email").map(text).unwrap_or_default();
        let email = email.trim().to_string();
        if !valid_email(&email) {
            return RowOutcome::Rejected(format!("invalid address '{email}';"));
        }
        let (Ok(registered), Ok(activated), Ok(deactivated)) = (
            timestamp(obj.get("registered")),
            timestamp(obj.get("activated")),
            timestamp(obj.get("deactivated")),
        ) else {
            return RowOutcome::Rejected(format!("invalid timestamp for '{email}';"));
        };
        if !self.groups.contains_key(&group_id) {
            return RowOutcome::Rejected("invalid group;".to_string());
        }
        let now = self.now();
        let blacklisted = self.is_blacklisted(&email);
        let existing_pool = self.by_email.get(&email_key(&email)).copied();
        let exists = existing_pool.is_some_and(|pid| {
            self.groups
                .get(&group_id)
                .is_some_and(|g| g.members.contains_key(&pid))
        });
        if exists && mode == WriteMode::Insert {
            return RowOutcome::Rejected(format!("duplicate address '{email}'"));
        }
        let pool_id = self.pool_entry(&email);
        if let Some(values) = obj.get("global_attributes").and_then(Value::as_object) {
            let values = values.clone();
            self.set_global_attributes(pool_id, &values);
        }
        let local = self.known_local(group_id, &email, obj.get("attributes"));
        let bounced_at = self.bounce_time(&email);
        // The real API may well re-activate on `activated > 0`; only API writes are affected.
        let pessimistic = self.pessimistic && origin == Origin::Api;
        let source = obj.get("source").map(text);
        let tags = obj.get("tags").and_then(Value::as_array);
        let mut attempted = false;
        let mut reactivated: Option<&'static str> = None;
        let mut events: Vec<&'static str> = Vec::new();
        let Some(group) = self.groups.get_mut(&group_id) else {
            return RowOutcome::Rejected("invalid group;".to_string());
        };
        group.last_changed = now;
        let outcome = if let Some(member) = group.members.get_mut(&pool_id) {
            let was_opted_out = member.opted_out();
            let was_active = member.active();
            if let Some(source) = source {
                member.source = source;
            }
            apply_local(member, &local, tags);
            match (activated, deactivated) {
                // An explicit 0 or a deactivation stamp switches an active receiver off.
                (_, Some(d)) if d > 0 && member.deactivated == 0 => member.deactivated = d,
                (Some(0), _) if was_active => member.deactivated = now,
                // >0 starts someone who never opted out (e.g. waiting for DOI). An opt-out
                // or a blacklisted address stays off, unless the simulator is pessimistic.
                (Some(a), _) if a > 0 && !was_active => {
                    if !was_opted_out && !blacklisted {
                        member.activated = a;
                    } else {
                        attempted = true;
                        if pessimistic {
                            reactivated = Some(if blacklisted {
                                "blacklisted"
                            } else if member.bounced > 0 {
                                "bounced"
                            } else {
                                "deactivated"
                            });
                            member.activated = a;
                            member.deactivated = 0;
                            member.bounced = 0;
                        }
                    }
                }
                _ => {}
            }
            member.push_event(Event {
                stamp: now,
                kind: "api",
                type_id: "REST update".to_string(),
                value: "127.0.0.1".to_string(),
                group_id,
            });
            events.push("receiver.updated");
            if was_active && !member.active() {
                events.push("receiver.unsubscribed");
            }
            if !was_active && member.active() {
                events.push("receiver.subscribed");
            }
            RowOutcome::Updated(pool_id)
        } else {
            // A new receiver: omitting all three stamps makes it active now.
            let none_given = registered.is_none() && activated.is_none() && deactivated.is_none();
            let activating = none_given || activated.is_some_and(|a| a > 0);
            let mut member = Membership {
                registered: registered.filter(|r| *r > 0).unwrap_or(now),
                activated: if none_given {
                    now
                } else {
                    activated.unwrap_or(0).max(0)
                },
                deactivated: deactivated.unwrap_or(0).max(0),
                bounced: bounced_at,
                source: source.unwrap_or_default(),
                attributes: BTreeMap::new(),
                tags: Vec::new(),
                events: Vec::new(),
            };
            if (blacklisted || bounced_at > 0) && activating {
                attempted = origin == Origin::Api;
                if pessimistic {
                    // The blacklist and the bounce list do not stop the new row.
                    reactivated = Some(if blacklisted {
                        "blacklisted"
                    } else {
                        "bounced"
                    });
                    member.bounced = 0;
                } else if blacklisted {
                    // A blacklisted address can be stored, but never as an active receiver.
                    member.activated = 0;
                }
            }
            apply_local(&mut member, &local, tags);
            member.push_event(Event {
                stamp: now,
                kind: "api",
                type_id: "REST insert".to_string(),
                value: "127.0.0.1".to_string(),
                group_id,
            });
            events.push("receiver.created");
            if origin == Origin::Signup && member.active() {
                events.push("receiver.subscribed");
            }
            group.members.insert(pool_id, member);
            group.members_version += 1;
            RowOutcome::Inserted(pool_id)
        };
        if attempted {
            self.reactivation_attempts += 1;
        }
        if let Some(reason) = reactivated {
            self.reactivations.push(Reactivation {
                group_id: group_id.to_string(),
                email,
                at: now,
                via: match mode {
                    WriteMode::Insert => "insert",
                    WriteMode::Upsert => "upsert",
                }
                .to_string(),
                reason: reason.to_string(),
            });
        }
        for event in events {
            self.hooks
                .emit(event, group_id, pool_id, origin == Origin::Api, now);
        }
        outcome
    }

    pub fn member(&self, group_id: &str, receiver: &str) -> Result<(u64, u64), ApiError> {
        let group = self.group(group_id)?;
        let pool_id = self
            .pool_id(receiver)
            .ok_or_else(ApiError::invalid_receiver)?;
        if group.members.contains_key(&pool_id) {
            Ok((group.id, pool_id))
        } else {
            Err(ApiError::invalid_receiver())
        }
    }

    /// Removes a receiver from a group: through the API, or by a CleverReach user.
    pub fn remove_member(
        &mut self,
        group_id: &str,
        receiver: &str,
        origin: Origin,
    ) -> Result<(), ApiError> {
        let (gid, pid) = self.member(group_id, receiver)?;
        let now = self.now();
        if let Some(group) = self.groups.get_mut(&gid) {
            if group.members.remove(&pid).is_some() {
                group.members_version += 1;
            }
            group.last_changed = now;
        }
        self.hooks
            .emit("receiver.deleted", gid, pid, origin == Origin::Api, now);
        Ok(())
    }

    /// `/activate`: the only way a deactivated or bounced receiver becomes active again;
    /// every such step is logged so tests can prove the connector never takes it.
    pub fn activate(&mut self, group_id: &str, receiver: &str, via: &str) -> Result<(), ApiError> {
        let (gid, pid) = self.member(group_id, receiver)?;
        let email = self
            .pool
            .get(&pid)
            .map(|p| p.email.clone())
            .unwrap_or_default();
        if self.is_blacklisted(&email) {
            return Err(ApiError::new(403, "Forbidden: address is blacklisted"));
        }
        let now = self.now();
        let Some(member) = self
            .groups
            .get_mut(&gid)
            .and_then(|g| g.members.get_mut(&pid))
        else {
            return Err(ApiError::invalid_receiver());
        };
        let was_opted_out = member.opted_out();
        let was_active = member.active();
        if !was_active {
            member.activated = now;
            member.deactivated = 0;
            member.bounced = 0;
            member.push_event(Event {
                stamp: now,
                kind: "api",
                type_id: "REST activate".to_string(),
                value: "127.0.0.1".to_string(),
                group_id: gid,
            });
        }
        if was_opted_out {
            self.reactivations.push(Reactivation {
                group_id: gid.to_string(),
                email,
                at: now,
                via: via.to_string(),
                reason: "deactivated".to_string(),
            });
        }
        if let Some(g) = self.groups.get_mut(&gid) {
            g.last_changed = now;
        }
        if !was_active {
            self.hooks.emit("receiver.subscribed", gid, pid, true, now);
        }
        Ok(())
    }

    /// `/deactivate` and the simulated unsubscribe link.
    pub fn deactivate(
        &mut self,
        group_id: &str,
        receiver: &str,
        unsubscribe: bool,
    ) -> Result<(), ApiError> {
        let (gid, pid) = self.member(group_id, receiver)?;
        let now = self.now();
        let Some(group) = self.groups.get_mut(&gid) else {
            return Err(ApiError::invalid_group());
        };
        group.last_changed = now;
        let Some(member) = group.members.get_mut(&pid) else {
            return Err(ApiError::invalid_receiver());
        };
        let was_active = member.active();
        if member.deactivated == 0 {
            member.deactivated = now;
        }
        let (kind, type_id) = if unsubscribe {
            ("user_unsubscribe", "unsubscribe link")
        } else {
            ("api", "REST deactivate")
        };
        member.push_event(Event {
            stamp: now,
            kind,
            type_id: type_id.to_string(),
            value: String::new(),
            group_id: gid,
        });
        // An unsubscribe link fires whenever it is used on an active receiver; `/deactivate`
        // is an API change.
        if was_active {
            self.hooks
                .emit("receiver.unsubscribed", gid, pid, !unsubscribe, now);
        }
        Ok(())
    }

    /// `PUT /receivers/{old}/email`: the address changes everywhere, history kept.
    pub fn change_email(&mut self, receiver: &str, new_email: &str) -> Result<u64, ApiError> {
        let new_email = new_email.trim();
        if !valid_email(new_email) {
            return Err(ApiError::bad_request(format!(
                "invalid address '{new_email}'"
            )));
        }
        let pid = self
            .pool_id(receiver)
            .ok_or_else(ApiError::invalid_receiver)?;
        let new_key = email_key(new_email);
        if let Some(&other) = self.by_email.get(&new_key)
            && other != pid
        {
            let in_use = self.groups.values().any(|g| g.members.contains_key(&other));
            if in_use {
                return Err(ApiError::new(409, "Conflict: email address already exists"));
            }
            // An address without any group is only a leftover pool record: it gives way.
            self.pool.remove(&other);
            self.by_email.remove(&new_key);
        }
        let Some(entry) = self.pool.get_mut(&pid) else {
            return Err(ApiError::invalid_receiver());
        };
        let old_key = email_key(&entry.email);
        entry.email = new_email.to_string();
        self.by_email.remove(&old_key);
        self.by_email.insert(new_key, pid);
        let now = self.now();
        let mut changed = Vec::new();
        for group in self.groups.values_mut() {
            if let Some(member) = group.members.get_mut(&pid) {
                member.push_event(Event {
                    stamp: now,
                    kind: "api",
                    type_id: "REST email change".to_string(),
                    value: new_email.to_string(),
                    group_id: group.id,
                });
                group.last_changed = now;
                changed.push(group.id);
            }
        }
        for gid in changed {
            self.hooks.emit("receiver.updated", gid, pid, true, now);
        }
        Ok(pid)
    }

    // ---- bounces and blacklist ----------------------------------------------------------

    pub fn bounce(&mut self, email: &str) -> Result<(), ApiError> {
        if !valid_email(email) {
            return Err(ApiError::bad_request(format!("invalid address '{email}'")));
        }
        let now = self.now();
        let key = email_key(email);
        match self.bounces.iter_mut().find(|b| email_key(&b.email) == key) {
            Some(record) => {
                record.occurences += 1;
                record.last_update = now;
                record.expires_by = now + BOUNCE_EXPIRY_SECS;
            }
            None => self.bounces.push(BounceRecord {
                email: email.trim().to_string(),
                category: "hardbounce".to_string(),
                occurences: 1,
                last_update: now,
                expires_by: now + BOUNCE_EXPIRY_SECS,
                bounce_message: format!("smtp; 550 5.1.1 <{}>: user unknown", email.trim()),
            }),
        }
        if let Some(pid) = self.pool_id(email) {
            for group in self.groups.values_mut() {
                if let Some(member) = group.members.get_mut(&pid) {
                    member.bounced = now;
                    member.push_event(Event {
                        stamp: now,
                        kind: "mail_bounce",
                        type_id: "hardbounce".to_string(),
                        value: "smtp; 550 5.1.1 user unknown".to_string(),
                        group_id: group.id,
                    });
                    group.last_changed = now;
                }
            }
        }
        Ok(())
    }

    pub fn add_to_blacklist(&mut self, email: &str, comment: &str) -> Result<usize, ApiError> {
        if !valid_email(email) && blacklisted_domain(email).is_none() {
            return Err(ApiError::bad_request(format!(
                "invalid address '{email}' (an address, or a whole domain as '*@domain')"
            )));
        }
        let key = email_key(email);
        let now = self.now();
        if let Some(pos) = self
            .blacklist
            .iter()
            .position(|e| email_key(&e.email) == key)
        {
            self.blacklist[pos].comment = comment.to_string();
            return Ok(pos);
        }
        self.blacklist.push(BlacklistEntry {
            email: email.trim().to_string(),
            comment: comment.to_string(),
            stamp: now,
        });
        Ok(self.blacklist.len() - 1)
    }

    pub fn remove_from_blacklist(&mut self, email: &str) -> Result<(), ApiError> {
        let key = email_key(email);
        let before = self.blacklist.len();
        self.blacklist.retain(|e| email_key(&e.email) != key);
        if self.blacklist.len() == before {
            return Err(ApiError::new(404, "Not Found: invalid email"));
        }
        Ok(())
    }

    // ---- rendering ----------------------------------------------------------------------

    pub fn group_json(&self, group: &Group) -> Value {
        json!({
            "id": group.id.to_string(),
            "name": group.name,
            "locked": group.locked,
            "backup": group.backup,
            "receiver_info": group.receiver_info,
            "stamp": group.stamp,
            "last_mailing": group.last_mailing,
            "last_changed": group.last_changed,
        })
    }

    pub fn group_stats_json(&self, group: &Group) -> Value {
        let total = group.members.len();
        let active = group.members.values().filter(|m| m.active()).count();
        let bounced = group.members.values().filter(|m| m.bounced > 0).count();
        json!({
            "total_count": total,
            "inactive_count": total - active,
            "active_count": active,
            "bounce_count": bounced,
            "avg_points": 0,
            "quality": 0,
            "time": self.now(),
            "order_count": 0,
        })
    }

    pub fn attribute_json(&self, attr: &Attribute) -> Value {
        json!({
            "id": attr.id,
            "groups_id": attr.group_id,
            "name": attr.name,
            "description": attr.description,
            "preview_value": attr.preview_value,
            "default_value": attr.default_value,
            "type": attr.kind,
            "tag": format!("{{{}}}", attr.name.to_uppercase()),
        })
    }

    /// Global attribute values of a pool record: every attribute of the account, "" when unset.
    fn global_values(&self, pool_id: u64) -> Map<String, Value> {
        let stored = self.pool.get(&pool_id).map(|p| &p.global_attributes);
        self.attributes_of(0)
            .map(|a| {
                let value = stored
                    .and_then(|s| s.get(&a.name))
                    .cloned()
                    .unwrap_or_default();
                (a.name.clone(), Value::String(value))
            })
            .collect()
    }

    /// Group attribute values of a receiver: every attribute of the group, "" when unset.
    fn local_values(&self, group_id: u64, member: &Membership) -> Map<String, Value> {
        self.attributes_of(group_id)
            .map(|a| {
                let value = member.attributes.get(&a.name).cloned().unwrap_or_default();
                (a.name.clone(), Value::String(value))
            })
            .collect()
    }

    /// A receiver object (ref §3.3). `detail` is the bitmask of the list endpoint
    /// (1 events, 2 orders, 4 tags); `None` renders everything, as the single-receiver GET does.
    pub fn receiver_json(&self, group_id: u64, pool_id: u64, detail: Option<u64>) -> Value {
        let email = self
            .pool
            .get(&pool_id)
            .map(|p| p.email.clone())
            .unwrap_or_default();
        let Some(m) = self
            .groups
            .get(&group_id)
            .and_then(|g| g.members.get(&pool_id))
        else {
            return Value::Null;
        };
        let mut obj = json!({
            "id": pool_id.to_string(),
            "email": email,
            "imported": 0,
            "bounced": m.bounced,
            "group_id": group_id.to_string(),
            "activated": m.activated,
            "registered": m.registered,
            "deactivated": m.deactivated,
            "last_ip": "",
            "last_location": "",
            "last_client": "",
            "points": 0,
            "stars": 0,
            "source": m.source,
            "attributes": self.local_values(group_id, m),
            "global_attributes": self.global_values(pool_id),
            "active": m.active(),
            "conversion_rate": 0,
            "open_rate": 0,
            "click_rate": 0,
        });
        match self.corruptions.get(&(group_id, pool_id)) {
            Some(Value::Object(fields)) => {
                if let Some(map) = obj.as_object_mut() {
                    map.extend(fields.clone());
                }
            }
            Some(whole) => return whole.clone(),
            None => {}
        }
        let detail = detail.unwrap_or(7);
        if let Some(map) = obj.as_object_mut() {
            if detail & 4 != 0 {
                map.insert("tags".into(), json!(m.tags));
            }
            if detail & 1 != 0 {
                let events: Vec<Value> = m
                    .events
                    .iter()
                    .map(|e| {
                        json!({
                            "stamp": e.stamp,
                            "type": e.kind,
                            "type_id": e.type_id,
                            "value": e.value,
                            "mailing_id": "0",
                            "groups_id": e.group_id.to_string(),
                        })
                    })
                    .collect();
                map.insert("events".into(), Value::Array(events));
            }
            if detail & 2 != 0 {
                map.insert("orders".into(), json!([]));
            }
        }
        obj
    }

    pub fn bounce_json(record: &BounceRecord) -> Value {
        json!({
            "email": record.email,
            "category": record.category,
            "occurences": record.occurences,
            "last_update": record.last_update,
            "last_update_gmt": gmt(record.last_update),
            "expires_by": record.expires_by,
            "expires_by_gmt": gmt(record.expires_by),
            "bounce_message": record.bounce_message,
            "type": "mailing",
            "type_id": "0",
        })
    }

    pub fn blacklist_json(entry: &BlacklistEntry) -> Value {
        json!({ "email": entry.email, "comment": entry.comment, "stamp": entry.stamp })
    }

    // ---- test-side views ----------------------------------------------------------------

    pub fn sim_group(&self, group: &Group) -> SimGroup {
        SimGroup {
            id: group.id.to_string(),
            name: group.name.clone(),
            locked: group.locked,
            backup: group.backup,
            receiver_info: group.receiver_info.clone(),
            stamp: group.stamp,
            last_changed: group.last_changed,
            receiver_count: group.members.len(),
        }
    }

    /// `limit` receivers of the group from `offset` on, in pool order.
    pub fn sim_receivers(&self, group: &Group, offset: usize, limit: usize) -> Vec<SimReceiver> {
        group
            .members
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(pid, m)| {
                let pool = self.pool.get(pid);
                SimReceiver {
                    id: pid.to_string(),
                    group_id: group.id.to_string(),
                    email: pool.map(|p| p.email.clone()).unwrap_or_default(),
                    registered: m.registered,
                    activated: m.activated,
                    deactivated: m.deactivated,
                    bounced: m.bounced,
                    active: m.active(),
                    source: m.source.clone(),
                    global_attributes: pool
                        .map(|p| p.global_attributes.clone())
                        .unwrap_or_default(),
                    attributes: m.attributes.clone(),
                    tags: m.tags.clone(),
                    events: m
                        .events
                        .iter()
                        .map(|e| SimEvent {
                            stamp: e.stamp,
                            kind: e.kind.to_string(),
                            type_id: e.type_id.clone(),
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// The attributes of a group (`group_id` 0: the global ones).
    pub fn sim_attributes(&self, group_id: u64) -> Vec<SimAttribute> {
        self.attributes_of(group_id)
            .map(|a| SimAttribute {
                id: a.id.to_string(),
                group_id: a.group_id.to_string(),
                name: a.name.clone(),
                kind: a.kind.clone(),
            })
            .collect()
    }

    /// Everything but tokens, for a human looking at the sandbox.
    pub fn state_json(&self) -> Value {
        let groups: Vec<Value> = self
            .groups
            .values()
            .map(|g| {
                let mut obj = self.group_json(g);
                let receivers: Vec<Value> = g
                    .members
                    .keys()
                    .map(|pid| self.receiver_json(g.id, *pid, Some(4)))
                    .collect();
                if let Some(map) = obj.as_object_mut() {
                    map.insert("receivers".into(), Value::Array(receivers));
                }
                obj
            })
            .collect();
        json!({
            "account": self.cfg.account_name,
            "now": self.now(),
            "groups": groups,
            "attributes": self.attributes.values().map(|a| self.attribute_json(a)).collect::<Vec<_>>(),
            "blacklist": self.blacklist.iter().map(Self::blacklist_json).collect::<Vec<_>>(),
            "bounces": self.bounces.iter().map(Self::bounce_json).collect::<Vec<_>>(),
            "pessimistic": self.pessimistic,
            "reactivations": self.reactivations,
            "reactivation_count": self.reactivations.len(),
            "reactivation_attempts": self.reactivation_attempts,
            "ignored_global_attributes": self.ignored_attributes,
            "ignored_group_attributes": self.ignored_group_attributes,
            "hooks": self.hooks.state_json(),
            "token_grants": self.tokens.grants,
            "stats": self.stats,
        })
    }
}

/// Applies group-local attribute values (already checked against the group's attributes)
/// and tags (`-tag` removes, `*` / `origin.*` clear).
fn apply_local(member: &mut Membership, local: &Map<String, Value>, tags: Option<&Vec<Value>>) {
    for (k, v) in local {
        member.attributes.insert(k.clone(), text(v));
    }
    for tag in tags.into_iter().flatten().filter_map(Value::as_str) {
        if let Some(removed) = tag.strip_prefix('-') {
            if removed == "*" {
                member.tags.clear();
            } else if let Some(origin) = removed.strip_suffix(".*") {
                let prefix = format!("{origin}.");
                member.tags.retain(|t| !t.starts_with(&prefix));
            } else {
                member.tags.retain(|t| t != removed);
            }
        } else if !member.tags.iter().any(|t| t == tag) {
            member.tags.push(tag.to_string());
        }
    }
}

pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.trim(), "1" | "true" | "yes"),
        _ => false,
    }
}

fn gmt(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
        .unwrap_or_default()
}

fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}
