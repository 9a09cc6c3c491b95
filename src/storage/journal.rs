//! The intent journal of staged writes whose files are all new content (manifest PUTs,
//! links): one `fdatasync` of one append-only file makes a whole group of them durable.
//!
//! Without it a manifest PUT waits for the disk once per stage (content, links, tag), since
//! no file of a stage may survive a crash before the stages ahead of it. With it the group
//! commit appends one checksummed record per request (every file's path and content, in
//! stage order), syncs the journal once for all of them, then puts the files in place
//! without syncing them (written directly where no file is yet, else through a temporary
//! renamed over it) and answers: the registry:2 layout stays the result, readers (and
//! distribution, and our other processes) see it at once, and only its durability lags.
//! A crash at any point therefore leaves, after replay, the tag on the old manifest (the
//! record was not durable, so the request was not answered) or the new one (replay writes
//! the record again, in order). No link is ever read unapplied: files are in place before
//! the answer, and replay runs when a process starts, before it serves or writes.
//!
//! A checkpoint makes the applied files durable themselves (their `fdatasync`s, their
//! directories' `fsync`s, side by side) and then drops their records. It must not hold up
//! the requests: a checkpoint of a few hundred records is a few thousand syncs, a second or
//! more on a busy disk. So the journal is a series of *segments*: when one is due (the
//! committer idle, past [`CHECKPOINT_RECORDS`], or a write that does not go through the
//! journal coming, which a replay of an older record must not undo) the committer
//! [rotates](Journal::rotate) it: appends go on in a new segment at once, and the sealed
//! one is handed to a checkpoint thread, which syncs its files and removes it. Segments are
//! checkpointed and removed strictly in order, so a crash at any point leaves a run of
//! segments whose replay, oldest first, ends in the acknowledged state. At a clean stop the
//! last segment is checkpointed too and removed: no journal is left.
//!
//! Each process has its own segments, `.docker-registry-journal-<instance>.<seq>` in the
//! storage root, each locked (`flock`) while it runs: a segment whose lock can be taken
//! belongs to a process that is gone, and is replayed (with that process's other segments,
//! in order) and removed. A segment is made under another name, locked, then renamed into
//! place, so that no other process's replay ever sees it unlocked.
//!
//! A checkpointed segment is kept, under the name of one being made, for a later segment to
//! reuse, as databases recycle their write-ahead log files. Appending to a new file changes
//! its size and its blocks, so each sync of it is a commit of the filesystem's own journal,
//! which waits for every other change to the filesystem (data of other programs included, on
//! ext4's default `data=ordered`). Overwriting blocks a file already has is data alone: its
//! `fdatasync` writes them and flushes the disk's cache, no more. Records left from the
//! segment's earlier use must then never be taken for new ones: every record appended is
//! stamped with its segment's number (in its checksum), and a replay stops at the first
//! record stamped otherwise, as at a torn one. A segment that needs more room than its file
//! has writes [`AHEAD`] of zeros past its records at once, so that one size change serves
//! hundreds of records; files are given [`PREPARED`] of room before use, off the requests'
//! path, so that this is rare.

use super::durable;
use super::StoragePath;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Records after which the committer checkpoints even while busy: bounds the files a
/// checkpoint syncs at once and the journal a restart replays (and reads whole). Large
/// enough that a burst of PUTs is checkpointed once it is over, not during it: on a
/// journaled filesystem every sync of a checkpoint forces a commit of the filesystem's
/// journal, which the requests' own `mkdir`s, creates and journal syncs then wait behind
/// (with 512, 2,000 PUTs from 16 clients waited p99 70 ms, 20-30 ms with this); the work is
/// the same, done after the burst (see [`super::group_commit`]'s idle checkpoint).
const CHECKPOINT_RECORDS: usize = if cfg!(test) { 512 } else { 4096 };
/// The same bound in bytes, for large manifests.
const CHECKPOINT_BYTES: u64 = 16 << 20;

const PREFIX: &str = ".docker-registry-journal-";
/// A segment's name while it is being made (see [`new_segment`]).
const MAKING: &str = ".docker-registry-new-journal-";
/// A record checked by its payload alone: what earlier versions wrote.
const MAGIC: &[u8; 4] = b"DRJ1";
/// A record stamped with its segment's number (see the module's note).
const STAMPED: &[u8; 4] = b"DRJ2";
/// Checkpointed segments kept for reuse, at most.
const SPARES: usize = 2;
/// Zeros written ahead of the records when a segment needs more room (see the module's
/// note): a thousand manifest PUTs' records.
const AHEAD: u64 = 1 << 20;
/// The room a segment's file is given before it is used, off the requests' path (at start,
/// and on the checkpoint thread for a kept one): a busy segment's records until its
/// checkpoint ([`CHECKPOINT_RECORDS`] of a manifest PUT's ~1 KiB), so that a burst never
/// waits for zeros to be written and synced.
const PREPARED: u64 = if cfg!(test) { 2 << 20 } else { 8 << 20 };
/// The free space below which a segment is given no room ahead.
const PREPARE_FREE: u64 = 64 * PREPARED;
/// Magic, payload length, checksum.
const HEADER: usize = 4 + 4 + 8;
/// The largest record replay believes: more is a damaged length, not a record.
const MAX_RECORD: usize = 64 << 20;

/// One record: `files` (storage path, content) in the order they must land.
pub(super) fn encode<'a>(files: impl Iterator<Item = (&'a StoragePath, &'a [u8])>) -> Vec<u8> {
    let mut payload = Vec::new();
    for (path, content) in files {
        for field in [path.as_str().as_bytes(), content] {
            payload.extend_from_slice(&(field.len() as u32).to_le_bytes());
            payload.extend_from_slice(field);
        }
    }
    let mut record = Vec::with_capacity(HEADER + payload.len());
    record.extend_from_slice(MAGIC);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&checksum(&payload));
    record.extend_from_slice(&payload);
    record
}

fn checksum(payload: &[u8]) -> [u8; 8] {
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&Sha256::digest(payload)[..8]);
    sum
}

/// The checksum of a record of segment `seq`.
fn stamped_checksum(seq: u64, payload: &[u8]) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(seq.to_le_bytes());
    h.update(payload);
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&h.finalize()[..8]);
    sum
}

/// `batch` (records of [`encode`]) stamped for segment `seq`.
fn stamp(batch: &[u8], seq: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(batch.len());
    let mut rest = batch;
    while !rest.is_empty() {
        let len = rest
            .get(4..8)
            .and_then(|l| l.try_into().ok())
            .map(|l| u32::from_le_bytes(l) as usize)
            .filter(|len| rest.len() >= HEADER + len)
            .ok_or_else(|| io::Error::other("a journal record to append is malformed"))?;
        let payload = &rest[HEADER..HEADER + len];
        out.extend_from_slice(STAMPED);
        out.extend_from_slice(&rest[4..8]);
        out.extend_from_slice(&stamped_checksum(seq, payload));
        out.extend_from_slice(payload);
        rest = &rest[HEADER + len..];
    }
    Ok(out)
}

/// The records of segment `seq`, in order, up to the first that is torn or damaged (the
/// tail of an append a crash interrupted: never acknowledged) or stamped for another
/// segment (left from the file's earlier use).
fn decode(mut data: &[u8], seq: u64) -> Vec<Vec<(StoragePath, Vec<u8>)>> {
    let mut records = Vec::new();
    while data.len() >= HEADER && (&data[..4] == MAGIC || &data[..4] == STAMPED) {
        let len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        if len > MAX_RECORD || data.len() < HEADER + len {
            break;
        }
        let payload = &data[HEADER..HEADER + len];
        let sum = match &data[..4] == STAMPED {
            true => stamped_checksum(seq, payload),
            false => checksum(payload),
        };
        if sum != data[8..HEADER] {
            break;
        }
        let Some(files) = decode_files(payload) else {
            break;
        };
        records.push(files);
        data = &data[HEADER + len..];
    }
    records
}

fn decode_files(mut payload: &[u8]) -> Option<Vec<(StoragePath, Vec<u8>)>> {
    let field = |payload: &mut &[u8]| -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
        let value = payload.get(4..4 + len)?.to_vec();
        *payload = &payload[4 + len..];
        Some(value)
    };
    let mut files = Vec::new();
    while !payload.is_empty() {
        let path = String::from_utf8(field(&mut payload)?).ok()?;
        let path = StoragePath::new(path.split('/')).ok()?;
        files.push((path, field(&mut payload)?));
    }
    Some(files)
}

/// The records segment file `path` holds (by its name's number), for tests.
#[cfg(test)]
pub(super) fn records_in(path: &Path) -> usize {
    let seq = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix(PREFIX))
        .map_or(0, |rest| instance_and_seq(rest).1);
    fs::read(path).map_or(0, |data| decode(&data, seq).len())
}

/// The process instance and the segment number of a segment named `PREFIX<rest>` (a
/// journal of an older version has no number: 0).
fn instance_and_seq(rest: &str) -> (&str, u64) {
    match rest.rsplit_once('.') {
        Some((i, seq)) => match seq.parse::<u64>() {
            Ok(seq) => (i, seq),
            Err(_) => (rest, 0),
        },
        None => (rest, 0),
    }
}

/// Syncs files and directories side by side (the group commit's), the first failure.
pub(super) type Sync<'a> =
    &'a dyn Fn(Vec<(PathBuf, Arc<File>)>, Vec<PathBuf>) -> Result<(), (PathBuf, io::Error)>;

/// The records of one segment, and what their requests put in place.
struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// The lock on `file` (one open file, two descriptors) while this process runs; taken
    /// by [`Spares`] once the segment is checkpointed.
    lock: Option<Flock<File>>,
    /// Where its records end (a reused file holds more: see the module's note).
    len: u64,
    /// How much of the file has been written (records, or zeros ahead of them): what the
    /// next records can overwrite without changing the file's size.
    written: u64,
    records: usize,
    /// Files put in place since the segment began, and their directories.
    applied: Vec<PathBuf>,
    dirs: std::collections::BTreeSet<PathBuf>,
}

/// A checkpointed segment kept for reuse: its file, under a name of one being made, locked.
struct Spare {
    path: PathBuf,
    file: Arc<File>,
    lock: Flock<File>,
}

/// This process's checkpointed segments kept for reuse (see the module's note), shared by
/// the committer, which reuses them, and the checkpoint thread, which gives them back.
#[derive(Clone, Default)]
struct Spares(Arc<std::sync::Mutex<Vec<Spare>>>);

impl Spares {
    fn take(&self) -> Option<Spare> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
    }

    /// Keeps `segment`'s file, checkpointed, for reuse: renamed to a name of one being
    /// made, or removed when enough are kept. Either way its old name is gone, durably,
    /// when this returns (a later segment is removed only after it).
    fn give(&self, root: &Path, segment: &mut Segment) -> io::Result<()> {
        let room = self.0.lock().unwrap_or_else(|p| p.into_inner()).len() < SPARES;
        let lock = match segment.lock.take() {
            Some(lock) if room => lock,
            other => {
                // Locked until it is gone: another process's replay must never take a
                // segment whose records are checkpointed (it would write them again).
                segment.lock = other;
                fs::remove_file(&segment.path)?;
                return durable::fsync_dir(root);
            }
        };
        let name = segment
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(PREFIX))
            .unwrap_or_default();
        let spare = root.join(format!("{MAKING}{name}.spare"));
        if let Err(e) = fs::rename(&segment.path, &spare).and_then(|_| durable::fsync_dir(root)) {
            segment.lock = Some(lock);
            return Err(e);
        }
        // Out of the journal now: room for the next use, synced while nobody waits.
        if let Err(e) = prepare(&segment.file) {
            tracing::debug!("cannot give {} room ahead: {e}", spare.display());
        }
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.push(Spare {
            path: spare,
            file: segment.file.clone(),
            lock,
        });
        Ok(())
    }

    /// Removes every kept file, for a clean stop.
    fn remove_all(&self) {
        for spare in self.0.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            let _ = fs::remove_file(&spare.path);
        }
    }
}

/// Makes segment `seq` of this process's journal in `root`: a kept segment's file reused,
/// or a new one, under another name, locked, then renamed into place (see the module's
/// note), its entry durable.
fn new_segment(root: &Path, seq: u64, spares: &Spares) -> io::Result<Segment> {
    let name = format!("{}.{seq}", durable::instance());
    let path = root.join(format!("{PREFIX}{name}"));
    if let Some(spare) = spares.take() {
        match fs::rename(&spare.path, &path).and_then(|_| durable::fsync_dir(root)) {
            Ok(()) => {
                let written = spare.file.metadata().map_or(0, |m| m.len());
                return Ok(Segment {
                    path,
                    file: spare.file,
                    lock: Some(spare.lock),
                    len: 0,
                    written,
                    records: 0,
                    applied: Vec::new(),
                    dirs: Default::default(),
                });
            }
            Err(e) => {
                tracing::debug!("cannot reuse {}: {e}", spare.path.display());
                let _ = fs::remove_file(&spare.path);
            }
        }
    }
    let making = root.join(format!("{MAKING}{name}"));
    // Not appending: records are written at their offset (O_APPEND would ignore it).
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .read(true)
        .truncate(false)
        .open(&making)?;
    let lock = Flock::lock(file.try_clone()?, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        io::Error::other(format!(
            "{} is locked by another process: {e}",
            making.display()
        ))
    });
    let made = lock.and_then(|lock| {
        file.set_len(0)?;
        fs::rename(&making, &path)?;
        // Its entry must be durable before a record in it is relied on.
        durable::fsync_dir(root)?;
        Ok(lock)
    });
    match made {
        Ok(lock) => Ok(Segment {
            path,
            file: Arc::new(file),
            lock: Some(lock),
            len: 0,
            written: 0,
            records: 0,
            applied: Vec::new(),
            dirs: Default::default(),
        }),
        Err(e) => {
            let _ = fs::remove_file(&making);
            Err(e)
        }
    }
}

impl Segment {
    /// Syncs every file and directory its records put in place (with `more_dirs`). Files
    /// are opened [`SYNC_BATCH`] at a time: a segment holds thousands, and descriptors are
    /// the connections' budget too (see `server::limits`).
    fn sync_applied(
        &mut self,
        more_dirs: &[PathBuf],
        sync: Sync,
    ) -> Result<(), (PathBuf, io::Error)> {
        self.applied.sort();
        self.applied.dedup();
        for batch in self.applied.chunks(SYNC_BATCH) {
            let mut files = Vec::new();
            for path in batch {
                match File::open(path) {
                    Ok(f) => files.push((path.clone(), Arc::new(f))),
                    // Removed since: nothing to sync (and deletes wait for a checkpoint).
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err((path.clone(), e)),
                }
            }
            sync(files, Vec::new())?;
        }
        let mut dirs: Vec<PathBuf> = self.dirs.iter().cloned().collect();
        dirs.extend_from_slice(more_dirs);
        sync(Vec::new(), dirs)?;
        self.applied.clear();
        self.dirs.clear();
        Ok(())
    }
}

/// Files a checkpoint holds open at once.
const SYNC_BATCH: usize = 256;

/// Gives `file` [`PREPARED`] bytes of room (zeros past what it has), durably; not on a
/// filesystem with less than [`PREPARE_FREE`] free (the journal must not take the last
/// space a push could use), and never partly (a failure takes the zeros back).
fn prepare(file: &File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len >= PREPARED {
        return Ok(());
    }
    let free = nix::sys::statvfs::fstatvfs(file)
        .map(|v| v.blocks_available() * v.fragment_size())
        .map_err(io::Error::from)?;
    if free < PREPARE_FREE {
        return Err(io::Error::other(format!(
            "{free} bytes free: no room ahead for the journal"
        )));
    }
    let prepared = write_zeros(file, len, PREPARED).and_then(|_| file.sync_data());
    if prepared.is_err() {
        let _ = file.set_len(len);
    }
    prepared
}

/// Writes zeros over `from..to` of `file`.
fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const PIECE: usize = 64 << 10;
    let zeros = [0u8; PIECE];
    let mut at = from;
    while at < to {
        let n = PIECE.min((to - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// This process's journal: the segment appended to, owned by the committer thread.
pub(super) struct Journal {
    root: PathBuf,
    seq: u64,
    active: Segment,
    spares: Spares,
    /// Records not yet durable in place, in every segment of this process, for other
    /// threads: a write about to bypass the journal asks for a checkpoint only when it is not
    /// 0. Raised before any record is acknowledged.
    shared: Arc<AtomicUsize>,
}

/// A segment taken out of use by [`Journal::rotate`], for the checkpoint thread.
pub(super) struct Sealed {
    root: PathBuf,
    seq: u64,
    segment: Segment,
    /// Directories made for its requests, whose entries in their parents must be durable.
    parents: Vec<PathBuf>,
    shared: Arc<AtomicUsize>,
    spares: Spares,
}

impl Sealed {
    /// Makes its records' files durable in place, then takes it out of the journal
    /// (durably: a later segment is taken out only after it), kept for reuse. On failure it
    /// stays whole, to be tried again.
    pub(super) fn checkpoint(&mut self, sync: Sync) -> Result<(), (PathBuf, io::Error)> {
        self.segment.sync_applied(&self.parents, sync)?;
        self.parents.clear();
        durable::sealed_synced(self.seq);
        let path = self.segment.path.clone();
        self.spares
            .give(&self.root, &mut self.segment)
            .map_err(|e| (path, e))?;
        self.shared
            .fetch_sub(std::mem::take(&mut self.segment.records), Ordering::AcqRel);
        Ok(())
    }
}

/// How to take back an append whose sync failed: the length before it, its records.
pub(super) struct Undo(u64, usize);

impl Journal {
    /// Creates this process's journal in `root` (which holds the store).
    pub(super) fn create(root: &Path) -> io::Result<Journal> {
        fs::create_dir_all(root)?;
        let spares = Spares::default();
        let mut active = new_segment(root, 1, &spares)?;
        // At start, before any request waits.
        if let Err(e) = prepare(&active.file) {
            tracing::debug!("journal: {e}");
        }
        active.written = active.file.metadata().map_or(0, |m| m.len());
        Ok(Journal {
            root: root.to_path_buf(),
            seq: 1,
            active,
            shared: Default::default(),
            spares,
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.active.records == 0
    }

    /// Whether a checkpoint is due even though the committer is busy.
    pub(super) fn is_full(&self) -> bool {
        self.active.records >= CHECKPOINT_RECORDS || self.active.len >= CHECKPOINT_BYTES
    }

    /// The number of records not yet durable in place, as other threads see it.
    pub(super) fn shared_count(&self) -> Arc<AtomicUsize> {
        self.shared.clone()
    }

    pub(super) fn path(&self) -> &Path {
        &self.active.path
    }

    /// The journal, for the cycle to sync with the rest.
    pub(super) fn file(&self) -> Arc<File> {
        self.active.file.clone()
    }

    /// Appends `batch` (`count` records of [`encode`]); the caller syncs [`Journal::file`]
    /// before relying on them. On failure the journal is cut back to what it was.
    pub(super) fn append(&mut self, batch: &[u8], count: usize) -> io::Result<Undo> {
        use std::os::unix::fs::FileExt;
        let batch = stamp(batch, self.seq)?;
        let file = &self.active.file;
        let before = self.active.len;
        let end = before + batch.len() as u64;
        let mut room = Ok(());
        if end > self.active.written {
            // Zeros first, then the records over them: one size change for many appends.
            let ahead = (end + AHEAD / 2).div_ceil(AHEAD) * AHEAD;
            room = write_zeros(file, self.active.written, ahead);
            if room.is_ok() {
                self.active.written = ahead;
            }
        }
        if let Err(e) = room.and_then(|_| file.write_all_at(&batch, before)) {
            let _ = file.set_len(before);
            self.active.written = before;
            return Err(e);
        }
        self.active.len = end;
        self.active.records += count;
        self.shared.fetch_add(count, Ordering::AcqRel);
        Ok(Undo(before, count))
    }

    /// Takes back an append whose sync failed: its requests fail, so a replay must not
    /// apply them.
    pub(super) fn undo(&mut self, Undo(len, count): Undo) {
        let _ = self.active.file.set_len(len);
        self.active.len = len;
        self.active.written = len;
        self.active.records -= count;
        self.shared.fetch_sub(count, Ordering::AcqRel);
    }

    /// Notes a file a journaled request put in place: its segment's checkpoint syncs it.
    pub(super) fn applied(&mut self, full: &Path) {
        if let Some(dir) = full.parent() {
            self.active.dirs.insert(dir.to_path_buf());
        }
        self.active.applied.push(full.to_path_buf());
    }

    /// Seals the segment appended to and goes on in a new one; the sealed segment's
    /// checkpoint makes the directories made so far durable too. On failure nothing changes.
    pub(super) fn rotate(&mut self) -> io::Result<Sealed> {
        let next = new_segment(&self.root, self.seq + 1, &self.spares)?;
        let seq = self.seq;
        self.seq += 1;
        Ok(Sealed {
            root: self.root.clone(),
            seq,
            segment: std::mem::replace(&mut self.active, next),
            // Every directory its requests made was made before they joined the commit,
            // so before this.
            parents: durable::parents(&durable::seal_created(seq))
                .into_iter()
                .map(Path::to_path_buf)
                .collect(),
            shared: self.shared.clone(),
            spares: self.spares.clone(),
        })
    }

    /// Makes every file the segment appended to applied durable in place (with `dirs`
    /// more directories), then empties it, on the calling thread: for a clean stop, once
    /// every sealed segment is checkpointed. On failure the journal stays whole: a replay
    /// writes the same files again.
    pub(super) fn checkpoint(
        &mut self,
        more_dirs: Vec<PathBuf>,
        sync: Sync,
    ) -> Result<(), (PathBuf, io::Error)> {
        if self.active.records == 0 && more_dirs.is_empty() {
            return Ok(());
        }
        self.active.sync_applied(&more_dirs, sync)?;
        if self.active.records > 0 {
            let path = &self.active.path;
            self.active
                .file
                .set_len(0)
                .and_then(|_| self.active.file.sync_data())
                .map_err(|e| (path.clone(), e))?;
            // Records start again at the beginning: one written past a hole of zeros would
            // never be read back.
            self.active.len = 0;
            self.active.written = 0;
            self.shared
                .fetch_sub(std::mem::take(&mut self.active.records), Ordering::AcqRel);
        }
        Ok(())
    }

    /// Removes the journal, emptied by a checkpoint, for a clean stop.
    pub(super) fn remove(self) -> Result<(), (PathBuf, io::Error)> {
        let path = self.active.path;
        if self.active.records > 0 {
            return Err((path, io::Error::other("the journal is not empty")));
        }
        fs::remove_file(&path).map_err(|e| (path.clone(), e))?;
        self.spares.remove_all();
        let _ = durable::fsync_dir(&self.root);
        Ok(())
    }
}

/// Replays and removes the journals in `root` of processes that are gone: writes each
/// record's files in order (a process's segments oldest first), syncs them all, then
/// removes the segments. The number of records replayed.
pub(super) fn replay_orphans(root: &Path, sync: Sync) -> io::Result<usize> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    // Each process's segments, by sequence (a journal of an older version has none: 0).
    let mut journals: std::collections::BTreeMap<String, Vec<(u64, PathBuf)>> = Default::default();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with(MAKING) {
            // Made by a process that died before it was used: empty, or never relied on.
            if let Ok(f) = File::open(entry.path()) {
                if Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok() {
                    let _ = fs::remove_file(entry.path());
                }
            }
            continue;
        }
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let (instance, seq) = instance_and_seq(rest);
        journals
            .entry(instance.to_owned())
            .or_default()
            .push((seq, entry.path()));
    }
    let mut replayed = 0;
    for (_, mut segments) in journals {
        segments.sort();
        let mut locked = Vec::new();
        for (seq, path) in &segments {
            let file = match OpenOptions::new().read(true).write(true).open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            // Held by a process that runs (this one included: a lock belongs to the open
            // file): its journal is its own.
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(f) => locked.push((*seq, path.clone(), f)),
                Err(_) => {
                    locked.clear();
                    break;
                }
            }
        }
        if locked.is_empty() {
            continue;
        }
        replayed += replay_process(root, &mut locked, sync)?;
    }
    Ok(replayed)
}

/// Replays one gone process's segments, oldest first, and removes them.
fn replay_process(
    root: &Path,
    segments: &mut [(u64, PathBuf, Flock<File>)],
    sync: Sync,
) -> io::Result<usize> {
    let mut written = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    let mut replayed = 0;
    for (seq, path, file) in segments.iter_mut() {
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let records = decode(&data, *seq);
        replayed += records.len();
        for files in &records {
            for (storage_path, content) in files {
                let full = root.join(storage_path.as_str());
                let tmp = durable::temp_name(&full);
                let put = durable::create_beside(&full, &tmp).and_then(|mut f| {
                    f.write_all(content)?;
                    drop(f);
                    durable::rename_into_place(&tmp, &full)
                });
                if let Err(e) = put {
                    let _ = fs::remove_file(&tmp);
                    return Err(io::Error::new(
                        e.kind(),
                        format!("replaying {}: {}: {e}", path.display(), full.display()),
                    ));
                }
                if let Some(dir) = full.parent() {
                    dirs.insert(dir.to_path_buf());
                }
                written.push(full);
            }
        }
    }
    written.sort();
    written.dedup();
    written
        .chunks(SYNC_BATCH)
        .try_for_each(|batch| {
            let files = batch
                .iter()
                .filter_map(|p| File::open(p).ok().map(|f| (p.clone(), Arc::new(f))))
                .collect();
            sync(files, Vec::new())
        })
        .and_then(|_| sync(Vec::new(), dirs.into_iter().collect()))
        .and_then(|_| durable::sync_created().map_err(|e| (root.to_path_buf(), e)))
        .map_err(|(p, e)| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
    for (_, path, _) in segments.iter() {
        match fs::remove_file(path) {
            // Its owner removed it, empty, as it stopped (we took its lock just after).
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    durable::fsync_dir(root)?;
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> StoragePath {
        StoragePath::new(s.split('/')).expect("path")
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_dropped() {
        let (a, b) = (p("r/_manifests/tags/t/current/link"), p("blobs/x/data"));
        let one = encode([(&a, &b"sha256:1"[..]), (&b, &b"{}"[..])].into_iter());
        let two = encode([(&a, &b"sha256:2"[..])].into_iter());
        let mut data = [one.clone(), two.clone()].concat();
        let decoded = decode(&data, 0);
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0][1], (b.clone(), b"{}".to_vec()));
        assert_eq!(decoded[1][0], (a.clone(), b"sha256:2".to_vec()));
        data.truncate(one.len() + two.len() - 1);
        assert_eq!(decode(&data, 0).len(), 1, "torn");
        let mut damaged = [one.clone(), two].concat();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert_eq!(decode(&damaged, 0).len(), 1, "damaged");
    }

    /// What a power cut can leave: records in the journal of a process that is gone, the
    /// files they put in place lost. Replay writes them again, in order, and removes it.
    #[test]
    fn a_gone_process_journal_is_replayed_in_order_and_removed() {
        let root = tempfile::tempdir().expect("tempdir");
        let (tag, data) = (p("r/tags/t/current/link"), p("blobs/m/data"));
        let mut j = Journal::create(root.path()).expect("journal");
        let journal = j.path().to_path_buf();
        let first = encode([(&data, &b"{}"[..]), (&tag, &b"sha256:1"[..])].into_iter());
        let second = encode([(&tag, &b"sha256:2"[..])].into_iter());
        j.append(&[first, second].concat(), 2).expect("append");
        j.file().sync_data().expect("sync");
        assert_eq!(j.shared_count().load(Ordering::Acquire), 2);
        let sync: Sync = &|_, _| Ok(());
        assert_eq!(
            replay_orphans(root.path(), sync).expect("replay"),
            0,
            "locked"
        );
        // The process is gone (its lock with it), and so are the files it put in place.
        drop(j);
        let other = root.path().join(format!("{PREFIX}0000000"));
        fs::write(&other, b"").expect("an empty journal");
        assert_eq!(replay_orphans(root.path(), sync).expect("replay"), 2);
        let read = |sp: &StoragePath| fs::read(root.path().join(sp.as_str())).expect("read");
        assert_eq!(read(&tag), b"sha256:2");
        assert_eq!(read(&data), b"{}");
        assert!(!journal.exists() && !other.exists());
    }

    /// What a crash mid-write can leave of files the committer wrote in place (no
    /// temporary: they did not exist): torn or empty. Their records are still in the
    /// journal (a segment goes only once its checkpoint has synced them), and replay
    /// writes them whole.
    #[test]
    fn files_torn_by_a_crash_mid_write_are_replayed_whole() {
        let root = tempfile::tempdir().expect("tempdir");
        let (data, revision, tag) = (
            p("blobs/sha256/ab/abcd/data"),
            p("r/_manifests/revisions/sha256/abcd/link"),
            p("r/_manifests/tags/t/current/link"),
        );
        let manifest = br#"{"schemaVersion":2,"layers":[]}"#;
        let record = encode(
            [
                (&data, &manifest[..]),
                (&revision, &b"sha256:abcd"[..]),
                (&tag, &b"sha256:abcd"[..]),
            ]
            .into_iter(),
        );
        fs::write(root.path().join(format!("{PREFIX}0badcafe.1")), record).expect("segment");
        let full = |sp: &StoragePath| root.path().join(sp.as_str());
        for (sp, torn) in [(&data, &manifest[..9]), (&revision, &b""[..])] {
            fs::create_dir_all(full(sp).parent().expect("dir")).expect("dir");
            fs::write(full(sp), torn).expect("torn");
        }
        let sync: Sync = &|_, _| Ok(());
        assert_eq!(replay_orphans(root.path(), sync).expect("replay"), 1);
        assert_eq!(fs::read(full(&data)).expect("data"), manifest);
        assert_eq!(fs::read(full(&revision)).expect("revision"), b"sha256:abcd");
        assert_eq!(fs::read(full(&tag)).expect("tag"), b"sha256:abcd");
    }

    /// A checkpoint of a segment with thousands of files holds at most [`SYNC_BATCH`] of
    /// them open at once, and syncs them all.
    #[test]
    fn a_checkpoint_opens_its_files_a_batch_at_a_time() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut j = Journal::create(root.path()).expect("journal");
        let n = SYNC_BATCH * 3 + 7;
        for i in 0..n {
            let full = root.path().join(format!("d{}/f{i}", i % 5));
            fs::create_dir_all(full.parent().expect("dir")).expect("dir");
            fs::write(&full, b"x").expect("file");
            j.applied(&full);
        }
        let tag = p("t");
        j.append(&encode([(&tag, &b"x"[..])].into_iter()), 1)
            .expect("append");
        let mut sealed = j.rotate().expect("rotate");
        let synced = std::sync::Mutex::new((0usize, 0usize, 0usize));
        let sync: Sync = &|files, dirs| {
            let mut s = synced.lock().expect("count");
            assert!(files.len() <= SYNC_BATCH, "{} open at once", files.len());
            s.0 += files.len();
            s.1 = s.1.max(files.len());
            s.2 += dirs.len();
            Ok(())
        };
        sealed.checkpoint(sync).expect("checkpoint");
        let (files, most, dirs) = *synced.lock().expect("count");
        assert_eq!((files, most), (n, SYNC_BATCH));
        assert!(dirs >= 5, "{dirs}");
        assert_eq!(j.shared_count().load(Ordering::Acquire), 0);
    }

    /// A gone process's segments are replayed oldest first (by number, not by name), and
    /// a segment it was still making is removed.
    #[test]
    fn segments_replay_in_order() {
        let root = tempfile::tempdir().expect("tempdir");
        let tag = p("r/tags/t/current/link");
        for (seq, content) in [(10, "sha256:10"), (2, "sha256:2"), (9, "sha256:9")] {
            let record = encode([(&tag, content.as_bytes())].into_iter());
            let name = format!("{PREFIX}deadbeef.{seq}");
            fs::write(root.path().join(name), record).expect("segment");
        }
        let making = root.path().join(format!("{MAKING}deadbeef.11"));
        fs::write(&making, b"").expect("making");
        let sync: Sync = &|_, _| Ok(());
        assert_eq!(replay_orphans(root.path(), sync).expect("replay"), 3);
        let read = fs::read(root.path().join(tag.as_str())).expect("tag");
        assert_eq!(read, b"sha256:10");
        let left: Vec<_> = fs::read_dir(root.path())
            .expect("root")
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(".docker"))
            })
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_record_is_read_back_only_in_the_segment_it_was_stamped_for() {
        let tag = p("r/tags/t/current/link");
        let stamped = stamp(&encode([(&tag, &b"sha256:1"[..])].into_iter()), 5).expect("stamp");
        assert_eq!(&stamped[..4], STAMPED);
        assert_eq!(decode(&stamped, 5).len(), 1);
        assert!(decode(&stamped, 6).is_empty());
        assert!(
            stamp(&stamped[..stamped.len() - 1], 5).is_err(),
            "malformed"
        );
    }

    fn names_in(root: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(root)
            .expect("root")
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|n| n.starts_with(".docker"))
            .collect();
        names.sort();
        names
    }

    /// A checkpointed segment's file is reused for a later one, written over in place: the
    /// records of its earlier use, even those that start just where a new one ends, are
    /// never replayed (a replay of one would move a tag back).
    #[test]
    fn a_reused_segment_replays_only_its_own_records() {
        let root = tempfile::tempdir().expect("tempdir");
        let tag = p("r/tags/t/current/link");
        let record = |v: &str| encode([(&tag, v.as_bytes())].into_iter());
        let sync: Sync = &|_, _| Ok(());
        let mut j = Journal::create(root.path()).expect("journal");
        let old: Vec<u8> = ["sha256:1", "sha256:2", "sha256:3"]
            .iter()
            .flat_map(|v| record(v))
            .collect();
        j.append(&old, 3).expect("append");
        let mut first = j.rotate().expect("rotate");
        first.checkpoint(sync).expect("checkpoint");
        assert!(names_in(root.path()).iter().any(|n| n.ends_with(".spare")));
        let mut second = j.rotate().expect("rotate");
        second.checkpoint(sync).expect("checkpoint");
        // Segment 3 is segment 1's file: the new record lands on the first old one.
        let new = record("sha256:9");
        let before = fs::metadata(j.path()).expect("segment").len();
        assert_eq!(
            before, PREPARED,
            "segment 1's file, zeros ahead of its records"
        );
        j.append(&new, 1).expect("append");
        j.file().sync_data().expect("sync");
        let len = fs::metadata(j.path()).expect("segment").len();
        assert_eq!(len, before, "written over in place, not appended");
        // A crash: the process and the files it put in place are gone.
        drop((j, first, second));
        assert_eq!(replay_orphans(root.path(), sync).expect("replay"), 1);
        let read = fs::read(root.path().join(tag.as_str())).expect("tag");
        assert_eq!(read, b"sha256:9");
        assert!(
            names_in(root.path()).is_empty(),
            "{:?}",
            names_in(root.path())
        );
    }

    /// A clean stop leaves no journal, kept segments included.
    #[test]
    fn a_clean_stop_removes_the_kept_segments_too() {
        let root = tempfile::tempdir().expect("tempdir");
        let tag = p("t");
        let sync: Sync = &|_, _| Ok(());
        let mut j = Journal::create(root.path()).expect("journal");
        let mut sealed = Vec::new();
        for _ in 0..3 {
            j.append(&encode([(&tag, &b"x"[..])].into_iter()), 1)
                .expect("append");
            sealed.push(j.rotate().expect("rotate"));
        }
        for s in &mut sealed {
            s.checkpoint(sync).expect("checkpoint");
        }
        j.append(&encode([(&tag, &b"y"[..])].into_iter()), 1)
            .expect("append");
        let kept = names_in(root.path());
        assert_eq!(
            kept.iter().filter(|n| n.ends_with(".spare")).count(),
            SPARES
        );
        j.checkpoint(Vec::new(), sync).expect("checkpoint");
        j.remove().expect("remove");
        assert!(
            names_in(root.path()).is_empty(),
            "{:?}",
            names_in(root.path())
        );
    }
}
