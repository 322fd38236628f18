//! gRPC status codes by name: the canonical codes 0–16 of the gRPC status code list (the
//! `google.rpc.Code` values, which ttrpc uses too), as END rows print them.

/// The name of status `code` (`NotFound` for 5); `Status` for a code outside the list.
pub fn name(code: u32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_canonical_code_has_its_own_name_and_others_are_status() {
        let names: Vec<_> = (0..=16).map(name).collect();
        assert_eq!(names[0], "OK");
        assert_eq!(names[5], "NotFound");
        assert_eq!(names[16], "Unauthenticated");
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 17, "names repeat: {names:?}");
        assert!(!names.contains(&"Status"));
        assert_eq!(name(17), "Status");
        assert_eq!(name(u32::MAX), "Status");
    }
}
