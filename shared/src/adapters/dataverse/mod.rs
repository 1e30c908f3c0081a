//! Adapter: Dataverse (Dynamics 365). Webhook bodies in, Web API out.

pub mod client;
pub mod crm;
pub mod metadata;
pub mod schema;
pub mod webhook;
