//! Kernel structure layout from BTF: the member offsets and enum values the eBPF programs need,
//! read in user space because Rust eBPF code cannot emit CO-RE relocations (aya#349), and
//! handed to the programs as one [`KernelLayout`] global.
//!
//! Member paths: a lookup searches a struct's own members and, transparently, the members of its
//! *anonymous* struct/union members (C reaches those without a name; `iov_iter`'s `count` and
//! `__iov` live in them from 6.4). Named embedded structs are *not* searched implicitly: reach
//! them with a dotted path (`sock` + `__sk_common.skc_family`), so a lookup never lands on a
//! same-named member of some unrelated embedded struct. Pointers and arrays end a path.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use btf_rs::{Btf, BtfType, Member, Struct, Type};
use containerdsnoop_common::KernelLayout;

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
    Parse {
        path: PathBuf,
        source: btf_rs::Error,
    },
    /// A lookup inside parsed BTF failed (dangling type id or string offset).
    Btf(btf_rs::Error),
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

/// Parses the BTF file at `path`, telling a missing file (no kernel BTF) from a broken one.
pub fn load_btf(path: &Path) -> Result<Btf, LayoutError> {
    match Btf::from_file(path) {
        Ok(btf) => Ok(btf),
        Err(btf_rs::Error::IO(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(LayoutError::NoBtf {
                path: path.to_owned(),
            })
        }
        Err(source) => Err(LayoutError::Parse {
            path: path.to_owned(),
            source,
        }),
    }
}

/// [`kernel_layout`] of the running kernel, from [`VMLINUX_BTF`].
pub fn kernel_layout_from_sysfs() -> Result<KernelLayout, LayoutError> {
    kernel_layout(&load_btf(Path::new(VMLINUX_BTF))?)
}

/// Everything the programs read from kernel structures, for the kernel `btf` describes.
///
/// Covers the 5.8 … 6.18 variants: the `iov_iter` flavour field (`iter_type` u8 from 5.14, else
/// `unsigned int type` with the direction bit), the iovec pointer (`__iov` from 6.4, else `iov`)
/// and `ubuf` with `ITER_UBUF` (6.0+, else [`ABSENT`]).
pub fn kernel_layout(btf: &Btf) -> Result<KernelLayout, LayoutError> {
    let (iov_iter_type, iov_iter_type_is_u32) = match member_offset(btf, "iov_iter", "iter_type")? {
        Some(off) => (off, 0),
        None => (required(btf, "iov_iter", "type")?, 1),
    };
    let iov_iter_iov = match member_offset(btf, "iov_iter", "__iov")? {
        Some(off) => off,
        None => required(btf, "iov_iter", "iov")?,
    };
    // The member and the enum value arrive together in 6.0. Should a backport carry only one,
    // UBUF counts as absent, so a program never accepts a flavour whose pointer it cannot find.
    let (iov_iter_ubuf, iter_ubuf) = match (
        member_offset(btf, "iov_iter", "ubuf")?,
        enum_value(btf, "iter_type", "ITER_UBUF")?,
    ) {
        (Some(off), Some(value)) => (off, enum_u32("iter_type.ITER_UBUF", value)?),
        _ => (ABSENT, ABSENT),
    };
    let iter_iovec = match enum_value(btf, "iter_type", "ITER_IOVEC")? {
        Some(value) => enum_u32("iter_type.ITER_IOVEC", value)?,
        None => {
            return Err(LayoutError::MemberNotFound {
                name: "iter_type.ITER_IOVEC".into(),
            });
        }
    };
    // `name` is a flexible array of `struct sockaddr_un`; the path is in its first element.
    let name = required(btf, "unix_address", "name")?;
    let sun_path = required(btf, "sockaddr_un", "sun_path")?;
    let unix_address_sun_path = name.checked_add(sun_path).ok_or(LayoutError::OutOfRange {
        name: "unix_address.name[0].sun_path".into(),
        value: i128::from(name) + i128::from(sun_path),
    })?;

    Ok(KernelLayout {
        msghdr_msg_iter: required(btf, "msghdr", "msg_iter")?,
        iov_iter_type,
        iov_iter_type_is_u32,
        iov_iter_iov_offset: required(btf, "iov_iter", "iov_offset")?,
        iov_iter_count: required(btf, "iov_iter", "count")?,
        iov_iter_iov,
        iov_iter_ubuf,
        iov_iter_nr_segs: required(btf, "iov_iter", "nr_segs")?,
        iter_ubuf,
        iter_iovec,
        // `unix_sock` starts with `struct sock`, and `sock` with `sock_common`: offsets from sk.
        sock_common_skc_family: required(btf, "sock", "__sk_common.skc_family")?,
        sock_sk_socket: required(btf, "sock", "sk_socket")?,
        sock_sk_peer_pid: required(btf, "sock", "sk_peer_pid")?,
        unix_sock_addr: required(btf, "unix_sock", "addr")?,
        unix_sock_peer: required(btf, "unix_sock", "peer")?,
        unix_address_len: required(btf, "unix_address", "len")?,
        unix_address_sun_path,
        socket_type: required(btf, "socket", "type")?,
        socket_sk: required(btf, "socket", "sk")?,
        socket_alloc_vfs_inode: required(btf, "socket_alloc", "vfs_inode")?,
        inode_i_ino: required(btf, "inode", "i_ino")?,
        pid_numbers: required(btf, "pid", "numbers")?,
        upid_nr: required(btf, "upid", "nr")?,
        task_group_leader: required(btf, "task_struct", "group_leader")?,
        task_comm: required(btf, "task_struct", "comm")?,
    })
}

fn required(btf: &Btf, type_name: &str, path: &str) -> Result<u32, LayoutError> {
    member_offset(btf, type_name, path)?.ok_or_else(|| LayoutError::MemberNotFound {
        name: format!("{type_name}.{path}"),
    })
}

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
    let mut found: Option<u32> = None;
    let mut any_type = false;
    for ty in btf
        .resolve_types_by_name(type_name)
        .map_err(LayoutError::Btf)?
    {
        let (Type::Struct(root) | Type::Union(root)) = ty else {
            continue;
        };
        any_type = true;
        let Some(bits) = path_bits(btf, root, path, &name)? else {
            continue;
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
        // vmlinux BTF normally has one definition per name, but deduplication can leave copies.
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

/// Bit offset of a dotted `path` inside `root`.
fn path_bits(
    btf: &Btf,
    root: Struct,
    path: &str,
    name: &dyn Fn() -> String,
) -> Result<Option<u64>, LayoutError> {
    let mut current = root;
    let mut total = 0u64;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some((bits, member)) = find_member(btf, &current, part, 0, name)? else {
            return Ok(None);
        };
        total += bits;
        if parts.peek().is_some() {
            match member_type(btf, &member, name)? {
                Type::Struct(inner) | Type::Union(inner) => current = inner,
                _ => return Err(LayoutError::NotComposite { name: name() }),
            }
        }
    }
    Ok(Some(total))
}

/// Finds `wanted` among the members of `s` and of its anonymous struct/union members; returns
/// its bit offset from the start of `s`.
fn find_member(
    btf: &Btf,
    s: &Struct,
    wanted: &str,
    depth: u32,
    name: &dyn Fn() -> String,
) -> Result<Option<(u64, Member)>, LayoutError> {
    if depth > MAX_DEPTH {
        return Err(LayoutError::TooDeep { name: name() });
    }
    if wanted.is_empty() {
        return Ok(None); // "" would otherwise match the first anonymous member
    }
    for member in &s.members {
        // `bit_offset` already keeps only the low 24 bits when the struct sets kind_flag.
        let here = u64::from(member.bit_offset());
        let member_name = btf.resolve_name(member).map_err(LayoutError::Btf)?;
        if member_name == wanted {
            return Ok(Some((here, member.clone())));
        }
        if !member_name.is_empty() {
            continue;
        }
        // Unnamed: an anonymous struct/union to search, or unnamed bitfield padding to skip.
        if let Type::Struct(inner) | Type::Union(inner) = member_type(btf, member, name)?
            && let Some((bits, found)) = find_member(btf, &inner, wanted, depth + 1, name)?
        {
            return Ok(Some((here + bits, found)));
        }
    }
    Ok(None)
}

/// The type of `member`, through typedefs, const, volatile, restrict and type tags.
fn member_type(btf: &Btf, member: &Member, name: &dyn Fn() -> String) -> Result<Type, LayoutError> {
    let mut ty = btf.resolve_chained_type(member).map_err(LayoutError::Btf)?;
    for _ in 0..MAX_DEPTH {
        let next = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t),
            Type::Const(q) | Type::Volatile(q) | Type::Restrict(q) => btf.resolve_chained_type(q),
            Type::TypeTag(t) => btf.resolve_chained_type(t),
            _ => return Ok(ty),
        };
        ty = next.map_err(LayoutError::Btf)?;
    }
    Err(LayoutError::TooDeep { name: name() })
}

/// Value of `variant` in `enum enum_name` (BTF_KIND_ENUM or ENUM64, signed or not); `Ok(None)`
/// when the enum has no such variant.
pub fn enum_value(btf: &Btf, enum_name: &str, variant: &str) -> Result<Option<i64>, LayoutError> {
    let name = || format!("{enum_name}.{variant}");
    let mut found: Option<i64> = None;
    let mut any_type = false;
    for ty in btf
        .resolve_types_by_name(enum_name)
        .map_err(LayoutError::Btf)?
    {
        let value = match &ty {
            Type::Enum(e) => {
                any_type = true;
                let Some(m) = find_variant(btf, &e.members, variant)? else {
                    continue;
                };
                // Values are stored as u32; a signed enum's negative values wrap.
                match e.is_signed() {
                    true => i64::from(m.val() as i32),
                    false => i64::from(m.val()),
                }
            }
            Type::Enum64(e) => {
                any_type = true;
                let Some(m) = find_variant(btf, &e.members, variant)? else {
                    continue;
                };
                match e.is_signed() {
                    true => m.val() as i64,
                    false => i64::try_from(m.val()).map_err(|_| LayoutError::OutOfRange {
                        name: name(),
                        value: i128::from(m.val()),
                    })?,
                }
            }
            _ => continue,
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

fn find_variant<'a, M: BtfType>(
    btf: &Btf,
    members: &'a [M],
    variant: &str,
) -> Result<Option<&'a M>, LayoutError> {
    for m in members {
        if btf.resolve_name(m).map_err(LayoutError::Btf)? == variant {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// A raw little-endian BTF blob (header, type section, string section) built by hand, so the
    /// walker is tested on any machine. Type ids count from 1 in the order types are added.
    /// Struct sizes are left 0: the walker never reads them.
    struct RawBtf {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl RawBtf {
        fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        fn words(&mut self, words: &[u32]) {
            for w in words {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
        }

        fn str(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            (self.strings.len() - s.len() - 1) as u32
        }

        /// `struct btf_type`: name_off, info (vlen | kind << 24 | kind_flag << 31), size/type.
        fn ty(&mut self, name: &str, kind: u32, flag: bool, vlen: usize, size_or_type: u32) -> u32 {
            let name = self.str(name);
            self.words(&[
                name,
                u32::from(flag) << 31 | kind << 24 | vlen as u32,
                size_or_type,
            ]);
            self.next_id += 1;
            self.next_id - 1
        }

        fn int(&mut self, name: &str, bytes: u32) -> u32 {
            let id = self.ty(name, 1, false, 0, bytes);
            self.words(&[bytes * 8]);
            id
        }

        fn ptr(&mut self, to: u32) -> u32 {
            self.ty("", 2, false, 0, to)
        }

        /// Kind 4 (struct) or 5 (union). Member offsets are the raw `btf_member.offset` word:
        /// bits, or with `kind_flag` set, `bitfield_size << 24 | bit_offset`.
        fn members(
            &mut self,
            kind: u32,
            name: &str,
            flag: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let id = self.ty(name, kind, flag, members.len(), 0);
            for &(member, ty, offset) in members {
                let member = self.str(member);
                self.words(&[member, ty, offset]);
            }
            id
        }

        fn strukt(&mut self, name: &str, members: &[(&str, u32, u32)]) -> u32 {
            self.members(4, name, false, members)
        }

        fn union(&mut self, members: &[(&str, u32, u32)]) -> u32 {
            self.members(5, "", false, members)
        }

        fn enum32(&mut self, name: &str, signed: bool, variants: &[(&str, u32)]) -> u32 {
            let id = self.ty(name, 6, signed, variants.len(), 4);
            for &(variant, value) in variants {
                let variant = self.str(variant);
                self.words(&[variant, value]);
            }
            id
        }

        fn enum64(&mut self, name: &str, signed: bool, variants: &[(&str, u64)]) -> u32 {
            let id = self.ty(name, 19, signed, variants.len(), 8);
            for &(variant, value) in variants {
                let variant = self.str(variant);
                self.words(&[variant, value as u32, (value >> 32) as u32]);
            }
            id
        }

        fn build(&self) -> Btf {
            let (type_len, str_len) = (self.types.len() as u32, self.strings.len() as u32);
            let mut blob = vec![0x9f, 0xeb, 1, 0]; // magic 0xeb9f (LE), version 1, flags 0
            // hdr_len, type_off, type_len, str_off, str_len
            for w in [24, 0, type_len, type_len, str_len] {
                blob.extend_from_slice(&u32::to_le_bytes(w));
            }
            blob.extend_from_slice(&self.types);
            blob.extend_from_slice(&self.strings);
            Btf::from_bytes(&blob).expect("hand-built BTF parses")
        }
    }

    /// `struct iov_iter` as 6.4+ lays it out: `__iov`/`ubuf` and `count` two anonymous levels deep.
    #[test]
    fn anonymous_members_are_searched_and_their_offsets_added() {
        let mut b = RawBtf::new();
        let (u8_, u64_) = (b.int("unsigned char", 1), b.int("long unsigned int", 8));
        let void_ptr = b.ptr(0);
        let ptrs = b.union(&[("__iov", void_ptr, 0), ("ubuf", void_ptr, 0)]);
        let with_count = b.strukt("", &[("", ptrs, 0), ("count", u64_, 64)]);
        let outer = b.union(&[("__ubuf_iovec", u64_, 0), ("", with_count, 0)]);
        let segs = b.union(&[("nr_segs", u64_, 0)]);
        let top = [
            ("iter_type", u8_, 0),
            ("iov_offset", u64_, 64),
            ("", outer, 128),
            ("", segs, 256),
        ];
        b.strukt("iov_iter", &top);
        let btf = b.build();
        let off = |path| member_offset(&btf, "iov_iter", path).unwrap();
        assert_eq!((off("iter_type"), off("iov_offset")), (Some(0), Some(8)));
        assert_eq!(
            (off("__ubuf_iovec"), off("__iov"), off("ubuf")),
            (Some(16), Some(16), Some(16))
        );
        assert_eq!((off("count"), off("nr_segs")), (Some(24), Some(32)));
        assert_eq!((off("iov"), off("")), (None, None));
    }

    #[test]
    fn kind_flag_offsets_keep_the_low_24_bits() {
        let mut b = RawBtf::new();
        let (u8_, u32_) = (b.int("unsigned char", 1), b.int("unsigned int", 4));
        let anon = b.union(&[("f", u32_, 0)]);
        let members = [
            ("a", u32_, 3 << 24),     // a:3 at bit 0
            ("b", u32_, 5 << 24 | 3), // b:5 at bit 3
            ("", u32_, 8 << 24 | 8),  // unnamed padding bitfield: skipped, not searched
            ("c", u8_, 16),           // an ordinary member (bitfield size 0)
            ("d", u8_, 8 << 24 | 24), // an 8-bit bitfield on a byte boundary
            ("", anon, 32),           // an anonymous member of a kind_flag struct
            ("e", u32_, 64),
        ];
        b.members(4, "flags", true, &members);
        let btf = b.build();
        let off = |path| member_offset(&btf, "flags", path);
        for (path, bytes) in [("a", 0), ("c", 2), ("d", 3), ("f", 4), ("e", 8)] {
            assert_eq!(off(path).unwrap(), Some(bytes), "flags.{path}");
        }
        match off("b") {
            Err(LayoutError::Unaligned {
                name,
                bit_offset: 3,
            }) => assert_eq!(name, "flags.b"),
            other => panic!("expected Unaligned, got {other:?}"),
        }
    }

    #[test]
    fn dotted_paths_go_through_named_embedded_structs_only() {
        let mut b = RawBtf::new();
        let (u16_, u32_) = (b.int("short unsigned int", 2), b.int("unsigned int", 4));
        let common = b.strukt(
            "sock_common",
            &[("skc_daddr", u32_, 0), ("skc_family", u16_, 128)],
        );
        let alias = b.ty("sock_common_t", 8, false, 0, common); // typedef
        let konst = b.ty("", 10, false, 0, alias); // const
        let ptr = b.ptr(common);
        b.strukt(
            "sock",
            &[("__sk_common", konst, 64), ("sk_socket", ptr, 256)],
        );
        let btf = b.build();
        let off = |path| member_offset(&btf, "sock", path);
        assert_eq!(off("__sk_common.skc_family").unwrap(), Some(24));
        assert_eq!(off("sk_socket").unwrap(), Some(32));
        assert_eq!(
            off("skc_family").unwrap(),
            None,
            "named embedded structs need a path"
        );
        assert_eq!(off("__sk_common.nope").unwrap(), None);
        assert!(matches!(
            off("sk_socket.x"),
            Err(LayoutError::NotComposite { .. })
        ));
        let err = member_offset(&btf, "nosuch", "x");
        assert!(matches!(err, Err(LayoutError::TypeNotFound { .. })));
    }

    #[test]
    fn cyclic_btf_is_an_error_not_a_hang() {
        let mut b = RawBtf::new();
        b.strukt("", &[("", 1, 0)]); // id 1: an anonymous struct containing itself
        b.ty("loop_t", 8, false, 0, 2); // id 2: a typedef of itself
        b.strukt("nested", &[("", 1, 0)]);
        b.strukt("aliased", &[("x", 2, 0)]);
        let btf = b.build();
        let too_deep = |ty, path| {
            let found = member_offset(&btf, ty, path);
            matches!(found, Err(LayoutError::TooDeep { .. }))
        };
        assert!(too_deep("nested", "x"));
        assert!(too_deep("aliased", "x.y"));
    }

    #[test]
    fn enum_values_signed_unsigned_and_64_bit() {
        let mut b = RawBtf::new();
        b.enum32("iter_type", false, &[("ITER_UBUF", 0), ("ITER_IOVEC", 1)]);
        b.enum32("neg", true, &[("MINUS_ONE", u32::MAX)]);
        b.enum32("big32", false, &[("ALL", u32::MAX)]);
        b.enum64("big", false, &[("HUGE", 1 << 40), ("TOO_BIG", u64::MAX)]);
        b.enum64("sbig", true, &[("MINUS_ONE", u64::MAX)]);
        let btf = b.build();
        let value = |e, v| enum_value(&btf, e, v);
        assert_eq!(value("iter_type", "ITER_UBUF").unwrap(), Some(0));
        assert_eq!(value("iter_type", "ITER_IOVEC").unwrap(), Some(1));
        assert_eq!(value("iter_type", "ITER_XARRAY").unwrap(), None);
        assert_eq!(value("neg", "MINUS_ONE").unwrap(), Some(-1));
        assert_eq!(value("big32", "ALL").unwrap(), Some(i64::from(u32::MAX)));
        assert_eq!(value("big", "HUGE").unwrap(), Some(1 << 40));
        assert_eq!(value("sbig", "MINUS_ONE").unwrap(), Some(-1));
        assert!(matches!(
            value("big", "TOO_BIG"),
            Err(LayoutError::OutOfRange { .. })
        ));
        assert!(matches!(
            value("nosuch", "X"),
            Err(LayoutError::TypeNotFound { .. })
        ));
    }

    /// Byte offsets of a 5.10-like kernel: `unsigned int type`, `iov` in an anonymous union, no
    /// `ubuf`, `unix_address.hash` before `name`. "" is the anonymous `{iov, kvec}` union.
    const OLD_KERNEL: &[(&str, &[(&str, u32)])] = &[
        (
            "iov_iter",
            &[
                ("type", 0),
                ("iov_offset", 8),
                ("count", 16),
                ("", 24),
                ("nr_segs", 32),
            ],
        ),
        (
            "msghdr",
            &[("msg_name", 0), ("msg_namelen", 8), ("msg_iter", 16)],
        ),
        (
            "sock",
            &[("__sk_common", 0), ("sk_socket", 264), ("sk_peer_pid", 560)],
        ),
        ("unix_sock", &[("sk", 0), ("addr", 768), ("peer", 848)]),
        (
            "unix_address",
            &[("refcnt", 0), ("len", 4), ("hash", 8), ("name", 12)],
        ),
        ("sockaddr_un", &[("sun_family", 0), ("sun_path", 2)]),
        ("socket", &[("state", 0), ("type", 4), ("sk", 32)]),
        ("socket_alloc", &[("socket", 0), ("vfs_inode", 384)]),
        ("inode", &[("i_mode", 0), ("i_ino", 64)]),
        ("pid", &[("level", 4), ("numbers", 80)]),
        ("upid", &[("nr", 0), ("ns", 8)]),
        ("task_struct", &[("group_leader", 1200), ("comm", 1600)]),
    ];

    /// [`OLD_KERNEL`] as BTF, without the member `omit` ("struct.member").
    fn old_kernel_btf(omit: &str) -> Btf {
        let mut b = RawBtf::new();
        let u64_ = b.int("long long unsigned int", 8);
        let iovs = b.union(&[("iov", u64_, 0), ("kvec", u64_, 0)]);
        let common = b.strukt("sock_common", &[("skc_family", u64_, 128)]);
        for &(name, fields) in OLD_KERNEL {
            let members: Vec<_> = (fields.iter())
                .filter(|(m, _)| format!("{name}.{m}") != omit)
                .map(|&(m, bytes)| match m {
                    "" => (m, iovs, bytes * 8),
                    "__sk_common" => (m, common, bytes * 8),
                    _ => (m, u64_, bytes * 8),
                })
                .collect();
            b.strukt(name, &members);
        }
        let flags = [
            ("ITER_IOVEC", 4),
            ("ITER_KVEC", 8),
            ("ITER_BVEC", 16),
            ("ITER_PIPE", 32),
        ];
        b.enum32("iter_type", false, &flags);
        b.build()
    }

    #[test]
    fn old_kernels_get_the_u32_type_field_iov_and_no_ubuf() {
        let expected = KernelLayout {
            msghdr_msg_iter: 16,
            iov_iter_type: 0,
            iov_iter_type_is_u32: 1,
            iov_iter_iov_offset: 8,
            iov_iter_count: 16,
            iov_iter_iov: 24,
            iov_iter_ubuf: ABSENT,
            iov_iter_nr_segs: 32,
            iter_ubuf: ABSENT,
            iter_iovec: 4,
            sock_common_skc_family: 16,
            sock_sk_socket: 264,
            sock_sk_peer_pid: 560,
            unix_sock_addr: 768,
            unix_sock_peer: 848,
            unix_address_len: 4,
            unix_address_sun_path: 14,
            socket_type: 4,
            socket_sk: 32,
            socket_alloc_vfs_inode: 384,
            inode_i_ino: 64,
            pid_numbers: 80,
            upid_nr: 0,
            task_group_leader: 1200,
            task_comm: 1600,
        };
        assert_eq!(kernel_layout(&old_kernel_btf("")).unwrap(), expected);
    }

    #[test]
    fn a_missing_required_member_is_named_in_the_error() {
        for omit in [
            "iov_iter.count",
            "iov_iter.type",
            "sock.sk_peer_pid",
            "unix_address.name",
        ] {
            let err = kernel_layout(&old_kernel_btf(omit)).unwrap_err();
            assert!(
                matches!(err, LayoutError::MemberNotFound { .. }),
                "{omit}: {err:?}"
            );
            assert_eq!(err.to_string(), format!("kernel BTF has no {omit}"));
        }
    }

    #[test]
    fn a_missing_btf_file_explains_the_kernel_config() {
        let missing = Path::new(VMLINUX_BTF).with_file_name("no-such-btf");
        assert!(matches!(load_btf(&missing), Err(LayoutError::NoBtf { .. })));
        let err = LayoutError::NoBtf {
            path: VMLINUX_BTF.into(),
        };
        let text =
            "kernel has no BTF (/sys/kernel/btf/vmlinux missing): needs CONFIG_DEBUG_INFO_BTF=y";
        assert_eq!(err.to_string(), text);
    }

    /// The running kernel's BTF, parsed once for all live tests; `None` (test skipped) without it.
    fn live() -> Option<&'static Btf> {
        static LIVE: OnceLock<Option<Btf>> = OnceLock::new();
        let btf = LIVE.get_or_init(|| match load_btf(Path::new(VMLINUX_BTF)) {
            Ok(btf) => Some(btf),
            Err(LayoutError::NoBtf { .. }) => None,
            Err(e) => panic!("{e}"),
        });
        if btf.is_none() {
            eprintln!(
                "skipping live BTF test: {VMLINUX_BTF} is missing (no CONFIG_DEBUG_INFO_BTF)"
            );
        }
        btf.as_ref()
    }

    fn kernel_release() -> String {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease");
        release.unwrap_or_default().trim().to_owned()
    }

    #[test]
    fn live_layout_is_complete_and_consistent() {
        let Some(btf) = live() else { return };
        let layout = kernel_layout(btf).unwrap();
        println!("{}: {layout:#?}", kernel_release());
        assert_eq!(kernel_layout_from_sysfs().unwrap(), layout);
        let name = member_offset(btf, "unix_address", "name").unwrap();
        assert_eq!(Some(layout.unix_address_sun_path), name.map(|n| n + 2));
        let common = member_offset(btf, "sock", "__sk_common").unwrap();
        let family = member_offset(btf, "sock_common", "skc_family").unwrap();
        assert_eq!(
            Some(layout.sock_common_skc_family),
            common.zip(family).map(|(c, f)| c + f)
        );
        // `sk_family` is a `#define` for `__sk_common.skc_family`, not a member.
        assert_eq!(member_offset(btf, "sock", "sk_family").unwrap(), None);
    }

    /// KERNEL.md §1.2, §1.3 and §2.1: values every 6.18 build has.
    #[test]
    fn live_6_18_iov_iter_msghdr_and_small_structs() {
        let Some(btf) = live() else { return };
        if !kernel_release().starts_with("6.18.") {
            eprintln!(
                "skipping: expected values are for 6.18, this is {}",
                kernel_release()
            );
            return;
        }
        let l = kernel_layout(btf).unwrap();
        assert_eq!((l.iov_iter_type, l.iov_iter_type_is_u32), (0, 0));
        assert_eq!(
            (l.iov_iter_iov_offset, l.iov_iter_count, l.iov_iter_nr_segs),
            (8, 24, 32)
        );
        assert_eq!((l.iov_iter_iov, l.iov_iter_ubuf), (16, 16));
        assert_eq!((l.iter_ubuf, l.iter_iovec), (0, 1));
        assert_eq!(
            enum_value(btf, "iter_type", "ITER_FOLIOQ").unwrap(),
            Some(4)
        );
        assert_eq!(l.msghdr_msg_iter, 16);
        assert_eq!((l.unix_address_len, l.unix_address_sun_path), (4, 10));
        assert_eq!((l.socket_type, l.socket_sk), (4, 24));
        assert_eq!((l.upid_nr, l.sock_common_skc_family), (0, 16));
        assert_eq!(member_offset(btf, "pid", "level").unwrap(), Some(4));
    }

    /// Offsets that depend on the kernel config (lock debugging, spinlock size, randstruct...):
    /// the 6.18.44 "-fc-" test VMs' values, cross-checked there with `bpftool btf dump`.
    #[test]
    fn live_config_dependent_offsets_of_the_test_vm() {
        let Some(btf) = live() else { return };
        if !kernel_release().starts_with("6.18.44-fc-") {
            eprintln!(
                "skipping: values are for 6.18.44-fc-*, this is {}",
                kernel_release()
            );
            return;
        }
        let l = kernel_layout(btf).unwrap();
        assert_eq!((l.unix_sock_addr, l.unix_sock_peer), (784, 872));
        assert_eq!((l.sock_sk_socket, l.sock_sk_peer_pid), (288, 624));
        assert_eq!(
            (l.pid_numbers, l.socket_alloc_vfs_inode, l.inode_i_ino),
            (144, 128, 64)
        );
        assert_eq!((l.task_group_leader, l.task_comm), (1328, 1752));
        assert_eq!(member_offset(btf, "sock", "sk_ino").unwrap(), Some(608));
    }
}
