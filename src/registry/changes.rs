//! Keeping the caches of several instances coherent through the store they share.
//!
//! Each instance caches tags, revisions, tag lists and the catalog (see `cache`), and drops
//! what it changes itself at once. What another instance changes it hears of through a
//! journal in the store, `docker/registry/v2/_changes/`: every write that can make a cached
//! answer wrong (a manifest put, a tag or revision deleted) adds one small object named
//! `<unix ms>-<instance>-<seq>` holding the repository's name, or `*` after maintenance
//! that removes things anywhere (collection, retention). Every instance lists the journal
//! each [`POLL`] and forgets what the others' entries name, so that:
//!
//! **A tag written through one instance is served by every other within [`POLL`] plus one
//! listing of the journal** (about 1.1 s on a local S3; tested with three instances).
//!
//! Without it, a repository another instance created would appear in the catalog only after
//! the cached catalog's TTL and a background walk of the bucket, and a tag list served
//! stale while it is read again would miss a new tag for one more request. Writers outside
//! the journal (registry:2 on the same bucket, an offline `garbage-collect`) are still seen
//! within those TTLs (see `cache`).
//!
//! Entries are removed by whichever instance finds them older than [`KEEP`]. Names are never
//! compared by time across instances (clocks differ): an instance applies each entry it has
//! not seen yet, whatever its timestamp.

use super::{layout, Registry, RepositoryName};
use crate::storage::{StorageDriver, StorageError, StoragePath};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How often each instance reads the journal.
pub(crate) const POLL: Duration = Duration::from_secs(1);
/// Journal entries older than this go.
const KEEP: Duration = Duration::from_secs(300);
/// The entry meaning "anything may have changed".
const EVERYTHING: &str = "*";

/// This instance's name in the journal and the number of its next entry.
pub(crate) struct ChangeFeed {
    instance: String,
    seq: AtomicU64,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        ChangeFeed {
            instance: id[..12].to_owned(),
            seq: AtomicU64::new(0),
        }
    }
}

impl ChangeFeed {
    fn next_entry(&self) -> Result<StoragePath, StorageError> {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        layout::change_entry(&format!("{ms:013}-{}-{seq:08}", self.instance))
    }
}

/// Writes one entry; a failure is logged (the others then see the change within their
/// TTLs, as without a journal).
async fn write_entry(driver: &dyn StorageDriver, path: StoragePath, body: String) {
    if let Err(e) = driver.put_small(&path, body.as_bytes()).await {
        tracing::warn!(
            "telling other instances of a change to {body} failed: {e}; they see it when their caches expire"
        );
    }
}

impl Registry {
    /// Tells the other instances on the store that `repo` changed (nothing to do on a store
    /// only this instance serves).
    pub(crate) async fn announce(&self, repo: &RepositoryName) {
        if !self.driver.shared_by_instances() {
            return;
        }
        match self.changes.next_entry() {
            Ok(path) => write_entry(self.driver.as_ref(), path, repo.as_str().to_owned()).await,
            Err(e) => tracing::warn!("cannot name a change entry: {e}"),
        }
    }

    /// Tells the other instances that anything may have changed (maintenance removed
    /// things), from where nothing can wait (a guard's drop).
    pub(crate) fn announce_everything_in_background(&self) {
        if !self.driver.shared_by_instances() {
            return;
        }
        let (Ok(rt), Ok(path)) = (
            tokio::runtime::Handle::try_current(),
            self.changes.next_entry(),
        ) else {
            return;
        };
        let driver = self.driver.clone();
        rt.spawn(async move { write_entry(driver.as_ref(), path, EVERYTHING.to_owned()).await });
    }

    /// Reads the journal every [`POLL`] for as long as the daemon runs, on stores shared by
    /// instances.
    pub async fn follow_changes(self: Arc<Self>) {
        if !self.driver.shared_by_instances() {
            return;
        }
        let mut seen = HashSet::new();
        let mut failing = false;
        loop {
            tokio::time::sleep(POLL).await;
            match self.read_changes(&mut seen).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("reading other instances' changes again");
                    }
                    failing = false;
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(
                        "cannot read other instances' changes ({e}); their writes show here when cached entries expire until it can"
                    );
                }
                Err(_) => {}
            }
        }
    }

    /// Applies the entries not seen before, other than this instance's own, and removes
    /// old ones.
    async fn read_changes(&self, seen: &mut HashSet<String>) -> Result<(), StorageError> {
        let dir = layout::changes_dir()?;
        let names = match self.driver.list(&dir).await {
            Ok(n) => n,
            Err(StorageError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut current = HashSet::with_capacity(names.len());
        for name in names {
            let mut parts = name.splitn(3, '-');
            let (Some(ms), Some(instance)) = (
                parts.next().and_then(|m| m.parse::<u64>().ok()),
                parts.next(),
            ) else {
                continue;
            };
            let path = dir.join(&name)?;
            if now.saturating_sub(Duration::from_millis(ms)) > KEEP {
                if let Err(e) = self.driver.delete(&path).await {
                    tracing::debug!("removing the old change entry {path}: {e}");
                }
                continue;
            }
            if seen.contains(&name) || instance == self.changes.instance {
                current.insert(name);
                continue;
            }
            let body = match self.driver.get_content(&path, 1024).await {
                Ok(b) => b,
                // Removed meanwhile: it was old.
                Err(StorageError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            match std::str::from_utf8(&body) {
                Ok(EVERYTHING) => {
                    self.cache.clear();
                    self.rebuild_search_in_background();
                }
                Ok(repo) => match repo.parse::<RepositoryName>() {
                    Ok(repo) => {
                        self.cache.repository_changed(&repo);
                        self.search_changed_elsewhere(&repo);
                    }
                    Err(_) => tracing::debug!("{path}: not a repository name"),
                },
                Err(_) => tracing::debug!("{path}: not text"),
            }
            current.insert(name);
        }
        *seen = current;
        Ok(())
    }
}
