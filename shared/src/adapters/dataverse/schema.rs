//! Adapter: every CRM table and column name the connector relies on, in one place (DESIGN §7;
//! documented in the README). Publisher prefix `crc_`.

/// On campaign, campaign activity and marketing list.
pub const SYNC_FLAG: &str = "crc_syncwithcleverreach";
pub const CHECKLIST: &str = "crc_checklist";
pub const GROUP_ID: &str = "crc_groupid";
pub const RESYNC: &str = "crc_resync";
/// Yes: a removal the brake held back may go ahead once (`domain::brake`); reset after use.
pub const CONFIRM_REMOVALS: &str = "crc_confirmremovals";
pub const SYNC_STATUS: &str = "crc_syncstatus";
pub const LAST_SYNC: &str = "crc_lastsync";
pub const LAST_ERROR: &str = "crc_lasterror";
/// Maximum lengths of the two text columns above (single line of text, 2000; multiple lines,
/// 4000): longer texts are cut, never refused.
pub const SYNC_STATUS_MAX: usize = 2000;
pub const LAST_ERROR_MAX: usize = 4000;

/// `text` cut to at most `max` characters (on a character boundary), with an ellipsis.
pub fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// On marketing list only.
pub const RETROACTIVE_SYNC: &str = "crc_retroactivesync";
pub const RETROACTIVE_SYNC_JSON: &str = "crc_retroactivesyncjson";
pub const RETROACTIVE_PROGRESS: &str = "crc_retroactiveprogress";
/// The retroactive run's bookkeeping (JSON: run, sublists done, counters), so that a sublist
/// delivered twice is counted once. `RETROACTIVE_PROGRESS` is its readable summary.
pub const RETROACTIVE_STATE: &str = "crc_retroactivestate";
/// Maximum length of the readable progress (single line of text, 4000).
pub const RETROACTIVE_PROGRESS_MAX: usize = 4000;

/// The settings table (key, value).
pub const SETTINGS_SET: &str = "crc_settings";
pub const SETTING_KEY: &str = "crc_key";
pub const SETTING_VALUE: &str = "crc_value";

/// A lead linked to a campaign activity (a campaign uses the standard `campaignid`).
pub const LEAD_CAMPAIGN_ACTIVITY: &str = "crc_campaignactivityid";
pub const LEAD_CAMPAIGN: &str = "campaignid";
/// Navigation properties of the two lookups for `@odata.bind` (case-sensitive: the custom
/// lookup's is its SchemaName, the standard one is lower case).
pub const LEAD_CAMPAIGN_ACTIVITY_NAV: &str = "crc_CampaignActivityId";
pub const LEAD_CAMPAIGN_NAV: &str = "campaignid";

pub const STATECODE: &str = "statecode";
pub const STATUSCODE: &str = "statuscode";

/// Annotations asked for when lookups must be resolved to names and tables.
pub const LOOKUP_ANNOTATIONS: &str =
    "OData.Community.Display.V1.FormattedValue,Microsoft.Dynamics.CRM.lookuplogicalname";

/// The columns read for a person (contact or lead).
pub const CONTACT_COLUMNS: [&str; 9] = [
    "contactid",
    "emailaddress1",
    "firstname",
    "lastname",
    "salutation",
    "statecode",
    "donotbulkemail",
    CHECKLIST,
    "_parentcustomerid_value",
];
pub const LEAD_COLUMNS: [&str; 9] = [
    "leadid",
    "emailaddress1",
    "firstname",
    "lastname",
    "salutation",
    "companyname",
    "statecode",
    "donotbulkemail",
    CHECKLIST,
];
pub const ACCOUNT_COLUMNS: [&str; 5] = [
    "accountid",
    "name",
    "statecode",
    "donotbulkemail",
    "_primarycontactid_value",
];

/// FetchXML attribute names of the same columns (lookups without the `_…_value` form).
pub fn fetch_attributes(columns: &[&'static str]) -> Vec<&'static str> {
    columns
        .iter()
        .map(|c| match *c {
            "_parentcustomerid_value" => "parentcustomerid",
            "_primarycontactid_value" => "primarycontactid",
            other => other,
        })
        .collect()
}

/// The receiver-state table (DESIGN §7): one row per unsubscribe or bounce read back from
/// CleverReach. The row id is derived from the event (see `sync::backflow`), so the same
/// event never makes two rows.
pub const RECEIVER_STATE_SET: &str = "crc_receiverstates";
pub const RECEIVER_STATE_ID: &str = "crc_receiverstateid";
pub const RECEIVER_STATE_NAME: &str = "crc_name";
/// `<group>|<e-mail>|<event>|<unix time>`: the event in words, for people and look-ups.
pub const RECEIVER_STATE_KEY: &str = "crc_eventkey";
pub const RECEIVER_STATE_EMAIL: &str = "crc_email";
pub const RECEIVER_STATE_GROUP: &str = "crc_groupid";
/// Choice: 1 unsubscribed, 2 bounced (3 blacklisted and 4 subscribed are reserved).
pub const RECEIVER_STATE_EVENT: &str = "crc_event";
pub const RECEIVER_STATE_TIME: &str = "crc_eventtime";
/// The recipient: the contact and lead lookups (read as `_crc_contactid_value`).
pub const RECEIVER_STATE_CONTACT: &str = "crc_contactid";
pub const RECEIVER_STATE_LEAD: &str = "crc_leadid";
/// Their navigation properties for `@odata.bind`: the lookups' SchemaNames, matched
/// case-sensitively by Dataverse (a lower-case name is an "undeclared property").
pub const RECEIVER_STATE_CONTACT_NAV: &str = "crc_ContactId";
pub const RECEIVER_STATE_LEAD_NAV: &str = "crc_LeadId";
/// The primary name is cut to this length.
pub const RECEIVER_STATE_NAME_MAX: usize = 200;
/// What was done, or why something could not be done.
pub const RECEIVER_STATE_DETAILS: &str = "crc_details";
pub const RECEIVER_STATE_DETAILS_MAX: usize = 4000;
/// Choice values carry the publisher's option value prefix, as Dataverse numbers the options
/// of a publisher's choices (`OPTION_VALUE_PREFIX` × 10,000 + n).
pub const EVENT_UNSUBSCRIBED: i64 = OPTION_VALUE_BASE + 1;
pub const EVENT_BOUNCED: i64 = OPTION_VALUE_BASE + 2;
pub const EVENT_BLACKLISTED: i64 = OPTION_VALUE_BASE + 3;
pub const EVENT_SUBSCRIBED: i64 = OPTION_VALUE_BASE + 4;

/// Progress of the scheduled back-flow jobs, kept as rows of the settings table whose keys
/// start with this (not `cleverreach:`, so the settings reader passes them by). One row per
/// job, group and event kind; the value is JSON (`sync::backflow::Cursor`).
pub const CURSOR_KEY_PREFIX: &str = "connector:cursor:";

// ----- The schema the installer creates (`crc-install`, README "CRM schema") ---------------
//
// The names above and the specifications below are the one description of the connector's
// schema: the installer creates exactly this, so the code and an installed org cannot drift.

/// The publisher of the connector's solution.
pub const PUBLISHER_UNIQUE_NAME: &str = "cleverreach";
pub const PUBLISHER_FRIENDLY_NAME: &str = "CleverReach";
/// The customization prefix: every table, column, relationship and key starts with `crc_`.
pub const PUBLISHER_PREFIX: &str = "crc";
/// The publisher's option value prefix (Dataverse allows 10,000–99,999); choice values are
/// `OPTION_VALUE_PREFIX * 10_000 + n`. Fixed once released: stored rows carry the values.
pub const OPTION_VALUE_PREFIX: i64 = 38_457;
pub const OPTION_VALUE_BASE: i64 = OPTION_VALUE_PREFIX * 10_000;
/// The unmanaged solution every component is created in.
pub const SOLUTION_UNIQUE_NAME: &str = "CleverReachConnector";
pub const SOLUTION_FRIENDLY_NAME: &str = "CleverReach Connector";
pub const SOLUTION_VERSION: &str = "1.0.0.0";

/// Dataverse's largest multiple-lines column (characters): the JSON columns use it, so no
/// checklist, run state or setting value the connector or an administrator writes is refused
/// for its length.
pub const JSON_MAX: usize = 1_048_576;
/// Dataverse's largest single line of text.
pub const TEXT_MAX: usize = 4000;
/// CleverReach group ids are numbers; 100 characters leave room for any id format.
pub const GROUP_ID_MAX: usize = 100;
/// `crc_setting.crc_key`: keys are short (`connector:cursor:<job>:<group>:<kind>` is the
/// longest); 200 characters keep the alternate key under Dataverse's 900-byte index limit.
pub const SETTING_KEY_MAX: usize = 200;
/// `<group>|<e-mail>|<event>|<unix time>`: an address of up to 320 characters fits; 400
/// characters (800 bytes) stay under the 900-byte limit of the alternate key.
pub const EVENT_KEY_MAX: usize = 400;
/// The longest e-mail address (RFC 3696: 64 + 1 + 255).
pub const EMAIL_MAX: usize = 320;

/// Languages the labels are written in (Dataverse language codes).
pub const ENGLISH: i64 = 1033;
pub const GERMAN: i64 = 1031;

/// A text in English and German.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text {
    pub en: &'static str,
    pub de: &'static str,
}

impl Text {
    /// The text in a language; English for any language but German.
    pub fn in_language(&self, language: i64) -> &'static str {
        if language == GERMAN { self.de } else { self.en }
    }
}

const fn text(en: &'static str, de: &'static str) -> Text {
    Text { en, de }
}

/// Dataverse's `RequiredLevel` of a column (custom columns may not be `SystemRequired`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredLevel {
    None,
    Recommended,
    ApplicationRequired,
}

impl RequiredLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RequiredLevel::None => "None",
            RequiredLevel::Recommended => "Recommended",
            RequiredLevel::ApplicationRequired => "ApplicationRequired",
        }
    }
}

/// One option of a choice column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChoiceOption {
    pub value: i64,
    pub label: Text,
}

/// What a column holds, in Dataverse's column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// Yes/no, with its default for new rows.
    Boolean { default: bool },
    /// Single line of text, at most `max_length` characters (≤ 4,000).
    Text { max_length: usize },
    /// Multiple lines of text, at most `max_length` characters (≤ 1,048,576).
    Memo { max_length: usize },
    /// Date and time, stored as UTC (behaviour "User local").
    DateTime,
    /// A choice of the listed options.
    Choice { options: &'static [ChoiceOption] },
}

impl ColumnType {
    /// Dataverse's `AttributeTypeName` of this type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ColumnType::Boolean { .. } => "BooleanType",
            ColumnType::Text { .. } => "StringType",
            ColumnType::Memo { .. } => "MemoType",
            ColumnType::DateTime => "DateTimeType",
            ColumnType::Choice { .. } => "PicklistType",
        }
    }

    /// The longest text the column must hold, for text columns.
    pub fn max_length(&self) -> Option<usize> {
        match self {
            ColumnType::Text { max_length } | ColumnType::Memo { max_length } => Some(*max_length),
            _ => None,
        }
    }

    /// How an administrator reads the type ("multiple lines of text, 4000 characters").
    pub fn describe(&self) -> String {
        match self {
            ColumnType::Boolean { .. } => "yes/no".to_string(),
            ColumnType::Text { max_length } => {
                format!("single line of text, {max_length} characters")
            }
            ColumnType::Memo { max_length } => {
                format!("multiple lines of text, {max_length} characters")
            }
            ColumnType::DateTime => "date and time (UTC)".to_string(),
            ColumnType::Choice { options } => format!("choice of {} options", options.len()),
        }
    }
}

/// A column the installer creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSpec {
    /// The logical name the code uses (one of the constants above).
    pub logical_name: &'static str,
    /// The SchemaName: the logical name with capitals, prefix included.
    pub schema_name: &'static str,
    pub column_type: ColumnType,
    pub display_name: Text,
    pub description: Text,
    pub required: RequiredLevel,
}

const fn column(
    logical_name: &'static str,
    schema_name: &'static str,
    column_type: ColumnType,
    display_name: Text,
    description: Text,
) -> ColumnSpec {
    ColumnSpec {
        logical_name,
        schema_name,
        column_type,
        display_name,
        description,
        required: RequiredLevel::None,
    }
}

const NO: ColumnType = ColumnType::Boolean { default: false };

const SYNC_FLAG_COLUMN: ColumnSpec = column(
    SYNC_FLAG,
    "crc_SyncWithCleverReach",
    NO,
    text("Sync with CleverReach", "Mit CleverReach synchronisieren"),
    text(
        "Yes: the connector keeps a CleverReach group in step with this record.",
        "Ja: Der Connector hält eine CleverReach-Gruppe mit diesem Datensatz abgeglichen.",
    ),
);
const CHECKLIST_COLUMN: ColumnSpec = column(
    CHECKLIST,
    "crc_Checklist",
    ColumnType::Memo {
        max_length: JSON_MAX,
    },
    text("Newsletter checklist", "Newsletter-Checkliste"),
    text(
        "Newsletter types and choices (JSON), edited with the checklist control.",
        "Newslettertypen und Auswahl (JSON), bearbeitet mit der Checkliste.",
    ),
);
const GROUP_ID_COLUMN: ColumnSpec = column(
    GROUP_ID,
    "crc_GroupId",
    ColumnType::Text {
        max_length: GROUP_ID_MAX,
    },
    text("CleverReach group id", "CleverReach-Gruppen-ID"),
    text(
        "Id of the CleverReach group; written by the connector.",
        "ID der CleverReach-Gruppe; vom Connector geschrieben.",
    ),
);
const RESYNC_COLUMN: ColumnSpec = column(
    RESYNC,
    "crc_Resync",
    NO,
    text("Resync now", "Jetzt neu synchronisieren"),
    text(
        "Yes: compare the whole group once; the connector sets it back to no.",
        "Ja: Die ganze Gruppe einmal abgleichen; der Connector setzt es auf Nein zurück.",
    ),
);
const SYNC_STATUS_COLUMN: ColumnSpec = column(
    SYNC_STATUS,
    "crc_SyncStatus",
    ColumnType::Text {
        max_length: SYNC_STATUS_MAX,
    },
    text("Sync status", "Synchronisierungsstatus"),
    text(
        "What the last sync did; written by the connector.",
        "Was die letzte Synchronisierung getan hat; vom Connector geschrieben.",
    ),
);
const LAST_SYNC_COLUMN: ColumnSpec = column(
    LAST_SYNC,
    "crc_LastSync",
    ColumnType::DateTime,
    text("Last sync", "Letzte Synchronisierung"),
    text(
        "When the last good sync ended.",
        "Wann die letzte erfolgreiche Synchronisierung endete.",
    ),
);
const LAST_ERROR_COLUMN: ColumnSpec = column(
    LAST_ERROR,
    "crc_LastError",
    ColumnType::Memo {
        max_length: LAST_ERROR_MAX,
    },
    text("Last sync error", "Letzter Synchronisierungsfehler"),
    text(
        "Why the last sync failed; cleared by the next good sync.",
        "Warum die letzte Synchronisierung fehlschlug; von der nächsten erfolgreichen geleert.",
    ),
);

const CONFIRM_REMOVALS_COLUMN: ColumnSpec = column(
    CONFIRM_REMOVALS,
    "crc_ConfirmRemovals",
    NO,
    text("Confirm removals", "Entfernungen bestätigen"),
    text(
        "Yes: let a removal the connector held back as unusually large go ahead once (see the last error); the connector sets it back to no.",
        "Ja: Eine vom Connector als ungewöhnlich groß zurückgehaltene Entfernung einmal ausführen (siehe letzter Fehler); der Connector setzt es auf Nein zurück.",
    ),
);

/// The columns of every source (campaign, campaign activity, marketing list).
pub const SOURCE_COLUMNS: [ColumnSpec; 8] = [
    SYNC_FLAG_COLUMN,
    CHECKLIST_COLUMN,
    GROUP_ID_COLUMN,
    RESYNC_COLUMN,
    SYNC_STATUS_COLUMN,
    LAST_SYNC_COLUMN,
    LAST_ERROR_COLUMN,
    CONFIRM_REMOVALS_COLUMN,
];

/// The marketing list's own columns (retroactive sync).
pub const LIST_COLUMNS: [ColumnSpec; 4] = [
    column(
        RETROACTIVE_SYNC,
        "crc_RetroactiveSync",
        NO,
        text("Retroactive sync", "Rückwirkende Synchronisierung"),
        text(
            "Yes: overwrite every member's checklist; the connector sets it back to no.",
            "Ja: Die Checkliste jedes Mitglieds überschreiben; der Connector setzt es auf Nein zurück.",
        ),
    ),
    column(
        RETROACTIVE_SYNC_JSON,
        "crc_RetroactiveSyncJson",
        ColumnType::Memo {
            max_length: JSON_MAX,
        },
        text(
            "Retroactive sync checklist",
            "Checkliste der rückwirkenden Synchronisierung",
        ),
        text(
            "Checklist (JSON) written to every member; empty: the list's own checklist.",
            "Checkliste (JSON) für jedes Mitglied; leer: die Checkliste der Liste.",
        ),
    ),
    column(
        RETROACTIVE_PROGRESS,
        "crc_RetroactiveProgress",
        ColumnType::Text {
            max_length: RETROACTIVE_PROGRESS_MAX,
        },
        text(
            "Retroactive sync progress",
            "Fortschritt der rückwirkenden Synchronisierung",
        ),
        text(
            "How far the retroactive sync got; written by the connector.",
            "Wie weit die rückwirkende Synchronisierung ist; vom Connector geschrieben.",
        ),
    ),
    column(
        RETROACTIVE_STATE,
        "crc_RetroactiveState",
        ColumnType::Memo {
            max_length: JSON_MAX,
        },
        text(
            "Retroactive sync state",
            "Zustand der rückwirkenden Synchronisierung",
        ),
        text(
            "The run's bookkeeping (JSON); written by the connector.",
            "Buchführung des Laufs (JSON); vom Connector geschrieben.",
        ),
    ),
];

/// The columns a standard table gets, by table.
pub const EXTENSIONS: [(&str, &[ColumnSpec]); 6] = [
    ("campaign", &SOURCE_COLUMNS),
    ("campaignactivity", &SOURCE_COLUMNS),
    ("list", &SOURCE_COLUMNS),
    ("list", &LIST_COLUMNS),
    ("contact", &[CHECKLIST_COLUMN]),
    ("lead", &[CHECKLIST_COLUMN]),
];

/// A table the installer creates (organisation-owned: its rows belong to the connector).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    pub logical_name: &'static str,
    pub schema_name: &'static str,
    /// The entity set the code uses; the installer checks that Dataverse gave this name.
    pub entity_set: &'static str,
    pub display_name: Text,
    pub plural_name: Text,
    pub description: Text,
    /// The primary name column (single line of text).
    pub primary_name: ColumnSpec,
    pub columns: &'static [ColumnSpec],
}

/// The connector's own tables.
pub const TABLES: [TableSpec; 2] = [
    TableSpec {
        logical_name: "crc_setting",
        schema_name: "crc_Setting",
        entity_set: SETTINGS_SET,
        display_name: text("CleverReach setting", "CleverReach-Einstellung"),
        plural_name: text("CleverReach settings", "CleverReach-Einstellungen"),
        description: text(
            "Settings of the CleverReach connector (key and value).",
            "Einstellungen des CleverReach-Connectors (Schlüssel und Wert).",
        ),
        primary_name: ColumnSpec {
            logical_name: SETTING_KEY,
            schema_name: "crc_Key",
            column_type: ColumnType::Text {
                max_length: SETTING_KEY_MAX,
            },
            display_name: text("Key", "Schlüssel"),
            description: text(
                "The setting's key, e.g. cleverreach:groupsettings:groupprefix.",
                "Schlüssel der Einstellung, z. B. cleverreach:groupsettings:groupprefix.",
            ),
            required: RequiredLevel::ApplicationRequired,
        },
        columns: &[column(
            SETTING_VALUE,
            "crc_Value",
            ColumnType::Memo {
                max_length: JSON_MAX,
            },
            text("Value", "Wert"),
            text("The setting's value.", "Wert der Einstellung."),
        )],
    },
    TableSpec {
        logical_name: "crc_receiverstate",
        schema_name: "crc_ReceiverState",
        entity_set: RECEIVER_STATE_SET,
        display_name: text("CleverReach receiver state", "CleverReach-Empfängerstatus"),
        plural_name: text("CleverReach receiver states", "CleverReach-Empfängerstatus"),
        description: text(
            "Unsubscribes and bounces read back from CleverReach.",
            "Abmeldungen und Unzustellbarkeiten aus CleverReach.",
        ),
        primary_name: ColumnSpec {
            logical_name: RECEIVER_STATE_NAME,
            schema_name: "crc_Name",
            column_type: ColumnType::Text {
                max_length: RECEIVER_STATE_NAME_MAX,
            },
            display_name: text("Name", "Name"),
            description: text("The event in words.", "Das Ereignis in Worten."),
            required: RequiredLevel::ApplicationRequired,
        },
        columns: &[
            column(
                RECEIVER_STATE_KEY,
                "crc_EventKey",
                ColumnType::Text {
                    max_length: EVENT_KEY_MAX,
                },
                text("Event key", "Ereignisschlüssel"),
                text(
                    "group|e-mail|event|time: one row per event.",
                    "Gruppe|E-Mail|Ereignis|Zeit: eine Zeile je Ereignis.",
                ),
            ),
            column(
                RECEIVER_STATE_EMAIL,
                "crc_Email",
                ColumnType::Text {
                    max_length: EMAIL_MAX,
                },
                text("E-mail", "E-Mail"),
                text("The receiver's address.", "Adresse des Empfängers."),
            ),
            column(
                RECEIVER_STATE_GROUP,
                "crc_GroupId",
                ColumnType::Text {
                    max_length: GROUP_ID_MAX,
                },
                text("CleverReach group id", "CleverReach-Gruppen-ID"),
                text(
                    "The group the event happened in.",
                    "Die Gruppe, in der das Ereignis stattfand.",
                ),
            ),
            column(
                RECEIVER_STATE_EVENT,
                "crc_Event",
                ColumnType::Choice {
                    options: &EVENT_OPTIONS,
                },
                text("Event", "Ereignis"),
                text("What CleverReach reported.", "Was CleverReach meldete."),
            ),
            column(
                RECEIVER_STATE_TIME,
                "crc_EventTime",
                ColumnType::DateTime,
                text("Event time", "Zeitpunkt"),
                text(
                    "When it happened in CleverReach.",
                    "Wann es in CleverReach geschah.",
                ),
            ),
            column(
                RECEIVER_STATE_DETAILS,
                "crc_Details",
                ColumnType::Memo {
                    max_length: RECEIVER_STATE_DETAILS_MAX,
                },
                text("Details", "Details"),
                text(
                    "What the connector did, or why it could not.",
                    "Was der Connector tat, oder warum nicht.",
                ),
            ),
        ],
    },
];

/// The options of `crc_event`.
pub const EVENT_OPTIONS: [ChoiceOption; 4] = [
    ChoiceOption {
        value: EVENT_UNSUBSCRIBED,
        label: text("Unsubscribed", "Abgemeldet"),
    },
    ChoiceOption {
        value: EVENT_BOUNCED,
        label: text("Bounced", "Unzustellbar"),
    },
    ChoiceOption {
        value: EVENT_BLACKLISTED,
        label: text("Blacklisted", "Gesperrt"),
    },
    ChoiceOption {
        value: EVENT_SUBSCRIBED,
        label: text("Subscribed", "Angemeldet"),
    },
];

/// A lookup the installer creates, as a one-to-many relationship.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupSpec {
    /// The relationship's SchemaName.
    pub relationship: &'static str,
    /// The table that gets the lookup column.
    pub referencing_table: &'static str,
    /// The table it points to.
    pub referenced_table: &'static str,
    pub logical_name: &'static str,
    pub schema_name: &'static str,
    /// The single-valued navigation property for `@odata.bind` (Dataverse names it after the
    /// lookup's SchemaName).
    pub navigation: &'static str,
    pub display_name: Text,
    pub description: Text,
}

pub const LOOKUPS: [LookupSpec; 3] = [
    LookupSpec {
        relationship: "crc_campaignactivity_lead",
        referencing_table: "lead",
        referenced_table: "campaignactivity",
        logical_name: LEAD_CAMPAIGN_ACTIVITY,
        schema_name: "crc_CampaignActivityId",
        navigation: LEAD_CAMPAIGN_ACTIVITY_NAV,
        display_name: text(
            "CleverReach campaign activity",
            "CleverReach-Kampagnenaktivität",
        ),
        description: text(
            "The campaign activity whose CleverReach group this lead is in.",
            "Die Kampagnenaktivität, in deren CleverReach-Gruppe dieser Lead ist.",
        ),
    },
    LookupSpec {
        relationship: "crc_contact_receiverstate",
        referencing_table: "crc_receiverstate",
        referenced_table: "contact",
        logical_name: RECEIVER_STATE_CONTACT,
        schema_name: "crc_ContactId",
        navigation: RECEIVER_STATE_CONTACT_NAV,
        display_name: text("Contact", "Kontakt"),
        description: text("The contact the event is about.", "Der betroffene Kontakt."),
    },
    LookupSpec {
        relationship: "crc_lead_receiverstate",
        referencing_table: "crc_receiverstate",
        referenced_table: "lead",
        logical_name: RECEIVER_STATE_LEAD,
        schema_name: "crc_LeadId",
        navigation: RECEIVER_STATE_LEAD_NAV,
        display_name: text("Lead", "Lead"),
        description: text("The lead the event is about.", "Der betroffene Lead."),
    },
];

/// An alternate key the installer creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    pub table: &'static str,
    pub schema_name: &'static str,
    pub columns: &'static [&'static str],
    pub display_name: Text,
}

/// One setting row per key; one receiver-state row per event (so the back-flow can upsert).
pub const KEYS: [KeySpec; 2] = [
    KeySpec {
        table: "crc_setting",
        schema_name: "crc_setting_key",
        columns: &[SETTING_KEY],
        display_name: text("Setting key", "Einstellungsschlüssel"),
    },
    KeySpec {
        table: "crc_receiverstate",
        schema_name: "crc_receiverstate_eventkey",
        columns: &[RECEIVER_STATE_KEY],
        display_name: text("Event key", "Ereignisschlüssel"),
    },
];

/// Columns only holders of the field security profile "CleverReach List Sync" (and system
/// administrators) may set: starting a retroactive sync overwrites every member's checklist.
pub const SECURED_COLUMNS: [(&str, &str); 2] =
    [("list", RETROACTIVE_SYNC), ("list", RETROACTIVE_SYNC_JSON)];

/// Every table the connector reads, for the installer's change-tracking report.
pub const READ_TABLES: [&str; 11] = [
    "contact",
    "lead",
    "account",
    "list",
    "listmember",
    "campaign",
    "campaignactivity",
    "campaignitem",
    "campaignactivityitem",
    "crc_setting",
    "crc_receiverstate",
];

/// Every column the installer creates, with its table (own tables' primary names included).
pub fn all_columns() -> Vec<(&'static str, &'static ColumnSpec)> {
    let mut out: Vec<(&'static str, &'static ColumnSpec)> = Vec::new();
    for table in &TABLES {
        out.push((table.logical_name, &table.primary_name));
        for c in table.columns {
            out.push((table.logical_name, c));
        }
    }
    for (table, columns) in &EXTENSIONS {
        for c in *columns {
            out.push((table, c));
        }
    }
    out
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every `crc_` name this file defines as a constant.
    fn crc_constants() -> BTreeSet<String> {
        include_str!("schema.rs")
            .lines()
            .filter(|l| l.trim_start().starts_with("pub const") && l.contains(": &str = \"crc_"))
            .filter_map(|l| l.split('"').nth(1).map(str::to_string))
            .collect()
    }

    #[test]
    fn every_crc_name_in_this_file_is_created_by_the_installer() {
        let mut created: BTreeSet<String> = BTreeSet::new();
        for (_, c) in all_columns() {
            created.insert(c.logical_name.to_string());
        }
        for l in &LOOKUPS {
            created.insert(l.logical_name.to_string());
            created.insert(l.navigation.to_string());
        }
        for t in &TABLES {
            created.insert(t.entity_set.to_string());
            created.insert(format!("{}id", t.logical_name));
        }
        let missing: Vec<String> = crc_constants()
            .into_iter()
            .filter(|name| !created.contains(name))
            .collect();
        assert!(
            missing.is_empty(),
            "named in schema.rs, not installed: {missing:?}"
        );
        assert!(crc_constants().len() > 20, "the scan found the constants");
    }

    #[test]
    fn schema_names_are_the_logical_names_with_capitals_and_carry_the_prefix() {
        let prefix = format!("{PUBLISHER_PREFIX}_");
        let mut names: Vec<(&str, &str)> = all_columns()
            .iter()
            .map(|(_, c)| (c.logical_name, c.schema_name))
            .collect();
        names.extend(LOOKUPS.iter().map(|l| (l.logical_name, l.schema_name)));
        names.extend(TABLES.iter().map(|t| (t.logical_name, t.schema_name)));
        for (logical, schema) in names {
            assert_eq!(schema.to_lowercase(), logical, "{schema}");
            assert!(schema.starts_with(&prefix), "{schema}");
        }
        for l in &LOOKUPS {
            assert_eq!(
                l.navigation, l.schema_name,
                "Dataverse names the navigation property after the lookup"
            );
            assert!(l.relationship.starts_with(&prefix));
        }
        for k in &KEYS {
            assert!(k.schema_name.starts_with(&prefix));
        }
    }

    #[test]
    fn text_columns_hold_what_the_connector_cuts_its_texts_to() {
        let length = |table: &str, name: &str| {
            all_columns()
                .into_iter()
                .find(|(t, c)| *t == table && c.logical_name == name)
                .and_then(|(_, c)| c.column_type.max_length())
        };
        for source in ["campaign", "campaignactivity", "list"] {
            assert!(length(source, SYNC_STATUS) >= Some(SYNC_STATUS_MAX));
            assert!(length(source, LAST_ERROR) >= Some(LAST_ERROR_MAX));
        }
        assert!(length("list", RETROACTIVE_PROGRESS) >= Some(RETROACTIVE_PROGRESS_MAX));
        assert!(
            length("crc_receiverstate", RECEIVER_STATE_DETAILS) >= Some(RECEIVER_STATE_DETAILS_MAX)
        );
        assert!(length("crc_receiverstate", RECEIVER_STATE_NAME) >= Some(RECEIVER_STATE_NAME_MAX));
        for (_, c) in all_columns() {
            match c.column_type {
                ColumnType::Text { max_length } => assert!((1..=TEXT_MAX).contains(&max_length)),
                ColumnType::Memo { max_length } => assert!((1..=JSON_MAX).contains(&max_length)),
                _ => {}
            }
        }
    }

    #[test]
    fn choice_values_carry_the_publishers_option_value_prefix() {
        assert!((10_000..=99_999).contains(&OPTION_VALUE_PREFIX));
        for o in &EVENT_OPTIONS {
            assert_eq!(o.value / 10_000, OPTION_VALUE_PREFIX, "{o:?}");
        }
    }
}
