//! Adapter: a dry run. Wraps the ports a source sync writes through (the sources, the groups,
//! the receivers) so that reads go to the real systems and writes are written down instead of
//! made. The real use cases then run unchanged and what they would do is in the [`DryRunLog`]
//! (`crc-admin preview` and `drift`, docs/architecture.md §13). The members read are kept too,
//! so that the caller can say why someone is left out.
//!
//! A group the dry run "creates" gets an id of its own (`dry-run-…`) that reads as an empty
//! group.

use crate::domain::email::Email;
use crate::domain::planner::ReceiverUpsert;
use crate::domain::receiver::{CurrentReceiver, ReceiverState};
use crate::domain::recipient::Recipient;
use crate::domain::source::{GroupId, SourceKind, SourceRecord};
use crate::ports::crm::{
    CrmError, ManagedSource, MemberPages, MemberReader, SourceStatus, SourceStore,
};
use crate::ports::newsletter::{
    EmailChange, FilterRequest, Group, GroupStore, NewsletterError, Page, ReceiverFilter,
    ReceiverPages, ReceiverRecord, ReceiverStore, RemoveReport, UpsertReport,
};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The id prefix of groups the dry run pretends to create.
pub const NEW_GROUP_PREFIX: &str = "dry-run-";

/// What a dry run would have written, in order per kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DryRunLog {
    /// Groups that would be created: (the id the dry run gave it, name).
    pub created_groups: Vec<(String, String)>,
    /// Groups that would be renamed: (group, new name).
    pub renamed_groups: Vec<(String, String)>,
    /// Groups whose description would change.
    pub described_groups: Vec<String>,
    pub deleted_groups: Vec<String>,
    /// Upsert rows: (group, address, activate). `activate` = new to the group.
    pub upserts: Vec<(String, Email, bool)>,
    /// Removals: (group, address).
    pub removals: Vec<(String, Email)>,
    /// Account-wide address changes: (from, to).
    pub email_changes: Vec<(Email, Email)>,
    /// (group, address) of opted-out receivers whose personal data would be removed.
    pub stripped: Vec<(String, Email)>,
    /// What would be written on sources, in words (`record_group list <id> <group>`).
    pub source_writes: Vec<String>,
    /// Every member read, in the order read.
    pub members: Vec<Recipient>,
    /// The state of every receiver read from a group: (group, address) → state.
    pub group_receivers: BTreeMap<(String, Email), ReceiverState>,
}

/// One dry run: wrap the ports with it, run the use case, read [`DryRun::log`].
#[derive(Debug, Clone, Default)]
pub struct DryRun {
    log: Arc<Mutex<DryRunLog>>,
}

impl DryRun {
    pub fn new() -> Self {
        DryRun::default()
    }

    fn lock(&self) -> MutexGuard<'_, DryRunLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the run would have written so far.
    pub fn log(&self) -> DryRunLog {
        self.lock().clone()
    }

    /// The sources: read as they are, written down instead of written. With
    /// `assume_confirmed`, every source reads as if `crc_confirmremovals` were yes, so that the
    /// removals the brake would hold back are planned (and listed) too.
    pub fn sources(
        &self,
        inner: Arc<dyn SourceStore>,
        assume_confirmed: bool,
    ) -> Arc<dyn SourceStore> {
        Arc::new(DrySources {
            inner,
            run: self.clone(),
            assume_confirmed,
        })
    }

    /// The members: read as they are, and kept in the log.
    pub fn members(&self, inner: Arc<dyn MemberReader>) -> Arc<dyn MemberReader> {
        Arc::new(DryMembers {
            inner,
            run: self.clone(),
        })
    }

    /// The groups: read as they are, changes written down.
    pub fn groups(&self, inner: Arc<dyn GroupStore>) -> Arc<dyn GroupStore> {
        Arc::new(DryGroups {
            inner,
            run: self.clone(),
        })
    }

    /// The receivers: read as they are, changes written down.
    pub fn receivers(&self, inner: Arc<dyn ReceiverStore>) -> Arc<dyn ReceiverStore> {
        Arc::new(DryReceivers {
            inner,
            run: self.clone(),
        })
    }

    fn is_new(&self, group_id: &str) -> bool {
        group_id.starts_with(NEW_GROUP_PREFIX)
    }
}

struct DrySources {
    inner: Arc<dyn SourceStore>,
    run: DryRun,
    assume_confirmed: bool,
}

#[async_trait]
impl SourceStore for DrySources {
    async fn source(&self, kind: SourceKind, id: &str) -> Result<Option<SourceRecord>, CrmError> {
        let mut record = self.inner.source(kind, id).await?;
        if self.assume_confirmed
            && let Some(record) = record.as_mut()
        {
            record.removals_confirmed = true;
        }
        Ok(record)
    }
    async fn synced_sources(&self, kind: SourceKind) -> Result<Vec<String>, CrmError> {
        self.inner.synced_sources(kind).await
    }
    async fn active_synced_sources(&self) -> Result<Vec<(SourceKind, String)>, CrmError> {
        self.inner.active_synced_sources().await
    }
    async fn sources_with_group(
        &self,
        group_id: &str,
    ) -> Result<Vec<(SourceKind, String)>, CrmError> {
        self.inner.sources_with_group(group_id).await
    }
    async fn sources_linking_list(
        &self,
        list_id: &str,
    ) -> Result<Vec<(SourceKind, String)>, CrmError> {
        self.inner.sources_linking_list(list_id).await
    }
    async fn managed_sources(&self) -> Result<Vec<ManagedSource>, CrmError> {
        self.inner.managed_sources().await
    }
    async fn record_group(
        &self,
        kind: SourceKind,
        id: &str,
        group: Option<&GroupId>,
    ) -> Result<(), CrmError> {
        let group = group.map_or("none", GroupId::as_str);
        self.run
            .lock()
            .source_writes
            .push(format!("record_group {kind} {id} {group}"));
        Ok(())
    }
    async fn turn_sync_off(&self, kind: SourceKind, id: &str) -> Result<(), CrmError> {
        self.run
            .lock()
            .source_writes
            .push(format!("turn_sync_off {kind} {id}"));
        Ok(())
    }
    async fn clear_resync(&self, kind: SourceKind, id: &str) -> Result<(), CrmError> {
        self.run
            .lock()
            .source_writes
            .push(format!("clear_resync {kind} {id}"));
        Ok(())
    }
    async fn clear_removal_confirmation(&self, kind: SourceKind, id: &str) -> Result<(), CrmError> {
        self.run
            .lock()
            .source_writes
            .push(format!("clear_removal_confirmation {kind} {id}"));
        Ok(())
    }
    async fn write_status(
        &self,
        kind: SourceKind,
        id: &str,
        status: &SourceStatus,
    ) -> Result<(), CrmError> {
        let what = match status {
            SourceStatus::Synced { status, .. } => format!("status {status}"),
            SourceStatus::Failed { error } => format!("error {error}"),
            SourceStatus::InProgress { status } => format!("progress {status}"),
        };
        self.run
            .lock()
            .source_writes
            .push(format!("write_status {kind} {id} {what}"));
        Ok(())
    }
}

struct DryMembers {
    inner: Arc<dyn MemberReader>,
    run: DryRun,
}

impl MemberReader for DryMembers {
    fn members_from(
        &self,
        source: &SourceRecord,
        resume: Option<&str>,
    ) -> Box<dyn MemberPages + '_> {
        Box::new(KeptPages {
            inner: self.inner.members_from(source, resume),
            run: self.run.clone(),
        })
    }
}

struct KeptPages<'a> {
    inner: Box<dyn MemberPages + 'a>,
    run: DryRun,
}

#[async_trait]
impl MemberPages for KeptPages<'_> {
    async fn next_page(&mut self) -> Result<Option<Vec<Recipient>>, CrmError> {
        let page = self.inner.next_page().await?;
        if let Some(page) = &page {
            self.run.lock().members.extend(page.iter().cloned());
        }
        Ok(page)
    }
    fn requests(&self) -> u32 {
        self.inner.requests()
    }
    fn resume_point(&self, taken: usize) -> Option<String> {
        self.inner.resume_point(taken)
    }
}

struct DryGroups {
    inner: Arc<dyn GroupStore>,
    run: DryRun,
}

#[async_trait]
impl GroupStore for DryGroups {
    async fn get_group(&self, group_id: &str) -> Result<Option<Group>, NewsletterError> {
        let created = self
            .run
            .lock()
            .created_groups
            .iter()
            .find(|(id, _)| id == group_id)
            .cloned();
        if let Some((id, name)) = created {
            return Ok(Some(Group {
                id,
                name,
                locked: false,
                receiver_info: String::new(),
                created_by_connector: true,
                created_at: None,
            }));
        }
        if self.run.is_new(group_id) {
            return Ok(None);
        }
        self.inner.get_group(group_id).await
    }
    async fn list_groups(&self) -> Result<Vec<Group>, NewsletterError> {
        self.inner.list_groups().await
    }
    async fn create_group(
        &self,
        name: &str,
        locked: bool,
        receiver_info: &str,
    ) -> Result<Group, NewsletterError> {
        let mut log = self.run.lock();
        let id = format!("{NEW_GROUP_PREFIX}{}", log.created_groups.len() + 1);
        log.created_groups.push((id.clone(), name.to_string()));
        Ok(Group {
            id,
            name: name.to_string(),
            locked,
            receiver_info: receiver_info.to_string(),
            created_by_connector: true,
            created_at: None,
        })
    }
    async fn rename_group(&self, group_id: &str, name: &str) -> Result<(), NewsletterError> {
        self.run
            .lock()
            .renamed_groups
            .push((group_id.to_string(), name.to_string()));
        Ok(())
    }
    async fn set_receiver_info(
        &self,
        group_id: &str,
        _receiver_info: &str,
    ) -> Result<(), NewsletterError> {
        self.run.lock().described_groups.push(group_id.to_string());
        Ok(())
    }
    async fn delete_group(&self, group_id: &str) -> Result<bool, NewsletterError> {
        self.run.lock().deleted_groups.push(group_id.to_string());
        Ok(true)
    }
}

struct DryReceivers {
    inner: Arc<dyn ReceiverStore>,
    run: DryRun,
}

struct NoPages;

struct KeptReceivers<'a> {
    inner: Box<dyn ReceiverPages + 'a>,
    group: String,
    run: DryRun,
}

#[async_trait]
impl ReceiverPages for KeptReceivers<'_> {
    async fn next_page(&mut self) -> Result<Option<Vec<CurrentReceiver>>, NewsletterError> {
        let page = self.inner.next_page().await?;
        if let Some(page) = &page {
            let mut log = self.run.lock();
            for r in page {
                log.group_receivers
                    .insert((self.group.clone(), r.email.clone()), r.state);
            }
        }
        Ok(page)
    }
}

#[async_trait]
impl ReceiverPages for NoPages {
    async fn next_page(&mut self) -> Result<Option<Vec<CurrentReceiver>>, NewsletterError> {
        Ok(None)
    }
}

#[async_trait]
impl ReceiverStore for DryReceivers {
    fn upsert_batch_size(&self) -> usize {
        self.inner.upsert_batch_size()
    }
    fn receivers(&self, group_id: &str, filter: ReceiverFilter) -> Box<dyn ReceiverPages + '_> {
        if self.run.is_new(group_id) {
            return Box::new(NoPages);
        }
        Box::new(KeptReceivers {
            inner: self.inner.receivers(group_id, filter),
            group: group_id.to_string(),
            run: self.run.clone(),
        })
    }
    async fn upsert_receivers(
        &self,
        group_id: &str,
        rows: &[ReceiverUpsert],
    ) -> Result<UpsertReport, NewsletterError> {
        let mut log = self.run.lock();
        let mut report = UpsertReport {
            calls: 1,
            batch_size: self.inner.upsert_batch_size(),
            ..UpsertReport::default()
        };
        for row in rows {
            log.upserts.push((
                group_id.to_string(),
                row.receiver.email.clone(),
                row.activate,
            ));
            if row.activate {
                report.inserted += 1;
            } else {
                report.updated += 1;
            }
        }
        Ok(report)
    }
    async fn remove_receivers(
        &self,
        group_id: &str,
        emails: &[Email],
    ) -> Result<RemoveReport, NewsletterError> {
        let mut log = self.run.lock();
        log.removals
            .extend(emails.iter().map(|e| (group_id.to_string(), e.clone())));
        Ok(RemoveReport {
            removed: emails.to_vec(),
            ..RemoveReport::default()
        })
    }
    async fn strip_receivers(
        &self,
        group_id: &str,
        emails: &[Email],
    ) -> Result<(), NewsletterError> {
        self.run
            .lock()
            .stripped
            .extend(emails.iter().map(|e| (group_id.to_string(), e.clone())));
        Ok(())
    }
    async fn remove_receiver(
        &self,
        group_id: &str,
        email: &Email,
    ) -> Result<bool, NewsletterError> {
        self.run
            .lock()
            .removals
            .push((group_id.to_string(), email.clone()));
        Ok(true)
    }
    async fn change_email(&self, from: &Email, to: &Email) -> Result<EmailChange, NewsletterError> {
        self.run
            .lock()
            .email_changes
            .push((from.clone(), to.clone()));
        Ok(EmailChange::Changed)
    }
    async fn find_receiver(
        &self,
        group_id: &str,
        email: &Email,
    ) -> Result<Option<ReceiverRecord>, NewsletterError> {
        if self.run.is_new(group_id) {
            return Ok(None);
        }
        self.inner.find_receiver(group_id, email).await
    }
    async fn filter_receivers(
        &self,
        request: &FilterRequest,
    ) -> Result<Page<ReceiverRecord>, NewsletterError> {
        if !request.groups.is_empty() && request.groups.iter().all(|g| self.run.is_new(g)) {
            return Ok(Page {
                items: Vec::new(),
                unreadable: 0,
                is_last: true,
            });
        }
        self.inner.filter_receivers(request).await
    }
}
