//! `churn`: selected sockets and a selected directory removed and re-created again and again,
//! while thousands of unselected sockets and directories are created, used and removed beside
//! them in the same parent directory, so that (on ext4 and xfs) they are given the inode
//! numbers the selected ones had. Every payload says whose it is (`SELECTED-A`, `SELECTED-B`,
//! `UNSELECTED`), so a test can check that a tracer shows all of its own sockets' bytes and none
//! of anyone else's; the summary says which inode numbers really were reused.
//!
//! Layout under `--dir`: `a.sock` (selected by tracer A as an exact path), `a.d/` (its sockets
//! selected by A as `a.d/*`), `b.sock` (selected by tracer B), and `u-R-N.sock`, `u-R-N.d/x.sock`
//! (nobody's). Before each round's use of a re-created `a.d`, the peer waits for the file
//! `go-a.d-R` (the test creates it once tracer A has reported the new directory: directories
//! are picked up by a rescan, sockets in a selected directory from their first byte).

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read as _, Write as _};
use std::os::fd::AsFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::shape::inode;
use crate::util::{remove_stale, wait_for_file};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The parent directory (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Rounds of remove, churn, re-create.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Unselected sockets created, used and removed per round (plus one directory each tenth).
    #[arg(long, default_value_t = 150)]
    unselected: usize,
    /// Payload bytes per direction of each connection.
    #[arg(long, default_value_t = 300)]
    bytes: usize,
}

/// One connection's payloads: what the client sent (read by the server) and the reply.
struct Exchange {
    client_ino: u64,
    server_ino: u64,
    file_ino: u64,
    c2s: Vec<u8>,
    s2c: Vec<u8>,
}

/// `bytes` bytes of `tag` and a counter, so that every payload is recognisable in any record.
fn payload(tag: &str, n: usize, bytes: usize) -> Vec<u8> {
    let unit = format!("{tag}-{n:06}|");
    unit.as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(bytes)
        .collect()
}

/// Binds `path`, connects, sends `c2s` and `s2c` each way, closes and removes the file.
fn exchange(path: &Path, c2s: Vec<u8>, s2c: Vec<u8>) -> Result<Exchange> {
    remove_stale(path)?;
    let listener = UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))?;
    let file_ino = fs::symlink_metadata(path)?.ino();
    let mut client = UnixStream::connect(path)?;
    let (mut server, _) = listener.accept()?;
    let (client_ino, server_ino) = (inode(client.as_fd())?, inode(server.as_fd())?);
    client.write_all(&c2s)?;
    let mut got = vec![0; c2s.len()];
    server.read_exact(&mut got)?;
    server.write_all(&s2c)?;
    let mut back = vec![0; s2c.len()];
    client.read_exact(&mut back)?;
    anyhow::ensure!(got == c2s && back == s2c, "bytes changed in transit");
    drop((client, server, listener));
    fs::remove_file(path)?;
    Ok(Exchange {
        client_ino,
        server_ino,
        file_ino,
        c2s,
        s2c,
    })
}

fn record(e: &Exchange, who: &str) -> Value {
    json!({
        "who": who,
        "client_ino": e.client_ino,
        "server_ino": e.server_ino,
        "c2s": String::from_utf8_lossy(&e.c2s),
        "s2c": String::from_utf8_lossy(&e.s2c),
    })
}

pub fn run(a: Args) -> Result<()> {
    fs::create_dir_all(&a.dir)?;
    let mut selected = Vec::new();
    // Inode numbers the selected files and directories had, once removed.
    let mut freed = BTreeSet::new();
    let mut reused = 0u64;
    let mut unselected_sockets = 0u64;
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    let a_dir = a.dir.join("a.d");
    for round in 0..a.rounds {
        // The two tracers' sockets, re-created at their paths.
        for (name, who) in [("a.sock", "A"), ("b.sock", "B")] {
            let (i, j) = (next(), next());
            let tag = format!("SELECTED-{who}");
            let e = exchange(
                &a.dir.join(name),
                payload(&tag, i, a.bytes),
                payload(&tag, j, a.bytes),
            )?;
            freed.insert(e.file_ino);
            selected.push(record(&e, who));
        }
        // The selected directory, re-created: used once tracer A has seen it.
        fs::create_dir(&a_dir).with_context(|| format!("mkdir {}", a_dir.display()))?;
        let dir_ino = fs::metadata(&a_dir)?.ino();
        if freed.contains(&dir_ino) {
            reused += 1;
        }
        wait_for_file(
            &a.dir.join(format!("go-a.d-{round}")),
            Duration::from_secs(30),
        )?;
        let (i, j) = (next(), next());
        let e = exchange(
            &a_dir.join(format!("s{round}.sock")),
            payload("SELECTED-A", i, a.bytes),
            payload("SELECTED-A", j, a.bytes),
        )?;
        freed.insert(e.file_ino);
        selected.push(record(&e, "A"));
        fs::remove_dir(&a_dir)?;
        freed.insert(dir_ino);
        // Strangers, right after: in the parent directory, and in new directories beside it.
        for k in 0..a.unselected {
            let path = if k % 10 == 0 {
                let d = a.dir.join(format!("u-{round}-{k}.d"));
                fs::create_dir(&d)?;
                if freed.contains(&fs::metadata(&d)?.ino()) {
                    reused += 1;
                }
                d.join("x.sock")
            } else {
                a.dir.join(format!("u-{round}-{k}.sock"))
            };
            let (i, j) = (next(), next());
            let e = exchange(
                &path,
                payload("UNSELECTED", i, a.bytes),
                payload("UNSELECTED", j, a.bytes),
            )?;
            if freed.contains(&e.file_ino) {
                reused += 1;
            }
            unselected_sockets += 1;
            if k % 10 == 0 {
                fs::remove_dir(path.parent().context("parent")?)?;
            }
        }
    }
    let summary = json!({
        "selected": selected,
        "unselected_sockets": unselected_sockets,
        "reused_inode_numbers": reused,
    });
    println!("{summary}");
    Ok(())
}
