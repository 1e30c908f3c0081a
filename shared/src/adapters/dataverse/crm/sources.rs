//! The settings table and the sources (campaigns, campaign activities, marketing lists): read,
//! found by flag, group or linked list, and what the connector writes back on them.

use super::rows::{checklist_text, flag, id, list_shape, state_active, text};
use super::{DataverseCrm, schema};
use crate::adapters::dataverse::client::{Query, filter};
use crate::domain::checklist::Checklist;
use crate::domain::settings::{LoadedSettings, Settings};
use crate::domain::source::{GroupId, Source, SourceKind, SourceRecord};
use crate::ports::crm::{CrmError, ManagedSource, SettingsSource, SourceStatus, SourceStore};
use async_trait::async_trait;
use serde_json::{Map, Value, json};

#[async_trait]
impl SettingsSource for DataverseCrm {
    async fn load_settings(&self) -> Result<LoadedSettings, CrmError> {
        let mut pages = self.client.query::<Value>(
            schema::SETTINGS_SET,
            &Query::new().select([schema::SETTING_KEY, schema::SETTING_VALUE]),
        );
        let mut rows = Vec::new();
        while let Some(page) = pages.next_page().await? {
            for row in page {
                if let Some(key) = row.get(schema::SETTING_KEY).and_then(Value::as_str) {
                    let value = row
                        .get(schema::SETTING_VALUE)
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    rows.push((key.to_string(), value.to_string()));
                }
            }
        }
        Ok(Settings::from_rows(
            rows.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )?)
    }
}

impl DataverseCrm {
    /// Updates columns of a source.
    async fn update_source(
        &self,
        kind: SourceKind,
        id: &str,
        columns: Map<String, Value>,
    ) -> Result<(), CrmError> {
        self.client
            .update(kind.entity_set(), id, &Value::Object(columns))
            .await?;
        Ok(())
    }

    async fn ids_of_kind(&self, kind: SourceKind, filter: String) -> Result<Vec<String>, CrmError> {
        let rows = self
            .all_rows(
                kind.entity_set(),
                &Query::new().select([kind.primary_key()]).filter(filter),
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| id(r, kind.primary_key()))
            .collect())
    }

    /// The sources of every kind that match `filter`.
    async fn ids_of_every_kind(
        &self,
        filter: String,
    ) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let mut found = Vec::new();
        for kind in SourceKind::ALL {
            let ids = self.ids_of_kind(kind, filter.clone()).await?;
            found.extend(ids.into_iter().map(|i| (kind, i)));
        }
        Ok(found)
    }
}

#[async_trait]
impl SourceStore for DataverseCrm {
    async fn source(&self, kind: SourceKind, id: &str) -> Result<Option<SourceRecord>, CrmError> {
        let select = source_columns(kind);
        let Some(row) = self
            .client
            .retrieve::<Value>(kind.entity_set(), id, &select)
            .await?
        else {
            return Ok(None);
        };
        source_record(kind, id, &row).map(Some)
    }

    /// Inactive ones included: the worker turns their flag off, as a missed deactivation event
    /// would have.
    async fn synced_sources(&self, kind: SourceKind) -> Result<Vec<String>, CrmError> {
        self.ids_of_kind(kind, format!("{} eq true", schema::SYNC_FLAG))
            .await
    }

    async fn active_synced_sources(&self) -> Result<Vec<(SourceKind, String)>, CrmError> {
        self.ids_of_every_kind(format!("statecode eq 0 and {} eq true", schema::SYNC_FLAG))
            .await
    }

    async fn sources_with_group(
        &self,
        group_id: &str,
    ) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let filter = format!(
            "{} eq {}",
            schema::GROUP_ID,
            filter::string_literal(group_id)
        );
        self.ids_of_every_kind(filter).await
    }

    async fn sources_linking_list(
        &self,
        list_id: &str,
    ) -> Result<Vec<(SourceKind, String)>, CrmError> {
        let mut found = Vec::new();
        for (kind, set, column, key) in [
            (
                SourceKind::Campaign,
                "campaignitems",
                "entityid",
                "_campaignid_value",
            ),
            (
                SourceKind::CampaignActivity,
                "campaignactivityitems",
                "itemid",
                "_campaignactivityid_value",
            ),
        ] {
            let ids = self.ids_where(set, column, list_id, key).await?;
            found.extend(ids.into_iter().map(|i| (kind, i)));
        }
        Ok(found)
    }

    /// Whatever its sync flag: a group the connector made keeps sending unsubscribes back as
    /// long as it is linked.
    async fn managed_sources(&self) -> Result<Vec<ManagedSource>, CrmError> {
        // The three tables at once: the events worker reads them for every delivery.
        let [first, second, third] = SourceKind::ALL.map(|kind| {
            let mut select = vec![
                kind.primary_key(),
                schema::GROUP_ID,
                schema::CHECKLIST,
                schema::SYNC_FLAG,
                schema::STATECODE,
            ];
            if kind == SourceKind::MarketingList {
                select.extend(["type", "createdfromcode"]);
            }
            let query = Query::new()
                .select(select)
                .filter(format!("{} ne null", schema::GROUP_ID));
            async move { (kind, self.all_rows(kind.entity_set(), &query).await) }
        });
        let (first, second, third) = futures::join!(first, second, third);
        let mut found = Vec::new();
        for (kind, rows) in [first, second, third] {
            for row in rows? {
                let (Some(id), Some(group_id)) =
                    (id(&row, kind.primary_key()), text(&row, schema::GROUP_ID))
                else {
                    continue;
                };
                let checklist = Checklist::parse(checklist_text(&row)).map_err(|e| e.to_string());
                let list = match kind {
                    SourceKind::MarketingList => list_shape(&row).ok(),
                    _ => None,
                };
                found.push(ManagedSource {
                    kind,
                    id,
                    group_id,
                    checklist,
                    list,
                    synced: flag(&row, schema::SYNC_FLAG) && state_active(&row),
                });
            }
        }
        Ok(found)
    }

    async fn record_group(
        &self,
        kind: SourceKind,
        id: &str,
        group: Option<&GroupId>,
    ) -> Result<(), CrmError> {
        let mut columns = Map::new();
        columns.insert(
            schema::GROUP_ID.into(),
            group.map_or(Value::Null, |g| json!(g.as_str())),
        );
        self.update_source(kind, id, columns).await
    }

    async fn turn_sync_off(&self, kind: SourceKind, id: &str) -> Result<(), CrmError> {
        let mut columns = Map::new();
        columns.insert(schema::SYNC_FLAG.into(), Value::Bool(false));
        self.update_source(kind, id, columns).await
    }

    async fn clear_resync(&self, kind: SourceKind, id: &str) -> Result<(), CrmError> {
        let mut columns = Map::new();
        columns.insert(schema::RESYNC.into(), Value::Bool(false));
        self.update_source(kind, id, columns).await
    }

    async fn clear_removal_confirmation(&self, kind: SourceKind, id: &str) -> Result<(), CrmError> {
        let mut columns = Map::new();
        columns.insert(schema::CONFIRM_REMOVALS.into(), Value::Bool(false));
        self.update_source(kind, id, columns).await
    }

    async fn write_status(
        &self,
        kind: SourceKind,
        id: &str,
        status: &SourceStatus,
    ) -> Result<(), CrmError> {
        let mut columns = Map::new();
        match status {
            SourceStatus::Synced { status, at } => {
                columns.insert(
                    schema::SYNC_STATUS.into(),
                    json!(schema::fit(status, schema::SYNC_STATUS_MAX)),
                );
                columns.insert(schema::LAST_SYNC.into(), json!(at));
                columns.insert(schema::LAST_ERROR.into(), Value::Null);
            }
            SourceStatus::InProgress { status } => {
                columns.insert(
                    schema::SYNC_STATUS.into(),
                    json!(schema::fit(status, schema::SYNC_STATUS_MAX)),
                );
            }
            SourceStatus::Failed { error } => {
                columns.insert(
                    schema::LAST_ERROR.into(),
                    json!(schema::fit(error, schema::LAST_ERROR_MAX)),
                );
            }
        }
        self.update_source(kind, id, columns).await
    }
}

/// The columns a source is read with.
pub(super) fn source_columns(kind: SourceKind) -> Vec<&'static str> {
    let mut select = vec![
        kind.primary_key(),
        kind.name_attribute(),
        schema::STATECODE,
        schema::SYNC_FLAG,
        schema::CHECKLIST,
        schema::GROUP_ID,
        schema::RESYNC,
        schema::CONFIRM_REMOVALS,
    ];
    match kind {
        SourceKind::MarketingList => select.extend(["type", "createdfromcode", "query"]),
        SourceKind::CampaignActivity => select.push("description"),
        SourceKind::Campaign => {}
    }
    select
}

/// A source's row (read with [`source_columns`]) as a source record.
pub(super) fn source_record(
    kind: SourceKind,
    id: &str,
    row: &Value,
) -> Result<SourceRecord, CrmError> {
    let (checklist, checklist_problem) = match Checklist::parse(checklist_text(row)) {
        Ok(c) => (c, None),
        Err(e) => (Checklist::default(), Some(e.to_string())),
    };
    let list = match kind {
        SourceKind::MarketingList => {
            Some(list_shape(row).map_err(|problem| CrmError::Invalid {
                what: format!("marketing list {id}"),
                problem,
            })?)
        }
        _ => None,
    };
    let source = Source {
        kind,
        id: id.to_ascii_lowercase(),
        name: text(row, kind.name_attribute()).unwrap_or_default(),
        checklist,
        sync_enabled: flag(row, schema::SYNC_FLAG),
        active: state_active(row),
        group_id: GroupId::from_stored(row.get(schema::GROUP_ID).and_then(Value::as_str)),
        description: text(row, "description"),
    };
    Ok(SourceRecord {
        source,
        list,
        checklist_problem,
        resync_requested: flag(row, schema::RESYNC),
        removals_confirmed: flag(row, schema::CONFIRM_REMOVALS),
    })
}
