//! Notifications: registry:2's `notifications.endpoints`, with its event envelope
//! (`application/vnd.docker.distribution.events.v1+json`: push, pull, delete, mount, each
//! with target, request, actor and source) so that existing receivers work unchanged.
//!
//! Unlike registry:2, whose queue lives in memory and is lost on restart, every event is
//! written to a queue on disk, one directory per endpoint
//! (`notifications.queue.directory`), before it is sent, and removed once the endpoint
//! accepted it: a restart, or an endpoint down for a while, loses nothing. The queue is
//! bounded (`notifications.queue.limit` per endpoint): when it is full the oldest event is
//! dropped, counted in `registry_notifications_dropped_total` and logged.
//!
//! A request never waits for any of this: [`Events::emit`] hands the event to a writer task
//! over a bounded channel and returns (an event that finds the channel full is dropped and
//! counted the same way). Each endpoint has its own sender task, which posts its events one
//! at a time, in order, retrying with a backoff that doubles from `backoff` up to a minute.

use crate::config::NotificationEndpoint;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, Notify};

/// The envelope's media type, as registry:2 sends it.
pub const MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
/// Events waiting for the writer; beyond, new ones are dropped (and counted).
const CHANNEL: usize = 4096;
/// The longest wait between two attempts at one event.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What happened, in registry:2's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Push,
    Pull,
    Delete,
    Mount,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Push => "push",
            Action::Pull => "pull",
            Action::Delete => "delete",
            Action::Mount => "mount",
        }
    }
}

/// What an event is about: a manifest or a blob in a repository.
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub media_type: String,
    pub size: u64,
    pub digest: String,
    pub repository: String,
    pub url: String,
    pub tag: String,
    /// A mount's source repository.
    pub from_repository: String,
}

/// The request that caused an event.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub addr: String,
    pub host: String,
    pub method: String,
    pub user_agent: String,
}

/// One event, as registry:2 writes it.
pub fn event(action: Action, target: &Target, request: &RequestInfo, actor: Option<&str>) -> Value {
    let mut t = json!({
        "mediaType": target.media_type,
        "size": target.size,
        "digest": target.digest,
        "length": target.size,
        "repository": target.repository,
        "url": target.url,
    });
    if !target.tag.is_empty() {
        t["tag"] = json!(target.tag);
    }
    if !target.from_repository.is_empty() {
        t["fromRepository"] = json!(target.from_repository);
    }
    let source = source();
    json!({
        "id": uuid::Uuid::new_v4().to_string(),
        "timestamp": humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        "action": action.as_str(),
        "target": t,
        "request": {
            "id": uuid::Uuid::new_v4().to_string(),
            "addr": request.addr,
            "host": request.host,
            "method": request.method,
            "useragent": request.user_agent,
        },
        "actor": match actor {
            Some(name) => json!({"name": name}),
            None => json!({}),
        },
        "source": {"addr": source.0, "instanceID": source.1},
    })
}

/// This daemon: its host name and an id for this run.
fn source() -> &'static (String, String) {
    static SOURCE: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default();
        (host, uuid::Uuid::new_v4().to_string())
    })
}

/// Where events go: the writer task's channel.
#[derive(Debug)]
pub struct Events {
    tx: mpsc::Sender<Value>,
}

impl Events {
    /// Queues an event for every endpoint that wants it; never waits.
    pub fn emit(&self, event: Value) {
        if self.tx.try_send(event).is_err() {
            dropped("the queue's writer is behind", 1);
        }
    }
}

/// registry:3's notification series for one endpoint (see `metrics`).
fn count_event(endpoint: &str, kind: &'static str) {
    if let Some(m) = crate::metrics::get() {
        m.notification_events
            .get_or_create(&vec![
                ("type", kind.to_owned()),
                ("endpoint", endpoint.to_owned()),
            ])
            .inc();
    }
}

fn count_pending(endpoint: &str, change: i64) {
    if let Some(m) = crate::metrics::get() {
        m.notification_pending
            .get_or_create(&vec![("endpoint", endpoint.to_owned())])
            .inc_by(change);
    }
}

/// An endpoint's answer: `200 OK`, as registry:3 labels it.
fn count_status(endpoint: &str, status: reqwest::StatusCode) {
    if let Some(m) = crate::metrics::get() {
        let code = format!(
            "{} {}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        m.notification_status
            .get_or_create(&vec![("code", code), ("endpoint", endpoint.to_owned())])
            .inc();
    }
}

fn dropped(why: &str, n: u64) {
    if let Some(m) = crate::metrics::get() {
        m.notifications_dropped.inc_by(n);
    }
    tracing::warn!("notifications: {n} event(s) dropped: {why}");
}

/// One endpoint's queue: its directory and the sequence numbers in it.
struct Queue {
    endpoint: NotificationEndpoint,
    dir: PathBuf,
    pending: std::sync::Mutex<BTreeSet<u64>>,
    wake: Notify,
}

/// Starts the writer and one sender per endpoint (disabled ones are skipped); events left
/// in `directory` by an earlier run are sent first.
pub fn start(
    endpoints: &[NotificationEndpoint],
    directory: &Path,
    limit: usize,
) -> Result<Arc<Events>, String> {
    let next = AtomicU64::new(0);
    let mut queues = Vec::new();
    for endpoint in endpoints.iter().filter(|e| !e.disabled) {
        let dir = directory.join(dir_name(&endpoint.name));
        std::fs::create_dir_all(&dir).map_err(|e| {
            format!(
                "cannot create the notification queue {}: {e} (notifications.queue.directory)",
                dir.display()
            )
        })?;
        let pending = read_queue(&dir)?;
        if let Some(last) = pending.last() {
            next.fetch_max(last + 1, Ordering::Relaxed);
        }
        count_pending(&endpoint.name, pending.len() as i64);
        if !pending.is_empty() {
            tracing::info!(
                "notifications: {} event(s) for {} queued by an earlier run",
                pending.len(),
                endpoint.name
            );
        }
        queues.push(Arc::new(Queue {
            endpoint: endpoint.clone(),
            dir,
            pending: std::sync::Mutex::new(pending),
            wake: Notify::new(),
        }));
    }
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| format!("cannot set up the notifications' HTTP client: {e}"))?;
    for q in &queues {
        tokio::spawn(send_loop(q.clone(), client.clone()));
    }
    let (tx, rx) = mpsc::channel(CHANNEL);
    tokio::spawn(write_loop(rx, queues, next, limit));
    Ok(Arc::new(Events { tx }))
}

/// A directory name for an endpoint's name: what a file name can hold.
fn dir_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn read_queue(dir: &Path) -> Result<BTreeSet<u64>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the notification queue {}: {e}", dir.display()))?;
    Ok(entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
        .collect())
}

fn event_file(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.json"))
}

/// Whether the endpoint wants the event (`ignoredmediatypes`, `ignore.mediatypes`,
/// `ignore.actions`).
fn wanted(endpoint: &NotificationEndpoint, event: &Value) -> bool {
    let media_type = event["target"]["mediaType"].as_str().unwrap_or("");
    let action = event["action"].as_str().unwrap_or("");
    !endpoint.ignored_media_types.iter().any(|m| m == media_type)
        && !endpoint.ignore_actions.iter().any(|a| a == action)
}

async fn write_loop(
    mut rx: mpsc::Receiver<Value>,
    queues: Vec<Arc<Queue>>,
    next: AtomicU64,
    limit: usize,
) {
    while let Some(event) = rx.recv().await {
        let seq = next.fetch_add(1, Ordering::Relaxed);
        let body = event.to_string();
        for q in queues.iter().filter(|q| wanted(&q.endpoint, &event)) {
            let (dir, body) = (q.dir.clone(), body.clone());
            // Written aside and renamed: a sender never reads half an event.
            let written = tokio::task::spawn_blocking(move || {
                let file = event_file(&dir, seq);
                let tmp = file.with_extension("tmp");
                std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, &file))
            })
            .await;
            if let Err(e) = written
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
            {
                dropped(&format!("cannot write to {}: {e}", q.dir.display()), 1);
                continue;
            }
            let oldest: Vec<u64> = {
                let mut pending = q.pending.lock().unwrap_or_else(|p| p.into_inner());
                pending.insert(seq);
                let over = pending.len().saturating_sub(limit);
                let oldest: Vec<u64> = pending.iter().take(over).copied().collect();
                for s in &oldest {
                    pending.remove(s);
                }
                oldest
            };
            count_event(&q.endpoint.name, "Events");
            count_pending(&q.endpoint.name, 1 - oldest.len() as i64);
            if !oldest.is_empty() {
                for s in &oldest {
                    let _ = std::fs::remove_file(event_file(&q.dir, *s));
                }
                let why = format!(
                    "the queue for {} holds {limit} (notifications.queue.limit); the oldest go",
                    q.endpoint.name
                );
                dropped(&why, oldest.len() as u64);
            }
            q.wake.notify_one();
        }
    }
}

/// Sends an endpoint's events in order, each until the endpoint takes it.
async fn send_loop(q: Arc<Queue>, client: reqwest::Client) {
    loop {
        let first = q
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .copied();
        let Some(seq) = first else {
            q.wake.notified().await;
            continue;
        };
        let file = event_file(&q.dir, seq);
        match tokio::fs::read_to_string(&file).await {
            Ok(event) => deliver(&q, &client, &event).await,
            // Dropped meanwhile, or unreadable: nothing to send.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("notifications: skipping {}: {e}", file.display()),
        }
        let removed = q
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&seq);
        if removed {
            count_pending(&q.endpoint.name, -1);
        }
        let _ = tokio::fs::remove_file(&file).await;
    }
}

/// Posts one event until the endpoint answers 2xx.
async fn deliver(q: &Queue, client: &reqwest::Client, event: &str) {
    let e = &q.endpoint;
    let envelope = format!("{{\"events\":[{event}]}}");
    let mut failures: u32 = 0;
    loop {
        let mut request = client
            .post(&e.url)
            .timeout(e.timeout)
            .header(reqwest::header::CONTENT_TYPE, MEDIA_TYPE)
            .body(envelope.clone());
        for (name, value) in &e.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let problem = match request.send().await {
            Ok(r) if r.status().is_success() => {
                count_status(&e.name, r.status());
                count_event(&e.name, "Successes");
                if let Some(m) = crate::metrics::get() {
                    m.notifications_sent.inc();
                }
                if failures >= e.threshold {
                    tracing::info!("notifications: {} accepts events again", e.name);
                }
                return;
            }
            Ok(r) => {
                count_status(&e.name, r.status());
                count_event(&e.name, "Failures");
                format!("answered {}", r.status())
            }
            Err(err) => {
                count_event(&e.name, "Errors");
                err.to_string()
            }
        };
        failures += 1;
        if let Some(m) = crate::metrics::get() {
            m.notifications_failed.inc();
        }
        if failures == e.threshold {
            tracing::warn!(
                "notifications: {} ({}) failed {failures} times in a row: {problem}; retrying",
                e.name,
                e.url
            );
        } else {
            tracing::debug!("notifications: {}: {problem}", e.name);
        }
        let wait = e.backoff.saturating_mul(1 << (failures - 1).min(6));
        tokio::time::sleep(wait.min(MAX_BACKOFF)).await;
    }
}
