//! What sock_diag (`NETLINK_SOCK_DIAG`: `UNIX_DIAG_NAME`, `UNIX_DIAG_VFS`, `UNIX_DIAG_PEER`)
//! says about the selected sockets, attributed to processes through `/proc/*/fd`: the
//! connections already open when the tracer starts (decoded in late-join mode), and who listens
//! on each selected socket file (for the start-up report).
//!
//! sock_diag only sees the tracer's network namespace; sockets in other namespaces are still
//! traced (selection happens in the kernel), just not listed here.

use std::{
    collections::{HashMap, HashSet},
    ffi::CStr,
    mem::size_of,
};

use containerdsnoop_common::{FileKey, PathPattern};

use super::{pattern, report::Listener};

/// One established connection to a selected socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenConnection {
    pub path: String,
    /// The accepted (server-side) socket and its peer (the client).
    pub server_ino: u32,
    pub client_ino: u32,
    pub server: Option<(u32, String)>,
    pub client: Option<(u32, String)>,
}

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_VFS: u32 = 0x2;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const TCP_ESTABLISHED: u8 = 1;
const TCP_LISTEN: u8 = 10;
const SOCK_DGRAM: u8 = 2;

/// One AF_UNIX socket as sock_diag reports it.
#[derive(Clone, Debug, Default)]
struct DiagSocket {
    ino: u32,
    kind: u8,
    state: u8,
    /// `sun_path` as reported (pathname sockets without their NUL; abstract ones start with NUL).
    name: Vec<u8>,
    /// `struct unix_diag_vfs { u32 udiag_vfs_ino; u32 udiag_vfs_dev; }`: the bound file's inode
    /// (truncated to 32 bits) and `d_sb->s_dev` (kernel `dev_t` encoding).
    vfs: Option<(u32, u32)>,
    peer: u32,
}
/// Most sockets read from the dump (a host has thousands at most).
const MAX_SOCKETS: usize = 1 << 20;

#[repr(C)]
struct UnixDiagReq {
    family: u8,
    protocol: u8,
    pad: u16,
    states: u32,
    ino: u32,
    show: u32,
    cookie: [u32; 2],
}

#[repr(C)]
struct Request {
    hdr: libc::nlmsghdr,
    req: UnixDiagReq,
}

/// Every AF_UNIX socket in this network namespace.
fn dump_unix_sockets() -> std::io::Result<Vec<DiagSocket>> {
    // SAFETY: plain socket(2); the fd is closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let result = dump_on(fd);
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    result
}

fn dump_on(fd: i32) -> std::io::Result<Vec<DiagSocket>> {
    let request = Request {
        hdr: libc::nlmsghdr {
            nlmsg_len: size_of::<Request>() as u32,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            nlmsg_flags: (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        req: UnixDiagReq {
            family: libc::AF_UNIX as u8,
            protocol: 0,
            pad: 0,
            states: u32::MAX,
            ino: 0,
            show: UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER,
            cookie: [u32::MAX; 2],
        },
    };
    // SAFETY: sends the request struct we own, by its size.
    let sent = unsafe {
        libc::send(
            fd,
            (&request as *const Request).cast(),
            size_of::<Request>(),
            0,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: receives into the buffer we own, by its size.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(out);
        }
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= 16 {
            let len = u32::from_ne_bytes([msgs[0], msgs[1], msgs[2], msgs[3]]) as usize;
            let kind = u16::from_ne_bytes([msgs[4], msgs[5]]);
            if len < 16 || len > msgs.len() {
                return Ok(out);
            }
            if kind == libc::NLMSG_DONE as u16 || kind == libc::NLMSG_ERROR as u16 {
                return Ok(out);
            }
            if let Some(s) = parse_diag_msg(&msgs[16..len]) {
                out.push(s);
                if out.len() >= MAX_SOCKETS {
                    return Ok(out);
                }
            }
            msgs = &msgs[len.next_multiple_of(4).min(msgs.len())..];
        }
    }
}

/// `struct unix_diag_msg { u8 family, type, state, pad; u32 ino; u32 cookie[2]; }` + attributes.
fn parse_diag_msg(m: &[u8]) -> Option<DiagSocket> {
    if m.len() < 16 {
        return None;
    }
    let mut s = DiagSocket {
        kind: m[1],
        state: m[2],
        ino: u32::from_ne_bytes([m[4], m[5], m[6], m[7]]),
        ..DiagSocket::default()
    };
    let u32_at = |p: &[u8], i: usize| u32::from_ne_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
    let mut attrs = &m[16..];
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        let payload = &attrs[4..len];
        match kind {
            UNIX_DIAG_NAME => s.name = payload.to_vec(),
            UNIX_DIAG_VFS if payload.len() >= 8 => {
                s.vfs = Some((u32_at(payload, 0), u32_at(payload, 4)))
            }
            UNIX_DIAG_PEER if payload.len() >= 4 => s.peer = u32_at(payload, 0),
            _ => {}
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    Some(s)
}

/// sock_diag's `(dev, ino)` of a bound file: the inode number truncated as sock_diag does.
fn vfs_key(k: &FileKey) -> (u32, u32) {
    (k.dev, k.ino as u32)
}

/// Socket inode -> (pid, comm), from `/proc/*/fd/*` links `socket:[INO]`.
fn socket_owners(wanted: &[u32]) -> HashMap<u32, (u32, String)> {
    let mut owners = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return owners;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(ino) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u32>().ok())
            else {
                continue;
            };
            if wanted.contains(&ino) && !owners.contains_key(&ino) {
                let comm = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default();
                owners.insert(ino, (pid, comm));
            }
        }
    }
    owners
}

/// The established connections to a selected socket: the server side (the accepted socket,
/// which shares the listener's file) is bound to one of the socket files in `files`, or to an
/// abstract name one of `abstract_patterns` matches.
pub fn open_connections(
    files: &[FileKey],
    abstract_patterns: &[PathPattern],
) -> std::io::Result<Vec<OpenConnection>> {
    let sockets = dump_unix_sockets()?;
    let wanted_files: HashSet<(u32, u32)> = files.iter().map(vfs_key).collect();
    let mut found = Vec::new();
    for s in &sockets {
        if s.state != TCP_ESTABLISHED || s.name.is_empty() || s.peer == 0 {
            continue;
        }
        let selected = match s.vfs {
            Some(vfs) => wanted_files.contains(&(vfs.1, vfs.0)),
            None => abstract_patterns
                .iter()
                .any(|p| pattern::matches(p, &s.name)),
        };
        if !selected {
            continue;
        }
        // Both ends of a pathname connection report the name only on the accepted side (it
        // shares the listener's address); the client has none.
        let path = if s.name.first() == Some(&0) {
            format!("@{}", String::from_utf8_lossy(&s.name[1..]))
        } else {
            match CStr::from_bytes_until_nul(&s.name) {
                Ok(c) => c.to_string_lossy().into_owned(),
                Err(_) => String::from_utf8_lossy(&s.name).into_owned(),
            }
        };
        found.push(OpenConnection {
            path,
            server_ino: s.ino,
            client_ino: s.peer,
            server: None,
            client: None,
        });
    }
    let wanted: Vec<u32> = found
        .iter()
        .flat_map(|c| [c.server_ino, c.client_ino])
        .collect();
    let owners = socket_owners(&wanted);
    for c in &mut found {
        c.server = owners.get(&c.server_ino).cloned();
        c.client = owners.get(&c.client_ino).cloned();
    }
    found.sort_by(|a, b| (&a.path, a.server_ino).cmp(&(&b.path, b.server_ino)));
    Ok(found)
}

/// Who is bound to each of the socket files `files` in this network namespace: listening
/// stream/seqpacket sockets and unconnected datagram sockets, keyed by `(dev, ino as u32)`.
pub fn listeners(files: &[FileKey]) -> std::io::Result<HashMap<(u32, u32), Vec<Listener>>> {
    let wanted: HashSet<(u32, u32)> = files.iter().map(vfs_key).collect();
    let mut bound: Vec<(DiagSocket, (u32, u32))> = Vec::new();
    for s in dump_unix_sockets()? {
        let Some((ino, dev)) = s.vfs else { continue };
        let serving = s.state == TCP_LISTEN || (s.kind == SOCK_DGRAM && s.peer == 0);
        if serving && wanted.contains(&(dev, ino)) {
            bound.push((s, (dev, ino)));
        }
    }
    let inos: Vec<u32> = bound.iter().map(|(s, _)| s.ino).collect();
    let owners = socket_owners(&inos);
    let mut out: HashMap<(u32, u32), Vec<Listener>> = HashMap::new();
    for (s, key) in bound {
        let mut name = s.name;
        if name.last() == Some(&0) && name.first() != Some(&0) {
            name.pop();
        }
        out.entry(key).or_default().push(Listener {
            process: owners.get(&s.ino).cloned(),
            bound_name: name,
        });
    }
    Ok(out)
}

/// `listeners` as the report asks for them: `None` for every file when sock_diag failed.
pub fn listeners_of(
    table: &Option<HashMap<(u32, u32), Vec<Listener>>>,
    k: &FileKey,
) -> Option<Vec<Listener>> {
    let table = table.as_ref()?;
    Some(table.get(&vfs_key(k)).cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::identity;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn temp(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("csn-discover-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn finds_an_open_connection_with_its_processes() {
        let dir = temp("open");
        let path = dir.join("d.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let _client = UnixStream::connect(&path).expect("connect");
        let (_server, _) = listener.accept().expect("accept");
        let key = identity::key_at(&path, &std::fs::metadata(&path).expect("stat")).expect("key");
        let found = match open_connections(&[key], &[]) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("SKIPPED: sock_diag unavailable: {e}");
                return;
            }
        };
        assert_eq!(found.len(), 1, "{found:?}");
        let me = std::process::id();
        assert_eq!(found[0].path, path.to_str().expect("utf-8"));
        assert_eq!(found[0].server.as_ref().map(|s| s.0), Some(me));
        assert_eq!(found[0].client.as_ref().map(|s| s.0), Some(me));
        // Another file's identity selects nothing.
        let other = FileKey {
            ino: key.ino + 1,
            ..key
        };
        assert!(open_connections(&[other], &[]).expect("dump").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The kernel's `s_dev` (what sock_diag and the eBPF programs see) equals the conversion of
    /// stat(2)'s `st_dev`: a socket bound with a relative, doubled-slash spelling is found as
    /// the listener of the file stat names, with the name it was bound with.
    #[test]
    fn listeners_are_found_by_the_converted_device_and_inode() {
        let dir = temp("listen");
        let spelled = format!("{}//l.sock", dir.display());
        let listener = UnixListener::bind(&spelled).expect("bind");
        let key = identity::key_at(
            &dir.join("l.sock"),
            &std::fs::metadata(dir.join("l.sock")).expect("stat"),
        )
        .expect("key");
        let table = match listeners(&[key]) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("SKIPPED: sock_diag unavailable: {e}");
                return;
            }
        };
        let found = listeners_of(&Some(table), &key).expect("known");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            found[0].process.as_ref().map(|p| p.0),
            Some(std::process::id())
        );
        assert_eq!(found[0].bound_name, spelled.as_bytes());
        drop(listener);
        let table = listeners(&[key]).expect("dump");
        assert_eq!(listeners_of(&Some(table), &key), Some(vec![]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
