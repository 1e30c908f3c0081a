//! Domain: an e-mail address the way CleverReach keys receivers: trimmed, lower-case and
//! syntactically valid (docs/architecture.md §2 rule 3).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A valid, normalised e-mail address. Two addresses that differ only in case or surrounding
/// blanks are the same receiver.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

/// Why a text is not a usable e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("the e-mail address is empty")]
    Empty,
    #[error("{value:?} is not a valid e-mail address: {reason}")]
    Invalid { value: String, reason: &'static str },
}

const LOCAL_SPECIALS: &str = "!#$%&'*+/=?^_`{|}~.-";

impl Email {
    /// Trims, lower-cases and checks the syntax (RFC 5321 lengths, dot-atom local part,
    /// a domain of at least two labels).
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        let value = raw.trim().to_lowercase();
        if value.is_empty() {
            return Err(EmailError::Empty);
        }
        let invalid = |reason| EmailError::Invalid {
            value: value.clone(),
            reason,
        };
        if value.len() > 254 {
            return Err(invalid("longer than 254 characters"));
        }
        let Some((local, domain)) = value.rsplit_once('@') else {
            return Err(invalid("no @"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(invalid(
                "the part before @ is empty or longer than 64 characters",
            ));
        }
        if !local
            .chars()
            .all(|c| c.is_alphanumeric() || LOCAL_SPECIALS.contains(c))
        {
            return Err(invalid(
                "the part before @ has a character that is not allowed",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(invalid("misplaced dot before @"));
        }
        if domain.is_empty() || domain.len() > 253 {
            return Err(invalid("the domain is empty or too long"));
        }
        if !domain.contains('.') {
            return Err(invalid("the domain has no dot"));
        }
        for label in domain.split('.') {
            if label.is_empty() || label.len() > 63 {
                return Err(invalid("the domain has an empty or too long label"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(invalid("a domain label starts or ends with a hyphen"));
            }
            if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
                return Err(invalid("the domain has a character that is not allowed"));
            }
        }
        if domain
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.len() < 2 || tld.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(invalid("the top-level domain is not valid"));
        }
        Ok(Email(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An address that was an [`Email`] before and was kept as text (the planner's address
    /// arena): not checked again.
    pub(crate) fn normalised(address: &str) -> Email {
        Email(address.to_string())
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Email::parse(&value)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_differing_in_case_and_blanks_are_the_same_receiver() {
        assert_eq!(
            Email::parse("  Anna.Muster@Example.DE ").ok(),
            Email::parse("anna.muster@example.de").ok()
        );
    }

    #[test]
    fn valid_addresses_are_accepted() {
        for ok in [
            "a@b.de",
            "first.last+tag@sub.example.com",
            "o'neil@example.ie",
            "jörg@müller.de",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn invalid_addresses_are_rejected_with_a_reason() {
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a b@example.com",
            "a..b@example.com",
            ".a@example.com",
            "a@-example.com",
            "a@example..com",
            "a@example.c",
            "a@1.2.3.4",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be invalid");
        }
    }
}
