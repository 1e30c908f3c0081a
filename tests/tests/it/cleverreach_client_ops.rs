//! CleverReach client against the simulator: every operation end to end, checked on the
//! simulator's side.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test file: a failed unwrap is a failed test

// In a `cleverreach` module so that `cargo test cleverreach` selects these tests.
mod cleverreach {
    use sandbox::cleverreach::{
        CleverReachSim, CleverReachSimConfig, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Endpoint,
    };
    use shared::adapters::cleverreach::{
        CleverReachClient, CleverReachConfig, CleverReachError, EmailChange, FilterRequest,
        FilterRule, InMemoryTokenStore, ListState, ReceiverFilter, attribute,
    };
    use shared::adapters::http::RetryPolicy;
    use shared::domain::email::Email;
    use shared::domain::receiver::{PersonData, ReceiverData, ReceiverState};
    use shared::domain::recipient::{CrmRef, PersonEntity};
    use shared::secret::Secret;
    use std::time::Duration;

    const SOURCE: &str = "Dynamics 365 (contoso.crm4.dynamics.com)";

    async fn setup() -> (CleverReachSim, CleverReachClient<InMemoryTokenStore>) {
        let sim = CleverReachSim::spawn(CleverReachSimConfig::default())
            .await
            .unwrap();
        let client = client_for(&sim);
        client.connect_client_credentials().await.unwrap();
        (sim, client)
    }

    fn client_for(sim: &CleverReachSim) -> CleverReachClient<InMemoryTokenStore> {
        let mut cfg = CleverReachConfig::new(
            url::Url::parse(&sim.base_url()).unwrap(),
            DEFAULT_CLIENT_ID,
            Secret::new(DEFAULT_CLIENT_SECRET),
            SOURCE,
        );
        cfg.retry = RetryPolicy::fast();
        cfg.request_timeout = Duration::from_secs(5);
        CleverReachClient::new(cfg, InMemoryTokenStore::new()).unwrap()
    }

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    fn person(address: &str, first: &str) -> ReceiverData {
        ReceiverData {
            email: email(address),
            person: PersonData {
                salutation: "Frau".into(),
                first_name: first.into(),
                last_name: "Muster".into(),
                company: "Contoso".into(),
            },
            crm: CrmRef::new(PersonEntity::Contact, uuid::Uuid::new_v4().to_string()),
        }
    }

    #[tokio::test]
    async fn whoami_names_the_connected_account() {
        let (_sim, client) = setup().await;
        let me = client.whoami().await.unwrap();
        assert_eq!(me.name, "Sandbox Newsletter GmbH");
        assert!(!me.id.is_empty());
    }

    #[tokio::test]
    async fn a_group_is_created_read_renamed_described_and_deleted() {
        let (sim, client) = setup().await;
        let group = client
            .create_group("CRM Newsletter", true, "Autumn campaign")
            .await
            .unwrap();
        let in_sim = sim.group(&group.id).unwrap();
        assert_eq!(in_sim.name, "CRM Newsletter");
        assert!(in_sim.locked);
        assert!(in_sim.receiver_info.starts_with("Autumn campaign"));
        assert_eq!(in_sim.receiver_info, group.receiver_info);

        assert_eq!(
            client.get_group(&group.id).await.unwrap(),
            Some(group.clone())
        );
        assert_eq!(client.list_groups().await.unwrap().len(), 1);

        let renamed = client.rename_group(&group.id, "CRM Winter").await.unwrap();
        assert_eq!(renamed.name, "CRM Winter");
        assert_eq!(sim.group(&group.id).unwrap().name, "CRM Winter");
        client
            .set_receiver_info(&group.id, "Winter campaign")
            .await
            .unwrap();
        assert_eq!(
            sim.group(&group.id).unwrap().receiver_info,
            "Winter campaign"
        );

        assert!(client.delete_group(&group.id).await.unwrap());
        assert!(sim.group(&group.id).is_none());
        assert!(!client.delete_group(&group.id).await.unwrap());
        assert_eq!(client.get_group(&group.id).await.unwrap(), None);
        assert!(matches!(
            client.rename_group(&group.id, "x").await,
            Err(CleverReachError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn global_attributes_are_created_once_and_looked_up_after() {
        let (sim, client) = setup().await;
        let first = client
            .ensure_global_attributes(&attribute::ALL)
            .await
            .unwrap();
        assert_eq!(first.len(), attribute::ALL.len());
        let names: Vec<String> = sim.attributes().into_iter().map(|a| a.name).collect();
        for name in attribute::ALL {
            assert!(names.contains(&name.to_string()), "{name}");
        }
        let creates = sim.stats().calls(Endpoint::AttributeCreate);
        let second = client
            .ensure_global_attributes(&["FirstName", "newsletter"])
            .await
            .unwrap();
        assert_eq!(second["firstname"], first["firstname"]);
        assert_eq!(sim.stats().calls(Endpoint::AttributeCreate), creates + 1);
        assert_eq!(sim.attributes().len(), attribute::ALL.len() + 1);
    }

    #[tokio::test]
    async fn an_upsert_writes_person_data_crm_ids_and_source() {
        let (sim, client) = setup().await;
        let group = client.create_group("List", false, "").await.unwrap();
        let anna = person("Anna@Example.com", "Anna");
        let report = client
            .upsert_receivers(&group.id, &[(anna.clone(), true)])
            .await
            .unwrap();
        assert_eq!(report.inserted, 1);
        assert!(report.rejected.is_empty());
        let r = sim.receiver(&group.id, "anna@example.com").unwrap();
        assert!(r.active);
        assert_eq!(r.source, SOURCE);
        assert_eq!(r.global_attributes["firstname"], "Anna");
        assert_eq!(r.global_attributes["lastname"], "Muster");
        assert_eq!(r.global_attributes["salutation"], "Frau");
        assert_eq!(r.attributes["crm_company"], "Contoso");
        assert_eq!(r.global_attributes["crmentity"], "contact");
        assert_eq!(r.global_attributes["crmid"], anna.crm.id);
        assert!(sim.ignored_global_attributes().is_empty());

        let mut renamed = anna.clone();
        renamed.person.first_name = "Annika".into();
        let report = client
            .upsert_receivers(&group.id, &[(renamed, false)])
            .await
            .unwrap();
        assert_eq!(report.updated, 1);
        let r = sim.receiver(&group.id, "anna@example.com").unwrap();
        assert_eq!(r.global_attributes["firstname"], "Annika");
        assert!(r.active);
    }

    #[tokio::test]
    async fn an_update_without_activation_never_reactivates_an_unsubscribed_or_bounced_receiver() {
        let (sim, client) = setup().await;
        let group = client.create_group("List", false, "").await.unwrap();
        let u = person("u@example.com", "U");
        let b = person("b@example.com", "B");
        client
            .upsert_receivers(&group.id, &[(u.clone(), true), (b.clone(), true)])
            .await
            .unwrap();
        sim.unsubscribe(&group.id, "u@example.com").unwrap();
        sim.bounce("b@example.com").unwrap();
        // An update sends no state, so it cannot undo an opt-out (asking to activate would:
        // the simulator is pessimistic there, as CleverReach may be; callers never ask).
        client
            .upsert_receivers(&group.id, &[(u.clone(), false), (b.clone(), false)])
            .await
            .unwrap();
        assert!(!sim.receiver(&group.id, "u@example.com").unwrap().active);
        assert!(!sim.receiver(&group.id, "b@example.com").unwrap().active);
        assert!(sim.reactivations().is_empty());
    }

    #[tokio::test]
    async fn receivers_are_paged_with_their_state_person_and_crm_record() {
        let (sim, client) = setup().await;
        let group = client.create_group("List", false, "").await.unwrap();
        let people: Vec<ReceiverData> = (0..12)
            .map(|i| person(&format!("p{i}@example.com"), &format!("P{i}")))
            .collect();
        let rows: Vec<(ReceiverData, bool)> = people.iter().cloned().map(|p| (p, true)).collect();
        client.upsert_receivers(&group.id, &rows).await.unwrap();
        sim.unsubscribe(&group.id, "p3@example.com").unwrap();
        sim.bounce("p4@example.com").unwrap();
        // CleverReach accepts addresses the connector cannot use; they are skipped, not fatal.
        sim.add_stranger(&group.id, "odd@1.2", true, &[]).unwrap();

        let mut pages = client.receivers(
            &group.id,
            ReceiverFilter {
                state: ListState::All,
                page_size: 5,
            },
        );
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(page) = pages.next_page().await.unwrap() {
            sizes.push(page.len());
            all.extend(page);
        }
        assert_eq!(sizes, [5, 5, 2]);
        assert_eq!(pages.unreadable(), 1);
        assert_eq!(all.len(), 12);
        let state_of = |e: &str| all.iter().find(|r| r.email == email(e)).unwrap().state;
        assert_eq!(state_of("p0@example.com"), ReceiverState::Active);
        assert_eq!(state_of("p3@example.com"), ReceiverState::Deactivated);
        assert_eq!(state_of("p4@example.com"), ReceiverState::Bounced);
        let p7 = all
            .iter()
            .find(|r| r.email == email("p7@example.com"))
            .unwrap();
        assert_eq!(p7.person, people[7].person);
        assert_eq!(p7.crm, Some(people[7].crm.clone()));

        let mut inactive = client.receivers(
            &group.id,
            ReceiverFilter {
                state: ListState::Inactive,
                page_size: 100,
            },
        );
        let page = inactive.next_page().await.unwrap().unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(inactive.next_page().await.unwrap(), None);
    }

    /// After a full first page the group's count says how many pages there are, and they are
    /// read several at a time: every receiver still comes once, in order, and no page is read
    /// twice or past the one that ends the group.
    #[tokio::test]
    async fn a_group_of_many_pages_is_read_ahead_with_every_receiver_once() {
        let (sim, client) = setup().await;
        for (count, expected_sizes) in [(23, vec![5, 5, 5, 5, 3]), (20, vec![5, 5, 5, 5])] {
            let group = client.create_group("Big", false, "").await.unwrap();
            let rows: Vec<(ReceiverData, bool)> = (0..count)
                .map(|i| (person(&format!("r{i:02}@example.com"), "R"), true))
                .collect();
            client.upsert_receivers(&group.id, &rows).await.unwrap();
            sim.reset_stats();
            let mut pages = client.receivers(
                &group.id,
                ReceiverFilter {
                    state: ListState::All,
                    page_size: 5,
                },
            );
            let mut sizes = Vec::new();
            let mut all = Vec::new();
            while let Some(page) = pages.next_page().await.unwrap() {
                sizes.push(page.len());
                all.extend(page.into_iter().map(|r| r.email.as_str().to_string()));
            }
            assert_eq!(sizes, expected_sizes, "{count} receivers");
            let mut expected: Vec<String> =
                (0..count).map(|i| format!("r{i:02}@example.com")).collect();
            expected.sort();
            let mut read = all.clone();
            read.sort();
            assert_eq!(read, expected, "every receiver once");
            // The pages up to the short (or empty) one, and the count once.
            assert_eq!(
                sim.stats().calls(Endpoint::ReceiversList),
                count as u64 / 5 + 1,
                "{count} receivers"
            );
            assert_eq!(sim.stats().calls(Endpoint::GroupStats), 1);
        }
    }

    #[tokio::test]
    async fn a_single_receiver_is_found_or_reported_missing() {
        let (sim, client) = setup().await;
        let group = client.create_group("List", false, "").await.unwrap();
        let anna = person("anna@example.com", "Anna");
        client
            .upsert_receivers(&group.id, &[(anna.clone(), true)])
            .await
            .unwrap();
        sim.unsubscribe(&group.id, "anna@example.com").unwrap();
        let found = client
            .find_receiver(&group.id, &email("ANNA@example.com"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.group_id, group.id);
        assert_eq!(found.receiver.state, ReceiverState::Deactivated);
        assert!(found.deactivated.is_some());
        assert_eq!(found.receiver.crm, Some(anna.crm));
        assert_eq!(
            client
                .find_receiver(&group.id, &email("nobody@example.com"))
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn the_filter_finds_unsubscribes_since_a_time_across_groups() {
        let (sim, client) = setup().await;
        let g1 = client.create_group("One", false, "").await.unwrap();
        let g2 = client.create_group("Two", false, "").await.unwrap();
        let rows = vec![
            (person("a@example.com", "A"), true),
            (person("b@example.com", "B"), true),
        ];
        client.upsert_receivers(&g1.id, &rows).await.unwrap();
        client.upsert_receivers(&g2.id, &rows).await.unwrap();
        let since = chrono::Utc::now() - chrono::Duration::seconds(1);
        sim.unsubscribe(&g2.id, "b@example.com").unwrap();

        let page = client
            .filter_receivers(&FilterRequest::new(
                vec![],
                vec![FilterRule::DeactivatedAfter(since)],
            ))
            .await
            .unwrap();
        assert!(page.is_last);
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].group_id, g2.id);
        assert_eq!(page.items[0].receiver.email, email("b@example.com"));

        let by_email = client
            .filter_receivers(&FilterRequest::new(
                vec![g1.id.clone()],
                vec![FilterRule::EmailIs(email("a@example.com"))],
            ))
            .await
            .unwrap();
        assert_eq!(by_email.items.len(), 1);
        assert_eq!(by_email.items[0].group_id, g1.id);
    }

    #[tokio::test]
    async fn receivers_are_removed_in_batches_and_missing_ones_count_as_gone() {
        let (sim, client) = setup().await;
        let group = client.create_group("List", false, "").await.unwrap();
        client
            .upsert_receivers(
                &group.id,
                &[
                    (person("a@example.com", "A"), true),
                    (person("b@example.com", "B"), true),
                ],
            )
            .await
            .unwrap();
        let report = client
            .remove_receivers(&group.id, &[email("a@example.com"), email("x@example.com")])
            .await
            .unwrap();
        assert_eq!(report.removed, [email("a@example.com")]);
        assert_eq!(report.already_gone, [email("x@example.com")]);
        assert!(report.failed.is_empty());
        assert!(
            client
                .remove_receiver(&group.id, &email("b@example.com"))
                .await
                .unwrap()
        );
        assert!(
            !client
                .remove_receiver(&group.id, &email("b@example.com"))
                .await
                .unwrap()
        );
        assert!(sim.receivers(&group.id).is_empty());
    }

    #[tokio::test]
    async fn an_email_change_moves_the_receiver_and_is_safe_to_repeat() {
        let (sim, client) = setup().await;
        let g1 = client.create_group("One", false, "").await.unwrap();
        let g2 = client.create_group("Two", false, "").await.unwrap();
        let old = person("old@example.com", "O");
        client
            .upsert_receivers(&g1.id, &[(old.clone(), true)])
            .await
            .unwrap();
        client
            .upsert_receivers(&g2.id, &[(old, true)])
            .await
            .unwrap();
        let (from, to) = (email("old@example.com"), email("new@example.com"));
        assert_eq!(
            client.change_email(&from, &to).await.unwrap(),
            EmailChange::Changed
        );
        for g in [&g1.id, &g2.id] {
            assert!(sim.receiver(g, "old@example.com").is_none());
            assert!(sim.receiver(g, "new@example.com").is_some());
        }
        assert_eq!(
            client.change_email(&from, &to).await.unwrap(),
            EmailChange::AlreadyChanged
        );
        assert!(matches!(
            client
                .change_email(&email("ghost@example.com"), &email("ghost2@example.com"))
                .await,
            Err(CleverReachError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn deactivate_and_activate_change_the_receiver_state() {
        let (sim, client) = setup().await;
        let group = client.create_group("List", false, "").await.unwrap();
        client
            .upsert_receivers(&group.id, &[(person("a@example.com", "A"), true)])
            .await
            .unwrap();
        client
            .deactivate(&group.id, &email("a@example.com"))
            .await
            .unwrap();
        assert!(!sim.receiver(&group.id, "a@example.com").unwrap().active);
        client
            .activate(&group.id, &email("a@example.com"))
            .await
            .unwrap();
        assert!(sim.receiver(&group.id, "a@example.com").unwrap().active);
        assert!(matches!(
            client
                .activate(&group.id, &email("nobody@example.com"))
                .await,
            Err(CleverReachError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn bounces_and_the_blacklist_are_read_back() {
        let (sim, client) = setup().await;
        sim.bounce("one@example.com").unwrap();
        sim.bounce("two@example.com").unwrap();
        sim.bounce("two@example.com").unwrap();
        sim.blacklist("Spam@Example.com").unwrap();
        let page = client.bounces(0, 500).await.unwrap();
        assert!(page.is_last);
        assert_eq!(page.items.len(), 2);
        let two = page
            .items
            .iter()
            .find(|b| b.email == email("two@example.com"))
            .unwrap();
        assert_eq!(two.occurrences, 2);
        assert_eq!(two.category, "hardbounce");
        assert!(two.last_update.is_some());
        let first = client.bounces(0, 1).await.unwrap();
        assert_eq!(first.items.len(), 1);
        assert!(!first.is_last);
        assert_eq!(
            client.blacklist().await.unwrap(),
            [email("spam@example.com")]
        );
    }
}
