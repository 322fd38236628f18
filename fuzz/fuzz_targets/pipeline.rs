//! The whole decoding pipeline from a sequence of records (reassembly, connection table,
//! detection, decoders, rows, rendering) into the table and JSON printers. Everything printed
//! is terminal-safe, every JSON line parses, and the connection table stays within
//! `conn::MAX_CONNECTIONS`. With `-x`, what is held stays within its limits and is all let go
//! by the end, and every row printed is one the full output has.
//!
//! Input: the chunk-sequence encoding of `containerdsnoop_fuzz::chunks`.
#![no_main]

use std::{cell::RefCell, io::Write, rc::Rc};

use containerdsnoop_decode::{
    output::failed::{MAX_HELD_BYTES, MAX_HELD_CALLS},
    output::sink::{Renderer, Sink},
    output::{json::JsonPrinter, table::TablePrinter, time::Clock},
    pipeline::{Pipeline, Plan},
    schema::RenderOptions,
    stream::conn::MAX_CONNECTIONS,
};
use containerdsnoop_fuzz::{chunks, safe::assert_terminal_safe_bytes, schema};
use libfuzzer_sys::fuzz_target;

#[derive(Clone, Default)]
struct Shared(Rc<RefCell<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn run(chunks: &[containerdsnoop_decode::record::Chunk], json: bool, failed_only: bool) -> Vec<u8> {
    let out = Shared::default();
    let printer: Box<dyn Sink> = if json {
        Box::new(JsonPrinter::new(Box::new(out.clone()), Clock::identity()))
    } else {
        Box::new(TablePrinter::new(
            Box::new(out.clone()),
            Clock::identity(),
            None,
        ))
    };
    let mut p = Pipeline::new(
        Renderer::new(schema().clone(), RenderOptions::default()),
        Plan {
            failed_only,
            ..Plan::default()
        },
        vec![printer],
    );
    for c in chunks {
        if let Err(e) = p.push(c) {
            panic!("push failed writing to memory: {e}");
        }
        assert!(p.connections() <= MAX_CONNECTIONS);
        if let Some((calls, bytes)) = p.failed_held() {
            assert!(
                calls <= MAX_HELD_CALLS && bytes <= MAX_HELD_BYTES,
                "-x holds {calls} calls, {bytes} bytes"
            );
        }
    }
    if let Err(e) = p.finish(
        chunks.last().map_or(0, |c| c.ts_ns + 1),
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    ) {
        panic!("finish failed writing to memory: {e}");
    }
    if let Some(held) = p.failed_held() {
        assert_eq!(held, (0, 0), "-x still holds rows after the end");
    }
    out.0.borrow().clone()
}

fuzz_target!(|data: &[u8]| {
    let chunks = chunks::to_chunks(&chunks::decode_ops(data));
    let table = run(&chunks, false, false);
    assert_terminal_safe_bytes("table", &table);
    let json = run(&chunks, true, false);
    assert_terminal_safe_bytes("json", &json);
    let json = String::from_utf8_lossy(&json);
    let mut lines: std::collections::HashMap<&str, usize> = Default::default();
    for line in json.lines() {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
            panic!("JSON printer wrote an invalid line ({e}): {line}");
        }
        *lines.entry(line).or_default() += 1;
    }
    let failed = run(&chunks, true, true);
    for line in String::from_utf8_lossy(&failed).lines() {
        match lines.get_mut(line) {
            Some(n) if *n > 0 => *n -= 1,
            _ => panic!("-x printed a row the full output does not have: {line}"),
        }
    }
});
