//! Adapter: Dataverse webhook bodies (`RemoteExecutionContext` JSON) into a normalised [`ChangeEvent`].
//!
//! The body is walked as a `serde_json::Value`, not mapped onto strict structs: Dataverse adds
//! fields over time, images omit type hints, and a body over 256 KB arrives without parameters
//! and images. Required fields are checked and named in errors; everything unknown is tolerated.
//! See `ref/dataverse.md` §2 for the shapes handled here.

mod value;

use serde_json::{Map, Value};

use crate::domain::change::{Attributes, ChangeEvent, CrmMessage, RecordRef};
use crate::error::Retryable;
use value::{EMPTY_GUID, RowShape};

/// How many `ParentContext` levels are walked before the body is refused as malformed.
pub const MAX_NESTING: usize = 64;

/// The alias Dataverse gives the image it adds to every asynchronous step (primary name and id).
const AUTOMATIC_IMAGE: &str = "AsynchronousStepPrimaryName";

/// Why a webhook body was refused. The body itself is wrong, so retrying cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook body is not UTF-8: invalid byte at offset {offset}")]
    NotUtf8 { offset: usize },
    #[error("webhook body is not JSON: {reason}")]
    NotJson { reason: String },
    #[error("{field} is missing")]
    Missing { field: String },
    #[error("{field} is not {expected}: {found}")]
    Invalid {
        field: String,
        expected: &'static str,
        found: String,
    },
    #[error("PrimaryEntityId is missing or empty and InputParameters has no {fallback}")]
    NoRecordId { fallback: &'static str },
    #[error("{field} nests deeper than {limit} levels")]
    TooDeep { field: String, limit: usize },
}

impl WebhookError {
    fn missing(field: impl Into<String>) -> WebhookError {
        WebhookError::Missing {
            field: field.into(),
        }
    }

    fn invalid(field: impl Into<String>, expected: &'static str, found: &Value) -> WebhookError {
        WebhookError::Invalid {
            field: field.into(),
            expected,
            found: value::describe(found),
        }
    }
}

impl Retryable for WebhookError {
    fn is_retryable(&self) -> bool {
        false
    }
}

/// Parse a webhook body into a [`ChangeEvent`].
///
/// `size_exceeded` is the presence of the `x-ms-dynamics-msg-size-exceeded` header: Dataverse then
/// drops `InputParameters`, images and `ParentContext`, and the event only names the record.
pub fn parse_change_event(body: &[u8], size_exceeded: bool) -> Result<ChangeEvent, WebhookError> {
    let root: Value =
        serde_json::from_str(decode_utf8(body)?).map_err(|err| WebhookError::NotJson {
            reason: err.to_string(),
        })?;
    let context = root
        .as_object()
        .ok_or_else(|| WebhookError::invalid("webhook body", "a JSON object", &root))?;

    let message = CrmMessage::from_name(&required_string(context, "MessageName")?);
    let mut entity = required_string(context, "PrimaryEntityName")?;
    let operation_id = operation_id(context)?;
    let correlation_id = required_guid(context, "CorrelationId")?;
    let primary_id = value::optional_guid(context, "PrimaryEntityId")?;

    // Without InputParameters the body was cut down, whether or not the header said so.
    let params = match context.get("InputParameters") {
        Some(Value::Null) | None => None,
        Some(raw) => Some(KeyValues::new(raw, "InputParameters")?),
    };
    let size_exceeded = size_exceeded || params.is_none();
    let params = if size_exceeded { None } else { params };

    let target = match &params {
        Some(params) => Target::read(params, &message)?,
        None => Target::Absent,
    };
    let record_id = match primary_id {
        Some(id) if id != EMPTY_GUID => id,
        primary => {
            let fallback = fallback_record_id(&message, &mut entity, params.as_ref(), &target)?;
            fallback.ok_or_else(|| match primary {
                Some(empty) => WebhookError::invalid(
                    "PrimaryEntityId",
                    "a non-empty GUID",
                    &Value::String(empty),
                ),
                None => WebhookError::missing("PrimaryEntityId"),
            })?
        }
    };
    let related = match &params {
        Some(params) => related_records(&message, &entity, params)?,
        None => Vec::new(),
    };
    let (pre_image, post_image) = if size_exceeded {
        (None, None)
    } else {
        (
            merged_images(context, "PreEntityImages")?,
            merged_images(context, "PostEntityImages")?,
        )
    };
    let tag = find_tag(context, &entity, &record_id)?;

    let mut event = ChangeEvent {
        operation_id: operation_id.clone().unwrap_or_default(),
        correlation_id,
        message,
        entity,
        record_id,
        user_id: optional_guid_or_empty(context, "UserId")?,
        initiating_user_id: optional_guid_or_empty(context, "InitiatingUserId")?,
        organization_id: optional_guid_or_empty(context, "OrganizationId")?,
        organization_name: value::optional_string(context, "OrganizationName", "OrganizationName")?
            .unwrap_or_default(),
        occurred_at_ms: occurred_at(context)?,
        depth: optional_integer(context, "Depth")?.unwrap_or(0),
        target: target.into_attributes(),
        pre_image,
        post_image,
        related,
        size_exceeded,
        tag,
        continuation: None,
    };
    if operation_id.is_none() {
        event.operation_id = content_id(&event);
    }
    Ok(event)
}

/// `OperationId`, or `None` when Dataverse sent none: synchronous steps send an empty GUID
/// (all zeros), and a missing, null or blank value is treated the same. Anything else must be
/// a GUID.
fn operation_id(context: &Map<String, Value>) -> Result<Option<String>, WebhookError> {
    const KEY: &str = "OperationId";
    match context.get(KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(raw) => {
            let id = value::guid(raw, KEY)?;
            Ok((id != EMPTY_GUID).then_some(id))
        }
    }
}

/// An operation id made from the change itself, for bodies without one: the record, the
/// message, the attributes and images, the time and the correlation, hashed. The queue
/// de-duplicates by operation, so a shared placeholder would make SQS drop every further
/// change of the record for five minutes; a content hash keeps distinct changes apart and
/// still lets a redelivered body (the same bytes) count once.
fn content_id(event: &ChangeEvent) -> String {
    use sha2::{Digest, Sha256};
    // The event's own JSON is canonical: attributes are kept sorted by name.
    let canonical = serde_json::to_vec(event).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    let hex: String = digest.iter().take(24).map(|b| format!("{b:02x}")).collect();
    format!("content-{hex}")
}

/// The body as text: UTF-8, with a leading byte-order mark tolerated.
fn decode_utf8(body: &[u8]) -> Result<&str, WebhookError> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    let (skipped, rest) = match body.strip_prefix(BOM) {
        Some(rest) => (BOM.len(), rest),
        None => (0, body),
    };
    std::str::from_utf8(rest).map_err(|err| WebhookError::NotUtf8 {
        offset: skipped + err.valid_up_to(),
    })
}

fn required_string(context: &Map<String, Value>, key: &str) -> Result<String, WebhookError> {
    match context.get(key) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(WebhookError::invalid(key, "a string", other)),
        None => Err(WebhookError::missing(key)),
    }
}

fn required_guid(context: &Map<String, Value>, key: &str) -> Result<String, WebhookError> {
    match context.get(key) {
        Some(raw) => value::guid(raw, key),
        None => Err(WebhookError::missing(key)),
    }
}

fn optional_guid_or_empty(context: &Map<String, Value>, key: &str) -> Result<String, WebhookError> {
    Ok(value::optional_guid(context, key)?.unwrap_or_default())
}

fn optional_integer(context: &Map<String, Value>, key: &str) -> Result<Option<i64>, WebhookError> {
    match context.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(raw) => raw
            .as_i64()
            .map(Some)
            .ok_or_else(|| WebhookError::invalid(key, "an integer", raw)),
    }
}

/// `OperationCreatedOn`: a WCF date; an ISO 8601 date-time is accepted too, in case the
/// serializer changes.
fn occurred_at(context: &Map<String, Value>) -> Result<Option<i64>, WebhookError> {
    const KEY: &str = "OperationCreatedOn";
    match context.get(KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(raw) => raw
            .as_str()
            .and_then(|text| {
                value::parse_wcf_date(text).or_else(|| {
                    chrono::DateTime::parse_from_rfc3339(text)
                        .ok()
                        .map(|date| date.timestamp_millis())
                })
            })
            .map(Some)
            .ok_or_else(|| WebhookError::invalid(KEY, "a /Date(ms)/ date", raw)),
    }
}

/// A parameter collection: normally an array of `{"key": …, "value": …}`; a plain JSON object
/// (the "simple dictionary" serializer format) is accepted as well.
pub(crate) struct KeyValues<'a> {
    field: String,
    form: Form<'a>,
}

enum Form<'a> {
    Pairs(&'a [Value]),
    Object(&'a Map<String, Value>),
}

impl<'a> KeyValues<'a> {
    pub(crate) fn new(raw: &'a Value, field: &str) -> Result<KeyValues<'a>, WebhookError> {
        let form = match raw {
            Value::Array(items) => Form::Pairs(items),
            Value::Object(object) => Form::Object(object),
            other => return Err(WebhookError::invalid(field, "a key/value array", other)),
        };
        Ok(KeyValues {
            field: field.to_string(),
            form,
        })
    }

    /// The value under `key` (the first one, if repeated); entries of other shapes are skipped.
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        match self.form {
            Form::Pairs(items) => items.iter().find_map(|item| {
                let entry = item.as_object()?;
                (entry.get("key")?.as_str()? == key)
                    .then(|| entry.get("value").unwrap_or(&Value::Null))
            }),
            Form::Object(object) => object.get(key),
        }
    }

    /// A present, non-null value under `key`.
    fn get_present(&self, key: &str) -> Option<&'a Value> {
        self.get(key).filter(|raw| !raw.is_null())
    }

    /// Every entry; each must name its key.
    pub(crate) fn pairs(&self) -> Result<Vec<(&'a str, &'a Value)>, WebhookError> {
        match self.form {
            Form::Pairs(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    let key = item
                        .as_object()
                        .and_then(|entry| entry.get("key"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            WebhookError::invalid(
                                format!("{}[{index}]", self.field),
                                "a {\"key\": …, \"value\": …} entry",
                                item,
                            )
                        })?;
                    let raw = item
                        .as_object()
                        .and_then(|entry| entry.get("value"))
                        .unwrap_or(&Value::Null);
                    Ok((key, raw))
                })
                .collect(),
            Form::Object(object) => Ok(object
                .iter()
                .filter(|(key, _)| key.as_str() != "__type")
                .map(|(key, raw)| (key.as_str(), raw))
                .collect()),
        }
    }

    fn field_of(&self, key: &str) -> String {
        format!("{}[\"{key}\"]", self.field)
    }
}

/// The `Target` parameter: the changed row (Create/Update) or a reference to it (Delete, Associate).
enum Target {
    Absent,
    Entity(Attributes),
    Reference(RecordRef),
}

impl Target {
    fn read(params: &KeyValues<'_>, message: &CrmMessage) -> Result<Target, WebhookError> {
        let field = params.field_of("Target");
        let Some(raw) = params.get_present("Target") else {
            return Ok(Target::Absent);
        };
        let shape = raw.as_object().and_then(value::row_shape);
        match shape {
            Some(RowShape::Entity) => value::entity_attributes(raw, &field).map(Target::Entity),
            Some(RowShape::Reference) => {
                value::reference(raw, &field).map(|(record, _)| Target::Reference(record))
            }
            // Other messages may put anything under Target; only these promise a row.
            None if matches!(
                message,
                CrmMessage::Create
                    | CrmMessage::Update
                    | CrmMessage::Delete
                    | CrmMessage::Associate
                    | CrmMessage::Disassociate
            ) =>
            {
                Err(WebhookError::invalid(
                    field,
                    "an Entity or EntityReference",
                    raw,
                ))
            }
            None => Ok(Target::Absent),
        }
    }

    fn into_attributes(self) -> Attributes {
        match self {
            Target::Entity(attributes) => attributes,
            Target::Absent | Target::Reference(_) => Attributes::new(),
        }
    }
}

/// The record id when `PrimaryEntityId` is missing or empty: membership and item messages name it
/// in their parameters; Associate/Disassociate (often registered without a table) in `Target`.
/// `None` for messages that have no other place for it.
fn fallback_record_id(
    message: &CrmMessage,
    entity: &mut String,
    params: Option<&KeyValues<'_>>,
    target: &Target,
) -> Result<Option<String>, WebhookError> {
    let keys: &[&'static str] = match message {
        CrmMessage::AddMember | CrmMessage::AddListMembers | CrmMessage::RemoveMember => {
            &["ListId"]
        }
        CrmMessage::AddItem | CrmMessage::RemoveItem if entity == "campaignactivity" => {
            &["CampaignActivityId"]
        }
        CrmMessage::AddItem | CrmMessage::RemoveItem if entity == "campaign" => &["CampaignId"],
        CrmMessage::AddItem | CrmMessage::RemoveItem => &["CampaignId", "CampaignActivityId"],
        CrmMessage::Associate | CrmMessage::Disassociate => {
            let Target::Reference(record) = target else {
                return Err(WebhookError::NoRecordId { fallback: "Target" });
            };
            if entity.is_empty() || entity == "none" {
                entity.clone_from(&record.entity);
            }
            return Ok(Some(record.id.clone()));
        }
        _ => return Ok(None),
    };
    if let Some(params) = params {
        for key in keys {
            if let Some(raw) = params.get_present(key) {
                let id = value::guid(raw, &params.field_of(key))?;
                if id != EMPTY_GUID {
                    return Ok(Some(id));
                }
            }
        }
    }
    Err(WebhookError::NoRecordId { fallback: keys[0] })
}

/// The rows a message names besides the primary one.
fn related_records(
    message: &CrmMessage,
    entity: &str,
    params: &KeyValues<'_>,
) -> Result<Vec<RecordRef>, WebhookError> {
    let required = |key: &str| {
        params
            .get_present(key)
            .ok_or_else(|| WebhookError::missing(params.field_of(key)))
    };
    match message {
        // The member's table is not in the body (the list's member type says it).
        CrmMessage::AddMember | CrmMessage::RemoveMember => Ok(vec![value::guid_or_reference(
            required("EntityId")?,
            "",
            &params.field_of("EntityId"),
        )?]),
        CrmMessage::AddListMembers => {
            reference_list(required("MemberIds")?, &params.field_of("MemberIds"))
        }
        CrmMessage::AddItem | CrmMessage::RemoveItem => {
            let keys = if entity == "campaignactivity" {
                ["ItemId", "EntityId"]
            } else {
                ["EntityId", "ItemId"]
            };
            let (key, raw) = keys
                .iter()
                .find_map(|key| params.get_present(key).map(|raw| (*key, raw)))
                .ok_or_else(|| WebhookError::missing(params.field_of(keys[0])))?;
            let item_entity = match params.get_present("EntityName") {
                None => String::new(),
                Some(Value::String(name)) => name.clone(),
                Some(other) => {
                    return Err(WebhookError::invalid(
                        params.field_of("EntityName"),
                        "a string",
                        other,
                    ));
                }
            };
            Ok(vec![value::guid_or_reference(
                raw,
                &item_entity,
                &params.field_of(key),
            )?])
        }
        CrmMessage::Associate | CrmMessage::Disassociate => reference_list(
            required("RelatedEntities")?,
            &params.field_of("RelatedEntities"),
        ),
        _ => Ok(Vec::new()),
    }
}

/// A list of rows: a JSON array of GUIDs or `EntityReference`s, or an object (a serialized
/// collection) holding such an array, preferably under `Entities`.
fn reference_list(raw: &Value, field: &str) -> Result<Vec<RecordRef>, WebhookError> {
    let (items, field) = match raw {
        Value::Array(items) => (items, field.to_string()),
        Value::Object(object) => {
            let inner = object
                .get("Entities")
                .and_then(Value::as_array)
                .map(|items| ("Entities", items))
                .or_else(|| {
                    object.iter().find_map(|(key, member)| {
                        member.as_array().map(|items| (key.as_str(), items))
                    })
                });
            match inner {
                Some((key, items)) => (items, format!("{field}.{key}")),
                None => {
                    return Err(WebhookError::invalid(
                        field,
                        "a list of GUIDs or EntityReferences",
                        raw,
                    ));
                }
            }
        }
        other => {
            return Err(WebhookError::invalid(
                field,
                "a list of GUIDs or EntityReferences",
                other,
            ));
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| value::guid_or_reference(item, "", &format!("{field}[{index}]")))
        .collect()
}

/// All images of one kind merged into one attribute map. Registered aliases win over the
/// automatic primary-name image; among registered aliases the first listed wins.
fn merged_images(
    context: &Map<String, Value>,
    key: &str,
) -> Result<Option<Attributes>, WebhookError> {
    let raw = match context.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(raw) => raw,
    };
    let images = KeyValues::new(raw, key)?;
    let mut registered: Option<Attributes> = None;
    let mut automatic: Option<Attributes> = None;
    for (alias, entity) in images.pairs()? {
        if entity.is_null() {
            continue;
        }
        let attributes = value::entity_attributes(entity, &images.field_of(alias))?;
        let slot = if alias == AUTOMATIC_IMAGE {
            &mut automatic
        } else {
            &mut registered
        };
        let merged = slot.get_or_insert_with(Attributes::new);
        for (name, attr) in attributes {
            merged.entry(name).or_insert(attr);
        }
    }
    Ok(match (registered, automatic) {
        (Some(mut merged), Some(automatic)) => {
            for (name, attr) in automatic {
                merged.entry(name).or_insert(attr);
            }
            Some(merged)
        }
        (registered, automatic) => registered.or(automatic),
    })
}

/// The `tag` shared variable: from this context, else from the parent contexts of the same
/// record (an async step sees the caller's shared variables only there). Parents of other rows
/// are cascaded operations, whose tag is not this change's.
fn find_tag(
    context: &Map<String, Value>,
    entity: &str,
    record_id: &str,
) -> Result<Option<String>, WebhookError> {
    if let Some(raw) = context.get("SharedVariables").filter(|raw| !raw.is_null())
        && let Some(tag) = tag_in(&KeyValues::new(raw, "SharedVariables")?)
    {
        return Ok(Some(tag));
    }
    let mut current = context;
    let mut level = 0;
    while let Some(parent) = current.get("ParentContext").and_then(Value::as_object) {
        level += 1;
        if level > MAX_NESTING {
            return Err(WebhookError::TooDeep {
                field: "ParentContext".to_string(),
                limit: MAX_NESTING,
            });
        }
        let same_record = parent.get("PrimaryEntityName").and_then(Value::as_str) == Some(entity)
            && parent
                .get("PrimaryEntityId")
                .and_then(Value::as_str)
                .and_then(value::normalize_guid)
                .as_deref()
                == Some(record_id);
        if !same_record {
            return Ok(None);
        }
        let shared = parent
            .get("SharedVariables")
            .and_then(|raw| KeyValues::new(raw, "ParentContext.SharedVariables").ok());
        if let Some(tag) = shared.as_ref().and_then(tag_in) {
            return Ok(Some(tag));
        }
        current = parent;
    }
    Ok(None)
}

/// The connector tags its writes with a string; a `tag` of another type is someone else's.
fn tag_in(shared: &KeyValues<'_>) -> Option<String> {
    shared
        .get("tag")
        .and_then(Value::as_str)
        .map(str::to_string)
}
