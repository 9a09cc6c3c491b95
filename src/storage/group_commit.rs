//! Group commit for the filesystem driver's staged writes (manifest content, links, tags).
//!
//! Making a small write durable costs a wait for the disk: a journal commit and a cache flush,
//! about a millisecond on most disks, and a manifest PUT needs one per stage (content, then the
//! links naming it, then the tag). Requests in flight together therefore share their waits:
//! each writes its content to temporary files itself, in parallel with the others, then hands
//! the rest to one committer thread. That thread runs cycles of "rename what may be renamed,
//! then sync", and each cycle's syncs move every request in flight one step on, whatever step
//! each is at.
//!
//! A cycle syncs only what its requests wrote, all at once: `fdatasync` of the temporaries
//! (and moved files) whose content must be durable before their rename, `fsync` of the
//! directories renamed into, and of the parents of directories made on the way (a new tag's
//! `<tag>/current/`). The syncs of one cycle run side by side, so the filesystem folds them
//! into one journal commit: one wait for the disk per cycle, as `syncfs` gave, without
//! writing out what other programs left dirty on the same filesystem (a database, logs),
//! which `syncfs` made every registry write wait for, and them for ours.
//!
//! A request whose files are all new content (a manifest PUT) skips the stages: the
//! committer appends its intent to the journal (see [`super::journal`]), whose one sync in the
//! cycle makes it durable, then puts all its files in place and answers: one wait for the
//! disk. The request itself only makes their directories beforehand; files not there yet are
//! written in place directly (no temporary, no rename: the record repairs a torn one at
//! replay), a file that is there is replaced through a temporary.
//!
//! Order and atomicity are those of [`super::StorageDriver::put_staged`] for every request:
//! all its content is written to temporary names and made durable first; then, stage by
//! stage, the temporaries are renamed over their targets and their directories are synced
//! before any rename of the next stage. One request's failure (a full disk while writing its
//! temporaries, a failed rename) fails that request alone; a failed sync fails every request
//! in flight, since none of them can know what of theirs is durable.

use super::durable;
use super::journal::{self, Journal, Sealed};
use super::side_by_side;
use super::{StorageError, StoragePath, StorageResult};
use bytes::Bytes;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;

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
    /// Its journal record, when every file is new content.
    record: Option<Vec<u8>>,
    done: Answer,
}

type Answer = tokio::sync::oneshot::Sender<StorageResult<()>>;

/// What the committer is asked.
enum Work {
    Put(Job),
    /// Make every acknowledged write durable in place (an empty journal).
    Checkpoint(Answer),
    /// The same, then remove the journal: the process stops.
    Close(Answer),
}

/// The queue in front of the committer thread.
#[derive(Debug)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Work>,
    /// Records in the journal, as of the last answer: 0 means nothing acknowledged waits
    /// for a checkpoint.
    journaled: Arc<AtomicUsize>,
    /// Whether the committer keeps a journal.
    journal: bool,
}

/// How long the committer waits idle before checkpointing the journal.
const IDLE: std::time::Duration = std::time::Duration::from_millis(200);

impl GroupCommit {
    /// Starts the committer thread; with `journal`, keeping a journal in that directory (the
    /// store's root) if one can be made there.
    pub fn start(journal: Option<&Path>) -> io::Result<GroupCommit> {
        let (queue, work) = mpsc::channel();
        let journal = match journal.map(Journal::create) {
            None => None,
            Some(Ok(j)) => Some(j),
            Some(Err(e)) => {
                tracing::warn!(
                    "cannot make a journal beside the store: {e}; manifest writes wait for the disk once per stage"
                );
                None
            }
        };
        let journaled = journal
            .as_ref()
            .map(Journal::shared_count)
            .unwrap_or_default();
        let has_journal = journal.is_some();
        std::thread::Builder::new()
            .name("registry-commit".into())
            .spawn(move || run(work, journal))?;
        Ok(GroupCommit {
            queue,
            journaled,
            journal: has_journal,
        })
    }

    /// Makes every acknowledged write durable in place before a write that does not go
    /// through the journal (a replay of an older record must not undo it).
    pub async fn checkpoint(&self) -> StorageResult<()> {
        if self.journaled.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        self.ask(Work::Checkpoint).await
    }

    /// Checkpoints and removes the journal, for a clean stop.
    pub async fn close(&self) -> StorageResult<()> {
        self.ask(Work::Close).await
    }

    async fn ask(&self, work: impl FnOnce(Answer) -> Work) -> StorageResult<()> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.queue.send(work(done)).map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }

    /// Writes `stages` durably, in order, together with whatever else is queued. The
    /// temporaries are written by the request itself, on the blocking pool and in parallel
    /// with other requests; the committer only syncs and renames.
    pub async fn put_staged(&self, stages: Vec<Vec<StagedFile>>) -> StorageResult<()> {
        let (done, result) = tokio::sync::oneshot::channel();
        let queue = self.queue.clone();
        let journal = self.journal;
        // Written and queued in one blocking task: once its temporaries exist, a job always
        // reaches the committer (which renames or removes them), even if the request that
        // asked for it has gone away meanwhile.
        let queued = tokio::task::spawn_blocking(move || -> StorageResult<()> {
            let record = journal.then(|| record_of(&stages)).flatten();
            // A journaled job's files are written in place once its record is durable
            // (see [`Member::put_all_in_place`]): only their directories are made here.
            let temps = match record {
                Some(_) => make_directories(&stages).map(|_| Vec::new())?,
                None => write_temporaries(&stages)?,
            };
            let job = Job {
                stages,
                temps,
                record,
                done,
            };
            if let Err(mpsc::SendError(Work::Put(job))) = queue.send(Work::Put(job)) {
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
    let temps = write_temporaries(&stages)?;
    let (done, mut result) = tokio::sync::oneshot::channel();
    let mut active = vec![Member::new(Job {
        stages,
        temps,
        record: None,
        done,
    })];
    while !active.is_empty() {
        cycle(&mut active, None);
    }
    result.try_recv().unwrap_or_else(|_| Err(gone()))
}

fn gone() -> StorageError {
    StorageError::Io {
        path: String::new(),
        source: io::Error::other("the storage commit thread has stopped"),
    }
}

/// The journal record of `stages` if every file is new content (moved files are not in
/// the journal: their content would have to be synced first anyway).
fn record_of(stages: &[Vec<StagedFile>]) -> Option<Vec<u8>> {
    let mut files = Vec::new();
    for (path, _, source) in stages.iter().flatten() {
        match source {
            Source::Content(c) => files.push((path, &c[..])),
            Source::Moved(_) => return None,
        }
    }
    Some(journal::encode(files.into_iter()))
}

fn run(work: mpsc::Receiver<Work>, mut journal: Option<Journal>) {
    // Without its own thread (it could not be started), checkpoints run here, between
    // cycles, as they did before segments.
    let checkpointer = journal.as_ref().and_then(|_| {
        Checkpointer::start()
            .inspect_err(|e| {
                tracing::warn!("cannot start the journal's checkpoint thread ({e}); manifest writes wait for its checkpoints")
            })
            .ok()
    });
    let checkpointer = checkpointer.as_ref();
    let mut active: Vec<Member> = Vec::new();
    // Asked for a checkpoint (false) or a close (true).
    let mut asked: Vec<(Answer, bool)> = Vec::new();
    let take = |w: Work, active: &mut Vec<Member>, asked: &mut Vec<(Answer, bool)>| match w {
        Work::Put(j) => active.push(Member::new(j)),
        Work::Checkpoint(a) => asked.push((a, false)),
        Work::Close(a) => asked.push((a, true)),
    };
    loop {
        if active.is_empty() && asked.is_empty() {
            let pending = journal.as_ref().is_some_and(|j| !j.is_empty());
            let next = match pending {
                true => work
                    .recv_timeout(IDLE)
                    .map_err(|e| e == RecvTimeoutError::Timeout),
                false => work.recv().map_err(|_| false),
            };
            match next {
                Ok(w) => take(w, &mut active, &mut asked),
                Err(true) => {
                    // Idle: the segment goes to be checkpointed, unless one still is (then
                    // it waits for the next idle moment).
                    if let Some(j) = journal.as_mut() {
                        if checkpointer.is_none_or(Checkpointer::idle) {
                            settle(j, checkpointer, None);
                        }
                    }
                    continue;
                }
                Err(false) => break,
            }
        }
        while active.len() < MAX_BATCH {
            match work.try_recv() {
                Ok(w) => take(w, &mut active, &mut asked),
                Err(_) => break,
            }
        }
        if !active.is_empty() {
            cycle(&mut active, journal.as_mut());
        }
        // Sealed even while an earlier segment is being checkpointed: segments queue, and
        // directories noted do not pile up to [`durable`]'s own bound (past which a request
        // syncs them all itself, holding up every other).
        if let Some(j) = journal.as_mut() {
            if j.is_full() || durable::noted() >= NOTED_DUE {
                settle(j, checkpointer, None);
            }
        }
        if asked.is_empty() {
            continue;
        }
        if asked.iter().any(|(_, close)| *close) {
            // Later writes (none are expected) go through the stages.
            let result = match journal.take() {
                Some(j) => close(j, checkpointer),
                None => Ok(()),
            };
            for (answer, _) in asked.drain(..) {
                let _ = answer.send(result.as_ref().map(|_| ()).map_err(sync_error));
            }
            continue;
        }
        for (answer, _) in asked.drain(..) {
            match journal.as_mut() {
                Some(j) => settle(j, checkpointer, Some(answer)),
                None => {
                    let _ = answer.send(Ok(()));
                }
            }
        }
    }
    if let Some(j) = journal {
        if let Err((path, e)) = close(j, checkpointer) {
            tracing::warn!("closing the journal: {}: {e}", path.display());
        }
    }
}

/// Directories made and not yet synced past which a checkpoint is due: each one is a sync
/// in the checkpoint, and [`durable`] syncs them itself past its own bound. A manifest PUT
/// makes up to seven: about 2,300 PUTs, near [`journal`]'s bound in records.
const NOTED_DUE: usize = 16384;

/// Has every record of `j` made durable in place, then `answer` answered: its segment
/// sealed and handed to the checkpoint thread, the committer going on at once; or, without
/// that thread (or when no new segment can be made), checkpointed here.
fn settle(j: &mut Journal, checkpointer: Option<&Checkpointer>, answer: Option<Answer>) {
    let reply = |answer: Option<Answer>, r: &Result<(), (PathBuf, io::Error)>| {
        if let Some(a) = answer {
            let _ = a.send(r.as_ref().map(|_| ()).map_err(sync_error));
        }
    };
    let Some(c) = checkpointer else {
        let r = checkpoint(j);
        if let Err((path, e)) = &r {
            tracing::warn!("checkpoint of the journal: {}: {e}", path.display());
        }
        return reply(answer, &r);
    };
    if !j.is_empty() {
        match j.rotate() {
            Ok(sealed) => c.send(Chore::Seal(Box::new(sealed))),
            Err(e) => {
                tracing::warn!("cannot begin a new journal segment ({e}); checkpointing in place");
                let r = c.drain().and_then(|_| checkpoint(j));
                return reply(answer, &r);
            }
        }
    }
    if let Some(a) = answer {
        c.send(Chore::Wait(a));
    }
}

/// A clean stop: every segment checkpointed, then the journal removed.
fn close(mut j: Journal, checkpointer: Option<&Checkpointer>) -> Result<(), (PathBuf, io::Error)> {
    if let Some(c) = checkpointer {
        c.drain()?;
    }
    checkpoint(&mut j)?;
    j.remove()
}

/// What the checkpoint thread is asked.
enum Chore {
    /// Checkpoint this segment, after those handed over before it.
    Seal(Box<Sealed>),
    /// Answer once every segment handed over before is checkpointed.
    Wait(Answer),
}

/// The thread that checkpoints sealed segments, in order, while the committer goes on.
struct Checkpointer {
    chores: mpsc::Sender<Chore>,
    /// Segments handed over and not yet checkpointed.
    sealed: Arc<AtomicUsize>,
}

/// How long a failed checkpoint waits before it is tried again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

impl Checkpointer {
    fn start() -> io::Result<Checkpointer> {
        let (chores, todo) = mpsc::channel();
        let sealed = Arc::new(AtomicUsize::new(0));
        let count = sealed.clone();
        std::thread::Builder::new()
            .name("registry-checkpoint".into())
            .spawn(move || checkpoints(todo, count))?;
        Ok(Checkpointer { chores, sealed })
    }

    /// No segment waits for its checkpoint.
    fn idle(&self) -> bool {
        self.sealed.load(Ordering::Acquire) == 0
    }

    fn send(&self, chore: Chore) {
        if let Chore::Seal(_) = chore {
            self.sealed.fetch_add(1, Ordering::AcqRel);
        }
        // The thread is gone (it never stops before the committer): say so.
        if let Err(mpsc::SendError(Chore::Wait(a))) = self.chores.send(chore) {
            let _ = a.send(Err(gone()));
        }
    }

    /// Waits, on the committer's thread, until every segment handed over is checkpointed.
    fn drain(&self) -> Result<(), (PathBuf, io::Error)> {
        let (answer, result) = tokio::sync::oneshot::channel();
        self.send(Chore::Wait(answer));
        match result.blocking_recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err((PathBuf::new(), io::Error::other(e.to_string()))),
            Err(_) => Err((
                PathBuf::new(),
                io::Error::other("the checkpoint thread stopped"),
            )),
        }
    }
}

/// The checkpoint thread: segments in the order they were sealed; a failed one is tried
/// again (every [`RETRY`]) before any later one, and whoever waits for it is told.
fn checkpoints(todo: mpsc::Receiver<Chore>, sealed: Arc<AtomicUsize>) {
    let mut queue: std::collections::VecDeque<Box<Sealed>> = Default::default();
    // Segments handed over, and checkpointed, since the start.
    let (mut handed, mut done) = (0u64, 0u64);
    let mut waiting: Vec<(u64, Answer)> = Vec::new();
    let mut failed = false;
    loop {
        let chore = if queue.is_empty() {
            match todo.recv() {
                Ok(c) => Some(c),
                Err(_) => break,
            }
        } else if failed {
            match todo.recv_timeout(RETRY) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                // The process is stopping: what is left is replayed at the next start.
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            todo.try_recv().ok()
        };
        match chore {
            Some(Chore::Seal(s)) => {
                queue.push_back(s);
                handed += 1;
            }
            Some(Chore::Wait(a)) => waiting.push((handed, a)),
            None => {}
        }
        let mut failure = None;
        if let Some(front) = queue.front_mut() {
            let started = std::time::Instant::now();
            match front.checkpoint(&side_by_side) {
                Ok(()) => {
                    tracing::debug!(
                        ms = started.elapsed().as_secs_f64() * 1000.0,
                        "journal segment checkpointed"
                    );
                    queue.pop_front();
                    done += 1;
                    sealed.fetch_sub(1, Ordering::AcqRel);
                }
                Err(e) => {
                    tracing::warn!("checkpoint of the journal: {}: {}", e.0.display(), e.1);
                    failure = Some(e);
                }
            }
        }
        failed = failure.is_some();
        let mut i = 0;
        while i < waiting.len() {
            if waiting[i].0 <= done {
                let _ = waiting.swap_remove(i).1.send(Ok(()));
            } else if let Some(f) = &failure {
                let _ = waiting.swap_remove(i).1.send(Err(sync_error(f)));
            } else {
                i += 1;
            }
        }
    }
}

fn sync_error((path, e): &(PathBuf, io::Error)) -> StorageError {
    StorageError::io(path.display(), io::Error::new(e.kind(), e.to_string()))
}

/// Syncs the files the journal's records put in place, and the directories made on the
/// way, then empties the journal.
fn checkpoint(j: &mut Journal) -> Result<(), (PathBuf, io::Error)> {
    let created = durable::take_created();
    let parents = durable::parents(&created)
        .into_iter()
        .map(Path::to_path_buf)
        .collect::<Vec<_>>();
    let r = j.checkpoint(parents, &side_by_side);
    if r.is_err() {
        durable::give_back_created(created);
    }
    r
}

/// One cycle: every member past its content sync renames its next stage; then what the
/// cycle needs durable is synced (see the module's note); members with nothing left are
/// answered and leave.
fn cycle(active: &mut Vec<Member>, mut journal: Option<&mut Journal>) {
    // Cycles of put_staged_alone may run at once: one at a time, so that a directory made
    // for one request is durable before another that renames into it is answered.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = std::time::Instant::now();
    let in_flight = active.len();
    let mut syncs = Syncs::default();
    let mut records = Vec::new();
    for m in active.iter_mut() {
        m.step(journal.is_some(), &mut syncs, &mut records);
    }
    // Taken after the renames (which may make a directory again): a directory is made
    // before the temporary written into it, and that before its request joined. A cycle of
    // journaled requests alone leaves them to the checkpoint (replay makes them again).
    // Those taken by a journal segment's checkpoint (which runs on its own thread) and not
    // yet synced are synced here too: a request here may have found one made.
    let staged = !syncs.files.is_empty() || !syncs.dirs.is_empty();
    let (created, sealing) = if staged {
        durable::take_created_and_sealing()
    } else {
        Default::default()
    };
    syncs.dirs.extend(
        durable::parents(&created)
            .into_iter()
            .chain(durable::parents(&sealing))
            .map(Path::to_path_buf),
    );
    let appended = append_intents(active, journal.as_deref_mut(), &records, &mut syncs);
    match syncs.run() {
        Err(failure) => {
            // Their parents may not be durable: a later cycle syncs them again.
            durable::give_back_created(created);
            if let (Some(j), Some(undo)) = (journal.as_deref_mut(), appended) {
                // Failed requests must not come back in a replay.
                j.undo(undo);
            }
            // None of the members can know what of theirs is durable.
            for m in active.iter_mut().filter(|m| m.failed.is_none()) {
                m.fail(sync_error(&failure));
            }
        }
        Ok(()) => {
            let (ready, rest): (Vec<Member>, Vec<Member>) = std::mem::take(active)
                .into_iter()
                .partition(|m| m.journaled && m.failed.is_none());
            let ready = put_in_place(ready);
            if let Some(j) = journal {
                for m in &ready {
                    for full in m.targets().take(m.next) {
                        j.applied(full);
                    }
                }
            }
            active.extend(ready);
            active.extend(rest);
        }
    }
    tracing::trace!(
        in_flight,
        journaled = active.iter().filter(|m| m.journaled).count(),
        files = syncs.files.len(),
        dirs = syncs.dirs.len(),
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "commit cycle"
    );
    answer_finished(active);
}

/// Appends the intents of the members journaled this cycle to the journal, which the cycle
/// then syncs; `None` (the members failed) when the append fails, or with nothing to append.
fn append_intents(
    active: &mut [Member],
    journal: Option<&mut Journal>,
    records: &[u8],
    syncs: &mut Syncs,
) -> Option<journal::Undo> {
    let j = journal.filter(|_| !records.is_empty())?;
    let count = active.iter().filter(|m| m.journaled).count();
    match j.append(records, count) {
        Ok(undo) => {
            syncs.files.push((j.path().to_path_buf(), j.file()));
            Some(undo)
        }
        Err(e) => {
            let failure = (j.path().to_path_buf(), e);
            for m in active.iter_mut().filter(|m| m.journaled) {
                m.fail(sync_error(&failure));
            }
            None
        }
    }
}

/// Counts the cycle for every member; answers those that failed or have every stage in
/// place, which leave.
fn answer_finished(active: &mut Vec<Member>) {
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

/// Threads renaming the files of a cycle's journaled requests side by side, at most.
const RENAME_THREADS: usize = 4;

/// Puts the files of journaled requests whose records are durable in place, and gives the
/// requests back. A rename waits for the filesystem's journal as often as it works (a fifth
/// of a millisecond each, on a busy disk, four per manifest PUT): requests whose files all
/// go to different places are renamed side by side; where two go to one place, all in
/// order, one after the other. A request lost to a panic drops its answer (its client gets
/// an error) and is left to the journal's checkpoint.
fn put_in_place(mut ready: Vec<Member>) -> Vec<Member> {
    let distinct = {
        let mut seen = std::collections::HashSet::new();
        ready
            .iter()
            .flat_map(|m| m.targets())
            .all(|t| seen.insert(t))
    };
    if !distinct || ready.len() < 2 {
        ready.iter_mut().for_each(|m| m.put_all_in_place());
        return ready;
    }
    let shares = side_by_side::shares(ready, RENAME_THREADS);
    side_by_side::map(shares, |mut share| {
        share.iter_mut().for_each(|m| m.put_all_in_place());
        share
    })
    .into_iter()
    .flatten()
    .flatten()
    .collect()
}

/// What one cycle makes durable.
#[derive(Default)]
struct Syncs {
    /// Files whose content must be on disk (`fdatasync`), open since they were written
    /// (a path could name another file by now), with their paths for errors.
    files: Vec<(PathBuf, Arc<File>)>,
    /// Directories whose entries must be (`fsync`).
    dirs: std::collections::BTreeSet<PathBuf>,
}

/// Syncs issued side by side in a cycle, at most: enough for the filesystem to fold them
/// into one journal commit, few enough to stay cheap to start.
const SYNC_THREADS: usize = 8;

/// Syncs `files` (`fdatasync`) and `dirs` (`fsync`) side by side; the first failure.
pub(super) fn side_by_side(
    files: Vec<(PathBuf, Arc<File>)>,
    dirs: Vec<PathBuf>,
) -> Result<(), (PathBuf, io::Error)> {
    Syncs {
        files,
        dirs: dirs.into_iter().collect(),
    }
    .run()
}

impl Syncs {
    /// Syncs everything, side by side; the first failure, with its path.
    fn run(&self) -> Result<(), (PathBuf, io::Error)> {
        let work: Vec<(PathBuf, Option<Arc<File>>)> = self
            .files
            .iter()
            .map(|(path, f)| (path.clone(), Some(f.clone())))
            .chain(self.dirs.iter().map(|d| (d.clone(), None)))
            .collect();
        if work.is_empty() {
            return Ok(());
        }
        #[cfg(test)]
        tests::record(&work);
        let shares = side_by_side::shares(work, SYNC_THREADS);
        let synced = side_by_side::map(shares, |share| {
            share.iter().try_for_each(|(path, file)| {
                let synced = match file {
                    Some(f) => f.sync_data(),
                    None => durable::fsync_dir_if_there(path),
                };
                synced.map_err(|e| (path.clone(), e))
            })
        });
        synced.into_iter().try_for_each(|r| {
            r.unwrap_or_else(|| Err((PathBuf::new(), io::Error::other("a sync panicked"))))
        })
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
    /// Its intent is in the journal's batch of this cycle.
    journaled: bool,
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
            journaled: false,
            job,
        }
    }

    /// This member's part of a cycle: just joined, its intent goes to the journal (`records`)
    /// or its content to the syncs; after that, its next stage is renamed into place and
    /// the directories renamed into are synced.
    fn step(&mut self, journaling: bool, syncs: &mut Syncs, records: &mut Vec<u8>) {
        if self.failed.is_some() {
            return;
        }
        if self.synced == 0 {
            if let (true, Some(record)) = (journaling, self.job.record.take()) {
                // Its intent: made durable by this cycle, all its files renamed after it.
                records.extend_from_slice(&record);
                self.journaled = true;
                return;
            }
            if self.job.record.is_some() && self.temps.is_empty() {
                // Journaled when it joined, but the journal is gone (a close): staged
                // like the others, its temporaries written here.
                self.job.record = None;
                match write_temporaries(&self.job.stages) {
                    Ok(temps) => self.temps = temps,
                    Err(e) => return self.fail(e),
                }
            }
            // Its content: made durable by this cycle, renamed by the next.
            syncs
                .files
                .extend(self.temps.iter().map(|r| (r.from.clone(), r.file.clone())));
            return;
        }
        let Some(stage) = self.stages.get(self.synced - 1).copied() else {
            return;
        };
        let mut error = None;
        for (path, full, _) in &self.job.stages[stage] {
            if let Err(e) = durable::rename_into_place(&self.temps[self.next].from, full) {
                error = Some(StorageError::io(path, e));
                break;
            }
            if let Some(dir) = full.parent() {
                syncs.dirs.insert(dir.to_path_buf());
            }
            self.next += 1;
        }
        if let Some(e) = error {
            self.fail(e);
        }
    }

    /// A journaled request, its intent durable: every file put in place, in order, for
    /// its segment's checkpoint to sync (the first `next` of [`Member::targets`]). A file
    /// that is not there yet is written in place directly: no temporary, no rename. A crash
    /// mid-write leaves it torn, but its record stays in the journal until the checkpoint
    /// has synced it, and replay writes it whole again. One that is there (a tag moved) is
    /// replaced through a temporary, so that readers see the old content or the new.
    fn put_all_in_place(&mut self) {
        for k in 0..self.stages.len() {
            let stage = self.stages[k];
            for f in 0..self.job.stages[stage].len() {
                let (path, full, source) = &self.job.stages[stage][f];
                let put = match source {
                    Source::Content(content) => write_in_place(full, content),
                    Source::Moved(_) => Err(io::Error::other("a moved file is never journaled")),
                };
                if let Err(e) = put {
                    let e = StorageError::io(path, e);
                    self.fail(e);
                    return;
                }
                self.next += 1;
            }
        }
        self.synced = self.stages.len();
    }

    /// Where its files go, in order.
    fn targets(&self) -> impl Iterator<Item = &Path> {
        self.job
            .stages
            .iter()
            .flatten()
            .map(|(_, full, _)| full.as_path())
    }

    fn fail(&mut self, e: StorageError) {
        // (A journaled request has no temporaries: it writes in place.)
        remove_temporaries(self.temps.get(self.next..).unwrap_or_default());
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
    /// `from`, open: its content is synced through this.
    file: Arc<File>,
    temporary: bool,
}

fn remove_temporaries(renames: &[Rename]) {
    for r in renames.iter().filter(|r| r.temporary) {
        let _ = fs::remove_file(&r.from);
    }
}

/// Makes the directories of every file of `stages` (a journaled job's, which writes its
/// files in place once its record is durable).
fn make_directories(stages: &[Vec<StagedFile>]) -> StorageResult<()> {
    for (path, full, _) in stages.iter().flatten() {
        durable::create_parent(full).map_err(|e| StorageError::io(path, e))?;
    }
    Ok(())
}

/// Puts `content` at `full`, whose journal record is durable: written in place if no file
/// is there (removed again if the write fails: the record, not a torn file, is what a
/// replay relies on), else through a temporary renamed over it.
fn write_in_place(full: &Path, content: &[u8]) -> io::Result<()> {
    let create = || {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(full)
    };
    let created = match create() {
        // Its directory went away meanwhile (see [`durable::create_beside`]).
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            durable::create_parent(full).and_then(|_| create())
        }
        r => r,
    };
    match created {
        Ok(mut f) => f.write_all(content).inspect_err(|_| {
            let _ = fs::remove_file(full);
        }),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let tmp = durable::temp_name(full);
            let r = durable::create_beside(full, &tmp)
                .and_then(|mut f| f.write_all(content))
                .and_then(|_| durable::rename_into_place(&tmp, full));
            if r.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            r
        }
        Err(e) => Err(e),
    }
}

/// Writes every new file of `stages` to a temporary name beside its target and starts its
/// writeback; moved files are only checked to exist. On failure removes what it wrote.
fn write_temporaries(stages: &[Vec<StagedFile>]) -> StorageResult<Vec<Rename>> {
    let mut temps = Vec::new();
    for (path, full, source) in stages.iter().flatten() {
        let written = match source {
            Source::Content(content) => {
                let tmp = durable::temp_name(full);
                let r = durable::create_beside(full, &tmp).and_then(|mut f| {
                    f.write_all(content)?;
                    durable::start_writeback(&f, 0, content.len() as u64);
                    Ok(f)
                });
                if r.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                r.map(|f| Rename {
                    from: tmp,
                    file: Arc::new(f),
                    temporary: true,
                })
            }
            // Written and closed by the caller: the first sync makes it durable.
            Source::Moved(from) => durable::create_parent(full)
                .and_then(|_| File::open(from))
                .map(|f| Rename {
                    from: from.clone(),
                    file: Arc::new(f),
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
    }
    Ok(temps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Every sync of every cycle in this process: (cycle, path, is a directory).
    static SYNCED: Mutex<Vec<(usize, PathBuf, bool)>> = Mutex::new(Vec::new());
    static CYCLES: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn record(work: &[(PathBuf, Option<Arc<File>>)]) {
        let cycle = CYCLES.fetch_add(1, Ordering::Relaxed);
        let mut synced = SYNCED.lock().expect("recorder");
        synced.extend(work.iter().map(|(p, f)| (cycle, p.clone(), f.is_none())));
    }

    /// The cycle in which `path` was synced as a directory (or, with `dir` false, a file
    /// in `path`'s directory whose name starts with `prefix` was synced).
    fn cycle_of(path: &Path, dir: bool, prefix: &str) -> Option<usize> {
        let synced = SYNCED.lock().expect("recorder");
        synced.iter().find_map(|(cycle, p, d)| {
            let hit = match dir {
                true => *d && p == path,
                false => {
                    !*d && p.parent() == Some(path)
                        && p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(prefix))
                }
            };
            hit.then_some(*cycle)
        })
    }

    #[test]
    fn a_staged_write_syncs_its_content_its_directories_and_the_parents_of_new_ones_in_order() {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = root.path().join("repo");
        fs::create_dir(&repo).expect("repo");
        let path = |p: &str| StoragePath::new([p]).expect("path");
        let revision = repo.join("_manifests/revisions/sha256/ab");
        let current = repo.join("_manifests/tags/t/current");
        let stages = vec![
            vec![(
                path("data"),
                revision.join("data"),
                Source::Content(Bytes::from_static(b"{}")),
            )],
            vec![(
                path("link"),
                current.join("link"),
                Source::Content(Bytes::from_static(b"sha256:ab")),
            )],
        ];
        put_staged_alone(stages).expect("staged");
        let content = cycle_of(&revision, false, ".data.tmp-").expect("content synced");
        assert_eq!(cycle_of(&current, false, ".link.tmp-"), Some(content));
        // Each directory made on the way is in its parent durably with the content.
        for made in [
            "_manifests",
            "_manifests/revisions",
            "_manifests/revisions/sha256",
            "_manifests/revisions/sha256/ab",
            "_manifests/tags",
            "_manifests/tags/t",
            "_manifests/tags/t/current",
        ] {
            let parent = repo.join(made).parent().expect("parent").to_path_buf();
            assert_eq!(cycle_of(&parent, true, ""), Some(content), "{made}");
        }
        // Then each stage's rename, in its own later cycle.
        let first = cycle_of(&revision, true, "").expect("revision directory synced");
        let second = cycle_of(&current, true, "").expect("tag directory synced");
        assert!(
            content < first && first < second,
            "{content} {first} {second}"
        );
        assert_eq!(fs::read(current.join("link")).expect("link"), b"sha256:ab");
    }

    /// A directory made for a write that never commits (an upload) may be gone, with its
    /// parent, by the time a commit syncs the parents of new directories: nothing to sync.
    #[test]
    fn directories_removed_before_the_commit_do_not_fail_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let upload = root.path().join("_uploads/u1/data");
        durable::create_parent(&upload).expect("upload directory");
        fs::remove_dir_all(root.path().join("_uploads")).expect("purged");
        let path = StoragePath::new(["link"]).expect("path");
        let link = root.path().join("tags/t/current/link");
        let stages = vec![vec![(
            path,
            link.clone(),
            Source::Content(Bytes::from_static(b"sha256:ab")),
        )]];
        put_staged_alone(stages).expect("staged");
        assert_eq!(fs::read(link).expect("link"), b"sha256:ab");
    }

    /// With a journal, a write of new content is answered once its record is durable, its
    /// files already in place; an idle committer has the journal checkpointed (a new
    /// segment begins, the old one goes), a close removes it.
    #[tokio::test]
    async fn journaled_writes_land_and_the_journal_empties_then_goes() {
        let root = tempfile::tempdir().expect("tempdir");
        let c = GroupCommit::start(Some(root.path())).expect("committer");
        // Every segment of the journal, and the bytes each holds.
        let journal = || -> Vec<(PathBuf, u64)> {
            let mut v: Vec<_> = fs::read_dir(root.path())
                .expect("root")
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .is_some_and(|n| n.starts_with(".docker-registry-journal-"))
                })
                // Records, not bytes: a reused segment's file holds its earlier use's.
                .map(|e| (e.path(), journal::records_in(&e.path()) as u64))
                .collect();
            v.sort();
            v
        };
        let tag = root.path().join("tags/t/current/link");
        let stage = |content: &'static [u8]| {
            vec![
                vec![(
                    StoragePath::new(["data"]).expect("path"),
                    root.path().join("data"),
                    Source::Content(Bytes::from_static(b"{}")),
                )],
                vec![(
                    StoragePath::new(["tags/t/current/link"]).expect("path"),
                    tag.clone(),
                    Source::Content(Bytes::from_static(content)),
                )],
            ]
        };
        c.put_staged(stage(b"sha256:1")).await.expect("first");
        assert_eq!(fs::read(&tag).expect("tag"), b"sha256:1");
        let first = journal();
        assert!(first.len() == 1 && first[0].1 > 0, "{first:?}");
        c.put_staged(stage(b"sha256:2")).await.expect("second");
        assert_eq!(fs::read(&tag).expect("tag"), b"sha256:2");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let now = journal();
            if now.len() == 1 && now[0].1 == 0 && now[0].0 != first[0].0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never checkpointed: {now:?}"
            );
            std::thread::sleep(IDLE / 4);
        }
        c.put_staged(stage(b"sha256:3")).await.expect("third");
        assert!(journal().iter().any(|(_, len)| *len > 0));
        c.checkpoint().await.expect("checkpoint");
        assert!(
            journal().iter().all(|(_, len)| *len == 0),
            "{:?}",
            journal()
        );
        assert_eq!(c.journaled.load(Ordering::Acquire), 0);
        c.close().await.expect("close");
        assert!(journal().is_empty(), "a clean stop leaves no journal");
        assert_eq!(fs::read(&tag).expect("tag"), b"sha256:3");
    }

    /// A checkpoint runs beside the commits: while a sealed segment waits for its
    /// checkpoint, journaled writes are still answered, and a checkpoint asked for answers
    /// only once every segment sealed before it is checkpointed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_go_on_while_a_segment_is_checkpointed() {
        let root = tempfile::tempdir().expect("tempdir");
        let c = GroupCommit::start(Some(root.path())).expect("committer");
        let put = |i: usize| {
            let root = root.path().to_path_buf();
            let c = &c;
            async move {
                let link = root.join(format!("r{}/tags/t{i}/current/link", i % 7));
                let stages = vec![vec![(
                    StoragePath::new(["link"]).expect("path"),
                    link,
                    Source::Content(Bytes::from(format!("sha256:{i}"))),
                )]];
                c.put_staged(stages).await
            }
        };
        // Past CHECKPOINT_RECORDS, so that segments are sealed while writes go on.
        let n = 600;
        let mut all = Vec::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
            let batch = futures_util::future::join_all(chunk.iter().map(|&i| put(i))).await;
            all.extend(batch);
        }
        assert!(all.iter().all(|r| r.is_ok()));
        c.checkpoint().await.expect("checkpoint");
        assert_eq!(c.journaled.load(Ordering::Acquire), 0);
        for i in 0..n {
            let link = root
                .path()
                .join(format!("r{}/tags/t{i}/current/link", i % 7));
            assert_eq!(
                fs::read(link).expect("link"),
                format!("sha256:{i}").as_bytes()
            );
        }
        c.close().await.expect("close");
    }
}
