//! Every lookup runs through both readers — the raw one ([`super::raw`]) and the btf-rs
//! oracle — and the two must agree; see [`Both`].

use super::*;
use std::sync::OnceLock;

/// The same BTF read by the raw reader and by btf-rs.
struct Both {
    fast: Btf,
    oracle: btf_rs::Btf,
}

/// Asserts both readers give the same result (errors compared by their `Debug` text) and
/// returns it.
fn agree<T: fmt::Debug>(what: &str, fast: T, oracle: T) -> T {
    assert_eq!(
        format!("{fast:?}"),
        format!("{oracle:?}"),
        "{what}: raw vs btf-rs"
    );
    fast
}

// These shadow the `super::*` functions of the same names in the tests below, which therefore
// check the raw reader against btf-rs at every lookup.

fn member_offset(b: &Both, type_name: &str, path: &str) -> Result<Option<u32>, LayoutError> {
    let fast = super::member_offset(&b.fast, type_name, path);
    let what = format!("{type_name}.{path}");
    agree(
        &what,
        fast,
        oracle::member_offset(&b.oracle, type_name, path),
    )
}

fn enum_value(b: &Both, enum_name: &str, variant: &str) -> Result<Option<i64>, LayoutError> {
    let fast = super::enum_value(&b.fast, enum_name, variant);
    let what = format!("{enum_name}.{variant}");
    agree(
        &what,
        fast,
        oracle::enum_value(&b.oracle, enum_name, variant),
    )
}

fn kernel_layout(b: &Both) -> Result<KernelLayout, LayoutError> {
    let fast = super::kernel_layout(&b.fast);
    agree("kernel_layout", fast, oracle::kernel_layout(&b.oracle))
}

/// A raw BTF blob (header, type section, string section) built by hand, little-endian unless
/// `big_endian`, so the walker is tested on any machine. Type ids count from 1 in the order types are added.
/// Struct sizes are left 0: the walker never reads them.
struct RawBtf {
    types: Vec<u8>,
    strings: Vec<u8>,
    next_id: u32,
    big_endian: bool,
}

impl RawBtf {
    fn new() -> Self {
        Self {
            types: Vec::new(),
            strings: vec![0],
            next_id: 1,
            big_endian: false,
        }
    }

    fn words(&mut self, words: &[u32]) {
        for &w in words {
            let bytes = match self.big_endian {
                true => w.to_be_bytes(),
                false => w.to_le_bytes(),
            };
            self.types.extend_from_slice(&bytes);
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
    fn members(&mut self, kind: u32, name: &str, flag: bool, members: &[(&str, u32, u32)]) -> u32 {
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

    fn bytes(&self) -> Vec<u8> {
        let (type_len, str_len) = (self.types.len() as u32, self.strings.len() as u32);
        // magic 0xeb9f, version 1, flags 0; then hdr_len, type_off, type_len, str_off, str_len
        let header = [24, 0, type_len, type_len, str_len];
        let mut blob = match self.big_endian {
            true => vec![0xeb, 0x9f, 1, 0],
            false => vec![0x9f, 0xeb, 1, 0],
        };
        for w in header {
            let bytes = match self.big_endian {
                true => w.to_be_bytes(),
                false => w.to_le_bytes(),
            };
            blob.extend_from_slice(&bytes);
        }
        blob.extend_from_slice(&self.types);
        blob.extend_from_slice(&self.strings);
        blob
    }

    fn build(&self) -> Both {
        let blob = self.bytes();
        Both {
            fast: Btf::from_bytes(blob.clone()).expect("hand-built BTF parses"),
            oracle: btf_rs::Btf::from_bytes(&blob).expect("btf-rs parses hand-built BTF"),
        }
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
    (
        "unix_sock",
        &[("sk", 0), ("addr", 768), ("path", 776), ("peer", 848)],
    ),
    (
        "dentry",
        &[
            ("d_flags", 0),
            ("d_parent", 24),
            ("d_name", 32),
            ("d_inode", 48),
        ],
    ),
    ("super_block", &[("s_list", 0), ("s_dev", 16)]),
    (
        "unix_address",
        &[("refcnt", 0), ("len", 4), ("hash", 8), ("name", 12)],
    ),
    ("sockaddr_un", &[("sun_family", 0), ("sun_path", 2)]),
    ("socket", &[("state", 0), ("type", 4), ("sk", 32)]),
    ("socket_alloc", &[("socket", 0), ("vfs_inode", 384)]),
    (
        "inode",
        &[
            ("i_mode", 0),
            ("i_sb", 40),
            ("i_ino", 64),
            ("i_generation", 312),
        ],
    ),
    ("pid", &[("level", 4), ("numbers", 80)]),
    ("upid", &[("nr", 0), ("ns", 8)]),
    ("task_struct", &[("group_leader", 1200), ("comm", 1600)]),
];

/// [`OLD_KERNEL`] as BTF, without the member `omit` ("struct.member").
fn old_kernel_btf(omit: &str) -> Both {
    old_kernel_raw(omit, false).build()
}

fn old_kernel_raw(omit: &str, big_endian: bool) -> RawBtf {
    let mut b = RawBtf::new();
    b.big_endian = big_endian;
    let u64_ = b.int("long long unsigned int", 8);
    let iovs = b.union(&[("iov", u64_, 0), ("kvec", u64_, 0)]);
    let common = b.strukt("sock_common", &[("skc_family", u64_, 128)]);
    let path = b.strukt("path", &[("mnt", u64_, 0), ("dentry", u64_, 64)]);
    // `struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; }; const char *name; }`
    let u32_ = b.int("unsigned int", 4);
    let hash_len = b.strukt("", &[("hash", u32_, 0), ("len", u32_, 32)]);
    let hash_union = b.union(&[("", hash_len, 0), ("hash_len", u64_, 0)]);
    let qstr = b.strukt("qstr", &[("", hash_union, 0), ("name", u64_, 64)]);
    for &(name, fields) in OLD_KERNEL {
        let members: Vec<_> = (fields.iter())
            .filter(|(m, _)| format!("{name}.{m}") != omit)
            .map(|&(m, bytes)| match m {
                "" => (m, iovs, bytes * 8),
                "__sk_common" => (m, common, bytes * 8),
                "path" if name == "unix_sock" => (m, path, bytes * 8),
                "d_name" => (m, qstr, bytes * 8),
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
    b
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
        unix_sock_path_dentry: 784,
        dentry_d_inode: 48,
        dentry_d_parent: 24,
        dentry_d_name_len: 36,
        dentry_d_name_name: 40,
        inode_i_sb: 40,
        inode_i_generation: 312,
        super_block_s_dev: 16,
        pid_numbers: 80,
        upid_nr: 0,
        task_group_leader: 1200,
        task_comm: 1600,
        // Close detection's members are optional: absent from this BTF, absent in the layout,
        // except those OLD_KERNEL happens to carry.
        task_files: ABSENT,
        task_signal: ABSENT,
        signal_live: ABSENT,
        files_struct_count: ABSENT,
        files_struct_fdt: ABSENT,
        fdtable_max_fds: ABSENT,
        fdtable_fd: ABSENT,
        fdtable_open_fds: ABSENT,
        file_ref: ABSENT,
        file_ref_one: ABSENT,
        file_private_data: ABSENT,
        file_f_inode: ABSENT,
        inode_i_mode: 0,
        socket_file: ABSENT,
        // No `struct pt_regs` in this BTF: the entry stash is used.
        pt_regs_syscall_nr: ABSENT,
        pt_regs_arg0: ABSENT,
        pt_regs_arg1: ABSENT,
        pt_regs_arg2: ABSENT,
        nr_write: SYSCALL_REGISTERS.map_or(ABSENT, |r| r.numbers[0]),
        nr_writev: SYSCALL_REGISTERS.map_or(ABSENT, |r| r.numbers[1]),
        nr_sendto: SYSCALL_REGISTERS.map_or(ABSENT, |r| r.numbers[2]),
        nr_sendmsg: SYSCALL_REGISTERS.map_or(ABSENT, |r| r.numbers[3]),
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
        "dentry.d_parent",
        "super_block.s_dev",
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
    assert!(oracle::load(&missing).is_none());
    let err = LayoutError::NoBtf {
        path: VMLINUX_BTF.into(),
    };
    let text = "kernel has no BTF (/sys/kernel/btf/vmlinux missing): needs CONFIG_DEBUG_INFO_BTF=y";
    assert_eq!(err.to_string(), text);
}

/// The running kernel's BTF, read once for all live tests by both readers; `None` (test
/// skipped) without it.
fn live() -> Option<&'static Both> {
    static LIVE: OnceLock<Option<Both>> = OnceLock::new();
    let btf = LIVE.get_or_init(|| match load_btf(Path::new(VMLINUX_BTF)) {
        Ok(fast) => Some(Both {
            fast,
            oracle: oracle::load(Path::new(VMLINUX_BTF)).expect("btf-rs finds vmlinux BTF"),
        }),
        Err(LayoutError::NoBtf { .. }) => None,
        Err(e) => panic!("{e}"),
    });
    if btf.is_none() {
        eprintln!("skipping live BTF test: {VMLINUX_BTF} is missing (no CONFIG_DEBUG_INFO_BTF)");
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

/// docs/kernel.md (`struct iov_iter` by version, structures and members read): values every
/// 6.18 build has.
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
    // Close detection (issue #12): 6.18 counts file references with `file_ref_t`, one = 0.
    assert!(l.close_fields_present());
    assert_eq!(l.file_ref_one, 0);
    assert_eq!((l.signal_live, l.files_struct_count), (4, 0));
    assert_eq!(
        (l.fdtable_max_fds, l.fdtable_fd, l.fdtable_open_fds),
        (0, 8, 24)
    );
    assert_eq!((l.socket_file, l.inode_i_mode), (16, 0));
    // x86_64 `struct pt_regs`: orig_ax after the 15 general registers, di/si/dx before it.
    if cfg!(target_arch = "x86_64") {
        assert!(l.registers_fields_present());
        assert_eq!(
            (
                l.pt_regs_syscall_nr,
                l.pt_regs_arg0,
                l.pt_regs_arg1,
                l.pt_regs_arg2
            ),
            (120, 112, 104, 96)
        );
    }
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
    // The fd walk's members (docs/kernel.md, connection ends): task.files 1824, files.fdt 32,
    // file.private_data 24, f_inode 32.
    assert_eq!(
        (l.task_files, l.task_signal, l.files_struct_fdt),
        (1824, 1848, 32)
    );
    assert_eq!(
        (l.file_ref, l.file_private_data, l.file_f_inode),
        (176, 24, 32)
    );
}

/// One type of every kind before the struct looked up: the linear pass must size each record
/// right to land on it (and btf-rs must agree).
#[test]
fn every_kind_is_sized_right() {
    let mut b = RawBtf::new();
    let int = b.int("int", 4);
    b.ptr(int);
    let array = b.ty("", 3, false, 0, 0);
    b.words(&[int, int, 4]); // btf_array: type, index_type, nelems
    b.ty("fwd", 7, false, 0, 0);
    let typedef = b.ty("int_t", 8, false, 0, int);
    b.ty("", 9, false, 0, int); // volatile
    b.ty("", 10, false, 0, int); // const
    b.ty("", 11, false, 0, int); // restrict
    let proto = b.ty("", 13, false, 2, int);
    let param = b.str("arg");
    b.words(&[param, int, 0, int]); // two btf_params
    b.ty("func", 12, false, 0, proto);
    let var = b.ty("var", 14, false, 0, int);
    b.words(&[1]); // linkage
    b.ty(".data", 15, false, 1, 4);
    b.words(&[var, 0, 4]); // btf_var_secinfo
    b.ty("double", 16, false, 0, 8); // float
    b.ty("tag", 17, false, 0, int);
    b.words(&[u32::MAX]); // component_idx
    let tagged = b.ty("user", 18, false, 0, typedef); // type tag
    b.enum64("e64", false, &[("A", 1), ("B", 2)]);
    b.enum32("e32", true, &[("C", 3)]);
    let inner = b.union(&[("x", tagged, 0), ("arr", array, 0)]);
    b.strukt("after", &[("", inner, 32), ("y", int, 64)]);
    let btf = b.build();
    assert_eq!(btf.fast.types(), 19);
    let off = |path| member_offset(&btf, "after", path).unwrap();
    assert_eq!(
        (off("x"), off("arr"), off("y")),
        (Some(4), Some(4), Some(8))
    );
    assert_eq!(enum_value(&btf, "e64", "B").unwrap(), Some(2));
    assert_eq!(enum_value(&btf, "e32", "C").unwrap(), Some(3));
    assert!(matches!(
        member_offset(&btf, "after", "x.z"),
        Err(LayoutError::NotComposite { .. })
    ));
    // A FWD of the name is not a struct.
    assert!(matches!(
        member_offset(&btf, "fwd", "x"),
        Err(LayoutError::TypeNotFound { .. })
    ));
}

#[test]
fn kernel_layout_reads_only_indexed_types_and_other_names_are_scanned() {
    let btf = old_kernel_btf("");
    kernel_layout(&btf).unwrap();
    member_offset(&btf, "sock_common", "skc_family").unwrap();
    assert_eq!(
        btf.fast.scans(),
        0,
        "a kernel_layout type is missing from raw::INDEXED"
    );
    let mut b = RawBtf::new();
    let int = b.int("int", 4);
    b.strukt("elsewhere", &[("a", int, 0), ("b", int, 32)]);
    let btf = b.build();
    assert_eq!(member_offset(&btf, "elsewhere", "b").unwrap(), Some(4));
    assert_eq!(btf.fast.scans(), 1);
}

#[test]
fn a_big_endian_file_reads_the_same() {
    let little = super::kernel_layout(&Btf::from_bytes(old_kernel_raw("", false).bytes()).unwrap());
    let big = Btf::from_bytes(old_kernel_raw("", true).bytes()).unwrap();
    assert_eq!(super::kernel_layout(&big).unwrap(), little.unwrap());
}

fn parse(blob: Vec<u8>) -> Result<Btf, BtfError> {
    Btf::from_bytes(blob)
}

/// Sets header word `index` (0 = hdr_len, 1 = type_off, ... 4 = str_len) of a little-endian blob.
fn set_header_word(blob: &mut [u8], index: usize, value: u32) {
    blob[4 + 4 * index..8 + 4 * index].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn bad_headers_are_errors() {
    let good = old_kernel_raw("", false).bytes();
    let header = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut blob = good.clone();
        f(&mut blob);
        match parse(blob) {
            Err(BtfError::Header(what)) => what,
            other => panic!("expected a header error, got {other:?}"),
        }
    };
    assert_eq!(header(&|b| b.clear()), "file too short");
    assert_eq!(header(&|b| b[0] = 0), "bad magic");
    assert_eq!(header(&|b| b[2] = 2), "unsupported version");
    assert_eq!(header(&|b| b.truncate(6)), "file too short");
    assert_eq!(header(&|b| b.truncate(20)), "bad header length");
    assert_eq!(header(&|b| set_header_word(b, 0, 16)), "bad header length");
    assert_eq!(
        header(&|b| set_header_word(b, 0, u32::MAX)),
        "bad header length"
    );
    let past_end = "section past the end of the file";
    assert_eq!(header(&|b| set_header_word(b, 2, u32::MAX)), past_end);
    assert_eq!(header(&|b| set_header_word(b, 3, u32::MAX)), past_end);
    assert_eq!(header(&|b| set_header_word(b, 4, 1 << 20)), past_end);
    let not_nul = "string section not NUL-delimited";
    assert_eq!(header(&|b| set_header_word(b, 4, 0)), not_nul);
    assert_eq!(header(&|b| *b.last_mut().unwrap() = b'x'), not_nul);
    // A longer header (a newer kernel's) is fine: the sections are placed after hdr_len.
    let mut longer = good[..24].to_vec();
    set_header_word(&mut longer, 0, 32);
    longer.extend_from_slice(&[0; 8]);
    longer.extend_from_slice(&good[24..]);
    let btf = parse(longer).unwrap();
    assert_eq!(
        super::member_offset(&btf, "socket", "sk").unwrap(),
        Some(32)
    );
}

#[test]
fn unknown_kinds_and_dangling_references_are_errors() {
    let mut b = RawBtf::new();
    b.ty("future", 20, false, 0, 0);
    assert!(matches!(
        parse(b.bytes()),
        Err(BtfError::UnknownKind { id: 1, kind: 20 })
    ));

    let mut b = RawBtf::new();
    let int = b.int("int", 4);
    b.strukt("s", &[("", 99, 0), ("x", int, 32)]);
    b.strukt("t", &[("p", 99, 0)]);
    b.ty("u", 4, false, 1, 0);
    b.words(&[1 << 20, int, 0]); // member name offset past the string section
    b.enum32("e", false, &[("A", 1)]);
    let btf = parse(b.bytes()).unwrap();
    let dangling = |r| matches!(r, Err(LayoutError::Btf(BtfError::InvalidType(99))));
    assert!(dangling(super::member_offset(&btf, "s", "x")));
    assert!(dangling(super::member_offset(&btf, "t", "p.q")));
    // The member itself is found without resolving its type.
    assert_eq!(super::member_offset(&btf, "t", "p").unwrap(), Some(0));
    assert!(matches!(
        super::member_offset(&btf, "u", "x"),
        Err(LayoutError::Btf(BtfError::InvalidString(0x10_0000)))
    ));
    let err = LayoutError::from(BtfError::InvalidType(99));
    assert_eq!(err.to_string(), "malformed BTF: no type 99");
}

/// Cuts of the type section at every length, and every byte of the file flipped: errors or
/// answers, never a panic (nor a hang).
#[test]
fn truncated_or_corrupt_btf_is_an_error_never_a_panic() {
    let good = old_kernel_raw("", false).bytes();
    let type_len = u32::from_le_bytes(good[12..16].try_into().unwrap());
    let exercise = |btf: &Btf| {
        let _ = super::kernel_layout(btf);
        let _ = super::member_offset(btf, "sock", "__sk_common.skc_family");
        let _ = super::member_offset(btf, "not_indexed", "x");
        let _ = super::enum_value(btf, "iter_type", "ITER_KVEC");
    };
    for len in 0..good.len() {
        assert!(parse(good[..len].to_vec()).is_err(), "file cut at {len}");
    }
    let mut complete = 0;
    for cut in 0..=type_len {
        let mut blob = good.clone();
        set_header_word(&mut blob, 2, cut);
        match parse(blob) {
            Ok(btf) => {
                complete += 1;
                exercise(&btf);
            }
            Err(BtfError::Truncated { .. }) => {}
            Err(e) => panic!("type section cut at {cut}: {e}"),
        }
    }
    assert!(complete > 10, "cuts on record boundaries parse");
    for at in 0..good.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut blob = good.clone();
            blob[at] ^= flip;
            if let Ok(btf) = parse(blob) {
                exercise(&btf);
            }
        }
    }
}

/// Every named member (anonymous members' included) of every indexed struct and every variant of
/// every indexed enum of the running kernel: the raw reader and btf-rs agree.
#[test]
fn live_raw_reader_agrees_with_btf_rs() {
    let Some(btf) = live() else { return };
    let fresh = load_btf(Path::new(VMLINUX_BTF)).unwrap();
    assert_eq!(
        super::kernel_layout(&fresh).unwrap(),
        kernel_layout(btf).unwrap()
    );
    assert_eq!(
        fresh.scans(),
        0,
        "a kernel_layout type is missing from raw::INDEXED"
    );

    fn names(oracle: &btf_rs::Btf, s: &btf_rs::Struct, out: &mut Vec<String>) {
        for m in &s.members {
            let name = oracle.resolve_name(m).unwrap();
            if !name.is_empty() {
                out.push(name);
            } else if let Ok(btf_rs::Type::Struct(inner) | btf_rs::Type::Union(inner)) =
                oracle.resolve_chained_type(m)
            {
                names(oracle, &inner, out);
            }
        }
    }
    let mut checked = 0;
    for &type_name in raw::INDEXED {
        for ty in btf.oracle.resolve_types_by_name(type_name).unwrap() {
            let mut members = Vec::new();
            match &ty {
                btf_rs::Type::Struct(s) | btf_rs::Type::Union(s) => {
                    names(&btf.oracle, s, &mut members);
                    for m in &members {
                        // Bitfields off a byte (task_struct's flags) are errors both ways.
                        let _ = member_offset(btf, type_name, m);
                        checked += 1;
                    }
                }
                btf_rs::Type::Enum(e) => {
                    for v in &e.members {
                        enum_value(btf, type_name, &btf.oracle.resolve_name(v).unwrap()).unwrap();
                        checked += 1;
                    }
                }
                _ => {}
            }
        }
    }
    assert!(checked > 300, "only {checked} lookups");
}

/// `cargo test --release -p containerdsnoop --lib btf::tests::time -- --ignored --nocapture`
#[test]
#[ignore = "timing: run in release with --ignored --nocapture"]
fn time_kernel_layout_from_sysfs() {
    if !Path::new(VMLINUX_BTF).exists() {
        return;
    }
    let time = |what: &str, f: &dyn Fn()| {
        let mut runs: Vec<_> = (0..7)
            .map(|_| {
                let start = std::time::Instant::now();
                f();
                start.elapsed()
            })
            .collect();
        let first = runs[0];
        runs.sort();
        println!(
            "{what}: first {first:?}, min {:?}, median {:?}",
            runs[0], runs[3]
        );
    };
    time("read vmlinux", &|| {
        std::fs::read(VMLINUX_BTF).unwrap();
    });
    time("raw reader: kernel_layout_from_sysfs", &|| {
        kernel_layout_from_sysfs().unwrap();
    });
    time("btf-rs: load + kernel_layout", &|| {
        let btf = oracle::load(Path::new(VMLINUX_BTF)).unwrap();
        oracle::kernel_layout(&btf).unwrap();
    });
}
