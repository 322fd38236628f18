//! RFC 7541 Appendix C vectors, adversarial blocks, and the `hpack` crate's encoder as an
//! independent oracle.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn pairs(list: &HeaderList) -> Vec<(String, String)> {
    list.fields
        .iter()
        .map(|f| {
            (
                f.name_str().unwrap().to_string(),
                f.value_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn expect(list: &HeaderList, want: &[(&str, &str)]) {
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    assert_eq!(pairs(list), want);
    assert!(!list.truncated);
}

fn dyn_entries(d: &Decoder) -> Vec<(String, String)> {
    (62..62 + d.table().len())
        .map(|i| match d.table().get(i) {
            Some(Lookup::Dynamic(e)) => (
                String::from_utf8(e.name.unwrap().to_vec()).unwrap(),
                String::from_utf8(e.value.unwrap().to_vec()).unwrap(),
            ),
            other => panic!("index {i}: {other:?}"),
        })
        .collect()
}

#[test]
fn c2_literal_representations() {
    // C.2.1 literal with indexing
    let mut d = Decoder::new(Limits::default());
    let l = d
        .decode(&hex(
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
        ))
        .unwrap();
    expect(&l, &[("custom-key", "custom-header")]);
    assert_eq!(d.table().size(), 55);
    // C.2.2 literal without indexing
    let mut d = Decoder::new(Limits::default());
    let l = d
        .decode(&hex("040c 2f73 616d 706c 652f 7061 7468"))
        .unwrap();
    expect(&l, &[(":path", "/sample/path")]);
    assert!(d.table().is_empty());
    // C.2.3 never indexed
    let mut d = Decoder::new(Limits::default());
    let l = d
        .decode(&hex("1008 7061 7373 776f 7264 0673 6563 7265 74"))
        .unwrap();
    expect(&l, &[("password", "secret")]);
    assert!(l.fields[0].sensitive);
    assert!(d.table().is_empty());
    // C.2.4 indexed
    let mut d = Decoder::new(Limits::default());
    expect(&d.decode(&[0x82]).unwrap(), &[(":method", "GET")]);
}

fn requests(blocks: [&str; 3]) {
    let mut d = Decoder::new(Limits::default());
    let l = d.decode(&hex(blocks[0])).unwrap();
    expect(
        &l,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ],
    );
    assert_eq!(d.table().size(), 57);
    let l = d.decode(&hex(blocks[1])).unwrap();
    expect(
        &l,
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ],
    );
    assert_eq!(d.table().size(), 110);
    let l = d.decode(&hex(blocks[2])).unwrap();
    expect(
        &l,
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ],
    );
    assert_eq!(d.table().size(), 164);
    assert_eq!(
        dyn_entries(&d),
        vec![
            ("custom-key".into(), "custom-value".into()),
            ("cache-control".into(), "no-cache".into()),
            (":authority".into(), "www.example.com".into()),
        ]
    );
}

#[test]
fn c3_requests_without_huffman() {
    requests([
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ]);
}

#[test]
fn c4_requests_with_huffman() {
    requests([
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ]);
}

const DATE1: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
const DATE2: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
const LOC: &str = "https://www.example.com";
const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

fn responses(blocks: [&str; 3]) {
    // Appendix C.5/C.6 use SETTINGS_HEADER_TABLE_SIZE = 256, so evictions happen.
    let mut d = Decoder::with_table_size(256, Limits::default());
    let l = d.decode(&hex(blocks[0])).unwrap();
    expect(
        &l,
        &[
            (":status", "302"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", LOC),
        ],
    );
    assert_eq!(d.table().size(), 222);
    let l = d.decode(&hex(blocks[1])).unwrap();
    expect(
        &l,
        &[
            (":status", "307"),
            ("cache-control", "private"),
            ("date", DATE1),
            ("location", LOC),
        ],
    );
    assert_eq!(d.table().size(), 222);
    assert_eq!(
        dyn_entries(&d),
        vec![
            (":status".into(), "307".into()),
            ("location".into(), LOC.into()),
            ("date".into(), DATE1.into()),
            ("cache-control".into(), "private".into()),
        ]
    );
    let l = d.decode(&hex(blocks[2])).unwrap();
    expect(
        &l,
        &[
            (":status", "200"),
            ("cache-control", "private"),
            ("date", DATE2),
            ("location", LOC),
            ("content-encoding", "gzip"),
            ("set-cookie", COOKIE),
        ],
    );
    assert_eq!(d.table().size(), 215);
    assert_eq!(
        dyn_entries(&d),
        vec![
            ("set-cookie".into(), COOKIE.into()),
            ("content-encoding".into(), "gzip".into()),
            ("date".into(), DATE2.into()),
        ]
    );
}

#[test]
fn c5_responses_without_huffman_with_eviction() {
    responses([
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a
         3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04
         677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49
         553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
    ]);
}

#[test]
fn c6_responses_with_huffman_with_eviction() {
    responses([
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e
         919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7
         821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed
         4ee5 b106 3d50 07",
    ]);
}

#[test]
fn size_update_applies_and_is_bounded() {
    let mut d = Decoder::new(Limits::default());
    d.decode(&hex(
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
    ))
    .unwrap();
    // 0x20 = size update to 0: empties the table, then index 62 is out of range.
    assert_eq!(d.decode(&[0x20]).unwrap().fields.len(), 0);
    assert!(d.table().is_empty());
    assert_eq!(d.decode(&[0xbe]), Err(HpackError::IndexOutOfRange(62)));
    // Size update after a field.
    assert_eq!(
        d.decode(&[0x82, 0x20]),
        Err(HpackError::SizeUpdateNotAtStart)
    );
}

#[test]
fn size_update_to_4_gib_is_refused_or_capped() {
    let update = integer::encode(u32::MAX as usize, 5, 0x20);
    let mut d = Decoder::new(Limits::default());
    assert_eq!(
        d.decode(&update),
        Err(HpackError::SizeUpdateTooLarge {
            size: u32::MAX as usize,
            max: 4096
        })
    );
    // With the bound unknown, the table accepts it but keeps at most the hard cap.
    let mut d = Decoder::new(Limits::default());
    d.set_protocol_max(None);
    d.decode(&update).unwrap();
    let mut block = vec![0x40, 0x01, b'k', 0x7f];
    block.extend(integer::encode(60_000, 7, 0)[1..].iter());
    block.extend(std::iter::repeat_n(b'v', 60_000));
    for _ in 0..4 {
        d.decode(&block).unwrap();
    }
    assert!(d.table().size() <= Limits::default().table_hard_cap);
    assert_eq!(d.table().len(), 1);
    // Entries the encoder still holds but we dropped decode as unknown, not as an error.
    let l = d.decode(&[0xbf]).unwrap();
    assert_eq!(l.fields[0].name, None);
    assert_eq!(l.fields[0].value, None);
}

#[test]
fn adversarial_blocks_are_errors_not_panics() {
    let mut d = Decoder::new(Limits::default());
    assert_eq!(d.decode(&[0xff]), Err(HpackError::IntegerTruncated));
    assert_eq!(
        d.decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        Err(HpackError::IntegerOverflow)
    );
    assert_eq!(d.decode(&[0x80]), Err(HpackError::IndexZero));
    // Literal whose string length claims ~4 GB.
    let mut b = vec![0x40];
    b.extend(integer::encode(4_000_000_000, 7, 0));
    b.extend_from_slice(b"abc");
    assert_eq!(d.decode(&b), Err(HpackError::StringTruncated));
    // Literal name shorter than claimed.
    assert_eq!(
        d.decode(&[0x00, 0x05, b'a']),
        Err(HpackError::StringTruncated)
    );
    // Huffman garbage: all ones is EOS.
    assert_eq!(
        d.decode(&[0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x00]),
        Err(HpackError::HuffmanEos)
    );
    assert_eq!(
        d.decode(&[0x00, 0x81, 0x18, 0x00]),
        Err(HpackError::HuffmanPadding)
    );
}

#[test]
fn expanding_header_list_is_truncated() {
    let mut d = Decoder::new(Limits::default());
    // Insert one 4000-byte entry, then reference it 100,000 times: 400 MB if materialised.
    let mut block = vec![0x40, 0x01, b'k', 0x7f];
    block.extend(integer::encode(4000, 7, 0)[1..].iter());
    block.extend(std::iter::repeat_n(b'v', 4000));
    block.extend(std::iter::repeat_n(0xbe, 100_000));
    let l = d.decode(&block).unwrap();
    assert!(l.truncated);
    let total: usize = l.fields.iter().map(|f| f.size()).sum();
    assert!(total <= Limits::default().max_header_list);
}

#[test]
fn long_strings_become_unknown() {
    let limits = Limits {
        max_string: 16,
        ..Limits::default()
    };
    let mut d = Decoder::new(limits);
    let mut block = vec![0x00, 0x01, b'k', 20];
    block.extend_from_slice(&[b'x'; 20]);
    let mut huff = huffman::encode(&[b'a'; 40]);
    block.extend_from_slice(&[0x00, 0x01, b'h', 0x80 | huff.len() as u8]);
    block.append(&mut huff);
    let l = d.decode(&block).unwrap();
    assert_eq!(l.fields.len(), 2);
    assert_eq!(l.fields[0].value, None);
    assert_eq!(l.fields[1].value, None);
}

#[test]
fn late_join_indices_are_unknown() {
    let mut d = Decoder::late_join(Limits::default());
    // 0xbe = index 62 never seen; 0x7e = literal with indexing whose name is index 62.
    let l = d.decode(&[0xbe, 0x7e, 0x01, b'v', 0x82]).unwrap();
    assert_eq!(
        l.fields[0],
        Field {
            name: None,
            value: None,
            sensitive: false,
            unknown_slot: Some(0),
        }
    );
    assert_eq!(l.fields[1].name, None);
    assert_eq!(l.fields[1].value.as_deref(), Some(&b"v"[..]));
    assert_eq!(l.fields[2].value_str(), Some("GET"));
    // The entry inserted after joining is known at 62.
    let l = d.decode(&[0xbe]).unwrap();
    assert_eq!(l.fields[0].value.as_deref(), Some(&b"v"[..]));
}

#[test]
fn matches_hpack_crate_encoder() {
    let mut enc = hpack::Encoder::new();
    let mut d = Decoder::new(Limits::default());
    for i in 0..50 {
        let path = format!("/containerd.services.tasks.v1.Tasks/M{}", i % 7);
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":path", path.as_bytes()),
            (b"content-type", b"application/grpc"),
            (b"containerd-namespace", b"k8s.io"),
            (b"x-long", &[b'z'; 300]),
        ];
        let block = enc.encode(headers.iter().copied());
        let l = d.decode(&block).unwrap();
        let got: Vec<(Vec<u8>, Vec<u8>)> = l
            .fields
            .iter()
            .map(|f| {
                (
                    f.name.as_deref().unwrap().to_vec(),
                    f.value.as_deref().unwrap().to_vec(),
                )
            })
            .collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(got, want, "block {i}");
    }
}

#[test]
fn random_blocks_never_panic() {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut d = Decoder::new(Limits::default());
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 64) as usize;
        let block: Vec<u8> = (0..len)
            .map(|i| (x >> (i % 8 * 8)) as u8 ^ i as u8)
            .collect();
        if d.decode(&block).is_err() {
            d = Decoder::new(Limits::default());
        }
    }
}
