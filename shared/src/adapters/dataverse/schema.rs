//! Adapter: every CRM table and column name the connector relies on, in one place (DESIGN §7;
//! documented in the README). Publisher prefix `crc_`.

/// On campaign, campaign activity and marketing list.
pub const SYNC_FLAG: &str = "crc_syncwithcleverreach";
pub const CHECKLIST: &str = "crc_checklist";
pub const GROUP_ID: &str = "crc_groupid";
pub const RESYNC: &str = "crc_resync";
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
/// The recipient: navigation properties of the contact and lead lookups.
pub const RECEIVER_STATE_CONTACT: &str = "crc_contactid";
pub const RECEIVER_STATE_LEAD: &str = "crc_leadid";
/// What was done, or why something could not be done.
pub const RECEIVER_STATE_DETAILS: &str = "crc_details";
pub const RECEIVER_STATE_DETAILS_MAX: usize = 4000;
pub const EVENT_UNSUBSCRIBED: i64 = 1;
pub const EVENT_BOUNCED: i64 = 2;

/// Progress of the scheduled back-flow jobs, kept as rows of the settings table whose keys
/// start with this (not `cleverreach:`, so the settings reader passes them by). One row per
/// job, group and event kind; the value is JSON (`sync::backflow::Cursor`).
pub const CURSOR_KEY_PREFIX: &str = "connector:cursor:";
