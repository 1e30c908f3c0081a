//! Adapter: the Dataverse customization (metadata) Web API, as the installer uses it.
//!
//! - Bodies: the definitions of [`schema`]'s tables, columns, lookups and keys in the shapes
//!   the Web API documents (`@odata.type` of each metadata kind, `SchemaName`, labels as
//!   `Label`/`LocalizedLabels`, `RequiredLevel`, lengths and formats). Pure functions, so that
//!   tests can check them.
//! - Reads: tables, columns (with their lengths), relationships, keys and the org's languages,
//!   answered as typed values; an absent object is `None` or an empty list, never an error.
//! - Writes: creates carry `MSCRM.SolutionUniqueName` (the component lands in the solution);
//!   every request carries `Consistency: Strong`, so that a read sees what was created a moment
//!   before (metadata is cached).

use super::client::{CustomRequest, CustomResponse, DataverseClient, DataverseError, filter};
use super::schema::{
    self, ColumnSpec, ColumnType, ENGLISH, GERMAN, KeySpec, LookupSpec, RequiredLevel, TableSpec,
    Text,
};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

const NS: &str = "Microsoft.Dynamics.CRM.";

/// The `@odata.type` of a metadata kind (`Microsoft.Dynamics.CRM.EntityMetadata`).
pub fn odata_type(kind: &str) -> String {
    format!("{NS}{kind}")
}

/// The metadata kind of a column type.
pub fn attribute_kind(column_type: &ColumnType) -> &'static str {
    match column_type {
        ColumnType::Boolean { .. } => "BooleanAttributeMetadata",
        ColumnType::Text { .. } => "StringAttributeMetadata",
        ColumnType::Memo { .. } => "MemoAttributeMetadata",
        ColumnType::DateTime => "DateTimeAttributeMetadata",
        ColumnType::Choice { .. } => "PicklistAttributeMetadata",
    }
}

/// The languages to write labels in: English and German where the org has them; an org with
/// neither gets the English text in each of its languages (a label in a language the org
/// lacks is refused by Dataverse).
pub fn label_languages(provisioned: &[i64]) -> Vec<i64> {
    let ours: Vec<i64> = [ENGLISH, GERMAN]
        .into_iter()
        .filter(|l| provisioned.contains(l))
        .collect();
    if ours.is_empty() {
        provisioned.to_vec()
    } else {
        ours
    }
}

/// A `Label` with one `LocalizedLabel` per language.
pub fn label(text: &Text, languages: &[i64]) -> Value {
    let localized: Vec<Value> = languages
        .iter()
        .map(|language| {
            json!({
                "@odata.type": odata_type("LocalizedLabel"),
                "Label": text.in_language(*language),
                "LanguageCode": language,
            })
        })
        .collect();
    json!({ "@odata.type": odata_type("Label"), "LocalizedLabels": localized })
}

pub fn required_level(level: RequiredLevel) -> Value {
    json!({
        "Value": level.as_str(),
        "CanBeChanged": true,
        "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
    })
}

const YES: Text = Text {
    en: "Yes",
    de: "Ja",
};
const NO: Text = Text {
    en: "No",
    de: "Nein",
};

/// The body that creates a column (`POST EntityDefinitions(LogicalName='…')/Attributes`).
pub fn column_body(spec: &ColumnSpec, languages: &[i64]) -> Value {
    let mut body = Map::new();
    body.insert(
        "@odata.type".into(),
        json!(odata_type(attribute_kind(&spec.column_type))),
    );
    body.insert("SchemaName".into(), json!(spec.schema_name));
    body.insert("DisplayName".into(), label(&spec.display_name, languages));
    body.insert("Description".into(), label(&spec.description, languages));
    body.insert("RequiredLevel".into(), required_level(spec.required));
    match spec.column_type {
        ColumnType::Boolean { default } => {
            body.insert("DefaultValue".into(), json!(default));
            body.insert(
                "OptionSet".into(),
                json!({
                    "@odata.type": odata_type("BooleanOptionSetMetadata"),
                    "OptionSetType": "Boolean",
                    "TrueOption": { "Value": 1, "Label": label(&YES, languages) },
                    "FalseOption": { "Value": 0, "Label": label(&NO, languages) },
                }),
            );
        }
        ColumnType::Text { max_length } => {
            body.insert("MaxLength".into(), json!(max_length));
            body.insert("FormatName".into(), json!({ "Value": "Text" }));
        }
        ColumnType::Memo { max_length } => {
            body.insert("MaxLength".into(), json!(max_length));
            body.insert("Format".into(), json!("TextArea"));
        }
        ColumnType::DateTime => {
            body.insert("Format".into(), json!("DateAndTime"));
            // "User local" stores UTC; the connector writes and reads UTC.
            body.insert("DateTimeBehavior".into(), json!({ "Value": "UserLocal" }));
        }
        ColumnType::Choice { options } => {
            let options: Vec<Value> = options
                .iter()
                .map(|o| json!({ "Value": o.value, "Label": label(&o.label, languages) }))
                .collect();
            body.insert(
                "OptionSet".into(),
                json!({
                    "@odata.type": odata_type("OptionSetMetadata"),
                    "IsGlobal": false,
                    "OptionSetType": "Picklist",
                    "Options": options,
                }),
            );
        }
    }
    Value::Object(body)
}

/// The body that creates a table with its primary name column (`POST EntityDefinitions`).
pub fn table_body(spec: &TableSpec, languages: &[i64]) -> Value {
    let mut primary = column_body(&spec.primary_name, languages);
    if let Value::Object(map) = &mut primary {
        map.insert("IsPrimaryName".into(), json!(true));
    }
    json!({
        "@odata.type": odata_type("EntityMetadata"),
        "SchemaName": spec.schema_name,
        "DisplayName": label(&spec.display_name, languages),
        "DisplayCollectionName": label(&spec.plural_name, languages),
        "Description": label(&spec.description, languages),
        "OwnershipType": "OrganizationOwned",
        "IsActivity": false,
        "HasActivities": false,
        "HasNotes": false,
        "PrimaryNameAttribute": spec.primary_name.logical_name,
        "Attributes": [primary],
    })
}

/// The body that creates a lookup as a one-to-many relationship (`POST RelationshipDefinitions`).
/// `referenced_attribute` is the referenced table's primary key. Deleting the referenced row
/// clears the lookup and keeps the referencing row.
pub fn lookup_body(spec: &LookupSpec, referenced_attribute: &str, languages: &[i64]) -> Value {
    json!({
        "@odata.type": odata_type("OneToManyRelationshipMetadata"),
        "SchemaName": spec.relationship,
        "ReferencedEntity": spec.referenced_table,
        "ReferencedAttribute": referenced_attribute,
        "ReferencingEntity": spec.referencing_table,
        "CascadeConfiguration": {
            "Assign": "NoCascade",
            "Delete": "RemoveLink",
            "Merge": "NoCascade",
            "Reparent": "NoCascade",
            "Share": "NoCascade",
            "Unshare": "NoCascade",
        },
        "Lookup": {
            "@odata.type": odata_type("LookupAttributeMetadata"),
            "SchemaName": spec.schema_name,
            "DisplayName": label(&spec.display_name, languages),
            "Description": label(&spec.description, languages),
            "RequiredLevel": required_level(RequiredLevel::None),
        },
    })
}

/// The body that creates an alternate key (`POST EntityDefinitions(LogicalName='…')/Keys`).
pub fn key_body(spec: &KeySpec, languages: &[i64]) -> Value {
    json!({
        "@odata.type": odata_type("EntityKeyMetadata"),
        "SchemaName": spec.schema_name,
        "KeyAttributes": spec.columns,
        "DisplayName": label(&spec.display_name, languages),
    })
}

pub fn publisher_body() -> Value {
    json!({
        "uniquename": schema::PUBLISHER_UNIQUE_NAME,
        "friendlyname": schema::PUBLISHER_FRIENDLY_NAME,
        "description": "Publisher of the CleverReach connector's solution.",
        "customizationprefix": schema::PUBLISHER_PREFIX,
        "customizationoptionvalueprefix": schema::OPTION_VALUE_PREFIX,
    })
}

pub fn solution_body(publisher_id: &str) -> Value {
    json!({
        "uniquename": schema::SOLUTION_UNIQUE_NAME,
        "friendlyname": schema::SOLUTION_FRIENDLY_NAME,
        "version": schema::SOLUTION_VERSION,
        "description": "The CleverReach connector's tables, columns, lookups and security roles.",
        "publisherid@odata.bind": format!("/publishers({publisher_id})"),
    })
}

/// `PublishXml` for tables (logical names).
pub fn publish_body(tables: &[&str]) -> Value {
    let entities: String = tables
        .iter()
        .map(|t| format!("<entity>{t}</entity>"))
        .collect();
    json!({
        "ParameterXml": format!("<importexportxml><entities>{entities}</entities></importexportxml>")
    })
}

// ----- reads -----------------------------------------------------------------------------

/// A table's definition, as far as the installer needs it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EntityInfo {
    #[serde(rename = "MetadataId")]
    pub metadata_id: String,
    #[serde(rename = "LogicalName")]
    pub logical_name: String,
    #[serde(rename = "SchemaName", default)]
    pub schema_name: String,
    #[serde(rename = "EntitySetName", default)]
    pub entity_set: Option<String>,
    #[serde(rename = "PrimaryIdAttribute", default)]
    pub primary_id: Option<String>,
    #[serde(rename = "PrimaryNameAttribute", default)]
    pub primary_name: Option<String>,
    #[serde(rename = "IsCustomEntity", default)]
    pub is_custom: Option<bool>,
    #[serde(rename = "ChangeTrackingEnabled", default)]
    pub change_tracking: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct TypeName {
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Debug, Clone, Deserialize)]
struct RawAttribute {
    #[serde(rename = "LogicalName")]
    logical_name: String,
    #[serde(rename = "SchemaName", default)]
    schema_name: String,
    #[serde(rename = "AttributeTypeName", default)]
    type_name: Option<TypeName>,
    #[serde(rename = "IsSecured", default)]
    is_secured: Option<bool>,
}

/// A column's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeInfo {
    pub logical_name: String,
    pub schema_name: String,
    /// `AttributeTypeName.Value`: `StringType`, `MemoType`, `BooleanType`…
    pub type_name: String,
    pub is_secured: bool,
    /// `MaxLength` of text columns.
    pub max_length: Option<usize>,
}

/// A one-to-many relationship's definition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RelationshipInfo {
    #[serde(rename = "SchemaName")]
    pub schema_name: String,
    #[serde(rename = "ReferencedEntity", default)]
    pub referenced_entity: String,
    #[serde(rename = "ReferencingEntity", default)]
    pub referencing_entity: String,
    #[serde(rename = "ReferencingAttribute", default)]
    pub referencing_attribute: String,
    #[serde(rename = "ReferencingEntityNavigationPropertyName", default)]
    pub navigation: Option<String>,
}

/// An alternate key's definition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KeyInfo {
    #[serde(rename = "SchemaName")]
    pub schema_name: String,
    #[serde(rename = "KeyAttributes", default)]
    pub key_attributes: Vec<String>,
    #[serde(rename = "EntityKeyIndexStatus", default)]
    pub status: Option<String>,
}

#[derive(Deserialize)]
struct Collection<T> {
    value: Vec<T>,
}

#[derive(Deserialize)]
struct Length {
    #[serde(rename = "LogicalName")]
    logical_name: String,
    #[serde(rename = "MaxLength", default)]
    max_length: Option<usize>,
}

fn decode<T: serde::de::DeserializeOwned>(
    request: &str,
    what: &str,
    body: Value,
) -> Result<T, DataverseError> {
    serde_json::from_value(body).map_err(|e| DataverseError::Decode {
        request: request.to_string(),
        what: what.to_string(),
        reason: e.to_string(),
    })
}

/// `LogicalName='…'`, checked to be a plain identifier.
fn by_name(what: &str, name: &str) -> Result<String, DataverseError> {
    Ok(format!("LogicalName='{}'", filter::identifier(what, name)?))
}

/// The customization Web API of one org, writing into one solution.
#[derive(Debug, Clone)]
pub struct Metadata {
    client: DataverseClient,
    solution: String,
}

impl Metadata {
    /// Creates go into `solution` (its unique name).
    pub fn new(client: DataverseClient, solution: impl Into<String>) -> Metadata {
        Metadata {
            client,
            solution: solution.into(),
        }
    }

    pub fn client(&self) -> &DataverseClient {
        &self.client
    }

    /// GET with `Consistency: Strong`.
    pub async fn get(&self, path: &str) -> Result<Value, DataverseError> {
        let request = CustomRequest::new(Method::GET, path).header("Consistency", "Strong");
        Ok(self.client.send_custom(&request).await?.body)
    }

    /// POST that creates a solution component: into the solution.
    pub async fn create(&self, path: &str, body: Value) -> Result<CustomResponse, DataverseError> {
        let request = CustomRequest::new(Method::POST, path)
            .header("MSCRM.SolutionUniqueName", self.solution.clone())
            .header("Consistency", "Strong")
            .body(body);
        self.client.send_custom(&request).await
    }

    /// PUT of a whole definition, keeping labels in other languages.
    pub async fn put(&self, path: &str, body: Value) -> Result<(), DataverseError> {
        let request = CustomRequest::new(Method::PUT, path)
            .header("MSCRM.SolutionUniqueName", self.solution.clone())
            .header("MSCRM.MergeLabels", "true")
            .header("Consistency", "Strong")
            .body(body);
        self.client.send_custom(&request).await.map(|_| ())
    }

    /// POST of an action (`PublishXml`, `roles(…)/Microsoft.Dynamics.CRM.AddPrivilegesRole`),
    /// with the solution header (documented for AddPrivilegesRole, harmless elsewhere).
    pub async fn action(&self, path: &str, body: Value) -> Result<Value, DataverseError> {
        let request = CustomRequest::new(Method::POST, path)
            .header("MSCRM.SolutionUniqueName", self.solution.clone())
            .body(body);
        Ok(self.client.send_custom(&request).await?.body)
    }

    /// The org's provisioned languages (`RetrieveProvisionedLanguages`).
    pub async fn languages(&self) -> Result<Vec<i64>, DataverseError> {
        #[derive(Deserialize)]
        struct Languages {
            #[serde(rename = "RetrieveProvisionedLanguages")]
            languages: Vec<i64>,
        }
        let path = "RetrieveProvisionedLanguages()";
        let body = self.get(path).await?;
        Ok(decode::<Languages>(path, "provisioned languages", body)?.languages)
    }

    /// A table by logical name; `None` when the org has none.
    pub async fn entity(&self, logical: &str) -> Result<Option<EntityInfo>, DataverseError> {
        let name = filter::identifier("table", logical)?;
        let path = format!(
            "EntityDefinitions?$select=MetadataId,LogicalName,SchemaName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,IsCustomEntity,ChangeTrackingEnabled&$filter=LogicalName%20eq%20{}",
            encode(&filter::string_literal(name))
        );
        let body = self.get(&path).await?;
        let rows: Collection<EntityInfo> = decode("GET EntityDefinitions", "tables", body)?;
        Ok(rows.value.into_iter().next())
    }

    /// Every column of a table, with `MaxLength` for text columns.
    pub async fn attributes(&self, table: &str) -> Result<Vec<AttributeInfo>, DataverseError> {
        let entity = by_name("table", table)?;
        let path = format!(
            "EntityDefinitions({entity})/Attributes?$select=LogicalName,SchemaName,AttributeTypeName,IsSecured"
        );
        let body = self.get(&path).await?;
        let raw: Collection<RawAttribute> = decode("GET Attributes", "columns", body)?;
        let mut lengths: BTreeMap<String, usize> = BTreeMap::new();
        for kind in ["StringAttributeMetadata", "MemoAttributeMetadata"] {
            let wanted = if kind.starts_with("String") {
                "StringType"
            } else {
                "MemoType"
            };
            // The length lives on the typed definition: one read per type the table has.
            if !raw.value.iter().any(|a| {
                a.type_name.as_ref().is_some_and(|t| t.value == wanted)
                    && a.logical_name.starts_with(schema::PUBLISHER_PREFIX)
            }) {
                continue;
            }
            let path = format!(
                "EntityDefinitions({entity})/Attributes/{NS}{kind}?$select=LogicalName,MaxLength"
            );
            let body = self.get(&path).await?;
            let typed: Collection<Length> = decode("GET Attributes", "column lengths", body)?;
            for l in typed.value {
                if let Some(n) = l.max_length {
                    lengths.insert(l.logical_name, n);
                }
            }
        }
        Ok(raw
            .value
            .into_iter()
            .map(|a| AttributeInfo {
                max_length: lengths.get(&a.logical_name).copied(),
                logical_name: a.logical_name,
                schema_name: a.schema_name,
                type_name: a.type_name.map(|t| t.value).unwrap_or_default(),
                is_secured: a.is_secured.unwrap_or(false),
            })
            .collect())
    }

    /// The whole definition of one column, typed (for a `PUT` back).
    pub async fn attribute_definition(
        &self,
        table: &str,
        column: &str,
        kind: &str,
    ) -> Result<Value, DataverseError> {
        let path = format!(
            "EntityDefinitions({})/Attributes({})/{NS}{kind}",
            by_name("table", table)?,
            by_name("column", column)?
        );
        self.get(&path).await
    }

    /// A relationship by SchemaName; `None` when absent.
    pub async fn relationship(
        &self,
        schema_name: &str,
    ) -> Result<Option<RelationshipInfo>, DataverseError> {
        let name = filter::identifier("relationship", schema_name)?;
        let path = format!(
            "RelationshipDefinitions/{NS}OneToManyRelationshipMetadata?$select=SchemaName,ReferencedEntity,ReferencingEntity,ReferencingAttribute,ReferencingEntityNavigationPropertyName&$filter=SchemaName%20eq%20{}",
            encode(&filter::string_literal(name))
        );
        let body = self.get(&path).await?;
        let rows: Collection<RelationshipInfo> =
            decode("GET RelationshipDefinitions", "relationships", body)?;
        Ok(rows.value.into_iter().next())
    }

    /// A table's alternate keys.
    pub async fn keys(&self, table: &str) -> Result<Vec<KeyInfo>, DataverseError> {
        let path = format!(
            "EntityDefinitions({})/Keys?$select=SchemaName,KeyAttributes,EntityKeyIndexStatus",
            by_name("table", table)?
        );
        let body = self.get(&path).await?;
        Ok(decode::<Collection<KeyInfo>>("GET Keys", "keys", body)?.value)
    }

    /// Publishes the customizations of these tables.
    pub async fn publish(&self, tables: &[&str]) -> Result<(), DataverseError> {
        if tables.is_empty() {
            return Ok(());
        }
        self.action("PublishXml", publish_body(tables))
            .await
            .map(|_| ())
    }
}

/// Percent-encodes a `$filter` literal for the query string.
fn encode(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' | '.' | '\'' => c.to_string(),
            ' ' => "%20".to_string(),
            other => {
                let mut buf = [0u8; 4];
                other
                    .encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::adapters::dataverse::schema::{EXTENSIONS, KEYS, LOOKUPS, TABLES};

    const BOTH: [i64; 2] = [ENGLISH, GERMAN];

    fn labels(label: &Value) -> Vec<(i64, String)> {
        assert_eq!(label["@odata.type"], "Microsoft.Dynamics.CRM.Label");
        label["LocalizedLabels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                assert_eq!(l["@odata.type"], "Microsoft.Dynamics.CRM.LocalizedLabel");
                (
                    l["LanguageCode"].as_i64().unwrap(),
                    l["Label"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn labels_are_written_in_english_and_german_where_the_org_has_them() {
        assert_eq!(label_languages(&[1033, 1031, 1036]), vec![1033, 1031]);
        assert_eq!(label_languages(&[1031]), vec![1031]);
        assert_eq!(label_languages(&[1036]), vec![1036]);
        let l = label(&schema::SOURCE_COLUMNS[0].display_name, &BOTH);
        assert_eq!(
            labels(&l),
            vec![
                (1033, "Sync with CleverReach".to_string()),
                (1031, "Mit CleverReach synchronisieren".to_string())
            ]
        );
    }

    #[test]
    fn every_column_body_has_the_documented_shape_of_its_kind() {
        for (table, columns) in EXTENSIONS {
            for c in columns {
                let body = column_body(c, &BOTH);
                let kind = body["@odata.type"].as_str().unwrap();
                assert_eq!(kind, odata_type(attribute_kind(&c.column_type)));
                assert_eq!(body["SchemaName"], c.schema_name, "{table}");
                assert_eq!(labels(&body["DisplayName"]).len(), 2);
                assert_eq!(body["RequiredLevel"]["Value"], "None");
                match c.column_type {
                    ColumnType::Text { max_length } => {
                        assert_eq!(body["MaxLength"], max_length);
                        assert_eq!(body["FormatName"]["Value"], "Text");
                    }
                    ColumnType::Memo { max_length } => {
                        assert_eq!(body["MaxLength"], max_length);
                        assert_eq!(body["Format"], "TextArea");
                    }
                    ColumnType::Boolean { default } => {
                        assert_eq!(body["DefaultValue"], default);
                        let set = &body["OptionSet"];
                        assert_eq!(set["@odata.type"], odata_type("BooleanOptionSetMetadata"));
                        assert_eq!(set["TrueOption"]["Value"], 1);
                        assert_eq!(set["FalseOption"]["Value"], 0);
                    }
                    ColumnType::DateTime => {
                        assert_eq!(body["Format"], "DateAndTime");
                        assert_eq!(body["DateTimeBehavior"]["Value"], "UserLocal");
                    }
                    ColumnType::Choice { .. } => unreachable!("no choice on standard tables"),
                }
            }
        }
    }

    #[test]
    fn a_table_body_carries_its_primary_name_column() {
        for t in &TABLES {
            let body = table_body(t, &BOTH);
            assert_eq!(body["@odata.type"], odata_type("EntityMetadata"));
            assert_eq!(body["OwnershipType"], "OrganizationOwned");
            assert_eq!(body["PrimaryNameAttribute"], t.primary_name.logical_name);
            let attrs = body["Attributes"].as_array().unwrap();
            assert_eq!(attrs.len(), 1);
            assert_eq!(attrs[0]["IsPrimaryName"], true);
            assert_eq!(attrs[0]["FormatName"]["Value"], "Text");
            for l in ["DisplayName", "DisplayCollectionName", "Description"] {
                assert_eq!(labels(&body[l]).len(), 2, "{l}");
            }
        }
    }

    #[test]
    fn the_choice_body_lists_every_option_with_labels() {
        let event = TABLES[1]
            .columns
            .iter()
            .find(|c| c.logical_name == schema::RECEIVER_STATE_EVENT)
            .unwrap();
        let body = column_body(event, &[ENGLISH]);
        let options = body["OptionSet"]["Options"].as_array().unwrap();
        assert_eq!(options.len(), schema::EVENT_OPTIONS.len());
        assert_eq!(options[0]["Value"], schema::EVENT_UNSUBSCRIBED);
        assert_eq!(
            labels(&options[0]["Label"]),
            vec![(1033, "Unsubscribed".into())]
        );
    }

    #[test]
    fn lookup_and_key_bodies_name_their_tables_and_columns() {
        let body = lookup_body(&LOOKUPS[0], "activityid", &BOTH);
        assert_eq!(
            body["@odata.type"],
            odata_type("OneToManyRelationshipMetadata")
        );
        assert_eq!(body["ReferencingEntity"], "lead");
        assert_eq!(body["ReferencedAttribute"], "activityid");
        assert_eq!(
            body["Lookup"]["@odata.type"],
            odata_type("LookupAttributeMetadata")
        );
        assert_eq!(body["Lookup"]["SchemaName"], "crc_CampaignActivityId");
        let key = key_body(&KEYS[0], &BOTH);
        assert_eq!(key["KeyAttributes"], json!(["crc_key"]));
    }

    #[test]
    fn publishing_names_each_table() {
        assert_eq!(
            publish_body(&["contact", "crc_setting"])["ParameterXml"],
            "<importexportxml><entities><entity>contact</entity><entity>crc_setting</entity></entities></importexportxml>"
        );
    }

    #[test]
    fn filter_literals_are_encoded_for_the_query_string() {
        assert_eq!(encode("'crc_setting'"), "'crc_setting'");
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }
}
