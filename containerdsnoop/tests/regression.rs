//! Regression tests of the command line, named after what they fixed. They run the binary
//! without root: nothing here attaches to the kernel.

use std::process::{Command, Stdio};

const TRACER: &str = env!("CARGO_BIN_EXE_containerdsnoop");

fn fixture(name: &str) -> String {
    format!(
        "{}/../containerdsnoop-decode/tests/fixtures/pcap/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs the tracer with stdout a pipe whose reader is already gone; returns its exit code and
/// stderr.
fn into_closed_pipe(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(TRACER)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run the tracer");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `-w -` into a closed pipe exited 1: the pcap error reached main as `io::Error::other`, so
/// the broken-pipe check never saw it. The pcapng header is the first write, before anything
/// that needs root.
#[test]
fn regression_pcap_to_closed_pipe_exits_0() {
    let (code, stderr) = into_closed_pipe(&["-w", "-", "-q", "/tmp/containerdsnoop-no-such.sock"]);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "stderr: {stderr}");
}

/// The printers into a closed pipe (`containerdsnoop -r x | head -1` after head is gone).
#[test]
fn regression_printer_to_closed_pipe_exits_0() {
    let file = fixture("grpc_loopback.pcapng");
    for format in ["table", "json"] {
        let (code, stderr) = into_closed_pipe(&["-r", &file, "-q", "-o", format]);
        assert_eq!(code, Some(0), "-o {format}: stderr: {stderr}");
    }
    let (code, stderr) = into_closed_pipe(&["-r", &file, "-q", "--raw"]);
    assert_eq!(code, Some(0), "--raw: stderr: {stderr}");
}

/// Other errors still fail: a file that is not a capture exits 1 and says why.
#[test]
fn a_bad_capture_file_exits_1() {
    let out = Command::new(TRACER)
        .args([
            "-r",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/regression.rs"),
            "-q",
        ])
        .stdout(Stdio::null())
        .output()
        .expect("run the tracer");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a pcap"), "{stderr}");
}
