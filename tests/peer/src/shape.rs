//! The syscall shapes a sender or receiver uses, called through libc so that each call the kernel
//! sees is exactly the one asked for (std would pick its own split and its own syscall).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use crate::prng::SplitMix64;

/// How bytes are handed to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `write(2)` in pieces of `--chunk` bytes (grpc-go writes at most ~32 KiB per call).
    Write,
    /// `writev(2)` with `--iovecs` iovecs per call.
    Writev,
    /// `send(2)` in pieces.
    Send,
    /// `sendmsg(2)` with `--iovecs` iovecs per call (Python grpcio: up to ~1 MiB in up to 26).
    Sendmsg,
    /// `write(2)` of large buffers on an O_NONBLOCK socket, retrying after partial writes and
    /// EAGAIN the way Go's `poll.FD.Write` does.
    Nonblock,
    /// `sendmmsg(2)` with one message per call: a send syscall the tracer cannot see the
    /// buffers of (it reports the bytes as missing).
    Sendmmsg,
}

impl Mode {
    /// Bytes per call when `--chunk` is not given, mimicking the program each shape stands for.
    pub fn default_chunk(self) -> usize {
        match self {
            Mode::Write | Mode::Send | Mode::Sendmmsg => 32 * 1024,
            Mode::Writev => 64 * 1024,
            Mode::Sendmsg => 1024 * 1024,
            Mode::Nonblock => 4 * 1024 * 1024,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Write => "write",
            Mode::Writev => "writev",
            Mode::Send => "send",
            Mode::Sendmsg => "sendmsg",
            Mode::Nonblock => "nonblock",
            Mode::Sendmmsg => "sendmmsg",
        }
    }
}

/// Counts shared by all sending threads, reported in the JSON summary.
#[derive(Debug, Default)]
pub struct Counters {
    pub eagain: AtomicU64,
    pub partial_writes: AtomicU64,
}

/// The kernel's IOV_MAX; more iovecs make writev/sendmsg fail with EINVAL.
const IOV_MAX: usize = 1024;
/// How long a non-blocking end waits in poll(2) before giving up: a stuck peer must not hang a test.
const POLL_TIMEOUT_MS: i32 = 30_000;

/// How a sender cuts its stream into calls.
#[derive(Debug, Clone, Copy)]
pub struct SendPlan {
    pub mode: Mode,
    pub chunk: usize,
    pub iovecs: usize,
    /// Seeds the iovec boundaries, so a run is reproducible.
    pub split_seed: u64,
}

/// Sends all of `data` on `fd` with the plan's syscall shape.
pub fn send_all(
    fd: BorrowedFd<'_>,
    data: &[u8],
    plan: SendPlan,
    counters: &Counters,
) -> io::Result<()> {
    let mut rng = SplitMix64::new(plan.split_seed);
    let chunk = plan.chunk.max(1);
    let mut off = 0;
    while off < data.len() {
        let end = (off + chunk).min(data.len());
        let call = &data[off..end];
        match plan.mode {
            Mode::Writev | Mode::Sendmsg => {
                let pieces = split(call.len(), plan.iovecs.clamp(1, IOV_MAX), &mut rng);
                send_vectored(fd, call, &pieces, plan.mode, counters)?;
            }
            Mode::Write | Mode::Send | Mode::Nonblock | Mode::Sendmmsg => {
                send_flat(fd, call, plan.mode, counters)?
            }
        }
        off = end;
    }
    Ok(())
}

/// Cuts `len` bytes into `k` non-empty pieces (fewer if `len < k`). The first cuts are small,
/// like the frame and message headers that real gRPC writers put in iovecs of their own.
fn split(len: usize, k: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let k = k.min(len).max(1);
    let mut cuts: Vec<usize> = Vec::with_capacity(k + 1);
    cuts.push(0);
    for _ in 1..k {
        // Mostly uniform, but sometimes a header-sized cut right after the previous one.
        let prev = *cuts.last().unwrap_or(&0);
        let cut = if rng.next_u64().is_multiple_of(3) {
            prev + rng.range(1, 9)
        } else {
            rng.range(1, len - 1)
        };
        cuts.push(cut.min(len - 1));
    }
    cuts.push(len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| w[1] - w[0]).collect()
}

fn send_flat(
    fd: BorrowedFd<'_>,
    mut buf: &[u8],
    mode: Mode,
    counters: &Counters,
) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice for the duration of the call; the fd is borrowed open.
        let n = unsafe {
            match mode {
                Mode::Send => libc::send(
                    fd.as_raw_fd(),
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_NOSIGNAL,
                ),
                Mode::Sendmmsg => {
                    let mut iov = libc::iovec {
                        iov_base: buf.as_ptr() as *mut libc::c_void,
                        iov_len: buf.len(),
                    };
                    let mut msg: libc::mmsghdr = std::mem::zeroed();
                    msg.msg_hdr.msg_iov = &mut iov;
                    msg.msg_hdr.msg_iovlen = 1;
                    match libc::sendmmsg(fd.as_raw_fd(), &mut msg, 1, libc::MSG_NOSIGNAL) {
                        1 => msg.msg_len as isize,
                        n => n as isize,
                    }
                }
                _ => libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()),
            }
        };
        let Some(n) = check(n, fd, libc::POLLOUT, counters)? else {
            continue;
        };
        if n < buf.len() {
            counters.partial_writes.fetch_add(1, Ordering::Relaxed);
        }
        buf = &buf[n..];
    }
    Ok(())
}

fn send_vectored(
    fd: BorrowedFd<'_>,
    call: &[u8],
    pieces: &[usize],
    mode: Mode,
    counters: &Counters,
) -> io::Result<()> {
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(pieces.len());
    let mut at = 0;
    for &p in pieces {
        iov.push(libc::iovec {
            iov_base: call[at..].as_ptr() as *mut libc::c_void,
            iov_len: p,
        });
        at += p;
    }
    let mut first = 0;
    while first < iov.len() {
        let rest = &mut iov[first..];
        // SAFETY: every iovec points into `call`, which outlives the call; the kernel only reads.
        let n = unsafe {
            if mode == Mode::Sendmsg {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = rest.as_mut_ptr();
                msg.msg_iovlen = rest.len();
                libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
            } else {
                libc::writev(fd.as_raw_fd(), rest.as_ptr(), rest.len() as libc::c_int)
            }
        };
        let Some(mut n) = check(n, fd, libc::POLLOUT, counters)? else {
            continue;
        };
        let asked: usize = rest.iter().map(|v| v.iov_len).sum();
        if n < asked {
            counters.partial_writes.fetch_add(1, Ordering::Relaxed);
        }
        // Drop what the kernel took, as a real writer retries only the remainder.
        while n > 0 {
            let v = &mut iov[first];
            if n >= v.iov_len {
                n -= v.iov_len;
                first += 1;
            } else {
                // SAFETY: `n < iov_len`, so the advanced pointer stays inside the same piece.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n).cast() };
                v.iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// Turns a syscall result into bytes done, or `None` when the call must be retried (EINTR, or
/// EAGAIN after waiting in poll(2) for `events`).
fn check(
    ret: isize,
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    counters: &Counters,
) -> io::Result<Option<usize>> {
    if ret >= 0 {
        return Ok(Some(ret as usize));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINTR) => Ok(None),
        Some(libc::EAGAIN) => {
            if events == libc::POLLOUT {
                counters.eagain.fetch_add(1, Ordering::Relaxed);
            }
            wait_ready(fd, events)?;
            Ok(None)
        }
        _ => Err(err),
    }
}

fn wait_ready(fd: BorrowedFd<'_>, events: libc::c_short) -> io::Result<()> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, POLL_TIMEOUT_MS) };
        match r {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "peer stopped draining the socket",
                ));
            }
            r if r > 0 => return Ok(()),
            _ => {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINTR) {
                    return Err(err);
                }
            }
        }
    }
}

/// How a receiver reads: the read syscall that matches the sender's shape, and whether to read
/// slowly so that a non-blocking sender fills the socket buffer and sees EAGAIN.
#[derive(Debug, Clone, Copy)]
pub struct RecvPlan {
    pub mode: Mode,
    pub slow: bool,
}

/// Bytes per read call. Small enough that a slow reader lets the buffer fill.
const READ_SIZE: usize = 64 * 1024;

/// Reads from `fd` until EOF and returns everything read.
pub fn recv_all(fd: BorrowedFd<'_>, plan: RecvPlan, counters: &Counters) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; READ_SIZE];
    loop {
        let (a, b) = buf.split_at_mut(READ_SIZE / 4);
        // SAFETY: the buffers are live and writable for the duration of each call.
        let n = unsafe {
            match plan.mode {
                Mode::Write | Mode::Nonblock => {
                    libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                }
                Mode::Send | Mode::Sendmmsg => {
                    libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0)
                }
                Mode::Writev | Mode::Sendmsg => {
                    let mut iov = [
                        libc::iovec {
                            iov_base: a.as_mut_ptr().cast(),
                            iov_len: a.len(),
                        },
                        libc::iovec {
                            iov_base: b.as_mut_ptr().cast(),
                            iov_len: b.len(),
                        },
                    ];
                    if plan.mode == Mode::Sendmsg {
                        let mut msg: libc::msghdr = std::mem::zeroed();
                        msg.msg_iov = iov.as_mut_ptr();
                        msg.msg_iovlen = iov.len();
                        libc::recvmsg(fd.as_raw_fd(), &mut msg, 0)
                    } else {
                        libc::readv(fd.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int)
                    }
                }
            }
        };
        let Some(n) = check(n, fd, libc::POLLIN, counters)? else {
            continue;
        };
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
        if plan.slow {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Sets O_NONBLOCK on the open file description (shared by every dup of the fd).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl on a borrowed open fd with integer arguments.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The inode number of the socket behind `fd`, as the kernel (and a tracer) names it.
pub fn inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: fstat writes into a zeroed stat buffer we own.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything_without_empty_pieces() {
        let mut rng = SplitMix64::new(7);
        for len in [1, 2, 5, 26, 100, 1 << 20] {
            for k in [1, 2, 26, 1024] {
                let p = split(len, k, &mut rng);
                assert_eq!(p.iter().sum::<usize>(), len);
                assert!(p.iter().all(|&x| x > 0));
                assert!(p.len() <= k.min(len));
            }
        }
    }
}
