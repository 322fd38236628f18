//! Capture files (`pcap::PcapReader`, `-r`): pcap and pcapng containers, packets, TCP
//! reassembly into chunks. Every record it yields is consistent (payload within its span).
//!
//! Input: the file's bytes.
#![no_main]

use containerdsnoop_decode::pcap::{Event, PcapReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = PcapReader::new(std::io::Cursor::new(data)) else {
        return;
    };
    // Every event consumes input, so this ends; the bound keeps a regression from hanging.
    for _ in 0..1_000_000 {
        match reader.next_event() {
            None => break,
            Some(Ok(Event::Chunk(c))) => {
                assert!(
                    c.data.len() <= c.span_len as usize,
                    "payload longer than its span"
                );
            }
            Some(Ok(_)) => {}
            Some(Err(_)) => {}
        }
    }
    let _ = (
        reader.stats(),
        reader.tracked_connections(),
        reader.buffered_bytes(),
    );
});
