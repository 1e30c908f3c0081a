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
    fn members_from(
        &self,
        source: &SourceRecord,
        resume: Option<&str>,
    ) -> Box<dyn MemberPages + '_> {
        let (resume, invalid) = match resume.map(serde_json::from_str::<Position>) {
            None => (None, None),
            Some(Ok(position)) => (Some(position), None),
            Some(Err(e)) => (
                None,
                Some(CrmError::Invalid {
                    what: "the members' resume point of the continued reconcile".into(),
                    problem: e.to_string(),
                }),
            ),
        };
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
            open: Vec::new(),
            turn: 0,
            last: None,
            done: Vec::new(),
            resume,
            invalid,
            requests: 0,
        })
    }
}

/// Segments (lists, linked leads) read side by side: a campaign of two lists of 600,000 is
/// read in half the round trips' time (docs/architecture.md §4 "Concurrency"), two requests
/// at a time, far inside Dataverse's 52 per user.
pub const SEGMENTS_IN_FLIGHT: usize = 2;

enum Segment {
    List { id: String, shape: ListShape },
    LinkedLeads { lookup: &'static str, id: String },
}

impl Segment {
    /// Names the segment in a resume point.
    fn key(&self) -> String {
        match self {
            Segment::List { id, .. } => format!("list:{id}"),
            Segment::LinkedLeads { .. } => "leads".to_string(),
        }
    }
}

/// Where a read of a source's members goes on (docs/architecture.md §4 "Deadlines"): the
/// segments read to the end, and for each one under way the page last read (to be read again)
/// and how many of its members were taken. Pages are keyed by the last row of the page before
/// (Dataverse's paging cookies), so reading one again gives the same rows unless members were
/// added to it meanwhile; those come with their own events.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Position {
    done: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    at: Vec<At>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct At {
    segment: String,
    /// An OData page's URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    /// A FetchXML page's number and paging cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cookie: Option<String>,
    /// Members of that page already taken.
    skip: usize,
}

enum Cursor {
    Odata(Pages<Value>, RecipientKind),
    Fetch(FetchPages<Value>, RecipientKind),
}

/// One segment under way.
struct Open {
    key: String,
    cursor: Cursor,
    /// The page read and not handed out yet.
    ready: Option<Vec<Recipient>>,
    /// Its last page was the last.
    exhausted: bool,
    /// Members to leave out of the next page read (taken by an earlier pass).
    skip: usize,
    /// Of the last page read: members left out that way, and members kept.
    skipped: usize,
    len: usize,
    requests: u32,
}

impl Open {
    fn new(key: String, cursor: Cursor) -> Open {
        Open {
            key,
            cursor,
            ready: None,
            exhausted: false,
            skip: 0,
            skipped: 0,
            len: 0,
            requests: 0,
        }
    }

    /// Reads the segment's next page into `ready` (or marks it exhausted).
    async fn read(&mut self, crm: &DataverseCrm) -> Result<(), CrmError> {
        let page = match &mut self.cursor {
            Cursor::Odata(pages, kind) => pages.next_page().await?.map(|p| (p, *kind)),
            Cursor::Fetch(pages, kind) => pages.next_page().await?.map(|p| (p, *kind)),
        };
        let Some((rows, kind)) = page else {
            self.exhausted = true;
            return Ok(());
        };
        self.requests += 1;
        let (mut recipients, extra) = recipients(crm, rows, kind).await?;
        self.requests += extra;
        // Taken by the pass before; the page was read again to go on after them.
        self.skipped = std::mem::take(&mut self.skip).min(recipients.len());
        recipients.drain(..self.skipped);
        self.len = recipients.len();
        self.ready = Some(recipients);
        Ok(())
    }

    /// Where this segment goes on when `taken` members of its last page were handed out.
    fn at(&self, taken: usize) -> Option<At> {
        let (link, page, cookie) = match &self.cursor {
            Cursor::Odata(pages, _) => (Some(pages.last_page()?), None, None),
            Cursor::Fetch(pages, _) => {
                let (page, cookie) = pages.last_page()?;
                (None, Some(page), cookie)
            }
        };
        Some(At {
            segment: self.key.clone(),
            link,
            page,
            cookie,
            skip: self.skipped + taken,
        })
    }
}

/// The members of a source, page by page, the segments' pages taken in turn. A failed page
/// can be asked for again.
pub struct MemberStream<'a> {
    crm: &'a DataverseCrm,
    source_id: String,
    /// Campaign or activity: the lists linked to it are read first, then their members.
    linked_lists: Option<(&'static str, &'static str)>,
    /// Segments not opened yet.
    segments: VecDeque<Segment>,
    /// Segments under way, at most [`SEGMENTS_IN_FLIGHT`].
    open: Vec<Open>,
    /// Whose page is handed out next.
    turn: usize,
    /// The segment whose page was handed out last.
    last: Option<String>,
    /// Keys of the segments read to the end.
    done: Vec<String>,
    /// Where to start, until the segments are known.
    resume: Option<Position>,
    invalid: Option<CrmError>,
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

    /// Drops the segments a resume point says are done and opens those under way there.
    fn apply_resume(&mut self, position: Position) -> Result<(), CrmError> {
        self.segments.retain(|s| !position.done.contains(&s.key()));
        self.done = position.done;
        for at in position.at {
            let Some(index) = self.segments.iter().position(|s| s.key() == at.segment) else {
                // The list is no longer linked: nothing of it to read.
                continue;
            };
            let Some(segment) = self.segments.remove(index) else {
                continue;
            };
            let mut cursor = self.open(segment);
            match (&mut cursor, at.link, at.page) {
                (Cursor::Odata(pages, _), Some(link), _) => pages.resume_at(&link)?,
                (Cursor::Fetch(pages, _), _, Some(page)) => pages.resume_at(page, at.cookie),
                _ => {
                    return Err(CrmError::Invalid {
                        what: "the members' resume point of the continued reconcile".into(),
                        problem: "its page does not fit the segment's kind of query".into(),
                    });
                }
            }
            let mut open = Open::new(at.segment, cursor);
            open.skip = at.skip;
            self.open.push(open);
        }
        Ok(())
    }

    async fn next(&mut self) -> Result<Option<Vec<Recipient>>, CrmError> {
        if let Some(e) = self.invalid.take() {
            return Err(e);
        }
        if let Some((set, navigation)) = self.linked_lists {
            self.read_linked_lists(set, navigation).await?;
            self.linked_lists = None;
        }
        if let Some(position) = self.resume.take() {
            self.apply_resume(position)?;
        }
        loop {
            while self.open.len() < SEGMENTS_IN_FLIGHT {
                let Some(segment) = self.segments.pop_front() else {
                    break;
                };
                let key = segment.key();
                let cursor = self.open(segment);
                self.open.push(Open::new(key, cursor));
            }
            if self.open.is_empty() {
                return Ok(None);
            }
            // Every segment without a page waiting reads its next one, side by side.
            let crm = self.crm;
            let reads = self
                .open
                .iter_mut()
                .filter(|o| o.ready.is_none() && !o.exhausted)
                .map(|o| o.read(crm));
            let results = futures::future::join_all(reads).await;
            // Segments read to the end leave; their keys go into the resume point.
            let mut index = 0;
            while index < self.open.len() {
                if self.open[index].exhausted && self.open[index].ready.is_none() {
                    let gone = self.open.remove(index);
                    self.requests += gone.requests;
                    if self.last.as_deref() == Some(gone.key.as_str()) {
                        self.last = None;
                    }
                    self.done.push(gone.key);
                    if self.turn > index {
                        self.turn -= 1;
                    }
                } else {
                    index += 1;
                }
            }
            results.into_iter().collect::<Result<Vec<()>, CrmError>>()?;
            // Pages are handed out in turn, so the order does not depend on which answered
            // first (the planner keeps the first of two records sharing an address).
            for step in 0..self.open.len() {
                let index = (self.turn + step) % self.open.len();
                if let Some(page) = self.open[index].ready.take() {
                    self.turn = (index + 1) % self.open.len();
                    self.last = Some(self.open[index].key.clone());
                    return Ok(Some(page));
                }
            }
        }
    }

    /// Where to go on after `taken` members of the last page handed out.
    fn position(&self, taken: usize) -> Option<String> {
        let mut at = Vec::with_capacity(self.open.len());
        for open in &self.open {
            let handed_out = if open.ready.is_some() {
                // Read but not handed out: read again, in full.
                0
            } else if self.last.as_deref() == Some(open.key.as_str()) {
                taken
            } else {
                open.len
            };
            at.push(open.at(handed_out)?);
        }
        serde_json::to_string(&Position {
            done: self.done.clone(),
            at,
        })
        .ok()
    }
}

/// A page of rows as recipients, and the extra requests that took (an account's primary
/// contacts are read in one request per page).
async fn recipients(
    crm: &DataverseCrm,
    rows: Vec<Value>,
    kind: RecipientKind,
) -> Result<(Vec<Recipient>, u32), CrmError> {
    Ok(match kind {
        RecipientKind::Contact => (rows.iter().filter_map(contact_recipient).collect(), 0),
        RecipientKind::Lead => (rows.iter().filter_map(lead_recipient).collect(), 0),
        RecipientKind::Account => {
            let ids: Vec<String> = rows
                .iter()
                .filter_map(|r| id(r, "_primarycontactid_value"))
                .collect();
            let (contacts, extra) = if ids.is_empty() {
                (HashMap::new(), 0)
            } else {
                (crm.contacts_by_id(&ids).await?, 1)
            };
            let recipients = rows
                .iter()
                .filter_map(|account| {
                    let pc = id(account, "_primarycontactid_value")?;
                    account_recipient(account, contacts.get(&pc))
                })
                .collect();
            (recipients, extra)
        }
    })
}

#[async_trait]
impl MemberPages for MemberStream<'_> {
    async fn next_page(&mut self) -> Result<Option<Vec<Recipient>>, CrmError> {
        self.next().await
    }

    /// Dataverse requests made so far (pages of members, linked lists, primary contacts).
    fn requests(&self) -> u32 {
        self.requests + self.open.iter().map(|o| o.requests).sum::<u32>()
    }

    fn resume_point(&self, taken: usize) -> Option<String> {
        self.position(taken)
    }
}
