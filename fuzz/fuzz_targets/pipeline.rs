//! The whole decoding pipeline from a sequence of records (reassembly, connection table,
//! detection, decoders, rows, rendering) into the table and JSON printers. Everything printed
//! is terminal-safe, every JSON line parses, and the connection table stays within
//! `conn::MAX_CONNECTIONS`.
//!
//! Input: the chunk-sequence encoding of `containerdsnoop_fuzz::chunks`.
#![no_main]

use std::{cell::RefCell, io::Write, rc::Rc};

use containerdsnoop_decode::{
    stream::conn::MAX_CONNECTIONS,
    output::sink::{Renderer, Sink},
    pipeline::{Pipeline, Plan},
    output::{json::JsonPrinter, table::TablePrinter, time::Clock},
    schema::RenderOptions,
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

fn run(chunks: &[containerdsnoop_decode::record::Chunk], json: bool) -> Vec<u8> {
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
        Plan::default(),
        vec![printer],
    );
    for c in chunks {
        if let Err(e) = p.push(c) {
            panic!("push failed writing to memory: {e}");
        }
        assert!(p.connections() <= MAX_CONNECTIONS);
    }
    if let Err(e) = p.finish(
        chunks.last().map_or(0, |c| c.ts_ns + 1),
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    ) {
        panic!("finish failed writing to memory: {e}");
    }
    out.0.borrow().clone()
}

fuzz_target!(|data: &[u8]| {
    let chunks = chunks::to_chunks(&chunks::decode_ops(data));
    let table = run(&chunks, false);
    assert_terminal_safe_bytes("table", &table);
    let json = run(&chunks, true);
    assert_terminal_safe_bytes("json", &json);
    for line in String::from_utf8_lossy(&json).lines() {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
            panic!("JSON printer wrote an invalid line ({e}): {line}");
        }
    }
});
