//! Kernel structure layout from BTF: the member offsets and enum values the eBPF programs need,
//! read in user space because Rust eBPF code cannot emit CO-RE relocations (aya#349), and
//! handed to the programs as one [`KernelLayout`] global.
//!
//! Member paths: a lookup searches a struct's own members and, transparently, the members of its
//! *anonymous* struct/union members (C reaches those without a name; `iov_iter`'s `count` and
//! `__iov` live in them from 6.4). Named embedded structs are *not* searched implicitly: reach
//! them with a dotted path (`sock` + `__sk_common.skc_family`), so a lookup never lands on a
//! same-named member of some unrelated embedded struct. Pointers and arrays end a path.
//!
//! Why a hand-written BTF reader (`raw.rs`) and no crate: the tracer needs ~25 fields of ~15
//! types, and start-up time counts. `btf-rs` is correct (the tests keep it as an oracle, in
//! `oracle.rs`) but parses, allocates and indexes every one of vmlinux's 100k+ types and
//! strings — 150–210 ms in a release build, more than the tracer's whole start-up budget. The raw
//! reader makes one linear pass that only records where each type starts and which structs carry
//! the wanted names, then decodes the few members it is asked for straight from the bytes.

mod raw;

#[cfg(test)]
mod oracle;
#[cfg(test)]
mod tests;

use std::{
    fmt,
    path::{Path, PathBuf},
};

use containerdsnoop_common::KernelLayout;

pub use raw::{Btf, BtfError};
use raw::{KIND_ENUM, KIND_ENUM64, Type};

/// Where a kernel built with `CONFIG_DEBUG_INFO_BTF=y` exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The `KernelLayout` marker for "this kernel has no such member/value".
pub const ABSENT: u32 = u32::MAX;

/// Most nested anonymous members searched and typedef/qualifier links followed. Kernels nest
/// three deep at most; the bound only stops a malformed (cyclic) BTF from recursing forever.
const MAX_DEPTH: u32 = 32;

/// Why the layout could not be read. `name` fields are `type.member` paths or `enum.VARIANT`.
#[derive(Debug)]
pub enum LayoutError {
    /// The BTF file does not exist: the kernel was built without BTF.
    NoBtf { path: PathBuf },
    /// The BTF file exists but could not be read or parsed.
    Parse { path: PathBuf, source: BtfError },
    /// A lookup inside parsed BTF failed (dangling type id or string offset).
    Btf(BtfError),
    /// No struct/union (or enum) of this name.
    TypeNotFound { name: String },
    /// A member or enum value the programs cannot work without is missing.
    MemberNotFound { name: String },
    /// A dotted path goes through a member that is not an embedded struct/union.
    NotComposite { name: String },
    /// The member is a bitfield that does not start on a byte.
    Unaligned { name: String, bit_offset: u64 },
    /// Several same-named types disagree on the value.
    Ambiguous {
        name: String,
        first: i64,
        second: i64,
    },
    /// Deeper than [`MAX_DEPTH`] anonymous members or typedef links.
    TooDeep { name: String },
    /// The value does not fit the `u32` the programs get (or `i64` for enum values).
    OutOfRange { name: String, value: i128 },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBtf { path } => write!(
                f,
                "kernel has no BTF ({} missing): needs CONFIG_DEBUG_INFO_BTF=y",
                path.display()
            ),
            Self::Parse { path, source } => {
                write!(f, "cannot read BTF {}: {source}", path.display())
            }
            Self::Btf(e) => write!(f, "malformed BTF: {e}"),
            Self::TypeNotFound { name } => write!(f, "kernel BTF has no type {name}"),
            Self::MemberNotFound { name } => write!(f, "kernel BTF has no {name}"),
            Self::NotComposite { name } => {
                write!(
                    f,
                    "{name}: path goes through a member that is not a struct or union"
                )
            }
            Self::Unaligned { name, bit_offset } => {
                write!(f, "{name} is at bit {bit_offset}, not on a byte boundary")
            }
            Self::Ambiguous {
                name,
                first,
                second,
            } => {
                write!(
                    f,
                    "kernel BTF has several types giving {name} = {first} and {second}"
                )
            }
            Self::TooDeep { name } => write!(f, "{name}: types nest deeper than {MAX_DEPTH}"),
            Self::OutOfRange { name, value } => write!(f, "{name} = {value} is out of range"),
        }
    }
}

impl std::error::Error for LayoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Parse { source, .. } | Self::Btf(source) => Some(source),
            _ => None,
        }
    }
}

impl From<BtfError> for LayoutError {
    fn from(e: BtfError) -> Self {
        Self::Btf(e)
    }
}

/// Reads and indexes the BTF file at `path`, telling a missing file (no kernel BTF) from a
/// broken one.
pub fn load_btf(path: &Path) -> Result<Btf, LayoutError> {
    let parse = |source| LayoutError::Parse {
        path: path.to_owned(),
        source,
    };
    let data = match std::fs::read(path) {
        Ok(data) => data,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(LayoutError::NoBtf {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(parse(BtfError::Io(e))),
    };
    Btf::from_bytes(data).map_err(parse)
}

/// [`kernel_layout`] of the running kernel, from [`VMLINUX_BTF`].
pub fn kernel_layout_from_sysfs() -> Result<KernelLayout, LayoutError> {
    kernel_layout(&load_btf(Path::new(VMLINUX_BTF))?)
}

/// What [`kernel_layout`] asks of BTF; implemented by [`Btf`] and, in tests, by the btf-rs
/// oracle, so both give their layout through the same code.
trait Lookup {
    fn member_offset(&self, type_name: &str, path: &str) -> Result<Option<u32>, LayoutError>;
    fn enum_value(&self, enum_name: &str, variant: &str) -> Result<Option<i64>, LayoutError>;
}

impl Lookup for Btf {
    fn member_offset(&self, type_name: &str, path: &str) -> Result<Option<u32>, LayoutError> {
        member_offset(self, type_name, path)
    }

    fn enum_value(&self, enum_name: &str, variant: &str) -> Result<Option<i64>, LayoutError> {
        enum_value(self, enum_name, variant)
    }
}

/// Everything the programs read from kernel structures, for the kernel `btf` describes.
///
/// Covers the 5.8 … 6.18 variants: the `iov_iter` flavour field (`iter_type` u8 from 5.14, else
/// `unsigned int type` with the direction bit), the iovec pointer (`__iov` from 6.4, else `iov`)
/// and `ubuf` with `ITER_UBUF` (6.0+, else [`ABSENT`]).
pub fn kernel_layout(btf: &Btf) -> Result<KernelLayout, LayoutError> {
    layout_of(btf)
}

fn layout_of(btf: &impl Lookup) -> Result<KernelLayout, LayoutError> {
    let required = |type_name: &str, path: &str| {
        btf.member_offset(type_name, path)?
            .ok_or_else(|| LayoutError::MemberNotFound {
                name: format!("{type_name}.{path}"),
            })
    };
    let (iov_iter_type, iov_iter_type_is_u32) = match btf.member_offset("iov_iter", "iter_type")? {
        Some(off) => (off, 0),
        None => (required("iov_iter", "type")?, 1),
    };
    let iov_iter_iov = match btf.member_offset("iov_iter", "__iov")? {
        Some(off) => off,
        None => required("iov_iter", "iov")?,
    };
    // The member and the enum value arrive together in 6.0. Should a backport carry only one,
    // UBUF counts as absent, so a program never accepts a flavour whose pointer it cannot find.
    let (iov_iter_ubuf, iter_ubuf) = match (
        btf.member_offset("iov_iter", "ubuf")?,
        btf.enum_value("iter_type", "ITER_UBUF")?,
    ) {
        (Some(off), Some(value)) => (off, enum_u32("iter_type.ITER_UBUF", value)?),
        _ => (ABSENT, ABSENT),
    };
    let iter_iovec = match btf.enum_value("iter_type", "ITER_IOVEC")? {
        Some(value) => enum_u32("iter_type.ITER_IOVEC", value)?,
        None => {
            return Err(LayoutError::MemberNotFound {
                name: "iter_type.ITER_IOVEC".into(),
            });
        }
    };
    // `name` is a flexible array of `struct sockaddr_un`; the path is in its first element.
    let name = required("unix_address", "name")?;
    let sun_path = required("sockaddr_un", "sun_path")?;
    let unix_address_sun_path = name.checked_add(sun_path).ok_or(LayoutError::OutOfRange {
        name: "unix_address.name[0].sun_path".into(),
        value: i128::from(name) + i128::from(sun_path),
    })?;

    // Close detection (tracepoint backend) is optional: a kernel without one of these members
    // still traces, with connection ends seen later (see `KernelLayout::close_fields_present`).
    let optional = |type_name: &str, path: &str| -> u32 {
        btf.member_offset(type_name, path)
            .ok()
            .flatten()
            .unwrap_or(ABSENT)
    };
    // 6.13 replaced `atomic_long_t f_count` (1 = one reference) with `file_ref_t f_ref`, which
    // counts from FILE_REF_ONEREF = 0.
    let (file_ref, file_ref_one) = match optional("file", "f_ref") {
        ABSENT => match optional("file", "f_count") {
            ABSENT => (ABSENT, ABSENT),
            off => (off, 1),
        },
        off => (off, 0),
    };

    let registers = SYSCALL_REGISTERS;
    Ok(KernelLayout {
        msghdr_msg_iter: required("msghdr", "msg_iter")?,
        iov_iter_type,
        iov_iter_type_is_u32,
        iov_iter_iov_offset: required("iov_iter", "iov_offset")?,
        iov_iter_count: required("iov_iter", "count")?,
        iov_iter_iov,
        iov_iter_ubuf,
        iov_iter_nr_segs: required("iov_iter", "nr_segs")?,
        iter_ubuf,
        iter_iovec,
        // `unix_sock` starts with `struct sock`, and `sock` with `sock_common`: offsets from sk.
        sock_common_skc_family: required("sock", "__sk_common.skc_family")?,
        sock_sk_socket: required("sock", "sk_socket")?,
        sock_sk_peer_pid: required("sock", "sk_peer_pid")?,
        unix_sock_addr: required("unix_sock", "addr")?,
        unix_sock_peer: required("unix_sock", "peer")?,
        unix_address_len: required("unix_address", "len")?,
        unix_address_sun_path,
        socket_type: required("socket", "type")?,
        socket_sk: required("socket", "sk")?,
        socket_alloc_vfs_inode: required("socket_alloc", "vfs_inode")?,
        inode_i_ino: required("inode", "i_ino")?,
        // The bound socket's file (`struct path` embedded in `unix_sock`), for selection by
        // identity: `d_inode->i_sb->s_dev`, `d_inode->i_ino`, and the entry's directory + name.
        unix_sock_path_dentry: required("unix_sock", "path.dentry")?,
        dentry_d_inode: required("dentry", "d_inode")?,
        dentry_d_parent: required("dentry", "d_parent")?,
        dentry_d_name_len: required("dentry", "d_name.len")?,
        dentry_d_name_name: required("dentry", "d_name.name")?,
        inode_i_sb: required("inode", "i_sb")?,
        inode_i_generation: required("inode", "i_generation")?,
        super_block_s_dev: required("super_block", "s_dev")?,
        pid_numbers: required("pid", "numbers")?,
        upid_nr: required("upid", "nr")?,
        task_group_leader: required("task_struct", "group_leader")?,
        task_comm: required("task_struct", "comm")?,
        task_files: optional("task_struct", "files"),
        task_signal: optional("task_struct", "signal"),
        signal_live: optional("signal_struct", "live"),
        files_struct_count: optional("files_struct", "count"),
        files_struct_fdt: optional("files_struct", "fdt"),
        fdtable_max_fds: optional("fdtable", "max_fds"),
        fdtable_fd: optional("fdtable", "fd"),
        fdtable_open_fds: optional("fdtable", "open_fds"),
        file_ref,
        file_ref_one,
        file_private_data: optional("file", "private_data"),
        file_f_inode: optional("file", "f_inode"),
        inode_i_mode: optional("inode", "i_mode"),
        socket_file: optional("socket", "file"),
        pt_regs_syscall_nr: registers.map_or(ABSENT, |r| optional("pt_regs", r.syscall_nr)),
        pt_regs_arg0: registers.map_or(ABSENT, |r| optional("pt_regs", r.args[0])),
        pt_regs_arg1: registers.map_or(ABSENT, |r| optional("pt_regs", r.args[1])),
        pt_regs_arg2: registers.map_or(ABSENT, |r| optional("pt_regs", r.args[2])),
        nr_write: registers.map_or(ABSENT, |r| r.numbers[0]),
        nr_writev: registers.map_or(ABSENT, |r| r.numbers[1]),
        nr_sendto: registers.map_or(ABSENT, |r| r.numbers[2]),
        nr_sendmsg: registers.map_or(ABSENT, |r| r.numbers[3]),
    })
}

/// Where this architecture's syscall entry saves the syscall number and arguments in
/// `struct pt_regs`, and its numbers for write, writev, sendto and sendmsg (UAPI
/// `asm/unistd_64.h`; stable per architecture).
#[derive(Clone, Copy)]
pub struct SyscallRegisters {
    pub syscall_nr: &'static str,
    pub args: [&'static str; 3],
    pub numbers: [u32; 4],
}

/// x86_64: `orig_ax` keeps the number (`ax` becomes -ENOSYS, then the return value); the
/// arguments stay in `di`, `si`, `dx` for the whole syscall. A 32-bit (ia32) process's
/// numbers 1, 20, 44 and 46 are exit, getpid, prof and setgid, none of which sends on a
/// socket, so a match is always the 64-bit send syscall. Other architectures: `None` (the
/// entry stash is used).
pub const SYSCALL_REGISTERS: Option<SyscallRegisters> = if cfg!(target_arch = "x86_64") {
    Some(SyscallRegisters {
        syscall_nr: "orig_ax",
        args: ["di", "si", "dx"],
        numbers: [1, 20, 44, 46],
    })
} else {
    None
};

fn enum_u32(name: &str, value: i64) -> Result<u32, LayoutError> {
    u32::try_from(value).map_err(|_| LayoutError::OutOfRange {
        name: name.into(),
        value: i128::from(value),
    })
}

/// Byte offset of `path` (a member name, or dotted names through embedded structs) from the
/// start of struct/union `type_name`; `Ok(None)` when the type has no such member.
///
/// Members of anonymous structs/unions are found as if they were the type's own, their offsets
/// added up; typedefs and qualifiers are looked through. A bitfield that does not start on a byte
/// is an error, since the programs read whole bytes.
pub fn member_offset(btf: &Btf, type_name: &str, path: &str) -> Result<Option<u32>, LayoutError> {
    let name = || format!("{type_name}.{path}");
    let ids = btf.ids_named(type_name)?;
    let candidates = ids.iter().map(|&id| {
        let root = btf.ty(id)?;
        if !root.is_composite() {
            return Ok(Candidate::NotComposite);
        }
        Ok(path_bits(btf, root, path, &name)?.map_or(Candidate::Missing, Candidate::Bits))
    });
    combine_candidates(type_name, path, candidates)
}

/// What one definition of a type name says about a member path.
pub(crate) enum Candidate {
    /// The definition is not a struct or union (e.g. a same-named function).
    NotComposite,
    /// A struct or union without that member.
    Missing,
    /// The member's bit offset from the start of the struct or union.
    Bits(u64),
}

/// The byte offset of `type_name.path` from what each definition of `type_name` says: none
/// composite is an error, a bitfield that does not start on a byte is an error (the programs
/// read whole bytes), and two definitions that disagree are an error (vmlinux BTF normally has
/// one definition per name, but deduplication can leave copies). Shared by this reader and the
/// btf-rs oracle in tests, so the two differ only in how they walk the types.
pub(crate) fn combine_candidates(
    type_name: &str,
    path: &str,
    candidates: impl IntoIterator<Item = Result<Candidate, LayoutError>>,
) -> Result<Option<u32>, LayoutError> {
    let name = || format!("{type_name}.{path}");
    let mut found: Option<u32> = None;
    let mut any_type = false;
    for candidate in candidates {
        let bits = match candidate? {
            Candidate::NotComposite => continue,
            Candidate::Missing => {
                any_type = true;
                continue;
            }
            Candidate::Bits(bits) => {
                any_type = true;
                bits
            }
        };
        if bits % 8 != 0 {
            return Err(LayoutError::Unaligned {
                name: name(),
                bit_offset: bits,
            });
        }
        let bytes = u32::try_from(bits / 8).map_err(|_| LayoutError::OutOfRange {
            name: name(),
            value: i128::from(bits / 8),
        })?;
        match found {
            Some(first) if first != bytes => {
                let (first, second) = (i64::from(first), i64::from(bytes));
                return Err(LayoutError::Ambiguous {
                    name: name(),
                    first,
                    second,
                });
            }
            _ => found = Some(bytes),
        }
    }
    if !any_type {
        return Err(LayoutError::TypeNotFound {
            name: type_name.into(),
        });
    }
    Ok(found)
}

/// Bit offset of a dotted `path` inside struct/union `root`.
fn path_bits(
    btf: &Btf,
    root: Type,
    path: &str,
    name: &dyn Fn() -> String,
) -> Result<Option<u64>, LayoutError> {
    let mut current = root;
    let mut total = 0u64;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some((bits, member_type_id)) = find_member(btf, &current, part, 0, name)? else {
            return Ok(None);
        };
        total += bits;
        if parts.peek().is_some() {
            let inner = resolve_type(btf, member_type_id, name)?;
            if !inner.is_composite() {
                return Err(LayoutError::NotComposite { name: name() });
            }
            current = inner;
        }
    }
    Ok(Some(total))
}

/// Finds `wanted` among the members of `s` and of its anonymous struct/union members; returns
/// its bit offset from the start of `s` and its type id.
fn find_member(
    btf: &Btf,
    s: &Type,
    wanted: &str,
    depth: u32,
    name: &dyn Fn() -> String,
) -> Result<Option<(u64, u32)>, LayoutError> {
    if depth > MAX_DEPTH {
        return Err(LayoutError::TooDeep { name: name() });
    }
    if wanted.is_empty() {
        return Ok(None); // "" would otherwise match the first anonymous member
    }
    for member in btf.members(s) {
        let member = member?;
        // `bit_offset` already keeps only the low 24 bits when the struct sets kind_flag.
        let here = u64::from(member.bit_offset);
        if btf.name_eq(member.name_off, wanted)? {
            return Ok(Some((here, member.type_id)));
        }
        if !btf.name_is_empty(member.name_off)? {
            continue;
        }
        // Unnamed: an anonymous struct/union to search, or unnamed bitfield padding to skip.
        let inner = resolve_type(btf, member.type_id, name)?;
        if inner.is_composite()
            && let Some((bits, found)) = find_member(btf, &inner, wanted, depth + 1, name)?
        {
            return Ok(Some((here + bits, found)));
        }
    }
    Ok(None)
}

/// Type `id`, through typedefs, const, volatile, restrict and type tags.
fn resolve_type(btf: &Btf, id: u32, name: &dyn Fn() -> String) -> Result<Type, LayoutError> {
    let mut ty = btf.ty(id)?;
    for _ in 0..MAX_DEPTH {
        if !ty.is_link() {
            return Ok(ty);
        }
        ty = btf.ty(ty.size_or_type)?;
    }
    Err(LayoutError::TooDeep { name: name() })
}

/// Value of `variant` in `enum enum_name` (BTF_KIND_ENUM or ENUM64, signed or not); `Ok(None)`
/// when the enum has no such variant.
pub fn enum_value(btf: &Btf, enum_name: &str, variant: &str) -> Result<Option<i64>, LayoutError> {
    let name = || format!("{enum_name}.{variant}");
    let mut found: Option<i64> = None;
    let mut any_type = false;
    for &id in btf.ids_named(enum_name)?.iter() {
        let ty = btf.ty(id)?;
        if !matches!(ty.kind, KIND_ENUM | KIND_ENUM64) {
            continue;
        }
        any_type = true;
        let mut raw = None;
        for v in btf.variants(&ty) {
            let v = v?;
            if btf.name_eq(v.name_off, variant)? {
                raw = Some(v.value);
                break;
            }
        }
        let Some(raw) = raw else { continue };
        // kind_flag marks a signed enum. ENUM stores 32 bits: a signed value's sign is bit 31.
        let value = match (ty.kind, ty.kind_flag) {
            (KIND_ENUM, true) => i64::from(raw as u32 as i32),
            (KIND_ENUM, false) => i64::from(raw as u32),
            (_, true) => raw as i64,
            (_, false) => i64::try_from(raw).map_err(|_| LayoutError::OutOfRange {
                name: name(),
                value: i128::from(raw),
            })?,
        };
        match found {
            Some(first) if first != value => {
                return Err(LayoutError::Ambiguous {
                    name: name(),
                    first,
                    second: value,
                });
            }
            _ => found = Some(value),
        }
    }
    if !any_type {
        return Err(LayoutError::TypeNotFound {
            name: enum_name.into(),
        });
    }
    Ok(found)
}
