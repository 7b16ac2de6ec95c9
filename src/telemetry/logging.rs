//! The process's one `tracing` subscriber: a filter from `RUST_LOG` (default: `info` for the
//! bridge's crates, `warn` for dependencies), text or JSON lines, to standard error or a file.
//!
//! JSON lines carry `timestamp`, `level`, `target`, the event's `fields` and the spans it ran
//! in (`span`, `spans`): a transaction's events carry its `reference`, `kind` and, in the lab,
//! its `lane`. Card data never reaches a field: the types that hold it mask themselves in
//! `Debug`/`Display`, and the leak scan reads the logs of the scenario suite for it.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

/// The bridge's crates, logged at `info` by default (dependencies at `warn`). The embedded
/// simulator and sandbox (`emvbridge_sim`, `emvbridge_sandbox`) log every reader command and
/// gateway request at `info`; next to the bridge they are dependencies (`warn`) unless
/// `RUST_LOG` asks for them.
pub const OWN_CRATES: [&str; 3] = ["emvbridge", "emvbridge_core", "emvbridge_protocol"];

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields, spans).
    Json,
}

/// The global logging flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "EMVBRIDGE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Append logs to this file instead of standard error.
    #[arg(long, global = true, value_name = "FILE", env = "EMVBRIDGE_LOG_FILE")]
    pub log_file: Option<PathBuf>,
}

/// The default filter at `level` for the bridge's crates and `warn` for everything else.
pub fn default_filter(level: &str) -> String {
    let mut s = String::from("warn");
    for c in OWN_CRATES {
        s.push_str(&format!(",{c}={level}"));
    }
    // Targets match by prefix: `emvbridge` would also take in the simulator and the sandbox.
    s.push_str(",emvbridge_sim=warn,emvbridge_sandbox=warn");
    s
}

/// The filter: `RUST_LOG` when set and valid, else [`default_filter`] at `level`. An invalid
/// `RUST_LOG` is reported on standard error (the subscriber that would log it does not exist
/// yet) and the default used.
fn filter(level: &str) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => EnvFilter::try_new(&s).unwrap_or_else(|e| {
            eprintln!("warning: RUST_LOG={s:?} is not a valid filter ({e}); using the default");
            EnvFilter::new(default_filter(level))
        }),
        _ => EnvFilter::new(default_filter(level)),
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file cannot be opened for appending.
    #[error("cannot open the log file {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn open_append(path: &Path) -> Result<std::fs::File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::File {
            path: path.display().to_string(),
            source,
        })
}

static PLAIN_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether log lines go to standard error as text, next to what commands print there
/// themselves (`error: …`): an error already printed for the user is then logged at `debug`
/// rather than printed twice.
pub fn logs_on_plain_stderr() -> bool {
    PLAIN_STDERR.load(std::sync::atomic::Ordering::Relaxed)
}

/// Logs a command's error: at `error` when logs go to a file or as JSON, else at `debug`
/// (the command prints it to standard error itself).
pub fn command_error(what: &str, e: &dyn std::fmt::Display) {
    if logs_on_plain_stderr() {
        tracing::debug!(error = %e, "{what}");
    } else {
        tracing::error!(error = %e, "{what}");
    }
}

/// The layers under the filter.
type Layers = Box<
    dyn tracing_subscriber::Layer<
            tracing_subscriber::layer::Layered<EnvFilter, tracing_subscriber::Registry>,
        > + Send
        + Sync,
>;

/// Installs the global subscriber: `level` is the default for the bridge's crates when
/// `RUST_LOG` is not set; with `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are also exported
/// over OTLP ([`super::traces`]). A second call (tests) leaves the first subscriber in place.
///
/// # Errors
/// [`LogError::File`].
pub fn init(args: &LogArgs, level: &str) -> Result<(), LogError> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let writer = match &args.log_file {
        Some(p) => BoxMakeWriter::new(Mutex::new(open_append(p)?)),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    PLAIN_STDERR.store(
        args.log_file.is_none() && args.log_format == LogFormat::Text,
        std::sync::atomic::Ordering::Relaxed,
    );
    let ansi = args.log_file.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt: Layers = match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(false)
            .with_writer(writer)
            .boxed(),
    };
    let mut layers = vec![fmt];
    let otlp = super::traces::layer();
    if let Some(l) = otlp {
        layers.push(l);
    }
    let _ = tracing_subscriber::registry()
        .with(filter(level))
        .with(layers)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_filter_is_info_for_the_bridge_and_warn_for_the_rest() {
        let f = default_filter("info");
        assert!(f.starts_with("warn,"));
        assert!(f.contains("emvbridge=info") && f.contains("emvbridge_core=info"));
        assert!(EnvFilter::try_new(&f).is_ok());
    }
}
