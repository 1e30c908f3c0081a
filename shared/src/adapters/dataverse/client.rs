//! Adapter: Dataverse Web API client (in progress).
