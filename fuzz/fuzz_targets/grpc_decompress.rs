//! gRPC message decompression (`grpc::compress::decompress`): output never exceeds the cap,
//! whatever the compressed bytes claim (gzip/deflate bombs).
//!
//! Input: `encoding:u8` (0 gzip, 1 deflate, 2 identity, 3 other), `cap:u16le` in 16-byte
//! units, compressed bytes.
#![no_main]

use containerdsnoop_decode::protocol::grpc::compress::{DecompressError, Encoding, decompress};
use containerdsnoop_fuzz::input::Input;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let encoding = match input.u8() % 4 {
        0 => Encoding::Gzip,
        1 => Encoding::Deflate,
        2 => Encoding::Identity,
        _ => Encoding::Other("snappy".into()),
    };
    let cap = usize::from(input.u16()) * 16;
    match decompress(&encoding, input.rest(), cap) {
        Ok(out) => assert!(out.len() <= cap, "{} bytes out, cap {cap}", out.len()),
        Err(DecompressError::TooLarge { cap: c }) => assert_eq!(c, cap),
        Err(_) => {}
    }
});
