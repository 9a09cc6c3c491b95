//! The daemon: a tokio runtime with the configured worker threads; storage, access control
//! and TLS wired from the configuration; then the [listener](listener::Listener) (one task per
//! connection, see [`connection`]) until a [stop signal](shutdown), with systemd readiness
//! and watchdog, SIGHUP reloads, and the [maintenance] tasks alongside.

mod activity;
pub mod admin;
mod admission;
mod connection;
pub mod debug;
pub mod limits;
pub mod listen;
mod listener;
pub mod logging;
pub mod maintenance;
pub mod memory;
pub mod notify;
pub mod security;
mod shutdown;

use crate::api::AppState;
use crate::config::{Config, ConfigErrors, LogTarget, StorageConfig};
use crate::registry::{Registry, RegistryOptions};
use crate::storage::{FilesystemDriver, S3Driver, StorageDriver, StorageError, TimedDriver};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// Reloads the configuration on SIGHUP.
pub type Reloader = Box<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// Threads at most in the runtime's blocking pool, where every filesystem call, pread,
/// hash and bcrypt runs. Each is short, so a few dozen keep the disk and the cores busy: a
/// collection has at most 32 storage calls in flight, leaving the rest for requests. The
/// bound matters because the pool never gives back what a burst made it start while any
/// work trickles in: tokio wakes the thread that has waited longest, so under a steady load
/// every idle thread is woken before its 10 s keep-alive runs out (the soak saw 14 threads
/// become 117 after the first online collection, for good). Past the bound, calls wait in
/// the pool's queue.
const MAX_BLOCKING_THREADS: usize = 64;

/// The runtime the daemon runs on: `workers` threads for the tasks, and a bounded pool for
/// blocking calls.
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name("registry-worker")
        .enable_all()
        .build()
}

/// Builds the runtime and serves until a stop signal. Returns the process exit code.
pub fn run(config: Config, log: logging::LogHandle, reload: Reloader) -> i32 {
    let workers = match config.workers.value {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    memory::tune_allocator();
    let rt = match runtime(workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "docker-registry: cannot start the runtime with {workers} worker threads: {e}"
            );
            return 1;
        }
    };
    // One line on stderr (the terminal, or journald); the log gets it too only when it
    // goes elsewhere (syslog), so a failure is never reported twice in one place.
    let logs_to_stderr = config.log_target.value == LogTarget::Stderr;
    match rt.block_on(serve(config, workers, log, reload)) {
        Ok(()) => 0,
        Err(message) => {
            if !logs_to_stderr {
                tracing::error!("{message}");
            }
            notify::status(&format!("failed: {message}"));
            eprintln!("docker-registry: {message}");
            1
        }
    }
}

/// The storage driver the configuration names (also used by the maintenance commands).
pub fn build_driver(config: &Config) -> Result<Arc<dyn StorageDriver>, String> {
    Ok(match &config.storage.value {
        StorageConfig::Filesystem { root } => {
            let driver = FilesystemDriver::new(root.clone());
            Arc::new(if config.direct_writes.value {
                driver
            } else {
                driver.with_buffered_writes()
            })
        }
        StorageConfig::S3(options) => {
            for w in options.warnings() {
                tracing::warn!("{w}");
            }
            let driver = S3Driver::new(options.as_ref().clone())?;
            tracing::info!("S3 credentials: {}", driver.credentials().describe());
            Arc::new(driver)
        }
    })
}

async fn serve(
    config: Config,
    workers: usize,
    log: logging::LogHandle,
    reload: Reloader,
) -> Result<(), String> {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let debug = config.debug.value.clone();
    let mut driver = build_driver(&config)?;
    if debug.prometheus_enabled {
        crate::metrics::enable();
        driver = Arc::new(TimedDriver::new(driver));
    }
    let state = request_state(&config, driver.clone())?;
    let tls = security::Tls::from_config(&config)?;
    check_storage(driver.as_ref()).await?;
    recover_storage(state.registry.clone()).await;
    let debug_listener = match debug.addr {
        Some(addr) => {
            let metrics = debug.prometheus_enabled.then_some(debug.prometheus_path);
            let routes = debug::DebugRoutes {
                registry: state.registry.clone(),
                metrics: metrics.clone(),
            };
            let (local, task) = debug::spawn(addr, routes).await?;
            tracing::info!(
                "debug listener on http://{local}: /debug/health{}",
                metrics
                    .map(|p| format!(", metrics at {p}"))
                    .unwrap_or_default()
            );
            Some(task)
        }
        None => None,
    };
    // The daemon stops through `flush` below, which empties the journal (a crash leaves it
    // for the next start's replay).
    driver.journal_writes().await;
    let tcp = match listen::inherited()? {
        Some(inherited) => inherited,
        None => bind(config.listen.value).await?,
    };
    let local = tcp
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;

    let auth_watcher = state.auth.clone().map(security::spawn_auth_watcher);
    // Upload purging, scheduled garbage collection and the admin socket.
    let maintenance = maintenance::spawn(state.registry.clone(), &config);
    warm_catalog(state.registry.clone());
    // Other instances' writes, on a store several serve (see `registry::changes`).
    tokio::spawn(state.registry.clone().follow_changes());
    let registry = state.registry.clone();
    tokio::spawn(async move { registry.build_search_index().await });
    tracing::info!(
        "docker-registry {} listening on {}://{local} with {workers} worker threads; data in {}, set by {}; deletion {}, {}",
        env!("CARGO_PKG_VERSION"),
        match &tls {
            Some(_) => "https",
            None => "http",
        },
        driver.location(),
        config.storage.source,
        if config.delete_enabled.value { "enabled" } else { "disabled" },
        access_summary(&state, tls.as_deref()),
    );
    let (limits, max_connections) = connection_limits(&config);
    let sendfile = config.sendfile.value;
    let stop = shutdown::StopSignal::install()?;
    let reloader = spawn_reloader(reload, log, state.auth.clone(), tls.clone(), config)?;
    notify::ready(&format!("serving on {local}"));
    memory::spawn_trimmer();
    let watchdog = notify::spawn_watchdog(state.registry.clone());

    listener::Listener::new(tcp, state, tls, limits, max_connections, sendfile)
        .run(async {
            stop.recv().await;
            notify::stopping();
        })
        .await;

    for task in [watchdog, auth_watcher, debug_listener, Some(reloader)]
        .into_iter()
        .flatten()
    {
        task.abort();
    }
    maintenance.stop();
    if let Err(e) = driver.flush().await {
        tracing::warn!(
            "cannot make the last manifest writes durable in place: {e}; the next start finishes them from the journal"
        );
    }
    Ok(())
}

/// Refuses to start on storage the daemon cannot write to. A bucket that cannot be reached
/// is waited for a while (readiness waits with it): S3 or the network may come up after us.
async fn check_storage(driver: &dyn StorageDriver) -> Result<(), String> {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);
    let started = std::time::Instant::now();
    loop {
        notify::status("checking storage");
        let e = match driver.check_writable().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if matches!(e, StorageError::Unavailable { .. }) && started.elapsed() < PATIENCE {
            notify::status(&format!("waiting for storage: {e}"));
            tracing::warn!("waiting for storage: {e}");
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            continue;
        }
        // The driver's error names the path already when it comes from the file system.
        let (location, e) = (driver.location(), e.to_string());
        let what = if e.contains(&location) {
            e
        } else {
            format!("{location}: {e}")
        };
        let fix = match driver.name() {
            "filesystem" => format!(
                "choose a directory it can write with --storage-path, storage_path in {} or \
                 REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
                crate::config::DEFAULT_CONFIG
            ),
            _ => "check storage.s3.* (docker-registry config shows them)".to_owned(),
        };
        return Err(format!("storage is not writable: {what}; {fix}"));
    }
}

/// Clears what writes interrupted by a crash left behind (see `registry::recovery`): the
/// store is claimed before serving, the walk (long on a large store) runs while serving.
/// Clutter, not damage: failing to clear it does not stop the start.
async fn recover_storage(registry: Arc<Registry>) {
    let warn = |e: crate::registry::RegistryError| {
        tracing::warn!(
            "cannot clear the leftovers of interrupted writes: {e}; `docker-registry fsck` lists them"
        )
    };
    let scope = match registry.start_recovery().await {
        Ok(s) => s,
        Err(e) => return warn(e),
    };
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        match registry.finish_recovery(scope, true).await {
            Ok(removed) => {
                for l in &removed {
                    tracing::debug!("removed leftover: {l}");
                }
                tracing::info!(
                    "recovery: {} leftovers of interrupted writes removed in {:.1}s",
                    removed.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => warn(e),
        }
    });
}

/// What every request shares: the registry over `driver`, access control, and the settings
/// the API reads.
fn request_state(config: &Config, driver: Arc<dyn StorageDriver>) -> Result<Arc<AppState>, String> {
    let registry = Registry::new(
        driver,
        RegistryOptions {
            delete_enabled: config.delete_enabled.value,
            readonly: config.readonly.value,
            redirect: !config.redirect_disable.value,
            ..RegistryOptions::shared_by_instances(config)
        },
    );
    Ok(Arc::new(AppState {
        registry: Arc::new(registry),
        issue: config.issue.value.clone(),
        auth: security::build_auth(config)?,
        token: security::build_token(config)?,
        token_issuer: security::build_token_issuer(config)?,
        trust_forwarded_headers: config.trust_forwarded_headers.value,
        json_log: config.log_formatter.value == crate::config::LogFormat::Json,
        events: start_events(config)?,
        proxy: crate::registry::proxy::Proxy::new(&config.proxy_upstreams())?,
        ui: Default::default(),
    }))
}

/// The notification queue and its senders, when an endpoint is configured.
fn start_events(config: &Config) -> Result<Option<Arc<crate::events::Events>>, String> {
    let endpoints = &config.notifications.value;
    if endpoints.iter().all(|e| e.disabled) {
        return Ok(None);
    }
    let queue = &config.events_queue.value;
    let directory = match (&queue.directory, &config.storage.value) {
        (Some(d), _) => d.clone(),
        (None, StorageConfig::Filesystem { root }) => root.join("docker-registry-events"),
        (None, _) => {
            return Err("notifications need a local directory for their queue: set notifications.queue.directory (or REGISTRY_NOTIFICATIONS_QUEUE_DIRECTORY)".into())
        }
    };
    let events = crate::events::start(endpoints, &directory, queue.limit)?;
    let names: Vec<&str> = endpoints
        .iter()
        .filter(|e| !e.disabled)
        .map(|e| e.name.as_str())
        .collect();
    tracing::info!(
        "notifications to {} queued in {}",
        names.join(", "),
        directory.display()
    );
    Ok(Some(events))
}

/// Walks the repositories once in the background, so the first catalog request does not
/// pay for it.
fn warm_catalog(registry: Arc<Registry>) {
    tokio::spawn(async move {
        if let Err(e) = registry.catalog().await {
            tracing::warn!("cannot list the repositories: {e}");
        }
        // The walk's scratch memory is free now: give it back rather than idle on it.
        memory::trim().await;
    });
}

/// The connection limits and the connection maximum that fits the open-file limit (raised
/// to its hard limit first).
fn connection_limits(config: &Config) -> (crate::config::Connections, usize) {
    let mut limits = config.connections.value.clone();
    let open_files = limits::raise_open_file_limit();
    let max = limits.max_connections(open_files);
    if config.trust_forwarded_headers.value && limits.per_client != 0 {
        // Behind a proxy every connection comes from the proxy's address.
        tracing::info!("no per-client connection limit: clients come through a proxy (trust_forwarded_headers)");
        limits.per_client = 0;
    }
    tracing::info!(
        "at most {max} connections ({} per client address), open-file limit {open_files}; a request head must arrive within {}s, a body may pause {}s, a connection may idle {}s between requests",
        match limits.per_client {
            0 => "any number".to_owned(),
            n => n.to_string(),
        },
        limits.header_timeout.as_secs_f64(),
        limits.body_idle_timeout.as_secs_f64(),
        limits.idle_timeout.as_secs_f64(),
    );
    (limits, max)
}

/// How clients are let in, for the start-up line.
fn access_summary(state: &AppState, tls: Option<&security::Tls>) -> &'static str {
    let mutual = tls.is_some_and(|t| t.mutual());
    match (&state.auth, mutual) {
        _ if state.token.is_some() => "token authentication",
        (Some(_), true) => "basic authentication, client certificates required",
        (Some(_), false) => "basic authentication",
        (None, true) => "client certificates required, no authentication",
        (None, false) => "no authentication",
    }
}

/// Reloads on every SIGHUP: the configuration (its log level applies at once), the
/// authentication files and the certificates.
fn spawn_reloader(
    reload: Reloader,
    log: logging::LogHandle,
    auth: Option<Arc<crate::auth::Authenticator>>,
    tls: Option<Arc<security::Tls>>,
    running: Config,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reload_config(&reload, &log, |new| {
                security::reload(auth.as_deref(), tls.as_deref(), &running, new)
            });
        }
    }))
}

/// `also` reloads what depends on the configuration's files (passwords, certificates) before
/// the daemon says it is ready again.
fn reload_config(reload: &Reloader, log: &logging::LogHandle, also: impl FnOnce(Option<&Config>)) {
    notify::reloading();
    tracing::info!("SIGHUP: reloading configuration");
    let new = match reload() {
        Ok(c) => {
            log.set_level(c.log_level.value);
            tracing::info!(
                "SIGHUP: configuration reloaded; log level {}",
                c.log_level.value.as_str()
            );
            Some(c)
        }
        Err(e) => {
            tracing::error!("SIGHUP: configuration not reloaded, keeping the running one:\n{e}");
            None
        }
    };
    also(new.as_ref());
    notify::ready("serving");
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                " (another process is using this port; set REGISTRY_PORT)"
            }
            std::io::ErrorKind::PermissionDenied => " (ports below 1024 need CAP_NET_BIND_SERVICE)",
            std::io::ErrorKind::AddrNotAvailable => {
                " (no interface has this address; check REGISTRY_ADDRESS)"
            }
            _ => "",
        };
        format!("cannot listen on {addr}: {e}{hint}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A burst of blocking calls far past the bound is served by at most the bound's
    /// threads (tokio's default would start one thread per call here).
    #[test]
    fn a_burst_of_blocking_calls_starts_no_more_threads_than_the_bound() {
        let rt = runtime(2).expect("runtime");
        let threads = Arc::new(Mutex::new(HashSet::new()));
        rt.block_on(async {
            let calls: Vec<_> = (0..4 * MAX_BLOCKING_THREADS)
                .map(|_| {
                    let threads = threads.clone();
                    tokio::task::spawn_blocking(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        let mut seen = threads.lock().unwrap_or_else(|p| p.into_inner());
                        seen.insert(std::thread::current().id());
                    })
                })
                .collect();
            for c in calls {
                c.await.expect("blocking call");
            }
        });
        let used = threads.lock().unwrap_or_else(|p| p.into_inner()).len();
        assert!(
            used <= MAX_BLOCKING_THREADS,
            "{used} threads for {} calls",
            4 * MAX_BLOCKING_THREADS
        );
        assert!(used > 1, "the calls ran in parallel");
    }
}
