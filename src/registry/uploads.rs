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
use crate::storage::{FileWriter, StorageError};
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

/// An open upload, locked for one request, taking bytes.
pub struct UploadWriter<'a> {
    registry: &'a Registry,
    repo: RepositoryName,
    id: String,
    state: OwnedMutexGuard<HashState>,
    writer: Option<Box<dyn FileWriter>>,
    hasher: DigestHasher,
}

impl Registry {
    /// Starts a session: returns its id.
    pub async fn start_upload(&self, repo: &RepositoryName) -> RegistryResult<String> {
        let id = uuid::Uuid::new_v4().hyphenated().to_string();
        let started = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        self.driver
            .put_content(&layout::upload_started_at(repo, &id)?, started.as_bytes())
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
            hasher,
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

    /// Bytes in the upload, including what this request has written so far.
    pub fn size(&self) -> u64 {
        self.writer
            .as_ref()
            .map(|w| w.size())
            .unwrap_or(self.state.offset)
    }

    pub async fn write(&mut self, data: &[u8]) -> RegistryResult<()> {
        let Some(w) = self.writer.as_mut() else {
            return Err(RegistryError::BlobUploadUnknown);
        };
        if let Err(e) = w.write(data).await {
            // The file and the hash may now disagree: force a rebuild next time.
            self.state.hasher = None;
            return Err(e.into());
        }
        self.hasher.update(data);
        Ok(())
    }

    /// Ends this request's part, keeping the session open; returns the upload's size.
    pub async fn pause(mut self) -> RegistryResult<u64> {
        let Some(w) = self.writer.take() else {
            return Err(RegistryError::BlobUploadUnknown);
        };
        match w.close().await {
            Ok(size) => {
                self.state.offset = size;
                self.state.hasher = Some(self.hasher.clone());
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
        let Some(w) = self.writer.take() else {
            return Err(RegistryError::BlobUploadUnknown);
        };
        let registry = self.registry;
        let upload_dir = layout::upload_dir(&self.repo, &self.id)?;
        let actual = self.hasher.clone().finish();
        if &actual != expected {
            w.cancel().await?;
            registry.remove(&upload_dir).await?;
            registry.uploads.forget(&self.id);
            return Err(RegistryError::DigestInvalid(format!(
                "expected {expected}, content is {actual}"
            )));
        }
        let size = w.commit().await?;
        let target = layout::blob_data(expected)?;
        // Garbage collection hook: the content is in use from now on (see `gc`).
        registry.gc.touch(expected).await;
        // Two clients pushing the same content both succeed: the second finds it in place.
        if !registry.exists(&target).await? {
            registry
                .driver
                .rename(&layout::upload_data(&self.repo, &self.id)?, &target)
                .await?;
        }
        registry
            .write_link(&layout::layer_link(&self.repo, expected)?, expected)
            .await?;
        registry.remove(&upload_dir).await?;
        registry.uploads.forget(&self.id);
        self.state.hasher = None;
        Ok(size)
    }
}
