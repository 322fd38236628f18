//! `-r` of captures made by others: a real grpcio exchange captured by dumpcap, and TCP
//! misbehaviour built by hand.

use super::*;

const FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/pcap/grpc_loopback.pcapng");

#[test]
fn reads_a_real_grpc_capture_from_dumpcap() {
    let (ev, err, stats) = read_events(FIXTURE);
    assert!(err.is_none(), "{err:?}");
    let chunks: Vec<Chunk> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Chunk(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let s = streams(&chunks);
    assert_eq!(s.len(), 2, "two directions");
    for runs in s.values() {
        assert_eq!(runs.len(), 1, "gap-free");
        assert_eq!(runs[0].0, 0, "starts at stream byte 0");
    }
    let client = chunks
        .iter()
        .find(|c| c.data.starts_with(b"PRI * HTTP/2.0"))
        .expect("preface");
    assert_eq!(client.path, "tcp://127.0.0.1:54414->127.0.0.1:50051");
    assert!(client.has(flags::PATH_IS_PEER));
    let client_stream = &s[&client.sock_ino][0].1;
    let server_stream = &s[&client.peer_ino][0].1;
    assert_eq!((client_stream.len(), server_stream.len()), (554, 321));
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(find(client_stream, b"/grpc.health.v1.Health/Check"));
    assert!(find(client_stream, VERSION.as_bytes()));
    assert!(find(server_stream, b"\x0a\x052.1.0\x12\x04test"));
    assert_eq!((stats.tcp.gaps, stats.tcp.retransmitted_bytes), (0, 0));
    assert!(matches!(ev.last(), Some(Event::Closed { .. })));
    // Wall-clock timestamps (dumpcap's resolution honoured): in this century.
    assert!(chunks.iter().all(|c| c.ts_ns > 1_600_000_000_000_000_000));

    // tshark's own reassembly of the same file agrees byte for byte.
    let Some(follow) = tshark(&[
        "-r",
        fixture_path().as_str(),
        "-q",
        "-z",
        "follow,tcp,raw,0",
    ]) else {
        return;
    };
    let (mut c, mut v) = (Vec::new(), Vec::new());
    for line in follow.lines() {
        let (target, hex) = match line.strip_prefix('\t') {
            Some(h) => (&mut v, h),
            None => (&mut c, line),
        };
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        for i in (0..hex.len()).step_by(2) {
            target.push(u8::from_str_radix(&hex[i..i + 2], 16).unwrap());
        }
    }
    assert_eq!((&c, &v), (client_stream, server_stream));
}

fn fixture_path() -> String {
    format!(
        "{}/tests/fixtures/pcap/grpc_loopback.pcapng",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn retransmissions_reordering_and_holes() {
    const A: u8 = tcp_flags::ACK;
    let isn = u32::MAX - 14; // the client's stream wraps the sequence space
    let d = |o: u32| isn.wrapping_add(1).wrapping_add(o);
    let body: Vec<u8> = (0..60u8).map(|i| b'a' + i % 26).collect();
    let part = |a: usize, b: usize| &body[a..b];
    let frames = vec![
        seg(true, isn, 0, tcp_flags::SYN, b""),
        seg(false, 5000, d(0), tcp_flags::SYN | A, b""),
        seg(true, isn, 0, tcp_flags::SYN, b""), // retransmitted SYN
        seg(true, d(0), 5001, A, b""),
        seg(true, d(0), 5001, A, part(0, 10)),
        seg(true, d(20), 5001, A, part(20, 30)), // early
        seg(true, d(10), 5001, A, part(10, 20)), // fills the hole
        seg(true, d(0), 5001, A, part(0, 10)),   // retransmission
        seg(true, d(25), 5001, A, part(25, 35)), // half old, half new
        seg(false, 5001, d(35), A, b"pong"),
        seg(true, d(45), 5001, A, part(45, 55)), // 35..45 never captured
        seg(true, d(55), 5001, tcp_flags::FIN | A, b""),
        seg(false, 5005, d(56), tcp_flags::FIN | A, b""),
    ];
    for (big, nanos) in [(false, false), (true, true)] {
        let file = pcap_file(big, nanos, linktype::RAW, 65535, &timed(frames.clone()));
        let (ev, err, stats) = read_events(&file);
        assert!(err.is_none());
        let chunks: Vec<Chunk> = ev
            .iter()
            .filter_map(|e| {
                if let Event::Chunk(c) = e {
                    Some(c.clone())
                } else {
                    None
                }
            })
            .collect();
        let s = streams(&chunks);
        let client = chunks[0].sock_ino;
        assert_eq!(
            s[&client],
            vec![(0, part(0, 35).to_vec()), (45, part(45, 55).to_vec())]
        );
        assert_eq!(s[&chunks[0].peer_ino], vec![(0, b"pong".to_vec())]);
        assert_eq!(chunks[0].path, "tcp://10.0.0.1:40000->10.0.0.2:8080");
        assert_eq!(stats.tcp.retransmitted_bytes, 15);
        assert_eq!(stats.tcp.out_of_order, 2);
        assert_eq!((stats.tcp.gaps, stats.tcp.gap_bytes), (1, 10));
        // The client's bytes arrive in order: positions never go back.
        let mut next = 0;
        for c in chunks.iter().filter(|c| c.sock_ino == client) {
            assert!(c.stream_pos >= next);
            next = c.stream_pos + c.span_len as u64;
        }
        // Microsecond files lose the nanoseconds, nothing else.
        let ts0 = if nanos {
            T0 + 4000
        } else {
            (T0 + 4000) / 1000 * 1000
        };
        assert_eq!(chunks[0].ts_ns, ts0);
        assert!(matches!(ev.last(), Some(Event::Closed { .. })));
    }
}

#[test]
fn rst_closes_and_a_new_syn_on_the_same_ports_is_a_new_connection() {
    const A: u8 = tcp_flags::ACK;
    let frames = vec![
        seg(true, 100, 0, tcp_flags::SYN, b""),
        seg(false, 900, 101, tcp_flags::SYN | A, b""),
        seg(true, 101, 901, A, b"one"),
        seg(false, 901, 104, tcp_flags::RST | A, b""),
        seg(true, 7000, 0, tcp_flags::SYN, b""),
        seg(false, 3000, 7001, tcp_flags::SYN | A, b""),
        seg(true, 7001, 3001, A, b"two"),
        seg(false, 3001, 7004, A, b"reply"),
    ];
    let file = pcap_file(false, true, linktype::RAW, 65535, &timed(frames));
    let (ev, err, _) = read_events(&file);
    assert!(err.is_none());
    let summary: Vec<String> = ev
        .iter()
        .map(|e| match e {
            Event::Chunk(c) => format!(
                "{} {} {}",
                c.sock_ino,
                c.stream_pos,
                String::from_utf8_lossy(&c.data)
            ),
            Event::Closed {
                sock_ino, peer_ino, ..
            } => format!("closed {sock_ino} {peer_ino}"),
        })
        .collect();
    let i = tcp::FIRST_SYNTHETIC_INO;
    assert_eq!(
        summary,
        vec![
            format!("{} 0 one", i),
            format!("closed {} {}", i, i + 1),
            format!("{} 0 two", i + 2),
            format!("{} 0 reply", i + 3),
            format!("closed {} {}", i + 2, i + 3),
        ]
    );
}

#[test]
fn a_hole_that_is_never_filled_is_skipped_within_the_reorder_limit() {
    let mut frames = vec![seg(true, 100, 0, tcp_flags::ACK, b"first")];
    // Segment 105..110 is lost; everything after it waits, until the limit.
    for i in 0..(tcp::MAX_REORDER_SEGMENTS as u32 + 10) {
        frames.push(seg(true, 110 + i * 4, 0, tcp_flags::ACK, b"data"));
    }
    let file = pcap_file(false, false, linktype::RAW, 65535, &timed(frames));
    let mut r = PcapReader::new(&file[..]).unwrap();
    let mut chunks = Vec::new();
    let mut max_buffered = 0;
    while let Some(e) = r.next_event() {
        if let Event::Chunk(c) = e.unwrap() {
            chunks.push(c);
        }
        max_buffered = max_buffered.max(r.buffered_bytes());
    }
    let s = streams(&chunks);
    let runs = &s[&chunks[0].sock_ino];
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].0, 10);
    assert_eq!(runs[1].1.len(), (tcp::MAX_REORDER_SEGMENTS + 10) * 4);
    let st = r.stats();
    assert_eq!((st.tcp.gaps, st.tcp.gap_bytes), (1, 5));
    assert!(max_buffered <= tcp::MAX_REORDER_BYTES);
}

#[test]
fn syn_flood_is_bounded_and_evictions_are_counted() {
    let n = 100_000u32;
    let mut frames = Vec::with_capacity(n as usize);
    for i in 0..n {
        let mut f = seg(true, i, 0, tcp_flags::SYN, b"");
        // Distinct source address and port per connection.
        f[12..16].copy_from_slice(&(0x0A00_0000u32 + i).to_be_bytes());
        f[20..22].copy_from_slice(&((i % 60000) as u16 + 1024).to_be_bytes());
        frames.push((T0, f));
    }
    let file = pcap_file(false, true, linktype::RAW, 65535, &frames);
    let mut r = PcapReader::new(&file[..]).unwrap();
    let mut max_tracked = 0;
    while let Some(e) = r.next_event() {
        e.unwrap();
        max_tracked = max_tracked.max(r.tracked_connections());
    }
    let st = r.stats();
    assert_eq!(st.tcp.connections, n as u64);
    assert!(max_tracked <= tcp::MAX_CONNECTIONS);
    assert_eq!(st.tcp.evicted, (n as usize - tcp::MAX_CONNECTIONS) as u64);
}
