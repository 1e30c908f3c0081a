//! Domain: the eligibility rule of docs/architecture.md §2 (rules 1–5): does a member of a source belong in
//! the source's group, and with which data? Rule 6 (membership) is the caller's: whoever reads
//! the members only hands members to [`assess`].

use super::checklist::{Checklist, ChoiceState};
use super::email::{Email, EmailError};
use super::receiver::{Candidate, PersonData, ReceiverData};
use super::recipient::{Recipient, RecipientKind};
use super::settings::Settings;
use std::fmt;

/// Why a member of a source is not a receiver of its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Rule 1: this kind of record is not in `transfersettings:entity`.
    EntityNotTransferred(RecipientKind),
    /// Rule 2: the record (for an account: the account or its primary contact) is inactive.
    Inactive,
    /// Rule 3: no e-mail address.
    MissingEmail,
    /// Rule 3: the e-mail address is not syntactically valid.
    InvalidEmail,
    /// Rule 4: "do not allow bulk e-mail" is set.
    DoNotBulkEmail,
    /// Rule 5: no newsletter type is ticked both on the source and on the person.
    NoMatchingNewsletterType,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::EntityNotTransferred(kind) => write!(
                f,
                "records of type {kind} are not transferred to CleverReach (setting cleverreach:transfersettings:entity)"
            ),
            SkipReason::Inactive => f.write_str("the record is inactive"),
            SkipReason::MissingEmail => f.write_str("the record has no e-mail address"),
            SkipReason::InvalidEmail => f.write_str("the e-mail address is not valid"),
            SkipReason::DoNotBulkEmail => {
                f.write_str("the person does not allow bulk e-mail (\"Do not allow: Bulk Email\")")
            }
            SkipReason::NoMatchingNewsletterType => f.write_str(
                "the person has not said yes to any newsletter type that the source sends",
            ),
        }
    }
}

/// The outcome of the rule for one member of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assessment {
    Eligible(ReceiverData),
    Skipped(SkipReason),
}

impl Assessment {
    /// What the planner gets for this member: the receiver it wants, an opt-out that keeps the
    /// address out of the group (a valid e-mail with "do not allow bulk e-mail"), or nothing.
    pub fn candidate(&self, recipient: &Recipient) -> Option<Candidate> {
        match self {
            Assessment::Eligible(data) => Some(Candidate::Wanted(data.clone())),
            Assessment::Skipped(SkipReason::DoNotBulkEmail) => recipient
                .email
                .as_deref()
                .and_then(|e| Email::parse(e).ok())
                .map(Candidate::OptedOut),
            Assessment::Skipped(_) => None,
        }
    }

    pub fn is_eligible(&self) -> bool {
        matches!(self, Assessment::Eligible(_))
    }
}

/// Applies rules 1–5 in order; the first rule that fails is the reason given.
pub fn assess(
    recipient: &Recipient,
    source_checklist: &Checklist,
    settings: &Settings,
) -> Assessment {
    match check(recipient, source_checklist, settings) {
        Ok(data) => Assessment::Eligible(data),
        Err(reason) => Assessment::Skipped(reason),
    }
}

fn check(
    recipient: &Recipient,
    source_checklist: &Checklist,
    settings: &Settings,
) -> Result<ReceiverData, SkipReason> {
    if !settings.transfers(recipient.kind) {
        return Err(SkipReason::EntityNotTransferred(recipient.kind));
    }
    if !recipient.active {
        return Err(SkipReason::Inactive);
    }
    let email = match Email::parse(recipient.email.as_deref().unwrap_or_default()) {
        Ok(email) => email,
        Err(EmailError::Empty) => return Err(SkipReason::MissingEmail),
        Err(EmailError::Invalid { .. }) => return Err(SkipReason::InvalidEmail),
    };
    if recipient.do_not_bulk_email {
        return Err(SkipReason::DoNotBulkEmail);
    }
    // Only configured types count: a stale entry for a removed type must not let anyone in.
    let wants_a_sent_type = settings.newsletter_types.iter().any(|t| {
        source_checklist.state_of(t.id) == ChoiceState::Yes
            && recipient.checklist.state_of(t.id) == ChoiceState::Yes
    });
    if !wants_a_sent_type {
        return Err(SkipReason::NoMatchingNewsletterType);
    }
    let text = |value: &Option<String>| value.as_deref().unwrap_or_default().trim().to_string();
    Ok(ReceiverData {
        email,
        person: PersonData {
            salutation: text(&recipient.salutation),
            first_name: text(&recipient.first_name),
            last_name: text(&recipient.last_name),
            company: text(&recipient.company),
        },
        crm: recipient.person.clone(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::domain::checklist::{ChecklistEntry, NewsletterType, NewsletterTypeId};
    use crate::domain::recipient::{CrmRef, PersonEntity};
    use ChoiceState::{No, NoChoice, Yes};
    use RecipientKind::{Account, Contact, Lead};
    use std::collections::BTreeSet;

    const INFO: i64 = 0;
    const ADS: i64 = 1;

    fn checklist(states: &[(i64, ChoiceState)]) -> Checklist {
        Checklist {
            entries: states
                .iter()
                .map(|(id, state)| ChecklistEntry {
                    id: NewsletterTypeId(*id),
                    state: *state,
                    ..ChecklistEntry::default()
                })
                .collect(),
        }
    }

    /// A contact who passes every rule against a source that sends "Information".
    fn anna() -> Recipient {
        Recipient {
            kind: Contact,
            person: CrmRef::new(
                PersonEntity::Contact,
                "11111111-2222-3333-4444-555555555555",
            ),
            active: true,
            email: Some("Anna.Muster@Example.de".into()),
            do_not_bulk_email: false,
            checklist: checklist(&[(INFO, Yes), (ADS, No)]),
            salutation: Some(" Frau ".into()),
            first_name: Some("Anna".into()),
            last_name: Some("Muster ".into()),
            company: Some("Muster GmbH".into()),
        }
    }

    fn info_source() -> Checklist {
        checklist(&[(INFO, Yes), (ADS, NoChoice)])
    }

    fn only(kinds: &[RecipientKind]) -> Settings {
        Settings {
            transfer_entities: kinds.iter().copied().collect::<BTreeSet<_>>(),
            ..Settings::default()
        }
    }

    #[test]
    fn a_member_passing_every_rule_becomes_a_receiver_with_trimmed_data() {
        let a = assess(&anna(), &info_source(), &Settings::default());
        let Assessment::Eligible(data) = a else {
            panic!("expected eligible, got {a:?}");
        };
        assert_eq!(data.email.as_str(), "anna.muster@example.de");
        assert_eq!(
            data.person,
            PersonData {
                salutation: "Frau".into(),
                first_name: "Anna".into(),
                last_name: "Muster".into(),
                company: "Muster GmbH".into(),
            }
        );
        assert_eq!(data.crm, anna().person);
    }

    #[test]
    fn missing_person_data_becomes_empty_text() {
        let r = Recipient {
            salutation: None,
            first_name: None,
            last_name: Some("   ".into()),
            company: None,
            ..anna()
        };
        let Assessment::Eligible(data) = assess(&r, &info_source(), &Settings::default()) else {
            panic!("expected eligible");
        };
        assert_eq!(data.person, PersonData::default());
    }

    /// One row per case: what changes from `anna()` and the source / settings, and the
    /// expected outcome (None = eligible).
    #[test]
    fn each_rule_on_its_own_and_in_combination() {
        type Case = (
            &'static str,
            fn(&mut Recipient, &mut Checklist, &mut Settings),
            Option<SkipReason>,
        );
        let cases: Vec<Case> = vec![
            ("everything fine", |_, _, _| {}, None),
            // Rule 1
            (
                "contacts not transferred",
                |_, _, s| *s = only(&[Lead, Account]),
                Some(SkipReason::EntityNotTransferred(Contact)),
            ),
            (
                "leads not transferred",
                |r, _, s| {
                    r.kind = Lead;
                    *s = only(&[Contact]);
                },
                Some(SkipReason::EntityNotTransferred(Lead)),
            ),
            (
                "accounts not transferred, though the primary contact is a contact",
                |r, _, s| {
                    r.kind = Account;
                    *s = only(&[Contact, Lead]);
                },
                Some(SkipReason::EntityNotTransferred(Account)),
            ),
            (
                "accounts transferred, contacts not",
                |r, _, s| {
                    r.kind = Account;
                    *s = only(&[Account]);
                },
                None,
            ),
            // Rule 2
            (
                "inactive",
                |r, _, _| r.active = false,
                Some(SkipReason::Inactive),
            ),
            (
                "inactive account (or its primary contact)",
                |r, _, _| {
                    r.kind = Account;
                    r.active = false;
                },
                Some(SkipReason::Inactive),
            ),
            // Rule 3
            (
                "no e-mail",
                |r, _, _| r.email = None,
                Some(SkipReason::MissingEmail),
            ),
            (
                "blank e-mail",
                |r, _, _| r.email = Some("   ".into()),
                Some(SkipReason::MissingEmail),
            ),
            (
                "invalid e-mail",
                |r, _, _| r.email = Some("anna at example".into()),
                Some(SkipReason::InvalidEmail),
            ),
            (
                "e-mail with blanks and capitals",
                |r, _, _| r.email = Some("  ANNA@EXAMPLE.DE \t".into()),
                None,
            ),
            // Rule 4
            (
                "do not bulk e-mail",
                |r, _, _| r.do_not_bulk_email = true,
                Some(SkipReason::DoNotBulkEmail),
            ),
            (
                "account that does not allow bulk e-mail",
                |r, _, _| {
                    r.kind = Account;
                    r.do_not_bulk_email = true;
                },
                Some(SkipReason::DoNotBulkEmail),
            ),
            // Rule 5
            (
                "person said no to the type the source sends",
                |r, _, _| r.checklist = checklist(&[(INFO, No), (ADS, Yes)]),
                Some(SkipReason::NoMatchingNewsletterType),
            ),
            (
                "person made no choice",
                |r, _, _| r.checklist = checklist(&[(INFO, NoChoice)]),
                Some(SkipReason::NoMatchingNewsletterType),
            ),
            (
                "person has an empty checklist",
                |r, _, _| r.checklist = Checklist::default(),
                Some(SkipReason::NoMatchingNewsletterType),
            ),
            (
                "source sends nothing",
                |_, c, _| *c = Checklist::default(),
                Some(SkipReason::NoMatchingNewsletterType),
            ),
            (
                "source says no to the person's type",
                |_, c, _| *c = checklist(&[(INFO, No), (ADS, Yes)]),
                Some(SkipReason::NoMatchingNewsletterType),
            ),
            (
                "one matching type out of two is enough",
                |r, c, _| {
                    *c = checklist(&[(INFO, Yes), (ADS, Yes)]);
                    r.checklist = checklist(&[(INFO, No), (ADS, Yes)]);
                },
                None,
            ),
            (
                "a shared type that is no longer configured does not count",
                |r, c, _| {
                    *c = checklist(&[(7, Yes)]);
                    r.checklist = checklist(&[(7, Yes)]);
                },
                Some(SkipReason::NoMatchingNewsletterType),
            ),
            (
                "a newly configured type counts",
                |r, c, s| {
                    s.newsletter_types.push(NewsletterType {
                        id: NewsletterTypeId(7),
                        description: "Events".into(),
                        position: 3,
                    });
                    *c = checklist(&[(7, Yes)]);
                    r.checklist = checklist(&[(7, Yes)]);
                },
                None,
            ),
            // Combinations: the first failing rule is the reason.
            (
                "not transferred and inactive",
                |r, _, s| {
                    *s = only(&[Lead]);
                    r.active = false;
                },
                Some(SkipReason::EntityNotTransferred(Contact)),
            ),
            (
                "inactive without e-mail",
                |r, _, _| {
                    r.active = false;
                    r.email = None;
                },
                Some(SkipReason::Inactive),
            ),
            (
                "invalid e-mail and do not bulk e-mail",
                |r, _, _| {
                    r.email = Some("broken@".into());
                    r.do_not_bulk_email = true;
                },
                Some(SkipReason::InvalidEmail),
            ),
            (
                "do not bulk e-mail and no matching type",
                |r, _, _| {
                    r.do_not_bulk_email = true;
                    r.checklist = Checklist::default();
                },
                Some(SkipReason::DoNotBulkEmail),
            ),
            (
                "every rule failing",
                |r, c, s| {
                    *s = only(&[Lead]);
                    r.active = false;
                    r.email = None;
                    r.do_not_bulk_email = true;
                    *c = Checklist::default();
                },
                Some(SkipReason::EntityNotTransferred(Contact)),
            ),
        ];
        for (name, change, expected) in cases {
            let (mut r, mut c, mut s) = (anna(), info_source(), Settings::default());
            change(&mut r, &mut c, &mut s);
            let outcome = assess(&r, &c, &s);
            match expected {
                None => assert!(
                    outcome.is_eligible(),
                    "{name}: expected eligible, got {outcome:?}"
                ),
                Some(reason) => assert_eq!(
                    outcome,
                    Assessment::Skipped(reason),
                    "{name}: expected skipped because {reason}"
                ),
            }
        }
    }

    #[test]
    fn an_account_member_becomes_a_receiver_as_its_primary_contact() {
        let r = Recipient {
            kind: Account,
            person: CrmRef::new(
                PersonEntity::Contact,
                "AAAAAAAA-0000-0000-0000-000000000001",
            ),
            company: Some("Account Name AG".into()),
            ..anna()
        };
        let Assessment::Eligible(data) = assess(&r, &info_source(), &Settings::default()) else {
            panic!("expected eligible");
        };
        assert_eq!(data.crm.entity, PersonEntity::Contact);
        assert_eq!(data.crm.id, "aaaaaaaa-0000-0000-0000-000000000001");
        assert_eq!(data.person.company, "Account Name AG");
    }

    #[test]
    fn the_same_address_in_other_spelling_gives_the_same_receiver() {
        let spellings = ["anna@example.de", " Anna@Example.DE", "ANNA@EXAMPLE.DE\n"];
        let emails: Vec<Email> = spellings
            .iter()
            .map(|e| {
                let r = Recipient {
                    email: Some(e.to_string()),
                    ..anna()
                };
                match assess(&r, &info_source(), &Settings::default()) {
                    Assessment::Eligible(data) => data.email,
                    other => panic!("{e:?}: {other:?}"),
                }
            })
            .collect();
        assert!(emails.iter().all(|e| e == &emails[0]), "{emails:?}");
    }

    #[test]
    fn an_eligible_member_is_a_wanted_candidate() {
        let r = anna();
        let a = assess(&r, &info_source(), &Settings::default());
        let Some(Candidate::Wanted(data)) = a.candidate(&r) else {
            panic!("expected a wanted candidate");
        };
        assert_eq!(data.email.as_str(), "anna.muster@example.de");
    }

    #[test]
    fn a_member_refusing_bulk_email_is_an_opt_out_candidate_with_their_address() {
        let r = Recipient {
            do_not_bulk_email: true,
            email: Some(" ANNA.muster@example.de ".into()),
            ..anna()
        };
        let a = assess(&r, &info_source(), &Settings::default());
        assert_eq!(
            a.candidate(&r),
            Some(Candidate::OptedOut(
                Email::parse("anna.muster@example.de").unwrap()
            ))
        );
    }

    #[test]
    fn other_skipped_members_are_no_candidate() {
        let cases = [
            Recipient {
                active: false,
                ..anna()
            },
            Recipient {
                email: None,
                ..anna()
            },
            Recipient {
                email: Some("nope".into()),
                do_not_bulk_email: true,
                ..anna()
            },
            Recipient {
                checklist: Checklist::default(),
                ..anna()
            },
            Recipient {
                kind: Lead,
                ..anna()
            },
        ];
        let settings = only(&[Contact, Account]);
        for r in cases {
            let a = assess(&r, &info_source(), &settings);
            assert!(!a.is_eligible(), "{r:?}");
            assert_eq!(a.candidate(&r), None, "{a:?}");
        }
    }

    #[test]
    fn skip_reasons_read_as_plain_sentences() {
        let texts = [
            SkipReason::EntityNotTransferred(Lead).to_string(),
            SkipReason::Inactive.to_string(),
            SkipReason::MissingEmail.to_string(),
            SkipReason::InvalidEmail.to_string(),
            SkipReason::DoNotBulkEmail.to_string(),
            SkipReason::NoMatchingNewsletterType.to_string(),
        ];
        assert!(texts[0].contains("lead") && texts[0].contains("transfersettings:entity"));
        assert!(texts[4].contains("bulk e-mail"));
        assert!(texts[5].contains("newsletter type"));
        let distinct: BTreeSet<&String> = texts.iter().collect();
        assert_eq!(distinct.len(), texts.len());
    }
}
