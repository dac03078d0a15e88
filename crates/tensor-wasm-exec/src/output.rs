//! Bounded capture of a guest's stdout/stderr that remembers overflow.
//!
//! Wasmtime's memory pipe silently refuses writes past its capacity, which
//! would turn "the guest wrote too much" into "the guest's output was
//! truncated". This sink fails the offending write (the guest sees an I/O
//! error) *and* records it, so the invocation reports `output_too_large`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// A shared, capped byte sink.
#[derive(Clone)]
pub(crate) struct BoundedOutput {
    buf: Arc<Mutex<Vec<u8>>>,
    overflowed: Arc<AtomicBool>,
    limit: usize,
}

impl BoundedOutput {
    pub fn new(limit: usize) -> Self {
        Self {
            buf: Arc::default(),
            overflowed: Arc::default(),
            limit,
        }
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl IsTerminal for BoundedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for BoundedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        if buf.len().saturating_add(data.len()) > self.limit {
            self.overflowed.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "output limit reached",
            )));
        }
        buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
