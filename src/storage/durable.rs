//! Writing a file so that a crash leaves the old content or the new, never half of either:
//! the temporary beside its target (named so that leftover removal knows it, and knows
//! whose it is), the rename into place, the directory fsync and the writeback hint. Shared
//! by the filesystem driver and its group commit.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Makes a directory's entries (a file created or renamed in it) durable.
pub(super) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes the directory `full` goes in, and those above it. Each directory made is noted
/// until a sync makes its entry in its parent durable ([`take_created`], [`sync_created`]):
/// without that, a crash can take the directory, and every file renamed into it, away.
///
/// The `mkdir`s run outside the list's lock (each allocates an inode: the dearest system
/// call of a manifest PUT, which makes up to seven directories), so that concurrent writers
/// make theirs side by side. A writer says which directories it is making before it makes
/// them, and notes those it made before it says it is done; a writer that finds a directory
/// made (or being made) by another waits until that one is done, so that the note is on the
/// list before its own write joins a commit, which then syncs it.
pub(super) fn create_parent(full: &Path) -> io::Result<()> {
    let Some(parent) = full.parent() else {
        return Ok(());
    };
    if parent.is_dir() {
        wait_for_makers(parent);
        return Ok(());
    }
    let mut missing = vec![parent];
    while let Some(up) = missing[missing.len() - 1].parent() {
        if up.as_os_str().is_empty() || up.is_dir() {
            break;
        }
        missing.push(up);
    }
    let id = {
        let mut n = noted_state();
        n.next += 1;
        let id = n.next;
        n.making
            .push((id, missing.iter().map(|d| d.to_path_buf()).collect()));
        id
    };
    let mut made = Vec::new();
    let mut result = Ok(());
    for dir in missing.into_iter().rev() {
        match fs::create_dir(dir) {
            Ok(()) => made.push(dir.to_path_buf()),
            // Made meanwhile by another writer, which notes it (waited for below).
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    {
        let mut n = noted_state();
        n.dirs.extend(made);
        n.making.retain(|(i, _)| *i != id);
        MADE.notify_all();
        // Directories made for writes that never commit (abandoned uploads) must not pile
        // up. (Synced holding the list: a writer finding one of them made waits for its
        // sync. The group commit checkpoints well before this bound.)
        if result.is_ok() && n.dirs.len() > MAX_NOTED {
            let dirs = std::mem::take(&mut n.dirs);
            if let Err(e) = sync_parents(&dirs) {
                n.dirs.extend(dirs);
                return Err(e);
            }
        }
    }
    result?;
    // A directory above that was found made (or made meanwhile) may be another writer's,
    // not yet noted.
    wait_for_makers(parent);
    Ok(())
}

/// Waits until no other writer is still making `dir` or a directory above it (see
/// [`create_parent`]).
fn wait_for_makers(dir: &Path) {
    let mut n = noted_state();
    while n
        .making
        .iter()
        .any(|(_, dirs)| dirs.iter().any(|d| dir.starts_with(d)))
    {
        n = MADE
            .wait(n)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// How many directories are noted, not yet synced.
pub(super) fn noted() -> usize {
    created().len()
}

/// Directories noted at most before the writer that makes one more syncs them all itself.
const MAX_NOTED: usize = 32768;

/// The directories made and not yet synced, and those being made.
struct Noted {
    /// Made by [`create_parent`]; their entries in their parents may not be durable.
    dirs: Vec<PathBuf>,
    /// Being made, outside the lock, by writer: (its number, the directories).
    making: Vec<(u64, Vec<PathBuf>)>,
    next: u64,
}

static NOTED: std::sync::Mutex<Noted> = std::sync::Mutex::new(Noted {
    dirs: Vec::new(),
    making: Vec::new(),
    next: 0,
});
/// Told whenever a writer is done making its directories.
static MADE: std::sync::Condvar = std::sync::Condvar::new();

fn noted_state() -> std::sync::MutexGuard<'static, Noted> {
    // Plain pushes and takes: a panic elsewhere leaves the list as it was.
    NOTED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Directories made by [`create_parent`] whose entry in their parent may not be durable.
fn created() -> impl std::ops::DerefMut<Target = Vec<PathBuf>> {
    struct Dirs(std::sync::MutexGuard<'static, Noted>);
    impl std::ops::Deref for Dirs {
        type Target = Vec<PathBuf>;
        fn deref(&self) -> &Vec<PathBuf> {
            &self.0.dirs
        }
    }
    impl std::ops::DerefMut for Dirs {
        fn deref_mut(&mut self) -> &mut Vec<PathBuf> {
            &mut self.0.dirs
        }
    }
    Dirs(noted_state())
}

/// Takes the directories made since the last call: whoever takes them makes their parents'
/// entries durable before any file renamed into them is acknowledged, or gives them back
/// ([`give_back_created`]).
pub(super) fn take_created() -> Vec<PathBuf> {
    std::mem::take(&mut *created())
}

/// Directories taken by [`seal_created`] for a journal segment's checkpoint, by segment,
/// until it has synced them ([`sealed_synced`]).
fn sealing() -> std::sync::MutexGuard<'static, Vec<(u64, Vec<PathBuf>)>> {
    static SEALING: std::sync::Mutex<Vec<(u64, Vec<PathBuf>)>> = std::sync::Mutex::new(Vec::new());
    SEALING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes the directories made since the last take for the checkpoint of journal segment
/// `segment`, which syncs them later, off the committer. Until it says so they stay
/// visible to [`take_created_and_sealing`]: a write that finds one of them made and does
/// not go through the journal must not be answered before its entry is durable.
pub(super) fn seal_created(segment: u64) -> Vec<PathBuf> {
    let mut noted = created();
    let dirs = std::mem::take(&mut *noted);
    sealing().push((segment, dirs.clone()));
    dirs
}

/// Segment `segment`'s checkpoint has synced what [`seal_created`] gave it.
pub(super) fn sealed_synced(segment: u64) {
    sealing().retain(|(s, _)| *s != segment);
}

/// [`take_created`], and a copy of the directories segments' checkpoints have yet to sync:
/// what a commit of writes outside the journal syncs.
pub(super) fn take_created_and_sealing() -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut noted = created();
    let taken = std::mem::take(&mut *noted);
    let sealing = sealing()
        .iter()
        .flat_map(|(_, d)| d.iter().cloned())
        .collect();
    (taken, sealing)
}

/// Notes again directories whose parents could not be synced.
pub(super) fn give_back_created(dirs: Vec<PathBuf>) {
    created().extend(dirs);
}

/// Makes durable the entries of every directory made so far, for a write that syncs
/// alone (outside the group commit).
pub(super) fn sync_created() -> io::Result<()> {
    let dirs = take_created();
    sync_parents(&dirs).inspect_err(|_| give_back_created(dirs))
}

/// The parents of `made`, each once: the directories whose entries must be synced.
pub(super) fn parents(made: &[PathBuf]) -> std::collections::BTreeSet<&Path> {
    made.iter().filter_map(|d| d.parent()).collect()
}

fn sync_parents(made: &[PathBuf]) -> io::Result<()> {
    parents(made).into_iter().try_for_each(fsync_dir_if_there)
}

/// [`fsync_dir`], where a directory removed meanwhile (a deleted tag, an emptied upload
/// area) has nothing left to make durable.
pub(super) fn fsync_dir_if_there(dir: &Path) -> io::Result<()> {
    match fsync_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// This process's mark on its temporaries: the first 8 of their 32 hex digits. Leftover
/// removal never takes a temporary that bears it, since that is a write in flight here.
pub(super) fn instance() -> &'static str {
    static INSTANCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..8].to_owned())
}

/// The temporary a small write goes through before it is renamed over `full`:
/// `.<name>.tmp-<instance><24 random hex>`.
pub(super) fn temp_name(full: &Path) -> PathBuf {
    let name = full.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut buf = uuid::Uuid::encode_buffer();
    let random = uuid::Uuid::new_v4().simple().encode_lower(&mut buf);
    full.with_file_name(format!(".{name}.tmp-{}{}", instance(), &random[..24]))
}

/// What a file name is to leftover removal.
#[derive(Debug, PartialEq)]
pub(super) enum Kind {
    /// One of [`temp_name`]'s, made by another process (or one that is gone).
    Temporary,
    /// One of this process's temporaries: a write in flight.
    OwnTemporary,
    Other,
}

pub(super) fn kind_of(name: &str) -> Kind {
    let id = match name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(".tmp-"))
    {
        Some((target, id)) if !target.is_empty() => id,
        _ => return Kind::Other,
    };
    if id.len() != 32
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Kind::Other
    } else if id.starts_with(instance()) {
        Kind::OwnTemporary
    } else {
        Kind::Temporary
    }
}

/// Creates the temporary `tmp` beside `full`, making the directory first. Once more if the
/// directory went away in between: leftover removal takes directories that hold nothing but
/// leftovers, and one may have been emptied just as this write began.
pub(super) fn create_beside(full: &Path, tmp: &Path) -> io::Result<File> {
    create_parent(full)?;
    match File::create(tmp) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_parent(full)?;
            File::create(tmp)
        }
        r => r,
    }
}

/// Renames `from` over `to`; once more, after making `to`'s directory again, if that
/// directory went away meanwhile (see [`create_beside`]).
pub(super) fn rename_into_place(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && from.exists() => {
            create_parent(to)?;
            fs::rename(from, to)
        }
        r => r,
    }
}

/// Asks the kernel to start writing a range of the file to disk, without waiting for it.
/// Only a hint: durability still comes from the staged write's sync, so failure is ignored.
pub(super) fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(off), Ok(n)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open
        // for as long as `file` is borrowed.
        unsafe {
            nix::libc::sync_file_range(file.as_raw_fd(), off, n, nix::libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, offset, len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_told_by_their_name() {
        let t = temp_name(Path::new("/r/x/link"));
        let name = t.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(kind_of(name), Kind::OwnTemporary, "{name}");
        let other = if instance().starts_with('0') {
            "1"
        } else {
            "0"
        };
        let theirs = format!(".link.tmp-{}", other.repeat(32));
        assert_eq!(kind_of(&theirs), Kind::Temporary);
        for not in [
            "link",
            ".link",
            ".link.tmp-",
            ".tmp-0123456789abcdef0123456789abcdef",
            ".link.tmp-0123456789ABCDEF0123456789ABCDEF",
            ".link.tmp-0123456789abcdef0123456789abcde",
            ".docker-registry.lock",
        ] {
            assert_eq!(kind_of(not), Kind::Other, "{not}");
        }
    }

    /// Writers make their directories side by side, outside the list's lock; one that
    /// returns finds every directory above its file on the list, whoever made it (a
    /// writer that found one made by another, not yet noted, waited for it).
    #[test]
    fn concurrent_writers_find_every_directory_they_rely_on_noted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        for round in 0..20 {
            let base = root.join(format!("r{round}"));
            std::thread::scope(|scope| {
                for i in 0..8 {
                    let base = &base;
                    scope.spawn(move || {
                        let file = base.join(format!("a/b/c{}/d{i}/link", i % 2));
                        create_parent(&file).expect("mkdir");
                        let noted = created();
                        let mut up = file.parent();
                        while let Some(d) = up.filter(|d| d.starts_with(base)) {
                            assert!(noted.iter().any(|n| n == d), "{} not noted", d.display());
                            up = d.parent();
                        }
                        drop(noted);
                        assert!(file.parent().is_some_and(Path::is_dir));
                    });
                }
            });
        }
        assert!(noted_state().making.is_empty());
    }

    /// Leftover removal may take a directory that held only leftovers just as a write
    /// begins in it: the write makes it again.
    #[test]
    fn a_write_whose_directory_went_away_makes_it_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("a/b/link");
        let tmp = temp_name(&target);
        create_parent(&target).expect("mkdir");
        fs::remove_dir_all(dir.path().join("a")).expect("rm");
        create_beside(&target, &tmp).expect("create");
        fs::remove_file(&tmp).expect("rm");
        let moved = dir.path().join("upload");
        fs::write(&moved, b"x").expect("upload");
        fs::remove_dir_all(dir.path().join("a")).expect("rm");
        rename_into_place(&moved, &target).expect("rename");
        assert_eq!(fs::read(&target).expect("read"), b"x");
        let err = rename_into_place(&moved, &target).expect_err("source gone");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
