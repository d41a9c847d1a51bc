//! Telemetry setup: `tracing` with a pretty or JSON formatter, level from `RUST_LOG`
//! (default `info`, with the lapin crate's own lines off). Logs go to stderr so commands that print data keep stdout clean;
//! colour only when stderr is a terminal and `NO_COLOR` is unset, so log files and
//! journald get plain text. Once `run` knows its instance id ([`set_instance`]), every
//! line carries it (`[id] ` before a pretty line, an `instance` field in JSON), so the
//! logs of several bridges can be merged and still told apart.

use std::sync::OnceLock;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{fmt, EnvFilter};

static INSTANCE: OnceLock<String> = OnceLock::new();

/// Names this process's instance in every log line from now on (first call wins).
pub fn set_instance(id: &str) {
    let _ = INSTANCE.set(id.to_string());
}

/// An event format with the instance id added (see the module doc).
struct WithInstance<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithInstance<F>
where
    F: FormatEvent<S, N>,
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some(id) = INSTANCE.get() else {
            return self.inner.format_event(ctx, writer, event);
        };
        if !self.json {
            write!(writer, "[{id}] ")?;
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let id = serde_json::Value::String(id.clone());
                write!(writer, "{{\"instance\":{id},{rest}")
            }
            None => writer.write_str(&line),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, for terminals.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(format: LogFormat) {
    // lapin logs every failed connection attempt at ERROR, three lines each; the bridge
    // reports broker failures itself, once per outage (events/outage.rs), so lapin's own
    // lines are off unless RUST_LOG asks for them.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,lapin=off"));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let _ = match format {
        LogFormat::Pretty => builder
            .with_target(false)
            .map_event_format(|inner| WithInstance { inner, json: false })
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .map_event_format(|inner| WithInstance { inner, json: true })
            .try_init(),
    };
}
