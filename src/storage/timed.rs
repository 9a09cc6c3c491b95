//! A driver that times every action of the driver it wraps into
//! `registry_storage_action_seconds{driver,action}` (see [`crate::metrics`]), with
//! registry:2's action names where it has the action (`GetContent`, `PutContent`, `Reader`,
//! `Writer`, `Stat`, `List`, `Move`, `Delete`, `URLFor`, `Walk`). Only put in place while
//! metrics are on, so a registry without them does not pay for the indirection.
//!
//! It passes every method on. [`StorageDriver`] has no default bodies, so a method added to
//! the trait does not compile here until it is passed on too: none can silently fall back to
//! a default and replace what the wrapped driver does (its `open_file` is what makes
//! zero-copy pulls possible; S3's `shared_by_instances`, what several instances agree by).

use super::{
    BlobReader, ChunkStream, FileInfo, FileWriter, Leftover, Staged, StorageDriver, StoragePath,
    StorageResult,
};
use crate::metrics::Metrics;
use async_trait::async_trait;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

#[derive(Debug)]
pub struct TimedDriver {
    inner: Arc<dyn StorageDriver>,
}

impl TimedDriver {
    pub fn new(inner: Arc<dyn StorageDriver>) -> TimedDriver {
        TimedDriver { inner }
    }

    async fn time<T>(&self, action: &'static str, f: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = f.await;
        if let Some(m) = crate::metrics::get() {
            Metrics::storage(m, self.inner.name(), action, start.elapsed());
        }
        out
    }
}

#[async_trait]
impl StorageDriver for TimedDriver {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn location(&self) -> String {
        self.inner.location()
    }

    async fn get_content(&self, path: &StoragePath, limit: u64) -> StorageResult<Bytes> {
        self.time("GetContent", self.inner.get_content(path, limit))
            .await
    }

    async fn put_content(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()> {
        self.time("PutContent", self.inner.put_content(path, content))
            .await
    }

    async fn put_small(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()> {
        self.time("PutContent", self.inner.put_small(path, content))
            .await
    }

    async fn create_new(&self, path: &StoragePath, content: &[u8]) -> StorageResult<bool> {
        self.time("PutContent", self.inner.create_new(path, content))
            .await
    }

    fn shared_by_instances(&self) -> bool {
        self.inner.shared_by_instances()
    }

    fn directory_times_track_entries(&self) -> bool {
        self.inner.directory_times_track_entries()
    }

    async fn put_staged(&self, stages: &[&[(StoragePath, Staged)]]) -> StorageResult<()> {
        self.time("PutStaged", self.inner.put_staged(stages)).await
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> StorageResult<(BlobReader, u64)> {
        self.time("Reader", self.inner.reader(path, offset)).await
    }

    async fn read_chunks(
        &self,
        path: &StoragePath,
        offset: u64,
        len: u64,
    ) -> StorageResult<ChunkStream> {
        self.time("Reader", self.inner.read_chunks(path, offset, len))
            .await
    }

    async fn open_file(&self, path: &StoragePath) -> StorageResult<Option<std::fs::File>> {
        self.time("Reader", self.inner.open_file(path)).await
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> StorageResult<Box<dyn FileWriter>> {
        self.time("Writer", self.inner.writer(path, append)).await
    }

    async fn whole_writer(&self, path: &StoragePath) -> StorageResult<Option<Box<dyn FileWriter>>> {
        self.time("Writer", self.inner.whole_writer(path)).await
    }

    async fn stat(&self, path: &StoragePath) -> StorageResult<FileInfo> {
        self.time("Stat", self.inner.stat(path)).await
    }

    async fn list(&self, path: &StoragePath) -> StorageResult<Vec<String>> {
        self.time("List", self.inner.list(path)).await
    }

    async fn find_directories_with(
        &self,
        root: &StoragePath,
        marker: &str,
    ) -> StorageResult<Vec<String>> {
        self.time("Walk", self.inner.find_directories_with(root, marker))
            .await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> StorageResult<()> {
        self.time("Move", self.inner.rename(from, to)).await
    }

    async fn delete(&self, path: &StoragePath) -> StorageResult<()> {
        self.time("Delete", self.inner.delete(path)).await
    }

    async fn redirect_url(
        &self,
        path: &StoragePath,
        method: &http::Method,
    ) -> StorageResult<Option<String>> {
        self.time("URLFor", self.inner.redirect_url(path, method))
            .await
    }

    async fn check_writable(&self) -> StorageResult<()> {
        self.time("CheckWritable", self.inner.check_writable())
            .await
    }

    async fn use_alone(&self) -> StorageResult<bool> {
        self.inner.use_alone().await
    }

    async fn use_shared(&self) -> StorageResult<()> {
        self.inner.use_shared().await
    }

    async fn leftovers(
        &self,
        under: &StoragePath,
        before: Option<SystemTime>,
        remove: bool,
    ) -> StorageResult<Vec<Leftover>> {
        self.time("Leftovers", self.inner.leftovers(under, before, remove))
            .await
    }

    async fn replay_journals(&self) -> StorageResult<usize> {
        self.inner.replay_journals().await
    }

    async fn journal_writes(&self) {
        self.inner.journal_writes().await
    }

    async fn flush(&self) -> StorageResult<()> {
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::conformance::Fixture;
    use std::sync::Arc;

    /// The wrapper is a driver like any other: the suite the real backends pass, here over
    /// the filesystem.
    async fn make() -> Option<Fixture> {
        crate::metrics::enable();
        let dir = tempfile::tempdir().expect("tempdir");
        let inner = Arc::new(crate::storage::FilesystemDriver::new(dir.path()));
        Some(Fixture {
            driver: Arc::new(super::TimedDriver::new(inner)),
            _guard: Box::new(dir),
        })
    }

    crate::storage::conformance::conformance_suite!(make());

    /// What the wrapped driver answers for itself, rather than what a plain backend would,
    /// comes through: the filesystem's open file (zero-copy pulls), a shared store's
    /// instances.
    #[tokio::test]
    async fn passes_on_what_only_the_wrapped_driver_knows() {
        use crate::storage::{MemoryDriver, StorageDriver, StoragePath};
        crate::metrics::enable();
        let dir = tempfile::tempdir().expect("tempdir");
        let timed =
            super::TimedDriver::new(Arc::new(crate::storage::FilesystemDriver::new(dir.path())));
        let p = StoragePath::new(["a", "data"]).expect("path");
        timed.put_content(&p, b"content").await.expect("put");
        assert!(timed.open_file(&p).await.expect("open").is_some());
        assert!(!timed.shared_by_instances());

        let shared = super::TimedDriver::new(Arc::new(MemoryDriver::default().as_shared()));
        assert!(shared.shared_by_instances());
        assert!(shared.open_file(&p).await.expect("open").is_none());
    }
}
