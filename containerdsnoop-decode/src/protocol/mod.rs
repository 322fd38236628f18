//! Protocols: the call model every decoder emits ([`call`]), the per-connection decoder
//! interface ([`decoder`]), what the decoders share ([`kit`]: roles, event builders, traces),
//! detection from the first bytes ([`detect`]), and the decoders themselves. Uses `schema`
//! (method inference) and `escape`; knows nothing of sockets, reassembly or output.

pub mod call;
pub mod decoder;
pub mod detect;
pub mod grpc;
pub mod http1;
pub mod http2;
pub mod kit;
pub mod raw;
pub mod ttrpc;
