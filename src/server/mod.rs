//! The daemon: a tokio runtime with the configured worker threads, the listener, systemd
//! readiness and watchdog, signals (SIGTERM/SIGINT stop gracefully, SIGHUP reloads), and
//! one task per connection, bounded by a semaphore so overload is back-pressure, not a crash.

pub mod listen;
pub mod logging;
pub mod maintenance;
pub mod memory;
pub mod notify;
pub mod security;

use crate::api::{self, AppState};
use crate::config::{Config, ConfigErrors, StorageConfig};
use crate::registry::{Registry, RegistryOptions};
use crate::storage::{FilesystemDriver, StorageDriver};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 4096;
/// How long in-flight requests may run after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Reloads the configuration on SIGHUP.
pub type Reloader = Box<dyn Fn() -> Result<Config, ConfigErrors> + Send + Sync>;

/// Builds the runtime and serves until a stop signal. Returns the process exit code.
pub fn run(config: Config, log: logging::LogHandle, reload: Reloader) -> i32 {
    let workers = match config.workers.value {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        n => n,
    };
    memory::tune_allocator();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("registry-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "docker-registry: cannot start the runtime with {workers} worker threads: {e}"
            );
            return 1;
        }
    };
    match rt.block_on(serve(config, workers, log, reload)) {
        Ok(()) => 0,
        Err(message) => {
            tracing::error!("{message}");
            notify::status(&format!("failed: {message}"));
            eprintln!("docker-registry: {message}");
            1
        }
    }
}

/// The storage driver the configuration names (also used by the maintenance commands).
pub fn build_driver(config: &Config) -> Arc<dyn StorageDriver> {
    match &config.storage.value {
        StorageConfig::Filesystem { root } => Arc::new(FilesystemDriver::new(root.clone())),
    }
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
    let auth = security::build_auth(&config)?;
    let token = security::build_token(&config)?;
    let token_issuer = security::build_token_issuer(&config)?;
    let tls = security::Tls::from_config(&config)?;
    let driver = build_driver(&config);
    notify::status("checking storage");
    driver.check_writable().await.map_err(|e| {
        format!(
            "storage is not writable ({}): {e}; set storage_path in {} or REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY",
            driver.location(),
            crate::config::DEFAULT_CONFIG
        )
    })?;

    let addr = config.listen.value;
    let listener = match listen::inherited()? {
        Some(inherited) => inherited,
        None => bind(addr).await?,
    };
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;

    let registry = Registry::new(
        driver.clone(),
        RegistryOptions {
            delete_enabled: config.delete_enabled.value,
            readonly: config.readonly.value,
        },
    );
    let state = Arc::new(AppState {
        registry,
        issue: config.issue.value.clone(),
        auth: auth.clone(),
        token: token.clone(),
        token_issuer,
        trust_forwarded_headers: config.trust_forwarded_headers.value,
    });
    let auth_watcher = auth.clone().map(security::spawn_auth_watcher);
    // Upload purging, scheduled garbage collection and the admin socket.
    let maintenance = maintenance::spawn(state.clone(), &config);
    // Walk the repositories once now, so the first catalog request does not pay for it.
    let warm = state.clone();
    tokio::spawn(async move {
        if let Err(e) = warm.registry.catalog().await {
            tracing::warn!("cannot list the repositories: {e}");
        }
        // The walk's scratch memory is free now: give it back rather than idle on it.
        memory::trim().await;
    });

    tracing::info!(
        "docker-registry {} listening on {}://{local} with {workers} worker threads; data in {} ({}), deletion {}, {}",
        env!("CARGO_PKG_VERSION"),
        match &tls {
            Some(_) => "https",
            None => "http",
        },
        driver.location(),
        config.storage.source,
        if config.delete_enabled.value { "enabled" } else { "disabled" },
        match (&auth, &tls) {
            _ if token.is_some() => "token authentication",
            (Some(_), Some(t)) if t.mutual() => "basic authentication, client certificates required",
            (Some(_), _) => "basic authentication",
            (None, Some(t)) if t.mutual() => "client certificates required, no authentication",
            (None, _) => "no authentication",
        },
    );
    notify::ready(&format!("serving on {local}"));
    memory::spawn_trimmer();
    let watchdog = notify::spawn_watchdog();

    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(60))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));

    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                reload_config(&reload, &log, |new| {
                    security::reload(auth.as_deref(), tls.as_deref(), &config, new)
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let svc = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, std::convert::Infallible>(api::handle(state, req, peer).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            let ended = match acceptor {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    watcher.watch(conn.into_owned()).await
                }
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(
                        security::TLS_HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            let conn = builder.serve_connection(TokioIo::new(tls_stream), svc);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(e)) => Err(format!("TLS handshake failed: {e}").into()),
                        Err(_) => Err("TLS handshake timed out".into()),
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!("connection from {peer} ended: {e}");
            }
            drop(permit);
        });
    }

    notify::stopping();
    drop(listener);
    tracing::info!(
        "waiting up to {}s for in-flight requests",
        SHUTDOWN_GRACE.as_secs()
    );
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections closed"),
        _ = tokio::time::sleep(SHUTDOWN_GRACE) => tracing::warn!("grace period over; closing remaining connections"),
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(w) = auth_watcher {
        w.abort();
    }
    maintenance.stop();
    Ok(())
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
