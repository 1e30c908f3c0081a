//! The CRM installer (`crc-install`, tools/installer) against the Dataverse simulator, run as an
//! administrator would run it: after installing, the sandbox fires exactly the connector's steps
//! at the intake and the connector works with no other registration; a second run creates
//! nothing; `--dry-run` prints the plan and changes nothing. `schema_phase`: against a plain
//! org, every component `schema.rs` names is created as specified (checked through the Web
//! API), conflicts stop it before any change, every request has the documented shape.

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
    assert_eq!(after_first[3], 15, "14 new rows next to the existing one");

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
    // The endpoint, the steps, the settings rows, the checklist's web resources and their
    // publishing; the five main forms are changed, not created.
    let web_resources = crc_install::forms_phase::WEB_RESOURCES.len();
    assert_eq!(planned, 1 + steps().len() + 15 + web_resources + 1, "{out}");
    let forms = out
        .lines()
        .filter(|l| l.starts_with("would change  form"))
        .count();
    assert_eq!(forms, crc_install::forms_phase::FORM_TABLES.len(), "{out}");
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
    assert!(!out.contains("would change"), "{out}");
    assert!(out.contains("0 to create, 0 to change"), "{out}");
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

// ----- The schema phase against a plain org -----------------------------------------------

mod schema_phase {
    use super::*;
    use reqwest::Method;
    use sandbox::dataverse::{DataverseSimConfig, SimClient, WebApi};
    use serde_json::Value;
    use shared::adapters::dataverse::schema::{
        self, ColumnType, KEYS, LOOKUPS, SECURED_COLUMNS, TABLES,
    };
    use shared::install::{CONNECTOR_ROLE, LIST_SYNC_PROFILE, LIST_SYNC_ROLE, ROLES};
    use std::time::Instant;

    /// An administrator's environment for a simulator that no harness provisioned.
    fn plain_env(sim: &DataverseSim) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = vec![
            ("DATAVERSE_URL".into(), sim.resource()),
            ("DATAVERSE_API_URL".into(), sim.api_url()),
            ("DATAVERSE_TOKEN_URL".into(), sim.token_url()),
            ("DATAVERSE_CLIENT_ID".into(), ADMIN_CLIENT_ID.into()),
            ("DATAVERSE_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            // Nothing is delivered in these tests: the endpoint only has to be registered.
            ("INTAKE_URL".into(), "http://127.0.0.1:9/api/webhook".into()),
            ("WEBHOOK_KEY".into(), WEBHOOK_KEY.into()),
            (
                "CONNECTOR_USER_ID".into(),
                sandbox::dataverse::CONNECTOR_USER_ID.into(),
            ),
        ];
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    async fn plain() -> DataverseSim {
        DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap()
    }

    /// GET through the Web API as the administrator; the JSON body.
    async fn get(api: &WebApi, path: &str) -> Value {
        let reply = api.get(path).await.unwrap();
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        reply.body
    }

    async fn attribute(api: &WebApi, table: &str, column: &str) -> Option<Value> {
        let rows = get(
            api,
            &format!(
                "EntityDefinitions(LogicalName='{table}')/Attributes?$select=LogicalName,SchemaName,AttributeTypeName,IsSecured&$filter=LogicalName eq '{column}'"
            ),
        )
        .await;
        rows["value"].as_array().unwrap().first().cloned()
    }

    async fn max_length(api: &WebApi, table: &str, column: &str, kind: &str) -> i64 {
        get(
            api,
            &format!(
                "EntityDefinitions(LogicalName='{table}')/Attributes(LogicalName='{column}')/Microsoft.Dynamics.CRM.{kind}?$select=MaxLength"
            ),
        )
        .await["MaxLength"]
            .as_i64()
            .unwrap()
    }

    async fn entity(api: &WebApi, table: &str) -> Option<Value> {
        let rows = get(
            api,
            &format!(
                "EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryNameAttribute&$filter=LogicalName eq '{table}'"
            ),
        )
        .await;
        rows["value"].as_array().unwrap().first().cloned()
    }

    fn writes(sim: &DataverseSim) -> usize {
        sim.customization_requests().len()
    }

    /// Checks, through the Web API, that every component of the connector's schema exists as
    /// specified. Fails naming the first one missing or different.
    async fn assert_installed(sim: &DataverseSim) {
        let api = WebApi::admin(sim).await.unwrap();
        for t in &TABLES {
            let e = entity(&api, t.logical_name)
                .await
                .unwrap_or_else(|| panic!("table {} was not created", t.logical_name));
            assert_eq!(e["EntitySetName"], t.entity_set);
            assert_eq!(e["PrimaryNameAttribute"], t.primary_name.logical_name);
        }
        for (table, spec) in schema::all_columns() {
            let found = attribute(&api, table, spec.logical_name)
                .await
                .unwrap_or_else(|| {
                    panic!(
                        "{table}.{} was not created by the installer",
                        spec.logical_name
                    )
                });
            assert_eq!(
                found["AttributeTypeName"]["Value"],
                spec.column_type.type_name(),
                "{table}.{}",
                spec.logical_name
            );
            assert_eq!(found["SchemaName"], spec.schema_name);
            let kind = match spec.column_type {
                ColumnType::Text { .. } => Some("StringAttributeMetadata"),
                ColumnType::Memo { .. } => Some("MemoAttributeMetadata"),
                _ => None,
            };
            if let (Some(kind), Some(max)) = (kind, spec.column_type.max_length()) {
                assert_eq!(
                    max_length(&api, table, spec.logical_name, kind).await,
                    max as i64,
                    "{table}.{}",
                    spec.logical_name
                );
            }
        }
        for l in &LOOKUPS {
            let found = attribute(&api, l.referencing_table, l.logical_name)
                .await
                .unwrap_or_else(|| panic!("lookup {} was not created", l.logical_name));
            assert_eq!(found["AttributeTypeName"]["Value"], "LookupType");
            let rel = get(
                &api,
                &format!(
                    "RelationshipDefinitions/Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata?$select=ReferencedEntity,ReferencingEntityNavigationPropertyName&$filter=SchemaName eq '{}'",
                    l.relationship
                ),
            )
            .await;
            assert_eq!(rel["value"][0]["ReferencedEntity"], l.referenced_table);
            assert_eq!(
                rel["value"][0]["ReferencingEntityNavigationPropertyName"],
                l.navigation
            );
        }
        for k in &KEYS {
            let keys = get(
                &api,
                &format!("EntityDefinitions(LogicalName='{}')/Keys", k.table),
            )
            .await;
            let found = keys["value"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["SchemaName"] == k.schema_name)
                .unwrap_or_else(|| panic!("key {} was not created", k.schema_name));
            assert_eq!(found["KeyAttributes"], json!(k.columns));
            assert_eq!(found["EntityKeyIndexStatus"], "Active");
        }
        for (table, column) in SECURED_COLUMNS {
            let a = attribute(&api, table, column).await.unwrap();
            assert_eq!(a["IsSecured"], true, "{table}.{column} is secured");
        }
        for role in &ROLES {
            let rows = sim.rows("roles");
            let found = rows
                .iter()
                .find(|r| r["name"] == role.name)
                .unwrap_or_else(|| panic!("role {} was not created", role.name));
            let id = found["roleid"].as_str().unwrap();
            let held = get(&api, &format!("RetrieveRolePrivilegesRole(RoleId={id})")).await;
            let names: BTreeSet<String> = held["RolePrivileges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    assert_eq!(p["Depth"], "Global");
                    let pid = p["PrivilegeId"].as_str().unwrap();
                    sim.row("privileges", pid).unwrap()["name"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect();
            let wanted: BTreeSet<String> = role.privileges().into_iter().collect();
            assert_eq!(names, wanted, "{} holds exactly its privileges", role.name);
        }
        let profile = sim
            .rows("fieldsecurityprofiles")
            .into_iter()
            .find(|p| p["name"] == LIST_SYNC_PROFILE)
            .expect("the field security profile was created");
        let permissions: BTreeSet<String> = sim
            .rows("fieldpermissions")
            .iter()
            .filter(|p| p["_fieldsecurityprofileid_value"] == profile["fieldsecurityprofileid"])
            .map(|p| {
                assert_eq!(
                    (
                        p["canread"].clone(),
                        p["cancreate"].clone(),
                        p["canupdate"].clone()
                    ),
                    (json!(4), json!(4), json!(4))
                );
                format!(
                    "{}.{}",
                    p["entityname"].as_str().unwrap(),
                    p["attributelogicalname"].as_str().unwrap()
                )
            })
            .collect();
        let wanted: BTreeSet<String> = SECURED_COLUMNS
            .iter()
            .map(|(t, c)| format!("{t}.{c}"))
            .collect();
        assert_eq!(permissions, wanted);
    }

    #[tokio::test]
    async fn a_fresh_org_gets_every_component_and_a_second_run_has_nothing_to_do() {
        let sim = plain().await;
        let started = Instant::now();
        let (result, out) = run(&[], plain_env(&sim)).await;
        let took = started.elapsed();
        result.unwrap_or_else(|e| panic!("{e}\n{out}"));
        eprintln!(
            "fresh install against the simulator: {:.2} s",
            took.as_secs_f64()
        );
        assert_installed(&sim).await;

        // Every component is in the solution, created with the solution header.
        let solution = sim
            .rows("solutions")
            .into_iter()
            .find(|s| s["uniquename"] == schema::SOLUTION_UNIQUE_NAME)
            .expect("the solution exists");
        assert_eq!(solution["ismanaged"], false);
        let components: Vec<i64> = sim
            .rows("solutioncomponents")
            .iter()
            .filter(|c| c["_solutionid_value"] == solution["solutionid"])
            .map(|c| c["componenttype"].as_i64().unwrap())
            .collect();
        let count = |kind: i64| components.iter().filter(|k| **k == kind).count();
        assert_eq!(count(1), TABLES.len(), "tables");
        let columns: usize = schema::EXTENSIONS
            .iter()
            .map(|(_, c)| c.len())
            .sum::<usize>()
            + TABLES.iter().map(|t| t.columns.len()).sum::<usize>();
        assert_eq!(count(2), columns + LOOKUPS.len(), "columns and lookups");
        assert_eq!(count(10), LOOKUPS.len(), "relationships");
        assert_eq!(count(14), KEYS.len(), "keys");
        assert_eq!(count(20), ROLES.len(), "roles");
        assert_eq!(count(70), 1, "field security profile");
        assert_eq!(count(71), SECURED_COLUMNS.len(), "field permissions");
        // Published: every table it changed.
        let published: BTreeSet<String> = sim.publishes().into_iter().flatten().collect();
        for table in [
            "campaign",
            "campaignactivity",
            "list",
            "contact",
            "lead",
            "crc_setting",
            "crc_receiverstate",
        ] {
            assert!(
                published.contains(table),
                "{table} published: {published:?}"
            );
        }
        // The application user got its role and the profile.
        let user = sandbox::dataverse::CONNECTOR_USER_ID;
        let roles = sim.rows("systemuserrolescollection");
        let connector_role = sim
            .rows("roles")
            .into_iter()
            .find(|r| r["name"] == CONNECTOR_ROLE.name)
            .unwrap();
        assert!(
            roles
                .iter()
                .any(|r| r["systemuserid"] == user && r["roleid"] == connector_role["roleid"])
        );
        assert!(
            sim.rows("systemuserprofilescollection")
                .iter()
                .any(|r| r["systemuserid"] == user)
        );
        assert!(out.contains("done:"), "{out}");

        // The second run reads, writes nothing and says so.
        let before = writes(&sim);
        let (result, out) = run(&[], plain_env(&sim)).await;
        result.unwrap();
        assert_eq!(
            writes(&sim),
            before,
            "the second run changed something:\n{out}"
        );
        assert!(out.contains("nothing to do"), "{out}");
        assert!(out.contains("done: 0 created"), "{out}");
    }

    #[tokio::test]
    async fn a_dry_run_on_an_empty_org_prints_every_component_and_leaves_the_org_unchanged() {
        let sim = plain().await;
        let (result, out) = run(&["--dry-run"], plain_env(&sim)).await;
        result.unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(writes(&sim), 0, "a dry run sent a write");
        let api = WebApi::admin(&sim).await.unwrap();
        for t in &TABLES {
            assert!(
                entity(&api, t.logical_name).await.is_none(),
                "{} exists",
                t.logical_name
            );
        }
        assert!(
            attribute(&api, "contact", schema::CHECKLIST)
                .await
                .is_none()
        );
        assert!(
            sim.rows("roles")
                .iter()
                .all(|r| r["name"] != CONNECTOR_ROLE.name)
        );

        let planned: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("would create"))
            .collect();
        let has = |needle: &str| planned.iter().any(|l| l.contains(needle));
        assert!(
            has(&format!("publisher  {}", schema::PUBLISHER_UNIQUE_NAME)),
            "{out}"
        );
        assert!(
            has(&format!("solution   {}", schema::SOLUTION_UNIQUE_NAME)),
            "{out}"
        );
        for t in &TABLES {
            assert!(
                has(&format!("table      {}", t.logical_name)),
                "{}:\n{out}",
                t.logical_name
            );
        }
        for (table, c) in schema::all_columns() {
            assert!(
                has(&format!("{table}.{} ", c.logical_name)),
                "{table}.{}:\n{out}",
                c.logical_name
            );
        }
        for l in &LOOKUPS {
            assert!(
                has(&format!(
                    "{}.{} -> {}",
                    l.referencing_table, l.logical_name, l.referenced_table
                )),
                "{out}"
            );
            assert!(
                has(&format!("navigation property {}", l.navigation)),
                "{out}"
            );
        }
        for k in &KEYS {
            assert!(has(k.schema_name), "{out}");
        }
        for r in &ROLES {
            assert!(has(r.name), "{out}");
        }
        assert!(has(&format!("profile    {LIST_SYNC_PROFILE}")), "{out}");
        assert!(has("PublishXml"), "{out}");
        assert!(out.contains("nothing was changed"), "{out}");
        // Change tracking is reported per table the connector reads.
        for table in schema::READ_TABLES {
            assert!(
                out.lines().any(|l| l.trim_start().starts_with(table)),
                "{table}:\n{out}"
            );
        }
    }

    #[tokio::test]
    async fn a_planted_type_conflict_stops_the_installer_before_it_changes_anything() {
        let sim = plain().await;
        let api = WebApi::admin(&sim).await.unwrap();
        // Another customization already holds crc_groupid on marketing lists, as a number.
        let publisher = api
            .create("publishers", &json!({"uniquename": "other", "friendlyname": "Other", "customizationprefix": "crc", "customizationoptionvalueprefix": 11000}))
            .await
            .unwrap();
        api.create("solutions", &json!({"uniquename": "Other", "friendlyname": "Other", "version": "1.0", "publisherid@odata.bind": format!("/publishers({publisher})")}))
            .await
            .unwrap();
        let planted = api
            .send(
                Method::POST,
                "EntityDefinitions(LogicalName='list')/Attributes",
                &[("MSCRM.SolutionUniqueName", "Other")],
                Some(&json!({
                    "@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata",
                    "SchemaName": "crc_GroupId",
                    "DisplayName": {"LocalizedLabels": [{"Label": "Group", "LanguageCode": 1033}]},
                    "RequiredLevel": {"Value": "None"},
                    "MinValue": 0, "MaxValue": 1000000
                })),
            )
            .await
            .unwrap();
        assert_eq!(planted.status, 204, "{}", planted.text);
        let before = writes(&sim);

        let (result, out) = run(&[], plain_env(&sim)).await;
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("table list, column crc_groupid: found whole number (IntegerType), expected single line of text, 100 characters (StringType)"),
            "{err}"
        );
        assert_eq!(
            writes(&sim),
            before,
            "the installer changed something:\n{out}"
        );
        assert!(err.contains("nothing was changed"), "{err}");
        assert!(out.contains("conflicts"), "{out}");
        assert!(entity(&api, "crc_setting").await.is_none());
        assert!(
            sim.rows("publishers")
                .iter()
                .all(|p| p["uniquename"] != schema::PUBLISHER_UNIQUE_NAME)
        );
        assert!(sim.rows("serviceendpoints").is_empty());

        // A dry run reports the same conflict and fails too.
        let (result, _) = run(&["--dry-run"], plain_env(&sim)).await;
        assert!(result.unwrap_err().to_string().contains("crc_groupid"));
    }

    #[tokio::test]
    async fn a_text_column_shorter_than_the_connector_writes_is_a_conflict() {
        let sim = plain().await;
        let api = WebApi::admin(&sim).await.unwrap();
        let publisher = api
            .create("publishers", &json!({"uniquename": "other", "friendlyname": "Other", "customizationprefix": "crc", "customizationoptionvalueprefix": 11000}))
            .await
            .unwrap();
        api.create("solutions", &json!({"uniquename": "Other", "friendlyname": "Other", "version": "1.0", "publisherid@odata.bind": format!("/publishers({publisher})")}))
            .await
            .unwrap();
        let planted = api
            .send(
                Method::POST,
                "EntityDefinitions(LogicalName='campaign')/Attributes",
                &[("MSCRM.SolutionUniqueName", "Other")],
                Some(&json!({
                    "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                    "SchemaName": "crc_SyncStatus", "MaxLength": 100, "FormatName": {"Value": "Text"},
                    "DisplayName": {"LocalizedLabels": [{"Label": "Status", "LanguageCode": 1033}]},
                    "RequiredLevel": {"Value": "None"}
                })),
            )
            .await
            .unwrap();
        assert_eq!(planted.status, 204, "{}", planted.text);
        let err = run(&[], plain_env(&sim)).await.0.unwrap_err().to_string();
        assert!(
            err.contains("table campaign, column crc_syncstatus: found single line of text, 100 characters (StringType), expected single line of text, 2000 characters (StringType)"),
            "{err}"
        );
    }

    /// `@odata.type`, `SchemaName` with the prefix, a label with English and German, the
    /// requirement level, lengths and formats: as the metadata Web API documents them.
    fn assert_label(label: &Value, what: &str) {
        assert_eq!(
            label["@odata.type"], "Microsoft.Dynamics.CRM.Label",
            "{what}"
        );
        let languages: Vec<i64> = label["LocalizedLabels"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no LocalizedLabels"))
            .iter()
            .map(|l| {
                assert_eq!(
                    l["@odata.type"], "Microsoft.Dynamics.CRM.LocalizedLabel",
                    "{what}"
                );
                assert!(!l["Label"].as_str().unwrap().is_empty(), "{what}");
                l["LanguageCode"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(languages, [1033, 1031], "{what}");
    }

    fn assert_column_body(body: &Value, spec: &schema::ColumnSpec) {
        let what = spec.logical_name;
        let kind = match spec.column_type {
            ColumnType::Boolean { .. } => "BooleanAttributeMetadata",
            ColumnType::Text { .. } => "StringAttributeMetadata",
            ColumnType::Memo { .. } => "MemoAttributeMetadata",
            ColumnType::DateTime => "DateTimeAttributeMetadata",
            ColumnType::Choice { .. } => "PicklistAttributeMetadata",
        };
        assert_eq!(
            body["@odata.type"],
            format!("Microsoft.Dynamics.CRM.{kind}"),
            "{what}"
        );
        assert_eq!(body["SchemaName"], spec.schema_name, "{what}");
        assert!(spec.schema_name.starts_with("crc_"), "{what}");
        assert_label(&body["DisplayName"], what);
        assert_label(&body["Description"], what);
        assert_eq!(
            body["RequiredLevel"]["Value"],
            spec.required.as_str(),
            "{what}"
        );
        match spec.column_type {
            ColumnType::Text { max_length } => {
                assert_eq!(body["MaxLength"], max_length, "{what}");
                assert_eq!(body["FormatName"]["Value"], "Text", "{what}");
            }
            ColumnType::Memo { max_length } => {
                assert_eq!(body["MaxLength"], max_length, "{what}");
                assert_eq!(body["Format"], "TextArea", "{what}");
            }
            ColumnType::Boolean { default } => {
                assert_eq!(body["DefaultValue"], default, "{what}");
                let set = &body["OptionSet"];
                assert_eq!(
                    set["@odata.type"],
                    "Microsoft.Dynamics.CRM.BooleanOptionSetMetadata"
                );
                assert_eq!(set["TrueOption"]["Value"], 1);
                assert_eq!(set["FalseOption"]["Value"], 0);
                assert_label(&set["TrueOption"]["Label"], what);
                assert_label(&set["FalseOption"]["Label"], what);
            }
            ColumnType::DateTime => {
                assert_eq!(body["Format"], "DateAndTime", "{what}");
                assert_eq!(body["DateTimeBehavior"]["Value"], "UserLocal", "{what}");
            }
            ColumnType::Choice { options } => {
                let set = &body["OptionSet"];
                assert_eq!(
                    set["@odata.type"],
                    "Microsoft.Dynamics.CRM.OptionSetMetadata"
                );
                assert_eq!(set["OptionSetType"], "Picklist");
                let sent: Vec<i64> = set["Options"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| {
                        assert_label(&o["Label"], what);
                        o["Value"].as_i64().unwrap()
                    })
                    .collect();
                let wanted: Vec<i64> = options.iter().map(|o| o.value).collect();
                assert_eq!(sent, wanted, "{what}");
            }
        }
    }

    #[tokio::test]
    async fn every_request_the_installer_sends_has_the_documented_shape() {
        let sim = plain().await;
        run(&[], plain_env(&sim)).await.0.unwrap();
        let requests = sim.customization_requests();
        let mut columns_seen: BTreeSet<String> = BTreeSet::new();
        for r in &requests {
            let in_solution = r
                .headers
                .get("MSCRM.SolutionUniqueName")
                .map(String::as_str);
            let path = r.path.as_str();
            let creates_component = r.method == "POST"
                && !path.starts_with("publishers")
                && !path.starts_with("solutions")
                && !path.ends_with("$ref")
                && path != "PublishXml";
            if creates_component || r.method == "PUT" {
                assert_eq!(
                    in_solution,
                    Some(schema::SOLUTION_UNIQUE_NAME),
                    "{} {path}",
                    r.method
                );
            }
            let body = &r.body;
            match (r.method.as_str(), path) {
                ("POST", "publishers") => {
                    assert_eq!(body["customizationprefix"], "crc");
                    assert_eq!(
                        body["customizationoptionvalueprefix"],
                        schema::OPTION_VALUE_PREFIX
                    );
                    assert_eq!(body["uniquename"], schema::PUBLISHER_UNIQUE_NAME);
                }
                ("POST", "solutions") => {
                    assert_eq!(body["uniquename"], schema::SOLUTION_UNIQUE_NAME);
                    assert!(
                        body["publisherid@odata.bind"]
                            .as_str()
                            .unwrap()
                            .starts_with("/publishers(")
                    );
                }
                ("POST", "EntityDefinitions") => {
                    let spec = TABLES
                        .iter()
                        .find(|t| body["SchemaName"] == t.schema_name)
                        .expect("a known table");
                    assert_eq!(body["@odata.type"], "Microsoft.Dynamics.CRM.EntityMetadata");
                    for l in ["DisplayName", "DisplayCollectionName", "Description"] {
                        assert_label(&body[l], spec.logical_name);
                    }
                    assert_eq!(body["OwnershipType"], "OrganizationOwned");
                    for flag in ["IsActivity", "HasActivities", "HasNotes"] {
                        assert_eq!(body[flag], false, "{flag}");
                    }
                    let primary = &body["Attributes"][0];
                    assert_eq!(primary["IsPrimaryName"], true);
                    assert_column_body(primary, &spec.primary_name);
                    columns_seen.insert(format!(
                        "{}.{}",
                        spec.logical_name, spec.primary_name.logical_name
                    ));
                }
                ("POST", p) if p.ends_with("/Attributes") => {
                    let table = p
                        .trim_start_matches("EntityDefinitions(LogicalName='")
                        .split('\'')
                        .next()
                        .unwrap();
                    let (_, spec) = schema::all_columns()
                        .into_iter()
                        .find(|(t, c)| *t == table && body["SchemaName"] == c.schema_name)
                        .unwrap_or_else(|| panic!("{p}: unknown column {}", body["SchemaName"]));
                    assert_column_body(body, spec);
                    columns_seen.insert(format!("{table}.{}", spec.logical_name));
                }
                ("POST", "RelationshipDefinitions") => {
                    let spec = LOOKUPS
                        .iter()
                        .find(|l| body["SchemaName"] == l.relationship)
                        .expect("a known lookup");
                    assert_eq!(
                        body["@odata.type"],
                        "Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata"
                    );
                    assert_eq!(body["ReferencedEntity"], spec.referenced_table);
                    assert_eq!(body["ReferencingEntity"], spec.referencing_table);
                    assert!(
                        body["ReferencedAttribute"]
                            .as_str()
                            .unwrap()
                            .ends_with("id")
                    );
                    let lookup = &body["Lookup"];
                    assert_eq!(
                        lookup["@odata.type"],
                        "Microsoft.Dynamics.CRM.LookupAttributeMetadata"
                    );
                    assert_eq!(lookup["SchemaName"], spec.schema_name);
                    assert_label(&lookup["DisplayName"], spec.logical_name);
                    assert_eq!(lookup["RequiredLevel"]["Value"], "None");
                    assert_eq!(body["CascadeConfiguration"]["Delete"], "RemoveLink");
                }
                ("POST", p) if p.ends_with("/Keys") => {
                    let spec = KEYS
                        .iter()
                        .find(|k| body["SchemaName"] == k.schema_name)
                        .expect("a known key");
                    assert_eq!(
                        body["@odata.type"],
                        "Microsoft.Dynamics.CRM.EntityKeyMetadata"
                    );
                    assert_eq!(body["KeyAttributes"], json!(spec.columns));
                    assert_label(&body["DisplayName"], spec.schema_name);
                }
                ("PUT", p) => {
                    assert!(p.contains("/Attributes(LogicalName='"), "{p}");
                    assert_eq!(
                        r.headers.get("MSCRM.MergeLabels").map(String::as_str),
                        Some("true")
                    );
                    assert_eq!(body["IsSecured"], true);
                    assert!(
                        body["@odata.type"]
                            .as_str()
                            .unwrap()
                            .ends_with("AttributeMetadata")
                    );
                }
                ("POST", "PublishXml") => {
                    let xml = body["ParameterXml"].as_str().unwrap();
                    assert!(
                        xml.starts_with("<importexportxml><entities><entity>"),
                        "{xml}"
                    );
                }
                ("POST", "roles") => {
                    assert!(ROLES.iter().any(|role| body["name"] == role.name));
                    assert!(
                        body["businessunitid@odata.bind"]
                            .as_str()
                            .unwrap()
                            .starts_with("/businessunits(")
                    );
                }
                ("POST", p) if p.ends_with("Microsoft.Dynamics.CRM.AddPrivilegesRole") => {
                    for privilege in body["Privileges"].as_array().unwrap() {
                        assert_eq!(
                            privilege["@odata.type"],
                            "Microsoft.Dynamics.CRM.RolePrivilege"
                        );
                        assert_eq!(privilege["Depth"], "Global");
                    }
                }
                ("POST", "fieldsecurityprofiles") => assert_eq!(body["name"], LIST_SYNC_PROFILE),
                ("POST", "fieldpermissions") => {
                    assert!(
                        body["fieldsecurityprofileid@odata.bind"]
                            .as_str()
                            .unwrap()
                            .starts_with("/fieldsecurityprofiles(")
                    );
                    assert_eq!(
                        (
                            body["canread"].clone(),
                            body["cancreate"].clone(),
                            body["canupdate"].clone()
                        ),
                        (json!(4), json!(4), json!(4))
                    );
                }
                ("POST", "webresourceset") => {
                    let spec = crc_install::forms_phase::WEB_RESOURCES
                        .iter()
                        .find(|w| body["name"] == w.name)
                        .expect("a known web resource");
                    assert_eq!(body["webresourcetype"], spec.kind);
                    assert_eq!(body["content"], spec.base64());
                    assert!(body["displayname"].as_str().is_some_and(|d| !d.is_empty()));
                }
                ("PATCH", p) if p.starts_with("systemforms(") => {
                    // Recorded in the solution, as an update with the header is (PA-OPT).
                    assert_eq!(in_solution, Some(schema::SOLUTION_UNIQUE_NAME), "{path}");
                    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
                    assert_eq!(keys, ["formxml"], "only the form's XML changes");
                }
                ("POST", p) if p.ends_with("/$ref") => {
                    assert!(
                        body["@odata.id"]
                            .as_str()
                            .unwrap()
                            .starts_with(&sim.api_url()),
                        "{body}"
                    );
                }
                (m, p) => panic!("unexpected customization request {m} {p}"),
            }
        }
        let wanted: BTreeSet<String> = schema::all_columns()
            .iter()
            .map(|(t, c)| format!("{t}.{}", c.logical_name))
            .collect();
        assert_eq!(
            columns_seen, wanted,
            "every column is created by one checked request"
        );
        assert_eq!(
            requests
                .iter()
                .filter(|r| r.path == "RelationshipDefinitions")
                .count(),
            LOOKUPS.len()
        );
    }

    #[tokio::test]
    async fn an_identity_without_customization_privileges_gets_dataverses_error_naming_the_privilege()
     {
        let mut config = DataverseSimConfig::default();
        config.clients.push(SimClient {
            client_id: "c0c0c0c0-0000-4000-8000-000000000003".into(),
            client_secret: "sandbox-reader-secret".into(),
            user_id: "aaaaaaaa-0000-4000-8000-000000000003".into(),
            name: "reader".into(),
            roles: vec!["Basic User".into()],
        });
        let sim = DataverseSim::spawn(config).await.unwrap();
        let base = plain_env(&sim);
        let env = move |name: &str| match name {
            "DATAVERSE_CLIENT_ID" => Some("c0c0c0c0-0000-4000-8000-000000000003".to_string()),
            "DATAVERSE_CLIENT_SECRET" => Some("sandbox-reader-secret".to_string()),
            other => base(other),
        };
        let (result, out) = run(&[], env).await;
        let err = result.unwrap_err().to_string();
        assert!(err.contains("0x80040220"), "Dataverse's error: {err}");
        assert!(
            err.contains("lacks the privilege prvCreatePublisher"),
            "{err}"
        );
        assert!(!err.contains("sandbox-reader-secret") && !out.contains("sandbox-reader-secret"));
        assert!(
            sim.rows("publishers")
                .iter()
                .all(|p| p["uniquename"] != schema::PUBLISHER_UNIQUE_NAME)
        );
    }

    #[tokio::test]
    async fn change_tracking_is_reported_per_table_and_not_switched_on() {
        let sim = DataverseSim::spawn(DataverseSimConfig {
            change_tracked: vec!["contact".into()],
            ..DataverseSimConfig::default()
        })
        .await
        .unwrap();
        let (result, out) = run(&["--dry-run"], plain_env(&sim)).await;
        result.unwrap();
        let line = |table: &str| {
            out.lines()
                .find(|l| l.split_whitespace().next() == Some(table))
                .unwrap_or_else(|| panic!("{table}:\n{out}"))
                .to_string()
        };
        assert!(line("contact").ends_with(" on"), "{out}");
        assert!(line("lead").ends_with(" off"), "{out}");
        assert!(
            line("crc_setting").contains("created by this install"),
            "{out}"
        );
        run(&[], plain_env(&sim)).await.0.unwrap();
        let api = WebApi::admin(&sim).await.unwrap();
        let lead = get(
            &api,
            "EntityDefinitions(LogicalName='lead')?$select=ChangeTrackingEnabled",
        )
        .await;
        assert_eq!(lead["ChangeTrackingEnabled"], false);
    }

    #[tokio::test]
    async fn an_org_without_german_gets_english_labels_only() {
        let sim = DataverseSim::spawn(DataverseSimConfig {
            languages: vec![1033],
            ..DataverseSimConfig::default()
        })
        .await
        .unwrap();
        run(&[], plain_env(&sim)).await.0.unwrap();
        let create = sim
            .customization_requests()
            .into_iter()
            .find(|r| r.path.ends_with("/Attributes"))
            .unwrap();
        let languages: Vec<i64> = create.body["DisplayName"]["LocalizedLabels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["LanguageCode"].as_i64().unwrap())
            .collect();
        assert_eq!(languages, [1033]);
        assert_installed(&sim).await;
    }

    #[tokio::test]
    async fn an_org_with_the_imported_managed_solution_needs_no_customization() {
        // A development org installed and exported; here the managed import is complete.
        let sim = plain().await;
        run(&[], plain_env(&sim)).await.0.unwrap();
        assert!(sim.mark_solution_managed(schema::SOLUTION_UNIQUE_NAME));
        let before = writes(&sim);
        let (result, out) = run(&[], plain_env(&sim)).await;
        result.unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(writes(&sim), before, "{out}");
        assert!(out.contains("nothing to do"), "{out}");

        // A managed solution with components missing cannot take them: a conflict.
        let sim = plain().await;
        let api = WebApi::admin(&sim).await.unwrap();
        let publisher = api
            .create("publishers", &metadata_publisher())
            .await
            .unwrap();
        api.create("solutions", &json!({"uniquename": schema::SOLUTION_UNIQUE_NAME, "friendlyname": "CleverReach Connector", "version": "1.0.0.0", "publisherid@odata.bind": format!("/publishers({publisher})")}))
            .await
            .unwrap();
        assert!(sim.mark_solution_managed(schema::SOLUTION_UNIQUE_NAME));
        let err = run(&[], plain_env(&sim)).await.0.unwrap_err().to_string();
        assert!(
            err.contains("solution CleverReachConnector: found a managed solution without"),
            "{err}"
        );
    }

    fn metadata_publisher() -> Value {
        shared::adapters::dataverse::metadata::publisher_body()
    }

    #[tokio::test]
    async fn the_deploy_guide_lists_exactly_the_connector_roles_privileges() {
        let guide = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy.md"),
        )
        .unwrap();
        for role in [&CONNECTOR_ROLE, &LIST_SYNC_ROLE] {
            for privilege in role.privileges() {
                assert!(
                    guide.contains(&privilege),
                    "docs/deploy.md names {privilege}"
                );
            }
        }
    }
}
