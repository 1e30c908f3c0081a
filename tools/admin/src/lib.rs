//! `crc-admin`: what an administrator runs when something looks wrong (README "When something
//! goes wrong"). It uses the functions' own configuration (the environment sections of
//! `shared::config`, secrets from Secrets Manager through `shared::bootstrap::Start`):
//! - `preview <kind> <id>`: what a full reconcile of one source would do, nothing written;
//! - `drift [<kind>]`: every synced source against its group, each difference with its reason;
//! - `dlq list|show|redrive`: the dead-letter queues, a parked message decoded with the error
//!   it failed with, and moving messages back to the queue they came from.
//!
//! The work is in the library so that tests drive the same code against the sandbox and moto.

pub mod dlq;
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
    Preview {
        kind: SourceKind,
        id: String,
    },
    Drift {
        kind: Option<SourceKind>,
    },
    DlqList {
        queue: Option<String>,
    },
    DlqShow {
        id: String,
        queue: Option<String>,
    },
    DlqRedrive {
        id: Option<String>,
        queue: Option<String>,
    },
}

impl Command {
    fn is_dlq(&self) -> bool {
        matches!(
            self,
            Command::DlqList { .. } | Command::DlqShow { .. } | Command::DlqRedrive { .. }
        )
    }
}

/// `--queue Q` taken out of `words`; what is left.
fn queue_option<'a>(words: &[&'a str]) -> Result<(Option<String>, Vec<&'a str>), AdminError> {
    let mut queue = None;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "--queue" => {
                let name = words
                    .get(i + 1)
                    .ok_or_else(|| AdminError::Usage("--queue needs a queue name".into()))?;
                queue = Some((*name).to_string());
                i += 2;
            }
            word if word.starts_with("--") => {
                return Err(AdminError::Usage(format!("unknown option {word}")));
            }
            word => {
                rest.push(word);
                i += 1;
            }
        }
    }
    Ok((queue, rest))
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
        ["dlq", sub, rest @ ..] => {
            let (queue, rest) = queue_option(rest)?;
            match (*sub, rest.as_slice()) {
                ("list", []) => Ok(Command::DlqList { queue }),
                ("show", [id]) => Ok(Command::DlqShow {
                    id: (*id).to_string(),
                    queue,
                }),
                ("redrive", []) => Ok(Command::DlqRedrive { id: None, queue }),
                ("redrive", [id]) => Ok(Command::DlqRedrive {
                    id: Some((*id).to_string()),
                    queue,
                }),
                ("show", _) => Err(AdminError::Usage("dlq show needs one message id".into())),
                _ => Err(AdminError::Usage(format!(
                    "unknown dlq command {sub:?}: use list, show or redrive"
                ))),
            }
        }
        ["dlq"] => Err(AdminError::Usage(
            "dlq needs a command: list, show or redrive".into(),
        )),
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
        Command::DlqList { .. } | Command::DlqShow { .. } | Command::DlqRedrive { .. } => {
            return Err(AdminError::Usage(
                "the dlq commands work on the queues, not on a connector".into(),
            ));
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
    if command.is_dlq() {
        let config = shared::config::OperationsConfig::from_env(&start.env)
            .map_err(|e| AdminError::Start(e.to_string()))?;
        let dlq = dlq::Dlq {
            sqs: aws_sdk_sqs::Client::new(&start.aws),
            stack: config.stack_name,
            failures: start.failure_log(),
        };
        return run_dlq(&dlq, &command, out).await;
    }
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

/// Runs a dlq command and prints the result.
pub async fn run_dlq(
    dlq: &dlq::Dlq,
    command: &Command,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    match command {
        Command::DlqList { queue } => {
            let states = dlq.list(queue.as_deref()).await?;
            dlq::print_list(&states, out)?;
        }
        Command::DlqShow { id, queue } => {
            for line in dlq.show(id, queue.as_deref()).await? {
                writeln!(out, "{line}")?;
            }
        }
        Command::DlqRedrive { id, queue } => {
            let moved = dlq.redrive(queue.as_deref(), id.as_deref()).await?;
            writeln!(out, "{moved} messages moved back to their queues")?;
        }
        other => {
            return Err(AdminError::Usage(format!("{other:?} is not a dlq command")));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn commands_are_read_with_their_kind_id_and_queue() {
        assert_eq!(
            parse(&words("preview campaign-activity ABC-1")).unwrap(),
            Command::Preview {
                kind: SourceKind::CampaignActivity,
                id: "abc-1".into()
            }
        );
        assert_eq!(
            parse(&words("drift marketing-list")).unwrap(),
            Command::Drift {
                kind: Some(SourceKind::MarketingList)
            }
        );
        assert_eq!(
            parse(&words("dlq redrive --queue contact m-1")).unwrap(),
            Command::DlqRedrive {
                id: Some("m-1".into()),
                queue: Some("contact".into())
            }
        );
        assert_eq!(
            parse(&words("dlq show m-2")).unwrap(),
            Command::DlqShow {
                id: "m-2".into(),
                queue: None
            }
        );
        assert_eq!(parse(&[]).unwrap(), Command::Help);
    }

    #[test]
    fn a_bad_command_line_is_refused_naming_what_is_wrong() {
        for (line, named) in [
            ("preview contact 1", "\"contact\""),
            ("preview list", "preview needs a source kind and an id"),
            ("dlq list --queue", "--queue needs a queue name"),
            ("dlq list --force", "--force"),
            ("dlq purge", "\"purge\""),
            ("dlq show", "one message id"),
            ("restart", "\"restart\""),
        ] {
            let err = parse(&words(line)).unwrap_err().to_string();
            assert!(err.contains(named), "{line}: {err}");
        }
    }
}
