//! Installing the connector in a CRM: the webhook service endpoint, the SDK message processing
//! steps (message, table, filtering attributes, images) and the settings rows, registered
//! through the Web API the way an administrator would, and the security roles the installer
//! creates (`CONNECTOR_ROLE`, `LIST_SYNC_ROLE`). Idempotent: what exists is left alone.

use crate::adapters::dataverse::client::{DataverseClient, DataverseError, Query, filter};
use crate::adapters::dataverse::schema;
use serde_json::{Value, json};

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
        step("Delete", "list", &[], vec![pre(&[schema::GROUP_ID])]),
        step("AddMember", "list", &[], vec![]),
        step("AddListMembers", "list", &[], vec![]),
        step("RemoveMember", "list", &[], vec![]),
        step("Create", "campaign", &[], vec![]),
        step("Update", "campaign", CAMPAIGN_UPDATE, vec![]),
        step("Delete", "campaign", &[], vec![pre(&[schema::GROUP_ID])]),
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
            vec![pre(&[schema::GROUP_ID])],
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

pub const ROLES: [RoleSpec; 2] = [CONNECTOR_ROLE, LIST_SYNC_ROLE];

/// The field security profile on `schema::SECURED_COLUMNS`.
pub const LIST_SYNC_PROFILE: &str = "CleverReach List Sync";
pub const LIST_SYNC_PROFILE_DESCRIPTION: &str =
    "May read and set the retroactive sync columns of marketing lists.";

/// What the installer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallReport {
    pub created: Vec<String>,
    pub existing: Vec<String>,
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
        let found = rows(
            client,
            "sdkmessageprocessingsteps",
            Query::new()
                .select(["sdkmessageprocessingstepid"])
                .filter(format!("name eq {}", filter::string_literal(&name))),
        )
        .await?;
        if found.is_empty() {
            register_step(client, &endpoint, &step).await?;
            report.created.push(name);
        } else {
            report.existing.push(name);
        }
    }
    Ok(report)
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
