//! Adapter: CleverReach REST API v3.

pub mod client;
