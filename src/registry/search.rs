//! The search index behind `GET /v1/search` and `GET /v2/_catalog/search`: every
//! repository's name, its tags, and the `org.opencontainers.image.title` and
//! `.description` of its `latest` tag (else of its last tag in sorted order), read from the
//! manifest's annotations or, for an image, from its config's labels of those keys.
//!
//! **In memory, rebuilt at start, not SQLite.** A query scans every entry (names first, then
//! tags and descriptions), about a millisecond per 100,000 repositories; the index holds a
//! few hundred bytes per repository. A database file would save the rebuild only if it
//! could be trusted at start, and it cannot: it is local to one instance, while the store
//! is changed by the other instances on a bucket, by registry:2 on the same bucket, by an
//! offline `garbage-collect`, none of which would update it; the change journal keeps five
//! minutes, not the time an instance was down. Checking a saved index against the store
//! costs the same reads as building it. So the index is built from the store at start, in
//! the background: the catalog's names are searchable as soon as the catalog is read, and
//! tags and descriptions fill in as repositories are read, [`REBUILD_CONCURRENCY`] at a time.
//!
//! **Kept current** by the writes of this process (a pushed or deleted tag shows at once; the
//! repository's description is read again in the background within milliseconds), by the
//! other instances' writes through the change journal (`changes`: the entry naming a
//! repository has it read again; `*` rebuilds), and by a rebuild after maintenance that
//! removed things (collection, retention). Every change to a repository takes a new number:
//! a reading of the store started before the latest change is thrown away, so an older
//! reading never replaces a newer one.
//!
//! **Ranking**: the exact name, then names starting with the query, then names containing
//! it, then repositories whose tags, title or description contain it; by name within each.
//! Matching ignores case. The rank of a name depends on the name and the query alone, so a
//! page's last name is a cursor for the next one (`last=`), as in `/v2/_catalog`.

use super::cache::Caches;
use super::{images, layout, Digest, RegistryResult, RepositoryName};
use crate::registry::RegistryError;
use crate::storage::{StorageDriver, StorageError};
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

/// Repositories read at once while the index is rebuilt.
const REBUILD_CONCURRENCY: usize = 32;
/// Tag lists this long, read while the index is rebuilt, also go to the tag-list cache (see
/// [`read_facts`]): reading a directory of a thousand entries again costs about a
/// millisecond, checking its time a few microseconds.
pub(crate) const SEED_TAGS: usize = 1000;
/// Descriptions longer than this are cut (an annotation can be a whole README).
const MAX_DESCRIPTION: usize = 1024;
/// The annotation and label keys read.
const TITLE: &str = "org.opencontainers.image.title";
const DESCRIPTION: &str = "org.opencontainers.image.description";

/// What is known of a repository besides its name.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Facts {
    pub tags: Vec<String>,
    pub title: String,
    pub description: String,
}

#[derive(Debug, Default)]
struct Entry {
    facts: Facts,
    /// Tags, title and description, lowercased, one per line: matched after the name.
    text: String,
}

impl Entry {
    fn new(facts: Facts) -> Entry {
        let mut text = facts.tags.join("\n").to_lowercase();
        for s in [&facts.title, &facts.description] {
            text.push('\n');
            text.push_str(&s.to_lowercase());
        }
        // A query has no control characters, so no match spans two lines or entries.
        let text = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Entry { facts, text }
    }
}

#[derive(Default)]
struct Inner {
    entries: BTreeMap<String, Arc<Entry>>,
    /// The number of the last change to each repository (see the module doc).
    versions: HashMap<String, u64>,
    /// Bumped by every change to `entries`: the [`Snapshot`] of an older one is rebuilt.
    generation: u64,
}

/// The entries laid out for scanning: every name in order in one buffer, every entry's
/// text in another, so that a query is two passes of a SIMD substring search over a few
/// MiB rather than two searches per repository. Rebuilt by the first query after a change.
struct Snapshot {
    generation: u64,
    /// Names, each followed by `\n`.
    names: String,
    /// Where each name starts in `names`, and one past the end.
    name_starts: Vec<usize>,
    /// Texts, each followed by `\0` (control characters in them are spaces).
    texts: String,
    text_starts: Vec<usize>,
    entries: Vec<Arc<Entry>>,
}

impl Snapshot {
    fn build(inner: &Inner) -> Snapshot {
        let n = inner.entries.len();
        let mut s = Snapshot {
            generation: inner.generation,
            names: String::new(),
            name_starts: Vec::with_capacity(n + 1),
            texts: String::new(),
            text_starts: Vec::with_capacity(n + 1),
            entries: Vec::with_capacity(n),
        };
        for (name, e) in &inner.entries {
            s.name_starts.push(s.names.len());
            s.names.push_str(name);
            s.names.push('\n');
            s.text_starts.push(s.texts.len());
            s.texts.push_str(&e.text);
            s.texts.push('\0');
            s.entries.push(e.clone());
        }
        s.name_starts.push(s.names.len());
        s.text_starts.push(s.texts.len());
        s
    }

    fn name(&self, i: usize) -> &str {
        &self.names[self.name_starts[i]..self.name_starts[i + 1] - 1]
    }
}

/// The entry whose part of a buffer holds `pos`.
fn owner(starts: &[usize], pos: usize) -> usize {
    starts.partition_point(|s| *s <= pos) - 1
}

/// How a repository matched, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    Exact,
    Prefix,
    InName,
    /// A tag, the title or the description.
    Other,
}

/// How `name` ranks for a lowercased `q` by its name alone; `Other` when the name does not
/// contain it.
pub fn name_rank(name: &str, q: &str) -> Rank {
    if name == q {
        Rank::Exact
    } else if name.starts_with(q) {
        Rank::Prefix
    } else if name.contains(q) {
        Rank::InName
    } else {
        Rank::Other
    }
}

/// One repository found.
#[derive(Debug, Clone)]
pub struct Hit {
    pub name: String,
    pub rank: Rank,
    /// The description, else the title, else empty.
    pub description: String,
    /// Its tags that contain the query.
    pub tags: Vec<String>,
}

/// A page of results.
#[derive(Debug)]
pub struct Found {
    /// Every visible match.
    pub total: usize,
    pub hits: Vec<Hit>,
    /// More follow the page.
    pub more: bool,
}

/// Which page of the ranked matches to return.
pub enum Page<'a> {
    /// `skip` matches, then `take` (legacy `page` and `n`).
    Offset { skip: usize, take: usize },
    /// Those after this name in rank order, at most `take` (`last` and `n`).
    After { last: Option<&'a str>, take: usize },
}

/// The index (see the module doc).
#[derive(Default)]
pub(crate) struct SearchIndex {
    inner: RwLock<Inner>,
    seq: AtomicU64,
    /// Repositories whose reading is scheduled and not yet started.
    queued: Mutex<HashSet<String>>,
    rebuilding: AtomicBool,
    snapshot: Mutex<Option<Arc<Snapshot>>>,
    rebuild_again: AtomicBool,
    /// A rebuild has finished since start.
    ready: AtomicBool,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SearchIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self, inner: &mut Inner, repo: &str) {
        let v = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        inner.versions.insert(repo.to_owned(), v);
    }

    fn version(&self, repo: &str) -> u64 {
        self.read().versions.get(repo).copied().unwrap_or(0)
    }

    /// Changes one repository's facts at once, as a write through this process did.
    fn edit(&self, repo: &str, change: impl FnOnce(&mut Facts)) {
        let mut inner = self.write();
        self.bump(&mut inner, repo);
        let mut facts = inner
            .entries
            .get(repo)
            .map(|e| e.facts.clone())
            .unwrap_or_default();
        change(&mut facts);
        inner
            .entries
            .insert(repo.to_owned(), Arc::new(Entry::new(facts)));
        inner.generation += 1;
    }

    /// `repo:tag` was pushed.
    pub fn tag_written(&self, repo: &str, tag: &str) {
        self.edit(repo, |f| {
            if let Err(at) = f.tags.binary_search_by(|t| t.as_str().cmp(tag)) {
                f.tags.insert(at, tag.to_owned());
            }
        });
    }

    /// `repo:tag` was deleted.
    pub fn tag_removed(&self, repo: &str, tag: &str) {
        self.edit(repo, |f| f.tags.retain(|t| t != tag));
    }

    /// A manifest was pushed by digest or deleted: the repository exists; what it holds is
    /// read again.
    pub fn touched(&self, repo: &str) {
        self.edit(repo, |_| {});
    }

    /// Applies a reading of `repo` started at `version`; `None` when it no longer exists.
    fn apply(&self, repo: &str, version: u64, facts: Option<Facts>) -> bool {
        let mut inner = self.write();
        if inner.versions.get(repo).copied().unwrap_or(0) != version {
            return false;
        }
        match facts {
            Some(f) => {
                inner
                    .entries
                    .insert(repo.to_owned(), Arc::new(Entry::new(f)));
            }
            None => {
                inner.entries.remove(repo);
            }
        }
        inner.generation += 1;
        true
    }

    /// True when `repo` was not already waiting to be read: the caller schedules it.
    fn queue(&self, repo: &str) -> bool {
        lock(&self.queued).insert(repo.to_owned())
    }

    fn dequeue(&self, repo: &str) {
        lock(&self.queued).remove(repo);
    }

    /// Repositories indexed.
    pub fn len(&self) -> usize {
        self.read().entries.len()
    }

    /// Whether the index was built from the store since start.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The entries as of now, laid out for scanning.
    fn snapshot(&self) -> Arc<Snapshot> {
        let inner = self.read();
        let mut snap = lock(&self.snapshot);
        match &*snap {
            Some(s) if s.generation == inner.generation => s.clone(),
            _ => {
                let s = Arc::new(Snapshot::build(&inner));
                *snap = Some(s.clone());
                s
            }
        }
    }

    /// The matches of `q` (case ignored; empty matches everything) that `visible` accepts,
    /// ranked, one page of them.
    pub fn search(
        &self,
        q: &str,
        visible: Option<&(dyn Fn(&str) -> bool + Sync)>,
        page: Page<'_>,
    ) -> Found {
        let q: String = q
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        let snap = self.snapshot();
        let n = snap.entries.len();
        // Each entry's best rank; `NONE` when it does not match.
        const NONE: u8 = u8::MAX;
        let mut rank = vec![NONE; n];
        if q.is_empty() {
            rank.fill(Rank::Prefix as u8);
        } else {
            let finder = memchr::memmem::Finder::new(q.as_bytes());
            for pos in finder.find_iter(snap.names.as_bytes()) {
                let i = owner(&snap.name_starts, pos);
                if rank[i] == NONE {
                    rank[i] = name_rank(snap.name(i), &q) as u8;
                }
            }
            for pos in finder.find_iter(snap.texts.as_bytes()) {
                let i = owner(&snap.text_starts, pos);
                if rank[i] == NONE {
                    rank[i] = Rank::Other as u8;
                }
            }
        }
        let mut ranked: [Vec<usize>; 4] = Default::default();
        for (i, r) in rank.iter().enumerate() {
            if *r != NONE && visible.is_none_or(|v| v(snap.name(i))) {
                ranked[*r as usize].push(i);
            }
        }
        let all: Vec<usize> = ranked.concat();
        let key = |i: usize| (name_rank(snap.name(i), &q), snap.name(i));
        let (from, take) = match page {
            Page::Offset { skip, take } => (skip.min(all.len()), take),
            Page::After { last, take } => {
                let from = last.map_or(0, |last| {
                    let after = (name_rank(last, &q), last);
                    all.partition_point(|i| key(*i) <= after)
                });
                (from, take)
            }
        };
        let end = from.saturating_add(take).min(all.len());
        let hits = all[from..end]
            .iter()
            .map(|i| hit(snap.name(*i), &snap.entries[*i], &q))
            .collect();
        Found {
            total: all.len(),
            hits,
            more: end < all.len(),
        }
    }
}

fn hit(name: &str, e: &Entry, q: &str) -> Hit {
    let f = &e.facts;
    Hit {
        name: name.to_owned(),
        rank: name_rank(name, q),
        description: if f.description.is_empty() {
            f.title.clone()
        } else {
            f.description.clone()
        },
        tags: f
            .tags
            .iter()
            .filter(|t| !q.is_empty() && t.to_lowercase().contains(q))
            .cloned()
            .collect(),
    }
}

/// What the store says of `repo` now: its tags and the title and description of the tag
/// that describes it; `None` when it is not a repository (any more). With `seed`, a tag
/// list of [`SEED_TAGS`] or more that can be checked later by its directory's time (see
/// `tags`) also goes to the tag-list cache: the first listing of a large repository after
/// a start is then one `stat`, not a read of its directory.
async fn read_facts(
    driver: &dyn StorageDriver,
    repo: &RepositoryName,
    seed: Option<&Caches>,
) -> RegistryResult<Option<Facts>> {
    let generation = seed.map(Caches::tag_generation);
    let started = std::time::SystemTime::now();
    let tags = match super::tags::scan_tags(driver, repo).await {
        Ok(t) => t,
        Err(RegistryError::NameUnknown(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    if let (Some(cache), Some(generation)) = (seed, generation) {
        // Only a large list is worth the `stat` of its directory.
        if tags.len() >= SEED_TAGS {
            if let Some(v) = super::tags::tags_validator(driver, repo, started).await {
                cache.set_tag_list(repo, Some(Arc::new(tags.clone())), Some(v), generation);
            }
        }
    }
    let mut facts = Facts {
        tags,
        ..Facts::default()
    };
    let describing = match facts.tags.iter().find(|t| *t == "latest") {
        Some(t) => Some(t),
        None => facts.tags.last(),
    };
    let Some(tag) = describing.and_then(|t| t.parse::<super::Tag>().ok()) else {
        return Ok(Some(facts));
    };
    let link = match driver
        .get_content(&layout::tag_current_link(repo, &tag)?, 1024)
        .await
    {
        Ok(b) => b,
        Err(StorageError::NotFound(_)) => return Ok(Some(facts)),
        Err(e) => return Err(e.into()),
    };
    let Ok(digest) = String::from_utf8_lossy(&link).trim().parse::<Digest>() else {
        return Ok(Some(facts));
    };
    let pairs = images::describe(driver, &digest, &[TITLE, DESCRIPTION]).await?;
    for (k, v) in pairs {
        let v: String = v.chars().take(MAX_DESCRIPTION).collect();
        match k {
            TITLE => facts.title = v,
            _ => facts.description = v,
        }
    }
    Ok(Some(facts))
}

/// Reads `repo` and applies the reading, unless it changed meanwhile (then a later reading
/// applies).
async fn read_and_apply(
    driver: &dyn StorageDriver,
    index: &SearchIndex,
    repo: &RepositoryName,
    seed: Option<&Caches>,
) {
    let version = index.version(repo.as_str());
    match read_facts(driver, repo, seed).await {
        Ok(facts) => {
            index.apply(repo.as_str(), version, facts);
        }
        Err(e) => tracing::warn!(%repo, "search index: reading the repository failed: {e}"),
    }
}

/// Builds the index from the store: every repository of the catalog, its names at once,
/// then what each holds. Entries of repositories the store no longer has go, unless they
/// changed since the rebuild began.
async fn rebuild(driver: Arc<dyn StorageDriver>, index: Arc<SearchIndex>, seed: Arc<Caches>) {
    if index.rebuilding.swap(true, Ordering::AcqRel) {
        index.rebuild_again.store(true, Ordering::Release);
        return;
    }
    loop {
        index.rebuild_again.store(false, Ordering::Release);
        let started = Instant::now();
        let seq = index.seq.load(Ordering::Acquire);
        match super::tags::scan_catalog(driver.as_ref()).await {
            Ok(names) => {
                {
                    let mut inner = index.write();
                    let keep: HashSet<&str> = names.iter().map(String::as_str).collect();
                    let gone: Vec<String> = inner
                        .entries
                        .keys()
                        .filter(|n| !keep.contains(n.as_str()))
                        .filter(|n| inner.versions.get(*n).copied().unwrap_or(0) <= seq)
                        .cloned()
                        .collect();
                    for n in gone {
                        inner.entries.remove(&n);
                    }
                    for n in &names {
                        inner.entries.entry(n.clone()).or_default();
                    }
                    inner.generation += 1;
                }
                let count = names.len();
                futures_util::stream::iter(names)
                    .filter_map(|n| async move { n.parse::<RepositoryName>().ok() })
                    .for_each_concurrent(REBUILD_CONCURRENCY, |repo| {
                        let (driver, index, seed) = (driver.clone(), index.clone(), seed.clone());
                        async move {
                            read_and_apply(driver.as_ref(), &index, &repo, Some(&seed)).await
                        }
                    })
                    .await;
                index.ready.store(true, Ordering::Release);
                tracing::info!(
                    "search index: {count} repositories indexed in {:.3} s",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(e) => tracing::warn!(
                "search index: listing the repositories failed: {e}; searching what is known"
            ),
        }
        if !index.rebuild_again.load(Ordering::Acquire) {
            break;
        }
    }
    index.rebuilding.store(false, Ordering::Release);
    // A request made between the last check and the flag's reset.
    if index.rebuild_again.swap(false, Ordering::AcqRel) {
        Box::pin(rebuild(driver, index, seed)).await;
    }
}

/// How long a repository's description waits in the background after a change, for the
/// changes that follow it.
const REINDEX_DELAY: std::time::Duration = std::time::Duration::from_millis(250);

impl super::Registry {
    /// Reads `repo` again in the background, once however many changes are waiting.
    fn reindex_in_background(&self, repo: &RepositoryName) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.search.queue(repo.as_str()) {
            return;
        }
        let driver = self.driver.clone();
        let index = self.search.clone();
        let repo = repo.clone();
        rt.spawn(async move {
            // Pushes to the repository meanwhile join this one (it stays queued): a burst
            // of PUTs is described once, not once per PUT (a listing of its tags and three
            // reads each time).
            tokio::time::sleep(REINDEX_DELAY).await;
            index.dequeue(repo.as_str());
            read_and_apply(driver.as_ref(), &index, &repo, None).await
        });
    }

    /// A tag was pushed (`Some`) or a manifest by digest: searchable at once, described
    /// again in the background.
    pub(crate) fn search_pushed(&self, repo: &RepositoryName, tag: Option<&str>) {
        match tag {
            Some(t) => self.search.tag_written(repo.as_str(), t),
            None => self.search.touched(repo.as_str()),
        }
        self.reindex_in_background(repo);
    }

    /// A tag (`Some`) or a manifest revision and its tags were deleted.
    pub(crate) fn search_deleted(&self, repo: &RepositoryName, tag: Option<&str>) {
        match tag {
            Some(t) => self.search.tag_removed(repo.as_str(), t),
            None => self.search.touched(repo.as_str()),
        }
        self.reindex_in_background(repo);
    }

    /// Another instance changed `repo` (the change journal).
    pub(crate) fn search_changed_elsewhere(&self, repo: &RepositoryName) {
        let mut inner = self.search.write();
        self.search.bump(&mut inner, repo.as_str());
        drop(inner);
        self.reindex_in_background(repo);
    }

    /// Rebuilds the index from the store in the background (anything may have changed).
    pub(crate) fn rebuild_search_in_background(&self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(rebuild(
            self.driver.clone(),
            self.search.clone(),
            self.cache.clone(),
        ));
    }

    /// Builds the index from the store; at start, while the daemon already serves.
    pub async fn build_search_index(&self) {
        rebuild(self.driver.clone(), self.search.clone(), self.cache.clone()).await;
    }

    /// Searches repositories (see the module doc); `visible` filters what the caller sees.
    pub fn search(
        &self,
        q: &str,
        visible: Option<&(dyn Fn(&str) -> bool + Sync)>,
        page: Page<'_>,
    ) -> Found {
        self.search.search(q, visible, page)
    }

    /// Whether the index was built from the store since start, and how many repositories
    /// it holds.
    pub fn search_status(&self) -> (bool, usize) {
        (self.search.ready(), self.search.len())
    }
}
