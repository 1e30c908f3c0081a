//! What the back-flow (CleverReach → CRM) writes: checklists and deactivations of people,
//! receiver-state rows, sign-up leads and their memberships, and the jobs' cursors.

use super::rows::{checklist_text, person_table, text};
use super::{DataverseCrm, schema};
use crate::adapters::dataverse::client::{BatchRequest, DataverseError, filter};
use crate::domain::checklist::Checklist;
use crate::domain::ids::derived_id;
use crate::domain::recipient::{CrmRef, PersonEntity};
use crate::domain::source::SourceKind;
use crate::ports::crm::RowVersion;
use crate::ports::crm::{
    CrmError, CursorStore, NewLead, PersonRecord, PersonStore, ReceiverEvent, ReceiverStateLog,
    ReceiverStateRow, SignupStore,
};
use async_trait::async_trait;
use serde_json::{Map, Value, json};

#[async_trait]
impl PersonStore for DataverseCrm {
    async fn person(&self, person: &CrmRef) -> Result<Option<PersonRecord>, CrmError> {
        let (_, set, key) = person_table(person.entity);
        let Some(row) = self
            .client
            .retrieve::<Value>(
                set,
                &filter::guid(&person.id)?,
                &[key, "emailaddress1", schema::STATECODE, schema::CHECKLIST],
            )
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(PersonRecord {
            person: person.clone(),
            email: text(&row, "emailaddress1"),
            // statecode 0 is "active" for contacts and "open" for leads.
            active: row
                .get(schema::STATECODE)
                .and_then(Value::as_i64)
                .map(|code| code == 0),
            checklist: checklist_text(&row).to_string(),
            version: text(&row, "@odata.etag").map(RowVersion),
        }))
    }

    async fn write_checklist(
        &self,
        person: &CrmRef,
        checklist: &Checklist,
    ) -> Result<(), CrmError> {
        let (_, set, _) = person_table(person.entity);
        self.client
            .update(
                set,
                &person.id,
                &json!({ schema::CHECKLIST: checklist.to_json() }),
            )
            .await?;
        Ok(())
    }

    /// With a version: a one-request `$batch` whose part carries `If-Match` (412 = someone
    /// wrote in between: a marketer saving the form, another event of the same person).
    async fn write_checklist_if(
        &self,
        person: &CrmRef,
        checklist: &Checklist,
        version: Option<&RowVersion>,
    ) -> Result<bool, CrmError> {
        let Some(version) = version else {
            self.write_checklist(person, checklist).await?;
            return Ok(true);
        };
        let (_, set, _) = person_table(person.entity);
        let id = filter::guid(&person.id)?;
        let request = BatchRequest::new(reqwest::Method::PATCH, format!("{set}({id})"))
            .with_body(json!({ schema::CHECKLIST: checklist.to_json() }))
            .with_header("If-Match", version.0.clone());
        let results = self.client.batch(vec![request]).await?;
        match results.into_iter().next() {
            Some(part) if part.is_success() => Ok(true),
            Some(part) if part.status == 412 => Ok(false),
            Some(part) => Err(part.to_error(&format!("PATCH {set}")).into()),
            None => Err(CrmError::Invalid {
                what: "the $batch answer".into(),
                problem: "it has no part".into(),
            }),
        }
    }

    /// A contact becomes inactive; a lead disqualified with "cannot contact".
    async fn deactivate_person(&self, person: &CrmRef) -> Result<(), CrmError> {
        let (_, set, _) = person_table(person.entity);
        let body = match person.entity {
            PersonEntity::Contact => json!({ schema::STATECODE: 1, schema::STATUSCODE: 2 }),
            PersonEntity::Lead => json!({ schema::STATECODE: 2, schema::STATUSCODE: 5 }),
        };
        self.client.update(set, &person.id, &body).await?;
        Ok(())
    }
}

#[async_trait]
impl ReceiverStateLog for DataverseCrm {
    async fn receiver_state_exists(&self, id: &str) -> Result<bool, CrmError> {
        Ok(self
            .client
            .retrieve::<Value>(schema::RECEIVER_STATE_SET, id, &[schema::RECEIVER_STATE_ID])
            .await?
            .is_some())
    }

    async fn create_receiver_state(&self, row: &ReceiverStateRow) -> Result<bool, CrmError> {
        let mut body = json!({
            schema::RECEIVER_STATE_NAME: schema::fit(&row.name, schema::RECEIVER_STATE_NAME_MAX),
            schema::RECEIVER_STATE_KEY: row.event_key,
            schema::RECEIVER_STATE_EMAIL: row.email.as_str(),
            schema::RECEIVER_STATE_GROUP: row.group_id,
            schema::RECEIVER_STATE_EVENT: match row.event {
                ReceiverEvent::Unsubscribed => schema::EVENT_UNSUBSCRIBED,
                ReceiverEvent::Bounced => schema::EVENT_BOUNCED,
            },
            schema::RECEIVER_STATE_TIME: row.time,
            schema::RECEIVER_STATE_DETAILS: schema::fit(&row.details, schema::RECEIVER_STATE_DETAILS_MAX),
        });
        if let (Some(person), Value::Object(map)) = (&row.recipient, &mut body) {
            let (navigation, set) = match person.entity {
                PersonEntity::Contact => (schema::RECEIVER_STATE_CONTACT_NAV, "contacts"),
                PersonEntity::Lead => (schema::RECEIVER_STATE_LEAD_NAV, "leads"),
            };
            map.insert(
                format!("{navigation}@odata.bind"),
                Value::String(format!("/{set}({})", filter::guid(&person.id)?)),
            );
        }
        match self
            .client
            .create_with_id(schema::RECEIVER_STATE_SET, &row.id, &body)
            .await
        {
            Ok(_) => Ok(true),
            Err(DataverseError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait]
impl SignupStore for DataverseCrm {
    async fn create_lead(&self, lead: &NewLead) -> Result<bool, CrmError> {
        let mut body = Map::new();
        body.insert("emailaddress1".into(), json!(lead.email.as_str()));
        body.insert("subject".into(), json!(schema::fit(&lead.subject, 300)));
        body.insert(schema::CHECKLIST.into(), json!(lead.checklist.to_json()));
        for (column, value, max) in [
            ("firstname", &lead.first_name, 50),
            ("lastname", &lead.last_name, 50),
            ("companyname", &lead.company, 100),
            ("salutation", &lead.salutation, 100),
        ] {
            let value = value.trim();
            if !value.is_empty() {
                body.insert(column.into(), json!(schema::fit(value, max)));
            }
        }
        match self
            .client
            .create_with_id("leads", &lead.id, &Value::Object(body))
            .await
        {
            Ok(_) => Ok(true),
            Err(DataverseError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// `AddMemberList`: a record that is a member already stays one, nothing is added twice.
    async fn add_list_member(&self, list_id: &str, member_id: &str) -> Result<(), CrmError> {
        let list_id = filter::guid(list_id)?;
        let member_id = filter::guid(member_id)?;
        self.client
            .execute_action(
                &format!("lists({list_id})/Microsoft.Dynamics.CRM.AddMemberList"),
                &json!({ "EntityId": member_id }),
            )
            .await?;
        Ok(())
    }

    /// Through the lead's lookups (`campaignid`, `crc_campaignactivityid`), in one update.
    /// Marketing lists are refused: a lead joins a list as a member.
    async fn link_lead(
        &self,
        lead_id: &str,
        links: &[(SourceKind, String)],
    ) -> Result<(), CrmError> {
        let mut body = Map::new();
        for (kind, source_id) in links {
            let lookup = match kind {
                SourceKind::Campaign => schema::LEAD_CAMPAIGN_NAV,
                SourceKind::CampaignActivity => schema::LEAD_CAMPAIGN_ACTIVITY_NAV,
                SourceKind::MarketingList => {
                    return Err(CrmError::Invalid {
                        what: format!("the link of lead {lead_id} to marketing list {source_id}"),
                        problem: "a lead joins a list as a member, not through a lookup".into(),
                    });
                }
            };
            body.insert(
                format!("{lookup}@odata.bind"),
                json!(format!(
                    "/{}({})",
                    kind.entity_set(),
                    filter::guid(source_id)?
                )),
            );
        }
        if body.is_empty() {
            return Ok(());
        }
        self.client
            .update("leads", &filter::guid(lead_id)?, &Value::Object(body))
            .await?;
        Ok(())
    }
}

/// A cursor is a row of the settings table whose id is derived from its key, so reading it
/// is one retrieve and saving it one upsert.
fn cursor_row_id(key: &str) -> String {
    derived_id("cursor", &[key])
}

#[async_trait]
impl CursorStore for DataverseCrm {
    async fn cursor(&self, key: &str) -> Result<Option<String>, CrmError> {
        Ok(self
            .client
            .retrieve::<Value>(
                schema::SETTINGS_SET,
                &cursor_row_id(key),
                &[schema::SETTING_VALUE],
            )
            .await?
            .map(|row| text(&row, schema::SETTING_VALUE).unwrap_or_default()))
    }

    async fn save_cursor(&self, key: &str, value: &str) -> Result<(), CrmError> {
        self.client
            .upsert(
                schema::SETTINGS_SET,
                &cursor_row_id(key),
                &json!({ schema::SETTING_KEY: key, schema::SETTING_VALUE: value }),
            )
            .await?;
        Ok(())
    }
}
