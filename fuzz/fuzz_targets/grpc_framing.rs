//! gRPC Length-Prefixed-Message framing (`grpc::framing::Deframer`): the same DATA bytes cut
//! anywhere give the same messages; no message and no held buffer exceeds `max_message`.
//!
//! Input: `max_message:u16le`, `split_seed:u8`, DATA bytes.
#![no_main]

use containerdsnoop_decode::protocol::grpc::framing::{Deframed, Deframer};
use containerdsnoop_fuzz::input::{Input, splits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let max = usize::from(input.u16());
    let seed = input.u8();
    let bytes = input.rest();

    let mut whole = Vec::new();
    let mut d = Deframer::new(max);
    d.push(bytes, &mut whole);
    let whole_partial = d.partial();

    let mut pieces = Vec::new();
    let mut d = Deframer::new(max);
    let mut at = 0;
    for n in splits(seed, bytes.len()) {
        d.push(&bytes[at..at + n], &mut pieces);
        at += n;
        assert!(d.held() <= max, "held {} > max_message {max}", d.held());
    }
    assert_eq!(whole, pieces, "messages depend on how DATA was cut");
    assert_eq!(whole_partial, d.partial());
    for p in &whole {
        if let Deframed::Message { data, .. } = p {
            assert!(data.len() <= max);
        }
    }
    let _ = d.abandon();
});
