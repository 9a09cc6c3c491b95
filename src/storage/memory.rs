//! An in-memory driver: files in a sorted map, directories implied by the paths under them
//! as on S3. For fast tests of the layers above storage (it passes the same conformance
//! suite as the real backends) and for trying the registry without a disk.

use super::{
    BlobReader, ChunkStream, FileInfo, FileWriter, Leftover, Staged, StorageDriver, StorageError,
    StoragePath, StorageResult,
};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

type Files = BTreeMap<String, (Bytes, SystemTime)>;

#[derive(Debug, Clone, Default)]
pub struct MemoryDriver {
    files: Arc<Mutex<Files>>,
    /// Says it is shared by several instances (see [`MemoryDriver::as_shared`]).
    shared: bool,
}

impl MemoryDriver {
    pub fn new() -> MemoryDriver {
        MemoryDriver::default()
    }

    /// The same files, through a driver that says several instances share them: registries
    /// over it behave as instances on one bucket do, for tests of how they agree.
    pub fn as_shared(&self) -> MemoryDriver {
        MemoryDriver {
            files: self.files.clone(),
            shared: true,
        }
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, path: &StoragePath, content: Bytes) {
        self.files()
            .insert(path.as_str().to_owned(), (content, SystemTime::now()));
    }
}

/// The keys below `dir` (as `dir/...`) in a sorted map.
fn below<'a>(
    files: &'a Files,
    dir: &'a str,
) -> impl Iterator<Item = (&'a String, &'a (Bytes, SystemTime))> {
    files
        .range(dir.to_owned()..)
        .take_while(move |(k, _)| k.starts_with(dir))
}

#[async_trait]
impl StorageDriver for MemoryDriver {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn location(&self) -> String {
        "memory".to_owned()
    }

    async fn get_content(&self, path: &StoragePath, limit: u64) -> StorageResult<Bytes> {
        let files = self.files();
        let (content, _) = files
            .get(path.as_str())
            .ok_or_else(|| StorageError::NotFound(path.clone()))?;
        if content.len() as u64 > limit {
            return Err(StorageError::TooLarge {
                path: path.clone(),
                limit,
            });
        }
        Ok(content.clone())
    }

    async fn put_content(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()> {
        self.put(path, Bytes::copy_from_slice(content));
        Ok(())
    }

    fn shared_by_instances(&self) -> bool {
        self.shared
    }

    /// A directory's time here is that of its newest file: removing one does not change it.
    fn directory_times_track_entries(&self) -> bool {
        false
    }

    async fn create_new(&self, path: &StoragePath, content: &[u8]) -> StorageResult<bool> {
        let mut files = self.files();
        if files.contains_key(path.as_str()) {
            return Ok(false);
        }
        files.insert(
            path.as_str().to_owned(),
            (Bytes::copy_from_slice(content), SystemTime::now()),
        );
        Ok(true)
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> StorageResult<(BlobReader, u64)> {
        let content = self.get_content(path, u64::MAX).await?;
        let size = content.len() as u64;
        let rest = content.slice(offset.min(size) as usize..);
        Ok((Box::new(std::io::Cursor::new(rest)), size))
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> StorageResult<Box<dyn FileWriter>> {
        let mut buf = BytesMut::new();
        if append {
            if let Some((existing, _)) = self.files().get(path.as_str()) {
                buf.extend_from_slice(existing);
            }
        }
        // Opening creates (or truncates) the file, as on a disk.
        self.put(path, Bytes::copy_from_slice(&buf));
        Ok(Box::new(MemoryWriter {
            driver: self.clone(),
            path: path.clone(),
            buf,
        }))
    }

    async fn stat(&self, path: &StoragePath) -> StorageResult<FileInfo> {
        let files = self.files();
        if let Some((content, modified)) = files.get(path.as_str()) {
            return Ok(FileInfo {
                size: content.len() as u64,
                modified: *modified,
                is_dir: false,
            });
        }
        let dir = format!("{path}/");
        let newest = below(&files, &dir).map(|(_, (_, m))| *m).max();
        match newest {
            Some(modified) => Ok(FileInfo {
                size: 0,
                modified,
                is_dir: true,
            }),
            None => Err(StorageError::NotFound(path.clone())),
        }
    }

    async fn list(&self, path: &StoragePath) -> StorageResult<Vec<String>> {
        let files = self.files();
        let dir = format!("{path}/");
        let mut names: Vec<String> = below(&files, &dir)
            .filter_map(|(k, _)| k[dir.len()..].split('/').next().map(str::to_owned))
            .collect();
        names.dedup();
        if names.is_empty() {
            return Err(StorageError::NotFound(path.clone()));
        }
        Ok(names)
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> StorageResult<()> {
        let mut files = self.files();
        let (content, _) = files
            .remove(from.as_str())
            .ok_or_else(|| StorageError::NotFound(from.clone()))?;
        files.insert(to.as_str().to_owned(), (content, SystemTime::now()));
        Ok(())
    }

    async fn delete(&self, path: &StoragePath) -> StorageResult<()> {
        let mut files = self.files();
        let dir = format!("{path}/");
        let mut doomed: Vec<String> = below(&files, &dir).map(|(k, _)| k.clone()).collect();
        if files.contains_key(path.as_str()) {
            doomed.push(path.as_str().to_owned());
        }
        if doomed.is_empty() {
            return Err(StorageError::NotFound(path.clone()));
        }
        for k in doomed {
            files.remove(&k);
        }
        Ok(())
    }

    async fn check_writable(&self) -> StorageResult<()> {
        Ok(())
    }

    // What a backend without journals, leftovers, local files or presigned URLs does.

    async fn put_small(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()> {
        self.put_content(path, content).await
    }

    async fn put_staged(&self, stages: &[&[(StoragePath, Staged)]]) -> StorageResult<()> {
        super::put_staged_in_turn(self, stages).await
    }

    async fn read_chunks(
        &self,
        path: &StoragePath,
        offset: u64,
        len: u64,
    ) -> StorageResult<ChunkStream> {
        super::chunks_from_reader(self, path, offset, len).await
    }

    async fn open_file(&self, _path: &StoragePath) -> StorageResult<Option<std::fs::File>> {
        Ok(None)
    }

    async fn find_directories_with(
        &self,
        root: &StoragePath,
        marker: &str,
    ) -> StorageResult<Vec<String>> {
        super::walk_for_marker(self, root, marker).await
    }

    async fn redirect_url(
        &self,
        _path: &StoragePath,
        _method: &http::Method,
    ) -> StorageResult<Option<String>> {
        Ok(None)
    }

    async fn use_alone(&self) -> StorageResult<bool> {
        Ok(false)
    }

    async fn use_shared(&self) -> StorageResult<()> {
        Ok(())
    }

    async fn leftovers(
        &self,
        _under: &StoragePath,
        _before: Option<SystemTime>,
        _remove: bool,
    ) -> StorageResult<Vec<Leftover>> {
        Ok(Vec::new())
    }

    async fn replay_journals(&self) -> StorageResult<usize> {
        Ok(0)
    }

    async fn journal_writes(&self) {}

    async fn flush(&self) -> StorageResult<()> {
        Ok(())
    }
}

/// Gathers the bytes and stores them on `close`.
struct MemoryWriter {
    driver: MemoryDriver,
    path: StoragePath,
    buf: BytesMut,
}

#[async_trait]
impl FileWriter for MemoryWriter {
    async fn write(&mut self, data: &[u8]) -> StorageResult<()> {
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.buf.len() as u64
    }

    async fn close(self: Box<Self>) -> StorageResult<u64> {
        let size = self.buf.len() as u64;
        self.driver.put(&self.path, self.buf.freeze());
        Ok(size)
    }

    async fn cancel(self: Box<Self>) -> StorageResult<()> {
        self.driver.files().remove(self.path.as_str());
        Ok(())
    }
}
