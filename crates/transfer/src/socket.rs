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
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works, only less well.
    let _ = socket.set_recv_buffer_size(BUFFER);
    let _ = socket.set_send_buffer_size(BUFFER);
    dont_fragment(&socket, addr.is_ipv6());
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
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
