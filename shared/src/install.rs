//! Installing the connector in a CRM: the webhook service endpoint, the SDK message processing
//! steps (message, table, filtering attributes, images) and the settings rows, registered
//! through the Web API the way an administrator would, and the security roles the installer
//! creates (`CONNECTOR_ROLE`, `LIST_SYNC_ROLE`). Idempotent: what exists is left alone.

use crate::adapters::dataverse::client::{DataverseClient, DataverseError, Query, filter};
use crate::adapters::dataverse::schema;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The service endpoint's name; re-running the installer finds it by this name.
pub const ENDPOINT_NAME: &str = "CleverReach Connector";

/// An image registered on a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub alias: &'static str,
    /// 0 pre-image, 1 post-image.
    pub image_type: i64,
    pub attributes: &'static [&'static str],
}

/// One step: a message on a table, with the columns that make an Update interesting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    pub message: &'static str,
    pub entity: &'static str,
    pub filtering_attributes: &'static [&'static str],
    pub images: Vec<ImageSpec>,
}

impl StepSpec {
    pub fn name(&self) -> String {
        format!("{ENDPOINT_NAME}: {} of {}", self.message, self.entity)
    }
}

const CONTACT_UPDATE: &[&str] = &[
    "emailaddress1",
    "firstname",
    "lastname",
    "salutation",
    "parentcustomerid",
    "statecode",
    "donotbulkemail",
    schema::CHECKLIST,
];
const LEAD_UPDATE: &[&str] = &[
    "emailaddress1",
    "firstname",
    "lastname",
    "salutation",
    "companyname",
    "statecode",
    "donotbulkemail",
    schema::CHECKLIST,
    schema::LEAD_CAMPAIGN,
    schema::LEAD_CAMPAIGN_ACTIVITY,
];
const ACCOUNT_UPDATE: &[&str] = &["name", "primarycontactid", "statecode", "donotbulkemail"];
const LIST_UPDATE: &[&str] = &[
    "listname",
    "query",
    "statecode",
    schema::SYNC_FLAG,
    schema::CHECKLIST,
    schema::RESYNC,
    schema::CONFIRM_REMOVALS,
    schema::RETROACTIVE_SYNC,
];
/// A campaign's group follows its name, state, flags and checklist; its lists come through
/// AddItem/RemoveItem.
const CAMPAIGN_UPDATE: &[&str] = &[
    "name",
    "statecode",
    schema::SYNC_FLAG,
    schema::CHECKLIST,
    schema::RESYNC,
    schema::CONFIRM_REMOVALS,
];
/// An activity's subject names its group and its description is the group's receiver_info.
const CAMPAIGN_ACTIVITY_UPDATE: &[&str] = &[
    "subject",
    "description",
    "statecode",
    schema::SYNC_FLAG,
    schema::CHECKLIST,
    schema::RESYNC,
    schema::CONFIRM_REMOVALS,
];

/// A deleted source's group and the types it sent: the group is deleted or kept, and its
/// opt-outs written back with those types first.
const SOURCE_DELETE_IMAGE: &[&str] = &[schema::GROUP_ID, schema::CHECKLIST];

fn pre(attributes: &'static [&'static str]) -> ImageSpec {
    ImageSpec {
        alias: "PreImage",
        image_type: 0,
        attributes,
    }
}

/// Every step the connector needs (DESIGN §3): asynchronous, post-operation.
pub fn steps() -> Vec<StepSpec> {
    let step = |message, entity, filtering_attributes, images| StepSpec {
        message,
        entity,
        filtering_attributes,
        images,
    };
    vec![
        step("Create", "contact", &[], vec![]),
        step(
            "Update",
            "contact",
            CONTACT_UPDATE,
            vec![pre(&["emailaddress1"])],
        ),
        step("Delete", "contact", &[], vec![pre(&["emailaddress1"])]),
        step("Create", "lead", &[], vec![]),
        step(
            "Update",
            "lead",
            LEAD_UPDATE,
            vec![pre(&[
                "emailaddress1",
                schema::LEAD_CAMPAIGN,
                schema::LEAD_CAMPAIGN_ACTIVITY,
            ])],
        ),
        step("Delete", "lead", &[], vec![pre(&["emailaddress1"])]),
        step(
            "Update",
            "account",
            ACCOUNT_UPDATE,
            vec![pre(&["primarycontactid"])],
        ),
        step("Delete", "account", &[], vec![pre(&["primarycontactid"])]),
        step("Create", "list", &[], vec![]),
        step("Update", "list", LIST_UPDATE, vec![]),
        step("Delete", "list", &[], vec![pre(SOURCE_DELETE_IMAGE)]),
        step("AddMember", "list", &[], vec![]),
        step("AddListMembers", "list", &[], vec![]),
        step("RemoveMember", "list", &[], vec![]),
        step("Create", "campaign", &[], vec![]),
        step("Update", "campaign", CAMPAIGN_UPDATE, vec![]),
        step("Delete", "campaign", &[], vec![pre(SOURCE_DELETE_IMAGE)]),
        // A list added to or removed from a campaign (AddItemCampaign, RemoveItemCampaign).
        step("AddItem", "campaign", &[], vec![]),
        step("RemoveItem", "campaign", &[], vec![]),
        step("Create", "campaignactivity", &[], vec![]),
        step(
            "Update",
            "campaignactivity",
            CAMPAIGN_ACTIVITY_UPDATE,
            vec![],
        ),
        step(
            "Delete",
            "campaignactivity",
            &[],
            vec![pre(SOURCE_DELETE_IMAGE)],
        ),
        step("AddItem", "campaignactivity", &[], vec![]),
        step("RemoveItem", "campaignactivity", &[], vec![]),
    ]
}

/// A right on a table: the privilege `prv<Right><Entity>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Right {
    Create,
    Read,
    Write,
    Append,
    AppendTo,
}

impl Right {
    pub fn name(self) -> &'static str {
        match self {
            Right::Create => "Create",
            Right::Read => "Read",
            Right::Write => "Write",
            Right::Append => "Append",
            Right::AppendTo => "AppendTo",
        }
    }
}

/// The rights a role holds on one table, at organisation depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRights {
    pub table: &'static str,
    /// The name Dataverse uses in the table's privileges: its SchemaName, except for activity
    /// tables, which share the privileges of "Activity".
    pub privilege_entity: &'static str,
    pub rights: &'static [Right],
    /// Why the connector needs them.
    pub why: &'static str,
}

impl TableRights {
    /// The privileges' names (`prvReadContact`).
    pub fn privileges(&self) -> impl Iterator<Item = String> + '_ {
        self.rights
            .iter()
            .map(|r| format!("prv{}{}", r.name(), self.privilege_entity))
    }
}

/// A security role the installer creates in the root business unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub rights: &'static [TableRights],
}

impl RoleSpec {
    pub fn privileges(&self) -> Vec<String> {
        self.rights.iter().flat_map(|t| t.privileges()).collect()
    }
}

/// The application user's role: exactly what the functions read and write (docs/deploy.md
/// step 3 lists the same). List members, campaign items and campaign activity items have no
/// privileges of their own: they are read with their list, campaign and activity.
pub const CONNECTOR_ROLE: RoleSpec = RoleSpec {
    name: "CleverReach Connector",
    description: "The CleverReach connector's application user: reads recipients and sources, writes checklists, sync status, sign-up leads and receiver states.",
    rights: &[
        TableRights {
            table: "contact",
            privilege_entity: "Contact",
            rights: &[Right::Read, Right::Write, Right::AppendTo],
            why: "checklists, deactivation after a bounce; receiver states point to contacts",
        },
        TableRights {
            table: "lead",
            privilege_entity: "Lead",
            rights: &[
                Right::Create,
                Right::Read,
                Right::Write,
                Right::Append,
                Right::AppendTo,
            ],
            why: "sign-ups become leads linked to their campaign (activity); checklists, deactivation; receiver states point to leads",
        },
        TableRights {
            table: "account",
            privilege_entity: "Account",
            rights: &[Right::Read],
            why: "company names and primary contacts",
        },
        TableRights {
            table: "list",
            privilege_entity: "List",
            rights: &[Right::Read, Right::Write, Right::Append, Right::AppendTo],
            why: "members, group id, sync status, flags, retroactive sync; sign-ups join static lists",
        },
        TableRights {
            table: "campaign",
            privilege_entity: "Campaign",
            rights: &[Right::Read, Right::Write, Right::AppendTo],
            why: "linked lists, group id, sync status, flags; sign-up leads point to campaigns",
        },
        TableRights {
            table: "campaignactivity",
            privilege_entity: "Activity",
            rights: &[Right::Read, Right::Write, Right::AppendTo],
            why: "linked lists, group id, sync status, flags; sign-up leads point to campaign activities",
        },
        TableRights {
            table: "crc_setting",
            privilege_entity: "crc_Setting",
            rights: &[Right::Create, Right::Read, Right::Write],
            why: "settings, and the scheduled jobs' cursor rows",
        },
        TableRights {
            table: "crc_receiverstate",
            privilege_entity: "crc_ReceiverState",
            rights: &[Right::Create, Right::Read, Right::Write, Right::Append],
            why: "one row per unsubscribe or bounce, linked to its contact or lead",
        },
    ],
};

/// People who may start a retroactive sync (the seed's ListSyncUser). The role lets them
/// change marketing lists; the field security profile of the same name lets them set the two
/// secured columns (`schema::SECURED_COLUMNS`).
pub const LIST_SYNC_ROLE: RoleSpec = RoleSpec {
    name: "CleverReach List Sync",
    description: "May start a retroactive sync of a marketing list (with the field security profile of the same name).",
    rights: &[TableRights {
        table: "list",
        privilege_entity: "List",
        rights: &[Right::Read, Right::Write],
        why: "set the retroactive sync columns of marketing lists",
    }],
};

/// People who edit newsletter choices with the checklist on forms: the control reads the
/// newsletter types (`typjson`) from the settings table as the signed-in user. Given next to
/// their usual roles (the settings table is organisation-owned: without it nobody reads it).
pub const CHECKLIST_ROLE: RoleSpec = RoleSpec {
    name: "CleverReach Checklist User",
    description: "May read the connector's settings, so that the newsletter checklist on forms can show the newsletter types.",
    rights: &[TableRights {
        table: "crc_setting",
        privilege_entity: "crc_Setting",
        rights: &[Right::Read],
        why: "the checklist control reads the newsletter types",
    }],
};

pub const ROLES: [RoleSpec; 3] = [CONNECTOR_ROLE, LIST_SYNC_ROLE, CHECKLIST_ROLE];

/// The field security profile on `schema::SECURED_COLUMNS`.
pub const LIST_SYNC_PROFILE: &str = "CleverReach List Sync";
pub const LIST_SYNC_PROFILE_DESCRIPTION: &str =
    "May read and set the retroactive sync columns of marketing lists.";

/// What the installer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
    /// Steps that existed with other filtering attributes or images, brought up to date.
    pub updated: Vec<String>,
}

fn first_id(rows: &[Value], key: &str) -> Option<String> {
    rows.first()
        .and_then(|r| r.get(key))
        .and_then(Value::as_str)
        .map(str::to_string)
}

async fn rows(
    client: &DataverseClient,
    set: &str,
    query: Query,
) -> Result<Vec<Value>, DataverseError> {
    let mut pages = client.query::<Value>(set, &query);
    let mut all = Vec::new();
    while let Some(page) = pages.next_page().await? {
        all.extend(page);
    }
    Ok(all)
}

/// Registers the webhook endpoint (WebhookKey authentication: `?code=<key>`) and every step.
pub async fn install_webhooks(
    client: &DataverseClient,
    intake_url: &str,
    webhook_key: &crate::secret::Secret,
) -> Result<InstallReport, DataverseError> {
    let mut report = InstallReport::default();
    let endpoint_filter = format!("name eq {}", filter::string_literal(ENDPOINT_NAME));
    let existing = rows(
        client,
        "serviceendpoints",
        Query::new()
            .select(["serviceendpointid"])
            .filter(endpoint_filter),
    )
    .await?;
    let endpoint = match first_id(&existing, "serviceendpointid") {
        Some(id) => {
            report.existing.push(ENDPOINT_NAME.to_string());
            id
        }
        None => {
            let id = client
                .create(
                    "serviceendpoints",
                    &json!({
                        "name": ENDPOINT_NAME,
                        "contract": 8,
                        "url": intake_url,
                        "authtype": 4,
                        "authvalue": webhook_key.expose(),
                        "messageformat": 2,
                        "messagecharset": 1,
                    }),
                )
                .await?;
            report.created.push(ENDPOINT_NAME.to_string());
            id
        }
    };
    for step in steps() {
        let name = step.name();
        match existing_step(client, &step).await? {
            None => {
                register_step(client, &endpoint, &step).await?;
                report.created.push(name);
            }
            Some(found) if found.differences(&step).is_empty() => report.existing.push(name),
            Some(found) => {
                update_step(client, &step, &found).await?;
                report.updated.push(name);
            }
        }
    }
    Ok(report)
}

/// A registered step as the CRM has it: its filtering attributes and images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExistingStep {
    pub id: String,
    pub filtering_attributes: Vec<String>,
    /// (alias, image type) → (image id, attributes).
    pub images: BTreeMap<(String, i64), (String, Vec<String>)>,
}

fn attribute_list(text: &str) -> Vec<String> {
    let mut list: Vec<String> = text
        .split(',')
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect();
    list.sort();
    list
}

impl ExistingStep {
    /// What differs from the step the connector needs (empty: nothing).
    pub fn differences(&self, step: &StepSpec) -> Vec<String> {
        let mut differences = Vec::new();
        if self.filtering_attributes != attribute_list(&step.filtering_attributes.join(",")) {
            differences.push("filtering attributes".to_string());
        }
        for image in &step.images {
            let key = (image.alias.to_string(), image.image_type);
            match self.images.get(&key) {
                None => differences.push(format!("image {} missing", image.alias)),
                Some((_, attributes))
                    if *attributes != attribute_list(&image.attributes.join(",")) =>
                {
                    differences.push(format!("image {} attributes", image.alias));
                }
                Some(_) => {}
            }
        }
        differences
    }
}

/// The step of this name as registered, or `None`.
pub async fn existing_step(
    client: &DataverseClient,
    step: &StepSpec,
) -> Result<Option<ExistingStep>, DataverseError> {
    let found = rows(
        client,
        "sdkmessageprocessingsteps",
        Query::new()
            .select(["sdkmessageprocessingstepid", "filteringattributes"])
            .filter(format!("name eq {}", filter::string_literal(&step.name()))),
    )
    .await?;
    let Some(row) = found.first() else {
        return Ok(None);
    };
    let Some(id) = first_id(&found, "sdkmessageprocessingstepid") else {
        return Ok(None);
    };
    let mut existing = ExistingStep {
        filtering_attributes: attribute_list(
            row.get("filteringattributes")
                .and_then(Value::as_str)
                .unwrap_or(""),
        ),
        id,
        images: BTreeMap::new(),
    };
    let images = rows(
        client,
        "sdkmessageprocessingstepimages",
        Query::new()
            .select([
                "sdkmessageprocessingstepimageid",
                "entityalias",
                "imagetype",
                "attributes",
            ])
            .filter(format!(
                "_sdkmessageprocessingstepid_value eq {}",
                filter::guid_literal(&existing.id)?
            )),
    )
    .await?;
    for image in images {
        let text = |key: &str| {
            image
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let image_type = image.get("imagetype").and_then(Value::as_i64).unwrap_or(-1);
        existing.images.insert(
            (text("entityalias"), image_type),
            (
                text("sdkmessageprocessingstepimageid"),
                attribute_list(&text("attributes")),
            ),
        );
    }
    Ok(Some(existing))
}

/// Brings an existing step's filtering attributes and images to what the connector needs (a
/// new release reads more columns, or needs a column in a pre-image).
async fn update_step(
    client: &DataverseClient,
    step: &StepSpec,
    found: &ExistingStep,
) -> Result<(), DataverseError> {
    let wanted = attribute_list(&step.filtering_attributes.join(","));
    if found.filtering_attributes != wanted {
        client
            .update(
                "sdkmessageprocessingsteps",
                &found.id,
                &json!({ "filteringattributes": step.filtering_attributes.join(",") }),
            )
            .await?;
    }
    for image in &step.images {
        let key = (image.alias.to_string(), image.image_type);
        let attributes = image.attributes.join(",");
        match found.images.get(&key) {
            None => {
                client
                    .create(
                        "sdkmessageprocessingstepimages",
                        &json!({
                            "name": image.alias,
                            "entityalias": image.alias,
                            "imagetype": image.image_type,
                            "messagepropertyname": "Target",
                            "attributes": attributes,
                            "sdkmessageprocessingstepid@odata.bind": format!("/sdkmessageprocessingsteps({})", found.id),
                        }),
                    )
                    .await?;
            }
            Some((id, have)) if *have != attribute_list(&attributes) => {
                client
                    .update(
                        "sdkmessageprocessingstepimages",
                        id,
                        &json!({ "attributes": attributes }),
                    )
                    .await?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

async fn register_step(
    client: &DataverseClient,
    endpoint: &str,
    step: &StepSpec,
) -> Result<(), DataverseError> {
    let messages = rows(
        client,
        "sdkmessages",
        Query::new()
            .select(["sdkmessageid"])
            .filter(format!("name eq {}", filter::string_literal(step.message))),
    )
    .await?;
    let message =
        first_id(&messages, "sdkmessageid").ok_or_else(|| DataverseError::InvalidInput {
            what: "SDK message".into(),
            reason: format!("the CRM has no SDK message {}", step.message),
        })?;
    let filters = rows(
        client,
        "sdkmessagefilters",
        Query::new().select(["sdkmessagefilterid"]).filter(format!(
            "primaryobjecttypecode eq {} and _sdkmessageid_value eq {}",
            filter::string_literal(step.entity),
            filter::guid_literal(&message)?
        )),
    )
    .await?;
    let message_filter =
        first_id(&filters, "sdkmessagefilterid").ok_or_else(|| DataverseError::InvalidInput {
            what: "SDK message filter".into(),
            reason: format!(
                "the CRM cannot register {} on {}",
                step.message, step.entity
            ),
        })?;
    let mut body = json!({
        "name": step.name(),
        "stage": 40,
        "mode": 1,
        "rank": 1,
        "asyncautodelete": true,
        "supporteddeployment": 0,
        "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint})"),
        "sdkmessageid@odata.bind": format!("/sdkmessages({message})"),
        "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({message_filter})"),
    });
    if !step.filtering_attributes.is_empty()
        && let Some(map) = body.as_object_mut()
    {
        map.insert(
            "filteringattributes".into(),
            json!(step.filtering_attributes.join(",")),
        );
    }
    let step_id = client.create("sdkmessageprocessingsteps", &body).await?;
    for image in &step.images {
        client
            .create(
                "sdkmessageprocessingstepimages",
                &json!({
                    "name": image.alias,
                    "entityalias": image.alias,
                    "imagetype": image.image_type,
                    "messagepropertyname": "Target",
                    "attributes": image.attributes.join(","),
                    "sdkmessageprocessingstepid@odata.bind": format!("/sdkmessageprocessingsteps({step_id})"),
                }),
            )
            .await?;
    }
    Ok(())
}
