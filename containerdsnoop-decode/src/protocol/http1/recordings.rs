//! The recorded docker CLI ↔ dockerd exchanges (`tests/fixtures/http1/*.rec`) that the HTTP/1.1
//! tests and traces replay.

pub const VERSION: &[u8] = include_bytes!("../../../tests/fixtures/http1/version.rec");
pub const PS: &[u8] = include_bytes!("../../../tests/fixtures/http1/ps.rec");
pub const INFO: &[u8] = include_bytes!("../../../tests/fixtures/http1/info.rec");
pub const EVENTS: &[u8] = include_bytes!("../../../tests/fixtures/http1/events.rec");
pub const LOGS_FOLLOW: &[u8] = include_bytes!("../../../tests/fixtures/http1/logs-follow.rec");
pub const ATTACH: &[u8] = include_bytes!("../../../tests/fixtures/http1/attach.rec");
pub const RUN_CREATE_WAIT: &[u8] =
    include_bytes!("../../../tests/fixtures/http1/run-create-wait.rec");
pub const EXEC_START: &[u8] = include_bytes!("../../../tests/fixtures/http1/exec-start.rec");
