//! Helpers shared by unit tests of several modules.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use crate::protocol::call::Side;

/// Every write of both ends of a recorded connection: (sender, timestamp, bytes).
pub type WriteLog = Arc<Mutex<Vec<(Side, u64, Vec<u8>)>>>;

/// A stream that records each write as the chunk the writer produced.
pub struct Recorder {
    pub inner: DuplexStream,
    pub side: Side,
    pub log: WriteLog,
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            let mut log = self.log.lock().unwrap();
            // Timestamps are the write's sequence number, in microseconds.
            let ts = log.len() as u64 * 1000;
            log.push((self.side, ts, buf[..n].to_vec()));
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
