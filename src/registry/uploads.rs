//! Upload sessions: `_uploads/<id>/data` grows with each PATCH; the final PUT checks the
//! digest and moves the data into the shared blob store.
//!
//! The hash state of each open session is kept in memory between requests so that the
//! digest is computed while bytes stream in and never by reading the blob back. If that
//! state is missing or does not match the file (after a restart, or a request that died
//! mid-write), it is rebuilt once from the data already on disk, so resumed uploads stay
//! correct. One lock per session serialises concurrent requests on the same upload.
//!
//! # Several instances on one store
//!
//! Where the driver is shared by several daemons (S3 behind a load balancer), the PATCHes
//! of one upload may land on different instances, and nothing an instance needs may live
//! only in its memory. Two things then go to the store with each request:
//!
//! * *An append claim.* Before appending at offset `n`, a request takes the lease
//!   `_uploads/<id>/appending/<n>/` (see `lease`: a generation created with the driver's
//!   create-if-absent, [`StorageDriver::create_new`](crate::storage::StorageDriver::create_new)),
//!   renews it while it streams and releases it when it ends. Of two requests racing to
//!   append to one session, on any instances, one holds the claim and the other is
//!   answered 416 with the range the upload holds; a claim left by a later request that saw
//!   an older size is caught by the writer's size check. An instance that dies mid-request
//!   leaves its claim, which the client's next request, on any instance, takes over once
//!   it is over: at once when the dead holder was a process of the same machine, else
//!   after [`CLAIM_LIFETIME`] without renewal. What the dead request sent is not part of
//!   the upload (the driver records the file's content only when a writer closes), so the
//!   client continues from the range the upload reports. A request whose claim was taken
//!   over (it stalled past the claim's end) fails instead of closing its writer.
//! * *The hash state* after the request, `_uploads/<id>/hashstates/<alg>/<offset>`, in the
//!   format registry:2 writes there (Go's marshalled SHA-2 state), so the next instance
//!   continues the digest without reading back what was received.
//!
//! # Straight into the blob store
//!
//! A request that brings a whole blob and names its digest up front (a monolithic upload,
//! or a PUT finishing a session that has received nothing) writes, where the driver offers
//! one, through a *whole writer* at the blob's own path
//! ([`StorageDriver::whole_writer`](crate::storage::StorageDriver::whole_writer)): nothing
//! is there for anyone until the digest has checked and the writer is closed, and there is
//! no copy of the session's data into place (on S3, a server-side copy of every byte). A
//! body cut short leaves the session as it was (empty): the client starts the blob again.
//!
//! Which hash: the client names the digest, and so its algorithm, only with the request
//! that ends the upload. A session is hashed with sha256 (what nearly every client uses)
//! until a request names a digest of another algorithm: a monolithic upload names it up
//! front and is hashed with it alone; a session finished with a sha512 digest has what it
//! already holds hashed again with sha512 from the file, once, and the finishing request's
//! body is hashed with sha512 as it streams. Computing both hashes of every upload instead
//! would make every sha256 push pay for sha512 (2.7 times sha256's CPU here).

use super::{
    layout, Algorithm, Digest, DigestHasher, Registry, RegistryError, RegistryResult,
    RepositoryName,
};
use crate::storage::{FileWriter, Staged, StorageError, StoragePath};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub(crate) struct HashState {
    offset: u64,
    /// The algorithm the session is hashed with: the last one a request named.
    algorithm: Algorithm,
    /// The hash of the first `offset` bytes, with `algorithm`.
    hasher: Option<DigestHasher>,
}

#[derive(Default)]
pub(crate) struct UploadStates {
    map: Mutex<HashMap<String, Arc<AsyncMutex<HashState>>>>,
}

impl UploadStates {
    fn entry(&self, id: &str) -> Arc<AsyncMutex<HashState>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }
}

/// A validated upload id (a UUID, as we and distribution issue them).
pub fn parse_upload_id(s: &str) -> RegistryResult<String> {
    uuid::Uuid::parse_str(s)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| RegistryError::BlobUploadUnknown)
}

/// Bytes gathered from the network before they are handed on, as one batch, to the storage
/// writer (which writes it on a blocking thread) and hashed while that write runs. An upload
/// holds at most two batches of memory whatever its size (the one being written and hashed,
/// the one arriving), besides hyper's read buffer and the writer's own.
///
/// Batches grow with the upload, as large as what it already holds, up to [`MAX_BATCH`]:
/// a device takes fewer, larger writes faster (a journaled ext4 on a virtual disk: 256 MiB
/// in 2 MiB `O_DIRECT` writes at 1.4 GB/s, in 1 MiB ones at 1.2 GB/s, with `dd`), and ext4
/// runs a file's appending direct writes one at a time, so for a large layer the writes
/// set the pace. 4 MiB batches (2.0 GB/s with `dd`) pushed no faster in the benchmark and
/// raised a single push's peak RSS from 26-33 to 42-47 MiB. A small blob stays one batch
/// of its size.
///
/// Batches smaller than [`MAX_BATCH`] are hashed on the request's own task: that saves a
/// hand-off to the blocking pool and back per batch (half the futex wakeups and sched_yields
/// of an upload of 1 MiB batches, measured with `strace -c`), and holds the worker for one
/// batch's hash (~0.5 ms with SHA-NI) while the socket fills for the next `recv`. A full
/// batch is hashed on a blocking thread, beside its write and the next batch's receive:
/// in turn with the receive, the hashing became the slowest stage of a large push once the
/// writes were large (256 MiB pushes with 4 MiB batches, 2 × 3 alternating rounds:
/// 960-1037 MB/s against 826-981 with the full batch hashed in turn).
const BATCH: usize = 1 << 20;
/// The largest batch, for uploads that already hold this much.
const MAX_BATCH: usize = 2 << 20;
/// Below this, a last batch of a file being hashed again is hashed on the request's own
/// task: a thread hop costs more.
const INLINE_HASH: usize = 64 << 10;

/// A digest computed on a blocking thread while the next batch is read, batch by batch, for
/// content hashed again from the store (see [`Registry::hash_file`]) and an upload's full
/// batches, so that hashing overlaps reading instead of taking turns with it.
struct PipelinedHasher {
    /// The state, when no batch is being hashed.
    idle: Option<DigestHasher>,
    running: Option<tokio::task::JoinHandle<DigestHasher>>,
}

fn hashing_failed(why: String) -> RegistryError {
    RegistryError::Storage(StorageError::Io {
        path: String::new(),
        source: std::io::Error::other(why),
    })
}

impl PipelinedHasher {
    fn new(h: DigestHasher) -> Self {
        PipelinedHasher {
            idle: Some(h),
            running: None,
        }
    }

    /// The state after every batch handed over so far.
    async fn settle(&mut self) -> RegistryResult<&mut DigestHasher> {
        if let Some(h) = self.running.take() {
            let h = h
                .await
                .map_err(|e| hashing_failed(format!("hashing task failed: {e}")))?;
            self.idle = Some(h);
        }
        // Only a failed hashing task leaves no state, and its error was returned.
        self.idle
            .as_mut()
            .ok_or_else(|| hashing_failed("hashing state lost after a failure".into()))
    }

    async fn push(&mut self, batch: Vec<Bytes>, len: usize) -> RegistryResult<()> {
        let h = self.settle().await?;
        if len < INLINE_HASH {
            for b in &batch {
                h.update(b);
            }
            return Ok(());
        }
        let Some(mut h) = self.idle.take() else {
            return Err(hashing_failed("hashing state lost".into()));
        };
        self.running = Some(tokio::task::spawn_blocking(move || {
            for b in &batch {
                h.update(b);
            }
            h
        }));
        Ok(())
    }

    async fn finish(mut self) -> RegistryResult<DigestHasher> {
        self.settle().await?;
        self.idle
            .take()
            .ok_or_else(|| hashing_failed("hashing state lost".into()))
    }
}

/// How long an append claim lasts unless its request renews it (every third of it while
/// the request runs): how long an upload whose request died with an instance on another
/// machine waits before the client's next request may take it over.
pub(crate) const CLAIM_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// The right to append to an upload at one offset, held in the store (see the module doc):
/// released where a request ends normally, so that the client's next request, which may
/// follow at once, finds the upload free; in the background when it ends another way (the
/// client went away mid-body, a check failed).
type Claim = super::lease::Lease;

/// An open upload, locked for one request, taking bytes.
pub struct UploadWriter<'a> {
    registry: &'a Registry,
    /// The append claim this request holds, on stores shared by instances (see the module
    /// doc); released when the request ends, however it ends.
    claim: Option<Claim>,
    repo: RepositoryName,
    id: String,
    state: OwnedMutexGuard<HashState>,
    writer: Option<Box<dyn FileWriter>>,
    /// `None` once settled (the request is ending).
    hasher: Option<PipelinedHasher>,
    batch: Vec<Bytes>,
    batch_len: usize,
    /// A write failed: the file may hold less than was hashed, so the digest state must not
    /// be kept for the next request (it is rebuilt from the file instead).
    poisoned: bool,
    /// `writer` is a whole writer of the blob itself (see the module doc), not the session's
    /// data file.
    whole: bool,
}

impl Registry {
    /// Starts a session: returns its id.
    pub async fn start_upload(&self, repo: &RepositoryName) -> RegistryResult<String> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let started = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        // Not fsynced: a session lost in a crash is lost anyway (its data file too), and
        // purging treats a missing `startedat` by the data file's age.
        self.driver
            .put_small(&layout::upload_started_at(repo, &id)?, started.as_bytes())
            .await?;
        let w = self
            .driver
            .writer(&layout::upload_data(repo, &id)?, false)
            .await?;
        w.close().await?;
        self.uploads.entry(&id);
        Ok(id)
    }

    /// Bytes received so far by a session.
    pub async fn upload_size(&self, repo: &RepositoryName, id: &str) -> RegistryResult<u64> {
        match self.driver.stat(&layout::upload_data(repo, id)?).await {
            Ok(info) if !info.is_dir => Ok(info.size),
            Ok(_) | Err(StorageError::NotFound(_)) => Err(RegistryError::BlobUploadUnknown),
            Err(e) => Err(e.into()),
        }
    }

    /// Cancels a session and removes what it received.
    pub async fn cancel_upload(&self, repo: &RepositoryName, id: &str) -> RegistryResult<()> {
        let state = self.uploads.entry(id);
        let _guard = state.lock().await;
        let existed = self.remove(&layout::upload_dir(repo, id)?).await?;
        self.uploads.forget(id);
        if existed {
            Ok(())
        } else {
            Err(RegistryError::BlobUploadUnknown)
        }
    }

    /// Opens a session for appending, after waiting for any other request on it.
    /// `algorithm`: the algorithm of the digest this request names, if it names one (a
    /// monolithic upload, or the request that finishes a session); the session is hashed
    /// with it from now on (see the module doc).
    pub async fn open_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
        algorithm: Option<Algorithm>,
    ) -> RegistryResult<UploadWriter<'_>> {
        self.open_upload_writing(repo, id, algorithm, None).await
    }

    /// Opens a session for the request that finishes it with `digest`: when the session has
    /// received nothing yet, the bytes go straight to the blob's path if the driver can
    /// write it whole (see the module doc).
    pub async fn open_upload_to_finish(
        &self,
        repo: &RepositoryName,
        id: &str,
        digest: &Digest,
    ) -> RegistryResult<UploadWriter<'_>> {
        self.open_upload_writing(repo, id, Some(digest.algorithm()), Some(digest))
            .await
    }

    async fn open_upload_writing(
        &self,
        repo: &RepositoryName,
        id: &str,
        algorithm: Option<Algorithm>,
        finishing: Option<&Digest>,
    ) -> RegistryResult<UploadWriter<'_>> {
        let data = layout::upload_data(repo, id)?;
        let mut state = self.uploads.entry(id).lock_owned().await;
        let size = match self.driver.stat(&data).await {
            Ok(info) if !info.is_dir => info.size,
            Ok(_) | Err(StorageError::NotFound(_)) => {
                drop(state);
                self.uploads.forget(id);
                return Err(RegistryError::BlobUploadUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(a) = algorithm {
            state.algorithm = a;
        }
        let claim = if self.driver.shared_by_instances() {
            let taken = Claim::take(
                &self.driver,
                layout::upload_append_claim(repo, id, size)?,
                CLAIM_LIFETIME,
                &format!("appending to upload {id} at {size}"),
            )
            .await?;
            match taken {
                Ok(claim) => Some(claim),
                Err(holder) => {
                    tracing::info!(
                        upload = id,
                        offset = size,
                        "refused an append: another request is appending to this upload ({holder})"
                    );
                    return Err(RegistryError::UploadRangeInvalid { size });
                }
            }
        } else {
            None
        };
        let memory = match &state.hasher {
            Some(h) if state.offset == size && h.algorithm() == state.algorithm => Some(h.clone()),
            _ => None,
        };
        let stored = match (&memory, &claim) {
            // Nothing received yet: the state is a fresh one, nothing to read.
            (None, Some(_)) if size > 0 => {
                self.stored_hash_state(repo, id, state.algorithm, size)
                    .await
            }
            _ => None,
        };
        let hasher = match memory.or(stored) {
            Some(h) => h,
            None => {
                if size > 0 {
                    tracing::debug!(
                        upload = id,
                        size,
                        algorithm = %state.algorithm,
                        "rebuilding upload digest state from disk"
                    );
                }
                self.hash_file(&data, size, state.algorithm).await?.0
            }
        };
        let whole = match finishing {
            Some(d) if size == 0 && d.algorithm() == state.algorithm => {
                self.driver.whole_writer(&layout::blob_data(d)?).await?
            }
            _ => None,
        };
        let (writer, whole) = match whole {
            Some(w) => (w, true),
            // Opened after any rehash: on S3, reading an upload back completes the multipart
            // upload holding it, which a writer opened before would no longer find.
            None => (self.driver.writer(&data, true).await?, false),
        };
        if writer.size() != size {
            return Err(RegistryError::Storage(StorageError::Io {
                path: data.to_string(),
                source: std::io::Error::other(format!(
                    "upload changed from {size} to {} bytes while being reopened",
                    writer.size()
                )),
            }));
        }
        Ok(UploadWriter {
            registry: self,
            claim,
            repo: repo.clone(),
            id: id.to_owned(),
            state,
            writer: Some(writer),
            hasher: Some(PipelinedHasher::new(hasher)),
            batch: Vec::new(),
            batch_len: 0,
            poisoned: false,
            whole,
        })
    }

    /// The digest state another request (maybe on another instance) saved after `offset`
    /// bytes; `None` when there is none or it cannot be used, and the data is hashed again.
    async fn stored_hash_state(
        &self,
        repo: &RepositoryName,
        id: &str,
        algorithm: Algorithm,
        offset: u64,
    ) -> Option<DigestHasher> {
        let path = layout::upload_hash_state(repo, id, algorithm, offset).ok()?;
        let saved = match self.driver.get_content(&path, 1024).await {
            Ok(saved) => saved,
            Err(StorageError::NotFound(_)) => return None,
            Err(e) => {
                tracing::warn!(upload = id, "reading the saved digest state failed: {e}");
                return None;
            }
        };
        match DigestHasher::load(algorithm, &saved) {
            Some(h) if h.hashed() == offset => Some(h),
            _ => {
                tracing::warn!(
                    upload = id,
                    "{path}: not a {algorithm} state after {offset} bytes; hashing the data again"
                );
                None
            }
        }
    }

    /// Hashes the first `limit` bytes of a stored file (all of it with `u64::MAX`) with
    /// `algorithm`, reading the next batch while the last one is hashed on a blocking
    /// thread; returns the state and the number of bytes read.
    pub(crate) async fn hash_file(
        &self,
        path: &StoragePath,
        limit: u64,
        algorithm: Algorithm,
    ) -> RegistryResult<(DigestHasher, u64)> {
        let mut hasher = PipelinedHasher::new(DigestHasher::new(algorithm));
        if limit == 0 {
            return Ok((hasher.finish().await?, 0));
        }
        let (reader, _) = self.driver.reader(path, 0).await?;
        let mut reader = reader.take(limit);
        let mut total = 0u64;
        loop {
            let mut buf = BytesMut::with_capacity(BATCH);
            while buf.len() < BATCH {
                let n = reader
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| StorageError::io(path, e))?;
                if n == 0 {
                    break;
                }
            }
            if buf.is_empty() {
                break;
            }
            let len = buf.len();
            total += len as u64;
            hasher.push(vec![buf.freeze()], len).await?;
            if len < BATCH {
                break;
            }
        }
        Ok((hasher.finish().await?, total))
    }
}

impl UploadWriter<'_> {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Bytes in the upload, including what this request has received so far.
    pub fn size(&self) -> u64 {
        self.writer
            .as_ref()
            .map(|w| w.size())
            .unwrap_or(self.state.offset)
            + self.batch_len as u64
    }

    /// Takes a chunk of the body as it came off the network (no copy is made).
    pub async fn write(&mut self, data: Bytes) -> RegistryResult<()> {
        if self.writer.is_none() {
            return Err(RegistryError::BlobUploadUnknown);
        }
        self.batch_len += data.len();
        self.batch.push(data);
        if self.batch_len >= self.batch_size() {
            self.flush().await?;
        }
        Ok(())
    }

    /// How much to gather before handing it on: as much as the upload holds, within
    /// [`BATCH`] and [`MAX_BATCH`].
    fn batch_size(&self) -> usize {
        let written = self.writer.as_ref().map_or(0, |w| w.size());
        usize::try_from(written)
            .unwrap_or(MAX_BATCH)
            .clamp(BATCH, MAX_BATCH)
    }

    /// Hands the gathered batch to the writer, and hashes it while the writer writes it.
    async fn flush(&mut self) -> RegistryResult<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let len = std::mem::take(&mut self.batch_len);
        let Some(w) = self.writer.as_mut() else {
            return Err(RegistryError::BlobUploadUnknown);
        };
        let Some(hasher) = self.hasher.as_mut() else {
            return Err(RegistryError::BlobUploadUnknown);
        };
        // Clones of `Bytes` share the data: the writer and the hasher read the same memory.
        let result = match w.write_chunks(batch.clone()).await {
            Ok(()) if len >= MAX_BATCH => hasher.push(batch, len).await,
            Ok(()) => hasher.settle().await.map(|h| {
                for b in &batch {
                    h.update(b);
                }
            }),
            Err(e) => Err(e.into()),
        };
        if result.is_err() {
            // The file and the hash may now disagree: force a rebuild next time.
            self.poisoned = true;
            self.state.hasher = None;
        }
        result
    }

    /// Everything received is handed over; returns the digest state after it.
    async fn settle(&mut self) -> RegistryResult<DigestHasher> {
        self.flush().await?;
        match self.hasher.take() {
            Some(h) => h.finish().await,
            None => Err(RegistryError::BlobUploadUnknown),
        }
    }

    async fn release_claim(&mut self) {
        if let Some(c) = self.claim.take() {
            c.release().await;
        }
    }

    /// Fails if this request's claim was taken over by another (it stalled past the claim's
    /// end): its writer must then not record what it wrote.
    fn check_claim(&mut self) -> RegistryResult<()> {
        if self.claim.as_ref().is_none_or(|c| c.valid()) {
            return Ok(());
        }
        self.writer = None;
        self.state.hasher = None;
        Err(RegistryError::StorageUnavailable {
            backend: self.registry.driver.location(),
            reason: format!(
                "upload {}: this request stalled and another took the upload over; ask where \
                 the upload stands and continue from there",
                self.id
            ),
        })
    }

    /// Ends this request's part, keeping the session open; returns the upload's size.
    pub async fn pause(mut self) -> RegistryResult<u64> {
        let result = self.pause_and_save().await;
        self.release_claim().await;
        result
    }

    async fn pause_and_save(&mut self) -> RegistryResult<u64> {
        if self.whole {
            // Nothing of this request is kept (see the module doc): the session still holds
            // what it held, nothing.
            if let Some(w) = self.writer.take() {
                if let Err(e) = w.cancel().await {
                    tracing::warn!(upload = self.id, "abandoning a blob's write failed: {e}");
                }
            }
            self.hasher = None;
            self.state.hasher = None;
            return Ok(0);
        }
        let hasher = match self.settle().await {
            Ok(h) => h,
            Err(e) => {
                if let Some(w) = self.writer.take() {
                    let _ = w.close().await;
                }
                self.state.hasher = None;
                return Err(e);
            }
        };
        self.check_claim()?;
        let Some(w) = self.writer.take() else {
            return Err(RegistryError::BlobUploadUnknown);
        };
        match w.close().await {
            Ok(size) if !self.poisoned => {
                if self.claim.is_some() {
                    // For the next request, which may come to another instance. Without
                    // it that one hashes the data again: slower, never wrong.
                    let saved =
                        layout::upload_hash_state(&self.repo, &self.id, hasher.algorithm(), size)?;
                    if let Err(e) = self.registry.driver.put_small(&saved, &hasher.save()).await {
                        tracing::warn!(upload = self.id, "saving the digest state failed: {e}");
                    }
                }
                self.state.offset = size;
                self.state.hasher = Some(hasher);
                Ok(size)
            }
            Ok(size) => {
                self.state.hasher = None;
                Ok(size)
            }
            Err(e) => {
                self.state.hasher = None;
                Err(e.into())
            }
        }
    }

    /// Finishes the upload: verifies the digest, makes the data durable, moves it into the
    /// blob store and links it into the repository. On a mismatch nothing is stored and the
    /// session is removed.
    pub async fn complete(mut self, expected: &Digest) -> RegistryResult<u64> {
        let result = self.complete_and_store(expected).await;
        self.release_claim().await;
        result
    }

    async fn complete_and_store(&mut self, expected: &Digest) -> RegistryResult<u64> {
        let hasher = match self.settle().await {
            Ok(h) => h,
            Err(e) => {
                self.state.hasher = None;
                return Err(e);
            }
        };
        self.check_claim()?;
        let Some(w) = self.writer.take() else {
            return Err(RegistryError::BlobUploadUnknown);
        };
        if self.whole {
            return self.publish_whole(w, hasher, expected).await;
        }
        let registry = self.registry;
        let data = layout::upload_data(&self.repo, &self.id)?;
        // Closed, not yet synced: the staged write below makes the content durable before
        // it moves into the blob store, and the move durable before the link is written,
        // sharing those waits for the disk with every other request in flight.
        let size = w.close().await?;
        let actual = if hasher.algorithm() == expected.algorithm() {
            hasher.finish()
        } else {
            // Opened without the algorithm it is finished with (`open_upload`'s caller did
            // not say): hash the file with the right one rather than refuse good content.
            registry
                .hash_file(&data, size, expected.algorithm())
                .await?
                .0
                .finish()
        };
        if &actual != expected {
            return self.refuse_digest(expected, &actual).await;
        }
        let target = layout::blob_data(expected)?;
        // Garbage collection hook: the content and its link are in use from now on, held
        // until both are in place (see `gc`).
        let _pin = registry.gc.pin_upload(expected.clone()).await;
        registry
            .mark_in_store(std::slice::from_ref(expected))
            .await?;
        let link = self.link(expected)?;
        // Two clients pushing the same content both succeed: the second finds it in place.
        let data: Vec<(StoragePath, Staged)> = if registry.exists(&target).await? {
            Vec::new()
        } else {
            vec![(target, Staged::MovedFrom(data))]
        };
        if registry.driver.shared_by_instances() && !data.is_empty() {
            // Moving a large blob in can take longer than a mark protects it (see
            // `gc_shared`): marked again once it is in place, before its link is written.
            registry.driver.put_staged(&[&data]).await?;
            registry
                .mark_in_store(std::slice::from_ref(expected))
                .await?;
            registry.driver.put_staged(&[&link]).await?;
        } else {
            registry.driver.put_staged(&[&data, &link]).await?;
        }
        self.end_session(size).await
    }

    /// Finishes an upload written by a whole writer at the blob's path: published (closed)
    /// only once the digest has checked, abandoned otherwise.
    async fn publish_whole(
        &mut self,
        w: Box<dyn FileWriter>,
        hasher: DigestHasher,
        expected: &Digest,
    ) -> RegistryResult<u64> {
        let registry = self.registry;
        let size = w.size();
        let actual = hasher.finish();
        if &actual != expected {
            if let Err(e) = w.cancel().await {
                tracing::warn!(upload = self.id, "abandoning a blob's write failed: {e}");
            }
            return self.refuse_digest(expected, &actual).await;
        }
        // As for a move into place (see `complete_and_store`): in use from its mark on, and
        // marked again before its link when writing took long. Published even where the same
        // content already is: the same bytes replace it at once, and a whole writer is only
        // offered where that costs less than asking first.
        let _pin = registry.gc.pin_upload(expected.clone()).await;
        let marked = std::time::Instant::now();
        registry
            .mark_in_store(std::slice::from_ref(expected))
            .await?;
        w.close().await?;
        if marked.elapsed() > super::gc_shared::MARK_LIFETIME / 2 {
            registry
                .mark_in_store(std::slice::from_ref(expected))
                .await?;
        }
        let link = self.link(expected)?;
        registry.driver.put_staged(&[&link]).await?;
        self.end_session(size).await
    }

    /// The repository's link to the blob, for a staged write.
    fn link(&self, d: &Digest) -> RegistryResult<[(StoragePath, Staged); 1]> {
        Ok([(layout::layer_link(&self.repo, d)?, super::link_to(d))])
    }

    /// Content that is not what the client named: nothing is stored, the session goes.
    async fn refuse_digest(&mut self, expected: &Digest, actual: &Digest) -> RegistryResult<u64> {
        self.registry
            .remove(&layout::upload_dir(&self.repo, &self.id)?)
            .await?;
        self.registry.uploads.forget(&self.id);
        Err(RegistryError::DigestInvalid(format!(
            "expected {expected}, content is {actual}"
        )))
    }

    /// Removes a finished session's directory and what this process kept of it.
    async fn end_session(&mut self, size: u64) -> RegistryResult<u64> {
        let registry = self.registry;
        registry
            .remove(&layout::upload_dir(&self.repo, &self.id)?)
            .await?;
        // The claim was in the session's directory: gone with it.
        if let Some(claim) = self.claim.as_mut() {
            claim.forget();
        }
        registry.uploads.forget(&self.id);
        self.state.hasher = None;
        if let Some(m) = crate::metrics::get() {
            m.bytes_pushed.inc_by(size);
        }
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::testing::registry;

    /// Sends `parts` as separate requests (one PATCH each), opened without an algorithm.
    async fn patch_all(reg: &Registry, repo: &RepositoryName, id: &str, parts: &[&[u8]]) {
        for p in parts {
            let mut w = reg.open_upload(repo, id, None).await.expect("open");
            w.write(Bytes::copy_from_slice(p)).await.expect("write");
            w.pause().await.expect("pause");
        }
    }

    #[tokio::test]
    async fn a_session_hashed_with_sha256_finishes_with_a_sha512_digest() {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = registry(tmp.path());
        let repo: RepositoryName = "up/five".parse().expect("name");
        // Larger than a batch, so that hashing runs on the blocking pool too.
        let head = vec![7u8; BATCH + 12345];
        let tail = b"and the last bytes";
        let whole = [&head[..], &tail[..]].concat();
        let want = Algorithm::Sha512.digest(&whole);

        // Told the algorithm by the finishing request: what the file holds is hashed again.
        let id = reg.start_upload(&repo).await.expect("start");
        patch_all(&reg, &repo, &id, &[&head]).await;
        let mut w = reg
            .open_upload(&repo, &id, Some(Algorithm::Sha512))
            .await
            .expect("open");
        w.write(Bytes::from_static(tail)).await.expect("write");
        assert_eq!(
            w.complete(&want).await.expect("complete"),
            whole.len() as u64
        );
        assert!(reg
            .driver
            .stat(&layout::blob_data(&want).expect("path"))
            .await
            .is_ok());

        // Not told (a caller that did not say): completing still checks with sha512.
        let other = [&tail[..], &head[..]].concat();
        let id = reg.start_upload(&repo).await.expect("start");
        patch_all(&reg, &repo, &id, &[tail, &head]).await;
        let w = reg.open_upload(&repo, &id, None).await.expect("open");
        let d = Algorithm::Sha512.digest(&other);
        assert_eq!(w.complete(&d).await.expect("complete"), other.len() as u64);

        // And a sha512 digest the content does not have is refused.
        let id = reg.start_upload(&repo).await.expect("start");
        patch_all(&reg, &repo, &id, &[&head]).await;
        let w = reg
            .open_upload(&repo, &id, Some(Algorithm::Sha512))
            .await
            .expect("open");
        let err = w.complete(&want).await;
        assert!(
            matches!(err, Err(RegistryError::DigestInvalid(_))),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn hash_file_reads_a_whole_file_or_a_prefix() {
        let tmp = tempfile::tempdir().expect("tmp");
        let reg = registry(tmp.path());
        let path = StoragePath::new(["f", "data"]).expect("path");
        let content: Vec<u8> = (0..(3 * BATCH + 5)).map(|i| (i % 251) as u8).collect();
        reg.driver.put_content(&path, &content).await.expect("put");
        for (limit, want) in [
            (u64::MAX, &content[..]),
            (BATCH as u64, &content[..BATCH]),
            (0, &[][..]),
        ] {
            for a in Algorithm::ALL {
                let (h, n) = reg.hash_file(&path, limit, a).await.expect("hash");
                assert_eq!(n, want.len() as u64);
                assert_eq!(h.finish(), a.digest(want));
            }
        }
    }

    /// A claim left by a request that died with its instance on another machine blocks the
    /// upload while it runs, and is taken over once it has ended unrenewed: the client
    /// continues from the range the upload holds.
    #[tokio::test]
    async fn an_ended_claim_of_a_dead_instance_is_taken_over() {
        let store = crate::storage::MemoryDriver::new().as_shared();
        let reg = Registry::new(Arc::new(store), Default::default());
        let repo: RepositoryName = "up/dead".parse().expect("name");
        let id = reg.start_upload(&repo).await.expect("start");
        let claim = |g: u64| {
            layout::upload_append_claim(&repo, &id, 0)
                .and_then(|d| d.join(&format!("{g:010}")))
                .expect("path")
        };
        let until = |t: SystemTime| {
            format!(
                "appending, held by pid 1 on elsewhere since 2026-01-01T00:00:00Z, lease x, until {}",
                t.duration_since(std::time::UNIX_EPOCH).expect("time").as_millis()
            )
        };
        let running = until(SystemTime::now() + std::time::Duration::from_secs(60));
        assert!(reg
            .driver
            .create_new(&claim(0), running.as_bytes())
            .await
            .expect("plant"));
        let refused = reg.open_upload(&repo, &id, None).await.err();
        assert!(
            matches!(refused, Some(RegistryError::UploadRangeInvalid { size: 0 })),
            "{refused:?}"
        );
        reg.driver.delete(&claim(0)).await.expect("delete");
        let ended = until(SystemTime::now() - std::time::Duration::from_secs(1));
        assert!(reg
            .driver
            .create_new(&claim(0), ended.as_bytes())
            .await
            .expect("plant"));
        let mut w = reg.open_upload(&repo, &id, None).await.expect("taken over");
        w.write(Bytes::from_static(b"continued"))
            .await
            .expect("write");
        let want = Algorithm::Sha256.digest(b"continued");
        assert_eq!(w.complete(&want).await.expect("complete"), 9);
    }

    /// Two instances on one shared store: while one request appends, another instance's
    /// is refused with the range the upload holds; afterwards the other instance goes on
    /// from the digest state saved in the store.
    #[tokio::test]
    async fn instances_on_a_shared_store_take_turns_appending() {
        let store = crate::storage::MemoryDriver::new().as_shared();
        let a = Registry::new(Arc::new(store.clone()), Default::default());
        let b = Registry::new(Arc::new(store.clone()), Default::default());
        let repo: RepositoryName = "up/shared".parse().expect("name");
        let id = a.start_upload(&repo).await.expect("start");
        let mut w = a.open_upload(&repo, &id, None).await.expect("open on a");
        w.write(Bytes::from_static(b"first ")).await.expect("write");
        let refused = b.open_upload(&repo, &id, None).await.err();
        assert!(
            matches!(refused, Some(RegistryError::UploadRangeInvalid { size: 0 })),
            "{refused:?}"
        );
        assert_eq!(w.pause().await.expect("pause"), 6);
        let saved = layout::upload_hash_state(&repo, &id, Algorithm::Sha256, 6).expect("path");
        assert!(b.exists(&saved).await.expect("stat"));
        let mut w = b.open_upload(&repo, &id, None).await.expect("open on b");
        w.write(Bytes::from_static(b"second")).await.expect("write");
        let want = Algorithm::Sha256.digest(b"first second");
        assert_eq!(w.complete(&want).await.expect("complete"), 12);
    }
}
