//! `-w` then `-r`: the chunks, their metadata and their holes come back.

use super::*;

#[test]
fn round_trip_reproduces_chunks_metadata_and_gaps() {
    let writes = h2_grpc_writes(1000);
    assert!(writes[0].0 && writes[0].1.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
    let all = chunks_of(&writes);
    // The ring buffer lost one server record: the next server record says so.
    let lost = all
        .iter()
        .position(|c| !c.has(flags::PATH_IS_PEER) && c.stream_pos > 0)
        .expect("a later server write");
    let mut kept: Vec<Chunk> = all.clone();
    kept.remove(lost);
    if let Some(next) = kept[lost..].iter_mut().find(|c| c.sock_ino == SERVER_INO) {
        next.lost_records = 1;
    }
    let file = export(&kept, Protocol::Grpc);
    let back = read_chunks(&file);
    let want: Vec<Chunk> = kept.iter().map(as_read_back).collect();
    for (i, (b, w)) in back.iter().zip(&want).enumerate() {
        assert_eq!(b, w, "chunk {i}");
    }
    assert_eq!(back.len(), want.len());
    // The reassembler sees the same gap (and nothing else) in both.
    assert_eq!(pieces_of(&back), pieces_of(&kept));
    assert!(
        pieces_of(&back)
            .iter()
            .any(|(_, p)| p.iter().any(|p| matches!(
                p,
                Piece::Gap {
                    lost_records: 1,
                    ..
                }
            )))
    );
}

#[test]
fn truncated_spans_and_late_joins_survive_the_round_trip() {
    let mut a = chunk(true, 500, b"joined-late", T0);
    a.flags |= flags::TRUNCATED;
    a.span_len = 40; // 29 bytes past the copy were not captured
    let b = chunk(true, 540, b"next", T0 + 1);
    let mut c = chunk(false, 0, b"", T0 + 2);
    c.flags |= flags::NO_PAYLOAD;
    c.span_len = 16; // nothing copied at all
    let d = chunk(false, 16, b"after", T0 + 3);
    let written = vec![a, b, c, d];
    let back = read_chunks(&export(&written, Protocol::Raw));
    let want: Vec<Chunk> = written.iter().map(as_read_back).collect();
    assert_eq!(back, want);
    let pieces = pieces_of(&back);
    assert_eq!(pieces, pieces_of(&written));
    assert!(matches!(pieces[0].1[0], Piece::Joined { pos: 500 }));
    assert!(pieces[0].1.contains(&Piece::Missing { pos: 511, len: 29 }));
    assert_eq!(pieces[2].1, vec![Piece::Missing { pos: 0, len: 16 }]);
}

#[test]
fn large_records_are_split_into_segments_and_rejoined() {
    // Consecutive writes of one side as one record, as a process writing big buffers makes.
    let mut writes: Vec<(bool, Vec<u8>)> = Vec::new();
    for (client, data) in h2_grpc_writes(300_000) {
        match writes.last_mut() {
            Some((c, d)) if *c == client => d.extend_from_slice(&data),
            _ => writes.push((client, data)),
        }
    }
    let chunks = chunks_of(&writes);
    assert!(
        chunks
            .iter()
            .any(|c| c.data.len() > crate::pcap::writer::MAX_SEGMENT)
    );
    let back = read_chunks(&export(&chunks, Protocol::Grpc));
    assert!(back.len() > chunks.len());
    assert!(
        back.iter()
            .all(|c| c.data.len() <= crate::pcap::writer::MAX_SEGMENT)
    );
    assert_eq!(streams(&back), streams(&chunks));
}

#[test]
fn connection_ends_are_reported_with_both_inodes() {
    let writes = h2_grpc_writes(10);
    let (ev, err, stats) = read_events(&export(&chunks_of(&writes), Protocol::Grpc));
    assert!(err.is_none());
    let closed: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Closed {
                sock_ino, peer_ino, ..
            } => Some((*sock_ino, *peer_ino)),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 1);
    let (a, b) = closed[0];
    assert_eq!((a.min(b), a.max(b)), (CLIENT_INO, SERVER_INO));
    assert_eq!(stats.tcp.gaps, 0);
    assert_eq!(stats.tcp.retransmitted_bytes, 0);
    assert!(matches!(ev.last(), Some(Event::Closed { .. })));
}

#[test]
fn export_file_is_private_and_valid_after_each_record() {
    let dir = scratch_dir("mode");
    let path = dir.join("out.pcapng");
    let mut w = PcapWriter::create(path.to_str().unwrap()).expect("create");
    let c = chunk(true, 0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", T0);
    w.record(&c, &[], &ConnMeta::from_chunk(&c, Protocol::Grpc))
        .expect("record");
    // Before finish: what is on disk already reads back.
    let on_disk = std::fs::read(&path).unwrap();
    let back = read_chunks(&on_disk);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].data, c.data);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    w.finish().expect("finish");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn connections_get_distinct_addresses_and_the_server_port_of_their_protocol() {
    let mut chunks = Vec::new();
    for (i, ino) in [(0u64, 10u64), (1, 20), (2, 30)] {
        let mut c = chunk(true, 0, b"GET / HTTP/1.1\r\n\r\n", T0 + i);
        c.sock_ino = ino;
        c.peer_ino = ino + 1;
        c.sock_id = ino << 20;
        c.peer_id = (ino + 1) << 20;
        chunks.push(c);
    }
    let file = export(&chunks, Protocol::Http1);
    let mut r = crate::pcap::file::CaptureFile::new(&file[..]).unwrap();
    let mut tuples = std::collections::HashSet::new();
    while let Some(f) = r.next_frame().unwrap() {
        let s = crate::pcap::packet::parse_frame(f.linktype, &f.data).unwrap();
        if s.flags & tcp_flags::SYN != 0 && s.flags & tcp_flags::ACK == 0 {
            assert_eq!(s.dst.port(), 80);
            assert!(s.src.ip().is_loopback() && s.dst.ip().is_loopback());
            tuples.insert((s.src, s.dst));
        }
    }
    assert_eq!(tuples.len(), 3);
}

#[test]
fn a_server_inode_learnt_after_accept_and_a_reused_socket_pair() {
    // The client writes its preface before the server has accepted: no server inode yet.
    let mut first = chunk(true, 0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", T0);
    first.peer_ino = 0;
    let reply = chunk(false, 0, b"\0\0\0\x04\0\0\0\0\0", T0 + 1);
    // The same socket memory, a new connection: the client starts over at 0, new inodes.
    let mut again = chunk(true, 0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", T0 + 2);
    again.sock_ino = 5;
    again.peer_ino = 6;
    let written = vec![first, reply, again];
    let file = export(&written, Protocol::Grpc);
    let back = read_chunks(&file);
    let want: Vec<Chunk> = written.iter().map(as_read_back).collect();
    assert_eq!(back, want);
    // Two synthetic connections: two SYNs, two FIN exchanges.
    let mut r = crate::pcap::file::CaptureFile::new(&file[..]).unwrap();
    let (mut syns, mut fins) = (0, 0);
    while let Some(f) = r.next_frame().unwrap() {
        let s = crate::pcap::packet::parse_frame(f.linktype, &f.data).unwrap();
        syns += usize::from(s.flags == tcp_flags::SYN);
        fins += usize::from(s.flags & tcp_flags::FIN != 0);
    }
    assert_eq!((syns, fins), (2, 4));
    let (ev, _, _) = read_events(&file);
    let closed: Vec<(u64, u64)> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Closed {
                sock_id, peer_id, ..
            } => Some((*sock_id, *peer_id)),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 2);
    assert!(
        closed
            .iter()
            .all(|&(a, b)| (a.min(b), a.max(b)) == (SERVER_ID, CLIENT_ID))
    );
}
