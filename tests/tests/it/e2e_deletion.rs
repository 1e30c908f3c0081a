//! End to end: the deletion settings (docs/architecture.md §2 "Deleting groups") and status changes (§3) on
//! marketing lists. The CRM side changes through the Dataverse simulator's Web API; what happened
//! to the group is read from the CleverReach simulator.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::harness::Harness;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// The list is deleted.
    RecordDeleted,
    /// The list's sync flag is turned off.
    SyncDisabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deleted,
    Kept,
}

/// One case: settings, what happens to the list, and what docs/architecture.md §2 says becomes of the group.
struct Case {
    priority: u8,
    reason: Reason,
    /// `deleteprotection`: the group is created locked.
    protection: bool,
    /// The deletion setting of the reason (`deletecampaign` for RecordDeleted,
    /// `deletedisablesynchronization` for SyncDisabled); the other one is set the opposite way,
    /// so that a mix-up of the two shows.
    delete_setting: bool,
    expected: Fate,
}

impl Case {
    fn name(&self) -> String {
        format!(
            "priority {} × {:?} × protection {} × {} {}",
            self.priority,
            self.reason,
            if self.protection { "on" } else { "off" },
            match self.reason {
                Reason::RecordDeleted => "deletecampaign",
                Reason::SyncDisabled => "deletedisablesynchronization",
            },
            self.delete_setting
        )
    }
}

const fn case(
    priority: u8,
    reason: Reason,
    protection: bool,
    delete_setting: bool,
    expected: Fate,
) -> Case {
    Case {
        priority,
        reason,
        protection,
        delete_setting,
        expected,
    }
}

use Fate::{Deleted, Kept};
use Reason::{RecordDeleted, SyncDisabled};

/// docs/architecture.md §2, written out: the reason's setting asks for deletion (true) in the first twelve
/// rows, so protection and priority decide; the last rows show that a setting saying "keep"
/// keeps the group whatever the priority.
const CASES: [Case; 18] = [
    // Not protected: the setting decides, whatever the priority.
    case(0, RecordDeleted, false, true, Deleted),
    case(0, SyncDisabled, false, true, Deleted),
    case(1, RecordDeleted, false, true, Deleted),
    case(1, SyncDisabled, false, true, Deleted),
    case(2, RecordDeleted, false, true, Deleted),
    case(2, SyncDisabled, false, true, Deleted),
    // Protected, priority 0: the connector may delete despite protection.
    case(0, RecordDeleted, true, true, Deleted),
    case(0, SyncDisabled, true, true, Deleted),
    // Protected, priority 1: never deleted.
    case(1, RecordDeleted, true, true, Kept),
    case(1, SyncDisabled, true, true, Kept),
    // Protected, priority 2: deleted only when the source is deleted with deletecampaign on.
    case(2, RecordDeleted, true, true, Deleted),
    case(2, SyncDisabled, true, true, Kept),
    // The setting says keep.
    case(0, RecordDeleted, false, false, Kept),
    case(0, SyncDisabled, false, false, Kept),
    case(0, RecordDeleted, true, false, Kept),
    case(0, SyncDisabled, true, false, Kept),
    case(2, RecordDeleted, true, false, Kept),
    case(1, SyncDisabled, false, false, Kept),
];

/// Runs one case in a fresh sandbox; returns what went wrong, naming the case.
async fn run(case: &Case) -> Result<(), String> {
    let name = case.name();
    let (delete_campaign, delete_disable) = match case.reason {
        RecordDeleted => (case.delete_setting, !case.delete_setting),
        SyncDisabled => (!case.delete_setting, case.delete_setting),
    };
    let h = Harness::start().await.map_err(|e| format!("{name}: {e}"))?;
    let priority = case.priority.to_string();
    h.install(&[
        (
            "cleverreach:deletionsettings:deletecampaign",
            if delete_campaign { "true" } else { "false" },
        ),
        (
            "cleverreach:deletionsettings:deletedisablesynchronization",
            if delete_disable { "true" } else { "false" },
        ),
        (
            "cleverreach:deletionsettings:deleteprotection",
            if case.protection { "true" } else { "false" },
        ),
        ("cleverreach:deletionsettings:priority", &priority),
    ])
    .await
    .map_err(|e| format!("{name}: {e}"))?;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await?;
    let (list, group) = h.synced_static_list("Policy", "contact", &[anna]).await?;
    let locked = h
        .cleverreach
        .group(&group)
        .ok_or(format!("{name}: no group after sync on"))?
        .locked;
    if locked != case.protection {
        return Err(format!(
            "{name}: group created locked={locked}, expected {}",
            case.protection
        ));
    }

    match case.reason {
        RecordDeleted => h.delete("lists", &list).await?,
        SyncDisabled => {
            h.update("lists", &list, json!({ "crc_syncwithcleverreach": false }))
                .await?
        }
    }
    h.settle().await.map_err(|e| format!("{name}: {e}"))?;

    let now = match h.cleverreach.group(&group) {
        Some(_) => Kept,
        None => Deleted,
    };
    if now != case.expected {
        return Err(format!(
            "{name}: group {now:?}, docs/architecture.md §2 says {:?}",
            case.expected
        ));
    }
    if case.reason == SyncDisabled {
        let stored = h.group_of("lists", &list);
        let expected_stored = (case.expected == Kept).then(|| group.clone());
        if stored != expected_stored {
            return Err(format!(
                "{name}: group id on the list is {stored:?}, expected {expected_stored:?}"
            ));
        }
    }
    if case.expected == Kept && h.active_emails(&group) != ["anna@example.com"] {
        return Err(format!("{name}: a kept group lost its receivers"));
    }
    if !h.dead_letters().is_empty() {
        return Err(format!("{name}: dead letters {:?}", h.dead_letters()));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_priority_reason_and_protection_deletes_or_keeps_the_group_as_design_says() {
    let results = futures::future::join_all(CASES.iter().map(run)).await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

async fn keep_on_sync_off() -> Harness {
    let h = Harness::start().await.unwrap();
    h.install(&[(
        "cleverreach:deletionsettings:deletedisablesynchronization",
        "false",
    )])
    .await
    .unwrap();
    h
}

#[tokio::test]
async fn a_kept_group_is_reused_and_reconciled_when_sync_is_turned_on_again() {
    let h = keep_on_sync_off().await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("Again", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    h.update("lists", &list, json!({ "crc_syncwithcleverreach": false }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&group).is_some(), "kept");

    // While sync is off: the CRM list changes, and so does the kept group.
    h.add_member(&list, &bert).await.unwrap();
    h.remove_member(&list, &anna).await.unwrap();
    h.cleverreach
        .add_stranger(&group, "stranger@example.com", true, &[])
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "stranger@example.com"],
        "not synced while sync is off"
    );

    h.update("lists", &list, json!({ "crc_syncwithcleverreach": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.group_of("lists", &list).as_deref(), Some(group.as_str()));
    assert_eq!(h.cleverreach.groups().len(), 1, "no second group");
    assert_eq!(h.active_emails(&group), ["bert@example.com"]);
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn a_kept_group_deleted_in_cleverreach_meanwhile_is_replaced_by_a_new_one() {
    let h = keep_on_sync_off().await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("Replaced", "contact", &[anna])
        .await
        .unwrap();
    h.update("lists", &list, json!({ "crc_syncwithcleverreach": false }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    // A CleverReach user deletes the kept group (through the API the connector also uses).
    let newsletter = h.newsletter();
    newsletter.delete_group(&group).await.unwrap();
    assert!(h.cleverreach.group(&group).is_none());

    h.update("lists", &list, json!({ "crc_syncwithcleverreach": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    let new_group = h.group_of("lists", &list).expect("a group id on the list");
    assert_ne!(new_group, group, "a new group");
    assert_eq!(h.cleverreach.group(&new_group).unwrap().name, "Replaced");
    assert_eq!(h.active_emails(&new_group), ["anna@example.com"]);
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn deactivating_a_list_turns_sync_off_and_deletes_the_group_and_activating_it_creates_a_new_one()
 {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("Seasonal", "contact", &[anna])
        .await
        .unwrap();

    h.update("lists", &list, json!({ "statecode": 1, "statuscode": 1 }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    let row = h.dataverse.row("lists", &list).unwrap();
    assert_eq!(
        row["crc_syncwithcleverreach"],
        json!(false),
        "flag written back"
    );
    assert!(h.cleverreach.group(&group).is_none(), "deleted by default");
    assert!(h.group_of("lists", &list).is_none());

    // Activating alone does nothing: the flag is off now.
    h.update("lists", &list, json!({ "statecode": 0, "statuscode": 0 }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.groups().is_empty());

    h.update("lists", &list, json!({ "crc_syncwithcleverreach": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    let new_group = h.group_of("lists", &list).expect("group again");
    assert_ne!(new_group, group);
    assert_eq!(h.active_emails(&new_group), ["anna@example.com"]);
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn activating_a_list_whose_flag_stayed_on_reuses_its_kept_group_and_reconciles_it() {
    // The flag is on while the list is inactive when an administrator sets both at once, or
    // when the flag was turned on again before activating: activation then brings the group back.
    let h = keep_on_sync_off().await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("Dormant", "contact", &[anna])
        .await
        .unwrap();
    h.update("lists", &list, json!({ "statecode": 1, "statuscode": 1 }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&group).is_some(), "kept per settings");
    h.add_member(&list, &bert).await.unwrap();
    h.settle().await.unwrap();

    h.update(
        "lists",
        &list,
        json!({ "statecode": 0, "statuscode": 0, "crc_syncwithcleverreach": true }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.group_of("lists", &list).as_deref(), Some(group.as_str()));
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com"]
    );
    assert!(h.dead_letters().is_empty());
}

#[tokio::test]
async fn the_connectors_own_write_back_on_deactivation_is_not_worked_a_second_time() {
    let h = keep_on_sync_off().await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, group) = h
        .synced_static_list("Quiet", "contact", &[anna])
        .await
        .unwrap();
    let deliveries_before = h.dataverse.deliveries().len();

    h.update("lists", &list, json!({ "statecode": 1, "statuscode": 1 }))
        .await
        .unwrap();
    let processed = h.settle().await.unwrap();

    assert_eq!(processed, 1, "only the administrator's change was worked");
    let deliveries = h.dataverse.deliveries();
    let new: Vec<_> = deliveries[deliveries_before..]
        .iter()
        .filter(|d| d.record_id.eq_ignore_ascii_case(&list))
        .collect();
    // The administrator's deactivation, queued; the connector's flag write-back (the sync flag
    // is a filtering attribute, so Dataverse does call), answered "ignored". The status the
    // connector writes is no filtering attribute: no call at all.
    let statuses: Vec<Option<u16>> = new.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [Some(202), Some(200)], "{new:#?}");
    assert!(h.cleverreach.group(&group).is_some());
    let row = h.dataverse.row("lists", &list).unwrap();
    assert_eq!(row["crc_syncwithcleverreach"], json!(false));
    assert!(h.dead_letters().is_empty());
}
