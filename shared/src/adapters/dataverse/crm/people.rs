//! The directory a scoped (people) reconcile searches: records by address, accounts and
//! contacts that belong together, and the lists, campaigns and activities a record is in.

use super::rows::{
    self, account_recipient, contact_recipient, flag, id, lead_recipient, list_shape, state_active,
    text,
};
use super::sources::{source_columns, source_record};
use super::{DataverseCrm, IDS_PER_FETCH, schema};
use crate::adapters::dataverse::client::{FetchPages, Query, Read, filter};
use crate::domain::email::Email;
use crate::domain::recipient::{Recipient, RecipientKind};
use crate::domain::source::{ListShape, SourceKind};
use crate::ports::crm::{
    CrmError, MemberKey, PeopleDirectory, PeopleFound, PeopleQuery, SourceDirectory,
};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

impl DataverseCrm {
    /// Contacts by id (with the parent account's name), one request per 400 ids.
    pub(super) async fn contacts_by_id(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, Value>, CrmError> {
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
}

#[async_trait]
impl PeopleDirectory for DataverseCrm {
    /// One recipient read on its own (for scoped reconciles), or `None` when the record is gone.
    async fn recipient(
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
                let contacts = match rows::id(&account, "_primarycontactid_value") {
                    Some(pc) => self.contacts_by_id(&[pc]).await?,
                    None => HashMap::new(),
                };
                let pc = rows::id(&account, "_primarycontactid_value");
                Ok(account_recipient(
                    &account,
                    pc.as_ref().and_then(|pc| contacts.get(pc)),
                ))
            }
        }
    }

    /// Contacts and leads whose e-mail is this address. Dataverse compares case-insensitively
    /// but does not trim, so the search is `contains` and the exact match (trimmed, any case) is
    /// made here: an address stored with blanks around it is found too.
    async fn people_with_email(&self, email: &str) -> Result<Vec<MemberKey>, CrmError> {
        let wanted = email.trim().to_lowercase();
        let filter = format!(
            "contains(emailaddress1,{})",
            filter::string_literal(&wanted)
        );
        let tables = [
            (RecipientKind::Contact, "contacts", "contactid"),
            (RecipientKind::Lead, "leads", "leadid"),
        ];
        // Both tables in one round trip.
        let reads: Vec<Read> = tables
            .iter()
            .map(|(_, set, key)| {
                Read::query(
                    set,
                    Query::new()
                        .select([*key, "emailaddress1"])
                        .filter(filter.clone()),
                )
            })
            .collect();
        let rows = self.client.read_together(&reads).await?;
        let mut found = Vec::new();
        for ((kind, _, key), rows) in tables.iter().zip(rows) {
            found.extend(
                rows.iter()
                    .filter(|r| {
                        text(r, "emailaddress1").is_some_and(|e| e.to_lowercase() == wanted)
                    })
                    .filter_map(|r| id(r, key))
                    .map(|i| (*kind, i)),
            );
        }
        Ok(found)
    }

    /// Accounts whose primary contact is this contact.
    async fn accounts_of_primary_contact(&self, contact_id: &str) -> Result<Vec<String>, CrmError> {
        self.ids_where(
            "accounts",
            "_primarycontactid_value",
            contact_id,
            "accountid",
        )
        .await
    }

    /// Contacts whose parent customer is this account (their company name is the account's).
    async fn contacts_of_account(&self, account_id: &str) -> Result<Vec<String>, CrmError> {
        self.ids_where(
            "contacts",
            "_parentcustomerid_value",
            account_id,
            "contactid",
        )
        .await
    }

    /// The static marketing lists a record is a member of.
    async fn static_lists_of(&self, record_id: &str) -> Result<Vec<String>, CrmError> {
        self.ids_where("listmembers", "_entityid_value", record_id, "_listid_value")
            .await
    }

    /// The active dynamic marketing lists whose members the connector may need: those with sync
    /// on, and those linked to a campaign or campaign activity with sync on.
    async fn dynamic_lists_in_use(&self) -> Result<Vec<(String, ListShape)>, CrmError> {
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
    async fn dynamic_list_contains(
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

    /// The sources in use, in one `$batch`.
    async fn sources_in_use(&self) -> Result<SourceDirectory, CrmError> {
        let rows = self.client.read_together(&directory_reads()).await?;
        Ok(directory_from(&rows))
    }

    /// One round of people reads, in one `$batch`.
    async fn people(&self, query: &PeopleQuery) -> Result<PeopleFound, CrmError> {
        let reads = Self::people_reads(query)?;
        let plain: Vec<Read> = reads.iter().map(|(_, r)| r.clone()).collect();
        let rows = self.client.read_together(&plain).await?;
        self.people_from(query, &reads, rows).await
    }

    /// The sources in use and one round of people, in one `$batch`.
    async fn sources_and_people(
        &self,
        query: &PeopleQuery,
    ) -> Result<(SourceDirectory, PeopleFound), CrmError> {
        let directory = directory_reads();
        let reads = Self::people_reads(query)?;
        let all: Vec<Read> = directory
            .iter()
            .cloned()
            .chain(reads.iter().map(|(_, r)| r.clone()))
            .collect();
        let mut rows = self.client.read_together(&all).await?;
        let people_rows = rows.split_off(directory.len().min(rows.len()));
        let sources = directory_from(&rows);
        Ok((sources, self.people_from(query, &reads, people_rows).await?))
    }

    /// Every dynamic list's query restricted to the records of its member type, in one
    /// `$batch` (up to 400 ids a query).
    async fn dynamic_members(
        &self,
        lists: &[(String, ListShape)],
        records: &BTreeSet<MemberKey>,
    ) -> Result<BTreeSet<(String, MemberKey)>, CrmError> {
        let mut reads = Vec::new();
        let mut of = Vec::new();
        for (list, shape) in lists {
            let Some(query) = &shape.query else {
                continue;
            };
            let ids: Vec<String> = records
                .iter()
                .filter(|(k, _)| *k == shape.member_kind)
                .map(|(_, id)| id.clone())
                .collect();
            for chunk in ids.chunks(IDS_PER_FETCH) {
                reads.push(
                    self.client
                        .dynamic_list_selects(query, shape.member_kind, chunk)?,
                );
                of.push((list.clone(), shape.member_kind));
            }
        }
        let mut found = BTreeSet::new();
        if reads.is_empty() {
            return Ok(found);
        }
        let rows = self.client.read_together(&reads).await?;
        for ((list, kind), rows) in of.iter().zip(rows) {
            for row in rows {
                if let Some(record) = id(&row, key_column(*kind)) {
                    found.insert((list.clone(), (*kind, record)));
                }
            }
        }
        Ok(found)
    }

    /// The campaign and campaign activity a lead is linked to.
    async fn lead_links(&self, lead_id: &str) -> Result<Vec<(SourceKind, String)>, CrmError> {
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
}

/// Ids per OData `or` filter of a `$batch` part (each `contactid eq <guid>` is about 50
/// characters, percent-encoded about 70: 100 keep a part's URL near 7 KB).
const IDS_PER_FILTER: usize = 100;
/// Addresses per `contains` filter of a `$batch` part.
const EMAILS_PER_FILTER: usize = 50;

/// `(column eq <guid> or column eq <guid> …)`; only valid GUIDs go into the filter.
fn any_of(column: &str, ids: &[String]) -> Result<String, CrmError> {
    let terms = ids
        .iter()
        .map(|id| Ok(format!("{column} eq {}", filter::guid_literal(id)?)))
        .collect::<Result<Vec<_>, CrmError>>()?;
    Ok(format!("({})", terms.join(" or ")))
}

/// The lead's lookups that link it to a campaign and a campaign activity.
fn lead_link_columns() -> [(SourceKind, String); 2] {
    [
        (
            SourceKind::Campaign,
            format!("_{}_value", schema::LEAD_CAMPAIGN),
        ),
        (
            SourceKind::CampaignActivity,
            format!("_{}_value", schema::LEAD_CAMPAIGN_ACTIVITY),
        ),
    ]
}

fn lead_links_of(row: &Value) -> Vec<(SourceKind, String)> {
    lead_link_columns()
        .iter()
        .filter_map(|(kind, column)| id(row, column).map(|i| (*kind, i)))
        .collect()
}

fn key_column(kind: RecipientKind) -> &'static str {
    match kind {
        RecipientKind::Contact => "contactid",
        RecipientKind::Lead => "leadid",
        RecipientKind::Account => "accountid",
    }
}

/// What each read of a people round is, to read its rows back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeopleRead {
    ById(RecipientKind),
    ByEmail(RecipientKind),
    AccountsOfPrimaryContacts,
    StaticLists,
}

/// The reads of the sources in use.
fn directory_reads() -> Vec<Read> {
    let synced = format!("statecode eq 0 and {} eq true", schema::SYNC_FLAG);
    let list = SourceKind::MarketingList;
    let mut reads = vec![Read::query(
        list.entity_set(),
        Query::new()
            .select(source_columns(list))
            // Synced lists, and every active dynamic list (those linked to a synced campaign or
            // activity are in use too).
            .filter(format!(
                "statecode eq 0 and ({} eq true or type eq true)",
                schema::SYNC_FLAG
            )),
    )];
    for kind in [SourceKind::Campaign, SourceKind::CampaignActivity] {
        reads.push(Read::query(
            kind.entity_set(),
            Query::new()
                .select(source_columns(kind))
                .filter(synced.clone()),
        ));
    }
    // The links of synced campaigns and activities (the join keeps those of other sources out).
    for (item, kind, source_key, list_column) in [
        (
            "campaignitem",
            SourceKind::Campaign,
            "campaignid",
            "entityid",
        ),
        (
            "campaignactivityitem",
            SourceKind::CampaignActivity,
            "campaignactivityid",
            "itemid",
        ),
    ] {
        let (source, source_pk) = (kind.logical_name(), kind.primary_key());
        reads.push(Read::fetch_xml(
            &format!("{item}s"),
            format!(
                "<fetch><entity name=\"{item}\"><attribute name=\"{source_key}\"/>\
                 <attribute name=\"{list_column}\"/>\
                 <link-entity name=\"{source}\" from=\"{source_pk}\" to=\"{source_key}\" link-type=\"inner\">\
                 <filter><condition attribute=\"statecode\" operator=\"eq\" value=\"0\"/>\
                 <condition attribute=\"{}\" operator=\"eq\" value=\"1\"/></filter>\
                 </link-entity></entity></fetch>",
                schema::SYNC_FLAG
            ),
        ));
    }
    reads
}

/// The sources in use from the rows of [`directory_reads`].
fn directory_from(rows: &[Vec<Value>]) -> SourceDirectory {
    let mut directory = SourceDirectory::default();
    let mut dynamic = Vec::new();
    let kinds = [
        SourceKind::MarketingList,
        SourceKind::Campaign,
        SourceKind::CampaignActivity,
    ];
    for (kind, rows) in kinds.iter().zip(rows) {
        for row in rows {
            let Some(source_id) = id(row, kind.primary_key()) else {
                continue;
            };
            let record = match source_record(*kind, &source_id, row) {
                Ok(record) => record,
                Err(e) => {
                    // A list whose member type cannot be read has no members to find; its own
                    // sync reports the problem.
                    tracing::warn!(list_id = %source_id, error = %e, "source left out of the sources in use");
                    continue;
                }
            };
            if let Some(shape) = record.list.as_ref().filter(|s| s.dynamic) {
                dynamic.push((source_id.clone(), shape.clone()));
            }
            if record.source.sync_enabled && record.source.active {
                directory.synced.insert((*kind, source_id), record);
            }
        }
    }
    for ((kind, source_key, list_column), rows) in [
        (SourceKind::Campaign, "_campaignid_value", "entityid"),
        (
            SourceKind::CampaignActivity,
            "_campaignactivityid_value",
            "itemid",
        ),
    ]
    .iter()
    .zip(rows.iter().skip(3))
    {
        for row in rows {
            if let (Some(source), Some(list)) = (id(row, source_key), id(row, list_column))
                && directory.synced.contains_key(&(*kind, source.clone()))
            {
                directory
                    .linked
                    .entry(list)
                    .or_default()
                    .insert((*kind, source));
            }
        }
    }
    directory.dynamic_lists = dynamic
        .into_iter()
        .filter(|(list, _)| {
            directory
                .synced
                .contains_key(&(SourceKind::MarketingList, list.clone()))
                || directory.linked.contains_key(list)
        })
        .collect();
    directory
}

impl DataverseCrm {
    /// The reads of one people round, each with what it is.
    fn people_reads(query: &PeopleQuery) -> Result<Vec<(PeopleRead, Read)>, CrmError> {
        let mut reads = Vec::new();
        let lead_columns: Vec<String> = schema::LEAD_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .chain(lead_link_columns().into_iter().map(|(_, c)| c))
            .collect();
        let select = |kind: RecipientKind| -> Query {
            match kind {
                RecipientKind::Contact => Query::new()
                    .select(schema::CONTACT_COLUMNS)
                    .annotations(schema::LOOKUP_ANNOTATIONS),
                RecipientKind::Lead => Query::new().select(lead_columns.clone()),
                RecipientKind::Account => Query::new().select(schema::ACCOUNT_COLUMNS),
            }
        };
        let set = |kind: RecipientKind| match kind {
            RecipientKind::Contact => "contacts",
            RecipientKind::Lead => "leads",
            RecipientKind::Account => "accounts",
        };
        for kind in [
            RecipientKind::Contact,
            RecipientKind::Lead,
            RecipientKind::Account,
        ] {
            let ids: Vec<String> = query
                .records
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, id)| id.clone())
                .collect();
            for chunk in ids.chunks(IDS_PER_FILTER) {
                let filter = any_of(key_column(kind), chunk)?;
                reads.push((
                    PeopleRead::ById(kind),
                    Read::query(set(kind), select(kind).filter(filter)),
                ));
            }
        }
        // Dataverse compares case-insensitively but does not trim: `contains`, and the exact
        // match (trimmed, any case) is made on the rows.
        let emails: Vec<String> = query
            .emails
            .iter()
            .map(|e| e.as_str().to_string())
            .collect();
        for chunk in emails.chunks(EMAILS_PER_FILTER) {
            let terms: Vec<String> = chunk
                .iter()
                .map(|e| format!("contains(emailaddress1,{})", filter::string_literal(e)))
                .collect();
            let filter = format!("({})", terms.join(" or "));
            for kind in [RecipientKind::Contact, RecipientKind::Lead] {
                reads.push((
                    PeopleRead::ByEmail(kind),
                    Read::query(set(kind), select(kind).filter(filter.clone())),
                ));
            }
        }
        let contacts: Vec<String> = query.primary_contacts.iter().cloned().collect();
        for chunk in contacts.chunks(IDS_PER_FILTER) {
            reads.push((
                PeopleRead::AccountsOfPrimaryContacts,
                Read::query(
                    "accounts",
                    select(RecipientKind::Account)
                        .filter(any_of("_primarycontactid_value", chunk)?),
                ),
            ));
        }
        let members: Vec<String> = query
            .lists_of
            .iter()
            .map(|(_, id)| id.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for chunk in members.chunks(IDS_PER_FILTER) {
            reads.push((
                PeopleRead::StaticLists,
                Read::query(
                    "listmembers",
                    Query::new()
                        .select(["_listid_value", "_entityid_value"])
                        .filter(any_of("_entityid_value", chunk)?),
                ),
            ));
        }
        Ok(reads)
    }

    /// One people round's rows as what was found. An account's primary contact that was not
    /// read in the round is read now (one more request, for accounts only).
    async fn people_from(
        &self,
        query: &PeopleQuery,
        reads: &[(PeopleRead, Read)],
        rows: Vec<Vec<Value>>,
    ) -> Result<PeopleFound, CrmError> {
        let mut found = PeopleFound::default();
        let mut contact_rows: HashMap<String, Value> = HashMap::new();
        let mut accounts: Vec<Value> = Vec::new();
        for ((what, _), rows) in reads.iter().zip(rows) {
            for row in rows {
                match what {
                    PeopleRead::ById(kind) | PeopleRead::ByEmail(kind) => {
                        let Some(record) = id(&row, key_column(*kind)) else {
                            continue;
                        };
                        if let PeopleRead::ByEmail(_) = what {
                            let matches = text(&row, "emailaddress1")
                                .and_then(|e| Email::parse(&e).ok())
                                .is_some_and(|e| query.emails.contains(&e));
                            if !matches {
                                continue;
                            }
                        }
                        match kind {
                            RecipientKind::Account => accounts.push(row),
                            RecipientKind::Contact => {
                                if let Some(r) = contact_recipient(&row) {
                                    found.recipients.insert((*kind, record.clone()), r);
                                }
                                contact_rows.insert(record, row);
                            }
                            RecipientKind::Lead => {
                                if let Some(r) = lead_recipient(&row) {
                                    found.lead_links.insert(record.clone(), lead_links_of(&row));
                                    found.recipients.insert((*kind, record), r);
                                }
                            }
                        }
                    }
                    PeopleRead::AccountsOfPrimaryContacts => accounts.push(row),
                    PeopleRead::StaticLists => {
                        if let (Some(list), Some(member)) =
                            (id(&row, "_listid_value"), id(&row, "_entityid_value"))
                        {
                            for key in query.lists_of.iter().filter(|(_, i)| *i == member) {
                                found
                                    .static_lists
                                    .entry(key.clone())
                                    .or_default()
                                    .insert(list.clone());
                            }
                        }
                    }
                }
            }
        }
        for key in &query.lists_of {
            found.static_lists.entry(key.clone()).or_default();
        }
        let missing: Vec<String> = accounts
            .iter()
            .filter_map(|a| id(a, "_primarycontactid_value"))
            .filter(|pc| !contact_rows.contains_key(pc))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !missing.is_empty() {
            contact_rows.extend(self.contacts_by_id(&missing).await?);
        }
        for account in &accounts {
            let Some(account_id) = id(account, "accountid") else {
                continue;
            };
            let pc = id(account, "_primarycontactid_value");
            if let Some(r) =
                account_recipient(account, pc.as_ref().and_then(|pc| contact_rows.get(pc)))
            {
                found
                    .recipients
                    .insert((RecipientKind::Account, account_id), r);
            }
        }
        Ok(found)
    }
}
