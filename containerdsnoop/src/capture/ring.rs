//! The ring handle: the `EVENTS` ring buffer and the aya-log buffer, registered with tokio, and
//! the records read from them in place.

use anyhow::{Context as _, anyhow};
use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
};
use tokio::io::unix::AsyncFd;

/// Where the programs' records (and their diagnostics) are read.
pub struct Ring {
    /// Diagnostics the programs log with aya-log (rare conditions only, never traced bytes).
    logger: Option<AsyncFd<aya_log::EbpfLogger<&'static dyn log::Log>>>,
    ring: AsyncFd<RingBuf<MapData>>,
}

impl Ring {
    /// Takes the ring buffer out of `ebpf` and registers it (and the log buffer, when the
    /// programs log) with the current tokio runtime.
    pub fn open(ebpf: &mut Ebpf) -> anyhow::Result<Ring> {
        let logger = match aya_log::EbpfLogger::init(ebpf) {
            // SAFETY: the logger owns its ring buffer fd for as long as it is registered.
            Ok(l) => unsafe { AsyncFd::register(l) }.ok(),
            Err(_) => None,
        };
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").context("map EVENTS missing")?)?;
        // SAFETY: the ring buffer map owns its fd and AsyncFd owns the map, so the fd stays open
        // (and is not reused) for as long as it is registered.
        let ring = unsafe { AsyncFd::register(ring) }
            .map_err(|e| anyhow!("registering the ring buffer with tokio: {e}"))?;
        Ok(Ring { logger, ring })
    }

    /// Waits until records are available, then hands every available record to `each`, in
    /// place in the ring (no copy, no allocation here).
    /// Kernel-side log messages are forwarded to the `log` facade while waiting.
    pub async fn read(&mut self, mut each: impl FnMut(&[u8])) -> anyhow::Result<()> {
        if let Some(logger) = self.logger.as_mut() {
            tokio::select! {
                biased;
                guard = logger.readable_mut() => {
                    let mut guard = guard?;
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                    return Ok(());
                }
                guard = self.ring.readable_mut() => {
                    let mut guard = guard?;
                    let ring = guard.get_inner_mut();
                    while let Some(item) = ring.next() {
                        each(&item);
                    }
                    guard.clear_ready();
                    return Ok(());
                }
            }
        }
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            each(&item);
        }
        guard.clear_ready();
        Ok(())
    }

    /// Hands whatever is in the ring buffer to `each` without waiting (the periodic drain, and
    /// at exit).
    pub fn read_now(&mut self, mut each: impl FnMut(&[u8])) {
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            each(&item);
        }
    }
}
