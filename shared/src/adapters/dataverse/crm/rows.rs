//! Rows to domain types: the one place that reads Dataverse columns into recipients and list
//! shapes.

use super::super::schema;
use crate::domain::checklist::Checklist;
use crate::domain::recipient::{CrmRef, PersonEntity, Recipient, RecipientKind};
use crate::domain::source::ListShape;
use serde_json::Value;

pub(super) fn text(row: &Value, column: &str) -> Option<String> {
    row.get(column)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

pub(super) fn flag(row: &Value, column: &str) -> bool {
    row.get(column).and_then(Value::as_bool).unwrap_or(false)
}

pub(super) fn state_active(row: &Value) -> bool {
    row.get(schema::STATECODE).and_then(Value::as_i64) == Some(0)
}

pub(super) fn id(row: &Value, column: &str) -> Option<String> {
    text(row, column).map(|s| s.to_ascii_lowercase())
}

/// Checklist of a person; a broken one counts as "no choice" (the person is then not sent to
/// CleverReach) and is logged with the record id only.
fn person_checklist(row: &Value, entity: &str, record: &str) -> Checklist {
    match Checklist::parse(
        row.get(schema::CHECKLIST)
            .and_then(Value::as_str)
            .unwrap_or(""),
    ) {
        Ok(checklist) => checklist,
        Err(e) => {
            tracing::warn!(entity, record_id = record, error = %e, "unreadable checklist, treated as no choice");
            Checklist::default()
        }
    }
}

/// A contact row (with lookup annotations) as a recipient in its own right.
pub fn contact_recipient(row: &Value) -> Option<Recipient> {
    let contact_id = id(row, "contactid")?;
    let parent_is_account = row
        .get("_parentcustomerid_value@Microsoft.Dynamics.CRM.lookuplogicalname")
        .and_then(Value::as_str)
        == Some("account");
    let company = if parent_is_account {
        text(
            row,
            "_parentcustomerid_value@OData.Community.Display.V1.FormattedValue",
        )
    } else {
        None
    };
    Some(Recipient {
        kind: RecipientKind::Contact,
        checklist: person_checklist(row, "contact", &contact_id),
        person: CrmRef::new(PersonEntity::Contact, &contact_id),
        active: state_active(row),
        email: text(row, "emailaddress1"),
        do_not_bulk_email: flag(row, "donotbulkemail"),
        salutation: text(row, "salutation"),
        first_name: text(row, "firstname"),
        last_name: text(row, "lastname"),
        company,
    })
}

/// A lead row as a recipient.
pub fn lead_recipient(row: &Value) -> Option<Recipient> {
    let lead_id = id(row, "leadid")?;
    Some(Recipient {
        kind: RecipientKind::Lead,
        checklist: person_checklist(row, "lead", &lead_id),
        person: CrmRef::new(PersonEntity::Lead, &lead_id),
        active: state_active(row),
        email: text(row, "emailaddress1"),
        do_not_bulk_email: flag(row, "donotbulkemail"),
        salutation: text(row, "salutation"),
        first_name: text(row, "firstname"),
        last_name: text(row, "lastname"),
        company: text(row, "companyname"),
    })
}

/// An account row and its primary contact's row as a recipient: the person is the primary
/// contact; both must be active; "do not bulk e-mail" on either keeps them out.
pub fn account_recipient(account: &Value, primary_contact: Option<&Value>) -> Option<Recipient> {
    id(account, "accountid")?;
    let contact = primary_contact?;
    let contact_id = id(contact, "contactid")?;
    Some(Recipient {
        kind: RecipientKind::Account,
        checklist: person_checklist(contact, "contact", &contact_id),
        person: CrmRef::new(PersonEntity::Contact, &contact_id),
        active: state_active(account) && state_active(contact),
        email: text(contact, "emailaddress1"),
        do_not_bulk_email: flag(account, "donotbulkemail") || flag(contact, "donotbulkemail"),
        salutation: text(contact, "salutation"),
        first_name: text(contact, "firstname"),
        last_name: text(contact, "lastname"),
        company: text(account, "name"),
    })
}

fn member_kind_from_code(code: i64) -> Option<RecipientKind> {
    match code {
        1 => Some(RecipientKind::Account),
        2 => Some(RecipientKind::Contact),
        4 => Some(RecipientKind::Lead),
        _ => None,
    }
}

pub(super) fn list_shape(row: &Value) -> Result<ListShape, String> {
    let code = row
        .get("createdfromcode")
        .and_then(Value::as_i64)
        .ok_or("the list has no member type (createdfromcode)")?;
    let member_kind =
        member_kind_from_code(code).ok_or(format!("member type {code} is not 1, 2 or 4"))?;
    Ok(ListShape {
        dynamic: flag(row, "type"),
        member_kind,
        query: text(row, "query"),
    })
}

/// A person's table: logical name, entity set, primary key.
pub(super) fn person_table(entity: PersonEntity) -> (&'static str, &'static str, &'static str) {
    match entity {
        PersonEntity::Contact => ("contact", "contacts", "contactid"),
        PersonEntity::Lead => ("lead", "leads", "leadid"),
    }
}

/// A checklist column as stored (empty when not set).
pub(super) fn checklist_text(row: &Value) -> &str {
    row.get(schema::CHECKLIST)
        .and_then(Value::as_str)
        .unwrap_or("")
}
