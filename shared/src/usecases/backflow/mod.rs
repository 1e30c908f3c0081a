//! Use cases: CleverReach back to the CRM. The scheduled jobs page through every managed
//! group's events after their cursor (`engine`) and apply each one idempotently: an
//! unsubscribe or bounce (`receiver_state`), a sign-up (`lead_sync`). The words they share are
//! in `model`. See `docs/architecture.md` ("Back from CleverReach").

pub mod engine;
pub mod events;
pub mod lead_sync;
pub mod model;
pub mod receiver_state;

pub use engine::{due, flush_group, run_job};
pub use model::{Job, RunLimits, RunSummary};
