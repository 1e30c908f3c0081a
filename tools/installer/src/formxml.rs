//! Reading a form's XML (`systemform.formxml`) and adding to it without touching the rest: the
//! document is parsed into elements that remember where they sit in the text, and additions
//! are spliced in at those places, so every other byte (an administrator's customizations,
//! attribute order, spacing) stays exactly as it was.

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// One element and where it sits in the text (byte offsets).
#[derive(Debug, Clone, Default)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// Its text content (entities resolved), trimmed.
    pub text: String,
    /// `<` of the start tag.
    pub start: usize,
    /// Just after the start tag's `>`.
    pub open_end: usize,
    /// `<` of the end tag; `open_end` for an empty element (`<x/>`).
    pub close_start: usize,
    /// Just after the element.
    pub end: usize,
    pub empty: bool,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Every element below this one (depth first), this one excluded.
    pub fn descendants(&self) -> Vec<&Node> {
        let mut out = Vec::new();
        let mut stack: Vec<&Node> = self.children.iter().rev().collect();
        while let Some(n) = stack.pop() {
            out.push(n);
            stack.extend(n.children.iter().rev());
        }
        out
    }

    /// The first descendant for which `wanted` holds, with the chain of its ancestors below
    /// this one (outermost first).
    pub fn find_path(&self, wanted: &dyn Fn(&Node) -> bool) -> Option<Vec<&Node>> {
        for c in &self.children {
            if wanted(c) {
                return Some(vec![c]);
            }
            if let Some(mut path) = c.find_path(wanted) {
                path.insert(0, c);
                return Some(path);
            }
        }
        None
    }
}

fn position(reader: &Reader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

fn node(start: &BytesStart<'_>, at: usize, open_end: usize) -> Result<Node, String> {
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("invalid attribute: {e}"))?;
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("invalid attribute value: {e}"))?;
        attrs.push((attr.key.as_ref().to_string(), value.into_owned()));
    }
    Ok(Node {
        name: start.name().as_ref().to_string(),
        attrs,
        start: at,
        open_end,
        ..Node::default()
    })
}

/// Parses a document with one root element; the error says what is wrong and where.
pub fn parse(xml: &str) -> Result<Node, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    loop {
        let before = position(&reader);
        let event = reader.read_event().map_err(|e| {
            format!(
                "not well-formed XML at byte {}: {e}",
                reader.error_position()
            )
        })?;
        let after = position(&reader);
        match event {
            Event::Start(start) => {
                if root.is_some() {
                    return Err("more than one root element".into());
                }
                stack.push(node(&start, before, after)?);
            }
            Event::Empty(start) => {
                if root.is_some() {
                    return Err("more than one root element".into());
                }
                let mut n = node(&start, before, after)?;
                n.close_start = after;
                n.end = after;
                n.empty = true;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(n),
                    None => root = Some(n),
                }
            }
            Event::End(_) => {
                let mut n = stack.pop().ok_or("an end tag without its start")?;
                n.close_start = before;
                n.end = after;
                n.text = n.text.trim().to_string();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(n),
                    None => root = Some(n),
                }
            }
            Event::Text(text) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&text.xml_content(XmlVersion::Implicit1_0));
                }
            }
            Event::CData(data) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&data.xml_content(XmlVersion::Implicit1_0));
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => quick_xml::escape::resolve_predefined_entity(&r)
                        .map(str::to_string)
                        .unwrap_or_default(),
                };
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("an element is not closed".into());
    }
    root.ok_or_else(|| "no root element".into())
}

/// Escapes text for an attribute value in double quotes (or element text).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Changes to a document: text put into an element or in place of an empty one.
#[derive(Debug, Default)]
pub struct Edits {
    /// (from, to, text): replace bytes `from..to` by `text`.
    edits: Vec<(usize, usize, String)>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// Adds `content` as the last children of `parent` (an empty element is opened up).
    pub fn append(&mut self, xml: &str, parent: &Node, content: &str) {
        if parent.empty {
            // `<x a="1"/>` becomes `<x a="1">content</x>`.
            let tag = &xml[parent.start..parent.end];
            let open = tag.trim_end_matches('>').trim_end_matches('/').trim_end();
            self.edits.push((
                parent.start,
                parent.end,
                format!("{open}>{content}</{}>", parent.name),
            ));
        } else {
            self.edits
                .push((parent.close_start, parent.close_start, content.to_string()));
        }
    }

    /// The document with the edits applied.
    pub fn apply(mut self, xml: &str) -> String {
        // Later places first, so that earlier offsets stay valid; edits at one place keep the
        // order they were made in.
        let mut indexed: Vec<(usize, (usize, usize, String))> =
            self.edits.drain(..).enumerate().collect();
        indexed.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(b.0.cmp(&a.0)));
        let mut out = xml.to_string();
        for (_, (from, to, text)) in indexed {
            out.replace_range(from..to, &text);
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn elements_know_where_they_sit_in_the_text() {
        let xml = r#"<form a="1"><tabs><tab name="x"/></tabs><events> </events></form>"#;
        let form = parse(xml).unwrap();
        let tab = form.child("tabs").unwrap().child("tab").unwrap();
        assert_eq!(&xml[tab.start..tab.end], r#"<tab name="x"/>"#);
        assert!(tab.empty);
        let events = form.child("events").unwrap();
        assert_eq!(&xml[events.close_start..events.end], "</events>");
        assert_eq!(&xml[form.start..form.open_end], r#"<form a="1">"#);
    }

    #[test]
    fn appending_keeps_every_other_byte_and_opens_empty_elements() {
        let xml = "<form>\n  <tabs><tab name='a' /></tabs>\n</form>";
        let form = parse(xml).unwrap();
        let mut edits = Edits::default();
        edits.append(
            xml,
            form.child("tabs").unwrap().child("tab").unwrap(),
            "<x/>",
        );
        edits.append(xml, &form, "<libs/>");
        edits.append(xml, &form, "<events/>");
        assert_eq!(
            edits.apply(xml),
            "<form>\n  <tabs><tab name='a'><x/></tab></tabs>\n<libs/><events/></form>"
        );
    }

    #[test]
    fn broken_xml_is_an_error_naming_the_place() {
        assert!(parse("<form><tabs></form>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a/><b/>").is_err());
    }
}
