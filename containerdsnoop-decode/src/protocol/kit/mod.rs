//! The decoder kit: what the decoders (ttrpc, HTTP/1.1, the HTTP/2 transport and gRPC) share
//! around their own framing: who is the client ([`roles`]), how events are built
//! and how messages are counted ([`events`]), and a one-line text form of events that makes
//! tests read like traces ([`trace`]). How a connection's end ends its calls is
//! [`crate::protocol::call::ConnEnd`].

pub mod events;
pub mod roles;
pub mod trace;

pub use events::{At, CallTag, MessageCount};
pub use roles::Roles;
pub use trace::{trace, trace_line};
