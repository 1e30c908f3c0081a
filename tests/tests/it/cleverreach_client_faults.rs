//! CleverReach client under injected faults: with 20 % of requests throttled, failing,
//! slow, or broken before or after CleverReach applied them, about 200 operations each end
//! in success or a transient error, and nothing is applied twice: one group per create, no
//! duplicate attributes, no opt-out undone, every reported change really made.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `cleverreach` module so that `cargo test cleverreach` selects these tests.
mod cleverreach {
    use sandbox::cleverreach::{
        CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
    };
    use sandbox::faults::{FaultConfig, FaultKind};
    use shared::adapters::cleverreach::{
        CleverReachClient, CleverReachConfig, CleverReachError, EmailChange, InMemoryTokenStore,
        attribute,
    };
    use shared::adapters::http::RetryPolicy;
    use shared::domain::email::Email;
    use shared::domain::receiver::{PersonData, ReceiverData};
    use shared::domain::recipient::{CrmRef, PersonEntity};
    use shared::error::Retryable;
    use shared::secret::Secret;
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    fn person(address: &str) -> ReceiverData {
        ReceiverData {
            email: Email::parse(address).unwrap(),
            person: PersonData {
                salutation: String::new(),
                first_name: format!("F{}", address.len()),
                last_name: "L".into(),
                company: "C".into(),
            },
            crm: CrmRef::new(PersonEntity::Contact, uuid::Uuid::new_v4().to_string()),
        }
    }

    /// Outcomes by operation, and the errors seen.
    #[derive(Default)]
    struct Tally {
        ok: usize,
        errors: BTreeMap<String, usize>,
    }

    impl Tally {
        fn record<T>(&mut self, op: &str, result: &Result<T, CleverReachError>) {
            match result {
                Ok(_) => self.ok += 1,
                Err(e) => {
                    // Faults are transient by nature: they must surface as retryable errors, never
                    // as a misread answer (decode), a refusal (4xx) or a lost connection to CleverReach.
                    assert!(
                        e.is_retryable(),
                        "{op} failed with a non-transient error: {e}"
                    );
                    let kind = format!("{e:?}");
                    let kind = kind
                        .split([' ', '{', '('])
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    *self.errors.entry(kind).or_default() += 1;
                }
            }
        }
        fn total(&self) -> usize {
            self.ok + self.errors.values().sum::<usize>()
        }
    }

    #[tokio::test]
    async fn under_20_percent_faults_every_operation_ends_cleanly_and_nothing_is_applied_twice() {
        let sim = CleverReachSim::spawn(CleverReachSimConfig::default())
            .await
            .unwrap();
        let mut cfg = CleverReachConfig::new(
            url::Url::parse(&sim.base_url()).unwrap(),
            DEFAULT_CLIENT_ID,
            Secret::new(DEFAULT_CLIENT_SECRET),
            "Dynamics 365 (fault run)",
        );
        cfg.retry = RetryPolicy::fast();
        cfg.request_timeout = Duration::from_secs(5);
        let client = CleverReachClient::new(cfg, InMemoryTokenStore::new()).unwrap();
        client.connect_client_credentials().await.unwrap();
        sim.faults().set(FaultConfig {
            seed: Some(20_240_611),
            // Slow answers stay well inside the timeout; 50 ms keeps the run short.
            slow_ms: 50,
            ..FaultConfig::at_rate(0.2)
        });
        let mut rng = fastrand::Rng::with_seed(7);
        let mut tally = Tally::default();

        // Attributes.
        for round in 0..3 {
            let extra = format!("extra{}", round % 2);
            let mut names = attribute::ALL.to_vec();
            names.push(&extra);
            let result = client.ensure_global_attributes(&names).await;
            tally.record("ensure attributes", &result);
        }

        // Groups: one create per name.
        let mut creates = Vec::new();
        for i in 0..20 {
            let name = format!("Fault run {i}");
            let result = client
                .create_group(&name, i % 2 == 0, "from the fault run")
                .await;
            tally.record("create group", &result);
            let same: Vec<_> = sim
                .groups()
                .into_iter()
                .filter(|g| g.name == name)
                .collect();
            assert!(same.len() <= 1, "{name} exists {} times", same.len());
            if let Ok(group) = &result {
                assert_eq!(same.len(), 1, "{name} reported created but missing");
                assert_eq!(same[0].id, group.id);
            }
            creates.push((name, result.ok().map(|g| g.id)));
        }
        let groups: Vec<String> = creates.iter().filter_map(|(_, id)| id.clone()).collect();
        assert!(groups.len() >= 10, "only {} groups created", groups.len());

        // Upserts: a reported success means every accepted row is in the group.
        let upsert = |gid: &str, addresses: &[String], activate: bool| {
            let rows: Vec<(ReceiverData, bool)> =
                addresses.iter().map(|a| (person(a), activate)).collect();
            let client = client.clone();
            let gid = gid.to_string();
            async move { client.upsert_receivers(&gid, &rows).await }
        };
        for _ in 0..60 {
            let gid = &groups[rng.usize(..groups.len())];
            let addresses: Vec<String> = (0..rng.usize(1..15))
                .map(|_| format!("r{}@example.com", rng.usize(..200)))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let result = upsert(gid, &addresses, rng.bool()).await;
            tally.record("upsert", &result);
            if let Ok(report) = &result {
                assert!(report.rejected.is_empty(), "{:?}", report.rejected);
                for a in &addresses {
                    assert!(
                        sim.receiver(gid, a).is_some(),
                        "{a} reported upserted but missing"
                    );
                }
            }
        }

        // People opt out inside CleverReach; the connector then writes their data again, as an
        // update (a reconcile never asks to activate an existing receiver, and whether the real
        // CleverReach would re-activate one on request is unknown: the simulator says it would).
        let mut opted_out: Vec<(String, String)> = Vec::new(); // (group, receiver id)
        for gid in &groups {
            let present = sim.receivers(gid);
            for r in present.iter().take(2) {
                sim.unsubscribe(gid, &r.email).unwrap();
                opted_out.push((gid.clone(), r.id.clone()));
            }
            if let Some(r) = present.get(2) {
                sim.bounce(&r.email).unwrap();
                opted_out.push((gid.clone(), r.id.clone()));
            }
        }
        for i in 0..30 {
            let (gid, id) = &opted_out[i % opted_out.len()];
            let Some(r) = sim.receivers(gid).into_iter().find(|r| &r.id == id) else {
                continue;
            };
            let addresses = vec![r.email.clone()];
            let result = upsert(gid, &addresses, false).await;
            tally.record("upsert opted-out", &result);
        }

        // Address changes: safe to repeat, and a success means the move happened everywhere.
        let mut moved = 0;
        for i in 0..30 {
            let gid = &groups[rng.usize(..groups.len())];
            let candidates: Vec<String> = sim
                .receivers(gid)
                .into_iter()
                .map(|r| r.email)
                .filter(|e| e.starts_with('r'))
                .collect();
            let Some(old) = candidates.get(rng.usize(..candidates.len().max(1))) else {
                continue;
            };
            let (old, new) = (
                Email::parse(old).unwrap(),
                Email::parse(&format!("moved{i}@example.com")).unwrap(),
            );
            let result = client.change_email(&old, &new).await;
            tally.record("change email", &result);
            if matches!(
                result,
                Ok(EmailChange::Changed | EmailChange::AlreadyChanged)
            ) {
                moved += 1;
                for g in &groups {
                    assert!(
                        sim.receiver(g, old.as_str()).is_none(),
                        "{old} still in {g}"
                    );
                }
                assert!(
                    groups
                        .iter()
                        .any(|g| sim.receiver(g, new.as_str()).is_some())
                );
            }
        }

        // Removals: a success means the addresses are out of the group.
        for _ in 0..30 {
            let gid = &groups[rng.usize(..groups.len())];
            let present: Vec<Email> = sim
                .receivers(gid)
                .into_iter()
                .map(|r| Email::parse(&r.email).unwrap())
                .collect();
            if present.is_empty() {
                continue;
            }
            let mut chosen: Vec<Email> = (0..rng.usize(1..5))
                .map(|_| present[rng.usize(..present.len())].clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            chosen.push(Email::parse("never-there@example.com").unwrap());
            let result = client.remove_receivers(gid, &chosen).await;
            tally.record("remove receivers", &result);
            if let Ok(report) = &result {
                assert!(report.failed.is_empty(), "{:?}", report.failed);
                for e in &chosen {
                    assert!(
                        sim.receiver(gid, e.as_str()).is_none(),
                        "{e} still in {gid}"
                    );
                }
            }
        }

        // Renames, descriptions and reads.
        for i in 0..27 {
            let gid = &groups[i % groups.len()];
            match i % 3 {
                0 => {
                    let result = client.rename_group(gid, &format!("Renamed {i}")).await;
                    tally.record("rename", &result);
                    if result.is_ok() {
                        assert_eq!(sim.group(gid).unwrap().name, format!("Renamed {i}"));
                    }
                }
                1 => {
                    let result = client.set_receiver_info(gid, "described").await;
                    tally.record("describe", &result);
                }
                _ => {
                    let result = client.get_group(gid).await;
                    tally.record("get group", &result);
                    if let Ok(found) = result {
                        assert!(found.is_some());
                    }
                }
            }
        }

        sim.faults().off();
        let injected = sim.faults().stats().injected;
        for kind in FaultKind::ALL {
            assert!(
                injected.get(&kind).copied().unwrap_or(0) > 0,
                "no {kind:?} injected"
            );
        }
        assert!(
            tally.total() >= 190,
            "only {} operations ran",
            tally.total()
        );
        assert!(
            tally.ok * 10 >= tally.total() * 7,
            "too few successes: {} of {} ({:?})",
            tally.ok,
            tally.total(),
            tally.errors
        );
        assert!(moved > 0);

        // Exactly one group per successful create (checked after each create), none extra.
        let in_sim = sim.groups();
        for id in creates.iter().filter_map(|(_, id)| id.as_ref()) {
            assert!(in_sim.iter().any(|g| &g.id == id), "group {id} missing");
        }
        assert!(in_sim.len() <= creates.len());

        // No attribute twice, and the receiver attributes all exist.
        let names: Vec<String> = sim.attributes().into_iter().map(|a| a.name).collect();
        let unique: BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "duplicate attributes: {names:?}");
        for name in attribute::ALL {
            assert!(names.iter().any(|n| n == name), "{name} missing");
        }

        // No opt-out undone.
        assert!(sim.reactivations().is_empty(), "{:?}", sim.reactivations());
        for (gid, id) in &opted_out {
            if let Some(r) = sim.receivers(gid).into_iter().find(|r| &r.id == id) {
                assert!(!r.active, "{} in {gid} was made active again", r.email);
            }
        }
    }
}
