//! HTTP/1.x as the docker CLI and dockerd speak it over `docker.sock`: message heads, the
//! chunked coding, body classification, and a per-connection decoder that turns both
//! directions' bytes into `CallEvent`s (method `GET /v1.41/containers/json`, status = the HTTP
//! status). The decoder is [`conn`]; its parts, each owning its type and handed the state it
//! shares with the others (`shared`), are the direction state machine (`direction`),
//! request/response pairing (`exchange`), bodies as messages (`message`) and the switch to raw
//! bytes after an upgrade (`upgrade`).

pub mod body;
pub mod chunked;
pub mod conn;
mod direction;
mod exchange;
pub mod head;
mod message;
mod shared;
mod upgrade;

pub use conn::Connection;
pub use shared::{Limits, Stats};

#[cfg(test)]
mod recordings;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod traces;
