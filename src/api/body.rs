//! Response bodies: small in-memory documents, or a blob as the chunks its storage driver
//! reads (never held whole in memory; the zero-copy file body is in `sendfile.rs`); and
//! request bodies, with a bound on how long the client may leave them stalled.

use super::errors::{ApiError, ErrorCode};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type Body = UnsyncBoxBody<Bytes, io::Error>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Sends `len` bytes of a storage chunk stream as they come: every blob body that does not go
/// by `sendfile`, whatever the driver (a reader is streamed through
/// `tokio_util::io::ReaderStream`, as `StorageDriver::read_chunks` does).
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
            Poll::Ready(Some(Ok(mut chunk))) => {
                // Never more than the Content-Length promised, whatever the stream holds.
                if chunk.len() as u64 > self.remaining {
                    chunk.truncate(self.remaining as usize);
                }
                self.remaining -= chunk.len() as u64;
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

/// A request body as the API reads it: hyper's, ended with a `TimedOut` error when the
/// client sends no byte of it for the body idle timeout, so a stalled client frees its
/// connection (an upload keeps what arrived, and the client can resume from there). Only
/// time spent waiting for the client counts, not the time the API takes between reads.
pub struct Incoming {
    inner: hyper::body::Incoming,
    idle: Duration,
    /// Created on the first wait; re-armed at the first wait after each frame.
    timer: Option<Pin<Box<Sleep>>>,
    waiting: bool,
}

impl Incoming {
    pub fn new(inner: hyper::body::Incoming, idle: Duration) -> Incoming {
        Incoming {
            inner,
            idle,
            timer: None,
            waiting: false,
        }
    }

    /// The next piece of the body's data (trailers are skipped), `None` at its end. A body
    /// that fails (the client went away, or stalled past the timeout) is an error with
    /// `code`, the one the spec gives the request.
    pub async fn data(&mut self, code: ErrorCode) -> Result<Option<Bytes>, ApiError> {
        while let Some(frame) = self.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::new(code).with_message(format!("request body failed: {e}"))
            })?;
            if let Ok(data) = frame.into_data() {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}

impl http_body::Body for Incoming {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|f| f.map_err(io::Error::other)));
        }
        let deadline = Instant::now() + this.idle;
        let timer = match &mut this.timer {
            Some(timer) => {
                if !this.waiting {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => this
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        this.waiting = true;
        match timer.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client sent nothing for {}s", this.idle.as_secs_f64()),
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
