//! Group commit for the filesystem driver's staged writes (manifest content, links, tags).
//!
//! Making a small write durable costs a wait for the disk: a journal commit and a cache flush,
//! about a millisecond on most disks, and a manifest PUT needs one per stage (content, then the
//! links naming it, then the tag). Requests in flight together therefore share their waits:
//! each writes its content to temporary files itself, in parallel with the others, then hands
//! the rest to one committer thread. That thread runs cycles of "rename what may be renamed,
//! then `syncfs`", and each sync moves every request in flight one step on, whatever step each
//! is at: instead of an `fdatasync` per file and an `fsync` per directory for each request, a
//! few syncs serve everyone. `syncfs` also covers directories that a write created on the way
//! (a new tag's `<tag>/current/`), which fsyncing the file's own directory alone would not.
//!
//! Order and atomicity are those of [`super::StorageDriver::put_staged`] for every request:
//! all its content is written to temporary names and made durable first; then, stage by
//! stage, the temporaries are renamed over their targets and the filesystem is synced before
//! any rename of the next stage. One request's failure (a full disk while writing its
//! temporaries, a failed rename) fails that request alone; a failed sync fails every request
//! in flight, since none of them can know what of theirs is durable.
//!
//! `syncfs` makes durable everything written to the filesystem, so it also writes out what
//! other writers left dirty there; our own uploads start their writeback as they go (see
//! `FsWriter`), which keeps that small.

use super::durable;
use super::{StorageError, StoragePath, StorageResult};
use bytes::Bytes;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// The most requests in flight at once in the committer; more wait in its queue.
const MAX_BATCH: usize = 64;

/// What goes to a target: new content, or a finished file moved there.
pub(super) enum Source {
    Content(Bytes),
    Moved(PathBuf),
}

/// One file of a stage: its storage path (for errors), its full path, its source.
pub(super) type StagedFile = (StoragePath, PathBuf, Source);

struct Job {
    stages: Vec<Vec<StagedFile>>,
    /// What to rename into each target, in the order of the stages' files: temporaries
    /// already written, or moved files.
    temps: Vec<Rename>,
    /// One directory on each filesystem the job writes to.
    filesystems: Filesystems,
    done: tokio::sync::oneshot::Sender<StorageResult<()>>,
}

/// The queue in front of the committer thread.
#[derive(Debug)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the committer thread.
    pub fn start() -> io::Result<GroupCommit> {
        let (queue, jobs) = mpsc::channel();
        std::thread::Builder::new()
            .name("registry-commit".into())
            .spawn(move || run(jobs))?;
        Ok(GroupCommit { queue })
    }

    /// Writes `stages` durably, in order, together with whatever else is queued. The
    /// temporaries are written by the request itself, on the blocking pool and in parallel
    /// with other requests; the committer only syncs and renames.
    pub async fn put_staged(&self, stages: Vec<Vec<StagedFile>>) -> StorageResult<()> {
        let (done, result) = tokio::sync::oneshot::channel();
        let queue = self.queue.clone();
        // Written and queued in one blocking task: once its temporaries exist, a job always
        // reaches the committer (which renames or removes them), even if the request that
        // asked for it has gone away meanwhile.
        let queued = tokio::task::spawn_blocking(move || -> StorageResult<()> {
            let (temps, filesystems) = write_temporaries(&stages)?;
            let job = Job {
                stages,
                temps,
                filesystems,
                done,
            };
            if let Err(mpsc::SendError(job)) = queue.send(job) {
                remove_temporaries(&job.temps);
                return Err(gone());
            }
            Ok(())
        })
        .await;
        match queued {
            Ok(r) => r?,
            Err(e) => {
                return Err(StorageError::Io {
                    path: String::new(),
                    source: io::Error::other(format!("storage task failed: {e}")),
                })
            }
        }
        result.await.map_err(|_| gone())?
    }
}

/// The committer's steps for one request, on the calling (blocking) thread: for when the
/// committer thread cannot be started. The same order and guarantees, without the sharing.
pub(super) fn put_staged_alone(stages: Vec<Vec<StagedFile>>) -> StorageResult<()> {
    let (temps, filesystems) = write_temporaries(&stages)?;
    let (done, mut result) = tokio::sync::oneshot::channel();
    let mut active = vec![Member::new(Job {
        stages,
        temps,
        filesystems,
        done,
    })];
    while !active.is_empty() {
        cycle(&mut active);
    }
    result.try_recv().unwrap_or_else(|_| Err(gone()))
}

fn gone() -> StorageError {
    StorageError::Io {
        path: String::new(),
        source: io::Error::other("the storage commit thread has stopped"),
    }
}

fn run(jobs: mpsc::Receiver<Job>) {
    let mut active: Vec<Member> = Vec::new();
    loop {
        if active.is_empty() {
            match jobs.recv() {
                Ok(j) => active.push(Member::new(j)),
                Err(_) => return,
            }
        }
        while active.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => active.push(Member::new(j)),
                Err(_) => break,
            }
        }
        cycle(&mut active);
    }
}

/// One cycle: every member past its content sync renames its next stage; then every
/// filesystem in use is synced; members with nothing left are answered and leave.
fn cycle(active: &mut Vec<Member>) {
    let started = std::time::Instant::now();
    let in_flight = active.len();
    let mut filesystems = Filesystems::default();
    for m in active.iter_mut() {
        filesystems.merge(&m.job.filesystems);
        if m.failed.is_some() || m.synced == 0 {
            continue;
        }
        let Some(stage) = m.stages.get(m.synced - 1).copied() else {
            continue;
        };
        let mut error = None;
        for (path, full, _) in &m.job.stages[stage] {
            if let Err(e) = durable::rename_into_place(&m.temps[m.next].from, full) {
                error = Some(StorageError::io(path, e));
                break;
            }
            m.next += 1;
        }
        if let Some(e) = error {
            m.fail(e);
        }
    }
    if let Err((dir, e)) = filesystems.sync() {
        // None of the members can know what of theirs is durable.
        for m in active.iter_mut().filter(|m| m.failed.is_none()) {
            m.fail(StorageError::io(
                dir.display(),
                io::Error::new(e.kind(), e.to_string()),
            ));
        }
    }
    tracing::trace!(
        in_flight,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "commit cycle"
    );
    let mut i = 0;
    while i < active.len() {
        let m = &mut active[i];
        m.synced += 1;
        if m.failed.is_some() || m.synced > m.stages.len() {
            let m = active.swap_remove(i);
            let _ = m.job.done.send(match m.failed {
                Some(e) => Err(e),
                None => Ok(()),
            });
        } else {
            i += 1;
        }
    }
}

/// A request in flight and how far it got.
struct Member {
    job: Job,
    /// Sources in the order of the job's files; those before `next` are renamed.
    temps: Vec<Rename>,
    next: usize,
    /// The job's stages that have files, in order (an empty stage needs no sync of its own).
    stages: Vec<usize>,
    /// Syncs since the request joined: the first made its content durable, each later one
    /// the stage renamed before it.
    synced: usize,
    failed: Option<StorageError>,
}

impl Member {
    fn new(mut job: Job) -> Member {
        let stages = (0..job.stages.len())
            .filter(|&k| !job.stages[k].is_empty())
            .collect();
        Member {
            temps: std::mem::take(&mut job.temps),
            next: 0,
            stages,
            synced: 0,
            failed: None,
            job,
        }
    }

    fn fail(&mut self, e: StorageError) {
        remove_temporaries(&self.temps[self.next..]);
        self.next = self.temps.len();
        if self.failed.is_none() {
            self.failed = Some(e);
        }
    }
}

/// A file to rename over a target: a temporary of ours, or a file the caller moves there
/// (which a failure leaves where it is).
struct Rename {
    from: PathBuf,
    temporary: bool,
}

fn remove_temporaries(renames: &[Rename]) {
    for r in renames.iter().filter(|r| r.temporary) {
        let _ = fs::remove_file(&r.from);
    }
}

/// Writes every new file of `stages` to a temporary name beside its target and starts its
/// writeback; moved files are only checked to exist. On failure removes what it wrote.
fn write_temporaries(stages: &[Vec<StagedFile>]) -> StorageResult<(Vec<Rename>, Filesystems)> {
    let mut temps = Vec::new();
    let mut filesystems = Filesystems::default();
    for (path, full, source) in stages.iter().flatten() {
        let written = match source {
            Source::Content(content) => {
                let tmp = durable::temp_name(full);
                let r = durable::create_beside(full, &tmp).and_then(|mut f| {
                    f.write_all(content)?;
                    durable::start_writeback(&f, 0, content.len() as u64);
                    Ok(())
                });
                if r.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                r.map(|_| Rename {
                    from: tmp,
                    temporary: true,
                })
            }
            // Written and closed by the caller: the first sync makes it durable.
            Source::Moved(from) => durable::create_parent(full)
                .and_then(|_| fs::metadata(from))
                .map(|_| Rename {
                    from: from.clone(),
                    temporary: false,
                }),
        };
        match written {
            Ok(r) => temps.push(r),
            Err(e) => {
                remove_temporaries(&temps);
                return Err(if e.kind() == io::ErrorKind::NotFound {
                    StorageError::NotFound(path.clone())
                } else {
                    StorageError::io(path, e)
                });
            }
        }
        if let Some(dir) = full.parent() {
            filesystems.note(dir);
        }
    }
    Ok((temps, filesystems))
}

/// One directory on each filesystem written to, to sync that filesystem through.
#[derive(Default)]
struct Filesystems {
    dirs: Vec<(u64, PathBuf)>,
}

impl Filesystems {
    fn note(&mut self, dir: &Path) {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = fs::metadata(dir) else {
            return;
        };
        if !self.dirs.iter().any(|(dev, _)| *dev == meta.dev()) {
            self.dirs.push((meta.dev(), dir.to_path_buf()));
        }
    }

    fn merge(&mut self, other: &Filesystems) {
        for (dev, dir) in &other.dirs {
            if !self.dirs.iter().any(|(d, _)| d == dev) {
                self.dirs.push((*dev, dir.clone()));
            }
        }
    }

    fn sync(&self) -> Result<(), (PathBuf, io::Error)> {
        for (_, dir) in &self.dirs {
            sync_filesystem(dir).map_err(|e| (dir.clone(), e))?;
        }
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn sync_filesystem(dir: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let d = File::open(dir)?;
    nix::unistd::syncfs(d.as_raw_fd()).map_err(io::Error::from)
}

/// Without `syncfs`, the whole system is synced: slower, the same guarantee.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn sync_filesystem(_dir: &Path) -> io::Result<()> {
    nix::unistd::sync();
    Ok(())
}
