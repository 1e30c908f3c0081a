//! The simulator's data: typed column values, rows keyed by primary key per table, a global
//! row version (etags), and undo records so that change sets and failed synchronous webhooks
//! roll back.

use super::catalog::Catalog;
use super::error::ApiError;
use super::schema::{Column, Kind, Table};
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// A stored value. Nulls are not stored: a missing column is null.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Str(String),
    Int(i64),
    Bool(bool),
    Date(DateTime<Utc>),
    Guid(Uuid),
    /// A lookup: the target table's logical name and the row id.
    Ref(&'static str, Uuid),
}

/// One row: column logical name → value.
pub type Row = BTreeMap<&'static str, Val>;

/// Seconds precision, as Dataverse stores date and time columns.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    Utc.timestamp_opt(now.timestamp(), 0)
        .single()
        .unwrap_or(now)
}

pub fn format_date(d: &DateTime<Utc>) -> String {
    d.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `{GUID}` in upper case, as paging cookies write ids.
pub fn braced(id: &Uuid) -> String {
    format!("{{{}}}", id.hyphenated().to_string().to_uppercase())
}

/// A GUID with or without braces.
pub fn parse_guid(s: &str) -> Option<Uuid> {
    let s = s.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or(s);
    if s.len() != 36 {
        return None;
    }
    Uuid::parse_str(s).ok()
}

/// A date and time (`2024-01-02T03:04:05Z`, with offset or fraction) or a date (`2024-01-02`).
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        let d = d.with_timezone(&Utc);
        return Utc.timestamp_opt(d.timestamp(), 0).single();
    }
    if let Ok(d) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Some(Utc.from_utc_datetime(&d));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|d| Utc.from_utc_datetime(&d));
    }
    None
}

impl Val {
    /// The Web API JSON form.
    pub fn to_json(&self) -> Value {
        match self {
            Val::Str(s) => Value::String(s.clone()),
            Val::Int(i) => Value::from(*i),
            Val::Bool(b) => Value::Bool(*b),
            Val::Date(d) => Value::String(format_date(d)),
            Val::Guid(g) | Val::Ref(_, g) => Value::String(g.to_string()),
        }
    }

    /// The text form used in paging cookies and FetchXML values.
    pub fn to_text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Int(i) => i.to_string(),
            Val::Bool(b) => if *b { "1" } else { "0" }.to_string(),
            Val::Date(d) => format_date(d),
            Val::Guid(g) | Val::Ref(_, g) => braced(g),
        }
    }

    /// The GUID of a key, lookup or uniqueidentifier value.
    pub fn guid(&self) -> Option<Uuid> {
        match self {
            Val::Guid(g) | Val::Ref(_, g) => Some(*g),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Val::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Parses the text form for a column (FetchXML condition values, paging cookies).
    pub fn parse_text(column: &Column, text: &str) -> Result<Val, String> {
        let bad =
            |what: &str| format!("'{text}' is not a valid {what} value for '{}'", column.name);
        match column.kind {
            Kind::Str(_) | Kind::EntityName => Ok(Val::Str(text.to_string())),
            Kind::Int | Kind::Choice(_) | Kind::State | Kind::Status => text
                .trim()
                .parse()
                .map(Val::Int)
                .map_err(|_| bad("integer")),
            Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
                "1" | "true" => Ok(Val::Bool(true)),
                "0" | "false" => Ok(Val::Bool(false)),
                _ => Err(bad("boolean")),
            },
            Kind::DateTime => parse_datetime(text)
                .map(Val::Date)
                .ok_or_else(|| bad("date")),
            Kind::Pk | Kind::Guid => parse_guid(text).map(Val::Guid).ok_or_else(|| bad("GUID")),
            Kind::Lookup(navs) => {
                let id = parse_guid(text).ok_or_else(|| bad("GUID"))?;
                Ok(Val::Ref(navs.first().map(|n| n.target).unwrap_or(""), id))
            }
        }
    }

    /// Reads a Web API JSON value written to a (non-lookup) column.
    pub fn from_json(
        table: &Table,
        column: &Column,
        value: &Value,
    ) -> Result<Option<Val>, ApiError> {
        if value.is_null() {
            return Ok(None);
        }
        let wrong = |edm: &str| {
            ApiError::payload(format!(
                "Cannot convert the literal '{}' to the expected type '{edm}'.",
                match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                }
            ))
        };
        let v = match column.kind {
            Kind::Str(max) => {
                let s = value.as_str().ok_or_else(|| wrong("Edm.String"))?;
                if s.chars().count() > max {
                    return Err(ApiError::bad_request(
                        super::error::code::VALIDATION,
                        format!(
                            "A validation error occurred.  The length of the '{}' attribute of the '{}' entity exceeded the maximum allowed length of '{max}'.",
                            column.name, table.logical
                        ),
                    ));
                }
                Val::Str(s.to_string())
            }
            Kind::EntityName => Val::Str(
                value
                    .as_str()
                    .ok_or_else(|| wrong("Edm.String"))?
                    .to_string(),
            ),
            Kind::Int => Val::Int(value.as_i64().ok_or_else(|| wrong("Edm.Int32"))?),
            Kind::Choice(_) | Kind::State | Kind::Status => {
                let i = value.as_i64().ok_or_else(|| wrong("Edm.Int32"))?;
                if table.label(column, i).is_none() {
                    let accepted: Vec<String> = match column.kind {
                        Kind::Choice(opts) => opts.iter().map(|o| o.0.to_string()).collect(),
                        Kind::State => table.states.iter().map(|s| s.state.to_string()).collect(),
                        _ => table
                            .states
                            .iter()
                            .flat_map(|s| s.statuses.iter().map(|o| o.0.to_string()))
                            .collect(),
                    };
                    return Err(ApiError::bad_request(
                        super::error::code::OUT_OF_RANGE,
                        format!(
                            "A validation error occurred. The value {i} of '{}' on record of type '{}' is outside the valid range. Accepted Values: {}",
                            column.name,
                            table.logical,
                            accepted.join(",")
                        ),
                    ));
                }
                Val::Int(i)
            }
            Kind::Bool => Val::Bool(value.as_bool().ok_or_else(|| wrong("Edm.Boolean"))?),
            Kind::DateTime => {
                let s = value.as_str().ok_or_else(|| wrong("Edm.DateTimeOffset"))?;
                Val::Date(parse_datetime(s).ok_or_else(|| wrong("Edm.DateTimeOffset"))?)
            }
            Kind::Pk | Kind::Guid => {
                let s = value.as_str().ok_or_else(|| wrong("Edm.Guid"))?;
                Val::Guid(parse_guid(s).ok_or_else(|| wrong("Edm.Guid"))?)
            }
            Kind::Lookup(_) => {
                return Err(ApiError::payload(format!(
                    "The property '{}' does not exist on type '{}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
                    column.name,
                    table.odata_type()
                )));
            }
        };
        Ok(Some(v))
    }
}

/// Orders two values of one column: text case-insensitively (as Dataverse's collation does),
/// everything else by value.
pub fn cmp_vals(a: &Val, b: &Val) -> Ordering {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Val::Int(x), Val::Int(y)) => x.cmp(y),
        (Val::Bool(x), Val::Bool(y)) => x.cmp(y),
        (Val::Date(x), Val::Date(y)) => x.cmp(y),
        _ => match (a.guid(), b.guid()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => rank(a).cmp(&rank(b)),
        },
    }
}

fn rank(v: &Val) -> u8 {
    match v {
        Val::Str(_) => 0,
        Val::Int(_) => 1,
        Val::Bool(_) => 2,
        Val::Date(_) => 3,
        Val::Guid(_) => 4,
        Val::Ref(..) => 5,
    }
}

/// Orders optional values: null first, as SQL Server sorts ascending.
pub fn cmp_opt(a: Option<&Val>, b: Option<&Val>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => cmp_vals(x, y),
    }
}

/// What a change did to one row, to be undone on rollback.
#[derive(Debug, Clone)]
pub struct Undo {
    table: &'static str,
    id: Uuid,
    previous: Option<Row>,
}

/// All tables' rows, and the schema they follow.
#[derive(Debug)]
pub struct Store {
    tables: HashMap<&'static str, BTreeMap<Uuid, Row>>,
    version: i64,
    catalog: Catalog,
    /// Bumped by every change to a table (and by `clear`/`rollback` for all), so that what is
    /// derived from a table can be kept until the table changes.
    generations: HashMap<&'static str, u64>,
    epoch: u64,
    /// The related ids of one row through one N:N relationship, sorted, as of a generation of
    /// the intersect table: a list of 600,000 members is paged 120 times without a change in
    /// between, and each page would otherwise scan every intersect row again.
    related: std::sync::Mutex<HashMap<RelatedKey, (Generation, RelatedIds)>>,
}

/// (relationship, row id, the row's table).
pub type RelatedKey = (&'static str, Uuid, &'static str);
/// Sorted ids, shared by the pages that use them.
pub type RelatedIds = std::sync::Arc<Vec<Uuid>>;
/// (epoch, the table's generation).
pub type Generation = (u64, u64);

impl Store {
    pub fn new() -> Self {
        Store {
            tables: HashMap::new(),
            version: 1_000_000,
            catalog: Catalog::plain(&[]),
            generations: HashMap::new(),
            epoch: 0,
            related: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Where a table is in its history of changes.
    pub fn generation(&self, logical: &str) -> Generation {
        (
            self.epoch,
            self.generations.get(logical).copied().unwrap_or(0),
        )
    }

    fn changed(&mut self, table: &'static str) {
        *self.generations.entry(table).or_default() += 1;
    }

    /// The cached sorted related ids for `key`, computed by `compute` when the intersect table
    /// changed since they were.
    pub fn related_ids(
        &self,
        key: RelatedKey,
        intersect: &str,
        compute: impl FnOnce() -> Vec<Uuid>,
    ) -> std::sync::Arc<Vec<Uuid>> {
        let now = self.generation(intersect);
        let mut cache = self.related.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, ids)) = cache.get(&key)
            && *at == now
        {
            return ids.clone();
        }
        let mut ids = compute();
        ids.sort_unstable();
        ids.dedup();
        let ids = std::sync::Arc::new(ids);
        // A few lists at a time are paged; drop what is stale rather than grow.
        cache.retain(|_, (at, _)| *at == now);
        cache.insert(key, (now, ids.clone()));
        ids
    }

    /// The org's schema: the standard tables and what was installed.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn catalog_mut(&mut self) -> &mut Catalog {
        &mut self.catalog
    }

    /// Back to a plain org's schema (no rows are touched).
    pub fn reset_catalog(&mut self, change_tracked: &[String]) {
        self.catalog = Catalog::plain(change_tracked);
    }

    pub fn table_rows(&self, logical: &str) -> impl Iterator<Item = (&Uuid, &Row)> {
        self.tables.get(logical).into_iter().flat_map(|t| t.iter())
    }

    pub fn get(&self, logical: &str, id: &Uuid) -> Option<&Row> {
        self.tables.get(logical).and_then(|t| t.get(id))
    }

    pub fn contains(&self, logical: &str, id: &Uuid) -> bool {
        self.get(logical, id).is_some()
    }

    /// The next row version (etags are versions).
    pub fn next_version(&mut self) -> i64 {
        self.version += 1;
        self.version
    }

    /// Stores a row and returns how to undo it.
    pub fn put(&mut self, table: &'static str, id: Uuid, row: Row) -> Undo {
        self.changed(table);
        let previous = self.tables.entry(table).or_default().insert(id, row);
        Undo {
            table,
            id,
            previous,
        }
    }

    /// Removes a row; returns it and how to undo the removal.
    pub fn remove(&mut self, table: &'static str, id: &Uuid) -> Option<(Row, Undo)> {
        self.changed(table);
        let row = self.tables.get_mut(table)?.remove(id)?;
        Some((
            row.clone(),
            Undo {
                table,
                id: *id,
                previous: Some(row),
            },
        ))
    }

    /// Undoes changes, the newest first.
    pub fn rollback(&mut self, undo: Vec<Undo>) {
        self.epoch += 1;
        for u in undo.into_iter().rev() {
            let rows = self.tables.entry(u.table).or_default();
            match u.previous {
                Some(row) => {
                    rows.insert(u.id, row);
                }
                None => {
                    rows.remove(&u.id);
                }
            }
        }
    }

    /// Removes every row of every table.
    pub fn clear(&mut self) {
        self.epoch += 1;
        self.tables.clear();
    }

    /// The primary name of a row, for FormattedValue annotations of lookups.
    pub fn primary_name(&self, logical: &str, id: &Uuid) -> Option<String> {
        let table = self.catalog.table(logical)?;
        match self.get(logical, id)?.get(table.primary_name)? {
            Val::Str(s) => Some(s.clone()),
            other => Some(other.to_text()),
        }
    }
}

/// The inspection form of a row: Web API names and values (lookups as `_x_value` with their
/// table in `_x_value@Microsoft.Dynamics.CRM.lookuplogicalname`), null columns left out, and
/// write-only columns included.
pub fn inspection_form(table: &Table, row: &Row) -> Map<String, Value> {
    let mut out = Map::new();
    for column in table.all_columns() {
        let Some(v) = row.get(column.name) else {
            continue;
        };
        match (column.kind, v) {
            (Kind::Lookup(_), Val::Ref(target, id)) => {
                let key = format!("_{}_value", column.name);
                out.insert(
                    format!("{key}@Microsoft.Dynamics.CRM.lookuplogicalname"),
                    Value::String(target.to_string()),
                );
                out.insert(key, Value::String(id.to_string()));
            }
            _ => {
                out.insert(column.name.to_string(), v.to_json());
            }
        }
    }
    out
}
