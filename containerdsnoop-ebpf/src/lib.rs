#![no_std]
// Present so that `cargo check --workspace` has a library target; the programs are in main.rs.
