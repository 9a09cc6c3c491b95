//! The S3 driver: objects in a bucket (AWS, MinIO, Ceph RGW, R2, ...) under the keys
//! registry:2's s3 driver uses, `<rootdirectory>/docker/registry/v2/...`, so a bucket either
//! of them wrote is served by the other as it is.
//!
//! S3 has no directories: a "directory" is the keys under a prefix, it exists while any
//! does, and a rename is a copy and a delete. A file is the object at its key, or, while a
//! [`writer`] has it open across requests, the parts of the unfinished multipart upload that
//! the object `<key>.~multipart` names ([`Content`], [`OpenUpload`]); readers that need
//! bytes complete such an upload first.
//!
//! Only an upload named that way is ever a file's content. Other unfinished uploads are
//! never taken for one: a server-side copy into place (a blob past
//! `multipartcopythresholdsize`, copied part by part at its final key) that a crash cut
//! short leaves an upload at the blob's key that no reader sees, which
//! [`StorageDriver::leftovers`] aborts; and nothing needs ListMultipartUploads to find a
//! file, which some S3-compatible stores (s3s-fs) do not have.
//!
//! Requests go through [`client`], which signs them with `object_store`'s SigV4 code and
//! credential chain and retries what can be retried; a bucket that cannot be reached becomes
//! [`StorageError::Unavailable`], which the API answers with 503.

mod client;
pub mod credentials;
#[cfg(test)]
pub(crate) mod moto;
mod options;
mod writer;

pub use options::S3Options;

use super::{
    BlobReader, ChunkStream, FileInfo, FileWriter, Leftover, Staged, StorageDriver, StorageError,
    StoragePath, StorageResult,
};
use async_trait::async_trait;
use bytes::Bytes;
use client::{Body, MultipartInfo, ObjectInfo, S3Client, S3Error, S3Result};
use futures_util::{StreamExt, TryStreamExt};
use options::{MAX_PART, MIN_PART};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Times a read that fails mid-body is taken up again where it stopped.
const READ_RESUMES: u32 = 3;
/// How long a redirect URL stays valid: registry:2's 20 minutes, long enough for a client
/// to start a large layer, short enough that a leaked URL soon stops working.
const REDIRECT_EXPIRY: std::time::Duration = std::time::Duration::from_secs(20 * 60);

/// What follows a file's key in the key of the object naming the upload that holds the file
/// while a writer left it open between requests: `<key>.~multipart`, beside the file (a key
/// below it, `<key>/...`, is refused by stores that keep objects as files, s3s-fs and
/// MinIO, while an object is at the key). Listed as the file; no registry name has a `~`.
const OPEN_UPLOAD: &str = ".~multipart";

/// What `<key>.~multipart` holds: the upload holding a file's content and its parts, as the
/// writer that last closed it left them. Parts a writer uploaded but did not record (it died
/// mid-request) are not the file's: the next writer replaces them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct OpenUpload {
    upload_id: String,
    /// (number, ETag, size), in order.
    parts: Vec<(u32, String, u64)>,
}

impl OpenUpload {
    fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.2).sum()
    }
}

/// What holds a file's bytes.
enum Content {
    Object(ObjectInfo),
    /// An upload left open by a writer; the content is its parts, in order.
    Multipart {
        upload: OpenUpload,
    },
}

#[derive(Debug)]
struct Inner {
    client: S3Client,
    options: S3Options,
    /// The root directory as a key prefix, without slashes at either end.
    prefix: String,
    location: String,
    in_use: KeysInUse,
}

/// Keys this process's writers and copies are working on: the uploads at them are theirs,
/// never leftovers, whatever their age and whatever else is at the key.
#[derive(Debug, Default, Clone)]
struct KeysInUse(Arc<std::sync::Mutex<HashMap<String, usize>>>);

impl KeysInUse {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hold(&self, key: &str) -> KeyHeld {
        *self.map().entry(key.to_owned()).or_default() += 1;
        KeyHeld {
            keys: self.clone(),
            key: key.to_owned(),
        }
    }

    fn holds(&self, key: &str) -> bool {
        self.map().contains_key(key)
    }
}

/// A key in use until dropped.
struct KeyHeld {
    keys: KeysInUse,
    key: String,
}

impl Drop for KeyHeld {
    fn drop(&mut self) {
        let mut map = self.keys.map();
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The S3 storage driver.
#[derive(Debug, Clone)]
pub struct S3Driver {
    inner: Arc<Inner>,
}

impl S3Driver {
    /// Checks the options and sets up the client; no request is made until the first use.
    pub fn new(options: S3Options) -> Result<S3Driver, String> {
        options.validate()?;
        let client = S3Client::new(&options)?;
        let prefix = options.key_prefix();
        let location = format!(
            "s3://{}/{prefix} at {}",
            options.bucket,
            options.endpoint_url()
        );
        Ok(S3Driver {
            inner: Arc::new(Inner {
                client,
                options,
                prefix,
                location,
                in_use: KeysInUse::default(),
            }),
        })
    }

    pub fn options(&self) -> &S3Options {
        &self.inner.options
    }

    /// Where the credentials come from.
    pub fn credentials(&self) -> &credentials::CredentialSource {
        &self.inner.client.source
    }

    #[cfg(test)]
    pub(crate) fn set_retry_budget(&mut self, attempts: u32, budget: std::time::Duration) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.client.retry.attempts = attempts;
            inner.client.retry.budget = budget;
        }
    }
}

impl Inner {
    fn key(&self, path: &StoragePath) -> String {
        if self.prefix.is_empty() {
            path.as_str().to_owned()
        } else {
            format!("{}/{}", self.prefix, path)
        }
    }

    /// The path whose key this is; `None` for a key outside the root or not a valid path.
    fn path_of(&self, key: &str) -> Option<StoragePath> {
        let rel = if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(&self.prefix)?.strip_prefix('/')?
        };
        StoragePath::new([rel]).ok()
    }

    fn error(&self, path: &StoragePath, e: S3Error) -> StorageError {
        match e {
            S3Error::NotFound => StorageError::NotFound(path.clone()),
            S3Error::Unavailable(reason) => StorageError::Unavailable {
                backend: self.location.clone(),
                reason,
            },
            other => StorageError::Io {
                path: format!("{} ({})", path, self.location),
                source: std::io::Error::other(other.to_string()),
            },
        }
    }

    /// The key of the object naming the open upload that holds the file at `key`.
    fn open_upload_key(key: &str) -> String {
        format!("{key}{OPEN_UPLOAD}")
    }

    /// The open upload holding the file at `key`, if a writer left one, and when.
    async fn open_upload(
        &self,
        key: &str,
    ) -> S3Result<Option<(OpenUpload, std::time::SystemTime)>> {
        let resp = match self
            .client
            .get(&Self::open_upload_key(key), 0, None, None)
            .await
        {
            Ok(resp) => resp,
            Err(S3Error::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let modified = ObjectInfo::from_headers(resp.headers()).modified;
        let text = client::read_limited(resp, 4 << 20)
            .await
            .map_err(S3Error::Unavailable)?;
        let upload: OpenUpload = serde_json::from_slice(&text)
            .map_err(|e| S3Error::Invalid(format!("{}: {e}", Self::open_upload_key(key))))?;
        Ok(Some((upload, modified)))
    }

    /// Records `upload` as holding the file at `key` (see [`OpenUpload`]).
    async fn save_open_upload(&self, key: &str, upload: &OpenUpload) -> S3Result<()> {
        let text = serde_json::to_vec(upload)
            .map_err(|e| S3Error::Invalid(format!("open upload of {key}: {e}")))?;
        self.client
            .put(&Self::open_upload_key(key), Body::Bytes(Bytes::from(text)))
            .await
    }

    /// Where a file's content is, if it exists: the object wins over any upload.
    async fn content(&self, key: &str) -> S3Result<Option<Content>> {
        if let Some(info) = self.client.head(key).await? {
            return Ok(Some(Content::Object(info)));
        }
        Ok(self
            .open_upload(key)
            .await?
            .map(|(upload, _)| Content::Multipart { upload }))
    }

    /// The object holding a file's content, completing the file's open upload if that is
    /// where the content is.
    async fn materialize(&self, key: &str) -> S3Result<Option<ObjectInfo>> {
        match self.content(key).await? {
            None => Ok(None),
            Some(Content::Object(info)) => Ok(Some(info)),
            Some(Content::Multipart { upload }) => {
                let numbered: Vec<(u32, String)> =
                    upload.parts.iter().map(|p| (p.0, p.1.clone())).collect();
                if numbered.is_empty() {
                    // An upload without parts is an empty file; S3 cannot complete it.
                    self.client.put(key, Body::Empty).await?;
                    self.client.abort_multipart(key, &upload.upload_id).await?;
                } else {
                    self.client
                        .complete_multipart(key, &upload.upload_id, &numbered)
                        .await?;
                }
                // The object is the content now (it wins over the record either way).
                self.client.delete(&Self::open_upload_key(key)).await?;
                self.client.head(key).await
            }
        }
    }

    /// Copies object `from` (`size` bytes) into the upload `id` at `to`, as parts 1.. of at
    /// least [`MIN_PART`] each (the last one too: new parts may follow), running up to
    /// `multipartcopymaxconcurrency` copies at once.
    async fn copy_parts(
        &self,
        from: &str,
        to: &str,
        id: &str,
        size: u64,
    ) -> S3Result<Vec<(u32, String, u64)>> {
        let chunk = self.options.multipartcopychunksize.min(MAX_PART - MIN_PART);
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let mut at = 0;
        while at < size {
            let end = (at + chunk).min(size);
            ranges.push((at, end - 1));
            at = end;
        }
        if ranges.len() > 1 {
            if let Some(&(start, end)) = ranges.last() {
                if end + 1 - start < MIN_PART {
                    ranges.pop();
                    if let Some(prev) = ranges.last_mut() {
                        prev.1 = end;
                    }
                }
            }
        }
        let mut parts: Vec<(u32, String, u64)> = futures_util::stream::iter(ranges)
            .enumerate()
            .map(|(i, range)| async move {
                let n = i as u32 + 1;
                self.client
                    .upload_part_copy(to, id, n, from, range)
                    .await
                    .map(|etag| (n, etag, range.1 + 1 - range.0))
            })
            .buffer_unordered(self.options.multipartcopymaxconcurrency)
            .try_collect()
            .await?;
        parts.sort_by_key(|(n, _, _)| *n);
        Ok(parts)
    }

    /// Server-side copy of an object, part by part past `multipartcopythresholdsize`. The
    /// upload a part-by-part copy makes at `to` is named by no `.~multipart` record, so no
    /// reader takes it for the file while it is incomplete, and one a crash leaves is a
    /// leftover.
    async fn copy(&self, from: &str, to: &str, size: u64) -> S3Result<()> {
        if size <= self.options.multipartcopythresholdsize {
            return self.client.copy(from, to).await;
        }
        let _held = self.in_use.hold(to);
        let id = self.client.create_multipart(to).await?;
        let result = async {
            let parts: Vec<(u32, String)> = self
                .copy_parts(from, to, &id, size)
                .await?
                .into_iter()
                .map(|(n, etag, _)| (n, etag))
                .collect();
            self.client.complete_multipart(to, &id, &parts).await
        }
        .await;
        if result.is_err() {
            let _ = self.client.abort_multipart(to, &id).await;
        }
        result
    }

    /// Every key under `prefix`, page by page, to `each`.
    async fn for_each_page<F>(&self, prefix: &str, mut each: F) -> S3Result<()>
    where
        F: FnMut(client::ListPage) -> S3Result<()>,
    {
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_page(prefix, false, token.as_deref(), None)
                .await?;
            let next = match (page.is_truncated, &page.next_continuation_token) {
                (true, Some(t)) => Some(t.clone()),
                _ => None,
            };
            each(page)?;
            match next {
                Some(t) => token = Some(t),
                None => return Ok(()),
            }
        }
    }

    /// Opens a read of `len` bytes (or to the end) at `offset`: the stream and the file's size.
    async fn open_read(
        self: &Arc<Self>,
        path: &StoragePath,
        offset: u64,
        len: Option<u64>,
    ) -> StorageResult<(ChunkStream, u64)> {
        let key = self.key(path);
        let err = |e| self.error(path, e);
        let mut completed = false;
        loop {
            if len == Some(0) {
                let info = self.materialize(&key).await.map_err(err)?;
                let Some(info) = info else {
                    return Err(StorageError::NotFound(path.clone()));
                };
                return Ok((Box::pin(futures_util::stream::empty()), info.size));
            }
            // From the start, the object is asked for whole and cut at `len`: reading from
            // 0 is nearly always reading a whole blob, and a Range makes some stores (moto)
            // copy the object to slice it. A shorter read drops the rest unread.
            let range = if offset == 0 { None } else { len };
            match self.client.get(&key, offset, range, None).await {
                Ok(resp) => {
                    let size = total_size(resp.headers(), offset);
                    let etag = resp
                        .headers()
                        .get(http::header::ETAG)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let end = len.map_or(size, |n| (offset + n).min(size));
                    let body = ResumingBody {
                        inner: self.clone(),
                        key,
                        etag,
                        pos: offset,
                        end,
                        stream: Some(resp.into_body().bytes_stream()),
                        resumes: READ_RESUMES,
                    };
                    return Ok((body.into_stream(), size));
                }
                Err(S3Error::NotFound) if !completed => {
                    // Perhaps the content is still in an open upload.
                    completed = true;
                    if self.materialize(&key).await.map_err(err)?.is_none() {
                        return Err(StorageError::NotFound(path.clone()));
                    }
                }
                Err(S3Error::Rejected { status, .. })
                    if status == http::StatusCode::RANGE_NOT_SATISFIABLE =>
                {
                    // At or past the end: nothing to read.
                    let info = self.client.head(&key).await.map_err(err)?;
                    let Some(info) = info else {
                        return Err(StorageError::NotFound(path.clone()));
                    };
                    return Ok((Box::pin(futures_util::stream::empty()), info.size));
                }
                Err(e) => return Err(err(e)),
            }
        }
    }
}

/// The object's full size from a GET answer (`Content-Range: bytes a-b/total`, or the
/// length of a whole-object answer).
fn total_size(h: &http::HeaderMap, offset: u64) -> u64 {
    let text = |n| h.get(n).and_then(|v: &http::HeaderValue| v.to_str().ok());
    if let Some(total) = text(http::header::CONTENT_RANGE)
        .and_then(|r| r.rsplit('/').next())
        .and_then(|t| t.parse().ok())
    {
        return total;
    }
    text(http::header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |n| n + offset)
}

/// A GET's body that, when the connection drops mid-way, is taken up where it stopped
/// (the same object: `If-Match` its ETag), a few times.
struct ResumingBody {
    inner: Arc<Inner>,
    key: String,
    etag: Option<String>,
    pos: u64,
    end: u64,
    stream: Option<
        futures_util::stream::BoxStream<'static, Result<Bytes, object_store::client::HttpError>>,
    >,
    resumes: u32,
}

impl ResumingBody {
    fn into_stream(self) -> ChunkStream {
        Box::pin(futures_util::stream::unfold(self, |mut s| async move {
            loop {
                if s.pos >= s.end {
                    return None;
                }
                let Some(stream) = s.stream.as_mut() else {
                    let resp = s
                        .inner
                        .client
                        .get(&s.key, s.pos, Some(s.end - s.pos), s.etag.as_deref())
                        .await;
                    match resp {
                        Ok(resp) => s.stream = Some(resp.into_body().bytes_stream()),
                        Err(e) => {
                            let e = std::io::Error::other(format!("{}: {e}", s.key));
                            s.end = s.pos;
                            return Some((Err(e), s));
                        }
                    }
                    continue;
                };
                let failure = match stream.next().await {
                    Some(Ok(b)) => {
                        // A server sending more than asked for is cut at what was asked.
                        let b = if s.pos + b.len() as u64 > s.end {
                            b.slice(..(s.end - s.pos) as usize)
                        } else {
                            b
                        };
                        s.pos += b.len() as u64;
                        return Some((Ok(b), s));
                    }
                    Some(Err(e)) => e.to_string(),
                    None => "the answer ended early".to_owned(),
                };
                s.stream = None;
                if s.resumes == 0 {
                    let e = std::io::Error::other(format!("{}: {failure}", s.key));
                    s.end = s.pos;
                    return Some((Err(e), s));
                }
                s.resumes -= 1;
                tracing::debug!(key = %s.key, at = s.pos, "S3 read interrupted ({failure}); resuming");
            }
        }))
    }
}

#[async_trait]
impl StorageDriver for S3Driver {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn location(&self) -> String {
        self.inner.location.clone()
    }

    async fn get_content(&self, path: &StoragePath, limit: u64) -> StorageResult<Bytes> {
        let (mut stream, size) = self.inner.open_read(path, 0, None).await?;
        if size > limit {
            return Err(StorageError::TooLarge {
                path: path.clone(),
                limit,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| StorageError::io(path, e))?;
            if (out.len() + chunk.len()) as u64 > limit {
                return Err(StorageError::TooLarge {
                    path: path.clone(),
                    limit,
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    async fn put_content(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()> {
        let key = self.inner.key(path);
        self.inner
            .client
            .put(&key, Body::Bytes(Bytes::copy_from_slice(content)))
            .await
            .map_err(|e| self.inner.error(path, e))
    }

    async fn create_new(&self, path: &StoragePath, content: &[u8]) -> StorageResult<bool> {
        let key = self.inner.key(path);
        self.inner
            .client
            .put_if_absent(&key, Body::Bytes(Bytes::copy_from_slice(content)))
            .await
            .map_err(|e| self.inner.error(path, e))
    }

    fn shared_by_instances(&self) -> bool {
        true
    }

    /// Keys have no directories, so no time that changes with their entries.
    fn directory_times_track_entries(&self) -> bool {
        false
    }

    async fn put_staged(&self, stages: &[&[(StoragePath, Staged)]]) -> StorageResult<()> {
        // S3 has every write durable once answered: a stage's files go up together, and the
        // next stage starts when all of them are in.
        for stage in stages {
            futures_util::future::try_join_all(stage.iter().map(|(path, what)| async move {
                match what {
                    Staged::Content(c) => {
                        let key = self.inner.key(path);
                        self.inner
                            .client
                            .put(&key, Body::Bytes(c.clone()))
                            .await
                            .map_err(|e| self.inner.error(path, e))
                    }
                    Staged::MovedFrom(from) => self.rename(from, path).await,
                }
            }))
            .await?;
        }
        Ok(())
    }

    async fn redirect_url(
        &self,
        path: &StoragePath,
        method: &http::Method,
    ) -> StorageResult<Option<String>> {
        let key = self.inner.key(path);
        self.inner
            .client
            .presign(&key, method.clone(), REDIRECT_EXPIRY)
            .await
            .map(Some)
            .map_err(|e| self.inner.error(path, e))
    }

    async fn reader(&self, path: &StoragePath, offset: u64) -> StorageResult<(BlobReader, u64)> {
        let (stream, size) = self.inner.open_read(path, offset, None).await?;
        Ok((Box::new(tokio_util::io::StreamReader::new(stream)), size))
    }

    async fn read_chunks(
        &self,
        path: &StoragePath,
        offset: u64,
        len: u64,
    ) -> StorageResult<ChunkStream> {
        let (stream, _) = self.inner.open_read(path, offset, Some(len)).await?;
        Ok(stream)
    }

    async fn writer(&self, path: &StoragePath, append: bool) -> StorageResult<Box<dyn FileWriter>> {
        Ok(Box::new(
            writer::S3Writer::open(self.inner.clone(), path, append).await?,
        ))
    }

    /// A multipart upload at the file's key, named by no `.~multipart` record (so no reader
    /// takes it for the file), completed by `close`: the object appears whole, with no copy.
    async fn whole_writer(&self, path: &StoragePath) -> StorageResult<Option<Box<dyn FileWriter>>> {
        Ok(Some(Box::new(writer::S3Writer::whole(
            self.inner.clone(),
            path,
        ))))
    }

    async fn stat(&self, path: &StoragePath) -> StorageResult<FileInfo> {
        let inner = &self.inner;
        let key = inner.key(path);
        let err = |e| inner.error(path, e);
        if let Some(info) = inner.client.head(&key).await.map_err(err)? {
            return Ok(FileInfo {
                size: info.size,
                modified: info.modified,
                is_dir: false,
            });
        }
        let dir = format!("{key}/");
        let (listed, upload) = tokio::join!(
            inner.client.list_page(&dir, false, None, Some(1)),
            inner.open_upload(&key)
        );
        if let Some((upload, modified)) = upload.map_err(err)? {
            return Ok(FileInfo {
                size: upload.size(),
                modified,
                is_dir: false,
            });
        }
        match listed.map_err(err)?.contents.first() {
            Some(o) => Ok(FileInfo {
                size: 0,
                modified: client::parse_time(&o.last_modified),
                is_dir: true,
            }),
            None => Err(StorageError::NotFound(path.clone())),
        }
    }

    async fn list(&self, path: &StoragePath) -> StorageResult<Vec<String>> {
        let inner = &self.inner;
        let dir = format!("{}/", inner.key(path));
        let err = |e| inner.error(path, e);
        let objects = async {
            let mut names = BTreeSet::new();
            let mut token: Option<String> = None;
            loop {
                let page = inner
                    .client
                    .list_page(&dir, true, token.as_deref(), None)
                    .await?;
                for o in &page.contents {
                    let name = &o.key[dir.len().min(o.key.len())..];
                    // A file held by an open upload is listed through its record.
                    let name = name.strip_suffix(OPEN_UPLOAD).unwrap_or(name);
                    if !name.is_empty() && !name.contains('/') {
                        names.insert(name.to_owned());
                    }
                }
                for p in &page.common_prefixes {
                    let name = p.prefix[dir.len().min(p.prefix.len())..].trim_end_matches('/');
                    if !name.is_empty() {
                        names.insert(name.to_owned());
                    }
                }
                match (page.is_truncated, page.next_continuation_token) {
                    (true, Some(t)) => token = Some(t),
                    _ => return Ok::<_, S3Error>(names),
                }
            }
        };
        // Uploads themselves are not files (see the module doc): a file held by an open
        // upload is listed through its `.~multipart` record.
        let names = objects.await.map_err(err)?;
        if names.is_empty() {
            return Err(StorageError::NotFound(path.clone()));
        }
        Ok(names.into_iter().collect())
    }

    async fn find_directories_with(
        &self,
        root: &StoragePath,
        marker: &str,
    ) -> StorageResult<Vec<String>> {
        // One flat listing of every key below the root (1000 per request) instead of a
        // request per directory: each key names the directories above it. Files still in
        // an open upload count too (an upload session holding only its data), through
        // their `.~multipart` records.
        let inner = &self.inner;
        let dir = format!("{}/", inner.key(root));
        let mut found = BTreeSet::new();
        let mut note = |key: &str| {
            let rel = &key[dir.len().min(key.len())..];
            let parts: Vec<&str> = rel.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                if i > 0 && *part == marker {
                    found.insert(parts[..i].join("/"));
                }
                if part.starts_with('_') || part.starts_with('.') {
                    break;
                }
            }
        };
        inner
            .for_each_page(&dir, |page| {
                page.contents.iter().for_each(|o| note(&o.key));
                Ok(())
            })
            .await
            .map_err(|e| inner.error(root, e))?;
        Ok(found.into_iter().collect())
    }

    async fn rename(&self, from: &StoragePath, to: &StoragePath) -> StorageResult<()> {
        let inner = &self.inner;
        let (src, dst) = (inner.key(from), inner.key(to));
        let info = inner
            .materialize(&src)
            .await
            .map_err(|e| inner.error(from, e))?
            .ok_or_else(|| StorageError::NotFound(from.clone()))?;
        inner
            .copy(&src, &dst, info.size)
            .await
            .map_err(|e| inner.error(to, e))?;
        inner
            .client
            .delete(&src)
            .await
            .map_err(|e| inner.error(from, e))
    }

    async fn delete(&self, path: &StoragePath) -> StorageResult<()> {
        let inner = &self.inner;
        let key = inner.key(path);
        let dir = format!("{key}/");
        let record = Inner::open_upload_key(&key);
        let err = |e| inner.error(path, e);
        let mut found = false;
        // A page at a time: listing the next page while deleting this one would hand S3
        // a moving target, and a tree is seldom more than a few pages.
        let mut token: Option<String> = None;
        loop {
            let page = inner
                .client
                .list_page(&key, false, token.as_deref(), None)
                .await
                .map_err(err)?;
            let keys: Vec<String> = page
                .contents
                .into_iter()
                .map(|o| o.key)
                .filter(|k| *k == key || *k == record || k.starts_with(&dir))
                .collect();
            found |= !keys.is_empty();
            // Open uploads go with the files they hold, found through their records (on
            // stores that cannot list uploads too).
            for file in keys.iter().filter_map(|k| k.strip_suffix(OPEN_UPLOAD)) {
                if let Some((upload, _)) = inner.open_upload(file).await.map_err(err)? {
                    inner
                        .client
                        .abort_multipart(file, &upload.upload_id)
                        .await
                        .map_err(err)?;
                }
            }
            inner.client.delete_many(&keys).await.map_err(err)?;
            match (page.is_truncated, page.next_continuation_token) {
                (true, Some(t)) => token = Some(t),
                _ => break,
            }
        }
        for u in inner.client.list_multipart(&key).await.map_err(err)? {
            if u.key == key || u.key.starts_with(&dir) {
                found = true;
                inner
                    .client
                    .abort_multipart(&u.key, &u.upload_id)
                    .await
                    .map_err(err)?;
            }
        }
        if found {
            Ok(())
        } else {
            Err(StorageError::NotFound(path.clone()))
        }
    }

    /// Every write is durable once S3 answers it.
    async fn put_small(&self, path: &StoragePath, content: &[u8]) -> StorageResult<()> {
        self.put_content(path, content).await
    }

    async fn open_file(&self, _path: &StoragePath) -> StorageResult<Option<std::fs::File>> {
        Ok(None)
    }

    // A bucket cannot tell which processes use it, and keeps no journal.

    async fn use_alone(&self) -> StorageResult<bool> {
        Ok(false)
    }

    async fn use_shared(&self) -> StorageResult<()> {
        Ok(())
    }

    async fn replay_journals(&self) -> StorageResult<usize> {
        Ok(0)
    }

    async fn journal_writes(&self) {}

    async fn flush(&self) -> StorageResult<()> {
        Ok(())
    }

    async fn check_writable(&self) -> StorageResult<()> {
        let inner = &self.inner;
        let probe = StoragePath::new([format!(".write-check-{}", uuid::Uuid::new_v4().simple())])?;
        let key = inner.key(&probe);
        let result = async {
            inner
                .client
                .put(&key, Body::Bytes(Bytes::from_static(b"ok")))
                .await?;
            inner.client.delete(&key).await
        }
        .await;
        result.map_err(|e| inner.error(&probe, e))
    }

    /// The unfinished multipart uploads under `under` that hold no file's content: every
    /// one but those a file's `.~multipart` record names (see the module doc), such as a
    /// server-side copy into place cut short (a blob's key), or the upload of a writer that
    /// died before recording it. An upload that is a file's content (an upload session
    /// between two PATCHes) is not a leftover: the session's purge removes it with the
    /// session. Stores that cannot list uploads have none to show.
    async fn leftovers(
        &self,
        under: &StoragePath,
        before: Option<std::time::SystemTime>,
        remove: bool,
    ) -> StorageResult<Vec<Leftover>> {
        let inner = &self.inner;
        let dir = format!("{}/", inner.key(under));
        let err = |e| inner.error(under, e);
        let mut by_key: BTreeMap<String, Vec<MultipartInfo>> = BTreeMap::new();
        for u in inner.client.list_multipart(&dir).await.map_err(err)? {
            if u.key.starts_with(&dir) {
                by_key.entry(u.key.clone()).or_default().push(u);
            }
        }
        let mut out = Vec::new();
        for (key, uploads) in by_key {
            if inner.in_use.holds(&key) {
                continue;
            }
            let Some(path) = inner.path_of(&key) else {
                continue;
            };
            let content = inner.open_upload(&key).await.map_err(err)?;
            let named = content.as_ref().map(|(u, _)| u.upload_id.as_str());
            for u in uploads {
                if Some(u.upload_id.as_str()) == named {
                    continue;
                }
                if before.is_some_and(|t| client::parse_time(&u.initiated) >= t) {
                    continue;
                }
                if remove {
                    inner
                        .client
                        .abort_multipart(&key, &u.upload_id)
                        .await
                        .map_err(err)?;
                }
                out.push(Leftover::Upload(path.clone()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::start;
    use crate::storage::conformance::{self, Fixture};
    use std::sync::Arc;

    async fn make() -> Option<Fixture> {
        let (moto, driver) = start("/some/root/").await?;
        Some(Fixture {
            driver: Arc::new(driver),
            _guard: Box::new(moto),
        })
    }

    conformance::conformance_suite!(make());
}

#[cfg(test)]
mod bucket_tests {
    //! What the conformance suite cannot see: where bytes sit in the bucket.
    use super::tests_support::*;
    use super::*;
    use crate::storage::conformance::PART;

    fn path(s: &str) -> StoragePath {
        StoragePath::new(s.split('/')).expect("path")
    }

    #[tokio::test]
    async fn keys_sit_under_the_root_directory() {
        let Some((moto, rooted)) = start("/srv/registry/").await else {
            return;
        };
        let bare = S3Driver::new(options(&moto, "")).expect("driver");
        let p = path("docker/registry/v2/repositories/a/_layers/link");
        rooted.put_content(&p, b"sha256:1").await.expect("put");
        let full = path("srv/registry/docker/registry/v2/repositories/a/_layers/link");
        assert_eq!(
            &bare.get_content(&full, 100).await.expect("get")[..],
            b"sha256:1"
        );
        assert_eq!(bare.list(&path("srv")).await.expect("list"), ["registry"]);
    }

    /// A whole writer's file is nowhere until it is closed, for readers that would complete
    /// an open upload too; then it is there at once. Cancelled, it leaves no upload.
    #[tokio::test]
    async fn a_whole_writer_shows_nothing_until_closed() {
        let Some((_moto, d)) = start("").await else {
            return;
        };
        let p = path("blobs/ab/abcd/data");
        let key = d.inner.key(&p);
        let content: Vec<u8> = (0..3 * PART + 7).map(|i| (i % 253) as u8).collect();
        let mut w = d
            .whole_writer(&p)
            .await
            .expect("whole writer")
            .expect("offered");
        w.write_chunks(vec![Bytes::from(content.clone())])
            .await
            .expect("write");
        assert_eq!(uploads_at(&d, &key).await.len(), 1, "parts are going up");
        assert!(matches!(d.stat(&p).await, Err(StorageError::NotFound(_))));
        assert!(matches!(
            d.get_content(&p, 1 << 30).await,
            Err(StorageError::NotFound(_))
        ));
        assert!(d.list(&path("blobs")).await.is_err(), "nothing listed");
        assert_eq!(w.close().await.expect("close"), content.len() as u64);
        assert_eq!(
            &d.get_content(&p, 1 << 30).await.expect("get")[..],
            &content[..]
        );
        assert!(uploads_at(&d, &key).await.is_empty());

        let q = path("blobs/cd/cdef/data");
        let mut w = d.whole_writer(&q).await.expect("writer").expect("offered");
        w.write_chunks(vec![Bytes::from(content.clone())])
            .await
            .expect("write");
        w.cancel().await.expect("cancel");
        assert!(uploads_at(&d, &d.inner.key(&q)).await.is_empty());
        assert!(matches!(d.stat(&q).await, Err(StorageError::NotFound(_))));
        // The file closed before is untouched by another writer's cancel at its key.
        let w = d.whole_writer(&p).await.expect("writer").expect("offered");
        w.cancel().await.expect("cancel");
        assert_eq!(d.stat(&p).await.expect("stat").size, content.len() as u64);
    }

    /// A writer closed between requests leaves its parts in an open upload, recorded in
    /// `<key>.~multipart`; the next one continues that same upload, with the next part
    /// numbers. The record is not listed as a file.
    #[tokio::test]
    async fn a_reopened_writer_continues_the_same_upload() {
        let Some((_moto, d)) = start("").await else {
            return;
        };
        let p = path("r/_uploads/u/data");
        let key = d.inner.key(&p);
        let mut w = d.writer(&p, false).await.expect("writer");
        w.write_chunks(vec![Bytes::from(vec![1u8; 2 * PART + PART / 2])])
            .await
            .expect("write");
        w.close().await.expect("close");
        assert!(d.inner.client.head(&key).await.expect("head").is_none());
        let open_upload = || async {
            d.inner
                .open_upload(&key)
                .await
                .expect("read the record")
                .expect("upload")
                .0
        };
        let first = open_upload().await;
        let parts = first.parts.clone();
        assert_eq!(first.size(), (2 * PART + PART / 2) as u64);
        assert!(parts.iter().all(|p| p.2 >= PART as u64), "{parts:?}");
        assert_eq!(d.list(&path("r/_uploads/u")).await.expect("list"), ["data"]);
        assert!(d.list(&p).await.is_err(), "a file lists nothing below it");

        let mut w = d.writer(&p, true).await.expect("reopen");
        w.write_chunks(vec![Bytes::from(vec![2u8; PART + 1])])
            .await
            .expect("write");
        w.close().await.expect("close");
        let second = open_upload().await;
        assert_eq!(
            first.upload_id, second.upload_id,
            "the upload was continued"
        );
        assert_eq!(second.parts.len(), parts.len() + 1);
        assert_eq!(uploads_at(&d, &key).await.len(), 1, "no stray uploads");
        // Deleting the session's directory aborts the upload.
        d.delete(&path("r/_uploads/u")).await.expect("delete");
        assert!(uploads_at(&d, &key).await.is_empty());
    }

    /// Uploads that hold no file's content are leftovers, and no reader takes one for a
    /// file: one shadowed by an object at its key, one no `.~multipart` record names (a
    /// part-by-part copy into a blob's key that a crash cut short: the blob is absent, not
    /// partial), and the older of two at a key. The upload a writer recorded (a session
    /// between PATCHes) stays; so does an upload a writer of this process is using.
    #[tokio::test]
    async fn uploads_holding_no_content_are_leftovers() {
        let Some((_moto, d)) = start("root").await else {
            return;
        };
        let client = &d.inner.client;
        let part = || Body::Bytes(Bytes::from(vec![7u8; PART]));
        let upload_with_a_part = |key: String| async move {
            let id = client.create_multipart(&key).await.expect("create");
            client
                .upload_part(&key, &id, 1, part())
                .await
                .expect("part");
            id
        };
        // Shadowed: an object was put in place after the upload started.
        let shadowed = path("v2/blobs/aa/data");
        upload_with_a_part(d.inner.key(&shadowed)).await;
        d.put_content(&shadowed, b"whole").await.expect("put");
        // A copy into place cut short: nothing at the key but the upload.
        let cut = path("v2/blobs/bb/data");
        upload_with_a_part(d.inner.key(&cut)).await;
        assert!(d.stat(&cut).await.expect_err("partial").is_not_found());
        assert!(d.list(&path("v2/blobs/bb")).await.is_err());
        assert!(d.reader(&cut, 0).await.err().expect("read").is_not_found());
        // Beside a recorded upload, one a writer died with before recording it.
        let twice = path("v2/repositories/r/_uploads/u/data");
        let mut w = d.writer(&twice, false).await.expect("writer");
        w.write_chunks(vec![Bytes::from(vec![9u8; 2 * PART])])
            .await
            .expect("write");
        w.close().await.expect("close");
        upload_with_a_part(d.inner.key(&twice)).await;
        // In use by a writer of ours: not a leftover even with an object over it.
        let busy = path("v2/repositories/r/_uploads/w/data");
        let held = d.inner.in_use.hold(&d.inner.key(&busy));
        upload_with_a_part(d.inner.key(&busy)).await;
        d.put_content(&busy, b"old").await.expect("put");

        let root = path("v2");
        // moto dates every upload 2010-11-10: before 2010 none had started.
        let in_2009 = humantime::parse_rfc3339("2009-01-01T00:00:00Z").expect("time");
        assert!(d
            .leftovers(&root, Some(in_2009), true)
            .await
            .expect("young")
            .is_empty());
        let (content, _) = d
            .inner
            .open_upload(&d.inner.key(&twice))
            .await
            .expect("read")
            .expect("recorded");
        let found = d.leftovers(&root, None, false).await.expect("list");
        assert_eq!(
            found,
            [
                Leftover::Upload(shadowed.clone()),
                Leftover::Upload(cut.clone()),
                Leftover::Upload(twice.clone())
            ]
        );
        drop(held);
        let found = d.leftovers(&root, None, true).await.expect("remove");
        assert_eq!(found.len(), 4, "{found:?}");
        assert!(d
            .leftovers(&root, None, false)
            .await
            .expect("again")
            .is_empty());
        assert!(uploads_at(&d, &d.inner.key(&cut)).await.is_empty());
        // What the files hold is untouched.
        assert_eq!(
            &d.get_content(&shadowed, 10).await.expect("get")[..],
            b"whole"
        );
        assert_eq!(&d.get_content(&busy, 10).await.expect("get")[..], b"old");
        let uploads = uploads_at(&d, &d.inner.key(&twice)).await;
        assert_eq!(
            uploads.iter().map(|u| &u.upload_id).collect::<Vec<_>>(),
            [&content.upload_id]
        );
        assert_eq!(d.stat(&twice).await.expect("stat").size, 2 * PART as u64);
    }

    /// Upload purging finds a session that holds nothing but its open upload, and removing
    /// the session aborts the upload.
    #[tokio::test]
    async fn a_session_holding_only_an_open_upload_is_found() {
        let Some((_moto, d)) = start("").await else {
            return;
        };
        let data = path("repos/lib/app/_uploads/u/data");
        let mut w = d.writer(&data, false).await.expect("writer");
        w.write_chunks(vec![Bytes::from(vec![1u8; 2 * PART + 1])])
            .await
            .expect("write");
        w.close().await.expect("close");
        let found = d
            .find_directories_with(&path("repos"), "_uploads")
            .await
            .expect("find");
        assert_eq!(found, ["lib/app"]);
        d.delete(&path("repos/lib/app/_uploads/u"))
            .await
            .expect("delete");
        let key = d.inner.key(&data);
        assert!(uploads_at(&d, &key).await.is_empty());
    }

    /// S3 unreachable is `Unavailable` (the API's 503), after bounded retries, not a hang.
    #[tokio::test]
    async fn an_unreachable_endpoint_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let mut d = S3Driver::new(S3Options {
            bucket: "b".into(),
            regionendpoint: format!("http://127.0.0.1:{port}"),
            accesskey: "x".into(),
            secretkey: "y".into(),
            ..S3Options::default()
        })
        .expect("driver");
        d.set_retry_budget(3, std::time::Duration::from_secs(5));
        let started = std::time::Instant::now();
        let err = d.stat(&path("a/b")).await.expect_err("unreachable");
        assert!(matches!(err, StorageError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("after 3 attempts"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let err = d.check_writable().await.expect_err("unreachable");
        assert!(matches!(err, StorageError::Unavailable { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_missing_bucket_is_named() {
        let Some(moto) = moto::Moto::start() else {
            return;
        };
        let d = S3Driver::new(S3Options {
            bucket: "absent".into(),
            ..options(&moto, "")
        })
        .expect("driver");
        let err = d.check_writable().await.expect_err("no bucket");
        assert!(err.to_string().contains("NoSuchBucket"), "{err}");
        assert!(err.to_string().contains("create the bucket"), "{err}");
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::storage::conformance::PART;
    use moto::Moto;

    /// Options for bucket `test` on a test server, with parts as small as S3 allows so that
    /// a few megabytes exercise every multipart path.
    pub(crate) fn options(moto: &Moto, root: &str) -> S3Options {
        S3Options {
            bucket: "test".to_owned(),
            regionendpoint: moto.endpoint(),
            accesskey: "test".to_owned(),
            secretkey: "test".to_owned(),
            rootdirectory: root.to_owned(),
            chunksize: PART as u64,
            multipartcopychunksize: PART as u64,
            multipartcopythresholdsize: PART as u64,
            ..S3Options::default()
        }
    }

    /// The open uploads at keys starting with `key`.
    pub(super) async fn uploads_at(d: &S3Driver, key: &str) -> Vec<MultipartInfo> {
        d.inner
            .client
            .list_multipart(key)
            .await
            .expect("list uploads")
    }

    /// A server with bucket `test` and a driver on it; `None` (skipped) without moto.
    pub(crate) async fn start(root: &str) -> Option<(Moto, S3Driver)> {
        let moto = Moto::start()?;
        moto.create_bucket("test");
        let driver = S3Driver::new(options(&moto, root)).expect("driver");
        Some((moto, driver))
    }
}

#[cfg(test)]
mod fault_tests {
    //! S3 answering 503 SlowDown: a proxy in front of moto refuses the first requests the
    //! way S3 throttles, and the driver's retries carry the operations through.
    use super::tests_support::*;
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Forwards to `upstream` (one request per connection), answering the first `refuse`
    /// requests with 503 SlowDown instead; counts what it refused.
    fn throttling_proxy(upstream: u16, refuse: usize) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let refused = Arc::new(AtomicUsize::new(0));
        let counter = refused.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, refuse, &counter);
                });
            }
        });
        (port, refused)
    }

    fn serve(
        conn: TcpStream,
        upstream: u16,
        refuse: usize,
        refused: &AtomicUsize,
    ) -> std::io::Result<()> {
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut head = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if name == "content-length" {
                    length = value.trim().parse().unwrap_or(0);
                }
                if name == "connection" {
                    continue;
                }
            }
            if line == "\r\n" {
                head.extend_from_slice(b"connection: close\r\n\r\n");
                break;
            }
            head.extend_from_slice(line.as_bytes());
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        let mut conn = conn;
        if refused.fetch_add(1, Ordering::SeqCst) < refuse {
            let xml =
                "<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>";
            write!(
                conn,
                "HTTP/1.1 503 Slow Down\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
                xml.len()
            )?;
            return Ok(());
        }
        refused.fetch_sub(1, Ordering::SeqCst);
        let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
        up.write_all(&head)?;
        up.write_all(&body)?;
        std::io::copy(&mut up, &mut conn)?;
        Ok(())
    }

    #[tokio::test]
    async fn throttling_is_retried_with_backoff() {
        let Some(moto) = moto::Moto::start() else {
            return;
        };
        moto.create_bucket("test");
        let (port, refused) = throttling_proxy(moto.port, 3);
        let d = S3Driver::new(S3Options {
            regionendpoint: format!("http://127.0.0.1:{port}"),
            ..options(&moto, "")
        })
        .expect("driver");
        let p = StoragePath::new(["a", "link"]).expect("path");
        d.put_content(&p, b"sha256:1")
            .await
            .expect("put through throttling");
        assert_eq!(
            refused.load(Ordering::SeqCst),
            3,
            "three refusals, then through"
        );
        assert_eq!(&d.get_content(&p, 100).await.expect("get")[..], b"sha256:1");
    }

    #[tokio::test]
    async fn throttling_that_persists_is_unavailable() {
        let Some(moto) = moto::Moto::start() else {
            return;
        };
        let (port, refused) = throttling_proxy(moto.port, usize::MAX);
        let mut d = S3Driver::new(S3Options {
            regionendpoint: format!("http://127.0.0.1:{port}"),
            ..options(&moto, "")
        })
        .expect("driver");
        d.set_retry_budget(4, std::time::Duration::from_secs(20));
        let err = d
            .get_content(&StoragePath::new(["a"]).expect("path"), 100)
            .await
            .expect_err("throttled");
        assert!(matches!(err, StorageError::Unavailable { .. }), "{err}");
        assert!(err.to_string().contains("SlowDown"), "{err}");
        assert_eq!(refused.load(Ordering::SeqCst), 4, "bounded: four attempts");
    }
}
