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

impl Shared {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Which printers one pipeline run feeds.
#[derive(Clone, Copy)]
enum Printers {
    /// The table and the JSON printer side by side: one decode, two outputs (the table
    /// printer ignores the request headers the JSON printer asks the pipeline to keep).
    TableAndJson,
    Json,
}

/// Runs `chunks` through one pipeline; the outputs in the order of `printers` (table first).
fn run(
    chunks: &[containerdsnoop_decode::record::Chunk],
    printers: Printers,
    failed_only: bool,
) -> Vec<Vec<u8>> {
    let table = Shared::default();
    let json = Shared::default();
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if let Printers::TableAndJson = printers {
        sinks.push(Box::new(TablePrinter::new(
            Box::new(table.clone()),
            Clock::identity(),
            None,
        )));
    }
    sinks.push(Box::new(JsonPrinter::new(
        Box::new(json.clone()),
        Clock::identity(),
    )));
    let mut p = Pipeline::new(
        Renderer::new(schema().clone(), RenderOptions::default()),
        Plan {
            failed_only,
            ..Plan::default()
        },
        sinks,
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
    drop(p);
    let mut outs = Vec::new();
    if let Printers::TableAndJson = printers {
        outs.push(table.take());
    }
    outs.push(json.take());
    outs
}

fuzz_target!(|data: &[u8]| {
    let chunks = chunks::to_chunks(&chunks::decode_ops(data));
    let [table, json] = <[Vec<u8>; 2]>::try_from(run(&chunks, Printers::TableAndJson, false))
        .unwrap_or_else(|_| unreachable!("two printers, two outputs"));
    assert_terminal_safe_bytes("table", &table);
    assert_terminal_safe_bytes("json", &json);
    let json = String::from_utf8_lossy(&json);
    let mut lines: std::collections::HashMap<&str, usize> = Default::default();
    for line in json.lines() {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(line) {
            panic!("JSON printer wrote an invalid line ({e}): {line}");
        }
        *lines.entry(line).or_default() += 1;
    }
    let failed = run(&chunks, Printers::Json, true).concat();
    for line in String::from_utf8_lossy(&failed).lines() {
        match lines.get_mut(line) {
            Some(n) if *n > 0 => *n -= 1,
            _ => panic!("-x printed a row the full output does not have: {line}"),
        }
    }
});
