//! Filesystem calls made on the request's own thread when the kernel can answer them from
//! memory: opening and stating a path whose every component is in the kernel's lookup cache
//! (`openat2` with `RESOLVE_CACHED`), and reading what the page cache holds (`preadv2` with
//! `RWF_NOWAIT`). On a registry that has been serving for a while that is nearly every call a
//! pull makes, and each one made here saves two thread switches: the hand-off to the blocking
//! pool and the wake-up back.
//!
//! Each function returns `None` when the answer would need the disk, or when the kernel or the
//! filesystem cannot answer this way (Linux before 5.12, a network filesystem that revalidates
//! its entries); the caller then makes the plain call on the blocking pool, as it always did,
//! and that call reports any error. The only error given here is "not found" from the lookup
//! cache, which is as final as the disk's.

use bytes::Bytes;
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::libc;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cleared the first time the kernel does not know `openat2` or `RESOLVE_CACHED`.
static LOOKUPS: AtomicBool = AtomicBool::new(true);

/// Opens a regular file for reading, as `File::open` does, with its metadata. Opened without
/// blocking, so that a FIFO someone left at the path cannot hold the thread (anything but a
/// regular file is left to the plain call), and then made a plain blocking descriptor again.
pub fn open(full: &Path) -> Option<io::Result<(File, Metadata)>> {
    let f = match open_with(full, OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)? {
        Ok(f) => f,
        Err(e) => return Some(Err(e)),
    };
    let meta = f.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    nix::fcntl::fcntl(
        f.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(OFlag::O_RDONLY),
    )
    .ok()?;
    Some(Ok((f, meta)))
}

/// A path's metadata, as `fs::metadata` gives it (symbolic links followed): taken from a
/// descriptor that only names the inode (`O_PATH`), which the filesystem is not asked to open.
pub fn metadata(full: &Path) -> Option<io::Result<Metadata>> {
    match open_with(full, OFlag::O_PATH | OFlag::O_CLOEXEC)? {
        Ok(f) => f.metadata().ok().map(Ok),
        Err(e) => Some(Err(e)),
    }
}

fn open_with(full: &Path, flags: OFlag) -> Option<io::Result<File>> {
    if !LOOKUPS.load(Ordering::Relaxed) {
        return None;
    }
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::from_bits_retain(libc::RESOLVE_CACHED));
    match openat2(libc::AT_FDCWD, full, how) {
        // SAFETY: the descriptor was just opened and is owned by nothing else.
        Ok(fd) => Some(Ok(unsafe { File::from_raw_fd(fd) })),
        Err(Errno::ENOENT) => Some(Err(io::Error::from(io::ErrorKind::NotFound))),
        Err(Errno::ENOSYS | Errno::EINVAL | Errno::E2BIG) => {
            LOOKUPS.store(false, Ordering::Relaxed);
            None
        }
        // EAGAIN: the lookup needs the disk. Anything else: the plain call says what it is.
        Err(_) => None,
    }
}

/// What of `buf` the page cache can fill from `file` at `offset` without waiting for the
/// disk: the bytes read, from 1 up to `buf.len()`. `None` when not even the first page is
/// there, at the end of the file, or when the read would wait for something else (a locked
/// page). An error means the filesystem does not read this way.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<Option<usize>> {
    let Ok(at) = libc::off_t::try_from(offset) else {
        return Ok(None);
    };
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: the one iovec describes `buf`, which is writable and outlives the call; the
    // descriptor is open for as long as `file` is borrowed.
    let got = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
    if got < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    Ok(match got as usize {
        0 => None,
        n => Some(n.min(buf.len())),
    })
}

/// A whole small file (at most `limit` bytes, by its size when opened) from memory, as
/// `get_content` reads it: `None` unless the lookup and every byte come from the caches, and
/// for a directory or a file over the limit, which the plain call reports.
pub fn content(full: &Path, limit: u64) -> Option<io::Result<Bytes>> {
    let (file, meta) = match open(full)? {
        Ok(opened) => opened,
        Err(e) => return Some(Err(e)),
    };
    if meta.len() > limit {
        return None;
    }
    let len = usize::try_from(meta.len()).ok()?;
    let mut buf = vec![0u8; len];
    let mut have = 0;
    while have < len {
        have += read_at(&file, &mut buf[have..], have as u64).ok()??;
    }
    Some(Ok(Bytes::from(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn answers_from_the_caches_as_the_plain_calls_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("link");
        fs::write(&file, b"sha256:abc").expect("write");
        // Just written: its entry and its page are in memory.
        let (mut f, meta) = open(&file).expect("cached lookup").expect("open");
        assert_eq!(meta.len(), 10);
        let mut s = String::new();
        io::Read::read_to_string(&mut f, &mut s).expect("read");
        assert_eq!(s, "sha256:abc");

        let meta = metadata(&file).expect("cached lookup").expect("metadata");
        let plain = fs::metadata(&file).expect("metadata");
        assert_eq!(
            (meta.len(), meta.is_dir(), meta.modified().ok()),
            (plain.len(), plain.is_dir(), plain.modified().ok())
        );
        let meta = metadata(dir.path()).expect("cached lookup").expect("dir");
        assert!(meta.is_dir());

        assert_eq!(
            &content(&file, 100).expect("cached").expect("content")[..],
            b"sha256:abc"
        );
        assert!(
            content(&file, 3).is_none(),
            "over the limit: the plain call says so"
        );
        assert!(content(dir.path(), 100).is_none(), "a directory: likewise");
        let empty = dir.path().join("empty");
        fs::write(&empty, b"").expect("write");
        assert!(content(&empty, 10)
            .expect("cached")
            .expect("empty")
            .is_empty());

        // A FIFO is left to the plain call rather than waited on here.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        assert!(open(&fifo).is_none());
        assert!(content(&fifo, 10).is_none());

        // A name the kernel has already looked up and not found is "not found" from memory.
        let missing = dir.path().join("missing");
        assert!(fs::metadata(&missing).is_err());
        let e = metadata(&missing)
            .expect("cached miss")
            .expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            open(&missing)
                .expect("cached miss")
                .expect_err("missing")
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn reads_what_the_page_cache_holds() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data");
        let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &bytes).expect("write");
        let f = File::open(&path).expect("open");
        let mut buf = vec![0u8; 8192];
        let n = read_at(&f, &mut buf, 4096).expect("read").expect("cached");
        assert!(n > 0 && n <= 8192);
        assert_eq!(&buf[..n], &bytes[4096..4096 + n]);
        // Past the end: nothing, as at the end of any read.
        assert_eq!(read_at(&f, &mut buf, 20_000).expect("read"), None);
        assert_eq!(read_at(&f, &mut buf, u64::MAX).expect("read"), None);
    }
}
