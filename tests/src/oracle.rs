//! The truth for the end-to-end tests: the rule of docs/architecture.md §2 ("who belongs to a source's
//! group"), computed independently of the connector from the Dataverse simulator's rows, and
//! compared with the CleverReach simulator's groups.
//!
//! Written from docs/architecture.md §2 alone: it never calls the connector's domain code, so that a mistake
//! there cannot agree with itself here. It covers what the convergence tests generate:
//! - marketing lists only (static lists through `listmembers`, dynamic lists whose FetchXML
//!   is a single `like` condition on `emailaddress1`);
//! - default settings: newsletter types 0 and 1, every entity type transferred; a group
//!   prefix is honoured; any other connector setting is refused ([`OracleError`]);
//! - e-mail addresses that either a simple check accepts (`local@label.label`) or that are
//!   plainly broken (no `@`, no dot in the domain, blanks): the test data stays where any
//!   reasonable validator agrees.
//!
//! The connector's documented choices that the comparison follows:
//! - an inactive marketing list no longer feeds the campaigns and activities it is linked to
//!   (docs/architecture.md is silent; the connector says so where it reads linked lists);
//! - with the default deletion settings, a source whose sync is off, that is inactive or that
//!   is gone has no group in CleverReach: every group must be the group of a synced source
//!   ([`stray_groups`]);
//! - an address shared by several eligible records is one receiver, carrying the data of one
//!   of them (which one is not specified);
//! - CleverReach keeps global attributes per address for the whole account, not per group:
//!   when an address stands for different records (or for one contact with a different
//!   company: its parent account in a contact list, the account in an account list) in
//!   different groups, every group shows the values last written, and a change in one group
//!   does not always rewrite the others. A receiver may therefore carry the current data of
//!   another CRM record with its address ([`GroupVerdict::data_from_other_group`]); stale
//!   data (values no record with the address has now) is still a difference;
//! - "do not allow bulk e-mail" on any active member record with a valid address keeps that
//!   address out of the group, whatever the other records with the address say;
//! - a receiver that is deactivated, bounced or blacklisted in CleverReach is never re-activated
//!   (the address is then excused), and neither is the person it stands for added again under
//!   another address (excused as well: the planner's "a person who opted out stays out").

use crate::cleverreach::{CleverReachSim, SimReceiver};
use crate::dataverse::DataverseSim;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The default newsletter types (docs/architecture.md §6: Information, Werbung und Spiele).
pub const NEWSLETTER_TYPES: [i64; 2] = [0, 1];

/// Settings the oracle understands; any other `crc_settings` key is refused.
/// Settings the oracle understands: the group prefix, and the API base (which only says where
/// CleverReach is, not who belongs where).
const SUPPORTED_SETTINGS: [&str; 2] = [
    "cleverreach:groupsettings:groupprefix",
    "cleverreach:connectiondata:apiurl",
];

/// Why the oracle cannot say what a group should be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OracleError {
    #[error("the oracle only knows the default settings; {0:?} is set")]
    UnsupportedSetting(String),
    #[error("list {list}: the oracle cannot evaluate its query {query:?}")]
    UnsupportedQuery { list: String, query: String },
    #[error("list {list}: unknown member type (createdfromcode) {code:?}")]
    UnknownMemberType { list: String, code: Option<i64> },
}

/// The three kinds of source (docs/architecture.md §1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    #[default]
    MarketingList,
    Campaign,
    CampaignActivity,
}

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [
        SourceKind::MarketingList,
        SourceKind::Campaign,
        SourceKind::CampaignActivity,
    ];

    /// The simulator's entity set.
    pub fn entity_set(self) -> &'static str {
        match self {
            SourceKind::MarketingList => "lists",
            SourceKind::Campaign => "campaigns",
            SourceKind::CampaignActivity => "campaignactivities",
        }
    }

    fn key(self) -> &'static str {
        match self {
            SourceKind::MarketingList => "listid",
            SourceKind::Campaign => "campaignid",
            SourceKind::CampaignActivity => "activityid",
        }
    }

    /// The column the group is named after (docs/architecture.md §2, group naming).
    fn name_column(self) -> &'static str {
        match self {
            SourceKind::MarketingList => "listname",
            SourceKind::Campaign => "name",
            SourceKind::CampaignActivity => "subject",
        }
    }

    /// The word for messages.
    pub fn noun(self) -> &'static str {
        match self {
            SourceKind::MarketingList => "list",
            SourceKind::Campaign => "campaign",
            SourceKind::CampaignActivity => "campaign activity",
        }
    }
}

/// The receiver one eligible CRM record stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedReceiver {
    /// Trimmed, lower case.
    pub email: String,
    pub salutation: String,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    /// The person: `contact` or `lead` (an account stands for its primary contact).
    pub crm_entity: &'static str,
    /// Lower-case GUID.
    pub crm_id: String,
}

/// What one synced source's group must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedGroup {
    pub source_kind: SourceKind,
    /// Lower-case GUID.
    pub source_id: String,
    pub source_name: String,
    pub group_id: String,
    /// `groupprefix` + source name.
    pub group_name: String,
    /// Address → the eligible records that have it (at least one).
    pub receivers: BTreeMap<String, Vec<ExpectedReceiver>>,
    /// Addresses kept out by "do not allow bulk e-mail" on a member record.
    pub opted_out: BTreeSet<String>,
    /// Address → the member records with it that the rule leaves out, and why (for messages).
    pub left_out: BTreeMap<String, Vec<String>>,
}

/// Every group the CRM says must exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectation {
    pub groups: Vec<ExpectedGroup>,
    /// Sources with sync on and active that have no group id (`kind id`): the connector owes
    /// them a group.
    pub without_group: Vec<String>,
    /// Address → the current data of every CRM record with that address (contacts, leads,
    /// accounts through their primary contact): what account-wide global attributes may
    /// show in any group.
    pub account_wide: BTreeMap<String, Vec<ExpectedReceiver>>,
}

impl Expectation {
    /// Receivers expected over all groups.
    pub fn receiver_count(&self) -> usize {
        self.groups.iter().map(|g| g.receivers.len()).sum()
    }
}

type Row = Map<String, Value>;

fn text(row: &Row, column: &str) -> String {
    row.get(column)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn flag(row: &Row, column: &str) -> bool {
    row.get(column).and_then(Value::as_bool).unwrap_or(false)
}

fn active(row: &Row) -> bool {
    row.get("statecode").and_then(Value::as_i64).unwrap_or(0) == 0
}

fn id(row: &Row, column: &str) -> String {
    text(row, column).to_ascii_lowercase()
}

/// Rule 3: trimmed and lower-cased, `local@domain` with a plain local part and a domain of at
/// least two labels whose last is alphabetic.
pub fn normalised_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    (local_ok && domain_ok).then_some(email)
}

/// The newsletter types ticked (state 1) on a checklist; unreadable means none.
pub fn ticked_types(checklist: &str) -> BTreeSet<i64> {
    let Ok(Value::Array(entries)) = serde_json::from_str::<Value>(checklist) else {
        return BTreeSet::new();
    };
    entries
        .iter()
        .filter(|e| e.get("state").and_then(Value::as_i64) == Some(1))
        .filter_map(|e| e.get("id").and_then(Value::as_i64))
        .filter(|t| NEWSLETTER_TYPES.contains(t))
        .collect()
}

/// One member of a list as §2 sees it: who the person is and what the rules look at.
struct Member {
    active: bool,
    raw_email: String,
    do_not_bulk_email: bool,
    ticked: BTreeSet<i64>,
    receiver: ExpectedReceiver,
}

/// The CRM tables, indexed by id.
struct Crm {
    contacts: HashMap<String, Row>,
    leads: HashMap<String, Row>,
    accounts: HashMap<String, Row>,
    lists: HashMap<String, Row>,
    listmembers: Vec<Row>,
    campaign_items: Vec<Row>,
    activity_items: Vec<Row>,
}

impl Crm {
    /// `rows` gives a table's rows by entity set, in the simulator's inspection form.
    fn read(rows: &impl Fn(&str) -> Vec<Row>) -> Crm {
        let index = |set: &str, key: &str| {
            rows(set)
                .into_iter()
                .map(|row| (id(&row, key), row))
                .collect::<HashMap<_, _>>()
        };
        Crm {
            contacts: index("contacts", "contactid"),
            leads: index("leads", "leadid"),
            accounts: index("accounts", "accountid"),
            lists: index("lists", "listid"),
            listmembers: rows("listmembers"),
            campaign_items: rows("campaignitems"),
            activity_items: rows("campaignactivityitems"),
        }
    }

    fn person(&self, entity: &'static str, row: &Row, key: &str, company: String) -> Member {
        Member {
            active: active(row),
            raw_email: text(row, "emailaddress1"),
            do_not_bulk_email: flag(row, "donotbulkemail"),
            ticked: ticked_types(&text(row, "crc_checklist")),
            receiver: ExpectedReceiver {
                email: String::new(),
                salutation: text(row, "salutation"),
                first_name: text(row, "firstname"),
                last_name: text(row, "lastname"),
                company,
                crm_entity: entity,
                crm_id: id(row, key),
            },
        }
    }

    /// A contact in its own right: company = its parent account's name.
    fn contact(&self, contact_id: &str) -> Option<Member> {
        let row = self.contacts.get(contact_id)?;
        let parent_is_account = text(
            row,
            "_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname",
        ) == "account";
        let company = if parent_is_account {
            self.accounts
                .get(&id(row, "_parentcustomerid_value"))
                .map(|a| text(a, "name"))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Some(self.person("contact", row, "contactid", company))
    }

    fn lead(&self, lead_id: &str) -> Option<Member> {
        let row = self.leads.get(lead_id)?;
        Some(self.person("lead", row, "leadid", text(row, "companyname")))
    }

    /// An account stands for its primary contact: both must be active, "do not bulk e-mail"
    /// on either counts, company = the account's name.
    fn account(&self, account_id: &str) -> Option<Member> {
        let account = self.accounts.get(account_id)?;
        let contact = self.contacts.get(&id(account, "_primarycontactid_value"))?;
        let mut member = self.person("contact", contact, "contactid", text(account, "name"));
        member.active = member.active && active(account);
        member.do_not_bulk_email = member.do_not_bulk_email || flag(account, "donotbulkemail");
        Some(member)
    }

    fn member(&self, kind: &str, record_id: &str) -> Option<Member> {
        match kind {
            "contact" => self.contact(record_id),
            "lead" => self.lead(record_id),
            "account" => self.account(record_id),
            _ => None,
        }
    }

    /// Every record's receiver data by address, whatever its lists and state.
    fn everyone(&self) -> BTreeMap<String, Vec<ExpectedReceiver>> {
        let mut by_email: BTreeMap<String, Vec<ExpectedReceiver>> = BTreeMap::new();
        let people = self
            .contacts
            .keys()
            .filter_map(|id| self.contact(id))
            .chain(self.leads.keys().filter_map(|id| self.lead(id)))
            .chain(self.accounts.keys().filter_map(|id| self.account(id)));
        for member in people {
            if let Some(email) = normalised_email(&member.raw_email) {
                by_email
                    .entry(email.clone())
                    .or_default()
                    .push(ExpectedReceiver {
                        email,
                        ..member.receiver
                    });
            }
        }
        by_email
    }

    /// Rule 6 for a marketing list: its static members or what its query selects.
    fn members(&self, list: &Row, list_id: &str) -> Result<Vec<Member>, OracleError> {
        let code = list.get("createdfromcode").and_then(Value::as_i64);
        let kind = match code {
            Some(1) => "account",
            Some(2) => "contact",
            Some(4) => "lead",
            _ => {
                return Err(OracleError::UnknownMemberType {
                    list: list_id.to_string(),
                    code,
                });
            }
        };
        if !flag(list, "type") {
            return Ok(self
                .listmembers
                .iter()
                .filter(|m| id(m, "_listid_value") == list_id)
                .filter_map(|m| self.member(kind, &id(m, "_entityid_value")))
                .collect());
        }
        let query = text(list, "query");
        let unsupported = || OracleError::UnsupportedQuery {
            list: list_id.to_string(),
            query: query.clone(),
        };
        let pattern = like_pattern(&query, kind).ok_or_else(unsupported)?;
        let table = match kind {
            "contact" => &self.contacts,
            "lead" => &self.leads,
            _ => return Err(unsupported()),
        };
        Ok(table
            .iter()
            .filter(|(_, row)| {
                row.get("emailaddress1")
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.to_lowercase().contains(&pattern))
            })
            .filter_map(|(record_id, _)| self.member(kind, record_id))
            .collect())
    }

    /// Rule 6 for any source: a list's own members; for a campaign or campaign activity, the
    /// members of the (active) lists linked to it plus the leads linked to it.
    fn source_members(
        &self,
        kind: SourceKind,
        source: &Row,
        source_id: &str,
    ) -> Result<Vec<Member>, OracleError> {
        let (items, parent, item, item_type, lead_lookup) = match kind {
            SourceKind::MarketingList => return self.members(source, source_id),
            SourceKind::Campaign => (
                &self.campaign_items,
                "_campaignid_value",
                "entityid",
                "entitytype",
                "_campaignid_value",
            ),
            SourceKind::CampaignActivity => (
                &self.activity_items,
                "_campaignactivityid_value",
                "itemid",
                "itemobjecttypecode",
                "_crc_campaignactivityid_value",
            ),
        };
        let mut members = Vec::new();
        let linked: BTreeSet<String> = items
            .iter()
            .filter(|i| id(i, parent) == source_id && text(i, item_type) == "list")
            .map(|i| id(i, item))
            .collect();
        for list_id in linked {
            // A link to a list that is gone (or inactive) brings no one.
            let Some(list) = self.lists.get(&list_id).filter(|l| active(l)) else {
                continue;
            };
            members.extend(self.members(list, &list_id)?);
        }
        let mut leads: Vec<&String> = self
            .leads
            .iter()
            .filter(|(_, row)| id(row, lead_lookup) == source_id)
            .map(|(lead_id, _)| lead_id)
            .collect();
        leads.sort();
        members.extend(leads.into_iter().filter_map(|lead_id| self.lead(lead_id)));
        Ok(members)
    }
}

/// The `x` of `<entity name="kind">…<condition attribute="emailaddress1" operator="like"
/// value="%x%"/>…`, lower case, when the query is exactly one such condition.
pub fn like_pattern(query: &str, kind: &str) -> Option<String> {
    let compact: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
    if !compact.contains(&format!("<entity name=\"{kind}\">"))
        || compact.matches("<condition").count() != 1
    {
        return None;
    }
    let rest =
        compact.split_once("<condition attribute=\"emailaddress1\" operator=\"like\" value=\"%")?;
    let (inner, _) = rest.1.split_once("%\"")?;
    inner
        .chars()
        .all(|c| c.is_ascii_alphanumeric())
        .then(|| inner.to_lowercase())
}

/// What every synced source's group must hold, from the CRM as it is now.
pub fn expected_groups(sim: &DataverseSim) -> Result<Expectation, OracleError> {
    expectation(&|set: &str| sim.rows(set))
}

/// [`expected_groups`] from the tables as `rows` gives them (entity set → inspection rows).
fn expectation(rows: &impl Fn(&str) -> Vec<Row>) -> Result<Expectation, OracleError> {
    let mut prefix = String::new();
    for setting in rows("crc_settings") {
        let key = text(&setting, "crc_key").to_ascii_lowercase();
        // The back-flow's cursors and start times share the table; they are not settings.
        if key.starts_with("connector:") {
            continue;
        }
        if !SUPPORTED_SETTINGS.contains(&key.as_str()) {
            return Err(OracleError::UnsupportedSetting(key));
        }
        if key == "cleverreach:groupsettings:groupprefix" {
            prefix = setting
                .get("crc_value")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
        }
    }
    let crm = Crm::read(rows);
    let mut expectation = Expectation {
        account_wide: crm.everyone(),
        ..Expectation::default()
    };
    for kind in SourceKind::ALL {
        for source in rows(kind.entity_set()) {
            let source_id = id(&source, kind.key());
            // Sync off or inactive: no synced group.
            if !(flag(&source, "crc_syncwithcleverreach") && active(&source)) {
                continue;
            }
            let group_id = text(&source, "crc_groupid");
            if group_id.is_empty() {
                expectation
                    .without_group
                    .push(format!("{} {source_id}", kind.noun()));
                continue;
            }
            let members = crm.source_members(kind, &source, &source_id)?;
            let source_name = text(&source, kind.name_column());
            let mut group = select(
                members,
                &ticked_types(&text(&source, "crc_checklist")),
                kind.noun(),
            );
            group.group_name = format!("{prefix}{source_name}");
            group.source_kind = kind;
            group.source_id = source_id;
            group.source_name = source_name;
            group.group_id = group_id;
            expectation.groups.push(group);
        }
    }
    Ok(expectation)
}

/// Rules 1–5 over a source's members: who is selected, who is kept out by "do not allow bulk
/// e-mail", and why the others are left out. The source's own fields are left for the caller.
fn select(members: Vec<Member>, sent: &BTreeSet<i64>, noun: &str) -> ExpectedGroup {
    let mut receivers: BTreeMap<String, Vec<ExpectedReceiver>> = BTreeMap::new();
    let mut opted_out = BTreeSet::new();
    let mut left_out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for member in members {
        let Some(email) = normalised_email(&member.raw_email) else {
            continue;
        };
        let who = format!("{} {}", member.receiver.crm_entity, member.receiver.crm_id);
        // Rule 2 before rule 4: an inactive record says nothing, not even "no bulk e-mail".
        if !member.active {
            left_out
                .entry(email)
                .or_default()
                .push(format!("{who}: inactive"));
            continue;
        }
        if member.do_not_bulk_email {
            left_out
                .entry(email.clone())
                .or_default()
                .push(format!("{who}: do not allow bulk e-mail"));
            opted_out.insert(email);
            continue;
        }
        if sent.is_disjoint(&member.ticked) {
            left_out.entry(email).or_default().push(format!(
                "{who}: ticks {:?}, the {noun} sends {sent:?}",
                member.ticked
            ));
            continue;
        }
        let receiver = ExpectedReceiver {
            email: email.clone(),
            ..member.receiver
        };
        let records = receivers.entry(email).or_default();
        // One record reached twice (two linked lists, a list and its lead lookup) is one.
        if !records.contains(&receiver) {
            records.push(receiver);
        }
    }
    receivers.retain(|email, _| !opted_out.contains(email));
    ExpectedGroup {
        source_kind: SourceKind::MarketingList,
        source_id: String::new(),
        source_name: String::new(),
        group_id: String::new(),
        group_name: String::new(),
        receivers,
        opted_out,
        left_out,
    }
}

/// Groups in CleverReach that are no synced source's group (`id "name"`). With the default
/// deletion settings (the only ones the oracle knows) there must be none: turning sync off,
/// deactivating and deleting a source all delete its group.
pub fn stray_groups(all: &Expectation, cleverreach: &CleverReachSim) -> Vec<String> {
    let owned: BTreeSet<&str> = all.groups.iter().map(|g| g.group_id.as_str()).collect();
    cleverreach
        .groups()
        .iter()
        .filter(|g| !owned.contains(g.id.as_str()))
        .map(|g| format!("{} {:?}", g.id, g.name))
        .collect()
}

/// How one group compares with what it must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupVerdict {
    pub source_kind: SourceKind,
    pub source_name: String,
    pub group_id: String,
    /// Addresses the rule selects.
    pub expected: usize,
    /// Active receivers in the group.
    pub active: usize,
    /// Selected, but the group holds an opted-out receiver with the address.
    pub excused_opted_out: usize,
    /// Selected, but the person (CRM record) has an opted-out receiver in the group.
    pub excused_person_opted_out: usize,
    /// Active receivers whose (account-wide) attributes are those of another CRM record with
    /// the address, not of an eligible member of this group (see the module comment).
    pub data_from_other_group: usize,
    /// Everything that is wrong, one line each.
    pub problems: Vec<String>,
}

fn attribute<'a>(receiver: &'a SimReceiver, name: &str) -> &'a str {
    receiver
        .global_attributes
        .get(name)
        .map(String::as_str)
        .unwrap_or_default()
        .trim()
}

/// Whether a receiver's account-wide data (global attributes: names, CRM record) are exactly
/// one eligible record's.
fn carries(receiver: &SimReceiver, record: &ExpectedReceiver) -> bool {
    attribute(receiver, "crmentity") == record.crm_entity
        && attribute(receiver, "crmid").to_ascii_lowercase() == record.crm_id
        && attribute(receiver, "firstname") == record.first_name
        && attribute(receiver, "lastname") == record.last_name
        && attribute(receiver, "salutation") == record.salutation
}

/// The company is group-local: it must be the company of one of this group's records with
/// the address, whoever's global data the receiver carries.
fn company_in_group(receiver: &SimReceiver, records: &[ExpectedReceiver]) -> bool {
    let company = receiver
        .attributes
        .get("crm_company")
        .map(String::as_str)
        .unwrap_or_default()
        .trim();
    records.iter().any(|r| r.company == company)
}

/// Compares a group in CleverReach with what the rule says it must be: the active receivers
/// are exactly the selected addresses (less the excused ones), each with the data of one
/// eligible record with its address (of this group, or of another: see the module comment),
/// and the group has the right name.
pub fn check_group(
    expected: &ExpectedGroup,
    all: &Expectation,
    cleverreach: &CleverReachSim,
) -> GroupVerdict {
    let label = format!("{} {:?}", expected.source_kind.noun(), expected.source_name);
    let mut verdict = GroupVerdict {
        source_kind: expected.source_kind,
        source_name: expected.source_name.clone(),
        group_id: expected.group_id.clone(),
        expected: expected.receivers.len(),
        ..GroupVerdict::default()
    };
    let Some(group) = cleverreach.group(&expected.group_id) else {
        verdict.problems.push(format!(
            "{label}: its group {} does not exist",
            expected.group_id
        ));
        return verdict;
    };
    if group.name != expected.group_name {
        verdict.problems.push(format!(
            "{label}: group named {:?}, expected {:?}",
            group.name, expected.group_name
        ));
    }
    let receivers = cleverreach.receivers(&expected.group_id);
    let by_email: HashMap<String, &SimReceiver> = receivers
        .iter()
        .map(|r| (r.email.trim().to_lowercase(), r))
        .collect();
    let opted_out_people: BTreeSet<(String, String)> = receivers
        .iter()
        .filter(|r| !r.active)
        .map(|r| {
            (
                attribute(r, "crmentity").to_string(),
                attribute(r, "crmid").to_ascii_lowercase(),
            )
        })
        .collect();
    for receiver in receivers.iter().filter(|r| r.active) {
        verdict.active += 1;
        let email = receiver.email.trim().to_lowercase();
        match expected.receivers.get(&email) {
            None => verdict.problems.push(format!(
                "{label}: {email} is active but the rule does not select it ({})",
                match expected.left_out.get(&email) {
                    Some(why) => why.join("; "),
                    None => format!(
                        "no member of the {} has the address",
                        expected.source_kind.noun()
                    ),
                }
            )),
            Some(records) if !company_in_group(receiver, records) => {
                verdict.problems.push(format!(
                    "{label}: {email} carries the company {:?} in this group, expected one of {:?}",
                    receiver.attributes.get("crm_company"),
                    records.iter().map(|r| &r.company).collect::<Vec<_>>()
                ));
            }
            Some(records) if records.iter().any(|r| carries(receiver, r)) => {}
            Some(records) => {
                let elsewhere = all.account_wide.get(&email).into_iter().flatten();
                if elsewhere.clone().any(|r| carries(receiver, r)) {
                    verdict.data_from_other_group += 1;
                } else {
                    verdict.problems.push(format!(
                        "{label}: {email} carries {:?}, expected the data of one of {:?}",
                        receiver.global_attributes, records
                    ));
                }
            }
        }
    }
    for (email, records) in &expected.receivers {
        match by_email.get(email) {
            Some(r) if r.active => {}
            Some(_) => verdict.excused_opted_out += 1,
            None if records.iter().any(|r| {
                opted_out_people.contains(&(r.crm_entity.to_string(), r.crm_id.clone()))
            }) =>
            {
                verdict.excused_person_opted_out += 1
            }
            None => verdict.problems.push(format!(
                "{label}: {email} is selected by the rule ({} {}) but not in the group",
                records[0].crm_entity, records[0].crm_id
            )),
        }
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_trimmed_lower_cased_and_checked() {
        assert_eq!(
            normalised_email("  Anna.Berlin@Example.COM "),
            Some("anna.berlin@example.com".to_string())
        );
        for broken in [
            "",
            "anna",
            "anna@example",
            "@example.com",
            "an..na@x.de",
            "a@x.1",
        ] {
            assert_eq!(normalised_email(broken), None, "{broken:?}");
        }
    }

    #[test]
    fn only_state_one_of_a_known_type_is_a_tick() {
        let checklist = r#"[{"id":0,"state":1},{"id":1,"state":2},{"id":7,"state":1}]"#;
        assert_eq!(ticked_types(checklist), BTreeSet::from([0]));
        assert!(ticked_types("not json").is_empty());
    }

    #[test]
    fn a_single_like_condition_is_understood_and_anything_else_is_not() {
        let query = r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="emailaddress1" operator="like" value="%Berlin%"/></filter></entity></fetch>"#;
        assert_eq!(like_pattern(query, "contact"), Some("berlin".to_string()));
        assert_eq!(like_pattern(query, "lead"), None);
        let two = query.replace(
            "</filter>",
            r#"<condition attribute="statecode" operator="eq" value="0"/></filter>"#,
        );
        assert_eq!(like_pattern(&two, "contact"), None);
    }

    // ── campaigns and campaign activities (rule 6) ──────────────────────────────────────

    use crate::harness::checklist;
    use serde_json::json;

    const CAMPAIGN: &str = "c0000000-0000-4000-8000-000000000001";
    const ACTIVITY: &str = "a0000000-0000-4000-8000-000000000001";
    const CONTACTS: &str = "10000000-0000-4000-8000-000000000001";
    const CLOSED_LIST: &str = "10000000-0000-4000-8000-000000000002";
    const LEADS: &str = "10000000-0000-4000-8000-000000000003";

    fn row(value: Value) -> Row {
        match value {
            Value::Object(map) => map,
            _ => Row::new(),
        }
    }

    fn contact(n: u8, email: &str, ticks: &[(i64, i64)]) -> Value {
        json!({ "contactid": format!("00000000-0000-4000-8000-0000000000{n:02}"),
                "firstname": email, "emailaddress1": email, "crc_checklist": checklist(ticks),
                "statecode": 0 })
    }

    fn contact_id(n: u8) -> String {
        format!("00000000-0000-4000-8000-0000000000{n:02}")
    }

    fn lead(n: u8, email: &str, campaign: Option<&str>, activity: Option<&str>) -> Value {
        let mut lead = json!({ "leadid": format!("00000000-0000-4000-8000-0000000001{n:02}"),
                               "firstname": email, "emailaddress1": email,
                               "crc_checklist": checklist(&[(0, 1)]), "statecode": 0 });
        if let Some(c) = campaign {
            lead["_campaignid_value"] = json!(c);
        }
        if let Some(a) = activity {
            lead["_crc_campaignactivityid_value"] = json!(a);
        }
        lead
    }

    fn lead_id(n: u8) -> String {
        format!("00000000-0000-4000-8000-0000000001{n:02}")
    }

    /// A campaign and an activity, each sending type 0 and synced to a group, with two
    /// contact lists (one inactive) and a lead list to link, and people of every kind.
    fn crm(extra: &[(&str, Value)]) -> BTreeMap<String, Vec<Row>> {
        let mut tables: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        let mut add =
            |set: &str, value: Value| tables.entry(set.to_string()).or_default().push(row(value));
        add("contacts", contact(1, "anna@example.com", &[(0, 1)]));
        add("contacts", contact(2, "bert@example.com", &[(0, 1)]));
        add("contacts", contact(3, "carl@example.com", &[(1, 1)]));
        add("leads", lead(1, "lena@example.com", Some(CAMPAIGN), None));
        add("leads", lead(2, "lisa@example.com", None, Some(ACTIVITY)));
        add("leads", lead(3, "lars@example.com", None, None));
        add("leads", lead(4, "lina@example.com", None, None));
        for (list, code, state) in [(CONTACTS, 2, 0), (CLOSED_LIST, 2, 1), (LEADS, 4, 0)] {
            add(
                "lists",
                json!({ "listid": list, "listname": list, "createdfromcode": code,
                        "type": false, "statecode": state }),
            );
        }
        for (list, member) in [
            (CONTACTS, contact_id(1)),
            (CONTACTS, contact_id(3)),
            (CLOSED_LIST, contact_id(2)),
            (LEADS, lead_id(4)),
        ] {
            add(
                "listmembers",
                json!({ "_listid_value": list, "_entityid_value": member }),
            );
        }
        let synced = |key: &str, id: &str, name_column: &str, name: &str, group: &str| {
            json!({ key: id, name_column: name, "crc_syncwithcleverreach": true,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_groupid": group,
                    "statecode": 0 })
        };
        add(
            "campaigns",
            synced("campaignid", CAMPAIGN, "name", "Spring", "11"),
        );
        add(
            "campaignactivities",
            synced("activityid", ACTIVITY, "subject", "Mailing", "21"),
        );
        for list in [CONTACTS, CLOSED_LIST] {
            add(
                "campaignitems",
                json!({ "_campaignid_value": CAMPAIGN, "entityid": list, "entitytype": "list" }),
            );
        }
        add(
            "campaignactivityitems",
            json!({ "_campaignactivityid_value": ACTIVITY, "itemid": LEADS,
                    "itemobjecttypecode": "list" }),
        );
        for (set, value) in extra {
            add(set, value.clone());
        }
        tables
    }

    fn expect(tables: &BTreeMap<String, Vec<Row>>) -> Expectation {
        expectation(&|set: &str| tables.get(set).cloned().unwrap_or_default()).unwrap()
    }

    fn group_of(all: &Expectation, kind: SourceKind) -> &ExpectedGroup {
        all.groups
            .iter()
            .find(|g| g.source_kind == kind)
            .unwrap_or_else(|| panic!("a {kind:?} group in {all:?}"))
    }

    fn addresses(group: &ExpectedGroup) -> Vec<&str> {
        group.receivers.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_campaigns_group_holds_the_members_of_its_active_linked_lists_and_its_linked_leads() {
        let all = expect(&crm(&[]));
        let campaign = group_of(&all, SourceKind::Campaign);
        // anna through the contact list, lena as a linked lead; carl does not tick type 0,
        // bert is only in an inactive list, lisa and lina belong to the activity.
        assert_eq!(
            addresses(campaign),
            ["anna@example.com", "lena@example.com"]
        );
        assert!(campaign.left_out.contains_key("carl@example.com"));
        assert_eq!(campaign.group_name, "Spring");
        assert_eq!(campaign.group_id, "11");
        assert_eq!(campaign.receivers["lena@example.com"][0].crm_entity, "lead");
    }

    #[test]
    fn an_activitys_group_holds_the_members_of_its_linked_lists_and_the_leads_pointing_at_it() {
        let all = expect(&crm(&[]));
        let activity = group_of(&all, SourceKind::CampaignActivity);
        assert_eq!(
            addresses(activity),
            ["lina@example.com", "lisa@example.com"]
        );
        assert_eq!(activity.group_name, "Mailing");
    }

    /// Sets a column on one row of a table.
    fn set(
        tables: &mut BTreeMap<String, Vec<Row>>,
        table: &str,
        key: &str,
        row_id: &str,
        column: &str,
        value: Value,
    ) {
        for row in tables.get_mut(table).into_iter().flatten() {
            if id(row, key) == row_id {
                row.insert(column.to_string(), value.clone());
            }
        }
    }

    #[test]
    fn a_campaign_group_is_named_with_the_prefix_and_a_lead_both_linked_and_listed_counts_once() {
        let mut tables = crm(&[(
            "crc_settings",
            json!({ "crc_key": "cleverreach:groupsettings:groupprefix", "crc_value": "CRM - " }),
        )]);
        // lina is in the activity's lead list and points at the activity herself.
        let lina = lead_id(4);
        set(
            &mut tables,
            "leads",
            "leadid",
            &lina,
            "_crc_campaignactivityid_value",
            json!(ACTIVITY),
        );
        let all = expect(&tables);
        let activity = group_of(&all, SourceKind::CampaignActivity);
        assert_eq!(activity.group_name, "CRM - Mailing");
        assert_eq!(activity.receivers["lina@example.com"].len(), 1);
    }

    #[test]
    fn sources_with_sync_off_or_inactive_have_no_group_and_synced_ones_without_a_group_are_owed_one()
     {
        let other = "c0000000-0000-4000-8000-000000000002";
        let closed = "a0000000-0000-4000-8000-000000000002";
        let fresh = "c0000000-0000-4000-8000-000000000003";
        let all = expect(&crm(&[
            (
                "campaigns",
                json!({ "campaignid": other, "name": "Off", "crc_syncwithcleverreach": false,
                        "crc_groupid": "12", "crc_checklist": checklist(&[(0, 1)]) }),
            ),
            (
                "campaignactivities",
                json!({ "activityid": closed, "subject": "Closed", "statecode": 1,
                        "crc_syncwithcleverreach": true, "crc_groupid": "22" }),
            ),
            (
                "campaigns",
                json!({ "campaignid": fresh, "name": "New", "crc_syncwithcleverreach": true }),
            ),
        ]));
        let ids: Vec<(&str, SourceKind)> = all
            .groups
            .iter()
            .map(|g| (g.group_id.as_str(), g.source_kind))
            .collect();
        assert_eq!(
            ids,
            [
                ("11", SourceKind::Campaign),
                ("21", SourceKind::CampaignActivity)
            ]
        );
        assert_eq!(all.without_group, [format!("campaign {fresh}")]);
    }

    #[test]
    fn do_not_bulk_email_on_a_linked_lead_keeps_its_address_out_of_the_campaign() {
        let mut tables = crm(&[]);
        let lena = lead_id(1);
        set(
            &mut tables,
            "leads",
            "leadid",
            &lena,
            "donotbulkemail",
            json!(true),
        );
        let all = expect(&tables);
        let campaign = group_of(&all, SourceKind::Campaign);
        assert_eq!(addresses(campaign), ["anna@example.com"]);
        assert!(campaign.opted_out.contains("lena@example.com"));
    }
}
