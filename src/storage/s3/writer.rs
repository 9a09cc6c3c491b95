//! Streaming writes to S3: bytes gather into parts of `chunksize` that are uploaded while
//! the next ones arrive, at most [`IN_FLIGHT`] at a time, so a writer holds a few parts of
//! memory whatever the file's size.
//!
//! What a file holds lives in the bucket alone, so any writer (after a restart, or on
//! another instance) can take it up: the object at the key if there is one, otherwise the
//! parts of the unfinished multipart upload that `<key>.~multipart` names (see
//! [`super::Content`], [`super::OpenUpload`]). Closing a writer uploads what it gathered as
//! a part, records the upload and its parts there and leaves the upload open, so the next
//! PATCH continues it with the next part number, without listing uploads. A writer records
//! its upload as soon as it creates it, so that no other instance takes it for a leftover
//! while it runs. Only a last part under S3's 5 MiB minimum forces
//! a rewrite: the upload is completed and a new one starts from the object, copied server
//! side (or read back, when under 5 MiB), as registry:2's driver does.
//!
//! Parts other than the last are always at least `chunksize`: a part is only cut while at
//! least [`MIN_PART`] more stays gathered, so closing never leaves a short part behind
//! unless the whole writer received less than that.
//!
//! A *whole* writer ([`S3Writer::whole`], for `StorageDriver::whole_writer`) writes a new
//! file that no one sees until it is closed: its upload is named by no record, so it is no
//! file's content; closing completes it (or, for what fits one request, PUTs it), and the
//! object appears at once. Cancelling or dropping it aborts its own upload, never another
//! (another instance may be writing the same content to the same key).

use super::client::{Body, S3Error, S3Result};
use super::options::{MAX_PART, MIN_PART};
use super::{Content, Inner, OpenUpload};
use crate::storage::{FileWriter, StorageError, StoragePath, StorageResult};
use async_trait::async_trait;
use bytes::Bytes;
use object_store::PutPayload;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Part uploads running at once per writer.
const IN_FLIGHT: usize = 2;
/// S3's limit on the parts of one upload.
const MAX_PARTS: u32 = 10_000;

/// An open multipart upload and the parts it has (number, ETag, size).
struct Upload {
    id: String,
    parts: Vec<(u32, String, u64)>,
}

impl Upload {
    fn next_number(&self) -> u32 {
        self.parts.last().map_or(1, |(n, _, _)| n + 1)
    }

    fn record(&self) -> OpenUpload {
        OpenUpload {
            upload_id: self.id.clone(),
            parts: self.parts.clone(),
        }
    }
}

/// What the file held when the writer opened, still to be carried into the upload.
enum Carry {
    /// Nothing (a new or truncated file, or everything is already in `upload`).
    Nothing,
    /// The object at the key, this large: copied server side as the first parts.
    Object(u64),
    /// An upload whose last part is short: it is completed into the object, which is then
    /// carried as above.
    ShortUpload {
        id: String,
        parts: Vec<(u32, String)>,
    },
}

pub(super) struct S3Writer {
    inner: Arc<Inner>,
    path: StoragePath,
    key: String,
    upload: Option<Upload>,
    carry: Carry,
    /// An object at the key that must go once the upload holds the file's content.
    object_stale: bool,
    gathered: VecDeque<Bytes>,
    gathered_len: u64,
    /// Part uploads running: number, size, the task giving its ETag.
    running: VecDeque<(u32, u64, JoinHandle<S3Result<String>>)>,
    size: u64,
    /// Anything changed since opening: without it, closing does nothing.
    dirty: bool,
    /// A request failed: the bucket may not hold what `size` says, so nothing more is taken.
    failed: bool,
    /// A whole writer (see the module doc).
    whole: bool,
    /// Closed or cancelled: a whole writer dropped before either aborts its upload.
    done: bool,
    /// Its uploads are not leftovers while it lives.
    _held: super::KeyHeld,
}

impl S3Writer {
    pub(super) async fn open(
        inner: Arc<Inner>,
        path: &StoragePath,
        append: bool,
    ) -> StorageResult<S3Writer> {
        let key = inner.key(path);
        let mut w = S3Writer::new(inner.clone(), path, false);
        if !append {
            return Ok(w);
        }
        match inner
            .content(&key)
            .await
            .map_err(|e| inner.error(path, e))?
        {
            None => {}
            Some(Content::Object(info)) if info.size == 0 => w.dirty = false,
            Some(Content::Object(info)) if info.size < MIN_PART => {
                // Too small to be a part of its own: it travels in the first part.
                let body = inner
                    .client
                    .get(&key, 0, None, info.etag.as_deref())
                    .await
                    .map_err(|e| inner.error(path, e))?;
                let bytes = super::client::read_limited(body, MIN_PART as usize)
                    .await
                    .map_err(|e| inner.error(path, S3Error::Unavailable(e)))?;
                w.size = bytes.len() as u64;
                w.gathered_len = w.size;
                w.gathered.push_back(Bytes::from(bytes));
                w.dirty = false;
            }
            Some(Content::Object(info)) => {
                w.size = info.size;
                w.carry = Carry::Object(info.size);
                w.dirty = false;
            }
            Some(Content::Multipart { upload }) => {
                w.size = upload.size();
                w.object_stale = false;
                w.dirty = false;
                let short = upload.parts.last().is_some_and(|p| p.2 < MIN_PART);
                if short {
                    w.carry = Carry::ShortUpload {
                        id: upload.upload_id,
                        parts: upload.parts.into_iter().map(|(n, e, _)| (n, e)).collect(),
                    };
                } else {
                    w.upload = Some(Upload {
                        id: upload.upload_id,
                        parts: upload.parts,
                    });
                }
            }
        }
        Ok(w)
    }

    /// A whole writer of a new file at `path` (see the module doc); no request until there
    /// is something to send.
    pub(super) fn whole(inner: Arc<Inner>, path: &StoragePath) -> S3Writer {
        S3Writer::new(inner, path, true)
    }

    /// A writer of a new, empty file (one to whole, which replaces no object).
    fn new(inner: Arc<Inner>, path: &StoragePath, whole: bool) -> S3Writer {
        let key = inner.key(path);
        S3Writer {
            inner: inner.clone(),
            path: path.clone(),
            key: key.clone(),
            upload: None,
            carry: Carry::Nothing,
            object_stale: !whole,
            gathered: VecDeque::new(),
            gathered_len: 0,
            running: VecDeque::new(),
            size: 0,
            dirty: true,
            failed: false,
            whole,
            done: false,
            _held: inner.in_use.hold(&key),
        }
    }

    fn err(&self, e: S3Error) -> StorageError {
        self.inner.error(&self.path, e)
    }

    /// Completes an upload whose last part is short into the object, and says how that object
    /// is to be carried into a new upload: read back into the first part when it is short
    /// itself, copied server side otherwise.
    async fn fold_short_upload(&mut self, id: &str, parts: &[(u32, String)]) -> S3Result<Carry> {
        let client = &self.inner.client;
        client.complete_multipart(&self.key, id, parts).await?;
        self.object_stale = true;
        let info = client.head(&self.key).await?.ok_or_else(|| {
            S3Error::Invalid(format!("{} vanished after completing its upload", self.key))
        })?;
        if info.size >= MIN_PART {
            return Ok(Carry::Object(info.size));
        }
        let body = client.get(&self.key, 0, None, info.etag.as_deref()).await?;
        let bytes = super::client::read_limited(body, MIN_PART as usize)
            .await
            .map_err(S3Error::Unavailable)?;
        self.gathered_len += bytes.len() as u64;
        self.gathered.push_front(Bytes::from(bytes));
        Ok(Carry::Nothing)
    }

    /// Makes sure an upload is open and holds everything the file had before this writer.
    async fn ensure_upload(&mut self) -> S3Result<()> {
        self.carry = match std::mem::replace(&mut self.carry, Carry::Nothing) {
            Carry::ShortUpload { id, parts } => self.fold_short_upload(&id, &parts).await?,
            other => other,
        };
        if self.upload.is_some() {
            return Ok(());
        }
        if self.whole {
            // Its own upload, unrecorded; others at the key may be writing the same.
            let id = self.inner.client.create_multipart(&self.key).await?;
            self.upload = Some(Upload {
                id,
                parts: Vec::new(),
            });
            return Ok(());
        }
        // Uploads left at this key by writers that died are not the content (an object is,
        // or nothing): remove them, so that ours is the only one.
        for stale in self.inner.client.list_multipart(&self.key).await? {
            if stale.key == self.key {
                self.inner
                    .client
                    .abort_multipart(&self.key, &stale.upload_id)
                    .await?;
            }
        }
        let id = self.inner.client.create_multipart(&self.key).await?;
        let mut upload = Upload {
            id,
            parts: Vec::new(),
        };
        let carry = std::mem::replace(&mut self.carry, Carry::Nothing);
        let started = async {
            if let Carry::Object(size) = carry {
                upload.parts = self
                    .inner
                    .copy_parts(&self.key, &self.key, &upload.id, size)
                    .await?;
            }
            // Recorded at once: another instance's leftover collection leaves it alone. The
            // object at the key, if any, still wins until the writer is done.
            self.inner
                .save_open_upload(&self.key, &upload.record())
                .await
        }
        .await;
        if let Err(e) = started {
            let _ = self
                .inner
                .client
                .abort_multipart(&self.key, &upload.id)
                .await;
            return Err(e);
        }
        self.upload = Some(upload);
        Ok(())
    }

    /// Takes exactly `len` bytes off the front of what is gathered, without copying.
    fn take(&mut self, len: u64) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut want = len;
        while want > 0 {
            let Some(mut b) = self.gathered.pop_front() else {
                break;
            };
            if b.len() as u64 > want {
                let rest = b.split_off(want as usize);
                self.gathered.push_front(rest);
            }
            want -= b.len() as u64;
            out.push(b);
        }
        self.gathered_len -= len - want;
        out
    }

    /// Starts uploading `chunks` as the next part, after the oldest running upload finishes
    /// if [`IN_FLIGHT`] are running.
    async fn start_part(&mut self, chunks: Vec<Bytes>) -> S3Result<()> {
        self.ensure_upload().await?;
        while self.running.len() >= IN_FLIGHT {
            self.finish_oldest().await?;
        }
        let Some(upload) = self.upload.as_ref() else {
            return Err(S3Error::Invalid("no upload".to_owned()));
        };
        let number = upload
            .next_number()
            .max(self.running.back().map_or(0, |(n, _, _)| n + 1));
        if number > MAX_PARTS {
            return Err(S3Error::Rejected {
                status: http::StatusCode::PAYLOAD_TOO_LARGE,
                code: "TooManyParts".to_owned(),
                message: format!(
                    "the file is past {MAX_PARTS} parts of storage.s3.chunksize ({} bytes); raise chunksize",
                    self.inner.options.chunksize
                ),
            });
        }
        let inner = self.inner.clone();
        let key = self.key.clone();
        let id = upload.id.clone();
        let size = chunks.iter().map(|c| c.len() as u64).sum();
        let body = Body::Chunks(PutPayload::from_iter(chunks));
        let task =
            tokio::spawn(async move { inner.client.upload_part(&key, &id, number, body).await });
        self.running.push_back((number, size, task));
        Ok(())
    }

    async fn finish_oldest(&mut self) -> S3Result<()> {
        let Some((number, size, task)) = self.running.pop_front() else {
            return Ok(());
        };
        let etag = task
            .await
            .map_err(|e| S3Error::Unavailable(format!("part upload task: {e}")))??;
        if let Some(u) = self.upload.as_mut() {
            u.parts.push((number, etag, size));
        }
        Ok(())
    }

    async fn finish_all(&mut self) -> S3Result<()> {
        while !self.running.is_empty() {
            self.finish_oldest().await?;
        }
        Ok(())
    }

    async fn gather(&mut self, chunks: Vec<Bytes>) -> S3Result<()> {
        for c in chunks {
            if c.is_empty() {
                continue;
            }
            self.size += c.len() as u64;
            self.gathered_len += c.len() as u64;
            self.gathered.push_back(c);
        }
        let part = self.inner.options.chunksize;
        while self.gathered_len >= part + MIN_PART {
            let chunks = self.take(part);
            self.start_part(chunks).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> S3Result<()> {
        self.finish_all().await?;
        let untouched = self.upload.is_none() && matches!(self.carry, Carry::Nothing);
        if untouched && self.gathered_len <= MAX_PART {
            // Everything is here: one PUT replaces whatever the key held.
            let chunks = self.take(self.gathered_len);
            let body = Body::Chunks(PutPayload::from_iter(chunks));
            return self.inner.client.put(&self.key, body).await;
        }
        if self.gathered_len > 0 {
            let chunks = self.take(self.gathered_len);
            self.start_part(chunks).await?;
            self.finish_all().await?;
        } else {
            self.ensure_upload().await?;
        }
        if self.whole {
            let Some(u) = &self.upload else {
                return Err(S3Error::Invalid("no upload".to_owned()));
            };
            let parts: Vec<(u32, String)> = u
                .parts
                .iter()
                .map(|(n, etag, _)| (*n, etag.clone()))
                .collect();
            return self
                .inner
                .client
                .complete_multipart(&self.key, &u.id, &parts)
                .await;
        }
        // What the file holds now, for the next writer and for readers.
        if let Some(u) = &self.upload {
            self.inner.save_open_upload(&self.key, &u.record()).await?;
        }
        if self.object_stale {
            // The upload now holds everything: the object must stop shadowing it.
            self.inner.client.delete(&self.key).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl FileWriter for S3Writer {
    async fn write(&mut self, data: &[u8]) -> StorageResult<()> {
        self.write_chunks(vec![Bytes::copy_from_slice(data)]).await
    }

    async fn write_chunks(&mut self, chunks: Vec<Bytes>) -> StorageResult<()> {
        if self.failed {
            return Err(self.err(S3Error::Invalid(
                "an earlier write to this file failed".to_owned(),
            )));
        }
        if chunks.iter().all(|c| c.is_empty()) {
            return Ok(());
        }
        self.dirty = true;
        let r = self.gather(chunks).await;
        r.map_err(|e| {
            self.failed = true;
            self.err(e)
        })
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn close(mut self: Box<Self>) -> StorageResult<u64> {
        if self.failed {
            return Err(self.err(S3Error::Invalid(
                "an earlier write to this file failed".to_owned(),
            )));
        }
        if !self.dirty {
            return Ok(self.size);
        }
        match self.finish().await {
            Ok(()) => {
                self.done = true;
                Ok(self.size)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn cancel(mut self: Box<Self>) -> StorageResult<()> {
        for (_, _, task) in self.running.drain(..) {
            task.abort();
        }
        self.done = true;
        let client = &self.inner.client;
        if self.whole {
            // Its own upload only: the key may hold, or be getting, the same file from
            // another writer.
            return match &self.upload {
                Some(u) => client
                    .abort_multipart(&self.key, &u.id)
                    .await
                    .map_err(|e| self.err(e)),
                None => Ok(()),
            };
        }
        let r: S3Result<()> = async {
            let mut ids: Vec<String> = self.upload.iter().map(|u| u.id.clone()).collect();
            if let Some((recorded, _)) = self.inner.open_upload(&self.key).await? {
                ids.push(recorded.upload_id);
            }
            // Others a crashed writer left, where the store can list them.
            for u in client.list_multipart(&self.key).await? {
                if u.key == self.key {
                    ids.push(u.upload_id);
                }
            }
            ids.sort();
            ids.dedup();
            for id in ids {
                client.abort_multipart(&self.key, &id).await?;
            }
            client.delete(&Inner::open_upload_key(&self.key)).await?;
            client.delete(&self.key).await
        }
        .await;
        r.map_err(|e| self.err(e))
    }
}

impl Drop for S3Writer {
    /// A whole writer dropped before it was closed or cancelled (its request failed or was
    /// cut short): its upload is aborted in the background, so no parts linger.
    fn drop(&mut self) {
        if !self.whole || self.done {
            return;
        }
        for (_, _, task) in self.running.drain(..) {
            task.abort();
        }
        let (Some(upload), Ok(rt)) = (self.upload.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let (inner, key) = (self.inner.clone(), self.key.clone());
        rt.spawn(async move {
            if let Err(e) = inner.client.abort_multipart(&key, &upload.id).await {
                tracing::warn!("aborting the unfinished upload at {key} failed: {e}");
            }
        });
    }
}
