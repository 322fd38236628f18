//! A minimal reader of raw BTF (the format of `/sys/kernel/btf/vmlinux`, described in the
//! kernel's `Documentation/bpf/btf.rst`): a header, a type section and a string section.
//!
//! [`Btf::from_bytes`] makes one linear pass over the type section. It only records where each
//! type record starts (a `Vec<u32>` indexed by type id) and which named struct/union/enum types
//! carry one of the [`INDEXED`] names, compared in place in the string section. Everything
//! else — members, enum values, names — is decoded on demand from the bytes. Every read is
//! bounds-checked: a truncated or odd file gives a [`BtfError`], never a panic.

use std::{
    borrow::Cow,
    fmt, io,
    ops::Range,
    sync::atomic::{AtomicU32, Ordering},
};

/// Names whose struct/union/enum type ids the linear pass records: every type
/// [`super::kernel_layout`] looks up (and `sock_common`, which `sock` embeds). Looking up any
/// other name works too but scans all types.
pub const INDEXED: &[&str] = &[
    "iov_iter",
    "iter_type",
    "msghdr",
    "sock",
    "sock_common",
    "unix_sock",
    "unix_address",
    "sockaddr_un",
    "socket",
    "socket_alloc",
    "inode",
    "dentry",
    "super_block",
    "pid",
    "upid",
    "task_struct",
    "signal_struct",
    "files_struct",
    "fdtable",
    "file",
    "pt_regs",
];

const MAGIC: u16 = 0xeb9f;
/// `struct btf_header` up to `str_len`; newer headers may be longer (`hdr_len`).
const HEADER_LEN: usize = 24;
/// `struct btf_type`: name_off, info, size/type.
const TYPE_LEN: usize = 12;

pub const KIND_INT: u8 = 1;
pub const KIND_PTR: u8 = 2;
pub const KIND_ARRAY: u8 = 3;
pub const KIND_STRUCT: u8 = 4;
pub const KIND_UNION: u8 = 5;
pub const KIND_ENUM: u8 = 6;
pub const KIND_FWD: u8 = 7;
pub const KIND_TYPEDEF: u8 = 8;
pub const KIND_VOLATILE: u8 = 9;
pub const KIND_CONST: u8 = 10;
pub const KIND_RESTRICT: u8 = 11;
pub const KIND_FUNC: u8 = 12;
pub const KIND_FUNC_PROTO: u8 = 13;
pub const KIND_VAR: u8 = 14;
pub const KIND_DATASEC: u8 = 15;
pub const KIND_FLOAT: u8 = 16;
pub const KIND_DECL_TAG: u8 = 17;
pub const KIND_TYPE_TAG: u8 = 18;
pub const KIND_ENUM64: u8 = 19;

/// Size of the data following a `struct btf_type` of `kind` with `vlen` entries; `None` for a
/// kind this reader does not know (its length is unknown, so the pass cannot go on).
fn trailing_len(kind: u8, vlen: usize) -> Option<usize> {
    Some(match kind {
        KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
        | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
        KIND_INT | KIND_VAR | KIND_DECL_TAG => 4, // encoding / linkage / component_idx
        KIND_ARRAY => 12,                         // struct btf_array
        KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,  // btf_enum / btf_param
        KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen, // btf_member / ...
        _ => return None,
    })
}

/// Why BTF could not be read or a lookup in it failed.
#[derive(Debug)]
pub enum BtfError {
    /// The file could not be read.
    Io(io::Error),
    /// The header or the section bounds are wrong.
    Header(&'static str),
    /// Type `id`'s record runs past the end of the type section.
    Truncated { id: u32 },
    /// Type `id` has a kind this reader does not know.
    UnknownKind { id: u32, kind: u8 },
    /// A reference to a type id that does not exist.
    InvalidType(u32),
    /// A string offset outside the string section.
    InvalidString(u32),
}

impl fmt::Display for BtfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::Header(what) => write!(f, "bad header: {what}"),
            Self::Truncated { id } => write!(f, "type {id} runs past the type section"),
            Self::UnknownKind { id, kind } => write!(f, "type {id} has unknown kind {kind}"),
            Self::InvalidType(id) => write!(f, "no type {id}"),
            Self::InvalidString(off) => write!(f, "string offset {off} out of bounds"),
        }
    }
}

impl std::error::Error for BtfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// One type record's `struct btf_type`, decoded.
#[derive(Clone, Copy, Debug)]
pub struct Type {
    pub id: u32,
    pub kind: u8,
    /// `kind_flag`: bitfield offsets (struct/union), signedness (enum/enum64).
    pub kind_flag: bool,
    pub vlen: u16,
    pub name_off: u32,
    /// `size` or `type`, depending on the kind.
    pub size_or_type: u32,
    /// Offset of the record in the file.
    at: usize,
}

impl Type {
    /// Type id 0.
    const VOID: Self = Self {
        id: 0,
        kind: 0,
        kind_flag: false,
        vlen: 0,
        name_off: 0,
        size_or_type: 0,
        at: 0,
    };

    pub fn is_composite(&self) -> bool {
        matches!(self.kind, KIND_STRUCT | KIND_UNION)
    }

    /// Typedef, qualifier or type tag: a link to `size_or_type`, followed when resolving.
    pub fn is_link(&self) -> bool {
        matches!(
            self.kind,
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
        )
    }
}

/// A `struct btf_member`.
#[derive(Clone, Copy, Debug)]
pub struct Member {
    pub name_off: u32,
    pub type_id: u32,
    /// Bit offset from the start of the struct; with `kind_flag`, only the low 24 bits of the
    /// raw word (the high 8 are the bitfield size).
    pub bit_offset: u32,
}

/// A `struct btf_enum` or `struct btf_enum64`: name and raw (unsigned) value.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    pub name_off: u32,
    pub value: u64,
}

/// Parsed-on-demand BTF: the file's bytes plus the offset of every type record.
pub struct Btf {
    data: Vec<u8>,
    big_endian: bool,
    strs: Range<usize>,
    /// `offsets[id]`: where type `id`'s record starts in `data`; `offsets[0]` (void) unused.
    offsets: Vec<u32>,
    /// `indexed[i]`: ids of the structs, unions and enums named `INDEXED[i]`, ascending.
    indexed: Vec<Vec<u32>>,
    /// Lookups of a name not in [`INDEXED`], which scan every type (for tests).
    scans: AtomicU32,
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("bytes", &self.data.len())
            .field("types", &self.types())
            .finish_non_exhaustive()
    }
}

fn read_u32(data: &[u8], at: usize, big_endian: bool) -> Option<u32> {
    let bytes: [u8; 4] = data.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(match big_endian {
        true => u32::from_be_bytes(bytes),
        false => u32::from_le_bytes(bytes),
    })
}

impl Btf {
    /// Checks the header and sections and indexes the type section (little- or big-endian).
    pub fn from_bytes(data: Vec<u8>) -> Result<Self, BtfError> {
        let magic = data.get(..2).ok_or(BtfError::Header("file too short"))?;
        let big_endian = match u16::from_le_bytes([magic[0], magic[1]]) {
            MAGIC => false,
            m if m.swap_bytes() == MAGIC => true,
            _ => return Err(BtfError::Header("bad magic")),
        };
        if data.get(2) != Some(&1) {
            return Err(BtfError::Header("unsupported version"));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(BtfError::Header("file larger than 4 GiB"));
        }
        let word = |at| read_u32(&data, at, big_endian).ok_or(BtfError::Header("file too short"));
        let hdr_len = word(4)? as usize;
        if hdr_len < HEADER_LEN || hdr_len > data.len() {
            return Err(BtfError::Header("bad header length"));
        }
        let section = |off: usize, len: usize| -> Result<Range<usize>, BtfError> {
            let (off, len) = (word(off)? as usize, word(len)? as usize);
            let start = off.checked_add(hdr_len);
            let end = start.and_then(|start| start.checked_add(len));
            match (start, end) {
                (Some(start), Some(end)) if end <= data.len() => Ok(start..end),
                _ => Err(BtfError::Header("section past the end of the file")),
            }
        };
        let (types, strs) = (section(8, 12)?, section(16, 20)?);
        // As the kernel checks: the string section starts with "" and ends with a NUL, so every
        // in-bounds offset starts a NUL-terminated string.
        if strs.is_empty() || data[strs.start] != 0 || data[strs.end - 1] != 0 {
            return Err(BtfError::Header("string section not NUL-delimited"));
        }
        let mut btf = Self {
            data,
            big_endian,
            strs,
            offsets: Vec::new(),
            indexed: vec![Vec::new(); INDEXED.len()],
            scans: AtomicU32::new(0),
        };
        btf.index(types)?;
        Ok(btf)
    }

    /// The linear pass: record each type's offset and the ids carrying an [`INDEXED`] name.
    fn index(&mut self, types: Range<usize>) -> Result<(), BtfError> {
        // vmlinux averages ~40 bytes a type.
        let mut offsets = Vec::with_capacity(types.len() / 32 + 1);
        offsets.push(0);
        let mut at = types.start;
        while at < types.end {
            let id = offsets.len() as u32; // < 2^32: each record takes 12 of < 2^32 bytes
            let truncated = BtfError::Truncated { id };
            if types.end - at < TYPE_LEN {
                return Err(truncated);
            }
            let ty = self.decode(id, at).ok_or(truncated)?;
            let trailing = trailing_len(ty.kind, usize::from(ty.vlen));
            let trailing = trailing.ok_or(BtfError::UnknownKind { id, kind: ty.kind })?;
            let end = at + TYPE_LEN + trailing;
            if end > types.end {
                return Err(BtfError::Truncated { id });
            }
            offsets.push(at as u32); // data.len() fits u32, checked above
            if matches!(ty.kind, KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64)
                && ty.name_off != 0
                && let Some(i) = self.indexed_name(ty.name_off)?
            {
                self.indexed[i].push(id);
            }
            at = end;
        }
        self.offsets = offsets;
        Ok(())
    }

    /// Which [`INDEXED`] name the string at `name_off` is, compared in place.
    fn indexed_name(&self, name_off: u32) -> Result<Option<usize>, BtfError> {
        let s = self.str_tail(name_off)?;
        Ok(INDEXED.iter().position(|name| {
            let name = name.as_bytes();
            s.get(name.len()) == Some(&0) && s.starts_with(name)
        }))
    }

    fn word(&self, at: usize) -> Option<u32> {
        read_u32(&self.data, at, self.big_endian)
    }

    fn decode(&self, id: u32, at: usize) -> Option<Type> {
        let info = self.word(at + 4)?;
        Some(Type {
            id,
            kind: ((info >> 24) & 0x1f) as u8,
            kind_flag: info >> 31 == 1,
            vlen: (info & 0xffff) as u16,
            name_off: self.word(at)?,
            size_or_type: self.word(at + 8)?,
            at,
        })
    }

    /// Number of types, void excluded.
    pub fn types(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Type `id`; id 0 is void (kind 0).
    pub fn ty(&self, id: u32) -> Result<Type, BtfError> {
        if id == 0 {
            return Ok(Type::VOID);
        }
        let at = self
            .offsets
            .get(id as usize)
            .ok_or(BtfError::InvalidType(id))?;
        // Cannot fail: the pass checked the record fits.
        self.decode(id, *at as usize)
            .ok_or(BtfError::Truncated { id })
    }

    /// Ids of the structs, unions, enums and enum64s called `name`, ascending.
    pub fn ids_named(&self, name: &str) -> Result<Cow<'_, [u32]>, BtfError> {
        if let Some(i) = INDEXED.iter().position(|n| *n == name) {
            return Ok(Cow::Borrowed(&self.indexed[i]));
        }
        self.scans.fetch_add(1, Ordering::Relaxed);
        let mut ids = Vec::new();
        for id in 1..self.offsets.len() as u32 {
            let ty = self.ty(id)?;
            if matches!(ty.kind, KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64)
                && self.name_eq(ty.name_off, name)?
            {
                ids.push(id);
            }
        }
        Ok(Cow::Owned(ids))
    }

    /// How many lookups scanned every type because the name was not in `INDEXED`.
    pub fn scans(&self) -> u32 {
        self.scans.load(Ordering::Relaxed)
    }

    /// The members of struct/union `ty`, in order.
    pub fn members(&self, ty: &Type) -> impl Iterator<Item = Result<Member, BtfError>> + '_ {
        let (ty, base) = (*ty, ty.at + TYPE_LEN);
        (0..usize::from(ty.vlen)).map(move |i| {
            let word = |n: usize| self.field(&ty, base + 12 * i + 4 * n);
            let raw = word(2)?;
            Ok(Member {
                name_off: word(0)?,
                type_id: word(1)?,
                bit_offset: if ty.kind_flag { raw & 0xff_ffff } else { raw },
            })
        })
    }

    /// The variants of enum or enum64 `ty`, in order (none for other kinds).
    pub fn variants(&self, ty: &Type) -> impl Iterator<Item = Result<Variant, BtfError>> + '_ {
        let (ty, base) = (*ty, ty.at + TYPE_LEN);
        let (count, size) = match ty.kind {
            KIND_ENUM => (usize::from(ty.vlen), 8),
            KIND_ENUM64 => (usize::from(ty.vlen), 12),
            _ => (0, 0),
        };
        (0..count).map(move |i| {
            let word = |n: usize| self.field(&ty, base + size * i + 4 * n);
            let low = u64::from(word(1)?);
            let high = if size == 12 { u64::from(word(2)?) } else { 0 };
            Ok(Variant {
                name_off: word(0)?,
                value: high << 32 | low,
            })
        })
    }

    /// A word of `ty`'s trailing data. Cannot fail for a [`Btf::ty`] result: the pass checked
    /// that the record fits.
    fn field(&self, ty: &Type, at: usize) -> Result<u32, BtfError> {
        self.word(at).ok_or(BtfError::Truncated { id: ty.id })
    }

    /// The bytes from string offset `off` to the end of the string section.
    fn str_tail(&self, off: u32) -> Result<&[u8], BtfError> {
        let start = self.strs.start.checked_add(off as usize);
        match start {
            Some(start) if start < self.strs.end => Ok(&self.data[start..self.strs.end]),
            _ => Err(BtfError::InvalidString(off)),
        }
    }

    /// Whether the string at `off` is `s`, without allocating.
    pub fn name_eq(&self, off: u32, s: &str) -> Result<bool, BtfError> {
        let tail = self.str_tail(off)?;
        Ok(tail.get(s.len()) == Some(&0) && tail.starts_with(s.as_bytes()))
    }

    /// Whether the string at `off` is "" (an anonymous member or type).
    pub fn name_is_empty(&self, off: u32) -> Result<bool, BtfError> {
        Ok(self.str_tail(off)?.first() == Some(&0))
    }
}
