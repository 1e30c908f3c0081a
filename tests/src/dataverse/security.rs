//! Security and solutions: the seeded roles and privileges of a new org, the privilege checks
//! of customization requests, column security on writes, role privileges
//! (`AddPrivilegesRole`, `RetrieveRolePrivilegesRole`), associating users with roles and field
//! security profiles (`…/$ref`), and recording components in the solution a request names
//! (`MSCRM.SolutionUniqueName`).
//!
//! Sandbox choices (the references name the privileges but not every check): customization
//! requests need the privileges below; data privileges of roles are not enforced on business
//! tables. "System Administrator" holds every privilege.

use super::api::{ApiRequest, ApiResponse, Applied, Ctx};
use super::catalog::{Catalog, stable_id};
use super::error::ApiError;
use super::schema::{Column, Table};
use super::store::{self, Row, Store, Val};
use super::{Shared, webhooks::Bypass};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// `PrivilegeDenied`.
pub const PRIVILEGE_DENIED: &str = "0x80040220";
pub const SYSTEM_ADMINISTRATOR: &str = "System Administrator";
pub const SYSTEM_CUSTOMIZER: &str = "System Customizer";
pub const BASIC_USER: &str = "Basic User";

/// Privileges that are not a table's own.
const MISC_PRIVILEGES: [&str; 17] = [
    "prvCreateEntity",
    "prvReadEntity",
    "prvWriteEntity",
    "prvDeleteEntity",
    "prvCreateAttribute",
    "prvReadAttribute",
    "prvWriteAttribute",
    "prvDeleteAttribute",
    "prvCreateRelationship",
    "prvReadRelationship",
    "prvWriteRelationship",
    "prvDeleteRelationship",
    "prvCreateEntityKey",
    "prvReadEntityKey",
    "prvDeleteEntityKey",
    "prvPublishCustomizations",
    "prvAssignRole",
];

/// Standard tables with privileges of their own (intersects have none).
const PRIVILEGED_TABLES: [&str; 14] = [
    "account",
    "contact",
    "lead",
    "list",
    "campaign",
    "campaignactivity",
    "systemuser",
    "businessunit",
    "role",
    "publisher",
    "solution",
    "fieldsecurityprofile",
    "webresource",
    "systemform",
];

/// The privilege a create of a platform table needs.
pub fn create_privilege(table: &str) -> Option<&'static str> {
    match table {
        "publisher" => Some("prvCreatePublisher"),
        "solution" => Some("prvCreateSolution"),
        "role" => Some("prvCreateRole"),
        "fieldsecurityprofile" => Some("prvCreateFieldSecurityProfile"),
        "fieldpermission" => Some("prvWriteFieldSecurityProfile"),
        "webresource" => Some("prvCreateWebResource"),
        "systemform" => Some("prvCreateSystemForm"),
        _ => None,
    }
}

/// The privilege an update of a platform table needs (customizations: web resources, forms).
pub fn write_privilege(table: &str) -> Option<&'static str> {
    match table {
        "webresource" => Some("prvWriteWebResource"),
        "systemform" => Some("prvWriteSystemForm"),
        _ => None,
    }
}

/// The solution component type of a platform table's rows.
pub fn component_type(table: &str) -> Option<i64> {
    match table {
        "role" => Some(20),
        "fieldsecurityprofile" => Some(70),
        "fieldpermission" => Some(71),
        "systemform" => Some(60),
        "webresource" => Some(61),
        _ => None,
    }
}

fn privilege_id(name: &str) -> Uuid {
    stable_id(&format!("privilege:{}", name.to_ascii_lowercase()))
}

/// Adds a privilege row (once).
pub fn add_privilege(store: &mut Store, name: &str, any_depth: bool) {
    let id = privilege_id(name);
    if store.contains("privilege", &id) {
        return;
    }
    let mut row = Row::new();
    row.insert("privilegeid", Val::Guid(id));
    row.insert("name", Val::Str(name.to_string()));
    row.insert("accessright", Val::Int(0));
    row.insert("canbebasic", Val::Bool(any_depth));
    row.insert("canbelocal", Val::Bool(any_depth));
    row.insert("canbedeep", Val::Bool(any_depth));
    row.insert("canbeglobal", Val::Bool(true));
    row.insert("versionnumber", Val::Int(store.next_version()));
    store.put("privilege", id, row);
}

fn find_by_name(store: &Store, table: &str, name: &str) -> Option<Uuid> {
    store
        .table_rows(table)
        .find(|(_, r)| r.get("name").and_then(|v| v.as_str()) == Some(name))
        .map(|(id, _)| *id)
}

fn grant(store: &mut Store, role: Uuid, privilege: Uuid, mask: i64) {
    let existing = store
        .table_rows("roleprivileges")
        .find(|(_, r)| {
            r.get("roleid").and_then(|v| v.guid()) == Some(role)
                && r.get("privilegeid").and_then(|v| v.guid()) == Some(privilege)
        })
        .map(|(id, r)| (*id, r.clone()));
    let (id, mut row) = existing.unwrap_or_else(|| (Uuid::new_v4(), Row::new()));
    row.insert("roleprivilegeid", Val::Guid(id));
    row.insert("roleid", Val::Guid(role));
    row.insert("privilegeid", Val::Guid(privilege));
    row.insert("privilegedepthmask", Val::Int(mask));
    row.insert("versionnumber", Val::Int(store.next_version()));
    store.put("roleprivileges", id, row);
}

fn add_role(store: &mut Store, name: &str, business_unit: Uuid) -> Uuid {
    let id = stable_id(&format!("role:{name}"));
    let mut row = Row::new();
    row.insert("roleid", Val::Guid(id));
    row.insert("name", Val::Str(name.to_string()));
    row.insert("businessunitid", Val::Ref("businessunit", business_unit));
    row.insert("versionnumber", Val::Int(store.next_version()));
    store.put("role", id, row);
    id
}

/// Assigns a role to a user (once).
pub fn assign_role(store: &mut Store, user: Uuid, role: Uuid) {
    let exists = store.table_rows("systemuserroles").any(|(_, r)| {
        r.get("systemuserid").and_then(|v| v.guid()) == Some(user)
            && r.get("roleid").and_then(|v| v.guid()) == Some(role)
    });
    if exists {
        return;
    }
    let id = Uuid::new_v4();
    let mut row = Row::new();
    row.insert("systemuserroleid", Val::Guid(id));
    row.insert("systemuserid", Val::Guid(user));
    row.insert("roleid", Val::Guid(role));
    row.insert("versionnumber", Val::Int(store.next_version()));
    store.put("systemuserroles", id, row);
}

/// What a new org has: privileges of the standard tables and of customization, the roles
/// System Administrator, System Customizer and Basic User, the default publisher.
pub fn seed(store: &mut Store, business_unit: Uuid, org_name: &str) {
    let catalog_tables: Vec<&'static Table> = store.catalog().tables().collect();
    for table in catalog_tables {
        if !PRIVILEGED_TABLES.contains(&table.logical) {
            continue;
        }
        let entity = store.catalog().entity(table);
        for (name, any_depth) in Catalog::table_privileges(&entity.privilege_entity, table.owned) {
            add_privilege(store, &name, any_depth);
        }
    }
    for name in MISC_PRIVILEGES {
        add_privilege(store, name, false);
    }
    add_role(store, SYSTEM_ADMINISTRATOR, business_unit);
    let customizer = add_role(store, SYSTEM_CUSTOMIZER, business_unit);
    let basic = add_role(store, BASIC_USER, business_unit);
    let global = 8;
    let names: Vec<String> = store
        .table_rows("privilege")
        .filter_map(|(_, r)| r.get("name").and_then(|v| v.as_str()).map(str::to_string))
        .collect();
    for name in names {
        let customizing = MISC_PRIVILEGES.contains(&name.as_str()) && name != "prvAssignRole"
            || name.ends_with("Publisher")
            || name.ends_with("Solution")
            || name.ends_with("WebResource")
            || name.ends_with("SystemForm")
            || name.starts_with("prvRead");
        if customizing {
            grant(store, customizer, privilege_id(&name), global);
        }
        // Every user reads forms and web resources: the app is made of them.
        let reading = name.starts_with("prvRead")
            && (name.ends_with("Entity")
                || name.ends_with("WebResource")
                || name.ends_with("SystemForm")
                || name.ends_with("Attribute")
                || name.ends_with("Relationship")
                || name.ends_with("EntityKey")
                || [
                    "Contact",
                    "Lead",
                    "Account",
                    "List",
                    "Campaign",
                    "Activity",
                    "User",
                    "BusinessUnit",
                ]
                .iter()
                .any(|e| name == format!("prvRead{e}")));
        if reading {
            grant(store, basic, privilege_id(&name), global);
        }
    }
    let publisher = stable_id("publisher:default");
    let mut row = Row::new();
    row.insert("publisherid", Val::Guid(publisher));
    row.insert(
        "uniquename",
        Val::Str(format!("DefaultPublisher{org_name}")),
    );
    row.insert(
        "friendlyname",
        Val::Str(format!("Default Publisher for {org_name}")),
    );
    row.insert("customizationprefix", Val::Str("new".into()));
    row.insert("customizationoptionvalueprefix", Val::Int(10_000));
    row.insert("isreadonly", Val::Bool(false));
    row.insert("versionnumber", Val::Int(store.next_version()));
    store.put("publisher", publisher, row);
}

/// Assigns the configured roles to a client's user.
pub fn assign_roles(store: &mut Store, user: Uuid, roles: &[String]) {
    for name in roles {
        if let Some(role) = find_by_name(store, "role", name) {
            assign_role(store, user, role);
        }
    }
}

fn roles_of(store: &Store, user: Uuid) -> Vec<Uuid> {
    store
        .table_rows("systemuserroles")
        .filter(|(_, r)| r.get("systemuserid").and_then(|v| v.guid()) == Some(user))
        .filter_map(|(_, r)| r.get("roleid").and_then(|v| v.guid()))
        .collect()
}

pub fn is_system_administrator(store: &Store, user: Uuid) -> bool {
    let admin = stable_id(&format!("role:{SYSTEM_ADMINISTRATOR}"));
    roles_of(store, user).contains(&admin)
}

/// Whether a user holds a privilege through one of its roles.
pub fn holds(store: &Store, user: Uuid, privilege: &str) -> bool {
    if is_system_administrator(store, user) {
        return true;
    }
    let wanted = privilege_id(privilege);
    let roles = roles_of(store, user);
    store.table_rows("roleprivileges").any(|(_, r)| {
        r.get("privilegeid").and_then(|v| v.guid()) == Some(wanted)
            && r.get("roleid")
                .and_then(|v| v.guid())
                .is_some_and(|role| roles.contains(&role))
    })
}

/// Refuses a user without the privilege as Dataverse does (403, `PrivilegeDenied`, the message
/// naming the privilege).
pub fn require(store: &Store, user: Uuid, privilege: &str, entity: &str) -> Result<(), ApiError> {
    if holds(store, user, privilege) {
        return Ok(());
    }
    let roles = roles_of(store, user);
    let count = store
        .table_rows("roleprivileges")
        .filter(|(_, r)| {
            r.get("roleid")
                .and_then(|v| v.guid())
                .is_some_and(|role| roles.contains(&role))
        })
        .count();
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        PRIVILEGE_DENIED,
        format!(
            "Principal user (Id={user}, type=8, roleCount={}, privilegeCount={count}), is missing {privilege} privilege (Id={}) on OTC=0 for entity '{entity}'.",
            roles.len(),
            privilege_id(privilege)
        ),
    ))
}

/// Column security: a secured column may be set only by system administrators and members
/// of a field security profile that allows it.
pub fn check_secured(
    store: &Store,
    user: Uuid,
    table: &Table,
    values: &[(&'static Column, Option<Val>)],
    creating: bool,
) -> Result<(), ApiError> {
    let catalog = store.catalog();
    let secured: Vec<&str> = values
        .iter()
        .map(|(c, _)| c.name)
        .filter(|c| catalog.is_secured(table.logical, c))
        .collect();
    if secured.is_empty() || is_system_administrator(store, user) {
        return Ok(());
    }
    let right = if creating { "cancreate" } else { "canupdate" };
    let profiles: Vec<Uuid> = store
        .table_rows("systemuserprofiles")
        .filter(|(_, r)| r.get("systemuserid").and_then(|v| v.guid()) == Some(user))
        .filter_map(|(_, r)| r.get("fieldsecurityprofileid").and_then(|v| v.guid()))
        .collect();
    for column in secured {
        let allowed = store.table_rows("fieldpermission").any(|(_, r)| {
            r.get("fieldsecurityprofileid")
                .and_then(|v| v.guid())
                .is_some_and(|p| profiles.contains(&p))
                && r.get("entityname").and_then(|v| v.as_str()) == Some(table.logical)
                && r.get("attributelogicalname").and_then(|v| v.as_str()) == Some(column)
                && r.get(right).and_then(|v| v.as_int()) == Some(4)
        });
        if !allowed {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                PRIVILEGE_DENIED,
                format!(
                    "The user does not have {} permissions to a secured field '{column}' of '{}'. The requested operation could not be completed.",
                    if creating { "create" } else { "update" },
                    table.logical
                ),
            ));
        }
    }
    Ok(())
}

/// The solution a customization request names, with its publisher's prefixes.
#[derive(Debug, Clone)]
pub struct Target {
    pub solution: Option<Uuid>,
    pub prefix: String,
    pub option_prefix: i64,
}

/// Reads `MSCRM.SolutionUniqueName`: the solution must exist and be unmanaged. Without the
/// header, components go to the default solution and use the default publisher's prefix.
pub fn solution_target(store: &Store, req: &ApiRequest) -> Result<Target, ApiError> {
    let publisher_of = |publisher: Uuid| -> Result<(String, i64), ApiError> {
        let row = store
            .get("publisher", &publisher)
            .ok_or_else(|| ApiError::row_not_found("publisher", &publisher))?;
        Ok((
            row.get("customizationprefix")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string(),
            row.get("customizationoptionvalueprefix")
                .and_then(|v| v.as_int())
                .unwrap_or(10_000),
        ))
    };
    let Some(unique) = req.header("MSCRM.SolutionUniqueName").map(str::trim) else {
        let (prefix, option_prefix) = publisher_of(stable_id("publisher:default"))?;
        return Ok(Target {
            solution: None,
            prefix,
            option_prefix,
        });
    };
    let (id, row) = store
        .table_rows("solution")
        .find(|(_, r)| {
            r.get("uniquename")
                .and_then(|v| v.as_str())
                .is_some_and(|n| n.eq_ignore_ascii_case(unique))
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                super::error::code::NOT_FOUND,
                format!(
                    "No solution with the unique name '{unique}' exists (MSCRM.SolutionUniqueName)."
                ),
            )
        })?;
    if row.get("ismanaged").and_then(|v| v.as_bool()) == Some(true) {
        return Err(ApiError::bad_request(
            super::error::code::REFUSED,
            format!("The solution '{unique}' is managed; components cannot be added to it."),
        ));
    }
    let publisher = row
        .get("publisherid")
        .and_then(|v| v.guid())
        .unwrap_or_default();
    let (prefix, option_prefix) = publisher_of(publisher)?;
    Ok(Target {
        solution: Some(*id),
        prefix,
        option_prefix,
    })
}

/// Records a component in the solution (once).
pub fn add_component(store: &mut Store, solution: Option<Uuid>, component_type: i64, object: Uuid) {
    let Some(solution) = solution else {
        return;
    };
    let exists = store.table_rows("solutioncomponent").any(|(_, r)| {
        r.get("solutionid").and_then(|v| v.guid()) == Some(solution)
            && r.get("objectid").and_then(|v| v.guid()) == Some(object)
    });
    if exists {
        return;
    }
    let id = Uuid::new_v4();
    let mut row = Row::new();
    row.insert("solutioncomponentid", Val::Guid(id));
    row.insert("solutionid", Val::Ref("solution", solution));
    row.insert("componenttype", Val::Int(component_type));
    row.insert("objectid", Val::Guid(object));
    row.insert("rootcomponentbehavior", Val::Int(0));
    row.insert("versionnumber", Val::Int(store.next_version()));
    store.put("solutioncomponent", id, row);
}

fn no_events(response: ApiResponse) -> Applied {
    Applied {
        response,
        undo: Vec::new(),
        events: Vec::new(),
        bypass: Bypass::default(),
    }
}

fn depth_mask(depth: &Value) -> Result<i64, ApiError> {
    match depth {
        Value::String(s) => match s.as_str() {
            "Basic" => Ok(1),
            "Local" => Ok(2),
            "Deep" => Ok(4),
            "Global" => Ok(8),
            other => Err(ApiError::payload(format!(
                "'{other}' is not a PrivilegeDepth (Basic, Local, Deep, Global)."
            ))),
        },
        Value::Number(n) => match n.as_i64() {
            Some(0) => Ok(1),
            Some(1) => Ok(2),
            Some(2) => Ok(4),
            Some(3) => Ok(8),
            _ => Err(ApiError::payload(format!(
                "{n} is not a PrivilegeDepth (0–3)."
            ))),
        },
        _ => Err(ApiError::payload("Depth must be a PrivilegeDepth.")),
    }
}

/// `roles(<id>)/Microsoft.Dynamics.CRM.AddPrivilegesRole {"Privileges": [RolePrivilege…]}`.
pub fn add_privileges(
    store: &mut Store,
    ctx: &Ctx,
    role: Uuid,
    body: &Map<String, Value>,
) -> Result<Applied, ApiError> {
    require(store, ctx.user, "prvWriteRole", "role")?;
    if !store.contains("role", &role) {
        return Err(ApiError::row_not_found("role", &role));
    }
    let list = body
        .get("Privileges")
        .and_then(|v| v.as_array())
        .ok_or_else(|| {
            ApiError::payload("The parameter 'Privileges' (Collection(RolePrivilege)) is required.")
        })?;
    let mut grants = Vec::new();
    for p in list {
        let obj = p
            .as_object()
            .ok_or_else(|| ApiError::payload("Each privilege must be a RolePrivilege object."))?;
        if let Some(t) = obj.get("@odata.type").and_then(|v| v.as_str())
            && t.trim_start_matches('#') != "Microsoft.Dynamics.CRM.RolePrivilege"
        {
            return Err(ApiError::payload(format!(
                "'{t}' is not Microsoft.Dynamics.CRM.RolePrivilege."
            )));
        }
        let id = obj
            .get("PrivilegeId")
            .and_then(|v| v.as_str())
            .and_then(store::parse_guid)
            .ok_or_else(|| ApiError::payload("A RolePrivilege needs a PrivilegeId (GUID)."))?;
        let mask = depth_mask(obj.get("Depth").unwrap_or(&Value::Null))?;
        let privilege = store
            .get("privilege", &id)
            .ok_or_else(|| ApiError::row_not_found("privilege", &id))?;
        let allowed = match mask {
            1 => "canbebasic",
            2 => "canbelocal",
            4 => "canbedeep",
            _ => "canbeglobal",
        };
        if privilege.get(allowed).and_then(|v| v.as_bool()) != Some(true) {
            return Err(ApiError::bad_request(
                super::error::code::VALIDATION,
                format!("The privilege {id} cannot be given at this depth ({allowed} is false)."),
            ));
        }
        grants.push((id, mask));
    }
    for (id, mask) in grants {
        grant(store, role, id, mask);
    }
    Ok(no_events(ApiResponse::empty(StatusCode::NO_CONTENT)))
}

/// `RetrieveRolePrivilegesRole(RoleId=<id>)`.
pub fn role_privileges(store: &Store, role: Uuid) -> Result<Value, ApiError> {
    let row = store
        .get("role", &role)
        .ok_or_else(|| ApiError::row_not_found("role", &role))?;
    let business_unit = row
        .get("businessunitid")
        .and_then(|v| v.guid())
        .unwrap_or_default();
    let depth = |mask: i64| match mask {
        1 => "Basic",
        2 => "Local",
        4 => "Deep",
        _ => "Global",
    };
    let list: Vec<Value> = store
        .table_rows("roleprivileges")
        .filter(|(_, r)| r.get("roleid").and_then(|v| v.guid()) == Some(role))
        .map(|(_, r)| {
            json!({
                "Depth": depth(r.get("privilegedepthmask").and_then(|v| v.as_int()).unwrap_or(8)),
                "PrivilegeId": r.get("privilegeid").and_then(|v| v.guid()).unwrap_or_default().to_string(),
                "BusinessUnitId": business_unit.to_string(),
            })
        })
        .collect();
    Ok(json!({ "RolePrivileges": list }))
}

/// `POST <set>(<id>)/<navigation>/$ref {"@odata.id": "…/<set>(<id>)"}` for a user's roles and
/// field security profiles; other N:N relationships are refused as before.
pub fn associate(
    sim: &Shared,
    store: &mut Store,
    ctx: &Ctx,
    req: &ApiRequest,
    table: &'static Table,
    id: Uuid,
    navigation: &str,
) -> Result<Applied, ApiError> {
    let _ = sim;
    let (intersect, privilege) = match navigation {
        "systemuserroles_association" => ("systemuserroles", "prvAssignRole"),
        "systemuserprofiles_association" => ("systemuserprofiles", "prvWriteFieldSecurityProfile"),
        _ => return Err(super::write::refuse_associate(table, navigation)),
    };
    let rel = super::schema::relationship(navigation)
        .ok_or_else(|| ApiError::segment_not_found(navigation))?;
    let other_logical = if rel.entity1 == table.logical {
        rel.entity2
    } else if rel.entity2 == table.logical {
        rel.entity1
    } else {
        return Err(ApiError::segment_not_found(&format!(
            "{}/{navigation}",
            table.set
        )));
    };
    require(store, ctx.user, privilege, intersect)?;
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::payload(format!("The request body is not valid JSON: {e}.")))?;
    let reference = body
        .get("@odata.id")
        .and_then(|v| v.as_str())
        .ok_or_else(|| ApiError::payload("The body must be {\"@odata.id\": \"<entity URL>\"}."))?;
    let other = store
        .catalog()
        .table(other_logical)
        .ok_or_else(|| ApiError::segment_not_found(other_logical))?;
    let last = reference
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let (set, key) = last
        .split_once('(')
        .and_then(|(s, rest)| rest.strip_suffix(')').map(|k| (s, k)))
        .ok_or_else(|| ApiError::payload(format!("'{reference}' is not an entity URL.")))?;
    if set != other.set {
        return Err(ApiError::payload(format!(
            "'{reference}' names '{set}', but {navigation} relates {} rows.",
            other.set
        )));
    }
    let other_id = store::parse_guid(key)
        .ok_or_else(|| ApiError::payload(format!("'{key}' is not a GUID.")))?;
    if !store.contains(table.logical, &id) {
        return Err(ApiError::row_not_found(table.logical, &id));
    }
    if !store.contains(other.logical, &other_id) {
        return Err(ApiError::row_not_found(other.logical, &other_id));
    }
    let (own, theirs) = if rel.entity1 == table.logical {
        ((rel.attr1, id), (rel.attr2, other_id))
    } else {
        ((rel.attr2, id), (rel.attr1, other_id))
    };
    let exists = store.table_rows(intersect).any(|(_, r)| {
        r.get(own.0).and_then(|v| v.guid()) == Some(own.1)
            && r.get(theirs.0).and_then(|v| v.guid()) == Some(theirs.1)
    });
    if exists {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            super::error::code::DUPLICATE,
            "Cannot insert duplicate key.",
        ));
    }
    let row_id = Uuid::new_v4();
    let pk = store
        .catalog()
        .table(intersect)
        .map(|t| t.pk)
        .unwrap_or("id");
    let mut row = Row::new();
    row.insert(pk, Val::Guid(row_id));
    row.insert(own.0, Val::Guid(own.1));
    row.insert(theirs.0, Val::Guid(theirs.1));
    row.insert("versionnumber", Val::Int(store.next_version()));
    let undo = store.put(intersect, row_id, row);
    let mut applied = no_events(ApiResponse::empty(StatusCode::NO_CONTENT));
    applied.undo.push(undo);
    Ok(applied)
}
