//! In-memory caches for the hot read paths: tag → digest, known manifest revisions, manifest
//! bytes (immutable, keyed by digest), tag lists and the catalog.
//!
//! Writes through this process update or drop the entries they affect, so a client always
//! reads its own writes. Entries about mutable state (tags, revisions, listings) also expire
//! after a short TTL, which bounds how stale a read can be when something else changes the
//! store (another instance on shared storage, an offline maintenance command). Manifest bytes
//! never go stale: a digest names its content. Only positive answers are cached. Locks are
//! plain mutexes held for a map operation, never across an await.
//!
//! On a store shared by several instances, each also hears of the others' writes through
//! the store and drops what they name (see `changes`), well within the catalog's TTL.

use super::{Digest, RepositoryName};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// How long mutable facts are trusted without looking at storage again.
const TTL: Duration = Duration::from_secs(1);
/// How long the catalog is served without a new walk. Walking a large store is the one
/// expensive listing, and new repositories written here are added at once, so this only
/// bounds how late repositories made by someone else (another instance) appear.
const CATALOG_TTL: Duration = Duration::from_secs(10);
/// Bytes of manifests kept in memory.
const MANIFEST_BYTES: usize = 8 << 20;
/// Entries kept per map before it is emptied (a crude bound that keeps memory flat).
const MAX_ENTRIES: usize = 50_000;
/// Repositories whose tag lists are kept.
const MAX_TAG_LISTS: usize = 256;
/// A tag list older than [`TTL`] is still served, while one background scan replaces it,
/// up to this age; older than this, a request reads storage itself.
const TAG_LIST_STALE_LIMIT: Duration = Duration::from_secs(30);

/// A repository's tags as last read, and whether a background scan is replacing them.
struct TagListing {
    list: Arc<Vec<String>>,
    at: Instant,
    refreshing: bool,
    /// The modification time of the tags directory when the list was read, where that
    /// time changes with every tag made or removed (a local filesystem; see
    /// [`Caches::unchanged_tag_list`]).
    validator: Option<SystemTime>,
}

/// How a cached listing may be used.
pub(crate) enum Cached<T> {
    Fresh(T),
    /// Serve it, and replace it in the background if [`Caches::claim_tag_list_refresh`]
    /// says so.
    Stale(T),
}

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
    tag_lists: Mutex<HashMap<RepositoryName, TagListing>>,
    /// Bumped by every change to any tag: a scan that started before a change must not
    /// store its (older) result after it, or a client would not read its own write.
    tag_generation: std::sync::atomic::AtomicU64,
    catalog: Mutex<Option<Listing>>,
    catalog_refreshing: std::sync::atomic::AtomicBool,
    /// Repositories written by this process, merged into every walk's result.
    recent_repositories: Mutex<std::collections::HashSet<String>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn fresh(at: Instant) -> bool {
    at.elapsed() < TTL
}

impl Caches {
    /// Another instance changed `repo`: its tags, revisions and tag list are read again, and
    /// it is in the catalog.
    pub fn repository_changed(&self, repo: &RepositoryName) {
        lock(&self.tags).retain(|(r, _), _| r != repo);
        lock(&self.revisions).retain(|(r, _), _| r != repo);
        self.forget_tag_list(repo);
        self.repository_written(repo);
    }

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
        self.forget_tag_list(repo);
    }

    fn forget_tag_list(&self, repo: &RepositoryName) {
        let mut lists = lock(&self.tag_lists);
        self.tag_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        lists.remove(repo);
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
        self.forget_tag_list(repo);
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

    pub fn tag_list(&self, repo: &RepositoryName) -> Option<Cached<Arc<Vec<String>>>> {
        match lock(&self.tag_lists).get(repo) {
            Some(l) if fresh(l.at) => Some(Cached::Fresh(l.list.clone())),
            Some(l) if l.at.elapsed() < TAG_LIST_STALE_LIMIT => Some(Cached::Stale(l.list.clone())),
            _ => None,
        }
    }

    /// True for one caller per stale tag list: that caller scans storage again.
    pub fn claim_tag_list_refresh(&self, repo: &RepositoryName) -> bool {
        match lock(&self.tag_lists).get_mut(repo) {
            Some(l) if !l.refreshing => {
                l.refreshing = true;
                true
            }
            _ => false,
        }
    }

    /// Taken before a scan, handed to [`Caches::set_tag_list`] after it.
    pub fn tag_generation(&self) -> u64 {
        self.tag_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// A listing past its TTL that can be checked instead of read again: the list and the
    /// tags directory's modification time when it was read. Whatever its age: while the
    /// directory has that time, no tag was made or removed since.
    pub fn unchanged_tag_list(
        &self,
        repo: &RepositoryName,
    ) -> Option<(Arc<Vec<String>>, SystemTime)> {
        let map = lock(&self.tag_lists);
        let l = map.get(repo)?;
        Some((l.list.clone(), l.validator?))
    }

    /// The directory of a listing was checked (see [`Caches::unchanged_tag_list`]) and has
    /// not changed: the listing is fresh again, unless a tag changed since `generation`.
    pub fn confirm_tag_list(&self, repo: &RepositoryName, generation: u64) {
        let mut map = lock(&self.tag_lists);
        if self.tag_generation() != generation {
            return;
        }
        if let Some(l) = map.get_mut(repo) {
            l.at = Instant::now();
        }
    }

    /// Stores a scan's result, unless a tag changed since the scan began (`generation`);
    /// `None` drops the listing (the repository is gone, or the scan failed). `validator`:
    /// see [`TagListing`].
    pub fn set_tag_list(
        &self,
        repo: &RepositoryName,
        list: Option<Arc<Vec<String>>>,
        validator: Option<SystemTime>,
        generation: u64,
    ) {
        let mut map = lock(&self.tag_lists);
        let Some(list) = list else {
            map.remove(repo);
            return;
        };
        if self.tag_generation() != generation {
            if let Some(l) = map.get_mut(repo) {
                l.refreshing = false;
            }
            return;
        }
        if map.len() >= MAX_TAG_LISTS && !map.contains_key(repo) {
            map.clear();
        }
        map.insert(
            repo.clone(),
            TagListing {
                list,
                at: Instant::now(),
                refreshing: false,
                validator,
            },
        );
    }

    /// The cached catalog and whether it is still fresh. A stale one is still served while a
    /// single background walk replaces it (see [`Caches::claim_catalog_refresh`]).
    pub fn catalog(&self) -> Option<(Arc<Vec<String>>, bool)> {
        lock(&self.catalog)
            .as_ref()
            .map(|(l, at)| (l.clone(), at.elapsed() < CATALOG_TTL))
    }

    /// True for exactly one caller until [`Caches::set_catalog`] or
    /// [`Caches::catalog_refresh_failed`]: that caller walks storage, the others keep serving
    /// what is cached.
    pub fn claim_catalog_refresh(&self) -> bool {
        !self
            .catalog_refreshing
            .swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    pub fn catalog_refresh_failed(&self) {
        self.catalog_refreshing
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Stores a walk's result. Repositories this process wrote are merged in: a walk that
    /// started before such a write may have missed it.
    pub fn set_catalog(&self, mut list: Arc<Vec<String>>) {
        {
            let recent = lock(&self.recent_repositories);
            for repo in recent.iter() {
                if let Err(at) = list.binary_search(repo) {
                    Arc::make_mut(&mut list).insert(at, repo.clone());
                }
            }
        }
        *lock(&self.catalog) = Some((list, Instant::now()));
        self.catalog_refreshing
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// A manifest was written to `repo`: a new repository shows in the catalog at once.
    pub fn repository_written(&self, repo: &RepositoryName) {
        {
            let mut recent = lock(&self.recent_repositories);
            if recent.len() >= MAX_ENTRIES {
                recent.clear();
            }
            recent.insert(repo.as_str().to_owned());
        }
        let mut cat = lock(&self.catalog);
        if let Some((list, _)) = cat.as_mut() {
            if let Err(at) = list.binary_search_by(|r| r.as_str().cmp(repo.as_str())) {
                Arc::make_mut(list).insert(at, repo.as_str().to_owned());
            }
        }
    }

    /// Everything may have changed (garbage collection, retention).
    pub fn clear(&self) {
        lock(&self.tags).clear();
        lock(&self.revisions).clear();
        {
            let mut lists = lock(&self.tag_lists);
            self.tag_generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            lists.clear();
        }
        *lock(&self.catalog) = None;
        lock(&self.recent_repositories).clear();
        self.catalog_refreshing
            .store(false, std::sync::atomic::Ordering::Release);
    }
}
