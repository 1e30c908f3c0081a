//! A small XML tree for FetchXML and paging cookies, read with quick-xml.

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

/// One element with its attributes (unescaped), child elements and text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a document with one root element. Errors are messages naming what is wrong.
pub fn parse(xml: &str) -> Result<Element, String> {
    // Text is trimmed per element, not per event: an entity reference splits text into events.
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("invalid XML at position {}: {e}", reader.error_position()))?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                return Err(format!(
                    "invalid XML: element <{}> after the root element",
                    start.name().as_ref()
                ));
            }
            Event::Start(start) => {
                stack.push(element(&start)?);
            }
            Event::Empty(start) => {
                let el = element(&start)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::End(_) => {
                let Some(mut el) = stack.pop() else {
                    return Err("invalid XML: unexpected closing tag".into());
                };
                el.text = el.text.trim().to_string();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(text) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&text.xml_content(XmlVersion::Implicit1_0));
                }
            }
            Event::CData(data) => {
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&data.xml_content(XmlVersion::Implicit1_0));
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&r)
                        .map(str::to_string)
                        .ok_or_else(|| format!("invalid XML: unknown entity '&{};'", &*r))?,
                    Err(e) => return Err(format!("invalid XML: {e}")),
                };
                if let Some(el) = stack.last_mut() {
                    el.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("invalid XML: an element is not closed".into());
    }
    root.ok_or_else(|| "invalid XML: no root element".into())
}

fn element(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| format!("invalid XML attribute: {e}"))?;
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("invalid XML attribute value: {e}"))?;
        attrs.push((attr.key.as_ref().to_string(), value.into_owned()));
    }
    Ok(Element {
        name: start.name().as_ref().to_string(),
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Escapes text for an attribute value in double quotes.
pub fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_unescaped_and_children_kept_in_order() {
        let e = parse(r#"<fetch a="&lt;x&gt;"><entity name='contact'><attribute name="a"/><value>1 &amp; 2</value></entity></fetch>"#)
            .unwrap();
        assert_eq!(e.attr("a"), Some("<x>"));
        assert_eq!(e.children[0].attr("name"), Some("contact"));
        assert_eq!(e.children[0].children[1].text, "1 & 2");
    }

    #[test]
    fn broken_xml_is_an_error_not_a_panic() {
        assert!(parse("<fetch><entity></fetch>").is_err());
        assert!(parse("").is_err());
        assert!(parse("<a/><b/>").is_err());
    }
}
