//! tshark, an independent decoder, reads our exports (skipped, with a note, without tshark).

use super::*;

#[test]
fn tshark_decodes_grpc_in_our_export() {
    let writes = h2_grpc_writes(100_000);
    let dir = scratch_dir("tshark-grpc");
    let path = dir.join("grpc.pcapng");
    std::fs::write(&path, export(&chunks_of(&writes), Protocol::Grpc)).unwrap();
    let p = path.to_str().unwrap();
    let Some(out) = tshark(&[
        "-r",
        p,
        "-d",
        "tcp.port==50051,http2",
        "-Y",
        "grpc",
        "-T",
        "fields",
        "-e",
        "http2.header.value",
        "-e",
        "grpc.message_length",
    ]) else {
        return;
    };
    assert!(out.contains(VERSION), "{out}");
    assert!(
        out.contains("/containerd.services.content.v1.Content/Read"),
        "{out}"
    );
    assert!(out.contains("application/grpc"), "{out}");
    // The 100,000-byte response message, reassembled across segments by tshark.
    assert!(out.contains("100000"), "{out}");
    let Some(data) = tshark(&[
        "-r",
        p,
        "-d",
        "tcp.port==50051,http2",
        "-Y",
        "http2.type == 0",
        "-T",
        "fields",
        "-e",
        "http2.data.data",
    ]) else {
        return;
    };
    // "\x0a\x052.1.0" as the Version response's gRPC message.
    assert!(data.contains("00000000070a05322e312e30"), "{data}");
    // Our export is well-formed TCP: no analysis warnings at all.
    let warnings = tshark(&["-r", p, "-Y", "tcp.analysis.flags"]).unwrap_or_default();
    assert_eq!(warnings.trim(), "", "tshark flags our TCP");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tshark_sees_lost_bytes_as_a_lost_segment() {
    let writes = h2_grpc_writes(10);
    let mut chunks = chunks_of(&writes);
    let lost = chunks
        .iter()
        .position(|c| c.sock_ino == SERVER_INO && c.stream_pos > 0)
        .unwrap();
    chunks.remove(lost);
    let dir = scratch_dir("tshark-gap");
    let path = dir.join("gap.pcapng");
    std::fs::write(&path, export(&chunks, Protocol::Grpc)).unwrap();
    let Some(out) = tshark(&[
        "-r",
        path.to_str().unwrap(),
        "-Y",
        "tcp.analysis.lost_segment",
        "-T",
        "fields",
        "-e",
        "frame.comment",
    ]) else {
        return;
    };
    assert!(out.contains("gap:"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn tshark_decodes_http1_in_our_export_without_options() {
    let req = b"GET /v1.41/version HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: Docker-Client/20.10.24\r\n\r\n";
    let body = b"{\"Version\":\"20.10.24\"}\n";
    let resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
        body.len(),
        String::from_utf8_lossy(body)
    );
    let writes = vec![(true, req.to_vec()), (false, resp.into_bytes())];
    let mut chunks = chunks_of(&writes);
    for c in &mut chunks {
        c.path = "/run/docker.sock".into();
    }
    let dir = scratch_dir("tshark-http");
    let path = dir.join("http.pcapng");
    std::fs::write(&path, export(&chunks, Protocol::Http1)).unwrap();
    let p = path.to_str().unwrap();
    let Some(out) = tshark(&[
        "-r",
        p,
        "-Y",
        "http.request",
        "-T",
        "fields",
        "-e",
        "http.request.method",
        "-e",
        "http.request.uri",
        "-e",
        "frame.comment",
    ]) else {
        return;
    };
    assert!(out.contains("GET\t/v1.41/version"), "{out}");
    // Our process metadata, as a packet comment.
    assert!(
        out.contains("comm: ctr") && out.contains("path: /run/docker.sock"),
        "{out}"
    );
    let resp = tshark(&[
        "-r",
        p,
        "-Y",
        "http.response",
        "-T",
        "fields",
        "-e",
        "http.response.code",
    ])
    .unwrap_or_default();
    assert_eq!(resp.trim(), "200");
    let _ = std::fs::remove_dir_all(dir);
}
