//! The connector's Dataverse client under injected faults (issue acceptance): with 20 % of
//! requests throttled (429), failing (500/502/503), slow, or broken before or after the
//! simulator applied them, about 300 mixed operations each end in success or a typed
//! `DataverseError`, and the CRM state afterwards is what the successful operations imply:
//! one row per reported create, updates applied once with their values, memberships as
//! reported, and every paged read returned every row exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `dataverse` module so that `cargo test -p sandbox dataverse` selects these tests.
mod dataverse {
    use sandbox::dataverse::{
        CONNECTOR_CLIENT_ID, CONNECTOR_CLIENT_SECRET, DataverseSim, DataverseSimConfig, WebApi,
    };
    use sandbox::faults::{FaultConfig, FaultKind};
    use serde_json::{Map, Value, json};
    use shared::adapters::dataverse::client::{
        BatchRequest, DataverseClient, DataverseConfig, DataverseError, Query, filter,
    };
    use shared::adapters::http::RetryPolicy;
    use shared::domain::recipient::RecipientKind;
    use shared::error::Retryable;
    use shared::secret::Secret;
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;
    use url::Url;

    /// Rows every paged read must return exactly once (never written to but for `jobtitle`).
    const POOL: usize = 240;
    /// Rows the run deletes.
    const DOOMED: usize = 40;
    const PAGE_SIZE: u32 = 50;
    const OPERATIONS: usize = 300;

    fn client(sim: &DataverseSim, retry: RetryPolicy) -> DataverseClient {
        let mut config = DataverseConfig::new(
            Url::parse(&sim.api_url()).unwrap(),
            Url::parse(&sim.token_url()).unwrap(),
            CONNECTOR_CLIENT_ID,
            Secret::new(CONNECTOR_CLIENT_SECRET),
            format!("{}/.default", sim.resource()),
        );
        config.retry = retry;
        config.max_page_size = PAGE_SIZE;
        config.request_timeout = Duration::from_secs(5);
        DataverseClient::new(config).unwrap()
    }

    fn seed(sim: &DataverseSim, n: usize, lastname: &str) -> Vec<String> {
        let rows = (0..n)
            .map(|i| {
                json!({"firstname": format!("f{i:04}"), "lastname": lastname})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect();
        sim.seed("contacts", rows)
            .unwrap()
            .into_iter()
            .map(|id| id.to_ascii_lowercase())
            .collect()
    }

    fn kind(err: &DataverseError) -> &'static str {
        match err {
            DataverseError::Throttled { .. } => "Throttled",
            DataverseError::Server { .. } => "Server",
            DataverseError::Client { .. } => "Client",
            DataverseError::NotFound { .. } => "NotFound",
            DataverseError::Conflict { .. } => "Conflict",
            DataverseError::Unauthorized { .. } => "Unauthorized",
            DataverseError::Timeout { .. } => "Timeout",
            DataverseError::Transport { .. } => "Transport",
            DataverseError::Decode { .. } => "Decode",
            DataverseError::BatchTooLarge { .. } => "BatchTooLarge",
            DataverseError::InvalidInput { .. } => "InvalidInput",
        }
    }

    /// Outcomes of the run.
    #[derive(Default)]
    struct Tally {
        operations: BTreeMap<&'static str, usize>,
        ok: usize,
        errors: BTreeMap<&'static str, usize>,
        /// The client of the current operation, and the transient errors by client.
        client: &'static str,
        transient_by_client: BTreeMap<&'static str, usize>,
    }

    impl Tally {
        /// Records an outcome. A fault may only surface as a transient error: never as a
        /// misread answer, a refusal or a conflict.
        fn record<T>(&mut self, op: &'static str, result: &Result<T, DataverseError>) {
            *self.operations.entry(op).or_default() += 1;
            match result {
                Ok(_) => self.ok += 1,
                Err(err) => {
                    assert!(err.is_retryable(), "{op} failed for good: {err}");
                    *self.errors.entry(kind(err)).or_default() += 1;
                    *self.transient_by_client.entry(self.client).or_default() += 1;
                }
            }
        }

        /// Records an error the operation was meant to get (an update of a deleted row).
        fn record_expected_error(&mut self, op: &'static str, err: &DataverseError) {
            *self.operations.entry(op).or_default() += 1;
            *self.errors.entry(kind(err)).or_default() += 1;
        }
    }

    /// What a row's `jobtitle` may be: the value of the last acknowledged update, or of any
    /// update that failed after it (it may or may not have been applied).
    #[derive(Default)]
    struct Written {
        possible: BTreeMap<String, BTreeSet<Option<String>>>,
    }

    impl Written {
        fn acknowledged(&mut self, id: &str, value: &str) {
            self.possible
                .insert(id.to_string(), BTreeSet::from([Some(value.to_string())]));
        }

        fn maybe(&mut self, id: &str, value: &str) {
            self.possible
                .entry(id.to_string())
                .or_insert_with(|| BTreeSet::from([None]))
                .insert(Some(value.to_string()));
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Membership {
        In,
        Out,
        Unknown,
    }

    /// Every row of a paged read; a failed page is asked for again (the position is kept),
    /// each failure counted.
    async fn read_all_pages(
        tally: &mut Tally,
        op: &'static str,
        mut next: impl AsyncFnMut() -> Result<Option<Vec<Value>>, DataverseError>,
    ) -> Option<Vec<Value>> {
        let mut rows = Vec::new();
        let mut failures = 0;
        loop {
            let page = next().await;
            tally.record(op, &page);
            match page {
                Ok(Some(page)) => rows.extend(page),
                Ok(None) => return Some(rows),
                Err(_) => {
                    failures += 1;
                    if failures > 5 {
                        return None;
                    }
                }
            }
        }
    }

    fn ids(rows: &[Value]) -> Vec<String> {
        rows.iter()
            .map(|r| r["contactid"].as_str().unwrap().to_ascii_lowercase())
            .collect()
    }

    fn assert_every_pool_row_once(op: &str, rows: &[Value], pool: &BTreeSet<String>) {
        let got = ids(rows);
        let unique: BTreeSet<String> = got.iter().cloned().collect();
        assert_eq!(got.len(), unique.len(), "{op}: a row came twice");
        assert_eq!(&unique, pool, "{op}: rows missing or extra");
    }

    #[tokio::test]
    async fn under_20_percent_faults_every_operation_ends_typed_and_nothing_is_applied_twice() {
        tokio::time::timeout(Duration::from_secs(60), fault_run())
            .await
            .expect("the fault run hung");
    }

    async fn fault_run() {
        let sim = DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap();
        let pool: BTreeSet<String> = seed(&sim, POOL, "pool").into_iter().collect();
        let pool_ids: Vec<String> = pool.iter().cloned().collect();
        let doomed = seed(&sim, DOOMED, "doomed");
        let admin = WebApi::admin(&sim).await.unwrap();
        let list = admin
            .create(
                "lists",
                &json!({"listname": "Fault run", "createdfromcode": 2}),
            )
            .await
            .unwrap();
        let campaign = admin
            .create("campaigns", &json!({"name": "Fault run"}))
            .await
            .unwrap();
        let pool_query = Query::new()
            .select(["contactid", "jobtitle"])
            .filter(format!("lastname eq {}", filter::string_literal("pool")))
            .orderby("firstname");
        let pool_fetch = r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="lastname" operator="eq" value="pool"/></filter><order attribute="firstname"/></entity></fetch>"#;

        // The connector's client as configured, and one that never retries: its calls fail
        // often enough to exercise the ambiguous outcomes (a lost answer to an applied write).
        let patient = client(&sim, RetryPolicy::fast());
        let impatient = client(
            &sim,
            RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::fast()
            },
        );

        let before = sim.faults().stats();
        sim.faults().set(FaultConfig {
            seed: Some(20_260_401),
            // Answers come 50 ms late, well inside the 5 s request timeout.
            slow_ms: 50,
            // RetryPolicy::fast() waits at most 200 ms: a 1 s Retry-After would end its retries.
            retry_after_secs: 0,
            ..FaultConfig::at_rate(0.2)
        });

        let mut rng = fastrand::Rng::with_seed(11);
        let mut tally = Tally::default();
        let mut created: BTreeMap<String, String> = BTreeMap::new(); // marker → id
        let mut ambiguous_creates: BTreeSet<String> = BTreeSet::new();
        let mut written = Written::default();
        let mut deleted: Vec<String> = Vec::new();
        let mut maybe_deleted: BTreeSet<String> = BTreeSet::new();
        let mut alive_doomed = doomed.clone();
        let mut members: BTreeMap<String, Membership> = BTreeMap::new();
        let mut campaign_has_list = Membership::Out;
        let mut full_reads = 0;

        for op in 0..OPERATIONS {
            let (client, name) = if op % 2 == 0 {
                (&patient, "retrying")
            } else {
                (&impatient, "not retrying")
            };
            tally.client = name;
            // Rows that exist for sure: the pool and acknowledged creates.
            let mut live: Vec<String> = pool_ids.clone();
            live.extend(created.values().cloned());
            match rng.u32(..100) {
                // Create: each body carries a marker that no other create uses.
                0..=21 => {
                    let marker = format!("marker-{op}");
                    let result = client
                        .create(
                            "contacts",
                            &json!({"lastname": "created", "description": marker}),
                        )
                        .await;
                    tally.record("create", &result);
                    match result {
                        Ok(id) => {
                            let row = sim.row("contacts", &id).expect("reported created, missing");
                            assert_eq!(row["description"], json!(marker));
                            created.insert(marker, id.to_ascii_lowercase());
                        }
                        Err(_) => {
                            ambiguous_creates.insert(marker);
                        }
                    }
                }
                // Update with a value (never an increment).
                22..=39 => {
                    let id = &live[rng.usize(..live.len())];
                    let value = format!("title-{op}");
                    let result = client
                        .update("contacts", id, &json!({"jobtitle": value}))
                        .await;
                    tally.record("update", &result);
                    match result {
                        Ok(()) => written.acknowledged(id, &value),
                        Err(_) => written.maybe(id, &value),
                    }
                }
                // Delete.
                40..=47 if !alive_doomed.is_empty() => {
                    let id = alive_doomed.swap_remove(rng.usize(..alive_doomed.len()));
                    let result = client.delete("contacts", &id).await;
                    tally.record("delete", &result);
                    match result {
                        Ok(_) => {
                            assert!(sim.row("contacts", &id).is_none(), "reported deleted");
                            deleted.push(id);
                        }
                        Err(_) => {
                            maybe_deleted.insert(id);
                        }
                    }
                }
                // An update of a deleted row: NotFound, whatever the faults.
                48..=51 if !deleted.is_empty() => {
                    let id = &deleted[rng.usize(..deleted.len())];
                    let result = client
                        .update("contacts", id, &json!({"jobtitle": "ghost"}))
                        .await;
                    match result {
                        Err(err @ DataverseError::NotFound { .. }) => {
                            tally.record_expected_error("update deleted", &err)
                        }
                        Err(err) => tally.record("update deleted", &Err::<(), _>(err)),
                        Ok(()) => panic!("an update of a deleted row succeeded"),
                    }
                    assert!(
                        sim.row("contacts", id).is_none(),
                        "the update created a row"
                    );
                }
                // Query paging over the pool.
                52..=58 => {
                    let mut pages = client.query::<Value>("contacts", &pool_query);
                    if let Some(rows) =
                        read_all_pages(&mut tally, "query page", async || pages.next_page().await)
                            .await
                    {
                        assert_every_pool_row_once("query", &rows, &pool);
                        full_reads += 1;
                    }
                }
                // FetchXML paging over the pool.
                59..=64 => {
                    let mut pages = client.fetch_xml::<Value>("contacts", pool_fetch);
                    if let Some(rows) =
                        read_all_pages(&mut tally, "fetch page", async || pages.next_page().await)
                            .await
                    {
                        assert_every_pool_row_once("fetch", &rows, &pool);
                        full_reads += 1;
                    }
                }
                // List actions.
                65..=71 => {
                    let id = pool_ids[rng.usize(..30)].clone();
                    let result = client
                        .execute_action(
                            &format!("lists({list})/Microsoft.Dynamics.CRM.AddMemberList"),
                            &json!({"EntityId": id}),
                        )
                        .await;
                    tally.record("AddMemberList", &result);
                    // Adding never removes: a failed add leaves a member a member.
                    let state = if result.is_ok() || members.get(&id) == Some(&Membership::In) {
                        Membership::In
                    } else {
                        Membership::Unknown
                    };
                    members.insert(id, state);
                }
                72..=75 => {
                    let chosen: BTreeSet<String> = (0..rng.usize(2..6))
                        .map(|_| pool_ids[rng.usize(..30)].clone())
                        .collect();
                    let result = client
                        .execute_action(
                            "AddListMembersList",
                            &json!({
                                "List": {"@odata.type": "Microsoft.Dynamics.CRM.list", "listid": list},
                                "Members": chosen.iter().map(|id| json!({
                                    "@odata.type": "Microsoft.Dynamics.CRM.contact", "contactid": id
                                })).collect::<Vec<_>>(),
                            }),
                        )
                        .await;
                    tally.record("AddListMembersList", &result);
                    for id in chosen {
                        let state = match (&result, members.get(&id)) {
                            (Ok(_), _) | (Err(_), Some(Membership::In)) => Membership::In,
                            (Err(_), _) => Membership::Unknown,
                        };
                        members.insert(id, state);
                    }
                }
                76..=79 => {
                    let id = pool_ids[rng.usize(..30)].clone();
                    let result = client
                        .execute_action(
                            &format!("lists({list})/Microsoft.Dynamics.CRM.RemoveMemberList"),
                            &json!({"EntityId": id}),
                        )
                        .await;
                    tally.record("RemoveMemberList", &result);
                    let state = match (&result, members.get(&id)) {
                        (Ok(_), _) => Membership::Out,
                        (Err(_), None | Some(Membership::Out)) => Membership::Out,
                        (Err(_), _) => Membership::Unknown,
                    };
                    members.insert(id, state);
                }
                80..=81 => {
                    let result = client
                        .execute_action(
                            &format!(
                                "campaigns({campaign})/Microsoft.Dynamics.CRM.AddItemCampaign"
                            ),
                            &json!({"EntityId": list, "EntityName": "list"}),
                        )
                        .await;
                    tally.record("AddItemCampaign", &result);
                    if result.is_ok() {
                        campaign_has_list = Membership::In;
                    } else if campaign_has_list == Membership::Out {
                        campaign_has_list = Membership::Unknown;
                    }
                }
                // A batch of updates (PATCH + If-Match: *), retried as a whole.
                82..=91 => {
                    let targets: BTreeSet<String> = (0..rng.usize(3..10))
                        .map(|_| live[rng.usize(..live.len())].clone())
                        .collect();
                    let value = format!("batch-{op}");
                    let requests = targets
                        .iter()
                        .map(|id| {
                            BatchRequest::update("contacts", id, json!({"jobtitle": value}))
                                .unwrap()
                        })
                        .collect();
                    let result = client.batch(requests).await;
                    tally.record("batch", &result);
                    match result {
                        Ok(parts) => {
                            assert_eq!(parts.len(), targets.len());
                            for (id, part) in targets.iter().zip(&parts) {
                                assert_eq!(part.status, 204, "{id}: {part:?}");
                                written.acknowledged(id, &value);
                            }
                        }
                        Err(_) => {
                            for id in &targets {
                                written.maybe(id, &value);
                            }
                        }
                    }
                }
                // Retrieve: a row that exists is never reported missing.
                _ => {
                    let id = &live[rng.usize(..live.len())];
                    let result = client
                        .retrieve::<Value>("contacts", id, &["jobtitle"])
                        .await;
                    tally.record("retrieve", &result);
                    if let Ok(row) = result {
                        assert!(row.is_some(), "an existing row was reported missing");
                    }
                }
            }
        }

        let after = sim.faults().stats();
        sim.faults().off();

        // Creates: one row per acknowledged create, none twice, an ambiguous one at most once.
        let rows: Vec<Map<String, Value>> = sim
            .rows("contacts")
            .into_iter()
            .filter(|r| r["lastname"] == "created")
            .collect();
        let mut markers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in &rows {
            markers
                .entry(row["description"].as_str().unwrap().to_string())
                .or_default()
                .push(row["contactid"].as_str().unwrap().to_string());
        }
        for (marker, ids) in &markers {
            assert_eq!(ids.len(), 1, "{marker} was created {} times", ids.len());
            assert!(
                created.contains_key(marker) || ambiguous_creates.contains(marker),
                "{marker} exists but was never asked for"
            );
        }
        for (marker, id) in &created {
            assert_eq!(markers.get(marker), Some(&vec![id.clone()]), "{marker}");
        }
        assert!(rows.len() >= created.len());
        assert!(rows.len() <= created.len() + ambiguous_creates.len());
        let ambiguous_applied = rows.len() - created.len();

        // Updates: the acknowledged value, or one that failed after it.
        for (id, possible) in &written.possible {
            let row = sim.row("contacts", id).unwrap();
            let actual = row
                .get("jobtitle")
                .and_then(Value::as_str)
                .map(str::to_string);
            assert!(
                possible.contains(&actual),
                "{id}: jobtitle {actual:?} is none of {possible:?}"
            );
        }

        // Deletes.
        for id in &deleted {
            assert!(sim.row("contacts", id).is_none(), "deleted {id} is back");
        }
        for id in &alive_doomed {
            assert!(sim.row("contacts", id).is_some(), "{id} was never deleted");
        }

        // Memberships: as acknowledged, and no member twice.
        let listmembers = sim.rows("listmembers");
        let mut pairs = BTreeSet::new();
        for lm in &listmembers {
            let pair = (
                lm["_listid_value"].as_str().unwrap().to_string(),
                lm["_entityid_value"].as_str().unwrap().to_string(),
            );
            assert!(pairs.insert(pair.clone()), "{pair:?} is a member twice");
        }
        for (id, state) in &members {
            let present = pairs.contains(&(list.clone(), id.clone()));
            match state {
                Membership::In => assert!(present, "{id} was added but is not a member"),
                Membership::Out => assert!(!present, "{id} was removed but is a member"),
                Membership::Unknown => {}
            }
        }
        let items = sim.rows("campaignitems");
        assert!(items.len() <= 1, "the list was added to the campaign twice");
        match campaign_has_list {
            Membership::In => assert_eq!(items.len(), 1),
            Membership::Out => assert!(items.is_empty()),
            Membership::Unknown => {}
        }

        // With faults off, the client reads the list as the simulator holds it.
        let mut pages = patient.static_list_members(
            &list,
            RecipientKind::Contact,
            &Query::new().select(["contactid"]),
        );
        let mut read = BTreeSet::new();
        while let Some(page) = pages.next_page().await.unwrap() {
            read.extend(ids(&page));
        }
        let held: BTreeSet<String> = pairs
            .iter()
            .filter(|(l, _)| *l == list)
            .map(|(_, e)| e.clone())
            .collect();
        assert_eq!(read, held);

        let injected: BTreeMap<FaultKind, u64> = after
            .injected
            .iter()
            .map(|(k, n)| (*k, n - before.injected.get(k).copied().unwrap_or(0)))
            .collect();
        let operations: usize = tally.operations.values().sum();
        let typed_errors: usize = tally.errors.values().sum();
        eprintln!("fault run: {OPERATIONS} operations ({operations} calls incl. pages)");
        eprintln!("  calls by operation: {:?}", tally.operations);
        eprintln!(
            "  requests seen by the simulator: {}, faults injected: {injected:?} ({} in all)",
            after.requests - before.requests,
            injected.values().sum::<u64>()
        );
        eprintln!(
            "  successes: {}, typed errors: {typed_errors} {:?}; transient errors by client: {:?}",
            tally.ok, tally.errors, tally.transient_by_client
        );
        eprintln!(
            "  creates: {} acknowledged, {} ambiguous ({ambiguous_applied} of them applied), {} rows; full paged reads: {full_reads}; deletes: {} acknowledged, {} ambiguous",
            created.len(),
            ambiguous_creates.len(),
            rows.len(),
            deleted.len(),
            maybe_deleted.len()
        );
        for kind in FaultKind::ALL {
            assert!(
                injected.get(&kind).copied().unwrap_or(0) > 0,
                "{kind:?} was never injected"
            );
        }
        assert!(full_reads >= 20, "only {full_reads} complete paged reads");
        assert!(
            created.len() >= 40,
            "only {} creates acknowledged",
            created.len()
        );
        // Otherwise the run would prove nothing about errors and ambiguous creates.
        assert!(
            tally.errors.keys().any(|k| *k != "NotFound"),
            "no fault surfaced as an error"
        );
        assert!(!ambiguous_creates.is_empty(), "no create was ambiguous");
    }
}
