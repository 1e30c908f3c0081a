//! The sample webhook bodies in `events/webhook-intake/` parse into the events a worker needs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

// Grouped under `webhook` so that `cargo test -p shared webhook` selects these tests.
mod webhook {
    use std::path::PathBuf;

    use shared::adapters::dataverse::webhook::{WebhookError, parse_change_event};
    use shared::domain::change::{AttrValue, ChangeEvent, CrmMessage, RecordRef};

    fn samples_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events/webhook-intake")
    }

    fn read(name: &str) -> Vec<u8> {
        let path = samples_dir().join(name);
        std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
    }

    fn parse(name: &str) -> ChangeEvent {
        parse_change_event(&read(name), false).unwrap_or_else(|err| panic!("{name}: {err}"))
    }

    fn text(value: &str) -> AttrValue {
        AttrValue::Text(value.to_string())
    }

    fn record(entity: &str, id: &str) -> RecordRef {
        RecordRef {
            entity: entity.to_string(),
            id: id.to_string(),
        }
    }

    #[test]
    fn the_microsoft_sample_parses_into_a_contact_update() {
        let event = parse("contact-update.json");

        assert_eq!(event.message, CrmMessage::Update);
        assert_eq!(event.entity, "contact");
        assert_eq!(event.record_id, "6d81597f-0f9f-e711-8122-000d3aa2331c");
        assert_eq!(event.operation_id, "4af10637-4ea2-e711-8122-000d3aa2331c");
        assert_eq!(event.correlation_id, "aaaa0000-bb11-2222-33cc-444444dddddd");
        assert_eq!(event.user_id, "11bb11bb-cc22-dd33-ee44-55ff55ff55ff");
        assert_eq!(
            event.initiating_user_id,
            "11bb11bb-cc22-dd33-ee44-55ff55ff55ff"
        );
        assert_eq!(
            event.organization_id,
            "00aa00aa-bb11-cc22-dd33-44ee44ee44ee"
        );
        assert_eq!(event.organization_name, "OrgName");
        // `/Date(1506409448000-0700)/`: the milliseconds are UTC, the offset is informative.
        assert_eq!(event.occurred_at_ms, Some(1_506_409_448_000));
        assert_eq!(event.depth, 1);
        assert!(!event.size_exceeded);
        assert_eq!(event.tag, None);
        assert!(event.related.is_empty());

        assert_eq!(event.target.get("firstname"), Some(&text("James")));
        assert_eq!(
            event.target.get("fullname"),
            Some(&text("James Glynn (sample)"))
        );
        assert_eq!(
            event.target.get("modifiedon"),
            Some(&AttrValue::DateTime(1_506_384_247_000))
        );
        assert_eq!(
            event.target.get("modifiedby"),
            Some(&AttrValue::Reference {
                entity: "systemuser".into(),
                id: "11bb11bb-cc22-dd33-ee44-55ff55ff55ff".into(),
                name: None,
            })
        );
        assert_eq!(
            event.target.get("modifiedonbehalfby"),
            Some(&AttrValue::Null)
        );
        assert_eq!(event.target.len(), 7);
        assert!(event.touched("firstname"));
        assert!(!event.touched("emailaddress1"));

        // Only the automatic image of an async step: primary name and id.
        assert_eq!(event.pre_image, None);
        let post = event.post_image.as_ref().expect("post image");
        assert_eq!(post.get("fullname"), Some(&text("James Glynn (sample)")));
        assert_eq!(
            post.get("contactid"),
            Some(&text("6d81597f-0f9f-e711-8122-000d3aa2331c"))
        );
        assert_eq!(post.len(), 2);
    }

    #[test]
    fn a_contact_create_carries_every_column_and_the_registered_post_image() {
        let event = parse("contact-create.json");

        assert_eq!(event.message, CrmMessage::Create);
        assert_eq!(event.entity, "contact");
        assert_eq!(event.record_id, "2b9e7c41-5d3a-ef11-8409-000d3a4b7c21");
        assert_eq!(event.occurred_at_ms, Some(1_717_406_040_812));
        assert_eq!(event.target.get("firstname"), Some(&text("Jürgen")));
        assert_eq!(
            event.target.get("emailaddress1"),
            Some(&text("juergen.weiss@contoso-gmbh.de"))
        );
        assert_eq!(
            event.target.get("parentcustomerid"),
            Some(&AttrValue::Reference {
                entity: "account".into(),
                id: "7c1d2e3f-4a5b-ef11-8409-000d3a4b7c21".into(),
                name: Some("Contoso GmbH".into()),
            })
        );
        assert_eq!(event.target.get("statecode"), Some(&AttrValue::Choice(0)));
        assert_eq!(
            event.target.get("donotbulkemail"),
            Some(&AttrValue::Bool(false))
        );
        assert_eq!(
            event.target.get("creditlimit"),
            Some(&AttrValue::Money(2500.5))
        );
        assert_eq!(
            event.target.get("exchangerate"),
            Some(&AttrValue::Number(1.0))
        );
        assert_eq!(
            event.target.get("createdon"),
            Some(&AttrValue::DateTime(1_717_406_040_000))
        );
        let checklist = event
            .target
            .get("crc_checklist")
            .and_then(AttrValue::as_text)
            .expect("checklist text");
        let rows: serde_json::Value =
            serde_json::from_str(checklist).expect("checklist is JSON text");
        assert_eq!(rows[0]["description"], "Information");
        assert_eq!(rows[2]["state"], 2);

        // The registered image is merged with the automatic one.
        let post = event.post_image.as_ref().expect("post image");
        assert_eq!(
            post.get("emailaddress1"),
            Some(&text("juergen.weiss@contoso-gmbh.de"))
        );
        assert_eq!(post.get("fullname"), Some(&text("Jürgen Weiß")));
        assert_eq!(post.get("statecode"), Some(&AttrValue::Choice(0)));
        assert_eq!(event.pre_image, None);
    }

    #[test]
    fn a_contact_delete_keeps_the_email_of_the_pre_image() {
        let event = parse("contact-delete.json");

        assert_eq!(event.message, CrmMessage::Delete);
        assert_eq!(event.record_id, "6a5b4c3d-8e7f-ef11-8409-000d3a4b7c21");
        assert!(
            event.target.is_empty(),
            "a Delete's Target is a reference, not columns"
        );
        assert_eq!(
            event.value_before("emailaddress1"),
            Some(&text("maria.hoffmann@fabrikam.de"))
        );
        assert_eq!(
            event.value_before("fullname"),
            Some(&text("Maria Hoffmann"))
        );
        assert_eq!(event.post_image, None);
    }

    #[test]
    fn a_deactivated_contact_arrives_as_an_update_of_state_and_status() {
        let event = parse("contact-deactivate.json");

        assert_eq!(event.message, CrmMessage::Update);
        assert_eq!(event.target.get("statecode"), Some(&AttrValue::Choice(1)));
        assert_eq!(event.target.get("statuscode"), Some(&AttrValue::Choice(2)));
        assert_eq!(
            event
                .value_before("statecode")
                .and_then(AttrValue::as_choice),
            Some(0)
        );
        assert_eq!(
            event.value_after("emailaddress1"),
            Some(&text("tom.becker@northwind.de"))
        );
    }

    #[test]
    fn a_lead_email_change_has_the_old_and_the_new_address() {
        let event = parse("lead-update-email.json");

        assert_eq!(event.entity, "lead");
        assert_eq!(event.record_id, "8d9e0f1a-2b3c-ef11-8409-000d3a4b7c21");
        assert_eq!(
            event.value_before("emailaddress1"),
            Some(&text("lena.wagner@adventure-works.de"))
        );
        assert_eq!(
            event.value_after("emailaddress1"),
            Some(&text("l.wagner@adventure-works.de"))
        );
        assert_eq!(
            event
                .post_image
                .as_ref()
                .and_then(|img| img.get("companyname")),
            Some(&text("Adventure Works AG"))
        );
    }

    #[test]
    fn an_account_primary_contact_change_names_the_old_and_the_new_contact() {
        let event = parse("account-primarycontact-changed.json");

        assert_eq!(event.entity, "account");
        let before = event
            .value_before("primarycontactid")
            .and_then(AttrValue::as_reference);
        let after = event
            .value_after("primarycontactid")
            .and_then(AttrValue::as_reference);
        assert_eq!(
            before,
            Some(record("contact", "aa11bb22-3c4d-ef11-8409-000d3a4b7c21"))
        );
        assert_eq!(
            after,
            Some(record("contact", "bb22cc33-4d5e-ef11-8409-000d3a4b7c21"))
        );
    }

    #[test]
    fn adding_one_list_member_names_the_list_and_the_member() {
        let event = parse("list-addmember.json");

        assert_eq!(event.message, CrmMessage::AddMember);
        assert_eq!(event.entity, "list");
        assert_eq!(event.record_id, "c1d2e3f4-5a6b-ef11-8409-000d3a4b7c21");
        assert_eq!(
            event.related,
            vec![record("", "d2e3f4a5-6b7c-ef11-8409-000d3a4b7c21")]
        );
    }

    #[test]
    fn adding_many_list_members_names_every_member() {
        let event = parse("list-addlistmembers.json");

        assert_eq!(event.message, CrmMessage::AddListMembers);
        assert_eq!(event.record_id, "c1d2e3f4-5a6b-ef11-8409-000d3a4b7c21");
        assert_eq!(
            event.related,
            vec![
                record("", "d2e3f4a5-6b7c-ef11-8409-000d3a4b7c21"),
                record("", "e3f4a5b6-7c8d-ef11-8409-000d3a4b7c21"),
                record("", "f4a5b6c7-8d9e-ef11-8409-000d3a4b7c21"),
            ]
        );
    }

    #[test]
    fn removing_a_list_member_names_the_removed_member() {
        let event = parse("list-removemember.json");

        assert_eq!(event.message, CrmMessage::RemoveMember);
        assert_eq!(event.record_id, "c1d2e3f4-5a6b-ef11-8409-000d3a4b7c21");
        assert_eq!(
            event.related,
            vec![record("", "e3f4a5b6-7c8d-ef11-8409-000d3a4b7c21")]
        );
    }

    #[test]
    fn a_dynamic_list_query_change_carries_the_new_fetchxml() {
        let event = parse("list-query-updated.json");

        assert_eq!(event.entity, "list");
        assert!(event.touched("query"));
        let query = event
            .target
            .get("query")
            .and_then(AttrValue::as_text)
            .expect("query text");
        assert!(query.starts_with("<fetch version=\"1.0\""), "{query}");
        assert!(
            query.ends_with("</entity></fetch>"),
            "escaped slashes are decoded: {query}"
        );
        let post = event.post_image.as_ref().expect("post image");
        assert_eq!(post.get("type"), Some(&AttrValue::Bool(true)));
        assert_eq!(post.get("createdfromcode"), Some(&AttrValue::Choice(2)));
    }

    #[test]
    fn adding_a_list_to_a_campaign_names_the_list() {
        let event = parse("campaign-additem.json");

        assert_eq!(event.message, CrmMessage::AddItem);
        assert_eq!(event.entity, "campaign");
        assert_eq!(event.record_id, "e1f2a3b4-92a3-ef11-8409-000d3a4b7c21");
        assert_eq!(
            event.related,
            vec![record("list", "c1d2e3f4-5a6b-ef11-8409-000d3a4b7c21")]
        );
    }

    #[test]
    fn adding_a_list_to_a_campaign_activity_names_the_list_by_item_id() {
        let event = parse("campaignactivity-additem.json");

        assert_eq!(event.message, CrmMessage::AddItem);
        assert_eq!(event.entity, "campaignactivity");
        assert_eq!(event.record_id, "f2a3b4c5-a3b4-ef11-8409-000d3a4b7c21");
        assert_eq!(
            event.related,
            vec![record("list", "c1d2e3f4-5a6b-ef11-8409-000d3a4b7c21")]
        );
    }

    #[test]
    fn removing_a_list_from_a_campaign_activity_names_the_removed_list() {
        let event = parse("campaignactivity-removeitem.json");

        assert_eq!(event.message, CrmMessage::RemoveItem);
        assert_eq!(event.record_id, "f2a3b4c5-a3b4-ef11-8409-000d3a4b7c21");
        assert_eq!(
            event.related,
            vec![record("list", "d0e1f2a3-8192-ef11-8409-000d3a4b7c21")]
        );
    }

    #[test]
    fn an_oversized_body_still_names_the_record_and_says_it_was_cut() {
        let event = parse_change_event(&read("contact-update-size-exceeded.json"), true).unwrap();

        assert!(event.size_exceeded);
        assert_eq!(event.message, CrmMessage::Update);
        assert_eq!(event.entity, "contact");
        assert_eq!(event.record_id, "0b1c2d3e-4f5a-ef11-8409-000d3a4b7c21");
        assert_eq!(event.operation_id, "b4c5d6e7-c5d6-ef11-8409-000d3a4b7c22");
        assert!(event.target.is_empty());
        assert!(event.related.is_empty());
        assert_eq!((event.pre_image, event.post_image), (None, None));
    }

    #[test]
    fn a_body_without_input_parameters_counts_as_cut_even_without_the_header() {
        let event = parse("contact-update-size-exceeded.json");
        assert!(event.size_exceeded);
    }

    #[test]
    fn the_size_header_on_a_full_body_drops_parameters_and_images() {
        let event = parse_change_event(&read("contact-create.json"), true).unwrap();

        assert!(event.size_exceeded);
        assert_eq!(event.record_id, "2b9e7c41-5d3a-ef11-8409-000d3a4b7c21");
        assert!(event.target.is_empty());
        assert_eq!(event.post_image, None);
    }

    #[test]
    fn the_connectors_own_write_carries_its_tag() {
        let event = parse("contact-update-by-connector.json");

        assert_eq!(event.tag.as_deref(), Some("cleverreach-connector"));
        assert_eq!(
            event.initiating_user_id,
            "f0e1d2c3-2b7c-ef11-8409-000d3a4b7c21"
        );
        assert_eq!(
            event.target.get("donotbulkemail"),
            Some(&AttrValue::Bool(true))
        );
    }

    /// What each malformed sample's error must mention.
    const MALFORMED: &[(&str, &str)] = &[
        (
            "malformed-not-json.json",
            "webhook body is not JSON: EOF while parsing",
        ),
        (
            "malformed-missing-primaryentityid.json",
            "PrimaryEntityId is missing",
        ),
        (
            "malformed-bad-guid.json",
            "PrimaryEntityId is not a GUID: \"6d81597f-0f9f-e711-8122-000d3aa2331\"",
        ),
    ];

    #[test]
    fn every_sample_parses_and_every_malformed_sample_is_refused_with_its_reason() {
        let mut names: Vec<String> = std::fs::read_dir(samples_dir())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".json"))
            .collect();
        names.sort();
        let (mut parsed, mut refused) = (0, 0);
        for name in &names {
            let result = parse_change_event(&read(name), false);
            if name.starts_with("malformed-") {
                let (_, expected) = MALFORMED
                    .iter()
                    .find(|(file, _)| file == name)
                    .unwrap_or_else(|| panic!("{name}: add the expected error to MALFORMED"));
                let err = result.expect_err(name).to_string();
                assert!(err.contains(expected), "{name}: {err}");
                refused += 1;
            } else {
                let event = result.unwrap_or_else(|err| panic!("{name}: {err}"));
                assert!(!event.record_id.is_empty(), "{name}");
                parsed += 1;
            }
        }
        assert_eq!(refused, MALFORMED.len());
        assert!(parsed >= 15, "only {parsed} samples parsed");
    }

    #[test]
    fn a_refused_body_is_not_worth_retrying() {
        use shared::error::Retryable;
        let err: WebhookError =
            parse_change_event(&read("malformed-bad-guid.json"), false).unwrap_err();
        assert!(!err.is_retryable());
    }
}
