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
//! block. The writer copies what arrives into an aligned buffer (one copy in user space,
//! into memory the allocator hands out again and again, instead of the kernel's copy into
//! fresh pages), writes whole [`ALIGN`] blocks with `pwrite` on a second descriptor opened
//! with `O_DIRECT`, and keeps the last partial block (the *carry*) for the next write. When
//! the writer closes, the carry goes through the ordinary descriptor: the file's last block
//! is then in the page cache, and the sync that publishes the blob writes it out with the
//! file's metadata. A writer that continues a file whose length is not aligned (an upload's
//! next PATCH) starts with that file's last partial block read back into the carry; the
//! kernel writes out and drops any cached copy of a block before a direct write replaces it.
//!
//! Where direct I/O is refused (tmpfs, some FUSE and network filesystems: `EINVAL` at open
//! or at the first write), the writer carries on with buffered writes from the same offset,
//! and the driver stops trying for the rest of the process.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Offsets, lengths and memory of direct writes are multiples of this: the largest logical
/// block of common devices (4Kn disks, NVMe), so also a multiple of 512-byte ones.
pub(crate) const ALIGN: usize = 4096;

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
/// block) and the bytes not yet written because they do not fill a block.
#[derive(Debug)]
pub(crate) struct Direct {
    switch: DirectWrites,
    file: Option<File>,
    /// Tests: the filesystem refuses direct writes.
    #[cfg(test)]
    refuse: bool,
    /// Where the held bytes start in the file: always a multiple of [`ALIGN`].
    at: u64,
    /// `space[start..]` are the bytes of the write at hand, then the last partial block
    /// kept for the next (the *carry*). `start` puts them on an [`ALIGN`] boundary in
    /// memory; no unsafe code is needed for that. Kept from write to write, so that an
    /// upload's batches of a few MiB are copied into memory already faulted in rather than
    /// into a fresh allocation each time.
    space: Vec<u8>,
    start: usize,
}

/// What a direct write did.
pub(crate) enum Wrote {
    /// Every byte is in the file or in the carry.
    Direct,
    /// Direct I/O was refused: every byte is in the file, written through `buffered`, whose
    /// position is now the end of them. Go on with buffered writes.
    Buffered,
}

impl Direct {
    /// Starts direct writes of a file whose current length is `size`, on `buffered`: the
    /// descriptor opened without `O_APPEND`, positioned at `size`. The partial block at the
    /// end, if any, is read back into the carry.
    pub fn start(switch: DirectWrites, buffered: &File, size: u64) -> io::Result<Direct> {
        let at = size - size % ALIGN as u64;
        let mut d = Direct {
            switch,
            file: None,
            #[cfg(test)]
            refuse: false,
            at,
            space: Vec::new(),
            start: 0,
        };
        let carry = (size - at) as usize;
        if carry > 0 {
            d.make_room(carry);
            let end = d.start + carry;
            d.space.resize(end, 0);
            buffered.read_exact_at(&mut d.space[d.start..end], at)?;
        }
        Ok(d)
    }

    /// The bytes held, not written yet.
    fn held(&self) -> &[u8] {
        self.space.get(self.start..).unwrap_or_default()
    }

    /// Makes room for `more` bytes after those held, keeping them aligned: a new allocation
    /// (the held bytes copied over) when the current one is too small.
    fn make_room(&mut self, more: usize) {
        if self.space.capacity() - self.space.len() >= more {
            return;
        }
        let mut space: Vec<u8> = Vec::with_capacity(self.held().len() + more + ALIGN);
        let start = space.as_ptr().align_offset(ALIGN).min(ALIGN);
        space.resize(start, 0);
        space.extend_from_slice(self.held());
        self.space = space;
        self.start = start;
    }

    /// Writes `pieces` after what came before: whole blocks directly, the rest into the
    /// carry. Runs on a blocking thread.
    pub fn write(&mut self, path: &Path, buffered: &File, pieces: &[&[u8]]) -> io::Result<Wrote> {
        self.make_room(pieces.iter().map(|p| p.len()).sum());
        for p in pieces {
            self.space.extend_from_slice(p);
        }
        self.write_whole_blocks(path, buffered)
    }

    /// Writes the whole blocks held on the direct descriptor and keeps the carry; where
    /// direct I/O is refused, writes everything held through `buffered` instead.
    fn write_whole_blocks(&mut self, path: &Path, buffered: &File) -> io::Result<Wrote> {
        let held = self.held().len();
        let whole = held - held % ALIGN;
        if whole == 0 {
            // Less than a block in all: it waits in the carry.
            return Ok(Wrote::Direct);
        }
        match self.write_blocks(path, whole) {
            Ok(()) => {
                self.at += whole as u64;
                let end = self.space.len();
                self.space.copy_within(self.start + whole..end, self.start);
                self.space.truncate(end - whole);
                Ok(Wrote::Direct)
            }
            Err(e) if refused(&e) => {
                self.switch.refused(path, &e);
                self.file = None;
                buffered.write_all_at(self.held(), self.at)?;
                let end = self.at + held as u64;
                let mut b = buffered;
                b.seek(io::SeekFrom::Start(end))?;
                self.space = Vec::new();
                self.start = 0;
                Ok(Wrote::Buffered)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the first `len` held bytes (whole blocks) at `at` on the direct descriptor,
    /// opened by path on first use: the file's path does not change while its writer holds
    /// it (an upload's data file, under the upload's lock).
    fn write_blocks(&mut self, path: &Path, len: usize) -> io::Result<()> {
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
        let (Some(f), Some(blocks)) = (self.file.as_ref(), self.space.get(self.start..)) else {
            return Err(io::Error::other("direct descriptor missing"));
        };
        let blocks = &blocks[..len];
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

    /// Whether bytes wait for [`Direct::finish`].
    pub fn carries(&self) -> bool {
        !self.held().is_empty()
    }

    /// Writes the carry through the page cache; the file then holds everything, and the
    /// memory is given back.
    pub fn finish(&mut self, buffered: &File) -> io::Result<()> {
        let carry = self.held();
        if !carry.is_empty() {
            buffered.write_all_at(carry, self.at)?;
            self.at += carry.len() as u64;
        }
        self.space = Vec::new();
        self.start = 0;
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
pub(super) mod tests {
    use super::*;

    /// Bytes that differ at every offset, so a piece written at the wrong place shows.
    pub(in crate::storage) fn pattern(from: usize, len: usize) -> Vec<u8> {
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

    /// Writes `sizes` as one writer's pieces after what `path` holds, and finishes; checks
    /// that only the last partial block waited for the finish.
    fn write_pieces(switch: &DirectWrites, path: &Path, from: usize, sizes: &[usize]) {
        let f = open(path, from as u64);
        let mut d = Direct::start(switch.clone(), &f, from as u64).expect("start");
        let mut at = from;
        for &n in sizes {
            let p = pattern(at, n);
            let wrote = d
                .write(path, &f, &[&p[..n / 3], &p[n / 3..]])
                .expect("write");
            assert!(matches!(wrote, Wrote::Direct));
            at += n;
        }
        if switch.enabled() {
            assert_eq!(
                d.at,
                (at - at % ALIGN) as u64,
                "whole blocks are written directly"
            );
            assert_eq!(d.held(), &pattern(at - at % ALIGN, at % ALIGN)[..]);
        }
        d.finish(&f).expect("finish");
        assert!(!d.carries());
    }

    #[test]
    fn unaligned_pieces_and_a_continued_file_come_out_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data");
        let switch = DirectWrites::new(true);
        // Less than a block, then pieces crossing blocks, then a few bytes.
        let first = [100, 5000, ALIGN * 3 + 7, 3];
        write_pieces(&switch, &path, 0, &first);
        let len: usize = first.iter().sum();
        assert_eq!(std::fs::read(&path).expect("read"), pattern(0, len));
        // The next request continues at an unaligned length: the partial block is read
        // back and written again with what follows.
        let more = [ALIGN - 1, 1, 2 * ALIGN + 9];
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
        let p = pattern(10, 3 * ALIGN);
        assert!(matches!(
            d.write(&path, &f, &[&p]).expect("write"),
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
