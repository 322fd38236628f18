//! Records every write of both ends of real connections, in causal order: the generator's way
//! of getting byte-exact HTTP/2 as tonic and h2 really write it, without a tracer.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One successful write(2) of one end.
pub struct Write {
    pub conn: u32,
    pub server: bool,
    pub ts_ns: u64,
    pub data: Vec<u8>,
}

#[derive(Clone)]
pub struct Log {
    writes: Arc<Mutex<Vec<Write>>>,
    start: Instant,
}

impl Log {
    pub fn new() -> Log {
        Log {
            writes: Arc::new(Mutex::new(Vec::new())),
            start: Instant::now(),
        }
    }

    pub fn take(&self) -> Vec<Write> {
        std::mem::take(&mut *self.writes.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// A stream whose writes go to the log. The log's lock is held across the write itself, so a
/// reply can never be logged before the request it answers.
pub struct Recorded<T> {
    inner: T,
    log: Log,
    conn: u32,
    server: bool,
}

impl<T> Recorded<T> {
    pub fn new(inner: T, log: Log, conn: u32, server: bool) -> Self {
        Recorded {
            inner,
            log,
            conn,
            server,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Recorded<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Recorded<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let mut writes = this.log.writes.lock().unwrap_or_else(|p| p.into_inner());
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r
            && n > 0
        {
            writes.push(Write {
                conn: this.conn,
                server: this.server,
                ts_ns: this.log.start.elapsed().as_nanos() as u64,
                data: buf[..n].to_vec(),
            });
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

impl tonic::transport::server::Connected for Recorded<tokio::net::UnixStream> {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}
