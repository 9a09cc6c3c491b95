//! Zero-copy blob bodies: on a plain HTTP/1.1 connection a blob goes from the page cache to
//! the socket with `sendfile(2)`, never through our buffers.
//!
//! hyper writes every response, and it cannot send a file. But on a connection whose byte
//! stream takes vectored writes, hyper queues each body frame as the `Bytes` it was given and
//! hands it to the stream as its own `IoSlice`, after the head (hyper's "queue" write
//! strategy; it writes no new head while a body frame is queued). So a blob body here yields
//! *placeholder* frames: slices of [`PLACEHOLDER`], a static region that is never read, each
//! standing for a window of the file that this connection's [`FileSends`] slot describes.
//! The connection's byte stream ([`crate::server::connection::Conn`]) recognises those
//! slices by their address and calls [`FileSends::poll_send`], which sends the window's
//! next bytes from the file with `sendfile` instead; hyper advances its placeholder by
//! what was sent, as after any partial write.
//!
//! One window is out at a time: hyper flushes a queued frame this large before it asks for
//! the next, writes no new head before the last is sent, and the body waits for its window
//! anyway. hyper drops a body as soon as it has its last frame, with that window still to
//! send: so a window keeps the connection busy for its watchdog by itself (a token from
//! [`FileSends::new`]'s `busy`) until it is sent whole, and progress on the socket is
//! reported like any other write's. A slice that does not match the window in the slot
//! fails the connection: a client gets a cut-off response, never wrong bytes.
//!
//! Used only where it is safe: plain TCP (TLS must encrypt in user space) and HTTP/1 (h2
//! frames the body itself), and only for storage that keeps blobs in local files.

use super::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use std::cell::UnsafeCell;
use std::fs::File;
use std::future::Future;
use std::io::{self, IoSlice};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll, Waker};
use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Bytes of file one placeholder frame stands for. Large, so that hyper asks for a new frame
/// rarely; each is sent with as many `sendfile` calls as the socket buffer needs.
const WINDOW: usize = 8 << 20;

/// The placeholder region. Zero-initialised and never written, it lives in `.bss` and costs
/// address space only: no memory, no bytes in the binary (an immutable array would be 8 MiB
/// of `.rodata`; the cell is what puts it in `.bss`).
struct Region(UnsafeCell<[u8; WINDOW]>);

// SAFETY: nothing ever writes to the region, so sharing it between threads is sound.
unsafe impl Sync for Region {}

static PLACEHOLDER: Region = Region(UnsafeCell::new([0; WINDOW]));

fn placeholder_region() -> &'static [u8; WINDOW] {
    // SAFETY: nothing ever writes to the region, so shared references to it are sound.
    unsafe { &*PLACEHOLDER.0.get() }
}

/// Tells the bodies of one connection apart.
static NEXT_BODY: AtomicU64 = AtomicU64::new(1);

/// Cleared the first time the storage's filesystem refuses `sendfile` (a FUSE or network
/// filesystem without splice support): blobs then go through buffers, as over TLS.
static SUPPORTED: AtomicBool = AtomicBool::new(true);

/// Whether blob bodies may be sent with `sendfile`.
pub fn supported() -> bool {
    SUPPORTED.load(Ordering::Relaxed)
}

/// Notes a failed `sendfile`: one that says the file cannot be spliced turns zero-copy off.
fn refused(e: io::Error) -> io::Error {
    let unsupported = matches!(
        e.raw_os_error(),
        Some(nix::libc::EINVAL | nix::libc::ENOSYS | nix::libc::EOPNOTSUPP)
    );
    if unsupported && SUPPORTED.swap(false, Ordering::Relaxed) {
        tracing::warn!(
            "sendfile from the storage directory failed ({e}): its filesystem cannot splice \
             files into sockets; blobs are sent through buffers from now on"
        );
    }
    e
}

/// Something that keeps a connection busy while it lives.
pub type Busy = Box<dyn Send>;

/// One connection's hand-over point between a blob body and its byte stream: the window
/// being sent, and the body waiting for it to go out. hyper polls the body and writes to the
/// stream from the connection's one task, so the lock is never contended.
pub struct FileSends {
    slot: Mutex<Slot>,
    busy: Box<dyn Fn() -> Busy + Send + Sync>,
}

#[derive(Default)]
struct Slot {
    window: Option<Window>,
    /// The body waiting for `window` to be sent.
    waiting: Option<Waker>,
}

/// A window of a file that a placeholder frame stands for.
struct Window {
    body: u64,
    file: Arc<File>,
    /// Where the window starts in the file.
    offset: u64,
    len: usize,
    sent: usize,
    _busy: Busy,
}

impl FileSends {
    /// `busy` marks the connection busy until what it returns is dropped.
    pub fn new(busy: impl Fn() -> Busy + Send + Sync + 'static) -> Arc<FileSends> {
        Arc::new(FileSends {
            slot: Mutex::default(),
            busy: Box::new(busy),
        })
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        // A panic while holding the lock leaves a consistent slot (plain stores).
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Where the first placeholder slice of a write is, if any.
    pub fn first_placeholder(bufs: &[IoSlice<'_>]) -> Option<usize> {
        let region = placeholder_region().as_ptr_range();
        bufs.iter()
            .position(|b| !b.is_empty() && region.contains(&b.as_ptr()))
    }

    /// Writes `bufs` to `stream`: the slices before the first placeholder as they are, the
    /// placeholder as file content with `sendfile`. Like any write it may write less than
    /// given; the caller (hyper) writes the rest with the next call.
    pub fn poll_send(
        &self,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Self::first_placeholder(bufs) {
            None => Pin::new(stream).poll_write_vectored(cx, bufs),
            // The head first, marked as followed by more, so it leaves in the same segment
            // as the start of the body instead of alone (the socket has TCP_NODELAY).
            Some(at) if at > 0 => poll_io(stream, cx, || more_follows(stream, &bufs[..at])),
            Some(_) => self.poll_sendfile(stream, cx, &bufs[0]),
        }
    }

    fn poll_sendfile(
        &self,
        stream: &TcpStream,
        cx: &mut Context<'_>,
        placeholder: &IoSlice<'_>,
    ) -> Poll<io::Result<usize>> {
        let mut slot = self.slot();
        let window = match &mut slot.window {
            Some(w)
                if placeholder.as_ptr() as usize - placeholder_region().as_ptr() as usize
                    == w.sent
                    && placeholder.len() == w.len - w.sent =>
            {
                w
            }
            _ => {
                return Poll::Ready(Err(io::Error::other(
                    "zero-copy send out of step with the response body; closing the connection",
                )))
            }
        };
        let file = window.file.clone();
        let mut offset = i64::try_from(window.offset + window.sent as u64)
            .map_err(|_| io::Error::other("blob offset beyond what sendfile takes"))?;
        let count = window.len - window.sent;
        let sent = ready!(poll_io(stream, cx, || {
            nix::sys::sendfile::sendfile64(stream, &*file, Some(&mut offset), count)
                .map_err(io::Error::from)
        }))
        .map_err(refused)?;
        if sent == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob shorter than its recorded size",
            )));
        }
        window.sent += sent;
        if window.sent == window.len {
            slot.window = None;
            if let Some(body) = slot.waiting.take() {
                body.wake();
            }
        }
        Poll::Ready(Ok(sent))
    }
}

/// Runs a non-blocking socket call once the socket is writable, waiting again when it finds
/// the socket full after all.
fn poll_io(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    mut call: impl FnMut() -> io::Result<usize>,
) -> Poll<io::Result<usize>> {
    loop {
        ready!(stream.poll_write_ready(cx))?;
        match stream.try_io(Interest::WRITABLE, &mut call) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            result => return Poll::Ready(result),
        }
    }
}

/// `sendmsg` with `MSG_MORE`.
fn more_follows(stream: &TcpStream, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    use nix::sys::socket::{sendmsg, MsgFlags};
    sendmsg::<()>(
        stream.as_raw_fd(),
        bufs,
        &[],
        MsgFlags::from_bits_retain(nix::libc::MSG_MORE | nix::libc::MSG_NOSIGNAL),
        None,
    )
    .map_err(io::Error::from)
}

/// A body that sends `len` bytes of `file` from `offset` through `sends`.
pub fn body(file: File, offset: u64, len: u64, sends: Arc<FileSends>) -> Body {
    FileBody {
        id: NEXT_BODY.fetch_add(1, Ordering::Relaxed),
        sends,
        file: Arc::new(file),
        next: offset,
        end: offset + len,
        readahead: None,
    }
    .boxed_unsync()
}

/// Windows smaller than this are not read ahead: a thread hop costs more than a few pages
/// waited for.
const READ_AHEAD_FROM: usize = 1 << 20;

struct FileBody {
    id: u64,
    sends: Arc<FileSends>,
    file: Arc<File>,
    /// The file offset of the next window.
    next: u64,
    end: u64,
    /// The offset of the window being read into the page cache, and the blocking task that
    /// does it, started one window ahead: `sendfile` of a page that is not there waits for
    /// the disk in the connection's task.
    readahead: Option<(u64, JoinHandle<()>)>,
}

impl FileBody {
    fn window_at(&self, offset: u64) -> usize {
        (self.end - offset).min(WINDOW as u64) as usize
    }

    /// Starts reading the window at `offset` into the page cache, on a blocking thread.
    fn read_ahead(&mut self, offset: u64) {
        let len = self.window_at(offset);
        if len < READ_AHEAD_FROM {
            return;
        }
        let file = self.file.clone();
        let task = tokio::task::spawn_blocking(move || {
            use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
            let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
                return;
            };
            // Only advice: where it fails, sendfile reads the pages itself.
            let _ = posix_fadvise(
                file.as_raw_fd(),
                offset,
                len,
                PosixFadviseAdvice::POSIX_FADV_WILLNEED,
            );
        });
        self.readahead = Some((offset, task));
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        {
            let mut slot = this.sends.slot();
            if slot.window.as_ref().is_some_and(|w| w.body == this.id) {
                slot.waiting = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        if this.next == this.end {
            return Poll::Ready(None);
        }
        // The first window is not waited for: the kernel reads ahead of a sequential
        // sendfile by itself, and a thread hop would delay the first byte of every pull.
        if let Some((at, task)) = &mut this.readahead {
            if *at == this.next {
                // A failed advice task changes nothing that matters: sendfile reads anyway.
                let _ = ready!(Pin::new(task).poll(cx));
                this.readahead = None;
            }
        }
        let len = this.window_at(this.next);
        let mut slot = this.sends.slot();
        if slot.window.is_some() {
            // hyper never interleaves two responses on a connection.
            return Poll::Ready(Some(Err(io::Error::other(
                "zero-copy send started while another is in progress",
            ))));
        }
        slot.window = Some(Window {
            body: this.id,
            file: this.file.clone(),
            offset: this.next,
            len,
            sent: 0,
            _busy: (this.sends.busy)(),
        });
        drop(slot);
        this.next += len as u64;
        this.read_ahead(this.next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &placeholder_region()[..len],
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.next == self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.next)
    }
}

impl Drop for FileBody {
    fn drop(&mut self) {
        // The last window stays in the slot: hyper drops the body before sending it.
        if let Some((_, task)) = self.readahead.take() {
            task.abort();
        }
    }
}
