//! Start-up: process start to the "Tracing..." line (BTF, eBPF load and attach, schema), and
//! the tracer's memory with 1,000 open gRPC connections in its connection table.

use std::process::Command;
use std::time::Duration;

use super::proc::{Helper, Tracer, bpf_map_rss_kb, memory};
use super::{Env, Report, s};

const TARGET_START_MS: f64 = 150.0;
const TARGET_RSS_MB: f64 = 64.0;
const CONNECTIONS: usize = 1000;

pub fn run(env: &Env, r: &mut Report) -> anyhow::Result<()> {
    let n = if env.quick { 3 } else { 7 };
    let sock = env.dir.join("startup.sock");
    let mut times = Vec::new();
    let mut idle = None;
    let mut backend = String::new();
    for _ in 0..n {
        let t = Tracer::start(&env.tracer, &[s(&sock)])?;
        times.push(t.ready_after.as_secs_f64() * 1e3);
        idle = Some(memory(t.pid())?);
        backend = t.backend.clone();
        t.stop()?;
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    r.figure(
        &format!("process start → \"Tracing…\" ({backend} backend)"),
        format!(
            "{median:.0} ms median of {n} (min {:.0}, max {:.0})",
            times[0],
            times[times.len() - 1]
        ),
        &format!("≤ {TARGET_START_MS:.0} ms"),
        Some(median <= TARGET_START_MS),
    );
    if let Some(m) = idle {
        r.figure(
            "RSS just after start",
            format!(
                "{:.1} MB (anon {:.1}, file {:.1}, shmem {:.1})",
                m.rss as f64 / 1024.0,
                m.anon as f64 / 1024.0,
                m.file as f64 / 1024.0,
                m.shmem as f64 / 1024.0
            ),
            "",
            None,
        );
    }

    let sock = env.dir.join("conns.sock");
    let _server = Helper::start(
        Command::new(&env.peer).args(["bench", "serve", "--path", &s(&sock)]),
        "ready",
    )?;
    let tracer = Tracer::start(&env.tracer, &[s(&sock)])?;
    let conns = Helper::start(
        Command::new(&env.peer).args([
            "bench",
            "conns",
            "--path",
            &s(&sock),
            "--count",
            &CONNECTIONS.to_string(),
            "--hold-secs",
            "3",
        ]),
        "ready",
    )?;
    // The last calls' records are still on their way through the ring buffer.
    std::thread::sleep(Duration::from_millis(1000));
    let m = memory(tracer.pid())?;
    let ring = bpf_map_rss_kb(tracer.pid());
    conns.wait()?;
    let (sum, _) = tracer.stop()?;
    let mb = m.rss as f64 / 1024.0;
    r.figure(
        &format!("RSS with {CONNECTIONS} open connections"),
        format!(
            "{mb:.1} MB (anon {:.1}, file {:.1}, shmem {:.1}; peak {:.1}); the tracer printed \
             {} rows",
            m.anon as f64 / 1024.0,
            m.file as f64 / 1024.0,
            m.shmem as f64 / 1024.0,
            m.hwm as f64 / 1024.0,
            sum.rows
        ),
        &format!("≤ {TARGET_RSS_MB:.0} MB"),
        Some(mb <= TARGET_RSS_MB),
    );
    let own = (m.rss.saturating_sub(ring)) as f64 / 1024.0;
    r.figure(
        "… of which BPF ring buffer mappings",
        format!(
            "{:.1} MB (the ring is mapped twice); the rest: {own:.1} MB",
            ring as f64 / 1024.0
        ),
        &format!("rest ≤ {TARGET_RSS_MB:.0} MB"),
        Some(own <= TARGET_RSS_MB),
    );
    r.note(&format!(
        "{CONNECTIONS} tonic connections to one server, one ImageStatus call each, held open; \
         RSS read from /proc/PID/status while they are open. The BPF ring buffer (the default \
         --ring-buffer-mib) is mapped twice and fully resident from the start, counted as \
         file-backed RSS"
    ));
    Ok(())
}
