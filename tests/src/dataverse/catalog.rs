//! One simulator's schema: the plain org's tables (`schema.rs`) plus the tables, columns,
//! lookups and keys created through the metadata endpoints (`metadata.rs`), with the metadata
//! Dataverse keeps about each (schema names, labels, types, lengths, column security).
//!
//! The rest of the simulator works with `&'static Table` and `&'static Column`. A table that
//! gets a column is therefore rebuilt and the new definition leaked, and names are interned:
//! a simulator lives as long as its test, and an installed schema costs a few tens of KB.
//! Definitions already handed out stay valid (a request in flight keeps the schema it read).

use super::schema::{self, Access, Column, Kind, Nav, Opt, StateDef, Table, Writes};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, OnceLock};
use uuid::Uuid;

/// An interned name: each distinct text is leaked once per process.
pub fn name(text: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(found) = names.get(text) {
        return found;
    }
    let leaked: &'static str = Box::leak(text.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

fn leak<T>(items: Vec<T>) -> &'static [T] {
    Box::leak(items.into_boxed_slice())
}

/// A stable id for a standard object (FNV-1a of its name), so reads agree across requests.
pub fn stable_id(text: &str) -> Uuid {
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in text.bytes() {
        hash ^= u128::from(b);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    Uuid::from_u128(hash)
}

/// A label with one English text, for the standard tables and columns.
pub fn english(text: &str) -> Value {
    json!({
        "LocalizedLabels": [{ "Label": text, "LanguageCode": 1033 }],
        "UserLocalizedLabel": { "Label": text, "LanguageCode": 1033 },
    })
}

/// What Dataverse keeps about a table.
#[derive(Debug, Clone)]
pub struct EntityMeta {
    pub metadata_id: Uuid,
    pub schema_name: String,
    pub display_name: Value,
    pub display_collection_name: Value,
    pub description: Value,
    /// `UserOwned` or `OrganizationOwned`.
    pub ownership: &'static str,
    pub is_custom: bool,
    pub change_tracking: bool,
    pub is_activity: bool,
    /// The name in the table's privileges (`prvReadContact`, `prvReadActivity`).
    pub privilege_entity: String,
}

/// What Dataverse keeps about a column.
#[derive(Debug, Clone)]
pub struct AttributeMeta {
    pub metadata_id: Uuid,
    pub schema_name: String,
    /// The metadata kind: `StringAttributeMetadata`…
    pub kind: &'static str,
    /// `AttributeTypeName.Value`: `StringType`…
    pub type_name: &'static str,
    /// `AttributeType`: `String`…
    pub attribute_type: &'static str,
    pub is_custom: bool,
    pub is_secured: bool,
    pub is_primary_id: bool,
    pub is_primary_name: bool,
    pub required_level: Value,
    pub display_name: Value,
    pub description: Value,
    /// Type-specific properties (`MaxLength`, `FormatName`, `DateTimeBehavior`, `OptionSet`…).
    pub typed: BTreeMap<String, Value>,
}

/// A one-to-many relationship created through `RelationshipDefinitions`.
#[derive(Debug, Clone)]
pub struct RelationshipMeta {
    pub metadata_id: Uuid,
    pub schema_name: String,
    pub referenced_entity: &'static str,
    pub referenced_attribute: &'static str,
    pub referencing_entity: &'static str,
    pub referencing_attribute: &'static str,
    pub referencing_navigation: &'static str,
    pub referenced_navigation: String,
    pub cascade: Value,
}

/// An alternate key.
#[derive(Debug, Clone)]
pub struct KeyMeta {
    pub metadata_id: Uuid,
    pub table: &'static str,
    pub schema_name: String,
    pub logical_name: String,
    pub attributes: Vec<&'static str>,
    pub display_name: Value,
    /// `EntityKeyIndexStatus`: `Active` or `Failed` (existing rows break uniqueness).
    pub status: &'static str,
}

/// The schema of one simulator.
#[derive(Debug)]
pub struct Catalog {
    tables: Vec<&'static Table>,
    entities: BTreeMap<&'static str, EntityMeta>,
    attributes: BTreeMap<(&'static str, &'static str), AttributeMeta>,
    relationships: Vec<RelationshipMeta>,
    keys: Vec<KeyMeta>,
    next_otc: i64,
    /// Standard tables with change tracking on.
    change_tracked: BTreeSet<String>,
    /// Each `PublishXml`'s tables, in order.
    pub publishes: Vec<Vec<String>>,
    /// The web resources each `PublishXml` named, in order.
    pub published_web_resources: Vec<Uuid>,
}

/// How standard tables are named in SchemaNames and privileges.
fn standard_names(logical: &str) -> (String, String) {
    let schema_name = match logical {
        "account" => "Account",
        "contact" => "Contact",
        "lead" => "Lead",
        "list" => "List",
        "listmember" => "ListMember",
        "campaign" => "Campaign",
        "campaignactivity" => "CampaignActivity",
        "campaignitem" => "CampaignItem",
        "campaignactivityitem" => "CampaignActivityItem",
        "systemuser" => "SystemUser",
        "businessunit" => "BusinessUnit",
        "serviceendpoint" => "ServiceEndpoint",
        "sdkmessageprocessingstep" => "SdkMessageProcessingStep",
        "sdkmessageprocessingstepimage" => "SdkMessageProcessingStepImage",
        "sdkmessage" => "SdkMessage",
        "sdkmessagefilter" => "SdkMessageFilter",
        "asyncoperation" => "AsyncOperation",
        "publisher" => "Publisher",
        "solution" => "Solution",
        "solutioncomponent" => "SolutionComponent",
        "role" => "Role",
        "privilege" => "Privilege",
        "roleprivileges" => "RolePrivileges",
        "systemuserroles" => "SystemUserRoles",
        "fieldsecurityprofile" => "FieldSecurityProfile",
        "fieldpermission" => "FieldPermission",
        "systemuserprofiles" => "SystemUserProfiles",
        "webresource" => "WebResource",
        "systemform" => "SystemForm",
        other => other,
    };
    // Activities share the "Activity" privileges; a user's are "User".
    let privilege_entity = match logical {
        "campaignactivity" => "Activity",
        "systemuser" => "User",
        _ => schema_name,
    };
    (schema_name.to_string(), privilege_entity.to_string())
}

/// The type names of a standard column.
fn standard_type(column: &Column) -> (&'static str, &'static str, &'static str) {
    match column.kind {
        Kind::Pk | Kind::Guid => (
            "UniqueIdentifierAttributeMetadata",
            "UniqueidentifierType",
            "Uniqueidentifier",
        ),
        // Longer than a single line of text can be: a multiple lines column.
        Kind::Str(n) if n > 4000 => ("MemoAttributeMetadata", "MemoType", "Memo"),
        Kind::Str(_) => ("StringAttributeMetadata", "StringType", "String"),
        Kind::Int => ("IntegerAttributeMetadata", "IntegerType", "Integer"),
        Kind::Bool => ("BooleanAttributeMetadata", "BooleanType", "Boolean"),
        Kind::DateTime => ("DateTimeAttributeMetadata", "DateTimeType", "DateTime"),
        Kind::Choice(_) => ("PicklistAttributeMetadata", "PicklistType", "Picklist"),
        Kind::State => ("StateAttributeMetadata", "StateType", "State"),
        Kind::Status => ("StatusAttributeMetadata", "StatusType", "Status"),
        Kind::Lookup(_) if column.name == "ownerid" => {
            ("LookupAttributeMetadata", "OwnerType", "Owner")
        }
        Kind::Lookup(navs) if navs.len() > 1 => {
            ("LookupAttributeMetadata", "CustomerType", "Customer")
        }
        Kind::Lookup(_) => ("LookupAttributeMetadata", "LookupType", "Lookup"),
        Kind::EntityName => (
            "EntityNameAttributeMetadata",
            "EntityNameType",
            "EntityName",
        ),
    }
}

/// The entity set Dataverse derives from a new table's logical name (English plural rules).
pub fn plural(logical: &str) -> String {
    let ends = |s: &str| logical.ends_with(s);
    if ends("s") || ends("x") || ends("z") || ends("ch") || ends("sh") {
        format!("{logical}es")
    } else if ends("y")
        && !logical
            .chars()
            .rev()
            .nth(1)
            .is_some_and(|c| "aeiou".contains(c))
    {
        format!("{}ies", &logical[..logical.len() - 1])
    } else {
        format!("{logical}s")
    }
}

static ACTIVE_INACTIVE: [StateDef; 2] = [
    StateDef {
        state: 0,
        label: "Active",
        statuses: &[Opt(1, "Active")],
    },
    StateDef {
        state: 1,
        label: "Inactive",
        statuses: &[Opt(2, "Inactive")],
    },
];

/// What a new table is made of (checked by the metadata endpoint).
pub struct NewTable {
    pub logical: &'static str,
    pub meta: EntityMeta,
    pub primary_name: &'static str,
    pub primary_name_meta: AttributeMeta,
    pub primary_name_max: usize,
    pub user_owned: bool,
}

impl Catalog {
    /// A plain org: the standard tables only.
    pub fn plain(change_tracked: &[String]) -> Catalog {
        Catalog {
            tables: schema::TABLES.iter().collect(),
            entities: BTreeMap::new(),
            attributes: BTreeMap::new(),
            relationships: Vec::new(),
            keys: Vec::new(),
            next_otc: 10_000,
            change_tracked: change_tracked.iter().cloned().collect(),
            publishes: Vec::new(),
            published_web_resources: Vec::new(),
        }
    }

    pub fn tables(&self) -> impl Iterator<Item = &'static Table> + '_ {
        self.tables.iter().copied()
    }

    pub fn table(&self, logical: &str) -> Option<&'static Table> {
        self.tables.iter().copied().find(|t| t.logical == logical)
    }

    pub fn by_set(&self, set: &str) -> Option<&'static Table> {
        self.tables.iter().copied().find(|t| t.set == set)
    }

    pub fn by_otc(&self, otc: i64) -> Option<&'static Table> {
        self.tables.iter().copied().find(|t| t.otc == otc)
    }

    /// The table's metadata (derived for a standard table).
    pub fn entity(&self, table: &Table) -> EntityMeta {
        if let Some(meta) = self.entities.get(table.logical) {
            return meta.clone();
        }
        let (schema_name, privilege_entity) = standard_names(table.logical);
        EntityMeta {
            metadata_id: stable_id(&format!("entity:{}", table.logical)),
            display_name: english(&schema_name),
            display_collection_name: english(table.set),
            description: english(""),
            schema_name,
            ownership: if table.owned {
                "UserOwned"
            } else {
                "OrganizationOwned"
            },
            is_custom: false,
            change_tracking: self.change_tracked.contains(table.logical),
            is_activity: table.logical == "campaignactivity",
            privilege_entity,
        }
    }

    /// A column's metadata (derived for a standard column).
    pub fn attribute(&self, table: &Table, column: &Column) -> AttributeMeta {
        if let Some(meta) = self.attributes.get(&(table.logical, column.name)) {
            return meta.clone();
        }
        let (kind, type_name, attribute_type) = standard_type(column);
        let mut typed = BTreeMap::new();
        match column.kind {
            Kind::Str(n) => {
                typed.insert("MaxLength".into(), json!(n.min(1_048_576)));
                if type_name == "StringType" {
                    typed.insert("FormatName".into(), json!({ "Value": "Text" }));
                } else {
                    typed.insert("Format".into(), json!("TextArea"));
                }
            }
            Kind::DateTime => {
                typed.insert("Format".into(), json!("DateAndTime"));
                typed.insert("DateTimeBehavior".into(), json!({ "Value": "UserLocal" }));
            }
            Kind::Lookup(navs) => {
                let targets: Vec<&str> = navs.iter().map(|n| n.target).collect();
                typed.insert("Targets".into(), json!(targets));
            }
            _ => {}
        }
        AttributeMeta {
            metadata_id: stable_id(&format!("attribute:{}.{}", table.logical, column.name)),
            schema_name: column.name.to_string(),
            kind,
            type_name,
            attribute_type,
            is_custom: false,
            is_secured: false,
            is_primary_id: column.name == table.pk,
            is_primary_name: column.name == table.primary_name,
            required_level: json!({ "Value": "None", "CanBeChanged": true }),
            display_name: english(column.name),
            description: english(""),
            typed,
        }
    }

    pub fn is_custom_attribute(&self, table: &str, column: &str) -> bool {
        self.attributes
            .get(&(name(table), name(column)))
            .is_some_and(|a| a.is_custom)
    }

    /// Whether column security protects this column.
    pub fn is_secured(&self, table: &str, column: &str) -> bool {
        self.attributes
            .get(&(name(table), name(column)))
            .is_some_and(|a| a.is_secured)
    }

    pub fn set_attribute(
        &mut self,
        table: &'static str,
        column: &'static str,
        meta: AttributeMeta,
    ) {
        self.attributes.insert((table, column), meta);
    }

    /// Creates a table with its primary key, primary name, state and status (and owner when
    /// user-owned). Returns it.
    pub fn add_table(&mut self, new: NewTable) -> &'static Table {
        let otc = self.next_otc;
        self.next_otc += 1;
        let pk = name(&format!("{}id", new.logical));
        let mut columns = vec![
            Column {
                name: pk,
                kind: Kind::Pk,
                access: Access::ReadWrite,
            },
            Column {
                name: new.primary_name,
                kind: Kind::Str(new.primary_name_max),
                access: Access::ReadWrite,
            },
            Column {
                name: "statecode",
                kind: Kind::State,
                access: Access::ReadWrite,
            },
            Column {
                name: "statuscode",
                kind: Kind::Status,
                access: Access::ReadWrite,
            },
        ];
        columns.shrink_to_fit();
        let table: &'static Table = Box::leak(Box::new(Table {
            logical: new.logical,
            set: name(&plural(new.logical)),
            pk,
            primary_name: new.primary_name,
            otc,
            columns: leak(columns),
            states: &ACTIVE_INACTIVE,
            owned: new.user_owned,
            writes: Writes::Yes,
        }));
        let schema_name = new.meta.schema_name.clone();
        self.entities.insert(new.logical, new.meta);
        self.attributes
            .insert((new.logical, new.primary_name), new.primary_name_meta);
        let mut pk_meta = self.attribute(table, &table.columns[0]);
        pk_meta.schema_name = format!("{schema_name}Id");
        pk_meta.is_custom = true;
        self.attributes.insert((new.logical, pk), pk_meta);
        self.tables.push(table);
        table
    }

    /// Adds a column to a table (a new definition of the table replaces the old one).
    pub fn add_column(&mut self, table: &str, column: Column, meta: AttributeMeta) -> Option<()> {
        let index = self.tables.iter().position(|t| t.logical == table)?;
        let old = self.tables[index];
        let mut columns: Vec<Column> = old.columns.to_vec();
        columns.push(column);
        let rebuilt: &'static Table = Box::leak(Box::new(Table {
            logical: old.logical,
            set: old.set,
            pk: old.pk,
            primary_name: old.primary_name,
            otc: old.otc,
            columns: leak(columns),
            states: old.states,
            owned: old.owned,
            writes: old.writes,
        }));
        self.tables[index] = rebuilt;
        self.attributes.insert((old.logical, column.name), meta);
        Some(())
    }

    /// A lookup column's navigation property.
    pub fn lookup_column(
        name: &'static str,
        navigation: &'static str,
        target: &'static str,
    ) -> Column {
        Column {
            name,
            kind: Kind::Lookup(leak(vec![Nav {
                name: navigation,
                target,
            }])),
            access: Access::ReadWrite,
        }
    }

    pub fn relationships(&self) -> &[RelationshipMeta] {
        &self.relationships
    }

    pub fn add_relationship(&mut self, relationship: RelationshipMeta) {
        self.relationships.push(relationship);
    }

    pub fn keys(&self, table: &str) -> impl Iterator<Item = &KeyMeta> {
        self.keys.iter().filter(move |k| k.table == table)
    }

    pub fn all_keys(&self) -> &[KeyMeta] {
        &self.keys
    }

    pub fn add_key(&mut self, key: KeyMeta) {
        self.keys.push(key);
    }

    /// Privileges a new table brings: `prv<Right><SchemaName>`, with the depths its ownership
    /// allows.
    pub fn table_privileges(schema_name: &str, user_owned: bool) -> Vec<(String, bool)> {
        let mut rights = vec!["Create", "Read", "Write", "Delete", "Append", "AppendTo"];
        if user_owned {
            rights.extend(["Assign", "Share"]);
        }
        rights
            .into_iter()
            .map(|r| (format!("prv{r}{schema_name}"), user_owned))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_sets_follow_english_plurals() {
        assert_eq!(plural("crc_setting"), "crc_settings");
        assert_eq!(plural("crc_receiverstate"), "crc_receiverstates");
        assert_eq!(plural("new_category"), "new_categories");
        assert_eq!(plural("new_box"), "new_boxes");
        assert_eq!(plural("new_day"), "new_days");
    }

    #[test]
    fn names_are_interned_once() {
        let a = name("crc_example_column");
        let b = name(&String::from("crc_example_column"));
        assert!(std::ptr::eq(a, b));
    }

    #[test]
    fn a_plain_org_has_no_crc_table_or_column() {
        let catalog = Catalog::plain(&[]);
        for t in catalog.tables() {
            assert!(!t.logical.starts_with("crc_"), "{}", t.logical);
            for c in t.all_columns() {
                assert!(!c.name.starts_with("crc_"), "{}.{}", t.logical, c.name);
            }
        }
    }
}
