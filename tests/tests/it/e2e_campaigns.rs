//! End to end: campaigns and campaign activities (docs/architecture.md §3, every row that applies to them).
//! The CRM side changes through the Dataverse simulator's Web API; the result is read from the
//! CleverReach simulator and from the sync status columns on the source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sandbox::harness::{Harness, WEBHOOK_KEY, checklist};
use serde_json::{Map, Value, json};
use shared::install::install_webhooks;
use shared::secret::Secret;

/// The two source kinds this file is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Campaign,
    Activity,
}

impl Kind {
    fn set(self) -> &'static str {
        match self {
            Kind::Campaign => "campaigns",
            Kind::Activity => "campaignactivities",
        }
    }

    /// The column that names the source, and so its group.
    fn name_column(self) -> &'static str {
        match self {
            Kind::Campaign => "name",
            Kind::Activity => "subject",
        }
    }

    /// The navigation property of the lead's lookup that links it to a source of this kind
    /// (case-sensitive in `@odata.bind`).
    fn lead_navigation(self) -> &'static str {
        match self {
            Kind::Campaign => shared::adapters::dataverse::schema::LEAD_CAMPAIGN_NAV,
            Kind::Activity => shared::adapters::dataverse::schema::LEAD_CAMPAIGN_ACTIVITY_NAV,
        }
    }
}

/// statecode 1: an inactive campaign, a closed campaign activity.
const INACTIVE: i64 = 1;

/// Installs the connector with these settings (besides the API URL).
async fn started(settings: &[(&str, &str)]) -> Harness {
    let h = Harness::start().await.unwrap();
    h.install(settings).await.unwrap();
    h
}

/// A source of this kind whose checklist says yes to newsletter type 0. An activity belongs to
/// a campaign of its own (with sync off).
async fn source(h: &Harness, kind: Kind, name: &str, sync: bool) -> String {
    let mut body = json!({
        kind.name_column(): name,
        "crc_checklist": checklist(&[(0, 1)]),
        "crc_syncwithcleverreach": sync,
    });
    if kind == Kind::Activity {
        let parent = h
            .create(
                "campaigns",
                json!({ "name": format!("Parent of {name}"), "crc_syncwithcleverreach": false }),
            )
            .await
            .unwrap();
        body["regardingobjectid_campaign_campaignactivity@odata.bind"] =
            json!(format!("/campaigns({parent})"));
    }
    h.create(kind.set(), body).await.unwrap()
}

async fn update(h: &Harness, kind: Kind, id: &str, body: Value) {
    h.update(kind.set(), id, body).await.unwrap();
}

/// Links a marketing list to the source (AddItemCampaign / AddItemCampaignActivity).
async fn add_list(h: &Harness, kind: Kind, id: &str, list: &str) {
    let (action, body) = match kind {
        Kind::Campaign => (
            "AddItemCampaign",
            json!({ "EntityId": list, "EntityName": "list" }),
        ),
        Kind::Activity => (
            "AddItemCampaignActivity",
            json!({ "ItemId": list, "EntityName": "list" }),
        ),
    };
    h.action(
        &format!("{}({id})/Microsoft.Dynamics.CRM.{action}", kind.set()),
        body,
    )
    .await
    .unwrap();
}

/// Unlinks a marketing list from the source (RemoveItemCampaign / RemoveItemCampaignActivity).
async fn remove_list(h: &Harness, kind: Kind, id: &str, list: &str) {
    let (action, body) = match kind {
        Kind::Campaign => ("RemoveItemCampaign", json!({ "EntityId": list })),
        Kind::Activity => ("RemoveItemCampaignActivity", json!({ "ItemId": list })),
    };
    h.action(
        &format!("{}({id})/Microsoft.Dynamics.CRM.{action}", kind.set()),
        body,
    )
    .await
    .unwrap();
}

/// A static list of contacts (sync off) with these members.
async fn contact_list(h: &Harness, name: &str, members: &[&String]) -> String {
    let list = h
        .create(
            "lists",
            json!({ "listname": name, "createdfromcode": 2, "type": false,
                    "crc_syncwithcleverreach": false }),
        )
        .await
        .unwrap();
    if !members.is_empty() {
        let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
        h.add_members(&list, "contact", &members).await.unwrap();
    }
    list
}

/// A lead named after its address, with this consent checklist.
async fn lead(h: &Harness, email: &str, consent: &[(i64, i64)]) -> String {
    let (first, last) = email.split_once('@').unwrap();
    h.create(
        "leads",
        json!({ "firstname": first, "lastname": last, "emailaddress1": email,
                "crc_checklist": checklist(consent) }),
    )
    .await
    .unwrap()
}

/// Links (or with `None` unlinks) a lead to a source through the lead's lookup.
async fn link_lead(h: &Harness, kind: Kind, lead: &str, source: Option<&str>) {
    let bind = format!("{}@odata.bind", kind.lead_navigation());
    let value = source.map_or(Value::Null, |id| json!(format!("/{}({id})", kind.set())));
    let mut body = Map::new();
    body.insert(bind, value);
    h.update("leads", lead, Value::Object(body)).await.unwrap();
}

fn group(h: &Harness, kind: Kind, id: &str) -> String {
    h.group_of(kind.set(), id)
        .unwrap_or_else(|| panic!("{kind:?} {id} has a group id"))
}

fn row(h: &Harness, kind: Kind, id: &str) -> Value {
    Value::Object(h.dataverse.row(kind.set(), id).unwrap())
}

fn no_dead_letters(h: &Harness) {
    let dead: Vec<String> = h
        .dead_letters()
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d.change.event.message.name(),
                d.change.event.entity
            )
        })
        .collect();
    assert!(dead.is_empty(), "dead letters: {dead:?}");
}

/// One test per kind for a scenario.
macro_rules! for_both_kinds {
    ($scenario:ident => $campaign:ident, $activity:ident) => {
        #[tokio::test]
        async fn $campaign() {
            $scenario(Kind::Campaign).await;
        }
        #[tokio::test]
        async fn $activity() {
            $scenario(Kind::Activity).await;
        }
    };
}

// --- source created with sync on ----------------------------------------------------------

async fn created_with_sync_on(kind: Kind) {
    let h = started(&[("cleverreach:groupsettings:groupprefix", "CRM - ")]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(1, 1)]).await.unwrap();
    let dora = h.contact("dora@example.com", &[(0, 1)]).await.unwrap();
    let first = contact_list(&h, "First", &[&anna, &bert]).await;
    let second = contact_list(&h, "Second", &[&anna, &dora]).await;
    let lena = lead(&h, "lena@example.com", &[(0, 1)]).await;
    let lars = lead(&h, "lars@example.com", &[(0, 2)]).await;
    let _unlinked = lead(&h, "uwe@example.com", &[(0, 1)]).await;
    h.settle().await.unwrap();

    let id = source(&h, kind, "Spring", true).await;
    add_list(&h, kind, &id, &first).await;
    add_list(&h, kind, &id, &second).await;
    link_lead(&h, kind, &lena, Some(&id)).await;
    link_lead(&h, kind, &lars, Some(&id)).await;
    h.settle().await.unwrap();

    let group = group(&h, kind, &id);
    assert_eq!(h.cleverreach.group(&group).unwrap().name, "CRM - Spring");
    // bert has no yes for type 0, lars said no, uwe is not linked.
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "dora@example.com", "lena@example.com"]
    );
    let row = row(&h, kind, &id);
    let status = row["crc_syncstatus"].as_str().unwrap_or_default();
    assert!(status.contains("added"), "sync status: {status:?}");
    assert!(row.get("crc_lastsync").is_some(), "last sync time written");
    assert!(row.get("crc_lasterror").is_none(), "no error: {row}");
    no_dead_letters(&h);
}

for_both_kinds!(created_with_sync_on =>
    a_campaign_created_with_sync_on_gets_a_group_of_the_eligible_members_of_its_lists_and_leads,
    a_campaign_activity_created_with_sync_on_gets_a_group_of_the_eligible_members_of_its_lists_and_leads);

// --- sync flag on / off -----------------------------------------------------------------

async fn sync_flag_on_and_off_with_default_settings(kind: Kind) {
    let h = started(&[]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let list = contact_list(&h, "Members", &[&anna]).await;
    let id = source(&h, kind, "Flag", false).await;
    add_list(&h, kind, &id, &list).await;
    h.settle().await.unwrap();
    assert!(
        h.group_of(kind.set(), &id).is_none(),
        "no group with sync off"
    );
    assert!(h.cleverreach.groups().is_empty());

    update(&h, kind, &id, json!({ "crc_syncwithcleverreach": true })).await;
    h.settle().await.unwrap();
    let first = group(&h, kind, &id);
    assert_eq!(h.active_emails(&first), ["anna@example.com"]);

    // deletedisablesynchronization defaults to true.
    update(&h, kind, &id, json!({ "crc_syncwithcleverreach": false })).await;
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&first).is_none(), "group deleted");
    assert!(h.group_of(kind.set(), &id).is_none(), "group id cleared");

    update(&h, kind, &id, json!({ "crc_syncwithcleverreach": true })).await;
    h.settle().await.unwrap();
    let second = group(&h, kind, &id);
    assert_ne!(second, first, "a new group");
    assert_eq!(h.active_emails(&second), ["anna@example.com"]);
    no_dead_letters(&h);
}

for_both_kinds!(sync_flag_on_and_off_with_default_settings =>
    turning_a_campaigns_sync_on_creates_its_group_and_off_deletes_it_by_default,
    turning_a_campaign_activitys_sync_on_creates_its_group_and_off_deletes_it_by_default);

async fn sync_flag_off_keeps_and_on_reuses(kind: Kind) {
    let h = started(&[(
        "cleverreach:deletionsettings:deletedisablesynchronization",
        "false",
    )])
    .await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let list = contact_list(&h, "Members", &[&anna]).await;
    let id = source(&h, kind, "Kept", true).await;
    add_list(&h, kind, &id, &list).await;
    h.settle().await.unwrap();
    let kept = group(&h, kind, &id);
    assert_eq!(h.active_emails(&kept), ["anna@example.com"]);

    update(&h, kind, &id, json!({ "crc_syncwithcleverreach": false })).await;
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&kept).is_some(), "group kept");
    let status = row(&h, kind, &id)["crc_syncstatus"].clone();
    assert!(
        status.as_str().unwrap_or_default().contains("kept"),
        "status: {status}"
    );

    // A kept group is no longer synced: a new member waits for sync to come back on.
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    h.add_member(&list, &bert).await.unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&kept), ["anna@example.com"]);

    update(&h, kind, &id, json!({ "crc_syncwithcleverreach": true })).await;
    h.settle().await.unwrap();
    assert_eq!(group(&h, kind, &id), kept, "the kept group is reused");
    assert_eq!(h.cleverreach.groups().len(), 1);
    assert_eq!(
        h.active_emails(&kept),
        ["anna@example.com", "bert@example.com"]
    );
    no_dead_letters(&h);
}

for_both_kinds!(sync_flag_off_keeps_and_on_reuses =>
    a_campaigns_group_kept_when_sync_goes_off_is_reused_when_it_comes_back_on,
    a_campaign_activitys_group_kept_when_sync_goes_off_is_reused_when_it_comes_back_on);

// --- checklist, name, description ---------------------------------------------------------

async fn checklist_changed(kind: Kind) {
    let h = started(&[]).await;
    let info = h.contact("info@example.com", &[(0, 1)]).await.unwrap();
    let ads = h.contact("ads@example.com", &[(1, 1)]).await.unwrap();
    let list = contact_list(&h, "Members", &[&info, &ads]).await;
    let linked = lead(&h, "lead.ads@example.com", &[(1, 1)]).await;
    let id = source(&h, kind, "Checklist", true).await;
    add_list(&h, kind, &id, &list).await;
    link_lead(&h, kind, &linked, Some(&id)).await;
    h.settle().await.unwrap();
    let group = group(&h, kind, &id);
    assert_eq!(h.active_emails(&group), ["info@example.com"]);

    update(
        &h,
        kind,
        &id,
        json!({ "crc_checklist": checklist(&[(0, 0), (1, 1)]) }),
    )
    .await;
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["ads@example.com", "lead.ads@example.com"]
    );
    no_dead_letters(&h);
}

for_both_kinds!(checklist_changed =>
    a_changed_campaign_checklist_adds_those_who_now_qualify_and_removes_the_others,
    a_changed_campaign_activity_checklist_adds_those_who_now_qualify_and_removes_the_others);

async fn renamed(kind: Kind) {
    let h = started(&[("cleverreach:groupsettings:groupprefix", "CRM - ")]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let list = contact_list(&h, "Members", &[&anna]).await;
    let id = source(&h, kind, "Spring", true).await;
    add_list(&h, kind, &id, &list).await;
    h.settle().await.unwrap();
    let group = group(&h, kind, &id);
    assert_eq!(h.cleverreach.group(&group).unwrap().name, "CRM - Spring");

    update(&h, kind, &id, json!({ kind.name_column(): "Summer" })).await;
    h.settle().await.unwrap();
    assert_eq!(h.cleverreach.group(&group).unwrap().name, "CRM - Summer");
    assert_eq!(h.group_of(kind.set(), &id).as_deref(), Some(group.as_str()));
    assert_eq!(h.cleverreach.groups().len(), 1);
    assert_eq!(h.active_emails(&group), ["anna@example.com"]);
    no_dead_letters(&h);
}

for_both_kinds!(renamed =>
    renaming_a_campaign_renames_its_group,
    changing_a_campaign_activitys_subject_renames_its_group);

#[tokio::test]
async fn a_campaign_activitys_description_becomes_its_groups_receiver_info() {
    let h = started(&[]).await;
    let id = source(&h, Kind::Activity, "Mailing", false).await;
    update(
        &h,
        Kind::Activity,
        &id,
        json!({ "description": "Our spring mailing", "crc_syncwithcleverreach": true }),
    )
    .await;
    h.settle().await.unwrap();
    let group = group(&h, Kind::Activity, &id);
    // The description, then the connector's creation marker (it marks the group as the
    // connector's for the orphan sweep).
    let info = h.cleverreach.group(&group).unwrap().receiver_info;
    assert_eq!(info.lines().next(), Some("Our spring mailing"), "{info}");

    update(
        &h,
        Kind::Activity,
        &id,
        json!({ "description": "Now in summer" }),
    )
    .await;
    h.settle().await.unwrap();
    let seen = h.cleverreach.group(&group).unwrap();
    let lines: Vec<&str> = seen.receiver_info.lines().collect();
    assert_eq!(lines[0], "Now in summer");
    assert!(
        lines[1].starts_with("[created by the CRM connector, ref "),
        "the marker stays when the description changes: {lines:?}"
    );
    assert_eq!(seen.name, "Mailing", "the name stays");
    no_dead_letters(&h);
}

// --- lists and leads added to / removed from the source -----------------------------------

async fn lists_added_and_removed(kind: Kind) {
    let h = started(&[]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let carl = h.contact("carl@example.com", &[(0, 1)]).await.unwrap();
    let lena = lead(&h, "lena@example.com", &[(0, 1)]).await;
    let first = contact_list(&h, "First", &[&anna, &bert]).await;
    let second = contact_list(&h, "Second", &[&bert, &carl]).await;
    let leads = h
        .create(
            "lists",
            json!({ "listname": "Leads", "createdfromcode": 4, "type": false }),
        )
        .await
        .unwrap();
    h.add_member(&leads, &lena).await.unwrap();
    let id = source(&h, kind, "Items", true).await;
    link_lead(&h, kind, &lena, Some(&id)).await;
    h.settle().await.unwrap();
    let group = group(&h, kind, &id);
    assert_eq!(h.active_emails(&group), ["lena@example.com"]);

    for list in [&first, &second, &leads] {
        add_list(&h, kind, &id, list).await;
    }
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        [
            "anna@example.com",
            "bert@example.com",
            "carl@example.com",
            "lena@example.com"
        ]
    );

    // bert stays through the first list.
    remove_list(&h, kind, &id, &second).await;
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com", "lena@example.com"]
    );

    // lena stays as a linked lead.
    remove_list(&h, kind, &id, &leads).await;
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com", "lena@example.com"]
    );

    remove_list(&h, kind, &id, &first).await;
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["lena@example.com"]);

    add_list(&h, kind, &id, &second).await;
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["bert@example.com", "carl@example.com", "lena@example.com"]
    );
    no_dead_letters(&h);
}

for_both_kinds!(lists_added_and_removed =>
    lists_added_to_and_removed_from_a_campaign_bring_and_take_their_members_but_keep_those_still_in_another_way,
    lists_added_to_and_removed_from_a_campaign_activity_bring_and_take_their_members_but_keep_those_still_in_another_way);

/// Deleting a list removes its links without an event for them; the list's members leave the
/// source's group all the same, and those still in through another list or as a linked lead
/// stay.
async fn linked_list_deleted(kind: Kind) {
    let h = started(&[]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let carl = h.contact("carl@example.com", &[(0, 1)]).await.unwrap();
    let lena = lead(&h, "lena@example.com", &[(0, 1)]).await;
    let first = contact_list(&h, "First", &[&anna, &bert]).await;
    let second = contact_list(&h, "Second", &[&bert, &carl]).await;
    let id = source(&h, kind, "Linked", true).await;
    add_list(&h, kind, &id, &first).await;
    add_list(&h, kind, &id, &second).await;
    link_lead(&h, kind, &lena, Some(&id)).await;
    // A source that never held the deleted list keeps its receivers.
    let other = source(&h, kind, "Other", true).await;
    add_list(&h, kind, &other, &second).await;
    h.settle().await.unwrap();
    let group = group(&h, kind, &id);
    let other_group = self::group(&h, kind, &other);
    assert_eq!(
        h.active_emails(&group),
        [
            "anna@example.com",
            "bert@example.com",
            "carl@example.com",
            "lena@example.com"
        ]
    );

    h.delete("lists", &first).await.unwrap();
    h.settle().await.unwrap();
    // anna came only through the deleted list; bert stays through the second.
    assert_eq!(
        h.active_emails(&group),
        ["bert@example.com", "carl@example.com", "lena@example.com"]
    );
    assert_eq!(
        h.cleverreach.receivers(&group).len(),
        3,
        "anna's receiver is removed, not left inactive"
    );
    assert_eq!(
        h.active_emails(&other_group),
        ["bert@example.com", "carl@example.com"]
    );
    let status = row(&h, kind, &id)["crc_syncstatus"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(status.contains("1 removed"), "sync status: {status:?}");
    no_dead_letters(&h);
}

for_both_kinds!(linked_list_deleted =>
    deleting_a_list_linked_to_a_campaign_takes_its_members_out_of_the_campaigns_group,
    deleting_a_list_linked_to_a_campaign_activity_takes_its_members_out_of_the_activitys_group);

async fn leads_linked_and_unlinked(kind: Kind) {
    let h = started(&[]).await;
    let lena = lead(&h, "lena@example.com", &[(0, 1)]).await;
    let lars = lead(&h, "lars@example.com", &[(0, 2)]).await;
    let lisa = lead(&h, "lisa@example.com", &[(0, 1)]).await;
    let leads = h
        .create(
            "lists",
            json!({ "listname": "Leads", "createdfromcode": 4, "type": false }),
        )
        .await
        .unwrap();
    h.add_member(&leads, &lisa).await.unwrap();
    let id = source(&h, kind, "Leads", true).await;
    add_list(&h, kind, &id, &leads).await;
    h.settle().await.unwrap();
    let group = group(&h, kind, &id);
    assert_eq!(h.active_emails(&group), ["lisa@example.com"]);

    for lead in [&lena, &lars, &lisa] {
        link_lead(&h, kind, lead, Some(&id)).await;
    }
    h.settle().await.unwrap();
    // lars said no to the campaign's newsletter type.
    assert_eq!(
        h.active_emails(&group),
        ["lena@example.com", "lisa@example.com"]
    );

    // lisa stays through the linked list.
    link_lead(&h, kind, &lena, None).await;
    link_lead(&h, kind, &lisa, None).await;
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["lisa@example.com"]);

    // A lead created already linked joins too.
    let mut body = json!({ "firstname": "nina", "lastname": "example.com",
        "emailaddress1": "nina@example.com", "crc_checklist": checklist(&[(0, 1)]) });
    body[format!("{}@odata.bind", kind.lead_navigation())] =
        json!(format!("/{}({id})", kind.set()));
    h.create("leads", body).await.unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["lisa@example.com", "nina@example.com"]
    );
    no_dead_letters(&h);
}

for_both_kinds!(leads_linked_and_unlinked =>
    leads_linked_to_and_unlinked_from_a_campaign_join_and_leave_its_group,
    leads_linked_to_and_unlinked_from_a_campaign_activity_join_and_leave_its_group);

// --- members of linked lists --------------------------------------------------------------

async fn linked_static_list_members(kind: Kind) {
    let h = started(&[]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let list = contact_list(&h, "Linked", &[&anna]).await;
    let other = contact_list(&h, "Other", &[&bert]).await;
    let id = source(&h, kind, "Members", true).await;
    add_list(&h, kind, &id, &list).await;
    add_list(&h, kind, &id, &other).await;
    h.settle().await.unwrap();
    let group = group(&h, kind, &id);
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com"]
    );

    // One member (AddMemberList), then a few at once (AddListMembersList).
    let carl = h.contact("carl@example.com", &[(0, 1)]).await.unwrap();
    let dora = h.contact("dora@example.com", &[(0, 1)]).await.unwrap();
    let emil = h.contact("emil@example.com", &[(0, 2)]).await.unwrap();
    h.add_member(&list, &carl).await.unwrap();
    h.add_members(&list, "contact", &[dora, emil, bert.clone()])
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        [
            "anna@example.com",
            "bert@example.com",
            "carl@example.com",
            "dora@example.com"
        ]
    );

    // carl leaves; bert leaves this list but is still in the other one.
    h.remove_member(&list, &carl).await.unwrap();
    h.remove_member(&list, &bert).await.unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com", "dora@example.com"]
    );

    // A bulk add beyond the scoped limit: the source is reconciled in full.
    let seeded = h
        .dataverse
        .seed(
            "contacts",
            (0..60)
                .map(|i| {
                    json!({ "firstname": format!("bulk{i}"), "lastname": "example.com",
                            "emailaddress1": format!("bulk{i:02}@example.com"),
                            "crc_checklist": checklist(&[(0, 1)]) })
                    .as_object()
                    .unwrap()
                    .clone()
                })
                .collect(),
        )
        .unwrap();
    h.add_members(&list, "contact", &seeded).await.unwrap();
    h.settle().await.unwrap();
    let emails = h.active_emails(&group);
    assert_eq!(emails.len(), 63, "{emails:?}");
    assert!(emails.contains(&"bulk59@example.com".to_string()));
    no_dead_letters(&h);
}

for_both_kinds!(linked_static_list_members =>
    members_added_to_and_removed_from_a_static_list_linked_to_a_synced_campaign_follow_into_its_group,
    members_added_to_and_removed_from_a_static_list_linked_to_a_synced_campaign_activity_follow_into_its_group);

async fn linked_synced_list_members(kind: Kind) {
    let h = started(&[]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let (list, list_group) = h
        .synced_static_list("Synced list", "contact", std::slice::from_ref(&anna))
        .await
        .unwrap();
    let id = source(&h, kind, "Both", true).await;
    add_list(&h, kind, &id, &list).await;
    h.settle().await.unwrap();
    let group = group(&h, kind, &id);
    assert_eq!(h.active_emails(&group), ["anna@example.com"]);

    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    h.add_member(&list, &bert).await.unwrap();
    h.remove_member(&list, &anna).await.unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&list_group), ["bert@example.com"]);
    assert_eq!(h.active_emails(&group), ["bert@example.com"]);
    no_dead_letters(&h);
}

for_both_kinds!(linked_synced_list_members =>
    a_member_added_to_a_synced_list_linked_to_a_campaign_joins_both_groups,
    a_member_added_to_a_synced_list_linked_to_a_campaign_activity_joins_both_groups);

async fn linked_dynamic_list(kind: Kind) {
    let h = started(&[]).await;
    h.contact("ann.berlin@example.com", &[(0, 1)])
        .await
        .unwrap();
    h.contact("bob.berlin@example.com", &[(0, 2)])
        .await
        .unwrap();
    h.contact("cem.hamburg@example.com", &[(0, 1)])
        .await
        .unwrap();
    let query = r#"<fetch><entity name="contact"><attribute name="contactid"/><filter><condition attribute="emailaddress1" operator="like" value="%berlin%"/></filter></entity></fetch>"#;
    let list = h
        .create(
            "lists",
            json!({ "listname": "Berlin", "createdfromcode": 2, "type": true, "query": query,
                    "crc_syncwithcleverreach": false }),
        )
        .await
        .unwrap();
    let id = source(&h, kind, "Dynamic", true).await;
    add_list(&h, kind, &id, &list).await;
    h.settle().await.unwrap();
    let group = group(&h, kind, &id);
    assert_eq!(h.active_emails(&group), ["ann.berlin@example.com"]);

    // A new contact the query selects joins the campaign's group.
    h.contact("dora.berlin@example.com", &[(0, 1)])
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["ann.berlin@example.com", "dora.berlin@example.com"]
    );

    // The list's query changes: the campaign's group follows it.
    h.update(
        "lists",
        &list,
        json!({ "query": query.replace("%berlin%", "%hamburg%") }),
    )
    .await
    .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["cem.hamburg@example.com"]);
    no_dead_letters(&h);
}

for_both_kinds!(linked_dynamic_list =>
    a_dynamic_list_linked_to_a_campaign_feeds_its_group_with_what_the_query_selects,
    a_dynamic_list_linked_to_a_campaign_activity_feeds_its_group_with_what_the_query_selects);

// --- state changes and deletion -----------------------------------------------------------

async fn deactivated(kind: Kind) {
    let h = started(&[]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let list = contact_list(&h, "Members", &[&anna]).await;
    let id = source(&h, kind, "State", true).await;
    add_list(&h, kind, &id, &list).await;
    h.settle().await.unwrap();
    let group = group(&h, kind, &id);
    let deliveries_before = h.dataverse.deliveries().len();

    update(&h, kind, &id, json!({ "statecode": INACTIVE })).await;
    let processed = h.settle().await.unwrap();

    let row = row(&h, kind, &id);
    assert_eq!(
        row["crc_syncwithcleverreach"],
        json!(false),
        "sync flag written back"
    );
    assert!(h.cleverreach.group(&group).is_none(), "deleted by default");
    assert!(h.group_of(kind.set(), &id).is_none(), "group id cleared");
    let status = row["crc_syncstatus"].as_str().unwrap_or_default();
    assert!(status.contains("deleted"), "status: {status:?}");
    // The user's change is worked once; the connector's own write-back reaches the intake and
    // is left there.
    assert_eq!(processed, 1, "one message worked");
    let updates: Vec<_> = h.dataverse.deliveries()[deliveries_before..]
        .iter()
        .filter(|d| d.record_id.eq_ignore_ascii_case(&id))
        .map(|d| (d.message.clone(), d.status))
        .collect();
    assert_eq!(
        updates,
        [
            ("Update".to_string(), Some(202)),
            ("Update".to_string(), Some(200))
        ],
        "the user's change queued, the write-back ignored"
    );
    assert_eq!(h.settle().await.unwrap(), 0, "nothing left to do");
    no_dead_letters(&h);
}

for_both_kinds!(deactivated =>
    deactivating_a_campaign_turns_its_sync_off_and_deletes_its_group_in_one_round,
    closing_a_campaign_activity_turns_its_sync_off_and_deletes_its_group_in_one_round);

async fn activated_with_sync_on(kind: Kind) {
    let h = started(&[(
        "cleverreach:deletionsettings:deletedisablesynchronization",
        "false",
    )])
    .await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let list = contact_list(&h, "Members", &[&anna]).await;
    let id = source(&h, kind, "State", true).await;
    add_list(&h, kind, &id, &list).await;
    h.settle().await.unwrap();
    let kept = group(&h, kind, &id);

    update(&h, kind, &id, json!({ "statecode": INACTIVE })).await;
    h.settle().await.unwrap();
    assert_eq!(row(&h, kind, &id)["crc_syncwithcleverreach"], json!(false));
    assert!(h.cleverreach.group(&kept).is_some(), "kept per settings");

    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    h.add_member(&list, &bert).await.unwrap();
    h.settle().await.unwrap();

    update(
        &h,
        kind,
        &id,
        json!({ "statecode": 0, "crc_syncwithcleverreach": true }),
    )
    .await;
    h.settle().await.unwrap();
    assert_eq!(group(&h, kind, &id), kept, "the kept group is reused");
    assert_eq!(h.cleverreach.groups().len(), 1);
    assert_eq!(
        h.active_emails(&kept),
        ["anna@example.com", "bert@example.com"]
    );
    no_dead_letters(&h);
}

for_both_kinds!(activated_with_sync_on =>
    activating_a_campaign_with_sync_on_reuses_and_reconciles_its_kept_group,
    reopening_a_campaign_activity_with_sync_on_reuses_and_reconciles_its_kept_group);

#[tokio::test]
async fn activating_a_campaign_with_sync_on_after_its_group_was_deleted_creates_a_new_one() {
    let h = started(&[]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let list = contact_list(&h, "Members", &[&anna]).await;
    let id = source(&h, Kind::Campaign, "State", true).await;
    add_list(&h, Kind::Campaign, &id, &list).await;
    h.settle().await.unwrap();
    let first = group(&h, Kind::Campaign, &id);
    update(&h, Kind::Campaign, &id, json!({ "statecode": 1 })).await;
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&first).is_none());

    update(
        &h,
        Kind::Campaign,
        &id,
        json!({ "statecode": 0, "crc_syncwithcleverreach": true }),
    )
    .await;
    h.settle().await.unwrap();
    let second = group(&h, Kind::Campaign, &id);
    assert_ne!(second, first);
    assert_eq!(h.active_emails(&second), ["anna@example.com"]);
    no_dead_letters(&h);
}

async fn deleted(kind: Kind) {
    let h = started(&[]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let list = contact_list(&h, "Members", &[&anna]).await;
    let id = source(&h, kind, "Gone", true).await;
    add_list(&h, kind, &id, &list).await;
    let other = source(&h, kind, "Stays", true).await;
    h.settle().await.unwrap();
    let gone = group(&h, kind, &id);
    let stays = group(&h, kind, &other);

    h.delete(kind.set(), &id).await.unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&gone).is_none(), "deleted by default");
    assert!(h.cleverreach.group(&stays).is_some(), "others stay");
    no_dead_letters(&h);
}

for_both_kinds!(deleted =>
    deleting_a_campaign_deletes_its_group_by_default,
    deleting_a_campaign_activity_deletes_its_group_by_default);

#[tokio::test]
async fn deleting_a_campaign_deletes_the_groups_of_its_activities_too() {
    let h = started(&[]).await;
    let campaign = source(&h, Kind::Campaign, "Parent", true).await;
    let activity = h
        .create(
            "campaignactivities",
            json!({ "subject": "Child", "crc_checklist": checklist(&[(0, 1)]),
                    "crc_syncwithcleverreach": true,
                    "regardingobjectid_campaign_campaignactivity@odata.bind": format!("/campaigns({campaign})") }),
        )
        .await
        .unwrap();
    h.settle().await.unwrap();
    let campaign_group = group(&h, Kind::Campaign, &campaign);
    let activity_group = group(&h, Kind::Activity, &activity);

    h.delete("campaigns", &campaign).await.unwrap();
    h.settle().await.unwrap();
    assert!(h.cleverreach.group(&campaign_group).is_none());
    assert!(h.cleverreach.group(&activity_group).is_none());
    assert!(h.cleverreach.groups().is_empty());
    no_dead_letters(&h);
}

// --- installation and people ---------------------------------------------------------------

#[tokio::test]
async fn the_installer_registers_each_campaign_step_once_and_changes_of_no_interest_queue_nothing()
{
    let h = started(&[]).await;
    let client = h.crm_client().clone();
    let again = install_webhooks(&client, &h.intake_url, &Secret::new(WEBHOOK_KEY))
        .await
        .unwrap();
    assert!(
        again.created.is_empty(),
        "created again: {:?}",
        again.created
    );

    let names: Vec<String> = h
        .dataverse
        .rows("sdkmessageprocessingsteps")
        .iter()
        .filter_map(|r| r.get("name")?.as_str().map(str::to_string))
        .collect();
    for entity in ["campaign", "campaignactivity"] {
        for message in ["Create", "Update", "Delete", "AddItem", "RemoveItem"] {
            let name = format!("CleverReach Connector: {message} of {entity}");
            assert_eq!(
                names.iter().filter(|n| **n == name).count(),
                1,
                "{name} in {names:?}"
            );
        }
    }

    // A campaign's own description is not the connector's business (only an activity's is).
    let id = source(&h, Kind::Campaign, "Quiet", true).await;
    h.settle().await.unwrap();
    update(&h, Kind::Campaign, &id, json!({ "description": "notes" })).await;
    assert_eq!(h.settle().await.unwrap(), 0, "no work queued");
}

#[tokio::test]
async fn a_recipient_deactivated_leaves_the_campaigns_group_and_comes_back_when_reactivated() {
    let h = started(&[]).await;
    let anna = h.contact("anna@example.com", &[(0, 1)]).await.unwrap();
    let bert = h.contact("bert@example.com", &[(0, 1)]).await.unwrap();
    let lena = lead(&h, "lena@example.com", &[(0, 1)]).await;
    let list = contact_list(&h, "Members", &[&anna, &bert]).await;
    let id = source(&h, Kind::Campaign, "People", true).await;
    add_list(&h, Kind::Campaign, &id, &list).await;
    link_lead(&h, Kind::Campaign, &lena, Some(&id)).await;
    h.settle().await.unwrap();
    let group = group(&h, Kind::Campaign, &id);
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com", "lena@example.com"]
    );

    h.update("contacts", &anna, json!({ "statecode": 1 }))
        .await
        .unwrap();
    h.update("leads", &lena, json!({ "statecode": 2 }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(h.active_emails(&group), ["bert@example.com"]);

    h.update("contacts", &anna, json!({ "statecode": 0 }))
        .await
        .unwrap();
    h.settle().await.unwrap();
    assert_eq!(
        h.active_emails(&group),
        ["anna@example.com", "bert@example.com"]
    );
    no_dead_letters(&h);
}
