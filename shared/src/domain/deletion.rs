//! Domain: what happens to a source's group when the source is deleted or its sync is turned
//! off (docs/architecture.md §2 "Deleting groups", settings `cleverreach:deletionsettings:*`).
//!
//! "Protected" means the group is locked in CleverReach. The connector locks the groups it
//! creates while `deleteprotection` is on; a group locked then stays protected after the setting
//! is turned off (and one locked by hand in CleverReach is protected too), because the lock is
//! what a CleverReach user sees. The priority decides what protection is worth.

/// `cleverreach:deletionsettings:priority`: how deletion and protection settle a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeletionPriority {
    /// 0: the connector may delete a protected group (the deletion settings win).
    #[default]
    DeleteDespiteProtection,
    /// 1: a protected group is never deleted (protection wins over both deletion settings).
    NeverDeleteProtected,
    /// 2: a protected group is deleted only when its source is deleted and `deletecampaign`
    /// is on (protection wins over `deletedisablesynchronization`).
    DeleteProtectedOnlyWhenRecordDeleted,
}

impl DeletionPriority {
    /// The number stored in the settings table.
    pub fn code(self) -> i64 {
        match self {
            DeletionPriority::DeleteDespiteProtection => 0,
            DeletionPriority::NeverDeleteProtected => 1,
            DeletionPriority::DeleteProtectedOnlyWhenRecordDeleted => 2,
        }
    }
}

/// A priority number other than 0, 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the deletion priority must be 0, 1 or 2, not {0}")]
pub struct InvalidDeletionPriority(pub i64);

impl TryFrom<i64> for DeletionPriority {
    type Error = InvalidDeletionPriority;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(DeletionPriority::DeleteDespiteProtection),
            1 => Ok(DeletionPriority::NeverDeleteProtected),
            2 => Ok(DeletionPriority::DeleteProtectedOnlyWhenRecordDeleted),
            other => Err(InvalidDeletionPriority(other)),
        }
    }
}

/// The deletion settings (docs/architecture.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeletionSettings {
    /// `deletecampaign`: delete the group when its source is deleted.
    pub delete_campaign: bool,
    /// `deletedisablesynchronization`: delete the group when the source's sync is turned off.
    pub delete_disable_synchronization: bool,
    /// `deleteprotection`: lock the groups the connector creates.
    pub delete_protection: bool,
    pub priority: DeletionPriority,
}

impl Default for DeletionSettings {
    fn default() -> Self {
        DeletionSettings {
            delete_campaign: true,
            delete_disable_synchronization: true,
            delete_protection: false,
            priority: DeletionPriority::DeleteDespiteProtection,
        }
    }
}

/// Why a source no longer has a synced group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeletionReason {
    /// The source record was deleted in the CRM.
    RecordDeleted,
    /// The source's sync flag was turned off (also when the source was deactivated).
    SyncDisabled,
}

/// What the connector does with the group. A kept group is no longer synced; turning sync on
/// again reuses it if it still exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupFate {
    Delete,
    Keep,
}

/// Decides whether a group is deleted. `group_protected` = the group is locked in CleverReach.
pub fn group_fate(
    reason: DeletionReason,
    settings: &DeletionSettings,
    group_protected: bool,
) -> GroupFate {
    let wanted = match reason {
        DeletionReason::RecordDeleted => settings.delete_campaign,
        DeletionReason::SyncDisabled => settings.delete_disable_synchronization,
    };
    let delete = wanted
        && (!group_protected
            || match settings.priority {
                DeletionPriority::DeleteDespiteProtection => true,
                DeletionPriority::NeverDeleteProtected => false,
                DeletionPriority::DeleteProtectedOnlyWhenRecordDeleted => {
                    reason == DeletionReason::RecordDeleted
                }
            });
    if delete {
        GroupFate::Delete
    } else {
        GroupFate::Keep
    }
}

/// Whether a group the connector creates is created locked (protected).
pub fn lock_new_groups(settings: &DeletionSettings) -> bool {
    settings.delete_protection
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::DeletionReason::{RecordDeleted, SyncDisabled};
    use super::GroupFate::{Delete, Keep};
    use super::*;

    fn settings(dc: bool, dds: bool, dp: bool, priority: i64) -> DeletionSettings {
        DeletionSettings {
            delete_campaign: dc,
            delete_disable_synchronization: dds,
            delete_protection: dp,
            priority: DeletionPriority::try_from(priority).unwrap(),
        }
    }

    const T: bool = true;
    const F: bool = false;
    const R: DeletionReason = RecordDeleted;
    const S: DeletionReason = SyncDisabled;

    /// Every combination, written out by hand from docs/architecture.md §2:
    /// (deletecampaign, deletedisablesynchronization, deleteprotection, priority, reason,
    ///  group locked, expected fate).
    /// Reading guide: unlocked groups follow deletecampaign (R) / deletedisablesynchronization
    /// (S); locked groups do too under priority 0, are always kept under priority 1, and under
    /// priority 2 are deleted only for R with deletecampaign on.
    #[rustfmt::skip]
    const TABLE: [(bool, bool, bool, i64, DeletionReason, bool, GroupFate); 96] = [
        // dc dds dp prio reason locked fate
        (F, F, F, 0, R, F, Keep), (F, F, F, 0, R, T, Keep), (F, F, F, 0, S, F, Keep), (F, F, F, 0, S, T, Keep),
        (F, F, F, 1, R, F, Keep), (F, F, F, 1, R, T, Keep), (F, F, F, 1, S, F, Keep), (F, F, F, 1, S, T, Keep),
        (F, F, F, 2, R, F, Keep), (F, F, F, 2, R, T, Keep), (F, F, F, 2, S, F, Keep), (F, F, F, 2, S, T, Keep),
        (F, F, T, 0, R, F, Keep), (F, F, T, 0, R, T, Keep), (F, F, T, 0, S, F, Keep), (F, F, T, 0, S, T, Keep),
        (F, F, T, 1, R, F, Keep), (F, F, T, 1, R, T, Keep), (F, F, T, 1, S, F, Keep), (F, F, T, 1, S, T, Keep),
        (F, F, T, 2, R, F, Keep), (F, F, T, 2, R, T, Keep), (F, F, T, 2, S, F, Keep), (F, F, T, 2, S, T, Keep),
        (F, T, F, 0, R, F, Keep), (F, T, F, 0, R, T, Keep), (F, T, F, 0, S, F, Delete), (F, T, F, 0, S, T, Delete),
        (F, T, F, 1, R, F, Keep), (F, T, F, 1, R, T, Keep), (F, T, F, 1, S, F, Delete), (F, T, F, 1, S, T, Keep),
        (F, T, F, 2, R, F, Keep), (F, T, F, 2, R, T, Keep), (F, T, F, 2, S, F, Delete), (F, T, F, 2, S, T, Keep),
        (F, T, T, 0, R, F, Keep), (F, T, T, 0, R, T, Keep), (F, T, T, 0, S, F, Delete), (F, T, T, 0, S, T, Delete),
        (F, T, T, 1, R, F, Keep), (F, T, T, 1, R, T, Keep), (F, T, T, 1, S, F, Delete), (F, T, T, 1, S, T, Keep),
        (F, T, T, 2, R, F, Keep), (F, T, T, 2, R, T, Keep), (F, T, T, 2, S, F, Delete), (F, T, T, 2, S, T, Keep),
        (T, F, F, 0, R, F, Delete), (T, F, F, 0, R, T, Delete), (T, F, F, 0, S, F, Keep), (T, F, F, 0, S, T, Keep),
        (T, F, F, 1, R, F, Delete), (T, F, F, 1, R, T, Keep), (T, F, F, 1, S, F, Keep), (T, F, F, 1, S, T, Keep),
        (T, F, F, 2, R, F, Delete), (T, F, F, 2, R, T, Delete), (T, F, F, 2, S, F, Keep), (T, F, F, 2, S, T, Keep),
        (T, F, T, 0, R, F, Delete), (T, F, T, 0, R, T, Delete), (T, F, T, 0, S, F, Keep), (T, F, T, 0, S, T, Keep),
        (T, F, T, 1, R, F, Delete), (T, F, T, 1, R, T, Keep), (T, F, T, 1, S, F, Keep), (T, F, T, 1, S, T, Keep),
        (T, F, T, 2, R, F, Delete), (T, F, T, 2, R, T, Delete), (T, F, T, 2, S, F, Keep), (T, F, T, 2, S, T, Keep),
        (T, T, F, 0, R, F, Delete), (T, T, F, 0, R, T, Delete), (T, T, F, 0, S, F, Delete), (T, T, F, 0, S, T, Delete),
        (T, T, F, 1, R, F, Delete), (T, T, F, 1, R, T, Keep), (T, T, F, 1, S, F, Delete), (T, T, F, 1, S, T, Keep),
        (T, T, F, 2, R, F, Delete), (T, T, F, 2, R, T, Delete), (T, T, F, 2, S, F, Delete), (T, T, F, 2, S, T, Keep),
        (T, T, T, 0, R, F, Delete), (T, T, T, 0, R, T, Delete), (T, T, T, 0, S, F, Delete), (T, T, T, 0, S, T, Delete),
        (T, T, T, 1, R, F, Delete), (T, T, T, 1, R, T, Keep), (T, T, T, 1, S, F, Delete), (T, T, T, 1, S, T, Keep),
        (T, T, T, 2, R, F, Delete), (T, T, T, 2, R, T, Delete), (T, T, T, 2, S, F, Delete), (T, T, T, 2, S, T, Keep),
    ];

    #[test]
    fn every_combination_of_settings_reason_and_lock_has_the_fate_of_the_table() {
        let mut seen = std::collections::HashSet::new();
        for (dc, dds, dp, prio, reason, locked, expected) in TABLE {
            assert!(
                seen.insert((dc, dds, dp, prio, reason, locked)),
                "row listed twice"
            );
            let s = settings(dc, dds, dp, prio);
            assert_eq!(
                group_fate(reason, &s, locked),
                expected,
                "deletecampaign={dc} deletedisablesynchronization={dds} deleteprotection={dp} \
                 priority={prio} reason={reason:?} locked={locked}"
            );
        }
        assert_eq!(
            seen.len(),
            2 * 2 * 2 * 3 * 2 * 2,
            "the table covers every combination"
        );
    }

    #[test]
    fn with_default_settings_a_deleted_source_or_sync_off_deletes_the_group() {
        let s = DeletionSettings::default();
        assert_eq!(group_fate(RecordDeleted, &s, false), Delete);
        assert_eq!(group_fate(SyncDisabled, &s, false), Delete);
    }

    #[test]
    fn keeping_groups_of_deleted_campaigns_keeps_them() {
        let s = DeletionSettings {
            delete_campaign: false,
            ..DeletionSettings::default()
        };
        assert_eq!(group_fate(RecordDeleted, &s, false), Keep);
        assert_eq!(group_fate(SyncDisabled, &s, false), Delete);
    }

    #[test]
    fn priority_one_never_deletes_a_locked_group_whatever_the_reason() {
        let s = settings(true, true, true, 1);
        assert_eq!(group_fate(RecordDeleted, &s, true), Keep);
        assert_eq!(group_fate(SyncDisabled, &s, true), Keep);
        assert_eq!(
            group_fate(RecordDeleted, &s, false),
            Delete,
            "an unlocked group is not protected"
        );
    }

    #[test]
    fn priority_two_deletes_a_locked_group_only_when_its_source_is_deleted() {
        let s = settings(true, true, true, 2);
        assert_eq!(group_fate(RecordDeleted, &s, true), Delete);
        assert_eq!(group_fate(SyncDisabled, &s, true), Keep);
        let keep_deleted = settings(false, true, true, 2);
        assert_eq!(group_fate(RecordDeleted, &keep_deleted, true), Keep);
    }

    #[test]
    fn priority_zero_deletes_a_locked_group_as_the_deletion_settings_say() {
        let s = settings(true, true, true, 0);
        assert_eq!(group_fate(RecordDeleted, &s, true), Delete);
        assert_eq!(group_fate(SyncDisabled, &s, true), Delete);
    }

    #[test]
    fn protection_never_causes_a_deletion_the_settings_do_not_ask_for() {
        for prio in 0..3 {
            let s = settings(false, false, true, prio);
            for reason in [RecordDeleted, SyncDisabled] {
                for locked in [false, true] {
                    assert_eq!(group_fate(reason, &s, locked), Keep, "priority {prio}");
                }
            }
        }
    }

    #[test]
    fn new_groups_are_locked_only_when_deletion_protection_is_on() {
        assert!(!lock_new_groups(&DeletionSettings::default()));
        assert!(lock_new_groups(&settings(true, true, true, 0)));
    }

    #[test]
    fn priorities_are_read_from_their_numbers_and_others_are_refused() {
        for code in 0..3 {
            assert_eq!(DeletionPriority::try_from(code).unwrap().code(), code);
        }
        for bad in [-1, 3, 10, i64::MAX] {
            let err = DeletionPriority::try_from(bad).unwrap_err();
            assert!(err.to_string().contains(&bad.to_string()), "{err}");
        }
        assert_eq!(
            DeletionPriority::default(),
            DeletionPriority::DeleteDespiteProtection
        );
    }
}
