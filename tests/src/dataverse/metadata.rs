//! The customization (metadata) Web API: `EntityDefinitions` (tables), their `Attributes`
//! (columns) and `Keys` (alternate keys), `RelationshipDefinitions` (lookups), `PublishXml`,
//! and the functions `RetrieveProvisionedLanguages`, `RetrieveRolePrivilegesRole` and the
//! action `AddPrivilegesRole`. Request shapes and errors follow the Dataverse Web API
//! documentation; where it is silent the simulator is strict (the choices are listed in
//! `tests/src/dataverse/README.md`).
//!
//! What is created extends the simulator's catalog at once: a created column can be written
//! by the next request. Metadata requests are not accepted inside `$batch`.

use super::api::{ApiRequest, ApiResponse, Applied, Ctx, Done};
use super::catalog::{
    self, AttributeMeta, Catalog, EntityMeta, KeyMeta, NewTable, RelationshipMeta,
};
use super::error::{ApiError, code};
use super::schema::{Access, Column, Kind, Opt, Table};
use super::security::{self, Target};
use super::store::{self, Row, Store, Val};
use super::{Shared, webhooks::Bypass, xml};
use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use uuid::Uuid;

const NS: &str = "Microsoft.Dynamics.CRM.";
/// `DuplicateName`: an object with the name exists.
const DUPLICATE_NAME: &str = "0x80047010";
/// `DuplicateAttributePhysicalName`.
const DUPLICATE_ATTRIBUTE: &str = "0x80060304";
/// `DuplicatePrimaryNameAttribute`.
const DUPLICATE_PRIMARY_NAME: &str = "0x8004701E";
/// `DuplicateRecordEntityKey`: a row with the same alternate-key values exists.
pub const DUPLICATE_KEY: &str = "0x80060892";

/// The largest single line of text and multiple lines of text.
const STRING_MAX: i64 = 4000;
const MEMO_MAX: i64 = 1_048_576;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code::PAYLOAD, message)
}

fn query_error(message: impl Into<String>) -> ApiError {
    ApiError::query(message)
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, code::NOT_FOUND, message)
}

fn applied(response: ApiResponse) -> Done {
    Done::Write(Applied {
        response,
        undo: Vec::new(),
        events: Vec::new(),
        bypass: Bypass::default(),
    })
}

fn created(ctx: &Ctx, path: &str) -> Done {
    applied(
        ApiResponse::empty(StatusCode::NO_CONTENT)
            .with_header("OData-EntityId", format!("{}{path}", ctx.root())),
    )
}

/// Handles the request when it is one of the metadata endpoints; `None` otherwise.
pub fn execute(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
) -> Result<Option<Done>, ApiError> {
    let path = req.path.trim_matches('/');
    let first = path.split('/').next().unwrap_or_default();
    let (name, key) = split(first)?;
    let role_action = name == "roles"
        && path
            .split('/')
            .nth(1)
            .is_some_and(|s| s == format!("{NS}AddPrivilegesRole") || s == "AddPrivilegesRole");
    let known = matches!(
        name,
        "EntityDefinitions"
            | "RelationshipDefinitions"
            | "PublishXml"
            | "RetrieveProvisionedLanguages"
            | "RetrieveRolePrivilegesRole"
    ) || role_action;
    if !known {
        return Ok(None);
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let stat = stat_key(&req.method, name, &segments);
    sim.count_request(stat);
    if req.method != Method::GET {
        sim.log_request(req);
    }
    if ctx.in_batch {
        return Err(query_error(
            "Metadata requests inside $batch are not supported by the sandbox; send them one by one.",
        ));
    }
    let m = req.method.clone();
    let done = match (name, m) {
        ("EntityDefinitions", _) => entity_definitions(sim, store, ctx, req, key, &segments)?,
        ("RelationshipDefinitions", _) => {
            relationships(store, ctx, req, key, &segments, &sim.config.languages)?
        }
        ("PublishXml", Method::POST) if key.is_none() && segments.is_empty() => {
            publish(store, ctx, req)?
        }
        ("RetrieveProvisionedLanguages", Method::GET) if key.is_some_and(str::is_empty) => {
            Done::Read(ApiResponse::json(
                StatusCode::OK,
                json!({
                    "@odata.context": format!("{}$metadata#{NS}RetrieveProvisionedLanguagesResponse", ctx.root()),
                    "RetrieveProvisionedLanguages": sim.config.languages,
                }),
            ))
        }
        ("RetrieveRolePrivilegesRole", Method::GET) => {
            let role = key
                .and_then(|k| k.trim().strip_prefix("RoleId="))
                .and_then(store::parse_guid)
                .ok_or_else(|| query_error("RetrieveRolePrivilegesRole needs (RoleId=<guid>)."))?;
            let mut body = security::role_privileges(store, role)?;
            if let Some(map) = body.as_object_mut() {
                map.insert(
                    "@odata.context".into(),
                    json!(format!(
                        "{}$metadata#{NS}RetrieveRolePrivilegesRoleResponse",
                        ctx.root()
                    )),
                );
            }
            Done::Read(ApiResponse::json(StatusCode::OK, body))
        }
        ("roles", Method::POST) => {
            let role = key
                .and_then(store::parse_guid)
                .ok_or_else(|| query_error("roles(<id>) needs a GUID."))?;
            let body = object(req)?;
            security::add_privileges(store, ctx, role, &body).map(Done::Write)?
        }
        (_, m) => return Err(ApiError::method_not_allowed(m.as_str())),
    };
    Ok(Some(done))
}

fn stat_key(method: &Method, name: &str, segments: &[&str]) -> String {
    let mut key = format!("{method} {name}");
    for s in segments {
        let (n, _) = split(s).unwrap_or((s, None));
        if n.starts_with(NS) {
            continue;
        }
        key.push('/');
        key.push_str(n);
    }
    key
}

/// `name` or `name(key)`.
fn split(segment: &str) -> Result<(&str, Option<&str>), ApiError> {
    match segment.find('(') {
        None => Ok((segment, None)),
        Some(open) => {
            let inner = segment[open + 1..].strip_suffix(')').ok_or_else(|| {
                query_error(format!("Bad Request - Error in query syntax: '{segment}'."))
            })?;
            Ok((&segment[..open], Some(inner)))
        }
    }
}

fn object(req: &ApiRequest) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad("The request body must be a JSON object.")),
        Err(e) => Err(bad(format!("The request body is not valid JSON: {e}."))),
    }
}

/// `LogicalName='x'`, `MetadataId=<guid>` or `<guid>` → how a definition is addressed.
enum Key {
    Name(String),
    Id(Uuid),
}

fn parse_key(key: &str, name_property: &str) -> Result<Key, ApiError> {
    let key = key.trim();
    if let Some(rest) = key
        .strip_prefix(name_property)
        .and_then(|r| r.strip_prefix('='))
    {
        let inner = rest
            .strip_prefix('\'')
            .and_then(|r| r.strip_suffix('\''))
            .ok_or_else(|| query_error(format!("The key '{key}' needs a quoted name.")))?;
        return Ok(Key::Name(inner.to_string()));
    }
    let id = key.strip_prefix("MetadataId=").unwrap_or(key);
    store::parse_guid(id)
        .map(Key::Id)
        .ok_or_else(|| query_error(format!("The key '{key}' is not a valid key.")))
}

fn odata_type(body: &Map<String, Value>) -> Option<&str> {
    body.get("@odata.type")
        .and_then(|v| v.as_str())
        .map(|t| t.trim_start_matches('#'))
        .map(|t| t.strip_prefix(NS).unwrap_or(t))
}

fn require_type(body: &Map<String, Value>, wanted: &str) -> Result<(), ApiError> {
    match odata_type(body) {
        Some(t) if t == wanted => Ok(()),
        Some(t) => Err(bad(format!(
            "The @odata.type '{t}' is not valid here; {NS}{wanted} is required."
        ))),
        None => Err(bad(format!("@odata.type {NS}{wanted} is required."))),
    }
}

/// A `Label`: `LocalizedLabels` with a `Label` and a provisioned `LanguageCode` each; the
/// org's base language among them.
fn check_label(value: Option<&Value>, field: &str, languages: &[i64]) -> Result<Value, ApiError> {
    let obj = value.and_then(|v| v.as_object()).ok_or_else(|| {
        bad(format!(
            "{field} is required: a Label with LocalizedLabels."
        ))
    })?;
    if let Some(t) = obj.get("@odata.type").and_then(|v| v.as_str())
        && t.trim_start_matches('#') != format!("{NS}Label")
    {
        return Err(bad(format!("{field}: '{t}' is not {NS}Label.")));
    }
    let labels = obj
        .get("LocalizedLabels")
        .and_then(|v| v.as_array())
        .filter(|l| !l.is_empty())
        .ok_or_else(|| bad(format!("{field} needs at least one LocalizedLabel.")))?;
    let mut seen = Vec::new();
    for l in labels {
        let text = l.get("Label").and_then(|v| v.as_str());
        let language = l.get("LanguageCode").and_then(|v| v.as_i64());
        let (Some(text), Some(language)) = (text, language) else {
            return Err(bad(format!(
                "{field}: every LocalizedLabel needs Label (string) and LanguageCode (number)."
            )));
        };
        if let Some(t) = l.get("@odata.type").and_then(|v| v.as_str())
            && t.trim_start_matches('#') != format!("{NS}LocalizedLabel")
        {
            return Err(bad(format!("{field}: '{t}' is not {NS}LocalizedLabel.")));
        }
        if !languages.contains(&language) {
            return Err(bad(format!(
                "The language code {language} is not a valid language for this organization."
            )));
        }
        if text.trim().is_empty() {
            return Err(bad(format!("{field}: the label for {language} is empty.")));
        }
        seen.push(language);
    }
    if let Some(base) = languages.first()
        && !seen.contains(base)
    {
        return Err(bad(format!(
            "{field} needs a label in the organization's base language ({base})."
        )));
    }
    Ok(Value::Object(obj.clone()))
}

fn optional_label(
    value: Option<&Value>,
    field: &str,
    languages: &[i64],
) -> Result<Value, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(json!({ "LocalizedLabels": [] })),
        Some(v) => check_label(Some(v), field, languages),
    }
}

/// A SchemaName: letters, digits and `_`, starting with the solution publisher's prefix.
fn check_schema_name(
    value: Option<&Value>,
    what: &str,
    target: &Target,
) -> Result<String, ApiError> {
    let name = value
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad(format!("{what}: SchemaName is required.")))?;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if !valid {
        return Err(bad(format!(
            "{what}: the SchemaName '{name}' is not valid (letters, digits and '_', at most 64)."
        )));
    }
    let prefix = format!("{}_", target.prefix);
    if !name
        .to_ascii_lowercase()
        .starts_with(&prefix.to_ascii_lowercase())
        || name.len() == prefix.len()
    {
        return Err(bad(format!(
            "{what}: the SchemaName '{name}' must start with the customization prefix '{prefix}' of the solution's publisher."
        )));
    }
    Ok(name.to_string())
}

fn required_level(value: Option<&Value>) -> Result<Value, ApiError> {
    let level = value
        .and_then(|v| v.get("Value"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("RequiredLevel is required: {\"Value\": \"None\"|\"Recommended\"|\"ApplicationRequired\"}."))?;
    match level {
        "None" | "Recommended" | "ApplicationRequired" => Ok(value.cloned().unwrap_or(Value::Null)),
        "SystemRequired" => Err(bad(
            "RequiredLevel SystemRequired is not allowed for custom columns.",
        )),
        other => Err(bad(format!("'{other}' is not a RequiredLevel."))),
    }
}

fn int_in(body: &Map<String, Value>, name: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    let n = body.get(name).and_then(|v| v.as_i64()).ok_or_else(|| {
        bad(format!(
            "{name} is required (a number from {min} to {max})."
        ))
    })?;
    if !(min..=max).contains(&n) {
        return Err(bad(format!("{name} {n} is outside {min}..{max}.")));
    }
    Ok(n)
}

fn value_of<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    body.get(name)
        .and_then(|v| v.get("Value"))
        .and_then(|v| v.as_str())
}

/// A column definition from a body: its metadata and how the simulator stores it.
struct NewAttribute {
    logical: &'static str,
    kind: Kind,
    meta: AttributeMeta,
}

fn parse_attribute(
    body: &Map<String, Value>,
    target: &Target,
    languages: &[i64],
    primary_name: bool,
) -> Result<NewAttribute, ApiError> {
    let kind_name = odata_type(body)
        .ok_or_else(|| bad("@odata.type of the attribute (e.g. Microsoft.Dynamics.CRM.StringAttributeMetadata) is required."))?
        .to_string();
    let schema_name = check_schema_name(body.get("SchemaName"), "the attribute", target)?;
    let logical = schema_name.to_ascii_lowercase();
    if let Some(l) = body.get("LogicalName").and_then(|v| v.as_str())
        && l != logical
    {
        return Err(bad(format!(
            "LogicalName '{l}' must be the SchemaName in lower case ('{logical}')."
        )));
    }
    let display_name = check_label(body.get("DisplayName"), "DisplayName", languages)?;
    let description = optional_label(body.get("Description"), "Description", languages)?;
    let required = required_level(body.get("RequiredLevel"))?;
    let is_primary = body.get("IsPrimaryName").and_then(|v| v.as_bool()) == Some(true);
    if is_primary != primary_name {
        return Err(if primary_name {
            bad("The table's primary name attribute needs IsPrimaryName: true.")
        } else {
            ApiError::bad_request(
                DUPLICATE_PRIMARY_NAME,
                "A table has one primary name attribute; it is created with the table.",
            )
        });
    }
    let mut typed = BTreeMap::new();
    let (kind, type_name, attribute_type, column_kind) = match kind_name.as_str() {
        "StringAttributeMetadata" => {
            let max = int_in(body, "MaxLength", 1, STRING_MAX)?;
            let format = value_of(body, "FormatName").ok_or_else(|| {
                bad("FormatName is required for a single line of text: {\"Value\": \"Text\"}.")
            })?;
            const FORMATS: [&str; 9] = [
                "Text",
                "TextArea",
                "Email",
                "Url",
                "Phone",
                "TickerSymbol",
                "Json",
                "RichText",
                "VersionNumber",
            ];
            if !FORMATS.contains(&format) {
                return Err(bad(format!(
                    "FormatName '{format}' is not a string format."
                )));
            }
            if primary_name && format != "Text" {
                return Err(bad("The primary name attribute must use FormatName Text."));
            }
            typed.insert("MaxLength".to_string(), json!(max));
            typed.insert("FormatName".to_string(), json!({ "Value": format }));
            (
                "StringAttributeMetadata",
                "StringType",
                "String",
                Kind::Str(max as usize),
            )
        }
        _ if primary_name => {
            return Err(bad(
                "The primary name attribute must be a StringAttributeMetadata.",
            ));
        }
        "MemoAttributeMetadata" => {
            let max = int_in(body, "MaxLength", 1, MEMO_MAX)?;
            let format = body.get("Format").and_then(|v| v.as_str());
            let format_name = value_of(body, "FormatName");
            match (format, format_name) {
                (Some("TextArea"), _) | (None, Some("Text" | "TextArea" | "Json" | "RichText")) => {
                }
                _ => {
                    return Err(bad(
                        "A multiple lines of text column needs Format \"TextArea\" (or FormatName Text, TextArea, Json or RichText).",
                    ));
                }
            }
            typed.insert("MaxLength".to_string(), json!(max));
            typed.insert("Format".to_string(), json!("TextArea"));
            (
                "MemoAttributeMetadata",
                "MemoType",
                "Memo",
                Kind::Str(max as usize),
            )
        }
        "BooleanAttributeMetadata" => {
            let set = body
                .get("OptionSet")
                .and_then(|v| v.as_object())
                .ok_or_else(|| bad("OptionSet (BooleanOptionSetMetadata with TrueOption and FalseOption) is required."))?;
            require_type(set, "BooleanOptionSetMetadata")?;
            if set.get("OptionSetType").and_then(|v| v.as_str()) != Some("Boolean") {
                return Err(bad("OptionSet.OptionSetType must be \"Boolean\"."));
            }
            for (option, value) in [("TrueOption", 1), ("FalseOption", 0)] {
                let o = set
                    .get(option)
                    .ok_or_else(|| bad(format!("OptionSet.{option} is required.")))?;
                if o.get("Value").and_then(|v| v.as_i64()) != Some(value) {
                    return Err(bad(format!("OptionSet.{option}.Value must be {value}.")));
                }
                check_label(
                    o.get("Label"),
                    &format!("OptionSet.{option}.Label"),
                    languages,
                )?;
            }
            if let Some(d) = body.get("DefaultValue")
                && !d.is_boolean()
            {
                return Err(bad("DefaultValue must be true or false."));
            }
            typed.insert(
                "DefaultValue".to_string(),
                body.get("DefaultValue").cloned().unwrap_or(json!(false)),
            );
            (
                "BooleanAttributeMetadata",
                "BooleanType",
                "Boolean",
                Kind::Bool,
            )
        }
        "DateTimeAttributeMetadata" => {
            let format = body
                .get("Format")
                .and_then(|v| v.as_str())
                .ok_or_else(|| bad("Format is required for a date and time column: \"DateOnly\" or \"DateAndTime\"."))?;
            if !matches!(format, "DateOnly" | "DateAndTime") {
                return Err(bad(format!(
                    "Format '{format}' is not DateOnly or DateAndTime."
                )));
            }
            let behavior = match body.get("DateTimeBehavior") {
                None => "UserLocal",
                Some(b) => b.get("Value").and_then(|v| v.as_str()).ok_or_else(|| {
                    bad("DateTimeBehavior must be {\"Value\": \"UserLocal\"|\"DateOnly\"|\"TimeZoneIndependent\"}.")
                })?,
            };
            if !matches!(behavior, "UserLocal" | "DateOnly" | "TimeZoneIndependent") {
                return Err(bad(format!("'{behavior}' is not a DateTimeBehavior.")));
            }
            if behavior == "DateOnly" && format != "DateOnly" {
                return Err(bad("The behavior DateOnly needs Format DateOnly."));
            }
            typed.insert("Format".to_string(), json!(format));
            typed.insert("DateTimeBehavior".to_string(), json!({ "Value": behavior }));
            (
                "DateTimeAttributeMetadata",
                "DateTimeType",
                "DateTime",
                Kind::DateTime,
            )
        }
        "IntegerAttributeMetadata" => {
            let min = body
                .get("MinValue")
                .and_then(|v| v.as_i64())
                .unwrap_or(i32::MIN.into());
            let max = body
                .get("MaxValue")
                .and_then(|v| v.as_i64())
                .unwrap_or(i32::MAX.into());
            if min < i32::MIN.into() || max > i32::MAX.into() || min > max {
                return Err(bad(
                    "MinValue and MaxValue must lie within the 32-bit range, MinValue ≤ MaxValue.",
                ));
            }
            typed.insert("MinValue".to_string(), json!(min));
            typed.insert("MaxValue".to_string(), json!(max));
            typed.insert(
                "Format".to_string(),
                json!(body.get("Format").cloned().unwrap_or(json!("None"))),
            );
            (
                "IntegerAttributeMetadata",
                "IntegerType",
                "Integer",
                Kind::Int,
            )
        }
        "PicklistAttributeMetadata" => {
            let set = body
                .get("OptionSet")
                .and_then(|v| v.as_object())
                .ok_or_else(|| bad("OptionSet (OptionSetMetadata with Options) is required."))?;
            require_type(set, "OptionSetMetadata")?;
            if set.get("IsGlobal").and_then(|v| v.as_bool()) == Some(true) {
                return Err(bad(
                    "Global choices are not supported by the sandbox (IsGlobal must be false).",
                ));
            }
            if set.get("OptionSetType").and_then(|v| v.as_str()) != Some("Picklist") {
                return Err(bad("OptionSet.OptionSetType must be \"Picklist\"."));
            }
            let options = set
                .get("Options")
                .and_then(|v| v.as_array())
                .filter(|o| !o.is_empty())
                .ok_or_else(|| bad("OptionSet.Options needs at least one option."))?;
            let low = target.option_prefix * 10_000;
            let mut opts = Vec::new();
            for o in options {
                let value = o
                    .get("Value")
                    .and_then(|v| v.as_i64())
                    .ok_or_else(|| bad("Every option needs a Value."))?;
                // Pessimistic: values outside the publisher's range are refused.
                if !(low..low + 10_000).contains(&value) {
                    return Err(bad(format!(
                        "The option value {value} is outside the range {low}..{} of the publisher's option value prefix {}.",
                        low + 9_999,
                        target.option_prefix
                    )));
                }
                if opts.iter().any(|(v, _)| *v == value) {
                    return Err(bad(format!("The option value {value} appears twice.")));
                }
                let label = check_label(o.get("Label"), "option Label", languages)?;
                let text = label["LocalizedLabels"][0]["Label"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                opts.push((value, text));
            }
            typed.insert("OptionSet".to_string(), Value::Object(set.clone()));
            let leaked: Vec<Opt> = opts
                .iter()
                .map(|(v, t)| Opt(*v, catalog::name(t)))
                .collect();
            (
                "PicklistAttributeMetadata",
                "PicklistType",
                "Picklist",
                Kind::Choice(Box::leak(leaked.into_boxed_slice())),
            )
        }
        "LookupAttributeMetadata" => {
            return Err(bad(
                "Lookup columns are created with their relationship: POST RelationshipDefinitions with a OneToManyRelationshipMetadata.",
            ));
        }
        other => {
            return Err(bad(format!(
                "Attributes of type '{other}' are not supported by the sandbox."
            )));
        }
    };
    let is_secured = body
        .get("IsSecured")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(NewAttribute {
        logical: catalog::name(&logical),
        kind: column_kind,
        meta: AttributeMeta {
            metadata_id: Uuid::new_v4(),
            schema_name,
            kind,
            type_name,
            attribute_type,
            is_custom: true,
            is_secured,
            is_primary_id: false,
            is_primary_name: primary_name,
            required_level: required,
            display_name,
            description,
            typed,
        },
    })
}

fn table_by_key(catalog: &Catalog, key: Option<&str>) -> Result<&'static Table, ApiError> {
    let key = key.ok_or_else(|| query_error("EntityDefinitions(<key>) is needed here."))?;
    match parse_key(key, "LogicalName")? {
        Key::Name(n) => catalog
            .table(&n)
            .ok_or_else(|| not_found(format!("Could not find an entity with LogicalName '{n}'."))),
        Key::Id(id) => catalog
            .tables()
            .find(|t| catalog.entity(t).metadata_id == id)
            .ok_or_else(|| not_found(format!("Could not find an entity with MetadataId {id}."))),
    }
}

/// Keeps the selected properties (validated against the type's properties) and the key.
fn select(
    full: Map<String, Value>,
    select: Option<&str>,
    allowed: &[&str],
    type_name: &str,
) -> Result<Map<String, Value>, ApiError> {
    let Some(list) = select else {
        return Ok(full);
    };
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    for n in &names {
        if !allowed.contains(n) {
            return Err(query_error(format!(
                "Could not find a property named '{n}' on type '{NS}{type_name}'."
            )));
        }
    }
    Ok(full
        .into_iter()
        .filter(|(k, _)| k == "MetadataId" || k == "@odata.type" || names.contains(&k.as_str()))
        .collect())
}

/// A `$filter` of `Property eq literal` terms joined by `and` / `or` (no parentheses).
fn filter(text: Option<&str>, allowed: &[&str]) -> Result<Vec<Vec<(String, Value)>>, ApiError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let mut any = Vec::new();
    for alternative in text.split(" or ") {
        let mut all = Vec::new();
        for term in alternative.split(" and ") {
            let term = term.trim();
            let (property, literal) = term.split_once(" eq ").ok_or_else(|| {
                query_error(format!(
                    "The metadata $filter '{term}' is not supported by the sandbox (only Property eq value, joined by and / or)."
                ))
            })?;
            let property = property.trim();
            if !allowed.contains(&property) {
                return Err(query_error(format!(
                    "Could not find a property named '{property}' to filter on."
                )));
            }
            let literal = literal.trim();
            let value = if let Some(s) = literal
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
            {
                Value::String(s.replace("''", "'"))
            } else if literal == "true" || literal == "false" {
                Value::Bool(literal == "true")
            } else if literal == "null" {
                Value::Null
            } else if let Ok(n) = literal.parse::<i64>() {
                json!(n)
            } else {
                return Err(query_error(format!("'{literal}' is not a literal.")));
            };
            all.push((property.to_string(), value));
        }
        any.push(all);
    }
    Ok(any)
}

fn matches(row: &Map<String, Value>, filter: &[Vec<(String, Value)>]) -> bool {
    filter.is_empty()
        || filter.iter().any(|all| {
            all.iter().all(|(p, v)| match (row.get(p), v) {
                (Some(Value::String(a)), Value::String(b)) => a.eq_ignore_ascii_case(b),
                (found, Value::Null) => found.is_none_or(Value::is_null),
                (Some(a), b) => a == b,
                (None, _) => false,
            })
        })
}

fn check_options(req: &ApiRequest) -> Result<(), ApiError> {
    for (k, _) in &req.query {
        if k.starts_with('$') && k != "$select" && k != "$filter" {
            return Err(query_error(format!(
                "The query option '{k}' is not supported on metadata by the sandbox."
            )));
        }
    }
    Ok(())
}

fn collection(ctx: &Ctx, what: &str, rows: Vec<Value>) -> ApiResponse {
    ApiResponse::json(
        StatusCode::OK,
        json!({ "@odata.context": format!("{}$metadata#{what}", ctx.root()), "value": rows }),
    )
}

// ----- EntityDefinitions ------------------------------------------------------------------

const ENTITY_PROPERTIES: [&str; 16] = [
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntitySetName",
    "LogicalCollectionName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "ObjectTypeCode",
    "IsCustomEntity",
    "OwnershipType",
    "ChangeTrackingEnabled",
    "CanChangeTrackingBeEnabled",
    "IsActivity",
    "DisplayName",
    "DisplayCollectionName",
    "Description",
];

fn entity_json(catalog: &Catalog, table: &Table) -> Map<String, Value> {
    let meta = catalog.entity(table);
    let mut m = Map::new();
    m.insert("MetadataId".into(), json!(meta.metadata_id.to_string()));
    m.insert("LogicalName".into(), json!(table.logical));
    m.insert("SchemaName".into(), json!(meta.schema_name));
    m.insert("EntitySetName".into(), json!(table.set));
    m.insert("LogicalCollectionName".into(), json!(table.set));
    m.insert("PrimaryIdAttribute".into(), json!(table.pk));
    m.insert("PrimaryNameAttribute".into(), json!(table.primary_name));
    m.insert("ObjectTypeCode".into(), json!(table.otc));
    m.insert("IsCustomEntity".into(), json!(meta.is_custom));
    m.insert("OwnershipType".into(), json!(meta.ownership));
    m.insert("ChangeTrackingEnabled".into(), json!(meta.change_tracking));
    m.insert(
        "CanChangeTrackingBeEnabled".into(),
        json!({ "Value": true, "CanBeChanged": false }),
    );
    m.insert("IsActivity".into(), json!(meta.is_activity));
    m.insert("DisplayName".into(), meta.display_name);
    m.insert("DisplayCollectionName".into(), meta.display_collection_name);
    m.insert("Description".into(), meta.description);
    m
}

fn entity_definitions(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    key: Option<&str>,
    segments: &[&str],
) -> Result<Done, ApiError> {
    let m = &req.method;
    match segments {
        [] if key.is_none() && *m == Method::GET => {
            check_options(req)?;
            let f = filter(req.param("$filter"), &ENTITY_PROPERTIES)?;
            let catalog = store.catalog();
            let mut rows = Vec::new();
            for t in catalog.tables() {
                let full = entity_json(catalog, t);
                if matches(&full, &f) {
                    rows.push(Value::Object(select(
                        full,
                        req.param("$select"),
                        &ENTITY_PROPERTIES,
                        "EntityMetadata",
                    )?));
                }
            }
            Ok(Done::Read(collection(ctx, "EntityDefinitions", rows)))
        }
        [] if key.is_none() && *m == Method::POST => create_table(sim, store, ctx, req),
        [] if *m == Method::GET => {
            check_options(req)?;
            let table = table_by_key(store.catalog(), key)?;
            let full = entity_json(store.catalog(), table);
            let mut body = select(
                full,
                req.param("$select"),
                &ENTITY_PROPERTIES,
                "EntityMetadata",
            )?;
            body.insert(
                "@odata.context".into(),
                json!(format!("{}$metadata#EntityDefinitions/$entity", ctx.root())),
            );
            Ok(Done::Read(ApiResponse::json(
                StatusCode::OK,
                Value::Object(body),
            )))
        }
        [attrs, rest @ ..] if attrs.starts_with("Attributes") => {
            let table = table_by_key(store.catalog(), key)?;
            let (_, attr_key) = split(attrs)?;
            attributes(sim, store, ctx, req, table, attr_key, rest)
        }
        [keys] if keys.starts_with("Keys") => {
            let table = table_by_key(store.catalog(), key)?;
            let (_, k) = split(keys)?;
            if k.is_some() {
                return Err(query_error(
                    "Addressing one key is not supported by the sandbox; list the table's Keys.",
                ));
            }
            match *m {
                Method::GET => {
                    check_options(req)?;
                    let rows: Vec<Value> = store
                        .catalog()
                        .keys(table.logical)
                        .map(key_json)
                        .map(|full| {
                            select(
                                full,
                                req.param("$select"),
                                &KEY_PROPERTIES,
                                "EntityKeyMetadata",
                            )
                            .map(Value::Object)
                        })
                        .collect::<Result<_, _>>()?;
                    Ok(Done::Read(collection(ctx, "EntityDefinitions/Keys", rows)))
                }
                Method::POST => create_key(store, ctx, req, table, &sim.config.languages),
                _ => Err(ApiError::method_not_allowed(m.as_str())),
            }
        }
        _ => Err(ApiError::segment_not_found(
            segments.first().copied().unwrap_or("EntityDefinitions"),
        )),
    }
}

fn create_table(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
) -> Result<Done, ApiError> {
    security::require(store, ctx.user, "prvCreateEntity", "entity")?;
    let target = security::solution_target(store, req)?;
    let body = object(req)?;
    let languages = &sim.config.languages;
    require_type(&body, "EntityMetadata")?;
    let schema_name = check_schema_name(body.get("SchemaName"), "the table", &target)?;
    let logical = schema_name.to_ascii_lowercase();
    if let Some(l) = body.get("LogicalName").and_then(|v| v.as_str())
        && l != logical
    {
        return Err(bad(format!(
            "LogicalName '{l}' must be the SchemaName in lower case."
        )));
    }
    if store.catalog().table(&logical).is_some() {
        return Err(ApiError::bad_request(
            DUPLICATE_NAME,
            format!("An object with the specified name {schema_name} already exists."),
        ));
    }
    let display_name = check_label(body.get("DisplayName"), "DisplayName", languages)?;
    let display_collection_name = check_label(
        body.get("DisplayCollectionName"),
        "DisplayCollectionName",
        languages,
    )?;
    let description = optional_label(body.get("Description"), "Description", languages)?;
    let ownership = match body.get("OwnershipType").and_then(|v| v.as_str()) {
        Some("UserOwned") => "UserOwned",
        Some("OrganizationOwned") => "OrganizationOwned",
        Some(other) => {
            return Err(bad(format!(
                "OwnershipType '{other}' is not UserOwned or OrganizationOwned."
            )));
        }
        None => {
            return Err(bad(
                "OwnershipType is required (UserOwned or OrganizationOwned).",
            ));
        }
    };
    for flag in ["IsActivity", "HasActivities", "HasNotes"] {
        if !body.get(flag).is_some_and(Value::is_boolean) {
            return Err(bad(format!("{flag} is required (true or false).")));
        }
    }
    if body.get("IsActivity").and_then(|v| v.as_bool()) == Some(true) {
        return Err(bad("Activity tables are not supported by the sandbox."));
    }
    let attrs = body
        .get("Attributes")
        .and_then(|v| v.as_array())
        .ok_or_else(|| {
            bad("Attributes with the primary name attribute (IsPrimaryName: true) is required.")
        })?;
    let [primary] = attrs.as_slice() else {
        return Err(bad(
            "Attributes must hold exactly the primary name attribute; the sandbox adds other columns through …/Attributes.",
        ));
    };
    let primary = primary
        .as_object()
        .ok_or_else(|| bad("The primary name attribute must be an object."))?;
    let primary = parse_attribute(primary, &target, languages, true)?;
    if let Some(p) = body.get("PrimaryNameAttribute").and_then(|v| v.as_str())
        && p != primary.logical
    {
        return Err(bad(format!(
            "PrimaryNameAttribute '{p}' is not the primary name attribute '{}'.",
            primary.logical
        )));
    }
    let Kind::Str(max) = primary.kind else {
        return Err(bad(
            "The primary name attribute must be a single line of text.",
        ));
    };
    let user_owned = ownership == "UserOwned";
    let metadata_id = Uuid::new_v4();
    let new = NewTable {
        logical: catalog::name(&logical),
        meta: EntityMeta {
            metadata_id,
            schema_name: schema_name.clone(),
            display_name,
            display_collection_name,
            description,
            ownership,
            is_custom: true,
            change_tracking: body.get("ChangeTrackingEnabled").and_then(|v| v.as_bool())
                == Some(true),
            is_activity: false,
            privilege_entity: schema_name.clone(),
        },
        primary_name: primary.logical,
        primary_name_meta: primary.meta,
        primary_name_max: max,
        user_owned,
    };
    let table = store.catalog_mut().add_table(new);
    for (name, any_depth) in Catalog::table_privileges(&schema_name, user_owned) {
        security::add_privilege(store, &name, any_depth);
    }
    for message in ["Create", "Update", "Delete"] {
        add_message_filter(store, message, table);
    }
    security::add_component(store, target.solution, 1, metadata_id);
    Ok(created(ctx, &format!("EntityDefinitions({metadata_id})")))
}

/// The `sdkmessagefilters` row of a message on a new table, so steps can be registered on it.
fn add_message_filter(store: &mut Store, message: &str, table: &Table) {
    let (Some(id), Some(message_id)) = (
        super::schema::filter_id(message, table.otc),
        super::schema::sdk_message_id(message),
    ) else {
        return;
    };
    let mut row = Row::new();
    row.insert("sdkmessagefilterid", Val::Guid(id));
    row.insert("name", Val::Str(format!("{message} {}", table.logical)));
    row.insert("sdkmessageid", Val::Ref("sdkmessage", message_id));
    row.insert("primaryobjecttypecode", Val::Str(table.logical.to_string()));
    row.insert("secondaryobjecttypecode", Val::Str("none".to_string()));
    row.insert("iscustomprocessingstepallowed", Val::Bool(true));
    row.insert("isvisible", Val::Bool(true));
    row.insert("availability", Val::Int(0));
    row.insert("versionnumber", Val::Int(store.next_version()));
    store.put("sdkmessagefilter", id, row);
}

// ----- Attributes -------------------------------------------------------------------------

const ATTRIBUTE_PROPERTIES: [&str; 14] = [
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntityLogicalName",
    "AttributeType",
    "AttributeTypeName",
    "IsCustomAttribute",
    "IsSecured",
    "IsPrimaryId",
    "IsPrimaryName",
    "RequiredLevel",
    "DisplayName",
    "Description",
    "IsValidForCreate",
];

/// The properties a cast adds.
fn typed_properties(kind: &str) -> &'static [&'static str] {
    match kind {
        "StringAttributeMetadata" => &["MaxLength", "FormatName", "Format"],
        "MemoAttributeMetadata" => &["MaxLength", "Format", "FormatName"],
        "BooleanAttributeMetadata" => &["DefaultValue"],
        "DateTimeAttributeMetadata" => &["Format", "DateTimeBehavior"],
        "IntegerAttributeMetadata" => &["MinValue", "MaxValue", "Format"],
        "PicklistAttributeMetadata" => &["DefaultFormValue"],
        "LookupAttributeMetadata" => &["Targets"],
        _ => &[],
    }
}

fn attribute_json(table: &Table, column: &Column, meta: &AttributeMeta) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("@odata.type".into(), json!(format!("#{NS}{}", meta.kind)));
    m.insert("MetadataId".into(), json!(meta.metadata_id.to_string()));
    m.insert("LogicalName".into(), json!(column.name));
    m.insert("SchemaName".into(), json!(meta.schema_name));
    m.insert("EntityLogicalName".into(), json!(table.logical));
    m.insert("AttributeType".into(), json!(meta.attribute_type));
    m.insert(
        "AttributeTypeName".into(),
        json!({ "Value": meta.type_name }),
    );
    m.insert("IsCustomAttribute".into(), json!(meta.is_custom));
    m.insert("IsSecured".into(), json!(meta.is_secured));
    m.insert("IsPrimaryId".into(), json!(meta.is_primary_id));
    m.insert("IsPrimaryName".into(), json!(meta.is_primary_name));
    m.insert("RequiredLevel".into(), meta.required_level.clone());
    m.insert("DisplayName".into(), meta.display_name.clone());
    m.insert("Description".into(), meta.description.clone());
    m.insert(
        "IsValidForCreate".into(),
        json!(column.access == Access::ReadWrite || column.access == Access::CreateOnly),
    );
    for (k, v) in &meta.typed {
        // Option sets are navigation properties: not returned without $expand.
        if k != "OptionSet" {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

fn attributes(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    key: Option<&str>,
    rest: &[&str],
) -> Result<Done, ApiError> {
    let cast = match rest {
        [] => None,
        [c] => Some(
            c.strip_prefix(NS)
                .ok_or_else(|| ApiError::segment_not_found(c))?,
        ),
        _ => {
            return Err(ApiError::segment_not_found(
                rest.last().copied().unwrap_or_default(),
            ));
        }
    };
    let allowed: Vec<&str> = ATTRIBUTE_PROPERTIES
        .iter()
        .copied()
        .chain(
            cast.map(typed_properties)
                .unwrap_or_default()
                .iter()
                .copied(),
        )
        .collect();
    let type_name = cast.unwrap_or("AttributeMetadata");
    match (&req.method, key) {
        (&Method::GET, None) => {
            let expand = option_set_expand(req, cast)?;
            let f = filter(req.param("$filter"), &ATTRIBUTE_PROPERTIES)?;
            let catalog = store.catalog();
            let mut rows = Vec::new();
            for c in table.all_columns() {
                let meta = catalog.attribute(table, c);
                if cast.is_some_and(|k| k != meta.kind) {
                    continue;
                }
                let full = attribute_json(table, c, &meta);
                if matches(&full, &f) {
                    let mut row = select(full, req.param("$select"), &allowed, type_name)?;
                    if let Some(e) = &expand {
                        expand_option_sets(&mut row, table, c, &meta, e);
                    }
                    rows.push(Value::Object(row));
                }
            }
            Ok(Done::Read(collection(
                ctx,
                "EntityDefinitions/Attributes",
                rows,
            )))
        }
        (&Method::GET, Some(k)) => {
            let expand = option_set_expand(req, cast)?;
            let column = column_by_key(store.catalog(), table, k)?;
            let meta = store.catalog().attribute(table, column);
            if cast.is_some_and(|c| c != meta.kind) {
                return Err(not_found(format!(
                    "The attribute {} is a {}, not a {}.",
                    column.name,
                    meta.kind,
                    cast.unwrap_or_default()
                )));
            }
            let full = attribute_json(table, column, &meta);
            let mut body = select(full, req.param("$select"), &allowed, type_name)?;
            if let Some(e) = &expand {
                expand_option_sets(&mut body, table, column, &meta, e);
            }
            body.insert(
                "@odata.context".into(),
                json!(format!(
                    "{}$metadata#EntityDefinitions/Attributes/$entity",
                    ctx.root()
                )),
            );
            Ok(Done::Read(ApiResponse::json(
                StatusCode::OK,
                Value::Object(body),
            )))
        }
        (&Method::POST, None) if cast.is_none() => create_column(sim, store, ctx, req, table),
        (&Method::PUT, Some(k)) if cast.is_none() => update_column(sim, store, req, table, k),
        (m, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// The properties of `OptionSetMetadata` a `$select` inside the expansion may name.
const OPTION_SET_PROPERTIES: [&str; 5] =
    ["MetadataId", "Name", "OptionSetType", "IsGlobal", "Options"];

/// What `$expand` asks of a choice column: its `OptionSet` (with the properties to keep; empty:
/// all) and/or its `GlobalOptionSet`.
struct OptionSetExpand {
    local: Option<Vec<String>>,
    global: bool,
}

/// `$expand=OptionSet[($select=…)][,GlobalOptionSet]` on choice columns, as clients read option
/// labels
/// (<https://learn.microsoft.com/power-apps/developer/data-platform/webapi/query-metadata-web-api#retrieving-attributes>);
/// `None` without `$expand`.
fn option_set_expand(
    req: &ApiRequest,
    cast: Option<&str>,
) -> Result<Option<OptionSetExpand>, ApiError> {
    for (k, _) in &req.query {
        if k.starts_with('$') && !["$select", "$filter", "$expand"].contains(&k.as_str()) {
            return Err(query_error(format!(
                "The query option '{k}' is not supported on metadata by the sandbox."
            )));
        }
    }
    let Some(expand) = req.param("$expand") else {
        return Ok(None);
    };
    let mut wanted = OptionSetExpand {
        local: None,
        global: false,
    };
    for item in split_outside_parens(expand) {
        let item = item.trim();
        let (name, options) = match item.split_once('(') {
            Some((n, rest)) => (
                n.trim(),
                Some(rest.strip_suffix(')').ok_or_else(|| {
                    query_error(format!("The $expand '{expand}' is not well formed."))
                })?),
            ),
            None => (item, None),
        };
        match (name, options) {
            ("OptionSet", _) => wanted.local = Some(option_set_select(options)?),
            ("GlobalOptionSet", None) => wanted.global = true,
            _ => {
                return Err(query_error(format!(
                    "Could not find a navigation property named '{name}' on type '{NS}{}' (the sandbox expands OptionSet and GlobalOptionSet).",
                    cast.unwrap_or("AttributeMetadata")
                )));
            }
        }
    }
    match cast {
        Some("PicklistAttributeMetadata") => Ok(Some(wanted)),
        None => Err(query_error(format!(
            "Could not find a property named 'OptionSet' on type '{NS}AttributeMetadata'."
        ))),
        Some(other) => Err(ApiError::not_implemented(format!(
            "Expanding the OptionSet of {other} is not simulated by the sandbox (only PicklistAttributeMetadata)."
        ))),
    }
}

/// The `$select` inside `OptionSet(…)`: the properties to keep (empty: all).
fn option_set_select(options: Option<&str>) -> Result<Vec<String>, ApiError> {
    let mut keep = Vec::new();
    let Some(options) = options else {
        return Ok(keep);
    };
    for opt in options.split(';').map(str::trim).filter(|o| !o.is_empty()) {
        let Some(list) = opt.strip_prefix("$select=") else {
            return Err(query_error(format!(
                "The $expand option '{opt}' is not supported on metadata by the sandbox (only $select)."
            )));
        };
        for p in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if !OPTION_SET_PROPERTIES.contains(&p) {
                return Err(query_error(format!(
                    "Could not find a property named '{p}' on type '{NS}OptionSetMetadata'."
                )));
            }
            keep.push(p.to_string());
        }
    }
    Ok(keep)
}

fn split_outside_parens(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Adds the expanded option sets to a column: its local `OptionSet` and `GlobalOptionSet`
/// (null: the sandbox has no global choices), as asked for.
fn expand_option_sets(
    row: &mut Map<String, Value>,
    table: &Table,
    column: &Column,
    meta: &AttributeMeta,
    e: &OptionSetExpand,
) {
    if let Some(keep) = &e.local {
        row.insert(
            "OptionSet".into(),
            option_set_json(table, column, meta, keep),
        );
    }
    if e.global {
        row.insert("GlobalOptionSet".into(), Value::Null);
    }
}

/// A label as the metadata API returns it: its localized labels and the user's (the first).
fn full_label(label: &Value) -> Value {
    let localized = label
        .get("LocalizedLabels")
        .cloned()
        .unwrap_or_else(|| json!([]));
    let user = localized.get(0).cloned().unwrap_or(Value::Null);
    json!({ "LocalizedLabels": localized, "UserLocalizedLabel": user })
}

/// The local option set of a choice column (`OptionSetMetadata`).
fn option_set_json(table: &Table, column: &Column, meta: &AttributeMeta, keep: &[String]) -> Value {
    let options: Vec<Value> = match (meta.typed.get("OptionSet"), column.kind) {
        (Some(installed), _) => installed
            .get("Options")
            .and_then(Value::as_array)
            .map(|opts| {
                opts.iter()
                    .map(|o| {
                        json!({
                            "Value": o.get("Value").cloned().unwrap_or(Value::Null),
                            "Label": full_label(o.get("Label").unwrap_or(&Value::Null)),
                            "Description": full_label(o.get("Description").unwrap_or(&Value::Null)),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
        (None, Kind::Choice(opts)) => opts
            .iter()
            .map(|Opt(value, label)| {
                json!({
                    "Value": value,
                    "Label": catalog::english(label),
                    "Description": { "LocalizedLabels": [], "UserLocalizedLabel": null },
                })
            })
            .collect(),
        (None, _) => Vec::new(),
    };
    let mut set = Map::new();
    set.insert(
        "MetadataId".into(),
        json!(
            catalog::stable_id(&format!("optionset:{}.{}", table.logical, column.name)).to_string()
        ),
    );
    set.insert(
        "Name".into(),
        json!(format!("{}_{}", table.logical, column.name)),
    );
    set.insert("OptionSetType".into(), json!("Picklist"));
    set.insert("IsGlobal".into(), json!(false));
    set.insert("Options".into(), Value::Array(options));
    if !keep.is_empty() {
        set.retain(|k, _| k == "MetadataId" || keep.iter().any(|p| p == k));
    }
    Value::Object(set)
}

fn column_by_key(
    catalog: &Catalog,
    table: &'static Table,
    key: &str,
) -> Result<&'static Column, ApiError> {
    match parse_key(key, "LogicalName")? {
        Key::Name(n) => table.column(&n).ok_or_else(|| {
            not_found(format!(
                "Could not find an attribute with LogicalName '{n}' on entity '{}'.",
                table.logical
            ))
        }),
        Key::Id(id) => table
            .all_columns()
            .find(|c| catalog.attribute(table, c).metadata_id == id)
            .ok_or_else(|| not_found(format!("Could not find an attribute with MetadataId {id}."))),
    }
}

fn create_column(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
) -> Result<Done, ApiError> {
    security::require(store, ctx.user, "prvCreateAttribute", "attribute")?;
    let target = security::solution_target(store, req)?;
    let body = object(req)?;
    let new = parse_attribute(&body, &target, &sim.config.languages, false)?;
    if table.column(new.logical).is_some() {
        return Err(ApiError::bad_request(
            DUPLICATE_ATTRIBUTE,
            format!(
                "Attribute {} already exists for entity {}.",
                new.meta.schema_name, table.logical
            ),
        ));
    }
    let entity_id = store.catalog().entity(table).metadata_id;
    let attribute_id = new.meta.metadata_id;
    store
        .catalog_mut()
        .add_column(
            table.logical,
            Column {
                name: new.logical,
                kind: new.kind,
                access: Access::ReadWrite,
            },
            new.meta,
        )
        .ok_or_else(|| not_found(format!("Could not find entity '{}'.", table.logical)))?;
    security::add_component(store, target.solution, 2, attribute_id);
    Ok(created(
        ctx,
        &format!("EntityDefinitions({entity_id})/Attributes({attribute_id})"),
    ))
}

/// `PUT` of a whole column definition: labels, requirement level and column security change;
/// the type and its properties do not.
fn update_column(
    sim: &Shared,
    store: &mut Store,
    req: &ApiRequest,
    table: &'static Table,
    key: &str,
) -> Result<Done, ApiError> {
    let column = column_by_key(store.catalog(), table, key)?;
    let mut meta = store.catalog().attribute(table, column);
    let body = object(req)?;
    let kind = odata_type(&body)
        .ok_or_else(|| bad(format!("@odata.type {NS}{} is required.", meta.kind)))?;
    if kind != meta.kind {
        return Err(bad(format!(
            "The @odata.type '{kind}' does not match the attribute's type {NS}{}.",
            meta.kind
        )));
    }
    if body.get("SchemaName").and_then(|v| v.as_str()) != Some(meta.schema_name.as_str()) {
        return Err(bad(format!(
            "SchemaName is required and must stay '{}': names cannot change.",
            meta.schema_name
        )));
    }
    if let Some(l) = body.get("LogicalName").and_then(|v| v.as_str())
        && l != column.name
    {
        return Err(bad("LogicalName cannot change."));
    }
    for (k, v) in &meta.typed {
        if k == "OptionSet" {
            continue;
        }
        if let Some(sent) = body.get(k)
            && sent != v
        {
            return Err(bad(format!(
                "Changing {k} of an existing column is not supported by the sandbox."
            )));
        }
    }
    let languages = &sim.config.languages;
    let merge = req
        .header("MSCRM.MergeLabels")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if let Some(label) = body.get("DisplayName") {
        let new = check_label(Some(label), "DisplayName", languages)?;
        meta.display_name = merged(&meta.display_name, &new, merge);
    }
    if let Some(label) = body.get("Description").filter(|v| !v.is_null()) {
        let new = optional_label(Some(label), "Description", languages)?;
        meta.description = merged(&meta.description, &new, merge);
    }
    if body.contains_key("RequiredLevel") {
        meta.required_level = required_level(body.get("RequiredLevel"))?;
    }
    if let Some(secured) = body.get("IsSecured") {
        let secured = secured
            .as_bool()
            .ok_or_else(|| bad("IsSecured must be true or false."))?;
        if secured
            && store
                .catalog()
                .keys(table.logical)
                .any(|k| k.attributes.contains(&column.name))
        {
            return Err(bad(format!(
                "{} is part of an alternate key; key columns cannot be secured.",
                column.name
            )));
        }
        meta.is_secured = secured;
    }
    store
        .catalog_mut()
        .set_attribute(table.logical, column.name, meta);
    Ok(applied(ApiResponse::empty(StatusCode::NO_CONTENT)))
}

/// Labels of `new`, keeping `old` labels in other languages when merging.
fn merged(old: &Value, new: &Value, merge: bool) -> Value {
    if !merge {
        return new.clone();
    }
    let mut labels: Vec<Value> = old["LocalizedLabels"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for l in new["LocalizedLabels"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        labels.retain(|o| o["LanguageCode"] != l["LanguageCode"]);
        labels.push(l);
    }
    json!({ "LocalizedLabels": labels })
}

// ----- Keys -------------------------------------------------------------------------------

const KEY_PROPERTIES: [&str; 7] = [
    "MetadataId",
    "SchemaName",
    "LogicalName",
    "KeyAttributes",
    "EntityKeyIndexStatus",
    "EntityLogicalName",
    "DisplayName",
];

fn key_json(k: &KeyMeta) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "@odata.type".into(),
        json!(format!("#{NS}EntityKeyMetadata")),
    );
    m.insert("MetadataId".into(), json!(k.metadata_id.to_string()));
    m.insert("SchemaName".into(), json!(k.schema_name));
    m.insert("LogicalName".into(), json!(k.logical_name));
    m.insert("KeyAttributes".into(), json!(k.attributes));
    m.insert("EntityKeyIndexStatus".into(), json!(k.status));
    m.insert("EntityLogicalName".into(), json!(k.table));
    m.insert("DisplayName".into(), k.display_name.clone());
    m
}

/// Bytes a column takes in the key's index (SQL Server's 900-byte limit).
fn key_bytes(meta: &AttributeMeta, column: &Column) -> Option<usize> {
    match (meta.type_name, column.kind) {
        ("StringType", Kind::Str(n)) => Some(n * 2),
        ("IntegerType" | "PicklistType", _) => Some(4),
        ("DateTimeType", _) => Some(8),
        ("DecimalType", _) => Some(17),
        ("LookupType", _) => Some(16),
        _ => None,
    }
}

fn create_key(
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    languages: &[i64],
) -> Result<Done, ApiError> {
    security::require(store, ctx.user, "prvCreateEntityKey", "entitykey")?;
    let target = security::solution_target(store, req)?;
    let body = object(req)?;
    if odata_type(&body).is_some() {
        require_type(&body, "EntityKeyMetadata")?;
    }
    let schema_name = check_schema_name(body.get("SchemaName"), "the key", &target)?;
    let names: Vec<String> = body
        .get("KeyAttributes")
        .and_then(|v| v.as_array())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| bad("KeyAttributes (the key's columns) is required."))?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| bad("KeyAttributes holds column names."))
        })
        .collect::<Result<_, _>>()?;
    if names.len() > 16 {
        return Err(bad("A key has at most 16 columns."));
    }
    let display_name = match body.get("DisplayName") {
        Some(l) => check_label(Some(l), "DisplayName", languages)?,
        None => json!({ "LocalizedLabels": [] }),
    };
    let catalog = store.catalog();
    if catalog.keys(table.logical).count() >= 10 {
        return Err(bad("A table has at most 10 alternate keys."));
    }
    if catalog
        .all_keys()
        .iter()
        .any(|k| k.schema_name.eq_ignore_ascii_case(&schema_name))
    {
        return Err(ApiError::bad_request(
            DUPLICATE_NAME,
            format!("An object with the specified name {schema_name} already exists."),
        ));
    }
    let mut columns = Vec::new();
    let mut bytes = 0;
    for n in &names {
        let column = table.column(n).ok_or_else(|| {
            bad(format!(
                "The key column '{n}' is not a column of {}.",
                table.logical
            ))
        })?;
        let meta = catalog.attribute(table, column);
        if meta.is_secured {
            return Err(bad(format!(
                "The key column '{n}' is secured; secured columns cannot be in a key."
            )));
        }
        bytes += key_bytes(&meta, column).ok_or_else(|| {
            bad(format!(
                "The key column '{n}' is a {}; keys take Decimal, Whole Number, Single line of text, Date Time, Lookup and Choice columns.",
                meta.type_name
            ))
        })?;
        columns.push(column.name);
    }
    if bytes > 900 {
        return Err(bad(format!(
            "The key's columns take {bytes} bytes; an index holds at most 900."
        )));
    }
    if catalog.keys(table.logical).any(|k| k.attributes == columns) {
        return Err(ApiError::bad_request(
            DUPLICATE_NAME,
            "A key on these columns already exists.",
        ));
    }
    let key = KeyMeta {
        metadata_id: Uuid::new_v4(),
        table: table.logical,
        schema_name: schema_name.clone(),
        logical_name: schema_name.to_ascii_lowercase(),
        attributes: columns,
        display_name,
        status: if duplicates(store, table, None, None).is_some() {
            "Failed"
        } else {
            "Active"
        },
    };
    let key_id = key.metadata_id;
    let entity_id = store.catalog().entity(table).metadata_id;
    store.catalog_mut().add_key(key);
    security::add_component(store, target.solution, 14, key_id);
    Ok(created(
        ctx,
        &format!("EntityDefinitions({entity_id})/Keys({key_id})"),
    ))
}

/// The first active key another row of `table` already holds the values of: `row` (with id
/// `id`) when given, else any two existing rows.
fn duplicates(store: &Store, table: &Table, id: Option<Uuid>, row: Option<&Row>) -> Option<String> {
    for key in store.catalog().keys(table.logical) {
        if id.is_some() && key.status != "Active" {
            continue;
        }
        let values = |r: &Row| -> Option<Vec<Val>> {
            key.attributes.iter().map(|a| r.get(a).cloned()).collect()
        };
        let mut seen: Vec<(Uuid, Vec<Val>)> = Vec::new();
        for (other_id, other) in store.table_rows(table.logical) {
            let Some(v) = values(other) else { continue };
            match (id, row) {
                (Some(id), Some(row)) => {
                    if *other_id != id && values(row).as_ref() == Some(&v) {
                        return Some(key.schema_name.clone());
                    }
                }
                _ => {
                    if seen.iter().any(|(_, s)| *s == v) {
                        return Some(key.schema_name.clone());
                    }
                    seen.push((*other_id, v));
                }
            }
        }
    }
    None
}

/// Refuses a row whose alternate-key values another row has (`DuplicateRecordEntityKey`).
pub fn check_keys(store: &Store, table: &Table, id: Uuid, row: &Row) -> Result<(), ApiError> {
    match duplicates(store, table, Some(id), Some(row)) {
        None => Ok(()),
        Some(key) => Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            DUPLICATE_KEY,
            format!(
                "A record that has the attribute values of the key {key} already exists. The entity key {key} requires that this set of attributes contains unique values."
            ),
        )),
    }
}

// ----- RelationshipDefinitions ------------------------------------------------------------

const RELATIONSHIP_BASE: [&str; 4] = [
    "MetadataId",
    "SchemaName",
    "RelationshipType",
    "IsCustomRelationship",
];
const RELATIONSHIP_ONE_TO_MANY: [&str; 10] = [
    "MetadataId",
    "SchemaName",
    "RelationshipType",
    "IsCustomRelationship",
    "ReferencedEntity",
    "ReferencedAttribute",
    "ReferencingEntity",
    "ReferencingAttribute",
    "ReferencingEntityNavigationPropertyName",
    "ReferencedEntityNavigationPropertyName",
];

fn relationship_json(r: &RelationshipMeta) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "@odata.type".into(),
        json!(format!("#{NS}OneToManyRelationshipMetadata")),
    );
    m.insert("MetadataId".into(), json!(r.metadata_id.to_string()));
    m.insert("SchemaName".into(), json!(r.schema_name));
    m.insert("RelationshipType".into(), json!("OneToManyRelationship"));
    m.insert("IsCustomRelationship".into(), json!(true));
    m.insert("ReferencedEntity".into(), json!(r.referenced_entity));
    m.insert("ReferencedAttribute".into(), json!(r.referenced_attribute));
    m.insert("ReferencingEntity".into(), json!(r.referencing_entity));
    m.insert(
        "ReferencingAttribute".into(),
        json!(r.referencing_attribute),
    );
    m.insert(
        "ReferencingEntityNavigationPropertyName".into(),
        json!(r.referencing_navigation),
    );
    m.insert(
        "ReferencedEntityNavigationPropertyName".into(),
        json!(r.referenced_navigation),
    );
    m.insert("CascadeConfiguration".into(), r.cascade.clone());
    m
}

fn relationships(
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    key: Option<&str>,
    segments: &[&str],
    languages: &[i64],
) -> Result<Done, ApiError> {
    let cast = match segments {
        [] => None,
        [c] => Some(
            c.strip_prefix(NS)
                .ok_or_else(|| ApiError::segment_not_found(c))?,
        ),
        _ => {
            return Err(ApiError::segment_not_found(
                segments.last().copied().unwrap_or_default(),
            ));
        }
    };
    if let Some(c) = cast
        && c != "OneToManyRelationshipMetadata"
    {
        return Err(query_error(format!(
            "The cast to '{c}' is not supported by the sandbox."
        )));
    }
    let allowed: &[&str] = if cast.is_some() {
        &RELATIONSHIP_ONE_TO_MANY
    } else {
        &RELATIONSHIP_BASE
    };
    let type_name = cast.unwrap_or("RelationshipMetadataBase");
    match (&req.method, key) {
        (&Method::GET, None) => {
            check_options(req)?;
            let f = filter(req.param("$filter"), allowed)?;
            let mut rows = Vec::new();
            for r in store.catalog().relationships() {
                let full = relationship_json(r);
                if matches(&full, &f) {
                    rows.push(Value::Object(select(
                        full,
                        req.param("$select"),
                        allowed,
                        type_name,
                    )?));
                }
            }
            Ok(Done::Read(collection(ctx, "RelationshipDefinitions", rows)))
        }
        (&Method::GET, Some(k)) => {
            check_options(req)?;
            let found = match parse_key(k, "SchemaName")? {
                Key::Name(n) => store
                    .catalog()
                    .relationships()
                    .iter()
                    .find(|r| r.schema_name.eq_ignore_ascii_case(&n)),
                Key::Id(id) => store
                    .catalog()
                    .relationships()
                    .iter()
                    .find(|r| r.metadata_id == id),
            }
            .ok_or_else(|| not_found(format!("Could not find the relationship '{k}'.")))?;
            let body = select(
                relationship_json(found),
                req.param("$select"),
                allowed,
                type_name,
            )?;
            Ok(Done::Read(ApiResponse::json(
                StatusCode::OK,
                Value::Object(body),
            )))
        }
        (&Method::POST, None) if cast.is_none() => create_relationship(store, ctx, req, languages),
        (m, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

/// Tables a lookup may point to or live on.
fn relatable(table: &Table, catalog: &Catalog) -> bool {
    catalog.entity(table).is_custom
        || matches!(
            table.logical,
            "account"
                | "contact"
                | "lead"
                | "list"
                | "campaign"
                | "campaignactivity"
                | "systemuser"
        )
}

fn create_relationship(
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    languages: &[i64],
) -> Result<Done, ApiError> {
    security::require(store, ctx.user, "prvCreateRelationship", "relationship")?;
    let target = security::solution_target(store, req)?;
    let body = object(req)?;
    match odata_type(&body) {
        Some("OneToManyRelationshipMetadata") => {}
        Some("ManyToManyRelationshipMetadata") => {
            return Err(bad(
                "Many-to-many relationships are not supported by the sandbox.",
            ));
        }
        Some(other) => return Err(bad(format!("'{other}' is not a relationship type."))),
        None => {
            return Err(bad(
                "@odata.type Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata is required.",
            ));
        }
    }
    let schema_name = check_schema_name(body.get("SchemaName"), "the relationship", &target)?;
    if store
        .catalog()
        .relationships()
        .iter()
        .any(|r| r.schema_name.eq_ignore_ascii_case(&schema_name))
    {
        return Err(ApiError::bad_request(
            DUPLICATE_NAME,
            format!("An object with the specified name {schema_name} already exists."),
        ));
    }
    let table_named = |field: &str| -> Result<&'static Table, ApiError> {
        let name = body
            .get(field)
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(format!("{field} is required.")))?;
        let t = store.catalog().table(name).ok_or_else(|| {
            bad(format!(
                "{field} '{name}' is not a table of this organization."
            ))
        })?;
        if !relatable(t, store.catalog()) {
            return Err(bad(format!(
                "The table '{name}' cannot take part in a custom relationship (CanBeReferenced/CanBeReferencing is false)."
            )));
        }
        Ok(t)
    };
    let referenced = table_named("ReferencedEntity")?;
    let referencing = table_named("ReferencingEntity")?;
    match body.get("ReferencedAttribute").and_then(|v| v.as_str()) {
        Some(a) if a == referenced.pk => {}
        Some(a) => {
            return Err(bad(format!(
                "ReferencedAttribute '{a}' must be the primary key of {} ('{}').",
                referenced.logical, referenced.pk
            )));
        }
        None => return Err(bad("ReferencedAttribute is required.")),
    }
    if let Some(cascade) = body.get("CascadeConfiguration") {
        let obj = cascade
            .as_object()
            .ok_or_else(|| bad("CascadeConfiguration must be an object."))?;
        for (k, v) in obj {
            let ok = v.as_str().is_some_and(|s| {
                matches!(
                    s,
                    "Cascade" | "NoCascade" | "RemoveLink" | "Restrict" | "Active" | "UserOwned"
                )
            });
            if !ok {
                return Err(bad(format!(
                    "CascadeConfiguration.{k}: {v} is not a cascade type."
                )));
            }
        }
    }
    let lookup = body
        .get("Lookup")
        .and_then(|v| v.as_object())
        .ok_or_else(|| bad("Lookup (a LookupAttributeMetadata) is required."))?;
    require_type(lookup, "LookupAttributeMetadata")?;
    let lookup_schema = check_schema_name(lookup.get("SchemaName"), "the lookup", &target)?;
    let lookup_logical = catalog::name(&lookup_schema.to_ascii_lowercase());
    let display_name = check_label(lookup.get("DisplayName"), "Lookup.DisplayName", languages)?;
    let description = optional_label(lookup.get("Description"), "Lookup.Description", languages)?;
    let required = required_level(lookup.get("RequiredLevel"))?;
    if referencing.column(lookup_logical).is_some() {
        return Err(ApiError::bad_request(
            DUPLICATE_ATTRIBUTE,
            format!(
                "Attribute {lookup_schema} already exists for entity {}.",
                referencing.logical
            ),
        ));
    }
    // Dataverse names the navigation property after the lookup's SchemaName, case included.
    let navigation = catalog::name(
        body.get("ReferencingEntityNavigationPropertyName")
            .and_then(|v| v.as_str())
            .unwrap_or(&lookup_schema),
    );
    let mut typed = BTreeMap::new();
    typed.insert("Targets".to_string(), json!([referenced.logical]));
    let attribute_id = Uuid::new_v4();
    let meta = AttributeMeta {
        metadata_id: attribute_id,
        schema_name: lookup_schema.clone(),
        kind: "LookupAttributeMetadata",
        type_name: "LookupType",
        attribute_type: "Lookup",
        is_custom: true,
        is_secured: false,
        is_primary_id: false,
        is_primary_name: false,
        required_level: required,
        display_name,
        description,
        typed,
    };
    let column = Catalog::lookup_column(lookup_logical, navigation, referenced.logical);
    store
        .catalog_mut()
        .add_column(referencing.logical, column, meta)
        .ok_or_else(|| not_found(format!("Could not find entity '{}'.", referencing.logical)))?;
    let relationship_id = Uuid::new_v4();
    store.catalog_mut().add_relationship(RelationshipMeta {
        metadata_id: relationship_id,
        schema_name: schema_name.clone(),
        referenced_entity: referenced.logical,
        referenced_attribute: referenced.pk,
        referencing_entity: referencing.logical,
        referencing_attribute: lookup_logical,
        referencing_navigation: navigation,
        referenced_navigation: body
            .get("ReferencedEntityNavigationPropertyName")
            .and_then(|v| v.as_str())
            .unwrap_or(&schema_name)
            .to_string(),
        cascade: body
            .get("CascadeConfiguration")
            .cloned()
            .unwrap_or(Value::Null),
    });
    security::add_component(store, target.solution, 10, relationship_id);
    security::add_component(store, target.solution, 2, attribute_id);
    Ok(created(
        ctx,
        &format!("RelationshipDefinitions({relationship_id})"),
    ))
}

// ----- PublishXml -------------------------------------------------------------------------

fn publish(store: &mut Store, ctx: &Ctx, req: &ApiRequest) -> Result<Done, ApiError> {
    security::require(store, ctx.user, "prvPublishCustomizations", "publish")?;
    let body = object(req)?;
    let text = body
        .get("ParameterXml")
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad("The parameter 'ParameterXml' (string) is required."))?;
    let root = xml::parse(text).map_err(|e| bad(format!("ParameterXml is not valid XML: {e}.")))?;
    if root.name != "importexportxml" {
        return Err(bad(format!(
            "ParameterXml must have the root <importexportxml>, not <{}>.",
            root.name
        )));
    }
    const ORDER: [&str; 6] = [
        "entities",
        "ribbons",
        "dashboards",
        "optionsets",
        "sitemaps",
        "webresources",
    ];
    let mut last = 0;
    let mut tables = Vec::new();
    let mut web_resources = Vec::new();
    for child in &root.children {
        let position = ORDER.iter().position(|n| *n == child.name).ok_or_else(|| {
            bad(format!(
                "<{}> is not allowed in <importexportxml>.",
                child.name
            ))
        })?;
        if position < last {
            return Err(bad(format!(
                "<{}> is out of order in <importexportxml>.",
                child.name
            )));
        }
        last = position;
        if child.name == "entities" {
            for e in &child.children {
                if e.name != "entity" {
                    return Err(bad(format!("<{}> is not allowed in <entities>.", e.name)));
                }
                let name = e.text.trim();
                if store.catalog().table(name).is_none() {
                    return Err(bad(format!(
                        "The entity '{name}' in ParameterXml does not exist."
                    )));
                }
                tables.push(name.to_string());
            }
        }
        if child.name == "webresources" {
            for w in &child.children {
                if w.name != "webresource" {
                    return Err(bad(format!(
                        "<{}> is not allowed in <webresources>.",
                        w.name
                    )));
                }
                let id = store::parse_guid(&w.text).ok_or_else(|| {
                    bad(format!(
                        "'{}' in <webresources> is not a web resource id.",
                        w.text
                    ))
                })?;
                if !store.contains("webresource", &id) {
                    return Err(bad(format!(
                        "The web resource {id} in ParameterXml does not exist."
                    )));
                }
                web_resources.push(id);
            }
        }
    }
    // Checked first, applied after: a bad ParameterXml publishes nothing.
    for table in &tables {
        super::forms::publish_forms(store, table);
    }
    for id in &web_resources {
        super::forms::publish_webresource(store, *id).map_err(bad)?;
    }
    store
        .catalog_mut()
        .published_web_resources
        .extend(web_resources);
    store.catalog_mut().publishes.push(tables);
    Ok(applied(ApiResponse::empty(StatusCode::NO_CONTENT)))
}
