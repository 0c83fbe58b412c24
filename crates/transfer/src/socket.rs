//! UDP sockets for transfers, with large kernel buffers: a window of packets
//! arrives as a burst, and the default receive buffer (about 200 KiB on
//! Linux) drops the tail of a burst of a few hundred full-size datagrams.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Buffer size asked for in each direction (the kernel may cap it at
/// `net.core.rmem_max` / `wmem_max`).
pub const BUFFER: usize = 4 << 20;

/// Binds a UDP socket at `addr` with large send and receive buffers.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer still works, only less well.
    let _ = socket.set_recv_buffer_size(BUFFER);
    let _ = socket.set_send_buffer_size(BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}
