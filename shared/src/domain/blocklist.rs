//! Domain: the account-wide opt-outs of the newsletter tool that no group may override: the
//! blacklist (exact addresses and whole domains) and the bounce list. An address they block is
//! never added to a group as active, on any path (docs/architecture.md §2 "Opt-outs").

use super::email::Email;
use std::collections::HashSet;

/// Blocked addresses and domains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockSet {
    exact: HashSet<Email>,
    /// Lower-case domains blocked as a whole (a blacklist entry `*@example.com`).
    domains: HashSet<String>,
}

impl BlockSet {
    pub fn new() -> Self {
        BlockSet::default()
    }

    /// Reads blacklist entries: an address, or a whole domain written `*@domain` or `@domain`.
    /// Returns the entries that are neither, for the caller to report.
    pub fn add_entries<'a>(&mut self, entries: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut unreadable = Vec::new();
        for entry in entries {
            let entry = entry.trim();
            if let Some(domain) = entry.strip_prefix("*@").or_else(|| entry.strip_prefix('@')) {
                let domain = domain.trim().to_ascii_lowercase();
                if Email::parse(&format!("x@{domain}")).is_ok() {
                    self.domains.insert(domain);
                    continue;
                }
            } else if let Ok(email) = Email::parse(entry) {
                self.exact.insert(email);
                continue;
            }
            unreadable.push(entry.to_string());
        }
        unreadable
    }

    /// Blocks these addresses (bounced ones, exact blacklist entries).
    pub fn add_emails(&mut self, emails: impl IntoIterator<Item = Email>) {
        self.exact.extend(emails);
    }

    /// Whether this address may not be added as active.
    pub fn blocks(&self, email: &Email) -> bool {
        if self.exact.contains(email) {
            return true;
        }
        let domain = email
            .as_str()
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        self.domains.contains(&domain)
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn email(text: &str) -> Email {
        Email::parse(text).unwrap()
    }

    #[test]
    fn an_address_or_a_whole_domain_on_the_blacklist_is_blocked() {
        let mut set = BlockSet::new();
        let unreadable = set.add_entries([
            "anna@example.com",
            "*@Spam.Example",
            "@junk.example",
            "no address",
        ]);
        assert_eq!(unreadable, ["no address"]);
        assert!(set.blocks(&email("ANNA@example.com")));
        assert!(set.blocks(&email("whoever@spam.example")));
        assert!(set.blocks(&email("x@junk.example")));
        assert!(!set.blocks(&email("bert@example.com")));
        assert!(
            !set.blocks(&email("x@sub.spam.example")),
            "a domain entry is that domain only"
        );
    }

    #[test]
    fn a_bounced_address_is_blocked_too() {
        let mut set = BlockSet::new();
        set.add_emails([email("gone@example.com")]);
        assert!(set.blocks(&email("gone@example.com")));
        assert_eq!(set.len(), 1);
    }
}
