//! Blobs as a repository sees them: a blob is served by a repository only when that
//! repository links it (`_layers/.../link`) and the content exists in the shared blob store.

use super::{layout, Digest, Registry, RegistryError, RegistryResult, RepositoryName};
use crate::storage::{BlobReader, ChunkStream, StorageError};

/// A blob's bytes as [`Registry::blob_content`] hands them out.
pub enum BlobContent {
    /// The file that holds the whole blob.
    File(std::fs::File),
    /// The requested bytes, streamed.
    Chunks(ChunkStream),
}

impl BlobContent {
    /// The requested bytes (`len` from `offset`) as a stream of chunks, however they are kept.
    pub fn into_chunks(self, offset: u64, len: u64) -> ChunkStream {
        match self {
            BlobContent::File(file) => crate::storage::file_chunks(file, offset, len),
            BlobContent::Chunks(chunks) => chunks,
        }
    }
}

impl Registry {
    /// The size of a blob the repository links, or `BLOB_UNKNOWN`.
    pub async fn blob_size(&self, repo: &RepositoryName, digest: &Digest) -> RegistryResult<u64> {
        if !self.exists(&layout::layer_link(repo, digest)?).await? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        match self.driver.stat(&layout::blob_data(digest)?).await {
            Ok(info) if !info.is_dir => {
                // A client that saw the blob may skip uploading it: keep it a while (`gc`).
                self.gc.note_use(digest);
                Ok(info.size)
            }
            Ok(_) | Err(StorageError::NotFound(_)) => {
                Err(RegistryError::BlobUnknown(digest.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens a linked blob at `offset`; returns the stream and the blob's full size.
    pub async fn open_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        offset: u64,
    ) -> RegistryResult<(BlobReader, u64)> {
        if !self.exists(&layout::layer_link(repo, digest)?).await? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        match self
            .driver
            .reader(&layout::blob_data(digest)?, offset)
            .await
        {
            Ok(r) => Ok(r),
            Err(StorageError::NotFound(_)) => Err(RegistryError::BlobUnknown(digest.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// `len` bytes of a blob from `offset`, for sending: the open file itself where the
    /// storage keeps one (so that the connection may send it with sendfile), otherwise a
    /// stream of chunks. The caller has checked that the repository links it:
    /// [`Registry::blob_size`] does, just before (a request to the store saved per pull).
    pub async fn blob_content(
        &self,
        digest: &Digest,
        offset: u64,
        len: u64,
    ) -> RegistryResult<BlobContent> {
        let data = layout::blob_data(digest)?;
        let content = match self.driver.open_file(&data).await {
            Ok(Some(file)) => Ok(BlobContent::File(file)),
            Ok(None) => self
                .driver
                .read_chunks(&data, offset, len)
                .await
                .map(BlobContent::Chunks),
            Err(e) => Err(e),
        };
        content.map_err(|e| match e {
            StorageError::NotFound(_) => RegistryError::BlobUnknown(digest.clone()),
            e => e.into(),
        })
    }

    /// Where a client may fetch a linked blob itself, when redirects are on and the driver
    /// can give such a URL; the link is checked first, so a redirect never reveals a blob
    /// the repository does not hold.
    pub async fn blob_redirect(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> RegistryResult<Option<String>> {
        if !self.options.redirect {
            return Ok(None);
        }
        if !self.exists(&layout::layer_link(repo, digest)?).await? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        let url = self
            .driver
            .redirect_url(&layout::blob_data(digest)?, &http::Method::GET)
            .await?;
        Ok(url)
    }

    /// Whether the shared store holds this content at all (any repository).
    pub async fn blob_exists_globally(&self, digest: &Digest) -> RegistryResult<bool> {
        self.exists(&layout::blob_data(digest)?).await
    }

    /// Unlinks a blob from a repository. The content stays until garbage collection.
    pub async fn delete_blob(&self, repo: &RepositoryName, digest: &Digest) -> RegistryResult<()> {
        self.require_delete()?;
        let link = layout::layer_link(repo, digest)?;
        let dir = link
            .parent()
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        if !self.remove(&dir).await? {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        Ok(())
    }

    /// Cross-repository mount: links `digest` into `repo` when `from` links it. Returns
    /// the blob's size, or `None` when it cannot be mounted (the client then uploads it
    /// normally).
    pub async fn mount_blob(
        &self,
        repo: &RepositoryName,
        from: &RepositoryName,
        digest: &Digest,
    ) -> RegistryResult<Option<u64>> {
        // Garbage collection hook: in use from before the check until the link is written
        // (see `gc`).
        let _pin = self.gc.pin(vec![digest.clone()]).await;
        self.mark_in_store(std::slice::from_ref(digest)).await?;
        let size = match self.blob_size(from, digest).await {
            Ok(size) => size,
            Err(RegistryError::BlobUnknown(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.write_link(&layout::layer_link(repo, digest)?, digest)
            .await?;
        Ok(Some(size))
    }
}
