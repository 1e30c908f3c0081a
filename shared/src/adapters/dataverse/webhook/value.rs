//! Decoding of the typed values in a webhook body: GUIDs, WCF dates, entities, references and
//! attribute values (`OptionSetValue`, `Money`, …) into the domain's `AttrValue`.
//!
//! The body is `DataContractJsonSerializer` output: objects carry an optional `__type` hint
//! (`Name:namespace`), dates are `/Date(ms±hhmm)/` strings, GUIDs are plain strings. Images omit the
//! hints, so every decoder falls back to the object's shape.

use serde_json::{Map, Value};

use super::WebhookError;
use crate::domain::change::{AttrValue, Attributes, RecordRef};

/// The empty GUID: Dataverse sends it where an id does not apply.
pub const EMPTY_GUID: &str = "00000000-0000-0000-0000-000000000000";

/// A GUID in the `8-4-4-4-12` hex form (braces tolerated), lower-cased; `None` when it is not one.
pub fn normalize_guid(text: &str) -> Option<String> {
    let inner = match text.strip_prefix('{') {
        Some(rest) => rest.strip_suffix('}')?,
        None => text,
    };
    let groups: Vec<&str> = inner.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    if groups.len() != lengths.len() {
        return None;
    }
    let well_formed = groups
        .iter()
        .zip(lengths)
        .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()));
    well_formed.then(|| inner.to_ascii_lowercase())
}

/// Milliseconds since the epoch (UTC) of a WCF date string `/Date(ms)/` or `/Date(ms±hhmm)/`.
///
/// The offset only tells which zone the sender was in; the milliseconds are already UTC, so it is
/// checked for shape and otherwise ignored.
pub fn parse_wcf_date(text: &str) -> Option<i64> {
    let inner = text.strip_prefix("/Date(")?.strip_suffix(")/")?;
    let (sign, unsigned) = match inner.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, inner),
    };
    let digits_end = unsigned
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unsigned.len());
    let (digits, offset) = unsigned.split_at(digits_end);
    if digits.is_empty() {
        return None;
    }
    if !offset.is_empty() {
        let zone = offset
            .strip_prefix('+')
            .or_else(|| offset.strip_prefix('-'))?;
        if zone.len() != 4 || !zone.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    digits.parse::<i64>().ok().map(|ms| sign * ms)
}

/// The type name of a `__type` hint (`"Entity:http://schemas…"` → `"Entity"`), when present.
pub fn type_name(object: &Map<String, Value>) -> Option<&str> {
    object
        .get("__type")
        .and_then(Value::as_str)
        .map(|hint| hint.split(':').next().unwrap_or(hint))
}

/// What kind of row an object is: an entity (with attributes) or a reference to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowShape {
    Entity,
    Reference,
}

/// Recognise an `Entity` or `EntityReference` by its hint, else by its members (images carry no hint).
pub fn row_shape(object: &Map<String, Value>) -> Option<RowShape> {
    match type_name(object) {
        Some("Entity") => Some(RowShape::Entity),
        Some("EntityReference") => Some(RowShape::Reference),
        Some(_) => None,
        None if object.contains_key("Attributes") => Some(RowShape::Entity),
        None if object.contains_key("LogicalName") && object.contains_key("Id") => {
            Some(RowShape::Reference)
        }
        None => None,
    }
}

/// A short rendering of a JSON value for error texts. Only the start is serialized: a wrong value
/// can be most of a 256 KB body.
pub fn describe(value: &Value) -> String {
    const CHARS: usize = 60;
    let mut out = Bounded {
        bytes: Vec::new(),
        limit: CHARS * 4 + 4,
    };
    let complete = serde_json::to_writer(&mut out, value).is_ok();
    let text = match std::str::from_utf8(&out.bytes) {
        Ok(text) => text,
        Err(err) => std::str::from_utf8(&out.bytes[..err.valid_up_to()]).unwrap_or_default(),
    };
    // Error texts reach the CRM's system jobs and the logs: no addresses in them.
    let text = crate::redact::emails(text);
    match text.char_indices().nth(CHARS) {
        Some((cut, _)) => format!("{}…", without_cut_address(&text[..cut])),
        None if !complete => format!("{}…", without_cut_address(&text)),
        None => text.into_owned(),
    }
}

/// Drops a trailing fragment that may be the start of an address cut off by the shortening
/// (too short to be recognised, long enough to identify someone).
fn without_cut_address(text: &str) -> &str {
    let start = text
        .rfind(|c: char| !(c.is_alphanumeric() || "@._%+-".contains(c)))
        .map_or(0, |i| {
            i + text[i..].chars().next().map_or(1, char::len_utf8)
        });
    if text[start..].contains('@') {
        &text[..start]
    } else {
        text
    }
}

/// A writer that refuses to grow past its limit, which stops the serializer early.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.bytes.len());
        if room == 0 {
            return Err(std::io::Error::other("error text long enough"));
        }
        let taken = room.min(buf.len());
        self.bytes.extend_from_slice(&buf[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn invalid(field: &str, expected: &'static str, found: &Value) -> WebhookError {
    WebhookError::Invalid {
        field: field.to_string(),
        expected,
        found: describe(found),
    }
}

/// A required GUID string, lower-cased.
pub fn guid(value: &Value, field: &str) -> Result<String, WebhookError> {
    value
        .as_str()
        .and_then(normalize_guid)
        .ok_or_else(|| invalid(field, "a GUID", value))
}

/// A member that must be a GUID when present; missing or `null` gives `None`.
pub fn optional_guid(
    object: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, WebhookError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => guid(value, key).map(Some),
    }
}

/// A member that must be a string when present; missing or `null` gives `None`.
pub fn optional_string(
    object: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, WebhookError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(invalid(field, "a string", other)),
    }
}

/// An `EntityReference` object as a record reference plus its display name.
pub fn reference(value: &Value, field: &str) -> Result<(RecordRef, Option<String>), WebhookError> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid(field, "an EntityReference", value))?;
    let entity = match object.get("LogicalName") {
        Some(Value::String(name)) => name.clone(),
        Some(other) => return Err(invalid(&format!("{field}.LogicalName"), "a string", other)),
        None => return Err(WebhookError::missing(format!("{field}.LogicalName"))),
    };
    let id = match object.get("Id") {
        Some(id) => guid(id, &format!("{field}.Id"))?,
        None => return Err(WebhookError::missing(format!("{field}.Id"))),
    };
    let name = optional_string(object, "Name", &format!("{field}.Name"))?;
    Ok((RecordRef { entity, id }, name))
}

/// A GUID string or an `EntityReference`; a bare GUID gets `entity` as its logical name.
pub fn guid_or_reference(
    value: &Value,
    entity: &str,
    field: &str,
) -> Result<RecordRef, WebhookError> {
    match value {
        Value::Object(_) => reference(value, field).map(|(record, _)| record),
        _ => Ok(RecordRef {
            entity: entity.to_string(),
            id: guid(value, field)?,
        }),
    }
}

/// The attributes of an `Entity` object (its `Attributes` key/value array).
pub fn entity_attributes(value: &Value, field: &str) -> Result<Attributes, WebhookError> {
    let object = value
        .as_object()
        .ok_or_else(|| invalid(field, "an Entity", value))?;
    let mut attributes = Attributes::new();
    let Some(list) = object.get("Attributes") else {
        return Ok(attributes);
    };
    let attributes_field = format!("{field}.Attributes");
    for (name, raw) in super::KeyValues::new(list, &attributes_field)?.pairs()? {
        let decoded = attr_value(raw, &format!("{attributes_field}[\"{name}\"]"))?;
        // The first occurrence wins, as in a key lookup.
        attributes.entry(name.to_string()).or_insert(decoded);
    }
    Ok(attributes)
}

/// Decode one attribute value. Unknown types are kept as opaque JSON text; known types with a
/// broken shape are refused, since the body is then not what Dataverse sends.
pub fn attr_value(value: &Value, field: &str) -> Result<AttrValue, WebhookError> {
    Ok(match value {
        Value::Null => AttrValue::Null,
        Value::Bool(flag) => AttrValue::Bool(*flag),
        Value::Number(number) => match number.as_i64() {
            Some(int) => AttrValue::Int(int),
            None => AttrValue::Number(number.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(text) => match parse_wcf_date(text) {
            Some(ms) => AttrValue::DateTime(ms),
            None => AttrValue::Text(text.clone()),
        },
        Value::Array(items) => choices(items, field)?.unwrap_or_else(|| opaque(value)),
        Value::Object(object) => typed_object(object, value, field)?,
    })
}

fn opaque(value: &Value) -> AttrValue {
    AttrValue::Opaque(value.to_string())
}

/// An array of `OptionSetValue` objects is a multi-select choice; any other array is opaque.
fn choices(items: &[Value], field: &str) -> Result<Option<AttrValue>, WebhookError> {
    let mut values = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item.as_object() {
            Some(object) if is_option_set(object) => {
                values.push(option_value(object, item, &format!("{field}[{index}]"))?);
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(AttrValue::Choices(values)))
}

/// An `OptionSetValue` by hint, or (images without hints) an object holding only an integer `Value`.
fn is_option_set(object: &Map<String, Value>) -> bool {
    match type_name(object) {
        Some(name) => name == "OptionSetValue",
        None => object.len() == 1 && object.get("Value").is_some_and(Value::is_i64),
    }
}

fn option_value(
    object: &Map<String, Value>,
    value: &Value,
    field: &str,
) -> Result<i64, WebhookError> {
    object
        .get("Value")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid(field, "an OptionSetValue with an integer Value", value))
}

fn typed_object(
    object: &Map<String, Value>,
    value: &Value,
    field: &str,
) -> Result<AttrValue, WebhookError> {
    if is_option_set(object) {
        return option_value(object, value, field).map(AttrValue::Choice);
    }
    match type_name(object) {
        Some("EntityReference") => reference_value(value, field),
        Some("Money") => object
            .get("Value")
            .and_then(Value::as_f64)
            .map(AttrValue::Money)
            .ok_or_else(|| invalid(field, "a Money with a numeric Value", value)),
        Some(_) => Ok(opaque(value)),
        None => match row_shape(object) {
            Some(RowShape::Reference) => reference_value(value, field),
            _ => Ok(match object.get("Value") {
                // Without a hint, a lone non-integer Value can only be Money.
                Some(Value::Number(amount)) if object.len() == 1 => {
                    AttrValue::Money(amount.as_f64().unwrap_or(f64::NAN))
                }
                _ => opaque(value),
            }),
        },
    }
}

fn reference_value(value: &Value, field: &str) -> Result<AttrValue, WebhookError> {
    let (record, name) = reference(value, field)?;
    Ok(AttrValue::Reference {
        entity: record.entity,
        id: record.id,
        name,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(value: Value) -> AttrValue {
        attr_value(&value, "attr").unwrap()
    }

    #[test]
    fn a_date_without_offset_is_milliseconds_utc() {
        assert_eq!(
            parse_wcf_date("/Date(1506384247000)/"),
            Some(1_506_384_247_000)
        );
    }

    #[test]
    fn a_date_with_an_offset_keeps_the_utc_milliseconds() {
        assert_eq!(
            parse_wcf_date("/Date(1506409448000-0700)/"),
            Some(1_506_409_448_000)
        );
        assert_eq!(
            parse_wcf_date("/Date(1506409448000+0200)/"),
            Some(1_506_409_448_000)
        );
    }

    #[test]
    fn a_date_before_1970_is_negative() {
        assert_eq!(parse_wcf_date("/Date(-86400000)/"), Some(-86_400_000));
        assert_eq!(parse_wcf_date("/Date(-86400000+0100)/"), Some(-86_400_000));
    }

    #[test]
    fn malformed_dates_are_not_dates() {
        for text in [
            "/Date()/",
            "/Date(-)/",
            "/Date(12a)/",
            "/Date(12+01)/",
            "/Date(12+01000)/",
            "/Date(12)",
            "Date(12)/",
            "/Date(99999999999999999999)/",
            "/Date(12 )/",
        ] {
            assert_eq!(parse_wcf_date(text), None, "{text}");
        }
    }

    #[test]
    fn a_date_string_decodes_to_date_time_and_other_strings_stay_text() {
        assert_eq!(
            decode(json!("/Date(1697398446012)/")),
            AttrValue::DateTime(1_697_398_446_012)
        );
        assert_eq!(decode(json!("James")), AttrValue::Text("James".into()));
        assert_eq!(
            decode(json!("/Date(soon)/")),
            AttrValue::Text("/Date(soon)/".into())
        );
    }

    #[test]
    fn plain_json_values_decode_to_their_kind() {
        assert_eq!(decode(json!(null)), AttrValue::Null);
        assert_eq!(decode(json!(true)), AttrValue::Bool(true));
        assert_eq!(decode(json!(42)), AttrValue::Int(42));
        assert_eq!(decode(json!(-7)), AttrValue::Int(-7));
        assert_eq!(decode(json!(2.5)), AttrValue::Number(2.5));
        assert_eq!(
            decode(json!(18446744073709551615u64)),
            AttrValue::Number(18446744073709551615.0)
        );
    }

    #[test]
    fn an_option_set_value_is_a_choice_with_or_without_hint() {
        let hinted = json!({"__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 3});
        assert_eq!(decode(hinted), AttrValue::Choice(3));
        assert_eq!(decode(json!({"Value": 1})), AttrValue::Choice(1));
    }

    #[test]
    fn type_hints_with_escaped_slashes_are_the_same_hint() {
        let escaped: Value = serde_json::from_str(
            r#"{"__type":"OptionSetValue:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts","Value":2}"#,
        )
        .unwrap();
        assert_eq!(decode(escaped), AttrValue::Choice(2));
        let date: Value = serde_json::from_str(r#""\/Date(1506409448000-0700)\/""#).unwrap();
        assert_eq!(decode(date), AttrValue::DateTime(1_506_409_448_000));
    }

    #[test]
    fn an_option_set_value_without_an_integer_is_refused() {
        let broken = json!({"__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": "3"});
        let err = attr_value(&broken, "statecode").unwrap_err().to_string();
        assert!(
            err.starts_with("statecode is not an OptionSetValue"),
            "{err}"
        );
    }

    #[test]
    fn an_array_of_option_set_values_is_a_multi_select_choice() {
        let hint = "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts";
        let value =
            json!([{"__type": hint, "Value": 100000000}, {"__type": hint, "Value": 100000002}]);
        assert_eq!(
            decode(value),
            AttrValue::Choices(vec![100_000_000, 100_000_002])
        );
        assert_eq!(decode(json!([])), AttrValue::Choices(vec![]));
    }

    #[test]
    fn an_array_of_other_values_is_opaque() {
        assert_eq!(
            decode(json!([1, 2, 3])),
            AttrValue::Opaque("[1,2,3]".into())
        );
    }

    #[test]
    fn money_is_decoded_with_or_without_hint() {
        let hinted = json!({"__type": "Money:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 100});
        assert_eq!(decode(hinted), AttrValue::Money(100.0));
        assert_eq!(decode(json!({"Value": 12.75})), AttrValue::Money(12.75));
    }

    #[test]
    fn an_entity_reference_is_a_reference_with_a_lower_case_id() {
        let value = json!({
            "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
            "Id": "11BB11BB-CC22-DD33-EE44-55FF55FF55FF",
            "KeyAttributes": [],
            "LogicalName": "systemuser",
            "Name": "Sam Admin",
            "RowVersion": null
        });
        assert_eq!(
            decode(value),
            AttrValue::Reference {
                entity: "systemuser".into(),
                id: "11bb11bb-cc22-dd33-ee44-55ff55ff55ff".into(),
                name: Some("Sam Admin".into()),
            }
        );
    }

    #[test]
    fn an_entity_reference_without_hint_is_recognised_by_its_members() {
        let value = json!({"Id": "{6D81597F-0F9F-E711-8122-000D3AA2331C}", "LogicalName": "account", "Name": null});
        assert_eq!(
            decode(value),
            AttrValue::Reference {
                entity: "account".into(),
                id: "6d81597f-0f9f-e711-8122-000d3aa2331c".into(),
                name: None,
            }
        );
    }

    #[test]
    fn an_entity_reference_with_a_bad_id_names_the_field() {
        let value =
            json!({"__type": "EntityReference:http://x", "Id": "xyz", "LogicalName": "account"});
        let err = attr_value(&value, "parentcustomerid")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "parentcustomerid.Id is not a GUID: \"xyz\"");
    }

    #[test]
    fn an_entity_collection_and_unknown_types_are_opaque_json() {
        let collection = json!({"__type": "EntityCollection:http://schemas.microsoft.com/xrm/2011/Contracts", "Entities": [], "EntityName": "activityparty"});
        assert!(
            matches!(decode(collection), AttrValue::Opaque(text) if text.contains("activityparty"))
        );
        let unknown = json!({"__type": "QueryExpression:http://schemas.microsoft.com/xrm/2011/Contracts", "EntityName": "contact"});
        assert!(
            matches!(decode(unknown), AttrValue::Opaque(text) if text.contains("QueryExpression"))
        );
        let nested_entity = json!({"__type": "Entity:http://schemas.microsoft.com/xrm/2011/Contracts", "Attributes": []});
        assert!(matches!(decode(nested_entity), AttrValue::Opaque(_)));
    }

    #[test]
    fn guids_are_validated_and_lower_cased() {
        assert_eq!(
            normalize_guid("6D81597F-0F9F-E711-8122-000D3AA2331C").as_deref(),
            Some("6d81597f-0f9f-e711-8122-000d3aa2331c")
        );
        assert_eq!(
            normalize_guid("{6d81597f-0f9f-e711-8122-000d3aa2331c}").as_deref(),
            Some("6d81597f-0f9f-e711-8122-000d3aa2331c")
        );
        for bad in [
            "",
            "xyz",
            "6d81597f0f9fe7118122000d3aa2331c",
            "6d81597f-0f9f-e711-8122-000d3aa2331",
            "6d81597f-0f9f-e711-8122-000d3aa2331cc",
            "6d81597g-0f9f-e711-8122-000d3aa2331c",
            "{6d81597f-0f9f-e711-8122-000d3aa2331c",
            "6d81597f-0f9f-e711-8122-000d3aa2331c}",
            "6d81597f-0f9f-e711-8122-000d3aa-2331c",
        ] {
            assert_eq!(normalize_guid(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_long_value_is_shortened_in_error_texts() {
        let long = Value::String("ä".repeat(500));
        let text = describe(&long);
        assert_eq!(text.chars().count(), 61, "{text}");
        assert!(text.starts_with("\"ää") && text.ends_with('…'), "{text}");
        let wide = Value::Array((0..10_000).map(Value::from).collect());
        assert!(describe(&wide).starts_with("[0,1,2,3,"));
        assert!(describe(&wide).ends_with('…'));
    }

    #[test]
    fn addresses_in_a_wrong_value_are_not_shown_in_error_texts() {
        let whole = describe(&serde_json::json!({"Value": "anna.schmidt@example.org"}));
        assert!(!whole.contains("anna"), "{whole}");
        assert!(whole.contains("[e-mail "), "{whole}");
        // Cut off by the shortening: the fragment goes too.
        let cut = describe(&Value::String(format!(
            "{} anna.schmidt@example.org",
            "x".repeat(45)
        )));
        assert!(!cut.contains("anna"), "{cut}");
        assert!(cut.ends_with('…'), "{cut}");
    }

    #[test]
    fn a_short_value_is_shown_whole_in_error_texts() {
        assert_eq!(
            describe(&serde_json::json!({"Value": "3"})),
            "{\"Value\":\"3\"}"
        );
        assert_eq!(
            describe(&Value::String("ä".repeat(58))),
            format!("\"{}\"", "ä".repeat(58))
        );
    }
}
