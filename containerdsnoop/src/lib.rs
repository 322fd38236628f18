//! containerdsnoop's command line: flags, BTF, the kernel capture and start-up. Everything that
//! turns captured bytes into rows lives in the `containerdsnoop-decode` crate.
//!
//! Only `capture` (and the binary's `main`) touch aya, tokio or the kernel.

pub mod btf;
pub mod capture;
pub mod cli;
pub mod closes;
pub mod containers;
pub mod paths;
