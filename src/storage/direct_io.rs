//! Writing a blob past the page cache (`O_DIRECT`), as object stores such as MinIO do.
//!
//! A buffered write copies every byte into a page-cache page the kernel allocates for it, and
//! then writes the page out: for a pushed layer that costs as much CPU as the network
//! receive, and on a virtual machine whose host takes freed memory back (free page
//! reporting, ballooning) far more: each new page is a fault in the host. `dd` of 1 GiB
//! with `conv=fsync` on the build VM used 2.75 s of system CPU; with `oflag=direct`, 0.13 s.
//! A pushed layer is also rarely read again soon in full by this machine, while the pages
//! it would fill push out what pulls do read.
//!
//! Direct I/O wants the file offset, the length and the memory aligned to the device's
//! block. The writer copies what arrives into an [`Aligned`] buffer of [`FILL`] bytes as it
//! arrives (one copy in user space, into memory kept and handed out again and again,
//! instead of the kernel's copy into fresh pages), so the network's buffers go back to the
//! connection at once. A full buffer is written with one `pwrite` on a second descriptor
//! opened with `O_DIRECT`, on a blocking thread, while the next one fills: an upload holds
//! two such buffers at most. The last buffer, when the writer closes, is written the same
//! way up to its last whole block; its last partial block (the *carry*) goes through the
//! ordinary descriptor in the same task, so the file's last block is in the page cache and
//! the sync that publishes the blob writes it out with the file's metadata. A writer that
//! continues a file whose length is not aligned (an upload's next PATCH) starts its first
//! buffer with that file's last partial block, read back; the kernel writes out and drops
//! any cached copy of a block before a direct write replaces it.
//!
//! Where direct I/O is refused (tmpfs, some FUSE and network filesystems: `EINVAL` at open
//! or at the first write), the writer carries on with buffered writes from the same offset,
//! and the driver stops trying for the rest of the process.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Offsets, lengths and memory of direct writes are multiples of this: the largest logical
/// block of common devices (4Kn disks, NVMe), so also a multiple of 512-byte ones.
pub(crate) const ALIGN: usize = 4096;

/// Bytes gathered for one direct `pwrite`: a multiple of [`ALIGN`]. An upload holds two
/// such buffers at most (one filling, one being written).
pub(crate) const FILL: usize = 512 << 10;

/// Buffers kept for the next writer once a writer is done with them, at most (2 MiB): a
/// push after another takes them instead of fresh heap memory.
const KEPT: usize = 4;

/// Buffers kept for reuse: each is zeroed once, when made, then filled again and again.
static KEPT_ALIGNED: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// [`FILL`] bytes of memory that start on an [`ALIGN`] boundary, filled from the front;
/// kept for the next writer when dropped.
pub(crate) struct Aligned {
    space: Vec<u8>,
    /// Where the aligned part of `space` starts.
    start: usize,
    len: usize,
}

impl Aligned {
    /// An empty buffer, a kept one where there is one.
    pub fn take() -> Aligned {
        let space = KEPT_ALIGNED
            .lock()
            .ok()
            .and_then(|mut kept| kept.pop())
            .unwrap_or_else(|| vec![0u8; FILL + ALIGN]);
        // Room to start on a block boundary within one allocation; no unsafe code needed.
        // (Unaligned, should that ever fail, a direct write is refused and goes buffered.)
        let start = space.as_ptr().align_offset(ALIGN).min(ALIGN);
        Aligned {
            space,
            start,
            len: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.len == FILL
    }

    /// Copies as much of `data` as there is room for; the number of bytes taken.
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let n = (FILL - self.len).min(data.len());
        let at = self.start + self.len;
        self.space[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    pub fn bytes(&self) -> &[u8] {
        &self.space[self.start..self.start + self.len]
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        if let Ok(mut kept) = KEPT_ALIGNED.lock() {
            if kept.len() < KEPT {
                kept.push(std::mem::take(&mut self.space));
            }
        }
    }
}

/// Whether the driver writes blobs past the page cache; cleared when a filesystem refuses.
#[derive(Debug, Clone)]
pub(crate) struct DirectWrites(Arc<AtomicBool>);

impl DirectWrites {
    pub fn new(enabled: bool) -> DirectWrites {
        DirectWrites(Arc::new(AtomicBool::new(enabled)))
    }

    pub fn enabled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn refused(&self, path: &Path, e: &io::Error) {
        if self.0.swap(false, Ordering::Relaxed) {
            tracing::info!(
                "{}: the filesystem refuses direct I/O ({e}); blobs are written through the \
                 page cache from now on",
                path.display()
            );
        }
    }
}

/// The direct-I/O side of a writer: the `O_DIRECT` descriptor (opened on the first whole
/// block) and where the next buffer goes in the file.
#[derive(Debug)]
pub(crate) struct Direct {
    switch: DirectWrites,
    file: Option<File>,
    /// Tests: the filesystem refuses direct writes.
    #[cfg(test)]
    refuse: bool,
    /// Where the next buffer starts in the file: a multiple of [`ALIGN`] until a buffer that
    /// ends mid-block (the last) has been written.
    at: u64,
    /// The file's last partial block when the writer started, read back: the start of the
    /// first buffer.
    carry: Vec<u8>,
}

/// What a direct write did.
pub(crate) enum Wrote {
    /// Every byte is in the file.
    Direct,
    /// Direct I/O was refused: every byte is in the file, written through `buffered`, whose
    /// position is now the end of them. Go on with buffered writes.
    Buffered,
}

impl Direct {
    /// Starts direct writes of a file whose current length is `size`, on `buffered`: the
    /// descriptor opened without `O_APPEND`, positioned at `size`. The partial block at the
    /// end, if any, is read back, for [`Direct::take_carry`].
    pub fn start(switch: DirectWrites, buffered: &File, size: u64) -> io::Result<Direct> {
        let at = size - size % ALIGN as u64;
        let mut carry = vec![0u8; (size - at) as usize];
        buffered.read_exact_at(&mut carry, at)?;
        Ok(Direct {
            switch,
            file: None,
            #[cfg(test)]
            refuse: false,
            at,
            carry,
        })
    }

    /// The file's last partial block, read back at the start: the first buffer starts with
    /// it, since it goes at the block's start.
    pub fn take_carry(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.carry)
    }

    /// Writes `buf` (aligned memory) after what came before: its whole blocks directly, a
    /// last partial block through `buffered`. A buffer that ends mid-block must be the last
    /// one (after it, anything more is written through `buffered` too). Runs on a blocking
    /// thread.
    pub fn write(&mut self, path: &Path, buffered: &File, buf: &[u8]) -> io::Result<Wrote> {
        let whole = if self.at % ALIGN as u64 == 0 {
            buf.len() - buf.len() % ALIGN
        } else {
            0
        };
        match self.write_blocks(path, &buf[..whole]) {
            Ok(()) => {
                buffered.write_all_at(&buf[whole..], self.at + whole as u64)?;
                self.at += buf.len() as u64;
                Ok(Wrote::Direct)
            }
            Err(e) if refused(&e) => {
                self.switch.refused(path, &e);
                self.file = None;
                buffered.write_all_at(buf, self.at)?;
                let end = self.at + buf.len() as u64;
                let mut b = buffered;
                b.seek(io::SeekFrom::Start(end))?;
                Ok(Wrote::Buffered)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes whole blocks at `at` on the direct descriptor, opened by path on first use:
    /// the file's path does not change while its writer holds it (an upload's data file,
    /// under the upload's lock).
    fn write_blocks(&mut self, path: &Path, blocks: &[u8]) -> io::Result<()> {
        if blocks.is_empty() {
            return Ok(());
        }
        #[cfg(test)]
        if self.refuse {
            return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
        }
        if self.file.is_none() {
            self.file = Some(
                OpenOptions::new()
                    .write(true)
                    .custom_flags(nix::libc::O_DIRECT)
                    .open(path)?,
            );
        }
        let Some(f) = self.file.as_ref() else {
            return Err(io::Error::other("direct descriptor missing"));
        };
        let mut done = 0;
        while done < blocks.len() {
            match f.write_at(&blocks[done..], self.at + done as u64) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                // After a short write not on a block boundary the next one is refused, and
                // the caller writes all of `blocks` again through the page cache.
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Errors that mean "not with direct I/O here" rather than a failing disk.
fn refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EINVAL) | Some(nix::libc::EOPNOTSUPP)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes that differ at every offset, so a piece written at the wrong place shows.
    fn pattern(from: usize, len: usize) -> Vec<u8> {
        (from..from + len).map(|i| (i % 251) as u8).collect()
    }

    fn open(path: &Path, size: u64) -> File {
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .expect("open");
        f.seek(io::SeekFrom::Start(size)).expect("seek");
        f
    }

    /// Writes `sizes` as one writer's pieces after what `path` holds, as the filesystem's
    /// writer does: into aligned buffers, each written when full, the last when done.
    fn write_pieces(switch: &DirectWrites, path: &Path, from: usize, sizes: &[usize]) {
        let f = open(path, from as u64);
        let mut d = Direct::start(switch.clone(), &f, from as u64).expect("start");
        let mut buf = Aligned::take();
        let carry = d.take_carry();
        assert_eq!(carry, pattern(from - from % ALIGN, from % ALIGN));
        assert_eq!(buf.fill(&carry), carry.len());
        let mut at = from;
        for &n in sizes {
            let p = pattern(at, n);
            let mut rest = &p[..];
            while !rest.is_empty() {
                let k = buf.fill(rest);
                rest = &rest[k..];
                if buf.is_full() {
                    let wrote = d.write(path, &f, buf.bytes()).expect("write");
                    assert!(matches!(wrote, Wrote::Direct));
                    buf.clear();
                }
            }
            at += n;
        }
        assert!(matches!(
            d.write(path, &f, buf.bytes()).expect("last write"),
            Wrote::Direct
        ));
        assert_eq!(d.at, at as u64);
    }

    #[test]
    fn unaligned_pieces_and_a_continued_file_come_out_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data");
        let switch = DirectWrites::new(true);
        // Less than a block, then pieces crossing blocks and buffers, then a few bytes.
        let first = [100, 5000, FILL + ALIGN * 3 + 7, 3];
        write_pieces(&switch, &path, 0, &first);
        let len: usize = first.iter().sum();
        assert_eq!(std::fs::read(&path).expect("read"), pattern(0, len));
        // The next request continues at an unaligned length: the partial block is read
        // back and written again with what follows.
        let more = [ALIGN - 1, 1, 2 * FILL + 9];
        write_pieces(&switch, &path, len, &more);
        let total = len + more.iter().sum::<usize>();
        assert_eq!(std::fs::read(&path).expect("read"), pattern(0, total));
    }

    #[test]
    fn a_refused_direct_write_goes_on_through_the_page_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data");
        let switch = DirectWrites::new(true);
        let head = pattern(0, 10);
        std::fs::write(&path, &head).expect("write");
        let f = open(&path, 10);
        let mut d = Direct::start(switch.clone(), &f, 10).expect("start");
        d.refuse = true;
        let mut buf = Aligned::take();
        buf.fill(&d.take_carry());
        let p = pattern(10, 3 * ALIGN);
        buf.fill(&p);
        assert!(matches!(
            d.write(&path, &f, buf.bytes()).expect("write"),
            Wrote::Buffered
        ));
        assert!(!switch.enabled(), "the driver stops trying");
        // The caller goes on with plain writes at the descriptor's position.
        let mut f = f;
        let rest = pattern(10 + 3 * ALIGN, 5);
        std::io::Write::write_all(&mut f, &rest).expect("write");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            pattern(0, 10 + 3 * ALIGN + 5)
        );
    }
}
