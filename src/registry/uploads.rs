//! Upload sessions: `_uploads/<id>/data` grows with each PATCH; the final PUT checks the
//! digest and moves the data into the shared blob store.
//!
//! The SHA-256 state of each open session is kept in memory between requests so that the
//! digest is computed while bytes stream in and never by reading the blob back. If that
//! state is missing or does not match the file (after a restart, or a request that died
//! mid-write), it is rebuilt once from the data already on disk, so resumed uploads stay
//! correct. One lock per session serialises concurrent requests on the same upload.

use super::{
    layout, Digest, DigestHasher, Registry, RegistryError, RegistryResult, RepositoryName,
};
use crate::storage::{FileWriter, Staged, StorageError, StoragePath};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Default)]
pub(crate) struct HashState {
    offset: u64,
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

/// Bytes gathered from the network before they are handed on, as one batch, to the hashing
/// thread and to the storage writer. One batch is hashed and written while the next one
/// arrives, so an upload holds at most three batches of memory whatever its size.
const BATCH: usize = 1 << 20;
/// Below this, a last batch is hashed on the request's own task: a thread hop costs more.
const INLINE_HASH: usize = 64 << 10;

/// SHA-256 computed on a blocking thread while the request keeps receiving, batch by batch,
/// so that hashing (the slowest step per byte) overlaps receiving and writing instead of
/// taking turns with them on one thread.
struct PipelinedHasher {
    /// The state, when no batch is being hashed.
    idle: Option<DigestHasher>,
    running: Option<tokio::task::JoinHandle<DigestHasher>>,
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
            let h = h.await.map_err(|e| {
                RegistryError::Storage(StorageError::Io {
                    path: String::new(),
                    source: std::io::Error::other(format!("hashing task failed: {e}")),
                })
            })?;
            self.idle = Some(h);
        }
        Ok(self.idle.get_or_insert_with(DigestHasher::new))
    }

    async fn push(&mut self, batch: Vec<Bytes>, len: usize) -> RegistryResult<()> {
        let h = self.settle().await?;
        if len < INLINE_HASH {
            for b in &batch {
                h.update(b);
            }
            return Ok(());
        }
        let mut h = std::mem::take(h);
        self.idle = None;
        self.running = Some(tokio::task::spawn_blocking(move || {
            for b in &batch {
                h.update(b);
            }
            h
        }));
        Ok(())
    }

    async fn finish(mut self) -> RegistryResult<DigestHasher> {
        Ok(std::mem::take(self.settle().await?))
    }
}

/// An open upload, locked for one request, taking bytes.
pub struct UploadWriter<'a> {
    registry: &'a Registry,
    repo: RepositoryName,
    id: String,
    state: OwnedMutexGuard<HashState>,
    writer: Option<Box<dyn FileWriter>>,
    hasher: PipelinedHasher,
    batch: Vec<Bytes>,
    batch_len: usize,
    /// A write failed: the file may hold less than was hashed, so the digest state must not
    /// be kept for the next request (it is rebuilt from the file instead).
    poisoned: bool,
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
    pub async fn open_upload(
        &self,
        repo: &RepositoryName,
        id: &str,
    ) -> RegistryResult<UploadWriter<'_>> {
        let data = layout::upload_data(repo, id)?;
        let state = self.uploads.entry(id).lock_owned().await;
        let writer = match self.driver.stat(&data).await {
            Ok(info) if !info.is_dir => self.driver.writer(&data, true).await?,
            Ok(_) | Err(StorageError::NotFound(_)) => {
                drop(state);
                self.uploads.forget(id);
                return Err(RegistryError::BlobUploadUnknown);
            }
            Err(e) => return Err(e.into()),
        };
        let size = writer.size();
        let hasher = match &state.hasher {
            Some(h) if state.offset == size => h.clone(),
            _ => {
                if size > 0 {
                    tracing::debug!(
                        upload = id,
                        size,
                        "rebuilding upload digest state from disk"
                    );
                }
                self.rehash(&data, size).await?
            }
        };
        Ok(UploadWriter {
            registry: self,
            repo: repo.clone(),
            id: id.to_owned(),
            state,
            writer: Some(writer),
            hasher: PipelinedHasher::new(hasher),
            batch: Vec::new(),
            batch_len: 0,
            poisoned: false,
        })
    }

    async fn rehash(
        &self,
        data: &crate::storage::StoragePath,
        size: u64,
    ) -> RegistryResult<DigestHasher> {
        let mut hasher = DigestHasher::new();
        if size == 0 {
            return Ok(hasher);
        }
        let (reader, _) = self.driver.reader(data, 0).await?;
        let mut reader = reader.take(size);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| StorageError::io(data, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher)
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
        if self.batch_len >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hands the gathered batch to the hasher and the writer.
    async fn flush(&mut self) -> RegistryResult<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let len = std::mem::take(&mut self.batch_len);
        let Some(w) = self.writer.as_mut() else {
            return Err(RegistryError::BlobUploadUnknown);
        };
        // Clones of `Bytes` share the data: the hasher and the writer read the same memory.
        let result = match self.hasher.push(batch.clone(), len).await {
            Ok(()) => w.write_chunks(batch).await.map_err(RegistryError::from),
            Err(e) => Err(e),
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
        let hasher = std::mem::replace(&mut self.hasher, PipelinedHasher::new(DigestHasher::new()));
        hasher.finish().await
    }

    /// Ends this request's part, keeping the session open; returns the upload's size.
    pub async fn pause(mut self) -> RegistryResult<u64> {
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
        let Some(w) = self.writer.take() else {
            return Err(RegistryError::BlobUploadUnknown);
        };
        match w.close().await {
            Ok(size) if !self.poisoned => {
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
        let hasher = match self.settle().await {
            Ok(h) => h,
            Err(e) => {
                self.state.hasher = None;
                return Err(e);
            }
        };
        let Some(w) = self.writer.take() else {
            return Err(RegistryError::BlobUploadUnknown);
        };
        let registry = self.registry;
        let upload_dir = layout::upload_dir(&self.repo, &self.id)?;
        let actual = hasher.finish();
        if &actual != expected {
            w.cancel().await?;
            registry.remove(&upload_dir).await?;
            registry.uploads.forget(&self.id);
            return Err(RegistryError::DigestInvalid(format!(
                "expected {expected}, content is {actual}"
            )));
        }
        // Closed, not yet synced: the staged write below makes the content durable before
        // it moves into the blob store, and the move durable before the link is written,
        // sharing those waits for the disk with every other request in flight.
        let size = w.close().await?;
        let target = layout::blob_data(expected)?;
        // Garbage collection hook: the content is in use from now on (see `gc`).
        registry.gc.touch(expected).await;
        let link = [(
            layout::layer_link(&self.repo, expected)?,
            super::link_to(expected),
        )];
        // Two clients pushing the same content both succeed: the second finds it in place.
        let data: Vec<(StoragePath, Staged)> = if registry.exists(&target).await? {
            Vec::new()
        } else {
            vec![(
                target,
                Staged::MovedFrom(layout::upload_data(&self.repo, &self.id)?),
            )]
        };
        registry.driver.put_staged(&[&data, &link]).await?;
        registry.remove(&upload_dir).await?;
        registry.uploads.forget(&self.id);
        self.state.hasher = None;
        Ok(size)
    }
}
