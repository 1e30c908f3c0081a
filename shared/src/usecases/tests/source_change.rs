use super::fixtures::*;
use crate::adapters::memory::InMemoryChangeQueue;
use crate::domain::change::{AttrValue, CrmMessage, column};
use crate::domain::receiver::ReceiverState;
use crate::domain::recipient::PersonEntity;
use crate::domain::settings::Settings;
use crate::domain::source::SourceKind;
use crate::ports::crm::SourceStatus;
use crate::usecases::SyncError;
use crate::usecases::source::{GroupOutcome, on_source_change};

const LIST: SourceKind = SourceKind::MarketingList;

async fn change(
    w: &World,
    kind: SourceKind,
    event: crate::domain::change::ChangeEvent,
) -> Result<super::super::source::SourceSync, SyncError> {
    let settings = w.conn.settings().await?;
    on_source_change(&w.conn, &settings, kind, &event, None).await
}

fn status(w: &World, kind: SourceKind, id: &str) -> Option<SourceStatus> {
    w.crm.state().statuses.get(&(kind, id.to_string())).cloned()
}

#[tokio::test]
async fn a_list_created_with_sync_on_gets_a_group_with_its_eligible_members_only() {
    let w = World::new();
    w.source(list("l1", "Customers"))
        .contact(person("c1", "anna@example.com"), &["l1"])
        .contact(
            person("c2", "bert@example.com").checklist(&[(0, 2)]),
            &["l1"],
        )
        .contact(person("c3", "cleo@example.com").no_bulk_email(), &["l1"])
        .contact(person("c4", "dora@example.com").inactive(), &["l1"])
        .contact(person("c5", "emil@example.com"), &[]);

    let sync = change(&w, LIST, event("list", CrmMessage::Create, "l1").build())
        .await
        .unwrap();

    assert_eq!(sync.outcome, GroupOutcome::Reconciled);
    let group = sync.group.unwrap();
    assert_eq!(w.active(group.as_str()), ["anna@example.com"]);
    assert_eq!(
        w.stored(LIST, "l1").unwrap().source.group_id,
        Some(group),
        "the group id is stored on the list"
    );
    let Some(SourceStatus::Synced { status, .. }) = status(&w, LIST, "l1") else {
        panic!("no status written");
    };
    assert!(
        status.starts_with("all members compared: 1 added"),
        "{status}"
    );
    assert!(status.contains("1 inactive"), "{status}");
    assert!(status.contains("no matching newsletter type"), "{status}");
}

#[tokio::test]
async fn turning_sync_off_deletes_the_group_and_forgets_its_id_under_the_default_settings() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7").sync(false))
        .group(
            "7",
            "Customers",
            vec![receiver("anna@example.com", ReceiverState::Active, None)],
        );

    let event = event("list", CrmMessage::Update, "l1")
        .touch(column::SYNC_FLAG, AttrValue::Bool(false))
        .build();
    let sync = change(&w, LIST, event).await.unwrap();

    assert_eq!(sync.outcome, GroupOutcome::Deleted);
    assert!(w.newsletter.state().groups.is_empty());
    assert_eq!(w.stored(LIST, "l1").unwrap().source.group_id, None);
}

#[tokio::test]
async fn turning_sync_off_keeps_the_group_when_the_settings_say_keep() {
    let w = World::new().setting(
        "cleverreach:deletionsettings:deletedisablesynchronization",
        "false",
    );
    w.source(list("l1", "Customers").group("7").sync(false))
        .group("7", "Customers", vec![]);

    let event = event("list", CrmMessage::Update, "l1")
        .touch(column::SYNC_FLAG, AttrValue::Bool(false))
        .build();
    let sync = change(&w, LIST, event).await.unwrap();

    assert_eq!(sync.outcome, GroupOutcome::Kept);
    assert!(w.newsletter.state().groups.contains_key("7"));
    assert!(w.stored(LIST, "l1").unwrap().source.group_id.is_some());
}

#[tokio::test]
async fn a_deactivated_source_has_its_sync_turned_off_and_its_group_deleted() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7").active(false))
        .group("7", "Customers", vec![]);

    let event = event("list", CrmMessage::Update, "l1")
        .touch(column::STATECODE, AttrValue::Choice(1))
        .build();
    let sync = change(&w, LIST, event).await.unwrap();

    assert_eq!(sync.outcome, GroupOutcome::Deleted);
    assert!(!w.stored(LIST, "l1").unwrap().source.sync_enabled);
    assert!(
        w.crm
            .state()
            .writes
            .contains(&"turn_sync_off list l1".to_string())
    );
}

#[tokio::test]
async fn a_renamed_source_renames_its_group_without_reading_its_members() {
    let w = World::new();
    w.source(list("l1", "New name").group("7"))
        .group("7", "Old name", vec![]);

    let event = event("list", CrmMessage::Update, "l1")
        .touch("listname", AttrValue::Text("New name".into()))
        .build();
    let sync = change(&w, LIST, event).await.unwrap();

    assert_eq!(sync.outcome, GroupOutcome::GroupUpdated);
    assert_eq!(w.newsletter.state().groups["7"].name, "New name");
    assert_eq!(
        w.crm
            .state()
            .reads
            .get(&crate::adapters::memory::CrmPort::Members),
        None,
        "a rename reads no members"
    );
}

#[tokio::test]
async fn an_unreadable_source_checklist_leaves_the_group_alone_and_says_why_on_the_source() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7").unreadable_checklist())
        .group(
            "7",
            "Customers",
            vec![receiver("anna@example.com", ReceiverState::Active, None)],
        );

    let event = event("list", CrmMessage::Update, "l1")
        .touch(column::CHECKLIST, AttrValue::Text("[".into()))
        .build();
    let err = change(&w, LIST, event).await.unwrap_err();

    assert!(matches!(err, SyncError::Invalid(_)), "{err}");
    assert_eq!(w.active("7"), ["anna@example.com"], "nobody removed");
    let Some(SourceStatus::Failed { error }) = status(&w, LIST, "l1") else {
        panic!("no error written");
    };
    assert!(error.contains("checklist cannot be read"), "{error}");
}

#[tokio::test]
async fn a_resync_removes_a_stranger_keeps_an_opt_out_and_clears_the_request() {
    let w = World::new();
    w.source(list("l1", "Customers").group("7").resync_requested())
        .contact(person("c1", "anna@example.com"), &["l1"])
        .contact(person("c2", "bert@example.com"), &["l1"])
        .group(
            "7",
            "Customers",
            vec![
                receiver("stranger@example.com", ReceiverState::Active, None),
                receiver(
                    "bert@example.com",
                    ReceiverState::Deactivated,
                    Some(("c2", PersonEntity::Contact)),
                ),
            ],
        );

    let event = event("list", CrmMessage::Update, "l1")
        .touch(column::RESYNC, AttrValue::Bool(true))
        .build();
    change(&w, LIST, event).await.unwrap();

    assert_eq!(w.active("7"), ["anna@example.com"]);
    let st = w.newsletter.state();
    let bert = st.receivers["7"].get(&address("bert@example.com")).unwrap();
    assert_eq!(
        bert.receiver.state,
        ReceiverState::Deactivated,
        "the opt-out stays"
    );
    assert!(
        st.reactivated.is_empty(),
        "re-activated: {:?}",
        st.reactivated
    );
    drop(st);
    assert!(!w.stored(LIST, "l1").unwrap().resync_requested);
}

#[tokio::test]
async fn a_blacklisted_member_is_not_added_by_a_full_reconcile() {
    let w = World::new();
    w.newsletter
        .state()
        .blacklist
        .push("anna@example.com".into());
    w.source(list("l1", "Customers"))
        .contact(person("c1", "anna@example.com"), &["l1"])
        .contact(person("c2", "bert@example.com"), &["l1"]);

    let sync = change(&w, LIST, event("list", CrmMessage::Create, "l1").build())
        .await
        .unwrap();

    assert_eq!(w.active(sync.group.unwrap().as_str()), ["bert@example.com"]);
    assert!(w.newsletter.state().reactivated.is_empty());
}

#[tokio::test]
async fn a_deleted_source_deletes_the_group_named_in_the_pre_image() {
    let w = World::new();
    w.group("7", "Customers", vec![]);

    let event = event("list", CrmMessage::Delete, "gone")
        .before(column::GROUP_ID, AttrValue::Text("7".into()))
        .build();
    let sync = change(&w, LIST, event).await.unwrap();

    assert_eq!(sync.outcome, GroupOutcome::Deleted);
    assert!(w.newsletter.state().groups.is_empty());
}

#[tokio::test]
async fn a_deleted_list_queues_one_resync_per_synced_campaign() {
    let w = World::new();
    w.source(campaign("k1", "Spring").group("8"))
        .source(campaign("k2", "Autumn").sync(false));
    let queue = InMemoryChangeQueue::new();
    let settings = Settings::default();

    let event = event("list", CrmMessage::Delete, "gone").build();
    on_source_change(&w.conn, &settings, LIST, &event, Some(&queue))
        .await
        .unwrap();

    let queued = queue.pending();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].event.record_id, "k1");
    assert!(queued[0].event.is_resync());
}

#[tokio::test]
async fn a_member_added_to_a_list_reaches_the_campaign_the_list_is_linked_to() {
    let w = World::new();
    w.source(list("l1", "Customers").sync(false))
        .source(campaign("k1", "Spring").group("8"))
        .group("8", "Spring", vec![])
        .contact(person("c1", "anna@example.com"), &["l1"]);
    w.crm
        .state()
        .linked_lists
        .entry((SourceKind::Campaign, "k1".into()))
        .or_default()
        .insert("l1".into());

    let event = event("list", CrmMessage::AddMember, "l1")
        .members("contact", &["c1"])
        .build();
    change(&w, LIST, event).await.unwrap();

    assert_eq!(w.active("8"), ["anna@example.com"]);
}

#[tokio::test]
async fn a_list_query_change_leaves_the_linked_campaigns_group_to_the_campaign_queue() {
    // The campaign has no group yet: creating it here, beside the campaign's own worker, could
    // make two groups for one campaign. Its own queue gets a resync request instead.
    let w = World::new();
    w.source(
        list("l1", "Customers")
            .sync(false)
            .shape(crate::domain::recipient::RecipientKind::Contact, true),
    )
    .source(campaign("k1", "Spring"))
    .contact(person("c1", "anna@example.com"), &["l1"]);
    w.crm
        .state()
        .linked_lists
        .entry((SourceKind::Campaign, "k1".into()))
        .or_default()
        .insert("l1".into());
    let queue = InMemoryChangeQueue::new();
    let settings = Settings::default();

    let event = event("list", CrmMessage::Update, "l1")
        .touch(column::QUERY, AttrValue::Text("<fetch/>".into()))
        .build();
    on_source_change(&w.conn, &settings, LIST, &event, Some(&queue))
        .await
        .unwrap();

    assert!(w.newsletter.state().groups.is_empty(), "no group made here");
    let queued = queue.pending();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(
        queued[0].family,
        crate::domain::routing::QueueFamily::Campaign
    );
    assert_eq!(queued[0].event.record_id, "k1");
    assert!(queued[0].event.is_resync());
}

#[tokio::test]
async fn the_api_url_setting_must_name_the_cleverreach_this_deployment_talks_to() {
    let w = World::new().setting(
        "cleverreach:connectiondata:apiurl",
        "https://rest.elsewhere.example/",
    );
    let err = w.conn.settings().await.unwrap_err();
    assert!(matches!(err, SyncError::Config(_)), "{err}");
    assert!(err.to_string().contains("rest.elsewhere.example"), "{err}");
}

#[tokio::test]
async fn a_campaign_gets_the_members_of_its_linked_lists_and_its_linked_leads() {
    let w = World::new();
    w.source(list("l1", "Customers").sync(false))
        .source(campaign("k1", "Spring"))
        .contact(person("c1", "anna@example.com"), &["l1"])
        .lead(person("d1", "dora@example.com"), &[])
        .lead(person("d2", "emil@example.com"), &[]);
    {
        let mut st = w.crm.state();
        st.linked_lists
            .entry((SourceKind::Campaign, "k1".into()))
            .or_default()
            .insert("l1".into());
        st.lead_links
            .insert("d1".into(), vec![(SourceKind::Campaign, "k1".into())]);
    }

    let sync = change(
        &w,
        SourceKind::Campaign,
        event("campaign", CrmMessage::Create, "k1").build(),
    )
    .await
    .unwrap();

    assert_eq!(
        w.active(sync.group.unwrap().as_str()),
        ["anna@example.com", "dora@example.com"]
    );
}

#[tokio::test]
async fn members_added_to_a_synced_list_in_bulk_are_compared_in_one_full_reconcile() {
    let w = World::new();
    w.source(list("l1", "Customers").group("9"))
        .group("9", "Customers", vec![]);
    let ids: Vec<String> = (0..crate::domain::change::SCOPED_MEMBERS_LIMIT + 1)
        .map(|i| format!("c{i}"))
        .collect();
    for id in &ids {
        w.contact(person(id, &format!("{id}@example.com")), &["l1"]);
    }
    let named: Vec<&str> = ids.iter().map(String::as_str).collect();

    let event = event("list", CrmMessage::AddListMembers, "l1")
        .members("contact", &named)
        .build();
    let sync = change(&w, LIST, event).await.unwrap();

    let report = sync.report.expect("reconciled");
    assert!(report.full, "over the cap: the whole list is read");
    assert_eq!(w.active("9").len(), ids.len());
}

#[tokio::test]
async fn a_few_members_added_to_a_synced_list_are_reconciled_person_by_person() {
    let w = World::new();
    w.source(list("l1", "Customers").group("9"))
        .group("9", "Customers", vec![])
        .contact(person("c1", "anna@example.com"), &["l1"])
        .contact(person("c2", "bert@example.com"), &["l1"]);

    let event = event("list", CrmMessage::AddListMembers, "l1")
        .members("contact", &["c1"])
        .build();
    let sync = change(&w, LIST, event).await.unwrap();

    let report = sync.report.expect("reconciled");
    assert!(!report.full, "only the named member");
    assert_eq!(w.active("9"), ["anna@example.com"]);
}
