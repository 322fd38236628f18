//! Hostile and broken files: errors and counters, never panics, bounded memory.

use super::*;

fn small_export() -> Vec<u8> {
    let writes = vec![
        (true, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
        (false, b"\0\0\0\x04\0\0\0\0\0".to_vec()),
    ];
    export(&chunks_of(&writes), Protocol::Grpc)
}

/// Reads to the end; never panics; returns the chunks and the error, if any.
fn drain(bytes: &[u8]) -> Result<(usize, Option<Error>), Error> {
    let mut r = PcapReader::new(bytes)?;
    let mut n = 0;
    let mut err = None;
    while let Some(e) = r.next_event() {
        match e {
            Ok(_) => n += 1,
            Err(e) => err = Some(e),
        }
    }
    Ok((n, err))
}

#[test]
fn every_truncation_of_a_file_is_an_error_or_a_shorter_read() {
    let file = small_export();
    let (full, err) = drain(&file).unwrap();
    assert!(err.is_none());
    for n in 0..file.len() {
        match drain(&file[..n]) {
            Err(Error::Truncated | Error::NotACapture { .. }) => {}
            Err(e) => panic!("{n}: {e}"),
            Ok((got, err)) => {
                assert!(got <= full);
                if let Some(e) = err {
                    assert!(matches!(e, Error::Truncated), "{n}: {e}");
                }
            }
        }
    }
}

/// The export's first two blocks (section and interface headers).
fn headers_only() -> Vec<u8> {
    let mut v = Vec::new();
    ng::file_header(&mut v, linktype::ETHERNET as u16, "test", "eth0");
    v
}

#[test]
fn bogus_block_lengths_are_errors() {
    let block = |ty: u32, len: u32, body_len: usize, trailer: u32| {
        let mut v = headers_only();
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
        v.extend(std::iter::repeat_n(0u8, body_len));
        v.extend_from_slice(&trailer.to_le_bytes());
        v
    };
    let cases = [
        (block(6, 0xFFFF_FFFC, 0, 0), "too large"),
        (block(6, 8, 0, 8), "bad length"),
        (block(6, 14, 0, 14), "bad length"),
        (block(6, 32, 20, 36), "trailer"),
        (block(6, 28, 16, 28), "packet shorter than its fields"),
        (block(6, 64, 4, 64), "truncated"),
    ];
    for (file, what) in cases {
        let (_, err) = drain(&file).unwrap();
        let err = err.unwrap_or_else(|| panic!("{what}: no error"));
        match (what, &err) {
            ("too large", Error::TooLarge { .. }) => {}
            ("truncated", Error::Truncated) => {}
            (_, Error::Malformed(_)) => {}
            _ => panic!("{what}: {err}"),
        }
    }
    // An EPB whose captured length runs past its block, and one with a 4 GB captured length.
    for caplen in [100u32, 0xFFFF_FFF0] {
        let mut v = headers_only();
        let mut body = Vec::new();
        for x in [0u32, 0, 0, caplen, caplen] {
            body.extend_from_slice(&x.to_le_bytes());
        }
        let len = 12 + body.len() as u32;
        v.extend_from_slice(&6u32.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(&body);
        v.extend_from_slice(&len.to_le_bytes());
        let (_, err) = drain(&v).unwrap();
        assert!(
            matches!(err, Some(Error::Malformed(_) | Error::TooLarge { .. })),
            "{err:?}"
        );
    }
    // A section header of 4 GB.
    let mut v = ng::BLOCK_SHB.to_le_bytes().to_vec();
    v.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    v.extend_from_slice(&ng::BYTE_ORDER_MAGIC.to_le_bytes());
    assert!(matches!(drain(&v), Err(Error::TooLarge { .. })));
}

#[test]
fn huge_snaplen_and_zero_length_packets() {
    let frames = vec![
        (T0, Vec::new()),
        (T0, seg(true, 1, 0, tcp_flags::ACK, b"ok")),
        (T0, vec![0x45]),
    ];
    // Snap length 4 GB in the header: not trusted, nothing allocated for it.
    let file = pcap_file(false, false, linktype::RAW, u32::MAX, &frames);
    let mut r = PcapReader::new(&file[..]).unwrap();
    let got: Vec<Chunk> = r.by_ref().map(|c| c.unwrap()).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, b"ok");
    let st = r.stats();
    assert_eq!(st.malformed + st.not_tcp, 2, "{st:?}");
    // A record claiming 4 GB.
    let mut file = pcap_file(false, false, linktype::RAW, u32::MAX, &[]);
    for x in [0u32, 0, u32::MAX, u32::MAX] {
        file.extend_from_slice(&x.to_le_bytes());
    }
    let (_, err) = drain(&file).unwrap();
    assert!(matches!(err, Some(Error::TooLarge { .. })), "{err:?}");
    assert!(matches!(
        drain(b"not a capture file"),
        Err(Error::NotACapture { .. })
    ));
    assert!(matches!(drain(b""), Err(Error::Truncated)));
}

#[test]
fn random_corruption_never_panics() {
    let file = small_export();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut f = file.clone();
        for _ in 0..(rnd() % 4 + 1) {
            let i = (rnd() as usize) % f.len();
            f[i] = rnd() as u8;
        }
        let _ = drain(&f);
    }
}
