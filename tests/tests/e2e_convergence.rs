//! End to end: convergence under faults (the issue's acceptance test).
//!
//! A seeded generator makes 1,000 random CRM changes through the Dataverse simulator's Web
//! API (memberships single and bulk, person checklists, e-mail addresses — also one another
//! record has —, names, salutations, companies, parent accounts, primary contacts, "do not
//! bulk e-mail", deactivation and activation, deletes and creates of contacts and leads, list
//! checklists, queries and names; campaigns and campaign activities: lists and leads linked
//! and unlinked, checklists, names, sync off and on, deactivation and activation, linked lists
//! deleted) and a few unsubscribes inside CleverReach. Both simulators
//! inject 10% faults; webhooks reach the intake through [`WebhookChaos`]: shuffled, some twice,
//! some late, some redelivered as new deliveries. The changes come in rounds (50, or one
//! e-mail move alone, see [`AVOID_OPEN_BUGS`]); after every round the queues drain, and at
//! every such drained state each synced source's group must equal the rule of docs/architecture.md §2 as
//! [`sandbox::oracle`] computes it from the CRM, and every group must belong to a synced
//! source (the default deletion settings delete the others). At the end (faults off, drained again) no
//! message may sit in the dead-letter queue, no opted-out receiver may have been re-activated
//! and every unsubscribed receiver must still be inactive.
//!
//! The run is as hard on opt-outs as the product's days are: the CleverReach simulator is
//! pessimistic (an upsert that asks to activate an opted-out receiver re-activates it, so the
//! re-activation check can fail), three instances of every worker work their queue at once
//! (a message group in one batch at a time, as SQS FIFO hands them out), CleverReach's event
//! hooks are on, the scheduled back-flow jobs run after every round, and unsubscribes land
//! while the connector works. Three seeds run one after another; each prints how many faults,
//! unsubscribes, hook deliveries and re-activation attempts it saw.
//!
//! Choices:
//! - Faults stay on for the whole run, and a round's CRM changes are made while the connector
//!   works, so that workers read records that change under them. The administrator's own calls
//!   may then fail too; the generator repeats them until they succeed, idempotently: creates
//!   carry their id (a repeated create that took effect answers 412), deletes accept 404 when
//!   repeated, updates and membership actions may be repeated.
//! - 429s carry `Retry-After: 0` (see `run`).
//! - A run is reproducible in its CRM changes (seeded, record ids included) but not in its
//!   timing, and the few draws that look at what the connector wrote (group ids for
//!   unsubscribes, a sync flag it turned off mid-round) may differ between runs;
//!   `CONVERGENCE_SEED` picks another sequence of changes, `RUST_LOG` shows the connector's
//!   logs.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use sandbox::chaos::{ChaosConfig, ChaosStats, WebhookChaos};
use sandbox::faults::{FaultConfig, FaultStats};
use sandbox::harness::{Harness, Step, checklist};
use sandbox::oracle::{self, GroupVerdict, SourceKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// While connector bugs found by this test are open, the generator steers around the changes
/// that trip them, so that the run keeps checking everything else (each bug has its own
/// ignored test at the end of this file):
/// - no address with blanks around it;
/// - no e-mail change to an address another record has;
/// - an e-mail change gets a round of its own (drained before and after) and keeps the city
///   the dynamic lists select by, so that no group adds the new address while another moves
///   the receiver there.
///
/// `a_thousand_random_changes_including_those_that_trip_open_bugs_converge_to_the_rule` runs
/// the full generator, and `CONVERGENCE_ALL_CHANGES=1` makes every run use it. Turn this off
/// once the bugs are fixed.
const AVOID_OPEN_BUGS: bool = false;

fn avoid_open_bugs() -> bool {
    AVOID_OPEN_BUGS && std::env::var_os("CONVERGENCE_ALL_CHANGES").is_none()
}

/// A round's unsubscribes in CleverReach wait until the round has drained (they are made
/// before the check) instead of landing while the connector works. Two of some 25 runs once
/// lost an unsubscribe made between the connector's read of a group and its delete of the
/// receiver; the connector now reads the receivers again just before deleting (tests in
/// `e2e_receiver_state.rs`), which leaves a window of one round trip that no client can close,
/// so racing unsubscribes stay off by default to keep this test deterministic about it.
/// `CONVERGENCE_RACE_UNSUBSCRIBES=1` makes them land mid-round again.
const RACE_UNSUBSCRIBES: bool = true;

fn race_unsubscribes() -> bool {
    if std::env::var_os("CONVERGENCE_CALM_UNSUBSCRIBES").is_some() {
        return false;
    }
    RACE_UNSUBSCRIBES || std::env::var_os("CONVERGENCE_RACE_UNSUBSCRIBES").is_some()
}

const UNSUBSCRIBE: &str = "unsubscribe in CleverReach";

const CITIES: [&str; 4] = ["berlin", "hamburg", "munich", "bremen"];
const FIRST: [&str; 12] = [
    "anna", "bert", "cem", "dora", "emil", "fatma", "gero", "hanna", "ilse", "jonas", "kira",
    "lars",
];
const LAST: [&str; 10] = [
    "schmidt", "meyer", "yilmaz", "wagner", "becker", "hoffmann", "koch", "richter", "klein",
    "wolf",
];
const DOMAINS: [&str; 3] = ["example.com", "example.org", "mail.example.de"];
const SALUTATIONS: [&str; 4] = ["", "Herr", "Frau", "Frau Dr."];

/// How big a run is.
#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    contacts: usize,
    leads: usize,
    accounts: usize,
    changes: usize,
    /// Changes per round; the queues drain completely after each round.
    round: usize,
    /// Fault rate on both simulators (0: none).
    fault_rate: f64,
    chaos: ChaosConfig,
    /// Whether a round's changes are made while the connector works.
    concurrent: bool,
    /// Steer around open connector bugs (see [`AVOID_OPEN_BUGS`]).
    avoid_open_bugs: bool,
    /// Unsubscribes may land while the connector works (see [`RACE_UNSUBSCRIBES`]).
    race_unsubscribes: bool,
    /// Batches worked at once per queue (several instances of each worker).
    workers_per_queue: usize,
    /// CleverReach's event hooks on, and the scheduled back-flow jobs run after every round.
    backflow: bool,
}

/// A marketing list of the scenario.
#[derive(Debug, Clone)]
struct List {
    id: String,
    /// Member type: contact, lead or account.
    kind: &'static str,
    dynamic: bool,
    /// One of the lists made for campaigns: the generator may delete it (and makes another).
    deletable: bool,
}

/// A campaign or campaign activity of the scenario.
#[derive(Debug, Clone)]
struct Source {
    kind: SourceKind,
    id: String,
}

impl Source {
    /// The lead's lookup that links it to this source.
    fn lead_lookup(&self) -> &'static str {
        match self.kind {
            SourceKind::CampaignActivity => "crc_campaignactivityid",
            _ => "campaignid",
        }
    }

    /// The navigation property of that lookup (case-sensitive in `@odata.bind`).
    fn lead_navigation(&self) -> &'static str {
        match self.kind {
            SourceKind::CampaignActivity => {
                shared::adapters::dataverse::schema::LEAD_CAMPAIGN_ACTIVITY_NAV
            }
            _ => shared::adapters::dataverse::schema::LEAD_CAMPAIGN_NAV,
        }
    }

    fn name_column(&self) -> &'static str {
        match self.kind {
            SourceKind::CampaignActivity => "subject",
            _ => "name",
        }
    }

    /// The Web API path and body that link (or unlink) a marketing list: AddItemCampaign,
    /// AddItemCampaignActivity and their RemoveItem counterparts.
    fn item_action(&self, list: &str, link: bool) -> (String, Value) {
        let (action, mut body) = match (self.kind, link) {
            (SourceKind::CampaignActivity, true) => {
                ("AddItemCampaignActivity", json!({ "ItemId": list }))
            }
            (SourceKind::CampaignActivity, false) => {
                ("RemoveItemCampaignActivity", json!({ "ItemId": list }))
            }
            (_, true) => ("AddItemCampaign", json!({ "EntityId": list })),
            (_, false) => ("RemoveItemCampaign", json!({ "EntityId": list })),
        };
        if link {
            body["EntityName"] = json!("list");
        }
        let path = format!(
            "{}({})/Microsoft.Dynamics.CRM.{action}",
            self.kind.entity_set(),
            self.id
        );
        (path, body)
    }

    /// The ids of the lists linked to it now.
    fn linked_lists(&self, h: &Harness) -> Vec<String> {
        let (set, parent, item) = match self.kind {
            SourceKind::CampaignActivity => (
                "campaignactivityitems",
                "_campaignactivityid_value",
                "itemid",
            ),
            _ => ("campaignitems", "_campaignid_value", "entityid"),
        };
        h.dataverse
            .rows(set)
            .iter()
            .filter(|r| r.get(parent).and_then(Value::as_str) == Some(&self.id))
            .filter_map(|r| r.get(item).and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }
}

/// An unsubscribe made in CleverReach.
#[derive(Debug, Clone)]
struct Unsubscribe {
    group: String,
    receiver_id: String,
    email: String,
    /// The CRM record the receiver stood for then (`crmentity crmid`).
    record: String,
}

/// The random CRM user: makes changes and remembers what it did.
struct Generator {
    rng: fastrand::Rng,
    counter: u64,
    lists: Vec<List>,
    /// Campaigns and campaign activities.
    sources: Vec<Source>,
    changes: BTreeMap<&'static str, usize>,
    /// Draws that made no change: nothing to change, or left out while a bug is open.
    skipped: BTreeMap<&'static str, usize>,
    /// Every unsubscribe made in CleverReach.
    unsubscribed: Vec<Unsubscribe>,
    /// Administrator calls that failed under faults and were repeated.
    admin_retries: usize,
    /// What was done since the last drained state, for the failure message.
    journal: Vec<String>,
    /// Every change of the run (`after change n: …`), for the unsubscribe check's message.
    history: Vec<String>,
    /// Steer around open connector bugs (see [`AVOID_OPEN_BUGS`]).
    avoid: bool,
    /// A change drawn but held over to start the next round.
    held_over: Option<&'static str>,
    /// Unsubscribes wait for the drained state (see [`RACE_UNSUBSCRIBES`]).
    defer_unsubscribes: bool,
    /// Unsubscribes drawn in this round and not made yet.
    deferred_unsubscribes: usize,
    /// Source id → (sync flag, active) as the generator last set them (deactivating also
    /// means "sync off": the connector writes that back).
    source_states: BTreeMap<String, (bool, bool)>,
}

fn set_of(kind: &str) -> &'static str {
    match kind {
        "contact" => "contacts",
        "lead" => "leads",
        _ => "accounts",
    }
}

fn id_column(kind: &str) -> &'static str {
    match kind {
        "contact" => "contactid",
        "lead" => "leadid",
        _ => "accountid",
    }
}

fn like_query(kind: &str, city: &str) -> String {
    format!(
        r#"<fetch><entity name="{kind}"><attribute name="{kind}id"/><filter><condition attribute="emailaddress1" operator="like" value="%{city}%"/></filter></entity></fetch>"#
    )
}

impl Generator {
    fn new(seed: u64, avoid: bool) -> Self {
        Generator {
            avoid,
            held_over: None,
            defer_unsubscribes: false,
            deferred_unsubscribes: 0,
            source_states: BTreeMap::new(),
            rng: fastrand::Rng::with_seed(seed),
            counter: 0,
            lists: Vec::new(),
            sources: Vec::new(),
            changes: BTreeMap::new(),
            skipped: BTreeMap::new(),
            unsubscribed: Vec::new(),
            admin_retries: 0,
            journal: Vec::new(),
            history: Vec::new(),
        }
    }

    /// A record id drawn from the seeded generator, so that a seed replays the same changes
    /// (the generator picks records in id order).
    fn new_id(&mut self) -> String {
        let mut bytes = [0u8; 16];
        for b in &mut bytes {
            *b = self.rng.u8(..);
        }
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.rng.usize(..items.len())])
    }

    /// A fresh valid address, sometimes in odd case or with blanks around it.
    fn fresh_email(&mut self) -> String {
        let city = CITIES[self.rng.usize(..CITIES.len())];
        self.fresh_email_in(city)
    }

    /// A fresh valid address with this city in it (what the dynamic lists' queries match).
    fn fresh_email_in(&mut self, city: &str) -> String {
        let n = self.next();
        let first = FIRST[self.rng.usize(..FIRST.len())];
        let domain = DOMAINS[self.rng.usize(..DOMAINS.len())];
        let email = format!("{first}.{city}{n}@{domain}");
        self.disguise(email)
    }

    /// The same address as CleverReach sees it, written differently.
    fn disguise(&mut self, email: String) -> String {
        match self.rng.u8(..10) {
            0 => email.to_uppercase(),
            // Blanks around an address trip an open connector bug (see
            // `a_lead_taking_an_address_that_a_contact_stores_with_blanks_…` below).
            1 if !self.avoid => format!("  {email} "),
            2 => {
                let mut chars: Vec<char> = email.chars().collect();
                if let Some(c) = chars.first_mut() {
                    *c = c.to_ascii_uppercase();
                }
                chars.into_iter().collect()
            }
            _ => email,
        }
    }

    /// A newsletter checklist of a person: mostly readable, types 0 and 1 in any state.
    fn person_checklist(&mut self) -> String {
        match self.rng.u8(..20) {
            0 => String::new(),
            1 => "not a checklist".into(),
            _ => {
                let mut entries = Vec::new();
                for t in [0, 1] {
                    if self.rng.u8(..5) > 0 {
                        entries.push((t, [0, 1, 1, 1, 2][self.rng.usize(..5)]));
                    }
                }
                checklist(&entries)
            }
        }
    }

    /// A list's checklist: one or both types sent, now and then none (the group empties).
    fn list_checklist(&mut self) -> String {
        let choices: [&[(i64, i64)]; 10] = [
            &[(0, 1)],
            &[(0, 1)],
            &[(1, 1)],
            &[(1, 1)],
            &[(0, 1), (1, 1)],
            &[(0, 1), (1, 1)],
            &[(0, 2), (1, 1)],
            &[(0, 1), (1, 2)],
            &[(0, 1), (1, 0)],
            &[(0, 0), (1, 0)],
        ];
        checklist(choices[self.rng.usize(..choices.len())])
    }

    fn person_body(&mut self, kind: &str) -> Value {
        let n = self.next();
        let first = FIRST[self.rng.usize(..FIRST.len())];
        let last = LAST[self.rng.usize(..LAST.len())];
        let mut body = json!({
            "firstname": first,
            "lastname": format!("{last}{n}"),
            "emailaddress1": self.fresh_email(),
            "crc_checklist": self.person_checklist(),
            "salutation": SALUTATIONS[self.rng.usize(..SALUTATIONS.len())],
        });
        if kind == "lead" {
            body["companyname"] = json!(format!("Lead Company {n}"));
        }
        body
    }
}

/// Retries an administrator's call until it succeeds (faults are for the connector).
/// `done_if` says which error of a repeated call means "an earlier attempt took effect".
async fn admin<T, F, Fut>(g: &mut Generator, done_if: &str, mut call: F) -> Step<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Step<T>>,
{
    let mut last = String::new();
    for attempt in 0..40 {
        match call().await {
            Ok(value) => return Ok(Some(value)),
            Err(e) if attempt > 0 && !done_if.is_empty() && e.contains(done_if) => {
                return Ok(None);
            }
            Err(e) => {
                g.admin_retries += 1;
                last = e;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    Err(format!("the administrator gave up: {last}"))
}

async fn create(h: &Harness, g: &mut Generator, kind: &str, mut body: Value) -> String {
    let id = g.new_id();
    body[id_column(kind)] = json!(id);
    g.journal.push(format!("create {kind} {body}"));
    admin(g, "refused with 412", || {
        h.create(set_of(kind), body.clone())
    })
    .await
    .unwrap();
    id
}

async fn update(h: &Harness, g: &mut Generator, set: &str, id: &str, body: Value) {
    g.journal.push(format!("update {set}({id}) {body}"));
    admin(g, "", || h.update(set, id, body.clone()))
        .await
        .unwrap();
}

fn live_ids(h: &Harness, kind: &str) -> Vec<String> {
    rows_where(h, kind, |_| true)
}

/// Ids of the records of a kind that satisfy `keep`, in id order.
fn rows_where(
    h: &Harness,
    kind: &str,
    keep: impl Fn(&serde_json::Map<String, Value>) -> bool,
) -> Vec<String> {
    h.dataverse
        .rows(set_of(kind))
        .iter()
        .filter(|r| keep(r))
        .filter_map(|r| r.get(id_column(kind)).and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

type StaticList<'a> = (&'a str, &'static str, &'a [(i64, i64)], &'a [String], usize);

/// The CRM before the chaos: people, accounts with primary contacts, four static lists of
/// contacts, leads and accounts, two dynamic lists, all synced.
async fn seed_crm(h: &Harness, g: &mut Generator, s: &Scenario) {
    let mut accounts = Vec::new();
    for i in 0..s.accounts {
        let body = json!({ "name": format!("Account {i}") });
        accounts.push(create(h, g, "account", body).await);
    }
    let mut contacts = Vec::new();
    for _ in 0..s.contacts {
        let mut body = g.person_body("contact");
        if let Some(account) = g.pick(&accounts).cloned()
            && g.rng.bool()
        {
            body["parentcustomerid_account@odata.bind"] = json!(format!("/accounts({account})"));
        }
        contacts.push(create(h, g, "contact", body).await);
    }
    for account in &accounts {
        let boss = g.pick(&contacts).cloned().unwrap();
        let body = json!({ "primarycontactid@odata.bind": format!("/contacts({boss})") });
        update(h, g, "accounts", account, body).await;
    }
    let mut leads = Vec::new();
    for _ in 0..s.leads {
        let body = g.person_body("lead");
        leads.push(create(h, g, "lead", body).await);
    }

    // Name, member type, newsletter types sent, candidates, one in `share` becomes a member.
    let statics: [StaticList; 4] = [
        ("Contacts: information", "contact", &[(0, 1)], &contacts, 3),
        ("Contacts: offers", "contact", &[(1, 1)], &contacts, 3),
        ("Leads", "lead", &[(0, 1), (1, 1)], &leads, 2),
        ("Accounts", "account", &[(0, 1)], &accounts, 2),
    ];
    for (name, kind, consent, pool, share) in statics {
        let code = match kind {
            "account" => 1,
            "contact" => 2,
            _ => 4,
        };
        let body = json!({ "listname": name, "createdfromcode": code, "type": false,
                           "crc_checklist": checklist(consent), "crc_syncwithcleverreach": false });
        let list = create_list(h, g, body).await;
        let members: Vec<String> = pool
            .iter()
            .filter(|_| g.rng.usize(..share) == 0)
            .cloned()
            .collect();
        admin(g, "", || h.add_members(&list, kind, &members))
            .await
            .unwrap();
        update(
            h,
            g,
            "lists",
            &list,
            json!({ "crc_syncwithcleverreach": true }),
        )
        .await;
        g.lists.push(List {
            id: list,
            kind,
            dynamic: false,
            deletable: false,
        });
    }
    for (name, kind, city, consent) in [
        ("Berlin contacts", "contact", "berlin", &[(0, 1)][..]),
        ("Hamburg leads", "lead", "hamburg", &[(1, 1)][..]),
    ] {
        let code = if kind == "contact" { 2 } else { 4 };
        let body = json!({ "listname": name, "createdfromcode": code, "type": true,
                           "query": like_query(kind, city),
                           "crc_checklist": checklist(consent), "crc_syncwithcleverreach": true });
        let list = create_list(h, g, body).await;
        g.lists.push(List {
            id: list,
            kind,
            dynamic: true,
            deletable: false,
        });
    }
    seed_campaigns(h, g, &leads).await;
}

/// Two campaigns and two campaign activities, all synced: three lists made for them (one synced),
/// one or two lists linked to each source, some leads linked through their lookups.
async fn seed_campaigns(h: &Harness, g: &mut Generator, leads: &[String]) {
    for kind in ["contact", "lead", "account"] {
        let sync = kind == "lead";
        campaign_list(h, g, kind, sync).await;
    }
    let campaigns: [(&str, &[(i64, i64)]); 2] = [
        ("Spring campaign", &[(0, 1)]),
        ("Trade fair", &[(0, 1), (1, 1)]),
    ];
    for (name, consent) in campaigns {
        let body = json!({ "name": name, "crc_checklist": checklist(consent),
                           "crc_syncwithcleverreach": false });
        let id = create_row(h, g, "campaigns", "campaignid", body).await;
        g.sources.push(Source {
            kind: SourceKind::Campaign,
            id,
        });
    }
    let activities: [(&str, &[(i64, i64)]); 2] = [
        ("Mailing: offers", &[(1, 1), (0, 2)]),
        ("Invitation", &[(0, 1)]),
    ];
    for (i, (subject, consent)) in activities.into_iter().enumerate() {
        let parent = g.sources[i].id.clone();
        let body = json!({ "subject": subject, "crc_checklist": checklist(consent),
                           "crc_syncwithcleverreach": false,
                           "regardingobjectid_campaign_campaignactivity@odata.bind":
                               format!("/campaigns({parent})") });
        let id = create_row(h, g, "campaignactivities", "activityid", body).await;
        g.sources.push(Source {
            kind: SourceKind::CampaignActivity,
            id,
        });
    }
    for source in g.sources.clone() {
        for _ in 0..g.rng.usize(1..=2) {
            let list = g.pick(&g.lists.clone()).cloned().unwrap();
            link_list(h, g, &source, &list.id, true).await;
        }
    }
    for lead in leads {
        for kind in [SourceKind::Campaign, SourceKind::CampaignActivity] {
            if g.rng.u8(..3) == 0 {
                let of_kind: Vec<Source> = g
                    .sources
                    .iter()
                    .filter(|s| s.kind == kind)
                    .cloned()
                    .collect();
                let source = g.pick(&of_kind).cloned().unwrap();
                link_lead(h, g, lead, &source, true).await;
            }
        }
    }
    for source in g.sources.clone() {
        let body = json!({ "crc_syncwithcleverreach": true });
        update(h, g, source.kind.entity_set(), &source.id, body).await;
        g.source_states.insert(source.id.clone(), (true, true));
    }
}

/// A static list made for campaigns (deletable by the generator), with some members.
async fn campaign_list(h: &Harness, g: &mut Generator, kind: &'static str, sync: bool) -> String {
    let code = match kind {
        "account" => 1,
        "contact" => 2,
        _ => 4,
    };
    let n = g.next();
    let body = json!({ "listname": format!("For campaigns {n}"), "createdfromcode": code,
                       "type": false, "crc_checklist": g.list_checklist(),
                       "crc_syncwithcleverreach": sync });
    let list = create_list(h, g, body).await;
    let pool = live_ids(h, kind);
    let members: Vec<String> = (0..g.rng.usize(2..=6))
        .filter_map(|_| g.pick(&pool).cloned())
        .collect();
    if !members.is_empty() {
        g.journal
            .push(format!("add members {members:?} to list {list}"));
        admin(g, "", || h.add_members(&list, kind, &members))
            .await
            .unwrap();
    }
    g.lists.push(List {
        id: list.clone(),
        kind,
        dynamic: false,
        deletable: true,
    });
    list
}

/// Links (or unlinks) a marketing list to a campaign or activity.
async fn link_list(h: &Harness, g: &mut Generator, source: &Source, list: &str, link: bool) {
    let (path, body) = source.item_action(list, link);
    g.journal.push(format!("POST {path} {body}"));
    admin(g, "", || h.action(&path, body.clone()))
        .await
        .unwrap();
}

/// Points a lead's lookup at a campaign or activity (or clears it).
async fn link_lead(h: &Harness, g: &mut Generator, lead: &str, source: &Source, link: bool) {
    let mut body = serde_json::Map::new();
    let value = if link {
        json!(format!("/{}({})", source.kind.entity_set(), source.id))
    } else {
        Value::Null
    };
    body.insert(format!("{}@odata.bind", source.lead_navigation()), value);
    update(h, g, "leads", lead, Value::Object(body)).await;
}

async fn create_list(h: &Harness, g: &mut Generator, body: Value) -> String {
    create_row(h, g, "lists", "listid", body).await
}

/// Creates a row with an id of the seeded generator (a repeated create that took effect
/// answers 412).
async fn create_row(
    h: &Harness,
    g: &mut Generator,
    set: &str,
    key: &str,
    mut body: Value,
) -> String {
    let id = g.new_id();
    body[key] = json!(id);
    g.journal.push(format!("create {set} {body}"));
    admin(g, "refused with 412", || h.create(set, body.clone()))
        .await
        .unwrap();
    id
}

/// The kinds of change and how often each is drawn: the campaign and activity changes (the
/// `source:` ones) are about one in seven.
const CHANGES: [(&str, u32); 29] = [
    ("add member", 12),
    ("add members (bulk)", 5),
    ("remove member", 10),
    ("person checklist", 14),
    ("e-mail: new address", 6),
    ("e-mail: another record's address", 4),
    ("e-mail: invalid or none", 2),
    ("name", 8),
    ("salutation", 2),
    ("lead company", 2),
    ("contact's account", 3),
    ("account renamed", 3),
    ("primary contact", 3),
    ("do not bulk e-mail", 4),
    ("deactivate or activate", 8),
    ("delete person", 3),
    ("create person", 4),
    ("list checklist", 2),
    ("list query", 1),
    ("list renamed", 1),
    (UNSUBSCRIBE, 2),
    ("source: list linked", 3),
    ("source: list unlinked", 2),
    ("source: lead linked", 3),
    ("source: lead unlinked", 2),
    ("source: checklist", 2),
    ("source: renamed", 1),
    ("source: sync off or on", 2),
    ("linked list deleted", 1),
];

fn draw_kind(g: &mut Generator) -> &'static str {
    let total: u32 = CHANGES.iter().map(|(_, w)| w).sum();
    let mut draw = g.rng.u32(..total);
    for (name, weight) in CHANGES {
        if draw < weight {
            return name;
        }
        draw -= weight;
    }
    CHANGES[0].0
}

/// Whether this kind of change gets a round of its own (see [`AVOID_OPEN_BUGS`]).
fn alone(g: &Generator, kind: &str) -> bool {
    g.avoid && kind == "e-mail: new address"
}

/// Makes one change of this kind; returns what it did (`skipped…` when it changed nothing).
async fn apply_change(h: &Harness, g: &mut Generator, kind: &'static str) -> &'static str {
    let person_kind = if g.rng.u8(..4) == 0 {
        "lead"
    } else {
        "contact"
    };
    let statics: Vec<List> = g.lists.iter().filter(|l| !l.dynamic).cloned().collect();
    match kind {
        "add member" | "add members (bulk)" => {
            let list = g.pick(&statics).cloned().unwrap();
            let pool = live_ids(h, list.kind);
            if kind == "add member" {
                let Some(member) = g.pick(&pool).cloned() else {
                    return "skipped: nothing to change";
                };
                g.journal
                    .push(format!("add member {member} to list {}", list.id));
                admin(g, "", || h.add_member(&list.id, &member))
                    .await
                    .unwrap();
            } else {
                let n = g.rng.usize(2..=5);
                let members: Vec<String> = (0..n).filter_map(|_| g.pick(&pool).cloned()).collect();
                g.journal
                    .push(format!("add members {members:?} to list {}", list.id));
                admin(g, "", || h.add_members(&list.id, list.kind, &members))
                    .await
                    .unwrap();
            }
        }
        "remove member" => {
            let list = g.pick(&statics).cloned().unwrap();
            let members: Vec<String> = h
                .dataverse
                .rows("listmembers")
                .iter()
                .filter(|m| m.get("_listid_value").and_then(Value::as_str) == Some(&list.id))
                .filter_map(|m| m.get("_entityid_value").and_then(Value::as_str))
                .map(str::to_string)
                .collect();
            let Some(member) = g.pick(&members).cloned() else {
                return "skipped: nothing to change";
            };
            g.journal
                .push(format!("remove member {member} from list {}", list.id));
            admin(g, "", || h.remove_member(&list.id, &member))
                .await
                .unwrap();
        }
        "person checklist"
        | "name"
        | "salutation"
        | "e-mail: new address"
        | "e-mail: another record's address"
        | "e-mail: invalid or none"
        | "do not bulk e-mail" => {
            let Some(id) = g.pick(&live_ids(h, person_kind)).cloned() else {
                return "skipped: nothing to change";
            };
            let body = match kind {
                "person checklist" => json!({ "crc_checklist": g.person_checklist() }),
                "name" => {
                    let n = g.next();
                    json!({ "firstname": FIRST[g.rng.usize(..FIRST.len())],
                            "lastname": format!("{}{n}", LAST[g.rng.usize(..LAST.len())]) })
                }
                "salutation" => {
                    json!({ "salutation": SALUTATIONS[g.rng.usize(..SALUTATIONS.len())] })
                }
                "e-mail: new address" => {
                    // A new city can make the person a member of a dynamic list with the new
                    // address while the receiver moves elsewhere: that trips an open bug (see
                    // `a_contact_taking_an_address_that_is_a_receiver_in_another_group_…`).
                    let row = h
                        .dataverse
                        .row(set_of(person_kind), &id)
                        .unwrap_or_default();
                    let current = row
                        .get("emailaddress1")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_lowercase();
                    let city = CITIES.iter().find(|c| current.contains(*c));
                    let email = match city {
                        Some(city) if g.avoid => g.fresh_email_in(city),
                        _ => g.fresh_email(),
                    };
                    json!({ "emailaddress1": email })
                }
                "e-mail: another record's address" if g.avoid => {
                    // Shared addresses trip two open bugs (see
                    // `an_email_change_of_one_of_two_records_sharing_…` and
                    // `a_contact_taking_an_address_that_is_a_receiver_in_another_group_…`).
                    return "skipped: shared address (open bugs)";
                }
                "e-mail: another record's address" => {
                    let taken: Vec<String> = ["contacts", "leads"]
                        .iter()
                        .flat_map(|set| h.dataverse.rows(set))
                        .filter_map(|r| {
                            r.get("emailaddress1")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                        .collect();
                    let Some(email) = g.pick(&taken).cloned() else {
                        return "skipped: nothing to change";
                    };
                    json!({ "emailaddress1": g.disguise(email.trim().to_lowercase()) })
                }
                "e-mail: invalid or none" => match g.rng.u8(..3) {
                    0 => json!({ "emailaddress1": Value::Null }),
                    1 => json!({ "emailaddress1": format!("broken.{}.example.com", g.next()) }),
                    _ => json!({ "emailaddress1": format!("nobody{}@localhost", g.next()) }),
                },
                _ => {
                    // Set on one record, or (twice as often) cleared on one that has it, so
                    // that most people stay reachable over a long run.
                    let opted_out = rows_where(h, person_kind, |r| {
                        r.get("donotbulkemail").and_then(Value::as_bool) == Some(true)
                    });
                    return match g.pick(&opted_out).cloned() {
                        Some(id) if g.rng.u8(..3) > 0 => {
                            let body = json!({ "donotbulkemail": false });
                            update(h, g, set_of(person_kind), &id, body).await;
                            "do not bulk e-mail: cleared"
                        }
                        _ => {
                            let body = json!({ "donotbulkemail": true });
                            update(h, g, set_of(person_kind), &id, body).await;
                            "do not bulk e-mail: set"
                        }
                    };
                }
            };
            update(h, g, set_of(person_kind), &id, body).await;
        }
        "lead company" => {
            let Some(id) = g.pick(&live_ids(h, "lead")).cloned() else {
                return "skipped: nothing to change";
            };
            let n = g.next();
            update(
                h,
                g,
                "leads",
                &id,
                json!({ "companyname": format!("Company {n}") }),
            )
            .await;
        }
        "contact's account" => {
            let (Some(contact), Some(account)) = (
                g.pick(&live_ids(h, "contact")).cloned(),
                g.pick(&live_ids(h, "account")).cloned(),
            ) else {
                return "skipped: nothing to change";
            };
            let body =
                json!({ "parentcustomerid_account@odata.bind": format!("/accounts({account})") });
            update(h, g, "contacts", &contact, body).await;
        }
        "account renamed" => {
            let Some(account) = g.pick(&live_ids(h, "account")).cloned() else {
                return "skipped: nothing to change";
            };
            let n = g.next();
            update(
                h,
                g,
                "accounts",
                &account,
                json!({ "name": format!("Account {n}") }),
            )
            .await;
        }
        "primary contact" => {
            let (Some(account), Some(contact)) = (
                g.pick(&live_ids(h, "account")).cloned(),
                g.pick(&live_ids(h, "contact")).cloned(),
            ) else {
                return "skipped: nothing to change";
            };
            let body = json!({ "primarycontactid@odata.bind": format!("/contacts({contact})") });
            update(h, g, "accounts", &account, body).await;
        }
        "deactivate or activate" => {
            // Deactivate one, or (twice as often) activate an inactive one again.
            let kind = ["contact", "contact", "lead", "account"][g.rng.usize(..4)];
            let inactive = rows_where(h, kind, |r| {
                r.get("statecode").and_then(Value::as_i64).unwrap_or(0) != 0
            });
            if let Some(id) = g.pick(&inactive).cloned()
                && g.rng.u8(..3) > 0
            {
                update(h, g, set_of(kind), &id, json!({ "statecode": 0 })).await;
                return "activate";
            }
            let Some(id) = g.pick(&live_ids(h, kind)).cloned() else {
                return "skipped: nothing to change";
            };
            update(h, g, set_of(kind), &id, json!({ "statecode": 1 })).await;
            return "deactivate";
        }
        "delete person" => {
            let Some(id) = g.pick(&live_ids(h, person_kind)).cloned() else {
                return "skipped: nothing to change";
            };
            let set = set_of(person_kind);
            g.journal.push(format!("delete {set}({id})"));
            admin(g, "): 404", || h.delete(set, &id)).await.unwrap();
        }
        "create person" => {
            let body = g.person_body(person_kind);
            create(h, g, person_kind, body).await;
        }
        "list checklist" => {
            let list = g.pick(&g.lists.clone()).cloned().unwrap();
            let body = json!({ "crc_checklist": g.list_checklist() });
            update(h, g, "lists", &list.id, body).await;
        }
        "list query" => {
            let dynamic: Vec<List> = g.lists.iter().filter(|l| l.dynamic).cloned().collect();
            let list = g.pick(&dynamic).cloned().unwrap();
            let city = CITIES[g.rng.usize(..CITIES.len())];
            update(
                h,
                g,
                "lists",
                &list.id,
                json!({ "query": like_query(list.kind, city) }),
            )
            .await;
        }
        "list renamed" => {
            let list = g.pick(&g.lists.clone()).cloned().unwrap();
            let n = g.next();
            update(
                h,
                g,
                "lists",
                &list.id,
                json!({ "listname": format!("List {n}") }),
            )
            .await;
        }
        "source: list linked" | "source: list unlinked" => {
            let source = g.pick(&g.sources.clone()).cloned().unwrap();
            let linked = source.linked_lists(h);
            let link = kind == "source: list linked";
            let candidates: Vec<String> = if link {
                g.lists
                    .iter()
                    .map(|l| l.id.clone())
                    .filter(|l| !linked.contains(l))
                    .collect()
            } else {
                linked
            };
            let Some(list) = g.pick(&candidates).cloned() else {
                return "skipped: nothing to change";
            };
            link_list(h, g, &source, &list, link).await;
        }
        "source: lead linked" | "source: lead unlinked" => {
            let source = g.pick(&g.sources.clone()).cloned().unwrap();
            let link = kind == "source: lead linked";
            let column = format!("_{}_value", source.lead_lookup());
            let leads = rows_where(h, "lead", |r| {
                let points_here = r.get(&column).and_then(Value::as_str) == Some(&source.id);
                points_here != link
            });
            let Some(lead) = g.pick(&leads).cloned() else {
                return "skipped: nothing to change";
            };
            link_lead(h, g, &lead, &source, link).await;
        }
        "source: checklist" => {
            let source = g.pick(&g.sources.clone()).cloned().unwrap();
            let body = json!({ "crc_checklist": g.list_checklist() });
            update(h, g, source.kind.entity_set(), &source.id, body).await;
        }
        "source: renamed" => {
            let source = g.pick(&g.sources.clone()).cloned().unwrap();
            let n = g.next();
            let mut body = serde_json::Map::new();
            body.insert(
                source.name_column().to_string(),
                json!(format!("{} {n}", source.kind.noun())),
            );
            update(
                h,
                g,
                source.kind.entity_set(),
                &source.id,
                Value::Object(body),
            )
            .await;
        }
        "source: sync off or on" => {
            // A source that is off comes on again (activated if it is inactive); when all are
            // on, one goes off (now and then by deactivating it, which the connector turns into
            // "sync off"). At most one source is off at a time, so that the others are checked.
            let state = |source: &Source| {
                let row = h
                    .dataverse
                    .row(source.kind.entity_set(), &source.id)
                    .unwrap_or_default();
                let synced =
                    row.get("crc_syncwithcleverreach").and_then(Value::as_bool) == Some(true);
                let active = row.get("statecode").and_then(Value::as_i64).unwrap_or(0) == 0;
                (synced, active)
            };
            let (on, off): (Vec<Source>, Vec<Source>) = g.sources.iter().cloned().partition(|s| {
                let (synced, active) = state(s);
                synced && active
            });
            let pool = if off.is_empty() { on } else { off };
            let source = g.pick(&pool).cloned().unwrap();
            let (synced, active) = state(&source);
            let (body, done) = match (synced && active, active) {
                (true, _) if g.rng.u8(..3) == 0 => {
                    (json!({ "statecode": 1 }), "source: deactivated")
                }
                (true, _) => (
                    json!({ "crc_syncwithcleverreach": false }),
                    "source: sync off",
                ),
                (false, true) => (
                    json!({ "crc_syncwithcleverreach": true }),
                    "source: sync on",
                ),
                (false, false) => (
                    json!({ "statecode": 0, "crc_syncwithcleverreach": true }),
                    "source: activated with sync on",
                ),
            };
            update(h, g, source.kind.entity_set(), &source.id, body).await;
            let wanted = (done.ends_with("sync on"), done != "source: deactivated");
            g.source_states.insert(source.id.clone(), wanted);
            return done;
        }
        "linked list deleted" => {
            // A list made for campaigns, linked to one if any is; another takes its place,
            // with members and links of its own.
            let deletable: Vec<List> = g.lists.iter().filter(|l| l.deletable).cloned().collect();
            let linked: Vec<List> = deletable
                .iter()
                .filter(|l| g.sources.iter().any(|s| s.linked_lists(h).contains(&l.id)))
                .cloned()
                .collect();
            let pool = if linked.is_empty() { deletable } else { linked };
            let Some(list) = g.pick(&pool).cloned() else {
                return "skipped: nothing to change";
            };
            g.journal.push(format!("delete lists({})", list.id));
            admin(g, "): 404", || h.delete("lists", &list.id))
                .await
                .unwrap();
            g.lists.retain(|l| l.id != list.id);
            let sync = g.rng.u8(..3) == 0;
            let replacement = campaign_list(h, g, list.kind, sync).await;
            for _ in 0..g.rng.usize(1..=2) {
                let source = g.pick(&g.sources.clone()).cloned().unwrap();
                link_list(h, g, &source, &replacement, true).await;
            }
        }
        _ => {
            let groups: Vec<String> = g
                .lists
                .iter()
                .filter_map(|l| h.group_of("lists", &l.id))
                .chain(
                    g.sources
                        .iter()
                        .filter_map(|s| h.group_of(s.kind.entity_set(), &s.id)),
                )
                .collect();
            let Some(group) = g.pick(&groups).cloned() else {
                return "skipped: nothing to change";
            };
            let active: Vec<_> = h
                .cleverreach
                .receivers(&group)
                .into_iter()
                .filter(|r| r.active)
                .collect();
            let Some(receiver) = g.pick(&active).cloned() else {
                return "skipped: nothing to change";
            };
            g.journal
                .push(format!("unsubscribe {} in group {group}", receiver.email));
            h.cleverreach.unsubscribe(&group, &receiver.email).unwrap();
            let attribute = |name: &str| {
                receiver
                    .global_attributes
                    .get(name)
                    .cloned()
                    .unwrap_or_default()
            };
            g.unsubscribed.push(Unsubscribe {
                group,
                record: format!("{} {}", attribute("crmentity"), attribute("crmid")),
                receiver_id: receiver.id,
                email: receiver.email,
            });
        }
    }
    kind
}

/// Makes up to `n` changes (drawing again when a draw changed nothing) and returns how many.
/// A change that must be alone ends the round before it, or is the whole round.
async fn some_changes(h: &Harness, g: &mut Generator, n: usize) -> usize {
    let mut made = 0;
    while made < n {
        let kind = g.held_over.take().unwrap_or_else(|| draw_kind(g));
        if alone(g, kind) && made > 0 {
            g.held_over = Some(kind);
            return made;
        }
        if kind == UNSUBSCRIBE && g.defer_unsubscribes {
            g.deferred_unsubscribes += 1;
            made += 1;
            continue;
        }
        let done = apply_change(h, g, kind).await;
        if done.starts_with("skipped") {
            *g.skipped.entry(done).or_default() += 1;
            continue;
        }
        *g.changes.entry(done).or_default() += 1;
        made += 1;
        if alone(g, kind) {
            return made;
        }
    }
    made
}

/// Makes the unsubscribes a round drew, now that the connector is idle.
async fn deferred_unsubscribes(h: &Harness, g: &mut Generator) {
    for _ in 0..std::mem::take(&mut g.deferred_unsubscribes) {
        let done = apply_change(h, g, UNSUBSCRIBE).await;
        let tally = if done.starts_with("skipped") {
            &mut g.skipped
        } else {
            &mut g.changes
        };
        *tally.entry(done).or_default() += 1;
    }
}

/// Whether an unsubscribe was undone: the receiver active again, or gone from a group that
/// still exists (the opt-out lost with it); with what the run did to the person.
fn unsubscribe_undone(h: &Harness, g: &Generator, u: &Unsubscribe) -> Option<String> {
    let receivers = h.cleverreach.receivers(&u.group);
    let what = match receivers.iter().find(|r| r.id == u.receiver_id) {
        // The group was deleted with its source's sync (checked by `stray_groups`).
        _ if h.cleverreach.group(&u.group).is_none() => return None,
        Some(r) if !r.active => return None,
        Some(r) => format!("{} (now {}) active again in {}", u.email, r.email, u.group),
        None => format!(
            "{}: the unsubscribed receiver is gone from {}",
            u.email, u.group
        ),
    };
    let owner: Vec<String> = SourceKind::ALL
        .iter()
        .flat_map(|kind| {
            h.dataverse
                .rows(kind.entity_set())
                .into_iter()
                .filter(|r| r.get("crc_groupid").and_then(Value::as_str) == Some(&u.group))
                .map(move |r| format!("{} {:?}", kind.noun(), r))
        })
        .collect();
    let crm_id = u.record.split(' ').nth(1).unwrap_or("?");
    let now: Vec<String> = receivers
        .iter()
        .filter(|r| r.global_attributes.get("crmid").map(String::as_str) == Some(crm_id))
        .map(|r| format!("{} active {} events {:?}", r.email, r.active, r.events))
        .collect();
    let address = u.email.trim().to_lowercase();
    let history: Vec<&String> = g
        .history
        .iter()
        .filter(|c| {
            c.contains(crm_id) || c.to_lowercase().contains(&address) || c.contains(&u.group)
        })
        .collect();
    Some(format!(
        "{what}\n  it stood for {}; the group belongs to {owner:?}\n  the group's receivers of that record now: {now:?}\n  the run's changes that name the record, the address or the group:\n    {}",
        u.record,
        history
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("\n    ")
    ))
}

/// Drains everything: held webhooks released, queues worked off, until nothing moves.
async fn settle(h: &Harness, chaos: &WebhookChaos) -> usize {
    let mut processed = 0;
    loop {
        processed += h.settle().await.unwrap();
        if chaos.held() == 0 {
            // Releasing may have left nothing held, yet put work on the queue.
            processed += h.settle().await.unwrap();
            if chaos.held() == 0 && h.queue.is_empty() {
                return processed;
            }
        }
        chaos.release().await;
    }
}

/// Works the queues while `done` is not set (the connector running beside the CRM user).
async fn work_while(h: &Harness, chaos: &WebhookChaos, done: &AtomicBool) -> usize {
    let mut processed = 0;
    while !done.load(Ordering::SeqCst) {
        processed += h.settle().await.unwrap();
        chaos.release().await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    processed
}

/// What the back-flow jobs between rounds did.
#[derive(Default)]
struct BackflowTally {
    runs: usize,
    applied: usize,
    /// Runs that could not start (settings or sources unreadable under faults): the next round
    /// runs them again, as the schedule would.
    failed_starts: usize,
}

async fn backflow_jobs(h: &Harness, tally: &mut BackflowTally) {
    for job in [
        shared::usecases::backflow::Job::ReceiverState,
        shared::usecases::backflow::Job::LeadSync,
    ] {
        match h
            .run_job_with(job, shared::usecases::backflow::RunLimits::default())
            .await
        {
            Ok(summary) => {
                tally.runs += 1;
                tally.applied += summary.applied;
            }
            Err(_) => tally.failed_starts += 1,
        }
    }
}

fn faults_line(name: &str, stats: &FaultStats) -> String {
    let total: u64 = stats.injected.values().sum();
    let kinds: Vec<String> = stats
        .injected
        .iter()
        .map(|(kind, n)| format!("{kind:?} {n}"))
        .collect();
    format!(
        "{name}: {} requests, {total} faults ({})",
        stats.requests,
        kinds.join(", ")
    )
}

/// What a run saw, and what it checked.
struct Outcome {
    faults_injected: u64,
    unsubscribes: usize,
    /// Opted-out receivers (or people) the rule selected, summed over drained states: each was
    /// a chance for the connector to re-activate someone.
    opted_out_selected: usize,
    /// The last check, after faults were switched off and everything drained.
    verdicts: Vec<GroupVerdict>,
    /// Problems found where the queues had drained after a round, prefixed with the round.
    round_problems: Vec<String>,
    /// Synced sources without a group at the end.
    without_group: Vec<String>,
    /// Groups of no synced source at the end.
    stray_groups: Vec<String>,
    /// Campaigns and activities whose sync flag or state is not what the generator set.
    sources_changed: Vec<String>,
    /// Expected receivers summed over every drained state checked.
    checked_receivers: usize,
    /// Groups checked over every drained state, by source kind.
    checked_groups: BTreeMap<SourceKind, usize>,
    dead_letters: Vec<String>,
    reactivations: Vec<String>,
    unsubscribes_undone: Vec<String>,
    chaos: ChaosStats,
}

/// One comparison of CleverReach with the rule.
struct Check {
    verdicts: Vec<GroupVerdict>,
    /// Synced sources that lack a group.
    without_group: Vec<String>,
    /// Groups that are no synced source's group.
    stray_groups: Vec<String>,
    /// Receivers the rule selects over all groups.
    expected: usize,
}

impl Check {
    /// Everything wrong, one line each.
    fn problems(&self) -> Vec<String> {
        let verdicts = self
            .verdicts
            .iter()
            .flat_map(|v| v.problems.iter().cloned());
        let without = self
            .without_group
            .iter()
            .map(|source| format!("{source} is synced but has no group"));
        let stray = self
            .stray_groups
            .iter()
            .map(|group| format!("group {group} is no synced source's group"));
        verdicts.chain(without).chain(stray).collect()
    }
}

/// Compares every synced source's group with the rule, and every group with the sources.
fn check(h: &Harness) -> Check {
    let expectation = oracle::expected_groups(&h.dataverse).unwrap();
    Check {
        verdicts: expectation
            .groups
            .iter()
            .map(|expected| oracle::check_group(expected, &expectation, &h.cleverreach))
            .collect(),
        stray_groups: oracle::stray_groups(&expectation, &h.cleverreach),
        expected: expectation.receiver_count(),
        without_group: expectation.without_group,
    }
}

fn describe(change: &sandbox::harness::DeadLetter) -> String {
    let e = &change.change.event;
    format!(
        "{} of {} {} (operation {})",
        e.message.name(),
        e.entity,
        e.record_id,
        e.operation_id
    )
}

async fn run(s: Scenario) -> Outcome {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let started = Instant::now();
    let mut h = Harness::start_with(
        sandbox::dataverse::DataverseSimConfig::default(),
        sandbox::cleverreach::CleverReachSimConfig::default(),
        sandbox::harness::HarnessOptions {
            hooks: s.backflow,
            workers_per_queue: s.workers_per_queue,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(
        h.cleverreach.pessimistic(),
        "the run needs the simulator that re-activates on request"
    );
    let chaos = WebhookChaos::start(&h.intake_url, s.chaos.clone())
        .await
        .unwrap();
    // Dataverse delivers to the chaos proxy, which passes the webhooks on to the intake.
    h.intake_url = chaos.url().to_string();
    h.install(&[]).await.unwrap();
    let mut g = Generator::new(s.seed, s.avoid_open_bugs);
    g.defer_unsubscribes = s.concurrent && !s.race_unsubscribes;
    seed_crm(&h, &mut g, &s).await;
    let mut processed = settle(&h, &chaos).await;
    let seeded = check(&h);
    let seeded_receivers = seeded.expected;
    let problems = seeded.problems();
    assert!(
        problems.is_empty(),
        "the seeded CRM did not sync: {problems:#?}"
    );
    let seeded_at = started.elapsed();

    if s.fault_rate > 0.0 {
        for (i, faults) in [h.dataverse.faults(), h.cleverreach.faults()]
            .into_iter()
            .enumerate()
        {
            // 429s say "Retry-After: 0": the harness's workers use `RetryPolicy::fast()`,
            // which gives up on any wait above 200 ms and leaves the message to the queue, and
            // the local queue redelivers at once (SQS would wait for the visibility timeout).
            // With the simulator's default of 1 s, a message of ~20 requests then fails five
            // times in a row a few times per 1,000 messages: an artefact of the harness, not of
            // the connector, whose production policy waits up to 10 s.
            faults.set(FaultConfig {
                seed: Some(s.seed + i as u64 + 1),
                slow_ms: 30,
                retry_after_secs: 0,
                ..FaultConfig::at_rate(s.fault_rate)
            });
        }
    }
    let mut made = 0;
    let mut rounds = 0;
    let mut round_problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut checked_receivers = 0;
    let mut checked_groups = BTreeMap::new();
    let mut opted_out_selected = 0;
    let mut backflow = BackflowTally::default();
    g.journal.clear();
    while made < s.changes {
        let n = s.round.min(s.changes - made);
        let n = if s.concurrent {
            let done = AtomicBool::new(false);
            let changes = async {
                let n = some_changes(&h, &mut g, n).await;
                done.store(true, Ordering::SeqCst);
                n
            };
            let (n, worked) = tokio::join!(changes, work_while(&h, &chaos, &done));
            processed += worked;
            n
        } else {
            some_changes(&h, &mut g, n).await
        };
        processed += settle(&h, &chaos).await;
        deferred_unsubscribes(&h, &mut g).await;
        if s.backflow {
            // The scheduled jobs between rounds, as their schedule would run them; what they
            // write back (a "no", a lead) is worked off before the check.
            backflow_jobs(&h, &mut backflow).await;
            processed += settle(&h, &chaos).await;
        }
        made += n;
        rounds += 1;
        // Every drained state must already be right, faults or not.
        let drained = check(&h);
        checked_receivers += drained.expected;
        opted_out_selected += drained
            .verdicts
            .iter()
            .map(|v| v.excused_opted_out + v.excused_person_opted_out)
            .sum::<usize>();
        for verdict in &drained.verdicts {
            *checked_groups.entry(verdict.source_kind).or_default() += 1;
        }
        for problem in drained.problems() {
            // A difference is reported where it first shows, not again after every round.
            if seen.insert(problem.clone()) {
                round_problems.push(format!(
                    "after change {made}: {problem}\n    changes since the last drained state:\n      {}",
                    g.journal.join("\n      ")
                ));
            }
        }
        g.history.extend(
            g.journal
                .drain(..)
                .map(|c| format!("by change {made}: {c}")),
        );
    }
    h.dataverse.faults().off();
    h.cleverreach.faults().off();
    processed += settle(&h, &chaos).await;
    let Check {
        verdicts,
        without_group,
        stray_groups,
        expected: expected_at_end,
    } = check(&h);

    let unsubscribes_undone = g
        .unsubscribed
        .iter()
        .filter_map(|u| unsubscribe_undone(&h, &g, u))
        .collect();
    // The connector writes a source's sync flag only to turn it off when the source is
    // inactive: every flag and state must be what the generator last set.
    let source_states: Vec<String> = g
        .sources
        .iter()
        .map(|source| {
            let row = h
                .dataverse
                .row(source.kind.entity_set(), &source.id)
                .unwrap_or_default();
            let synced = row.get("crc_syncwithcleverreach").and_then(Value::as_bool) == Some(true);
            let active = row.get("statecode").and_then(Value::as_i64).unwrap_or(0) == 0;
            let wanted = g.source_states.get(&source.id).copied();
            let state = format!(
                "{} {}: sync {}, {}",
                source.kind.noun(),
                source.id,
                if synced { "on" } else { "off" },
                if active { "active" } else { "inactive" }
            );
            match wanted {
                Some(w) if w != (synced, active) => {
                    format!("{state} — the generator left it at (sync, active) = {w:?}")
                }
                _ => state,
            }
        })
        .collect();
    let sources_changed: Vec<String> = source_states
        .iter()
        .filter(|s| s.contains("the generator left it"))
        .cloned()
        .collect();
    let deliveries = h.dataverse.deliveries();
    let chaos_stats = chaos.stats();
    let mut dead_letters: Vec<String> = h.dead_letters().iter().map(describe).collect();
    if let Some(events) = &h.events {
        dead_letters.extend(
            events
                .dead_letters
                .lock()
                .unwrap()
                .iter()
                .map(|m| format!("CleverReach event {}", m.message.body)),
        );
    }
    let sum = |f: fn(&GroupVerdict) -> usize| verdicts.iter().map(f).sum::<usize>();
    let of_kind = |kind| verdicts.iter().filter(|v| v.source_kind == kind).count();

    println!("── convergence run, seed {} ──", s.seed);
    println!(
        "CRM: {} contacts, {} leads, {} accounts at the start; {} lists, {} campaigns and activities; {} receivers expected after seeding",
        s.contacts,
        s.leads,
        s.accounts,
        g.lists.len(),
        g.sources.len(),
        seeded_receivers
    );
    println!("sources at the end:");
    for state in &source_states {
        println!("  {state}");
    }
    println!("changes by kind:");
    for (kind, n) in &g.changes {
        println!("  {n:>4}  {kind}");
    }
    println!("draws that changed nothing (drawn again): {:?}", g.skipped);
    println!(
        "unsubscribes in CleverReach: {}; administrator calls repeated after a fault: {}",
        g.unsubscribed.len(),
        g.admin_retries
    );
    let hooks = h.cleverreach.hook_stats();
    println!(
        "workers per queue: {}; event hooks: {} registered, {} events, {} delivered, {} refused or unanswered; back-flow jobs between rounds: {} runs, {} unsubscribes and bounces written back, {} failed starts",
        s.workers_per_queue,
        hooks.registered,
        hooks.events,
        hooks.made - hooks.failed,
        hooks.failed,
        backflow.runs,
        backflow.applied,
        backflow.failed_starts
    );
    println!(
        "re-activation: {} upserts asked to activate an opted-out receiver, {} re-activated; opted-out receivers the rule selected, summed over drained states: {opted_out_selected}",
        h.cleverreach.reactivation_attempts(),
        h.cleverreach.reactivations().len()
    );
    println!(
        "webhooks: {} delivered by Dataverse ({} failed); chaos: {} forwarded, {} duplicated, {} redelivered as new, {} delayed, {} shuffled releases",
        deliveries.len(),
        deliveries.iter().filter(|d| !d.succeeded).count(),
        chaos_stats.forwarded,
        chaos_stats.duplicated,
        chaos_stats.redelivered,
        chaos_stats.delayed,
        chaos_stats.shuffled_releases
    );
    println!(
        "messages processed: {processed} (redeliveries after failures included); dead letters: {}",
        dead_letters.len()
    );
    for letter in &dead_letters {
        println!("  dead letter: {letter}");
    }
    println!(
        "{}",
        faults_line("Dataverse", &h.dataverse.faults().stats())
    );
    println!(
        "{}",
        faults_line("CleverReach", &h.cleverreach.faults().stats())
    );
    let mut busiest: Vec<(String, u64)> = h.dataverse.stats().requests.into_iter().collect();
    busiest.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let busiest: Vec<String> = busiest
        .iter()
        .take(8)
        .map(|(key, n)| format!("{key} {n}"))
        .collect();
    println!("Dataverse's busiest requests: {}", busiest.join(", "));
    println!(
        "checks: {rounds} drained states ({checked_receivers} expected receivers in all; groups checked by kind: {checked_groups:?}), {} problems",
        round_problems.len()
    );
    println!(
        "end: {} groups ({} of lists, {} of campaigns, {} of activities), {} expected receivers, {} active ({} with the data of another group's record), {} excused (receiver opted out), {} excused (person opted out), {} groups of no synced source",
        verdicts.len(),
        of_kind(SourceKind::MarketingList),
        of_kind(SourceKind::Campaign),
        of_kind(SourceKind::CampaignActivity),
        expected_at_end,
        sum(|v| v.active),
        sum(|v| v.data_from_other_group),
        sum(|v| v.excused_opted_out),
        sum(|v| v.excused_person_opted_out),
        stray_groups.len()
    );
    println!(
        "wall time: {:.1} s (seeding {:.1} s)",
        started.elapsed().as_secs_f64(),
        seeded_at.as_secs_f64()
    );

    let faults_injected: u64 = [h.dataverse.faults().stats(), h.cleverreach.faults().stats()]
        .iter()
        .map(|s| s.injected.values().sum::<u64>())
        .sum();
    Outcome {
        faults_injected,
        unsubscribes: g.unsubscribed.len(),
        opted_out_selected,
        verdicts,
        round_problems,
        without_group,
        stray_groups,
        sources_changed,
        checked_receivers,
        checked_groups,
        dead_letters,
        reactivations: h
            .cleverreach
            .reactivations()
            .iter()
            .map(|r| format!("{r:?}"))
            .collect(),
        unsubscribes_undone,
        chaos: chaos_stats,
    }
}

fn assert_converged(outcome: &Outcome) {
    assert!(
        outcome.round_problems.is_empty(),
        "{} differences from the rule where the queues had drained (first 30):\n{}",
        outcome.round_problems.len(),
        outcome
            .round_problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    let problems: Vec<&str> = outcome
        .verdicts
        .iter()
        .flat_map(|v| &v.problems)
        .map(String::as_str)
        .collect();
    assert!(
        problems.is_empty(),
        "at the end, {} differences from the rule:\n{}",
        problems.len(),
        problems.join("\n")
    );
    assert!(
        outcome.without_group.is_empty(),
        "synced sources without a group: {:?}",
        outcome.without_group
    );
    assert!(
        outcome.sources_changed.is_empty(),
        "sources whose sync flag or state changed behind the user: {:#?}",
        outcome.sources_changed
    );
    assert!(
        outcome.stray_groups.is_empty(),
        "groups of no synced source: {:?}",
        outcome.stray_groups
    );
    assert!(
        outcome.dead_letters.is_empty(),
        "{} dead letters:\n{}",
        outcome.dead_letters.len(),
        outcome.dead_letters.join("\n")
    );
    assert!(
        outcome.reactivations.is_empty(),
        "opted-out receivers re-activated: {:#?}",
        outcome.reactivations
    );
    assert!(
        outcome.unsubscribes_undone.is_empty(),
        "unsubscribes undone: {:#?}",
        outcome.unsubscribes_undone
    );
    assert!(
        outcome.chaos.refused.is_empty() && outcome.chaos.unreachable == 0,
        "the intake refused deliveries: {:?}, unreachable {}",
        outcome.chaos.refused,
        outcome.chaos.unreachable
    );
}

/// Instances of each worker working at once (SQS hands a message group to one at a time).
const WORKERS_PER_QUEUE: usize = 3;

fn seed_from_env(default: u64) -> u64 {
    std::env::var("CONVERGENCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Three seeds (or the one `CONVERGENCE_SEED` names), one after another.
fn seeds(default: u64) -> Vec<u64> {
    match std::env::var("CONVERGENCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => vec![default, default + 1, default + 2],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_random_changes_under_faults_and_chaotic_webhooks_converge_to_the_rule() {
    for seed in seeds(20_240_611) {
        let outcome = run(Scenario {
            seed,
            contacts: 40,
            leads: 12,
            accounts: 8,
            changes: 1000,
            round: 50,
            fault_rate: 0.1,
            chaos: ChaosConfig::rough(seed),
            concurrent: true,
            avoid_open_bugs: avoid_open_bugs(),
            race_unsubscribes: race_unsubscribes(),
            workers_per_queue: WORKERS_PER_QUEUE,
            backflow: true,
        })
        .await;
        assert_converged(&outcome);
        // The run must have had something to get wrong.
        assert!(outcome.verdicts.len() >= 6, "every list synced");
        assert_sources_checked(&outcome, 1000 / 50);
        assert!(outcome.checked_receivers >= 200, "receivers were checked");
        assert!(outcome.chaos.duplicated > 0 && outcome.chaos.redelivered > 0);
        assert_opt_outs_were_at_stake(&outcome);
    }
}

/// The opt-out checks had something to catch: faults were injected, people unsubscribed, and
/// the rule selected opted-out receivers the connector could have re-activated.
fn assert_opt_outs_were_at_stake(outcome: &Outcome) {
    assert!(outcome.faults_injected > 0, "faults were injected");
    assert!(outcome.unsubscribes > 0, "people unsubscribed");
    assert!(
        outcome.opted_out_selected > 0,
        "the rule selected opted-out receivers at some drained state"
    );
}

/// The same generator without faults or chaos, one change at a time and a check after each:
/// when the big run fails, this tells whether the connector gets the changes themselves
/// wrong, and at which change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_changes_applied_one_at_a_time_without_faults_converge_to_the_rule() {
    let seed = seed_from_env(7);
    let outcome = run(Scenario {
        seed,
        contacts: 20,
        leads: 6,
        accounts: 4,
        changes: 150,
        round: 1,
        fault_rate: 0.0,
        chaos: ChaosConfig::calm(seed),
        concurrent: false,
        avoid_open_bugs: avoid_open_bugs(),
        race_unsubscribes: race_unsubscribes(),
        workers_per_queue: WORKERS_PER_QUEUE,
        backflow: true,
    })
    .await;
    assert_converged(&outcome);
    assert!(outcome.checked_receivers >= 200, "receivers were checked");
    assert_sources_checked(&outcome, 150);
}

/// Campaign and activity groups were compared in most drained states (they may all be
/// unsynced at times: the generator turns their sync off and on).
fn assert_sources_checked(outcome: &Outcome, drained_states: usize) {
    for kind in [SourceKind::Campaign, SourceKind::CampaignActivity] {
        let checked = outcome.checked_groups.get(&kind).copied().unwrap_or(0);
        assert!(
            checked >= drained_states,
            "{kind:?} groups checked {checked} times in {drained_states} drained states",
        );
    }
}

// ── The oracle itself ────────────────────────────────────────────────────────────────────

/// The check must be able to fail for campaigns: a lead linked to a campaign behind the
/// connector's back (no webhook) is missing from its group, and a receiver nobody selects is
/// in it; both are reported, and nothing else is.
#[tokio::test]
async fn the_oracle_reports_a_campaign_group_that_lacks_a_linked_lead_or_holds_a_stranger() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let list = h
        .create(
            "lists",
            json!({ "listname": "Linked", "createdfromcode": 2, "type": false }),
        )
        .await
        .unwrap();
    h.add_member(&list, &anna).await.unwrap();
    let campaign = Source {
        kind: SourceKind::Campaign,
        id: h
            .create(
                "campaigns",
                json!({ "name": "Spring", "crc_checklist": checklist(&[(0, 1)]),
                        "crc_syncwithcleverreach": true }),
            )
            .await
            .unwrap(),
    };
    let (path, body) = campaign.item_action(&list, true);
    h.action(&path, body).await.unwrap();
    let lead = |first: &str| {
        json!({ "firstname": first, "lastname": "L",
                "emailaddress1": format!("{first}@example.com"),
                "crc_checklist": checklist(&[(0, 1)]),
                "campaignid@odata.bind": format!("/campaigns({})", campaign.id) })
    };
    h.create("leads", lead("lena")).await.unwrap();
    h.settle().await.unwrap();
    let synced = check(&h);
    assert_eq!(synced.problems(), Vec::<String>::new());
    let verdict = |c: &Check| {
        c.verdicts
            .iter()
            .find(|v| v.source_kind == SourceKind::Campaign)
            .cloned()
            .expect("the campaign's group is checked")
    };
    assert_eq!(verdict(&synced).expected, 2, "anna and lena");
    let group = h.group_of("campaigns", &campaign.id).unwrap();

    let Value::Object(lina) = lead("lina") else {
        unreachable!()
    };
    h.dataverse.seed("leads", vec![lina]).unwrap();
    h.cleverreach
        .add_stranger(&group, "stranger@example.com", true, &[])
        .unwrap();
    let mut problems = check(&h).problems();
    problems.sort();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0]
            .starts_with("campaign \"Spring\": lina@example.com is selected by the rule (lead "),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with(
            "campaign \"Spring\": stranger@example.com is active but the rule does not select it"
        ),
        "{problems:#?}"
    );
}

// ── Connector bugs the convergence run found, each reduced to its smallest case ─────────────

#[tokio::test]
async fn a_lead_taking_an_address_that_a_contact_stores_with_blanks_leaves_the_contacts_receiver_alone()
 {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let dora = h
        .create(
            "contacts",
            json!({ "firstname": "Dora", "lastname": "D", "emailaddress1": "  dora@example.org ",
                    "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
    let lead = h
        .create(
            "leads",
            json!({ "firstname": "Lea", "lastname": "L", "emailaddress1": "lea@example.org",
                    "crc_checklist": checklist(&[(0, 1)]) }),
        )
        .await
        .unwrap();
    let contacts = h
        .synced_static_list("Contacts", "contact", &[dora])
        .await
        .unwrap()
        .1;
    assert_eq!(h.active_emails(&contacts), ["dora@example.org"]);

    // The lead (in no synced list) takes the address Dora has.
    h.update(
        "leads",
        &lead,
        json!({ "emailaddress1": "dora@example.org" }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&contacts),
        ["dora@example.org"],
        "Dora is still a member with that address"
    );
}

async fn person(h: &Harness, set: &str, first: &str, email: &str) -> String {
    h.create(
        set,
        json!({ "firstname": first, "lastname": "X", "emailaddress1": email,
                "crc_checklist": checklist(&[(0, 1)]) }),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn a_contact_taking_an_address_that_is_a_receiver_in_another_group_moves_in_its_own_group() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = person(&h, "contacts", "Anna", "anna@example.org").await;
    let lea = person(&h, "leads", "Lea", "lea@example.org").await;
    let contacts = h
        .synced_static_list("Contacts", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap()
        .1;
    let leads = h
        .synced_static_list("Leads", "lead", &[lea])
        .await
        .unwrap()
        .1;

    h.update(
        "contacts",
        &anna,
        json!({ "emailaddress1": "lea@example.org" }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert!(h.dead_letters().is_empty(), "no dead letter");
    assert_eq!(h.active_emails(&contacts), ["lea@example.org"]);
    assert_eq!(h.active_emails(&leads), ["lea@example.org"]);
}

#[tokio::test]
async fn an_email_change_of_one_of_two_records_sharing_an_address_keeps_the_other_ones_receiver() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = person(&h, "contacts", "Anna", "shared@example.org").await;
    let lea = person(&h, "leads", "Lea", "shared@example.org").await;
    // The contacts' group is synced last: the address's (account-wide) attributes are Anna's.
    let leads = h
        .synced_static_list("Leads", "lead", &[lea])
        .await
        .unwrap()
        .1;
    let contacts = h
        .synced_static_list("Contacts", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap()
        .1;
    assert_eq!(h.active_emails(&leads), ["shared@example.org"]);

    h.update(
        "contacts",
        &anna,
        json!({ "emailaddress1": "anna@example.org" }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&contacts), ["anna@example.org"]);
    assert_eq!(
        h.active_emails(&leads),
        ["shared@example.org"],
        "the lead still has the shared address"
    );
}

#[tokio::test]
async fn a_sync_that_skips_members_still_writes_its_status_on_the_list() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = person(&h, "contacts", "Anna", "anna@example.org").await;
    let bert = h
        .create(
            "contacts",
            json!({ "firstname": "Bert", "lastname": "X", "emailaddress1": "bert@example.org",
                    "crc_checklist": checklist(&[(0, 2)]) }),
        )
        .await
        .unwrap();
    let list = h
        .create(
            "lists",
            json!({ "listname": "Status", "createdfromcode": 2, "type": false,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": false }),
        )
        .await
        .unwrap();
    h.add_members(&list, "contact", &[anna, bert])
        .await
        .unwrap();
    h.update("lists", &list, json!({ "crc_syncwithcleverreach": true }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    let row = h.dataverse.row("lists", &list).unwrap();
    let status = row.get("crc_syncstatus").and_then(Value::as_str);
    // The list may be reconciled more than once (level-triggered: the membership event sees
    // sync on too); whichever run wrote last, its status counts the skipped member.
    assert!(
        status.is_some_and(|s| s.contains("1 skipped")),
        "status on the list: {status:?}"
    );
}

#[tokio::test]
async fn a_person_who_joins_one_group_while_their_address_changes_in_another_ends_up_in_both() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let anna = h
        .create(
            "contacts",
            json!({ "firstname": "Anna", "lastname": "X", "emailaddress1": "anna@example.org",
                    "crc_checklist": checklist(&[(0, 1), (1, 2)]) }),
        )
        .await
        .unwrap();
    // Lists are worked in id order: the group that adds the new address comes first.
    let mut groups = Vec::new();
    for (id, name, sends) in [
        ("00000000-0000-4000-8000-0000000000b1", "Offers", 1),
        ("ffffffff-0000-4000-8000-0000000000a1", "Information", 0),
    ] {
        h.create(
            "lists",
            json!({ "listid": id, "listname": name, "createdfromcode": 2, "type": false,
                    "crc_checklist": checklist(&[(sends, 1)]), "crc_syncwithcleverreach": false }),
        )
        .await
        .unwrap();
        h.add_member(id, &anna).await.unwrap();
        h.update("lists", id, json!({ "crc_syncwithcleverreach": true }))
            .await
            .unwrap();
        h.settle().await.unwrap();
        groups.push(h.group_of("lists", id).expect("group"));
    }
    assert!(h.active_emails(&groups[0]).is_empty());
    assert_eq!(h.active_emails(&groups[1]), ["anna@example.org"]);

    // Both changes reach the worker as one: it reads the record once, as it is now.
    h.update(
        "contacts",
        &anna,
        json!({ "emailaddress1": "anna.new@example.org", "crc_checklist": checklist(&[(0, 1), (1, 1)]) }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert!(h.dead_letters().is_empty(), "no dead letter");
    assert_eq!(h.active_emails(&groups[0]), ["anna.new@example.org"]);
    assert_eq!(h.active_emails(&groups[1]), ["anna.new@example.org"]);
}

/// The company depends on the source (a contact's parent account in a contact list, the account
/// in an account list), so the connector keeps it in a group-local attribute: CleverReach's
/// global attributes are one value per address for the whole account.
#[tokio::test]
async fn a_contacts_company_comes_back_when_the_account_that_overwrote_it_leaves_its_list() {
    let h = Harness::start().await.unwrap();
    h.install(&[]).await.unwrap();
    let parent = h
        .create("accounts", json!({ "name": "Parent Co" }))
        .await
        .unwrap();
    let boss = h
        .create(
            "contacts",
            json!({ "firstname": "Bea", "lastname": "Boss", "emailaddress1": "bea@example.org",
                    "crc_checklist": checklist(&[(0, 1)]),
                    "parentcustomerid_account@odata.bind": format!("/accounts({parent})") }),
        )
        .await
        .unwrap();
    let other = h
        .create(
            "accounts",
            json!({ "name": "Other Co", "primarycontactid@odata.bind": format!("/contacts({boss})") }),
        )
        .await
        .unwrap();
    let contacts = h
        .synced_static_list("Contacts", "contact", std::slice::from_ref(&boss))
        .await
        .unwrap()
        .1;
    let company = |h: &Harness| {
        h.cleverreach
            .receiver(&contacts, "bea@example.org")
            .map(|r| r.attributes.get("crm_company").cloned().unwrap_or_default())
    };
    assert_eq!(company(&h).as_deref(), Some("Parent Co"));
    let accounts_list = h
        .create(
            "lists",
            json!({ "listname": "Accounts", "createdfromcode": 1, "type": false,
                    "crc_checklist": checklist(&[(0, 1)]), "crc_syncwithcleverreach": false }),
        )
        .await
        .unwrap();
    h.add_member(&accounts_list, &other).await.unwrap();
    h.update(
        "lists",
        &accounts_list,
        json!({ "crc_syncwithcleverreach": true }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();

    // Bea is now only a member of the contact list: her company there is her parent account.
    h.remove_member(&accounts_list, &other).await.unwrap();
    h.settle().await.unwrap();
    assert_eq!(company(&h).as_deref(), Some("Parent Co"));
}
