//! Connections already open when the tracer starts: found with sock_diag (`NETLINK_SOCK_DIAG`,
//! `UNIX_DIAG_NAME` + `UNIX_DIAG_PEER`) and attributed to processes through `/proc/*/fd`, so the
//! user is told which connections will be decoded in late-join mode.
//!
//! sock_diag only sees the tracer's network namespace; sockets in other namespaces are still
//! traced (selection happens in the kernel), just not listed here.

use std::{collections::HashMap, ffi::CStr, mem::size_of};

use containerdsnoop_common::PathPattern;

use crate::paths;

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
const UDIAG_SHOW_PEER: u32 = 0x4;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
const TCP_ESTABLISHED: u8 = 1;
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

/// (inode, state, name bytes, peer inode) of every AF_UNIX socket in this namespace.
fn dump_unix_sockets() -> std::io::Result<Vec<(u32, u8, Vec<u8>, u32)>> {
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

fn dump_on(fd: i32) -> std::io::Result<Vec<(u32, u8, Vec<u8>, u32)>> {
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
            show: UDIAG_SHOW_NAME | UDIAG_SHOW_PEER,
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
fn parse_diag_msg(m: &[u8]) -> Option<(u32, u8, Vec<u8>, u32)> {
    if m.len() < 16 {
        return None;
    }
    let state = m[2];
    let ino = u32::from_ne_bytes([m[4], m[5], m[6], m[7]]);
    let mut name = Vec::new();
    let mut peer = 0;
    let mut attrs = &m[16..];
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        let payload = &attrs[4..len];
        match kind {
            UNIX_DIAG_NAME => name = payload.to_vec(),
            UNIX_DIAG_PEER if payload.len() >= 4 => {
                peer = u32::from_ne_bytes([payload[0], payload[1], payload[2], payload[3]])
            }
            _ => {}
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    Some((ino, state, name, peer))
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

/// The established connections whose server side's address matches one of `patterns`.
pub fn open_connections(patterns: &[PathPattern]) -> std::io::Result<Vec<OpenConnection>> {
    let sockets = dump_unix_sockets()?;
    let mut found = Vec::new();
    for (ino, state, name, peer) in &sockets {
        if *state != TCP_ESTABLISHED || name.is_empty() || *peer == 0 {
            continue;
        }
        // sun_path as the kernel stores it: pathname sockets carry their NUL.
        let mut sun_path = name.clone();
        if sun_path.first() != Some(&0) && sun_path.last() != Some(&0) {
            sun_path.push(0);
        }
        if !patterns.iter().any(|p| paths::matches(p, &sun_path)) {
            continue;
        }
        // Both ends of a pathname connection report the name only on the accepted side (it
        // shares the listener's address); the client has none.
        let path = match CStr::from_bytes_until_nul(&sun_path) {
            Ok(c) if sun_path.first() != Some(&0) => c.to_string_lossy().into_owned(),
            _ => format!("@{}", String::from_utf8_lossy(&sun_path[1..])),
        };
        found.push(OpenConnection {
            path,
            server_ino: *ino,
            client_ino: *peer,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn finds_an_open_connection_with_its_processes() {
        let dir = std::env::temp_dir().join(format!("csn-discover-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("d.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        let _client = UnixStream::connect(&path).expect("connect");
        let (_server, _) = listener.accept().expect("accept");
        let pattern = paths::parse_pattern(path.to_str().expect("utf-8")).expect("pattern");
        let found = match open_connections(&[pattern]) {
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
        let _ = std::fs::remove_dir_all(&dir);
    }
}
