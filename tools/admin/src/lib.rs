//! `crc-admin`: what an administrator runs when something looks wrong (README "When something
//! goes wrong"). It uses the functions' own configuration (the environment sections of
//! `shared::config`, secrets from Secrets Manager through `shared::bootstrap::Start`):
//! - `preview <kind> <id>`: what a full reconcile of one source would do, nothing written;
//! - `drift [<kind>]`: every synced source against its group, each difference with its reason;
//! - `dlq list|show|redrive`: the dead-letter queues, a parked message decoded with the error
//!   it failed with, and moving messages back to the queue they came from.
//!
//! The work is in the library so that tests drive the same code against the sandbox and moto.

pub mod preview;

use shared::domain::source::SourceKind;
use shared::usecases::{Connector, SyncError};
use std::io::Write;

pub const USAGE: &str = "\
crc-admin: looks into a running CleverReach connector. Reads the same environment as the
functions (DATAVERSE_*, CLEVERREACH_*, the secrets in AWS Secrets Manager); changes nothing
except `dlq redrive`.

Usage:
  crc-admin preview <kind> <id>   what a full reconcile of this source would do: counts per
                                  operation, the first 20 addresses of each, opted-out and
                                  skipped counts with reasons; nothing is written
  crc-admin drift [<kind>]        every active source with sync on against its group: CRM
                                  members vs active receivers, every difference with its reason
  crc-admin dlq list [--queue Q]  the dead-letter queues with their message count and age
  crc-admin dlq show <message id> [--queue Q]
                                  one parked message: the change, the record, the error it
                                  last failed with (ids only, no personal data)
  crc-admin dlq redrive [--queue Q] [<message id>]
                                  moves the parked messages (or one) back to their queue

<kind>: list, campaign or campaignactivity. The dlq commands need CRC_STACK_NAME (the stack's
name: its queues are <stack>-…) and read FAILURE_TABLE when set (the failures' table).";

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("{0}")]
    Queue(String),
    #[error("could not start: {0}")]
    Start(String),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// A command line, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Preview { kind: SourceKind, id: String },
    Drift { kind: Option<SourceKind> },
}

/// A source kind as typed: `list` (`marketing-list`, `lists`), `campaign`,
/// `campaignactivity` (`campaign-activity`).
pub fn source_kind(text: &str) -> Result<SourceKind, AdminError> {
    let wanted = text
        .trim()
        .to_ascii_lowercase()
        .replace(['-', '_', ' '], "");
    let wanted = match wanted.as_str() {
        "marketinglist" | "marketinglists" => "list".to_string(),
        other => other.to_string(),
    };
    SourceKind::from_logical_name(&wanted)
        .or_else(|| SourceKind::from_entity_set(&wanted))
        .ok_or_else(|| {
            AdminError::Usage(format!(
                "unknown source kind {text:?}: use list, campaign or campaignactivity"
            ))
        })
}

/// Reads the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, AdminError> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] | ["help" | "--help" | "-h"] => Ok(Command::Help),
        ["preview", kind, id] => Ok(Command::Preview {
            kind: source_kind(kind)?,
            id: id.trim().to_ascii_lowercase(),
        }),
        ["preview", ..] => Err(AdminError::Usage(
            "preview needs a source kind and an id: crc-admin preview list <id>".into(),
        )),
        ["drift"] => Ok(Command::Drift { kind: None }),
        ["drift", kind] => Ok(Command::Drift {
            kind: Some(source_kind(kind)?),
        }),
        [other, ..] => Err(AdminError::Usage(format!("unknown command {other:?}"))),
    }
}

/// Runs a preview or drift command on a connector and prints the result.
pub async fn run_on(
    conn: &Connector,
    command: &Command,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    match command {
        Command::Help => writeln!(out, "{USAGE}")?,
        Command::Preview { kind, id } => {
            let preview = preview::preview(conn, *kind, id).await?;
            preview::print_preview(&preview, out)?;
        }
        Command::Drift { kind } => {
            let all = preview::drift(conn).await?;
            let mut shown = 0;
            let mut differences = 0;
            for d in all
                .iter()
                .filter(|d| kind.is_none_or(|k| d.preview.kind == k))
            {
                preview::print_drift(d, out)?;
                shown += 1;
                differences += d.differences.len();
            }
            writeln!(out, "{shown} sources, {differences} differences in all")?;
        }
    }
    Ok(())
}

/// The program: reads the arguments, builds what the command needs from the environment (as
/// the functions do) and runs it.
pub async fn main_with(args: &[String], out: &mut dyn Write) -> Result<(), AdminError> {
    let command = parse(args)?;
    if command == Command::Help {
        return run_on_nothing(out);
    }
    let start = shared::bootstrap::Start::new().await;
    let conn = start
        .connector()
        .await
        .map_err(|e| AdminError::Start(e.to_string()))?;
    run_on(&conn, &command, out).await
}

fn run_on_nothing(out: &mut dyn Write) -> Result<(), AdminError> {
    writeln!(out, "{USAGE}")?;
    Ok(())
}
