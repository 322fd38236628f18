//! The message schema: the embedded descriptor pool, user-supplied protos, decoding of message
//! bytes, `Any` expansion, redaction, and rendering to one-line text or JSON.
//!
//! Bytes in, values out: nothing here touches the kernel, aya or tokio.
//!
//! ```text
//! let schema = Schema::embedded()?;
//! let m = schema.method("/runtime.v1.RuntimeService/Version").expect("known method");
//! let decoded = decode(Some(&m.output), payload);
//! let opts = RenderOptions::default(); // redaction on
//! println!("{}", to_text(&decoded, &opts));
//! println!("{}", json_to_string(&to_json(&decoded, &opts)));
//! ```
//!
//! The table renders through [`wire_text`] first: the same text written straight from the bytes
//! by the wire walker (`wire/`), declining (to the path above) whenever it cannot be sure of
//! producing exactly that. JSON output likewise: [`wire_json_ok`] says whether [`wire_json`]
//! writes exactly what [`json_message`] of the decoded message writes.
//!
//! Anything that can come from a traced process goes through [`crate::escape`] before it is written,
//! so no control character or escape sequence reaches a terminal raw; JSON output must be
//! written with [`json_to_string`]/[`write_json`] for the same reason.

mod any;
mod decode;
mod json;
mod raw;
pub mod redact;
mod scalar;
mod text;
mod wire;

#[cfg(test)]
mod tests;

use std::{
    fmt,
    path::{Path, PathBuf},
};

use prost_reflect::{DescriptorPool, MessageDescriptor};

pub use decode::{Decoded, Fallback, FitScore, decode, fits};
pub use json::{JsonMessage, json_message, json_to_string, to_json, write_json};
pub use raw::{RawField, RawValue, parse_raw};
pub use text::to_text;
pub use wire::{WireJson, wire_json, wire_json_ok, wire_text};

/// The `FileDescriptorSet` compiled from `protos/` (the `containerdsnoop-protos` crate).
pub static EMBEDDED_DESCRIPTORS: &[u8] = containerdsnoop_protos::DESCRIPTORS;

/// Nesting limit used when no [`RenderOptions`] are at hand (schema-less decoding in [`decode`]).
pub const MAX_RAW_DEPTH: usize = 64;

/// Errors of this layer. Messages name the file or path so the CLI can pass them on as-is.
#[derive(Debug)]
pub enum SchemaError {
    /// The descriptor set compiled into the binary does not load: a build problem.
    Embedded(prost_reflect::DescriptorError),
    /// A `--descriptor-set` file does not decode or conflicts with the pool.
    DescriptorSet(prost_reflect::DescriptorError),
    /// A `--proto` path does not exist or cannot be listed.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A `--proto` path contains no `.proto` file.
    NoProtoFiles(PathBuf),
    /// protox rejected a `.proto` file (syntax, unresolved import, ...).
    Compile { path: PathBuf, message: String },
    /// The compiled files conflict with what is already in the pool.
    Conflict(prost_reflect::DescriptorError),
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaError::Embedded(e) => write!(f, "embedded descriptor set does not load: {e}"),
            SchemaError::DescriptorSet(e) => write!(f, "descriptor set does not load: {e}"),
            SchemaError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            SchemaError::NoProtoFiles(p) => write!(f, "{}: no .proto files found", p.display()),
            SchemaError::Compile { path, message } => write!(f, "{}: {message}", path.display()),
            SchemaError::Conflict(e) => write!(f, "protos conflict with the loaded schema: {e}"),
        }
    }
}

impl std::error::Error for SchemaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SchemaError::Embedded(e) | SchemaError::DescriptorSet(e) | SchemaError::Conflict(e) => {
                Some(e)
            }
            SchemaError::Io { source, .. } => Some(source),
            SchemaError::NoProtoFiles(_) | SchemaError::Compile { .. } => None,
        }
    }
}

/// Request/response types of one RPC, for gRPC (`/pkg.Service/Method`) and ttrpc alike.
#[derive(Debug, Clone)]
pub struct MethodSchema {
    /// Fully qualified service name, e.g. `runtime.v1.RuntimeService`.
    pub service: String,
    /// Method name, e.g. `Version`.
    pub method: String,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

/// All message types known to the tracer: the embedded protos plus whatever the user added.
#[derive(Debug, Clone)]
pub struct Schema {
    pool: DescriptorPool,
}

impl Schema {
    /// The pool compiled into the binary (containerd, shim, CRI APIs and their dependencies).
    ///
    /// Decoded once per process (the method catalog and the CLI each ask): a `DescriptorPool`
    /// is shared by reference count and copied on write, so adding user protos to one schema
    /// leaves the others as they were.
    pub fn embedded() -> Result<Self, SchemaError> {
        static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
        if let Some(pool) = POOL.get() {
            return Ok(Schema { pool: pool.clone() });
        }
        let pool = DescriptorPool::decode(EMBEDDED_DESCRIPTORS).map_err(SchemaError::Embedded)?;
        Ok(Schema {
            pool: POOL.get_or_init(|| pool).clone(),
        })
    }

    pub fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// Look up a message type by full name (`containerd.events.TaskExit`).
    pub fn message(&self, full_name: &str) -> Option<MessageDescriptor> {
        self.pool
            .get_message_by_name(full_name.trim_start_matches('.'))
    }

    /// Add an encoded `FileDescriptorSet` (`protoc --include_imports -o`, `buf build -o`).
    ///
    /// Files already in the pool under the same name are skipped when identical.
    pub fn add_descriptor_set(&mut self, bytes: &[u8]) -> Result<(), SchemaError> {
        self.pool
            .decode_file_descriptor_set(bytes)
            .map_err(SchemaError::DescriptorSet)
    }

    /// Compile `.proto` files (or every `.proto` under directories) with protox and add them.
    ///
    /// Imports resolve, in order, against the embedded set (so `google/protobuf/any.proto` or
    /// `github.com/containerd/containerd/api/types/mount.proto` are the same files the pool
    /// already has and do not conflict), the given directories and the parents of the given
    /// files, and finally protox's built-in well-known types.
    pub fn add_proto_paths(&mut self, paths: &[PathBuf]) -> Result<(), SchemaError> {
        use protox::file::{
            ChainFileResolver, DescriptorSetFileResolver, GoogleFileResolver, IncludeFileResolver,
        };

        let mut includes: Vec<PathBuf> = Vec::new();
        let mut files: Vec<PathBuf> = Vec::new();
        for path in paths {
            let meta = std::fs::metadata(path).map_err(|source| SchemaError::Io {
                path: path.clone(),
                source,
            })?;
            if meta.is_dir() {
                let before = files.len();
                collect_protos(path, &mut files)?;
                if files.len() == before {
                    return Err(SchemaError::NoProtoFiles(path.clone()));
                }
                includes.push(path.clone());
            } else {
                // A lone file is named relative to its own directory; a file that imports siblings
                // by a longer path needs its root passed as a directory instead.
                let parent = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                includes.push(parent.to_path_buf());
                files.push(path.clone());
            }
        }
        includes.dedup();

        let mut resolver = ChainFileResolver::new();
        let embedded = DescriptorSetFileResolver::decode(EMBEDDED_DESCRIPTORS).map_err(|e| {
            SchemaError::Compile {
                path: PathBuf::from("<embedded descriptors>"),
                message: e.to_string(),
            }
        })?;
        resolver.add(embedded);
        for inc in &includes {
            resolver.add(IncludeFileResolver::new(inc.clone()));
        }
        resolver.add(GoogleFileResolver::new());

        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true).include_source_info(false);
        for file in &files {
            compiler.open_file(file).map_err(|e| SchemaError::Compile {
                path: file.clone(),
                message: e.to_string(),
            })?;
        }
        let bytes = compiler.encode_file_descriptor_set();
        self.pool
            .decode_file_descriptor_set(bytes.as_slice())
            .map_err(SchemaError::Conflict)
    }

    /// Resolve a gRPC `:path` (`/runtime.v1.RuntimeService/Version`; the leading `/` is optional).
    pub fn method(&self, path: &str) -> Option<MethodSchema> {
        let path = path.strip_prefix('/').unwrap_or(path);
        let (service, method) = path.rsplit_once('/')?;
        self.service_method(service, method)
    }

    /// The request or response type of a gRPC `:path` (as [`Schema::method`], without
    /// building a [`MethodSchema`]: this runs for every decoded message).
    pub fn message_type(&self, path: &str, request: bool) -> Option<MessageDescriptor> {
        let path = path.strip_prefix('/').unwrap_or(path);
        let (service, method) = path.rsplit_once('/')?;
        self.service_message_type(service, method, request)
    }

    /// The request or response type of a ttrpc `service` and `method`.
    pub fn service_message_type(
        &self,
        service: &str,
        method: &str,
        request: bool,
    ) -> Option<MessageDescriptor> {
        let svc = self.pool.get_service_by_name(service)?;
        let m = svc.methods().find(|m| m.name() == method)?;
        Some(if request { m.input() } else { m.output() })
    }

    /// Resolve a ttrpc request's `service` and `method` (`containerd.task.v2.Task`, `Create`).
    pub fn service_method(&self, service: &str, method: &str) -> Option<MethodSchema> {
        let svc = self.pool.get_service_by_name(service)?;
        let m = svc.methods().find(|m| m.name() == method)?;
        Some(MethodSchema {
            service: svc.full_name().to_owned(),
            method: m.name().to_owned(),
            input: m.input(),
            output: m.output(),
            client_streaming: m.is_client_streaming(),
            server_streaming: m.is_server_streaming(),
        })
    }
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SchemaError> {
    let io = |source| SchemaError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

/// How decoded messages are shown. `Default` is what the CLI should use unless told otherwise.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Replace credentials with `<redacted>` (see [`redact`] for the list).
    pub redact: bool,
    /// Nesting levels rendered before a `…` stands in for the rest.
    pub max_depth: usize,
    /// How many `Any` values inside one another are expanded.
    pub max_any_depth: usize,
    /// Byte cap for [`to_text`]; longer output is cut at a character boundary and ends in `…`.
    pub max_text_len: usize,
    /// Bytes fields (that are not printable text) show at most this many bytes.
    pub max_bytes_preview: usize,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            redact: true,
            max_depth: 64,
            max_any_depth: 8,
            max_text_len: 16 * 1024,
            max_bytes_preview: 64,
        }
    }
}
