//! Web resources (`webresourceset`) and system forms (`systemforms`, with `formxml`): the rules
//! Dataverse applies when they are written, publishing, and the main forms a new org has.
//!
//! - **Saved and published.** A write changes the saved version; the app and a plain `GET`
//!   (Retrieve, RetrieveMultiple) see the published one until `PublishXml` publishes it
//!   (Dataverse has `RetrieveUnpublished` for the saved one). The published `content` and
//!   `formxml` are kept in the row under keys that are not columns; `componentstate` is 1
//!   (unpublished) until the first publish, then 0. A component never published is read as
//!   saved.
//! - **FormXml** is checked against the Form XML schema's structure (`<form>` with its `xs:all`
//!   children, tabs, columns, sections, rows, cells, controls, `formLibraries`, `events`) and,
//!   pessimistically, against the org: a bound control's column, a web resource control's page
//!   and a form library must exist; a handler's library must be one of the form's libraries;
//!   control ids are unique.
//! - **Web resource names** carry a publisher's customization prefix (`crc_/…`), use letters,
//!   digits, `_`, `.` and single `/`, and are unique; `content` is base64.

use super::catalog::stable_id;
use super::error::{ApiError, code};
use super::schema::Table;
use super::store::{self, Row, Store, Val};
use super::xml::{self, Element};
use std::borrow::Cow;
use std::collections::BTreeSet;
use uuid::Uuid;

/// Where a row keeps its published `content` / `formxml` (not columns: never read or written
/// through the Web API as such).
pub const PUBLISHED_CONTENT: &str = "@published:content";
pub const PUBLISHED_FORMXML: &str = "@published:formxml";

/// `classid` of the HTML web resource control (`<control>` reference, L-CTRL).
pub const WEB_RESOURCE_CONTROL: &str = "{9FDF5F91-88B1-47f4-AD53-C11EFC01A01D}";
/// `classid`s of field controls used by the seeded forms.
const TEXT: &str = "{4273EDBD-AC1D-40d3-9FB2-095C621B552D}";
const EMAIL: &str = "{ADA2203E-B4CD-49be-9DDF-234642B43B52}";
const MEMO: &str = "{E0DECE4B-6FC8-4a8f-A065-082708572369}";
const LOOKUP: &str = "{270BD3DB-D9AF-4782-9025-509E298DEC0A}";
const PICKLIST: &str = "{3EF39988-22BB-4f0b-BBBE-64B5A3748AEE}";
const CHECKBOX: &str = "{67FAC785-CD58-4F9F-ABB3-4B7DDC6ED5ED}";
const DATETIME: &str = "{5B773807-9FB2-42db-97C3-7A91EFF8ADFF}";

/// `webresourcetype` of scripts: the only kind a form library may be.
const SCRIPT: i64 = 3;

/// A row as the app and a plain `GET` see it: the published `content` / `formxml` where one
/// was published.
pub fn published_view<'a>(table: &Table, row: &'a Row) -> Cow<'a, Row> {
    let (column, key) = match table.logical {
        "webresource" => ("content", PUBLISHED_CONTENT),
        "systemform" => ("formxml", PUBLISHED_FORMXML),
        _ => return Cow::Borrowed(row),
    };
    match row.get(key) {
        Some(published) => {
            let mut view = row.clone();
            view.insert(column, published.clone());
            Cow::Owned(view)
        }
        None => Cow::Borrowed(row),
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code::VALIDATION, message)
}

fn text(row: &Row, column: &str) -> String {
    row.get(column)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

fn require(row: &Row, table: &Table, column: &str) -> Result<(), ApiError> {
    if row.contains_key(column) {
        return Ok(());
    }
    Err(invalid(format!(
        "A validation error occurred. The attribute '{column}' of the '{}' entity is required.",
        table.logical
    )))
}

/// Whether `text` is strict base64 (the alphabet, `=` padding only at the end, whole quads).
pub fn is_base64(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return false;
    }
    let padding = bytes.iter().rev().take_while(|b| **b == b'=').count();
    padding <= 2
        && bytes[..bytes.len() - padding]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// The customization prefixes of the org's publishers.
fn prefixes(store: &Store) -> Vec<String> {
    store
        .table_rows("publisher")
        .filter_map(|(_, r)| r.get("customizationprefix").and_then(|v| v.as_str()))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Table rules of `webresource` (called by the write path with the row as it will be).
pub fn webresource_rules(
    store: &Store,
    table: &Table,
    row: &mut Row,
    creating: bool,
) -> Result<(), ApiError> {
    for column in ["name", "webresourcetype", "content"] {
        require(row, table, column)?;
    }
    let name = text(row, "name");
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/'));
    if name.is_empty() || !valid_chars || name.contains("//") || name.starts_with('/') {
        return Err(invalid(format!(
            "The web resource name '{name}' is not valid: use letters, digits, '_', '.' and single '/' characters."
        )));
    }
    let lower = name.to_ascii_lowercase();
    if !prefixes(store)
        .iter()
        .any(|p| lower.starts_with(&format!("{p}_")))
    {
        return Err(invalid(format!(
            "The web resource name '{name}' must start with the customization prefix of a publisher followed by '_' (e.g. 'new_')."
        )));
    }
    let own = row.get("webresourceid").and_then(|v| v.guid());
    let taken = store.table_rows("webresource").any(|(id, other)| {
        Some(*id) != own
            && other
                .get("name")
                .and_then(|v| v.as_str())
                .is_some_and(|n| n.eq_ignore_ascii_case(&name))
    });
    if taken {
        return Err(ApiError::bad_request(
            "0x80047010",
            format!("A web resource with the name '{name}' already exists."),
        ));
    }
    if !is_base64(&text(row, "content")) {
        return Err(invalid(format!(
            "The content of the web resource '{name}' is not valid base64."
        )));
    }
    if creating {
        row.insert("componentstate", Val::Int(1));
        row.insert("ismanaged", Val::Bool(false));
    }
    Ok(())
}

/// Table rules of `systemform`.
pub fn systemform_rules(
    store: &Store,
    table: &Table,
    row: &mut Row,
    creating: bool,
) -> Result<(), ApiError> {
    for column in ["name", "objecttypecode", "type", "formxml"] {
        require(row, table, column)?;
    }
    let entity = text(row, "objecttypecode");
    if store.catalog().table(&entity).is_none() {
        return Err(invalid(format!(
            "The objecttypecode '{entity}' of the form is not a table of this organization."
        )));
    }
    validate_formxml(store, &entity, &text(row, "formxml")).map_err(|e| {
        invalid(format!(
            "The form XML of '{}' is not valid: {e}",
            text(row, "name")
        ))
    })?;
    if creating {
        row.insert("componentstate", Val::Int(1));
        row.insert("ismanaged", Val::Bool(false));
        row.entry("formactivationstate").or_insert(Val::Int(1));
    }
    Ok(())
}

/// `{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}` (FormGuidType).
fn is_form_guid(text: &str) -> bool {
    text.len() == 38
        && text.starts_with('{')
        && text.ends_with('}')
        && store::parse_guid(text).is_some()
}

fn only_children(e: &Element, allowed: &[&str], place: &str) -> Result<(), String> {
    for child in &e.children {
        if !allowed.contains(&child.name.as_str()) {
            return Err(format!("<{}> is not allowed in {place}", child.name));
        }
    }
    Ok(())
}

/// `xs:all`: each child at most once.
fn at_most_once(e: &Element, place: &str) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for child in &e.children {
        if !seen.insert(child.name.as_str()) {
            return Err(format!(
                "<{}> appears more than once in {place}",
                child.name
            ));
        }
    }
    Ok(())
}

fn child<'a>(e: &'a Element, name: &str) -> Option<&'a Element> {
    e.children.iter().find(|c| c.name == name)
}

fn guid_attr(e: &Element, name: &str, place: &str) -> Result<(), String> {
    match e.attr(name) {
        Some(v) if !is_form_guid(v) => {
            Err(format!("{place}: {name}=\"{v}\" is not a GUID in braces"))
        }
        _ => Ok(()),
    }
}

fn labels(e: &Element, place: &str) -> Result<(), String> {
    only_children(e, &["label"], place)?;
    for label in &e.children {
        let code = label.attr("languagecode").unwrap_or_default();
        if label.attr("description").is_none() || code.parse::<u32>().map_or(true, |c| c == 0) {
            return Err(format!(
                "{place}: a <label> needs description and a positive languagecode"
            ));
        }
    }
    Ok(())
}

/// What a form's check needs from the org, and what it collects on the way.
struct FormCheck<'a> {
    store: &'a Store,
    table: &'static Table,
    control_ids: BTreeSet<String>,
}

impl FormCheck<'_> {
    fn web_resource(&self, name: &str) -> Option<&Row> {
        self.store
            .table_rows("webresource")
            .map(|(_, r)| r)
            .find(|r| {
                r.get("name")
                    .and_then(|v| v.as_str())
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
    }

    fn control(&mut self, control: &Element, place: &str) -> Result<(), String> {
        only_children(control, &["labels", "parameters"], place)?;
        let id = control.attr("id").unwrap_or_default();
        if !id.is_empty() && !self.control_ids.insert(id.to_ascii_lowercase()) {
            return Err(format!("the control id '{id}' is used more than once"));
        }
        guid_attr(control, "classid", place)?;
        if let Some(field) = control.attr("datafieldname")
            && self.table.column(&field.to_ascii_lowercase()).is_none()
        {
            return Err(format!(
                "the control '{id}' is bound to '{field}', which is not a column of {}",
                self.table.logical
            ));
        }
        if control
            .attr("classid")
            .is_some_and(|c| c.eq_ignore_ascii_case(WEB_RESOURCE_CONTROL))
        {
            let url = child(control, "parameters")
                .and_then(|p| child(p, "Url"))
                .map(|u| u.text.trim().to_string())
                .unwrap_or_default();
            if url.is_empty() {
                return Err(format!("the web resource control '{id}' has no <Url>"));
            }
            if self.web_resource(&url).is_none() {
                return Err(format!(
                    "the web resource control '{id}' shows '{url}', which is not a web resource of this organization"
                ));
            }
        }
        Ok(())
    }

    fn rows(&mut self, rows: &Element, place: &str) -> Result<(), String> {
        only_children(rows, &["row"], place)?;
        for row in &rows.children {
            only_children(row, &["cell"], place)?;
            for cell in &row.children {
                only_children(cell, &["labels", "control", "events"], place)?;
                at_most_once(cell, place)?;
                guid_attr(cell, "id", place)?;
                if let Some(l) = child(cell, "labels") {
                    labels(l, place)?;
                }
                if let Some(c) = child(cell, "control") {
                    self.control(c, place)?;
                }
            }
        }
        Ok(())
    }

    fn tab(&mut self, tab: &Element) -> Result<(), String> {
        let place = format!("tab '{}'", tab.attr("name").unwrap_or_default());
        only_children(
            tab,
            &["labels", "tabheader", "tabfooter", "columns", "events"],
            &place,
        )?;
        at_most_once(tab, &place)?;
        guid_attr(tab, "id", &place)?;
        if let Some(l) = child(tab, "labels") {
            labels(l, &place)?;
        }
        let columns = child(tab, "columns").ok_or_else(|| format!("{place} has no <columns>"))?;
        only_children(columns, &["column"], &place)?;
        if !(1..=3).contains(&columns.children.len()) {
            return Err(format!("{place} must have 1 to 3 columns"));
        }
        for column in &columns.children {
            let width = column.attr("width").unwrap_or_default();
            let percent = width.strip_suffix('%').and_then(|n| n.parse::<u32>().ok());
            if percent.is_none_or(|p| p > 100) {
                return Err(format!(
                    "{place}: a <column> needs a width like \"100%\", not \"{width}\""
                ));
            }
            only_children(column, &["sections"], &place)?;
            for sections in &column.children {
                only_children(sections, &["section"], &place)?;
                for section in &sections.children {
                    let place = format!(
                        "{place}, section '{}'",
                        section.attr("name").unwrap_or_default()
                    );
                    only_children(section, &["labels", "rows"], &place)?;
                    at_most_once(section, &place)?;
                    guid_attr(section, "id", &place)?;
                    if let Some(l) = child(section, "labels") {
                        labels(l, &place)?;
                    }
                    if let Some(rows) = child(section, "rows") {
                        self.rows(rows, &place)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn header_footer(&mut self, e: &Element) -> Result<(), String> {
        let place = format!("<{}>", e.name);
        if !e.attr("id").is_some_and(is_form_guid) {
            return Err(format!("{place} needs an id (a GUID in braces)"));
        }
        only_children(e, &["rows"], &place)?;
        let rows = child(e, "rows").ok_or_else(|| format!("{place} has no <rows>"))?;
        self.rows(rows, &place)
    }

    fn libraries(&self, e: &Element) -> Result<Vec<String>, String> {
        only_children(e, &["Library"], "<formLibraries>")?;
        if !(1..=50).contains(&e.children.len()) {
            return Err("<formLibraries> holds 1 to 50 libraries".into());
        }
        let mut names = Vec::new();
        for library in &e.children {
            let (Some(name), Some(_)) = (library.attr("name"), library.attr("libraryUniqueId"))
            else {
                return Err("a <Library> needs name and libraryUniqueId".into());
            };
            if names.iter().any(|n: &String| n.eq_ignore_ascii_case(name)) {
                return Err(format!("the library '{name}' is listed twice"));
            }
            match self.web_resource(name) {
                None => {
                    return Err(format!(
                        "the form library '{name}' is not a web resource of this organization"
                    ));
                }
                Some(r) if r.get("webresourcetype").and_then(|v| v.as_int()) != Some(SCRIPT) => {
                    return Err(format!("the form library '{name}' is not a script"));
                }
                Some(_) => names.push(name.to_string()),
            }
        }
        Ok(names)
    }
}

fn events(e: &Element, libraries: &[String], place: &str) -> Result<(), String> {
    only_children(e, &["event"], place)?;
    if e.children.is_empty() {
        return Err(format!("<events> in {place} holds no <event>"));
    }
    for event in &e.children {
        only_children(
            event,
            &["Handlers", "InternalHandlers", "dependencies"],
            place,
        )?;
        at_most_once(event, place)?;
        let Some(handlers) = child(event, "Handlers") else {
            continue;
        };
        only_children(handlers, &["Handler"], place)?;
        if handlers.children.len() > 50 {
            return Err(format!("an event in {place} has more than 50 handlers"));
        }
        for h in &handlers.children {
            let (Some(function), Some(library), Some(_)) = (
                h.attr("functionName"),
                h.attr("libraryName"),
                h.attr("handlerUniqueId"),
            ) else {
                return Err(format!(
                    "a <Handler> in {place} needs functionName, libraryName and handlerUniqueId"
                ));
            };
            if !libraries.iter().any(|l| l.eq_ignore_ascii_case(library)) {
                return Err(format!(
                    "the handler {function} calls the library '{library}', which is not in the form's <formLibraries>"
                ));
            }
        }
    }
    Ok(())
}

/// The top-level children of `<form>` (FormType, `xs:all`).
const FORM_CHILDREN: [&str; 16] = [
    "ancestor",
    "hiddencontrols",
    "controlDescriptions",
    "tabs",
    "header",
    "footer",
    "events",
    "formLibraries",
    "externaldependencies",
    "formparameters",
    "clientresources",
    "Navigation",
    "DisplayConditions",
    "RibbonDiffXml",
    "IntroducedVersion",
    "LocalizedNames",
];

/// Checks a form's XML for the table `entity`; the error says what is wrong and where.
pub fn validate_formxml(store: &Store, entity: &str, formxml: &str) -> Result<(), String> {
    let table = store
        .catalog()
        .table(entity)
        .ok_or_else(|| format!("'{entity}' is not a table"))?;
    let form = xml::parse(formxml)?;
    if form.name != "form" {
        return Err(format!("the root element is <{}>, not <form>", form.name));
    }
    only_children(&form, &FORM_CHILDREN, "<form>")?;
    at_most_once(&form, "<form>")?;
    let tabs = child(&form, "tabs").ok_or("<form> has no <tabs>")?;
    only_children(tabs, &["tab"], "<tabs>")?;
    if !(1..=100).contains(&tabs.children.len()) {
        return Err("<tabs> holds 1 to 100 tabs".into());
    }
    let mut check = FormCheck {
        store,
        table,
        control_ids: BTreeSet::new(),
    };
    for tab in &tabs.children {
        check.tab(tab)?;
    }
    for name in ["header", "footer"] {
        if let Some(e) = child(&form, name) {
            check.header_footer(e)?;
        }
    }
    let libraries = match child(&form, "formLibraries") {
        Some(e) => check.libraries(e)?,
        None => Vec::new(),
    };
    if let Some(e) = child(&form, "events") {
        events(e, &libraries, "<form>")?;
    }
    Ok(())
}

/// Publishes a web resource (`PublishXml` `<webresource>`): its saved content becomes what
/// the app and reads see.
pub fn publish_webresource(store: &mut Store, id: Uuid) -> Result<(), String> {
    let mut row = store
        .get("webresource", &id)
        .cloned()
        .ok_or_else(|| format!("The web resource {id} in ParameterXml does not exist."))?;
    if let Some(content) = row.get("content").cloned() {
        row.insert(PUBLISHED_CONTENT, content);
    }
    row.insert("componentstate", Val::Int(0));
    store.put("webresource", id, row);
    Ok(())
}

/// Publishes the forms of a table (`PublishXml` `<entity>`).
pub fn publish_forms(store: &mut Store, entity: &str) {
    let forms: Vec<(Uuid, Row)> = store
        .table_rows("systemform")
        .filter(|(_, r)| r.get("objecttypecode").and_then(|v| v.as_str()) == Some(entity))
        .map(|(id, r)| (*id, r.clone()))
        .collect();
    let now = store::now();
    for (id, mut row) in forms {
        if let Some(xml) = row.get("formxml").cloned() {
            row.insert(PUBLISHED_FORMXML, xml);
        }
        row.insert("componentstate", Val::Int(0));
        row.insert("publishedon", Val::Date(now));
        store.put("systemform", id, row);
    }
}

// ----- the forms of a new org ---------------------------------------------------------------

/// A field on a seeded form: column, label, control class.
type Field = (&'static str, &'static str, &'static str);

fn braced_id(seed: &str) -> String {
    format!("{{{}}}", stable_id(seed).hyphenated())
}

fn label(text: &str) -> String {
    format!(
        "<labels><label description=\"{}\" languagecode=\"1033\" /></labels>",
        xml::escape_attr(text)
    )
}

/// A cell with a bound control; header controls' ids start with `header_`, as in Dynamics.
fn cell(form: &str, prefix: &str, (column, text, class): &Field) -> String {
    format!(
        "<cell id=\"{}\" showlabel=\"true\">{}<control id=\"{prefix}{column}\" classid=\"{class}\" datafieldname=\"{column}\" /></cell>",
        braced_id(&format!("{form}:cell:{column}")),
        label(text)
    )
}

/// A form's XML as Dynamics ships it, in shape: tabs of one section each, a field per row, and
/// a header whose fields share one row.
fn form_xml(form: &str, tabs: &[(&str, &str, &[Field])], header: &[Field]) -> String {
    let mut xml = String::from("<form showImage=\"true\" shownavigationbar=\"true\"><tabs>");
    for (name, title, fields) in tabs {
        let rows: String = fields
            .iter()
            .map(|f| format!("<row>{}</row>", cell(form, "", f)))
            .collect();
        xml.push_str(&format!(
            "<tab name=\"{name}\" id=\"{}\" IsUserDefined=\"0\" verticallayout=\"true\" expanded=\"true\" showlabel=\"true\">{}<columns><column width=\"100%\"><sections><section name=\"{name}_section\" id=\"{}\" showlabel=\"true\" showbar=\"false\" columns=\"1\" IsUserDefined=\"0\">{}<rows>{rows}</rows></section></sections></column></columns></tab>",
            braced_id(&format!("{form}:tab:{name}")),
            label(title),
            braced_id(&format!("{form}:section:{name}")),
            label(title),
        ));
    }
    xml.push_str("</tabs>");
    if !header.is_empty() {
        let header_form = format!("{form}:header");
        let cells: String = header
            .iter()
            .map(|f| cell(&header_form, "header_", f))
            .collect();
        xml.push_str(&format!(
            "<header id=\"{}\" celllabelposition=\"Top\" columns=\"111\"><rows><row>{cells}</row></rows></header>",
            braced_id(&header_form)
        ));
    }
    xml.push_str("</form>");
    xml
}

/// A seeded form: table, name, type, default, XML.
pub struct SeedForm {
    pub entity: &'static str,
    pub name: &'static str,
    pub form_type: i64,
    pub is_default: bool,
    pub xml: String,
}

/// The main (and a few other) forms of the tables the connector works with, as a new org has
/// them: one default main form per table; contact also has a second main form and a quick
/// create form, so that finding "the main form" must mean something.
pub fn seed_forms() -> Vec<SeedForm> {
    let owner: &[Field] = &[("ownerid", "Owner", LOOKUP)];
    let main = |entity, name, tabs: &[(&str, &str, &[Field])], header: &[Field]| SeedForm {
        entity,
        name,
        form_type: 2,
        is_default: true,
        xml: form_xml(name, tabs, header),
    };
    let mut forms = vec![
        main(
            "account",
            "Account",
            &[(
                "SUMMARY_TAB",
                "Summary",
                &[
                    ("name", "Account Name", TEXT),
                    ("emailaddress1", "Email", EMAIL),
                    ("telephone1", "Phone", TEXT),
                    ("primarycontactid", "Primary Contact", LOOKUP),
                    ("donotbulkemail", "Do not allow Bulk Emails", CHECKBOX),
                ],
            )],
            owner,
        ),
        main(
            "contact",
            "Contact",
            &[
                (
                    "SUMMARY_TAB",
                    "Summary",
                    &[
                        ("firstname", "First Name", TEXT),
                        ("lastname", "Last Name", TEXT),
                        ("jobtitle", "Job Title", TEXT),
                        ("emailaddress1", "Email", EMAIL),
                        ("parentcustomerid", "Company Name", LOOKUP),
                        ("donotbulkemail", "Do not allow Bulk Emails", CHECKBOX),
                    ],
                ),
                (
                    "DETAILS_TAB",
                    "Details",
                    &[
                        ("birthdate", "Birthday", DATETIME),
                        ("description", "Description", MEMO),
                    ],
                ),
            ],
            owner,
        ),
        main(
            "lead",
            "Lead",
            &[(
                "SUMMARY_TAB",
                "Summary",
                &[
                    ("subject", "Topic", TEXT),
                    ("firstname", "First Name", TEXT),
                    ("lastname", "Last Name", TEXT),
                    ("companyname", "Company", TEXT),
                    ("emailaddress1", "Email", EMAIL),
                    ("campaignid", "Source Campaign", LOOKUP),
                    ("donotbulkemail", "Do not allow Bulk Emails", CHECKBOX),
                ],
            )],
            owner,
        ),
        main(
            "list",
            "Marketing List",
            &[(
                "SUMMARY_TAB",
                "Summary",
                &[
                    ("listname", "Name", TEXT),
                    ("type", "Type", CHECKBOX),
                    ("createdfromcode", "Targeted At", PICKLIST),
                    ("purpose", "Purpose", TEXT),
                    ("description", "Description", MEMO),
                ],
            )],
            owner,
        ),
        main(
            "campaign",
            "Campaign",
            &[(
                "SUMMARY_TAB",
                "Summary",
                &[
                    ("name", "Name", TEXT),
                    ("codename", "Campaign Code", TEXT),
                    ("typecode", "Campaign Type", PICKLIST),
                    ("proposedstart", "Proposed Start", DATETIME),
                    ("description", "Description", MEMO),
                ],
            )],
            owner,
        ),
        main(
            "campaignactivity",
            "Campaign Activity",
            &[(
                "SUMMARY_TAB",
                "Summary",
                &[
                    ("subject", "Subject", TEXT),
                    ("regardingobjectid", "Parent Campaign", LOOKUP),
                    ("channeltypecode", "Channel", PICKLIST),
                    ("scheduledstart", "Scheduled Start", DATETIME),
                    ("description", "Description", MEMO),
                ],
            )],
            owner,
        ),
    ];
    forms.push(SeedForm {
        is_default: false,
        ..main(
            "contact",
            "Contact (Sales Insights)",
            &[(
                "SUMMARY_TAB",
                "Summary",
                &[
                    ("fullname", "Full Name", TEXT),
                    ("emailaddress1", "Email", EMAIL),
                ],
            )],
            &[],
        )
    });
    forms.push(SeedForm {
        form_type: 7,
        is_default: true,
        ..main(
            "contact",
            "Contact Quick Create",
            &[(
                "QUICK_CREATE_TAB",
                "Quick Create",
                &[
                    ("firstname", "First Name", TEXT),
                    ("lastname", "Last Name", TEXT),
                    ("emailaddress1", "Email", EMAIL),
                ],
            )],
            &[],
        )
    });
    forms
}

/// Puts the seeded forms into a new org, published.
pub fn seed(store: &mut Store) {
    let now = store::now();
    for form in seed_forms() {
        let id = stable_id(&format!("systemform:{}:{}", form.entity, form.name));
        let mut row = Row::new();
        row.insert("formid", Val::Guid(id));
        row.insert("name", Val::Str(form.name.to_string()));
        row.insert("objecttypecode", Val::Str(form.entity.to_string()));
        row.insert("type", Val::Int(form.form_type));
        row.insert("formxml", Val::Str(form.xml.clone()));
        row.insert(PUBLISHED_FORMXML, Val::Str(form.xml));
        row.insert("isdefault", Val::Bool(form.is_default));
        row.insert("formactivationstate", Val::Int(1));
        row.insert("ismanaged", Val::Bool(true));
        row.insert("componentstate", Val::Int(0));
        row.insert("publishedon", Val::Date(now));
        row.insert("createdon", Val::Date(now));
        row.insert("modifiedon", Val::Date(now));
        row.insert("versionnumber", Val::Int(store.next_version()));
        store.put("systemform", id, row);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_checked_strictly() {
        assert!(is_base64("PGh0bWw+"));
        assert!(is_base64("YQ=="));
        assert!(is_base64(""));
        assert!(!is_base64("YQ="));
        assert!(!is_base64("Y Q=="));
        assert!(!is_base64("=YQ="));
    }

    #[test]
    fn every_seeded_form_is_valid_for_its_table() {
        let mut store = Store::new();
        for form in seed_forms() {
            validate_formxml(&store, form.entity, &form.xml)
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", form.name, form.xml));
        }
        seed(&mut store);
        assert_eq!(store.table_rows("systemform").count(), seed_forms().len());
    }
}
