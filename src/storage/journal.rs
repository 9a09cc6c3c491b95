//! The intent journal of staged writes whose files are all new content (manifest PUTs,
//! links): one `fdatasync` of one append-only file makes a whole group of them durable.
//!
//! Without it a manifest PUT waits for the disk once per stage (content, links, tag), since
//! no file of a stage may survive a crash before the stages ahead of it. With it the group
//! commit appends one checksummed record per request (every file's path and content, in
//! stage order), syncs the journal once for all of them, then renames the files into place
//! without syncing them and answers: the registry:2 layout stays the result, readers (and
//! distribution, and our other processes) see it at once, and only its durability lags.
//! A crash at any point therefore leaves, after replay, the tag on the old manifest (the
//! record was not durable, so the request was not answered) or the new one (replay writes
//! the record again, in order). No link is ever read unapplied: files are in place before
//! the answer, and replay runs when a process starts, before it serves or writes.
//!
//! A checkpoint makes the applied files durable themselves (their `fdatasync`s, their
//! directories' `fsync`s, side by side) and empties the journal: when the committer is
//! idle, past [`CHECKPOINT_RECORDS`], before a write that does not go through the journal
//! (a delete must not be undone by replaying an older record) and at a clean stop, after
//! which the journal file is gone.
//!
//! Each process has its own journal, `.docker-registry-journal-<instance>` in the storage
//! root, locked (`flock`) while it runs: a journal whose lock can be taken belongs to a
//! process that is gone, and is replayed and removed.

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
/// checkpoint syncs at once and the journal a restart replays (and reads whole).
const CHECKPOINT_RECORDS: usize = 512;
/// The same bound in bytes, for large manifests.
const CHECKPOINT_BYTES: u64 = 16 << 20;

const PREFIX: &str = ".docker-registry-journal-";
const MAGIC: &[u8; 4] = b"DRJ1";
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

/// The records of a journal, in order, up to the first that is torn or damaged (the tail
/// of an append a crash interrupted: never acknowledged).
fn decode(mut data: &[u8]) -> Vec<Vec<(StoragePath, Vec<u8>)>> {
    let mut records = Vec::new();
    while data.len() >= HEADER && &data[..4] == MAGIC {
        let len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
        if len > MAX_RECORD || data.len() < HEADER + len {
            break;
        }
        let payload = &data[HEADER..HEADER + len];
        if checksum(payload) != data[8..HEADER] {
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

/// Syncs files and directories side by side (the group commit's), the first failure.
pub(super) type Sync<'a> =
    &'a dyn Fn(Vec<(PathBuf, Arc<File>)>, Vec<PathBuf>) -> Result<(), (PathBuf, io::Error)>;

/// This process's journal, owned by the committer thread.
pub(super) struct Journal {
    root: PathBuf,
    path: PathBuf,
    file: Arc<File>,
    /// The lock on `file` (one open file, two descriptors) while this process runs.
    _lock: Flock<File>,
    records: usize,
    /// `records`, for other threads: a write about to bypass the journal asks for a
    /// checkpoint only when it is not 0. Set before any record is acknowledged.
    shared: Arc<AtomicUsize>,
    /// Files put in place since the last checkpoint, and their directories.
    applied: Vec<PathBuf>,
    dirs: std::collections::BTreeSet<PathBuf>,
}

/// How to take back an append whose sync failed: the length before it, its records.
pub(super) struct Undo(u64, usize);

impl Journal {
    /// Creates this process's journal in `root` (which holds the store).
    pub(super) fn create(root: &Path) -> io::Result<Journal> {
        let path = root.join(format!("{PREFIX}{}", durable::instance()));
        fs::create_dir_all(root)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let lock =
            Flock::lock(file.try_clone()?, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
                io::Error::other(format!(
                    "{} is locked by another process: {e}",
                    path.display()
                ))
            })?;
        file.set_len(0)?;
        // Its entry must be durable before a record in it is relied on.
        durable::fsync_dir(root)?;
        Ok(Journal {
            root: root.to_path_buf(),
            path,
            file: Arc::new(file),
            _lock: lock,
            records: 0,
            shared: Default::default(),
            applied: Vec::new(),
            dirs: Default::default(),
        })
    }

    pub(super) fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Whether a checkpoint is due even though the committer is busy.
    pub(super) fn is_full(&self) -> bool {
        self.records >= CHECKPOINT_RECORDS
            || self
                .file
                .metadata()
                .is_ok_and(|m| m.len() >= CHECKPOINT_BYTES)
    }

    /// The number of records, as other threads see it.
    pub(super) fn shared_count(&self) -> Arc<AtomicUsize> {
        self.shared.clone()
    }

    fn set_records(&mut self, n: usize) {
        self.records = n;
        self.shared.store(n, Ordering::Release);
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The journal, for the cycle to sync with the rest.
    pub(super) fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Appends `batch` (`count` records of [`encode`]); the caller syncs [`Journal::file`]
    /// before relying on them. On failure the journal is cut back to what it was.
    pub(super) fn append(&mut self, batch: &[u8], count: usize) -> io::Result<Undo> {
        let before = self.file.metadata()?.len();
        if let Err(e) = (&*self.file).write_all(batch) {
            let _ = self.file.set_len(before);
            return Err(e);
        }
        self.set_records(self.records + count);
        Ok(Undo(before, count))
    }

    /// Takes back an append whose sync failed: its requests fail, so a replay must not
    /// apply them.
    pub(super) fn undo(&mut self, Undo(len, count): Undo) {
        let _ = self.file.set_len(len);
        self.set_records(self.records - count);
    }

    /// Notes a file a journaled request put in place: the next checkpoint syncs it.
    pub(super) fn applied(&mut self, full: &Path) {
        if let Some(dir) = full.parent() {
            self.dirs.insert(dir.to_path_buf());
        }
        self.applied.push(full.to_path_buf());
    }

    /// Makes every applied file durable in place (with `dirs` more directories), then
    /// empties the journal. On failure the journal stays whole: a replay writes the same
    /// files again.
    pub(super) fn checkpoint(
        &mut self,
        more_dirs: Vec<PathBuf>,
        sync: Sync,
    ) -> Result<(), (PathBuf, io::Error)> {
        if self.records == 0 && more_dirs.is_empty() {
            return Ok(());
        }
        let mut files = Vec::new();
        self.applied.sort();
        self.applied.dedup();
        for path in &self.applied {
            match File::open(path) {
                Ok(f) => files.push((path.clone(), Arc::new(f))),
                // Removed since: nothing to sync (and deletes wait for a checkpoint).
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err((path.clone(), e)),
            }
        }
        let mut dirs: Vec<PathBuf> = self.dirs.iter().cloned().collect();
        dirs.extend(more_dirs);
        sync(files, dirs)?;
        self.applied.clear();
        self.dirs.clear();
        if self.records > 0 {
            self.file
                .set_len(0)
                .and_then(|_| self.file.sync_data())
                .map_err(|e| (self.path.clone(), e))?;
            self.set_records(0);
        }
        Ok(())
    }

    /// Removes the journal, emptied by a checkpoint, for a clean stop.
    pub(super) fn remove(self) -> Result<(), (PathBuf, io::Error)> {
        if self.records > 0 {
            return Err((self.path, io::Error::other("the journal is not empty")));
        }
        fs::remove_file(&self.path).map_err(|e| (self.path.clone(), e))?;
        let _ = durable::fsync_dir(&self.root);
        Ok(())
    }
}

/// Replays and removes the journals in `root` of processes that are gone: writes each
/// record's files in order, syncs them all, then removes the journal. The number of records
/// replayed.
pub(super) fn replay_orphans(root: &Path, sync: Sync) -> io::Result<usize> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut replayed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| n.starts_with(PREFIX)) {
            continue;
        }
        let path = entry.path();
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        // Held by a process that runs (this one included: a lock belongs to the open file):
        // its journal is its own.
        let Ok(mut file) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let records = decode(&data);
        let mut written = Vec::new();
        let mut dirs = std::collections::BTreeSet::new();
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
        written.sort();
        written.dedup();
        let files = written
            .into_iter()
            .filter_map(|p| File::open(&p).ok().map(|f| (p, Arc::new(f))))
            .collect();
        sync(files, dirs.into_iter().collect())
            .and_then(|_| durable::sync_created().map_err(|e| (root.to_path_buf(), e)))
            .map_err(|(p, e)| io::Error::new(e.kind(), format!("{}: {e}", p.display())))?;
        match fs::remove_file(&path) {
            // Its owner removed it, empty, as it stopped (we took its lock just after).
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        durable::fsync_dir(root)?;
        replayed += records.len();
    }
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
        let decoded = decode(&data);
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[0][1], (b.clone(), b"{}".to_vec()));
        assert_eq!(decoded[1][0], (a.clone(), b"sha256:2".to_vec()));
        data.truncate(one.len() + two.len() - 1);
        assert_eq!(decode(&data).len(), 1, "torn");
        let mut damaged = [one.clone(), two].concat();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert_eq!(decode(&damaged).len(), 1, "damaged");
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
}
