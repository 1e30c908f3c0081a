//! Personal data out of log lines and error texts.
//!
//! E-mail addresses are the personal data most likely to slip into a text the connector did
//! not write itself (a CleverReach error row, a serde message quoting a value, a CRM error).
//! They are replaced by a short tag derived from the address, so that lines about the same
//! address can still be matched up without showing it. The tag is a truncated hash: it is
//! for matching lines, not a promise of anonymity.

use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// The tag that stands for `address` in texts: `[e-mail 1a2b3c4d]` (same address, same tag;
/// case and surrounding blanks do not matter).
pub fn email_tag(address: &str) -> String {
    let normalised = address.trim().to_lowercase();
    let digest = Sha256::digest(normalised.as_bytes());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("[e-mail {short}]")
}

/// `text` with every e-mail address in it replaced by its [`email_tag`].
pub fn emails(text: &str) -> Cow<'_, str> {
    if !text.contains('@') {
        return Cow::Borrowed(text);
    }
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0; // byte offset in `text` up to which `out` is filled
    let mut i = 0;
    while i < chars.len() {
        let (at_byte, c) = chars[i];
        if c != '@' {
            i += 1;
            continue;
        }
        // Local part: walk left from the '@'.
        let mut start = i;
        while start > 0 && is_local_char(chars[start - 1].1) {
            start -= 1;
        }
        // Domain: walk right.
        let mut end = i + 1;
        while end < chars.len() && is_domain_char(chars[end].1) {
            end += 1;
        }
        // A sentence may end right after the address.
        while end > i + 1 && chars[end - 1].1 == '.' {
            end -= 1;
        }
        let start_byte = chars[start].0;
        let end_byte = chars.get(end).map_or(text.len(), |(b, _)| *b);
        let local = &text[start_byte..at_byte];
        let domain = &text[at_byte + 1..end_byte];
        if start_byte >= copied && !local.is_empty() && is_domain(domain) {
            out.push_str(&text[copied..start_byte]);
            out.push_str(&email_tag(&text[start_byte..end_byte]));
            copied = end_byte;
            i = end;
        } else {
            i += 1;
        }
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn is_local_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(
            c,
            '.' | '_' | '%' | '+' | '-' | '!' | '#' | '$' | '&' | '*' | '=' | '?' | '^' | '~'
        )
}

fn is_domain_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-')
}

/// At least two non-empty labels, the last one not a number (so `a@1.5` in a version text
/// stays, `x@example.org` goes).
fn is_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty())
        && labels
            .last()
            .is_some_and(|tld| tld.chars().any(char::is_alphabetic))
}

/// A JSON parse error without the value it may quote (a name, an address in the wrong field):
/// its kind and position only.
pub fn json_error(error: &serde_json::Error) -> String {
    let kind = match error.classify() {
        serde_json::error::Category::Io => "an I/O error",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "JSON of the wrong shape",
        serde_json::error::Category::Eof => "cut-off JSON",
    };
    format!("{kind} at line {}, column {}", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_a_text_become_tags_and_the_rest_stays() {
        let text = "invalid address 'Maria.Muster+news@Example.co.uk'; try again.";
        let out = emails(text);
        assert!(!out.contains("Maria") && !out.contains("example"), "{out}");
        assert!(out.starts_with("invalid address '[e-mail "), "{out}");
        assert!(out.ends_with("]'; try again."), "{out}");
        assert_eq!(
            emails("two: a@b.de, c@d.de."),
            format!("two: {}, {}.", email_tag("a@b.de"), email_tag("c@d.de"))
        );
    }

    #[test]
    fn the_same_address_gets_the_same_tag_whatever_its_case() {
        assert_eq!(email_tag("Max@Example.org"), email_tag(" max@example.org "));
        assert_ne!(
            email_tag("max@example.org"),
            email_tag("moritz@example.org")
        );
        assert_eq!(
            email_tag("max@example.org").len(),
            "[e-mail 12345678]".len()
        );
    }

    #[test]
    fn texts_without_addresses_are_left_alone() {
        for text in [
            "no at sign here",
            "version 1@2.3",
            "@handle",
            "user@",
            "user@localhost",
            "a @ b.de",
        ] {
            assert!(matches!(emails(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn non_ascii_addresses_are_found_too() {
        let out = emails("für jürgen@müller.de");
        assert!(!out.contains("jürgen"), "{out}");
    }
}
