//! The installer's first phase: the connector's schema (`shared::adapters::dataverse::schema`)
//! and security roles through the Dataverse customization Web API, into the unmanaged solution
//! `CleverReachConnector`.
//!
//! Plan first, then apply: [`plan_schema`] only reads and lists every component as existing or
//! to create, and every conflict (an existing table or column the connector cannot use).
//! [`apply_schema`] refuses a plan with conflicts, so nothing is changed half-way because of
//! one. What exists is left as it is; a second run creates nothing.

use crate::{InstallError, PlanItem};
use shared::adapters::dataverse::client::{
    CustomRequest, DataverseClient, DataverseError, Query, filter,
};
use shared::adapters::dataverse::metadata::{
    self, AttributeInfo, EntityInfo, Metadata, label_languages,
};
use shared::adapters::dataverse::schema::{
    self, ColumnSpec, ColumnType, KEYS, KeySpec, LOOKUPS, LookupSpec, READ_TABLES, SECURED_COLUMNS,
    TABLES, TableSpec,
};
use shared::install::{LIST_SYNC_PROFILE, LIST_SYNC_PROFILE_DESCRIPTION, ROLES, RoleSpec};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Field permission value "allowed".
const ALLOWED: i64 = 4;

/// An existing component the connector cannot use. Nothing is changed while there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `table list, column crc_groupid`, `publisher cleverreach`…
    pub component: String,
    pub found: String,
    pub expected: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: found {}, expected {}",
            self.component, self.found, self.expected
        )
    }
}

/// What the schema phase found and will do.
#[derive(Debug, Clone, Default)]
pub struct SchemaPlan {
    /// Every component, existing or to create, in the order they are applied.
    pub items: Vec<PlanItem>,
    pub conflicts: Vec<Conflict>,
    /// Per table the connector reads: is Dataverse change tracking on (`None`: the table does
    /// not exist yet).
    pub change_tracking: Vec<(&'static str, Option<bool>)>,
    actions: Vec<Action>,
    languages: Vec<i64>,
    /// Tables that exist now (logical names).
    existing_tables: BTreeSet<String>,
    /// Primary keys of the tables lookups point to.
    primary_ids: BTreeMap<String, String>,
    app_user: Option<String>,
    /// The solution exists as a managed one (imported): nothing can be added to it.
    managed: bool,
}

impl SchemaPlan {
    /// Whether a table exists in the org (before applying).
    pub fn table_exists(&self, logical: &str) -> bool {
        self.existing_tables.contains(logical)
    }

    /// The org's provisioned languages that labels are written in.
    pub fn languages(&self) -> &[i64] {
        &self.languages
    }

    /// The connector's solution was imported as a managed one.
    pub fn is_managed(&self) -> bool {
        self.managed
    }
}

#[derive(Debug, Clone)]
enum Action {
    Publisher,
    Solution,
    Table(&'static TableSpec),
    Column(&'static str, &'static ColumnSpec),
    Lookup(&'static LookupSpec),
    Key(&'static KeySpec),
    Secure(&'static str, &'static str),
    Publish(Vec<&'static str>),
    Role(&'static RoleSpec),
    Privileges(&'static RoleSpec, Vec<String>),
    Profile,
    Permission(&'static str, &'static str),
    AssignRole(&'static RoleSpec, String),
    AddToProfile(String),
}

fn item(kind: &'static str, name: impl Into<String>, exists: bool) -> PlanItem {
    PlanItem {
        kind,
        name: name.into(),
        exists,
        update: false,
        note: None,
    }
}

/// How administrators read a Dataverse attribute type.
fn type_words(type_name: &str) -> &str {
    match type_name {
        "StringType" => "single line of text",
        "MemoType" => "multiple lines of text",
        "BooleanType" => "yes/no",
        "DateTimeType" => "date and time",
        "IntegerType" => "whole number",
        "BigIntType" => "big integer",
        "DecimalType" => "decimal number",
        "DoubleType" => "floating point number",
        "MoneyType" => "currency",
        "PicklistType" => "choice",
        "MultiSelectPicklistType" => "choices",
        "LookupType" | "CustomerType" | "OwnerType" => "lookup",
        "UniqueidentifierType" => "unique identifier",
        _ => "another type",
    }
}

fn found_type(a: &AttributeInfo) -> String {
    match a.max_length {
        Some(n) if matches!(a.type_name.as_str(), "StringType" | "MemoType") => {
            format!(
                "{}, {n} characters ({})",
                type_words(&a.type_name),
                a.type_name
            )
        }
        _ => format!("{} ({})", type_words(&a.type_name), a.type_name),
    }
}

fn expected_type(c: &ColumnType) -> String {
    format!("{} ({})", c.describe(), c.type_name())
}

/// An existing column against the specification: `None` when the connector can use it.
fn column_conflict(table: &str, spec: &ColumnSpec, found: &AttributeInfo) -> Option<Conflict> {
    let expected = &spec.column_type;
    let wrong_type = found.type_name != expected.type_name();
    let too_short = match (expected.max_length(), found.max_length) {
        (Some(needed), Some(has)) => has < needed,
        _ => false,
    };
    (wrong_type || too_short).then(|| Conflict {
        component: format!("table {table}, column {}", spec.logical_name),
        found: found_type(found),
        expected: expected_type(expected),
    })
}

fn describe_column(spec: &ColumnSpec) -> String {
    spec.column_type.describe()
}

/// Reads what the org has; changes nothing.
pub async fn plan_schema(
    client: &DataverseClient,
    app_user: Option<&str>,
) -> Result<SchemaPlan, InstallError> {
    let meta = Metadata::new(client.clone(), schema::SOLUTION_UNIQUE_NAME);
    let mut plan = SchemaPlan {
        languages: label_languages(&meta.languages().await?),
        app_user: app_user.map(str::to_string),
        ..SchemaPlan::default()
    };
    plan_publisher(client, &mut plan).await?;

    // Tables: the connector's own, then the standard ones it extends.
    let mut columns_of: BTreeMap<String, BTreeMap<String, AttributeInfo>> = BTreeMap::new();
    let mut entities: BTreeMap<String, EntityInfo> = BTreeMap::new();
    let mut wanted_tables: Vec<&str> = TABLES.iter().map(|t| t.logical_name).collect();
    for (t, _) in &schema::EXTENSIONS {
        if !wanted_tables.contains(t) {
            wanted_tables.push(t);
        }
    }
    for l in &LOOKUPS {
        if !wanted_tables.contains(&l.referenced_table) {
            wanted_tables.push(l.referenced_table);
        }
    }
    for t in READ_TABLES {
        if !wanted_tables.contains(&t) {
            wanted_tables.push(t);
        }
    }
    for table in &wanted_tables {
        if let Some(info) = meta.entity(table).await? {
            plan.existing_tables.insert(info.logical_name.clone());
            if let Some(pk) = &info.primary_id {
                plan.primary_ids
                    .insert(info.logical_name.clone(), pk.clone());
            }
            entities.insert(info.logical_name.clone(), info);
        }
    }
    let mut changed: BTreeSet<&'static str> = BTreeSet::new();
    // Each own table is listed with its columns.
    let mut table_items: BTreeMap<&'static str, Vec<PlanItem>> = BTreeMap::new();
    for spec in &TABLES {
        match entities.get(spec.logical_name) {
            None => {
                table_items.entry(spec.logical_name).or_default().push(item(
                    "table",
                    format!(
                        "{} ({}, entity set {})",
                        spec.logical_name, spec.display_name.en, spec.entity_set
                    ),
                    false,
                ));
                plan.actions.push(Action::Table(spec));
                table_items.entry(spec.logical_name).or_default().push(item(
                    "column",
                    format!(
                        "{}.{} (primary name, {})",
                        spec.logical_name,
                        spec.primary_name.logical_name,
                        describe_column(&spec.primary_name)
                    ),
                    false,
                ));
                changed.insert(spec.logical_name);
            }
            Some(info) => {
                table_items.entry(spec.logical_name).or_default().push(item(
                    "table",
                    format!("{} ({})", spec.logical_name, spec.display_name.en),
                    true,
                ));
                let set = info.entity_set.clone().unwrap_or_default();
                if set != spec.entity_set {
                    plan.conflicts.push(Conflict {
                        component: format!("table {}", spec.logical_name),
                        found: format!("entity set {set:?}"),
                        expected: format!("entity set {:?}", spec.entity_set),
                    });
                }
                let primary = info.primary_name.clone().unwrap_or_default();
                if primary != spec.primary_name.logical_name {
                    plan.conflicts.push(Conflict {
                        component: format!("table {}", spec.logical_name),
                        found: format!("primary name column {primary:?}"),
                        expected: format!(
                            "primary name column {:?}",
                            spec.primary_name.logical_name
                        ),
                    });
                }
                let attrs = attributes(&meta, spec.logical_name).await?;
                if let Some(found) = attrs.get(spec.primary_name.logical_name)
                    && let Some(conflict) =
                        column_conflict(spec.logical_name, &spec.primary_name, found)
                {
                    plan.conflicts.push(conflict);
                }
                table_items.entry(spec.logical_name).or_default().push(item(
                    "column",
                    format!(
                        "{}.{} (primary name, {})",
                        spec.logical_name,
                        spec.primary_name.logical_name,
                        describe_column(&spec.primary_name)
                    ),
                    true,
                ));
                columns_of.insert(spec.logical_name.to_string(), attrs);
            }
        }
    }
    for (table, columns) in schema::all_columns().iter().fold(
        Vec::<(&'static str, Vec<&'static ColumnSpec>)>::new(),
        |mut acc, (t, c)| {
            match acc.iter_mut().find(|(name, _)| name == t) {
                Some((_, list)) => list.push(c),
                None => acc.push((t, vec![c])),
            }
            acc
        },
    ) {
        let own = TABLES.iter().find(|t| t.logical_name == table);
        plan.items
            .extend(table_items.remove(table).unwrap_or_default());
        if !plan.table_exists(table) && own.is_none() {
            plan.conflicts.push(Conflict {
                component: format!("table {table}"),
                found: "no such table".to_string(),
                expected: "the Dynamics 365 table (marketing lists, campaigns and leads come with Dynamics 365 Sales or Marketing)".to_string(),
            });
            continue;
        }
        if plan.table_exists(table) && !columns_of.contains_key(table) {
            let attrs = attributes(&meta, table).await?;
            columns_of.insert(table.to_string(), attrs);
        }
        let existing = columns_of.get(table);
        for spec in columns {
            if own.is_some_and(|t| t.primary_name.logical_name == spec.logical_name) {
                continue;
            }
            let name = format!("{table}.{} ({})", spec.logical_name, describe_column(spec));
            match existing.and_then(|a| a.get(spec.logical_name)) {
                Some(found) => {
                    if let Some(conflict) = column_conflict(table, spec, found) {
                        plan.conflicts.push(conflict);
                    }
                    plan.items.push(item("column", name, true));
                }
                None => {
                    plan.items.push(item("column", name, false));
                    plan.actions.push(Action::Column(table, spec));
                    changed.insert(table);
                }
            }
        }
    }
    for spec in &LOOKUPS {
        plan_lookup(&meta, spec, &columns_of, &mut plan, &mut changed).await?;
    }
    for spec in &KEYS {
        let existing = if plan.table_exists(spec.table) {
            meta.keys(spec.table).await?
        } else {
            Vec::new()
        };
        let name = format!(
            "{}: {} ({})",
            spec.table,
            spec.schema_name,
            spec.columns.join(", ")
        );
        let wanted: Vec<String> = spec.columns.iter().map(|c| c.to_string()).collect();
        match existing
            .iter()
            .find(|k| k.schema_name.eq_ignore_ascii_case(spec.schema_name))
        {
            Some(k) if k.key_attributes != wanted => plan.conflicts.push(Conflict {
                component: format!("table {}, key {}", spec.table, spec.schema_name),
                found: format!("key on {}", k.key_attributes.join(", ")),
                expected: format!("key on {}", wanted.join(", ")),
            }),
            Some(k) => {
                let mut it = item("key", name, true);
                if let Some(status) = k.status.as_deref().filter(|s| *s != "Active") {
                    it.note = Some(format!(
                        "index {status}: Dataverse builds it in the background"
                    ));
                }
                plan.items.push(it);
            }
            None => {
                plan.items.push(item("key", name, false));
                plan.actions.push(Action::Key(spec));
                changed.insert(spec.table);
            }
        }
    }
    for (table, column) in SECURED_COLUMNS {
        let secured = columns_of
            .get(table)
            .and_then(|a| a.get(column))
            .is_some_and(|a| a.is_secured);
        plan.items.push(item(
            "security",
            format!("{table}.{column} (column security)"),
            secured,
        ));
        if !secured {
            plan.actions.push(Action::Secure(table, column));
            changed.insert(table);
        }
    }
    if !changed.is_empty() {
        let tables: Vec<&'static str> = changed.into_iter().collect();
        plan.items.push(item(
            "publish",
            format!("PublishXml: {}", tables.join(", ")),
            false,
        ));
        plan.actions.push(Action::Publish(tables));
    }
    plan_security(client, &mut plan).await?;
    if plan.managed {
        let missing: Vec<String> = plan
            .items
            .iter()
            .filter(|i| !i.exists && !matches!(i.kind, "assign" | "publish"))
            .map(|i| format!("{} {}", i.kind, i.name))
            .collect();
        if missing.is_empty() {
            // Nothing to customize: a managed solution is not published by hand.
            plan.actions.retain(|a| !matches!(a, Action::Publish(_)));
            plan.items.retain(|i| i.kind != "publish");
        } else {
            plan.conflicts.push(Conflict {
                component: format!("solution {}", schema::SOLUTION_UNIQUE_NAME),
                found: format!(
                    "a managed solution without {} component(s) (first: {})",
                    missing.len(),
                    missing[0]
                ),
                expected: "every component imported (import the current managed export), or the unmanaged solution in a development org".to_string(),
            });
        }
    }
    for table in READ_TABLES {
        plan.change_tracking
            .push((table, entities.get(table).and_then(|e| e.change_tracking)));
    }
    Ok(plan)
}

async fn attributes(
    meta: &Metadata,
    table: &str,
) -> Result<BTreeMap<String, AttributeInfo>, DataverseError> {
    Ok(meta
        .attributes(table)
        .await?
        .into_iter()
        .map(|a| (a.logical_name.clone(), a))
        .collect())
}

async fn rows(
    client: &DataverseClient,
    set: &str,
    query: Query,
) -> Result<Vec<serde_json::Value>, DataverseError> {
    drain(client.query::<serde_json::Value>(set, &query)).await
}

async fn drain(
    mut pages: shared::adapters::dataverse::client::Pages<serde_json::Value>,
) -> Result<Vec<serde_json::Value>, DataverseError> {
    let mut all = Vec::new();
    while let Some(page) = pages.next_page().await? {
        all.extend(page);
    }
    Ok(all)
}

/// Rows related to `set(id)` through an N:N navigation property, filtered on one user.
async fn related_user(
    client: &DataverseClient,
    set: &str,
    id: &str,
    navigation: &str,
    user: &str,
) -> Result<bool, InstallError> {
    let query = Query::new()
        .select(["systemuserid"])
        .filter(format!("systemuserid eq {}", filter::guid_literal(user)?));
    Ok(
        !drain(client.related::<serde_json::Value>(set, id, navigation, &query))
            .await?
            .is_empty(),
    )
}

fn text<'a>(row: &'a serde_json::Value, column: &str) -> Option<&'a str> {
    row.get(column).and_then(serde_json::Value::as_str)
}

async fn find_publisher(
    client: &DataverseClient,
) -> Result<Option<serde_json::Value>, DataverseError> {
    Ok(rows(
        client,
        "publishers",
        Query::new()
            .select([
                "publisherid",
                "customizationprefix",
                "customizationoptionvalueprefix",
            ])
            .filter(format!(
                "uniquename eq {}",
                filter::string_literal(schema::PUBLISHER_UNIQUE_NAME)
            )),
    )
    .await?
    .into_iter()
    .next())
}

async fn find_solution(
    client: &DataverseClient,
) -> Result<Option<serde_json::Value>, DataverseError> {
    Ok(rows(
        client,
        "solutions",
        Query::new()
            .select(["solutionid", "ismanaged", "_publisherid_value"])
            .filter(format!(
                "uniquename eq {}",
                filter::string_literal(schema::SOLUTION_UNIQUE_NAME)
            )),
    )
    .await?
    .into_iter()
    .next())
}

async fn plan_publisher(
    client: &DataverseClient,
    plan: &mut SchemaPlan,
) -> Result<(), InstallError> {
    let publisher = find_publisher(client).await?;
    let name = format!(
        "{} (prefix {}, option values {}xxxx)",
        schema::PUBLISHER_UNIQUE_NAME,
        schema::PUBLISHER_PREFIX,
        schema::OPTION_VALUE_PREFIX
    );
    match &publisher {
        None => {
            plan.items.push(item("publisher", name, false));
            plan.actions.push(Action::Publisher);
        }
        Some(row) => {
            plan.items.push(item("publisher", name, true));
            let prefix = text(row, "customizationprefix").unwrap_or_default();
            if prefix != schema::PUBLISHER_PREFIX {
                plan.conflicts.push(Conflict {
                    component: format!("publisher {}", schema::PUBLISHER_UNIQUE_NAME),
                    found: format!("customization prefix {prefix:?}"),
                    expected: format!("customization prefix {:?}", schema::PUBLISHER_PREFIX),
                });
            }
            let options = row
                .get("customizationoptionvalueprefix")
                .and_then(serde_json::Value::as_i64);
            if options != Some(schema::OPTION_VALUE_PREFIX) {
                plan.conflicts.push(Conflict {
                    component: format!("publisher {}", schema::PUBLISHER_UNIQUE_NAME),
                    found: format!("option value prefix {options:?}"),
                    expected: format!("option value prefix {}", schema::OPTION_VALUE_PREFIX),
                });
            }
        }
    }
    let solution = find_solution(client).await?;
    let name = format!(
        "{} (unmanaged, version {})",
        schema::SOLUTION_UNIQUE_NAME,
        schema::SOLUTION_VERSION
    );
    match solution {
        None => {
            plan.items.push(item("solution", name, false));
            plan.actions.push(Action::Solution);
        }
        Some(row) => {
            plan.items.push(item("solution", name, true));
            // An imported managed solution is fine as long as nothing is missing from it.
            plan.managed = row.get("ismanaged").and_then(serde_json::Value::as_bool) == Some(true);
            let owner = text(&row, "_publisherid_value");
            let ours = publisher.as_ref().and_then(|p| text(p, "publisherid"));
            if owner.is_some() && owner != ours {
                plan.conflicts.push(Conflict {
                    component: format!("solution {}", schema::SOLUTION_UNIQUE_NAME),
                    found: "another publisher".to_string(),
                    expected: format!("publisher {}", schema::PUBLISHER_UNIQUE_NAME),
                });
            }
        }
    }
    Ok(())
}

async fn plan_lookup(
    meta: &Metadata,
    spec: &'static LookupSpec,
    columns_of: &BTreeMap<String, BTreeMap<String, AttributeInfo>>,
    plan: &mut SchemaPlan,
    changed: &mut BTreeSet<&'static str>,
) -> Result<(), InstallError> {
    let name = format!(
        "{}.{} -> {} ({}, navigation property {})",
        spec.referencing_table,
        spec.logical_name,
        spec.referenced_table,
        spec.relationship,
        spec.navigation
    );
    let component = format!(
        "table {}, column {}",
        spec.referencing_table, spec.logical_name
    );
    if !plan.table_exists(spec.referenced_table) {
        plan.conflicts.push(Conflict {
            component: format!("table {}", spec.referenced_table),
            found: "no such table".to_string(),
            expected: "the Dynamics 365 table".to_string(),
        });
        return Ok(());
    }
    let existing = if plan.table_exists(spec.referencing_table) {
        meta.relationship(spec.relationship).await?
    } else {
        None
    };
    match existing {
        Some(rel) => {
            plan.items.push(item("lookup", name, true));
            if rel.referenced_entity != spec.referenced_table
                || rel.referencing_entity != spec.referencing_table
                || rel.referencing_attribute != spec.logical_name
            {
                plan.conflicts.push(Conflict {
                    component,
                    found: format!(
                        "relationship {} from {}.{} to {}",
                        rel.schema_name,
                        rel.referencing_entity,
                        rel.referencing_attribute,
                        rel.referenced_entity
                    ),
                    expected: format!(
                        "a lookup to {} ({})",
                        spec.referenced_table, spec.relationship
                    ),
                });
            } else if rel.navigation.as_deref() != Some(spec.navigation) {
                plan.conflicts.push(Conflict {
                    component,
                    found: format!("navigation property {:?}", rel.navigation),
                    expected: format!(
                        "navigation property {:?} (the connector binds with this case-sensitive name)",
                        spec.navigation
                    ),
                });
            }
        }
        None => {
            if let Some(found) = columns_of
                .get(spec.referencing_table)
                .and_then(|a| a.get(spec.logical_name))
            {
                plan.conflicts.push(Conflict {
                    component,
                    found: format!(
                        "{} without the relationship {}",
                        found_type(found),
                        spec.relationship
                    ),
                    expected: format!("a lookup to {} (LookupType)", spec.referenced_table),
                });
                return Ok(());
            }
            plan.items.push(item("lookup", name, false));
            plan.actions.push(Action::Lookup(spec));
            changed.insert(spec.referencing_table);
        }
    }
    Ok(())
}

/// The root business unit: roles created there are inherited by every business unit.
async fn root_business_unit(client: &DataverseClient) -> Result<String, InstallError> {
    let units = rows(
        client,
        "businessunits",
        Query::new()
            .select(["businessunitid"])
            .filter("_parentbusinessunitid_value eq null"),
    )
    .await?;
    units
        .first()
        .and_then(|u| text(u, "businessunitid"))
        .map(str::to_string)
        .ok_or_else(|| InstallError::Usage("the org has no root business unit".to_string()))
}

async fn find_role(
    client: &DataverseClient,
    name: &str,
    business_unit: &str,
) -> Result<Option<String>, InstallError> {
    let found = rows(
        client,
        "roles",
        Query::new().select(["roleid"]).filter(format!(
            "name eq {} and _businessunitid_value eq {}",
            filter::string_literal(name),
            filter::guid_literal(business_unit)?
        )),
    )
    .await?;
    Ok(found
        .first()
        .and_then(|r| text(r, "roleid"))
        .map(str::to_string))
}

/// Privilege ids by name; names the org does not have are left out.
async fn privilege_ids(
    client: &DataverseClient,
    names: &[String],
) -> Result<BTreeMap<String, String>, InstallError> {
    let mut ids = BTreeMap::new();
    for chunk in names.chunks(20) {
        let condition = chunk
            .iter()
            .map(|n| format!("name eq {}", filter::string_literal(n)))
            .collect::<Vec<_>>()
            .join(" or ");
        for row in rows(
            client,
            "privileges",
            Query::new()
                .select(["privilegeid", "name"])
                .filter(condition),
        )
        .await?
        {
            if let (Some(name), Some(id)) = (text(&row, "name"), text(&row, "privilegeid")) {
                ids.insert(name.to_string(), id.to_lowercase());
            }
        }
    }
    Ok(ids)
}

/// Privileges a role holds at organisation depth (`RetrieveRolePrivilegesRole`).
async fn global_privileges_of(
    client: &DataverseClient,
    role: &str,
) -> Result<BTreeSet<String>, InstallError> {
    let path = format!("RetrieveRolePrivilegesRole(RoleId={})", filter::guid(role)?);
    let body = client.get_json(&path).await?;
    Ok(body
        .get("RolePrivileges")
        .and_then(serde_json::Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|p| p.get("Depth").and_then(serde_json::Value::as_str) == Some("Global"))
                .filter_map(|p| text(p, "PrivilegeId").map(str::to_lowercase))
                .collect()
        })
        .unwrap_or_default())
}

async fn find_profile(client: &DataverseClient) -> Result<Option<String>, InstallError> {
    let found = rows(
        client,
        "fieldsecurityprofiles",
        Query::new()
            .select(["fieldsecurityprofileid"])
            .filter(format!(
                "name eq {}",
                filter::string_literal(LIST_SYNC_PROFILE)
            )),
    )
    .await?;
    Ok(found
        .first()
        .and_then(|r| text(r, "fieldsecurityprofileid"))
        .map(str::to_string))
}

async fn plan_security(
    client: &DataverseClient,
    plan: &mut SchemaPlan,
) -> Result<(), InstallError> {
    let business_unit = root_business_unit(client).await?;
    let user = match &plan.app_user {
        Some(id) => {
            let id = filter::guid(id)?;
            match client
                .retrieve::<serde_json::Value>("systemusers", &id, &["systemuserid"])
                .await
            {
                Ok(_) => Some(id),
                Err(DataverseError::NotFound { .. }) => {
                    return Err(InstallError::Usage(format!(
                        "--app-user {id}: the org has no user with this id (systemuserid of the application user)"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        None => None,
    };
    for role in &ROLES {
        let wanted = role.privileges();
        let existing = find_role(client, role.name, &business_unit).await?;
        let summary = format!(
            "{} ({} privileges at organisation level: {})",
            role.name,
            wanted.len(),
            wanted.join(", ")
        );
        match &existing {
            None => {
                plan.items.push(item("role", summary, false));
                plan.actions.push(Action::Role(role));
                plan.actions.push(Action::Privileges(role, wanted));
            }
            Some(id) => {
                plan.items.push(item("role", summary, true));
                let held = global_privileges_of(client, id).await?;
                let ids = privilege_ids(client, &wanted).await?;
                let missing: Vec<String> = wanted
                    .iter()
                    .filter(|n| ids.get(*n).is_none_or(|id| !held.contains(id)))
                    .cloned()
                    .collect();
                if !missing.is_empty() {
                    plan.items.push(item(
                        "privilege",
                        format!("{}: add {}", role.name, missing.join(", ")),
                        false,
                    ));
                    plan.actions.push(Action::Privileges(role, missing));
                }
            }
        }
        if let (Some(user), true) = (&user, role.name == shared::install::CONNECTOR_ROLE.name) {
            let assigned = match &existing {
                Some(role_id) => {
                    related_user(
                        client,
                        "roles",
                        role_id,
                        "systemuserroles_association",
                        user,
                    )
                    .await?
                }
                None => false,
            };
            plan.items.push(item(
                "assign",
                format!("role {} to user {user}", role.name),
                assigned,
            ));
            if !assigned {
                plan.actions.push(Action::AssignRole(role, user.clone()));
            }
        }
    }
    let profile = find_profile(client).await?;
    plan.items.push(item(
        "profile",
        format!("{LIST_SYNC_PROFILE} (field security profile)"),
        profile.is_some(),
    ));
    if profile.is_none() {
        plan.actions.push(Action::Profile);
    }
    let permissions = match &profile {
        Some(id) => {
            rows(
                client,
                "fieldpermissions",
                Query::new()
                    .select(["entityname", "attributelogicalname"])
                    .filter(format!(
                        "_fieldsecurityprofileid_value eq {}",
                        filter::guid_literal(id)?
                    )),
            )
            .await?
        }
        None => Vec::new(),
    };
    for (table, column) in SECURED_COLUMNS {
        let exists = permissions.iter().any(|p| {
            text(p, "entityname") == Some(table) && text(p, "attributelogicalname") == Some(column)
        });
        plan.items.push(item(
            "permission",
            format!("{LIST_SYNC_PROFILE}: read, create and update {table}.{column}"),
            exists,
        ));
        if !exists {
            plan.actions.push(Action::Permission(table, column));
        }
    }
    if let Some(user) = &user {
        let member = match &profile {
            Some(id) => {
                related_user(
                    client,
                    "fieldsecurityprofiles",
                    id,
                    "systemuserprofiles_association",
                    user,
                )
                .await?
            }
            None => false,
        };
        // The connector resets the retroactive sync flag, so its user needs the profile too.
        plan.items.push(item(
            "assign",
            format!("field security profile {LIST_SYNC_PROFILE} to user {user}"),
            member,
        ));
        if !member {
            plan.actions.push(Action::AddToProfile(user.clone()));
        }
    }
    Ok(())
}

/// The privilege a refused request lacked: named in Dataverse's message ("… is missing
/// prvCreateEntity privilege …"), else the one the step needs.
pub fn missing_privilege(message: &str, needed: &str) -> String {
    message
        .split_whitespace()
        .skip_while(|w| *w != "missing")
        .nth(1)
        .filter(|w| w.starts_with("prv"))
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .to_string()
        })
        .unwrap_or_else(|| needed.to_string())
}

/// A failed step: a refusal for lack of privilege names the privilege.
pub(crate) fn failed(what: String, needed: &str, err: DataverseError) -> InstallError {
    let denied = match &err {
        DataverseError::Client {
            status,
            code,
            message,
            ..
        } if *status == 403 || code.eq_ignore_ascii_case("0x80040220") => Some(message.clone()),
        _ => None,
    };
    match denied {
        Some(message) => InstallError::Privilege {
            what,
            privilege: missing_privilege(&message, needed),
            error: Box::new(err),
        },
        None => InstallError::Step {
            what,
            error: Box::new(err),
        },
    }
}

/// Ids learned while applying.
#[derive(Default)]
struct Ids {
    publisher: Option<String>,
    business_unit: Option<String>,
    profile: Option<String>,
    roles: BTreeMap<&'static str, String>,
}

/// Applies a plan: creates what is missing, in order. Refuses a plan with conflicts.
pub async fn apply_schema(client: &DataverseClient, plan: &SchemaPlan) -> Result<(), InstallError> {
    if !plan.conflicts.is_empty() {
        return Err(InstallError::Conflicts(plan.conflicts.clone()));
    }
    let meta = Metadata::new(client.clone(), schema::SOLUTION_UNIQUE_NAME);
    let languages = &plan.languages;
    let mut ids = Ids::default();
    for action in &plan.actions {
        match action {
            Action::Publisher => {
                let request = CustomRequest::post("publishers").body(metadata::publisher_body());
                let created = client.send_custom(&request).await.map_err(|e| {
                    failed("creating the publisher".into(), "prvCreatePublisher", e)
                })?;
                ids.publisher = created.entity_id;
            }
            Action::Solution => {
                let publisher = match ids.publisher.clone() {
                    Some(id) => id,
                    None => find_publisher(client)
                        .await?
                        .as_ref()
                        .and_then(|p| text(p, "publisherid"))
                        .map(str::to_string)
                        .ok_or_else(|| {
                            InstallError::Usage("the publisher cannot be read back".into())
                        })?,
                };
                let request = CustomRequest::post("solutions")
                    .body(metadata::solution_body(&filter::guid(&publisher)?));
                client
                    .send_custom(&request)
                    .await
                    .map_err(|e| failed("creating the solution".into(), "prvCreateSolution", e))?;
            }
            Action::Table(spec) => {
                meta.create("EntityDefinitions", metadata::table_body(spec, languages))
                    .await
                    .map_err(|e| {
                        failed(
                            format!("creating table {}", spec.logical_name),
                            "prvCreateEntity",
                            e,
                        )
                    })?;
                let info = meta.entity(spec.logical_name).await?.ok_or_else(|| {
                    InstallError::Usage(format!(
                        "table {} cannot be read back after creating it",
                        spec.logical_name
                    ))
                })?;
                if info.entity_set.as_deref() != Some(spec.entity_set) {
                    return Err(InstallError::Conflicts(vec![Conflict {
                        component: format!("table {}", spec.logical_name),
                        found: format!("entity set {:?} given by Dataverse", info.entity_set),
                        expected: format!("entity set {:?}", spec.entity_set),
                    }]));
                }
            }
            Action::Column(table, spec) => {
                meta.create(
                    &format!("EntityDefinitions(LogicalName='{table}')/Attributes"),
                    metadata::column_body(spec, languages),
                )
                .await
                .map_err(|e| {
                    failed(
                        format!("creating column {table}.{}", spec.logical_name),
                        "prvCreateAttribute",
                        e,
                    )
                })?;
            }
            Action::Lookup(spec) => {
                let pk = plan
                    .primary_ids
                    .get(spec.referenced_table)
                    .cloned()
                    .unwrap_or_else(|| format!("{}id", spec.referenced_table));
                meta.create(
                    "RelationshipDefinitions",
                    metadata::lookup_body(spec, &pk, languages),
                )
                .await
                .map_err(|e| {
                    failed(
                        format!(
                            "creating lookup {}.{}",
                            spec.referencing_table, spec.logical_name
                        ),
                        "prvCreateRelationship",
                        e,
                    )
                })?;
            }
            Action::Key(spec) => {
                meta.create(
                    &format!("EntityDefinitions(LogicalName='{}')/Keys", spec.table),
                    metadata::key_body(spec, languages),
                )
                .await
                .map_err(|e| {
                    failed(
                        format!("creating key {} on {}", spec.schema_name, spec.table),
                        "prvCreateEntityKey",
                        e,
                    )
                })?;
            }
            Action::Secure(table, column) => {
                let kind = schema::all_columns()
                    .into_iter()
                    .find(|(t, c)| t == table && c.logical_name == *column)
                    .map(|(_, c)| metadata::attribute_kind(&c.column_type))
                    .unwrap_or("AttributeMetadata");
                let what = format!("securing column {table}.{column}");
                let mut definition = meta
                    .attribute_definition(table, column, kind)
                    .await
                    .map_err(|e| failed(what.clone(), "prvReadAttribute", e))?;
                if let Some(map) = definition.as_object_mut() {
                    map.retain(|k, _| !k.starts_with("@odata.context"));
                    map.insert("IsSecured".into(), serde_json::Value::Bool(true));
                }
                meta.put(
                    &format!("EntityDefinitions(LogicalName='{table}')/Attributes(LogicalName='{column}')"),
                    definition,
                )
                .await
                .map_err(|e| failed(what, "prvWriteAttribute", e))?;
            }
            Action::Publish(tables) => {
                meta.publish(tables)
                    .await
                    .map_err(|e| failed("publishing".into(), "prvPublishCustomizations", e))?;
            }
            Action::Role(role) => {
                let bu = match ids.business_unit.clone() {
                    Some(bu) => bu,
                    None => {
                        let bu = root_business_unit(client).await?;
                        ids.business_unit = Some(bu.clone());
                        bu
                    }
                };
                let created = meta
                    .create(
                        "roles",
                        serde_json::json!({
                            "name": role.name,
                            "description": role.description,
                            "businessunitid@odata.bind": format!("/businessunits({})", filter::guid(&bu)?),
                        }),
                    )
                    .await
                    .map_err(|e| failed(format!("creating role {}", role.name), "prvCreateRole", e))?;
                let id = match created.entity_id {
                    Some(id) => id,
                    None => find_role(client, role.name, &bu).await?.ok_or_else(|| {
                        InstallError::Usage(format!("role {} cannot be read back", role.name))
                    })?,
                };
                ids.roles.insert(role.name, id);
            }
            Action::Privileges(role, names) => {
                let role_id = role_id(client, &mut ids, role).await?;
                let found = privilege_ids(client, names).await?;
                let unknown: Vec<&String> =
                    names.iter().filter(|n| !found.contains_key(*n)).collect();
                if !unknown.is_empty() {
                    return Err(InstallError::Usage(format!(
                        "role {}: the org has no privilege {}",
                        role.name,
                        unknown
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                let privileges: Vec<serde_json::Value> = names
                    .iter()
                    .filter_map(|n| found.get(n))
                    .map(|id| {
                        serde_json::json!({
                            "@odata.type": "Microsoft.Dynamics.CRM.RolePrivilege",
                            "PrivilegeId": id,
                            "Depth": "Global",
                        })
                    })
                    .collect();
                meta.action(
                    &format!(
                        "roles({})/Microsoft.Dynamics.CRM.AddPrivilegesRole",
                        filter::guid(&role_id)?
                    ),
                    serde_json::json!({ "Privileges": privileges }),
                )
                .await
                .map_err(|e| {
                    failed(
                        format!("giving role {} its privileges", role.name),
                        "prvWriteRole",
                        e,
                    )
                })?;
            }
            Action::Profile => {
                let created = meta
                    .create(
                        "fieldsecurityprofiles",
                        serde_json::json!({
                            "name": LIST_SYNC_PROFILE,
                            "description": LIST_SYNC_PROFILE_DESCRIPTION,
                        }),
                    )
                    .await
                    .map_err(|e| {
                        failed(
                            "creating the field security profile".into(),
                            "prvCreateFieldSecurityProfile",
                            e,
                        )
                    })?;
                ids.profile = created.entity_id;
            }
            Action::Permission(table, column) => {
                let profile = profile_id(client, &mut ids).await?;
                meta.create(
                    "fieldpermissions",
                    serde_json::json!({
                        "fieldsecurityprofileid@odata.bind": format!("/fieldsecurityprofiles({})", filter::guid(&profile)?),
                        "entityname": table,
                        "attributelogicalname": column,
                        "canread": ALLOWED,
                        "cancreate": ALLOWED,
                        "canupdate": ALLOWED,
                    }),
                )
                .await
                .map_err(|e| {
                    failed(format!("allowing {table}.{column} in the profile"), "prvWriteFieldSecurityProfile", e)
                })?;
            }
            Action::AssignRole(role, user) => {
                let role_id = role_id(client, &mut ids, role).await?;
                associate(
                    client,
                    &format!(
                        "roles({})/systemuserroles_association/$ref",
                        filter::guid(&role_id)?
                    ),
                    &format!("systemusers({})", filter::guid(user)?),
                )
                .await
                .map_err(|e| {
                    failed(
                        format!("giving user {user} the role {}", role.name),
                        "prvAssignRole",
                        e,
                    )
                })?;
            }
            Action::AddToProfile(user) => {
                let profile = profile_id(client, &mut ids).await?;
                associate(
                    client,
                    &format!(
                        "systemusers({})/systemuserprofiles_association/$ref",
                        filter::guid(user)?
                    ),
                    &format!("fieldsecurityprofiles({})", filter::guid(&profile)?),
                )
                .await
                .map_err(|e| {
                    failed(
                        format!("adding user {user} to the field security profile"),
                        "prvWriteFieldSecurityProfile",
                        e,
                    )
                })?;
            }
        }
    }
    Ok(())
}

async fn role_id(
    client: &DataverseClient,
    ids: &mut Ids,
    role: &RoleSpec,
) -> Result<String, InstallError> {
    if let Some(id) = ids.roles.get(role.name) {
        return Ok(id.clone());
    }
    let bu = match ids.business_unit.clone() {
        Some(bu) => bu,
        None => {
            let bu = root_business_unit(client).await?;
            ids.business_unit = Some(bu.clone());
            bu
        }
    };
    let id = find_role(client, role.name, &bu)
        .await?
        .ok_or_else(|| InstallError::Usage(format!("role {} cannot be found", role.name)))?;
    ids.roles.insert(role.name, id.clone());
    Ok(id)
}

async fn profile_id(client: &DataverseClient, ids: &mut Ids) -> Result<String, InstallError> {
    if let Some(id) = &ids.profile {
        return Ok(id.clone());
    }
    let id = find_profile(client).await?.ok_or_else(|| {
        InstallError::Usage(format!(
            "the field security profile {LIST_SYNC_PROFILE} cannot be found"
        ))
    })?;
    ids.profile = Some(id.clone());
    Ok(id)
}

/// `POST …/<navigation>/$ref {"@odata.id": "<api root><target>"}`.
async fn associate(
    client: &DataverseClient,
    path: &str,
    target: &str,
) -> Result<(), DataverseError> {
    let request = CustomRequest::post(path)
        .body(serde_json::json!({ "@odata.id": format!("{}{target}", client.api_url()) }));
    client.send_custom(&request).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_privilege_is_read_from_dataverses_message() {
        let message = "Principal user (Id=aaaa, type=8, roleCount=1, privilegeCount=12), is missing prvCreateEntity privilege (Id=bbbb) on OTC=9800 for entity 'entity'.";
        assert_eq!(missing_privilege(message, "prvX"), "prvCreateEntity");
        assert_eq!(
            missing_privilege(
                "The user does not hold the necessary privileges.",
                "prvCreateRole"
            ),
            "prvCreateRole"
        );
    }

    #[test]
    fn a_column_of_another_type_or_too_short_is_a_conflict_naming_both_types() {
        let spec = &schema::SOURCE_COLUMNS[4]; // crc_syncstatus, single line of text
        let found = |type_name: &str, max_length| AttributeInfo {
            logical_name: spec.logical_name.into(),
            schema_name: spec.schema_name.into(),
            type_name: type_name.into(),
            is_secured: false,
            max_length,
        };
        let conflict = column_conflict("list", spec, &found("IntegerType", None)).unwrap();
        assert_eq!(conflict.component, "table list, column crc_syncstatus");
        assert_eq!(conflict.found, "whole number (IntegerType)");
        assert!(
            conflict
                .expected
                .contains("single line of text, 2000 characters (StringType)")
        );
        assert!(column_conflict("list", spec, &found("StringType", Some(100))).is_some());
        assert!(column_conflict("list", spec, &found("StringType", Some(4000))).is_none());
    }
}
