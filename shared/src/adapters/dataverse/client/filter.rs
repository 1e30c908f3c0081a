//! Safe pieces of OData URLs: `$filter` literals, GUIDs, entity set and column names.
//!
//! User data (e-mail addresses, names) must never be pasted into a `$filter` as is: a quote in
//! `o'brien@example.com` would end the literal and change the query. These helpers quote and
//! validate; the client percent-encodes the whole query string afterwards.

use super::error::DataverseError;

/// An OData string literal: `'…'` with every `'` doubled (`O'Brien` → `'O''Brien'`).
pub fn string_literal(value: &str) -> String {
    let mut literal = String::with_capacity(value.len() + 2);
    literal.push('\'');
    for ch in value.chars() {
        if ch == '\'' {
            literal.push('\'');
        }
        literal.push(ch);
    }
    literal.push('\'');
    literal
}

/// A GUID literal as Dataverse expects it in `$filter` (unquoted, lower case, hyphenated).
/// Braced (`{…}`) and upper-case GUIDs, as webhooks and paging cookies carry them, are accepted.
pub fn guid_literal(value: &str) -> Result<String, DataverseError> {
    guid(value)
}

/// Validates and normalises a row id (GUID) for use in a URL such as `contacts(<id>)`.
pub fn guid(value: &str) -> Result<String, DataverseError> {
    let trimmed = value.trim();
    let inner = trimmed
        .strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap_or(trimmed);
    let well_formed = inner.len() == 36
        && inner.char_indices().all(|(i, ch)| match i {
            8 | 13 | 18 | 23 => ch == '-',
            _ => ch.is_ascii_hexdigit(),
        });
    if well_formed {
        Ok(inner.to_ascii_lowercase())
    } else {
        Err(DataverseError::invalid(
            "GUID",
            format!(
                "{:?} is not a GUID like 00000000-0000-0000-0000-000000000000",
                excerpt(value)
            ),
        ))
    }
}

/// A boolean literal (`true` / `false`).
pub fn bool_literal(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

/// Validates an entity set, navigation property, column or action name: ASCII letters, digits
/// and `_`, not starting with a digit (`contacts`, `_parentcustomerid_value`, `crc_setting`).
pub fn identifier<'a>(what: &str, value: &'a str) -> Result<&'a str, DataverseError> {
    let mut chars = value.chars();
    let valid = match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {
            chars.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        }
        _ => false,
    };
    if valid {
        Ok(value)
    } else {
        Err(DataverseError::invalid(
            what,
            format!(
                "{:?} may only hold ASCII letters, digits and '_'",
                excerpt(value)
            ),
        ))
    }
}

/// At most 40 characters of a rejected value, so that an error text stays short.
fn excerpt(value: &str) -> String {
    value.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quote_in_a_string_literal_is_doubled() {
        assert_eq!(string_literal("O'Brien"), "'O''Brien'");
        assert_eq!(string_literal("''"), "''''''");
        assert_eq!(string_literal(""), "''");
    }

    #[test]
    fn a_quote_cannot_end_the_literal_early() {
        let literal = string_literal("x' or statecode eq 1 or emailaddress1 eq 'y");
        // Inside the outer quotes every quote comes in pairs, so the literal spans the whole value.
        let inner = &literal[1..literal.len() - 1];
        assert!(inner.split("''").all(|piece| !piece.contains('\'')));
        assert!(literal.starts_with('\'') && literal.ends_with('\''));
    }

    #[test]
    fn other_special_characters_pass_through_unchanged() {
        assert_eq!(string_literal("a&b=c?d#e+f%g"), "'a&b=c?d#e+f%g'");
        assert_eq!(string_literal("Müller"), "'Müller'");
    }

    #[test]
    fn a_guid_is_normalised_to_lower_case_without_braces() {
        assert_eq!(
            guid_literal("{30717E9C-643F-ED11-9DB0-002248225E95}").ok(),
            Some("30717e9c-643f-ed11-9db0-002248225e95".to_string())
        );
        assert_eq!(
            guid("18717e9c-643f-ed11-9db0-002248225e95").ok(),
            Some("18717e9c-643f-ed11-9db0-002248225e95".to_string())
        );
    }

    #[test]
    fn anything_but_a_guid_is_refused_with_a_message_naming_it() {
        for bad in [
            "",
            "not-a-guid",
            "18717e9c643fed119db0002248225e95",
            "18717e9c-643f-ed11-9db0-002248225e9g",
            "18717e9c-643f-ed11-9db0-002248225e95) or (1 eq 1",
            "18717e9c-643f-ed11-9db0-002248225e9",
        ] {
            let err = guid(bad).err();
            assert!(
                matches!(err, Some(DataverseError::InvalidInput { .. })),
                "{bad}"
            );
        }
        let text = guid("nope")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(text.contains("GUID") && text.contains("nope"), "{text}");
    }

    #[test]
    fn identifiers_refuse_url_syntax() {
        assert!(identifier("entity set", "contacts").is_ok());
        assert!(identifier("column", "_parentcustomerid_value").is_ok());
        for bad in ["", "contacts?x", "contacts(1)", "a b", "../x", "1abc", "ä"] {
            assert!(identifier("entity set", bad).is_err(), "{bad}");
        }
    }
}
