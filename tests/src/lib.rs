//! The sandbox: stateful simulators of the Dataverse Web API (with webhooks) and of the
//! CleverReach REST API v3, speaking the wire formats of docs/architecture.md §11 (docs/architecture.md §8), plus the
//! helpers the end-to-end tests use.
//!
//! Both simulators run in-process for tests (bound to 127.0.0.1 on an ephemeral or chosen port)
//! or as the `sandbox` binary. Both accept fault injection (see [`faults`]).

pub mod aws;
pub mod bench;
pub mod browser;
pub mod chaos;
pub mod cleverreach;
pub mod connect_page;
pub mod dataverse;
pub mod faults;
pub mod form_page;
pub mod harness;
pub mod oracle;
pub mod provision;
