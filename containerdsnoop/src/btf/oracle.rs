//! The btf-rs based walker [`super::raw`] replaced, kept for tests as an independent oracle:
//! the same lookups through a general-purpose BTF crate must give the same answers.
//! A btf-rs error (which well-formed test BTF never gives) panics.

use btf_rs::{Btf, BtfType, Member, Struct, Type};

use super::{Candidate, LayoutError, Lookup, MAX_DEPTH, combine_candidates};

/// Parses the BTF at `path` with btf-rs; `None` when the file does not exist.
pub(super) fn load(path: &std::path::Path) -> Option<Btf> {
    match Btf::from_file(path) {
        Ok(btf) => Some(btf),
        Err(btf_rs::Error::IO(e)) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("btf-rs cannot parse {}: {e}", path.display()),
    }
}

fn btf_rs_failed(e: btf_rs::Error) -> LayoutError {
    panic!("btf-rs: {e}")
}

impl Lookup for Btf {
    fn member_offset(&self, type_name: &str, path: &str) -> Result<Option<u32>, LayoutError> {
        member_offset(self, type_name, path)
    }

    fn enum_value(&self, enum_name: &str, variant: &str) -> Result<Option<i64>, LayoutError> {
        enum_value(self, enum_name, variant)
    }
}

/// The layout through btf-rs.
pub(super) fn kernel_layout(
    btf: &Btf,
) -> Result<containerdsnoop_common::KernelLayout, LayoutError> {
    super::layout_of(btf)
}

/// Byte offset of `path` (a member name, or dotted names through embedded structs) from the
/// start of struct/union `type_name`; `Ok(None)` when the type has no such member.
///
/// Members of anonymous structs/unions are found as if they were the type's own, their offsets
/// added up; typedefs and qualifiers are looked through. A bitfield that does not start on a byte
/// is an error, since the programs read whole bytes.
pub(super) fn member_offset(
    btf: &Btf,
    type_name: &str,
    path: &str,
) -> Result<Option<u32>, LayoutError> {
    let name = || format!("{type_name}.{path}");
    let types = btf
        .resolve_types_by_name(type_name)
        .map_err(btf_rs_failed)?;
    let candidates = types.into_iter().map(|ty| {
        let (Type::Struct(root) | Type::Union(root)) = ty else {
            return Ok(Candidate::NotComposite);
        };
        Ok(path_bits(btf, root, path, &name)?.map_or(Candidate::Missing, Candidate::Bits))
    });
    combine_candidates(type_name, path, candidates)
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
        let member_name = btf.resolve_name(member).map_err(btf_rs_failed)?;
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
    let mut ty = btf.resolve_chained_type(member).map_err(btf_rs_failed)?;
    for _ in 0..MAX_DEPTH {
        let next = match &ty {
            Type::Typedef(t) => btf.resolve_chained_type(t),
            Type::Const(q) | Type::Volatile(q) | Type::Restrict(q) => btf.resolve_chained_type(q),
            Type::TypeTag(t) => btf.resolve_chained_type(t),
            _ => return Ok(ty),
        };
        ty = next.map_err(btf_rs_failed)?;
    }
    Err(LayoutError::TooDeep { name: name() })
}

/// Value of `variant` in `enum enum_name` (BTF_KIND_ENUM or ENUM64, signed or not); `Ok(None)`
/// when the enum has no such variant.
pub(super) fn enum_value(
    btf: &Btf,
    enum_name: &str,
    variant: &str,
) -> Result<Option<i64>, LayoutError> {
    let name = || format!("{enum_name}.{variant}");
    let mut found: Option<i64> = None;
    let mut any_type = false;
    for ty in btf
        .resolve_types_by_name(enum_name)
        .map_err(btf_rs_failed)?
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
        if btf.resolve_name(m).map_err(btf_rs_failed)? == variant {
            return Ok(Some(m));
        }
    }
    Ok(None)
}
