//! Domain: the newsletter checklist stored as JSON on sources and recipients.
//!
//! `[{"id":0,"state":1,"description":"Information","modifiedby":"","modifiedon":"","position":1}, …]`
//! state 0 = no choice, 1 = yes, 2 = no.
//!
//! Administrators and older versions of the seed wrote these texts by hand, so parsing is
//! lenient where the meaning is clear (numeric strings, missing texts) and strict where it is
//! not (an unknown state). Fields the connector does not know are kept so that writing a
//! checklist back never loses what someone stored.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The id of a newsletter type (configured in `typjson`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct NewsletterTypeId(pub i64);

impl fmt::Display for NewsletterTypeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One kind of newsletter, as configured in `cleverreach:newslettertypsettings:typjson`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NewsletterType {
    pub id: NewsletterTypeId,
    pub description: String,
    pub position: i64,
}

/// A person's (or a source's) choice for one newsletter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChoiceState {
    /// 0: no choice made.
    #[default]
    NoChoice,
    /// 1: yes (green tick).
    Yes,
    /// 2: no (red cross).
    No,
}

impl ChoiceState {
    /// The number stored in the checklist JSON.
    pub fn code(self) -> i64 {
        match self {
            ChoiceState::NoChoice => 0,
            ChoiceState::Yes => 1,
            ChoiceState::No => 2,
        }
    }

    pub fn from_code(code: i64) -> Option<ChoiceState> {
        match code {
            0 => Some(ChoiceState::NoChoice),
            1 => Some(ChoiceState::Yes),
            2 => Some(ChoiceState::No),
            _ => None,
        }
    }
}

/// One row of a checklist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChecklistEntry {
    pub id: NewsletterTypeId,
    pub state: ChoiceState,
    pub description: String,
    pub modified_by: String,
    pub modified_on: String,
    pub position: i64,
    /// Fields the connector does not know, kept as stored so that a round trip loses nothing.
    /// Names of the known fields are never written from here.
    pub extra: BTreeMap<String, Value>,
}

impl ChecklistEntry {
    /// A fresh entry for a configured newsletter type, with no modification data.
    pub fn for_type(newsletter_type: &NewsletterType, state: ChoiceState) -> ChecklistEntry {
        ChecklistEntry {
            id: newsletter_type.id,
            state,
            description: newsletter_type.description.clone(),
            position: newsletter_type.position,
            ..ChecklistEntry::default()
        }
    }
}

/// A checklist: one entry per newsletter type. A type without an entry counts as no choice.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checklist {
    pub entries: Vec<ChecklistEntry>,
}

/// Why a checklist text cannot be used. Entries are counted from 1, in the order stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecklistError {
    #[error("the checklist is not valid JSON (line {line}, column {column}): {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the checklist must be a JSON array of entries, but it is {found}")]
    NotAnArray { found: String },
    #[error("checklist entry {entry} must be a JSON object, but it is {found}")]
    EntryNotAnObject { entry: usize, found: String },
    #[error("checklist entry {entry} has no id")]
    MissingId { entry: usize },
    #[error("checklist entry {entry}: the id {value} is not a whole number")]
    InvalidId { entry: usize, value: String },
    #[error(
        "checklist entry {entry} (newsletter type {id}): the state {value} is not 0 (no choice), 1 (yes) or 2 (no)"
    )]
    InvalidState {
        entry: usize,
        id: NewsletterTypeId,
        value: String,
    },
    #[error("checklist entry {entry} (newsletter type {id}): {field} {value} is not {expected}")]
    InvalidField {
        entry: usize,
        id: NewsletterTypeId,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "the checklist names newsletter type {id}, which is not configured in cleverreach:newslettertypsettings:typjson"
    )]
    UnknownType { id: NewsletterTypeId },
    #[error("the checklist names newsletter type {id} more than once")]
    DuplicateId { id: NewsletterTypeId },
}

/// What a retroactive mass update (docs/architecture.md §5) does to one member's checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MassUpdateOutcome {
    /// The member's checklist must be written with this content.
    Changed(Checklist),
    /// The requested choices are already there; nothing to write.
    Unchanged,
    /// A requested "yes" met the member's explicit "no": the member is left alone and reported.
    SkippedExplicitNo,
}

const KNOWN_FIELDS: [&str; 6] = [
    "id",
    "state",
    "description",
    "modifiedby",
    "modifiedon",
    "position",
];

impl Checklist {
    /// The state for one newsletter type; no entry means no choice.
    pub fn state_of(&self, id: NewsletterTypeId) -> ChoiceState {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.state)
            .unwrap_or_default()
    }

    /// Reads a checklist as stored in the CRM. An empty text or `null` is an empty checklist
    /// (the field was never filled in).
    pub fn parse(json: &str) -> Result<Checklist, ChecklistError> {
        let trimmed = json.trim();
        if trimmed.is_empty() {
            return Ok(Checklist::default());
        }
        let value: Value = serde_json::from_str(trimmed).map_err(|e| ChecklistError::Json {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        let items = match value {
            Value::Null => return Ok(Checklist::default()),
            Value::Array(items) => items,
            other => {
                return Err(ChecklistError::NotAnArray {
                    found: describe(&other),
                });
            }
        };
        let entries = items
            .into_iter()
            .enumerate()
            .map(|(index, item)| parse_entry(index + 1, item))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Checklist { entries })
    }

    /// Compact JSON in the seed's key order (id, state, description, modifiedby, modifiedon,
    /// position), followed by any preserved extra fields.
    pub fn to_json(&self) -> String {
        let mut out = String::from("[");
        for (i, entry) in self.entries.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                "{{\"id\":{},\"state\":{},\"description\":{},\"modifiedby\":{},\"modifiedon\":{},\"position\":{}",
                entry.id.0,
                entry.state.code(),
                json_string(&entry.description),
                json_string(&entry.modified_by),
                json_string(&entry.modified_on),
                entry.position,
            ));
            for (key, value) in &entry.extra {
                if KNOWN_FIELDS.contains(&key.as_str()) {
                    continue;
                }
                out.push(',');
                out.push_str(&json_string(key));
                out.push(':');
                out.push_str(&value.to_string());
            }
            out.push('}');
        }
        out.push(']');
        out
    }

    /// Every entry names a configured newsletter type, and no type appears twice.
    pub fn validate(&self, types: &[NewsletterType]) -> Result<(), ChecklistError> {
        let mut seen = BTreeSet::new();
        for entry in &self.entries {
            if !types.iter().any(|t| t.id == entry.id) {
                return Err(ChecklistError::UnknownType { id: entry.id });
            }
            if !seen.insert(entry.id) {
                return Err(ChecklistError::DuplicateId { id: entry.id });
            }
        }
        Ok(())
    }

    /// One entry per configured type, in position order: existing entries are kept as they
    /// are (the first one when an id repeats), missing types are added with no choice, and
    /// entries for types that are no longer configured are dropped.
    pub fn normalized_for(&self, types: &[NewsletterType]) -> Checklist {
        let mut ordered: Vec<&NewsletterType> = types.iter().collect();
        // Stable sort: types sharing a position keep their configured order.
        ordered.sort_by_key(|t| t.position);
        let mut seen = BTreeSet::new();
        let entries = ordered
            .into_iter()
            .filter(|t| seen.insert(t.id))
            .map(|t| match self.entries.iter().find(|e| e.id == t.id) {
                Some(existing) => existing.clone(),
                None => ChecklistEntry::for_type(t, ChoiceState::NoChoice),
            })
            .collect();
        Checklist { entries }
    }

    /// The newsletter types with a "yes", in entry order, each once.
    pub fn yes_types(&self) -> Vec<NewsletterTypeId> {
        let mut seen = BTreeSet::new();
        self.entries
            .iter()
            .filter(|e| e.state == ChoiceState::Yes)
            .map(|e| e.id)
            .filter(|id| seen.insert(*id))
            .collect()
    }

    /// Sets one type's state, recording who changed it and when. Returns whether anything
    /// changed: setting the state an entry already has keeps its modification data, so the same
    /// event applied twice writes once. A missing entry is added after the others, with an
    /// empty description (normalise with [`Checklist::normalized_for`] to fill it in).
    pub fn set_state(
        &mut self,
        id: NewsletterTypeId,
        state: ChoiceState,
        modified_by: &str,
        modified_on: &str,
    ) -> bool {
        if let Some(entry) = self.entries.iter_mut().find(|e| e.id == id) {
            if entry.state == state {
                return false;
            }
            entry.state = state;
            entry.modified_by = modified_by.to_string();
            entry.modified_on = modified_on.to_string();
            return true;
        }
        let position = self
            .entries
            .iter()
            .map(|e| e.position)
            .max()
            .map_or(1, |p| p.saturating_add(1));
        self.entries.push(ChecklistEntry {
            id,
            state,
            modified_by: modified_by.to_string(),
            modified_on: modified_on.to_string(),
            position,
            ..ChecklistEntry::default()
        });
        true
    }

    /// Applies a retroactive mass update (docs/architecture.md §5 rule 3) to this member's checklist.
    ///
    /// Requested "yes" and "no" overwrite; a requested "no choice" changes nothing. If any
    /// requested "yes" meets an explicit "no" here, the member is not changed at all: an opt-out
    /// is never undone, and a half-applied request would be harder to explain. Entries whose
    /// state stays the same keep their modification data. When an id is requested twice, the
    /// first request counts (as in [`Checklist::state_of`]).
    pub fn apply_mass_update(
        &self,
        requested: &Checklist,
        modified_by: &str,
        modified_on: &str,
    ) -> MassUpdateOutcome {
        let mut seen = BTreeSet::new();
        let wanted: Vec<&ChecklistEntry> = requested
            .entries
            .iter()
            .filter(|e| seen.insert(e.id))
            .filter(|e| e.state != ChoiceState::NoChoice)
            .collect();
        if wanted
            .iter()
            .any(|w| w.state == ChoiceState::Yes && self.state_of(w.id) == ChoiceState::No)
        {
            return MassUpdateOutcome::SkippedExplicitNo;
        }
        let mut result = self.clone();
        let mut changed = false;
        for want in wanted {
            match result.entries.iter_mut().find(|e| e.id == want.id) {
                Some(entry) if entry.state == want.state => {}
                Some(entry) => {
                    entry.state = want.state;
                    entry.modified_by = modified_by.to_string();
                    entry.modified_on = modified_on.to_string();
                    changed = true;
                }
                None => {
                    result.entries.push(ChecklistEntry {
                        id: want.id,
                        state: want.state,
                        description: want.description.clone(),
                        modified_by: modified_by.to_string(),
                        modified_on: modified_on.to_string(),
                        position: want.position,
                        extra: BTreeMap::new(),
                    });
                    changed = true;
                }
            }
        }
        if changed {
            MassUpdateOutcome::Changed(result)
        } else {
            MassUpdateOutcome::Unchanged
        }
    }
}

fn parse_entry(entry: usize, item: Value) -> Result<ChecklistEntry, ChecklistError> {
    let mut fields: Map<String, Value> = match item {
        Value::Object(fields) => fields,
        other => {
            return Err(ChecklistError::EntryNotAnObject {
                entry,
                found: describe(&other),
            });
        }
    };
    let id = match fields.remove("id") {
        None | Some(Value::Null) => return Err(ChecklistError::MissingId { entry }),
        Some(value) => match whole_number(&value) {
            Some(id) => NewsletterTypeId(id),
            None => {
                return Err(ChecklistError::InvalidId {
                    entry,
                    value: show(&value),
                });
            }
        },
    };
    let state = match fields.remove("state") {
        None => {
            return Err(ChecklistError::InvalidState {
                entry,
                id,
                value: "(missing)".to_string(),
            });
        }
        Some(value) => match whole_number(&value).and_then(ChoiceState::from_code) {
            Some(state) => state,
            None => {
                return Err(ChecklistError::InvalidState {
                    entry,
                    id,
                    value: show(&value),
                });
            }
        },
    };
    let mut text = |field: &'static str| match fields.remove(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ChecklistError::InvalidField {
            entry,
            id,
            field,
            value: show(&other),
            expected: "a text",
        }),
    };
    let description = text("description")?;
    let modified_by = text("modifiedby")?;
    let modified_on = text("modifiedon")?;
    let position = match fields.remove("position") {
        None | Some(Value::Null) => 0,
        Some(value) => whole_number(&value).ok_or_else(|| ChecklistError::InvalidField {
            entry,
            id,
            field: "position",
            value: show(&value),
            expected: "a whole number",
        })?,
    };
    Ok(ChecklistEntry {
        id,
        state,
        description,
        modified_by,
        modified_on,
        position,
        extra: fields.into_iter().collect(),
    })
}

/// A whole number given as a JSON integer or as a text holding one (`1`, `"1"`, `" 1 "`).
pub(crate) fn whole_number(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The JSON kind of a value, for error texts.
pub(crate) fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("{kind} ({})", show(value))
}

/// A value as compact JSON, shortened so that an error text stays readable.
pub(crate) fn show(value: &Value) -> String {
    shorten(&value.to_string(), 80)
}

pub(crate) fn shorten(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max_chars).collect();
    short.push('…');
    short
}

fn json_string(text: &str) -> String {
    Value::String(text.to_string()).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn types() -> Vec<NewsletterType> {
        vec![
            NewsletterType {
                id: NewsletterTypeId(0),
                description: "Information".into(),
                position: 1,
            },
            NewsletterType {
                id: NewsletterTypeId(1),
                description: "Werbung und Spiele".into(),
                position: 2,
            },
        ]
    }

    fn entry(id: i64, state: ChoiceState) -> ChecklistEntry {
        ChecklistEntry {
            id: NewsletterTypeId(id),
            state,
            description: format!("type {id}"),
            modified_by: "Anna Admin".into(),
            modified_on: "2024-01-02T03:04:05Z".into(),
            position: id + 1,
            extra: BTreeMap::new(),
        }
    }

    fn checklist(entries: &[(i64, ChoiceState)]) -> Checklist {
        Checklist {
            entries: entries.iter().map(|(id, s)| entry(*id, *s)).collect(),
        }
    }

    use ChoiceState::{No, NoChoice, Yes};

    const SEED: &str = r#"[{"id":0,"state":1,"description":"Information","modifiedby":"","modifiedon":"","position":1},{"id":1,"state":2,"description":"Werbung und Spiele","modifiedby":"CleverReach","modifiedon":"2024-05-01T10:00:00Z","position":2}]"#;

    #[test]
    fn the_seed_format_is_read_field_by_field() {
        let c = Checklist::parse(SEED).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.entries[0].id, NewsletterTypeId(0));
        assert_eq!(c.entries[0].state, Yes);
        assert_eq!(c.entries[0].description, "Information");
        assert_eq!(c.entries[1].state, No);
        assert_eq!(c.entries[1].modified_by, "CleverReach");
        assert_eq!(c.entries[1].modified_on, "2024-05-01T10:00:00Z");
        assert_eq!(c.entries[1].position, 2);
        assert_eq!(c.state_of(NewsletterTypeId(1)), No);
        assert_eq!(c.state_of(NewsletterTypeId(7)), NoChoice);
    }

    #[test]
    fn the_seed_format_is_written_back_byte_for_byte() {
        assert_eq!(Checklist::parse(SEED).unwrap().to_json(), SEED);
    }

    #[test]
    fn an_empty_blank_or_null_checklist_is_an_empty_checklist() {
        for text in ["", "   ", "\n", "null", " null ", "[]"] {
            assert_eq!(
                Checklist::parse(text).unwrap(),
                Checklist::default(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn ids_states_and_positions_may_be_numeric_texts() {
        let c = Checklist::parse(r#"[{"id":"3","state":" 1 ","position":"4"}]"#).unwrap();
        assert_eq!(c.entries[0].id, NewsletterTypeId(3));
        assert_eq!(c.entries[0].state, Yes);
        assert_eq!(c.entries[0].position, 4);
    }

    #[test]
    fn missing_or_null_texts_become_empty_and_a_missing_position_becomes_zero() {
        let c = Checklist::parse(r#"[{"id":0,"state":0,"description":null}]"#).unwrap();
        let e = &c.entries[0];
        assert_eq!(
            (
                e.description.as_str(),
                e.modified_by.as_str(),
                e.modified_on.as_str()
            ),
            ("", "", "")
        );
        assert_eq!(e.position, 0);
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let text = r#"[{"id":0,"state":1,"description":"Information","modifiedby":"","modifiedon":"","position":1,"color":"green","note":{"by":"admin"}}]"#;
        let c = Checklist::parse(text).unwrap();
        assert_eq!(c.entries[0].extra.get("color"), Some(&Value::from("green")));
        assert_eq!(Checklist::parse(&c.to_json()).unwrap(), c);
        assert!(c.to_json().contains(r#""note":{"by":"admin"}"#));
    }

    #[test]
    fn extras_named_like_known_fields_are_not_written_twice() {
        let mut c = checklist(&[(0, Yes)]);
        c.entries[0].extra.insert("state".into(), Value::from(2));
        let json = c.to_json();
        assert_eq!(json.matches("\"state\"").count(), 1, "{json}");
        assert_eq!(
            Checklist::parse(&json)
                .unwrap()
                .state_of(NewsletterTypeId(0)),
            Yes
        );
    }

    #[test]
    fn an_unknown_state_is_refused_naming_the_entry_and_the_value() {
        for (state, shown) in [
            ("3", "3"),
            ("-1", "-1"),
            ("\"yes\"", "\"yes\""),
            ("true", "true"),
            ("1.5", "1.5"),
            ("null", "null"),
        ] {
            let text = format!(r#"[{{"id":0,"state":1}},{{"id":5,"state":{state}}}]"#);
            let err = Checklist::parse(&text).unwrap_err();
            assert_eq!(
                err,
                ChecklistError::InvalidState {
                    entry: 2,
                    id: NewsletterTypeId(5),
                    value: shown.to_string()
                },
                "{text}"
            );
            let message = err.to_string();
            assert!(
                message.contains("entry 2") && message.contains(shown),
                "{message}"
            );
        }
    }

    #[test]
    fn a_missing_state_is_refused() {
        let err = Checklist::parse(r#"[{"id":0}]"#).unwrap_err();
        assert!(matches!(err, ChecklistError::InvalidState { entry: 1, .. }));
    }

    #[test]
    fn a_missing_or_broken_id_is_refused() {
        assert_eq!(
            Checklist::parse(r#"[{"state":1}]"#).unwrap_err(),
            ChecklistError::MissingId { entry: 1 }
        );
        assert_eq!(
            Checklist::parse(r#"[{"id":"abc","state":1}]"#).unwrap_err(),
            ChecklistError::InvalidId {
                entry: 1,
                value: "\"abc\"".into()
            }
        );
    }

    #[test]
    fn a_text_field_holding_a_number_is_refused() {
        let err = Checklist::parse(r#"[{"id":0,"state":1,"modifiedby":42}]"#).unwrap_err();
        assert!(
            matches!(
                err,
                ChecklistError::InvalidField {
                    entry: 1,
                    field: "modifiedby",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = Checklist::parse(r#"[{"id":0,"state":1,"position":"first"}]"#).unwrap_err();
        assert!(err.to_string().contains("position"), "{err}");
    }

    #[test]
    fn broken_json_is_refused_with_its_position() {
        let err = Checklist::parse("[{\"id\":0,\n\"state\":}]").unwrap_err();
        match err {
            ChecklistError::Json { line, column, .. } => {
                assert_eq!(line, 2);
                assert!(column > 0);
            }
            other => panic!("expected a JSON error, got {other:?}"),
        }
    }

    #[test]
    fn a_checklist_that_is_not_an_array_is_refused() {
        let err = Checklist::parse(r#"{"id":0,"state":1}"#).unwrap_err();
        assert!(matches!(err, ChecklistError::NotAnArray { .. }));
        assert!(err.to_string().contains("an object"), "{err}");
    }

    #[test]
    fn an_entry_that_is_not_an_object_is_refused_naming_the_entry() {
        let err = Checklist::parse(r#"[{"id":0,"state":1}, 7]"#).unwrap_err();
        assert!(
            matches!(err, ChecklistError::EntryNotAnObject { entry: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn validation_accepts_configured_types_only_once_each() {
        assert_eq!(checklist(&[(0, Yes), (1, No)]).validate(&types()), Ok(()));
        assert_eq!(Checklist::default().validate(&types()), Ok(()));
        assert_eq!(
            checklist(&[(0, Yes), (9, No)]).validate(&types()),
            Err(ChecklistError::UnknownType {
                id: NewsletterTypeId(9)
            })
        );
        assert_eq!(
            checklist(&[(0, Yes), (0, No)]).validate(&types()),
            Err(ChecklistError::DuplicateId {
                id: NewsletterTypeId(0)
            })
        );
    }

    #[test]
    fn normalising_adds_missing_types_keeps_existing_entries_and_drops_unknown_ones() {
        let mut existing = entry(1, Yes);
        existing.description = "old text kept".into();
        existing.extra.insert("x".into(), Value::from(1));
        let c = Checklist {
            entries: vec![entry(7, Yes), existing.clone()],
        };
        let n = c.normalized_for(&types());
        assert_eq!(n.entries.len(), 2);
        assert_eq!(
            n.entries[0],
            ChecklistEntry {
                id: NewsletterTypeId(0),
                state: NoChoice,
                description: "Information".into(),
                modified_by: String::new(),
                modified_on: String::new(),
                position: 1,
                extra: BTreeMap::new(),
            }
        );
        assert_eq!(n.entries[1], existing);
    }

    #[test]
    fn normalising_orders_by_the_configured_position() {
        let mut t = types();
        t[0].position = 5;
        let n = Checklist::default().normalized_for(&t);
        let ids: Vec<i64> = n.entries.iter().map(|e| e.id.0).collect();
        assert_eq!(ids, vec![1, 0]);
    }

    #[test]
    fn yes_types_lists_each_ticked_type_once() {
        let c = checklist(&[(0, Yes), (1, No), (2, Yes), (2, Yes), (3, NoChoice)]);
        assert_eq!(
            c.yes_types(),
            vec![NewsletterTypeId(0), NewsletterTypeId(2)]
        );
    }

    #[test]
    fn setting_a_state_updates_the_entry_and_records_who_and_when() {
        let mut c = checklist(&[(0, Yes), (1, Yes)]);
        assert!(c.set_state(
            NewsletterTypeId(1),
            No,
            "CleverReach",
            "2024-06-01T00:00:00Z"
        ));
        assert_eq!(c.state_of(NewsletterTypeId(1)), No);
        assert_eq!(c.entries[1].modified_by, "CleverReach");
        assert_eq!(c.entries[1].modified_on, "2024-06-01T00:00:00Z");
        assert_eq!(c.entries[0], entry(0, Yes), "other entries are untouched");
    }

    #[test]
    fn setting_the_same_state_again_changes_nothing() {
        let mut c = checklist(&[(0, No)]);
        let before = c.clone();
        assert!(!c.set_state(NewsletterTypeId(0), No, "CleverReach", "later"));
        assert_eq!(c, before);
    }

    #[test]
    fn setting_a_state_for_a_missing_type_adds_an_entry_after_the_others() {
        let mut c = checklist(&[(0, Yes)]);
        assert!(c.set_state(NewsletterTypeId(4), No, "CleverReach", "now"));
        let added = &c.entries[1];
        assert_eq!((added.id, added.state), (NewsletterTypeId(4), No));
        assert_eq!(added.position, 2);
        assert_eq!(added.modified_by, "CleverReach");
    }

    fn requested(entries: &[(i64, ChoiceState)]) -> Checklist {
        let mut c = checklist(entries);
        for e in &mut c.entries {
            e.modified_by = "requester".into();
            e.modified_on = "request time".into();
        }
        c
    }

    #[test]
    fn a_mass_update_never_turns_an_explicit_no_into_yes() {
        let member = checklist(&[(0, Yes), (1, No)]);
        assert_eq!(
            member.apply_mass_update(&requested(&[(0, Yes), (1, Yes)]), "sync", "t"),
            MassUpdateOutcome::SkippedExplicitNo
        );
    }

    #[test]
    fn a_member_with_an_explicit_no_is_not_changed_at_all_even_for_other_types() {
        // Type 0 would change from no choice to yes, but type 1 is an explicit no.
        let member = checklist(&[(0, NoChoice), (1, No)]);
        assert_eq!(
            member.apply_mass_update(&requested(&[(0, Yes), (1, Yes)]), "sync", "t"),
            MassUpdateOutcome::SkippedExplicitNo
        );
    }

    #[test]
    fn a_mass_update_sets_yes_and_no_and_stamps_only_changed_entries() {
        let member = checklist(&[(0, NoChoice), (1, Yes), (2, Yes)]);
        let outcome = member.apply_mass_update(
            &requested(&[(0, Yes), (1, Yes), (2, No)]),
            "Retroactive sync",
            "2024-07-01T00:00:00Z",
        );
        let MassUpdateOutcome::Changed(after) = outcome else {
            panic!("expected a change, got {outcome:?}");
        };
        assert_eq!(after.state_of(NewsletterTypeId(0)), Yes);
        assert_eq!(after.state_of(NewsletterTypeId(2)), No);
        assert_eq!(after.entries[0].modified_by, "Retroactive sync");
        assert_eq!(after.entries[0].modified_on, "2024-07-01T00:00:00Z");
        assert_eq!(
            after.entries[1], member.entries[1],
            "unchanged entry keeps its stamp"
        );
        assert_eq!(after.entries[2].modified_by, "Retroactive sync");
    }

    #[test]
    fn a_mass_update_may_turn_yes_into_no() {
        let member = checklist(&[(0, Yes)]);
        let MassUpdateOutcome::Changed(after) =
            member.apply_mass_update(&requested(&[(0, No)]), "sync", "t")
        else {
            panic!("expected a change");
        };
        assert_eq!(after.state_of(NewsletterTypeId(0)), No);
    }

    #[test]
    fn a_requested_no_choice_leaves_the_entry_as_it_is() {
        let member = checklist(&[(0, Yes), (1, No)]);
        assert_eq!(
            member.apply_mass_update(&requested(&[(0, NoChoice), (1, NoChoice)]), "s", "t"),
            MassUpdateOutcome::Unchanged
        );
    }

    #[test]
    fn a_mass_update_that_matches_the_member_is_unchanged() {
        let member = checklist(&[(0, Yes), (1, No)]);
        assert_eq!(
            member.apply_mass_update(&requested(&[(0, Yes), (1, No)]), "s", "t"),
            MassUpdateOutcome::Unchanged
        );
    }

    #[test]
    fn a_mass_update_adds_missing_entries_with_the_requested_description() {
        let member = Checklist::default();
        let MassUpdateOutcome::Changed(after) =
            member.apply_mass_update(&requested(&[(1, Yes)]), "sync", "t1")
        else {
            panic!("expected a change");
        };
        assert_eq!(after.entries.len(), 1);
        assert_eq!(after.entries[0].description, "type 1");
        assert_eq!(after.entries[0].position, 2);
        assert_eq!(after.entries[0].modified_by, "sync");
        assert_eq!(after.entries[0].modified_on, "t1");
    }

    #[test]
    fn a_mass_update_keeps_the_members_extra_fields() {
        let mut member = checklist(&[(0, NoChoice)]);
        member.entries[0]
            .extra
            .insert("color".into(), Value::from("red"));
        let MassUpdateOutcome::Changed(after) =
            member.apply_mass_update(&requested(&[(0, Yes)]), "s", "t")
        else {
            panic!("expected a change");
        };
        assert_eq!(
            after.entries[0].extra.get("color"),
            Some(&Value::from("red"))
        );
    }

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn any_entry() -> impl Strategy<Value = ChecklistEntry> {
        (
            any::<i64>(),
            0i64..3,
            any::<String>(),
            any::<String>(),
            any::<String>(),
            any::<i64>(),
            prop::collection::btree_map(
                "[a-zA-Z_]{1,10}"
                    .prop_filter("not a known field", |k| !KNOWN_FIELDS.contains(&k.as_str())),
                json_value(),
                0..3,
            ),
        )
            .prop_map(
                |(id, state, description, modified_by, modified_on, position, extra)| {
                    ChecklistEntry {
                        id: NewsletterTypeId(id),
                        state: ChoiceState::from_code(state).unwrap_or_default(),
                        description,
                        modified_by,
                        modified_on,
                        position,
                        extra,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn any_checklist_survives_a_round_trip(entries in prop::collection::vec(any_entry(), 0..5)) {
            let c = Checklist { entries };
            prop_assert_eq!(Checklist::parse(&c.to_json()), Ok(c));
        }

        #[test]
        fn parsing_any_text_never_panics(text in any::<String>()) {
            let _ = Checklist::parse(&text);
        }

        #[test]
        fn parsing_any_json_never_panics(value in json_value()) {
            let _ = Checklist::parse(&value.to_string());
            let _ = Checklist::parse(&Value::Array(vec![value]).to_string());
        }

        #[test]
        fn normalising_yields_exactly_the_configured_types(entries in prop::collection::vec(any_entry(), 0..5)) {
            let c = Checklist { entries };
            let n = c.normalized_for(&types());
            prop_assert_eq!(n.validate(&types()), Ok(()));
            prop_assert_eq!(n.entries.len(), 2);
            for t in types() {
                prop_assert_eq!(n.state_of(t.id), c.state_of(t.id));
            }
        }

        #[test]
        fn a_mass_update_never_undoes_an_explicit_no(
            member in prop::collection::vec((0i64..4, 0i64..3), 0..5),
            request in prop::collection::vec((0i64..4, 0i64..3), 0..5),
        ) {
            let to = |v: &Vec<(i64, i64)>| Checklist { entries: v.iter().map(|(id, s)| entry(*id, ChoiceState::from_code(*s).unwrap_or_default())).collect() };
            let member = to(&member);
            if let MassUpdateOutcome::Changed(after) = member.apply_mass_update(&to(&request), "s", "t") {
                for e in &member.entries {
                    if member.state_of(e.id) == No {
                        prop_assert_eq!(after.state_of(e.id), No);
                    }
                }
            }
        }
    }
}
