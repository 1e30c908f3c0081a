//! The use cases: what the connector does, written as sequences of named steps over the ports
//! (`crate::ports`), never over an adapter. Handlers call these; the domain decides, this layer
//! reads, writes and reports. See `docs/architecture.md` ("Use cases").
//!
//! - [`source`]: a source changed (its group created, renamed, reconciled, kept or deleted);
//! - [`people`]: people changed (only their receivers, in every group);
//! - [`reconcile`]: the one reconcile both use (index, plan, execute, re-check, report);
//! - [`brake`]: the brake on mass removal a full reconcile and a group deletion ask first;
//! - [`backflow`]: CleverReach back to the CRM (unsubscribes, bounces, sign-ups);
//! - [`hooks`]: CleverReach's event hooks (registrations, health check, one delivery);
//! - [`retroactive`]: the retroactive checklist sync of a marketing list;
//! - [`sweep`]: the nightly orphan sweep (groups whose source is gone or no longer synced).

pub mod backflow;
pub mod brake;
pub mod connector;
pub mod hooks;
pub mod people;
pub mod reconcile;
pub mod retroactive;
pub mod source;
pub mod sweep;

pub use connector::{Connector, SyncError};

#[cfg(test)]
pub(crate) mod tests;
