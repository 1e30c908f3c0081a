//! The Dataverse simulator as a plain org and its customization Web API: columns that were not
//! installed are refused with Dataverse's error, installed ones work; navigation properties are
//! case-sensitive; duplicate names, names without the publisher's prefix, labels in languages
//! the org lacks and type-specific properties read without a cast are refused; alternate keys
//! and column security hold.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// Test names start with `dataverse::` so that `cargo test -p sandbox dataverse` selects them.
mod dataverse {
    use reqwest::Method;
    use sandbox::dataverse::{self, DataverseSim, DataverseSimConfig, WebApi};
    use sandbox::provision::install_schema;
    use serde_json::{Value, json};
    use shared::adapters::dataverse::schema;

    async fn plain() -> DataverseSim {
        DataverseSim::spawn(DataverseSimConfig::default())
            .await
            .unwrap()
    }

    async fn installed() -> DataverseSim {
        let sim = plain().await;
        install_schema(&sim).await.unwrap();
        sim
    }

    fn label(text: &str, language: i64) -> Value {
        json!({"LocalizedLabels": [{"Label": text, "LanguageCode": language}]})
    }

    /// A text column body in the connector's solution.
    fn text_column(schema_name: &str, language: i64) -> Value {
        json!({
            "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
            "SchemaName": schema_name,
            "MaxLength": 100,
            "FormatName": {"Value": "Text"},
            "DisplayName": label("Extra", language),
            "RequiredLevel": {"Value": "None"}
        })
    }

    const IN_SOLUTION: (&str, &str) = ("MSCRM.SolutionUniqueName", schema::SOLUTION_UNIQUE_NAME);

    #[tokio::test]
    async fn a_write_to_a_column_that_was_not_installed_is_refused_and_works_once_installed() {
        let sim = plain().await;
        let admin = WebApi::admin(&sim).await.unwrap();
        let body = json!({"lastname": "Lovelace", "crc_checklist": "[]"});
        let refused = admin.post("contacts", &body).await.unwrap();
        assert_eq!(refused.status, 400, "{}", refused.text);
        assert_eq!(refused.body["error"]["code"], "0x80048d19");
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("The property 'crc_checklist' does not exist on type 'Microsoft.Dynamics.CRM.contact'"),
            "{message}"
        );
        assert!(sim.rows("contacts").is_empty(), "nothing was written");
        // Reads name it too.
        let read = admin.get("contacts?$select=crc_checklist").await.unwrap();
        assert_eq!(read.status, 400);
        assert!(read.text.contains("crc_checklist"), "{}", read.text);
        // The settings table does not exist in a plain org.
        assert_eq!(admin.get("crc_settings").await.unwrap().status, 404);

        install_schema(&sim).await.unwrap();
        let created = admin.post("contacts", &body).await.unwrap();
        assert_eq!(created.status, 204, "{}", created.text);
        assert_eq!(admin.get("crc_settings").await.unwrap().status, 200);
    }

    #[tokio::test]
    async fn a_lower_case_navigation_property_is_refused_as_undeclared() {
        let sim = installed().await;
        let admin = WebApi::admin(&sim).await.unwrap();
        let campaign = admin
            .create("campaigns", &json!({"name": "C"}))
            .await
            .unwrap();
        let activity = admin
            .create(
                "campaignactivities",
                &json!({"subject": "A", "regardingobjectid_campaign_campaignactivity@odata.bind": format!("/campaigns({campaign})")}),
            )
            .await
            .unwrap();
        let lead = admin
            .create("leads", &json!({"lastname": "L"}))
            .await
            .unwrap();
        let wrong = admin
            .patch(
                &format!("leads({lead})"),
                &json!({"crc_campaignactivityid@odata.bind": format!("/campaignactivities({activity})")}),
            )
            .await
            .unwrap();
        assert_eq!(wrong.status, 400, "{}", wrong.text);
        assert_eq!(wrong.body["error"]["code"], "0x80048d19");
        assert!(
            wrong.text.contains("An undeclared property 'crc_campaignactivityid' which only has property annotations"),
            "{}",
            wrong.text
        );
        let right = admin
            .patch(
                &format!("leads({lead})"),
                &json!({ format!("{}@odata.bind", schema::LEAD_CAMPAIGN_ACTIVITY_NAV): format!("/campaignactivities({activity})") }),
            )
            .await
            .unwrap();
        assert_eq!(right.status, 204, "{}", right.text);
        let row = sim.row("leads", &lead).unwrap();
        assert_eq!(row["_crc_campaignactivityid_value"], activity);
        // Deleting the activity keeps the lead and clears its lookup (RemoveLink).
        admin
            .delete(&format!("campaignactivities({activity})"))
            .await
            .unwrap();
        assert!(
            sim.row("leads", &lead)
                .unwrap()
                .get("_crc_campaignactivityid_value")
                .is_none()
        );
    }

    #[tokio::test]
    async fn duplicate_names_get_dataverses_duplicate_errors() {
        let sim = installed().await;
        let admin = WebApi::admin(&sim).await.unwrap();
        let again = admin
            .send(
                Method::POST,
                "EntityDefinitions(LogicalName='list')/Attributes",
                &[IN_SOLUTION],
                Some(&text_column("crc_GroupId", 1033)),
            )
            .await
            .unwrap();
        assert_eq!(again.status, 400, "{}", again.text);
        assert_eq!(again.body["error"]["code"], "0x80060304");
        assert!(
            again
                .text
                .contains("Attribute crc_GroupId already exists for entity list")
        );

        let table = admin
            .send(
                Method::POST,
                "EntityDefinitions",
                &[IN_SOLUTION],
                Some(&shared::adapters::dataverse::metadata::table_body(
                    &schema::TABLES[0],
                    &[1033],
                )),
            )
            .await
            .unwrap();
        assert_eq!(table.status, 400, "{}", table.text);
        assert_eq!(table.body["error"]["code"], "0x80047010");

        let relationship = admin
            .send(
                Method::POST,
                "RelationshipDefinitions",
                &[IN_SOLUTION],
                Some(&shared::adapters::dataverse::metadata::lookup_body(
                    &schema::LOOKUPS[0],
                    "activityid",
                    &[1033],
                )),
            )
            .await
            .unwrap();
        assert_eq!(relationship.status, 400, "{}", relationship.text);
        assert_eq!(relationship.body["error"]["code"], "0x80047010");
    }

    #[tokio::test]
    async fn a_schema_name_without_the_solution_publishers_prefix_is_refused() {
        let sim = installed().await;
        let admin = WebApi::admin(&sim).await.unwrap();
        let foreign = admin
            .send(
                Method::POST,
                "EntityDefinitions(LogicalName='contact')/Attributes",
                &[IN_SOLUTION],
                Some(&text_column("new_Extra", 1033)),
            )
            .await
            .unwrap();
        assert_eq!(foreign.status, 400, "{}", foreign.text);
        assert!(
            foreign
                .text
                .contains("must start with the customization prefix 'crc_'"),
            "{}",
            foreign.text
        );
        // Without the solution header the default publisher's prefix applies: crc_ is refused.
        let no_solution = admin
            .send(
                Method::POST,
                "EntityDefinitions(LogicalName='contact')/Attributes",
                &[],
                Some(&text_column("crc_Extra", 1033)),
            )
            .await
            .unwrap();
        assert_eq!(no_solution.status, 400, "{}", no_solution.text);
        assert!(no_solution.text.contains("'new_'"), "{}", no_solution.text);
        let unknown = admin
            .send(
                Method::POST,
                "EntityDefinitions(LogicalName='contact')/Attributes",
                &[("MSCRM.SolutionUniqueName", "NoSuchSolution")],
                Some(&text_column("crc_Extra", 1033)),
            )
            .await
            .unwrap();
        assert_eq!(unknown.status, 404, "{}", unknown.text);
    }

    #[tokio::test]
    async fn labels_need_a_language_the_org_has_and_a_documented_shape() {
        let sim = DataverseSim::spawn(DataverseSimConfig {
            languages: vec![1033],
            ..DataverseSimConfig::default()
        })
        .await
        .unwrap();
        install_schema(&sim).await.unwrap();
        let admin = WebApi::admin(&sim).await.unwrap();
        let german = admin
            .send(
                Method::POST,
                "EntityDefinitions(LogicalName='contact')/Attributes",
                &[IN_SOLUTION],
                Some(&text_column("crc_Extra", 1031)),
            )
            .await
            .unwrap();
        assert_eq!(german.status, 400, "{}", german.text);
        assert!(
            german
                .text
                .contains("The language code 1031 is not a valid language for this organization")
        );
        let mut no_level = text_column("crc_Extra", 1033);
        no_level.as_object_mut().unwrap().remove("RequiredLevel");
        let refused = admin
            .send(
                Method::POST,
                "EntityDefinitions(LogicalName='contact')/Attributes",
                &[IN_SOLUTION],
                Some(&no_level),
            )
            .await
            .unwrap();
        assert_eq!(refused.status, 400);
        assert!(refused.text.contains("RequiredLevel"), "{}", refused.text);
        let mut too_long = text_column("crc_Extra", 1033);
        too_long["MaxLength"] = json!(4001);
        let refused = admin
            .send(
                Method::POST,
                "EntityDefinitions(LogicalName='contact')/Attributes",
                &[IN_SOLUTION],
                Some(&too_long),
            )
            .await
            .unwrap();
        assert_eq!(refused.status, 400);
        assert!(refused.text.contains("MaxLength 4001"), "{}", refused.text);
    }

    #[tokio::test]
    async fn type_properties_are_read_through_a_cast_only() {
        let sim = installed().await;
        let admin = WebApi::admin(&sim).await.unwrap();
        let base = admin
            .get("EntityDefinitions(LogicalName='list')/Attributes?$select=LogicalName,MaxLength")
            .await
            .unwrap();
        assert_eq!(base.status, 400, "{}", base.text);
        assert!(
            base.text
                .contains("Could not find a property named 'MaxLength'")
        );
        let cast = admin
            .get("EntityDefinitions(LogicalName='list')/Attributes/Microsoft.Dynamics.CRM.StringAttributeMetadata?$select=LogicalName,MaxLength")
            .await
            .unwrap();
        assert_eq!(cast.status, 200, "{}", cast.text);
        let status = cast.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["LogicalName"] == schema::SYNC_STATUS)
            .unwrap()
            .clone();
        assert_eq!(status["MaxLength"], schema::SYNC_STATUS_MAX);
        assert_eq!(
            status["@odata.type"],
            "#Microsoft.Dynamics.CRM.StringAttributeMetadata"
        );
    }

    #[tokio::test]
    async fn a_second_row_with_the_same_alternate_key_is_refused() {
        let sim = installed().await;
        let admin = WebApi::admin(&sim).await.unwrap();
        let row = json!({"crc_key": "cleverreach:groupsettings:groupprefix", "crc_value": "A"});
        admin.create("crc_settings", &row).await.unwrap();
        let again = admin.post("crc_settings", &row).await.unwrap();
        assert_eq!(again.status, 412, "{}", again.text);
        assert_eq!(again.body["error"]["code"], "0x80060892");
        assert_eq!(sim.rows("crc_settings").len(), 1);
    }

    #[tokio::test]
    async fn only_holders_of_the_field_security_profile_may_start_a_retroactive_sync() {
        let mut config = DataverseSimConfig::default();
        config.clients.push(dataverse::SimClient {
            client_id: "c0c0c0c0-0000-4000-8000-000000000004".into(),
            client_secret: "sandbox-marketer-secret".into(),
            user_id: "aaaaaaaa-0000-4000-8000-000000000004".into(),
            name: "marketer".into(),
            roles: vec!["Basic User".into()],
        });
        let sim = DataverseSim::spawn(config).await.unwrap();
        install_schema(&sim).await.unwrap();
        let admin = WebApi::admin(&sim).await.unwrap();
        let list = admin
            .create(
                "lists",
                &json!({"listname": "L", "createdfromcode": 2, "type": false}),
            )
            .await
            .unwrap();
        let marketer = WebApi::connect(
            &sim,
            "c0c0c0c0-0000-4000-8000-000000000004",
            "sandbox-marketer-secret",
        )
        .await
        .unwrap();
        let start = json!({ schema::RETROACTIVE_SYNC: true });
        let refused = marketer
            .patch(&format!("lists({list})"), &start)
            .await
            .unwrap();
        assert_eq!(refused.status, 403, "{}", refused.text);
        assert_eq!(refused.body["error"]["code"], "0x80040220");
        assert!(refused.text.contains("crc_retroactivesync"));
        // Other columns of the list stay writable for them.
        let other = marketer
            .patch(&format!("lists({list})"), &json!({"listname": "Renamed"}))
            .await
            .unwrap();
        assert_eq!(other.status, 204, "{}", other.text);
        // The connector's user is in the profile (installer --app-user); administrators are too.
        let connector = WebApi::connector(&sim).await.unwrap();
        let reset = connector
            .patch(
                &format!("lists({list})"),
                &json!({ schema::RETROACTIVE_SYNC: false }),
            )
            .await
            .unwrap();
        assert_eq!(reset.status, 204, "{}", reset.text);
        assert_eq!(
            admin
                .patch(&format!("lists({list})"), &start)
                .await
                .unwrap()
                .status,
            204
        );
    }
}
