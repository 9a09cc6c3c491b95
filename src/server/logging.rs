//! Logging: one line per request plus lifecycle events, to stderr (journald captures it)
//! or to syslog; the level can be changed at run time (SIGHUP).

use crate::config::{LogLevel, LogTarget};
use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::reload;
use tracing_subscriber::util::SubscriberInitExt;
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
        // The level word is the first token of our format; map it to a priority.
        let r = if line.starts_with("ERROR") {
            logger.err(line)
        } else if line.starts_with("WARN") {
            logger.warning(line)
        } else if line.starts_with("DEBUG") || line.starts_with("TRACE") {
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
pub fn init(level: LogLevel, target: &LogTarget) -> LogHandle {
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
    let result = match syslog_writer {
        Some(w) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(w)
                    .with_ansi(false)
                    .without_time()
                    .with_target(false),
            )
            .try_init(),
        None => {
            // Under systemd, journald stamps each line itself.
            let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
            let layer = tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(false)
                .with_target(false);
            if under_journal {
                registry.with(layer.without_time()).try_init()
            } else {
                registry.with(layer).try_init()
            }
        }
    };
    if let Err(e) = result {
        eprintln!("docker-registry: logging already initialised: {e}");
    }
    LogHandle { handle }
}
