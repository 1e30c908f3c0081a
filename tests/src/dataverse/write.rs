//! Writes: create (POST), update and upsert (PATCH, with `If-Match`/`If-None-Match`), delete
//! with Dataverse's cascades, single-property PUT/DELETE, and the list and campaign membership
//! actions. Every write returns the undo records and the webhook events it caused; table rules
//! (computed names, states, list and step validation) live here too.

use super::Shared;
use super::api::{self, ApiRequest, ApiResponse, Applied, Ctx};
use super::error::{ApiError, code};
use super::query::{self, Prefer};
use super::schema::{self, Access, Column, Kind, Table, Writes};
use super::security;
use super::store::{self, Row, Store, Undo, Val};
use super::webhooks::{self, Event, Param};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use uuid::Uuid;

/// Column changes read from a request body.
#[derive(Debug, Default)]
pub struct Changes {
    pub values: Vec<(&'static Column, Option<Val>)>,
    /// The primary key, when the body names it.
    pub id: Option<Uuid>,
}

/// Dataverse wraps OData's payload errors in this text.
fn payload_error(table: &Table, inner: String) -> ApiError {
    ApiError::payload(format!(
        "Error identified in Payload provided by the user for Entity :'{}'  ---->  InnerException : Microsoft.OData.ODataException: {inner}",
        table.set
    ))
}

fn not_a_property(table: &Table, name: &str) -> ApiError {
    payload_error(
        table,
        format!(
            "The property '{name}' does not exist on type '{}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
            table.odata_type()
        ),
    )
}

/// Reads a JSON body.
pub(crate) fn body_object(req: &ApiRequest) -> Result<Map<String, Value>, ApiError> {
    if req.body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::payload(
            "The request body is empty; a JSON object is required.",
        ));
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::payload("The request body must be a JSON object.")),
        Err(e) => Err(ApiError::payload(format!(
            "The request body is not valid JSON: {e}."
        ))),
    }
}

/// Resolves an `@odata.bind` reference (`/accounts(id)`, `accounts(id)`, an absolute URL or a
/// `$n` Content-ID) to a row of the navigation property's table.
fn resolve_bind(
    store: &Store,
    content_ids: &HashMap<String, String>,
    nav: &schema::Nav,
    value: &Value,
) -> Result<Option<Val>, ApiError> {
    let s = match value {
        Value::Null => return Ok(None),
        Value::String(s) => s.as_str(),
        other => {
            return Err(ApiError::payload(format!(
                "The value of '{}@odata.bind' must be a URL string, not {other}.",
                nav.name
            )));
        }
    };
    let resolved;
    let s = match s.strip_prefix('$') {
        Some(n) => {
            resolved = content_ids.get(n).cloned().ok_or_else(|| {
                ApiError::payload(format!(
                    "Content-ID Reference: '${n}' does not exist in the batch context."
                ))
            })?;
            resolved.as_str()
        }
        None => s,
    };
    let last = s
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let (set, key) = last
        .split_once('(')
        .and_then(|(set, rest)| rest.strip_suffix(')').map(|k| (set, k)))
        .ok_or_else(|| {
            ApiError::payload(format!(
                "'{s}' is not a valid entity reference for '{}'.",
                nav.name
            ))
        })?;
    let target = store
        .catalog()
        .table(nav.target)
        .ok_or_else(|| ApiError::payload(format!("Unknown table '{}'.", nav.target)))?;
    if set != target.set {
        return Err(ApiError::payload(format!(
            "The navigation property '{}' refers to '{}', but the reference '{s}' names the entity set '{set}'.",
            nav.name, target.set
        )));
    }
    let id = store::parse_guid(key)
        .ok_or_else(|| ApiError::payload(format!("'{key}' in '{s}' is not a valid GUID.")))?;
    if !store.contains(target.logical, &id) {
        return Err(ApiError::row_not_found(target.logical, &id));
    }
    Ok(Some(Val::Ref(target.logical, id)))
}

/// Reads the columns a body writes. `creating` decides whether create-only columns count.
pub fn parse_changes(
    store: &Store,
    table: &'static Table,
    body: &Map<String, Value>,
    content_ids: &HashMap<String, String>,
    creating: bool,
) -> Result<Changes, ApiError> {
    let mut ch = Changes::default();
    for (key, value) in body {
        if key.starts_with('@') {
            continue;
        }
        if let Some(nav_name) = key.strip_suffix("@odata.bind") {
            // Navigation properties match case-sensitively, as in Dataverse's $metadata.
            let Some((column, nav)) = table.nav(nav_name) else {
                return Err(payload_error(
                    table,
                    format!(
                        "An undeclared property '{nav_name}' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values."
                    ),
                ));
            };
            let v = resolve_bind(store, content_ids, nav, value)?;
            if column.access == Access::System || (column.access == Access::CreateOnly && !creating)
            {
                continue;
            }
            ch.values.retain(|(c, _)| c.name != column.name);
            ch.values.push((column, v));
            continue;
        }
        if key.contains('@') {
            continue;
        }
        let column = table
            .column(key)
            .ok_or_else(|| not_a_property(table, key))?;
        if matches!(column.kind, Kind::Lookup(_)) {
            return Err(not_a_property(table, key));
        }
        if matches!(column.kind, Kind::Pk) {
            let id = value.as_str().and_then(store::parse_guid).ok_or_else(|| {
                ApiError::payload(format!(
                    "Cannot convert the literal '{value}' to the expected type 'Edm.Guid'."
                ))
            })?;
            ch.id = Some(id);
            continue;
        }
        let v = Val::from_json(table, column, value)?;
        if column.access == Access::System || (column.access == Access::CreateOnly && !creating) {
            continue;
        }
        ch.values.retain(|(c, _)| c.name != column.name);
        ch.values.push((column, v));
    }
    Ok(ch)
}

pub(crate) fn writable(table: &Table, operation: &str) -> Result<(), ApiError> {
    match table.writes {
        Writes::Yes => Ok(()),
        Writes::ActionsOnly => Err(ApiError::bad_request(
            code::REFUSED,
            format!(
                "The {} table is maintained through actions (AddMemberList, AddListMembersList, RemoveMemberList, AddItemCampaign, AddItemCampaignActivity, RemoveItem…); {operation} is not supported.",
                table.logical
            ),
        )),
        Writes::ReadOnly => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            code::REFUSED,
            format!(
                "The {} table is read only; {operation} is not supported.",
                table.logical
            ),
        )),
    }
}

fn new_event(
    ctx: &Ctx,
    req: &ApiRequest,
    message: &'static str,
    table: &'static Table,
    id: Uuid,
    depth: i64,
) -> Event {
    Event {
        message,
        table,
        id,
        input: Vec::new(),
        parent_input: Vec::new(),
        output: Vec::new(),
        changed: Vec::new(),
        pre: None,
        post: None,
        user: ctx.user,
        correlation: ctx.correlation,
        operation: Uuid::new_v4(),
        tag: req.tag(),
        depth,
        at: store::now(),
    }
}

fn all_attrs(table: &'static Table, row: &Row) -> Vec<(&'static Column, Option<Val>)> {
    table
        .all_columns()
        .filter_map(|c| row.get(c.name).map(|v| (c, Some(v.clone()))))
        .collect()
}

fn entity_param(
    table: &'static Table,
    id: Uuid,
    attrs: Vec<(&'static Column, Option<Val>)>,
) -> Param {
    Param::Entity { table, id, attrs }
}

fn col(table: &Table, name: &str) -> Result<&'static Column, ApiError> {
    table.column(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            format!("schema has no {}.{name}", table.logical),
        )
    })
}

/// The response of a create or update.
fn write_response(
    store: &Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
    created: bool,
) -> Result<ApiResponse, ApiError> {
    let prefer: Prefer = req.prefer();
    let url = ctx.entity_url(table, &id);
    let mut resp = if prefer.return_representation {
        let row = store
            .get(table.logical, &id)
            .ok_or_else(|| ApiError::row_not_found(table.logical, &id))?;
        let select = query::parse_select(table, req.param("$select"))?;
        let expand = api::parse_expand(store.catalog(), table, req.param("$expand"))?;
        let mut body = Map::new();
        body.insert(
            "@odata.context".into(),
            Value::String(format!("{}$metadata#{}/$entity", ctx.root(), table.set)),
        );
        body.extend(api::render_row(
            store, table, row, &select, &expand, &prefer,
        ));
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        ApiResponse::json(status, Value::Object(body))
            .with_header("Preference-Applied", "return=representation")
    } else {
        ApiResponse::empty(StatusCode::NO_CONTENT)
    };
    if ctx.in_batch {
        resp = resp.with_header("Location", url.clone());
    }
    Ok(resp.with_header("OData-EntityId", url))
}

// --- table rules ---------------------------------------------------------------------------

/// Columns the platform computes; returns those that changed.
fn recompute(table: &Table, row: &mut Row) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if matches!(table.logical, "contact" | "lead") {
        let parts: Vec<&str> = ["firstname", "lastname"]
            .iter()
            .filter_map(|c| row.get(c).and_then(|v| v.as_str()))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let full = parts.join(" ");
        let new = if full.is_empty() {
            None
        } else {
            Some(Val::Str(full))
        };
        if row.get("fullname") != new.as_ref() {
            match new {
                Some(v) => row.insert("fullname", v),
                None => row.remove("fullname"),
            };
            changed.push("fullname");
        }
    }
    changed
}

/// Sets statecode/statuscode consistently: a state alone takes its default status, a status
/// alone its state.
fn apply_state(
    table: &Table,
    row: &mut Row,
    state: Option<i64>,
    status: Option<i64>,
    creating: bool,
) -> Result<(), ApiError> {
    let Some(first) = table.states.first() else {
        return Ok(());
    };
    let default_status = |def: &schema::StateDef| def.statuses.first().map(|o| o.0).unwrap_or(0);
    let (state, status) = match (state, status) {
        (None, None) if !creating => return Ok(()),
        (None, None) => (first.state, default_status(first)),
        (Some(st), None) => {
            let def = table.state(st).ok_or_else(|| {
                ApiError::bad_request(
                    code::OUT_OF_RANGE,
                    format!("{st} is not a valid state code of {}.", table.logical),
                )
            })?;
            (st, default_status(def))
        }
        (None, Some(su)) => {
            let def = table.state_of_status(su).ok_or_else(|| {
                ApiError::bad_request(
                    code::OUT_OF_RANGE,
                    format!("{su} is not a valid status code of {}.", table.logical),
                )
            })?;
            (def.state, su)
        }
        (Some(st), Some(su)) => {
            let def = table.state(st).ok_or_else(|| {
                ApiError::bad_request(
                    code::OUT_OF_RANGE,
                    format!("{st} is not a valid state code of {}.", table.logical),
                )
            })?;
            if !def.statuses.iter().any(|o| o.0 == su) {
                return Err(ApiError::bad_request(
                    code::OUT_OF_RANGE,
                    format!(
                        "{su} is not a valid status code for state code {}State.{} on {}.",
                        capitalize(table.logical),
                        def.label,
                        table.logical
                    ),
                ));
            }
            (st, su)
        }
    };
    row.insert("statecode", Val::Int(state));
    row.insert("statuscode", Val::Int(status));
    Ok(())
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn required(row: &Row, table: &Table, column: &str) -> Result<(), ApiError> {
    if row.contains_key(column) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            code::VALIDATION,
            format!(
                "A validation error occurred. The attribute '{column}' of the '{}' entity is required.",
                table.logical
            ),
        ))
    }
}

fn int(row: &Row, column: &str) -> Option<i64> {
    row.get(column).and_then(|v| v.as_int())
}

/// Table-specific validation and defaults.
fn rules(store: &Store, table: &Table, row: &mut Row, creating: bool) -> Result<(), ApiError> {
    match table.logical {
        "list" => {
            required(row, table, "createdfromcode")?;
            let code = int(row, "createdfromcode").unwrap_or(2);
            row.insert("membertype", Val::Int(code));
            row.entry("membercount").or_insert(Val::Int(0));
        }
        "campaignactivity" => {
            if creating {
                required(row, table, "regardingobjectid")?;
            }
            row.insert("activitytypecode", Val::Str("campaignactivity".into()));
        }
        "serviceendpoint" => {
            required(row, table, "contract")?;
            if int(row, "contract") == Some(8) {
                required(row, table, "url")?;
                let url = row.get("url").and_then(|v| v.as_str()).unwrap_or_default();
                if url::Url::parse(url)
                    .map(|u| !matches!(u.scheme(), "http" | "https"))
                    .unwrap_or(true)
                {
                    return Err(ApiError::bad_request(
                        code::VALIDATION,
                        format!("The webhook url '{url}' is not an absolute http(s) URL."),
                    ));
                }
                required(row, table, "authtype")?;
                let authtype = int(row, "authtype").unwrap_or(0);
                if !matches!(authtype, 4..=6) {
                    return Err(ApiError::bad_request(
                        code::VALIDATION,
                        format!(
                            "authtype {authtype} is not valid for a webhook; use 4 (WebhookKey), 5 (HttpHeader) or 6 (HttpQueryString)."
                        ),
                    ));
                }
                required(row, table, "authvalue")?;
                if matches!(authtype, 5 | 6) {
                    let value = row
                        .get("authvalue")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default();
                    webhooks::parse_settings(value)
                        .map_err(|e| ApiError::bad_request(code::VALIDATION, e))?;
                }
                row.entry("messageformat").or_insert(Val::Int(2));
            }
            row.entry("messagecharset").or_insert(Val::Int(0));
        }
        "sdkmessageprocessingstep" => {
            required(row, table, "sdkmessageid")?;
            required(row, table, "eventhandler")?;
            required(row, table, "stage")?;
            row.entry("mode").or_insert(Val::Int(0));
            row.entry("rank").or_insert(Val::Int(1));
            row.entry("supporteddeployment").or_insert(Val::Int(0));
            if int(row, "mode") == Some(1) && int(row, "stage") != Some(40) {
                return Err(ApiError::bad_request(
                    code::VALIDATION,
                    "Asynchronous steps can only be registered in the PostOperation stage (40).",
                ));
            }
            let message = row.get("sdkmessageid").and_then(|v| v.guid());
            let mut entity = None;
            if let Some(filter_id) = row.get("sdkmessagefilterid").and_then(|v| v.guid()) {
                let filter = store.get("sdkmessagefilter", &filter_id);
                if filter
                    .and_then(|f| f.get("sdkmessageid"))
                    .and_then(|v| v.guid())
                    != message
                {
                    return Err(ApiError::bad_request(
                        code::VALIDATION,
                        format!(
                            "The sdkmessagefilter {filter_id} does not belong to the step's sdkmessage."
                        ),
                    ));
                }
                entity = filter
                    .and_then(|f| f.get("primaryobjecttypecode"))
                    .and_then(|v| v.as_str())
                    .and_then(|t| store.catalog().table(t));
            }
            if let (Some(t), Some(attrs)) = (
                entity,
                row.get("filteringattributes").and_then(|v| v.as_str()),
            ) {
                check_attribute_list(t, attrs, "filteringattributes")?;
            }
        }
        "publisher" => {
            for c in [
                "uniquename",
                "friendlyname",
                "customizationprefix",
                "customizationoptionvalueprefix",
            ] {
                required(row, table, c)?;
            }
            let prefix = text(row, "customizationprefix");
            let valid = (2..=8).contains(&prefix.len())
                && prefix
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic())
                && prefix.chars().all(|c| c.is_ascii_alphanumeric())
                && !prefix.to_ascii_lowercase().starts_with("mscrm");
            if !valid {
                return Err(ApiError::bad_request(
                    code::VALIDATION,
                    format!(
                        "The customization prefix '{prefix}' is not valid: 2 to 8 letters and digits, starting with a letter, not 'mscrm'."
                    ),
                ));
            }
            let options = int(row, "customizationoptionvalueprefix").unwrap_or(0);
            if !(10_000..=99_999).contains(&options) {
                return Err(ApiError::bad_request(
                    code::VALIDATION,
                    format!("The option value prefix {options} is outside 10000..99999."),
                ));
            }
            if duplicate(store, table, row, &["uniquename"]) {
                return Err(duplicate_name(&text(row, "uniquename")));
            }
            row.entry("isreadonly").or_insert(Val::Bool(false));
        }
        "solution" => {
            for c in ["uniquename", "friendlyname", "version", "publisherid"] {
                required(row, table, c)?;
            }
            let version = text(row, "version");
            let parts: Vec<&str> = version.split('.').collect();
            if !(2..=4).contains(&parts.len())
                || parts
                    .iter()
                    .any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()))
            {
                return Err(ApiError::bad_request(
                    code::VALIDATION,
                    format!(
                        "The solution version '{version}' is not major.minor[.build[.revision]]."
                    ),
                ));
            }
            if duplicate(store, table, row, &["uniquename"]) {
                return Err(duplicate_name(&text(row, "uniquename")));
            }
            if creating {
                row.insert("ismanaged", Val::Bool(false));
            }
        }
        "role" => {
            required(row, table, "name")?;
            required(row, table, "businessunitid")?;
            if duplicate(store, table, row, &["name", "businessunitid"]) {
                return Err(ApiError::bad_request(
                    "0x80041403",
                    format!(
                        "A role with the specified name '{}' already exists on business unit {}. Specify a unique name.",
                        text(row, "name"),
                        row.get("businessunitid")
                            .and_then(|v| v.guid())
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        "fieldsecurityprofile" => {
            required(row, table, "name")?;
            if duplicate(store, table, row, &["name"]) {
                return Err(duplicate_name(&text(row, "name")));
            }
        }
        "fieldpermission" => {
            for c in [
                "fieldsecurityprofileid",
                "entityname",
                "attributelogicalname",
            ] {
                required(row, table, c)?;
            }
            let entity = text(row, "entityname");
            let attribute = text(row, "attributelogicalname");
            let exists = store
                .catalog()
                .table(&entity)
                .is_some_and(|t| t.column(&attribute).is_some());
            if !exists {
                return Err(ApiError::bad_request(
                    code::VALIDATION,
                    format!("The attribute '{attribute}' of '{entity}' does not exist."),
                ));
            }
            if !store.catalog().is_secured(&entity, &attribute) {
                return Err(ApiError::bad_request(
                    code::VALIDATION,
                    format!(
                        "The attribute '{attribute}' of '{entity}' is not secured (IsSecured); field permissions apply to secured attributes only."
                    ),
                ));
            }
            for c in ["canread", "cancreate", "canupdate"] {
                row.entry(c).or_insert(Val::Int(0));
            }
            if duplicate(
                store,
                table,
                row,
                &[
                    "fieldsecurityprofileid",
                    "entityname",
                    "attributelogicalname",
                ],
            ) {
                return Err(ApiError::duplicate());
            }
        }
        "webresource" => super::forms::webresource_rules(store, table, row, creating)?,
        "systemform" => super::forms::systemform_rules(store, table, row, creating)?,
        "sdkmessageprocessingstepimage" => {
            required(row, table, "sdkmessageprocessingstepid")?;
            required(row, table, "entityalias")?;
            required(row, table, "imagetype")?;
            row.entry("messagepropertyname")
                .or_insert(Val::Str("Target".into()));
            let step = row
                .get("sdkmessageprocessingstepid")
                .and_then(|v| v.guid())
                .and_then(|id| store.get("sdkmessageprocessingstep", &id));
            let entity = step
                .and_then(|s| s.get("sdkmessagefilterid"))
                .and_then(|v| v.guid())
                .and_then(|f| store.get("sdkmessagefilter", &f))
                .and_then(|f| f.get("primaryobjecttypecode"))
                .and_then(|v| v.as_str())
                .and_then(|t| store.catalog().table(t));
            if let (Some(t), Some(attrs)) = (entity, row.get("attributes").and_then(|v| v.as_str()))
            {
                check_attribute_list(t, attrs, "attributes")?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn text(row: &Row, column: &str) -> String {
    row.get(column)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Whether another row of the table has the same values in these columns (text compared
/// case-insensitively).
fn duplicate(store: &Store, table: &Table, row: &Row, columns: &[&str]) -> bool {
    let own = row.get(table.pk).and_then(|v| v.guid());
    store.table_rows(table.logical).any(|(id, other)| {
        Some(*id) != own
            && columns.iter().all(|c| match (row.get(c), other.get(c)) {
                (Some(Val::Str(a)), Some(Val::Str(b))) => a.eq_ignore_ascii_case(b),
                (Some(a), Some(b)) => a.guid().is_some() && a.guid() == b.guid() || a == b,
                _ => false,
            })
    })
}

fn duplicate_name(name: &str) -> ApiError {
    ApiError::bad_request(
        "0x80047010",
        format!("An object with the specified name '{name}' already exists."),
    )
}

fn check_attribute_list(table: &Table, list: &str, what: &str) -> Result<(), ApiError> {
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if table.column(&name.to_ascii_lowercase()).is_none() {
            return Err(ApiError::bad_request(
                code::VALIDATION,
                format!(
                    "The {what} list names '{name}', which is not an attribute of {}.",
                    table.logical
                ),
            ));
        }
    }
    Ok(())
}

fn stamp(row: &mut Row, store: &mut Store, user: Uuid, creating: bool, owned: bool) {
    let now = store::now();
    if creating {
        row.insert("createdon", Val::Date(now));
        row.insert("createdby", Val::Ref("systemuser", user));
        if owned {
            row.entry("ownerid").or_insert(Val::Ref("systemuser", user));
        }
    }
    row.insert("modifiedon", Val::Date(now));
    row.insert("modifiedby", Val::Ref("systemuser", user));
    row.insert("versionnumber", Val::Int(store.next_version()));
}

// --- create --------------------------------------------------------------------------------

/// A create of a platform table (publisher, solution, role, field security): the privilege it
/// needs, and for solution components the solution the request names.
fn platform_create(
    store: &Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &Table,
) -> Result<Option<security::Target>, ApiError> {
    if let Some(privilege) = security::create_privilege(table.logical) {
        security::require(store, ctx.user, privilege, table.logical)?;
    }
    if security::component_type(table.logical).is_some() {
        return security::solution_target(store, req).map(Some);
    }
    Ok(None)
}

/// An update of a customization (web resource, form): the privilege it needs, and the
/// solution a `MSCRM.SolutionUniqueName` header names (the component is recorded there, as an
/// update with the header does in Dataverse, PA-OPT).
fn platform_update(
    store: &Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &Table,
) -> Result<Option<security::Target>, ApiError> {
    let Some(privilege) = security::write_privilege(table.logical) else {
        return Ok(None);
    };
    security::require(store, ctx.user, privilege, table.logical)?;
    if req.header("MSCRM.SolutionUniqueName").is_some() {
        return security::solution_target(store, req).map(Some);
    }
    Ok(None)
}

pub fn create(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
) -> Result<Applied, ApiError> {
    let _ = sim;
    writable(table, "create")?;
    let body = body_object(req)?;
    let ch = parse_changes(store, table, &body, &req.content_ids, true)?;
    let id = ch.id.unwrap_or_else(Uuid::new_v4);
    let solution = platform_create(store, ctx, req, table)?;
    security::check_secured(store, ctx.user, table, &ch.values, true)?;
    let (undo, event) = create_row(store, ctx, req, table, id, ch.values)?;
    if let (Some(kind), Some(target)) = (security::component_type(table.logical), solution) {
        security::add_component(store, target.solution, kind, id);
    }
    Ok(Applied {
        response: write_response(store, ctx, req, table, id, true)?,
        undo,
        events: vec![event],
        bypass: req.bypass(),
    })
}

/// Inserts a new row with defaults, system columns and table rules; returns the Create event.
pub fn create_row(
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
    values: Vec<(&'static Column, Option<Val>)>,
) -> Result<(Vec<Undo>, Event), ApiError> {
    if store.contains(table.logical, &id) {
        return Err(ApiError::duplicate());
    }
    let mut row = Row::new();
    row.insert(table.pk, Val::Guid(id));
    for c in table.all_columns() {
        if matches!(c.kind, Kind::Bool) && c.access != Access::System {
            row.insert(c.name, Val::Bool(false));
        }
    }
    let mut state = None;
    let mut status = None;
    for (c, v) in &values {
        match (c.name, v) {
            ("statecode", Some(Val::Int(i))) => state = Some(*i),
            ("statuscode", Some(Val::Int(i))) => status = Some(*i),
            (_, Some(v)) => {
                row.insert(c.name, v.clone());
            }
            (_, None) => {
                row.remove(c.name);
            }
        }
    }
    apply_state(table, &mut row, state, status, true)?;
    recompute(table, &mut row);
    rules(store, table, &mut row, true)?;
    super::metadata::check_keys(store, table, id, &row)?;
    stamp(&mut row, store, ctx.user, true, table.owned);
    let undo = vec![store.put(table.logical, id, row.clone())];
    let mut ev = new_event(ctx, req, "Create", table, id, 1);
    let attrs = all_attrs(table, &row);
    ev.changed = attrs.iter().map(|(c, _)| c.name).collect();
    ev.input = vec![("Target", entity_param(table, id, attrs.clone()))];
    ev.parent_input = vec![
        ("Target", entity_param(table, id, attrs)),
        ("SuppressDuplicateDetection", Param::Bool(false)),
    ];
    ev.output = vec![("id", Param::Guid(id))];
    ev.post = Some(row);
    Ok((undo, ev))
}

// --- update --------------------------------------------------------------------------------

fn if_none_match(req: &ApiRequest) -> Option<&str> {
    req.header("If-None-Match")
        .map(str::trim)
        .filter(|v| !v.eq_ignore_ascii_case("null"))
}

pub fn patch(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
) -> Result<Applied, ApiError> {
    let _ = sim;
    writable(table, "update")?;
    let if_match = req.header("If-Match").map(str::trim);
    let body = body_object(req)?;
    let existing = store.get(table.logical, &id).cloned();
    match existing {
        None => {
            if if_match.is_some() {
                return Err(ApiError::row_not_found(table.logical, &id));
            }
            let ch = parse_changes(store, table, &body, &req.content_ids, true)?;
            if ch.id.is_some_and(|b| b != id) {
                return Err(ApiError::payload(format!(
                    "The key in the body does not match the key {id} in the URL."
                )));
            }
            let solution = platform_create(store, ctx, req, table)?;
            security::check_secured(store, ctx.user, table, &ch.values, true)?;
            let (undo, event) = create_row(store, ctx, req, table, id, ch.values)?;
            if let (Some(kind), Some(target)) = (security::component_type(table.logical), solution)
            {
                security::add_component(store, target.solution, kind, id);
            }
            Ok(Applied {
                response: write_response(store, ctx, req, table, id, true)?,
                undo,
                events: vec![event],
                bypass: req.bypass(),
            })
        }
        Some(row) => {
            if if_none_match(req) == Some("*") {
                return Err(ApiError::duplicate());
            }
            if let Some(m) = if_match
                && m != "*"
                && m != api::etag(&row)
            {
                return Err(ApiError::new(
                    StatusCode::PRECONDITION_FAILED,
                    code::CONCURRENCY,
                    "The version of the existing record doesn't match the RowVersion property provided.",
                ));
            }
            let ch = parse_changes(store, table, &body, &req.content_ids, false)?;
            if ch.id.is_some_and(|b| b != id) {
                return Err(ApiError::payload(format!(
                    "The key in the body does not match the key {id} in the URL."
                )));
            }
            let solution = platform_update(store, ctx, req, table)?;
            security::check_secured(store, ctx.user, table, &ch.values, false)?;
            let (undo, events) = update_row(store, ctx, req, table, id, ch.values)?;
            if let (Some(kind), Some(target)) = (security::component_type(table.logical), solution)
            {
                security::add_component(store, target.solution, kind, id);
            }
            Ok(Applied {
                response: write_response(store, ctx, req, table, id, false)?,
                undo,
                events,
                bypass: req.bypass(),
            })
        }
    }
}

/// Updates an existing row. A change of state and other columns in one request fires two
/// Update events, as Dataverse does: the other columns first, then statecode/statuscode.
pub fn update_row(
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
    values: Vec<(&'static Column, Option<Val>)>,
) -> Result<(Vec<Undo>, Vec<Event>), ApiError> {
    let old = store
        .get(table.logical, &id)
        .cloned()
        .ok_or_else(|| ApiError::row_not_found(table.logical, &id))?;
    let (state_values, others): (Vec<_>, Vec<_>) = values
        .into_iter()
        .partition(|(c, _)| matches!(c.name, "statecode" | "statuscode"));
    let mut undo = Vec::new();
    let mut events = Vec::new();
    let mut row = old.clone();
    let pk = col(table, table.pk)?;
    let system = |name: &str| col(table, name);

    if !others.is_empty() || state_values.is_empty() {
        let pre = row.clone();
        for (c, v) in &others {
            match v {
                Some(v) => {
                    row.insert(c.name, v.clone());
                }
                None => {
                    row.remove(c.name);
                }
            }
        }
        let computed = recompute(table, &mut row);
        rules(store, table, &mut row, false)?;
        super::metadata::check_keys(store, table, id, &row)?;
        stamp(&mut row, store, ctx.user, false, table.owned);
        undo.push(store.put(table.logical, id, row.clone()));
        let mut target: Vec<(&'static Column, Option<Val>)> = others.clone();
        let parent: Vec<(&'static Column, Option<Val>)> = others
            .iter()
            .cloned()
            .chain([(pk, Some(Val::Guid(id)))])
            .collect();
        target.push((pk, Some(Val::Guid(id))));
        for c in computed {
            target.push((system(c)?, row.get(c).cloned()));
        }
        target.push((system("modifiedon")?, row.get("modifiedon").cloned()));
        target.push((system("modifiedby")?, row.get("modifiedby").cloned()));
        target.push((system("modifiedonbehalfby")?, None));
        events.push(update_event(
            ctx,
            req,
            table,
            id,
            target,
            parent,
            pre,
            row.clone(),
        ));
    }
    if !state_values.is_empty() {
        let pre = row.clone();
        let state = state_values
            .iter()
            .find(|(c, _)| c.name == "statecode")
            .and_then(|(_, v)| v.as_ref())
            .and_then(|v| v.as_int());
        let status = state_values
            .iter()
            .find(|(c, _)| c.name == "statuscode")
            .and_then(|(_, v)| v.as_ref())
            .and_then(|v| v.as_int());
        if state.is_none() && status.is_none() {
            return Err(ApiError::bad_request(
                code::VALIDATION,
                "statecode and statuscode cannot be null.",
            ));
        }
        apply_state(table, &mut row, state, status, false)?;
        stamp(&mut row, store, ctx.user, false, table.owned);
        undo.push(store.put(table.logical, id, row.clone()));
        let state_cols = [system("statecode")?, system("statuscode")?];
        let mut target: Vec<(&'static Column, Option<Val>)> = state_cols
            .iter()
            .map(|c| (*c, row.get(c.name).cloned()))
            .collect();
        let parent: Vec<(&'static Column, Option<Val>)> = target
            .iter()
            .cloned()
            .chain([(pk, Some(Val::Guid(id)))])
            .collect();
        target.push((pk, Some(Val::Guid(id))));
        target.push((system("modifiedon")?, row.get("modifiedon").cloned()));
        target.push((system("modifiedby")?, row.get("modifiedby").cloned()));
        target.push((system("modifiedonbehalfby")?, None));
        events.push(update_event(
            ctx,
            req,
            table,
            id,
            target,
            parent,
            pre,
            row.clone(),
        ));
    }
    Ok((undo, events))
}

#[allow(clippy::too_many_arguments)]
fn update_event(
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
    target: Vec<(&'static Column, Option<Val>)>,
    parent: Vec<(&'static Column, Option<Val>)>,
    pre: Row,
    post: Row,
) -> Event {
    let mut ev = new_event(ctx, req, "Update", table, id, 1);
    ev.changed = target.iter().map(|(c, _)| c.name).collect();
    ev.input = vec![("Target", entity_param(table, id, target))];
    ev.parent_input = vec![
        ("Target", entity_param(table, id, parent)),
        ("SuppressDuplicateDetection", Param::Bool(false)),
    ];
    ev.pre = Some(pre);
    ev.post = Some(post);
    ev
}

/// `PUT set(id)/column` `{"value": …}` and `DELETE set(id)/column`.
pub fn put_property(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
    column: &'static Column,
) -> Result<Applied, ApiError> {
    let _ = sim;
    writable(table, "update")?;
    if !store.contains(table.logical, &id) {
        return Err(ApiError::row_not_found(table.logical, &id));
    }
    if matches!(column.access, Access::System | Access::CreateOnly)
        || matches!(column.kind, Kind::Pk)
    {
        return Err(ApiError::payload(format!(
            "The property '{}' cannot be updated.",
            column.name
        )));
    }
    let value = if req.method == axum::http::Method::DELETE {
        None
    } else {
        let body = body_object(req)?;
        let v = body
            .get("value")
            .ok_or_else(|| ApiError::payload("The request body must be {\"value\": …}."))?;
        Val::from_json(table, column, v)?
    };
    let values = vec![(column, value)];
    platform_update(store, ctx, req, table)?;
    security::check_secured(store, ctx.user, table, &values, false)?;
    let (undo, events) = update_row(store, ctx, req, table, id, values)?;
    Ok(Applied {
        response: ApiResponse::empty(StatusCode::NO_CONTENT),
        undo,
        events,
        bypass: req.bypass(),
    })
}

// --- delete --------------------------------------------------------------------------------

pub fn delete(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
) -> Result<Applied, ApiError> {
    let _ = sim;
    writable(table, "delete")?;
    if let Some(m) = req.header("If-Match").map(str::trim)
        && let Some(row) = store.get(table.logical, &id)
        && m != "*"
        && m != api::etag(row)
    {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            code::CONCURRENCY,
            "The version of the existing record doesn't match the RowVersion property provided.",
        ));
    }
    let mut undo = Vec::new();
    let mut events = Vec::new();
    delete_row(store, ctx, req, table, id, 1, &mut undo, &mut events)?;
    Ok(Applied {
        response: ApiResponse::empty(StatusCode::NO_CONTENT),
        undo,
        events,
        bypass: req.bypass(),
    })
}

fn ids_where(store: &Store, logical: &str, pred: impl Fn(&Row) -> bool) -> Vec<Uuid> {
    store
        .table_rows(logical)
        .filter(|(_, r)| pred(r))
        .map(|(id, _)| *id)
        .collect()
}

fn points_to(row: &Row, column: &str, id: Uuid) -> bool {
    row.get(column).and_then(|v| v.guid()) == Some(id)
}

/// Removes list members and keeps the lists' member counts.
fn remove_listmembers(store: &mut Store, ids: Vec<Uuid>, undo: &mut Vec<Undo>) {
    for mid in ids {
        if let Some((row, u)) = store.remove("listmember", &mid) {
            undo.push(u);
            if let Some(list) = row.get("listid").and_then(|v| v.guid()) {
                adjust_membercount(store, list, -1, undo);
            }
        }
    }
}

fn adjust_membercount(store: &mut Store, list: Uuid, delta: i64, undo: &mut Vec<Undo>) {
    if let Some(mut row) = store.get("list", &list).cloned() {
        let n = int(&row, "membercount").unwrap_or(0) + delta;
        row.insert("membercount", Val::Int(n.max(0)));
        row.insert("versionnumber", Val::Int(store.next_version()));
        undo.push(store.put("list", list, row));
    }
}

fn remove_rows(store: &mut Store, logical: &'static str, ids: Vec<Uuid>, undo: &mut Vec<Undo>) {
    for id in ids {
        if let Some((_, u)) = store.remove(logical, &id) {
            undo.push(u);
        }
    }
}

/// Deletes a row with Dataverse's cascades: intersect rows go, child campaign activities are
/// deleted (firing their own Delete at depth 2), lookups pointing at the row are cleared.
#[allow(clippy::too_many_arguments)]
fn delete_row(
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
    depth: i64,
    undo: &mut Vec<Undo>,
    events: &mut Vec<Event>,
) -> Result<(), ApiError> {
    let (row, u) = store
        .remove(table.logical, &id)
        .ok_or_else(|| ApiError::row_not_found(table.logical, &id))?;
    undo.push(u);
    let mut ev = new_event(ctx, req, "Delete", table, id, depth);
    ev.input = vec![("Target", Param::Ref(table.logical, id))];
    ev.parent_input = vec![("Target", Param::Ref(table.logical, id))];
    ev.pre = Some(row);
    events.push(ev);

    match table.logical {
        "contact" | "lead" | "account" => {
            let members = ids_where(store, "listmember", |r| points_to(r, "entityid", id));
            remove_listmembers(store, members, undo);
        }
        "list" => {
            let members = ids_where(store, "listmember", |r| points_to(r, "listid", id));
            remove_rows(store, "listmember", members, undo);
            let items = ids_where(store, "campaignitem", |r| points_to(r, "entityid", id));
            remove_rows(store, "campaignitem", items, undo);
            let items = ids_where(store, "campaignactivityitem", |r| {
                points_to(r, "itemid", id)
            });
            remove_rows(store, "campaignactivityitem", items, undo);
        }
        "campaign" => {
            let items = ids_where(store, "campaignitem", |r| points_to(r, "campaignid", id));
            remove_rows(store, "campaignitem", items, undo);
            let activities = ids_where(store, "campaignactivity", |r| {
                points_to(r, "regardingobjectid", id)
            });
            if let Some(t) = store.catalog().table("campaignactivity") {
                for a in activities {
                    delete_row(store, ctx, req, t, a, depth + 1, undo, events)?;
                }
            }
        }
        "campaignactivity" => {
            let items = ids_where(store, "campaignactivityitem", |r| {
                points_to(r, "campaignactivityid", id)
            });
            remove_rows(store, "campaignactivityitem", items, undo);
        }
        "serviceendpoint" => {
            let steps = ids_where(store, "sdkmessageprocessingstep", |r| {
                points_to(r, "eventhandler", id)
            });
            for s in steps {
                let images = ids_where(store, "sdkmessageprocessingstepimage", |r| {
                    points_to(r, "sdkmessageprocessingstepid", s)
                });
                remove_rows(store, "sdkmessageprocessingstepimage", images, undo);
                remove_rows(store, "sdkmessageprocessingstep", vec![s], undo);
            }
        }
        "sdkmessageprocessingstep" => {
            let images = ids_where(store, "sdkmessageprocessingstepimage", |r| {
                points_to(r, "sdkmessageprocessingstepid", id)
            });
            remove_rows(store, "sdkmessageprocessingstepimage", images, undo);
        }
        _ => {}
    }
    // Remove the link from rows that pointed at the deleted row.
    let tables: Vec<&'static Table> = store.catalog().tables().collect();
    for t in tables {
        let lookups: Vec<&'static str> = t
            .all_columns()
            .filter(|c| matches!(c.kind, Kind::Lookup(navs) if navs.iter().any(|n| n.target == table.logical)))
            .map(|c| c.name)
            .collect();
        if lookups.is_empty() {
            continue;
        }
        let hits: Vec<Uuid> = store
            .table_rows(t.logical)
            .filter(|(_, r)| lookups.iter().any(|c| matches!(r.get(c), Some(Val::Ref(lt, lid)) if *lt == table.logical && *lid == id)))
            .map(|(rid, _)| *rid)
            .collect();
        for rid in hits {
            if let Some(mut r) = store.get(t.logical, &rid).cloned() {
                for c in &lookups {
                    if matches!(r.get(c), Some(Val::Ref(lt, lid)) if *lt == table.logical && *lid == id)
                    {
                        r.remove(c);
                    }
                }
                undo.push(store.put(t.logical, rid, r));
            }
        }
    }
    Ok(())
}

// --- actions -------------------------------------------------------------------------------

fn guid_param(body: &Map<String, Value>, name: &str) -> Result<Uuid, ApiError> {
    let v = body
        .get(name)
        .ok_or_else(|| ApiError::payload(format!("The action parameter '{name}' is required.")))?;
    v.as_str().and_then(store::parse_guid).ok_or_else(|| {
        ApiError::payload(format!(
            "The action parameter '{name}' must be a GUID, not {v}."
        ))
    })
}

fn member_table(store: &Store, list: &Row) -> Result<&'static Table, ApiError> {
    let code_value = int(list, "createdfromcode").unwrap_or(0);
    store
        .catalog()
        .by_otc(code_value)
        .filter(|t| matches!(t.logical, "account" | "contact" | "lead"))
        .ok_or_else(|| {
            ApiError::bad_request(
                code::VALIDATION,
                format!("The list's createdfromcode {code_value} is not 1, 2 or 4."),
            )
        })
}

/// Checks that members may change: a static, unlocked list.
fn static_list(store: &Store, list_id: Uuid) -> Result<Row, ApiError> {
    let list = store
        .get("list", &list_id)
        .cloned()
        .ok_or_else(|| ApiError::row_not_found("list", &list_id))?;
    if list.get("type").and_then(|v| v.as_bool()) == Some(true) {
        return Err(ApiError::bad_request(
            code::REFUSED,
            "Members cannot be added to or removed from a dynamic marketing list; its members come from its query.",
        ));
    }
    if list.get("lockstatus").and_then(|v| v.as_bool()) == Some(true) {
        return Err(ApiError::bad_request(
            code::REFUSED,
            "The marketing list is locked; members cannot be added or removed.",
        ));
    }
    Ok(list)
}

/// Checks that a member exists and has the list's member type.
fn check_member(store: &Store, member_table: &'static Table, id: Uuid) -> Result<(), ApiError> {
    if store.contains(member_table.logical, &id) {
        return Ok(());
    }
    for other in ["account", "contact", "lead"] {
        if store.contains(other, &id) {
            return Err(ApiError::bad_request(
                code::VALIDATION,
                format!(
                    "The member {id} is a {other}, but the list's members are of type {}.",
                    member_table.logical
                ),
            ));
        }
    }
    Err(ApiError::row_not_found(member_table.logical, &id))
}

fn find_listmember(store: &Store, list: Uuid, member: Uuid) -> Option<Uuid> {
    store
        .table_rows("listmember")
        .find(|(_, r)| points_to(r, "listid", list) && points_to(r, "entityid", member))
        .map(|(id, _)| *id)
}

/// Adds a member unless it is one already; returns the listmember id.
fn add_listmember(
    store: &mut Store,
    ctx: &Ctx,
    list: Uuid,
    member_table: &'static Table,
    member: Uuid,
    undo: &mut Vec<Undo>,
) -> Uuid {
    if let Some(existing) = find_listmember(store, list, member) {
        return existing;
    }
    insert_listmember(store, ctx, list, member_table, member, undo)
}

/// Adds a member the caller knows is not one yet; returns the listmember id.
fn insert_listmember(
    store: &mut Store,
    ctx: &Ctx,
    list: Uuid,
    member_table: &'static Table,
    member: Uuid,
    undo: &mut Vec<Undo>,
) -> Uuid {
    let id = Uuid::new_v4();
    let mut row = Row::new();
    row.insert("listmemberid", Val::Guid(id));
    row.insert("listid", Val::Ref("list", list));
    row.insert("entityid", Val::Ref(member_table.logical, member));
    row.insert("entitytype", Val::Str(member_table.logical.to_string()));
    stamp(&mut row, store, ctx.user, true, false);
    undo.push(store.put("listmember", id, row));
    adjust_membercount(store, list, 1, undo);
    id
}

fn action_event(
    ctx: &Ctx,
    req: &ApiRequest,
    store: &Store,
    message: &'static str,
    table: &'static Table,
    id: Uuid,
) -> Event {
    let mut ev = new_event(ctx, req, message, table, id, 1);
    ev.post = store.get(table.logical, &id).cloned();
    ev
}

fn action_response(ctx: &Ctx, response_type: &str, members: Vec<(&str, Value)>) -> ApiResponse {
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!(
            "{}$metadata#Microsoft.Dynamics.CRM.{response_type}",
            ctx.root()
        )),
    );
    for (k, v) in members {
        body.insert(k.to_string(), v);
    }
    ApiResponse::json(StatusCode::OK, Value::Object(body))
}

fn require_row(store: &Store, table: &Table, id: Uuid) -> Result<(), ApiError> {
    if store.contains(table.logical, &id) {
        Ok(())
    } else {
        Err(ApiError::row_not_found(table.logical, &id))
    }
}

fn entity_name_param(body: &Map<String, Value>) -> Result<String, ApiError> {
    let name = body
        .get("EntityName")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ApiError::payload("The action parameter 'EntityName' is required."))?;
    if name != "list" {
        return Err(ApiError::bad_request(
            code::VALIDATION,
            format!(
                "EntityName '{name}' is not supported by the sandbox; campaigns and campaign activities take marketing lists ('list')."
            ),
        ));
    }
    Ok(name.to_string())
}

/// `POST set(id)/Microsoft.Dynamics.CRM.<action>`.
#[allow(clippy::too_many_arguments)]
pub fn bound_action(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
    action: &str,
) -> Result<Applied, ApiError> {
    let _ = sim;
    let known = matches!(
        (table.logical, action),
        ("list", "AddMemberList" | "RemoveMemberList")
            | ("campaign", "AddItemCampaign" | "RemoveItemCampaign")
            | (
                "campaignactivity",
                "AddItemCampaignActivity" | "RemoveItemCampaignActivity"
            )
    );
    if !known {
        return Err(ApiError::segment_not_found(&format!(
            "Microsoft.Dynamics.CRM.{action}"
        )));
    }
    require_row(store, table, id)?;
    let body = body_object(req)?;
    let mut undo = Vec::new();
    let (response, event) = match action {
        "AddMemberList" => {
            let list = static_list(store, id)?;
            let mt = member_table(store, &list)?;
            let member = guid_param(&body, "EntityId")?;
            check_member(store, mt, member)?;
            let lm = add_listmember(store, ctx, id, mt, member, &mut undo);
            let mut ev = action_event(ctx, req, store, "AddMember", table, id);
            ev.input = vec![
                ("ListId", Param::Guid(id)),
                ("EntityId", Param::Guid(member)),
            ];
            ev.parent_input = ev.input.clone();
            ev.output = vec![("Id", Param::Guid(lm))];
            (
                // The complex type's property is `Id` (ref §3.4, LRN-addmember mt592997).
                action_response(
                    ctx,
                    "AddMemberListResponse",
                    vec![("Id", json!(lm.to_string()))],
                ),
                ev,
            )
        }
        "RemoveMemberList" => {
            static_list(store, id)?;
            let member = guid_param(&body, "EntityId")?;
            if let Some(lm) = find_listmember(store, id, member) {
                remove_listmembers(store, vec![lm], &mut undo);
            }
            let mut ev = action_event(ctx, req, store, "RemoveMember", table, id);
            ev.input = vec![
                ("ListId", Param::Guid(id)),
                ("EntityId", Param::Guid(member)),
            ];
            ev.parent_input = ev.input.clone();
            (ApiResponse::empty(StatusCode::NO_CONTENT), ev)
        }
        "AddItemCampaign" | "AddItemCampaignActivity" => {
            let activity = action == "AddItemCampaignActivity";
            let item = guid_param(&body, if activity { "ItemId" } else { "EntityId" })?;
            let entity_name = entity_name_param(&body)?;
            let list_table = store.catalog().table("list").unwrap_or(table);
            require_row(store, list_table, item)?;
            let (intersect, parent_col, item_col, type_col) = if activity {
                (
                    "campaignactivityitem",
                    "campaignactivityid",
                    "itemid",
                    "itemobjecttypecode",
                )
            } else {
                ("campaignitem", "campaignid", "entityid", "entitytype")
            };
            let existing = store
                .table_rows(intersect)
                .find(|(_, r)| points_to(r, parent_col, id) && points_to(r, item_col, item))
                .map(|(i, _)| *i);
            let item_row_id = match existing {
                Some(i) => i,
                None => {
                    let i = Uuid::new_v4();
                    let mut row = Row::new();
                    row.insert(
                        if activity {
                            "campaignactivityitemid"
                        } else {
                            "campaignitemid"
                        },
                        Val::Guid(i),
                    );
                    row.insert(parent_col, Val::Ref(table.logical, id));
                    row.insert(item_col, Val::Guid(item));
                    row.insert(type_col, Val::Str(entity_name.clone()));
                    stamp(&mut row, store, ctx.user, true, false);
                    undo.push(store.put(intersect, i, row));
                    i
                }
            };
            let mut ev = action_event(ctx, req, store, "AddItem", table, id);
            if activity {
                ev.input = vec![
                    ("CampaignActivityId", Param::Guid(id)),
                    ("ItemId", Param::Guid(item)),
                    ("EntityName", Param::Str(entity_name)),
                ];
                ev.output = vec![("CampaignActivityItemId", Param::Guid(item_row_id))];
            } else {
                ev.input = vec![
                    ("CampaignId", Param::Guid(id)),
                    ("EntityId", Param::Guid(item)),
                    ("EntityName", Param::Str(entity_name)),
                ];
                ev.output = vec![("CampaignItemId", Param::Guid(item_row_id))];
            }
            ev.parent_input = ev.input.clone();
            let resp = if activity {
                action_response(
                    ctx,
                    "AddItemCampaignActivityResponse",
                    vec![("CampaignActivityItemId", json!(item_row_id.to_string()))],
                )
            } else {
                action_response(
                    ctx,
                    "AddItemCampaignResponse",
                    vec![("CampaignItemId", json!(item_row_id.to_string()))],
                )
            };
            (resp, ev)
        }
        _ => {
            // RemoveItemCampaign / RemoveItemCampaignActivity
            let activity = action == "RemoveItemCampaignActivity";
            let item = guid_param(&body, if activity { "ItemId" } else { "EntityId" })?;
            let (intersect, parent_col, item_col) = if activity {
                ("campaignactivityitem", "campaignactivityid", "itemid")
            } else {
                ("campaignitem", "campaignid", "entityid")
            };
            let rows = ids_where(store, intersect, |r| {
                points_to(r, parent_col, id) && points_to(r, item_col, item)
            });
            remove_rows(
                store,
                if activity {
                    "campaignactivityitem"
                } else {
                    "campaignitem"
                },
                rows,
                &mut undo,
            );
            let mut ev = action_event(ctx, req, store, "RemoveItem", table, id);
            ev.input = if activity {
                vec![
                    ("CampaignActivityId", Param::Guid(id)),
                    ("ItemId", Param::Guid(item)),
                ]
            } else {
                vec![
                    ("CampaignId", Param::Guid(id)),
                    ("EntityId", Param::Guid(item)),
                ]
            };
            ev.parent_input = ev.input.clone();
            (ApiResponse::empty(StatusCode::NO_CONTENT), ev)
        }
    };
    Ok(Applied {
        response,
        undo,
        events: vec![event],
        bypass: req.bypass(),
    })
}

/// `POST AddListMembersList` (unbound).
pub fn unbound_action(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    action: &str,
) -> Result<Applied, ApiError> {
    if action == "BulkDelete" {
        return super::bulk::bulk_delete(sim, store, ctx, req);
    }
    if action != "AddListMembersList" {
        return Err(ApiError::segment_not_found(action));
    }
    let body = body_object(req)?;
    let list_param = body
        .get("List")
        .and_then(|v| v.as_object())
        .ok_or_else(|| ApiError::payload("The action parameter 'List' is required."))?;
    let list_id = list_param
        .get("listid")
        .and_then(|v| v.as_str())
        .and_then(store::parse_guid)
        .ok_or_else(|| ApiError::payload("The action parameter 'List' must carry a 'listid'."))?;
    let list = static_list(store, list_id)?;
    let mt = member_table(store, &list)?;
    let members = body
        .get("Members")
        .and_then(|v| v.as_array())
        .ok_or_else(|| {
            ApiError::payload("The action parameter 'Members' is required (an array).")
        })?;
    let mut ids = Vec::new();
    for m in members {
        let obj = m.as_object().ok_or_else(|| {
            ApiError::payload("Each member must be an object with @odata.type and its primary key.")
        })?;
        let typ = obj.get("@odata.type").and_then(|v| v.as_str()).map(|t| {
            t.trim_start_matches('#')
                .trim_start_matches("Microsoft.Dynamics.CRM.")
        });
        let table = match typ {
            Some(t) => store
                .catalog()
                .table(t)
                .ok_or_else(|| ApiError::payload(format!("'{t}' is not a known member type.")))?,
            None => ["account", "contact", "lead"]
                .iter()
                .filter_map(|t| store.catalog().table(t))
                .find(|t| obj.contains_key(t.pk))
                .ok_or_else(|| {
                    ApiError::payload("A member names neither @odata.type nor a primary key.")
                })?,
        };
        if table.logical != mt.logical {
            return Err(ApiError::bad_request(
                code::VALIDATION,
                format!(
                    "A member of type {} cannot be added to a list of {} members; all members must be of the list's type.",
                    table.logical, mt.logical
                ),
            ));
        }
        let id = obj
            .get(table.pk)
            .and_then(|v| v.as_str())
            .and_then(store::parse_guid)
            .ok_or_else(|| ApiError::payload(format!("A member has no valid '{}'.", table.pk)))?;
        check_member(store, mt, id)?;
        ids.push(id);
    }
    let mut undo = Vec::new();
    // The list's members, read once: checking each added member against every listmember row
    // made seeding a list of 100,000 quadratic.
    let mut present: std::collections::HashSet<Uuid> = store
        .table_rows("listmember")
        .filter(|(_, r)| points_to(r, "listid", list_id))
        .filter_map(|(_, r)| r.get("entityid").and_then(Val::guid))
        .collect();
    for id in &ids {
        if present.insert(*id) {
            insert_listmember(store, ctx, list_id, mt, *id, &mut undo);
        }
    }
    let list_table = store
        .catalog()
        .table("list")
        .ok_or_else(|| ApiError::segment_not_found("lists"))?;
    let mut ev = action_event(ctx, req, store, "AddListMembers", list_table, list_id);
    ev.input = vec![
        ("ListId", Param::Guid(list_id)),
        ("MemberIds", Param::Guids(ids)),
    ];
    ev.parent_input = ev.input.clone();
    Ok(Applied {
        response: ApiResponse::empty(StatusCode::NO_CONTENT),
        undo,
        events: vec![ev],
        bypass: req.bypass(),
    })
}

/// Adds many static members to a list at once, as `AddListMembersList` would but without a
/// webhook, an undo record or a member count update per member (test and benchmark data, see
/// `seeding.rs`). Members already in the list are skipped; returns how many were added.
pub fn bulk_add_listmembers(
    store: &mut Store,
    ctx: &Ctx,
    list_id: Uuid,
    members: impl Iterator<Item = Uuid>,
) -> Result<usize, ApiError> {
    let list = static_list(store, list_id)?;
    let mt = member_table(store, &list)?;
    let mut present: std::collections::HashSet<Uuid> = store
        .table_rows("listmember")
        .filter(|(_, r)| points_to(r, "listid", list_id))
        .filter_map(|(_, r)| r.get("entityid").and_then(Val::guid))
        .collect();
    let mut added = 0;
    for member in members {
        check_member(store, mt, member)?;
        if !present.insert(member) {
            continue;
        }
        let id = Uuid::new_v4();
        let mut row = Row::new();
        row.insert("listmemberid", Val::Guid(id));
        row.insert("listid", Val::Ref("list", list_id));
        row.insert("entityid", Val::Ref(mt.logical, member));
        row.insert("entitytype", Val::Str(mt.logical.to_string()));
        stamp(&mut row, store, ctx.user, true, false);
        store.put("listmember", id, row);
        added += 1;
    }
    let mut undo = Vec::new();
    adjust_membercount(store, list_id, added as i64, &mut undo);
    Ok(added)
}

/// `…/<navigation>/$ref`: associating through the intersect tables is refused, as Dataverse
/// refuses it for list members.
pub fn refuse_associate(table: &Table, nav: &str) -> ApiError {
    match schema::relationship(nav) {
        Some(rel) if rel.intersect == "listmember" => {
            ApiError::bad_request(code::REFUSED, "Associate is not supported for ListMember")
        }
        Some(_) => ApiError::bad_request(
            code::REFUSED,
            format!(
                "Associating records through '{nav}' is not supported by the sandbox; use AddItemCampaign or AddItemCampaignActivity."
            ),
        ),
        None => ApiError::segment_not_found(&format!("{}/{nav}", table.set)),
    }
}

/// Inserts a row as if an administrator created it, without webhooks (test and demo data).
pub fn seed(
    store: &mut Store,
    ctx: &Ctx,
    table: &'static Table,
    body: &Map<String, Value>,
) -> Result<Uuid, ApiError> {
    let req = ApiRequest::new(
        axum::http::Method::POST,
        table.set,
        None,
        Default::default(),
        Default::default(),
    );
    let ch = parse_changes(store, table, body, &HashMap::new(), true)?;
    let id = ch.id.unwrap_or_else(Uuid::new_v4);
    create_row(store, ctx, &req, table, id, ch.values)?;
    Ok(id)
}
