//! The domain: the connector's rules in the words of docs/architecture.md, with no I/O.
//!
//! Sources (campaigns, campaign activities, marketing lists) map to CleverReach groups;
//! recipients (contacts, leads, accounts' primary contacts) become receivers when the rule of
//! docs/architecture.md §2 says so. Everything here is pure and deterministic so that it can be tested alone.

pub mod blocklist;
pub mod brake;
pub mod change;
pub mod checklist;
pub mod deletion;
pub mod email;
pub mod hooks;
pub mod ids;
pub mod naming;
pub mod planner;
pub mod receiver;
pub mod recipient;
pub mod routing;
pub mod rules;
pub mod settings;
pub mod source;
