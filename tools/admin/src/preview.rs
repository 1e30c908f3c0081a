//! `crc-admin preview` and `crc-admin drift`: the real full reconcile of a source, run against
//! the real CRM and CleverReach through the dry-run adapter (`shared::adapters::dryrun`), so
//! that reads are real and nothing is written. What it would do is printed; for drift, every
//! difference between the CRM and the group with its reason.

use crate::AdminError;
use shared::adapters::dryrun::{DryRun, DryRunLog};
use shared::domain::brake::{self, Held, Removal};
use shared::domain::email::Email;
use shared::domain::rules::{Assessment, SkipReason, assess};
use shared::domain::settings::Settings;
use shared::domain::source::{SourceKind, SourceRecord};
use shared::usecases::Connector;
use shared::usecases::reconcile::{ReconcileReport, skip_label};
use shared::usecases::source::{GroupOutcome, resync_source};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

/// Addresses listed per operation in a preview.
pub const LISTED: usize = 20;

/// What a full reconcile of one source would do.
#[derive(Debug, Clone)]
pub struct Preview {
    pub kind: SourceKind,
    pub id: String,
    pub name: String,
    /// The group the source names now (`None`: it has none yet).
    pub group: Option<String>,
    /// What the sync would do to the group itself, in words.
    pub group_changes: Vec<String>,
    /// Why no reconcile would run (sync off, inactive), when it would not.
    pub no_reconcile: Option<String>,
    pub report: Option<ReconcileReport>,
    /// The run's writes, as written down by the dry run.
    pub log: DryRunLog,
    /// The brake would hold the removals back (they are listed all the same).
    pub brake: Option<Held>,
    /// Members read from the CRM, and those the rule lets in.
    pub members: usize,
    pub eligible: usize,
    pub record: SourceRecord,
    pub settings: Settings,
}

impl Preview {
    /// New receivers (upserted with activation), in order.
    pub fn added(&self) -> Vec<&Email> {
        self.log
            .upserts
            .iter()
            .filter(|(_, _, activate)| *activate)
            .map(|(_, e, _)| e)
            .collect()
    }

    /// Receivers upserted with new data (no state change).
    pub fn updated(&self) -> Vec<&Email> {
        self.log
            .upserts
            .iter()
            .filter(|(_, _, activate)| !*activate)
            .map(|(_, e, _)| e)
            .collect()
    }

    pub fn removed(&self) -> Vec<&Email> {
        self.log.removals.iter().map(|(_, e)| e).collect()
    }

    /// The group the reconcile works on (the dry run's stand-in when it would be created).
    fn working_group(&self) -> Option<String> {
        self.log
            .created_groups
            .first()
            .map(|(id, _)| id.clone())
            .or_else(|| self.group.clone())
    }
}

/// The connector with its writing ports wrapped by a dry run. With `assume_confirmed` the
/// brake lets every removal through, so that the ones it would hold back are planned and
/// listed; whether it would hold them is worked out from the counts.
pub fn dry(conn: &Connector, run: &DryRun, assume_confirmed: bool) -> Connector {
    let mut dry = conn.clone();
    dry.sources = run.sources(conn.sources.clone(), assume_confirmed);
    dry.members = run.members(conn.members.clone());
    dry.groups = run.groups(conn.groups.clone());
    dry.receivers = run.receivers(conn.receivers.clone());
    dry
}

/// What a full reconcile of this source would do, without writing anything.
pub async fn preview(conn: &Connector, kind: SourceKind, id: &str) -> Result<Preview, AdminError> {
    let settings = conn.settings().await?;
    let record = conn
        .sources
        .source(kind, id)
        .await
        .map_err(|e| AdminError::Sync(e.into()))?
        .ok_or_else(|| AdminError::NotFound(format!("{} {id} does not exist", kind.label())))?;
    let run = DryRun::new();
    let sync = resync_source(&dry(conn, &run, true), &settings, kind, id).await?;
    let log = run.log();
    let source = &record.source;
    let mut group_changes = Vec::new();
    for (_, name) in &log.created_groups {
        group_changes.push(format!("create the group {name:?}"));
    }
    for (_, name) in &log.renamed_groups {
        group_changes.push(format!("rename the group to {name:?}"));
    }
    if !log.described_groups.is_empty() {
        group_changes.push("set the group's description from the campaign activity".into());
    }
    let no_reconcile = match (&sync.report, sync.outcome) {
        (Some(_), _) => None,
        (None, _) if !source.sync_enabled => Some(
            "sync is off: a reconcile does nothing (the group is kept or deleted when the flag changes)"
                .to_string(),
        ),
        (None, _) if !source.active => Some("the source is inactive: its sync would be turned off".into()),
        (None, GroupOutcome::GroupUpdated) => Some("only the group's name or description would change".into()),
        (None, _) => Some("nothing to reconcile".into()),
    };
    let brake = sync.report.as_ref().and_then(|report| {
        let removal = Removal::Receivers {
            removing: report.summary.removed_receivers,
            active: report.active_before,
        };
        brake::check(&settings.brake, removal, record.removals_confirmed).held()
    });
    let eligible = log
        .members
        .iter()
        .filter(|m| assess(m, &source.checklist, &settings).is_eligible())
        .count();
    Ok(Preview {
        members: log.members.len(),
        eligible,
        kind,
        id: source.id.clone(),
        name: source.name.clone(),
        group: source.group_id.as_ref().map(|g| g.as_str().to_string()),
        group_changes,
        no_reconcile,
        report: sync.report,
        log,
        brake,
        record,
        settings,
    })
}

fn listed(emails: &[&Email]) -> String {
    let mut text: Vec<String> = emails.iter().take(LISTED).map(|e| e.to_string()).collect();
    if emails.len() > LISTED {
        text.push(format!("… ({} more)", emails.len() - LISTED));
    }
    text.join(", ")
}

fn line(out: &mut dyn Write, op: &str, count: usize, detail: &str) -> std::io::Result<()> {
    if detail.is_empty() {
        writeln!(out, "  {op:<15} {count:>7}")
    } else {
        writeln!(out, "  {op:<15} {count:>7}  {detail}")
    }
}

fn reasons(skipped: &BTreeMap<&'static str, usize>) -> String {
    skipped
        .iter()
        .map(|(reason, n)| format!("{n} {reason}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a preview: counts per operation (the numbers the source's status line will show),
/// the first addresses of each, opted-out and skipped counts with reasons.
pub fn print_preview(p: &Preview, out: &mut dyn Write) -> std::io::Result<()> {
    let group = match &p.group {
        Some(g) => format!("group {g}"),
        None => "no group yet".to_string(),
    };
    writeln!(
        out,
        "preview of {} {} {:?} ({group}): what a full reconcile would do; nothing was written",
        p.kind.label(),
        p.id,
        p.name
    )?;
    for change in &p.group_changes {
        writeln!(out, "  would {change}")?;
    }
    if let Some(why) = &p.no_reconcile {
        writeln!(out, "  {why}")?;
    }
    let Some(report) = &p.report else {
        return Ok(());
    };
    let s = &report.summary;
    let skipped: usize = report.skipped.values().sum();
    writeln!(
        out,
        "  members: {} in the CRM, {} eligible; active receivers in the group: {}",
        p.members, p.eligible, report.active_before
    )?;
    line(out, "add", s.added, &listed(&p.added()))?;
    line(out, "update", s.updated, &listed(&p.updated()))?;
    let moves: Vec<String> = p
        .log
        .email_changes
        .iter()
        .take(LISTED)
        .map(|(from, to)| format!("{from} → {to}"))
        .collect();
    line(out, "change e-mail", s.email_changed, &moves.join(", "))?;
    line(out, "remove", s.removed, &listed(&p.removed()))?;
    line(out, "unchanged", s.unchanged, "")?;
    let opted_out = s.kept_opted_out + s.skipped_blocked + s.opted_out;
    let mut why = Vec::new();
    if s.kept_opted_out > 0 {
        why.push(format!(
            "{} unsubscribed, bounced or blacklisted in CleverReach (left as they are)",
            s.kept_opted_out
        ));
    }
    if s.skipped_blocked > 0 {
        why.push(format!(
            "{} on the blacklist or bounce list, or opted out of this group before (not added)",
            s.skipped_blocked
        ));
    }
    if s.opted_out > 0 {
        why.push(format!(
            "{} with \"do not allow bulk e-mail\" in the CRM",
            s.opted_out
        ));
    }
    line(out, "opted out", opted_out, &why.join("; "))?;
    line(out, "skipped", skipped, &reasons(&report.skipped))?;
    if let Some(held) = &p.brake {
        writeln!(
            out,
            "  brake: the removals would be held back ({held}); the addresses above are what confirming would remove"
        )?;
    }
    Ok(())
}

/// Why a receiver and a member differ.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Difference {
    /// An eligible member the group lacks: the reconcile adds it.
    Missing,
    /// An active receiver whose data differ from the CRM: the reconcile updates it.
    AttributeDiffers,
    /// A member whose address changed: the reconcile moves the receiver.
    EmailDiffers { from: Email },
    /// An active receiver whose member the rule leaves out: the reconcile removes it.
    NotEligible(&'static str),
    /// An active receiver with "do not allow bulk e-mail" on a CRM record: removed.
    OptedOutInCrm,
    /// An active receiver no member has: removed.
    Stranger,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing => f.write_str("missing: an eligible member not in the group"),
            Difference::AttributeDiffers => {
                f.write_str("attribute differs: name, salutation, company or CRM record")
            }
            Difference::EmailDiffers { from } => {
                write!(f, "e-mail differs: the receiver is {from}")
            }
            Difference::NotEligible(reason) => write!(f, "not eligible: {reason}"),
            Difference::OptedOutInCrm => {
                f.write_str("opted out in the CRM: \"do not allow bulk e-mail\"")
            }
            Difference::Stranger => f.write_str("stranger: no member has this address"),
        }
    }
}

/// One source against its group.
#[derive(Debug, Clone)]
pub struct SourceDrift {
    pub preview: Preview,
    /// Members in the CRM (every member read) and those the rule lets in.
    pub members: usize,
    pub eligible: usize,
    /// Active receivers in the group.
    pub active_receivers: usize,
    /// What the next reconcile changes, and why.
    pub differences: Vec<(Email, Difference)>,
    /// Eligible members who opted out in CleverReach (or are blocked there): never
    /// re-activated, so no difference a reconcile changes.
    pub opted_out: Vec<Email>,
}

/// Every active source with sync on, against its group (one dry-run reconcile each).
pub async fn drift(conn: &Connector) -> Result<Vec<SourceDrift>, AdminError> {
    let sources = conn
        .sources
        .active_synced_sources()
        .await
        .map_err(|e| AdminError::Sync(e.into()))?;
    let mut all = Vec::new();
    for (kind, id) in sources {
        all.push(source_drift(conn, kind, &id).await?);
    }
    Ok(all)
}

/// One source against its group.
pub async fn source_drift(
    conn: &Connector,
    kind: SourceKind,
    id: &str,
) -> Result<SourceDrift, AdminError> {
    let preview = preview(conn, kind, id).await?;
    let mut eligible = BTreeSet::new();
    let mut skipped: BTreeMap<Email, SkipReason> = BTreeMap::new();
    for member in &preview.log.members {
        match assess(member, &preview.record.source.checklist, &preview.settings) {
            Assessment::Eligible(data) => {
                eligible.insert(data.email);
            }
            Assessment::Skipped(reason) => {
                if let Some(email) = member.email.as_deref().and_then(|e| Email::parse(e).ok()) {
                    skipped.entry(email).or_insert(reason);
                }
            }
        }
    }
    let group = preview.working_group().unwrap_or_default();
    let in_group = |email: &Email| {
        preview
            .log
            .group_receivers
            .get(&(group.clone(), email.clone()))
    };
    let mut differences = Vec::new();
    for (_, email, activate) in &preview.log.upserts {
        let why = if *activate {
            Difference::Missing
        } else {
            Difference::AttributeDiffers
        };
        differences.push((email.clone(), why));
    }
    for (from, to) in &preview.log.email_changes {
        differences.push((to.clone(), Difference::EmailDiffers { from: from.clone() }));
    }
    for (_, email) in &preview.log.removals {
        let why = match skipped.get(email) {
            Some(SkipReason::DoNotBulkEmail) => Difference::OptedOutInCrm,
            Some(reason) if !eligible.contains(email) => {
                Difference::NotEligible(skip_label(reason))
            }
            _ => Difference::Stranger,
        };
        differences.push((email.clone(), why));
    }
    let changed: BTreeSet<&Email> = differences.iter().map(|(e, _)| e).collect();
    let opted_out: Vec<Email> = eligible
        .iter()
        .filter(|e| !changed.contains(e))
        .filter(|e| in_group(e).is_none_or(|state| state.is_opted_out()))
        .cloned()
        .collect();
    let active_receivers = preview
        .report
        .as_ref()
        .map_or(0, |report| report.active_before);
    Ok(SourceDrift {
        members: preview.members,
        eligible: preview.eligible,
        active_receivers,
        differences,
        opted_out,
        preview,
    })
}

/// Prints one source's drift: the counts, then every difference with its reason.
pub fn print_drift(d: &SourceDrift, out: &mut dyn Write) -> std::io::Result<()> {
    let p = &d.preview;
    let group = p.group.as_deref().unwrap_or("none yet");
    writeln!(
        out,
        "{} {} {:?} (group {group}): {} CRM members, {} eligible; {} active receivers; {} differences",
        p.kind.label(),
        p.id,
        p.name,
        d.members,
        d.eligible,
        d.active_receivers,
        d.differences.len()
    )?;
    for (email, why) in &d.differences {
        writeln!(out, "  {email}  {why}")?;
    }
    for email in &d.opted_out {
        writeln!(
            out,
            "  {email}  opted out in CleverReach (left as it is; never re-activated)"
        )?;
    }
    if let Some(held) = &p.brake {
        writeln!(
            out,
            "  brake: the next reconcile's removals would be held back ({held})"
        )?;
    }
    Ok(())
}
