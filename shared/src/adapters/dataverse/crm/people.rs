//! The directory a scoped (people) reconcile searches: records by address, accounts and
//! contacts that belong together, and the lists, campaigns and activities a record is in.

use super::rows::{
    self, account_recipient, contact_recipient, flag, id, lead_recipient, list_shape, state_active,
    text,
};
use super::{DataverseCrm, IDS_PER_FETCH, schema};
use crate::adapters::dataverse::client::{FetchPages, Query, filter};
use crate::domain::recipient::{Recipient, RecipientKind};
use crate::domain::source::{ListShape, SourceKind};
use crate::ports::crm::{CrmError, MemberKey, PeopleDirectory};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;

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
