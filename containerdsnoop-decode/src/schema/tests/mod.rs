//! The schema layer's tests: rendering traces (`render`) and the wire walker's differential
//! tests against the `DynamicMessage` path (`wire_text`, `wire_json`, sharing `testkit`).

mod render;
mod testkit;
mod wire_json;
mod wire_text;
