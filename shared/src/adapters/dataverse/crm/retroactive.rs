//! The retroactive sync's reads and conditional writes: a list's bookkeeping written only if the
//! list is unchanged (`If-Match`), members' checklists read with their row versions and written
//! in `$batch` requests whose parts each carry `If-Match`.

use super::rows::{checklist_text, flag, id, person_table, text};
use super::{DataverseCrm, IDS_PER_FETCH, schema};
use crate::adapters::dataverse::client::{BatchPartResult, BatchRequest, FetchPages, filter};
use crate::domain::recipient::PersonEntity;
use crate::domain::source::SourceKind;
use crate::error::Retryable;
use crate::ports::crm::{
    ChecklistWrite, CrmError, RetroactiveColumns, RetroactiveStore, RetroactiveUpdate, RowVersion,
    StoredChecklist, WriteResult,
};
use async_trait::async_trait;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

fn version(row: &Value) -> Option<RowVersion> {
    text(row, "@odata.etag").map(RowVersion)
}

fn update_columns(update: &RetroactiveUpdate) -> Map<String, Value> {
    let mut columns = Map::new();
    if update.turn_off {
        columns.insert(schema::RETROACTIVE_SYNC.into(), Value::Bool(false));
    }
    if let Some(state) = &update.state {
        columns.insert(schema::RETROACTIVE_STATE.into(), json!(state));
    }
    if let Some(progress) = &update.progress {
        columns.insert(
            schema::RETROACTIVE_PROGRESS.into(),
            json!(schema::fit(progress, schema::RETROACTIVE_PROGRESS_MAX)),
        );
    }
    match &update.last_error {
        Some(Some(error)) => {
            columns.insert(
                schema::LAST_ERROR.into(),
                json!(schema::fit(error, schema::LAST_ERROR_MAX)),
            );
        }
        Some(None) => {
            columns.insert(schema::LAST_ERROR.into(), Value::Null);
        }
        None => {}
    }
    columns
}

fn write_result(part: BatchPartResult, entity: PersonEntity) -> WriteResult {
    if part.is_success() {
        return WriteResult::Written;
    }
    match part.status {
        412 => WriteResult::Stale,
        404 => WriteResult::Gone,
        _ => {
            let error = part.to_error(&format!("PATCH {entity}"));
            WriteResult::Failed {
                retryable: error.is_retryable(),
                reason: error.to_string(),
            }
        }
    }
}

#[async_trait]
impl RetroactiveStore for DataverseCrm {
    async fn retroactive_columns(
        &self,
        list_id: &str,
    ) -> Result<Option<RetroactiveColumns>, CrmError> {
        let row = self
            .client
            .retrieve::<Value>(
                SourceKind::MarketingList.entity_set(),
                list_id,
                &[
                    "listid",
                    schema::RETROACTIVE_SYNC,
                    schema::RETROACTIVE_SYNC_JSON,
                    schema::CHECKLIST,
                    schema::RETROACTIVE_STATE,
                ],
            )
            .await?;
        Ok(row.map(|row| RetroactiveColumns {
            requested: flag(&row, schema::RETROACTIVE_SYNC),
            checklist_json: text(&row, schema::RETROACTIVE_SYNC_JSON),
            list_checklist: text(&row, schema::CHECKLIST),
            state: text(&row, schema::RETROACTIVE_STATE),
            version: version(&row),
        }))
    }

    /// With a version, sent as a one-request `$batch` whose part carries `If-Match` (412 =
    /// someone wrote in between).
    async fn update_list(
        &self,
        list_id: &str,
        version: Option<&RowVersion>,
        update: &RetroactiveUpdate,
    ) -> Result<bool, CrmError> {
        let columns = update_columns(update);
        let Some(version) = version else {
            self.client
                .update(
                    SourceKind::MarketingList.entity_set(),
                    list_id,
                    &Value::Object(columns),
                )
                .await?;
            return Ok(true);
        };
        let id = filter::guid(list_id)?;
        let request = BatchRequest::new(reqwest::Method::PATCH, format!("lists({id})"))
            .with_body(Value::Object(columns))
            .with_header("If-Match", version.0.clone());
        let results = self.client.batch(vec![request]).await?;
        match results.into_iter().next() {
            Some(part) if part.is_success() => Ok(true),
            Some(part) if part.status == 412 => Ok(false),
            Some(part) => Err(part.to_error("PATCH lists").into()),
            None => Err(CrmError::Invalid {
                what: "the $batch answer".into(),
                problem: "it has no part".into(),
            }),
        }
    }

    /// One FetchXML request per 400 ids.
    async fn stored_checklists(
        &self,
        entity: PersonEntity,
        ids: &[String],
    ) -> Result<HashMap<String, StoredChecklist>, CrmError> {
        let (logical, set, key) = person_table(entity);
        let mut found = HashMap::new();
        for chunk in ids.chunks(IDS_PER_FETCH) {
            let mut values = String::new();
            for id in chunk {
                // Validated GUIDs only: nothing from data is pasted into the XML unchecked.
                let id = filter::guid(id)?;
                values.push_str(&format!("<value>{id}</value>"));
            }
            let fetch = format!(
                "<fetch><entity name=\"{logical}\"><attribute name=\"{key}\"/>\
                 <attribute name=\"{}\"/><order attribute=\"{key}\"/>\
                 <filter><condition attribute=\"{key}\" operator=\"in\">{values}</condition></filter>\
                 </entity></fetch>",
                schema::CHECKLIST
            );
            let mut pages: FetchPages<Value> = self.client.fetch_xml(set, &fetch);
            while let Some(page) = pages.next_page().await? {
                for row in page {
                    if let Some(id) = id(&row, key) {
                        found.insert(
                            id,
                            StoredChecklist {
                                checklist: checklist_text(&row).to_string(),
                                version: version(&row),
                            },
                        );
                    }
                }
            }
        }
        Ok(found)
    }

    /// One `$batch` (at most 1000): each `PATCH` only if the row is still at the version read,
    /// so a batch retried after a lost answer, or a person edited meanwhile, gives "stale" for
    /// that write instead of a second or blind write.
    async fn write_checklists(
        &self,
        entity: PersonEntity,
        writes: &[ChecklistWrite],
    ) -> Result<Vec<WriteResult>, CrmError> {
        let (_, set, _) = person_table(entity);
        let mut requests = Vec::with_capacity(writes.len());
        for write in writes {
            let mut request = BatchRequest::update(
                set,
                &write.id,
                json!({ schema::CHECKLIST: write.checklist }),
            )?;
            if let Some(version) = &write.version {
                request.headers.retain(|(name, _)| name != "If-Match");
                request = request.with_header("If-Match", version.0.clone());
            }
            requests.push(request);
        }
        let results = self.client.batch(requests).await?;
        Ok(results
            .into_iter()
            .map(|part| write_result(part, entity))
            .collect())
    }
}
