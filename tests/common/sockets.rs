//! Socket options read back from another process (the proxy): its established TCP sockets
//! come from `/proc/PID/net/tcp` and `/proc/PID/fd`, and each one's descriptor is copied
//! into this process with `pidfd_getfd(2)` (Linux 5.6+, allowed for our own child), so
//! `getsockopt` reads exactly what the proxy set.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// One established TCP socket of the process, with its keepalive options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSocket {
    /// The process's end.
    pub local: SocketAddr,
    /// The peer.
    pub remote: SocketAddr,
    /// `SO_KEEPALIVE`
    pub keepalive: bool,
    /// `TCP_KEEPIDLE`
    pub keepalive_idle: Duration,
}

/// Every established IPv4 TCP socket `pid` holds, once each. (`/proc/PID/net/tcp` is read a
/// page at a time, not as one snapshot: a socket the kernel moves in its table between two
/// reads is listed twice — seen once in a CI run — so a line is taken once per inode.)
pub fn established(pid: u32) -> Vec<TcpSocket> {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).expect("net/tcp");
    let fds = socket_fds(pid);
    let mut seen = std::collections::HashSet::new();
    table
        .lines()
        .skip(1)
        .filter_map(parse_line)
        .filter(|(_, _, inode)| seen.insert(*inode))
        .filter_map(|(local, remote, inode)| {
            let fd = fds.iter().find(|(i, _)| *i == inode)?.1;
            let (keepalive, keepalive_idle) = keepalive_of(pid, fd)?;
            Some(TcpSocket {
                local,
                remote,
                keepalive,
                keepalive_idle,
            })
        })
        .collect()
}

/// `(local, remote, inode)` of an ESTABLISHED line of `/proc/net/tcp`.
fn parse_line(line: &str) -> Option<(SocketAddr, SocketAddr, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.get(3) != Some(&"01") {
        return None;
    }
    Some((
        addr(fields[1])?,
        addr(fields[2])?,
        fields.get(9)?.parse().ok()?,
    ))
}

/// `0100007F:1F90` (address in host byte order, port big-endian) → `127.0.0.1:8080`.
fn addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::from((Ipv4Addr::from(u32::from_be(ip)), port)))
}

/// `(inode, fd)` of every socket descriptor of `pid`.
fn socket_fds(pid: u32) -> Vec<(u64, i32)> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("fd dir");
    dir.filter_map(|entry| {
        let entry = entry.ok()?;
        let target = std::fs::read_link(entry.path()).ok()?;
        let inode = target
            .to_str()?
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()?;
        Some((inode, entry.file_name().to_str()?.parse().ok()?))
    })
    .collect()
}

/// `SO_KEEPALIVE` and `TCP_KEEPIDLE` of descriptor `fd` of process `pid`.
fn keepalive_of(pid: u32, fd: i32) -> Option<(bool, Duration)> {
    // SAFETY: plain system calls on descriptors this function opens and closes itself;
    // the option buffers are valid `c_int`s with their length.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as i32;
        if pidfd < 0 {
            return None;
        }
        let copy = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
        libc::close(pidfd);
        if copy < 0 {
            return None;
        }
        let get = |level, name| {
            let mut value: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let ok = libc::getsockopt(
                copy,
                level,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            );
            (ok == 0).then_some(value)
        };
        let keepalive = get(libc::SOL_SOCKET, libc::SO_KEEPALIVE);
        let idle = get(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE);
        libc::close(copy);
        Some((keepalive? != 0, Duration::from_secs(idle? as u64)))
    }
}
