//! Domain: the connector's settings (docs/architecture.md §6), read from the rows (key, value) of the CRM's
//! `crc_setting` table.
//!
//! Administrators type these rows by hand, so keys are matched loosely (case, blanks, the
//! seed's misspellings) while values are checked strictly: an invalid value is an error naming
//! the key and the value, never a silent default. Secrets found in the table are ignored and
//! reported by key only, because they belong in AWS Secrets Manager.

use super::brake::BrakeSettings;
use super::checklist::{NewsletterType, NewsletterTypeId, shorten, show, whole_number};
use super::deletion::{DeletionPriority, DeletionSettings};
use super::recipient::RecipientKind;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The setting keys, in their proper spelling.
pub mod keys {
    pub const API_URL: &str = "cleverreach:connectiondata:apiurl";
    pub const DISABLE_CONTACT: &str = "cleverreach:bouncesettings:disablecontact";
    pub const DISABLE_LEAD: &str = "cleverreach:bouncesettings:disablelead";
    pub const DELETE_CAMPAIGN: &str = "cleverreach:deletionsettings:deletecampaign";
    pub const DELETE_DISABLE_SYNCHRONIZATION: &str =
        "cleverreach:deletionsettings:deletedisablesynchronization";
    pub const DELETE_PROTECTION: &str = "cleverreach:deletionsettings:deleteprotection";
    pub const PRIORITY: &str = "cleverreach:deletionsettings:priority";
    pub const GROUP_PREFIX: &str = "cleverreach:groupsettings:groupprefix";
    pub const TYP_JSON: &str = "cleverreach:newslettertypsettings:typjson";
    pub const ENTITY: &str = "cleverreach:transfersettings:entity";
    pub const SUBLIST_COUNT: &str = "cleverreach:synchronization:sublistcount";
    pub const UPDATE_REQUEST_COUNT: &str = "cleverreach:synchronization:updaterequestcount";
    pub const SCHEDULE_MINUTES: &str = "cleverreach:synchronization:scheduleminutes";
    pub const MAX_REMOVAL_PERCENT: &str = "cleverreach:safety:maxremovalpercent";
    pub const MAX_REMOVALS: &str = "cleverreach:safety:maxremovals";
}

pub const DEFAULT_API_URL: &str = "https://rest.cleverreach.com/";

/// `cleverreach:bouncesettings:*`: deactivate the CRM record after a bounce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BounceSettings {
    pub disable_contact: bool,
    pub disable_lead: bool,
}

/// Every setting of docs/architecture.md §6, typed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// CleverReach API base, ending in `/`.
    pub api_url: String,
    pub bounce: BounceSettings,
    pub deletion: DeletionSettings,
    /// Put in front of every group name, exactly as configured.
    pub group_prefix: String,
    /// The configured newsletter types, in the order of `typjson`.
    pub newsletter_types: Vec<NewsletterType>,
    /// The recipient kinds transferred to CleverReach (never empty).
    pub transfer_entities: BTreeSet<RecipientKind>,
    /// Members per sublist message of a retroactive sync (1..=5000).
    pub sublist_count: u32,
    /// Checklist updates per Dataverse `$batch` request (1..=1000).
    pub update_request_count: u32,
    /// Minutes between runs of the two scheduled jobs (5..=1440).
    pub schedule_minutes: u32,
    /// The brake on mass removal (`cleverreach:safety:*`).
    pub brake: BrakeSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            api_url: DEFAULT_API_URL.to_string(),
            bounce: BounceSettings::default(),
            deletion: DeletionSettings::default(),
            group_prefix: String::new(),
            newsletter_types: vec![
                NewsletterType {
                    id: NewsletterTypeId(0),
                    description: "Information".to_string(),
                    position: 1,
                },
                NewsletterType {
                    id: NewsletterTypeId(1),
                    description: "Werbung und Spiele".to_string(),
                    position: 2,
                },
            ],
            transfer_entities: RecipientKind::ALL.into_iter().collect(),
            sublist_count: 500,
            update_request_count: 500,
            schedule_minutes: 60,
            brake: BrakeSettings::default(),
        }
    }
}

/// Settings read from the table, with what an administrator should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSettings {
    pub settings: Settings,
    pub warnings: Vec<SettingsWarning>,
}

/// A row that was ignored. Names the key only: the value may be a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsWarning {
    /// A secret (token, client id or secret) stored as a setting: its value was not read.
    SecretIgnored { key: String },
    /// A `cleverreach:` key the connector does not know (misspelled or obsolete).
    UnknownKey { key: String },
}

impl fmt::Display for SettingsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsWarning::SecretIgnored { key } => write!(
                f,
                "setting `{key}` holds a secret and was ignored: secrets belong in AWS Secrets \
                 Manager, not in the settings table; delete this row"
            ),
            SettingsWarning::UnknownKey { key } => write!(
                f,
                "setting `{key}` is not known to the connector and was ignored (misspelled?)"
            ),
        }
    }
}

/// One invalid row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingProblem {
    /// The key as stored in the row.
    pub key: String,
    /// The value as stored in the row.
    pub value: String,
    /// What is wrong, in plain words.
    pub problem: String,
}

impl fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug formatting keeps line breaks in a value from splitting the line.
        write!(
            f,
            "setting `{}` has the value {:?}: {}",
            self.key,
            shorten(&self.value, 200),
            self.problem
        )
    }
}

/// Every invalid row of the settings table; Display gives one line per problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SettingsError {
    pub problems: Vec<SettingProblem>,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    ApiUrl,
    DisableContact,
    DisableLead,
    DeleteCampaign,
    DeleteDisableSynchronization,
    DeleteProtection,
    Priority,
    GroupPrefix,
    TypJson,
    Entity,
    SublistCount,
    UpdateRequestCount,
    ScheduleMinutes,
    MaxRemovalPercent,
    MaxRemovals,
}

const KEYS: [(Key, &str); 15] = [
    (Key::ApiUrl, keys::API_URL),
    (Key::DisableContact, keys::DISABLE_CONTACT),
    (Key::DisableLead, keys::DISABLE_LEAD),
    (Key::DeleteCampaign, keys::DELETE_CAMPAIGN),
    (
        Key::DeleteDisableSynchronization,
        keys::DELETE_DISABLE_SYNCHRONIZATION,
    ),
    (Key::DeleteProtection, keys::DELETE_PROTECTION),
    (Key::Priority, keys::PRIORITY),
    (Key::GroupPrefix, keys::GROUP_PREFIX),
    (Key::TypJson, keys::TYP_JSON),
    (Key::Entity, keys::ENTITY),
    (Key::SublistCount, keys::SUBLIST_COUNT),
    (Key::UpdateRequestCount, keys::UPDATE_REQUEST_COUNT),
    (Key::ScheduleMinutes, keys::SCHEDULE_MINUTES),
    (Key::MaxRemovalPercent, keys::MAX_REMOVAL_PERCENT),
    (Key::MaxRemovals, keys::MAX_REMOVALS),
];

/// The seed's misspellings of key segments, and what they stand for.
const SEGMENT_ALIASES: [(&str, &str); 5] = [
    ("bouncestettings", "bouncesettings"),
    (
        "deletedisablestynchronization",
        "deletedisablesynchronization",
    ),
    ("groupsetting", "groupsettings"),
    ("newslettersettings", "newslettertypsettings"),
    ("acesstoken", "accesstoken"),
];

const PREFIX: &str = "cleverreach:";
const CONNECTION_PREFIX: &str = "cleverreach:connectiondata:";

enum KeyClass {
    Setting(Key),
    Secret,
    Unknown,
    /// Not the connector's key (another application's row in the same table).
    Foreign,
}

/// A row's key as the connector reads it: lower case, blanks trimmed, the seed's misspelled
/// segments replaced by the proper ones.
pub fn canonical_key(raw: &str) -> String {
    raw.trim()
        .to_lowercase()
        .split(':')
        .map(|segment| {
            let segment = segment.trim();
            SEGMENT_ALIASES
                .iter()
                .find(|(alias, _)| *alias == segment)
                .map_or(segment, |(_, proper)| proper)
        })
        .collect::<Vec<_>>()
        .join(":")
}

fn classify(canonical: &str) -> KeyClass {
    if let Some((key, _)) = KEYS.iter().find(|(_, name)| *name == canonical) {
        return KeyClass::Setting(*key);
    }
    if !canonical.starts_with(PREFIX) {
        return KeyClass::Foreign;
    }
    let last = canonical.rsplit(':').next().unwrap_or_default();
    let looks_secret = ["token", "secret", "password"]
        .iter()
        .any(|word| last.contains(word))
        || last.ends_with("key");
    if canonical.starts_with(CONNECTION_PREFIX) || looks_secret {
        KeyClass::Secret
    } else {
        KeyClass::Unknown
    }
}

/// A parsed value, compared to find rows that contradict each other.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Parsed {
    Text(String),
    Flag(bool),
    Count(u32),
    Priority(DeletionPriority),
    Types(Vec<NewsletterType>),
    Entities(BTreeSet<RecipientKind>),
}

impl Settings {
    /// Reads the settings from the rows of `crc_setting`. Rows that are not the connector's
    /// are ignored; unknown `cleverreach:` keys and secrets give warnings; every invalid row
    /// is reported in one error.
    pub fn from_rows<'a>(
        rows: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<LoadedSettings, SettingsError> {
        let mut settings = Settings::default();
        let mut warnings = Vec::new();
        let mut problems = Vec::new();
        // The first valid row seen for each setting, to detect contradicting rows.
        let mut seen: BTreeMap<Key, (String, String, Parsed)> = BTreeMap::new();

        for (raw_key, raw_value) in rows {
            let key_text = raw_key.trim().to_string();
            let key = match classify(&canonical_key(raw_key)) {
                KeyClass::Setting(key) => key,
                KeyClass::Secret => {
                    warnings.push(SettingsWarning::SecretIgnored { key: key_text });
                    continue;
                }
                KeyClass::Unknown => {
                    warnings.push(SettingsWarning::UnknownKey { key: key_text });
                    continue;
                }
                KeyClass::Foreign => continue,
            };
            let parsed = match parse_value(key, raw_value) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => continue,
                Err(problem) => {
                    problems.push(SettingProblem {
                        key: key_text,
                        value: raw_value.to_string(),
                        problem,
                    });
                    continue;
                }
            };
            match seen.get(&key) {
                Some((first_key, first_value, first)) => {
                    if *first != parsed {
                        problems.push(SettingProblem {
                            key: key_text,
                            value: raw_value.to_string(),
                            problem: format!(
                                "the row `{first_key}` sets the same setting to {:?}; remove one of the two rows",
                                shorten(first_value, 200)
                            ),
                        });
                    }
                }
                None => {
                    settings.apply(key, parsed.clone());
                    seen.insert(key, (key_text, raw_value.to_string(), parsed));
                }
            }
        }

        if problems.is_empty() {
            Ok(LoadedSettings { settings, warnings })
        } else {
            Err(SettingsError { problems })
        }
    }

    /// Whether recipients of this kind are transferred (`transfersettings:entity`).
    pub fn transfers(&self, kind: RecipientKind) -> bool {
        self.transfer_entities.contains(&kind)
    }

    fn apply(&mut self, key: Key, value: Parsed) {
        match (key, value) {
            (Key::ApiUrl, Parsed::Text(url)) => self.api_url = url,
            (Key::GroupPrefix, Parsed::Text(prefix)) => self.group_prefix = prefix,
            (Key::DisableContact, Parsed::Flag(on)) => self.bounce.disable_contact = on,
            (Key::DisableLead, Parsed::Flag(on)) => self.bounce.disable_lead = on,
            (Key::DeleteCampaign, Parsed::Flag(on)) => self.deletion.delete_campaign = on,
            (Key::DeleteDisableSynchronization, Parsed::Flag(on)) => {
                self.deletion.delete_disable_synchronization = on
            }
            (Key::DeleteProtection, Parsed::Flag(on)) => self.deletion.delete_protection = on,
            (Key::Priority, Parsed::Priority(p)) => self.deletion.priority = p,
            (Key::TypJson, Parsed::Types(types)) => self.newsletter_types = types,
            (Key::Entity, Parsed::Entities(kinds)) => self.transfer_entities = kinds,
            (Key::SublistCount, Parsed::Count(n)) => self.sublist_count = n,
            (Key::UpdateRequestCount, Parsed::Count(n)) => self.update_request_count = n,
            (Key::ScheduleMinutes, Parsed::Count(n)) => self.schedule_minutes = n,
            (Key::MaxRemovalPercent, Parsed::Count(n)) => self.brake.max_removal_percent = n,
            (Key::MaxRemovals, Parsed::Count(n)) => self.brake.max_removals = n,
            // parse_value gives each key its own kind of value; nothing else reaches here.
            _ => {}
        }
    }
}

/// The largest `maxremovals` accepted (far above any group CleverReach holds).
const MAX_REMOVALS_LIMIT: u32 = 1_000_000_000;

/// `Ok(None)` = the row does not set the value (empty), so the default stays.
fn parse_value(key: Key, raw: &str) -> Result<Option<Parsed>, String> {
    if key == Key::GroupPrefix {
        // Blanks in a prefix are deliberate ("CRM - "), and an empty prefix is the default.
        return Ok(Some(Parsed::Text(raw.to_string())));
    }
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let parsed = match key {
        Key::ApiUrl => Parsed::Text(parse_api_url(value)?),
        Key::DisableContact
        | Key::DisableLead
        | Key::DeleteCampaign
        | Key::DeleteDisableSynchronization
        | Key::DeleteProtection => Parsed::Flag(parse_flag(value)?),
        Key::Priority => {
            let number = parse_count_text(value)?;
            Parsed::Priority(DeletionPriority::try_from(number).map_err(|e| e.to_string())?)
        }
        Key::SublistCount => Parsed::Count(parse_in_range(value, 1, 5000)?),
        Key::UpdateRequestCount => Parsed::Count(parse_in_range(value, 1, 1000)?),
        Key::ScheduleMinutes => Parsed::Count(parse_in_range(value, 5, 1440)?),
        Key::MaxRemovalPercent => Parsed::Count(parse_in_range(value, 0, 100)?),
        Key::MaxRemovals => Parsed::Count(parse_in_range(value, 0, MAX_REMOVALS_LIMIT)?),
        Key::TypJson => Parsed::Types(parse_newsletter_types(value)?),
        Key::Entity => Parsed::Entities(parse_entities(value)?),
        Key::GroupPrefix => Parsed::Text(raw.to_string()),
    };
    Ok(Some(parsed))
}

fn parse_api_url(value: &str) -> Result<String, String> {
    let lower = value.to_ascii_lowercase();
    let rest = ["https://", "http://"]
        .iter()
        .find_map(|scheme| lower.strip_prefix(scheme))
        .ok_or("must start with https:// or http://")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("has no host after the scheme".to_string());
    }
    if value.chars().any(char::is_whitespace) {
        return Err("must not contain blanks".to_string());
    }
    let mut url = value.to_string();
    if !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
}

fn parse_flag(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err("must be true or false (also accepted: 1/0, yes/no)".to_string()),
    }
}

fn parse_count_text(value: &str) -> Result<i64, String> {
    value
        .parse::<i64>()
        .map_err(|_| "must be a whole number".to_string())
}

fn parse_in_range(value: &str, min: u32, max: u32) -> Result<u32, String> {
    let number = parse_count_text(value)?;
    u32::try_from(number)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("must be between {min} and {max}"))
}

fn parse_newsletter_types(value: &str) -> Result<Vec<NewsletterType>, String> {
    let json: Value = serde_json::from_str(value).map_err(|e| {
        format!(
            "is not valid JSON (line {}, column {}): {e}",
            e.line(),
            e.column()
        )
    })?;
    let Value::Array(items) = json else {
        return Err(
            "must be a JSON array of newsletter types like [{\"id\":0,\"description\":\"Information\",\"position\":1}]"
                .to_string(),
        );
    };
    if items.is_empty() {
        // With no type, no recipient could ever qualify and every group would be emptied.
        return Err("lists no newsletter type; at least one is needed".to_string());
    }
    let mut types = Vec::with_capacity(items.len());
    let mut ids = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let n = index + 1;
        let Value::Object(fields) = item else {
            return Err(format!(
                "newsletter type {n} must be a JSON object, not {}",
                show(item)
            ));
        };
        let id = fields
            .get("id")
            .and_then(whole_number)
            .map(NewsletterTypeId)
            .ok_or_else(|| format!("newsletter type {n} has no whole-number id"))?;
        if !ids.insert(id) {
            return Err(format!(
                "the id {id} is used by more than one newsletter type"
            ));
        }
        let description = match fields.get("description") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
            _ => return Err(format!("newsletter type {n} (id {id}) has no description")),
        };
        let position = match fields.get("position") {
            None | Some(Value::Null) => i64::try_from(n).unwrap_or(i64::MAX),
            Some(p) => whole_number(p).ok_or_else(|| {
                format!(
                    "newsletter type {n} (id {id}) has the position {}, which is not a whole number",
                    show(p)
                )
            })?,
        };
        types.push(NewsletterType {
            id,
            description,
            position,
        });
    }
    Ok(types)
}

fn parse_entities(value: &str) -> Result<BTreeSet<RecipientKind>, String> {
    let names: Vec<String> = if value.starts_with('[') {
        let json: Vec<Value> = serde_json::from_str(value)
            .map_err(|e| format!("is not a valid JSON array of entity names: {e}"))?;
        json.into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(format!("{} is not an entity name", show(&other))),
            })
            .collect::<Result<_, _>>()?
    } else {
        value.split([',', ';']).map(str::to_string).collect()
    };
    let mut kinds = BTreeSet::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let kind = RecipientKind::from_logical_name(name).ok_or_else(|| {
            format!("{name:?} is not an entity the connector transfers (contact, account, lead)")
        })?;
        kinds.insert(kind);
    }
    if kinds.is_empty() {
        return Err("names no entity; list at least one of contact, account, lead".to_string());
    }
    Ok(kinds)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::domain::deletion::DeletionPriority::*;
    use proptest::prelude::*;

    fn load(rows: &[(&str, &str)]) -> Result<LoadedSettings, SettingsError> {
        Settings::from_rows(rows.iter().copied())
    }

    fn settings(rows: &[(&str, &str)]) -> Settings {
        match load(rows) {
            Ok(loaded) => loaded.settings,
            Err(e) => panic!("rows {rows:?} should load, got:\n{e}"),
        }
    }

    fn problems(rows: &[(&str, &str)]) -> Vec<SettingProblem> {
        match load(rows) {
            Ok(loaded) => panic!("rows {rows:?} should be refused, got {loaded:?}"),
            Err(e) => e.problems,
        }
    }

    #[test]
    fn an_empty_table_gives_the_defaults_of_the_design() {
        let loaded = load(&[]).unwrap();
        assert!(loaded.warnings.is_empty());
        let s = loaded.settings;
        assert_eq!(s, Settings::default());
        assert_eq!(s.api_url, "https://rest.cleverreach.com/");
        assert_eq!(
            s.bounce,
            BounceSettings {
                disable_contact: false,
                disable_lead: false
            }
        );
        assert!(s.deletion.delete_campaign);
        assert!(s.deletion.delete_disable_synchronization);
        assert!(!s.deletion.delete_protection);
        assert_eq!(s.deletion.priority, DeleteDespiteProtection);
        assert_eq!(s.group_prefix, "");
        assert_eq!(
            s.newsletter_types
                .iter()
                .map(|t| (t.id.0, t.description.as_str(), t.position))
                .collect::<Vec<_>>(),
            vec![(0, "Information", 1), (1, "Werbung und Spiele", 2)]
        );
        assert_eq!(
            s.transfer_entities,
            [
                RecipientKind::Contact,
                RecipientKind::Account,
                RecipientKind::Lead
            ]
            .into_iter()
            .collect()
        );
        assert_eq!(
            (s.sublist_count, s.update_request_count, s.schedule_minutes),
            (500, 500, 60)
        );
        assert_eq!(
            (s.brake.max_removal_percent, s.brake.max_removals),
            (20, 100)
        );
    }

    #[test]
    fn every_key_sets_its_setting() {
        let s = settings(&[
            (keys::API_URL, "https://eu.example.com/api"),
            (keys::DISABLE_CONTACT, "true"),
            (keys::DISABLE_LEAD, "yes"),
            (keys::DELETE_CAMPAIGN, "false"),
            (keys::DELETE_DISABLE_SYNCHRONIZATION, "0"),
            (keys::DELETE_PROTECTION, "1"),
            (keys::PRIORITY, "2"),
            (keys::GROUP_PREFIX, "CRM - "),
            (
                keys::TYP_JSON,
                r#"[{"id":5,"description":"Events","position":3}]"#,
            ),
            (keys::ENTITY, "contact"),
            (keys::SUBLIST_COUNT, "250"),
            (keys::UPDATE_REQUEST_COUNT, "1000"),
            (keys::SCHEDULE_MINUTES, "15"),
            (keys::MAX_REMOVAL_PERCENT, "50"),
            (keys::MAX_REMOVALS, "2500"),
        ]);
        assert_eq!(s.api_url, "https://eu.example.com/api/");
        assert!(s.bounce.disable_contact && s.bounce.disable_lead);
        assert_eq!(
            s.deletion,
            DeletionSettings {
                delete_campaign: false,
                delete_disable_synchronization: false,
                delete_protection: true,
                priority: DeleteProtectedOnlyWhenRecordDeleted,
            }
        );
        assert_eq!(s.group_prefix, "CRM - ");
        assert_eq!(
            s.newsletter_types,
            vec![NewsletterType {
                id: NewsletterTypeId(5),
                description: "Events".into(),
                position: 3
            }]
        );
        assert_eq!(
            s.transfer_entities,
            [RecipientKind::Contact].into_iter().collect()
        );
        assert!(s.transfers(RecipientKind::Contact) && !s.transfers(RecipientKind::Lead));
        assert_eq!(
            (s.sublist_count, s.update_request_count, s.schedule_minutes),
            (250, 1000, 15)
        );
        assert_eq!(
            (s.brake.max_removal_percent, s.brake.max_removals),
            (50, 2500)
        );
    }

    #[test]
    fn keys_match_regardless_of_case_and_surrounding_blanks() {
        let s = settings(&[
            ("  CleverReach:BounceSettings:DisableContact ", "TRUE"),
            ("CLEVERREACH:GROUPSETTINGS:GROUPPREFIX", "X "),
        ]);
        assert!(s.bounce.disable_contact);
        assert_eq!(s.group_prefix, "X ");
    }

    #[test]
    fn the_seeds_misspelled_keys_are_accepted() {
        let s = settings(&[
            ("cleverreach:bouncestettings:disablelead", "true"),
            (
                "cleverreach:deletionsettings:deletedisablestynchronization",
                "false",
            ),
            ("cleverreach:groupsetting:groupprefix", "News "),
            (
                "cleverreach:newslettersettings:typjson",
                r#"[{"id":9,"description":"Nine"}]"#,
            ),
        ]);
        assert!(s.bounce.disable_lead);
        assert!(!s.deletion.delete_disable_synchronization);
        assert_eq!(s.group_prefix, "News ");
        assert_eq!(s.newsletter_types[0].id, NewsletterTypeId(9));
    }

    #[test]
    fn booleans_accept_the_usual_spellings_and_refuse_others() {
        for (text, expected) in [
            ("true", true),
            (" True ", true),
            ("1", true),
            ("YES", true),
            ("false", false),
            ("0", false),
            ("no", false),
            ("No ", false),
        ] {
            let s = settings(&[(keys::DELETE_PROTECTION, text)]);
            assert_eq!(s.deletion.delete_protection, expected, "{text:?}");
        }
        for bad in ["ja", "2", "on", "tru"] {
            let p = problems(&[(keys::DELETE_PROTECTION, bad)]);
            assert_eq!(p.len(), 1, "{bad:?}");
            assert_eq!(p[0].key, keys::DELETE_PROTECTION);
            assert_eq!(p[0].value, bad);
        }
    }

    #[test]
    fn numbers_out_of_range_are_refused_not_clamped() {
        let cases = [
            (keys::SUBLIST_COUNT, "0"),
            (keys::SUBLIST_COUNT, "5001"),
            (keys::SUBLIST_COUNT, "-5"),
            (keys::SUBLIST_COUNT, "12.5"),
            (keys::SUBLIST_COUNT, "many"),
            (keys::UPDATE_REQUEST_COUNT, "1001"),
            (keys::UPDATE_REQUEST_COUNT, "0"),
            (keys::SCHEDULE_MINUTES, "4"),
            (keys::SCHEDULE_MINUTES, "1441"),
            (keys::SCHEDULE_MINUTES, "99999999999999999999"),
            (keys::PRIORITY, "3"),
            (keys::PRIORITY, "-1"),
            (keys::PRIORITY, "high"),
            (keys::MAX_REMOVAL_PERCENT, "101"),
            (keys::MAX_REMOVAL_PERCENT, "-1"),
            (keys::MAX_REMOVAL_PERCENT, "20%"),
            (keys::MAX_REMOVALS, "-5"),
            (keys::MAX_REMOVALS, "lots"),
            (keys::MAX_REMOVALS, "1000000001"),
        ];
        for (key, value) in cases {
            let p = problems(&[(key, value)]);
            assert_eq!(p.len(), 1, "{key} = {value}");
            let line = p[0].to_string();
            assert!(
                line.contains(key) && line.contains(value),
                "{key} = {value}: {line}"
            );
        }
    }

    #[test]
    fn numbers_at_the_edges_of_their_range_are_accepted() {
        let s = settings(&[
            (keys::SUBLIST_COUNT, "5000"),
            (keys::UPDATE_REQUEST_COUNT, "1"),
            (keys::SCHEDULE_MINUTES, "1440"),
        ]);
        assert_eq!(
            (s.sublist_count, s.update_request_count, s.schedule_minutes),
            (5000, 1, 1440)
        );
        assert_eq!(
            settings(&[(keys::SCHEDULE_MINUTES, " 5 ")]).schedule_minutes,
            5
        );
    }

    #[test]
    fn the_api_url_must_be_http_and_gets_a_trailing_slash() {
        assert_eq!(
            settings(&[(keys::API_URL, "https://rest.cleverreach.com")]).api_url,
            "https://rest.cleverreach.com/"
        );
        assert_eq!(
            settings(&[(keys::API_URL, " http://localhost:9001/ ")]).api_url,
            "http://localhost:9001/"
        );
        for bad in [
            "rest.cleverreach.com",
            "ftp://x.de",
            "https://",
            "https:///path",
            "https://a b.de",
        ] {
            let p = problems(&[(keys::API_URL, bad)]);
            assert_eq!(p.len(), 1, "{bad:?}");
        }
    }

    #[test]
    fn an_empty_value_means_not_set_and_keeps_the_default() {
        let s = settings(&[
            (keys::API_URL, ""),
            (keys::DELETE_CAMPAIGN, "  "),
            (keys::PRIORITY, ""),
            (keys::TYP_JSON, " "),
            (keys::ENTITY, ""),
            (keys::SUBLIST_COUNT, ""),
        ]);
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn the_group_prefix_is_kept_exactly_and_an_empty_one_is_a_real_value() {
        assert_eq!(
            settings(&[(keys::GROUP_PREFIX, "  [CRM]  ")]).group_prefix,
            "  [CRM]  "
        );
        assert_eq!(settings(&[(keys::GROUP_PREFIX, "")]).group_prefix, "");
        // An empty prefix contradicts a non-empty one, because empty is a value here.
        let p = problems(&[(keys::GROUP_PREFIX, ""), (keys::GROUP_PREFIX, "X")]);
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn newsletter_types_are_read_from_typjson_with_positions_defaulting_to_their_place() {
        let s = settings(&[(
            keys::TYP_JSON,
            r#"[{"id":"3","description":" Events "},{"id":4,"description":"Press","position":"9","state":0,"modifiedby":""}]"#,
        )]);
        assert_eq!(
            s.newsletter_types,
            vec![
                NewsletterType {
                    id: NewsletterTypeId(3),
                    description: "Events".into(),
                    position: 1
                },
                NewsletterType {
                    id: NewsletterTypeId(4),
                    description: "Press".into(),
                    position: 9
                },
            ]
        );
    }

    #[test]
    fn broken_typjson_is_refused_with_the_reason() {
        let cases = [
            ("[{\"id\":0,", "not valid JSON"),
            ("{\"id\":0}", "JSON array"),
            ("[]", "no newsletter type"),
            ("[5]", "JSON object"),
            (r#"[{"description":"x"}]"#, "no whole-number id"),
            (r#"[{"id":1.5,"description":"x"}]"#, "no whole-number id"),
            (
                r#"[{"id":1,"description":"a"},{"id":1,"description":"b"}]"#,
                "more than one",
            ),
            (r#"[{"id":1,"description":"  "}]"#, "no description"),
            (r#"[{"id":1}]"#, "no description"),
            (
                r#"[{"id":1,"description":"a","position":"top"}]"#,
                "position",
            ),
        ];
        for (value, reason) in cases {
            let p = problems(&[(keys::TYP_JSON, value)]);
            assert_eq!(p.len(), 1, "{value}");
            assert!(
                p[0].problem.contains(reason),
                "{value}: expected {reason:?} in {:?}",
                p[0].problem
            );
        }
    }

    #[test]
    fn entities_are_read_from_a_separated_list_or_a_json_array() {
        use RecipientKind::*;
        let cases: [(&str, &[RecipientKind]); 6] = [
            ("contact,lead", &[Contact, Lead]),
            ("Contact; Account", &[Contact, Account]),
            (" lead ", &[Lead]),
            ("contact, lead,", &[Contact, Lead]),
            (r#"["account","LEAD"]"#, &[Account, Lead]),
            ("contact,contact", &[Contact]),
        ];
        for (value, expected) in cases {
            assert_eq!(
                settings(&[(keys::ENTITY, value)]).transfer_entities,
                expected.iter().copied().collect::<BTreeSet<_>>(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn an_empty_or_unknown_entity_list_is_refused() {
        for bad in [
            ",",
            "[]",
            " ; ",
            "contact,opportunity",
            "contacts",
            "[1]",
            "[\"contact\"",
        ] {
            let p = problems(&[(keys::ENTITY, bad)]);
            assert_eq!(p.len(), 1, "{bad:?}");
        }
    }

    #[test]
    fn secrets_are_ignored_with_a_warning_that_never_shows_their_value() {
        let secret_value = "eyJhbGciOi.SUPER-SECRET-TOKEN";
        let rows = [
            ("cleverreach:connectiondata:accesstoken", secret_value),
            ("cleverreach:connectiondata:acesstoken", secret_value),
            ("CleverReach:ConnectionData:RefreshToken", secret_value),
            ("cleverreach:connectiondata:clientid", secret_value),
            ("cleverreach:connectiondata:clientsecret", secret_value),
            ("cleverreach:connectiondata:somethingelse", secret_value),
            ("cleverreach:webhook:webhookkey", secret_value),
            (keys::API_URL, "https://api.example.com"),
        ];
        let loaded = load(&rows).unwrap();
        assert_eq!(loaded.settings.api_url, "https://api.example.com/");
        assert_eq!(loaded.warnings.len(), 7);
        for (warning, (key, _)) in loaded.warnings.iter().zip(rows) {
            assert_eq!(
                warning,
                &SettingsWarning::SecretIgnored {
                    key: key.to_string()
                }
            );
            let text = warning.to_string();
            assert!(
                text.contains(key) && text.contains("Secrets Manager"),
                "{text}"
            );
        }
        let everything = format!(
            "{loaded:?} {}",
            loaded
                .warnings
                .iter()
                .map(|w| w.to_string())
                .collect::<String>()
        );
        assert!(!everything.contains("SUPER-SECRET"), "{everything}");
    }

    #[test]
    fn secrets_stay_hidden_when_other_rows_are_invalid() {
        let secret_value = "SUPER-SECRET-TOKEN";
        let err = load(&[
            ("cleverreach:connectiondata:refreshtoken", secret_value),
            (keys::SUBLIST_COUNT, "0"),
        ])
        .unwrap_err();
        let everything = format!("{err:?} {err}");
        assert!(!everything.contains("SUPER-SECRET"), "{everything}");
    }

    #[test]
    fn unknown_cleverreach_keys_warn_and_other_keys_are_ignored_silently() {
        let loaded = load(&[
            ("cleverreach:groupsettings:grouppreffix", "X"),
            ("otherapp:setting", "whatever"),
            ("theme", "dark"),
        ])
        .unwrap();
        assert_eq!(
            loaded.warnings,
            vec![SettingsWarning::UnknownKey {
                key: "cleverreach:groupsettings:grouppreffix".into()
            }]
        );
        assert!(loaded.warnings[0].to_string().contains("grouppreffix"));
        assert_eq!(loaded.settings, Settings::default());
    }

    #[test]
    fn an_alias_and_the_proper_key_with_different_values_are_an_error_naming_both() {
        let p = problems(&[
            ("cleverreach:bouncestettings:disablecontact", "true"),
            ("cleverreach:bouncesettings:disablecontact", "false"),
        ]);
        assert_eq!(p.len(), 1);
        let line = p[0].to_string();
        assert!(
            line.contains("cleverreach:bouncestettings:disablecontact")
                && line.contains("cleverreach:bouncesettings:disablecontact"),
            "{line}"
        );
    }

    #[test]
    fn rows_that_agree_in_meaning_are_not_a_conflict() {
        let s = settings(&[
            ("cleverreach:bouncestettings:disablecontact", "true"),
            ("cleverreach:bouncesettings:disablecontact", "1"),
            (keys::ENTITY, "contact,lead"),
            (
                "CleverReach:TransferSettings:Entity",
                r#"["lead","contact"]"#,
            ),
        ]);
        assert!(s.bounce.disable_contact);
        assert_eq!(s.transfer_entities.len(), 2);
    }

    #[test]
    fn an_empty_row_does_not_contradict_a_set_one() {
        let s = settings(&[(keys::SUBLIST_COUNT, ""), (keys::SUBLIST_COUNT, "100")]);
        assert_eq!(s.sublist_count, 100);
    }

    #[test]
    fn every_problem_is_reported_at_once_one_line_each() {
        let err = load(&[
            (keys::SUBLIST_COUNT, "0"),
            (keys::DELETE_CAMPAIGN, "maybe"),
            (keys::TYP_JSON, "[{\"id\":\n0"),
            (keys::API_URL, "rest.cleverreach.com"),
        ])
        .unwrap_err();
        assert_eq!(
            err.problems
                .iter()
                .map(|p| p.key.as_str())
                .collect::<Vec<_>>(),
            vec![
                keys::SUBLIST_COUNT,
                keys::DELETE_CAMPAIGN,
                keys::TYP_JSON,
                keys::API_URL
            ]
        );
        let text = err.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].contains(keys::DELETE_CAMPAIGN) && lines[1].contains("maybe"));
        assert!(
            lines[2].contains(keys::TYP_JSON),
            "a value with a line break stays on one line: {text}"
        );
    }

    #[test]
    fn an_invalid_setting_is_never_replaced_by_its_default() {
        // The valid rows around it do not make the load succeed.
        assert!(
            load(&[
                (keys::DISABLE_LEAD, "true"),
                (keys::PRIORITY, "7"),
                (keys::GROUP_PREFIX, "X")
            ])
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn loading_any_rows_never_panics(rows in prop::collection::vec((any::<String>(), any::<String>()), 0..6)) {
            let _ = Settings::from_rows(rows.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }

        #[test]
        fn any_value_of_a_known_key_is_either_accepted_or_reported_with_its_key(
            index in 0usize..13,
            value in any::<String>(),
        ) {
            let key = KEYS[index].1;
            match Settings::from_rows([(key, value.as_str())]) {
                Ok(loaded) => prop_assert!(loaded.warnings.is_empty()),
                Err(err) => {
                    prop_assert_eq!(err.problems.len(), 1);
                    prop_assert_eq!(err.problems[0].key.as_str(), key);
                    prop_assert_eq!(err.to_string().lines().count(), 1);
                }
            }
        }

        #[test]
        fn secret_values_never_leak_whatever_they_are(
            name in "(accesstoken|acesstoken|refreshtoken|clientid|clientsecret|[a-z]{1,10})",
            value in "[A-Za-z0-9]{12,40}",
        ) {
            prop_assume!(name != "apiurl");
            let key = format!("cleverreach:connectiondata:{name}");
            let loaded = Settings::from_rows([(key.as_str(), value.as_str())]).unwrap();
            let text = format!("{loaded:?} {}", loaded.warnings.iter().map(|w| w.to_string()).collect::<String>());
            prop_assert!(!text.contains(&value));
        }
    }
}
