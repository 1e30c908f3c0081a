//! CleverReach adapter: groups (recipient lists) and global attributes (docs/architecture.md §11).
//!
//! Creating a group is not idempotent: a retry after an answer that never arrived (the
//! connection broke after CleverReach created the group) would create a second group. So
//! every create carries a unique marker line in `receiver_info`, and a retry first looks for
//! a group carrying that marker. The marker reads like the line the official cores write
//! there ("created by …"), so it is not noise to a CleverReach user.

use super::client::{CleverReachClient, decode};
use super::config::attribute;
use super::error::CleverReachError;
use super::tokens::TokenStore;
use super::wire::{NewAttribute, NewGroup, WireAttribute, WireGroup};
use crate::adapters::http::with_retries;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

/// A CleverReach group as the connector sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// CleverReach's id (stored on the CRM source).
    pub id: String,
    pub name: String,
    /// Deletion protection (docs/architecture.md §2 `deleteprotection`).
    pub locked: bool,
    pub backup: bool,
    pub receiver_info: String,
    /// Created, unix seconds.
    pub stamp: i64,
    pub last_changed: i64,
}

impl From<WireGroup> for Group {
    fn from(w: WireGroup) -> Self {
        Group {
            id: w.id,
            name: w.name,
            locked: w.locked,
            backup: w.backup,
            receiver_info: w.receiver_info,
            stamp: w.stamp,
            last_changed: w.last_changed,
        }
    }
}

/// Starts the marker line a created group carries in `receiver_info`.
pub const CREATION_MARKER_PREFIX: &str = "[created by the CRM connector, ref ";

/// The marker line: unique per create, naming the CRM organisation (`source`), so that one
/// deployment's orphan sweep never takes another's groups in a shared CleverReach account.
fn creation_marker(source: &str) -> String {
    format!(
        "{CREATION_MARKER_PREFIX}{}{}]",
        uuid::Uuid::new_v4().simple(),
        marker_owner(source)
    )
}

/// The part of the marker that names the organisation: `, for Dynamics 365 (contoso…)`.
pub fn marker_owner(source: &str) -> String {
    format!(", for {source}")
}

fn group_from(value: Value) -> Result<Group, CleverReachError> {
    decode::<WireGroup>(value).map(Group::from)
}

impl<S: TokenStore> CleverReachClient<S> {
    pub async fn list_groups(&self) -> Result<Vec<Group>, CleverReachError> {
        let url = self.api(&["groups.json"])?;
        let groups: Vec<WireGroup> = self.call_as(Method::GET, url, &[], None).await?;
        Ok(groups.into_iter().map(Group::from).collect())
    }

    /// The group, or `None` when CleverReach does not know the id (deleted there).
    pub async fn get_group(&self, group_id: &str) -> Result<Option<Group>, CleverReachError> {
        let url = self.api(&["groups.json", group_id])?;
        match self.call(Method::GET, url, &[], None).await {
            Ok(value) => group_from(value).map(Some),
            Err(CleverReachError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a group, exactly once even when retried (see the module notes). The
    /// returned `receiver_info` is `receiver_info` plus the marker line.
    pub async fn create_group(
        &self,
        name: &str,
        locked: bool,
        receiver_info: &str,
    ) -> Result<Group, CleverReachError> {
        if name.trim().is_empty() {
            return Err(CleverReachError::InvalidInput {
                message: "a group needs a name".into(),
            });
        }
        let marker = creation_marker(&self.inner.config.source);
        let info = if receiver_info.trim().is_empty() {
            marker.clone()
        } else {
            format!("{receiver_info}\n{marker}")
        };
        let body = serde_json::to_value(NewGroup {
            name,
            locked,
            receiver_info: &info,
        })
        .map_err(|e| CleverReachError::InvalidInput {
            message: e.to_string(),
        })?;
        let create_url = self.api(&["groups.json"])?;
        let refreshed = AtomicBool::new(false);
        with_retries(&self.inner.config.retry, |attempt| {
            let (marker, body, create_url, refreshed) = (&marker, &body, &create_url, &refreshed);
            async move {
                if attempt > 0 {
                    // An earlier attempt may have created it without us hearing back.
                    let list = self
                        .send_once(&Method::GET, create_url, &[], None, refreshed)
                        .await?;
                    let groups: Vec<WireGroup> = decode(list)?;
                    if let Some(found) = groups
                        .into_iter()
                        .find(|g| g.receiver_info.contains(marker.as_str()))
                    {
                        tracing::info!(group_id = %found.id, "group found from an earlier attempt");
                        return Ok(Group::from(found));
                    }
                }
                let created = self
                    .send_once(&Method::POST, create_url, &[], Some(body), refreshed)
                    .await?;
                group_from(created)
            }
        })
        .await
    }

    pub async fn rename_group(
        &self,
        group_id: &str,
        name: &str,
    ) -> Result<Group, CleverReachError> {
        if name.trim().is_empty() {
            return Err(CleverReachError::InvalidInput {
                message: "a group needs a name".into(),
            });
        }
        self.update_group(group_id, json!({ "name": name })).await
    }

    pub async fn set_receiver_info(
        &self,
        group_id: &str,
        receiver_info: &str,
    ) -> Result<Group, CleverReachError> {
        self.update_group(group_id, json!({ "receiver_info": receiver_info }))
            .await
    }

    async fn update_group(&self, group_id: &str, body: Value) -> Result<Group, CleverReachError> {
        let url = self.api(&["groups.json", group_id])?;
        group_from(self.call(Method::PUT, url, &[], Some(&body)).await?)
    }

    /// Deletes a group. `Ok(false)`: it did not exist when we first asked. A 404 on a retry
    /// counts as deleted (the earlier attempt did it).
    pub async fn delete_group(&self, group_id: &str) -> Result<bool, CleverReachError> {
        let url = self.api(&["groups.json", group_id])?;
        self.delete_once(url).await
    }

    /// A DELETE that is safe to retry: `true` when this call removed the thing, `false` when
    /// it was already gone before the first attempt.
    pub(super) async fn delete_once(&self, url: url::Url) -> Result<bool, CleverReachError> {
        let refreshed = AtomicBool::new(false);
        with_retries(&self.inner.config.retry, |attempt| {
            let (url, refreshed) = (&url, &refreshed);
            async move {
                match self
                    .send_once(&Method::DELETE, url, &[], None, refreshed)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(CleverReachError::NotFound { .. }) => Ok(attempt > 0),
                    Err(e) => Err(e),
                }
            }
        })
        .await
    }

    // ---- global attributes --------------------------------------------------------------

    async fn global_attributes(&self) -> Result<BTreeMap<String, String>, CleverReachError> {
        let url = self.api(&["attributes.json"])?;
        let list: Vec<WireAttribute> = self.call_as(Method::GET, url, &[], None).await?;
        Ok(list
            .into_iter()
            .map(|a| (a.name.trim().to_lowercase(), a.id))
            .collect())
    }

    /// Makes sure these global attributes exist (text type) and returns name → id. A 409
    /// means someone created it meanwhile (or an earlier attempt did): it is looked up.
    pub async fn ensure_global_attributes(
        &self,
        names: &[&str],
    ) -> Result<BTreeMap<String, String>, CleverReachError> {
        let wanted: Vec<String> = names.iter().map(|n| n.trim().to_lowercase()).collect();
        if let Some(bad) = wanted.iter().find(|n| n.is_empty()) {
            return Err(CleverReachError::InvalidInput {
                message: format!("an attribute name is empty ({bad:?})"),
            });
        }
        let mut known = self.global_attributes().await?;
        let mut conflicts = false;
        let url = self.api(&["attributes.json"])?;
        for name in &wanted {
            if known.contains_key(name) {
                continue;
            }
            let body = serde_json::to_value(NewAttribute {
                name,
                kind: "text",
                description: name,
            })
            .map_err(|e| CleverReachError::InvalidInput {
                message: e.to_string(),
            })?;
            match self
                .call_as::<WireAttribute>(Method::POST, url.clone(), &[], Some(&body))
                .await
            {
                Ok(created) => {
                    known.insert(name.clone(), created.id);
                }
                Err(CleverReachError::Conflict { .. }) => conflicts = true,
                Err(e) => return Err(e),
            }
        }
        if conflicts {
            known = self.global_attributes().await?;
        }
        let mut result = BTreeMap::new();
        for name in wanted {
            match known.get(&name) {
                Some(id) => {
                    result.insert(name, id.clone());
                }
                None => {
                    return Err(CleverReachError::Decode {
                        message: format!(
                            "the global attribute {name:?} exists (409) but is not listed"
                        ),
                    });
                }
            }
        }
        Ok(result)
    }

    /// Makes sure the group has the group-local receiver attributes ([`attribute::GROUP`]),
    /// once per group and client: one read, and a create for each one missing (409: someone
    /// created it meanwhile).
    pub(super) async fn ensure_group_attributes(
        &self,
        group_id: &str,
    ) -> Result<(), CleverReachError> {
        // Held throughout: upserts under way at once for a new group make one read and one
        // create between them, not one each.
        let mut ready = self.inner.group_attributes_ready.lock().await;
        if ready.contains(group_id) {
            return Ok(());
        }
        let url = self.api(&["groups.json", group_id, "attributes"])?;
        let list: Vec<WireAttribute> = self.call_as(Method::GET, url.clone(), &[], None).await?;
        let known: Vec<String> = list
            .into_iter()
            .map(|a| a.name.trim().to_lowercase())
            .collect();
        for name in attribute::GROUP {
            if known.iter().any(|k| k == name) {
                continue;
            }
            let body = serde_json::to_value(NewAttribute {
                name,
                kind: "text",
                description: name,
            })
            .map_err(|e| CleverReachError::InvalidInput {
                message: e.to_string(),
            })?;
            match self
                .call_as::<WireAttribute>(Method::POST, url.clone(), &[], Some(&body))
                .await
            {
                Ok(_) | Err(CleverReachError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        ready.insert(group_id.to_string());
        Ok(())
    }

    /// Ensures the receiver attributes of [`attribute::ALL`], once per client.
    /// The receiver attributes, created where missing; name → id.
    pub(super) async fn ensure_receiver_attributes(
        &self,
    ) -> Result<&BTreeMap<String, String>, CleverReachError> {
        self.inner
            .attributes_ready
            .get_or_try_init(|| async { self.ensure_global_attributes(&attribute::ALL).await })
            .await
    }
}
