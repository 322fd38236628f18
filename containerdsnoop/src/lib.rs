//! containerdsnoop's command line: flags, BTF, the kernel capture and start-up. Everything that
//! turns captured bytes into rows lives in the `containerdsnoop-decode` crate.
//!
//! Only `capture`, `containers` (tokio, for asking runtimes about their containers) and the
//! binary's `main` touch aya, tokio or the kernel.

pub mod btf;
pub mod capture;
pub mod cli;
pub mod containers;
pub mod selection;
