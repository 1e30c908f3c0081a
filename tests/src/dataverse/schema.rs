//! The schema of a plain org, in one place: the standard tables (entity sets, primary keys,
//! primary names, object type codes), their columns with types and write rules, lookups with
//! their navigation properties, the N:N relationships, the seeded SDK messages and filters, and
//! the platform tables of customization and security (publishers, solutions, roles,
//! privileges, field security).
//!
//! No `crc_` table or column is here: an org gets them from the installer through the metadata
//! endpoints (`metadata.rs`), which extend a simulator's [`super::catalog::Catalog`].

use uuid::Uuid;

/// One option of a choice column: value and label.
#[derive(Debug, Clone, Copy)]
pub struct Opt(pub i64, pub &'static str);

/// A single-valued navigation property of a lookup column and the table it points to.
#[derive(Debug, Clone, Copy)]
pub struct Nav {
    pub name: &'static str,
    pub target: &'static str,
}

/// Column types, as far as the Web API and webhook bodies tell them apart.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// The primary key (a GUID).
    Pk,
    /// Text with a maximum length in characters (String and Memo columns).
    Str(usize),
    Int,
    Bool,
    DateTime,
    /// A choice (option set); also used for statecode/statuscode through the table's states.
    Choice(&'static [Opt]),
    State,
    Status,
    /// A lookup: returned as `_<name>_value`, written through one of its navigation properties.
    Lookup(&'static [Nav]),
    /// A plain uniqueidentifier column that is not a lookup (campaignitem.entityid).
    Guid,
    /// An EntityName column: the logical name of a table, as a string.
    EntityName,
}

/// Who may write a column through the Web API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// Valid for create only; updates of it are ignored, as Dataverse ignores them.
    CreateOnly,
    /// Maintained by the platform; writes are ignored.
    System,
    /// Valid for create and update, never returned (serviceendpoint.authvalue).
    WriteOnly,
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub access: Access,
}

/// One state of a table with its status reasons; the first status is the default.
#[derive(Debug, Clone, Copy)]
pub struct StateDef {
    pub state: i64,
    pub label: &'static str,
    pub statuses: &'static [Opt],
}

/// How the Web API may write a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Create, update and delete.
    Yes,
    /// Rows are maintained through actions (intersect tables): POST/PATCH/DELETE are refused.
    ActionsOnly,
    /// Platform data (sdkmessages, sdkmessagefilters, asyncoperations): read only.
    ReadOnly,
}

#[derive(Debug)]
pub struct Table {
    pub logical: &'static str,
    pub set: &'static str,
    pub pk: &'static str,
    pub primary_name: &'static str,
    pub otc: i64,
    pub columns: &'static [Column],
    pub states: &'static [StateDef],
    /// User-owned tables get `ownerid`.
    pub owned: bool,
    pub writes: Writes,
}

const fn rw(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        access: Access::ReadWrite,
    }
}
const fn sys(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        access: Access::System,
    }
}
const fn create_only(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        access: Access::CreateOnly,
    }
}
const fn pk(name: &'static str) -> Column {
    Column {
        name,
        kind: Kind::Pk,
        access: Access::ReadWrite,
    }
}
const fn one(name: &'static str, target: &'static str) -> [Nav; 1] {
    [Nav { name, target }]
}

const STATE: Column = rw("statecode", Kind::State);
const STATUS: Column = rw("statuscode", Kind::Status);

/// Memo columns: the connector's JSON columns and descriptions. Real `description` columns
/// default to 2,000 characters; the sandbox allows more (as an administrator may configure) so
/// that tests can produce webhook bodies over 256 KB.
const MEMO: Kind = Kind::Str(1_048_576);
const QUERY_MAX: usize = 1_073_741_823;

static CREATEDBY: [Nav; 1] = one("createdby", "systemuser");
static MODIFIEDBY: [Nav; 1] = one("modifiedby", "systemuser");
static MODIFIEDONBEHALFBY: [Nav; 1] = one("modifiedonbehalfby", "systemuser");
static OWNERID: [Nav; 1] = one("ownerid", "systemuser");

/// Columns every table has, maintained by the platform.
pub static COMMON: [Column; 6] = [
    sys("createdon", Kind::DateTime),
    sys("modifiedon", Kind::DateTime),
    sys("createdby", Kind::Lookup(&CREATEDBY)),
    sys("modifiedby", Kind::Lookup(&MODIFIEDBY)),
    sys("modifiedonbehalfby", Kind::Lookup(&MODIFIEDONBEHALFBY)),
    sys("versionnumber", Kind::Int),
];

/// `ownerid` of user-owned tables (set to the caller on create; may be bound to a systemuser).
pub static OWNER: Column = rw("ownerid", Kind::Lookup(&OWNERID));

const ACTIVE_INACTIVE: [StateDef; 2] = [
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

// --- account -------------------------------------------------------------------------------

static ACCOUNT_PRIMARYCONTACT: [Nav; 1] = one("primarycontactid", "contact");
static ACCOUNT_PARENT: [Nav; 1] = one("parentaccountid", "account");
static ACCOUNT_COLUMNS: [Column; 15] = [
    pk("accountid"),
    rw("name", Kind::Str(160)),
    rw("accountnumber", Kind::Str(20)),
    rw("emailaddress1", Kind::Str(100)),
    rw("telephone1", Kind::Str(50)),
    rw("address1_city", Kind::Str(80)),
    rw("address1_country", Kind::Str(80)),
    rw("websiteurl", Kind::Str(200)),
    rw("description", MEMO),
    rw("donotbulkemail", Kind::Bool),
    rw("primarycontactid", Kind::Lookup(&ACCOUNT_PRIMARYCONTACT)),
    rw("parentaccountid", Kind::Lookup(&ACCOUNT_PARENT)),
    rw("donotemail", Kind::Bool),
    STATE,
    STATUS,
];

// --- contact -------------------------------------------------------------------------------

static CONTACT_PARENTCUSTOMER: [Nav; 2] = [
    Nav {
        name: "parentcustomerid_account",
        target: "account",
    },
    Nav {
        name: "parentcustomerid_contact",
        target: "contact",
    },
];
static GENDER: [Opt; 2] = [Opt(1, "Male"), Opt(2, "Female")];
static CONTACT_COLUMNS: [Column; 22] = [
    pk("contactid"),
    sys("fullname", Kind::Str(160)),
    rw("firstname", Kind::Str(50)),
    rw("lastname", Kind::Str(50)),
    rw("middlename", Kind::Str(50)),
    rw("salutation", Kind::Str(100)),
    rw("jobtitle", Kind::Str(100)),
    rw("emailaddress1", Kind::Str(100)),
    rw("emailaddress2", Kind::Str(100)),
    rw("telephone1", Kind::Str(50)),
    rw("mobilephone", Kind::Str(50)),
    rw("address1_city", Kind::Str(80)),
    rw("address1_country", Kind::Str(80)),
    rw("address1_postalcode", Kind::Str(20)),
    rw("birthdate", Kind::DateTime),
    rw("gendercode", Kind::Choice(&GENDER)),
    rw("parentcustomerid", Kind::Lookup(&CONTACT_PARENTCUSTOMER)),
    rw("donotbulkemail", Kind::Bool),
    rw("donotemail", Kind::Bool),
    rw("description", MEMO),
    STATE,
    STATUS,
];

// --- lead ----------------------------------------------------------------------------------

static LEAD_CAMPAIGN: [Nav; 1] = one("campaignid", "campaign");
static LEAD_PARENTCONTACT: [Nav; 1] = one("parentcontactid", "contact");
static LEAD_PARENTACCOUNT: [Nav; 1] = one("parentaccountid", "account");
static LEAD_SOURCE: [Opt; 10] = [
    Opt(1, "Advertisement"),
    Opt(2, "Employee Referral"),
    Opt(3, "External Referral"),
    Opt(4, "Partner"),
    Opt(5, "Public Relations"),
    Opt(6, "Seminar"),
    Opt(7, "Trade Show"),
    Opt(8, "Web"),
    Opt(9, "Word of Mouth"),
    Opt(10, "Other"),
];
static LEAD_COLUMNS: [Column; 22] = [
    pk("leadid"),
    sys("fullname", Kind::Str(160)),
    rw("firstname", Kind::Str(50)),
    rw("lastname", Kind::Str(50)),
    rw("salutation", Kind::Str(100)),
    rw("subject", Kind::Str(300)),
    rw("companyname", Kind::Str(100)),
    rw("jobtitle", Kind::Str(100)),
    rw("emailaddress1", Kind::Str(100)),
    rw("telephone1", Kind::Str(50)),
    rw("mobilephone", Kind::Str(50)),
    rw("address1_city", Kind::Str(80)),
    rw("address1_country", Kind::Str(80)),
    rw("description", MEMO),
    rw("donotbulkemail", Kind::Bool),
    rw("donotemail", Kind::Bool),
    rw("leadsourcecode", Kind::Choice(&LEAD_SOURCE)),
    rw("campaignid", Kind::Lookup(&LEAD_CAMPAIGN)),
    rw("parentcontactid", Kind::Lookup(&LEAD_PARENTCONTACT)),
    rw("parentaccountid", Kind::Lookup(&LEAD_PARENTACCOUNT)),
    STATE,
    STATUS,
];
static LEAD_STATES: [StateDef; 3] = [
    StateDef {
        state: 0,
        label: "Open",
        statuses: &[Opt(1, "New"), Opt(2, "Contacted")],
    },
    StateDef {
        state: 1,
        label: "Qualified",
        statuses: &[Opt(3, "Qualified")],
    },
    StateDef {
        state: 2,
        label: "Disqualified",
        statuses: &[
            Opt(4, "Lost"),
            Opt(5, "Cannot Contact"),
            Opt(6, "No Longer Interested"),
            Opt(7, "Canceled"),
        ],
    },
];

// --- list ----------------------------------------------------------------------------------

static LIST_CREATEDFROM: [Opt; 3] = [Opt(1, "Account"), Opt(2, "Contact"), Opt(4, "Lead")];
static LIST_COLUMNS: [Column; 16] = [
    pk("listid"),
    rw("listname", Kind::Str(128)),
    create_only("type", Kind::Bool),
    create_only("createdfromcode", Kind::Choice(&LIST_CREATEDFROM)),
    sys("membertype", Kind::Int),
    rw("query", Kind::Str(QUERY_MAX)),
    sys("membercount", Kind::Int),
    rw("lockstatus", Kind::Bool),
    rw("description", MEMO),
    rw("purpose", Kind::Str(512)),
    rw("source", Kind::Str(128)),
    rw("donotsendonoptout", Kind::Bool),
    rw("ignoreinactivelistmembers", Kind::Bool),
    STATE,
    STATUS,
    rw("cost", Kind::Int),
];
static LIST_STATES: [StateDef; 2] = [
    StateDef {
        state: 0,
        label: "Active",
        statuses: &[Opt(0, "Active")],
    },
    StateDef {
        state: 1,
        label: "Inactive",
        statuses: &[Opt(1, "Inactive")],
    },
];

// --- listmember ----------------------------------------------------------------------------

static LISTMEMBER_LIST: [Nav; 1] = one("listid", "list");
static LISTMEMBER_ENTITY: [Nav; 3] = [
    Nav {
        name: "entityid_account",
        target: "account",
    },
    Nav {
        name: "entityid_contact",
        target: "contact",
    },
    Nav {
        name: "entityid_lead",
        target: "lead",
    },
];
static LISTMEMBER_COLUMNS: [Column; 4] = [
    pk("listmemberid"),
    sys("listid", Kind::Lookup(&LISTMEMBER_LIST)),
    sys("entityid", Kind::Lookup(&LISTMEMBER_ENTITY)),
    sys("entitytype", Kind::EntityName),
];

// --- campaign ------------------------------------------------------------------------------

static CAMPAIGN_TYPE: [Opt; 5] = [
    Opt(1, "Advertisement"),
    Opt(2, "Direct Marketing"),
    Opt(3, "Event"),
    Opt(4, "Co-branding"),
    Opt(5, "Other"),
];
static CAMPAIGN_COLUMNS: [Column; 13] = [
    pk("campaignid"),
    rw("name", Kind::Str(128)),
    rw("codename", Kind::Str(32)),
    rw("description", MEMO),
    rw("typecode", Kind::Choice(&CAMPAIGN_TYPE)),
    rw("istemplate", Kind::Bool),
    rw("proposedstart", Kind::DateTime),
    rw("proposedend", Kind::DateTime),
    rw("actualstart", Kind::DateTime),
    rw("actualend", Kind::DateTime),
    STATE,
    STATUS,
    rw("objective", Kind::Str(4000)),
];
static CAMPAIGN_STATES: [StateDef; 2] = [
    StateDef {
        state: 0,
        label: "Active",
        statuses: &[
            Opt(0, "Proposed"),
            Opt(1, "Ready To Launch"),
            Opt(2, "Launched"),
            Opt(3, "Completed"),
            Opt(4, "Canceled"),
            Opt(5, "Suspended"),
        ],
    },
    StateDef {
        state: 1,
        label: "Inactive",
        statuses: &[Opt(6, "Inactive")],
    },
];

// --- campaignactivity ----------------------------------------------------------------------

static CACT_REGARDING: [Nav; 1] = one("regardingobjectid_campaign_campaignactivity", "campaign");
static CHANNEL: [Opt; 9] = [
    Opt(1, "Phone"),
    Opt(2, "Appointment"),
    Opt(3, "Letter"),
    Opt(4, "Letter via Mail Merge"),
    Opt(5, "Fax"),
    Opt(6, "Fax via Mail Merge"),
    Opt(7, "Email"),
    Opt(8, "Email via Mail Merge"),
    Opt(9, "Other"),
];
static CACT_COLUMNS: [Column; 13] = [
    pk("activityid"),
    rw("subject", Kind::Str(200)),
    rw("description", MEMO),
    create_only("regardingobjectid", Kind::Lookup(&CACT_REGARDING)),
    rw("channeltypecode", Kind::Choice(&CHANNEL)),
    sys("activitytypecode", Kind::EntityName),
    rw("scheduledstart", Kind::DateTime),
    rw("scheduledend", Kind::DateTime),
    rw("donotsendonoptout", Kind::Bool),
    rw("ignoreinactivelistmembers", Kind::Bool),
    rw("excludeifcontactedinxdays", Kind::Int),
    STATE,
    STATUS,
];
static CACT_STATES: [StateDef; 3] = [
    StateDef {
        state: 0,
        label: "Open",
        statuses: &[
            Opt(1, "Proposed"),
            Opt(0, "In Progress"),
            Opt(4, "Pending"),
            Opt(5, "System Aborted"),
            Opt(6, "Completed"),
        ],
    },
    StateDef {
        state: 1,
        label: "Closed",
        statuses: &[Opt(2, "Closed")],
    },
    StateDef {
        state: 2,
        label: "Canceled",
        statuses: &[Opt(3, "Canceled")],
    },
];

// --- campaignitem / campaignactivityitem ---------------------------------------------------

static CITEM_CAMPAIGN: [Nav; 1] = one("campaignid", "campaign");
static CITEM_COLUMNS: [Column; 4] = [
    pk("campaignitemid"),
    sys("campaignid", Kind::Lookup(&CITEM_CAMPAIGN)),
    sys("entityid", Kind::Guid),
    sys("entitytype", Kind::EntityName),
];
static CAITEM_ACTIVITY: [Nav; 1] = one("campaignactivityid", "campaignactivity");
static CAITEM_COLUMNS: [Column; 4] = [
    pk("campaignactivityitemid"),
    sys("campaignactivityid", Kind::Lookup(&CAITEM_ACTIVITY)),
    sys("itemid", Kind::Guid),
    sys("itemobjecttypecode", Kind::EntityName),
];

// --- systemuser ----------------------------------------------------------------------------

static SYSTEMUSER_COLUMNS: [Column; 7] = [
    pk("systemuserid"),
    rw("fullname", Kind::Str(200)),
    rw("domainname", Kind::Str(1024)),
    rw("applicationid", Kind::Guid),
    rw("azureactivedirectoryobjectid", Kind::Guid),
    rw("isdisabled", Kind::Bool),
    rw("internalemailaddress", Kind::Str(100)),
];

// --- customization and security ----------------------------------------------------------

static PUBLISHER_COLUMNS: [Column; 7] = [
    pk("publisherid"),
    rw("uniquename", Kind::Str(256)),
    rw("friendlyname", Kind::Str(256)),
    rw("description", Kind::Str(2000)),
    rw("customizationprefix", Kind::Str(8)),
    rw("customizationoptionvalueprefix", Kind::Int),
    sys("isreadonly", Kind::Bool),
];
static SOLUTION_PUBLISHER: [Nav; 1] = one("publisherid", "publisher");
static SOLUTION_COLUMNS: [Column; 7] = [
    pk("solutionid"),
    rw("uniquename", Kind::Str(65)),
    rw("friendlyname", Kind::Str(256)),
    rw("version", Kind::Str(256)),
    rw("description", Kind::Str(2000)),
    sys("ismanaged", Kind::Bool),
    rw("publisherid", Kind::Lookup(&SOLUTION_PUBLISHER)),
];
static COMPONENT_SOLUTION: [Nav; 1] = one("solutionid", "solution");
static SOLUTIONCOMPONENT_COLUMNS: [Column; 5] = [
    pk("solutioncomponentid"),
    rw("solutionid", Kind::Lookup(&COMPONENT_SOLUTION)),
    rw("componenttype", Kind::Int),
    rw("objectid", Kind::Guid),
    rw("rootcomponentbehavior", Kind::Int),
];
static ROLE_BUSINESSUNIT: [Nav; 1] = one("businessunitid", "businessunit");
static ROLE_COLUMNS: [Column; 4] = [
    pk("roleid"),
    rw("name", Kind::Str(100)),
    rw("description", Kind::Str(2000)),
    rw("businessunitid", Kind::Lookup(&ROLE_BUSINESSUNIT)),
];
static PRIVILEGE_COLUMNS: [Column; 7] = [
    pk("privilegeid"),
    rw("name", Kind::Str(100)),
    rw("accessright", Kind::Int),
    rw("canbebasic", Kind::Bool),
    rw("canbelocal", Kind::Bool),
    rw("canbedeep", Kind::Bool),
    rw("canbeglobal", Kind::Bool),
];
/// Intersect of role and privilege; `privilegedepthmask` 1 Basic, 2 Local, 4 Deep, 8 Global.
static ROLEPRIVILEGE_COLUMNS: [Column; 4] = [
    pk("roleprivilegeid"),
    sys("roleid", Kind::Guid),
    sys("privilegeid", Kind::Guid),
    sys("privilegedepthmask", Kind::Int),
];
static SYSTEMUSERROLE_COLUMNS: [Column; 3] = [
    pk("systemuserroleid"),
    sys("systemuserid", Kind::Guid),
    sys("roleid", Kind::Guid),
];
static FIELDSECURITYPROFILE_COLUMNS: [Column; 3] = [
    pk("fieldsecurityprofileid"),
    rw("name", Kind::Str(256)),
    rw("description", Kind::Str(2000)),
];
static FIELDPERMISSION_PROFILE: [Nav; 1] = one("fieldsecurityprofileid", "fieldsecurityprofile");
static FIELD_PERMISSION: [Opt; 2] = [Opt(0, "Not Allowed"), Opt(4, "Allowed")];
static FIELDPERMISSION_COLUMNS: [Column; 7] = [
    pk("fieldpermissionid"),
    create_only(
        "fieldsecurityprofileid",
        Kind::Lookup(&FIELDPERMISSION_PROFILE),
    ),
    create_only("entityname", Kind::EntityName),
    create_only("attributelogicalname", Kind::Str(100)),
    rw("canread", Kind::Choice(&FIELD_PERMISSION)),
    rw("cancreate", Kind::Choice(&FIELD_PERMISSION)),
    rw("canupdate", Kind::Choice(&FIELD_PERMISSION)),
];
static SYSTEMUSERPROFILE_COLUMNS: [Column; 3] = [
    pk("systemuserprofileid"),
    sys("systemuserid", Kind::Guid),
    sys("fieldsecurityprofileid", Kind::Guid),
];

// --- webhook registration ------------------------------------------------------------------

static CONTRACT: [Opt; 10] = [
    Opt(1, "OneWay"),
    Opt(2, "Queue"),
    Opt(3, "Rest"),
    Opt(4, "TwoWay"),
    Opt(5, "Topic"),
    Opt(6, "Queue (Persistent)"),
    Opt(7, "Event Hub"),
    Opt(8, "Webhook"),
    Opt(9, "Event Grid"),
    Opt(10, "Managed Data Lake"),
];
static AUTHTYPE: [Opt; 8] = [
    Opt(1, "ACS"),
    Opt(2, "SAS Key"),
    Opt(3, "SAS Token"),
    Opt(4, "Webhook Key"),
    Opt(5, "Http Header"),
    Opt(6, "Http Query String"),
    Opt(7, "Connection String"),
    Opt(8, "Access Key"),
];
static MESSAGEFORMAT: [Opt; 3] = [Opt(1, "Binary XML"), Opt(2, "Json"), Opt(3, "Text XML")];
static MESSAGECHARSET: [Opt; 2] = [Opt(0, "Default"), Opt(1, "UTF8")];
static SERVICEENDPOINT_COLUMNS: [Column; 10] = [
    pk("serviceendpointid"),
    rw("name", Kind::Str(256)),
    rw("description", Kind::Str(2000)),
    rw("contract", Kind::Choice(&CONTRACT)),
    rw("url", Kind::Str(2000)),
    rw("authtype", Kind::Choice(&AUTHTYPE)),
    Column {
        name: "authvalue",
        kind: Kind::Str(2048),
        access: Access::WriteOnly,
    },
    rw("messageformat", Kind::Choice(&MESSAGEFORMAT)),
    rw("messagecharset", Kind::Choice(&MESSAGECHARSET)),
    rw("namespaceaddress", Kind::Str(255)),
];

static STEP_EVENTHANDLER: [Nav; 1] = one("eventhandler_serviceendpoint", "serviceendpoint");
static STEP_MESSAGE: [Nav; 1] = one("sdkmessageid", "sdkmessage");
static STEP_FILTER: [Nav; 1] = one("sdkmessagefilterid", "sdkmessagefilter");
static STAGE: [Opt; 4] = [
    Opt(10, "Pre-validation"),
    Opt(20, "Pre-operation"),
    Opt(30, "Main operation"),
    Opt(40, "Post-operation"),
];
static MODE: [Opt; 2] = [Opt(0, "Synchronous"), Opt(1, "Asynchronous")];
static DEPLOYMENT: [Opt; 3] = [
    Opt(0, "Server Only"),
    Opt(1, "Microsoft Dynamics 365 Client for Outlook Only"),
    Opt(2, "Both"),
];
static STEP_COLUMNS: [Column; 15] = [
    pk("sdkmessageprocessingstepid"),
    rw("name", Kind::Str(256)),
    rw("description", Kind::Str(256)),
    rw("eventhandler", Kind::Lookup(&STEP_EVENTHANDLER)),
    rw("sdkmessageid", Kind::Lookup(&STEP_MESSAGE)),
    rw("sdkmessagefilterid", Kind::Lookup(&STEP_FILTER)),
    rw("stage", Kind::Choice(&STAGE)),
    rw("mode", Kind::Choice(&MODE)),
    rw("rank", Kind::Int),
    rw("filteringattributes", Kind::Str(100_000)),
    rw("asyncautodelete", Kind::Bool),
    rw("supporteddeployment", Kind::Choice(&DEPLOYMENT)),
    rw("configuration", Kind::Str(1_073_741_823)),
    STATE,
    STATUS,
];
static STEP_STATES: [StateDef; 2] = [
    StateDef {
        state: 0,
        label: "Enabled",
        statuses: &[Opt(1, "Enabled")],
    },
    StateDef {
        state: 1,
        label: "Disabled",
        statuses: &[Opt(2, "Disabled")],
    },
];

static IMAGE_STEP: [Nav; 1] = one("sdkmessageprocessingstepid", "sdkmessageprocessingstep");
static IMAGETYPE: [Opt; 3] = [Opt(0, "PreImage"), Opt(1, "PostImage"), Opt(2, "Both")];
static IMAGE_COLUMNS: [Column; 8] = [
    pk("sdkmessageprocessingstepimageid"),
    rw("name", Kind::Str(256)),
    rw("entityalias", Kind::Str(256)),
    rw("imagetype", Kind::Choice(&IMAGETYPE)),
    rw("attributes", Kind::Str(100_000)),
    rw("messagepropertyname", Kind::Str(256)),
    rw("description", Kind::Str(256)),
    rw("sdkmessageprocessingstepid", Kind::Lookup(&IMAGE_STEP)),
];

static MESSAGE_COLUMNS: [Column; 4] = [
    pk("sdkmessageid"),
    rw("name", Kind::Str(256)),
    rw("isprivate", Kind::Bool),
    rw("availability", Kind::Int),
];
static FILTER_MESSAGE: [Nav; 1] = one("sdkmessageid", "sdkmessage");
static FILTER_COLUMNS: [Column; 8] = [
    pk("sdkmessagefilterid"),
    rw("name", Kind::Str(256)),
    rw("sdkmessageid", Kind::Lookup(&FILTER_MESSAGE)),
    rw("primaryobjecttypecode", Kind::EntityName),
    rw("secondaryobjecttypecode", Kind::EntityName),
    rw("iscustomprocessingstepallowed", Kind::Bool),
    rw("isvisible", Kind::Bool),
    rw("availability", Kind::Int),
];

static ASYNC_EXTENSION: [Nav; 1] = one(
    "owningextensionid_sdkmessageprocessingstep",
    "sdkmessageprocessingstep",
);
static ASYNC_COLUMNS: [Column; 12] = [
    pk("asyncoperationid"),
    rw("name", Kind::Str(256)),
    rw("operationtype", Kind::Int),
    rw("message", Kind::Str(1_073_741_823)),
    rw("friendlymessage", Kind::Str(1_073_741_823)),
    rw("messagename", Kind::Str(160)),
    rw("primaryentitytype", Kind::EntityName),
    rw("correlationid", Kind::Guid),
    rw("owningextensionid", Kind::Lookup(&ASYNC_EXTENSION)),
    rw("completedon", Kind::DateTime),
    STATE,
    STATUS,
];
static ASYNC_STATES: [StateDef; 4] = [
    StateDef {
        state: 0,
        label: "Ready",
        statuses: &[Opt(0, "Waiting For Resources")],
    },
    StateDef {
        state: 1,
        label: "Suspended",
        statuses: &[Opt(10, "Waiting")],
    },
    StateDef {
        state: 2,
        label: "Locked",
        statuses: &[
            Opt(20, "In Progress"),
            Opt(21, "Pausing"),
            Opt(22, "Canceling"),
        ],
    },
    StateDef {
        state: 3,
        label: "Completed",
        statuses: &[Opt(30, "Succeeded"), Opt(31, "Failed"), Opt(32, "Canceled")],
    },
];

// --- web resources and forms ----------------------------------------------------------------

/// `webresource.webresourcetype` (PA-WRENT).
static WEBRESOURCE_TYPE: [Opt; 12] = [
    Opt(1, "Webpage (HTML)"),
    Opt(2, "Style Sheet (CSS)"),
    Opt(3, "Script (JScript)"),
    Opt(4, "Data (XML)"),
    Opt(5, "PNG format"),
    Opt(6, "JPG format"),
    Opt(7, "GIF format"),
    Opt(8, "Silverlight (XAP)"),
    Opt(9, "Style Sheet (XSL)"),
    Opt(10, "ICO format"),
    Opt(11, "Vector format (SVG)"),
    Opt(12, "String (RESX)"),
];
/// `componentstate` of solution-aware components.
static COMPONENT_STATE: [Opt; 4] = [
    Opt(0, "Published"),
    Opt(1, "Unpublished"),
    Opt(2, "Deleted"),
    Opt(3, "Deleted Unpublished"),
];
/// The largest web resource: Dataverse's default upload limit (5 MB) as base64.
pub const WEBRESOURCE_CONTENT_MAX: usize = 5 * 1024 * 1024 / 3 * 4 + 4;
static WEBRESOURCE_COLUMNS: [Column; 9] = [
    pk("webresourceid"),
    create_only("name", Kind::Str(100)),
    rw("displayname", Kind::Str(200)),
    rw("description", Kind::Str(2000)),
    create_only("webresourcetype", Kind::Choice(&WEBRESOURCE_TYPE)),
    rw("content", Kind::Str(WEBRESOURCE_CONTENT_MAX)),
    rw("languagecode", Kind::Int),
    sys("ismanaged", Kind::Bool),
    sys("componentstate", Kind::Choice(&COMPONENT_STATE)),
];
/// `systemform.type` (PA-SFENT).
static FORM_TYPE: [Opt; 14] = [
    Opt(0, "Dashboard"),
    Opt(1, "AppointmentBook"),
    Opt(2, "Main"),
    Opt(3, "MiniCampaignBO"),
    Opt(4, "Preview"),
    Opt(5, "Mobile - Express"),
    Opt(6, "Quick View Form"),
    Opt(7, "Quick Create"),
    Opt(8, "Dialog"),
    Opt(9, "Task Flow Form"),
    Opt(10, "InteractionCentricDashboard"),
    Opt(11, "Card"),
    Opt(12, "Main - Interactive experience"),
    Opt(103, "Power BI Dashboard"),
];
static FORM_ACTIVATION: [Opt; 2] = [Opt(0, "Inactive"), Opt(1, "Active")];
static SYSTEMFORM_COLUMNS: [Column; 11] = [
    pk("formid"),
    rw("name", Kind::Str(100)),
    rw("description", Kind::Str(2000)),
    create_only("objecttypecode", Kind::EntityName),
    create_only("type", Kind::Choice(&FORM_TYPE)),
    rw("formxml", Kind::Str(QUERY_MAX)),
    rw("isdefault", Kind::Bool),
    rw("formactivationstate", Kind::Choice(&FORM_ACTIVATION)),
    sys("ismanaged", Kind::Bool),
    sys("componentstate", Kind::Choice(&COMPONENT_STATE)),
    sys("publishedon", Kind::DateTime),
];

/// The tables of a plain org.
pub static TABLES: [Table; 29] = [
    Table {
        logical: "account",
        set: "accounts",
        pk: "accountid",
        primary_name: "name",
        otc: 1,
        columns: &ACCOUNT_COLUMNS,
        states: &ACTIVE_INACTIVE,
        owned: true,
        writes: Writes::Yes,
    },
    Table {
        logical: "contact",
        set: "contacts",
        pk: "contactid",
        primary_name: "fullname",
        otc: 2,
        columns: &CONTACT_COLUMNS,
        states: &ACTIVE_INACTIVE,
        owned: true,
        writes: Writes::Yes,
    },
    Table {
        logical: "lead",
        set: "leads",
        pk: "leadid",
        primary_name: "fullname",
        otc: 4,
        columns: &LEAD_COLUMNS,
        states: &LEAD_STATES,
        owned: true,
        writes: Writes::Yes,
    },
    Table {
        logical: "list",
        set: "lists",
        pk: "listid",
        primary_name: "listname",
        otc: 4300,
        columns: &LIST_COLUMNS,
        states: &LIST_STATES,
        owned: true,
        writes: Writes::Yes,
    },
    Table {
        logical: "listmember",
        set: "listmembers",
        pk: "listmemberid",
        primary_name: "listmemberid",
        otc: 4301,
        columns: &LISTMEMBER_COLUMNS,
        states: &[],
        owned: false,
        writes: Writes::ActionsOnly,
    },
    Table {
        logical: "campaign",
        set: "campaigns",
        pk: "campaignid",
        primary_name: "name",
        otc: 4400,
        columns: &CAMPAIGN_COLUMNS,
        states: &CAMPAIGN_STATES,
        owned: true,
        writes: Writes::Yes,
    },
    Table {
        logical: "campaignactivity",
        set: "campaignactivities",
        pk: "activityid",
        primary_name: "subject",
        otc: 4402,
        columns: &CACT_COLUMNS,
        states: &CACT_STATES,
        owned: true,
        writes: Writes::Yes,
    },
    Table {
        logical: "campaignitem",
        set: "campaignitems",
        pk: "campaignitemid",
        primary_name: "campaignitemid",
        otc: 4403,
        columns: &CITEM_COLUMNS,
        states: &[],
        owned: false,
        writes: Writes::ActionsOnly,
    },
    Table {
        logical: "campaignactivityitem",
        set: "campaignactivityitems",
        pk: "campaignactivityitemid",
        primary_name: "campaignactivityitemid",
        otc: 4404,
        columns: &CAITEM_COLUMNS,
        states: &[],
        owned: false,
        writes: Writes::ActionsOnly,
    },
    Table {
        logical: "systemuser",
        set: "systemusers",
        pk: "systemuserid",
        primary_name: "fullname",
        otc: 8,
        columns: &SYSTEMUSER_COLUMNS,
        states: &[],
        owned: false,
        writes: Writes::Yes,
    },
    Table {
        logical: "serviceendpoint",
        set: "serviceendpoints",
        pk: "serviceendpointid",
        primary_name: "name",
        otc: 4618,
        columns: &SERVICEENDPOINT_COLUMNS,
        states: &[],
        owned: false,
        writes: Writes::Yes,
    },
    Table {
        logical: "sdkmessageprocessingstep",
        set: "sdkmessageprocessingsteps",
        pk: "sdkmessageprocessingstepid",
        primary_name: "name",
        otc: 4608,
        columns: &STEP_COLUMNS,
        states: &STEP_STATES,
        owned: false,
        writes: Writes::Yes,
    },
    Table {
        logical: "sdkmessageprocessingstepimage",
        set: "sdkmessageprocessingstepimages",
        pk: "sdkmessageprocessingstepimageid",
        primary_name: "name",
        otc: 4615,
        columns: &IMAGE_COLUMNS,
        states: &[],
        owned: false,
        writes: Writes::Yes,
    },
    Table {
        logical: "sdkmessage",
        set: "sdkmessages",
        pk: "sdkmessageid",
        primary_name: "name",
        otc: 4606,
        columns: &MESSAGE_COLUMNS,
        states: &[],
        owned: false,
        writes: Writes::ReadOnly,
    },
    Table {
        logical: "sdkmessagefilter",
        set: "sdkmessagefilters",
        pk: "sdkmessagefilterid",
        primary_name: "name",
        otc: 4607,
        columns: &FILTER_COLUMNS,
        states: &[],
        owned: false,
        writes: Writes::ReadOnly,
    },
    Table {
        logical: "asyncoperation",
        set: "asyncoperations",
        pk: "asyncoperationid",
        primary_name: "name",
        otc: 4700,
        columns: &ASYNC_COLUMNS,
        states: &ASYNC_STATES,
        owned: true,
        writes: Writes::ReadOnly,
    },
    Table {
        logical: "businessunit",
        set: "businessunits",
        pk: "businessunitid",
        primary_name: "name",
        otc: 10,
        columns: &BUSINESSUNIT_COLUMNS,
        states: &[],
        owned: false,
        writes: Writes::ReadOnly,
    },
    platform(
        "publisher",
        "publishers",
        "publisherid",
        "friendlyname",
        7101,
        &PUBLISHER_COLUMNS,
        Writes::Yes,
    ),
    platform(
        "solution",
        "solutions",
        "solutionid",
        "friendlyname",
        7100,
        &SOLUTION_COLUMNS,
        Writes::Yes,
    ),
    platform(
        "solutioncomponent",
        "solutioncomponents",
        "solutioncomponentid",
        "solutioncomponentid",
        7103,
        &SOLUTIONCOMPONENT_COLUMNS,
        Writes::ReadOnly,
    ),
    platform(
        "role",
        "roles",
        "roleid",
        "name",
        1036,
        &ROLE_COLUMNS,
        Writes::Yes,
    ),
    platform(
        "privilege",
        "privileges",
        "privilegeid",
        "name",
        1023,
        &PRIVILEGE_COLUMNS,
        Writes::ReadOnly,
    ),
    platform(
        "roleprivileges",
        "roleprivilegescollection",
        "roleprivilegeid",
        "roleprivilegeid",
        12,
        &ROLEPRIVILEGE_COLUMNS,
        Writes::ReadOnly,
    ),
    platform(
        "systemuserroles",
        "systemuserrolescollection",
        "systemuserroleid",
        "systemuserroleid",
        15,
        &SYSTEMUSERROLE_COLUMNS,
        Writes::ReadOnly,
    ),
    platform(
        "fieldsecurityprofile",
        "fieldsecurityprofiles",
        "fieldsecurityprofileid",
        "name",
        1200,
        &FIELDSECURITYPROFILE_COLUMNS,
        Writes::Yes,
    ),
    platform(
        "fieldpermission",
        "fieldpermissions",
        "fieldpermissionid",
        "fieldpermissionid",
        1201,
        &FIELDPERMISSION_COLUMNS,
        Writes::Yes,
    ),
    platform(
        "webresource",
        "webresourceset",
        "webresourceid",
        "name",
        9333,
        &WEBRESOURCE_COLUMNS,
        Writes::Yes,
    ),
    platform(
        "systemform",
        "systemforms",
        "formid",
        "name",
        1030,
        &SYSTEMFORM_COLUMNS,
        Writes::Yes,
    ),
    platform(
        "systemuserprofiles",
        "systemuserprofilescollection",
        "systemuserprofileid",
        "systemuserprofileid",
        1202,
        &SYSTEMUSERPROFILE_COLUMNS,
        Writes::ReadOnly,
    ),
];

static BUSINESSUNIT_PARENT: [Nav; 1] = one("parentbusinessunitid", "businessunit");
static BUSINESSUNIT_COLUMNS: [Column; 3] = [
    pk("businessunitid"),
    rw("name", Kind::Str(160)),
    rw("parentbusinessunitid", Kind::Lookup(&BUSINESSUNIT_PARENT)),
];

const fn platform(
    logical: &'static str,
    set: &'static str,
    pk: &'static str,
    primary_name: &'static str,
    otc: i64,
    columns: &'static [Column],
    writes: Writes,
) -> Table {
    Table {
        logical,
        set,
        pk,
        primary_name,
        otc,
        columns,
        states: &[],
        owned: false,
        writes,
    }
}

/// A standard table by logical name (a simulator's own tables: `Catalog::table`).
pub fn standard(logical: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.logical == logical)
}

impl Table {
    /// All columns: the table's own, `ownerid` when user-owned, then the common system columns.
    pub fn all_columns(&self) -> impl Iterator<Item = &'static Column> + '_ {
        let owner = if self.owned { Some(&OWNER) } else { None };
        self.columns.iter().chain(owner).chain(COMMON.iter())
    }

    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.all_columns().find(|c| c.name == name)
    }

    /// The lookup column and target of a single-valued navigation property.
    pub fn nav(&self, nav: &str) -> Option<(&'static Column, &'static Nav)> {
        self.all_columns().find_map(|c| match c.kind {
            Kind::Lookup(navs) => navs.iter().find(|n| n.name == nav).map(|n| (c, n)),
            _ => None,
        })
    }

    /// The lookup column whose Web API property is `_<name>_value`.
    pub fn lookup_value(&self, property: &str) -> Option<&'static Column> {
        let name = property.strip_prefix('_')?.strip_suffix("_value")?;
        self.column(name)
            .filter(|c| matches!(c.kind, Kind::Lookup(_)))
    }

    pub fn state(&self, state: i64) -> Option<&'static StateDef> {
        self.states.iter().find(|s| s.state == state)
    }

    /// The state a status reason belongs to.
    pub fn state_of_status(&self, status: i64) -> Option<&'static StateDef> {
        self.states
            .iter()
            .find(|s| s.statuses.iter().any(|o| o.0 == status))
    }

    /// The label of a choice value, for FormattedValue annotations.
    pub fn label(&self, column: &Column, value: i64) -> Option<&'static str> {
        match column.kind {
            Kind::Choice(opts) => opts.iter().find(|o| o.0 == value).map(|o| o.1),
            Kind::State => self.state(value).map(|s| s.label),
            Kind::Status => self
                .states
                .iter()
                .flat_map(|s| s.statuses.iter())
                .find(|o| o.0 == value)
                .map(|o| o.1),
            _ => None,
        }
    }

    /// `Microsoft.Dynamics.CRM.<logical>`, the OData type name.
    pub fn odata_type(&self) -> String {
        format!("Microsoft.Dynamics.CRM.{}", self.logical)
    }
}

/// An N:N relationship exposed as a collection-valued navigation property on both tables.
#[derive(Debug)]
pub struct Relationship {
    pub name: &'static str,
    /// Table 1 and the intersect column that points to it.
    pub entity1: &'static str,
    pub attr1: &'static str,
    /// Table 2 and the intersect column that points to it.
    pub entity2: &'static str,
    pub attr2: &'static str,
    pub intersect: &'static str,
}

pub static RELATIONSHIPS: [Relationship; 8] = [
    Relationship {
        name: "systemuserroles_association",
        entity1: "role",
        attr1: "roleid",
        entity2: "systemuser",
        attr2: "systemuserid",
        intersect: "systemuserroles",
    },
    Relationship {
        name: "systemuserprofiles_association",
        entity1: "fieldsecurityprofile",
        attr1: "fieldsecurityprofileid",
        entity2: "systemuser",
        attr2: "systemuserid",
        intersect: "systemuserprofiles",
    },
    Relationship {
        name: "roleprivileges_association",
        entity1: "role",
        attr1: "roleid",
        entity2: "privilege",
        attr2: "privilegeid",
        intersect: "roleprivileges",
    },
    Relationship {
        name: "listcontact_association",
        entity1: "list",
        attr1: "listid",
        entity2: "contact",
        attr2: "entityid",
        intersect: "listmember",
    },
    Relationship {
        name: "listlead_association",
        entity1: "list",
        attr1: "listid",
        entity2: "lead",
        attr2: "entityid",
        intersect: "listmember",
    },
    Relationship {
        name: "listaccount_association",
        entity1: "list",
        attr1: "listid",
        entity2: "account",
        attr2: "entityid",
        intersect: "listmember",
    },
    Relationship {
        name: "campaignlist_association",
        entity1: "campaign",
        attr1: "campaignid",
        entity2: "list",
        attr2: "entityid",
        intersect: "campaignitem",
    },
    Relationship {
        name: "campaignactivitylist_association",
        entity1: "campaignactivity",
        attr1: "campaignactivityid",
        entity2: "list",
        attr2: "itemid",
        intersect: "campaignactivityitem",
    },
];

pub fn relationship(name: &str) -> Option<&'static Relationship> {
    RELATIONSHIPS.iter().find(|r| r.name == name)
}

/// The SDK messages the simulator knows, with fixed ids (`sdkmessages` rows).
pub static MESSAGES: [(&str, u128); 10] = [
    ("Create", 0x5d4e_5f00_0000_4000_8000_0000_0000_0001),
    ("Update", 0x5d4e_5f00_0000_4000_8000_0000_0000_0002),
    ("Delete", 0x5d4e_5f00_0000_4000_8000_0000_0000_0003),
    ("AddMember", 0x5d4e_5f00_0000_4000_8000_0000_0000_0004),
    ("AddListMembers", 0x5d4e_5f00_0000_4000_8000_0000_0000_0005),
    ("RemoveMember", 0x5d4e_5f00_0000_4000_8000_0000_0000_0006),
    ("AddItem", 0x5d4e_5f00_0000_4000_8000_0000_0000_0007),
    ("RemoveItem", 0x5d4e_5f00_0000_4000_8000_0000_0000_0008),
    ("Associate", 0x5d4e_5f00_0000_4000_8000_0000_0000_0009),
    ("Disassociate", 0x5d4e_5f00_0000_4000_8000_0000_0000_000a),
];

/// The fixed id of an SDK message.
pub fn sdk_message_id(name: &str) -> Option<Uuid> {
    MESSAGES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, id)| Uuid::from_u128(*id))
}

/// Which (message, primary table) pairs have an `sdkmessagefilters` row; `none` stands for
/// messages registered without a table.
pub fn message_filters() -> Vec<(&'static str, &'static str)> {
    let crud_tables = [
        "account",
        "contact",
        "lead",
        "list",
        "listmember",
        "campaign",
        "campaignactivity",
        "campaignitem",
        "campaignactivityitem",
    ];
    let mut pairs = Vec::new();
    for message in ["Create", "Update", "Delete"] {
        for t in crud_tables {
            pairs.push((message, t));
        }
    }
    for message in ["AddMember", "AddListMembers", "RemoveMember"] {
        pairs.push((message, "list"));
    }
    for message in ["AddItem", "RemoveItem"] {
        pairs.push((message, "campaign"));
        pairs.push((message, "campaignactivity"));
    }
    for message in ["Associate", "Disassociate"] {
        pairs.push((message, "none"));
    }
    pairs
}

/// The fixed id of the `sdkmessagefilters` row for a message on a table (`none` for none):
/// `5f17e400-<message number>-4000-8000-<object type code>`.
pub fn sdk_message_filter_id(message: &str, entity: &str) -> Option<Uuid> {
    let otc = if entity == "none" {
        0
    } else {
        standard(entity)?.otc
    };
    if !message_filters().contains(&(message_name(message)?, entity_name(entity)?)) {
        return None;
    }
    filter_id(message, otc)
}

/// The id of the filter of a message on the table with this object type code (also for the
/// tables an installer creates, whose filters appear with them).
pub fn filter_id(message: &str, otc: i64) -> Option<Uuid> {
    let number = MESSAGES.iter().position(|(n, _)| *n == message)? as u128 + 1;
    Some(Uuid::from_u128(
        (0x5f17_e400u128 << 96)
            | (number << 80)
            | (0x4000u128 << 64)
            | (0x8000u128 << 48)
            | otc as u128,
    ))
}

fn message_name(message: &str) -> Option<&'static str> {
    MESSAGES
        .iter()
        .find(|(n, _)| *n == message)
        .map(|(n, _)| *n)
}

fn entity_name(entity: &str) -> Option<&'static str> {
    if entity == "none" {
        Some("none")
    } else {
        standard(entity).map(|t| t.logical)
    }
}
