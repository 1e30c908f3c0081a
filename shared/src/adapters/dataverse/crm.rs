//! Adapter: the CRM as the connector sees it — settings, sources, their members as recipients,
//! and the status written back to sources — on top of the Dataverse Web API client.
//!
//! Rows are translated into domain types here and nowhere else. Members are read page by page
//! (5000 rows a request) so that memory stays flat whatever the list size.

use super::client::{DataverseClient, DataverseError, FetchPages, Pages, Query, filter};
use super::schema;
use crate::domain::checklist::Checklist;
use crate::domain::recipient::{CrmRef, PersonEntity, Recipient, RecipientKind};
use crate::domain::settings::{LoadedSettings, Settings, SettingsError};
use crate::domain::source::{GroupId, Source, SourceKind};
use crate::error::Retryable;
use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};

/// Why the CRM could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error(transparent)]
    Api(#[from] DataverseError),
    #[error("the settings table is not valid: {0}")]
    Settings(#[from] SettingsError),
    #[error("{what} is not valid: {problem}")]
    Invalid { what: String, problem: String },
}

impl Retryable for CrmError {
    fn is_retryable(&self) -> bool {
        match self {
            CrmError::Api(e) => e.is_retryable(),
            _ => false,
        }
    }
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            CrmError::Api(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// How a marketing list selects its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListShape {
    /// `type` true: members come from the FetchXML `query`.
    pub dynamic: bool,
    /// `createdfromcode`: which table the members are.
    pub member_kind: RecipientKind,
    pub query: Option<String>,
}

/// A source as read from the CRM.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRecord {
    pub source: Source,
    /// Marketing lists only.
    pub list: Option<ListShape>,
    /// The source's checklist could not be read (the source then has an empty checklist).
    pub checklist_problem: Option<String>,
    /// `crc_resync` is on.
    pub resync_requested: bool,
}

/// Ids per FetchXML `in` condition: each id takes about 70 characters of the percent-encoded
/// URL, and a GET inside `$batch` may be at most 64 KB long (ref §4.3), so 5000 ids would be
/// refused; 400 keep it under 32 KB.
const IDS_PER_FETCH: usize = 400;

/// The CRM through the Web API.
#[derive(Clone)]
pub struct DataverseCrm {
    client: DataverseClient,
}

fn text(row: &Value, column: &str) -> Option<String> {
    row.get(column)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn flag(row: &Value, column: &str) -> bool {
    row.get(column).and_then(Value::as_bool).unwrap_or(false)
}

fn state_active(row: &Value) -> bool {
    row.get(schema::STATECODE).and_then(Value::as_i64) == Some(0)
}

fn id(row: &Value, column: &str) -> Option<String> {
    text(row, column).map(|s| s.to_ascii_lowercase())
}

/// Checklist of a person; a broken one counts as "no choice" (the person is then not sent to
/// CleverReach) and is logged with the record id only.
fn person_checklist(row: &Value, entity: &str, record: &str) -> Checklist {
    match Checklist::parse(
        row.get(schema::CHECKLIST)
            .and_then(Value::as_str)
            .unwrap_or(""),
    ) {
        Ok(checklist) => checklist,
        Err(e) => {
            tracing::warn!(entity, record_id = record, error = %e, "unreadable checklist, treated as no choice");
            Checklist::default()
        }
    }
}

/// A contact row (with lookup annotations) as a recipient in its own right.
pub fn contact_recipient(row: &Value) -> Option<Recipient> {
    let contact_id = id(row, "contactid")?;
    let parent_is_account = row
        .get("_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname")
        .and_then(Value::as_str)
        == Some("account");
    let company = if parent_is_account {
        text(
            row,
            "_parentcustomerid_value@OData.Community.Display.V1.FormattedValue",
        )
    } else {
        None
    };
    Some(Recipient {
        kind: RecipientKind::Contact,
        checklist: person_checklist(row, "contact", &contact_id),
        person: CrmRef::new(PersonEntity::Contact, &contact_id),
        active: state_active(row),
        email: text(row, "emailaddress1"),
        do_not_bulk_email: flag(row, "donotbulkemail"),
        salutation: text(row, "salutation"),
        first_name: text(row, "firstname"),
        last_name: text(row, "lastname"),
        company,
    })
}

/// A lead row as a recipient.
pub fn lead_recipient(row: &Value) -> Option<Recipient> {
    let lead_id = id(row, "leadid")?;
    Some(Recipient {
        kind: RecipientKind::Lead,
        checklist: person_checklist(row, "lead", &lead_id),
        person: CrmRef::new(PersonEntity::Lead, &lead_id),
        active: state_active(row),
        email: text(row, "emailaddress1"),
        do_not_bulk_email: flag(row, "donotbulkemail"),
        salutation: text(row, "salutation"),
        first_name: text(row, "firstname"),
        last_name: text(row, "lastname"),
        company: text(row, "companyname"),
    })
}

/// An account row and its primary contact's row as a recipient: the person is the primary
/// contact; both must be active; "do not bulk e-mail" on either keeps them out.
pub fn account_recipient(account: &Value, primary_contact: Option<&Value>) -> Option<Recipient> {
    id(account, "accountid")?;
    let contact = primary_contact?;
    let contact_id = id(contact, "contactid")?;
    Some(Recipient {
        kind: RecipientKind::Account,
        checklist: person_checklist(contact, "contact", &contact_id),
        person: CrmRef::new(PersonEntity::Contact, &contact_id),
        active: state_active(account) && state_active(contact),
        email: text(contact, "emailaddress1"),
        do_not_bulk_email: flag(account, "donotbulkemail") || flag(contact, "donotbulkemail"),
        salutation: text(contact, "salutation"),
        first_name: text(contact, "firstname"),
        last_name: text(contact, "lastname"),
        company: text(account, "name"),
    })
}

fn member_kind_from_code(code: i64) -> Option<RecipientKind> {
    match code {
        1 => Some(RecipientKind::Account),
        2 => Some(RecipientKind::Contact),
        4 => Some(RecipientKind::Lead),
        _ => None,
    }
}

fn list_shape(row: &Value) -> Result<ListShape, String> {
    let code = row
        .get("createdfromcode")
        .and_then(Value::as_i64)
        .ok_or("the list has no member type (createdfromcode)")?;
    let member_kind =
        member_kind_from_code(code).ok_or(format!("member type {code} is not 1, 2 or 4"))?;
    Ok(ListShape {
        dynamic: flag(row, "type"),
        member_kind,
        query: text(row, "query"),
    })
}

impl DataverseCrm {
    pub fn new(client: DataverseClient) -> Self {
        DataverseCrm { client }
    }

    pub fn client(&self) -> &DataverseClient {
        &self.client
    }

    /// Reads the settings table (DESIGN §6); an invalid setting is an error naming the key.
    pub async fn load_settings(&self) -> Result<LoadedSettings, CrmError> {
        let mut pages = self.client.query::<Value>(
            schema::SETTINGS_SET,
            &Query::new().select([schema::SETTING_KEY, schema::SETTING_VALUE]),
        );
        let mut rows = Vec::new();
        while let Some(page) = pages.next_page().await? {
            for row in page {
                if let Some(key) = row.get(schema::SETTING_KEY).and_then(Value::as_str) {
                    let value = row
                        .get(schema::SETTING_VALUE)
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    rows.push((key.to_string(), value.to_string()));
                }
            }
        }
        Ok(Settings::from_rows(
            rows.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?)
    }

    /// One source, or `None` when it no longer exists.
    pub async fn source(
        &self,
        kind: SourceKind,
        id: &str,
    ) -> Result<Option<SourceRecord>, CrmError> {
        let mut select = vec![
            kind.primary_key(),
            kind.name_attribute(),
            schema::STATECODE,
            schema::SYNC_FLAG,
            schema::CHECKLIST,
            schema::GROUP_ID,
            schema::RESYNC,
        ];
        match kind {
            SourceKind::MarketingList => select.extend(["type", "createdfromcode", "query"]),
            SourceKind::CampaignActivity => select.push("description"),
            SourceKind::Campaign => {}
        }
        let Some(row) = self
            .client
            .retrieve::<Value>(kind.entity_set(), id, &select)
            .await?
        else {
            return Ok(None);
        };
        let (checklist, checklist_problem) = match Checklist::parse(
            row.get(schema::CHECKLIST)
                .and_then(Value::as_str)
                .unwrap_or(""),
        ) {
            Ok(c) => (c, None),
            Err(e) => (Checklist::default(), Some(e.to_string())),
        };
        let list = match kind {
            SourceKind::MarketingList => {
                Some(list_shape(&row).map_err(|problem| CrmError::Invalid {
                    what: format!("marketing list {id}"),
                    problem,
                })?)
            }
            _ => None,
        };
        let source = Source {
            kind,
            id: id.to_ascii_lowercase(),
            name: text(&row, kind.name_attribute()).unwrap_or_default(),
            checklist,
            sync_enabled: flag(&row, schema::SYNC_FLAG),
            active: state_active(&row),
            group_id: GroupId::from_stored(row.get(schema::GROUP_ID).and_then(Value::as_str)),
            description: text(&row, "description"),
        };
        Ok(Some(SourceRecord {
            source,
            list,
            checklist_problem,
            resync_requested: flag(&row, schema::RESYNC),
        }))
    }

    /// The members of a source as recipients, page by page (DESIGN §2 rule 6).
    pub fn members(&self, source: &SourceRecord) -> MemberStream<'_> {
        let mut segments = VecDeque::new();
        let mut linked_lists = None;
        match source.source.kind {
            SourceKind::MarketingList => {
                if let Some(shape) = &source.list {
                    segments.push_back(Segment::List {
                        id: source.source.id.clone(),
                        shape: shape.clone(),
                    });
                }
            }
            SourceKind::Campaign => {
                linked_lists = Some(("campaigns", "campaignlist_association"));
                segments.push_back(Segment::LinkedLeads {
                    lookup: schema::LEAD_CAMPAIGN,
                    id: source.source.id.clone(),
                });
            }
            SourceKind::CampaignActivity => {
                linked_lists = Some(("campaignactivities", "campaignactivitylist_association"));
                segments.push_back(Segment::LinkedLeads {
                    lookup: schema::LEAD_CAMPAIGN_ACTIVITY,
                    id: source.source.id.clone(),
                });
            }
        }
        MemberStream {
            crm: self,
            source_id: source.source.id.clone(),
            linked_lists,
            segments,
            current: None,
            requests: 0,
        }
    }

    /// One recipient read on its own (for scoped reconciles), or `None` when the record is gone.
    pub async fn recipient(
        &self,
        kind: RecipientKind,
        id: &str,
    ) -> Result<Option<Recipient>, CrmError> {
        let id = filter::guid(id)?;
        match kind {
            RecipientKind::Contact => {
                let rows = self.contacts_by_id(std::slice::from_ref(&id)).await?;
                Ok(rows.get(&id).and_then(contact_recipient))
            }
            RecipientKind::Lead => {
                let row = self
                    .client
                    .retrieve::<Value>("leads", &id, &schema::LEAD_COLUMNS)
                    .await?;
                Ok(row.as_ref().and_then(lead_recipient))
            }
            RecipientKind::Account => {
                let Some(account) = self
                    .client
                    .retrieve::<Value>("accounts", &id, &schema::ACCOUNT_COLUMNS)
                    .await?
                else {
                    return Ok(None);
                };
                let contacts = match id_of(&account, "_primarycontactid_value") {
                    Some(pc) => self.contacts_by_id(&[pc]).await?,
                    None => HashMap::new(),
                };
                let pc = id_of(&account, "_primarycontactid_value");
                Ok(account_recipient(
                    &account,
                    pc.as_ref().and_then(|pc| contacts.get(pc)),
                ))
            }
        }
    }

    /// Contacts by id (with the parent account's name), one request per 400 ids.
    pub async fn contacts_by_id(&self, ids: &[String]) -> Result<HashMap<String, Value>, CrmError> {
        let mut found = HashMap::new();
        for chunk in ids.chunks(IDS_PER_FETCH) {
            let mut values = String::new();
            for id in chunk {
                // Validated GUIDs only: nothing from data is pasted into the XML unchecked.
                let id = filter::guid(id)?;
                values.push_str(&format!("<value>{id}</value>"));
            }
            let attributes: String = schema::fetch_attributes(&schema::CONTACT_COLUMNS)
                .iter()
                .map(|a| format!("<attribute name=\"{a}\"/>"))
                .collect();
            let fetch = format!(
                "<fetch><entity name=\"contact\">{attributes}<order attribute=\"contactid\"/>\
                 <filter><condition attribute=\"contactid\" operator=\"in\">{values}</condition></filter>\
                 </entity></fetch>"
            );
            let mut pages: FetchPages<Value> = self.client.fetch_xml("contacts", &fetch);
            while let Some(page) = pages.next_page().await? {
                for row in page {
                    if let Some(id) = id(&row, "contactid") {
                        found.insert(id, row);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Reads every row of a query (for small result sets: memberships of one record, sources
    /// of one group).
    async fn all_rows(&self, entity_set: &str, query: &Query) -> Result<Vec<Value>, CrmError> {
        let mut pages = self.client.query::<Value>(entity_set, query);
        let mut rows = Vec::new();
        while let Some(page) = pages.next_page().await? {
            rows.extend(page);
        }
        Ok(rows)
    }

    /// The ids (`key`) of the rows of `entity_set` whose `column` holds this GUID.
    async fn ids_where(
        &self,
        entity_set: &str,
        column: &str,
        guid: &str,
        key: &str,
    ) -> Result<Vec<String>, CrmError> {
        let filter = format!("{column} eq {}", filter::guid_literal(guid)?);
        let rows = self
            .all_rows(entity_set, &Query::new().select([key]).filter(filter))
            .await?;
        Ok(rows.iter().filter_map(|r| id(r, key)).collect())
    }

    /// Contacts and leads whose e-mail is this address. Dataverse compares case-insensitively
    /// but does not trim, so the search is `contains` and the exact match (trimmed, any case) is
    /// made here: an address stored with blanks around it is found too.
    pub async fn people_with_email(
        &self,
        email: &str,
    ) -> Result<Vec<(RecipientKind, String)>, CrmError> {
        let wanted = email.trim().to_lowercase();
        let filter = format!(
            "contains(emailaddress1,{})",
            filter::string_literal(&wanted)
        );
        let mut found = Vec::new();
        for (kind, set, key) in [
            (RecipientKind::Contact, "contacts", "contactid"),
            (RecipientKind::Lead, "leads", "leadid"),
        ] {
            let rows = self
                .all_rows(
                    set,
                    &Query::new()
                        .select([key, "emailaddress1"])
                        .filter(filter.clone()),
                )
                .await?;
            found.extend(
                rows.iter()
                    .filter(|r| {
                        text(r, "emailaddress1").is_some_and(|e| e.to_lowercase() == wanted)
                    })
                    .filter_map(|r| id(r, key))
                    .map(|i| (kind, i)),
            );
        }
        Ok(found)
    }

    /// Accounts whose primary contact is this contact.
    pub async fn accounts_of_primary_contact(
        &self,
        contact_id: &str,
    ) -> Result<Vec<String>, CrmError> {
        self.ids_where(
            "accounts",
            "_primarycontactid_value",
            contact_id,
            "accountid",
        )
        .await
    }

    /// Contacts whose parent customer is this account (their company name is the account's).
    pub async fn contacts_of_account(&self, account_id: &str) -> Result<Vec<String>, CrmError> {
        self.ids_where(
            "contacts",
            "_parentcustomerid_value",
            account_id,
            "contactid",
        )
        .await
    }

    /// The static marketing lists a record is a member of.
    pub async fn static_lists_of(&self, record_id: &str) -> Result<Vec<String>, CrmError> {
        self.ids_where("listmembers", "_entityid_value", record_id, "_listid_value")
            .await
    }

    /// The active dynamic marketing lists whose members the connector may need: those with sync
    /// on, and those linked to a campaign or campaign activity with sync on.
    pub async fn dynamic_lists_in_use(&self) -> Result<Vec<(String, ListShape)>, CrmError> {
        let columns = [
            "listid",
            "type",
            "createdfromcode",
            "query",
            schema::STATECODE,
        ];
        let mut lists: Vec<Value> = self
            .all_rows(
                "lists",
                &Query::new().select(columns).filter(format!(
                    "type eq true and statecode eq 0 and {} eq true",
                    schema::SYNC_FLAG
                )),
            )
            .await?;
        for (set, navigation) in [
            ("campaigns", "campaignlist_association"),
            ("campaignactivities", "campaignactivitylist_association"),
        ] {
            let synced = self
                .all_rows(
                    set,
                    &Query::new()
                        .select([SourceKind::from_entity_set(set).map_or("", |k| k.primary_key())])
                        .filter(format!("statecode eq 0 and {} eq true", schema::SYNC_FLAG)),
                )
                .await?;
            for row in synced {
                let key = SourceKind::from_entity_set(set).map_or("", |k| k.primary_key());
                let Some(source_id) = id(&row, key) else {
                    continue;
                };
                let mut pages = self.client.related::<Value>(
                    set,
                    &source_id,
                    navigation,
                    &Query::new().select(columns),
                );
                while let Some(page) = pages.next_page().await? {
                    lists.extend(
                        page.into_iter()
                            .filter(|l| flag(l, "type") && state_active(l)),
                    );
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        Ok(lists
            .iter()
            .filter_map(|row| {
                let list_id = id(row, "listid")?;
                let shape = list_shape(row).ok()?;
                seen.insert(list_id.clone()).then_some((list_id, shape))
            })
            .collect())
    }

    /// Whether a dynamic list's query selects this record.
    pub async fn dynamic_list_contains(
        &self,
        shape: &ListShape,
        record_id: &str,
    ) -> Result<bool, CrmError> {
        let Some(query) = &shape.query else {
            return Ok(false);
        };
        Ok(self
            .client
            .dynamic_list_contains(query, shape.member_kind, record_id)
            .await?)
    }

    /// Campaigns and campaign activities that a marketing list is linked to.
    pub async fn sources_linking_list(
        &self,
        list_id: &str,
    ) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let mut found = Vec::new();
        for (kind, set, column, key) in [
            (
                SourceKind::Campaign,
                "campaignitems",
                "entityid",
                "_campaignid_value",
            ),
            (
                SourceKind::CampaignActivity,
                "campaignactivityitems",
                "itemid",
                "_campaignactivityid_value",
            ),
        ] {
            let ids = self.ids_where(set, column, list_id, key).await?;
            found.extend(ids.into_iter().map(|i| (kind, i)));
        }
        Ok(found)
    }

    /// The campaign and campaign activity a lead is linked to.
    pub async fn lead_links(&self, lead_id: &str) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let lookups = [
            (SourceKind::Campaign, schema::LEAD_CAMPAIGN),
            (SourceKind::CampaignActivity, schema::LEAD_CAMPAIGN_ACTIVITY),
        ];
        let columns: Vec<String> = lookups.iter().map(|(_, l)| format!("_{l}_value")).collect();
        let Some(row) = self
            .client
            .retrieve::<Value>(
                "leads",
                lead_id,
                &columns.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .await?
        else {
            return Ok(Vec::new());
        };
        Ok(lookups
            .iter()
            .zip(&columns)
            .filter_map(|((kind, _), column)| id(&row, column).map(|i| (*kind, i)))
            .collect())
    }

    /// The sources whose stored group id is this group.
    pub async fn sources_with_group(
        &self,
        group_id: &str,
    ) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let mut found = Vec::new();
        for kind in SourceKind::ALL {
            let rows = self
                .all_rows(
                    kind.entity_set(),
                    &Query::new().select([kind.primary_key()]).filter(format!(
                        "{} eq {}",
                        schema::GROUP_ID,
                        filter::string_literal(group_id)
                    )),
                )
                .await?;
            found.extend(
                rows.iter()
                    .filter_map(|r| id(r, kind.primary_key()))
                    .map(|i| (kind, i)),
            );
        }
        Ok(found)
    }

    /// Updates columns of a source (status, group id, flags).
    pub async fn update_source(
        &self,
        kind: SourceKind,
        id: &str,
        columns: Map<String, Value>,
    ) -> Result<(), CrmError> {
        self.client
            .update(kind.entity_set(), id, &Value::Object(columns))
            .await?;
        Ok(())
    }

    /// The ids of every source of this kind whose sync flag is on ("resync every source"),
    /// inactive ones included: the worker turns their flag off, as a missed deactivation event
    /// would have.
    pub async fn synced_sources(&self, kind: SourceKind) -> Result<Vec<String>, CrmError> {
        let mut pages = self.client.query::<Value>(
            kind.entity_set(),
            &Query::new()
                .select([kind.primary_key()])
                .filter(format!("{} eq true", schema::SYNC_FLAG)),
        );
        let mut ids = Vec::new();
        while let Some(page) = pages.next_page().await? {
            ids.extend(page.iter().filter_map(|r| id(r, kind.primary_key())));
        }
        Ok(ids)
    }

    /// Stores the group id on the source (or clears it).
    pub async fn record_group(
        &self,
        kind: SourceKind,
        id: &str,
        group: Option<&GroupId>,
    ) -> Result<(), CrmError> {
        let mut columns = Map::new();
        columns.insert(
            schema::GROUP_ID.into(),
            group.map_or(Value::Null, |g| json!(g.as_str())),
        );
        self.update_source(kind, id, columns).await
    }
}

fn id_of(row: &Value, column: &str) -> Option<String> {
    id(row, column)
}

enum Segment {
    List { id: String, shape: ListShape },
    LinkedLeads { lookup: &'static str, id: String },
}

enum Cursor {
    Odata(Pages<Value>, RecipientKind),
    Fetch(FetchPages<Value>, RecipientKind),
}

/// The members of a source, page by page. A failed page can be asked for again.
pub struct MemberStream<'a> {
    crm: &'a DataverseCrm,
    source_id: String,
    /// Campaign or activity: the lists linked to it are read first, then their members.
    linked_lists: Option<(&'static str, &'static str)>,
    segments: VecDeque<Segment>,
    current: Option<Cursor>,
    requests: u32,
}

impl MemberStream<'_> {
    /// Dataverse requests made so far (pages of members, linked lists, primary contacts).
    pub fn requests(&self) -> u32 {
        self.requests
    }

    async fn read_linked_lists(
        &mut self,
        entity_set: &str,
        navigation: &str,
    ) -> Result<(), CrmError> {
        let query = Query::new().select([
            "listid",
            "type",
            "createdfromcode",
            "query",
            schema::STATECODE,
        ]);
        let mut pages =
            self.crm
                .client
                .related::<Value>(entity_set, &self.source_id, navigation, &query);
        while let Some(page) = pages.next_page().await? {
            self.requests += 1;
            for row in page {
                let Some(list_id) = id(&row, "listid") else {
                    continue;
                };
                // An inactive list no longer feeds its campaigns.
                if !state_active(&row) {
                    continue;
                }
                match list_shape(&row) {
                    Ok(shape) => self
                        .segments
                        .push_front(Segment::List { id: list_id, shape }),
                    Err(problem) => {
                        tracing::warn!(list_id, problem, "linked list skipped");
                    }
                }
            }
        }
        Ok(())
    }

    fn open(&self, segment: Segment) -> Cursor {
        let client = &self.crm.client;
        match segment {
            Segment::List { id, shape } => {
                let (columns, annotated): (&[&'static str], bool) = match shape.member_kind {
                    RecipientKind::Contact => (&schema::CONTACT_COLUMNS, true),
                    RecipientKind::Lead => (&schema::LEAD_COLUMNS, false),
                    RecipientKind::Account => (&schema::ACCOUNT_COLUMNS, false),
                };
                if shape.dynamic {
                    let query = shape.query.unwrap_or_default();
                    Cursor::Fetch(
                        client.dynamic_list_members(
                            &query,
                            shape.member_kind,
                            &schema::fetch_attributes(columns),
                        ),
                        shape.member_kind,
                    )
                } else {
                    let mut query = Query::new().select(columns.iter().copied());
                    if annotated {
                        query = query.annotations(schema::LOOKUP_ANNOTATIONS);
                    }
                    Cursor::Odata(
                        client.static_list_members(&id, shape.member_kind, &query),
                        shape.member_kind,
                    )
                }
            }
            Segment::LinkedLeads { lookup, id } => {
                let filter = match filter::guid_literal(&id) {
                    Ok(literal) => format!("_{lookup}_value eq {literal}"),
                    Err(_) => "false".to_string(),
                };
                Cursor::Odata(
                    client.query(
                        "leads",
                        &Query::new().select(schema::LEAD_COLUMNS).filter(filter),
                    ),
                    RecipientKind::Lead,
                )
            }
        }
    }

    /// The next page of recipients; `None` when every member was read.
    pub async fn next_page(&mut self) -> Result<Option<Vec<Recipient>>, CrmError> {
        if let Some((set, navigation)) = self.linked_lists {
            self.read_linked_lists(set, navigation).await?;
            self.linked_lists = None;
        }
        loop {
            if self.current.is_none() {
                let Some(segment) = self.segments.pop_front() else {
                    return Ok(None);
                };
                self.current = Some(self.open(segment));
            }
            let page = match self.current.as_mut() {
                Some(Cursor::Odata(pages, kind)) => pages.next_page().await?.map(|p| (p, *kind)),
                Some(Cursor::Fetch(pages, kind)) => pages.next_page().await?.map(|p| (p, *kind)),
                None => None,
            };
            let Some((rows, kind)) = page else {
                self.current = None;
                continue;
            };
            self.requests += 1;
            return Ok(Some(self.recipients(rows, kind).await?));
        }
    }

    async fn recipients(
        &mut self,
        rows: Vec<Value>,
        kind: RecipientKind,
    ) -> Result<Vec<Recipient>, CrmError> {
        Ok(match kind {
            RecipientKind::Contact => rows.iter().filter_map(contact_recipient).collect(),
            RecipientKind::Lead => rows.iter().filter_map(lead_recipient).collect(),
            RecipientKind::Account => {
                let ids: Vec<String> = rows
                    .iter()
                    .filter_map(|r| id(r, "_primarycontactid_value"))
                    .collect();
                let contacts = if ids.is_empty() {
                    HashMap::new()
                } else {
                    self.requests += 1;
                    self.crm.contacts_by_id(&ids).await?
                };
                rows.iter()
                    .filter_map(|account| {
                        let pc = id(account, "_primarycontactid_value")?;
                        account_recipient(account, contacts.get(&pc))
                    })
                    .collect()
            }
        })
    }
}

/// A source that has a CleverReach group (for the scheduled back-flow jobs).
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedSource {
    pub kind: SourceKind,
    pub id: String,
    pub group_id: String,
    /// The source's checklist; `Err` holds why it could not be read.
    pub checklist: Result<Checklist, String>,
    /// Marketing lists: static or dynamic, and the member type (`query` is not read here);
    /// `None` for campaigns and activities, and for a list whose member type cannot be read.
    pub list: Option<ListShape>,
}

/// A contact or lead as the back-flow jobs read it.
#[derive(Debug, Clone, PartialEq)]
pub struct PersonRecord {
    pub person: CrmRef,
    pub email: Option<String>,
    pub statecode: Option<i64>,
    /// The checklist text as stored (parsed by the caller, which reports what is wrong).
    pub checklist: String,
}

fn person_set(entity: PersonEntity) -> (&'static str, &'static str) {
    match entity {
        PersonEntity::Contact => ("contacts", "contactid"),
        PersonEntity::Lead => ("leads", "leadid"),
    }
}

/// Back-flow (CleverReach → CRM): managed groups, people by id, receiver-state rows, leads
/// and the jobs' cursors.
impl DataverseCrm {
    /// Every source with a group id stored on it, whatever its sync flag: a group the connector
    /// made keeps sending unsubscribes back as long as it is linked.
    pub async fn managed_sources(&self) -> Result<Vec<ManagedSource>, CrmError> {
        let mut found = Vec::new();
        for kind in SourceKind::ALL {
            let mut select = vec![kind.primary_key(), schema::GROUP_ID, schema::CHECKLIST];
            if kind == SourceKind::MarketingList {
                select.extend(["type", "createdfromcode"]);
            }
            let rows = self
                .all_rows(
                    kind.entity_set(),
                    &Query::new()
                        .select(select)
                        .filter(format!("{} ne null", schema::GROUP_ID)),
                )
                .await?;
            for row in rows {
                let (Some(id), Some(group_id)) =
                    (id(&row, kind.primary_key()), text(&row, schema::GROUP_ID))
                else {
                    continue;
                };
                let checklist = Checklist::parse(
                    row.get(schema::CHECKLIST)
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                )
                .map_err(|e| e.to_string());
                let list = match kind {
                    SourceKind::MarketingList => list_shape(&row).ok(),
                    _ => None,
                };
                found.push(ManagedSource {
                    kind,
                    id,
                    group_id,
                    checklist,
                    list,
                });
            }
        }
        Ok(found)
    }

    /// One contact or lead, `None` when it does not exist.
    pub async fn person(&self, person: &CrmRef) -> Result<Option<PersonRecord>, CrmError> {
        let (set, key) = person_set(person.entity);
        let Some(row) = self
            .client
            .retrieve::<Value>(
                set,
                &filter::guid(&person.id)?,
                &[key, "emailaddress1", schema::STATECODE, schema::CHECKLIST],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(PersonRecord {
            person: person.clone(),
            email: text(&row, "emailaddress1"),
            statecode: row.get(schema::STATECODE).and_then(Value::as_i64),
            checklist: row
                .get(schema::CHECKLIST)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        }))
    }

    /// Writes a person's checklist.
    pub async fn write_checklist(
        &self,
        person: &CrmRef,
        checklist: &Checklist,
    ) -> Result<(), CrmError> {
        let (set, _) = person_set(person.entity);
        self.client
            .update(
                set,
                &person.id,
                &json!({ schema::CHECKLIST: checklist.to_json() }),
            )
            .await?;
        Ok(())
    }

    /// Deactivates a contact (inactive) or a lead (disqualified: "cannot contact").
    pub async fn deactivate_person(&self, person: &CrmRef) -> Result<(), CrmError> {
        let (set, _) = person_set(person.entity);
        let body = match person.entity {
            PersonEntity::Contact => json!({ schema::STATECODE: 1, schema::STATUSCODE: 2 }),
            PersonEntity::Lead => json!({ schema::STATECODE: 2, schema::STATUSCODE: 5 }),
        };
        self.client.update(set, &person.id, &body).await?;
        Ok(())
    }

    /// Whether the receiver-state row with this id exists.
    pub async fn receiver_state_exists(&self, id: &str) -> Result<bool, CrmError> {
        Ok(self
            .client
            .retrieve::<Value>(schema::RECEIVER_STATE_SET, id, &[schema::RECEIVER_STATE_ID])
            .await?
            .is_some())
    }

    /// Creates a receiver-state row with this id; `Ok(false)` when it already exists.
    pub async fn create_receiver_state(&self, id: &str, body: &Value) -> Result<bool, CrmError> {
        match self
            .client
            .create_with_id(schema::RECEIVER_STATE_SET, id, body)
            .await
        {
            Ok(_) => Ok(true),
            Err(DataverseError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a lead with this id; `Ok(false)` when a lead with this id already exists.
    pub async fn create_lead(&self, id: &str, body: &Value) -> Result<bool, CrmError> {
        match self.client.create_with_id("leads", id, body).await {
            Ok(_) => Ok(true),
            Err(DataverseError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds a record to a static marketing list (`AddMemberList`; a record that is a member
    /// already stays one, nothing is added twice).
    pub async fn add_list_member(&self, list_id: &str, member_id: &str) -> Result<(), CrmError> {
        let list_id = filter::guid(list_id)?;
        let member_id = filter::guid(member_id)?;
        self.client
            .execute_action(
                &format!("lists({list_id})/Microsoft.Dynamics.CRM.AddMemberList"),
                &json!({ "EntityId": member_id }),
            )
            .await?;
        Ok(())
    }

    /// Links a lead to campaigns or campaign activities through its lookups (`LEAD_CAMPAIGN`,
    /// `LEAD_CAMPAIGN_ACTIVITY`), in one update. Marketing lists in `links` are refused.
    pub async fn link_lead(
        &self,
        lead_id: &str,
        links: &[(SourceKind, String)],
    ) -> Result<(), CrmError> {
        let mut body = Map::new();
        for (kind, source_id) in links {
            let lookup = match kind {
                SourceKind::Campaign => schema::LEAD_CAMPAIGN_NAV,
                SourceKind::CampaignActivity => schema::LEAD_CAMPAIGN_ACTIVITY_NAV,
                SourceKind::MarketingList => {
                    return Err(CrmError::Invalid {
                        what: format!("the link of lead {lead_id} to marketing list {source_id}"),
                        problem: "a lead joins a list as a member, not through a lookup".into(),
                    });
                }
            };
            body.insert(
                format!("{lookup}@odata.bind"),
                json!(format!(
                    "/{}({})",
                    kind.entity_set(),
                    filter::guid(source_id)?
                )),
            );
        }
        if body.is_empty() {
            return Ok(());
        }
        self.client
            .update("leads", &filter::guid(lead_id)?, &Value::Object(body))
            .await?;
        Ok(())
    }

    /// The value of a cursor row of the settings table (`row_id` derived from its key).
    pub async fn cursor(&self, row_id: &str) -> Result<Option<String>, CrmError> {
        Ok(self
            .client
            .retrieve::<Value>(schema::SETTINGS_SET, row_id, &[schema::SETTING_VALUE])
            .await?
            .map(|row| text(&row, schema::SETTING_VALUE).unwrap_or_default()))
    }

    /// Creates or overwrites a cursor row of the settings table.
    pub async fn save_cursor(&self, row_id: &str, key: &str, value: &str) -> Result<(), CrmError> {
        self.client
            .upsert(
                schema::SETTINGS_SET,
                row_id,
                &json!({ schema::SETTING_KEY: key, schema::SETTING_VALUE: value }),
            )
            .await?;
        Ok(())
    }
}

// ----- retroactive sync (DESIGN §5) ------------------------------------------------------------

/// The retroactive-sync columns of a marketing list, with the row version they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetroactiveColumns {
    /// `crc_retroactivesync`.
    pub requested: bool,
    /// `crc_retroactivesyncjson`, as stored (may be empty).
    pub checklist_json: Option<String>,
    /// The list's own `crc_checklist`, as stored.
    pub list_checklist: Option<String>,
    /// `crc_retroactivestate`: the run's bookkeeping.
    pub state: Option<String>,
    /// `@odata.etag`: write back only if nobody wrote in between.
    pub etag: Option<String>,
}

/// One person's checklist as stored, with the row version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredChecklist {
    pub checklist: String,
    pub etag: Option<String>,
}

/// One checklist write of a mass update: only if the row is still at `etag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecklistWrite {
    pub id: String,
    pub etag: Option<String>,
    pub checklist: String,
}

fn person_table(entity: PersonEntity) -> (&'static str, &'static str, &'static str) {
    match entity {
        PersonEntity::Contact => ("contact", "contacts", "contactid"),
        PersonEntity::Lead => ("lead", "leads", "leadid"),
    }
}

impl DataverseCrm {
    /// The retroactive-sync columns of a list, or `None` when the list is gone.
    pub async fn retroactive_columns(
        &self,
        list_id: &str,
    ) -> Result<Option<RetroactiveColumns>, CrmError> {
        let row = self
            .client
            .retrieve::<Value>(
                "lists",
                list_id,
                &[
                    "listid",
                    schema::RETROACTIVE_SYNC,
                    schema::RETROACTIVE_SYNC_JSON,
                    schema::CHECKLIST,
                    schema::RETROACTIVE_STATE,
                ],
            )
            .await?;
        Ok(row.map(|row| RetroactiveColumns {
            requested: flag(&row, schema::RETROACTIVE_SYNC),
            checklist_json: text(&row, schema::RETROACTIVE_SYNC_JSON),
            list_checklist: text(&row, schema::CHECKLIST),
            state: text(&row, schema::RETROACTIVE_STATE),
            etag: text(&row, "@odata.etag"),
        }))
    }

    /// Updates columns of a list only if it is still at `etag` (`If-Match`); `Ok(false)` when
    /// someone wrote in between (412): read again and retry. Sent as a one-request `$batch`,
    /// whose parts may carry their own `If-Match`.
    pub async fn update_list_if_unchanged(
        &self,
        list_id: &str,
        etag: &str,
        columns: Map<String, Value>,
    ) -> Result<bool, CrmError> {
        let id = filter::guid(list_id)?;
        let request =
            super::client::BatchRequest::new(reqwest::Method::PATCH, format!("lists({id})"))
                .with_body(Value::Object(columns))
                .with_header("If-Match", etag);
        let results = self.client.batch(vec![request]).await?;
        match results.first() {
            Some(part) if part.is_success() => Ok(true),
            Some(part) if part.status == 412 => Ok(false),
            Some(part) => Err(part.to_error("PATCH lists").into()),
            None => Err(CrmError::Invalid {
                what: "the $batch answer".into(),
                problem: "it has no part".into(),
            }),
        }
    }

    /// The stored checklists (and row versions) of these contacts or leads, one FetchXML
    /// request per 400 ids. Ids that are not found are left out.
    pub async fn stored_checklists(
        &self,
        entity: PersonEntity,
        ids: &[String],
    ) -> Result<HashMap<String, StoredChecklist>, CrmError> {
        let (logical, set, key) = person_table(entity);
        let mut found = HashMap::new();
        for chunk in ids.chunks(IDS_PER_FETCH) {
            let mut values = String::new();
            for id in chunk {
                // Validated GUIDs only: nothing from data is pasted into the XML unchecked.
                let id = filter::guid(id)?;
                values.push_str(&format!("<value>{id}</value>"));
            }
            let fetch = format!(
                "<fetch><entity name=\"{logical}\"><attribute name=\"{key}\"/>\
                 <attribute name=\"{}\"/><order attribute=\"{key}\"/>\
                 <filter><condition attribute=\"{key}\" operator=\"in\">{values}</condition></filter>\
                 </entity></fetch>",
                schema::CHECKLIST
            );
            let mut pages: FetchPages<Value> = self.client.fetch_xml(set, &fetch);
            while let Some(page) = pages.next_page().await? {
                for row in page {
                    if let Some(id) = id(&row, key) {
                        found.insert(
                            id,
                            StoredChecklist {
                                checklist: row
                                    .get(schema::CHECKLIST)
                                    .and_then(Value::as_str)
                                    .unwrap_or("")
                                    .to_string(),
                                etag: text(&row, "@odata.etag"),
                            },
                        );
                    }
                }
            }
        }
        Ok(found)
    }

    /// Writes checklists in one `$batch` (at most 1000): each `PATCH` only if the row is still
    /// at the version read (`If-Match: <etag>`), so a batch retried after a lost answer, or a
    /// person edited meanwhile, gives 412 for that part instead of a second or blind write.
    /// One result per write, in order.
    pub async fn write_checklists(
        &self,
        entity: PersonEntity,
        writes: &[ChecklistWrite],
    ) -> Result<Vec<super::client::BatchPartResult>, CrmError> {
        let (_, set, _) = person_table(entity);
        let mut requests = Vec::with_capacity(writes.len());
        for write in writes {
            let mut request = super::client::BatchRequest::update(
                set,
                &write.id,
                json!({ schema::CHECKLIST: write.checklist }),
            )?;
            if let Some(etag) = &write.etag {
                request.headers.retain(|(name, _)| name != "If-Match");
                request = request.with_header("If-Match", etag.clone());
            }
            requests.push(request);
        }
        Ok(self.client.batch(requests).await?)
    }

    /// Every active source with sync on: the groups a mass checklist change can touch.
    pub async fn synced_sources_of_every_kind(
        &self,
    ) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let mut found = Vec::new();
        for kind in SourceKind::ALL {
            let rows = self
                .all_rows(
                    kind.entity_set(),
                    &Query::new()
                        .select([kind.primary_key()])
                        .filter(format!("statecode eq 0 and {} eq true", schema::SYNC_FLAG)),
                )
                .await?;
            found.extend(
                rows.iter()
                    .filter_map(|r| id(r, kind.primary_key()))
                    .map(|i| (kind, i)),
            );
        }
        Ok(found)
    }
}
