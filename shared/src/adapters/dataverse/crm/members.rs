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
use tracing::Instrument;

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
    Odata(Pages<MemberRow>, RecipientKind),
    Fetch(FetchPages<MemberRow>, RecipientKind),
}

/// A member row, taken in as it is read: a contact or a lead becomes its recipient at once, so
/// a page of 5,000 is never held as 5,000 JSON trees (a few pages are read ahead; memory must
/// stay flat, docs/architecture.md §4.1). Other rows (accounts, which need their primary
/// contacts) stay as read.
enum MemberRow {
    Contact(Option<Recipient>),
    Lead(Option<Recipient>),
    Row(Value),
}

impl<'de> serde::Deserialize<'de> for MemberRow {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let row = Value::deserialize(deserializer)?;
        Ok(if row.get("contactid").is_some() {
            MemberRow::Contact(contact_recipient(&row))
        } else if row.get("leadid").is_some() {
            MemberRow::Lead(lead_recipient(&row))
        } else {
            MemberRow::Row(row)
        })
    }
}

/// Where a page is: an OData page's URL, or a FetchXML page's number and paging cookie.
#[derive(Debug, Clone)]
enum Place {
    Link(String),
    Fetch(u32, Option<String>),
}

impl Place {
    fn of(cursor: &Cursor) -> Option<Place> {
        match cursor {
            Cursor::Odata(pages, _) => pages.last_page().map(Place::Link),
            Cursor::Fetch(pages, _) => pages
                .last_page()
                .map(|(page, cookie)| Place::Fetch(page, cookie)),
        }
    }

    fn at(&self, segment: &str, skip: usize) -> At {
        let (link, page, cookie) = match self {
            Place::Link(link) => (Some(link.clone()), None, None),
            Place::Fetch(page, cookie) => (None, Some(*page), cookie.clone()),
        };
        At {
            segment: segment.to_string(),
            link,
            page,
            cookie,
            skip,
        }
    }
}

/// A page read: its members (those an earlier pass took left out), how many were left out,
/// and the requests it took; `None` after the last page.
type PageRead = Result<Option<(Vec<Recipient>, usize, u32)>, CrmError>;

/// One segment under way. Its next page is read in a task of its own while the page before
/// is worked, so that reading never waits for the planner nor one segment for another.
struct Open {
    key: String,
    /// At home while no read is under way.
    cursor: Option<Cursor>,
    reading: Option<tokio::task::JoinHandle<(Cursor, PageRead)>>,
    /// The page read and not handed out yet.
    ready: Option<Vec<Recipient>>,
    /// Its last page was the last.
    exhausted: bool,
    /// Members to leave out of the next page read (taken by an earlier pass).
    skip: usize,
    /// The page last read, the members left out of it and those kept; before any read, where
    /// a resume point said to go on.
    place: Option<Place>,
    skipped: usize,
    len: usize,
    requests: u32,
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(reading) = self.reading.take() {
            reading.abort();
        }
    }
}

impl Open {
    fn new(key: String, cursor: Cursor) -> Open {
        Open {
            key,
            cursor: Some(cursor),
            reading: None,
            ready: None,
            exhausted: false,
            skip: 0,
            place: None,
            skipped: 0,
            len: 0,
            requests: 0,
        }
    }

    /// Starts reading the next page, unless one is read, under way or there is none.
    fn start(&mut self, crm: &DataverseCrm) {
        if self.reading.is_some() || self.ready.is_some() || self.exhausted {
            return;
        }
        let Some(mut cursor) = self.cursor.take() else {
            return;
        };
        let (crm, skip) = (crm.clone(), self.skip);
        self.reading = Some(tokio::spawn(
            async move {
                let read = read_page(&crm, &mut cursor, skip).await;
                (cursor, read)
            }
            .instrument(tracing::Span::current()),
        ));
    }

    /// Waits for the read under way, if any, and takes its page in.
    async fn land(&mut self) -> Result<(), CrmError> {
        let Some(reading) = self.reading.take() else {
            return Ok(());
        };
        let (cursor, read) = reading.await.map_err(|e| CrmError::Unavailable {
            message: format!("reading a page of members was stopped: {e}"),
            retry_after: None,
        })?;
        let place = Place::of(&cursor);
        self.cursor = Some(cursor);
        match read? {
            Some((members, skipped, requests)) => {
                self.place = place;
                self.requests += requests;
                self.skip = 0;
                self.skipped = skipped;
                self.len = members.len();
                self.ready = Some(members);
            }
            None => self.exhausted = true,
        }
        Ok(())
    }

    /// Where this segment goes on, `handed_out` members of its last page having been handed
    /// out; `None` for a segment not read yet (it starts from its first page again).
    fn at(&self, handed_out: usize) -> Option<At> {
        if self.len == 0 && self.skipped == 0 && self.ready.is_none() && self.skip > 0 {
            // Resumed, not read yet: the resume point it came with.
            return self.place.as_ref().map(|p| p.at(&self.key, self.skip));
        }
        self.place
            .as_ref()
            .map(|p| p.at(&self.key, self.skipped + handed_out))
    }
}

/// Reads a segment's next page as recipients, leaving out the first `skip`.
async fn read_page(crm: &DataverseCrm, cursor: &mut Cursor, skip: usize) -> PageRead {
    let page = match cursor {
        Cursor::Odata(pages, kind) => pages.next_page().await?.map(|p| (p, *kind)),
        Cursor::Fetch(pages, kind) => pages.next_page().await?.map(|p| (p, *kind)),
    };
    let Some((rows, kind)) = page else {
        return Ok(None);
    };
    let (mut members, extra) = recipients(crm, rows, kind).await?;
    // Taken by the pass before; the page was read again to go on after them.
    let skipped = skip.min(members.len());
    members.drain(..skipped);
    Ok(Some((members, skipped, 1 + extra)))
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
            match (&mut cursor, &at.link, at.page) {
                (Cursor::Odata(pages, _), Some(link), _) => pages.resume_at(link)?,
                (Cursor::Fetch(pages, _), _, Some(page)) => {
                    pages.resume_at(page, at.cookie.clone())
                }
                _ => {
                    return Err(CrmError::Invalid {
                        what: "the members' resume point of the continued reconcile".into(),
                        problem: "its page does not fit the segment's kind of query".into(),
                    });
                }
            }
            let mut open = Open::new(at.segment, cursor);
            open.skip = at.skip;
            open.place = match (at.link, at.page) {
                (Some(link), _) => Some(Place::Link(link)),
                (None, Some(page)) => Some(Place::Fetch(page, at.cookie)),
                (None, None) => None,
            };
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
            // Every segment without a page at hand reads its next one, side by side.
            for open in &mut self.open {
                open.start(self.crm);
            }
            // Pages are handed out in turn, so the order does not depend on which answered
            // first (the planner keeps the first of two records sharing an address).
            let index = self.turn % self.open.len();
            self.open[index].land().await?;
            if self.open[index].exhausted {
                // Read to the end: its key goes into the resume point.
                let gone = self.open.remove(index);
                self.requests += gone.requests;
                if self.last.as_deref() == Some(gone.key.as_str()) {
                    self.last = None;
                }
                self.done.push(gone.key.clone());
                continue;
            }
            if let Some(page) = self.open[index].ready.take() {
                self.turn = index + 1;
                self.last = Some(self.open[index].key.clone());
                // Its next page is read while this one is worked.
                self.open[index].start(self.crm);
                return Ok(Some(page));
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
            if let Some(place) = open.at(handed_out) {
                at.push(place);
            }
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
    rows: Vec<MemberRow>,
    kind: RecipientKind,
) -> Result<(Vec<Recipient>, u32), CrmError> {
    Ok(match kind {
        RecipientKind::Contact => (
            rows.into_iter()
                .filter_map(|row| match row {
                    MemberRow::Contact(recipient) => recipient,
                    MemberRow::Row(row) => contact_recipient(&row),
                    MemberRow::Lead(_) => None,
                })
                .collect(),
            0,
        ),
        RecipientKind::Lead => (
            rows.into_iter()
                .filter_map(|row| match row {
                    MemberRow::Lead(recipient) => recipient,
                    MemberRow::Row(row) => lead_recipient(&row),
                    MemberRow::Contact(_) => None,
                })
                .collect(),
            0,
        ),
        RecipientKind::Account => {
            let rows: Vec<Value> = rows
                .into_iter()
                .filter_map(|row| match row {
                    MemberRow::Row(row) => Some(row),
                    _ => None,
                })
                .collect();
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
