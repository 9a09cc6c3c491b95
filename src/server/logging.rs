//! Logging: one line per request plus lifecycle events, to stderr (journald captures it)
//! or to syslog, as text or JSON (`log.formatter`); the level can be changed at run time
//! (SIGHUP).

use crate::config::{LogFormat, LogLevel, LogTarget};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer as _;
use tracing_subscriber::Registry as Subscribers;

/// Changes the log level of the running process.
#[derive(Clone)]
pub struct LogHandle {
    handle: reload::Handle<LevelFilter, Subscribers>,
}

impl LogHandle {
    pub fn set_level(&self, level: LogLevel) {
        if let Err(e) = self.handle.modify(|f| *f = to_filter(level)) {
            eprintln!("docker-registry: cannot change the log level: {e}");
        }
    }
}

fn to_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

/// Sends each formatted line to the local syslog daemon (facility daemon).
#[derive(Clone)]
struct SyslogWriter {
    logger: Arc<Mutex<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>>,
}

struct SyslogLine {
    logger: Arc<Mutex<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>>,
    buf: Vec<u8>,
}

impl Write for SyslogLine {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let line = String::from_utf8_lossy(&self.buf);
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        let mut logger = self.logger.lock().unwrap_or_else(|p| p.into_inner());
        // The level word is the first token of the text format, a field of the JSON one;
        // map it to a priority.
        let level = match line.strip_prefix('{') {
            Some(fields) => fields
                .split_once("\"level\":\"")
                .map_or("", |(_, rest)| rest),
            None => line,
        };
        let r = if level.starts_with("ERROR") {
            logger.err(line)
        } else if level.starts_with("WARN") {
            logger.warning(line)
        } else if level.starts_with("DEBUG") || level.starts_with("TRACE") {
            logger.debug(line)
        } else {
            logger.info(line)
        };
        if r.is_err() {
            eprintln!("{line}");
        }
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine;
    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine {
            logger: self.logger.clone(),
            buf: Vec::with_capacity(256),
        }
    }
}

/// Installs the global logger. Returns the handle that changes its level.
pub fn init(level: LogLevel, target: &LogTarget, format: LogFormat) -> LogHandle {
    let (filter, handle) = reload::Layer::new(to_filter(level));
    let registry = tracing_subscriber::registry().with(filter);
    let syslog_writer = match target {
        LogTarget::Syslog => {
            let formatter = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_DAEMON,
                hostname: None,
                process: "docker-registry".into(),
                pid: std::process::id(),
            };
            match syslog::unix(formatter) {
                Ok(logger) => Some(SyslogWriter {
                    logger: Arc::new(Mutex::new(logger)),
                }),
                Err(e) => {
                    eprintln!("docker-registry: cannot reach syslog ({e}); logging to stderr");
                    None
                }
            }
        }
        LogTarget::Stderr => None,
    };
    // syslog and journald stamp each line themselves.
    let stamped = syslog_writer.is_none() && std::env::var_os("JOURNAL_STREAM").is_none();
    let result = match syslog_writer {
        Some(w) => registry.with(layer(w, format, stamped)).try_init(),
        None => registry.with(layer(io::stderr, format, stamped)).try_init(),
    };
    if let Err(e) = result {
        eprintln!("docker-registry: logging already initialised: {e}");
    }
    LogHandle { handle }
}

type Filtered =
    tracing_subscriber::layer::Layered<reload::Layer<LevelFilter, Subscribers>, Subscribers>;

/// The formatting layer: text (the level first, as the syslog writer expects), or one JSON
/// object per line with the event's fields at the top level, for log shippers.
fn layer<W>(
    writer: W,
    format: LogFormat,
    stamped: bool,
) -> Box<dyn tracing_subscriber::Layer<Filtered> + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let base = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false)
        .with_target(false);
    match (format, stamped) {
        (LogFormat::Json, _) => base
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .boxed(),
        (LogFormat::Text, true) => base.boxed(),
        (LogFormat::Text, false) => base.without_time().boxed(),
    }
}
