//! CleverReach connector: what every Lambda function shares.
//!
//! - [`domain`]: the rules of the product (settings, checklist, eligibility, naming, deletion
//!   policy, reconcile planner). Pure: no HTTP, no AWS, no wire formats.
//! - [`adapters`]: Dataverse and CleverReach over HTTPS, translating their wire formats into the
//!   domain's types (feature `adapters`, on by default).
//! - [`error`] and [`secret`]: retry classification and secret wrapping used at every edge.

pub mod config;
pub mod domain;
pub mod error;
pub mod secret;

#[cfg(feature = "adapters")]
pub mod ports;

#[cfg(feature = "adapters")]
pub mod redact;

#[cfg(feature = "adapters")]
pub mod adapters;

#[cfg(feature = "adapters")]
pub mod deadline;

#[cfg(feature = "adapters")]
pub mod handlers;

#[cfg(feature = "adapters")]
pub mod metrics;

#[cfg(feature = "adapters")]
pub mod usecases;

#[cfg(feature = "adapters")]
pub mod install;

#[cfg(feature = "aws")]
pub mod bootstrap;
#[cfg(feature = "aws")]
pub mod telemetry;
