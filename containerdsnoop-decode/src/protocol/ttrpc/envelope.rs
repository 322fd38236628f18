//! The protobuf envelopes ttrpc wraps every call in (containerd/ttrpc `request.proto`):
//!
//! ```text
//! message Request  { string service = 1; string method = 2; bytes payload = 3;
//!                    int64 timeout_nano = 4; repeated KeyValue metadata = 5; }
//! message Response { google.rpc.Status status = 1; bytes payload = 2; }
//! message KeyValue { string key = 1; string value = 2; }
//! google.rpc.Status { int32 code = 1; string message = 2; repeated Any details = 3; }
//! ```
//!
//! String fields are declared as bytes so that a peer sending invalid UTF-8 still has its call
//! shown (lossily) rather than dropped; `details` is skipped as an unknown field.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct Request {
    #[prost(bytes = "vec", tag = "1")]
    pub service: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub method: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    #[prost(int64, tag = "4")]
    pub timeout_nano: i64,
    #[prost(message, repeated, tag = "5")]
    pub metadata: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Response {
    #[prost(message, optional, tag = "1")]
    pub status: Option<RpcStatus>,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
}

/// `google.rpc.Status` without its `details`.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(bytes = "vec", tag = "2")]
    pub message: Vec<u8>,
}

/// Longest service or method name accepted as real.
const MAX_NAME: usize = 1024;

/// Whether `s` can be a protobuf service or method name: ASCII letters, digits, `_` and `.`.
/// This is what makes a request envelope strong evidence of a frame boundary.
fn is_identifier(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
}

impl Request {
    /// Decodes a request envelope whose service and method look like real names; `None`
    /// otherwise.
    pub fn decode_checked(data: &[u8]) -> Option<Request> {
        // Protobuf encoders write fields in order, so a real envelope starts with field 1
        // (service, wire type 2). Checking it first rejects most random bytes cheaply.
        if data.first() != Some(&0x0a) {
            return None;
        }
        let r = Request::decode(data).ok()?;
        (is_identifier(&r.service) && is_identifier(&r.method)).then_some(r)
    }

    /// `/service/method`, the gRPC-style name every decoder reports.
    pub fn method_name(&self) -> String {
        format!(
            "/{}/{}",
            String::from_utf8_lossy(&self.service),
            String::from_utf8_lossy(&self.method)
        )
    }
}

impl Response {
    /// Decodes a response envelope; `None` when the bytes are not one. A status code outside
    /// the gRPC range (0..=16) is accepted: ttrpc passes application codes through.
    pub fn decode_checked(data: &[u8]) -> Option<Response> {
        Response::decode(data).ok()
    }
}
