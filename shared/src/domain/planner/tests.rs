//! Planner: tests of every rule on its own, of the streaming shape, and a property test that
//! runs random plans against a model of a CleverReach group.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::domain::receiver::PersonData;
use crate::domain::recipient::{CrmRef, PersonEntity};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, BTreeSet};

// ---------------------------------------------------------------------------------------------
// Builders

fn email(address: &str) -> Email {
    Email::parse(address).unwrap()
}

fn crm(number: u32) -> CrmRef {
    CrmRef::new(
        PersonEntity::Contact,
        format!("00000000-0000-4000-8000-{number:012}"),
    )
}

fn person(last_name: &str) -> PersonData {
    PersonData {
        salutation: "Frau".into(),
        first_name: "Anna".into(),
        last_name: last_name.into(),
        company: "Muster GmbH".into(),
    }
}

fn data(address: &str, record: u32, last_name: &str) -> ReceiverData {
    ReceiverData {
        email: email(address),
        person: person(last_name),
        crm: crm(record),
    }
}

fn wanted(address: &str, record: u32, last_name: &str) -> Candidate {
    Candidate::Wanted(data(address, record, last_name))
}

fn opted_out(address: &str) -> Candidate {
    Candidate::OptedOut(email(address))
}

fn receiver(
    address: &str,
    state: ReceiverState,
    record: Option<u32>,
    last_name: &str,
) -> CurrentReceiver {
    CurrentReceiver {
        email: email(address),
        state,
        person: person(last_name),
        crm: record.map(crm),
    }
}

fn active(address: &str, record: u32, last_name: &str) -> CurrentReceiver {
    receiver(address, ReceiverState::Active, Some(record), last_name)
}

fn options(batch_size: usize) -> PlannerOptions {
    PlannerOptions {
        batch_size,
        now_unix: 1_700_000_000,
    }
}

fn run(current: Vec<CurrentReceiver>, candidates: Vec<Candidate>) -> Plan {
    plan(current, candidates, options(DEFAULT_BATCH_SIZE)).unwrap()
}

fn run_streaming(
    current: Vec<CurrentReceiver>,
    blocked: Vec<Email>,
    candidates: Vec<Candidate>,
    batch_size: usize,
) -> Plan {
    let mut planner = ReconcilePlanner::new(current, options(batch_size))
        .unwrap()
        .with_blocked(blocked);
    let mut ops = Vec::new();
    for candidate in candidates {
        ops.extend(planner.offer(candidate));
    }
    let (rest, summary) = planner.finish();
    ops.extend(rest);
    Plan { ops, summary }
}

fn upsert_rows(ops: &[GroupOp]) -> Vec<&ReceiverUpsert> {
    ops.iter()
        .filter_map(|op| match op {
            GroupOp::Upsert(rows) => Some(rows),
            _ => None,
        })
        .flatten()
        .collect()
}

fn removed_addresses(ops: &[GroupOp]) -> Vec<&str> {
    ops.iter()
        .filter_map(|op| match op {
            GroupOp::Remove(emails) => Some(emails),
            _ => None,
        })
        .flatten()
        .map(Email::as_str)
        .collect()
}

fn change_email(from: &str, to: &str) -> GroupOp {
    GroupOp::ChangeEmail {
        from: email(from),
        to: email(to),
    }
}

/// Fails unless the summary's identities hold and its call counts match the ops.
fn check_accounting(plan: &Plan) -> Result<(), String> {
    let s = &plan.summary;
    let by_candidate = s.added
        + s.updated
        + s.email_changed
        + s.unchanged
        + s.kept_opted_out
        + s.skipped_blocked
        + s.opted_out
        + s.merged;
    if by_candidate != s.candidates {
        return Err(format!(
            "candidates {} != sum of outcomes {by_candidate}: {s:?}",
            s.candidates
        ));
    }
    let by_receiver = s.updated
        + s.email_changed
        + s.unchanged
        + s.kept_opted_out
        + s.opted_out_in_group
        + s.removed
        + s.kept_inactive;
    if s.current + s.withdrawn_in_group != by_receiver {
        return Err(format!(
            "current {} + withdrawn {} != sum of receiver outcomes {by_receiver}: {s:?}",
            s.current, s.withdrawn_in_group
        ));
    }
    let rows = upsert_rows(&plan.ops).len();
    let upsert_calls = plan
        .ops
        .iter()
        .filter(|op| matches!(op, GroupOp::Upsert(_)))
        .count();
    let moves = plan
        .ops
        .iter()
        .filter(|op| matches!(op, GroupOp::ChangeEmail { .. }))
        .count();
    let removals = removed_addresses(&plan.ops).len();
    let remove_calls = plan
        .ops
        .iter()
        .filter(|op| matches!(op, GroupOp::Remove(_)))
        .count();
    let checks = [
        ("upserted rows", rows, s.upserted_receivers),
        (
            "added + updated + email_changed_updated",
            s.added + s.updated + s.email_changed_updated,
            rows,
        ),
        ("upsert calls", upsert_calls, s.upsert_calls),
        ("e-mail changes", moves, s.email_changed),
        ("removed addresses", removals, s.removed_receivers),
        (
            "removed + opted_out_removed",
            s.removed + s.opted_out_removed,
            removals,
        ),
        ("remove calls", remove_calls, s.remove_calls),
        ("calls", plan.ops.len(), s.calls()),
    ];
    for (what, counted, expected) in checks {
        if counted != expected {
            return Err(format!("{what}: {counted} != {expected}: {s:?}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Options

#[test]
fn a_batch_size_outside_1_to_1000_is_refused_with_its_name() {
    for batch_size in [0, 1001] {
        let error = ReconcilePlanner::new(Vec::new(), options(batch_size)).unwrap_err();
        assert_eq!(error, PlannerError::InvalidBatchSize { batch_size });
        assert!(error.to_string().contains("batch_size"));
        assert!(error.to_string().contains(&batch_size.to_string()));
    }
    assert!(ReconcilePlanner::new(Vec::new(), options(1)).is_ok());
    assert!(ReconcilePlanner::new(Vec::new(), options(MAX_BATCH_SIZE)).is_ok());
    assert_eq!(PlannerOptions::new(5).batch_size, 250);
}

// ---------------------------------------------------------------------------------------------
// Rules 1 to 4, 8

#[test]
fn a_wanted_receiver_new_to_the_group_is_added_and_activated() {
    let plan = run(Vec::new(), vec![wanted("anna@example.de", 1, "Muster")]);
    assert_eq!(
        plan.ops,
        vec![GroupOp::Upsert(vec![ReceiverUpsert {
            receiver: data("anna@example.de", 1, "Muster"),
            activate: true,
        }])]
    );
    assert_eq!(plan.summary.added, 1);
    check_accounting(&plan).unwrap();
}

#[test]
fn a_blocked_address_is_never_added() {
    let plan = run_streaming(
        Vec::new(),
        vec![email("bounced@example.de")],
        vec![
            wanted("bounced@example.de", 1, "Muster"),
            wanted("fine@example.de", 2, "Muster"),
        ],
        250,
    );
    let rows = upsert_rows(&plan.ops);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].receiver.email.as_str(), "fine@example.de");
    assert_eq!(plan.summary.skipped_blocked, 1);
    assert_eq!(plan.summary.added, 1);
    check_accounting(&plan).unwrap();
}

#[test]
fn the_block_list_does_not_remove_or_freeze_a_receiver_already_active_in_the_group() {
    let plan = run_streaming(
        vec![active("anna@example.de", 1, "Muster")],
        vec![email("anna@example.de")],
        vec![wanted("anna@example.de", 1, "Neu")],
        250,
    );
    assert_eq!(plan.summary.updated, 1);
    assert_eq!(upsert_rows(&plan.ops).len(), 1);
    assert!(removed_addresses(&plan.ops).is_empty());
}

#[test]
fn an_active_receiver_with_new_person_data_is_updated_without_activation() {
    let plan = run(
        vec![active("anna@example.de", 1, "Muster")],
        vec![wanted("anna@example.de", 1, "Beispiel")],
    );
    assert_eq!(
        plan.ops,
        vec![GroupOp::Upsert(vec![ReceiverUpsert {
            receiver: data("anna@example.de", 1, "Beispiel"),
            activate: false,
        }])]
    );
    assert_eq!(plan.summary.updated, 1);
    check_accounting(&plan).unwrap();
}

#[test]
fn an_active_receiver_with_another_or_no_stored_crm_record_is_updated() {
    let plan = run(
        vec![
            active("anna@example.de", 1, "Muster"),
            receiver("ben@example.de", ReceiverState::Active, None, "Muster"),
        ],
        vec![
            wanted("anna@example.de", 2, "Muster"),
            wanted("ben@example.de", 3, "Muster"),
        ],
    );
    let rows = upsert_rows(&plan.ops);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|row| !row.activate));
    assert_eq!(rows[0].receiver.crm, crm(2));
    assert_eq!(rows[1].receiver.crm, crm(3));
    assert_eq!(plan.summary.updated, 2);
}

#[test]
fn an_active_receiver_that_is_already_right_gets_no_op() {
    let plan = run(
        vec![active("anna@example.de", 1, "Muster")],
        vec![wanted("anna@example.de", 1, "Muster")],
    );
    assert!(plan.ops.is_empty());
    assert_eq!(plan.summary.unchanged, 1);
    check_accounting(&plan).unwrap();
}

#[test]
fn a_wanted_receiver_that_opted_out_in_cleverreach_is_never_touched() {
    for state in [
        ReceiverState::Deactivated,
        ReceiverState::Bounced,
        ReceiverState::Blacklisted,
    ] {
        let plan = run(
            vec![receiver("anna@example.de", state, Some(1), "Muster")],
            vec![wanted("anna@example.de", 1, "Beispiel")],
        );
        assert!(plan.ops.is_empty(), "{state:?}: {:?}", plan.ops);
        assert_eq!(plan.summary.kept_opted_out, 1);
        check_accounting(&plan).unwrap();
    }
}

#[test]
fn candidates_with_the_same_address_are_merged_and_the_first_wanted_wins() {
    let plan = run(
        vec![active("ben@example.de", 2, "Muster")],
        vec![
            wanted("anna@example.de", 1, "Erste"),
            wanted("anna@example.de", 3, "Zweite"),
            wanted("ben@example.de", 2, "Muster"),
            wanted("ben@example.de", 4, "Anders"),
        ],
    );
    let rows = upsert_rows(&plan.ops);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].receiver, data("anna@example.de", 1, "Erste"));
    assert_eq!(plan.summary.merged, 2);
    assert_eq!(plan.summary.unchanged, 1);
    check_accounting(&plan).unwrap();
}

#[test]
fn unwanted_active_receivers_are_removed_in_batches_at_the_end() {
    let current: Vec<_> = (0..5)
        .map(|i| active(&format!("gone{i}@example.de"), i, "Muster"))
        .collect();
    let plan = plan(current, Vec::new(), options(2)).unwrap();
    let sizes: Vec<usize> = plan
        .ops
        .iter()
        .map(|op| match op {
            GroupOp::Remove(emails) => emails.len(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(plan.summary.removed, 5);
    check_accounting(&plan).unwrap();
}

#[test]
fn unwanted_opted_out_receivers_are_kept_because_they_carry_the_opt_out() {
    let plan = run(
        vec![
            receiver("a@example.de", ReceiverState::Deactivated, Some(1), "A"),
            receiver("b@example.de", ReceiverState::Bounced, None, "B"),
            receiver("c@example.de", ReceiverState::Blacklisted, Some(3), "C"),
        ],
        Vec::new(),
    );
    assert!(plan.ops.is_empty());
    assert_eq!(plan.summary.kept_inactive, 3);
    check_accounting(&plan).unwrap();
}

#[test]
fn two_rows_for_one_address_in_the_group_become_one_receiver_and_the_opt_out_wins() {
    let plan = run(
        vec![
            active("anna@example.de", 1, "Muster"),
            receiver(
                "anna@example.de",
                ReceiverState::Deactivated,
                Some(1),
                "Muster",
            ),
        ],
        vec![wanted("anna@example.de", 1, "Neu")],
    );
    assert!(plan.ops.is_empty());
    assert_eq!(plan.summary.current, 1);
    assert_eq!(plan.summary.kept_opted_out, 1);
    check_accounting(&plan).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Rules 5 and 6: e-mail changes

#[test]
fn an_e_mail_change_moves_the_receiver_and_keeps_its_history() {
    let plan = run(
        vec![active("old@example.de", 1, "Muster")],
        vec![wanted("new@example.de", 1, "Muster")],
    );
    assert_eq!(
        plan.ops,
        vec![change_email("old@example.de", "new@example.de")]
    );
    assert_eq!(plan.summary.email_changed, 1);
    assert_eq!(plan.summary.removed, 0);
    check_accounting(&plan).unwrap();
}

#[test]
fn an_e_mail_change_with_new_person_data_is_followed_by_an_update() {
    let plan = run(
        vec![active("old@example.de", 1, "Muster")],
        vec![wanted("new@example.de", 1, "Verheiratet")],
    );
    assert_eq!(
        plan.ops,
        vec![
            change_email("old@example.de", "new@example.de"),
            GroupOp::Upsert(vec![ReceiverUpsert {
                receiver: data("new@example.de", 1, "Verheiratet"),
                activate: false,
            }]),
        ]
    );
    assert_eq!(plan.summary.email_changed_updated, 1);
    check_accounting(&plan).unwrap();
}

#[test]
fn an_opted_out_receiver_moves_to_its_new_address_and_stays_opted_out() {
    let plan = run(
        vec![receiver(
            "old@example.de",
            ReceiverState::Deactivated,
            Some(1),
            "Muster",
        )],
        vec![wanted("new@example.de", 1, "Verheiratet")],
    );
    assert_eq!(
        plan.ops,
        vec![change_email("old@example.de", "new@example.de")]
    );
    check_accounting(&plan).unwrap();
}

#[test]
fn no_e_mail_change_when_the_new_address_is_already_in_the_group() {
    let plan = run(
        vec![
            active("old@example.de", 1, "Muster"),
            active("new@example.de", 2, "Muster"),
        ],
        vec![wanted("new@example.de", 1, "Muster")],
    );
    assert_eq!(
        plan.ops,
        vec![
            GroupOp::Upsert(vec![ReceiverUpsert {
                receiver: data("new@example.de", 1, "Muster"),
                activate: false,
            }]),
            GroupOp::Remove(vec![email("old@example.de")]),
        ]
    );
    check_accounting(&plan).unwrap();
}

#[test]
fn a_receiver_claimed_by_its_own_address_is_not_moved() {
    // Another record wants the old address first, so the record that changed its address
    // gets a new receiver instead of taking the claimed one away.
    let plan = run(
        vec![active("shared@example.de", 1, "Muster")],
        vec![
            wanted("shared@example.de", 2, "Muster"),
            wanted("new@example.de", 1, "Muster"),
        ],
    );
    assert!(
        !plan
            .ops
            .iter()
            .any(|op| matches!(op, GroupOp::ChangeEmail { .. }))
    );
    assert_eq!(plan.summary.updated, 1);
    assert_eq!(plan.summary.added, 1);
    check_accounting(&plan).unwrap();
}

#[test]
fn an_address_freed_by_an_e_mail_change_can_be_added_again_after_the_move() {
    let plan = run(
        vec![active("old@example.de", 1, "Muster")],
        vec![
            wanted("new@example.de", 1, "Muster"),
            wanted("old@example.de", 2, "Nachfolger"),
        ],
    );
    assert_eq!(
        plan.ops,
        vec![
            change_email("old@example.de", "new@example.de"),
            GroupOp::Upsert(vec![ReceiverUpsert {
                receiver: data("old@example.de", 2, "Nachfolger"),
                activate: true,
            }]),
        ]
    );
    check_accounting(&plan).unwrap();
}

#[test]
fn an_address_that_was_opted_out_is_not_added_again_after_its_receiver_moved() {
    let plan = run(
        vec![receiver(
            "old@example.de",
            ReceiverState::Deactivated,
            Some(1),
            "Muster",
        )],
        vec![
            wanted("new@example.de", 1, "Muster"),
            wanted("old@example.de", 2, "Nachfolger"),
        ],
    );
    assert_eq!(
        plan.ops,
        vec![change_email("old@example.de", "new@example.de")]
    );
    assert_eq!(plan.summary.skipped_blocked, 1);
    check_accounting(&plan).unwrap();
}

#[test]
fn a_person_who_opted_out_is_not_added_under_a_new_address() {
    // The opted-out receiver keeps its address because another record wants it; the person
    // behind it must still not be subscribed at their new address.
    let plan = run(
        vec![receiver(
            "old@example.de",
            ReceiverState::Deactivated,
            Some(1),
            "Muster",
        )],
        vec![
            wanted("old@example.de", 2, "Mitbewohner"),
            wanted("new@example.de", 1, "Muster"),
        ],
    );
    assert!(plan.ops.is_empty(), "{:?}", plan.ops);
    assert_eq!(plan.summary.kept_opted_out, 1);
    assert_eq!(plan.summary.skipped_blocked, 1);
    check_accounting(&plan).unwrap();
}

#[test]
fn an_opted_out_receiver_of_the_same_record_moves_before_an_active_one() {
    let plan = run(
        vec![
            active("first@example.de", 1, "Muster"),
            receiver(
                "second@example.de",
                ReceiverState::Deactivated,
                Some(1),
                "Muster",
            ),
        ],
        vec![wanted("new@example.de", 1, "Muster")],
    );
    assert_eq!(
        plan.ops,
        vec![
            change_email("second@example.de", "new@example.de"),
            GroupOp::Remove(vec![email("first@example.de")]),
        ]
    );
    check_accounting(&plan).unwrap();
}

#[test]
fn no_receiver_is_moved_onto_a_blocked_address() {
    let plan = run_streaming(
        vec![active("old@example.de", 1, "Muster")],
        vec![email("new@example.de")],
        vec![wanted("new@example.de", 1, "Muster")],
        250,
    );
    assert_eq!(
        plan.ops,
        vec![GroupOp::Remove(vec![email("old@example.de")])]
    );
    assert_eq!(plan.summary.skipped_blocked, 1);
    check_accounting(&plan).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Rule 7: opt-out candidates

#[test]
fn an_opt_out_wins_over_a_later_record_with_the_same_address() {
    let plan = run(
        vec![active("anna@example.de", 1, "Muster")],
        vec![
            opted_out("anna@example.de"),
            wanted("anna@example.de", 2, "Muster"),
            opted_out("neu@example.de"),
            wanted("neu@example.de", 3, "Muster"),
        ],
    );
    assert_eq!(
        plan.ops,
        vec![GroupOp::Remove(vec![email("anna@example.de")])]
    );
    assert_eq!(plan.summary.opted_out, 2);
    assert_eq!(plan.summary.opted_out_removed, 1);
    assert_eq!(plan.summary.merged, 2);
    check_accounting(&plan).unwrap();
}

#[test]
fn an_opt_out_wins_over_an_earlier_record_that_kept_the_receiver() {
    let plan = run(
        vec![active("anna@example.de", 1, "Muster")],
        vec![
            wanted("anna@example.de", 1, "Muster"),
            opted_out("anna@example.de"),
        ],
    );
    assert_eq!(
        plan.ops,
        vec![GroupOp::Remove(vec![email("anna@example.de")])]
    );
    assert_eq!(plan.summary.unchanged, 0);
    check_accounting(&plan).unwrap();
}

#[test]
fn an_opt_out_drops_an_upsert_still_waiting_in_the_batch() {
    let plan = run(
        vec![active("anna@example.de", 1, "Muster")],
        vec![
            wanted("neu@example.de", 2, "Muster"),
            wanted("anna@example.de", 1, "Neu"),
            wanted("bleibt@example.de", 3, "Muster"),
            opted_out("neu@example.de"),
            opted_out("anna@example.de"),
        ],
    );
    assert_eq!(
        plan.ops,
        vec![
            GroupOp::Upsert(vec![ReceiverUpsert {
                receiver: data("bleibt@example.de", 3, "Muster"),
                activate: true,
            }]),
            GroupOp::Remove(vec![email("anna@example.de")]),
        ]
    );
    assert_eq!(plan.summary.added, 1);
    assert_eq!(plan.summary.updated, 0);
    check_accounting(&plan).unwrap();
}

#[test]
fn an_opt_out_after_a_handed_out_upsert_removes_the_receiver_last() {
    let mut planner =
        ReconcilePlanner::new(vec![active("anna@example.de", 1, "Muster")], options(1)).unwrap();
    let added = planner.offer(wanted("neu@example.de", 2, "Muster"));
    let updated = planner.offer(wanted("anna@example.de", 1, "Neu"));
    assert_eq!(upsert_rows(&added).len(), 1);
    assert_eq!(upsert_rows(&updated).len(), 1);
    assert!(planner.offer(opted_out("neu@example.de")).is_empty());
    assert!(planner.offer(opted_out("anna@example.de")).is_empty());
    let (rest, summary) = planner.finish();
    assert_eq!(
        rest,
        vec![
            GroupOp::Remove(vec![
                email("neu@example.de"),
                // batch size 1: one call each
            ]),
            GroupOp::Remove(vec![email("anna@example.de")])
        ]
    );
    assert_eq!(summary.withdrawn_added, 1);
    assert_eq!(summary.withdrawn_in_group, 1);
    let ops: Vec<GroupOp> = added.into_iter().chain(updated).chain(rest).collect();
    check_accounting(&Plan { ops, summary }).unwrap();
}

#[test]
fn an_opt_out_after_an_e_mail_change_removes_the_moved_receiver() {
    let plan = run(
        vec![active("old@example.de", 1, "Muster")],
        vec![
            wanted("new@example.de", 1, "Verheiratet"),
            opted_out("new@example.de"),
        ],
    );
    assert_eq!(
        plan.ops,
        vec![
            change_email("old@example.de", "new@example.de"),
            GroupOp::Remove(vec![email("new@example.de")]),
        ]
    );
    assert_eq!(plan.summary.email_changed_updated, 0);
    check_accounting(&plan).unwrap();
}

#[test]
fn an_opt_out_keeps_an_opted_out_receiver_in_the_group() {
    let plan = run(
        vec![receiver(
            "anna@example.de",
            ReceiverState::Deactivated,
            Some(1),
            "Muster",
        )],
        vec![opted_out("anna@example.de")],
    );
    assert!(plan.ops.is_empty());
    assert_eq!(plan.summary.opted_out, 1);
    assert_eq!(plan.summary.opted_out_in_group, 1);
    check_accounting(&plan).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Rules 9 and 10: order, streaming, calls

#[test]
fn ops_come_in_execution_order_moves_first_removals_last() {
    let plan = plan(
        vec![
            active("gone@example.de", 9, "Muster"),
            active("old@example.de", 1, "Muster"),
        ],
        vec![
            wanted("a@example.de", 2, "Muster"),
            wanted("new@example.de", 1, "Neu"),
            wanted("b@example.de", 3, "Muster"),
        ],
        options(2),
    )
    .unwrap();
    assert_eq!(
        plan.ops,
        vec![
            change_email("old@example.de", "new@example.de"),
            GroupOp::Upsert(vec![
                ReceiverUpsert {
                    receiver: data("a@example.de", 2, "Muster"),
                    activate: true,
                },
                ReceiverUpsert {
                    receiver: data("new@example.de", 1, "Neu"),
                    activate: false,
                },
            ]),
            GroupOp::Upsert(vec![ReceiverUpsert {
                receiver: data("b@example.de", 3, "Muster"),
                activate: true,
            }]),
            GroupOp::Remove(vec![email("gone@example.de")]),
        ]
    );
}

#[test]
fn a_first_sync_hands_out_a_full_batch_exactly_every_batch_size_candidates() {
    let batch_size = 7;
    let mut planner = ReconcilePlanner::new(Vec::new(), options(batch_size)).unwrap();
    for i in 0..100 {
        let ops = planner.offer(wanted(&format!("r{i}@example.de"), i, "Muster"));
        if (i as usize + 1).is_multiple_of(batch_size) {
            assert_eq!(ops.len(), 1, "candidate {i}");
            assert_eq!(upsert_rows(&ops).len(), batch_size);
        } else {
            assert!(ops.is_empty(), "candidate {i}: {ops:?}");
        }
    }
    let (rest, summary) = planner.finish();
    assert_eq!(upsert_rows(&rest).len(), 100 % batch_size);
    assert_eq!(summary.added, 100);
    assert_eq!(summary.upsert_calls, 100usize.div_ceil(batch_size));
}

#[test]
fn the_number_of_calls_is_minimal() {
    let batch_size = 10;
    let mut current = Vec::new();
    let mut candidates = Vec::new();
    for i in 0..95 {
        current.push(active(&format!("kept{i}@example.de"), i, "Alt"));
        candidates.push(wanted(&format!("kept{i}@example.de"), i, "Neu"));
    }
    for i in 0..33 {
        candidates.push(wanted(&format!("new{i}@example.de"), 1000 + i, "Neu"));
        current.push(active(&format!("gone{i}@example.de"), 2000 + i, "Alt"));
    }
    for i in 0..4 {
        current.push(active(&format!("moved{i}@example.de"), 3000 + i, "Alt"));
        candidates.push(wanted(&format!("moved-new{i}@example.de"), 3000 + i, "Alt"));
    }
    let plan = plan(current, candidates, options(batch_size)).unwrap();
    let s = &plan.summary;
    assert_eq!(
        (s.added, s.updated, s.email_changed, s.removed),
        (33, 95, 4, 33)
    );
    assert_eq!(s.upsert_calls, (33 + 95usize).div_ceil(batch_size));
    assert_eq!(s.remove_calls, 33usize.div_ceil(batch_size));
    assert_eq!(plan.ops.len(), 13 + 4 + 4);
    check_accounting(&plan).unwrap();
}

#[test]
fn counts_add_up_for_a_mixed_plan() {
    let plan = run_streaming(
        vec![
            active("same@example.de", 1, "Muster"),
            active("changed@example.de", 2, "Alt"),
            active("old@example.de", 3, "Muster"),
            receiver("unsub@example.de", ReceiverState::Deactivated, Some(4), "M"),
            active("gone@example.de", 5, "Muster"),
            receiver(
                "gone-unsub@example.de",
                ReceiverState::Bounced,
                Some(6),
                "M",
            ),
            active("optout@example.de", 7, "Muster"),
        ],
        vec![email("blocked@example.de")],
        vec![
            wanted("same@example.de", 1, "Muster"),
            wanted("changed@example.de", 2, "Neu"),
            wanted("new-address@example.de", 3, "Muster"),
            wanted("unsub@example.de", 4, "M"),
            wanted("fresh@example.de", 8, "Muster"),
            wanted("blocked@example.de", 9, "Muster"),
            wanted("fresh@example.de", 10, "Doppelt"),
            opted_out("optout@example.de"),
            wanted("optout@example.de", 7, "Muster"),
        ],
        2,
    );
    let s = &plan.summary;
    assert_eq!(
        (
            s.added,
            s.updated,
            s.email_changed,
            s.unchanged,
            s.kept_opted_out,
            s.skipped_blocked,
            s.opted_out,
            s.merged,
            s.removed,
            s.kept_inactive
        ),
        (1, 1, 1, 1, 1, 1, 1, 2, 1, 1)
    );
    check_accounting(&plan).unwrap();
}

#[test]
fn the_plan_helper_gives_the_same_ops_as_the_streaming_api() {
    let current = vec![
        active("a@example.de", 1, "Muster"),
        active("b@example.de", 2, "Muster"),
    ];
    let candidates = vec![
        wanted("a@example.de", 1, "Neu"),
        wanted("c@example.de", 3, "Muster"),
        wanted("d@example.de", 4, "Muster"),
    ];
    let whole = plan(current.clone(), candidates.clone(), options(2)).unwrap();
    let streamed = run_streaming(current, Vec::new(), candidates, 2);
    assert_eq!(whole, streamed);
    assert_eq!(whole.summary.planned_at_unix, 1_700_000_000);
}

// ---------------------------------------------------------------------------------------------
// Property test: random groups and candidate streams against a model of a CleverReach group

/// A receiver in the model group; `id` follows it through e-mail changes.
#[derive(Debug, Clone)]
struct ModelReceiver {
    id: usize,
    state: ReceiverState,
    person: PersonData,
    crm: Option<CrmRef>,
}

/// A CleverReach group as the ops see it. Applying an op refuses everything the planner must
/// never do: activating or upserting an opted-out receiver, removing one, moving onto a taken
/// address, oversized or empty calls.
struct ModelGroup {
    receivers: BTreeMap<Email, ModelReceiver>,
    next_id: usize,
    batch_size: usize,
}

impl ModelGroup {
    /// The group as the planner reads it: one receiver per address, an opt-out wins.
    fn new(current: &[CurrentReceiver], batch_size: usize) -> Self {
        let mut receivers: BTreeMap<Email, ModelReceiver> = BTreeMap::new();
        for (id, row) in current.iter().enumerate() {
            let fresh = ModelReceiver {
                id,
                state: row.state,
                person: row.person.clone(),
                crm: row.crm.clone(),
            };
            match receivers.get_mut(&row.email) {
                None => {
                    receivers.insert(row.email.clone(), fresh);
                }
                Some(kept) if !kept.state.is_opted_out() && row.state.is_opted_out() => {
                    *kept = ModelReceiver {
                        id: kept.id,
                        ..fresh
                    };
                }
                Some(_) => {}
            }
        }
        ModelGroup {
            receivers,
            next_id: current.len(),
            batch_size,
        }
    }

    fn apply(&mut self, op: &GroupOp) -> Result<(), String> {
        match op {
            GroupOp::Upsert(rows) => {
                if rows.is_empty() || rows.len() > self.batch_size {
                    return Err(format!("upsert of {} rows", rows.len()));
                }
                let addresses: BTreeSet<&Email> = rows.iter().map(|r| &r.receiver.email).collect();
                if addresses.len() != rows.len() {
                    return Err("an address twice in one upsert".into());
                }
                for row in rows {
                    let address = &row.receiver.email;
                    match (self.receivers.get_mut(address), row.activate) {
                        (None, true) => {
                            self.receivers.insert(
                                address.clone(),
                                ModelReceiver {
                                    id: self.next_id,
                                    state: ReceiverState::Active,
                                    person: row.receiver.person.clone(),
                                    crm: Some(row.receiver.crm.clone()),
                                },
                            );
                            self.next_id += 1;
                        }
                        (Some(existing), false) if existing.state == ReceiverState::Active => {
                            existing.person = row.receiver.person.clone();
                            existing.crm = Some(row.receiver.crm.clone());
                        }
                        (existing, activate) => {
                            return Err(format!(
                                "upsert of {address} with activate={activate} hits {existing:?}"
                            ));
                        }
                    }
                }
            }
            GroupOp::ChangeEmail { from, to } => {
                if self.receivers.contains_key(to) {
                    return Err(format!("e-mail change onto the taken address {to}"));
                }
                let moved = self
                    .receivers
                    .remove(from)
                    .ok_or_else(|| format!("e-mail change of the unknown address {from}"))?;
                self.receivers.insert(to.clone(), moved);
            }
            GroupOp::Remove(emails) => {
                if emails.is_empty() || emails.len() > self.batch_size {
                    return Err(format!("removal of {} addresses", emails.len()));
                }
                for address in emails {
                    match self.receivers.get(address) {
                        Some(receiver) if receiver.state == ReceiverState::Active => {
                            self.receivers.remove(address);
                        }
                        other => return Err(format!("removal of {address}: {other:?}")),
                    }
                }
            }
        }
        Ok(())
    }
}

const ADDRESSES: usize = 10;
const RECORDS: u32 = 6;

fn address(i: usize) -> String {
    format!("r{i}@example.de")
}

fn any_state() -> impl Strategy<Value = ReceiverState> {
    prop_oneof![
        3 => Just(ReceiverState::Active),
        1 => Just(ReceiverState::Deactivated),
        1 => Just(ReceiverState::Bounced),
        1 => Just(ReceiverState::Blacklisted),
    ]
}

fn any_current() -> impl Strategy<Value = Vec<CurrentReceiver>> {
    prop::collection::vec(
        (
            0..ADDRESSES,
            any_state(),
            prop::option::weighted(0.8, 0..RECORDS),
            0..2usize,
        )
            .prop_map(|(a, state, record, name)| {
                receiver(&address(a), state, record, ["Alt", "Neu"][name])
            }),
        0..10,
    )
}

fn any_candidates() -> impl Strategy<Value = Vec<Candidate>> {
    prop::collection::vec(
        prop_oneof![
            4 => (0..ADDRESSES, 0..RECORDS, 0..2usize)
                .prop_map(|(a, record, name)| wanted(&address(a), record, ["Alt", "Neu"][name])),
            1 => (0..ADDRESSES).prop_map(|a| opted_out(&address(a))),
        ],
        0..16,
    )
}

fn any_blocked() -> impl Strategy<Value = Vec<Email>> {
    prop::collection::vec((0..ADDRESSES).prop_map(|a| email(&address(a))), 0..3)
}

/// Runs one random plan through the streaming API and the model, and checks every promise.
fn check_random_plan(
    current: Vec<CurrentReceiver>,
    candidates: Vec<Candidate>,
    blocked: Vec<Email>,
    batch_size: usize,
) -> Result<(), TestCaseError> {
    let mut model = ModelGroup::new(&current, batch_size);
    let start = model.receivers.clone();
    let blocked_set: BTreeSet<Email> = blocked.iter().cloned().collect();

    // Streaming shape: offer() hands out moves and full batches only.
    let mut planner = ReconcilePlanner::new(current, options(batch_size))
        .unwrap()
        .with_blocked(blocked);
    let mut ops = Vec::new();
    for candidate in candidates.clone() {
        for op in planner.offer(candidate) {
            match &op {
                GroupOp::Upsert(rows) => prop_assert_eq!(rows.len(), batch_size),
                GroupOp::ChangeEmail { .. } => {}
                GroupOp::Remove(_) => prop_assert!(false, "removal before the end"),
            }
            ops.push(op);
        }
    }
    let (rest, summary) = planner.finish();
    let mut rest_upserts = 0;
    for (i, op) in rest.iter().enumerate() {
        match op {
            GroupOp::Upsert(rows) => {
                prop_assert_eq!(i, 0, "the partial batch comes first");
                prop_assert!(rows.len() < batch_size);
                rest_upserts += 1;
            }
            GroupOp::ChangeEmail { .. } => prop_assert!(false, "move at the end"),
            GroupOp::Remove(_) => {}
        }
    }
    prop_assert!(rest_upserts <= 1);
    let removal_sizes: Vec<usize> = rest
        .iter()
        .filter_map(|op| match op {
            GroupOp::Remove(emails) => Some(emails.len()),
            _ => None,
        })
        .collect();
    if let Some((_, full)) = removal_sizes.split_last() {
        prop_assert!(full.iter().all(|size| *size == batch_size));
    }
    ops.extend(rest);
    let plan = Plan { ops, summary };
    check_accounting(&plan).map_err(TestCaseError::fail)?;

    // Every op is allowed on the group as it is at that moment.
    for op in &plan.ops {
        model.apply(op).map_err(TestCaseError::fail)?;
    }

    // Opted-out receivers are all still there, still opted out, wherever they moved.
    let opted_out_at_start: BTreeSet<usize> = start
        .values()
        .filter(|r| r.state.is_opted_out())
        .map(|r| r.id)
        .collect();
    let opted_out_at_end: BTreeSet<usize> = model
        .receivers
        .values()
        .filter(|r| r.state.is_opted_out())
        .map(|r| r.id)
        .collect();
    prop_assert_eq!(&opted_out_at_start, &opted_out_at_end);

    // The desired active set: the first wanted record of every address no opt-out names.
    let said_no: BTreeSet<&Email> = candidates
        .iter()
        .filter_map(|c| match c {
            Candidate::OptedOut(e) => Some(e),
            Candidate::Wanted(_) => None,
        })
        .collect();
    let mut first_wanted: BTreeMap<&Email, &ReceiverData> = BTreeMap::new();
    for candidate in &candidates {
        if let Candidate::Wanted(d) = candidate {
            first_wanted.entry(&d.email).or_insert(d);
        }
    }
    first_wanted.retain(|e, _| !said_no.contains(e));
    let opted_out_records: BTreeSet<&CrmRef> = start
        .values()
        .filter(|r| r.state.is_opted_out())
        .filter_map(|r| r.crm.as_ref())
        .collect();

    for (address, receiver) in &model.receivers {
        if receiver.state != ReceiverState::Active {
            continue;
        }
        prop_assert!(
            first_wanted.contains_key(address),
            "{} is active but not wanted",
            address
        );
        // No new activation of a blocked address or of an address that was opted out.
        match start.get(address) {
            Some(at_start) => prop_assert_eq!(at_start.state, ReceiverState::Active),
            None => prop_assert!(!blocked_set.contains(address), "{} is blocked", address),
        }
        // A person who opted out only stays active where they already were.
        if receiver
            .crm
            .as_ref()
            .is_some_and(|record| opted_out_records.contains(record))
        {
            prop_assert_eq!(start.get(address).map(|r| r.id), Some(receiver.id));
        }
    }
    for (address, wanted) in &first_wanted {
        match model.receivers.get(*address) {
            Some(r) if r.state == ReceiverState::Active => {
                prop_assert_eq!(&r.person, &wanted.person);
                prop_assert_eq!(r.crm.as_ref(), Some(&wanted.crm));
            }
            Some(r) => prop_assert!(opted_out_at_start.contains(&r.id)),
            None => {
                let blocked = match start.get(*address) {
                    Some(r) => r.state.is_opted_out(),
                    None => blocked_set.contains(*address),
                };
                prop_assert!(
                    blocked || opted_out_records.contains(&wanted.crm),
                    "{} is wanted, not blocked, and missing",
                    address
                );
            }
        }
    }

    // An address is upserted and removed in one plan only after a late opt-out.
    let upserted: BTreeSet<&Email> = upsert_rows(&plan.ops)
        .into_iter()
        .map(|row| &row.receiver.email)
        .collect();
    for address in removed_addresses(&plan.ops) {
        let address = email(address);
        if upserted.contains(&address) {
            prop_assert!(said_no.contains(&address));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_plans_never_reactivate_opt_outs_and_reach_the_desired_group(
        current in any_current(),
        candidates in any_candidates(),
        blocked in any_blocked(),
        batch_size in 1..=4usize,
    ) {
        check_random_plan(current, candidates, blocked, batch_size)?;
    }
}

#[test]
fn a_group_read_page_by_page_plans_as_the_whole_group_at_once() {
    let current = vec![
        active("a@example.com", 1, "Alt"),
        receiver("b@example.com", ReceiverState::Deactivated, Some(2), "Berg"),
        active("c@example.com", 3, "Claus"),
        // The same address again on a later page (the group changed while it was read): the
        // opt-out is kept.
        receiver("a@example.com", ReceiverState::Bounced, Some(1), "Alt"),
        active("stranger@example.com", 9, "Nobody"),
    ];
    let candidates = || {
        vec![
            wanted("a@example.com", 1, "Alt"),
            wanted("b@example.com", 2, "Berg"),
            wanted("c@example.com", 3, "Neu"),
            wanted("d@example.com", 4, "Dora"),
        ]
    };
    let at_once = run_streaming(current.clone(), vec![], candidates(), 2);

    let mut indexer = GroupIndexer::new(options(2)).unwrap();
    for page in current.chunks(2) {
        indexer.add(page.to_vec()).unwrap();
    }
    let mut planner = indexer.finish();
    let mut ops = Vec::new();
    for candidate in candidates() {
        ops.extend(planner.offer(candidate));
    }
    let (rest, summary) = planner.finish();
    ops.extend(rest);

    assert_eq!(ops, at_once.ops);
    assert_eq!(summary, at_once.summary);
    assert_eq!(summary.current, 4, "one receiver per address");
    assert!(removed_addresses(&ops).contains(&"stranger@example.com"));
    assert!(
        upsert_rows(&ops)
            .iter()
            .all(|row| row.receiver.email.as_str() != "a@example.com"),
        "the bounce seen on the later page is kept"
    );
}
