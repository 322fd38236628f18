//! Which values are credentials, shown as `<redacted>` when [`RenderOptions::redact`] is on
//! (the default).
//!
//! The rules, applied to string and bytes fields (and repeated ones) of messages decoded with a
//! schema, in text and JSON alike:
//!
//! 1. Named fields, whatever their name: [`SECRET_FIELDS`] (CRI `AuthConfig`, which kubelet
//!    sends in every `PullImageRequest.auth`; containerd transfer `AuthResponse`).
//! 2. Any field whose name, lowercased with `_` and `-` removed, ends in `password`, `passwd`,
//!    `secret` or `token`, or is one of [`SECRET_NAMES`] (`auth`, `authorization`, ...).
//! 3. Map entries (`labels`, `annotations`, registry `headers`) whose string key matches rule 2;
//!    keys stay visible.
//! 4. Keys matching rule 2 inside JSON carried in an `Any` (containerd stores the OCI runtime spec
//!    and CRI metadata as JSON).
//!
//! Message-typed fields are never redacted whole, their fields are (so `auth {server_address:..}`
//! stays readable). Not covered: values in schema-less output (no names to go by) and secrets
//! inside free text such as environment variables (`process.env`, CRI `envs`).
//!
//! [`RenderOptions::redact`]: super::RenderOptions::redact

/// The replacement text.
pub const REDACTED: &str = "<redacted>";

/// `(message full name, field name)` pairs that are always credentials.
pub const SECRET_FIELDS: &[(&str, &str)] = &[
    ("runtime.v1.AuthConfig", "username"),
    ("runtime.v1.AuthConfig", "password"),
    ("runtime.v1.AuthConfig", "auth"),
    ("runtime.v1.AuthConfig", "identity_token"),
    ("runtime.v1.AuthConfig", "registry_token"),
    ("runtime.v1alpha2.AuthConfig", "username"),
    ("runtime.v1alpha2.AuthConfig", "password"),
    ("runtime.v1alpha2.AuthConfig", "auth"),
    ("runtime.v1alpha2.AuthConfig", "identity_token"),
    ("runtime.v1alpha2.AuthConfig", "registry_token"),
    ("containerd.types.transfer.AuthResponse", "username"),
    ("containerd.types.transfer.AuthResponse", "secret"),
];

/// Normalized names (lowercase, no `_`/`-`) that are credentials wherever they appear.
pub const SECRET_NAMES: &[&str] = &[
    "auth",
    "authorization",
    "proxyauthorization",
    "credential",
    "credentials",
    "apikey",
    "privatekey",
    "cookie",
];

/// Normalized name endings that are credentials wherever they appear.
pub const SECRET_SUFFIXES: &[&str] = &["password", "passwd", "secret", "token"];

/// Rule 1 and 2: is field `field` of message `message` (full name) a credential?
pub fn is_secret_field(message: &str, field: &str) -> bool {
    SECRET_FIELDS
        .iter()
        .any(|(m, f)| *m == message && *f == field)
        || is_secret_name(field)
}

/// Rule 2: does this field name, map key or JSON key name a credential?
pub fn is_secret_name(name: &str) -> bool {
    // Long keys are data, not names; skip them rather than lowercase megabytes.
    if name.len() > 64 {
        return false;
    }
    let is_secret = |norm: &str| {
        SECRET_NAMES.contains(&norm) || SECRET_SUFFIXES.iter().any(|s| norm.ends_with(s))
    };
    if name.is_ascii() {
        // Every field name is ASCII: normalised on the stack (this runs for every field of
        // every rendered message).
        let mut buf = [0u8; 64];
        let mut len = 0;
        for b in name.bytes().filter(|b| *b != b'_' && *b != b'-') {
            buf[len] = b.to_ascii_lowercase();
            len += 1;
        }
        return std::str::from_utf8(&buf[..len]).is_ok_and(is_secret);
    }
    let norm: String = name
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect();
    is_secret(&norm)
}

/// Rule 4: replace the values of secret-named keys in a JSON document, at any depth.
pub fn redact_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if is_secret_name(k)
                    && !matches!(
                        val,
                        serde_json::Value::Object(_) | serde_json::Value::Array(_)
                    )
                {
                    *val = serde_json::Value::String(REDACTED.to_owned());
                } else {
                    redact_json(val);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        _ => {}
    }
}
