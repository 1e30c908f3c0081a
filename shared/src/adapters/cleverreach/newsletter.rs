//! The newsletter ports (`ports::newsletter`) on top of the CleverReach client: each call
//! delegates to the client and classifies its error for the use cases.

use super::client::CleverReachClient;
use super::error::CleverReachError;
use super::groups::{CREATION_MARKER_PREFIX, marker_owner};
use super::receivers::ReceiverPages as GroupReceiverPages;
use super::tokens::TokenStore;
use crate::domain::blocklist::BlockSet;
use crate::domain::email::Email;
use crate::domain::planner::ReceiverUpsert;
use crate::domain::receiver::CurrentReceiver;
use crate::error::Retryable;
use crate::ports::newsletter::{
    BlockList, EmailChange, FilterRequest, Group, GroupStore, NewsletterError, Page,
    ReceiverFilter, ReceiverPages, ReceiverRecord, ReceiverStore, RemoveReport, UpsertReport,
};
use async_trait::async_trait;
use std::sync::Arc;

/// CleverReach's failures, classified: a dead connection only a person can fix, "not there",
/// "conflicts", an answer that cannot be read, a refusal, or something worth retrying. The
/// text keeps the client's.
impl From<CleverReachError> for NewsletterError {
    fn from(e: CleverReachError) -> Self {
        let message = e.to_string();
        if e.is_retryable() {
            return NewsletterError::Unavailable {
                retry_after: e.retry_after(),
                message,
            };
        }
        match e {
            CleverReachError::ReconnectRequired { .. } => {
                NewsletterError::ReconnectRequired(message)
            }
            CleverReachError::NotFound { .. } => NewsletterError::NotFound(message),
            CleverReachError::Conflict { .. } => NewsletterError::Conflict(message),
            CleverReachError::Decode { .. } => NewsletterError::Unreadable(message),
            _ => NewsletterError::Refused(message),
        }
    }
}

impl<S: TokenStore> crate::metrics::CallCounter for CleverReachClient<S> {
    fn calls(&self) -> u64 {
        self.requests_sent()
    }
}

impl<S: TokenStore> CleverReachClient<S> {
    /// The group as the use cases see it: its description without the creation marker line,
    /// and whether this connector (for this CRM organisation) created it.
    fn port_group(&self, g: super::groups::Group) -> Group {
        let (receiver_info, marker) = split_marker(&g.receiver_info);
        let owner = marker_owner(&self.config().source);
        Group {
            id: g.id,
            name: g.name,
            locked: g.locked,
            receiver_info,
            created_by_connector: marker.is_some_and(|m| m.ends_with(&format!("{owner}]"))),
            created_at: (g.stamp > 0).then_some(g.stamp),
        }
    }
}

/// A description's text without the creation marker line, and the marker line.
fn split_marker(receiver_info: &str) -> (String, Option<&str>) {
    let mut marker = None;
    let mut rest = Vec::new();
    for line in receiver_info.lines() {
        if marker.is_none() && line.trim_start().starts_with(CREATION_MARKER_PREFIX) {
            marker = Some(line.trim());
        } else {
            rest.push(line);
        }
    }
    (rest.join("\n"), marker)
}

#[async_trait]
impl<S: TokenStore> GroupStore for CleverReachClient<S> {
    async fn get_group(&self, group_id: &str) -> Result<Option<Group>, NewsletterError> {
        Ok(CleverReachClient::get_group(self, group_id)
            .await?
            .map(|g| self.port_group(g)))
    }

    async fn list_groups(&self) -> Result<Vec<Group>, NewsletterError> {
        Ok(CleverReachClient::list_groups(self)
            .await?
            .into_iter()
            .map(|g| self.port_group(g))
            .collect())
    }

    async fn create_group(
        &self,
        name: &str,
        locked: bool,
        receiver_info: &str,
    ) -> Result<Group, NewsletterError> {
        let created = CleverReachClient::create_group(self, name, locked, receiver_info).await?;
        Ok(self.port_group(created))
    }

    async fn rename_group(&self, group_id: &str, name: &str) -> Result<(), NewsletterError> {
        CleverReachClient::rename_group(self, group_id, name).await?;
        Ok(())
    }

    async fn set_receiver_info(
        &self,
        group_id: &str,
        receiver_info: &str,
    ) -> Result<(), NewsletterError> {
        // The marker stays, so the group is still known as the connector's (orphan sweep).
        let current = CleverReachClient::get_group(self, group_id).await?;
        let marker = current
            .as_ref()
            .and_then(|g| split_marker(&g.receiver_info).1.map(str::to_string));
        let text = match marker {
            Some(marker) if receiver_info.trim().is_empty() => marker,
            Some(marker) => format!("{receiver_info}\n{marker}"),
            None => receiver_info.to_string(),
        };
        CleverReachClient::set_receiver_info(self, group_id, &text).await?;
        Ok(())
    }

    async fn delete_group(&self, group_id: &str) -> Result<bool, NewsletterError> {
        Ok(CleverReachClient::delete_group(self, group_id).await?)
    }
}

#[async_trait]
impl<S: TokenStore> ReceiverPages for GroupReceiverPages<S> {
    async fn next_page(&mut self) -> Result<Option<Vec<CurrentReceiver>>, NewsletterError> {
        Ok(GroupReceiverPages::next_page(self).await?)
    }
}

#[async_trait]
impl<S: TokenStore> ReceiverStore for CleverReachClient<S> {
    fn upsert_batch_size(&self) -> usize {
        self.config().upsert_batch_size
    }

    fn receivers(&self, group_id: &str, filter: ReceiverFilter) -> Box<dyn ReceiverPages + '_> {
        Box::new(CleverReachClient::receivers(self, group_id, filter))
    }

    async fn upsert_receivers(
        &self,
        group_id: &str,
        rows: &[ReceiverUpsert],
    ) -> Result<UpsertReport, NewsletterError> {
        Ok(CleverReachClient::upsert_receivers(self, group_id, rows).await?)
    }

    async fn remove_receivers(
        &self,
        group_id: &str,
        emails: &[Email],
    ) -> Result<RemoveReport, NewsletterError> {
        Ok(CleverReachClient::remove_receivers(self, group_id, emails).await?)
    }

    async fn strip_receivers(
        &self,
        group_id: &str,
        emails: &[Email],
    ) -> Result<(), NewsletterError> {
        Ok(CleverReachClient::strip_receivers(self, group_id, emails).await?)
    }

    async fn remove_receiver(
        &self,
        group_id: &str,
        email: &Email,
    ) -> Result<bool, NewsletterError> {
        Ok(CleverReachClient::remove_receiver(self, group_id, email).await?)
    }

    async fn change_email(&self, from: &Email, to: &Email) -> Result<EmailChange, NewsletterError> {
        Ok(CleverReachClient::change_email(self, from, to).await?)
    }

    async fn find_receiver(
        &self,
        group_id: &str,
        email: &Email,
    ) -> Result<Option<ReceiverRecord>, NewsletterError> {
        Ok(CleverReachClient::find_receiver(self, group_id, email).await?)
    }

    async fn filter_receivers(
        &self,
        request: &FilterRequest,
    ) -> Result<Page<ReceiverRecord>, NewsletterError> {
        Ok(CleverReachClient::filter_receivers(self, request).await?)
    }
}

#[async_trait]
impl<S: TokenStore> BlockList for CleverReachClient<S> {
    async fn blocked(&self) -> Result<Arc<BlockSet>, NewsletterError> {
        Ok(CleverReachClient::blocked(self).await?)
    }
}

impl<S: TokenStore> crate::ports::newsletter::NewsletterEndpoint for CleverReachClient<S> {
    fn api_url(&self) -> String {
        self.config().base_url.to_string()
    }
}
