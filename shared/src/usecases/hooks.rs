//! Use case: CleverReach's event hooks, the fast path of the back-flow (docs/architecture.md §3
//! "Event hooks"). A registration per synced group; a delivery names a group and a receiver
//! id, and the worker reads the receiver and applies it exactly as the scheduled jobs do
//! (unsubscribe → receiver-state path, sign-up → lead path), so an event seen by both is
//! applied once. Deliveries are best effort (no retry is promised): the scheduled jobs stay
//! the safety net, and their every run checks the registrations ([`check`]).

pub use crate::usecases::connector::Hooks;
use crate::usecases::connector::{Connector, SyncError};
use std::collections::{BTreeMap, BTreeSet};
use tracing::{info, warn};

/// The category the connector registers.
pub const RECEIVER_CATEGORY: &str = "receiver";

/// What a health check found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HookCheck {
    /// Synced groups that should have a registration.
    pub wanted: usize,
    /// Registrations of ours found in place (with a stored call token).
    pub in_place: usize,
    /// Registrations made (missing, duplicated or without a stored token).
    pub registered: usize,
    /// Registrations of ours removed (their group is no longer synced).
    pub removed: usize,
    /// Groups whose registration failed, with the reason (ids only).
    pub failed: Vec<String>,
}

/// Registers the receiver events of a group (a group created or reused). Without hooks
/// configured, nothing. Any earlier registration of the group is replaced (its token is
/// unknown or stale).
pub async fn register(conn: &Connector, group_id: &str) -> Result<(), SyncError> {
    let Some(hooks) = &conn.hooks else {
        return Ok(());
    };
    let verify = hooks.tokens.verify_token().await?;
    hooks.registry.delete_hook(group_id).await?;
    let registration = hooks
        .registry
        .register_hook(&hooks.url, group_id, &verify)
        .await?;
    hooks
        .tokens
        .save_call_token(group_id, &registration.call_token)
        .await?;
    info!(group_id, "event hook registered");
    Ok(())
}

/// Whether the group has exactly one registration of ours and its token is stored.
async fn in_place(hooks: &Hooks, group_id: &str) -> Result<bool, SyncError> {
    let ours = hooks
        .registry
        .list_hooks()
        .await?
        .into_iter()
        .filter(|h| h.url == hooks.url && h.event == RECEIVER_CATEGORY && h.condition == group_id)
        .count();
    Ok(ours == 1
        && hooks
            .tokens
            .hook_tokens()
            .await?
            .call_tokens
            .contains_key(group_id))
}

/// Registers a group that is new, or reused when its registration is not in place (a
/// source's sync turned on again, a resync): one list call when it is.
pub async fn ensure_registered(
    conn: &Connector,
    group_id: &str,
    created: bool,
) -> Result<(), SyncError> {
    let Some(hooks) = &conn.hooks else {
        return Ok(());
    };
    if !created && in_place(hooks, group_id).await? {
        return Ok(());
    }
    register(conn, group_id).await
}

/// [`ensure_registered`] where a failure must not fail the sync: the next health check
/// repairs it.
pub async fn register_best_effort(conn: &Connector, group_id: &str, created: bool) {
    if let Err(e) = ensure_registered(conn, group_id, created).await {
        warn!(group_id, error = %e, "event hook not registered; the next scheduled run retries");
    }
}

/// Removes the registration of a group (deleted, or kept without sync) and forgets its token.
pub async fn unregister(conn: &Connector, group_id: &str) -> Result<(), SyncError> {
    let Some(hooks) = &conn.hooks else {
        return Ok(());
    };
    hooks.registry.delete_hook(group_id).await?;
    hooks.tokens.forget_call_token(group_id).await?;
    info!(group_id, "event hook removed");
    Ok(())
}

/// [`unregister`] where a failure must not fail the sync: the health check removes
/// registrations of groups that are no longer synced.
pub async fn unregister_best_effort(conn: &Connector, group_id: &str) {
    if let Err(e) = unregister(conn, group_id).await {
        warn!(group_id, error = %e, "event hook not removed; the next scheduled run retries");
    }
}

/// The health check: every synced group has exactly one registration of ours with a stored
/// token, no other group has one. Lists the registrations once (`GET /hooks/eventhook`).
pub async fn check(conn: &Connector) -> Result<HookCheck, SyncError> {
    let Some(hooks) = &conn.hooks else {
        return Ok(HookCheck::default());
    };
    let wanted: BTreeSet<String> = conn
        .sources
        .managed_sources()
        .await?
        .into_iter()
        .filter(|s| s.synced)
        .map(|s| s.group_id)
        .collect();
    let mut ours: BTreeMap<String, usize> = BTreeMap::new();
    for hook in hooks.registry.list_hooks().await? {
        if hook.url == hooks.url && hook.event == RECEIVER_CATEGORY {
            *ours.entry(hook.condition).or_default() += 1;
        }
    }
    let stored = hooks.tokens.hook_tokens().await?;
    let mut report = HookCheck {
        wanted: wanted.len(),
        ..HookCheck::default()
    };
    for group in &wanted {
        let in_place =
            ours.get(group) == Some(&1) && stored.call_tokens.contains_key(group.as_str());
        if in_place {
            report.in_place += 1;
            continue;
        }
        match register(conn, group).await {
            Ok(()) => report.registered += 1,
            Err(e) => {
                warn!(group_id = %group, error = %e, "event hook could not be registered");
                report.failed.push(format!("group {group}: {e}"));
            }
        }
    }
    for group in ours.keys().filter(|g| !wanted.contains(*g)) {
        match unregister(conn, group).await {
            Ok(()) => report.removed += 1,
            Err(e) => report.failed.push(format!("group {group}: {e}")),
        }
    }
    info!(
        wanted = report.wanted,
        in_place = report.in_place,
        registered = report.registered,
        removed = report.removed,
        failed = report.failed.len(),
        "event hooks checked"
    );
    Ok(report)
}
