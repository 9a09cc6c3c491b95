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
    /// Where `carry` starts in the file: always a multiple of [`ALIGN`].
    at: u64,
    carry: Vec<u8>,
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

    /// Writes `pieces` after what came before: whole blocks directly, the rest into the
    /// carry. Runs on a blocking thread.
    pub fn write(&mut self, path: &Path, buffered: &File, pieces: &[&[u8]]) -> io::Result<Wrote> {
        let len: usize = self.carry.len() + pieces.iter().map(|p| p.len()).sum::<usize>();
        if len < ALIGN {
            for p in pieces {
                self.carry.extend_from_slice(p);
            }
            return Ok(Wrote::Direct);
        }
        let whole = len - len % ALIGN;
        // Room to start on a block boundary, in one allocation; no unsafe code needed.
        let mut space: Vec<u8> = Vec::with_capacity(len + ALIGN);
        let start = space.as_ptr().align_offset(ALIGN).min(ALIGN);
        space.resize(start, 0);
        space.extend_from_slice(&self.carry);
        for p in pieces {
            space.extend_from_slice(p);
        }
        let buf = &space[start..];
        match self.write_blocks(path, &buf[..whole]) {
            Ok(()) => {
                self.at += whole as u64;
                self.carry.clear();
                self.carry.extend_from_slice(&buf[whole..]);
                Ok(Wrote::Direct)
            }
            Err(e) if refused(&e) => {
                self.switch.refused(path, &e);
                self.file = None;
                buffered.write_all_at(buf, self.at)?;
                let end = self.at + len as u64;
                let mut b = buffered;
                b.seek(io::SeekFrom::Start(end))?;
                self.carry.clear();
                Ok(Wrote::Buffered)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes whole blocks at `at` on the direct descriptor, opened by path on first use:
    /// the file's path does not change while its writer holds it (an upload's data file,
    /// under the upload's lock).
    fn write_blocks(&mut self, path: &Path, blocks: &[u8]) -> io::Result<()> {
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

    /// Whether bytes wait for [`Direct::finish`].
    pub fn carries(&self) -> bool {
        !self.carry.is_empty()
    }

    /// Writes the carry through the page cache; the file then holds everything.
    pub fn finish(&mut self, buffered: &File) -> io::Result<()> {
        if !self.carry.is_empty() {
            buffered.write_all_at(&self.carry, self.at)?;
            self.at += self.carry.len() as u64;
            self.carry.clear();
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
            assert_eq!(d.carry, pattern(at - at % ALIGN, at % ALIGN));
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
