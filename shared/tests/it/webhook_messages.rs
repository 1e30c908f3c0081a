//! Webhook bodies that vary one thing at a time: encodings, fallbacks, alternative shapes, and the
//! errors that name what is wrong.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

// Grouped under `webhook` so that `cargo test -p shared webhook` selects these tests.
mod webhook {
    use serde_json::{Value, json};
    use shared::adapters::dataverse::webhook::{MAX_NESTING, parse_change_event};
    use shared::domain::change::{AttrValue, ChangeEvent, CrmMessage, RecordRef};

    const SAMPLE: &str = include_str!("../../../events/webhook-intake/contact-update.json");
    const LIST: &str = "c1d2e3f4-5a6b-ef11-8409-000d3a4b7c21";
    const CONTACT: &str = "d2e3f4a5-6b7c-ef11-8409-000d3a4b7c21";
    const EMPTY: &str = "00000000-0000-0000-0000-000000000000";

    fn sample() -> Value {
        serde_json::from_str(SAMPLE).unwrap()
    }

    fn parse(body: &Value) -> ChangeEvent {
        parse_change_event(&serde_json::to_vec(body).unwrap(), false)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    fn refuse(body: &Value) -> String {
        match parse_change_event(&serde_json::to_vec(body).unwrap(), false) {
            Ok(event) => panic!("parsed: {event:?}"),
            Err(err) => err.to_string(),
        }
    }

    fn kv(key: &str, value: Value) -> Value {
        json!({"key": key, "value": value})
    }

    fn reference(entity: &str, id: &str) -> Value {
        json!({
            "__type": "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts",
            "Id": id, "KeyAttributes": [], "LogicalName": entity, "Name": null, "RowVersion": null
        })
    }

    /// A body for a list or campaign message, built from the sample's envelope.
    fn message(name: &str, entity: &str, id: &str, params: Vec<Value>) -> Value {
        let mut body = sample();
        body["MessageName"] = json!(name);
        body["PrimaryEntityName"] = json!(entity);
        body["PrimaryEntityId"] = json!(id);
        body["InputParameters"] = Value::Array(params);
        body["PostEntityImages"] = json!([]);
        body["ParentContext"] = Value::Null;
        body
    }

    fn record(entity: &str, id: &str) -> RecordRef {
        RecordRef {
            entity: entity.into(),
            id: id.into(),
        }
    }

    #[test]
    fn a_leading_byte_order_mark_is_tolerated() {
        let mut body = b"\xEF\xBB\xBF".to_vec();
        body.extend_from_slice(SAMPLE.as_bytes());
        let event = parse_change_event(&body, false).unwrap();
        assert_eq!(event.entity, "contact");
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_byte_offset() {
        let mut body = SAMPLE.as_bytes().to_vec();
        body[100] = 0xFF;
        let err = parse_change_event(&body, false).unwrap_err().to_string();
        assert_eq!(err, "webhook body is not UTF-8: invalid byte at offset 100");

        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(&body);
        let err = parse_change_event(&with_bom, false)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "webhook body is not UTF-8: invalid byte at offset 103");
    }

    #[test]
    fn a_body_that_is_not_an_object_is_refused() {
        assert_eq!(
            refuse(&json!([1, 2])),
            "webhook body is not a JSON object: [1,2]"
        );
        let err = parse_change_event(b"", false).unwrap_err().to_string();
        assert!(err.starts_with("webhook body is not JSON"), "{err}");
    }

    #[test]
    fn each_required_field_is_named_when_missing() {
        for field in [
            "MessageName",
            "PrimaryEntityName",
            "PrimaryEntityId",
            "CorrelationId",
        ] {
            let mut body = sample();
            body.as_object_mut().unwrap().remove(field);
            assert_eq!(refuse(&body), format!("{field} is missing"));
        }
    }

    fn operation_of(body: &serde_json::Value) -> String {
        parse_change_event(body.to_string().as_bytes(), false)
            .unwrap()
            .operation_id
    }

    #[test]
    fn a_change_without_an_operation_id_gets_one_from_its_content() {
        let mut with_id = sample();
        with_id["OperationId"] = json!("4AF10637-4EA2-E711-8122-000D3AA2331C");
        assert_eq!(
            operation_of(&with_id),
            "4af10637-4ea2-e711-8122-000d3aa2331c"
        );
        let mut ids = Vec::new();
        for empty in [
            json!("00000000-0000-0000-0000-000000000000"),
            json!(""),
            serde_json::Value::Null,
        ] {
            let mut body = sample();
            body["OperationId"] = empty;
            ids.push(operation_of(&body));
        }
        let mut missing = sample();
        missing.as_object_mut().unwrap().remove("OperationId");
        ids.push(operation_of(&missing));
        assert!(ids[0].starts_with("content-"), "{}", ids[0]);
        assert!(
            ids.iter().all(|id| *id == ids[0]),
            "the same change, however the id is missing: {ids:?}"
        );
        // Another change of the same record (a later time, another value) gets another id.
        let mut later = missing.clone();
        later["OperationCreatedOn"] = json!("/Date(1506409449000-0700)/");
        assert_ne!(operation_of(&later), ids[0]);
        let other_value = serde_json::from_str::<serde_json::Value>(
            &missing.to_string().replace("\"James\"", "\"Jim\""),
        )
        .unwrap();
        assert_ne!(operation_of(&other_value), ids[0]);
        // A malformed id is still refused.
        let mut bad = sample();
        bad["OperationId"] = json!("nope");
        assert_eq!(refuse(&bad), "OperationId is not a GUID: \"nope\"");
    }

    #[test]
    fn a_wrongly_typed_field_is_named_with_what_was_found() {
        let mut body = sample();
        body["MessageName"] = json!(5);
        assert_eq!(refuse(&body), "MessageName is not a string: 5");

        let mut body = sample();
        body["PrimaryEntityId"] = json!("xyz");
        assert_eq!(refuse(&body), "PrimaryEntityId is not a GUID: \"xyz\"");

        let mut body = sample();
        body["Depth"] = json!("one");
        assert_eq!(refuse(&body), "Depth is not an integer: \"one\"");

        let mut body = sample();
        body["OperationCreatedOn"] = json!("yesterday");
        assert_eq!(
            refuse(&body),
            "OperationCreatedOn is not a /Date(ms)/ date: \"yesterday\""
        );

        let mut body = sample();
        body["InputParameters"] = json!("Target");
        assert_eq!(
            refuse(&body),
            "InputParameters is not a key/value array: \"Target\""
        );
    }

    #[test]
    fn a_broken_attribute_is_named_by_its_path() {
        let mut body = sample();
        body["InputParameters"][0]["value"]["Attributes"][5]["value"]["Id"] = json!("not-a-guid");
        assert_eq!(
            refuse(&body),
            "InputParameters[\"Target\"].Attributes[\"modifiedby\"].Id is not a GUID: \"not-a-guid\""
        );
    }

    #[test]
    fn a_target_that_is_no_row_is_refused_for_an_update() {
        let mut body = sample();
        body["InputParameters"][0]["value"] = json!(42);
        assert_eq!(
            refuse(&body),
            "InputParameters[\"Target\"] is not an Entity or EntityReference: 42"
        );
    }

    #[test]
    fn guids_are_lower_cased_and_braces_dropped() {
        let mut body = sample();
        body["PrimaryEntityId"] = json!("{6D81597F-0F9F-E711-8122-000D3AA2331C}");
        body["UserId"] = json!("11BB11BB-CC22-DD33-EE44-55FF55FF55FF");
        body["OperationId"] = json!("4AF10637-4EA2-E711-8122-000D3AA2331C");
        let event = parse(&body);
        assert_eq!(event.record_id, "6d81597f-0f9f-e711-8122-000d3aa2331c");
        assert_eq!(event.user_id, "11bb11bb-cc22-dd33-ee44-55ff55ff55ff");
        assert_eq!(event.operation_id, "4af10637-4ea2-e711-8122-000d3aa2331c");
    }

    #[test]
    fn optional_fields_may_be_missing() {
        let mut body = sample();
        let object = body.as_object_mut().unwrap();
        for field in [
            "UserId",
            "InitiatingUserId",
            "OrganizationId",
            "OrganizationName",
            "OperationCreatedOn",
            "Depth",
        ] {
            object.remove(field);
        }
        let event = parse(&body);
        assert_eq!(event.user_id, "");
        assert_eq!(event.occurred_at_ms, None);
        assert_eq!(event.depth, 0);
    }

    #[test]
    fn an_iso_operation_date_is_accepted_too() {
        let mut body = sample();
        body["OperationCreatedOn"] = json!("2017-09-26T06:44:08Z");
        assert_eq!(parse(&body).occurred_at_ms, Some(1_506_408_248_000));
    }

    #[test]
    fn a_member_message_without_primary_id_takes_the_list_id() {
        let body = message(
            "AddMember",
            "list",
            EMPTY,
            vec![kv("ListId", json!(LIST)), kv("EntityId", json!(CONTACT))],
        );
        let event = parse(&body);
        assert_eq!(event.record_id, LIST);
        assert_eq!(event.related, vec![record("", CONTACT)]);

        let mut body = body;
        body.as_object_mut().unwrap().remove("PrimaryEntityId");
        assert_eq!(parse(&body).record_id, LIST);
    }

    #[test]
    fn an_update_of_the_empty_guid_is_refused() {
        let mut body = sample();
        body["PrimaryEntityId"] = json!(EMPTY);
        assert_eq!(
            refuse(&body),
            format!("PrimaryEntityId is not a non-empty GUID: \"{EMPTY}\"")
        );
    }

    #[test]
    fn a_member_message_without_any_list_id_is_refused() {
        let body = message(
            "RemoveMember",
            "list",
            EMPTY,
            vec![kv("EntityId", json!(CONTACT))],
        );
        assert_eq!(
            refuse(&body),
            "PrimaryEntityId is missing or empty and InputParameters has no ListId"
        );
    }

    #[test]
    fn an_item_message_without_primary_id_takes_the_campaign_or_activity_id() {
        let campaign = "e1f2a3b4-92a3-ef11-8409-000d3a4b7c21";
        let body = message(
            "RemoveItem",
            "campaign",
            EMPTY,
            vec![
                kv("CampaignId", json!(campaign)),
                kv("EntityId", json!(LIST)),
                kv("EntityName", json!("list")),
            ],
        );
        let event = parse(&body);
        assert_eq!(event.record_id, campaign);
        assert_eq!(event.related, vec![record("list", LIST)]);

        let activity = "f2a3b4c5-a3b4-ef11-8409-000d3a4b7c21";
        let body = message(
            "AddItem",
            "campaignactivity",
            EMPTY,
            vec![
                kv("CampaignActivityId", json!(activity)),
                kv("ItemId", json!(LIST)),
                kv("EntityName", json!("list")),
            ],
        );
        assert_eq!(parse(&body).record_id, activity);
    }

    #[test]
    fn a_member_message_without_its_member_is_refused() {
        let body = message("AddMember", "list", LIST, vec![kv("ListId", json!(LIST))]);
        assert_eq!(refuse(&body), "InputParameters[\"EntityId\"] is missing");
    }

    #[test]
    fn member_ids_may_be_entity_references_or_upper_case_guids() {
        let body = message(
            "AddListMembers",
            "list",
            LIST,
            vec![
                kv("ListId", json!(LIST)),
                kv(
                    "MemberIds",
                    json!([
                        reference("lead", CONTACT),
                        "E3F4A5B6-7C8D-EF11-8409-000D3A4B7C21"
                    ]),
                ),
            ],
        );
        assert_eq!(
            parse(&body).related,
            vec![
                record("lead", CONTACT),
                record("", "e3f4a5b6-7c8d-ef11-8409-000d3a4b7c21")
            ]
        );
    }

    #[test]
    fn a_bad_member_id_is_named_by_its_index() {
        let body = message(
            "AddListMembers",
            "list",
            LIST,
            vec![
                kv("ListId", json!(LIST)),
                kv("MemberIds", json!([CONTACT, "nope"])),
            ],
        );
        assert_eq!(
            refuse(&body),
            "InputParameters[\"MemberIds\"][1] is not a GUID: \"nope\""
        );
    }

    #[test]
    fn associate_names_the_related_rows_as_an_array_or_a_collection() {
        let campaign = "e1f2a3b4-92a3-ef11-8409-000d3a4b7c21";
        let relationship = json!({
            "__type": "Relationship:http://schemas.microsoft.com/xrm/2011/Contracts",
            "PrimaryEntityRole": null, "SchemaName": "campaignlist_association"
        });
        let array = message(
            "Associate",
            "campaign",
            campaign,
            vec![
                kv("Target", reference("campaign", campaign)),
                kv("Relationship", relationship.clone()),
                kv("RelatedEntities", json!([reference("list", LIST)])),
            ],
        );
        let event = parse(&array);
        assert_eq!(event.message, CrmMessage::Associate);
        assert!(event.target.is_empty());
        assert_eq!(event.related, vec![record("list", LIST)]);

        let collection = message(
            "Disassociate",
            "campaign",
            campaign,
            vec![
                kv("Target", reference("campaign", campaign)),
                kv("Relationship", relationship),
                kv(
                    "RelatedEntities",
                    json!({"__type": "EntityReferenceCollection:http://schemas.microsoft.com/xrm/2011/Contracts",
                       "Entities": [reference("list", LIST)]}),
                ),
            ],
        );
        assert_eq!(parse(&collection).related, vec![record("list", LIST)]);
    }

    #[test]
    fn associate_registered_without_a_table_takes_the_target_row() {
        let campaign = "e1f2a3b4-92a3-ef11-8409-000d3a4b7c21";
        let body = message(
            "Associate",
            "none",
            EMPTY,
            vec![
                kv("Target", reference("campaign", campaign)),
                kv("RelatedEntities", json!([reference("list", LIST)])),
            ],
        );
        let event = parse(&body);
        assert_eq!(event.entity, "campaign");
        assert_eq!(event.record_id, campaign);
    }

    #[test]
    fn a_registered_image_wins_over_the_automatic_one() {
        let mut body = sample();
        body["PostEntityImages"] = json!([
            kv(
                "AsynchronousStepPrimaryName",
                json!({"Attributes": [kv("fullname", json!("Old Name")), kv("contactid", json!("6d81597f-0f9f-e711-8122-000d3aa2331c"))]})
            ),
            kv(
                "PostImage",
                json!({"Attributes": [kv("fullname", json!("New Name")), kv("emailaddress1", json!("new@example.com"))]})
            ),
        ]);
        let post = parse(&body).post_image.unwrap();
        assert_eq!(
            post.get("fullname"),
            Some(&AttrValue::Text("New Name".into()))
        );
        assert_eq!(
            post.get("emailaddress1"),
            Some(&AttrValue::Text("new@example.com".into()))
        );
        assert!(
            post.contains_key("contactid"),
            "the automatic image still fills gaps"
        );
    }

    #[test]
    fn parameters_as_a_plain_object_are_accepted() {
        let mut body = sample();
        let target = body["InputParameters"][0]["value"].clone();
        body["InputParameters"] = json!({"Target": target});
        assert_eq!(
            parse(&body).target.get("firstname"),
            Some(&AttrValue::Text("James".into()))
        );
    }

    #[test]
    fn a_tag_in_the_shared_variables_is_kept() {
        let mut body = sample();
        body["SharedVariables"] = json!([kv("tag", json!("cleverreach-connector"))]);
        assert_eq!(parse(&body).tag.as_deref(), Some("cleverreach-connector"));
    }

    #[test]
    fn a_tag_of_a_parent_operation_on_another_row_is_not_this_changes_tag() {
        let mut body = sample();
        body["ParentContext"]["SharedVariables"] =
            json!([kv("tag", json!("cleverreach-connector"))]);
        assert_eq!(parse(&body).tag.as_deref(), Some("cleverreach-connector"));

        body["ParentContext"]["PrimaryEntityName"] = json!("account");
        assert_eq!(parse(&body).tag, None);
    }

    #[test]
    fn a_parent_chain_deeper_than_the_limit_is_refused() {
        let deep = |levels: usize| {
            let mut parent = Value::Null;
            for _ in 0..levels {
                let mut level = sample();
                level["ParentContext"] = parent;
                parent = level;
            }
            parent
        };
        // The sample at the bottom has no parent: levels - 1 parents.
        assert!(parse(&deep(MAX_NESTING + 1)).tag.is_none());
        assert_eq!(
            refuse(&deep(MAX_NESTING + 2)),
            format!("ParentContext nests deeper than {MAX_NESTING} levels")
        );
    }

    #[test]
    fn an_unknown_message_is_kept_by_name_and_unknown_fields_are_ignored() {
        let mut body = sample();
        body["MessageName"] = json!("Merge");
        body["InputParameters"] = json!([
            kv("Target", reference("contact", CONTACT)),
            kv("SubordinateId", json!(LIST))
        ]);
        body["SomethingNew"] = json!({"nested": [1, 2, {"x": null}]});
        let event = parse(&body);
        assert_eq!(event.message, CrmMessage::Other("Merge".into()));
        assert!(event.related.is_empty());
    }

    #[test]
    fn a_deeply_nested_value_is_refused_without_crashing() {
        let mut text = String::from("{\"MessageName\":");
        text.push_str(&"[".repeat(100_000));
        let err = parse_change_event(text.as_bytes(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("recursion limit"), "{err}");
    }
}
