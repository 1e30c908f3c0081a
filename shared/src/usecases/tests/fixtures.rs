//! Builders for the use cases' unit tests: sources, people, change events and a connector on
//! the in-memory fakes, so that a test says only what matters to it.

use crate::adapters::memory::{InMemoryCrm, InMemoryNewsletter};
use crate::domain::change::{AttrValue, Attributes, ChangeEvent, CrmMessage, RecordRef};
use crate::domain::checklist::Checklist;
use crate::domain::email::Email;
use crate::domain::receiver::{CurrentReceiver, PersonData, ReceiverState};
use crate::domain::recipient::{CrmRef, PersonEntity, Recipient, RecipientKind};
use crate::domain::source::{GroupId, ListShape, Source, SourceKind, SourceRecord};
use crate::usecases::Connector;
use std::sync::Arc;

/// The fakes and a connector on them.
pub struct World {
    pub crm: Arc<InMemoryCrm>,
    pub newsletter: Arc<InMemoryNewsletter>,
    pub conn: Connector,
}

impl World {
    pub fn new() -> World {
        let crm = Arc::new(InMemoryCrm::new());
        let newsletter = Arc::new(InMemoryNewsletter::new());
        let mut conn = Connector::from_shared(crm.clone(), newsletter.clone());
        conn.now = || 1_800_000_000;
        World {
            crm,
            newsletter,
            conn,
        }
    }

    /// A settings row.
    pub fn setting(self, key: &str, value: &str) -> World {
        self.crm
            .state()
            .settings
            .push((key.to_string(), value.to_string()));
        self
    }

    pub fn source(&self, source: SourceBuilder) -> &World {
        self.crm.add_source(source.record);
        self
    }

    /// A contact in its own right, member of these lists.
    pub fn contact(&self, person: PersonBuilder, lists: &[&str]) -> &World {
        let id = person.id.clone();
        self.crm
            .add_recipient(person.recipient(RecipientKind::Contact), &id);
        for list in lists {
            self.crm
                .add_list_member_of(list, RecipientKind::Contact, &id);
        }
        self
    }

    /// A lead, member of these lists.
    pub fn lead(&self, person: PersonBuilder, lists: &[&str]) -> &World {
        let id = person.id.clone();
        self.crm
            .add_recipient(person.recipient(RecipientKind::Lead), &id);
        for list in lists {
            self.crm.add_list_member_of(list, RecipientKind::Lead, &id);
        }
        self
    }

    /// An account whose primary contact is this contact (a contact in its own right too),
    /// member of these lists.
    pub fn account(&self, id: &str, primary: PersonBuilder, lists: &[&str]) -> &World {
        let contact = primary.id.clone();
        self.crm
            .add_recipient(primary.clone().recipient(RecipientKind::Contact), &contact);
        self.crm
            .add_recipient(primary.recipient(RecipientKind::Account), id);
        self.crm
            .state()
            .primary_contacts
            .insert(id.to_string(), contact);
        for list in lists {
            self.crm
                .add_list_member_of(list, RecipientKind::Account, id);
        }
        self
    }

    /// A group in CleverReach with these receivers.
    pub fn group(&self, id: &str, name: &str, receivers: Vec<CurrentReceiver>) -> &World {
        {
            let mut st = self.newsletter.state();
            st.groups.insert(
                id.to_string(),
                crate::ports::newsletter::Group {
                    id: id.to_string(),
                    name: name.to_string(),
                    locked: false,
                    receiver_info: String::new(),
                    created_by_connector: true,
                    created_at: None,
                },
            );
            st.receivers.entry(id.to_string()).or_default();
        }
        for r in receivers {
            self.newsletter.put(id, r);
        }
        self
    }

    /// Someone signed up through a CleverReach form: an active receiver without a CRM record.
    pub fn signed_up(&self, group: &str, email: &str, at: i64) {
        self.newsletter.put_stored(
            group,
            crate::adapters::memory::StoredReceiver {
                receiver: receiver(email, ReceiverState::Active, None),
                activated: chrono::DateTime::from_timestamp(at, 0),
                deactivated: None,
                bounced: None,
            },
        );
    }

    /// A receiver of a contact bounced at `at`.
    pub fn bounced(&self, group: &str, email: &str, contact: &str, at: i64) {
        self.newsletter.put_stored(
            group,
            crate::adapters::memory::StoredReceiver {
                receiver: receiver(
                    email,
                    ReceiverState::Bounced,
                    Some((contact, PersonEntity::Contact)),
                ),
                activated: None,
                deactivated: None,
                bounced: chrono::DateTime::from_timestamp(at, 0),
            },
        );
    }

    /// The active addresses of a group, sorted.
    pub fn active(&self, group: &str) -> Vec<String> {
        let mut active = self.newsletter.state().active(group);
        active.sort();
        active
    }

    /// The stored source.
    pub fn stored(&self, kind: SourceKind, id: &str) -> Option<SourceRecord> {
        self.crm
            .state()
            .sources
            .get(&(kind, id.to_string()))
            .cloned()
    }
}

/// A checklist from `(type, state)` pairs.
pub fn checklist(entries: &[(i64, i64)]) -> Checklist {
    let json: Vec<String> = entries
        .iter()
        .map(|(id, state)| format!(r#"{{"id":{id},"state":{state}}}"#))
        .collect();
    Checklist::parse(&format!("[{}]", json.join(","))).unwrap_or_default()
}

/// A source, synced and active with type 0 on unless told otherwise.
pub struct SourceBuilder {
    pub record: SourceRecord,
}

pub fn list(id: &str, name: &str) -> SourceBuilder {
    source(SourceKind::MarketingList, id, name).shape(RecipientKind::Contact, false)
}

pub fn campaign(id: &str, name: &str) -> SourceBuilder {
    source(SourceKind::Campaign, id, name)
}

pub fn source(kind: SourceKind, id: &str, name: &str) -> SourceBuilder {
    SourceBuilder {
        record: SourceRecord {
            source: Source {
                kind,
                id: id.to_string(),
                name: name.to_string(),
                checklist: checklist(&[(0, 1)]),
                sync_enabled: true,
                active: true,
                group_id: None,
                description: None,
            },
            list: None,
            checklist_problem: None,
            resync_requested: false,
            removals_confirmed: false,
        },
    }
}

impl SourceBuilder {
    pub fn shape(mut self, member_kind: RecipientKind, dynamic: bool) -> Self {
        self.record.list = Some(ListShape {
            dynamic,
            member_kind,
            query: dynamic.then(|| self.record.source.id.clone()),
        });
        self
    }

    pub fn group(mut self, id: &str) -> Self {
        self.record.source.group_id = GroupId::new(id).ok();
        self
    }

    pub fn sync(mut self, on: bool) -> Self {
        self.record.source.sync_enabled = on;
        self
    }

    pub fn active(mut self, active: bool) -> Self {
        self.record.source.active = active;
        self
    }

    pub fn checklist(mut self, entries: &[(i64, i64)]) -> Self {
        self.record.source.checklist = checklist(entries);
        self
    }

    pub fn unreadable_checklist(mut self) -> Self {
        self.record.checklist_problem = Some("expected value at line 1 column 2".into());
        self
    }

    pub fn resync_requested(mut self) -> Self {
        self.record.resync_requested = true;
        self
    }

    /// An administrator confirmed the held-back removal.
    pub fn removals_confirmed(mut self) -> Self {
        self.record.removals_confirmed = true;
        self
    }
}

/// A person (contact or lead): active, type 0 yes.
#[derive(Clone)]
pub struct PersonBuilder {
    pub id: String,
    pub email: Option<String>,
    pub checklist: Checklist,
    pub active: bool,
    pub do_not_bulk_email: bool,
    pub first_name: String,
}

pub fn person(id: &str, email: &str) -> PersonBuilder {
    PersonBuilder {
        id: id.to_string(),
        email: Some(email.to_string()),
        checklist: checklist(&[(0, 1)]),
        active: true,
        do_not_bulk_email: false,
        first_name: "Anna".into(),
    }
}

impl PersonBuilder {
    pub fn checklist(mut self, entries: &[(i64, i64)]) -> Self {
        self.checklist = checklist(entries);
        self
    }

    pub fn inactive(mut self) -> Self {
        self.active = false;
        self
    }

    pub fn no_bulk_email(mut self) -> Self {
        self.do_not_bulk_email = true;
        self
    }

    fn recipient(self, kind: RecipientKind) -> Recipient {
        let entity = match kind {
            RecipientKind::Lead => PersonEntity::Lead,
            _ => PersonEntity::Contact,
        };
        Recipient {
            kind,
            person: CrmRef::new(entity, &self.id),
            active: self.active,
            email: self.email,
            do_not_bulk_email: self.do_not_bulk_email,
            checklist: self.checklist,
            salutation: None,
            first_name: Some(self.first_name),
            last_name: Some("Muster".into()),
            company: None,
        }
    }
}

/// A receiver as CleverReach holds it.
pub fn receiver(
    email: &str,
    state: ReceiverState,
    crm: Option<(&str, PersonEntity)>,
) -> CurrentReceiver {
    CurrentReceiver {
        email: address(email),
        state,
        person: PersonData {
            first_name: "Anna".into(),
            last_name: "Muster".into(),
            ..PersonData::default()
        },
        crm: crm.map(|(id, entity)| CrmRef::new(entity, id)),
    }
}

pub fn address(text: &str) -> Email {
    Email::parse(text).unwrap_or_else(|_| {
        Email::parse("invalid@example.invalid").unwrap_or_else(|e| panic!("{e}"))
    })
}

/// A change event of `entity` `id` by a CRM user.
pub struct EventBuilder {
    pub event: ChangeEvent,
}

pub fn event(entity: &str, message: CrmMessage, id: &str) -> EventBuilder {
    let mut event = ChangeEvent::resync_request(entity, id, "op-1", 1_800_000_000_000);
    event.message = message;
    event.user_id = "user-1".into();
    event.initiating_user_id = "user-1".into();
    EventBuilder { event }
}

impl EventBuilder {
    /// A column the change touched, with its new value.
    pub fn touch(mut self, column: &str, value: AttrValue) -> Self {
        self.event.target.insert(column.to_string(), value);
        self
    }

    /// A pre-image value.
    pub fn before(mut self, column: &str, value: AttrValue) -> Self {
        self.event
            .pre_image
            .get_or_insert_with(Attributes::new)
            .insert(column.to_string(), value);
        self
    }

    /// Members named by a membership message.
    pub fn members(mut self, entity: &str, ids: &[&str]) -> Self {
        self.event.related = ids
            .iter()
            .map(|id| RecordRef {
                entity: entity.to_string(),
                id: id.to_string(),
            })
            .collect();
        self
    }

    pub fn build(self) -> ChangeEvent {
        self.event
    }
}
