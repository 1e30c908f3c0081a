//! Service protection and fault injection on the Dataverse simulator: the state stays
//! consistent under injected faults, and the 52 concurrent requests limit answers 429.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Test names start with `dataverse::` so that `cargo test -p sandbox dataverse` selects them.
mod dataverse {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;
    use sandbox::dataverse::{DataverseSim, DataverseSimConfig, WebApi, schema};
    use sandbox::faults::{FaultConfig, FaultKind};
    use serde_json::json;
    use std::collections::HashSet;
    use std::time::Duration;
    use uuid::Uuid;

    #[tokio::test]
    async fn with_20_percent_faults_every_acknowledged_write_exists_exactly_once() {
        let sim = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap();
        let api = WebApi::admin(&sim).await.unwrap();
        let list = api
            .create(
                "lists",
                &json!({"listname": "Faulty", "createdfromcode": 2}),
            )
            .await
            .unwrap();
        sim.faults().set(FaultConfig {
            seed: Some(20),
            slow_ms: 10,
            ..FaultConfig::at_rate(0.2)
        });

        let mut acknowledged = Vec::new();
        let mut refusals = 0;
        for i in 0..150 {
            let id = Uuid::new_v4().to_string();
            let mut maybe_applied = false;
            loop {
                match api
                    .post(
                        "contacts",
                        &json!({"contactid": id, "lastname": format!("F{i}")}),
                    )
                    .await
                {
                    Ok(r) if r.status == 204 => break,
                    // An earlier attempt was applied before its connection broke.
                    Ok(r) if r.status == 412 && maybe_applied => break,
                    Ok(r) => {
                        assert!(
                            [429, 500, 502, 503].contains(&r.status),
                            "{}: {}",
                            r.status,
                            r.text
                        );
                        if r.status == 429 {
                            assert!(r.header("Retry-After").is_some());
                        }
                        if !maybe_applied {
                            assert!(
                                sim.row("contacts", &id).is_none(),
                                "a refused create was applied"
                            );
                        }
                        refusals += 1;
                    }
                    Err(_) => maybe_applied = true,
                }
            }
            acknowledged.push(id.clone());
            // Membership through the action is idempotent under retries as well.
            loop {
                match api
                    .post(
                        &format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList"),
                        &json!({"EntityId": id}),
                    )
                    .await
                {
                    Ok(r) if r.status == 200 => break,
                    Ok(r) => assert!([429, 500, 502, 503].contains(&r.status), "{}", r.text),
                    Err(_) => {}
                }
            }
        }
        sim.faults().off();

        let stats = sim.faults().stats();
        let injected: u64 = stats.injected.values().sum();
        assert!(injected > 30, "faults were injected: {stats:?}");
        assert!(
            stats
                .injected
                .get(&FaultKind::DropAfterApply)
                .copied()
                .unwrap_or(0)
                > 0
        );
        assert!(refusals > 0);

        let stored: Vec<String> = sim
            .rows("contacts")
            .iter()
            .map(|r| r["contactid"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            stored.len(),
            acknowledged.len(),
            "no row without an acknowledged create, none twice"
        );
        let stored: HashSet<String> = stored.into_iter().collect();
        assert!(acknowledged.iter().all(|id| stored.contains(id)));
        let members = sim.rows("listmembers");
        assert_eq!(members.len(), acknowledged.len());
        let member_ids: HashSet<&str> = members
            .iter()
            .map(|m| m["_entityid_value"].as_str().unwrap())
            .collect();
        assert_eq!(member_ids.len(), acknowledged.len());
        assert_eq!(
            sim.row("lists", &list).unwrap()["membercount"],
            acknowledged.len()
        );
    }

    #[tokio::test]
    async fn more_than_52_concurrent_requests_of_one_user_are_throttled_with_retry_after() {
        let sim = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap();
        let admin = WebApi::admin(&sim).await.unwrap();
        let connector = WebApi::connector(&sim).await.unwrap();
        // A synchronous webhook that answers slowly keeps each create busy inside the simulator.
        let app = Router::new().route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                StatusCode::OK
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/slow", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let endpoint = admin
        .create(
            "serviceendpoints",
            &json!({"name": "slow", "contract": 8, "url": url, "authtype": 4, "authvalue": "k"}),
        )
        .await
        .unwrap();
        let step = json!({
            "name": "slow create",
            "eventhandler_serviceendpoint@odata.bind": format!("/serviceendpoints({endpoint})"),
            "sdkmessageid@odata.bind": format!("/sdkmessages({})", schema::sdk_message_id("Create").unwrap()),
            "sdkmessagefilterid@odata.bind": format!("/sdkmessagefilters({})", schema::sdk_message_filter_id("Create", "lead").unwrap()),
            "stage": 40, "mode": 0,
        });
        admin
            .create("sdkmessageprocessingsteps", &step)
            .await
            .unwrap();

        let tasks: Vec<_> = (0..60)
            .map(|i| {
                let api = admin.clone();
                tokio::spawn(async move {
                    api.post("leads", &json!({"lastname": format!("C{i}")}))
                        .await
                        .unwrap()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let other_user = connector.get("WhoAmI").await.unwrap();
        assert_eq!(other_user.status, 200, "the limit is per user");
        let mut ok = 0;
        let mut throttled = 0;
        for t in tasks {
            let r = t.await.unwrap();
            match r.status {
                204 => ok += 1,
                429 => {
                    throttled += 1;
                    assert_eq!(r.header("Retry-After"), Some("1"));
                    assert_eq!(r.body["error"]["code"], "0x80072326");
                }
                other => panic!("unexpected {other}: {}", r.text),
            }
        }
        assert!(ok >= 52, "{ok} succeeded");
        assert!((1..=8).contains(&throttled), "{throttled} throttled");
        assert_eq!(sim.rows("leads").len(), ok);
        assert_eq!(sim.stats().throttled, throttled as u64);
    }
}
