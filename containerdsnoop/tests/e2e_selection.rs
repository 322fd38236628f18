//! Issue #19, end to end: a tracer captures exactly what was selected. The test peer's `churn`
//! removes and re-creates a selected socket, a selected directory and a second tracer's socket
//! again and again, while it creates, uses and removes thousands of unselected sockets and
//! directories beside them in the same parent directory, which on ext4 (the machine's /tmp) are
//! given the inode numbers the selected ones had: the test asserts that this really happened,
//! or it would prove nothing. On tmpfs, which hands out fresh numbers, it guards the rest.
//! Two tracers run at once with disjoint selections: each must show every byte of its own
//! sockets and not one byte, nor one record, of any other socket. Needs root (skipped
//! otherwise, failed in CI).

mod support;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use support::{Need, Tracer, raw::parse_raw_json};

const TRACER: &str = env!("CARGO_BIN_EXE_containerdsnoop");
const ROUNDS: usize = 20;

/// What a tracer must show: per sending socket inode, exactly these bytes.
type Expected = BTreeMap<u64, Vec<u8>>;

fn expected_for(summary: &serde_json::Value, who: &str) -> Expected {
    let mut out = Expected::new();
    for e in summary["selected"].as_array().expect("selected") {
        if e["who"] != who {
            continue;
        }
        let ino = |k: &str| e[k].as_u64().expect(k);
        let text = |k: &str| e[k].as_str().expect(k).as_bytes().to_vec();
        out.entry(ino("client_ino"))
            .or_default()
            .extend(text("c2s"));
        out.entry(ino("server_ino"))
            .or_default()
            .extend(text("s2c"));
    }
    out
}

/// Every record of `stdout` belongs to a socket of `expected`, and the bytes of each of those
/// sockets are exactly the expected ones.
fn assert_exact(stdout: &str, expected: &Expected, what: &str) {
    let captured = parse_raw_json(stdout).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    for r in &captured.records {
        if let Some(ino) = r["sock_ino"].as_u64() {
            assert!(
                expected.contains_key(&ino),
                "{what}: a record of an unselected socket (inode {ino}): {r}"
            );
        }
    }
    for (ino, bytes) in &captured.streams {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains("UNSELECTED"),
            "{what}: unselected bytes captured on socket {ino}"
        );
    }
    for (ino, want) in expected {
        let got = captured.streams.get(ino).cloned().unwrap_or_default();
        assert!(
            got == *want,
            "{what}: socket {ino}: captured {} bytes, {} sent ({:?}...)",
            got.len(),
            want.len(),
            String::from_utf8_lossy(&got[..got.len().min(40)])
        );
    }
}

fn churn_on(base: &Path, tag: &str, reuse_expected: bool) {
    support::require!(Need::Root, Need::TestPeer);
    let dir: PathBuf = base.join(format!("csn-churn-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("mkdir");
    let sel = |name: &str| dir.join(name).display().to_string();
    let mut a = Tracer::spawn(
        Path::new(TRACER),
        &["--raw", "-o", "json", &sel("a.sock"), &sel("a.d/*")],
    )
    .expect("spawn tracer A");
    let mut b =
        Tracer::spawn(Path::new(TRACER), &["--raw", "-o", "json", &sel("b.sock")]).expect("B");
    a.wait_ready(Duration::from_secs(30)).expect("tracer A");
    b.wait_ready(Duration::from_secs(30)).expect("tracer B");
    let rounds = ROUNDS.to_string();
    let peer = support::spawn_testpeer(&[
        "churn",
        "--dir",
        dir.to_str().expect("utf-8"),
        "--rounds",
        &rounds,
        "--unselected",
        "150",
    ])
    .expect("peer");
    // Each round's new `a.d` is used once tracer A has reported it (a rescan picks up a new
    // directory; sockets in it are then traced from their first byte).
    let notice = format!("containerdsnoop: {}: directory ", sel("a.d/*"));
    for round in 0..ROUNDS {
        support::wait_until(Duration::from_secs(30), "tracer A's notice of a.d", || {
            let seen = (a.stderr_so_far().lines())
                .filter(|l| {
                    l.starts_with(&notice) && (l.contains("exists now") || l.contains("replaced"))
                })
                .count();
            Ok(seen > round)
        })
        .unwrap_or_else(|e| panic!("{tag}: {e:#}\n{}", a.stderr_so_far()));
        fs::write(dir.join(format!("go-a.d-{round}")), b"").expect("go");
    }
    let out = peer.wait_with_output().expect("peer exits");
    assert!(
        out.status.success(),
        "peer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    let (a_out, a_err) = a.stop_ok();
    let (b_out, _) = b.stop_ok();
    let reused = summary["reused_inode_numbers"].as_u64().expect("reused");
    let strangers = summary["unselected_sockets"].as_u64().expect("count");
    eprintln!("{tag}: {strangers} unselected sockets, {reused} selected inode numbers reused");
    assert!(strangers >= 3000, "{tag}: {strangers}");
    if reuse_expected {
        assert!(
            reused > 0,
            "{tag}: no inode number was reused, so this run proves nothing"
        );
    }
    assert_exact(
        &a_out,
        &expected_for(&summary, "A"),
        &format!("{tag} tracer A"),
    );
    assert_exact(
        &b_out,
        &expected_for(&summary, "B"),
        &format!("{tag} tracer B"),
    );
    // Identities that went away were removed, and said so.
    assert!(
        a_err.contains("no longer selects directory inode"),
        "{tag}: {a_err}"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// `statfs(2)`'s `f_type` of `path`.
fn fs_type(path: &Path) -> i64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: all-zero is a valid `struct statfs`; statfs writes into it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and outlives the call.
    assert_eq!(unsafe { libc::statfs(c.as_ptr(), &mut st) }, 0, "statfs");
    st.f_type as i64
}

#[test]
fn issue_19_churn_on_ext4_selects_no_reused_inode() {
    const EXT4_SUPER_MAGIC: i64 = 0xef53;
    let tmp = std::env::temp_dir();
    assert_eq!(
        fs_type(&tmp),
        EXT4_SUPER_MAGIC,
        "{} is not ext4: this test needs the file system that reuses inode numbers",
        tmp.display()
    );
    churn_on(&tmp, "ext4", true);
}

#[test]
fn issue_19_churn_on_tmpfs_selects_nothing_unselected() {
    churn_on(Path::new("/dev/shm"), "tmpfs", false);
}

/// Binds `path`, connects and sends `c2s` and its reply at once; returns (client, server)
/// sockfs inode numbers.
fn quick_exchange(path: &Path, c2s: &[u8]) -> (u64, u64) {
    use std::io::{Read as _, Write as _};
    use std::os::unix::{
        fs::MetadataExt as _,
        net::{UnixListener, UnixStream},
    };
    let listener = UnixListener::bind(path).expect("bind");
    let mut client = UnixStream::connect(path).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");
    client.write_all(c2s).expect("send");
    let mut got = vec![0; c2s.len()];
    server.read_exact(&mut got).expect("recv");
    server.write_all(b"reply").expect("reply");
    let mut back = [0; 5];
    client.read_exact(&mut back).expect("recv reply");
    let ino = |fd: &UnixStream| {
        let p = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
        fs::metadata(p).expect("fd").ino()
    };
    (ino(&client), ino(&server))
}

/// A selected directory created while tracing, and a socket bound and used in it at once,
/// before any rescan could have seen the directory: every byte is traced, because the
/// directory's parent is awaited with its name (this is what the containerd 2.1 CI run lost
/// when `/run/containerd/s` appeared for its first shim). A directory of another name beside
/// it is not traced.
#[test]
fn issue_19_a_directory_created_while_tracing_is_traced_from_its_first_byte() {
    support::require!(Need::Root);
    let dir = support::temp_dir("awaited").expect("temp dir");
    let sel = |p: &str| dir.join(p).display().to_string();
    let tracer = Tracer::started(
        Path::new(TRACER),
        &["--raw", "-o", "json", &sel("s/*"), &sel("t/x.sock")],
    );
    let mut expected = Expected::new();
    for (sub, name, payload) in [
        ("s", "a.sock", &b"SELECTED-PREFIX"[..]),
        ("t", "x.sock", b"SELECTED-EXACT"),
        ("u", "x.sock", b"UNSELECTED-NEIGHBOUR"),
    ] {
        fs::create_dir(dir.join(sub)).expect("mkdir");
        let (client, server) = quick_exchange(&dir.join(sub).join(name), payload);
        if sub != "u" {
            expected.insert(client, payload.to_vec());
            expected.insert(server, b"reply".to_vec());
        }
    }
    let (out, err) = tracer.stop_ok();
    assert_exact(&out, &expected, "awaited directories");
    assert!(
        err.contains("in it are traced from their first byte once it is created"),
        "{err}"
    );
    support::remove_temp_dir(&dir);
}
