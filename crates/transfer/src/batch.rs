//! Batched datagram I/O: many datagrams per system call.
//!
//! At a gigabit, one system call per 1,500-byte datagram costs more CPU
//! than sealing it. Sends therefore go out as one `sendmsg` carrying up to
//! [`MAX_SEGMENTS`] equal-size datagrams that the kernel cuts apart (UDP
//! generic segmentation offload, Linux 4.18 and later); receives take a
//! batch of datagrams per `recvmmsg`, each buffer possibly holding several
//! datagrams the kernel coalesced (UDP GRO). quinn-udp does the platform
//! work, and falls back to one datagram per call where the kernel lacks
//! either (or a device refuses segmentation at run time).
//!
//! The batch sizes and the pacer are one design: the pacer releases at most
//! about 2 ms of sending at once, and everything it releases in one go is
//! sealed into one buffer and handed to the kernel in one call, so a GSO
//! batch is never larger than a pacing burst (nor than 64 KiB).
//!
//! Once a socket is wrapped, every receive must go through the wrapper: with
//! GRO on, a plain `recv_from` could return several datagrams glued
//! together.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// The most datagrams one send carries.
pub const MAX_SEGMENTS: usize = 64;
/// The most bytes one send carries: a UDP datagram's limit, which bounds a
/// segmented send too.
pub const MAX_SEND_BYTES: usize = 65_507;
/// The size of each receive buffer: a coalesced receive is at most 64 KiB.
const RECV_BUFFER: usize = 1 << 16;

/// A UDP socket read and written in batches.
pub struct BatchSocket<'a> {
    socket: &'a UdpSocket,
    state: UdpSocketState,
    /// `meta.len()` receive buffers of [`RECV_BUFFER`] bytes, end to end.
    rx: Vec<u8>,
    meta: Vec<RecvMeta>,
    /// Buffers filled by the last receive.
    filled: usize,
    /// The buffer being read, and the offset of its next datagram.
    at: usize,
    pos: usize,
}

impl<'a> BatchSocket<'a> {
    /// Wraps `socket`, receiving up to `buffers` buffers per call (at most
    /// quinn-udp's batch).
    pub fn new(socket: &'a UdpSocket, buffers: usize) -> io::Result<Self> {
        let state = UdpSocketState::new(socket.into())?;
        let buffers = buffers.clamp(1, quinn_udp::BATCH_SIZE);
        Ok(BatchSocket {
            socket,
            state,
            rx: vec![0; buffers * RECV_BUFFER],
            meta: vec![RecvMeta::default(); buffers],
            filled: 0,
            at: 0,
            pos: 0,
        })
    }

    /// Receives up to `buffers` buffers per call from now on. Fewer suit
    /// large datagrams: a batch is decrypted after the kernel copied all
    /// of it, and one that outgrows the CPU's cache is read back from
    /// memory.
    pub fn set_buffers(&mut self, buffers: usize) {
        let buffers = buffers.clamp(1, quinn_udp::BATCH_SIZE);
        if buffers != self.meta.len() && !self.has_pending() {
            self.rx = vec![0; buffers * RECV_BUFFER];
            self.meta = vec![RecvMeta::default(); buffers];
            self.filled = 0;
            self.at = 0;
            self.pos = 0;
        }
    }

    /// How many datagrams one [`send`](Self::send) may carry here.
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments().clamp(1, MAX_SEGMENTS)
    }

    /// Sends `contents` to `to`: one datagram, or several of `segment`
    /// bytes each (the last may be shorter) when `contents` is longer.
    /// Errors are the kernel's for the first datagram (`EMSGSIZE` for one
    /// larger than the path allows).
    pub async fn send(&self, to: SocketAddr, contents: &[u8], segment: usize) -> io::Result<()> {
        let segmented = contents.len() > segment;
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: segmented.then_some(segment),
            src_ip: None,
        };
        match self.send_one(&transmit).await {
            // The device refused segmentation: quinn-udp has turned it off
            // for this socket; send these one by one.
            Err(_) if segmented && self.state.max_gso_segments() == 1 => {
                for part in contents.chunks(segment) {
                    let single = Transmit {
                        contents: part,
                        segment_size: None,
                        ..transmit.clone()
                    };
                    self.send_one(&single).await?;
                }
                Ok(())
            }
            other => other,
        }
    }

    async fn send_one(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        loop {
            self.socket.writable().await?;
            match self.socket.try_io(Interest::WRITABLE, || {
                self.state.try_send(self.socket.into(), transmit)
            }) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    /// Whether datagrams from the last receive are still unread.
    pub fn has_pending(&self) -> bool {
        self.at < self.filled
    }

    /// Waits until a datagram is there (returns at once if one is pending).
    /// Cancel-safe: datagrams are taken from the kernel only when it returns.
    pub async fn ready(&mut self) -> io::Result<()> {
        while !self.has_pending() {
            self.socket.readable().await?;
            self.try_recv()?;
        }
        Ok(())
    }

    /// Takes whatever the kernel holds, without waiting, if nothing is
    /// pending; returns whether a datagram is now pending.
    pub fn try_recv(&mut self) -> io::Result<bool> {
        if self.has_pending() {
            return Ok(true);
        }
        // On the stack: this runs once per system call.
        let mut chunks = self.rx.chunks_mut(RECV_BUFFER);
        let mut slices: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
        let buffers = self.meta.len();
        let got = self.socket.try_io(Interest::READABLE, || {
            self.state
                .recv(self.socket.into(), &mut slices[..buffers], &mut self.meta)
        });
        match got {
            Ok(n) => {
                self.filled = n;
                self.at = 0;
                self.pos = 0;
                self.skip_read();
                Ok(self.has_pending())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Moves past buffers read to their end (or empty), so that
    /// [`has_pending`](Self::has_pending) means a datagram is there.
    fn skip_read(&mut self) {
        while self.at < self.filled && self.pos >= self.meta[self.at].len.min(RECV_BUFFER) {
            self.at += 1;
            self.pos = 0;
        }
    }

    /// The next received datagram and its sender, if one is pending.
    pub fn next_datagram(&mut self) -> Option<(SocketAddr, &mut [u8])> {
        self.take(false).map(|(addr, datagram, _)| (addr, datagram))
    }

    /// The next datagram (`whole`: the rest of its buffer) with its sender
    /// and the buffer's stride, if one is pending.
    fn take(&mut self, whole: bool) -> Option<(SocketAddr, &mut [u8], usize)> {
        if !self.has_pending() {
            return None;
        }
        let meta = self.meta[self.at];
        let len = meta.len.min(RECV_BUFFER);
        let stride = meta.stride.clamp(1, RECV_BUFFER);
        let start = self.at * RECV_BUFFER + self.pos;
        let taken = if whole {
            len - self.pos
        } else {
            stride.min(len - self.pos)
        };
        self.pos += taken;
        self.skip_read();
        Some((meta.addr, &mut self.rx[start..start + taken], stride))
    }

    /// The rest of the buffer being read, if one is pending: datagrams of
    /// one sender that the kernel coalesced (all of `stride` bytes but the
    /// last, which may be shorter), to pass on whole with
    /// [`send`](Self::send) and that `stride` as the segment size.
    pub fn next_run(&mut self) -> Option<(SocketAddr, &mut [u8], usize)> {
        self.take(true)
    }

    /// Waits for the next datagram and returns it.
    #[cfg(test)]
    pub async fn recv(&mut self) -> io::Result<(SocketAddr, &mut [u8])> {
        self.ready().await?;
        self.next_datagram()
            .ok_or_else(|| io::Error::other("no datagram after a receive"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair() -> (UdpSocket, UdpSocket) {
        let a = crate::socket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = crate::socket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        (a, b)
    }

    #[tokio::test]
    async fn one_send_of_many_segments_arrives_as_those_datagrams() {
        let (a, b) = pair().await;
        let tx = BatchSocket::new(&a, 4).unwrap();
        let mut rx = BatchSocket::new(&b, 4).unwrap();
        // Ten 1000-byte datagrams and a 300-byte last one, each filled with
        // its index, in one call.
        let mut contents = Vec::new();
        for i in 0..10u8 {
            contents.extend(std::iter::repeat_n(i, 1000));
        }
        contents.extend(std::iter::repeat_n(10u8, 300));
        let to = b.local_addr().unwrap();
        tx.send(to, &contents, 1000).await.unwrap();
        let from = a.local_addr().unwrap();
        let mut got = Vec::new();
        while got.len() < 11 {
            let (addr, datagram) =
                tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                    .await
                    .expect("all datagrams arrive")
                    .unwrap();
            assert_eq!(addr, from);
            got.push(datagram.to_vec());
        }
        for (i, d) in got.iter().enumerate() {
            let len = if i == 10 { 300 } else { 1000 };
            assert_eq!(d.len(), len, "datagram {i}");
            assert!(d.iter().all(|&x| x == i as u8), "datagram {i} is intact");
        }
        assert!(!rx.has_pending());
        assert!(!rx.try_recv().unwrap(), "nothing more arrived");
        // Taken as runs, the same datagrams pass on whole: sent on with
        // their stride, they arrive as they were.
        let (c, d) = pair().await;
        let mut relay = BatchSocket::new(&c, 4).unwrap();
        let mut end = BatchSocket::new(&d, 4).unwrap();
        tx.send(c.local_addr().unwrap(), &contents, 1000)
            .await
            .unwrap();
        let mut passed = 0;
        while passed < contents.len() {
            tokio::time::timeout(std::time::Duration::from_secs(5), relay.ready())
                .await
                .expect("the run arrives")
                .unwrap();
            while let Some((_, run, stride)) = relay.next_run() {
                let run = run.to_vec();
                passed += run.len();
                relay
                    .send(d.local_addr().unwrap(), &run, stride)
                    .await
                    .unwrap();
            }
        }
        let mut got = Vec::new();
        while got.len() < 11 {
            let (_, datagram) = tokio::time::timeout(std::time::Duration::from_secs(5), end.recv())
                .await
                .expect("all datagrams arrive")
                .unwrap();
            got.push(datagram.to_vec());
        }
        assert_eq!(got.concat(), contents);
        assert_eq!(got[10].len(), 300);
    }

    #[tokio::test]
    async fn a_datagram_too_large_for_the_host_is_an_error() {
        let (a, b) = pair().await;
        let tx = BatchSocket::new(&a, 1).unwrap();
        let big = vec![0u8; 70_000];
        let e = tx
            .send(b.local_addr().unwrap(), &big, big.len())
            .await
            .unwrap_err();
        assert!(crate::socket::too_big(&e), "{e}");
    }
}
