//! CleverReach adapter: the JSON shapes of REST v3 as this client reads and writes them
//! (docs/architecture.md §11). Lenient where CleverReach is inconsistent: ids come as strings or numbers,
//! timestamps as numbers or numeric strings, flags as booleans or 0/1.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

fn stamp<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .unwrap_or(0),
        Value::String(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    })
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => matches!(s.trim(), "1" | "true"),
        _ => false,
    })
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

fn text_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect(),
        _ => BTreeMap::new(),
    })
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
    #[serde(default, deserialize_with = "text_map")]
    pub global_attributes: BTreeMap<String, String>,
    /// The group-local attribute values (of the group the receiver was read in).
    #[serde(default, deserialize_with = "text_map")]
    pub attributes: BTreeMap<String, String>,
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
