//! CleverReach adapter: the JSON shapes of REST v3 as this client reads and writes them
//! (docs/architecture.md §11). Lenient where CleverReach is inconsistent: ids come as strings or numbers,
//! timestamps as numbers or numeric strings, flags as booleans or 0/1.
//!
//! The lenient fields are read straight from the answer's text ([`Scalar`]), with no JSON tree
//! in between: a page of 5000 receivers is read with a handful of allocations per receiver
//! rather than dozens (docs/architecture.md §4 "Stream, don't load").

use super::config::attribute;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// One JSON value as the lenient readers below take it: scalars as they come, arrays and
/// objects as a tree (rare where a scalar is expected).
enum Scalar {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Null,
    Other(Value),
}

impl Scalar {
    /// The text of a value: a string as it is, null as empty, anything else as its JSON.
    fn into_text(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Null => String::new(),
            Scalar::I64(i) => i.to_string(),
            Scalar::U64(u) => u.to_string(),
            Scalar::F64(f) => Value::from(f).to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Other(v) => v.to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Scalar, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scalar, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Scalar::Other)
    }
}

fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Scalar::deserialize(d).map(Scalar::into_text)
}

fn stamp<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::I64(i) => i,
        // Saturating, as a float would be.
        Scalar::U64(u) => i64::try_from(u).unwrap_or(i64::MAX),
        Scalar::F64(f) => f as i64,
        Scalar::Str(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    })
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Scalar::deserialize(d)? {
        Scalar::Bool(b) => b,
        Scalar::I64(i) => i != 0,
        Scalar::U64(u) => u != 0,
        Scalar::F64(f) => f != 0.0,
        Scalar::Str(s) => matches!(s.trim(), "1" | "true"),
        _ => false,
    })
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Scalar::deserialize(d).map(Scalar::into_text)
}

/// The attribute values of a receiver that this client reads (the other names are skipped
/// while reading, never stored). Values are text as [`text`] makes it; a name given twice
/// keeps its last value, as a map would.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct AttributeValues {
    values: [Option<String>; KEPT.len()],
}

/// The attribute names read from a receiver, global and group-local.
const KEPT: [&str; 7] = [
    attribute::SALUTATION,
    attribute::FIRST_NAME,
    attribute::LAST_NAME,
    attribute::COMPANY,
    attribute::CRM_ENTITY,
    attribute::CRM_ID,
    attribute::GROUP_COMPANY,
];

impl AttributeValues {
    /// The value of one of the names read (`None` for a name not given or not read).
    pub fn get(&self, name: &str) -> Option<&String> {
        let at = KEPT.iter().position(|kept| *kept == name)?;
        self.values[at].as_ref()
    }
}

impl<'de> Deserialize<'de> for AttributeValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AttributesVisitor)
    }
}

struct AttributesVisitor;

impl<'de> Visitor<'de> for AttributesVisitor {
    type Value = AttributeValues;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("attribute values")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AttributeValues, A::Error> {
        let mut values = AttributeValues::default();
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match KEPT.iter().position(|kept| *kept == name) {
                Some(at) => values.values[at] = Some(map.next_value::<Scalar>()?.into_text()),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(values)
    }
    // Anything but an object carries no values.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<AttributeValues, E> {
        Ok(AttributeValues::default())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<AttributeValues, E> {
        Ok(AttributeValues::default())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<AttributeValues, E> {
        Ok(AttributeValues::default())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<AttributeValues, E> {
        Ok(AttributeValues::default())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<AttributeValues, E> {
        Ok(AttributeValues::default())
    }
    fn visit_unit<E: de::Error>(self) -> Result<AttributeValues, E> {
        Ok(AttributeValues::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<AttributeValues, E> {
        Ok(AttributeValues::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<AttributeValues, D::Error> {
        d.deserialize_any(AttributesVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AttributeValues, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(AttributeValues::default())
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireGroup {
    #[serde(deserialize_with = "id")]
    pub id: String,
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    #[serde(default, deserialize_with = "flag")]
    pub locked: bool,
    #[serde(default, deserialize_with = "flag")]
    pub backup: bool,
    #[serde(default, deserialize_with = "text")]
    pub receiver_info: String,
    #[serde(default, deserialize_with = "stamp")]
    pub stamp: i64,
    #[serde(default, deserialize_with = "stamp")]
    pub last_changed: i64,
}

#[derive(Debug, Serialize)]
pub(super) struct NewGroup<'a> {
    pub name: &'a str,
    pub locked: bool,
    pub receiver_info: &'a str,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireAttribute {
    #[serde(deserialize_with = "id")]
    pub id: String,
    #[serde(default, deserialize_with = "text")]
    pub name: String,
}

#[derive(Debug, Serialize)]
pub(super) struct NewAttribute<'a> {
    pub name: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub description: &'a str,
}

/// One row of an upsert body. Stamps are left out unless the receiver is to be activated,
/// so that an existing receiver's state is never touched.
#[derive(Debug, Serialize)]
pub(super) struct UpsertRow<'a> {
    pub email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registered: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated: Option<i64>,
    pub source: &'a str,
    pub global_attributes: BTreeMap<&'static str, &'a str>,
    /// Group-local attribute values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<&'static str, &'a str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireReceiver {
    #[serde(default, deserialize_with = "id")]
    pub id: String,
    #[serde(default, deserialize_with = "text")]
    pub email: String,
    #[serde(default, deserialize_with = "id")]
    pub group_id: String,
    #[serde(default, deserialize_with = "stamp")]
    pub registered: i64,
    #[serde(default, deserialize_with = "stamp")]
    pub activated: i64,
    #[serde(default, deserialize_with = "stamp")]
    pub deactivated: i64,
    #[serde(default, deserialize_with = "stamp")]
    pub bounced: i64,
    #[serde(default, deserialize_with = "flag")]
    pub active: bool,
    #[serde(default, deserialize_with = "text")]
    pub source: String,
    #[serde(default)]
    pub global_attributes: AttributeValues,
    /// The group-local attribute values (of the group the receiver was read in).
    #[serde(default)]
    pub attributes: AttributeValues,
}

/// One row of an upsert answer as the client reads it: a bare error string, or an object with
/// its `status` (when it is text) and whether it names an `email` (an upsertplus-style full
/// receiver), or anything else by its shape. Read without a JSON tree per row.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum UpsertAnswerRow {
    Refused(String),
    Object {
        status: Option<String>,
        email: bool,
    },
    /// What else came, by shape (`a number`, `true`, `nothing`, `an array of 2`).
    Other(String),
}

impl<'de> Deserialize<'de> for UpsertAnswerRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnswerRowVisitor)
    }
}

struct AnswerRowVisitor;

impl<'de> Visitor<'de> for AnswerRowVisitor {
    type Value = UpsertAnswerRow;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an upsert answer row")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<UpsertAnswerRow, E> {
        Ok(UpsertAnswerRow::Refused(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<UpsertAnswerRow, E> {
        Ok(UpsertAnswerRow::Refused(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UpsertAnswerRow, A::Error> {
        let mut status = None;
        let mut email = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                // A key given twice counts with its last value, as in a map.
                "status" => {
                    status = match map.next_value::<Scalar>()? {
                        Scalar::Str(s) => Some(s),
                        _ => None,
                    }
                }
                "email" => {
                    email = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(UpsertAnswerRow::Object { status, email })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UpsertAnswerRow, A::Error> {
        let mut n = 0;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(UpsertAnswerRow::Other(format!("an array of {n}")))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<UpsertAnswerRow, E> {
        Ok(UpsertAnswerRow::Other(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<UpsertAnswerRow, E> {
        Ok(UpsertAnswerRow::Other("a number".into()))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<UpsertAnswerRow, E> {
        Ok(UpsertAnswerRow::Other("a number".into()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<UpsertAnswerRow, E> {
        Ok(UpsertAnswerRow::Other("a number".into()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<UpsertAnswerRow, E> {
        Ok(UpsertAnswerRow::Other("nothing".into()))
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct WireBounce {
    #[serde(default, deserialize_with = "text")]
    pub email: String,
    #[serde(default, deserialize_with = "text")]
    pub category: String,
    /// CleverReach's spelling.
    #[serde(default, deserialize_with = "stamp")]
    pub occurences: i64,
    #[serde(default, deserialize_with = "stamp")]
    pub last_update: i64,
    #[serde(default, deserialize_with = "text")]
    pub bounce_message: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireBlacklistEntry {
    #[serde(default, deserialize_with = "text")]
    pub email: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct WireWhoami {
    #[serde(default, deserialize_with = "id")]
    pub id: String,
    #[serde(default, deserialize_with = "text")]
    pub name: String,
    #[serde(default, deserialize_with = "text")]
    pub email: String,
    #[serde(default, deserialize_with = "text")]
    pub login_domain: String,
}

#[derive(Deserialize)]
pub(super) struct WireTokens {
    pub access_token: String,
    #[serde(default, deserialize_with = "stamp")]
    pub expires_in: i64,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

/// `{"error":{"code":…,"message":…}}` (API) or `{"error":"…","error_description":"…"}` (OAuth).
pub(super) struct ErrorBody {
    pub code: Option<i64>,
    pub message: Option<String>,
    /// The OAuth error word (`invalid_grant`, `invalid_client`, …).
    pub oauth_error: Option<String>,
}

impl ErrorBody {
    pub fn from_value(value: &Value) -> Option<ErrorBody> {
        match value.get("error")? {
            Value::Object(err) => Some(ErrorBody {
                code: err.get("code").and_then(|c| match c {
                    Value::Number(n) => n.as_i64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                }),
                message: err
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                oauth_error: None,
            }),
            Value::String(word) => Some(ErrorBody {
                code: None,
                message: value
                    .get("error_description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                oauth_error: Some(word.clone()),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_stamps_and_flags_are_read_in_either_spelling() {
        let g: WireGroup = serde_json::from_str(
            r#"{"id":1363537,"name":"x","locked":"1","backup":0,"receiver_info":null,"stamp":"1510238292","last_changed":1510238292}"#,
        )
        .unwrap();
        assert_eq!(g.id, "1363537");
        assert!(g.locked);
        assert!(!g.backup);
        assert_eq!(g.receiver_info, "");
        assert_eq!(g.stamp, 1510238292);
    }

    #[test]
    fn a_receiver_read_from_text_is_read_as_from_its_json_tree() {
        // Every lenient spelling, in a field of each kind; read from the text (no tree) and
        // through a tree (how it was read before), the values agree.
        let text = r#"{"id":12,"email":"a@example.com","group_id":null,"registered":"1510238292",
            "activated":1.5e9,"deactivated":18446744073709551615,"bounced":-3,"active":"1",
            "source":{"b":1,"a":[true,null]},
            "global_attributes":{"firstname":"Anna","lastname":7,"salutation":null,
                "crmid":"x","crmid":"y","other":{"deep":1},"company":2.5,"crmentity":true},
            "attributes":[1,2]}"#;
        let straight: WireReceiver = serde_json::from_str(text).unwrap();
        let tree: WireReceiver =
            serde_json::from_value(serde_json::from_str::<Value>(text).unwrap()).unwrap();
        for w in [&straight, &tree] {
            assert_eq!(w.id, "12");
            assert_eq!(w.group_id, "");
            assert_eq!(w.registered, 1510238292);
            assert_eq!(w.activated, 1_500_000_000);
            assert_eq!(w.deactivated, i64::MAX);
            assert_eq!(w.bounced, -3);
            assert!(w.active);
            assert_eq!(w.source, r#"{"a":[true,null],"b":1}"#);
            let global = |name: &str| w.global_attributes.get(name).cloned();
            assert_eq!(global("firstname").as_deref(), Some("Anna"));
            assert_eq!(global("lastname").as_deref(), Some("7"));
            assert_eq!(global("salutation").as_deref(), Some(""));
            assert_eq!(global("crmid").as_deref(), Some("y"));
            assert_eq!(global("company").as_deref(), Some("2.5"));
            assert_eq!(global("crmentity").as_deref(), Some("true"));
            assert_eq!(w.attributes, AttributeValues::default());
        }
    }

    #[test]
    fn both_error_shapes_are_understood() {
        let api = ErrorBody::from_value(
            &serde_json::json!({"error":{"code":404,"message":"Not Found: invalid receiver"}}),
        )
        .unwrap();
        assert_eq!(api.code, Some(404));
        assert_eq!(api.message.as_deref(), Some("Not Found: invalid receiver"));
        let oauth = ErrorBody::from_value(
            &serde_json::json!({"error":"invalid_grant","error_description":"Invalid refresh token"}),
        )
        .unwrap();
        assert_eq!(oauth.oauth_error.as_deref(), Some("invalid_grant"));
        assert!(ErrorBody::from_value(&serde_json::json!([true])).is_none());
    }
}
