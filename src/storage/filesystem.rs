//! The filesystem driver: a directory tree under a root, the same layout `registry:2`'s
//! filesystem driver writes, so an existing data directory is served as it is.
//!
//! Durability: small files are written to a temporary name beside their target, fsynced,
//! renamed over it, and the directory is fsynced; a crash leaves the old file or the new one.
//! Large content goes through [`FsWriter`], which writes 256 KiB at a time from a blocking
//! thread while the next buffer fills, and fsyncs on commit.

use super::{
    BlobReader, FileInfo, FileWriter, StorageDriver, StorageError, StoragePath, StorageResult,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes gathered before each write system call (two such buffers per open writer).
const WRITE_BUFFER: usize = 256 << 10;

#[derive(Debug, Clone)]
pub struct FilesystemDriver {
    root: PathBuf,
}

impl FilesystemDriver {
    pub fn new(root: impl Into<PathBuf>) -> FilesystemDriver {
        FilesystemDriver { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn full(&self, path: &StoragePath) -> PathBuf {
        self.root.join(path.as_str())
    }
}

impl FilesystemDriver {
    /// Temp file beside the target, renamed over it; with `durable`, the file and then its
    /// directory are fsynced so the new content survives a crash once this returns.
    async fn write_small(
        &self,
        path: &StoragePath,
        content: &[u8],
        durable: bool,
    ) -> StorageResult<()> {
        let full = self.full(path);
        let path = path.clone();
        let content = content.to_vec();
        blocking(move || {
            let err = |e| StorageError::io(&path, e);
            create_parent(&full).map_err(err)?;
            let tmp = temp_name(&full);
            let result = (|| {
                let mut f = File::create(&tmp)?;
                f.write_all(&content)?;
                if durable {
                    f.sync_data()?;
                }
                fs::rename(&tmp, &full)?;
                if durable {
                    if let Some(dir) = full.parent() {
                        fsync_dir(dir)?;
                    }
                }
                Ok(())
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result.map_err(err)
        })
        .await
    }
}

fn not_found_or(path: &StoragePath, e: io::Error) -> StorageError {
    if e.kind() == io::ErrorKind::NotFound {
        StorageError::NotFound(path.clone())
    } else {
        StorageError::io(path, e)
    }
}

async fn blocking<T, F>(f: F) -> StorageResult<T>
where
    F: FnOnce() -> StorageResult<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(StorageError::Io {
            path: String::new(),
            source: io::Error::other(format!("storage task failed: {e}")),
        }),
    }
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn create_parent(full: &Path) -> io::Result<()> {
    match full.parent() {
        Some(p) => fs::create_dir_all(p),
        None => Ok(()),
    }
}

fn temp_name(full: &Path) -> PathBuf {
    let name = full.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    full.with_file_name(format!(".{name}.tmp-{}", uuid::Uuid::new_v4().simple()))
}

#[async_trait]
impl StorageDriver for FilesystemDriver {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    async fn get_content(&self, path: &StoragePath, limit: u64) -> StorageResult<Bytes> {
        let full = self.full(path);
        let path = path.clone();
        blocking(move || {
            let mut f = File::open(&full).map_err(|e| not_found_or(&path, e))?;
            let meta = f.metadata().map_err(|e| StorageError::io(&path, e))?;
            if meta.is_dir() {
                return Err(StorageError::NotFound(path));
            }
            if meta.len() > limit {
                return Err(StorageError::TooLarge { path, limit });
            }
            let mut buf = Vec::with_capacity(meta.len() as usize);
            // `take` guards against a file that grows between stat and read.
            (&mut f)
                .take(limit + 1)
                .read_to_end(&mut buf)
                .map_err(|e| StorageError::io(&path, e))?;
            if buf.len() as u64 > limit {
                return Err(StorageError::TooLarge { path, limit });
            }
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn put_content(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()> {
        self.write_small(path, content, true).await
    }

    async fn put_small(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()> {
        self.write_small(path, content, false).await
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> StorageResult<(BlobReader, u64)> {
        let full = self.full(path);
        let path2 = path.clone();
        let (file, size) = blocking(move || {
            let mut f = File::open(&full).map_err(|e| not_found_or(&path2, e))?;
            let meta = f.metadata().map_err(|e| StorageError::io(&path2, e))?;
            if meta.is_dir() {
                return Err(StorageError::NotFound(path2));
            }
            if offset > 0 {
                f.seek(SeekFrom::Start(offset))
                    .map_err(|e| StorageError::io(&path2, e))?;
            }
            Ok((f, meta.len()))
        })
        .await?;
        Ok((Box::new(tokio::fs::File::from_std(file)), size))
    }

    async fn read_chunks(
        &self,
        path: &StoragePath,
        offset: u64,
        len: u64,
    ) -> StorageResult<super::ChunkStream> {
        let full = self.full(path);
        let path2 = path.clone();
        let file = blocking(move || {
            let f = File::open(&full).map_err(|e| not_found_or(&path2, e))?;
            let meta = f.metadata().map_err(|e| StorageError::io(&path2, e))?;
            if meta.is_dir() {
                return Err(StorageError::NotFound(path2));
            }
            Ok(f)
        })
        .await?;
        Ok(Box::pin(FileChunks {
            file: std::sync::Arc::new(file),
            offset,
            remaining: len,
            pending: None,
        }))
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> StorageResult<Box<dyn FileWriter>> {
        let full = self.full(path);
        let path = path.clone();
        let p2 = path.clone();
        let f2 = full.clone();
        let (file, size) = blocking(move || {
            let err = |e| StorageError::io(&p2, e);
            create_parent(&f2).map_err(err)?;
            let file = OpenOptions::new()
                .create(true)
                .write(true)
                .append(append)
                .truncate(!append)
                .open(&f2)
                .map_err(err)?;
            let size = file.metadata().map_err(err)?.len();
            Ok((file, size))
        })
        .await?;
        Ok(Box::new(FsWriter::new(path, full, file, size)))
    }

    async fn stat(&self, path: &StoragePath) -> StorageResult<FileInfo> {
        let full = self.full(path);
        let path = path.clone();
        blocking(move || {
            let meta = fs::metadata(&full).map_err(|e| not_found_or(&path, e))?;
            Ok(FileInfo {
                size: meta.len(),
                modified: meta.modified().map_err(|e| StorageError::io(&path, e))?,
                is_dir: meta.is_dir(),
            })
        })
        .await
    }

    async fn list(&self, path: &StoragePath) -> StorageResult<Vec<String>> {
        let full = self.full(path);
        let path = path.clone();
        blocking(move || {
            let rd = fs::read_dir(&full).map_err(|e| not_found_or(&path, e))?;
            let mut out = Vec::new();
            for entry in rd {
                let entry = entry.map_err(|e| StorageError::io(&path, e))?;
                // Names that are not UTF-8 cannot have been written by a registry.
                if let Ok(name) = entry.file_name().into_string() {
                    if !name.starts_with(".") {
                        out.push(name);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn find_directories_with(
        &self,
        root: &StoragePath,
        marker: &str,
    ) -> StorageResult<Vec<String>> {
        let full = self.full(root);
        let root = root.clone();
        let marker = marker.to_owned();
        blocking(move || {
            let mut out = Vec::new();
            let mut stack: Vec<(PathBuf, String)> = vec![(full, String::new())];
            while let Some((dir, name)) = stack.pop() {
                let rd = match fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(StorageError::io(&root, e)),
                };
                let mut has_marker = false;
                for entry in rd {
                    let entry = entry.map_err(|e| StorageError::io(&root, e))?;
                    let Ok(child) = entry.file_name().into_string() else {
                        continue;
                    };
                    if child == marker {
                        has_marker = true;
                    }
                    if child.starts_with('_') || child.starts_with('.') {
                        continue;
                    }
                    // d_type spares a stat per entry on most filesystems.
                    let is_dir = match entry.file_type() {
                        Ok(t) if t.is_symlink() => entry.path().is_dir(),
                        Ok(t) => t.is_dir(),
                        Err(_) => false,
                    };
                    if is_dir {
                        let child_name = if name.is_empty() {
                            child.clone()
                        } else {
                            format!("{name}/{child}")
                        };
                        stack.push((entry.path(), child_name));
                    }
                }
                if has_marker && !name.is_empty() {
                    out.push(name);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> StorageResult<()> {
        let src = self.full(from);
        let dst = self.full(to);
        let from = from.clone();
        let to = to.clone();
        blocking(move || {
            create_parent(&dst).map_err(|e| StorageError::io(&to, e))?;
            fs::rename(&src, &dst).map_err(|e| not_found_or(&from, e))?;
            if let Some(dir) = dst.parent() {
                fsync_dir(dir).map_err(|e| StorageError::io(&to, e))?;
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, path: &StoragePath) -> StorageResult<()> {
        let full = self.full(path);
        let path = path.clone();
        blocking(move || {
            let meta = fs::symlink_metadata(&full).map_err(|e| not_found_or(&path, e))?;
            let r = if meta.is_dir() {
                fs::remove_dir_all(&full)
            } else {
                fs::remove_file(&full)
            };
            r.map_err(|e| not_found_or(&path, e))
        })
        .await
    }

    async fn check_writable(&self) -> StorageResult<()> {
        let root = self.root.clone();
        blocking(move || {
            let shown = root.display().to_string();
            fs::create_dir_all(&root).map_err(|e| StorageError::io(&shown, e))?;
            let probe = root.join(format!(".write-check-{}", uuid::Uuid::new_v4().simple()));
            let r = File::create(&probe)
                .and_then(|mut f| f.write_all(b"ok"))
                .and_then(|_| fs::remove_file(&probe));
            r.map_err(|e| StorageError::io(&shown, e))
        })
        .await
    }
}

/// Reads a file in [`super::READ_CHUNK`] pieces with `pread`, one read always in flight ahead of
/// the network. No thread waits on a slow client: each read is its own short blocking task.
struct FileChunks {
    file: std::sync::Arc<File>,
    offset: u64,
    remaining: u64,
    pending: Option<tokio::task::JoinHandle<io::Result<Bytes>>>,
}

impl FileChunks {
    fn start_read(&mut self) {
        if self.remaining == 0 || self.pending.is_some() {
            return;
        }
        let n = self.remaining.min(super::READ_CHUNK as u64) as usize;
        let file = self.file.clone();
        let offset = self.offset;
        self.offset += n as u64;
        self.remaining -= n as u64;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut buf = bytes::BytesMut::zeroed(n);
            let mut done = 0;
            while done < n {
                let k = file.read_at(&mut buf[done..], offset + done as u64)?;
                if k == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob shorter than its recorded size",
                    ));
                }
                done += k;
            }
            Ok(buf.freeze())
        }));
    }
}

impl futures_core::Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        this.start_read();
        let Some(handle) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        match std::pin::Pin::new(handle).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(joined) => {
                this.pending = None;
                let result = joined
                    .unwrap_or_else(|e| Err(io::Error::other(format!("read task failed: {e}"))));
                if result.is_ok() {
                    // Read ahead while this chunk goes out.
                    this.start_read();
                } else {
                    this.remaining = 0;
                }
                Poll::Ready(Some(result))
            }
        }
    }
}

/// A buffer being written by a blocking thread; it hands back the file and the buffer.
type PendingWrite = tokio::task::JoinHandle<io::Result<(File, Vec<u8>)>>;

/// Buffered, append-only writer over a local file. Two buffers take turns: while one is
/// being written by a blocking thread, the request keeps filling the other, so receiving,
/// hashing and writing overlap instead of taking turns.
pub struct FsWriter {
    path: StoragePath,
    full: PathBuf,
    /// The file, when no write is in flight.
    file: Option<File>,
    /// The write in flight: gives back the file and its (emptied) buffer.
    pending: Option<PendingWrite>,
    buf: Vec<u8>,
    spare: Option<Vec<u8>>,
    size: u64,
}

impl FsWriter {
    fn new(path: StoragePath, full: PathBuf, file: File, size: u64) -> FsWriter {
        FsWriter {
            path,
            full,
            file: Some(file),
            pending: None,
            buf: Vec::with_capacity(WRITE_BUFFER),
            spare: None,
            size,
        }
    }

    /// Waits for the write in flight, if any, and takes the file back.
    async fn settle(&mut self) -> StorageResult<()> {
        if let Some(h) = self.pending.take() {
            let (file, buf) = h
                .await
                .map_err(|e| {
                    StorageError::io(
                        &self.path,
                        io::Error::other(format!("write task failed: {e}")),
                    )
                })?
                .map_err(|e| StorageError::io(&self.path, e))?;
            self.file = Some(file);
            self.spare = Some(buf);
        }
        Ok(())
    }

    /// Hands the filled buffer to a blocking thread and carries on with the other one.
    async fn start_write(&mut self) -> StorageResult<()> {
        self.settle().await?;
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(mut file) = self.file.take() else {
            return Err(StorageError::io(
                &self.path,
                io::Error::other("writer already closed"),
            ));
        };
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| Vec::with_capacity(WRITE_BUFFER));
        let mut buf = std::mem::replace(&mut self.buf, next);
        self.pending = Some(tokio::task::spawn_blocking(move || {
            file.write_all(&buf)?;
            buf.clear();
            Ok((file, buf))
        }));
        Ok(())
    }

    /// Everything written so far is in the file.
    async fn drain(&mut self) -> StorageResult<()> {
        self.start_write().await?;
        self.settle().await
    }
}

#[async_trait]
impl FileWriter for FsWriter {
    async fn write(&mut self, mut data: &[u8]) -> StorageResult<()> {
        while !data.is_empty() {
            let room = WRITE_BUFFER - self.buf.len();
            let n = room.min(data.len());
            self.buf.extend_from_slice(&data[..n]);
            self.size += n as u64;
            data = &data[n..];
            if self.buf.len() >= WRITE_BUFFER {
                self.start_write().await?;
            }
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(mut self: Box<Self>) -> StorageResult<u64> {
        self.drain().await?;
        let size = self.size;
        let path = self.path.clone();
        if let Some(file) = self.file.take() {
            blocking(move || file.sync_data().map_err(|e| StorageError::io(&path, e))).await?;
        }
        Ok(size)
    }

    async fn close(mut self: Box<Self>) -> StorageResult<u64> {
        self.drain().await?;
        Ok(self.size)
    }

    async fn cancel(mut self: Box<Self>) -> StorageResult<()> {
        let _ = self.settle().await;
        self.file = None;
        let full = self.full.clone();
        let path = self.path.clone();
        blocking(move || match fs::remove_file(&full) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(&path, e)),
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn round_trips_content_and_streams() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = FilesystemDriver::new(dir.path());
        let p = StoragePath::new(["a", "b", "link"]).expect("path");
        d.put_content(&p, b"sha256:x").await.expect("put");
        assert_eq!(&d.get_content(&p, 100).await.expect("get")[..], b"sha256:x");
        assert!(matches!(
            d.get_content(&p, 3).await,
            Err(StorageError::TooLarge { .. })
        ));

        let w = StoragePath::new(["up", "data"]).expect("path");
        let mut wr = d.writer(&w, false).await.expect("writer");
        wr.write(&vec![7u8; WRITE_BUFFER + 10])
            .await
            .expect("write");
        assert_eq!(wr.close().await.expect("close"), WRITE_BUFFER as u64 + 10);
        let mut wr = d.writer(&w, true).await.expect("append");
        assert_eq!(wr.size(), WRITE_BUFFER as u64 + 10);
        wr.write(b"xyz").await.expect("write");
        wr.commit().await.expect("commit");
        let (mut r, size) = d
            .reader(&w, WRITE_BUFFER as u64 + 10)
            .await
            .expect("reader");
        assert_eq!(size, WRITE_BUFFER as u64 + 13);
        let mut s = String::new();
        r.read_to_string(&mut s).await.expect("read");
        assert_eq!(s, "xyz");

        let mut names = d
            .list(&StoragePath::new(["a"]).expect("p"))
            .await
            .expect("list");
        names.sort();
        assert_eq!(names, vec!["b"]);
        d.delete(&StoragePath::new(["a"]).expect("p"))
            .await
            .expect("delete");
        assert!(d.stat(&p).await.expect_err("gone").is_not_found());
    }
}
