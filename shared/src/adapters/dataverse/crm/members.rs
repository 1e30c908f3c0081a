//! A source's members as recipients, page by page (5000 rows a request), so that memory stays
//! flat whatever the list size. A marketing list's members come from its static members or its
//! query; a campaign's and a campaign activity's from the lists linked to it, then the leads
//! linked to it.

use super::rows::{
    account_recipient, contact_recipient, id, lead_recipient, list_shape, state_active,
};
use super::{DataverseCrm, schema};
use crate::adapters::dataverse::client::{FetchPages, Pages, Query, filter};
use crate::domain::recipient::{Recipient, RecipientKind};
use crate::domain::source::{ListShape, SourceKind, SourceRecord};
use crate::ports::crm::{CrmError, MemberPages, MemberReader};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};

impl MemberReader for DataverseCrm {
    fn members(&self, source: &SourceRecord) -> Box<dyn MemberPages + '_> {
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
        Box::new(MemberStream {
            crm: self,
            source_id: source.source.id.clone(),
            linked_lists,
            segments,
            current: None,
            requests: 0,
        })
    }
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

    async fn next(&mut self) -> Result<Option<Vec<Recipient>>, CrmError> {
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

#[async_trait]
impl MemberPages for MemberStream<'_> {
    async fn next_page(&mut self) -> Result<Option<Vec<Recipient>>, CrmError> {
        self.next().await
    }

    /// Dataverse requests made so far (pages of members, linked lists, primary contacts).
    fn requests(&self) -> u32 {
        self.requests
    }
}
