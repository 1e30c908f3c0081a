//! Logging: `tracing` with JSON output in Lambda (`AWS_LAMBDA_LOG_FORMAT=JSON`, set by the
//! template), plain text locally; the level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`.
//!
//! Two guards hold whatever the level:
//! - the runtime, AWS SDK and HTTP crates log at most at INFO. At DEBUG/TRACE they print raw
//!   Lambda events (the webhook key in `?code=`, session cookies, OAuth codes) and request
//!   bodies (the token JSON written to Secrets Manager);
//! - every line leaves with its e-mail addresses replaced by a short tag
//!   ([`crate::redact::emails`]), as a last net under the adapters' own care.

use std::io::Write;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

/// Crates whose DEBUG/TRACE output carries request and event bodies; capped at INFO.
/// Targets match by prefix (`aws_smithy` covers every `aws_smithy_*` crate).
pub const CAPPED_TARGETS: &[&str] = &[
    "lambda_runtime",
    "lambda_http",
    "aws_smithy",
    "aws_sdk",
    "aws_config",
    "aws_runtime",
    "aws_sigv4",
    "aws_credential_types",
    "hyper",
    "h2",
    "reqwest",
    "rustls",
    "tower",
    "axum",
];

/// How the process logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// The level for every line not named by a directive (`None`: the directives' own
    /// default, INFO without one).
    pub level: Option<LevelFilter>,
    /// Extra `RUST_LOG`-style directives (`shared::adapters=debug`); never above the caps.
    pub directives: Option<String>,
    /// One JSON object per line (Lambda's JSON log format) instead of text.
    pub json: bool,
}

impl LogSettings {
    /// From `AWS_LAMBDA_LOG_LEVEL` (wins), else `RUST_LOG`, and `AWS_LAMBDA_LOG_FORMAT`.
    pub fn from_env() -> LogSettings {
        let lambda_level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
        let rust_log = std::env::var("RUST_LOG").ok();
        // RUST_LOG is either a bare level or a list of directives.
        let (level_text, directives) = match (&lambda_level, &rust_log) {
            (Some(level), _) => (Some(level.clone()), rust_log.clone()),
            (None, Some(log)) if log.parse::<LevelFilter>().is_ok() => (Some(log.clone()), None),
            (None, Some(log)) => (None, Some(log.clone())),
            (None, None) => (None, None),
        };
        LogSettings {
            level: level_text.and_then(|l| l.trim().parse().ok()),
            directives,
            json: std::env::var("AWS_LAMBDA_LOG_FORMAT")
                .is_ok_and(|f| f.trim().eq_ignore_ascii_case("json")),
        }
    }

    /// Text lines at `level`, no extra directives.
    pub fn at(level: LevelFilter) -> LogSettings {
        LogSettings {
            level: Some(level),
            directives: None,
            json: false,
        }
    }
}

/// Installs the subscriber once per process (writing to stdout, as Lambda expects).
pub fn init() {
    // A second call (tests, the local run) keeps the first subscriber.
    let _ = install(&LogSettings::from_env(), std::io::stdout);
}

/// Installs the connector's subscriber writing to `writer`; an error when one is already set.
/// Tests use it with a capturing writer, so that they check exactly what Lambda would log.
pub fn install<W>(settings: &LogSettings, writer: W) -> Result<(), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let levels = levels(settings);
    let caps = caps();
    let writer = Redacting(writer);
    let base = tracing_subscriber::registry().with(levels).with(caps);
    let result = if settings.json {
        base.with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_target(true)
                .without_time()
                .with_writer(writer),
        )
        .try_init()
    } else {
        base.with(
            tracing_subscriber::fmt::layer()
                .with_target(true)
                .without_time()
                .with_ansi(false)
                .with_writer(writer),
        )
        .try_init()
    };
    result.map_err(|e| e.to_string())
}

/// The level filter: the directives, with the level for everything they do not name.
fn levels(settings: &LogSettings) -> EnvFilter {
    let directives = settings.directives.as_deref().unwrap_or_default();
    let filter = EnvFilter::builder().parse_lossy(directives);
    match settings.level {
        Some(level) => filter.add_directive(level.into()),
        None if directives.trim().is_empty() => filter.add_directive(LevelFilter::INFO.into()),
        None => filter,
    }
}

/// The caps as a filter of their own: a directive in `RUST_LOG` cannot lift them, since an
/// event must pass this filter as well as the level filter.
fn caps() -> Targets {
    CAPPED_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, name| t.with_target(*name, LevelFilter::INFO),
    )
}

/// Wraps a writer so that each formatted line leaves with its e-mail addresses tagged.
struct Redacting<W>(W);

impl<'w, W: MakeWriter<'w>> MakeWriter<'w> for Redacting<W> {
    type Writer = RedactingWriter<W::Writer>;

    fn make_writer(&'w self) -> Self::Writer {
        RedactingWriter {
            inner: self.0.make_writer(),
            buffer: Vec::new(),
        }
    }
}

/// Collects one event's output (the formatter writes each event through its own writer) and
/// passes it on redacted when the event is done.
struct RedactingWriter<W: Write> {
    inner: W,
    buffer: Vec<u8>,
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return self.inner.flush();
        }
        let text = String::from_utf8_lossy(&self.buffer);
        let clean = crate::redact::emails(&text);
        self.inner.write_all(clean.as_bytes())?;
        self.buffer.clear();
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // A log line that cannot be written is lost; there is nowhere to report it.
        let _ = self.flush();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tracing::subscriber::with_default;

    #[derive(Clone, Default)]
    struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Capture {
        type Writer = Capture;
        fn make_writer(&'w self) -> Capture {
            self.clone()
        }
    }

    fn subscriber(capture: &Capture, directives: Option<&str>) -> impl tracing::Subscriber {
        let settings = LogSettings {
            directives: directives.map(str::to_string),
            ..LogSettings::at(LevelFilter::TRACE)
        };
        tracing_subscriber::registry()
            .with(levels(&settings))
            .with(caps())
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(Redacting(capture.clone())),
            )
    }

    #[test]
    fn runtime_and_sdk_lines_stop_at_info_even_when_trace_is_asked_for() {
        let capture = Capture::default();
        with_default(subscriber(&capture, Some("lambda_runtime=trace")), || {
            tracing::trace!(target: "lambda_runtime::layers::api_response", body = "code=k3y", "raw JSON event received from Lambda");
            tracing::debug!(target: "aws_smithy_runtime::client", "request body {{\"access_token\":\"t0k\"}}");
            tracing::trace!(target: "shared::handlers", "our own trace line");
            tracing::info!(target: "lambda_runtime", "runtime info");
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("k3y") && !text.contains("t0k"), "{text}");
        assert!(text.contains("our own trace line"), "{text}");
        assert!(text.contains("runtime info"), "{text}");
    }

    #[test]
    fn addresses_leave_as_tags() {
        let capture = Capture::default();
        with_default(subscriber(&capture, None), || {
            tracing::warn!(
                reason = "invalid address 'anna@example.org'",
                "receiver refused"
            );
        });
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("anna@example.org"), "{text}");
        assert!(
            text.contains(&crate::redact::email_tag("anna@example.org")),
            "{text}"
        );
    }

    #[test]
    fn a_bare_rust_log_level_is_the_level_and_directives_stay_directives() {
        // Only the parsing: the environment is not touched.
        assert_eq!(
            "debug".parse::<LevelFilter>().ok(),
            Some(LevelFilter::DEBUG)
        );
        assert!("shared=debug".parse::<LevelFilter>().is_err());
    }
}
