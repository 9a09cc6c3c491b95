//! Garbage collection: mark every blob reachable from a manifest revision, sweep the rest
//! from the shared blob store — offline (`docker-registry garbage-collect`, the daemon
//! stopped, as `registry garbage-collect` of registry:2) or online, inside the running
//! daemon, with no read-only window.
//!
//! # What is reachable
//!
//! Every manifest revision of every repository (`_manifests/revisions/<alg>/<hex>/link`)
//! is a root. From a root we mark its own digest, its config and layers, its `subject`, and
//! for an index its child manifests — recursively, reading the children's content, so that
//! a tagged index stays whole even when a child's revision link was deleted. That is what
//! registry:2 marks (plus the recursion, which only ever keeps more). With
//! `delete_untagged`, the roots of a repository are first narrowed to the revisions a tag
//! reaches, closed over index children and over referrers (a manifest whose `subject` is a
//! kept manifest is kept); the other revisions are removed before marking.
//!
//! # Why online collection is safe while pushes go on
//!
//! The danger is a manifest PUT that is *accepted* while a blob it references is deleted:
//! the client believes the image is stored, and it is not. Everything a PUT references
//! (its own digest, config, layers, index children) goes through a [`ReferenceGuard`]
//! before the registry checks that those blobs exist, and stays registered until the
//! revision and tag links are written. The guard and the sweeper agree through two things:
//!
//! * *Late marks.* A collection cycle starts by copying the digests of PUTs in flight into
//!   its late-mark set, and every PUT registered while the cycle runs adds its digests to
//!   it. The mark phase lists the repositories after the cycle started, so a PUT is either
//!   finished before the cycle began (its links are in storage and the mark phase sees
//!   them), or in flight at the start (copied), or later (added): in every case its
//!   references are marked or late-marked, and the sweeper never deletes a late-marked or
//!   in-flight digest.
//! * *Stripe locks.* The sweeper deletes a blob (or an untagged revision) holding the write
//!   half of a lock chosen by its digest, and checks the late marks *under* that lock. A PUT
//!   registers its digests first and then passes through the read half of the same locks
//!   before it checks existence. Either the registration came first — the sweeper sees the
//!   late mark and keeps the blob — or the sweeper was already deleting, and the PUT waits
//!   until the deletion is done, finds the blob missing, and fails with
//!   `MANIFEST_BLOB_UNKNOWN`. It can never check, succeed, and then lose the blob.
//!
//! Uploads finishing and mounts go through the guard the same way, from before they look
//! at the blob store until the repository's link is written, so the sweeper never takes a
//! blob (nor the directory its data is being moved into) from under them.
//!
//! # No dangling links
//!
//! After the sweep, every repository's layer links to blobs that are not in the store are
//! removed — those this run swept, and any an earlier crash or registry:2's collector left
//! — in every repository, including those no manifest was pushed to yet. The check is made
//! under the blob's stripe lock: a link whose blob an upload is putting in place (registered
//! as uploading) stays, a blob that came back since the sweep keeps its links, and a link
//! written later is written by an upload that brings its blob back or by a mount that found
//! it. Nothing else keeps a link to nothing, so a repository never lists a blob it cannot
//! serve (`GET` would answer 404).
//!
//! That argument needs nothing about time, and holds with a grace period of 0. The *grace
//! period* is for liveness: a push in progress has uploaded layers that no manifest
//! references yet; blobs whose data was written less than `grace` ago, or which a client
//! used (upload finished, mount, existence check) less than `grace` ago, are kept, so
//! collection does not make such pushes fail. With a grace of 0 (allowed: nothing is lost,
//! no link dangles), a push whose layers were uploaded before a collection began and whose
//! manifest arrives after it swept them is refused with `MANIFEST_BLOB_UNKNOWN`, and the
//! client pushes the layers again. Online removal of untagged manifests likewise spares
//! revisions younger than `grace` (an index's children are pushed before the index that
//! tags them).
//!
//! Limits: the guard lives in one process. Several daemons sharing one bucket must run
//! online collection on only one of them *and* that one only sees its own pushes — so with
//! shared storage, collect offline or while the other instances are read-only. An offline
//! `garbage-collect` refuses to run while the daemon answers on its admin socket.

use super::manifest::{self, MAX_MANIFEST_BYTES};
use super::{
    layout, Algorithm, Digest, Registry, RegistryError, RegistryResult, RepositoryName, Tag,
};
use crate::storage::StorageError;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::RwLock;

/// Number of stripes. Each has its own lock and its own share of the bookkeeping, so the
/// write path never takes a registry-wide lock, and a sweeper deleting one blob only holds
/// up PUTs that reference a digest in the same stripe, and only for one delete.
const STRIPES: usize = 64;
/// Manifests and links read at once while marking: storage round trips, not CPU, bound a
/// collection (each is a thread hop on the filesystem, a request on S3).
const IO_CONCURRENCY: usize = 32;
/// Blob-store prefix directories swept at once.
const SWEEP_CONCURRENCY: usize = 8;
/// Recently used digests are remembered at most this long whatever the grace period, so the
/// maps stay small.
const RECENT_CAP: Duration = Duration::from_secs(24 * 3600);
/// Prune a stripe's recent-use map when it grows past this many entries. Forgetting is
/// only ever a liveness matter (a push may then fail and be retried), never a safety one.
const RECENT_PRUNE_AT: usize = 4096;

#[derive(Default)]
struct GuardState {
    /// Digests that writes in flight rely on (manifest PUTs, finishing uploads, mounts),
    /// with how many hold each.
    in_flight: HashMap<Digest, usize>,
    /// Of those, the digests that finishing uploads are putting in place (content, then
    /// the repository's link): a link to one of them is about to be backed by its blob.
    uploading: HashMap<Digest, usize>,
    /// While a collection runs: every digest a PUT registered since it began.
    late_marks: Option<HashSet<Digest>>,
    /// When a client last used a digest (upload finished, mount, existence check).
    recent: HashMap<Digest, Instant>,
}

/// The digests whose first byte falls in one stripe: their bookkeeping, and the lock the
/// sweeper holds (write) while deleting one of them and the write path passes (read).
#[derive(Default)]
struct Stripe {
    state: Mutex<GuardState>,
    deleting: RwLock<()>,
}

/// Coordinates the manifest write path with a running collection; see the module doc.
pub struct ReferenceGuard {
    stripes: Vec<Stripe>,
    /// One collection at a time per process.
    running: tokio::sync::Mutex<()>,
    /// The outcome of this process's last collection, for the web UI.
    last: Mutex<Option<LastCollection>>,
}

/// A collection's outcome and when it ended.
#[derive(Debug, Clone)]
pub struct LastCollection {
    pub finished: std::time::SystemTime,
    /// The report, or why the collection failed.
    pub result: Result<GcReport, String>,
}

impl Default for ReferenceGuard {
    fn default() -> Self {
        ReferenceGuard {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
            running: tokio::sync::Mutex::new(()),
            last: Mutex::new(None),
        }
    }
}

fn stripe(d: &Digest) -> usize {
    let hex = d.hex().as_bytes();
    let nibble = |b: u8| match b {
        b'0'..=b'9' => (b - b'0') as usize,
        _ => (b - b'a' + 10) as usize,
    };
    ((nibble(hex[0]) << 4) | nibble(hex[1])) % STRIPES
}

/// Held by a write from before it checks what it relies on until its links are written.
pub struct ReferencePin<'a> {
    guard: &'a ReferenceGuard,
    digests: Vec<Digest>,
    upload: bool,
}

fn release(counts: &mut HashMap<Digest, usize>, d: &Digest) {
    if let Some(n) = counts.get_mut(d) {
        *n -= 1;
        if *n == 0 {
            counts.remove(d);
        }
    }
}

impl Drop for ReferencePin<'_> {
    fn drop(&mut self) {
        for d in &self.digests {
            let mut s = self.guard.state(d);
            release(&mut s.in_flight, d);
            if self.upload {
                release(&mut s.uploading, d);
            }
        }
    }
}

impl ReferenceGuard {
    fn state(&self, d: &Digest) -> std::sync::MutexGuard<'_, GuardState> {
        self.stripes[stripe(d)]
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, GuardState> {
        self.stripes[i]
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the digests a manifest PUT (or a mount) is about to rely on, then waits
    /// out any deletion of them already under way. Check existence only after this returns.
    pub async fn pin(&self, digests: Vec<Digest>) -> ReferencePin<'_> {
        self.register(digests, false).await
    }

    /// Registers an upload about to put its content in place and link it, then waits out
    /// any deletion of it under way: until the pin drops, the sweep keeps the blob (even a
    /// directory its data has not reached yet) and the repository's link to it.
    pub async fn pin_upload(&self, digest: Digest) -> ReferencePin<'_> {
        self.register(vec![digest], true).await
    }

    async fn register(&self, mut digests: Vec<Digest>, upload: bool) -> ReferencePin<'_> {
        digests.sort();
        digests.dedup();
        let now = Instant::now();
        for d in &digests {
            let mut s = self.state(d);
            *s.in_flight.entry(d.clone()).or_insert(0) += 1;
            if upload {
                *s.uploading.entry(d.clone()).or_insert(0) += 1;
            }
            s.recent.insert(d.clone(), now);
            if let Some(late) = s.late_marks.as_mut() {
                late.insert(d.clone());
            }
            prune_recent(&mut s);
        }
        self.wait_for_deletions(&digests).await;
        ReferencePin {
            guard: self,
            digests,
            upload,
        }
    }

    /// Notes that a client saw a digest exist (a HEAD before skipping an upload): it is
    /// kept for the grace period. Cheap: one stripe's lock, no waiting.
    pub fn note_use(&self, digest: &Digest) {
        let mut s = self.state(digest);
        s.recent.insert(digest.clone(), Instant::now());
        prune_recent(&mut s);
    }

    async fn wait_for_deletions(&self, digests: &[Digest]) {
        let mut stripes: Vec<usize> = digests.iter().map(stripe).collect();
        stripes.sort_unstable();
        stripes.dedup();
        for i in stripes {
            drop(self.stripes[i].deleting.read().await);
        }
    }

    /// Starts late marking. Stripe by stripe is enough: a PUT registered in a stripe
    /// before that stripe started is copied from `in_flight` (or had finished, and the
    /// mark phase, which begins after this returns, sees its links); one registered after
    /// adds its late marks itself.
    fn begin_cycle(&self) {
        for i in 0..STRIPES {
            let mut s = self.shard(i);
            let late: HashSet<Digest> = s.in_flight.keys().cloned().collect();
            s.late_marks = Some(late);
        }
    }

    fn end_cycle(&self) {
        for i in 0..STRIPES {
            self.shard(i).late_marks = None;
        }
    }

    /// Whether a PUT registered `d`, or a client used it within `grace`.
    fn in_use(&self, d: &Digest, grace: Duration) -> bool {
        let s = self.state(d);
        s.late_marks.as_ref().is_some_and(|l| l.contains(d))
            || s.in_flight.contains_key(d)
            || s.recent.get(d).is_some_and(|t| t.elapsed() < grace)
    }

    /// Runs `delete` for `d` unless it is in use; returns whether it ran.
    pub(super) async fn delete_unless_referenced<F, Fut>(
        &self,
        d: &Digest,
        grace: Duration,
        delete: F,
    ) -> RegistryResult<bool>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = RegistryResult<()>>,
    {
        self.delete_unless(d, |g| g.in_use(d, grace), delete).await
    }

    /// Runs `delete` for `d` unless an upload is putting it in place; returns whether it
    /// ran. For links to a blob that is gone: nothing else may keep them.
    async fn delete_unless_uploading<F, Fut>(&self, d: &Digest, delete: F) -> RegistryResult<bool>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = RegistryResult<()>>,
    {
        self.delete_unless(d, |g| g.state(d).uploading.contains_key(d), delete)
            .await
    }

    async fn delete_unless<F, Fut>(
        &self,
        d: &Digest,
        keep: impl FnOnce(&Self) -> bool,
        delete: F,
    ) -> RegistryResult<bool>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = RegistryResult<()>>,
    {
        // The check happens under the write lock: see "Stripe locks" in the module doc.
        let _w = self.stripes[stripe(d)].deleting.write().await;
        if keep(self) {
            return Ok(false);
        }
        delete().await?;
        Ok(true)
    }
}

fn prune_recent(s: &mut GuardState) {
    if s.recent.len() > RECENT_PRUNE_AT {
        s.recent.retain(|_, t| t.elapsed() < RECENT_CAP);
        if s.recent.len() > RECENT_PRUNE_AT {
            // Only under a flood of distinct digests: forget the older half.
            let mut times: Vec<Instant> = s.recent.values().copied().collect();
            times.sort_unstable();
            let cut = times[times.len() / 2];
            s.recent.retain(|_, t| *t >= cut);
        }
    }
}

/// Ends the cycle even when the collection fails or its task is cancelled.
struct CycleGuard<'a>(&'a ReferenceGuard);

impl Drop for CycleGuard<'_> {
    fn drop(&mut self) {
        self.0.end_cycle();
    }
}

/// How to collect.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be removed; remove nothing.
    pub dry_run: bool,
    /// Also remove manifest revisions no tag reaches (see the module doc).
    pub delete_untagged: bool,
    /// Keep blobs and untagged revisions younger than this (0 offline, like registry:2).
    pub grace: Duration,
    /// Emit a progress event after this many manifests or blobs.
    pub progress_every: usize,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            delete_untagged: false,
            grace: Duration::ZERO,
            progress_every: 1000,
        }
    }
}

/// What a collection reports as it goes.
#[derive(Debug, Clone)]
pub enum GcEvent {
    /// A blob removed (or, in a dry run, eligible for removal).
    Blob {
        digest: Digest,
        size: u64,
    },
    /// An untagged manifest revision removed (or eligible).
    UntaggedManifest {
        repository: RepositoryName,
        digest: Digest,
    },
    Progress(String),
    /// Something odd that did not stop the collection (a manifest that cannot be read).
    Warning(String),
}

/// The outcome of one collection: what the CLI prints, and the JSON of the admin socket's
/// `done` line (fields added later default, so a newer CLI reads an older daemon's line).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct GcReport {
    pub repositories: usize,
    pub manifests: usize,
    pub blobs_marked: usize,
    pub blobs_seen: usize,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub manifests_removed: usize,
    /// Unreferenced blobs kept because they are younger than the grace period or in use.
    pub blobs_kept_young: usize,
    /// Unfinished uploads purged (or eligible) before the collection, by the caller that
    /// purged them: the collection itself leaves uploads alone.
    #[serde(default)]
    pub uploads_purged: usize,
    /// Blobs and links that could not be removed (each reported as a warning).
    #[serde(default)]
    pub errors: usize,
    /// Layer links to blobs not in the store, removed.
    #[serde(default)]
    pub links_removed: usize,
    /// Leftovers of interrupted writes removed (see `recovery`).
    #[serde(default)]
    pub leftovers_removed: usize,
    pub dry_run: bool,
    #[serde(rename = "seconds", with = "seconds")]
    pub elapsed: Duration,
}

/// A duration as a number of seconds, the way the admin protocol writes it.
mod seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Duration::try_from_secs_f64(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The layers of a Docker schema 1 manifest (`fsLayers[].blobSum`): no longer accepted on
/// push, but old stores hold them and their layers must stay.
pub(crate) fn schema1_layers(bytes: &[u8]) -> Option<Vec<Digest>> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if v.get("schemaVersion").and_then(serde_json::Value::as_u64) != Some(1) {
        return None;
    }
    v.get("fsLayers")?
        .as_array()?
        .iter()
        .map(|l| l.get("blobSum")?.as_str()?.parse().ok())
        .collect()
}

/// One directory of the blob store: `blobs/<algorithm>/<two hex digits>`.
pub(crate) type BlobPrefix = (Algorithm, String);

/// What the sweep did with one unmarked blob.
enum Swept {
    Removed(Digest, u64),
    Kept(Digest),
    Failed(Digest, String),
}

/// What one manifest references, read from its content.
#[derive(Default)]
struct References {
    blobs: Vec<Digest>,
    children: Vec<Digest>,
    subject: Option<Digest>,
}

/// The mark phase's state across repositories.
struct Marking {
    /// Manifests and blobs reached so far.
    marked: HashSet<Digest>,
    /// Manifests read ahead and not marked yet.
    parsed: HashMap<Digest, Option<References>>,
    /// A progress line every this many manifests.
    every: usize,
}

impl GcReport {
    /// Counts what the sweep did with one blob; one it left in place goes to `present`.
    fn count_swept(
        &mut self,
        outcome: Swept,
        present: &mut HashSet<Digest>,
        events: &mut (dyn FnMut(GcEvent) + Send),
    ) {
        match outcome {
            Swept::Removed(digest, size) => {
                self.blobs_removed += 1;
                self.bytes_freed += size;
                events(GcEvent::Blob { digest, size });
            }
            Swept::Kept(d) => {
                self.blobs_kept_young += 1;
                present.insert(d);
            }
            Swept::Failed(d, e) => {
                self.errors += 1;
                events(GcEvent::Warning(format!("blob {d} not removed: {e}")));
                present.insert(d);
            }
        }
    }
}

impl Registry {
    /// Reads what a manifest references; `None` when its content is missing. Content that
    /// cannot be read as a manifest stops the collection: what it references is unknown,
    /// so nothing can safely be swept (registry:2 stops too).
    async fn manifest_references(&self, digest: &Digest) -> RegistryResult<Option<References>> {
        let unreadable = |why: String| {
            RegistryError::ManifestInvalid(format!(
                "manifest {digest} cannot be read ({why}), so what it references is unknown; \
                 collection stopped. `docker-registry fsck` shows the repositories holding it."
            ))
        };
        let bytes = match self
            .driver
            .get_content(&layout::blob_data(digest)?, MAX_MANIFEST_BYTES * 4)
            .await
        {
            Ok(b) => b,
            Err(StorageError::NotFound(_)) => return Ok(None),
            Err(StorageError::TooLarge { .. }) => return Err(unreadable("too large".into())),
            Err(e) => return Err(e.into()),
        };
        match manifest::parse(&bytes, "") {
            Ok(parsed) => Ok(Some(References {
                blobs: parsed.blobs.into_iter().map(|b| b.digest).collect(),
                children: parsed.manifests.into_iter().map(|m| m.digest).collect(),
                subject: parsed.subject.map(|s| s.digest),
            })),
            Err(e) => match schema1_layers(&bytes) {
                Some(blobs) => Ok(Some(References {
                    blobs,
                    ..References::default()
                })),
                None => Err(unreadable(format!("{e:?}"))),
            },
        }
    }

    /// Digests named by the entries of one algorithm's directory (`<dir>/<hex>`), sorted;
    /// names that are not a digest of that algorithm are skipped.
    async fn digests_in(
        &self,
        dir: &crate::storage::StoragePath,
        algorithm: Algorithm,
    ) -> RegistryResult<Vec<Digest>> {
        let mut names = match self.driver.list(dir).await {
            Ok(n) => n,
            Err(StorageError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        names.sort();
        Ok(names
            .iter()
            .filter_map(|h| Digest::from_parts(algorithm, h).ok())
            .collect())
    }

    /// Digests named by the link directories of a digest tree (`<tree>/<alg>/<hex>/`, see
    /// `layout`), sorted.
    pub(crate) async fn list_digests(
        &self,
        tree: &crate::storage::StoragePath,
    ) -> RegistryResult<Vec<Digest>> {
        let mut out = Vec::new();
        for algorithm in Algorithm::ALL {
            out.extend(
                self.digests_in(&tree.join(algorithm.name())?, algorithm)
                    .await?,
            );
        }
        Ok(out)
    }

    /// The two-hex-digit directories of the blob store, each algorithm's, sorted.
    pub(crate) async fn blob_prefixes(&self) -> RegistryResult<Vec<BlobPrefix>> {
        let mut out = Vec::new();
        for algorithm in Algorithm::ALL {
            let mut prefixes = match self.driver.list(&layout::blobs_dir(algorithm)?).await {
                Ok(p) => p,
                Err(StorageError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            prefixes.sort();
            out.extend(prefixes.into_iter().map(|p| (algorithm, p)));
        }
        Ok(out)
    }

    /// The blobs stored under one prefix directory, sorted; names that do not belong
    /// there are not blobs and are skipped.
    pub(crate) async fn blobs_in_prefix(
        &self,
        (algorithm, prefix): &BlobPrefix,
    ) -> RegistryResult<Vec<Digest>> {
        let dir = layout::blobs_dir(*algorithm)?.join(prefix)?;
        let mut digests = self.digests_in(&dir, *algorithm).await?;
        digests.retain(|d| d.hex().starts_with(prefix.as_str()));
        Ok(digests)
    }

    /// The manifest revisions of a repository: directories whose `link` file exists and
    /// names a digest. registry:2 deletes a revision by removing only its link file, so
    /// an empty directory is not a revision.
    pub(crate) async fn revisions(&self, repo: &RepositoryName) -> RegistryResult<Vec<Digest>> {
        let listed = self.list_digests(&layout::revisions(repo)?).await?;
        let links: Vec<Option<Digest>> = stream::iter(listed)
            .map(|d| async move { self.read_link(&layout::revision_link(repo, &d)?).await })
            .buffered(IO_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(links.into_iter().flatten().collect())
    }

    /// Reads the references of manifests not read yet, several at a time.
    async fn prefetch_references(
        &self,
        digests: Vec<Digest>,
        parsed: &mut HashMap<Digest, Option<References>>,
    ) -> RegistryResult<()> {
        let fetched: Vec<(Digest, Option<References>)> = stream::iter(digests)
            .map(|d| async move {
                let r = self.manifest_references(&d).await?;
                Ok::<_, RegistryError>((d, r))
            })
            .buffered(IO_CONCURRENCY)
            .try_collect()
            .await?;
        parsed.extend(fetched);
        Ok(())
    }

    /// Sweeps one prefix directory of the blob store: what was removed (or would be),
    /// kept as young or in use, or could not be removed.
    async fn sweep_prefix(
        &self,
        prefix: &BlobPrefix,
        marked: &HashSet<Digest>,
        opts: &GcOptions,
        cutoff: SystemTime,
        lease: Option<&super::gc_shared::GcLease>,
    ) -> RegistryResult<(usize, Vec<Swept>)> {
        let digests = self.blobs_in_prefix(prefix).await?;
        let seen = digests.len();
        let mut out = Vec::new();
        for d in digests.into_iter().filter(|d| !marked.contains(d)) {
            let info = match self.driver.stat(&layout::blob_data(&d)?).await {
                Ok(i) => Some(i),
                Err(StorageError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            };
            // A blob directory without data is debris of an interrupted write: it frees
            // nothing but is removed with the rest.
            let size = info.as_ref().map(|i| i.size).unwrap_or(0);
            if info.as_ref().is_some_and(|i| i.modified > cutoff) {
                out.push(Swept::Kept(d));
                continue;
            }
            let removed = if opts.dry_run {
                Ok(!self.gc.in_use(&d, opts.grace))
            } else {
                let dir = layout::blob_dir(&d)?;
                // Other instances' writes (on a shared store), then this process's.
                self.delete_unless_marked_in_store(&d, lease, || async {
                    self.gc
                        .delete_unless_referenced(&d, opts.grace, || async {
                            self.remove(&dir).await?;
                            Ok(())
                        })
                        .await
                })
                .await
            };
            out.push(match removed {
                Ok(true) => Swept::Removed(d, size),
                Ok(false) => Swept::Kept(d),
                // One blob that cannot be removed (permissions, a backend hiccup) must not
                // stop the collection: it is reported and the sweep goes on.
                Err(e) => Swept::Failed(d, e.to_string()),
            });
        }
        Ok((seen, out))
    }

    /// Runs one collection and remembers its outcome ([`Registry::last_collection`]).
    pub async fn collect_garbage(
        &self,
        opts: &GcOptions,
        events: &mut (dyn FnMut(GcEvent) + Send),
    ) -> RegistryResult<GcReport> {
        let result = self.collect(opts, events).await;
        let last = LastCollection {
            finished: std::time::SystemTime::now(),
            result: result.as_ref().map(Clone::clone).map_err(|e| e.to_string()),
        };
        *self.gc.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(last);
        result
    }

    /// The outcome of the last collection this process ran, if any.
    pub fn last_collection(&self) -> Option<LastCollection> {
        self.gc
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs one collection. Only one runs at a time in a process; a second waits.
    async fn collect(
        &self,
        opts: &GcOptions,
        events: &mut (dyn FnMut(GcEvent) + Send),
    ) -> RegistryResult<GcReport> {
        let _one = self.gc.running.lock().await;
        // With several instances on the store, one collects at a time.
        let held = self.take_maintenance_lease("garbage collection").await?;
        let _caches = self.clear_caches_when_done();
        let started = Instant::now();
        self.gc.begin_cycle();
        let _cycle = CycleGuard(&self.gc);
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let marked = self.mark(opts, events, &mut report).await?;
        let present = self
            .sweep(&marked, opts, held.as_ref(), events, &mut report)
            .await?;
        if !opts.dry_run {
            self.unlink_absent(&marked, &present, events, &mut report)
                .await?;
            self.remove_old_leftovers(events, &mut report).await;
        }
        if let Some(l) = held {
            l.release().await;
        }
        report.elapsed = started.elapsed();
        if let (Some(m), false) = (crate::metrics::get(), opts.dry_run) {
            m.gc_finished(
                report.blobs_removed as u64,
                report.bytes_freed,
                report.elapsed,
            );
        }
        Ok(report)
    }

    /// Mark: every manifest and blob the revisions of every repository reach (once
    /// untagged manifests are removed, with `delete_untagged`).
    async fn mark(
        &self,
        opts: &GcOptions,
        events: &mut (dyn FnMut(GcEvent) + Send),
        report: &mut GcReport,
    ) -> RegistryResult<HashSet<Digest>> {
        let mut mark = Marking {
            marked: HashSet::new(),
            parsed: HashMap::new(),
            every: opts.progress_every.max(1),
        };
        let repositories = self.scan_catalog().await?;
        report.repositories = repositories.len();
        for name in &repositories {
            let Ok(repo) = name.parse::<RepositoryName>() else {
                continue;
            };
            let mut roots = self.revisions(&repo).await?;
            if opts.delete_untagged {
                roots = self
                    .remove_untagged(&repo, roots, opts, &mut mark.parsed, events, report)
                    .await?;
            }
            self.mark_from(&repo, roots, &mut mark, events, report)
                .await?;
        }
        let marked = mark.marked;
        report.blobs_marked = marked.len();
        events(GcEvent::Progress(format!(
            "marked {} blobs from {} manifests in {} repositories",
            marked.len(),
            report.manifests,
            report.repositories
        )));
        Ok(marked)
    }

    /// Marks the manifests `roots` of `repo` and all they reference, children and subjects
    /// included, reading the manifests not read yet several at a time.
    async fn mark_from(
        &self,
        repo: &RepositoryName,
        roots: Vec<Digest>,
        mark: &mut Marking,
        events: &mut (dyn FnMut(GcEvent) + Send),
        report: &mut GcReport,
    ) -> RegistryResult<()> {
        let Marking {
            marked,
            parsed,
            every,
        } = mark;
        let unread: Vec<Digest> = roots
            .iter()
            .filter(|d| !marked.contains(*d) && !parsed.contains_key(*d))
            .cloned()
            .collect();
        self.prefetch_references(unread, parsed).await?;
        let mut work: Vec<Digest> = roots;
        while let Some(d) = work.pop() {
            if !marked.insert(d.clone()) {
                continue;
            }
            report.manifests += 1;
            if report.manifests % *every == 0 {
                events(GcEvent::Progress(format!(
                    "marking: {} manifests read, {} blobs marked",
                    report.manifests,
                    marked.len()
                )));
            }
            let refs = match parsed.remove(&d) {
                Some(r) => r,
                None => self.manifest_references(&d).await?,
            };
            let Some(refs) = refs else {
                events(GcEvent::Warning(format!(
                    "{repo}: manifest {d} is referenced but its content is missing"
                )));
                continue;
            };
            marked.extend(refs.blobs);
            if let Some(s) = refs.subject {
                marked.insert(s);
            }
            work.extend(refs.children.into_iter().filter(|c| !marked.contains(c)));
        }
        Ok(())
    }

    /// Sweep: removes the blobs not marked and older than the grace. Returns the unmarked
    /// blobs it left in place; with the marked ones, all that may still be linked.
    async fn sweep(
        &self,
        marked: &HashSet<Digest>,
        opts: &GcOptions,
        lease: Option<&super::gc_shared::GcLease>,
        events: &mut (dyn FnMut(GcEvent) + Send),
        report: &mut GcReport,
    ) -> RegistryResult<HashSet<Digest>> {
        let every = opts.progress_every.max(1);
        let cutoff = SystemTime::now()
            .checked_sub(opts.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut present: HashSet<Digest> = HashSet::new();
        // Several prefix directories at a time, results taken in order; memory holds the
        // marks and a few directory listings, not the whole blob list.
        let mut sweeps = stream::iter(self.blob_prefixes().await?)
            .map(|prefix| async move {
                self.sweep_prefix(&prefix, marked, opts, cutoff, lease)
                    .await
            })
            .buffered(SWEEP_CONCURRENCY);
        let mut next_progress = every * 10;
        while let Some(result) = sweeps.next().await {
            let (seen, outcomes) = result?;
            report.blobs_seen += seen;
            for o in outcomes {
                report.count_swept(o, &mut present, events);
            }
            if report.blobs_seen >= next_progress {
                next_progress = report.blobs_seen + every * 10;
                events(GcEvent::Progress(format!(
                    "sweeping: {} blobs checked, {} removable",
                    report.blobs_seen, report.blobs_removed
                )));
            }
        }
        Ok(present)
    }

    /// Removes the repositories' layer links to blobs that are not in the store: those
    /// this run swept, and any a crash or registry:2's collector left (it keeps them), so
    /// that no repository lists a blob it cannot serve. Every repository with layer links
    /// counts, also one no manifest was pushed to yet. Under the sweep's guard: a link
    /// whose blob an upload is putting in place right now is kept, and a blob that came
    /// back since the sweep keeps its links; nothing else keeps a link to nothing.
    async fn unlink_absent(
        &self,
        marked: &HashSet<Digest>,
        present: &HashSet<Digest>,
        events: &mut (dyn FnMut(GcEvent) + Send),
        report: &mut GcReport,
    ) -> RegistryResult<()> {
        let mut repositories = self
            .driver
            .find_directories_with(&layout::repositories_root()?, "_layers")
            .await?;
        repositories.sort();
        for name in repositories {
            let Ok(repo) = name.parse::<RepositoryName>() else {
                continue;
            };
            for d in self.list_digests(&layout::layers(&repo)?).await? {
                if marked.contains(&d) || present.contains(&d) {
                    continue;
                }
                let Some(dir) = layout::layer_link(&repo, &d)?.parent() else {
                    continue;
                };
                let mut removed = false;
                let unlinked = self
                    .gc
                    .delete_unless_uploading(&d, || async {
                        if !self.blob_exists_globally(&d).await? {
                            removed = self.remove(&dir).await?;
                        }
                        Ok(())
                    })
                    .await;
                match unlinked {
                    Ok(_) => report.links_removed += usize::from(removed),
                    Err(e) => {
                        report.errors += 1;
                        events(GcEvent::Warning(format!(
                            "{repo}: layer link to {d} not removed: {e}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the leftovers of interrupted writes old enough that no write in flight, of
    /// this process or another, can be using them (see `recovery`).
    async fn remove_old_leftovers(
        &self,
        events: &mut (dyn FnMut(GcEvent) + Send),
        report: &mut GcReport,
    ) {
        let before = SystemTime::now()
            .checked_sub(super::recovery::LEFTOVER_AGE)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let root = match layout::store_root() {
            Ok(r) => r,
            Err(e) => return events(GcEvent::Warning(e.to_string())),
        };
        match self.driver.leftovers(&root, Some(before), true).await {
            Ok(removed) => report.leftovers_removed = removed.len(),
            Err(e) => events(GcEvent::Warning(format!(
                "leftovers of interrupted writes not removed: {e}"
            ))),
        }
    }

    /// Narrows a repository's revisions to those a tag reaches (closed over index children
    /// and referrers) and removes the others; returns the revisions kept.
    async fn remove_untagged(
        &self,
        repo: &RepositoryName,
        revisions: Vec<Digest>,
        opts: &GcOptions,
        parsed: &mut HashMap<Digest, Option<References>>,
        events: &mut (dyn FnMut(GcEvent) + Send),
        report: &mut GcReport,
    ) -> RegistryResult<Vec<Digest>> {
        let tags = match self.scan_tags(repo).await {
            Ok(t) => t,
            Err(RegistryError::NameUnknown(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut keep: HashSet<Digest> = HashSet::new();
        for t in &tags {
            let Ok(tag) = t.parse::<Tag>() else { continue };
            if let Some(d) = self
                .read_link(&layout::tag_current_link(repo, &tag)?)
                .await?
            {
                keep.insert(d);
            }
        }
        let unread: Vec<Digest> = revisions
            .iter()
            .filter(|d| !parsed.contains_key(*d))
            .cloned()
            .collect();
        self.prefetch_references(unread, parsed).await?;
        // Fixpoint: children of kept indexes, and referrers whose subject is kept.
        loop {
            let mut grew = false;
            for d in &revisions {
                let Some(Some(refs)) = parsed.get(d) else {
                    continue;
                };
                if keep.contains(d) {
                    for c in &refs.children {
                        grew |= keep.insert(c.clone());
                    }
                } else if refs.subject.as_ref().is_some_and(|s| keep.contains(s)) {
                    grew |= keep.insert(d.clone());
                }
            }
            if !grew {
                break;
            }
        }
        let cutoff = SystemTime::now()
            .checked_sub(opts.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut kept = Vec::new();
        for d in revisions {
            if keep.contains(&d) {
                kept.push(d);
                continue;
            }
            let link = layout::revision_link(repo, &d)?;
            let young = match self.driver.stat(&link).await {
                Ok(i) => i.modified > cutoff,
                Err(StorageError::NotFound(_)) => false,
                Err(e) => return Err(e.into()),
            };
            if young {
                kept.push(d);
                continue;
            }
            let removed = if opts.dry_run {
                true
            } else {
                let subject = parsed
                    .get(&d)
                    .and_then(|r| r.as_ref())
                    .and_then(|r| r.subject.clone());
                self.gc
                    .delete_unless_referenced(&d, opts.grace, || {
                        self.remove_revision(repo, &d, &tags, subject)
                    })
                    .await?
            };
            if removed {
                report.manifests_removed += 1;
                events(GcEvent::UntaggedManifest {
                    repository: repo.clone(),
                    digest: d.clone(),
                });
                parsed.remove(&d);
            } else {
                kept.push(d);
            }
        }
        Ok(kept)
    }

    /// Removes a revision with its tag-history entries and referrers-index entry, as
    /// registry:2's collector does.
    async fn remove_revision(
        &self,
        repo: &RepositoryName,
        d: &Digest,
        tags: &[String],
        subject: Option<Digest>,
    ) -> RegistryResult<()> {
        for t in tags {
            let Ok(tag) = t.parse::<Tag>() else { continue };
            if let Some(dir) = layout::tag_index_link(repo, &tag, d)?.parent() {
                self.remove(&dir).await?;
            }
        }
        if let Some(s) = subject {
            if let Some(dir) = layout::referrer_link(repo, &s, d)?.parent() {
                self.remove(&dir).await?;
            }
        }
        self.remove(&layout::revision_dir(repo, d)?).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::{put_blob, registry};

    #[test]
    fn stripes_cover_every_prefix() {
        let d = Digest::of_bytes(b"x");
        assert!(stripe(&d) < STRIPES);
        let ff = Digest::from_parts(Algorithm::Sha512, &"f".repeat(128)).expect("hex");
        assert_eq!(stripe(&ff), 255 % STRIPES);
    }

    #[tokio::test]
    async fn a_pinned_digest_survives_a_sweep_and_an_unpinned_one_does_not() {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = registry(tmp.path());
        let kept = put_blob(&reg, b"kept").await;
        let gone = put_blob(&reg, b"gone").await;
        let pin = reg.gc.pin(vec![kept.clone()]).await;
        let mut removed = Vec::new();
        let report = reg
            .collect_garbage(&GcOptions::default(), &mut |e| {
                if let GcEvent::Blob { digest, .. } = e {
                    removed.push(digest)
                }
            })
            .await
            .expect("gc");
        drop(pin);
        assert_eq!(removed, vec![gone.clone()]);
        assert_eq!(report.blobs_removed, 1);
        assert!(reg.blob_exists_globally(&kept).await.expect("stat"));
        assert!(!reg.blob_exists_globally(&gone).await.expect("stat"));
    }

    /// Links to blobs that are gone are removed wherever they are (a repository without a
    /// manifest too), even while a refused push holds the digest; only an upload putting
    /// the blob in place keeps its link.
    #[tokio::test]
    async fn no_layer_link_is_left_dangling_but_an_uploads_own() {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = registry(tmp.path());
        let repo: RepositoryName = "no/manifest/yet".parse().expect("name");
        let swept = put_blob(&reg, b"swept").await;
        let (refused, uploading) = (Digest::of_bytes(b"refused"), Digest::of_bytes(b"up"));
        for d in [&swept, &refused, &uploading] {
            reg.write_link(&layout::layer_link(&repo, d).expect("p"), d)
                .await
                .expect("link");
        }
        let reg = &reg;
        let linked = |d: &Digest| {
            let path = layout::layer_link(&repo, d).expect("p");
            async move { reg.exists(&path).await.expect("stat") }
        };
        let held = reg.gc.pin(vec![refused.clone()]).await;
        let upload = reg.gc.pin_upload(uploading.clone()).await;
        let report = reg
            .collect_garbage(&GcOptions::default(), &mut |_| {})
            .await
            .expect("gc");
        assert_eq!((report.blobs_removed, report.links_removed), (1, 2));
        assert!(!linked(&swept).await && !linked(&refused).await);
        assert!(linked(&uploading).await, "the upload's link stays");
        drop((held, upload));
        let report = reg
            .collect_garbage(&GcOptions::default(), &mut |_| {})
            .await
            .expect("gc");
        assert_eq!(report.links_removed, 1);
        assert!(!linked(&uploading).await);
    }

    #[tokio::test]
    async fn young_blobs_are_kept_for_the_grace_period() {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = registry(tmp.path());
        let d = put_blob(&reg, b"fresh").await;
        let opts = GcOptions {
            grace: Duration::from_secs(3600),
            ..GcOptions::default()
        };
        let report = reg.collect_garbage(&opts, &mut |_| {}).await.expect("gc");
        assert_eq!((report.blobs_removed, report.blobs_kept_young), (0, 1));
        assert!(reg.blob_exists_globally(&d).await.expect("stat"));
    }

    /// Stores a manifest's bytes and its revision link as a push would (blobs need not
    /// exist for marking).
    async fn revision(reg: &Registry, repo: &RepositoryName, body: &str) -> Digest {
        let d = put_blob(reg, body.as_bytes()).await;
        reg.write_link(&layout::revision_link(repo, &d).expect("p"), &d)
            .await
            .expect("link");
        d
    }

    #[tokio::test]
    async fn delete_untagged_keeps_referrers_of_a_kept_manifest_and_removes_orphans() {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = registry(tmp.path());
        let repo: RepositoryName = "app".parse().expect("name");
        let cfg = put_blob(&reg, b"{}").await;
        let image = |label: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/x","digest":"{cfg}","size":2}},"layers":[],"annotations":{{"l":"{label}"}}}}"#,
                manifest::OCI_MANIFEST
            )
        };
        let tagged = revision(&reg, &repo, &image("tagged")).await;
        let orphan = revision(&reg, &repo, &image("orphan")).await;
        let sig = revision(
            &reg,
            &repo,
            &format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/x","digest":"{cfg}","size":2}},"layers":[],"subject":{{"mediaType":"{}","digest":"{tagged}","size":1}}}}"#,
                manifest::OCI_MANIFEST,
                manifest::OCI_MANIFEST
            ),
        )
        .await;
        let tag: Tag = "v1".parse().expect("tag");
        reg.write_link(&layout::tag_current_link(&repo, &tag).expect("p"), &tagged)
            .await
            .expect("tag");

        let opts = GcOptions {
            delete_untagged: true,
            ..GcOptions::default()
        };
        let mut gone_manifests = Vec::new();
        let mut gone_blobs = Vec::new();
        reg.collect_garbage(&opts, &mut |e| match e {
            GcEvent::UntaggedManifest { digest, .. } => gone_manifests.push(digest),
            GcEvent::Blob { digest, .. } => gone_blobs.push(digest),
            _ => {}
        })
        .await
        .expect("gc");
        assert_eq!(gone_manifests, vec![orphan.clone()]);
        assert_eq!(gone_blobs, vec![orphan.clone()]);
        assert_eq!(reg.revisions(&repo).await.expect("list").len(), 2);
        for d in [&tagged, &sig, &cfg] {
            assert!(reg.blob_exists_globally(d).await.expect("stat"), "{d} kept");
        }
    }

    #[tokio::test]
    async fn schema1_layers_are_kept_and_an_unreadable_manifest_stops_the_sweep() {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = registry(tmp.path());
        let repo: RepositoryName = "old".parse().expect("name");
        let layer = put_blob(&reg, b"layer").await;
        let garbage = put_blob(&reg, b"garbage").await;
        revision(
            &reg,
            &repo,
            &format!(r#"{{"schemaVersion":1,"name":"old","tag":"v1","fsLayers":[{{"blobSum":"{layer}"}}]}}"#),
        )
        .await;
        let mut removed = Vec::new();
        reg.collect_garbage(&GcOptions::default(), &mut |e| {
            if let GcEvent::Blob { digest, .. } = e {
                removed.push(digest)
            }
        })
        .await
        .expect("gc");
        assert_eq!(removed, vec![garbage.clone()]);
        assert!(reg.blob_exists_globally(&layer).await.expect("stat"));

        let other = put_blob(&reg, b"other").await;
        revision(&reg, &repo, "this is not a manifest").await;
        let err = reg
            .collect_garbage(&GcOptions::default(), &mut |_| {})
            .await;
        assert!(
            matches!(err, Err(RegistryError::ManifestInvalid(_))),
            "{err:?}"
        );
        assert!(
            reg.blob_exists_globally(&other).await.expect("stat"),
            "nothing swept"
        );
    }
}
