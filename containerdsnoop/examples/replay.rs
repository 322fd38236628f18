//! Replays a `--raw -o json` capture through the decoding pipeline and prints the table (or
//! JSON with `--json`): `cargo run --example replay -- FILE [--json]`. Used to build golden
//! files and to debug decoding without root.
use std::io::Write;

use containerdsnoop::{
    filter::Filter,
    pipeline::{Pipeline, Printer},
    render::{json::JsonPrinter, table::TablePrinter, time::Clock},
    schema::{RenderOptions, Schema},
    wire::chunks_from_raw_jsonl,
};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: replay FILE [--json]"))?;
    let json = args.next().as_deref() == Some("--json");
    let text = std::fs::read_to_string(&path)?;
    let out: Box<dyn Write> = Box::new(std::io::stdout());
    let printer = if json {
        Printer::Json(JsonPrinter::new(out, Clock::identity()))
    } else {
        Printer::Table(TablePrinter::new(out, Clock::identity(), None))
    };
    let mut p = Pipeline::new(
        Schema::embedded()?,
        RenderOptions::default(),
        Filter::default(),
        printer,
        None,
    );
    let chunks = chunks_from_raw_jsonl(&text);
    let last = chunks.last().map_or(0, |c| c.ts_ns);
    for c in &chunks {
        p.push(c)?;
    }
    p.finish(last)?;
    eprintln!("{}", p.stats.summary());
    Ok(())
}
