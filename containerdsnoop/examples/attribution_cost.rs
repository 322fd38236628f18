//! What naming the containers at both ends costs a row: `LiveAttributor::container` for a
//! row's sender and peer, on first sight of a process (two `/proc` reads) and from the cache
//! (what nearly every row pays). No runtime is asked (no sockets), as lookups run on their own
//! thread and never on the row's path. Prints ns per row; run it in release:
//!
//!     cargo run --release -p containerdsnoop --example attribution_cost

use std::time::Instant;

use containerdsnoop::containers::LiveAttributor;
use containerdsnoop_decode::attribution::Attributor as _;

fn main() {
    // Live processes to stand in for senders and peers.
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.truncate(200);
    let pairs: Vec<(u32, u32)> = pids
        .iter()
        .zip(pids.iter().rev())
        .map(|(&a, &b)| (a, b))
        .collect();

    let mut cold = LiveAttributor::start(Vec::new());
    let start = Instant::now();
    for &(a, b) in &pairs {
        let _ = (cold.container(a), cold.container(b));
    }
    let first = start.elapsed().as_nanos() as f64 / pairs.len() as f64;

    let rows = 2_000_000;
    let start = Instant::now();
    for i in 0..rows {
        let (a, b) = pairs[i % pairs.len()];
        std::hint::black_box((cold.container(a), cold.container(b)));
    }
    let cached = start.elapsed().as_nanos() as f64 / rows as f64;
    println!(
        "{} processes: first row of a process pair {first:.0} ns; cached {cached:.0} ns per row \
         ({rows} rows; the cache re-checks a process's start time every 250 ms)",
        pairs.len()
    );
}
