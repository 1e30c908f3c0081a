//! Use case step: the brake on mass removal (docs/architecture.md §2). A full reconcile asks
//! before it executes its removals, a deletion before it deletes a group; the decision itself
//! is `domain::brake`. What the brake holds back is logged with its numbers (never addresses)
//! and said on the source by the caller; a confirmation on the source lets it through once.

use super::connector::{Connector, SyncError};
use crate::domain::brake::{self, Removal, Verdict};
use crate::domain::settings::Settings;
use crate::domain::source::{GroupId, SourceRecord};
use crate::ports::newsletter::{ListState, ReceiverFilter};
use tracing::{info, warn};

/// The brake's decision on the removals a full reconcile of `record` planned: `removing` of
/// the group's `active` receivers.
pub fn removals(
    settings: &Settings,
    record: &SourceRecord,
    removing: usize,
    active: usize,
) -> Verdict {
    let verdict = brake::check(
        &settings.brake,
        Removal::Receivers { removing, active },
        record.removals_confirmed,
    );
    log(&verdict, removing, active);
    verdict
}

/// The brake's decision on deleting `group`; `confirmed` = its source carries a confirmation
/// (a deleted source carries none). Counts the group's active receivers (one read per 5000).
pub async fn group_deletion(
    conn: &Connector,
    settings: &Settings,
    group: &GroupId,
    confirmed: bool,
) -> Result<Verdict, SyncError> {
    let active = active_receivers(conn, group).await?;
    let verdict = brake::check(&settings.brake, Removal::Group { active }, confirmed);
    log(&verdict, active, active);
    Ok(verdict)
}

/// The active receivers of a group, counted page by page.
pub async fn active_receivers(conn: &Connector, group: &GroupId) -> Result<usize, SyncError> {
    let mut pages = conn.receivers.receivers(
        group.as_str(),
        ReceiverFilter {
            state: ListState::Active,
            ..ReceiverFilter::default()
        },
    );
    let mut active = 0;
    while let Some(page) = pages.next_page().await? {
        // Counted by state as well: the filter narrows the read, the state decides.
        active += page.iter().filter(|r| !r.state.is_opted_out()).count();
    }
    Ok(active)
}

fn log(verdict: &Verdict, removing: usize, active: usize) {
    match verdict {
        Verdict::Go => {}
        Verdict::Confirmed(_) => {
            info!(
                removing,
                active, "large removal confirmed on the source: going ahead"
            )
        }
        Verdict::Hold(_) => warn!(removing, active, "large removal held back by the brake"),
    }
}
