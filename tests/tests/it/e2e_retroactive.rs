//! End to end: retroactive recipient sync on a marketing list (docs/architecture.md §5). The CRM side changes
//! through the Dataverse simulator's Web API (test data seeded directly, without webhooks); the
//! local harness runs `sublist-fanout` and `sublist-update` on local queues; the result is read
//! from both simulators.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::faults::{FaultConfig, FaultKind};
use sandbox::harness::{Harness, checklist};
use serde_json::{Map, Value, json};
use shared::domain::checklist::{Checklist, ChoiceState, NewsletterTypeId};
use shared::usecases::retroactive::RunState;
use std::collections::{BTreeMap, BTreeSet};

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// What person `i` of a seeded population has on its checklist before the run: every 20th an
/// explicit "no" for type 0, two in 20 already "yes", the rest no choice or nothing.
fn consent(i: usize) -> Option<String> {
    match i % 20 {
        0 => Some(checklist(&[(0, 2)])),
        1 => Some(checklist(&[(0, 1)])),
        2 => Some(checklist(&[(0, 1), (1, 2)])),
        3..=9 => Some(checklist(&[(0, 0), (1, 0)])),
        _ => None,
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    updated: u64,
    unchanged: u64,
    skipped: u64,
}

fn expected(n: usize) -> Expected {
    let mut e = Expected::default();
    for i in 0..n {
        match i % 20 {
            0 => e.skipped += 1,
            1 | 2 => e.unchanged += 1,
            _ => e.updated += 1,
        }
    }
    e
}

fn emails(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}{i}@retro.example"))
        .collect()
}

/// Seeds `n` contacts (or leads) in `city`; returns their ids in order.
fn seed_people(h: &Harness, set: &str, prefix: &str, n: usize, city: &str) -> Vec<String> {
    let rows = emails(prefix, n)
        .into_iter()
        .enumerate()
        .map(|(i, email)| {
            let mut row = json!({ "firstname": format!("P{i}"), "lastname": prefix, "emailaddress1": email,
                                  "address1_city": city });
            if set == "leads" {
                row["subject"] = json!("retro");
            }
            if let Some(c) = consent(i) {
                row["crc_checklist"] = json!(c);
            }
            object(row)
        })
        .collect();
    h.dataverse.seed(set, rows).unwrap()
}

/// A dynamic list of `entity` (FetchXML on `address1_city`) with sync on and checklist "yes to
/// type 0"; returns the list and its group once the first sync has settled.
async fn dynamic_list(h: &Harness, name: &str, entity: &str, city: &str) -> (String, String) {
    let code = match entity {
        "account" => 1,
        "contact" => 2,
        _ => 4,
    };
    let query = format!(
        r#"<fetch><entity name="{entity}"><attribute name="{entity}id"/><filter type="and"><condition attribute="address1_city" operator="eq" value="{city}"/></filter></entity></fetch>"#
    );
    let list = h
        .create(
            "lists",
            json!({ "listname": name, "createdfromcode": code, "type": true, "query": query,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": true }),
        )
        .await
        .unwrap();
    h.settle().await.unwrap();
    let group = h
        .group_of("lists", &list)
        .expect("group after the first sync");
    (list, group)
}

async fn turn_on(h: &Harness, list: &str, json_text: &str) {
    h.update(
        "lists",
        list,
        json!({ "crc_retroactivesync": true, "crc_retroactivesyncjson": json_text }),
    )
    .await
    .unwrap();
}

fn run_state(h: &Harness, list: &str) -> RunState {
    let row = h.dataverse.row("lists", list).unwrap();
    serde_json::from_str(row["crc_retroactivestate"].as_str().unwrap()).unwrap()
}

fn progress(h: &Harness, list: &str) -> String {
    h.dataverse.row("lists", list).unwrap()["crc_retroactiveprogress"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn flag(h: &Harness, list: &str) -> bool {
    h.dataverse.row("lists", list).unwrap()["crc_retroactivesync"] == json!(true)
}

/// The checklist state of newsletter type 0 of every row of `set`, by id.
fn type0(h: &Harness, set: &str) -> BTreeMap<String, ChoiceState> {
    let key = if set == "leads" {
        "leadid"
    } else {
        "contactid"
    };
    h.dataverse
        .rows(set)
        .iter()
        .map(|row| {
            let text = row
                .get("crc_checklist")
                .and_then(Value::as_str)
                .unwrap_or("");
            let state = Checklist::parse(text)
                .unwrap()
                .state_of(NewsletterTypeId(0));
            (row[key].as_str().unwrap().to_string(), state)
        })
        .collect()
}

/// Checklist writes (webhook deliveries of Update on `entity`), by record.
fn writes_per_record(h: &Harness, entity: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut writes: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in h.dataverse.deliveries() {
        if d.entity == entity && d.message == "Update" {
            writes
                .entry(d.record_id.to_lowercase())
                .or_default()
                .insert(d.operation_id);
        }
    }
    writes
}

/// The checks every run must pass: checklists as requested except explicit "no", the counts,
/// 100 %, the flag off, the group equal to the rule, nothing parked.
fn assert_run(
    h: &Harness,
    list: &str,
    group: &str,
    people: &[String],
    set: &str,
    email_prefix: &str,
) {
    let n = people.len();
    let states = type0(h, set);
    for (i, id) in people.iter().enumerate() {
        let want = if i % 20 == 0 {
            ChoiceState::No
        } else {
            ChoiceState::Yes
        };
        assert_eq!(states[id], want, "member {i} ({id})");
    }
    let state = run_state(h, list);
    let e = expected(n);
    assert_eq!(
        (state.updated, state.unchanged, state.skipped, state.failed),
        (e.updated, e.unchanged, e.skipped, 0),
        "{state:?}"
    );
    let sublists = n.div_ceil(500) as u32;
    assert_eq!(state.sublists, Some(sublists));
    assert_eq!(state.done, vec![[0, sublists - 1]], "every sublist once");
    assert!(state.is_complete(), "{state:?}");
    let text = progress(h, list);
    assert!(text.contains("(100%)"), "{text}");
    assert!(text.contains("Finished."), "{text}");
    assert!(!flag(h, list), "the flag is turned off again");

    let wanted: Vec<String> = emails(email_prefix, n)
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 20 != 0)
        .map(|(_, e)| e)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(h.active_emails(group), wanted, "the group follows the rule");
    assert!(h.dead_letters().is_empty());
    assert!(h.retroactive_log().dead_letters.is_empty());
}

#[tokio::test]
async fn a_list_of_20000_contacts_gets_the_requested_checklist_except_explicit_noes() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let contacts = seed_people(&h, "contacts", "c", 20_000, "Contactville");
    let (list, group) = dynamic_list(&h, "Retro contacts", "contact", "Contactville").await;
    // Before: only the two in twenty with a "yes" already.
    assert_eq!(h.active_emails(&group).len(), contacts.len() / 10);

    turn_on(&h, &list, &checklist(&[(0, 1)])).await;
    h.settle().await.unwrap();

    assert_run(&h, &list, &group, &contacts, "contacts", "c");
    let writes = writes_per_record(&h, "contact");
    for (i, id) in contacts.iter().enumerate() {
        let n = writes.get(id).map_or(0, BTreeSet::len);
        let want = usize::from(i % 20 > 2);
        assert_eq!(n, want, "checklist writes of member {i}");
    }
}

#[tokio::test]
async fn a_list_of_20000_accounts_updates_their_primary_contacts() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let contacts = seed_people(&h, "contacts", "a", 20_000, "Nowhere");
    let accounts = contacts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            object(
                json!({ "name": format!("Account {i}"), "address1_city": "Accountville",
                           "primarycontactid@odata.bind": format!("contacts({c})") }),
            )
        })
        .collect();
    h.dataverse.seed("accounts", accounts).unwrap();
    let (list, group) = dynamic_list(&h, "Retro accounts", "account", "Accountville").await;

    turn_on(&h, &list, &checklist(&[(0, 1)])).await;
    h.settle().await.unwrap();

    assert_run(&h, &list, &group, &contacts, "contacts", "a");
}

#[tokio::test]
async fn a_list_of_20000_leads_takes_the_lists_own_checklist_when_no_json_is_given() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let leads = seed_people(&h, "leads", "l", 20_000, "Leadville");
    let (list, group) = dynamic_list(&h, "Retro leads", "lead", "Leadville").await;

    // Empty JSON: the list's own checklist (yes to type 0) is written.
    turn_on(&h, &list, "").await;
    h.settle().await.unwrap();

    assert_run(&h, &list, &group, &leads, "leads", "l");
}

#[tokio::test]
async fn a_static_list_is_fanned_out_over_follow_up_invocations() {
    // Pages of 500 rows, one page per fan-out invocation: the fan-out must continue in
    // follow-up messages.
    let mut h = Harness::start().await.unwrap();
    h.install(&[
        ("cleverreach:synchronization:sublistcount", "100"),
        ("cleverreach:synchronization:updaterequestcount", "40"),
    ])
    .await
    .unwrap();
    h.retroactive.limits.max_pages = 1;
    h.set_retroactive_page_size(500).unwrap();
    let contacts = seed_people(&h, "contacts", "s", 1_200, "Staticville");
    let (list, group) = h
        .synced_static_list("Retro static", "contact", &contacts)
        .await
        .unwrap();
    turn_on(&h, &list, &checklist(&[(0, 1)])).await;
    h.settle().await.unwrap();

    let state = run_state(&h, &list);
    assert_eq!(
        state.sublists,
        Some(12),
        "{}; {:?}",
        progress(&h, &list),
        h.retroactive_log().dead_letters
    );
    assert_eq!(state.done, vec![[0, 11]]);
    let e = expected(1_200);
    assert_eq!(
        (state.updated, state.unchanged, state.skipped, state.failed),
        (e.updated, e.unchanged, e.skipped, 0)
    );
    let states = type0(&h, "contacts");
    for (i, id) in contacts.iter().enumerate() {
        let want = if i % 20 == 0 {
            ChoiceState::No
        } else {
            ChoiceState::Yes
        };
        assert_eq!(states[id], want, "member {i}");
    }
    assert_eq!(h.active_emails(&group).len(), 1_200 - 60);
    assert!(progress(&h, &list).contains("12 of 12 sublists done (100%)"));
    let fanouts = h
        .retroactive_log()
        .invocations
        .iter()
        .filter(|(name, _)| *name == "sublist-fanout")
        .count();
    assert!(
        fanouts >= 3,
        "1,200 members in pages of 500: {fanouts} fan-out invocations"
    );
}

#[tokio::test]
async fn invalid_json_is_a_clear_error_on_the_list_and_changes_nothing() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let contacts = seed_people(&h, "contacts", "x", 40, "Badville");
    let (list, group) = dynamic_list(&h, "Retro bad", "contact", "Badville").await;
    let before = h.dataverse.rows("contacts");
    let receivers_before = h.active_emails(&group);

    turn_on(&h, &list, r#"[{"id":0,"state":1"#).await;
    h.settle().await.unwrap();

    let text = progress(&h, &list);
    assert!(
        text.contains("crc_retroactivesyncjson is not valid")
            && text.contains("not valid JSON")
            && text.contains("nothing was changed"),
        "{text}"
    );
    assert!(!flag(&h, &list), "the flag is turned off");
    assert_eq!(h.dataverse.rows("contacts"), before, "no contact changed");
    assert_eq!(h.active_emails(&group), receivers_before);

    // A type the settings do not know is named too.
    turn_on(&h, &list, &checklist(&[(5, 1)])).await;
    h.settle().await.unwrap();
    let text = progress(&h, &list);
    assert!(text.contains("newsletter type 5"), "{text}");
    assert_eq!(h.dataverse.rows("contacts"), before);
    assert!(contacts.len() == 40);
}

#[tokio::test]
async fn with_faults_on_both_apis_the_run_completes_and_writes_every_member_once() {
    let h = Harness::start().await.unwrap();
    h.install(&[
        ("cleverreach:synchronization:sublistcount", "100"),
        ("cleverreach:synchronization:updaterequestcount", "25"),
    ])
    .await
    .unwrap();
    let contacts = seed_people(&h, "contacts", "f", 2_000, "Faultville");
    let (list, group) = dynamic_list(&h, "Retro faults", "contact", "Faultville").await;
    turn_on(&h, &list, &checklist(&[(0, 1)])).await;
    h.dataverse.webhooks_idle().await;
    for faults in [h.dataverse.faults(), h.cleverreach.faults()] {
        faults.set(FaultConfig {
            seed: Some(6),
            slow_ms: 50,
            kinds: FaultKind::ALL.to_vec(),
            ..FaultConfig::at_rate(0.10)
        });
    }
    h.settle().await.unwrap();
    for faults in [h.dataverse.faults(), h.cleverreach.faults()] {
        faults.off();
    }
    let injected: u64 = h.dataverse.faults().stats().injected.values().sum::<u64>()
        + h.cleverreach
            .faults()
            .stats()
            .injected
            .values()
            .sum::<u64>();
    assert!(injected >= 10, "faults were injected ({injected})");

    let state = run_state(&h, &list);
    assert_eq!(state.sublists, Some(20));
    assert_eq!(state.done, vec![[0, 19]], "no sublist lost or doubled");
    let e = expected(2_000);
    assert_eq!(
        (state.updated, state.unchanged, state.skipped, state.failed),
        (e.updated, e.unchanged, e.skipped, 0),
        "{state:?}"
    );
    assert!(state.is_complete());
    let states = type0(&h, "contacts");
    let writes = writes_per_record(&h, "contact");
    for (i, id) in contacts.iter().enumerate() {
        let want = if i % 20 == 0 {
            ChoiceState::No
        } else {
            ChoiceState::Yes
        };
        assert_eq!(states[id], want, "member {i}");
        let n = writes.get(id).map_or(0, BTreeSet::len);
        assert_eq!(n, usize::from(i % 20 > 2), "checklist writes of member {i}");
    }
    assert_eq!(h.active_emails(&group).len(), 2_000 - 100);
    assert!(h.dead_letters().is_empty());
    assert!(h.retroactive_log().dead_letters.is_empty());
}

#[tokio::test]
async fn a_sublist_delivered_twice_is_counted_once_and_writes_nothing_the_second_time() {
    use shared::adapters::memory::QueuedMessage;
    use shared::domain::recipient::PersonEntity;
    use shared::domain::routing::QueueFamily;
    use shared::usecases::retroactive::{OutboundMessage, Run, SublistMessage};

    let h = Harness::start().await.unwrap();
    h.install(&[("cleverreach:synchronization:sublistcount", "100")])
        .await
        .unwrap();
    let contacts = seed_people(&h, "contacts", "d", 300, "Twiceville");
    let (list, _group) = dynamic_list(&h, "Retro twice", "contact", "Twiceville").await;
    turn_on(&h, &list, &checklist(&[(0, 1)])).await;
    h.settle().await.unwrap();
    let first = run_state(&h, &list);
    assert_eq!(first.done, vec![[0, 2]]);
    let rows_before = h.dataverse.rows("contacts");
    let deliveries_before = h.dataverse.deliveries().len();

    // Sublist 1 again, as SQS may deliver it after its de-duplication window.
    let mut ids: Vec<String> = contacts.iter().map(|c| c.to_lowercase()).collect();
    ids.sort();
    let run = Run {
        list_id: list.to_lowercase(),
        run_id: first.run_id.clone(),
        stamp: first.started.clone(),
        requested: Checklist::parse(&checklist(&[(0, 1)])).unwrap().to_json(),
    };
    let body = serde_json::to_string(&SublistMessage::Update {
        run: run.clone(),
        index: 1,
        entity: PersonEntity::Contact,
        ids: ids[100..200].to_vec(),
    })
    .unwrap();
    h.retroactive_queue.redeliver(QueuedMessage {
        message_id: "again-1".into(),
        message: OutboundMessage {
            family: QueueFamily::Sublist,
            group: run.group(),
            deduplication_id: format!("{}-s1", run.run_id),
            body,
        },
    });
    h.settle().await.unwrap();

    assert_eq!(run_state(&h, &list), first, "counted once");
    assert_eq!(h.dataverse.rows("contacts"), rows_before, "nothing written");
    assert_eq!(h.dataverse.deliveries().len(), deliveries_before);
}
