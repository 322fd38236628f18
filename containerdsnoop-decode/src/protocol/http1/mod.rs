//! HTTP/1.x as the docker CLI and dockerd speak it over `docker.sock`: message heads, the
//! chunked coding, body classification, and a per-connection decoder that turns both
//! directions' bytes into `CallEvent`s (method `GET /v1.41/containers/json`, status = the HTTP
//! status).

pub mod body;
pub mod chunked;
pub mod conn;
pub mod head;

pub use conn::{Connection, Limits, Stats};

#[cfg(test)]
mod tests;
