//! Adapters: the edge of the hexagon. Each translates one outside system's wire format into the
//! domain's types and classifies its failures (see [`crate::error::Retryable`]).

pub mod cleverreach;
pub mod dataverse;
pub mod dryrun;
pub mod http;
pub mod memory;

#[cfg(feature = "aws")]
pub mod dynamodb;
#[cfg(feature = "aws")]
pub mod secrets_manager;
#[cfg(feature = "aws")]
pub mod sqs;
