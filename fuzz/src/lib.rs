//! What the fuzz targets share: a cursor that turns fuzzer bytes into structured operations, the
//! chunk-sequence encoding of the pipeline target, the terminal-safety check every rendered
//! output must pass, and the seed extraction `cargo xtask fuzz` runs before fuzzing.

pub mod chunks;
pub mod conn_ops;
pub mod input;
pub mod safe;
pub mod seeds;

use std::sync::OnceLock;

use containerdsnoop_decode::schema::Schema;

/// The embedded schema, decoded once per process (decoding it per input would dominate).
pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| match Schema::embedded() {
        Ok(s) => s,
        Err(e) => panic!("embedded schema does not load: {e}"),
    })
}
