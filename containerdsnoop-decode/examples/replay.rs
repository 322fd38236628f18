//! Replays a `--raw -o json` capture through the decoding pipeline and prints the table (or
//! JSON with `--json`): `cargo run -p containerdsnoop-decode --example replay -- FILE [--json]`. Used to build golden
//! files and to debug decoding without root.
use std::io::Write;

use containerdsnoop_decode::{
    output::sink::{Renderer, Sink},
    output::{json::JsonPrinter, table::TablePrinter, time::Clock},
    pipeline::{Pipeline, Plan},
    record::chunks_from_raw_jsonl,
    schema::{RenderOptions, Schema},
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: replay FILE [--json]"))?;
    let json = args.next().as_deref() == Some("--json");
    let text = std::fs::read_to_string(&path)?;
    let out: Box<dyn Write> = Box::new(std::io::stdout());
    let printer: Box<dyn Sink> = if json {
        Box::new(JsonPrinter::new(out, Clock::identity()))
    } else {
        Box::new(TablePrinter::new(out, Clock::identity(), None))
    };
    let mut p = Pipeline::new(
        Renderer::new(Schema::embedded()?, RenderOptions::default()),
        Plan::default(),
        vec![printer],
    );
    let chunks = chunks_from_raw_jsonl(&text);
    let last = chunks.last().map_or(0, |c| c.ts_ns);
    for c in &chunks {
        p.push(c)?;
    }
    p.finish(
        last,
        containerdsnoop_decode::protocol::call::ConnEnd::CaptureEnded,
    )?;
    eprintln!("{}", p.stats.summary());
    Ok(())
}
