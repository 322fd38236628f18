//! The vendored `.proto` files of this folder, compiled by `build.rs` (protox, no system
//! `protoc`) into one `FileDescriptorSet` that the decoder embeds.
//!
//! A crate of its own so that the decoding library needs no build script and the CLI's build
//! script only builds the eBPF programs.

/// The `FileDescriptorSet` compiled from every `.proto` under this folder, imports included.
pub static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
