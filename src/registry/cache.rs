//! In-memory caches for the hot read paths: tag → digest, known manifest revisions, manifest
//! bytes (immutable, keyed by digest), tag lists and the catalog.
//!
//! Writes through this process update or drop the entries they affect, so a client always
//! reads its own writes. Entries about mutable state (tags, revisions, listings) also expire
//! after a short TTL, which bounds how stale a read can be when something else changes the
//! store (another instance on shared storage, an offline maintenance command). Manifest bytes
//! never go stale: a digest names its content. Only positive answers are cached. Locks are
//! plain mutexes held for a map operation, never across an await.

use super::{Digest, RepositoryName};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long mutable facts are trusted without looking at storage again.
const TTL: Duration = Duration::from_secs(1);
/// Bytes of manifests kept in memory.
const MANIFEST_BYTES: usize = 8 << 20;
/// Entries kept per map before it is emptied (a crude bound that keeps memory flat).
const MAX_ENTRIES: usize = 50_000;
/// Repositories whose tag lists are kept.
const MAX_TAG_LISTS: usize = 256;

#[derive(Clone)]
pub(crate) struct CachedManifest {
    pub bytes: Bytes,
    pub media_type: Arc<str>,
}

#[derive(Default)]
struct ManifestLru {
    map: HashMap<Digest, CachedManifest>,
    order: VecDeque<Digest>,
    bytes: usize,
}

/// A listing and when it was read.
type Listing = (Arc<Vec<String>>, Instant);

#[derive(Default)]
pub(crate) struct Caches {
    tags: Mutex<HashMap<(RepositoryName, String), (Digest, Instant)>>,
    revisions: Mutex<HashMap<(RepositoryName, Digest), Instant>>,
    manifests: Mutex<ManifestLru>,
    tag_lists: Mutex<HashMap<RepositoryName, Listing>>,
    catalog: Mutex<Option<Listing>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fresh(at: Instant) -> bool {
    at.elapsed() < TTL
}

impl Caches {
    pub fn tag(&self, repo: &RepositoryName, tag: &str) -> Option<Digest> {
        let map = lock(&self.tags);
        match map.get(&(repo.clone(), tag.to_owned())) {
            Some((d, at)) if fresh(*at) => Some(d.clone()),
            _ => None,
        }
    }

    pub fn set_tag(&self, repo: &RepositoryName, tag: &str, d: &Digest) {
        let mut map = lock(&self.tags);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert((repo.clone(), tag.to_owned()), (d.clone(), Instant::now()));
    }

    pub fn forget_tag(&self, repo: &RepositoryName, tag: &str) {
        lock(&self.tags).remove(&(repo.clone(), tag.to_owned()));
        lock(&self.tag_lists).remove(repo);
    }

    pub fn revision(&self, repo: &RepositoryName, d: &Digest) -> bool {
        let map = lock(&self.revisions);
        matches!(map.get(&(repo.clone(), d.clone())), Some(at) if fresh(*at))
    }

    pub fn set_revision(&self, repo: &RepositoryName, d: &Digest) {
        let mut map = lock(&self.revisions);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert((repo.clone(), d.clone()), Instant::now());
    }

    /// A revision was deleted: drop it and every tag of the repository.
    pub fn forget_revision(&self, repo: &RepositoryName, d: &Digest) {
        lock(&self.revisions).remove(&(repo.clone(), d.clone()));
        lock(&self.tags).retain(|(r, _), _| r != repo);
        lock(&self.tag_lists).remove(repo);
    }

    pub fn manifest(&self, d: &Digest) -> Option<CachedManifest> {
        lock(&self.manifests).map.get(d).cloned()
    }

    pub fn set_manifest(&self, d: &Digest, bytes: Bytes, media_type: &str) {
        if bytes.len() > MANIFEST_BYTES / 16 {
            return;
        }
        let mut lru = lock(&self.manifests);
        if lru.map.contains_key(d) {
            return;
        }
        lru.bytes += bytes.len();
        lru.map.insert(
            d.clone(),
            CachedManifest {
                bytes,
                media_type: Arc::from(media_type),
            },
        );
        lru.order.push_back(d.clone());
        while lru.bytes > MANIFEST_BYTES {
            let Some(old) = lru.order.pop_front() else {
                break;
            };
            if let Some(m) = lru.map.remove(&old) {
                lru.bytes -= m.bytes.len();
            }
        }
    }

    pub fn tag_list(&self, repo: &RepositoryName) -> Option<Arc<Vec<String>>> {
        match lock(&self.tag_lists).get(repo) {
            Some((l, at)) if fresh(*at) => Some(l.clone()),
            _ => None,
        }
    }

    pub fn set_tag_list(&self, repo: &RepositoryName, list: Arc<Vec<String>>) {
        let mut map = lock(&self.tag_lists);
        if map.len() >= MAX_TAG_LISTS {
            map.clear();
        }
        map.insert(repo.clone(), (list, Instant::now()));
    }

    pub fn catalog(&self) -> Option<Arc<Vec<String>>> {
        match &*lock(&self.catalog) {
            Some((l, at)) if fresh(*at) => Some(l.clone()),
            _ => None,
        }
    }

    pub fn set_catalog(&self, list: Arc<Vec<String>>) {
        *lock(&self.catalog) = Some((list, Instant::now()));
    }

    /// A manifest was written to `repo`: a new repository must show in the catalog.
    pub fn repository_written(&self, repo: &RepositoryName) {
        let mut cat = lock(&self.catalog);
        if let Some((list, _)) = &*cat {
            if list
                .binary_search_by(|r| r.as_str().cmp(repo.as_str()))
                .is_err()
            {
                *cat = None;
            }
        }
    }

    /// Everything may have changed (garbage collection, retention).
    pub fn clear(&self) {
        lock(&self.tags).clear();
        lock(&self.revisions).clear();
        lock(&self.tag_lists).clear();
        *lock(&self.catalog) = None;
    }
}
