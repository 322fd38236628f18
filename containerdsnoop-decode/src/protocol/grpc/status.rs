//! gRPC status trailers: `grpc-status` and the percent-encoded `grpc-message` (gRPC over
//! HTTP/2, "Responses").

/// Parses `grpc-status` (a decimal code).
pub fn parse_code(value: &str) -> Option<u32> {
    value.trim().parse().ok()
}

/// Decodes `grpc-message`: `%XX` escapes of UTF-8 bytes. Malformed escapes are kept as sent,
/// as the spec asks receivers to do rather than fail.
pub fn percent_decode(value: &str) -> String {
    let b = value.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(hex_val),
                b.get(i + 2).and_then(hex_val),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: &u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_messages() {
        assert_eq!(percent_decode("not%20found"), "not found");
        assert_eq!(percent_decode("caf%C3%A9 100%"), "café 100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(parse_code("5"), Some(5));
        assert_eq!(parse_code("x"), None);
    }
}
