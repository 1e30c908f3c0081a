//! The installer's forms phase: the newsletter checklist control (docs/architecture.md §7).
//!
//! 1. The web resources under `crc_/checklist/` (the page, its script and style sheet, and
//!    the form script), embedded in the installer from `tools/installer/webresources/`: each
//!    is created, or updated when its content differs, found by name.
//! 2. The default main form of contact, lead, marketing list, campaign and campaign activity
//!    gets what the control needs, where it is missing: a section with the control
//!    (`WebResource_crc_checklist`) and the hidden fields it reads and writes (`crc_checklist`;
//!    on sources also the sync fields, on marketing lists the retroactive sync fields), the
//!    form library `crc_/checklist/form.js` and the OnLoad handler that passes the form context
//!    in (`CleverReach.Checklist.onLoad`). Only the missing pieces are added; the rest of the
//!    form's XML stays as it was, byte for byte.
//! 3. `PublishXml` for the changed forms' tables and web resources.
//!
//! Plan first, like the schema phase: [`plan_forms`] only reads; a form whose XML cannot be
//! read, a table without a main form or a web resource of the same name and another type is
//! a conflict, and nothing is changed while there is one.

use crate::formxml::{self, Edits, Node};
use crate::schema_phase::{Conflict, failed};
use crate::{InstallError, PlanItem};
use shared::adapters::dataverse::client::{
    CustomRequest, DataverseClient, DataverseError, Query, filter,
};
use shared::adapters::dataverse::schema::{self, ColumnSpec, ColumnType, ENGLISH, GERMAN};
use std::collections::BTreeSet;

/// `webresourcetype`: 1 HTML, 2 CSS, 3 script (JScript).
pub const HTML: i64 = 1;
pub const CSS: i64 = 2;
pub const SCRIPT: i64 = 3;

/// A web resource the installer uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebResourceSpec {
    pub name: &'static str,
    pub display_name: &'static str,
    pub kind: i64,
    pub content: &'static str,
}

impl WebResourceSpec {
    /// `content` as Dataverse stores it.
    pub fn base64(&self) -> String {
        base64(self.content.as_bytes())
    }

    fn kind_words(&self) -> &'static str {
        match self.kind {
            HTML => "web page (HTML)",
            CSS => "style sheet (CSS)",
            _ => "script (JScript)",
        }
    }
}

/// The page shown in the form.
pub const PAGE: &str = "crc_/checklist/checklist.html";
/// The form script (form library) with the OnLoad handler.
pub const LIBRARY: &str = "crc_/checklist/form.js";
pub const HANDLER: &str = "CleverReach.Checklist.onLoad";
/// The control's id on the form: the name the form script passes to `getControl`.
pub const CONTROL_ID: &str = "WebResource_crc_checklist";
/// The section the installer adds.
pub const SECTION: &str = "crc_checklist_section";

/// The checklist's web resources, in the order they are created (the page's parts first).
pub const WEB_RESOURCES: [WebResourceSpec; 4] = [
    WebResourceSpec {
        name: "crc_/checklist/checklist.css",
        display_name: "CleverReach checklist: style sheet",
        kind: CSS,
        content: include_str!("../webresources/crc_/checklist/checklist.css"),
    },
    WebResourceSpec {
        name: "crc_/checklist/checklist.js",
        display_name: "CleverReach checklist: script",
        kind: SCRIPT,
        content: include_str!("../webresources/crc_/checklist/checklist.js"),
    },
    WebResourceSpec {
        name: PAGE,
        display_name: "CleverReach newsletter checklist",
        kind: HTML,
        content: include_str!("../webresources/crc_/checklist/checklist.html"),
    },
    WebResourceSpec {
        name: LIBRARY,
        display_name: "CleverReach checklist: form script",
        kind: SCRIPT,
        content: include_str!("../webresources/crc_/checklist/form.js"),
    },
];

/// The tables whose main form gets the control.
pub const FORM_TABLES: [&str; 5] = ["contact", "lead", "list", "campaign", "campaignactivity"];

/// `classid` of the HTML web resource control and of field controls by column type.
const WEB_RESOURCE_CONTROL: &str = "{9FDF5F91-88B1-47f4-AD53-C11EFC01A01D}";
fn field_class(column: &ColumnType) -> &'static str {
    match column {
        ColumnType::Text { .. } => "{4273EDBD-AC1D-40d3-9FB2-095C621B552D}",
        ColumnType::Memo { .. } => "{E0DECE4B-6FC8-4a8f-A065-082708572369}",
        ColumnType::Boolean { .. } => "{67FAC785-CD58-4F9F-ABB3-4B7DDC6ED5ED}",
        ColumnType::DateTime => "{5B773807-9FB2-42db-97C3-7A91EFF8ADFF}",
        ColumnType::Choice { .. } => "{3EF39988-22BB-4f0b-BBBE-64B5A3748AEE}",
    }
}

/// The columns the control reads and writes on a table's form: every `crc_` column the
/// installer adds there, except the retroactive sync's bookkeeping.
pub fn form_fields(table: &str) -> Vec<&'static ColumnSpec> {
    schema::EXTENSIONS
        .iter()
        .filter(|(t, _)| *t == table)
        .flat_map(|(_, columns)| columns.iter())
        .filter(|c| c.logical_name != schema::RETROACTIVE_STATE)
        .collect()
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A stable id for an element the installer adds, so that the same org gets the same XML.
fn element_id(seed: &str) -> String {
    let mut hash: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in seed.bytes() {
        hash ^= u128::from(b);
        hash = hash.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let h = format!("{hash:032x}");
    format!(
        "{{{}-{}-4{}-8{}-{}}}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn labels(text: &schema::Text, languages: &[i64]) -> String {
    let mut out = String::from("<labels>");
    for l in languages {
        out.push_str(&format!(
            "<label description=\"{}\" languagecode=\"{l}\" />",
            formxml::escape(text.in_language(*l))
        ));
    }
    out.push_str("</labels>");
    out
}

/// The languages to write labels in (English and German where the org has them).
fn label_languages(languages: &[i64]) -> Vec<i64> {
    let ours: Vec<i64> = [ENGLISH, GERMAN]
        .into_iter()
        .filter(|l| languages.contains(l))
        .collect();
    if ours.is_empty() {
        languages.to_vec()
    } else {
        ours
    }
}

/// A hidden cell with a field's control.
fn hidden_field(table: &str, field: &ColumnSpec, languages: &[i64]) -> String {
    format!(
        "<row><cell id=\"{}\" showlabel=\"true\" visible=\"false\">{}<control id=\"{name}\" classid=\"{}\" datafieldname=\"{name}\" /></cell></row>",
        element_id(&format!("{table}:cell:{}", field.logical_name)),
        labels(&field.display_name, languages),
        field_class(&field.column_type),
        name = field.logical_name,
    )
}

/// Form rows the control spans (its height; forms do not size web resources to their
/// content): a person's checklist is short, a source also shows its sync state, a marketing
/// list its retroactive sync.
fn control_rows(table: &str) -> usize {
    match table {
        "contact" | "lead" => 8,
        "list" => 22,
        _ => 16,
    }
}

/// The section with the control and the hidden fields. The section shows no label of its
/// own: the control has its headings.
fn section(table: &str, fields: &[&ColumnSpec], languages: &[i64]) -> String {
    let rows_spanned = control_rows(table);
    let title = schema::Text {
        en: "Newsletters (CleverReach)",
        de: "Newsletter (CleverReach)",
    };
    let mut rows = format!(
        "<row><cell id=\"{}\" showlabel=\"false\" rowspan=\"{rows_spanned}\" colspan=\"1\" auto=\"false\">{}<control id=\"{CONTROL_ID}\" classid=\"{WEB_RESOURCE_CONTROL}\"><parameters><Url>{PAGE}</Url><PassParameters>false</PassParameters><Security>false</Security><Scrolling>auto</Scrolling><Border>false</Border><ShowOnMobileClient>true</ShowOnMobileClient></parameters></control></cell></row>",
        element_id(&format!("{table}:cell:{CONTROL_ID}")),
        labels(&title, languages),
    );
    // The control spans the rows below it.
    rows.push_str(&"<row />".repeat(rows_spanned - 1));
    for f in fields {
        rows.push_str(&hidden_field(table, f, languages));
    }
    format!(
        "<section name=\"{SECTION}\" id=\"{}\" showlabel=\"false\" showbar=\"false\" columns=\"1\" IsUserDefined=\"1\">{}<rows>{rows}</rows></section>",
        element_id(&format!("{table}:section")),
        labels(&title, languages),
    )
}

fn library() -> String {
    format!(
        "<Library name=\"{LIBRARY}\" libraryUniqueId=\"{}\" />",
        element_id("library")
    )
}

fn handler() -> String {
    format!(
        "<Handler functionName=\"{HANDLER}\" libraryName=\"{LIBRARY}\" handlerUniqueId=\"{}\" enabled=\"true\" parameters=\"\" passExecutionContext=\"true\" />",
        element_id("handler")
    )
}

/// What a form lacks, and its XML with the missing pieces added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// What is added, for the plan ("section …", "hidden field crc_groupid", …); empty when
    /// the form has everything.
    pub missing: Vec<String>,
    pub formxml: String,
}

fn is(node: &Node, name: &str) -> bool {
    node.name == name
}

fn attr_is(node: &Node, attr: &str, value: &str) -> bool {
    node.attr(attr)
        .is_some_and(|v| v.eq_ignore_ascii_case(value))
}

/// Adds what the control needs to a form of `table`; `Err` when the XML cannot be used.
pub fn place(table: &str, xml: &str, languages: &[i64]) -> Result<Placement, String> {
    let languages = label_languages(languages);
    let form = formxml::parse(xml).map_err(|e| format!("its form XML is not readable: {e}"))?;
    if form.name != "form" {
        return Err(format!(
            "its form XML has the root <{}>, not <form>",
            form.name
        ));
    }
    let mut edits = Edits::default();
    let mut missing = Vec::new();
    let everything = form.descendants();
    let bound: BTreeSet<String> = everything
        .iter()
        .filter(|n| is(n, "control") || is(n, "data"))
        .filter_map(|n| n.attr("datafieldname"))
        .map(str::to_ascii_lowercase)
        .collect();
    let fields: Vec<&ColumnSpec> = form_fields(table)
        .into_iter()
        .filter(|f| !bound.contains(f.logical_name))
        .collect();

    let control = form.find_path(&|n| is(n, "control") && attr_is(n, "id", CONTROL_ID));
    match control {
        None => {
            // A new section at the end of the first column of the first tab.
            let column = form
                .child("tabs")
                .and_then(|t| t.child("tab"))
                .and_then(|t| t.child("columns"))
                .and_then(|c| c.child("column"))
                .ok_or("its form has no tab with a column to put the section in")?;
            let content = section(table, &fields, &languages);
            match column.child("sections") {
                Some(sections) => edits.append(xml, sections, &content),
                None => edits.append(xml, column, &format!("<sections>{content}</sections>")),
            }
            missing.push(format!("section {SECTION} with the control {CONTROL_ID}"));
            missing.extend(
                fields
                    .iter()
                    .map(|f| format!("hidden field {}", f.logical_name)),
            );
        }
        Some(path) if !fields.is_empty() => {
            // The control is there (maybe moved by an administrator): the missing fields go
            // into its section.
            let section = path
                .iter()
                .rev()
                .find(|n| is(n, "section"))
                .ok_or("its checklist control is not inside a section")?;
            let rows: String = fields
                .iter()
                .map(|f| hidden_field(table, f, &languages))
                .collect();
            match section.child("rows") {
                Some(r) => edits.append(xml, r, &rows),
                None => edits.append(xml, section, &format!("<rows>{rows}</rows>")),
            }
            missing.extend(
                fields
                    .iter()
                    .map(|f| format!("hidden field {}", f.logical_name)),
            );
        }
        Some(_) => {}
    }

    let libraries = form.child("formLibraries");
    let has_library = libraries.is_some_and(|l| {
        l.children_named("Library")
            .any(|lib| attr_is(lib, "name", LIBRARY))
    });
    let mut tail = String::new();
    if !has_library {
        match libraries {
            Some(l) => edits.append(xml, l, &library()),
            None => tail.push_str(&format!("<formLibraries>{}</formLibraries>", library())),
        }
        missing.push(format!("form library {LIBRARY}"));
    }
    let events = form.child("events");
    let onload = events.and_then(|e| {
        e.children_named("event")
            .find(|ev| attr_is(ev, "name", "onload"))
    });
    let has_handler = onload.and_then(|ev| ev.child("Handlers")).is_some_and(|h| {
        h.children_named("Handler")
            .any(|x| attr_is(x, "functionName", HANDLER) && attr_is(x, "libraryName", LIBRARY))
    });
    if !has_handler {
        let event = format!(
            "<event name=\"onload\" application=\"false\" active=\"false\"><Handlers>{}</Handlers></event>",
            handler()
        );
        match (events, onload) {
            (_, Some(ev)) => match ev.child("Handlers") {
                Some(h) => edits.append(xml, h, &handler()),
                None => edits.append(xml, ev, &format!("<Handlers>{}</Handlers>", handler())),
            },
            (Some(e), None) => edits.append(xml, e, &event),
            (None, None) => tail.push_str(&format!("<events>{event}</events>")),
        }
        missing.push(format!("OnLoad handler {HANDLER}"));
    }
    if !tail.is_empty() {
        edits.append(xml, &form, &tail);
    }
    let formxml = if edits.is_empty() {
        xml.to_string()
    } else {
        edits.apply(xml)
    };
    Ok(Placement { missing, formxml })
}

/// A main form as read.
#[derive(Debug, Clone)]
struct MainForm {
    id: String,
    name: String,
    xml: String,
}

#[derive(Debug, Clone)]
enum Action {
    CreateWebResource(&'static WebResourceSpec),
    UpdateWebResource(&'static WebResourceSpec, String),
    UpdateForm {
        table: &'static str,
        id: String,
        name: String,
        formxml: String,
    },
    /// Tables whose forms changed, and the web resources created or changed (by name).
    Publish(Vec<&'static str>, Vec<&'static str>),
}

/// What the forms phase found and will do.
#[derive(Debug, Clone, Default)]
pub struct FormsPlan {
    pub items: Vec<PlanItem>,
    pub conflicts: Vec<Conflict>,
    actions: Vec<Action>,
    /// Ids of the web resources that exist now, by name.
    existing: Vec<(&'static str, String)>,
}

impl FormsPlan {
    /// The new XML of a table's main form, when the plan changes it.
    pub fn new_formxml(&self, table: &str) -> Option<&str> {
        self.actions.iter().find_map(|a| match a {
            Action::UpdateForm {
                table: t, formxml, ..
            } if *t == table => Some(formxml.as_str()),
            _ => None,
        })
    }
}

fn text<'a>(row: &'a serde_json::Value, column: &str) -> Option<&'a str> {
    row.get(column).and_then(serde_json::Value::as_str)
}

async fn rows(
    client: &DataverseClient,
    set: &str,
    query: Query,
) -> Result<Vec<serde_json::Value>, DataverseError> {
    let mut pages = client.query::<serde_json::Value>(set, &query);
    let mut all = Vec::new();
    while let Some(page) = pages.next_page().await? {
        all.extend(page);
    }
    Ok(all)
}

async fn find_web_resource(
    client: &DataverseClient,
    name: &str,
) -> Result<Option<serde_json::Value>, DataverseError> {
    Ok(rows(
        client,
        "webresourceset",
        Query::new()
            .select(["webresourceid", "name", "webresourcetype", "content"])
            .filter(format!("name eq {}", filter::string_literal(name))),
    )
    .await?
    .into_iter()
    .next())
}

/// The main form the control goes on: the table's default main form, else its first active
/// main form by name.
async fn main_form(
    client: &DataverseClient,
    table: &str,
) -> Result<Option<MainForm>, DataverseError> {
    let mut forms = rows(
        client,
        "systemforms",
        Query::new()
            .select([
                "formid",
                "name",
                "formxml",
                "isdefault",
                "formactivationstate",
            ])
            .filter(format!(
                "objecttypecode eq {} and type eq 2",
                filter::string_literal(table)
            )),
    )
    .await?;
    forms.retain(|f| {
        f.get("formactivationstate")
            .and_then(serde_json::Value::as_i64)
            != Some(0)
    });
    forms.sort_by(|a, b| {
        let default = |f: &serde_json::Value| {
            f.get("isdefault").and_then(serde_json::Value::as_bool) != Some(true)
        };
        default(a)
            .cmp(&default(b))
            .then_with(|| text(a, "name").cmp(&text(b, "name")))
    });
    Ok(forms.into_iter().next().and_then(|f| {
        Some(MainForm {
            id: text(&f, "formid")?.to_string(),
            name: text(&f, "name").unwrap_or_default().to_string(),
            xml: text(&f, "formxml").unwrap_or_default().to_string(),
        })
    }))
}

fn item(kind: &'static str, name: impl Into<String>, exists: bool) -> PlanItem {
    PlanItem {
        kind,
        name: name.into(),
        exists,
        update: false,
        note: None,
    }
}

/// Reads the org's web resources and main forms; changes nothing. `languages` are the org's
/// provisioned languages (for the section's labels).
pub async fn plan_forms(
    client: &DataverseClient,
    languages: &[i64],
) -> Result<FormsPlan, InstallError> {
    let mut plan = FormsPlan::default();
    let mut changed_resources = Vec::new();
    for spec in &WEB_RESOURCES {
        let name = format!(
            "{} (web resource, {}, {} bytes)",
            spec.name,
            spec.kind_words(),
            spec.content.len()
        );
        match find_web_resource(client, spec.name).await? {
            None => {
                plan.items.push(item("resource", name, false));
                plan.actions.push(Action::CreateWebResource(spec));
                changed_resources.push(spec.name);
            }
            Some(row) => {
                let id = text(&row, "webresourceid").unwrap_or_default().to_string();
                let kind = row
                    .get("webresourcetype")
                    .and_then(serde_json::Value::as_i64);
                if kind != Some(spec.kind) {
                    plan.conflicts.push(Conflict {
                        component: format!("web resource {}", spec.name),
                        found: format!("web resource type {kind:?}"),
                        expected: format!("type {} ({})", spec.kind, spec.kind_words()),
                    });
                    continue;
                }
                plan.existing.push((spec.name, id.clone()));
                if text(&row, "content") == Some(spec.base64().as_str()) {
                    plan.items.push(item("resource", name, true));
                } else {
                    let mut it = item("resource", name, false);
                    it.update = true;
                    it.note = Some("its content differs: replaced by this version".into());
                    plan.items.push(it);
                    plan.actions.push(Action::UpdateWebResource(spec, id));
                    changed_resources.push(spec.name);
                }
            }
        }
    }
    let mut changed_tables = Vec::new();
    for table in FORM_TABLES {
        let Some(form) = main_form(client, table).await? else {
            plan.conflicts.push(Conflict {
                component: format!("table {table}"),
                found: "no active main form".into(),
                expected: "a main form to put the newsletter checklist on".into(),
            });
            continue;
        };
        let what = format!("{table} main form '{}'", form.name);
        match place(table, &form.xml, languages) {
            Err(reason) => plan.conflicts.push(Conflict {
                component: format!("form {what}"),
                found: reason,
                expected: "a form the checklist section can be added to".into(),
            }),
            Ok(p) if p.missing.is_empty() => {
                plan.items.push(item(
                    "form",
                    format!("{what}: checklist control, hidden fields, library and OnLoad handler"),
                    true,
                ));
            }
            Ok(p) => {
                let mut it = item(
                    "form",
                    format!("{what}: add {}", p.missing.join(", ")),
                    false,
                );
                it.update = true;
                plan.items.push(it);
                plan.actions.push(Action::UpdateForm {
                    table,
                    id: form.id,
                    name: form.name,
                    formxml: p.formxml,
                });
                changed_tables.push(table);
            }
        }
    }
    if !changed_tables.is_empty() || !changed_resources.is_empty() {
        let mut parts = Vec::new();
        if !changed_tables.is_empty() {
            parts.push(format!("forms of {}", changed_tables.join(", ")));
        }
        if !changed_resources.is_empty() {
            parts.push(format!("web resources {}", changed_resources.join(", ")));
        }
        plan.items.push(item(
            "publish",
            format!("PublishXml: {}", parts.join("; ")),
            false,
        ));
        plan.actions
            .push(Action::Publish(changed_tables, changed_resources));
    }
    Ok(plan)
}

/// `<importexportxml>` for tables and web resources (ids), children in the documented order.
pub fn publish_xml(tables: &[&str], web_resources: &[String]) -> String {
    let mut xml = String::from("<importexportxml>");
    if !tables.is_empty() {
        xml.push_str("<entities>");
        for t in tables {
            xml.push_str(&format!("<entity>{t}</entity>"));
        }
        xml.push_str("</entities>");
    }
    if !web_resources.is_empty() {
        xml.push_str("<webresources>");
        for id in web_resources {
            xml.push_str(&format!("<webresource>{{{id}}}</webresource>"));
        }
        xml.push_str("</webresources>");
    }
    xml.push_str("</importexportxml>");
    xml
}

/// Applies a forms plan. `solution` is the unmanaged solution the components are recorded in
/// (`None` when the connector's solution was imported managed: the changes then land in the
/// org's own layer). Refuses a plan with conflicts.
pub async fn apply_forms(
    client: &DataverseClient,
    plan: &FormsPlan,
    solution: Option<&str>,
) -> Result<(), InstallError> {
    if !plan.conflicts.is_empty() {
        return Err(InstallError::Conflicts(plan.conflicts.clone()));
    }
    let with_solution = |request: CustomRequest| match solution {
        Some(s) => request.header("MSCRM.SolutionUniqueName", s),
        None => request,
    };
    let mut ids: Vec<(&'static str, String)> = plan.existing.clone();
    for action in &plan.actions {
        match action {
            Action::CreateWebResource(spec) => {
                let request =
                    with_solution(CustomRequest::post("webresourceset")).body(serde_json::json!({
                        "name": spec.name,
                        "displayname": spec.display_name,
                        "description": "Part of the CleverReach connector's newsletter checklist.",
                        "webresourcetype": spec.kind,
                        "content": spec.base64(),
                    }));
                let what = format!("creating the web resource {}", spec.name);
                let created = client
                    .send_custom(&request)
                    .await
                    .map_err(|e| failed(what.clone(), "prvCreateWebResource", e))?;
                let id = match created.entity_id {
                    Some(id) => id,
                    None => find_web_resource(client, spec.name)
                        .await?
                        .as_ref()
                        .and_then(|r| text(r, "webresourceid"))
                        .map(str::to_string)
                        .ok_or_else(|| {
                            InstallError::Usage(format!(
                                "the web resource {} cannot be read back",
                                spec.name
                            ))
                        })?,
                };
                ids.push((spec.name, id));
            }
            Action::UpdateWebResource(spec, id) => {
                let request = with_solution(CustomRequest::patch(format!(
                    "webresourceset({})",
                    filter::guid(id)?
                )))
                .body(serde_json::json!({ "content": spec.base64() }));
                client.send_custom(&request).await.map_err(|e| {
                    failed(
                        format!("updating the web resource {}", spec.name),
                        "prvWriteWebResource",
                        e,
                    )
                })?;
            }
            Action::UpdateForm {
                table,
                id,
                name,
                formxml,
            } => {
                let request = with_solution(CustomRequest::patch(format!(
                    "systemforms({})",
                    filter::guid(id)?
                )))
                .body(serde_json::json!({ "formxml": formxml }));
                client.send_custom(&request).await.map_err(|e| {
                    failed(
                        format!("placing the checklist on the {table} form '{name}'"),
                        "prvWriteSystemForm",
                        e,
                    )
                })?;
            }
            Action::Publish(tables, resources) => {
                let web_resources: Vec<String> = resources
                    .iter()
                    .filter_map(|n| {
                        ids.iter()
                            .find(|(name, _)| name == n)
                            .map(|(_, id)| id.clone())
                    })
                    .collect();
                let request = CustomRequest::post("PublishXml").body(serde_json::json!({
                    "ParameterXml": publish_xml(tables, &web_resources),
                }));
                client.send_custom(&request).await.map_err(|e| {
                    failed(
                        "publishing the forms and web resources".into(),
                        "prvPublishCustomizations",
                        e,
                    )
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LANGUAGES: [i64; 2] = [ENGLISH, GERMAN];

    const FORM: &str = r#"<form><tabs><tab name="general" id="{11111111-1111-4111-8111-111111111111}"><columns><column width="50%"><sections><section name="one"><rows><row><cell><control id="firstname" datafieldname="firstname" /></cell></row></rows></section></sections></column><column width="50%" /></columns></tab></tabs><header id="{22222222-2222-4222-8222-222222222222}"><rows /></header></form>"#;

    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64("<ä>".as_bytes()), "PMOkPg==");
    }

    #[test]
    fn a_plain_form_gets_the_section_library_and_handler_and_keeps_the_rest() {
        let placed = place("campaign", FORM, &LANGUAGES).unwrap();
        assert_eq!(
            placed.missing.len(),
            1 + form_fields("campaign").len() + 2,
            "{:?}",
            placed.missing
        );
        let xml = &placed.formxml;
        assert!(xml.starts_with(r#"<form><tabs><tab name="general" id="{11111111-1111-4111-8111-111111111111}"><columns><column width="50%"><sections><section name="one">"#));
        assert!(
            xml.contains(r#"<column width="50%" /></columns>"#),
            "the second column is left alone"
        );
        let form = formxml::parse(xml).unwrap();
        let controls: Vec<&str> = form
            .descendants()
            .into_iter()
            .filter(|n| n.name == "control")
            .filter_map(|n| n.attr("id"))
            .collect();
        assert!(controls.contains(&CONTROL_ID));
        for f in form_fields("campaign") {
            assert!(controls.contains(&f.logical_name), "{}", f.logical_name);
        }
        assert!(xml.contains(&format!(r#"<Library name="{LIBRARY}""#)));
        assert!(xml.contains(&format!(
            r#"functionName="{HANDLER}" libraryName="{LIBRARY}""#
        )));
        assert!(xml.contains(r#"languagecode="1031""#));
    }

    #[test]
    fn a_form_that_has_everything_is_left_as_it_is() {
        let once = place("contact", FORM, &LANGUAGES).unwrap().formxml;
        let twice = place("contact", &once, &LANGUAGES).unwrap();
        assert!(twice.missing.is_empty(), "{:?}", twice.missing);
        assert_eq!(twice.formxml, once);
    }

    #[test]
    fn only_the_missing_pieces_are_added_where_the_administrator_moved_the_control() {
        let placed = place("list", FORM, &LANGUAGES).unwrap().formxml;
        // Someone removed the hidden group id and the handler.
        let damaged = placed
            .replace(
                &hidden_field(
                    "list",
                    form_fields("list")
                        .into_iter()
                        .find(|f| f.logical_name == schema::GROUP_ID)
                        .unwrap(),
                    &LANGUAGES,
                ),
                "",
            )
            .replace(&handler(), "");
        let again = place("list", &damaged, &LANGUAGES).unwrap();
        assert_eq!(
            again.missing,
            vec![
                "hidden field crc_groupid".to_string(),
                format!("OnLoad handler {HANDLER}")
            ]
        );
        let form = formxml::parse(&again.formxml).unwrap();
        let section = form
            .find_path(&|n| n.name == "section" && n.attr("name") == Some(SECTION))
            .unwrap();
        let section = section.last().unwrap();
        assert!(
            section
                .descendants()
                .iter()
                .any(|n| n.attr("datafieldname") == Some("crc_groupid"))
        );
    }

    #[test]
    fn unreadable_form_xml_is_refused_with_the_reason() {
        assert!(
            place("lead", "<form><tabs>", &LANGUAGES)
                .unwrap_err()
                .contains("not readable")
        );
        assert!(
            place("lead", "<form><tabs /></form>", &LANGUAGES)
                .unwrap_err()
                .contains("no tab")
        );
    }

    #[test]
    fn publishing_names_tables_then_web_resources() {
        assert_eq!(
            publish_xml(&["contact"], &["a-b".to_string()]),
            "<importexportxml><entities><entity>contact</entity></entities><webresources><webresource>{a-b}</webresource></webresources></importexportxml>"
        );
    }
}
