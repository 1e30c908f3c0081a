//! Dataverse simulator (in progress).
