//! Helpers shared by unit tests of several modules.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use crate::{protocol::call::Side, record::Chunk};

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

/// Chunks of one connection from recorded writes: `client` on side A (its peer's path is the
/// matched one), `server` on side B, stream positions counted per side, 1 µs per write.
pub fn conn_chunks(
    writes: &[(Side, u64, Vec<u8>)],
    conn: u64,
    path: &str,
    client: (&str, u32),
    server: (&str, u32),
) -> Vec<Chunk> {
    let mut sent = [0u64; 2];
    let base = 10 * conn;
    writes
        .iter()
        .enumerate()
        .map(|(i, (side, _, data))| {
            let is_client = *side == Side::A;
            let (me, peer) = if is_client {
                (client, server)
            } else {
                (server, client)
            };
            let (id, peer_id) = if is_client {
                (base + 1, base + 2)
            } else {
                (base + 2, base + 1)
            };
            let i_side = side.index();
            let chunk = Chunk {
                ts_ns: 1_000_000 * conn + 1_000 * (i as u64 + 1),
                sock_ino: 1000 + id,
                peer_ino: 1000 + peer_id,
                sock_id: id,
                peer_id,
                stream_pos: sent[i_side],
                call_len: data.len() as u32,
                chunk_off: 0,
                span_len: data.len() as u32,
                flags: containerdsnoop_common::flags::BACKEND_TRACEPOINT
                    | if is_client {
                        containerdsnoop_common::flags::PATH_IS_PEER
                    } else {
                        0
                    },
                tgid: me.1,
                tid: me.1,
                peer_tgid: peer.1,
                lost_records: 0,
                pattern: 0,
                sock_type: 1,
                comm: me.0.to_string(),
                process_comm: me.0.to_string(),
                path: path.to_string(),
                data: data.clone(),
            };
            sent[i_side] += data.len() as u64;
            chunk
        })
        .collect()
}

/// A writer whose bytes the test reads afterwards (clones share one buffer).
#[derive(Clone, Default)]
pub struct Shared(pub std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
