//! UDP sockets for transfers, with large kernel buffers: a window of packets
//! arrives as a burst, and the default receive buffer (about 200 KiB on
//! Linux) drops the tail of a burst of a few hundred full-size datagrams.
//!
//! The sockets also refuse to fragment (the "don't fragment" bit, on Linux):
//! a datagram larger than the path is an error at once or a loss, never a
//! pile of fragments of which one lost loses all. That is what lets a
//! session probe for the largest packet the path carries.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Buffer size asked for in each direction (the kernel may cap it at
/// `net.core.rmem_max` / `wmem_max`).
pub const BUFFER: usize = 4 << 20;

/// Binds a UDP socket at `addr` with large send and receive buffers and
/// fragmentation off.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::from_std(bind_std(addr)?)
}

/// [`bind`] without a runtime: a non-blocking standard socket, to hand to
/// whichever runtime will drive it (`UdpSocket::from_std`).
pub fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    open(addr, false)
}

/// A socket at `addr` with the buffers and fragmentation set; with `dual`
/// (and an IPv6 `addr`), one that takes IPv4 too.
fn open(addr: SocketAddr, dual: bool) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if dual {
        socket.set_only_v6(false)?;
    }
    // Best effort: a smaller buffer still works, only less well.
    let _ = socket.set_recv_buffer_size(BUFFER);
    let _ = socket.set_send_buffer_size(BUFFER);
    dont_fragment(&socket, addr.is_ipv6());
    if dual {
        // IPv4 peers of a dual-stack socket get IPv4 datagrams.
        dont_fragment(&socket, false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// `to` as `socket` must be given it: an IPv4 address in its IPv6 form
/// (`::ffff:a.b.c.d`) for an IPv6 socket, which takes IPv4 only that way
/// and shows IPv4 senders that way.
pub fn for_socket(socket: &UdpSocket, to: SocketAddr) -> SocketAddr {
    match (socket.local_addr().map(|a| a.is_ipv6()), to.ip()) {
        (Ok(true), std::net::IpAddr::V4(ip)) => {
            SocketAddr::new(ip.to_ipv6_mapped().into(), to.port())
        }
        _ => to,
    }
}

/// The hops a socket's datagrams may take: the system's (read once), or
/// a small number for a while.
pub(crate) struct Ttl<'a> {
    socket: socket2::SockRef<'a>,
    /// What the system gave it for IPv4 (`IP_TTL`, which an IPv6 socket
    /// uses for its IPv4 datagrams too) and for IPv6, to go back to.
    normal: (Option<u32>, Option<u32>),
    low: bool,
}

impl<'a> Ttl<'a> {
    pub(crate) fn of(socket: &'a UdpSocket) -> Ttl<'a> {
        let sock = socket2::SockRef::from(socket);
        let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        let normal = (
            sock.ttl().ok(),
            v6.then(|| sock.unicast_hops_v6().ok()).flatten(),
        );
        Ttl {
            socket: sock,
            normal,
            low: false,
        }
    }

    /// Datagrams sent from now on take at most `hops` hops (`None`: as
    /// many as the system's setting allows). Best effort: a system that
    /// refuses keeps its own.
    pub(crate) fn set(&mut self, hops: Option<u32>) {
        if hops.is_some() == self.low {
            return;
        }
        let (v4, v6) = self.normal;
        if let Some(normal) = v4 {
            let _ = self.socket.set_ttl(hops.unwrap_or(normal));
        }
        if let Some(normal) = v6 {
            let _ = self.socket.set_unicast_hops_v6(hops.unwrap_or(normal));
        }
        self.low = hops.is_some();
    }
}

/// Binds a UDP socket at `port` (0: any) on every address of this host,
/// IPv4 and IPv6 alike: one IPv6 socket that also takes IPv4 (as
/// `::ffff:a.b.c.d`), so an owner is reachable at whichever address its
/// server sees, whatever the asker's family. Where the host has no IPv6,
/// an IPv4 socket.
pub fn bind_dual(port: u16) -> std::io::Result<UdpSocket> {
    UdpSocket::from_std(bind_dual_std(port)?)
}

/// [`bind_dual`] without a runtime.
pub fn bind_dual_std(port: u16) -> std::io::Result<std::net::UdpSocket> {
    let any = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
    open(any, true).or_else(|_| bind_std(SocketAddr::from(([0, 0, 0, 0], port))))
}

/// Sets "don't fragment" (best effort: without it probing still works, as
/// an oversized probe is then fragmented or lost and a smaller size used).
#[cfg(target_os = "linux")]
fn dont_fragment(socket: &Socket, v6: bool) {
    use std::os::fd::AsRawFd;
    let (level, name, value) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_MTU_DISCOVER,
            libc::IPV6_PMTUDISC_DO,
        )
    } else {
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        )
    };
    // SAFETY: setsockopt with a pointer to a c_int and its size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn dont_fragment(_: &Socket, _: bool) {}

/// Whether a send failed because the datagram is larger than the path
/// (as far as this host knows).
pub fn too_big(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EMSGSIZE)
}

/// Datagrams the kernel dropped at `socket` for want of receive buffer
/// space since it was opened (the socket's `SK_MEMINFO_DROPS`), wrapping;
/// 0 where the system does not tell. A receiver reports it so that the
/// sender can tell losses at a receiver that cannot keep up from losses on
/// the path.
#[cfg(target_os = "linux")]
pub fn receive_drops(socket: &impl std::os::fd::AsRawFd) -> u32 {
    // `SO_MEMINFO` (Linux 3.9+; the same number on every architecture
    // that uses the generic socket options) fills one u32 per
    // `SK_MEMINFO_*` counter.
    const SO_MEMINFO: libc::c_int = 55;
    const COUNTERS: usize = libc::SK_MEMINFO_DROPS as usize + 1;
    let mut info = [0u32; COUNTERS];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info` and
    // stores how many it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let wrote_drops = len as usize >= COUNTERS * std::mem::size_of::<u32>();
    if rc == 0 && wrote_drops {
        info[libc::SK_MEMINFO_DROPS as usize]
    } else {
        0
    }
}

/// Datagrams dropped at the socket: not known on this system.
#[cfg(not(target_os = "linux"))]
pub fn receive_drops<S>(_: &S) -> u32 {
    0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// One socket takes datagrams from IPv4 and IPv6 peers, and answers
    /// each at the address it came from.
    #[test]
    fn a_dual_stack_socket_talks_to_both_families() {
        let dual = bind_dual_std(0).unwrap();
        let port = dual.local_addr().unwrap().port();
        dual.set_nonblocking(false).unwrap();
        dual.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        for (peer, to) in [
            ("127.0.0.1:0", format!("127.0.0.1:{port}")),
            ("[::1]:0", format!("[::1]:{port}")),
        ] {
            let peer = std::net::UdpSocket::bind(peer).unwrap();
            peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            peer.send_to(b"hello", to.as_str()).unwrap();
            let mut buf = [0u8; 16];
            let (n, from) = dual.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"hello");
            assert_eq!(from.ip().to_canonical(), peer.local_addr().unwrap().ip());
            dual.send_to(b"back", from).unwrap();
            let n = peer.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"back", "the answer reaches {to}'s sender");
        }
    }

    #[test]
    fn a_full_receive_buffer_counts_its_drops() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = socket2::SockRef::from(&receiver);
        // The smallest buffer the kernel allows (it rounds up), so that a
        // few dozen datagrams overflow it.
        sock.set_recv_buffer_size(1).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        assert_eq!(receive_drops(&receiver), 0);
        // Loopback delivers within the send call: when it returns, each
        // datagram is queued at the receiver or dropped there.
        let datagram = [7u8; 1000];
        for _ in 0..200 {
            sender.send_to(&datagram, to).unwrap();
        }
        let dropped = receive_drops(&receiver);
        let mut queued = 0;
        receiver.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2000];
        while receiver.recv_from(&mut buf).is_ok() {
            queued += 1;
        }
        assert!(queued > 0, "the buffer took some");
        assert_eq!(u64::from(dropped) + queued, 200, "every datagram counted");
    }
}
