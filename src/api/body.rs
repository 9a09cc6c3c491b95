//! Response bodies: small in-memory documents, or a blob streamed from storage in large
//! reads, never held whole in memory.

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// Bytes read from storage per frame.
const READ_CHUNK: usize = 1 << 20;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Sends a storage chunk stream of `len` bytes as it comes.
pub fn chunks(stream: crate::storage::ChunkStream, len: u64) -> Body {
    ChunkBody {
        stream,
        remaining: len,
    }
    .boxed_unsync()
}

struct ChunkBody {
    stream: crate::storage::ChunkStream,
    remaining: u64,
}

impl http_body::Body for ChunkBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match self.stream.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "blob shorter than its recorded size",
            )))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(chunk))) => {
                self.remaining = self.remaining.saturating_sub(chunk.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Streams exactly `len` bytes from a reader.
pub fn stream(reader: crate::storage::BlobReader, len: u64) -> Body {
    ReaderBody {
        reader,
        remaining: len,
        buf: BytesMut::new(),
    }
    .boxed_unsync()
}

struct ReaderBody {
    reader: crate::storage::BlobReader,
    remaining: u64,
    buf: BytesMut,
}

impl http_body::Body for ReaderBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = (this.remaining.min(READ_CHUNK as u64)) as usize;
        if this.buf.capacity() < want {
            this.buf.reserve(want.max(READ_CHUNK));
        }
        // Safety-free: read into the uninitialised tail through ReadBuf.
        let spare = this.buf.spare_capacity_mut();
        let limit = spare.len().min(want);
        let mut rb = ReadBuf::uninit(&mut spare[..limit]);
        match Pin::new(&mut this.reader).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob shorter than its recorded size",
                    ))));
                }
                // SAFETY: `n` bytes of the spare capacity were initialised by poll_read.
                unsafe { this.buf.set_len(this.buf.len() + n) };
                this.remaining -= n as u64;
                let chunk = this.buf.split().freeze();
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
