//! The CRM installer (`crc-install`, tools/installer) against the Dataverse simulator, run as an
//! administrator would run it: after installing, the sandbox fires exactly the connector's steps
//! at the intake and the connector works with no other registration; a second run creates
//! nothing; `--dry-run` prints the plan and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::dataverse::{ADMIN_CLIENT_ID, ADMIN_CLIENT_SECRET, DataverseSim};
use sandbox::harness::{Harness, WEBHOOK_KEY};
use serde_json::json;
use shared::install::{ENDPOINT_NAME, steps};
use std::collections::BTreeSet;

const CLIENT_SECRET: &str = ADMIN_CLIENT_SECRET;

/// The environment an administrator sets before running the installer.
fn env(h: &Harness, with_key: bool) -> impl Fn(&str) -> Option<String> + use<> {
    let dataverse = &h.dataverse;
    let mut pairs = vec![
        ("DATAVERSE_URL", dataverse.resource()),
        ("DATAVERSE_API_URL", dataverse.api_url()),
        ("DATAVERSE_TOKEN_URL", dataverse.token_url()),
        ("DATAVERSE_CLIENT_ID", ADMIN_CLIENT_ID.to_string()),
        ("DATAVERSE_CLIENT_SECRET", CLIENT_SECRET.to_string()),
        ("INTAKE_URL", h.intake_url.clone()),
        ("CLEVERREACH_API_URL", h.cleverreach.base_url()),
    ];
    if with_key {
        pairs.push(("WEBHOOK_KEY", WEBHOOK_KEY.to_string()));
    }
    let pairs: Vec<(String, String)> = pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

async fn run(
    args: &[&str],
    env: impl Fn(&str) -> Option<String>,
) -> (Result<(), crc_install::InstallError>, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut out = Vec::new();
    let result = crc_install::run(&args, env, &mut out).await;
    (result, String::from_utf8(out).unwrap())
}

fn names(sim: &DataverseSim, set: &str) -> BTreeSet<String> {
    sim.rows(set)
        .iter()
        .filter_map(|row| row.get("name")?.as_str().map(str::to_string))
        .collect()
}

/// Rows of everything the installer writes.
fn counts(sim: &DataverseSim) -> [usize; 4] {
    [
        sim.rows("serviceendpoints").len(),
        sim.rows("sdkmessageprocessingsteps").len(),
        sim.rows("sdkmessageprocessingstepimages").len(),
        sim.rows("crc_settings").len(),
    ]
}

fn expected_steps() -> BTreeSet<String> {
    steps().iter().map(|s| s.name()).collect()
}

#[tokio::test]
async fn after_installing_the_sandbox_fires_exactly_the_connectors_steps_and_lists_sync() {
    let h = Harness::start().await.unwrap();
    let (result, out) = run(&[], env(&h, true)).await;
    result.unwrap();
    assert!(out.contains("created"), "{out}");

    assert_eq!(
        names(&h.dataverse, "serviceendpoints"),
        BTreeSet::from([ENDPOINT_NAME.to_string()])
    );
    assert_eq!(
        names(&h.dataverse, "sdkmessageprocessingsteps"),
        expected_steps()
    );
    let images: usize = steps().iter().map(|s| s.images.len()).sum();
    assert_eq!(
        h.dataverse.rows("sdkmessageprocessingstepimages").len(),
        images
    );
    let keys: BTreeSet<String> = h
        .dataverse
        .rows("crc_settings")
        .iter()
        .filter_map(|row| row.get("crc_key")?.as_str().map(str::to_string))
        .collect();
    let defaults: BTreeSet<String> = crc_install::default_settings("x")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, defaults);

    // The connector works with this registration alone: a static list with sync on.
    let mut members = Vec::new();
    for name in ["ina", "ole"] {
        members.push(
            h.contact(&format!("{name}@example.com"), &[(0, 1)])
                .await
                .unwrap(),
        );
    }
    let (_, group) = h
        .synced_static_list("Installed", "contact", &members)
        .await
        .unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["ina@example.com", "ole@example.com"]
    );

    // Every webhook the sandbox sent came from one of the installed steps, at the intake.
    let deliveries = h.dataverse.deliveries();
    let fired: BTreeSet<String> = deliveries.iter().map(|d| d.step_name.clone()).collect();
    assert!(fired.is_subset(&expected_steps()), "{fired:?}");
    for wanted in [
        "Create of contact",
        "AddListMembers of list",
        "Update of list",
    ] {
        assert!(
            fired.iter().any(|f| f.ends_with(wanted)),
            "{wanted} fired: {fired:?}"
        );
    }
    let intake = h.intake_url.split('?').next().unwrap().to_string();
    assert!(deliveries.iter().all(|d| d.url == intake && d.mode == 1));
}

#[tokio::test]
async fn running_the_installer_twice_creates_nothing_and_keeps_existing_settings() {
    let h = Harness::start().await.unwrap();
    // An administrator already set the prefix, spelled the seed's way.
    h.create(
        "crc_settings",
        json!({ "crc_key": "cleverreach:groupsetting:groupprefix", "crc_value": "CRM - " }),
    )
    .await
    .unwrap();
    run(&[], env(&h, true)).await.0.unwrap();
    let after_first = counts(&h.dataverse);
    assert_eq!(after_first[3], 13, "12 new rows next to the existing one");

    let (result, out) = run(&[], env(&h, true)).await;
    result.unwrap();
    assert_eq!(counts(&h.dataverse), after_first);
    assert!(out.contains("done: 0 created"), "{out}");
    let prefix: Vec<String> = h
        .dataverse
        .rows("crc_settings")
        .iter()
        .filter(|row| {
            row.get("crc_key")
                .and_then(|k| k.as_str())
                .is_some_and(|k| k.contains("groupprefix"))
        })
        .filter_map(|row| row.get("crc_value")?.as_str().map(str::to_string))
        .collect();
    assert_eq!(prefix, ["CRM - "], "the administrator's value is kept");
}

#[tokio::test]
async fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let h = Harness::start().await.unwrap();
    let before = counts(&h.dataverse);
    // No webhook key needed to look.
    let (result, out) = run(&["--dry-run"], env(&h, false)).await;
    result.unwrap();
    assert_eq!(counts(&h.dataverse), before);
    assert_eq!(before, [0, 0, 0, 0]);
    let planned = out
        .lines()
        .filter(|l| l.starts_with("would create"))
        .count();
    assert_eq!(planned, 1 + steps().len() + 13, "{out}");
    for step in steps() {
        assert!(
            out.contains(&step.name()),
            "{} planned:\n{out}",
            step.name()
        );
    }
    assert!(out.contains("nothing was changed"), "{out}");

    // After an install the plan has nothing left to create.
    run(&[], env(&h, true)).await.0.unwrap();
    let (_, out) = run(&["--dry-run"], env(&h, true)).await;
    assert!(!out.contains("would create"), "{out}");
    assert!(out.contains("0 to create"), "{out}");
}

#[tokio::test]
async fn a_refused_client_secret_is_reported_without_the_secret() {
    let h = Harness::start().await.unwrap();
    let base = env(&h, true);
    let wrong = move |name: &str| {
        if name == "DATAVERSE_CLIENT_SECRET" {
            Some("not-the-secret-4711".to_string())
        } else {
            base(name)
        }
    };
    let (result, out) = run(&["--dry-run"], wrong).await;
    let err = result.unwrap_err().to_string();
    assert!(!err.contains("not-the-secret-4711") && !out.contains("not-the-secret-4711"));
    assert!(err.contains("Dataverse"), "{err}");
    assert_eq!(counts(&h.dataverse), [0, 0, 0, 0]);
}
