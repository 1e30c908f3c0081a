//! Adapter: CleverReach REST API v3, the connector's way into recipient lists ("groups"); it
//! implements the newsletter ports (`ports::newsletter`, see `newsletter.rs`).
//!
//! - [`CleverReachClient`]: groups, global attributes, receivers (batched upserts, removals,
//!   address changes, paged reads, the runtime filter), bounces, blacklist.
//! - Tokens: [`TokenSet`] kept behind the [`TokenStore`] port, refreshed shortly before they
//!   expire and once on a 401; a refresh rotates the refresh token, and a refused refresh
//!   re-reads the store once before asking for a reconnect
//!   ([`CleverReachError::ReconnectRequired`]).
//! - Retries: throttling (`Retry-After` honoured), 5xx, timeouts and broken connections are
//!   retried with [`crate::adapters::http::with_retries`]; everything else is not.
//!   Non-idempotent calls are made safe to repeat: group creation carries a marker it looks
//!   for on a retry, attribute creation takes 409 as "exists", an address change takes "old
//!   gone, new present" as done.
//! - Opt-outs: an upsert sends `activated`/`registered` only for receivers to be activated
//!   (new ones); for everyone else it sends no state at all, so it cannot undo an
//!   unsubscribe or a bounce (see `docs/architecture.md`, "Opt-outs").

mod client;
mod config;
mod error;
mod groups;
mod hooks;
mod newsletter;
mod receivers;
mod tokens;
mod wire;

pub use client::CleverReachClient;
pub use config::{
    CleverReachConfig, DEFAULT_BASE_URL, DEFAULT_UPSERT_BATCH, DELETE_BATCH, MAX_BOUNCE_PAGE_SIZE,
    MAX_PAGE_SIZE, MAX_UPSERT_BATCH, attribute,
};
pub use error::{CleverReachError, TokenStoreError};
pub use groups::{CREATION_MARKER_PREFIX, Group};
pub use receivers::{
    Account, Bounce, EmailChange, FilterRequest, FilterRule, ListState, Page, ReceiverFilter,
    ReceiverPages, ReceiverRecord, ReceiverWrite, RejectedReceiver, RemoveReport, UpsertReport,
};
pub use tokens::{InMemoryTokenStore, StoredTokens, TokenSet, TokenStore, TokenVersion};
