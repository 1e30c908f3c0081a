//! FetchXML queries paged with paging cookies (docs/architecture.md §11), and the preparation of a dynamic
//! marketing list's query for stable paging.
//!
//! The XML is rewritten with quick-xml, never by pasting strings: the paging cookie (which
//! holds row values such as names) goes into the `paging-cookie` attribute XML-escaped.

use super::batch::{self, BatchRequest};
use super::error::{DataverseError, json_reason};
use super::{DataverseClient, encode_query_value, filter};
use percent_encoding::percent_decode_str;
use quick_xml::events::{BytesEnd, BytesStart, Event};
use quick_xml::{Reader, Writer, XmlVersion};
use reqwest::Method;
use reqwest::header::HeaderName;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::marker::PhantomData;

/// Above this URL length the GET goes inside a `$batch` body instead (docs/architecture.md §11).
const MAX_GET_URL: usize = 32 * 1024;
/// A URL inside a `$batch` may be up to 64 KB (docs/architecture.md §11).
pub(crate) const MAX_BATCH_URL: usize = 65_536;
pub(crate) const INCLUDE_ALL_ANNOTATIONS: &str = "odata.include-annotations=\"*\"";

#[derive(Deserialize)]
struct FetchPageBody<T> {
    value: Vec<T>,
    #[serde(rename = "@Microsoft.Dynamics.CRM.fetchxmlpagingcookie")]
    paging_cookie: Option<String>,
    #[serde(rename = "@Microsoft.Dynamics.CRM.morerecords")]
    more_records: Option<bool>,
}

/// The pages of a FetchXML query. A failed [`FetchPages::next_page`] leaves the position
/// unchanged, so calling it again retries the same page.
pub struct FetchPages<T> {
    client: DataverseClient,
    entity_set: String,
    fetch_xml: String,
    /// False when the query has `top`, which Dataverse does not allow together with paging.
    paged: bool,
    page: u32,
    paging_cookie: Option<String>,
    done: bool,
    /// The page number and cookie of the page last read, to read it again when resuming.
    last: Option<(u32, Option<String>)>,
    pending_error: Option<DataverseError>,
    requests: u32,
    row: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> FetchPages<T> {
    pub(crate) fn new(
        client: DataverseClient,
        entity_set: &str,
        fetch_xml: String,
    ) -> FetchPages<T> {
        let checked = filter::identifier("entity set", entity_set)
            .map(|_| ())
            .and_then(|()| root_has_top(&fetch_xml).map_err(invalid_fetch));
        let (paged, pending_error) = match checked {
            Ok(has_top) => (!has_top, None),
            Err(err) => (false, Some(err)),
        };
        FetchPages {
            client,
            entity_set: entity_set.to_string(),
            fetch_xml,
            paged,
            page: 1,
            paging_cookie: None,
            done: false,
            last: None,
            pending_error,
            requests: 0,
            row: PhantomData,
        }
    }

    pub(crate) fn failed(
        client: DataverseClient,
        entity_set: &str,
        err: DataverseError,
    ) -> FetchPages<T> {
        let mut pages = FetchPages::new(client, entity_set, String::new());
        pages.pending_error = Some(err);
        pages
    }

    /// The next page of rows, or `None` after the last page.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, DataverseError> {
        if let Some(err) = self.pending_error.take() {
            return Err(err);
        }
        if self.done {
            return Ok(None);
        }
        let paging = self.paged.then(|| Paging {
            page: self.page,
            count: self.client.config().max_page_size,
            cookie: self.paging_cookie.as_deref(),
        });
        let xml = set_paging(&self.fetch_xml, paging.as_ref()).map_err(invalid_fetch)?;
        let query = format!("fetchXml={}", encode_query_value(&xml));
        self.requests += 1;
        let body: FetchPageBody<T> = self.send(&query).await?;
        self.last = Some((self.page, self.paging_cookie.clone()));
        let more = body.more_records == Some(true);
        if more && self.paged {
            if body.value.is_empty() {
                // Paging on would never end; Dataverse does not do this.
                return Err(DataverseError::decode(
                    &format!("GET {}", self.entity_set),
                    "FetchXML page",
                    "more records announced on an empty page",
                ));
            }
            self.paging_cookie = match &body.paging_cookie {
                Some(annotation) => {
                    paging_cookie_from_annotation(annotation).map_err(|reason| {
                        DataverseError::decode(
                            &format!("GET {}", self.entity_set),
                            "FetchXML paging cookie",
                            reason,
                        )
                    })?
                }
                None => None,
            };
            self.page += 1;
        } else {
            self.done = true;
        }
        Ok(Some(body.value))
    }

    /// How many page requests were made so far (retries of one page count once).
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The page number and paging cookie of the page last read.
    pub fn last_page(&self) -> Option<(u32, Option<String>)> {
        self.last.clone()
    }

    /// Reads on from a page [`FetchPages::last_page`] gave (that page comes next).
    pub fn resume_at(&mut self, page: u32, cookie: Option<String>) {
        self.page = page.max(1);
        self.paging_cookie = cookie;
        self.done = false;
    }

    async fn send(&self, query: &str) -> Result<FetchPageBody<T>, DataverseError> {
        let request = self
            .client
            .request(Method::GET, &self.entity_set, query)?
            .header(HeaderName::from_static("prefer"), INCLUDE_ALL_ANNOTATIONS);
        if request.url.as_str().len() <= MAX_GET_URL {
            return self
                .client
                .execute(&request, |_, raw| {
                    if raw.is_success() {
                        raw.json("FetchXML page")
                    } else {
                        Err(raw.error())
                    }
                })
                .await;
        }
        // Too long for a URL: the same GET inside a $batch body.
        let relative_url = format!("{}?{query}", self.entity_set);
        let inner_url_len = self.client.api_url().path().len() + relative_url.len();
        if inner_url_len > MAX_BATCH_URL {
            return Err(DataverseError::invalid(
                "FetchXML",
                format!(
                    "the encoded query is {inner_url_len} characters; Dataverse takes at most {MAX_BATCH_URL}"
                ),
            ));
        }
        let part = BatchRequest {
            method: Method::GET,
            relative_url,
            body: None,
            headers: vec![("Prefer".to_string(), INCLUDE_ALL_ANNOTATIONS.to_string())],
        };
        let batch_request = self.client.batch_request(std::slice::from_ref(&part))?;
        let label = format!("GET {} (in $batch)", self.entity_set);
        self.client
            .execute(&batch_request, |_, raw| {
                let mut parts = batch::read_answer(&raw, 1)?;
                let part = parts.remove(0);
                if !part.is_success() {
                    return Err(part.to_error(&label));
                }
                let body = part.body.unwrap_or_default();
                serde_json::from_value(body).map_err(|err| {
                    DataverseError::decode(&label, "FetchXML page", json_reason(&err))
                })
            })
            .await
    }
}

fn invalid_fetch(reason: String) -> DataverseError {
    DataverseError::invalid("FetchXML", reason)
}

/// Paging attributes for the root `<fetch>`.
pub(crate) struct Paging<'a> {
    pub page: u32,
    pub count: u32,
    /// The decoded cookie of the previous page (plain XML text; escaped when written).
    pub cookie: Option<&'a str>,
}

fn xml_error(err: impl std::fmt::Display) -> String {
    format!("not well-formed XML: {err}")
}

fn attr_key<'a>(attr: &'a quick_xml::events::attributes::Attribute<'_>) -> &'a str {
    attr.key.as_ref()
}

fn attr_value(element: &BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    for attr in element.attributes() {
        let attr = attr.map_err(xml_error)?;
        if attr_key(&attr) == name {
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(xml_error)?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

/// Whether the root `<fetch>` has `top` (which excludes paging). Fails when the text is not
/// FetchXML.
fn root_has_top(xml: &str) -> Result<bool, String> {
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event().map_err(xml_error)? {
            Event::Start(root) | Event::Empty(root) => {
                check_root(&root)?;
                return Ok(attr_value(&root, "top")?.is_some());
            }
            Event::Eof => return Err("no <fetch> element".to_string()),
            _ => {}
        }
    }
}

fn check_root(root: &BytesStart<'_>) -> Result<(), String> {
    if root.name().as_ref() == "fetch" {
        Ok(())
    } else {
        Err(format!(
            "the root element must be <fetch>, not <{}>",
            root.name().as_ref()
        ))
    }
}

/// The query with `page`, `count` and `paging-cookie` set on the root `<fetch>` (any values
/// already there are replaced). Everything else passes through unchanged.
pub(crate) fn set_paging(xml: &str, paging: Option<&Paging<'_>>) -> Result<String, String> {
    let Some(paging) = paging else {
        return Ok(xml.to_string());
    };
    let mut reader = Reader::from_str(xml);
    let mut writer = Writer::new(Vec::with_capacity(xml.len() + 256));
    let mut seen_root = false;
    loop {
        let event = reader.read_event().map_err(xml_error)?;
        let event = match event {
            Event::Eof => break,
            Event::Start(root) if !seen_root => {
                seen_root = true;
                Event::Start(paged_root(&root, paging)?)
            }
            Event::Empty(root) if !seen_root => {
                seen_root = true;
                Event::Empty(paged_root(&root, paging)?)
            }
            other => other,
        };
        writer.write_event(event).map_err(xml_error)?;
    }
    if !seen_root {
        return Err("no <fetch> element".to_string());
    }
    String::from_utf8(writer.into_inner()).map_err(xml_error)
}

fn paged_root(root: &BytesStart<'_>, paging: &Paging<'_>) -> Result<BytesStart<'static>, String> {
    check_root(root)?;
    let mut paged = BytesStart::new("fetch");
    for attr in root.attributes() {
        let attr = attr.map_err(xml_error)?;
        let key = attr_key(&attr);
        if matches!(key, "page" | "count" | "paging-cookie") {
            continue;
        }
        // Unescape and let the writer escape again, whatever quotes the original used.
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(xml_error)?;
        paged.push_attribute((key, value.as_ref()));
    }
    paged.push_attribute(("page", paging.page.to_string().as_str()));
    paged.push_attribute(("count", paging.count.to_string().as_str()));
    if let Some(cookie) = paging.cookie {
        paged.push_attribute(("paging-cookie", cookie));
    }
    Ok(paged)
}

/// The paging cookie for the next request, from the `fetchxmlpagingcookie` annotation
/// (`<cookie pagenumber="2" pagingcookie="%253ccookie…" istracking="False" />`): the
/// `pagingcookie` attribute, URL-decoded twice (docs/architecture.md §11). `None` when it is absent or empty.
pub(crate) fn paging_cookie_from_annotation(annotation: &str) -> Result<Option<String>, String> {
    let mut reader = Reader::from_str(annotation);
    loop {
        match reader.read_event().map_err(xml_error)? {
            Event::Start(cookie) | Event::Empty(cookie) => {
                if cookie.name().as_ref() != "cookie" {
                    return Err(format!(
                        "expected <cookie>, found <{}>",
                        cookie.name().as_ref()
                    ));
                }
                let Some(encoded) = attr_value(&cookie, "pagingcookie")? else {
                    return Ok(None);
                };
                let once = percent_decode_str(&encoded)
                    .decode_utf8()
                    .map_err(|err| format!("pagingcookie is not UTF-8 after decoding: {err}"))?;
                let twice = percent_decode_str(&once)
                    .decode_utf8()
                    .map_err(|err| format!("pagingcookie is not UTF-8 after decoding: {err}"))?;
                return Ok((!twice.is_empty()).then(|| twice.into_owned()));
            }
            Event::Eof => return Err("no <cookie> element".to_string()),
            _ => {}
        }
    }
}

/// What a dynamic list's query already asks for, inside its top-level `<entity>`.
#[derive(Default)]
struct EntityContent {
    attributes: HashSet<String>,
    all_attributes: bool,
    orders_by_key: bool,
}

impl EntityContent {
    fn note(&mut self, element: &BytesStart<'_>, key: &str) -> Result<(), String> {
        match element.name().as_ref() {
            "attribute" => {
                if let Some(name) = attr_value(element, "name")? {
                    self.attributes.insert(name);
                }
            }
            "all-attributes" => self.all_attributes = true,
            "order" if attr_value(element, "attribute")?.as_deref() == Some(key) => {
                self.orders_by_key = true;
            }
            _ => {}
        }
        Ok(())
    }

    /// The missing `<attribute>`s and the `<order>` on the primary key.
    fn write_missing(
        &self,
        writer: &mut Writer<Vec<u8>>,
        key: &str,
        attributes: &[&str],
        only_records: Option<&[String]>,
    ) -> Result<(), String> {
        if let Some(ids) = only_records {
            // A second <filter> under the entity is ANDed with the query's own.
            let mut filter = BytesStart::new("filter");
            filter.push_attribute(("type", "and"));
            writer
                .write_event(Event::Start(filter))
                .map_err(xml_error)?;
            let mut condition = BytesStart::new("condition");
            condition.push_attribute(("attribute", key));
            if let [id] = ids {
                condition.push_attribute(("operator", "eq"));
                condition.push_attribute(("value", id.as_str()));
                writer
                    .write_event(Event::Empty(condition))
                    .map_err(xml_error)?;
            } else {
                condition.push_attribute(("operator", "in"));
                writer
                    .write_event(Event::Start(condition))
                    .map_err(xml_error)?;
                for id in ids {
                    writer
                        .write_event(Event::Start(BytesStart::new("value")))
                        .map_err(xml_error)?;
                    writer
                        .write_event(Event::Text(quick_xml::events::BytesText::new(id)))
                        .map_err(xml_error)?;
                    writer
                        .write_event(Event::End(BytesEnd::new("value")))
                        .map_err(xml_error)?;
                }
                writer
                    .write_event(Event::End(BytesEnd::new("condition")))
                    .map_err(xml_error)?;
            }
            writer
                .write_event(Event::End(BytesEnd::new("filter")))
                .map_err(xml_error)?;
        }
        if !self.all_attributes {
            let mut written = HashSet::new();
            for name in std::iter::once(key).chain(attributes.iter().copied()) {
                if !self.attributes.contains(name) && written.insert(name) {
                    let mut element = BytesStart::new("attribute");
                    element.push_attribute(("name", name));
                    writer
                        .write_event(Event::Empty(element))
                        .map_err(xml_error)?;
                }
            }
        }
        if !self.orders_by_key {
            let mut order = BytesStart::new("order");
            order.push_attribute(("attribute", key));
            order.push_attribute(("descending", "false"));
            writer.write_event(Event::Empty(order)).map_err(xml_error)?;
        }
        Ok(())
    }
}

/// Prepares a dynamic list's `query` for paging over its members: checks that it selects
/// `entity`, and adds the primary `key`, the wanted `attributes` and an `<order>` on the key
/// when they are missing (a unique last sort key keeps paging stable).
pub(crate) fn prepare_member_query(
    xml: &str,
    entity: &str,
    key: &str,
    attributes: &[&str],
) -> Result<String, DataverseError> {
    for name in attributes {
        filter::identifier("FetchXML attribute", name)?;
    }
    prepare(xml, entity, key, attributes, None).map_err(invalid_fetch)
}

/// Like [`prepare_member_query`], restricted to one record: does the dynamic list hold it?
pub(crate) fn prepare_membership_check(
    xml: &str,
    entity: &str,
    key: &str,
    record_id: &str,
) -> Result<String, DataverseError> {
    let id = filter::guid(record_id)?;
    prepare(xml, entity, key, &[], Some(std::slice::from_ref(&id))).map_err(invalid_fetch)
}

/// Like [`prepare_membership_check`] for several records at once (an `in` condition on the
/// primary key): which of them does the dynamic list hold?
pub(crate) fn prepare_membership_check_of(
    xml: &str,
    entity: &str,
    key: &str,
    record_ids: &[String],
) -> Result<String, DataverseError> {
    let ids = record_ids
        .iter()
        .map(|id| filter::guid(id))
        .collect::<Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err(DataverseError::invalid(
            "FetchXML",
            "a membership check needs at least one record",
        ));
    }
    prepare(xml, entity, key, &[], Some(&ids)).map_err(invalid_fetch)
}

fn prepare(
    xml: &str,
    entity: &str,
    key: &str,
    attributes: &[&str],
    only_records: Option<&[String]>,
) -> Result<String, String> {
    let mut reader = Reader::from_str(xml);
    let mut writer = Writer::new(Vec::with_capacity(xml.len() + 256));
    let mut depth = 0usize;
    let mut content: Option<EntityContent> = None;
    let mut found_entity = false;
    let check_entity = |element: &BytesStart<'_>| -> Result<(), String> {
        let name = attr_value(element, "name")?.unwrap_or_default();
        if name == entity {
            Ok(())
        } else {
            Err(format!("the query selects {name:?}, not {entity:?}"))
        }
    };
    loop {
        match reader.read_event().map_err(xml_error)? {
            Event::Eof => break,
            Event::Start(element) => {
                if depth == 0 {
                    check_root(&element)?;
                } else if depth == 1 && element.name().as_ref() == "entity" {
                    check_entity(&element)?;
                    found_entity = true;
                    content = Some(EntityContent::default());
                } else if depth == 2
                    && let Some(content) = content.as_mut()
                {
                    content.note(&element, key)?;
                }
                depth += 1;
                writer
                    .write_event(Event::Start(element))
                    .map_err(xml_error)?;
            }
            Event::Empty(element) => {
                if depth == 0 {
                    check_root(&element)?;
                    return Err("the <fetch> element is empty".to_string());
                }
                if depth == 1 && element.name().as_ref() == "entity" {
                    check_entity(&element)?;
                    found_entity = true;
                    writer
                        .write_event(Event::Start(element.into_owned()))
                        .map_err(xml_error)?;
                    EntityContent::default().write_missing(
                        &mut writer,
                        key,
                        attributes,
                        only_records,
                    )?;
                    writer
                        .write_event(Event::End(BytesEnd::new("entity")))
                        .map_err(xml_error)?;
                    continue;
                }
                if depth == 2
                    && let Some(content) = content.as_mut()
                {
                    content.note(&element, key)?;
                }
                writer
                    .write_event(Event::Empty(element))
                    .map_err(xml_error)?;
            }
            Event::End(element) => {
                depth = depth.saturating_sub(1);
                if depth == 1
                    && let Some(content) = content.take()
                {
                    content.write_missing(&mut writer, key, attributes, only_records)?;
                }
                writer.write_event(Event::End(element)).map_err(xml_error)?;
            }
            other => writer.write_event(other).map_err(xml_error)?,
        }
    }
    if !found_entity {
        return Err("no <entity> element under <fetch>".to_string());
    }
    String::from_utf8(writer.into_inner()).map_err(xml_error)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    /// The annotation of the first page in Microsoft's paging example (PA-fetch).
    const ANNOTATION: &str = "<cookie pagenumber=\"2\" pagingcookie=\"%253ccookie%2520page%253d%25221%2522%253e%253cfullname%2520last%253d%2522Robert%2520Lyon%2520%2528sample%2529%2522%2520first%253d%2522Susanna%2520Stubberod%2520%2528sample%2529%2522%2520%252f%253e%253ccontactid%2520last%253d%2522%257b30717E9C-643F-ED11-9DB0-002248225E95%257d%2522%2520first%253d%2522%257b20717E9C-643F-ED11-9DB0-002248225E95%257d%2522%2520%252f%253e%253c%252fcookie%253e\" istracking=\"False\" />";
    const DECODED: &str = "<cookie page=\"1\"><fullname last=\"Robert Lyon (sample)\" first=\"Susanna Stubberod (sample)\" /><contactid last=\"{30717E9C-643F-ED11-9DB0-002248225E95}\" first=\"{20717E9C-643F-ED11-9DB0-002248225E95}\" /></cookie>";

    #[test]
    fn the_paging_cookie_is_url_decoded_twice() {
        assert_eq!(
            paging_cookie_from_annotation(ANNOTATION)
                .ok()
                .flatten()
                .as_deref(),
            Some(DECODED)
        );
    }

    #[test]
    fn the_cookie_goes_xml_escaped_into_the_next_request() {
        let xml = "<fetch page='1' count='3' paging-cookie='' mapping='logical' distinct='false'>\n  <entity name='contact'><attribute name='fullname' /></entity>\n</fetch>";
        let paged = set_paging(
            xml,
            Some(&Paging {
                page: 2,
                count: 3,
                cookie: Some(DECODED),
            }),
        )
        .unwrap();
        assert_eq!(
            paged,
            "<fetch mapping=\"logical\" distinct=\"false\" page=\"2\" count=\"3\" paging-cookie=\"&lt;cookie page=&quot;1&quot;&gt;&lt;fullname last=&quot;Robert Lyon (sample)&quot; first=&quot;Susanna Stubberod (sample)&quot; /&gt;&lt;contactid last=&quot;{30717E9C-643F-ED11-9DB0-002248225E95}&quot; first=&quot;{20717E9C-643F-ED11-9DB0-002248225E95}&quot; /&gt;&lt;/cookie&gt;\">\n  <entity name='contact'><attribute name='fullname' /></entity>\n</fetch>"
        );
    }

    #[test]
    fn a_cookie_that_could_break_the_xml_stays_inside_the_attribute() {
        let paged = set_paging(
            "<fetch><entity name=\"contact\"/></fetch>",
            Some(&Paging {
                page: 2,
                count: 10,
                cookie: Some("\"/><evil/><x a=\"'&"),
            }),
        )
        .unwrap();
        let mut reader = Reader::from_str(&paged);
        let mut names = Vec::new();
        loop {
            match reader.read_event().unwrap() {
                Event::Start(e) | Event::Empty(e) => names.push(e.name().as_ref().to_string()),
                Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(names, ["fetch", "entity"]);
    }

    #[test]
    fn a_root_that_is_not_fetch_is_refused() {
        assert!(
            set_paging(
                "<entity name='contact'/>",
                Some(&Paging {
                    page: 1,
                    count: 5,
                    cookie: None
                })
            )
            .is_err()
        );
        assert!(root_has_top("just text").is_err());
        assert_eq!(
            root_has_top("<fetch top='5'><entity name='a'/></fetch>"),
            Ok(true)
        );
        assert_eq!(root_has_top("<fetch><entity name='a'/></fetch>"), Ok(false));
    }

    #[test]
    fn a_dynamic_list_query_gets_its_key_attributes_and_a_stable_order() {
        let query = "<fetch version=\"1.0\" output-format=\"xml-platform\" mapping=\"logical\" distinct=\"false\"><entity name=\"contact\"><attribute name=\"fullname\" /><order attribute=\"fullname\" descending=\"false\" /><filter type=\"and\"><condition attribute=\"address1_city\" operator=\"eq\" value=\"M&amp;ünchen\" /></filter><link-entity name=\"account\" from=\"accountid\" to=\"parentcustomerid\"><attribute name=\"name\" /></link-entity></entity></fetch>";
        let prepared = prepare_member_query(
            query,
            "contact",
            "contactid",
            &["emailaddress1", "fullname"],
        )
        .unwrap();
        assert_eq!(
            prepared,
            "<fetch version=\"1.0\" output-format=\"xml-platform\" mapping=\"logical\" distinct=\"false\"><entity name=\"contact\"><attribute name=\"fullname\" /><order attribute=\"fullname\" descending=\"false\" /><filter type=\"and\"><condition attribute=\"address1_city\" operator=\"eq\" value=\"M&amp;ünchen\" /></filter><link-entity name=\"account\" from=\"accountid\" to=\"parentcustomerid\"><attribute name=\"name\" /></link-entity><attribute name=\"contactid\"/><attribute name=\"emailaddress1\"/><order attribute=\"contactid\" descending=\"false\"/></entity></fetch>"
        );
    }

    #[test]
    fn a_query_that_has_everything_is_left_as_it_is() {
        let query = "<fetch><entity name='lead'><all-attributes/><order attribute='leadid'/></entity></fetch>";
        assert_eq!(
            prepare_member_query(query, "lead", "leadid", &["emailaddress1"]).unwrap(),
            query
        );
    }

    #[test]
    fn a_query_for_another_table_is_refused() {
        let err = prepare_member_query(
            "<fetch><entity name='account'/></fetch>",
            "contact",
            "contactid",
            &[],
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("account") && err.contains("contact"), "{err}");
    }

    #[test]
    fn an_empty_entity_element_is_expanded() {
        assert_eq!(
            prepare_member_query(
                "<fetch><entity name='contact'/></fetch>",
                "contact",
                "contactid",
                &[]
            )
            .unwrap(),
            "<fetch><entity name='contact'><attribute name=\"contactid\"/><order attribute=\"contactid\" descending=\"false\"/></entity></fetch>"
        );
    }
}
