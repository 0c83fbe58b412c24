//! The frames of a transfer session: the ARQ's own (`Data`, `Ack`, `Done`,
//! `Abort`), plus the session's opening, before any data:
//!
//! ```text
//! Start:     0x10 | isn u32 | from u64 | to u64 | token [32]  receiver -> sender, first
//! Probe:     0x11 | size u32 | padding                       sender -> receiver
//! ProbeAck:  0x12 | size u32                                 receiver -> sender
//! Begin:     0x13 | mss u32                                  sender -> receiver
//! Challenge: 0x14 | token [32]                               sender -> receiver
//! Punch:     0x15                                            sender -> receiver
//! Enough:    0x16                                            receiver -> sender
//! Resize:    0x17 | mss u32 | isn u32 | from u64             sender -> receiver
//! ```
//!
//! `isn` numbers the data packets; `from..to` is the range of the file's
//! bytes asked for (what an earlier, interrupted download lacks, or the
//! share of one owner in a download from several). The data that follows
//! is the file's outline (see [`crate::outline`]), then those bytes.
//! `Enough` ends a session before its range is complete: another owner
//! sends the rest (see `session/swarm.rs`). `token` is zero
//! until the sender's `Challenge` brings the token of the address the
//! receiver sends from: a `Start` that echoes it proves that the address
//! is the receiver's own (see `session/send.rs`). A `Probe` is as
//! long as a data datagram carrying `size` payload bytes would be: if its
//! `ProbeAck` comes back, the path carries datagrams that large. `Begin`
//! fixes the payload size of every data packet of the session. `Punch`
//! goes from the sender to each of the receiver's candidate addresses
//! while it waits for a `Start`: it opens the sender's own NAT towards
//! them, and tells the receiver an address the sender is reachable at
//! (the one it came from), where the receiver sends its `Start` too.
//! `Resize` changes the packet size mid-session, when the path stopped
//! carrying the old size (an MTU black hole) or carries a larger one
//! again: the data from stream offset `from` on is sent again as packets
//! of `mss` bytes numbered from `isn`, which is the session's previous
//! `isn` plus the previous run's packet count plus one, so that no packet
//! or acknowledgement of one run can be taken for one of the next (see
//! `session/send.rs`).

use chatdrop_arq::{DecodeError, Frame};

/// One session frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg<'a> {
    /// An ARQ frame.
    Arq(Frame<'a>),
    /// The receiver asks for the file's bytes `from..to`.
    Start {
        /// First sequence number.
        isn: u32,
        /// Byte offset to start at.
        from: u64,
        /// Byte offset to stop at.
        to: u64,
        /// The sender's token for this address, echoed; zero before one came.
        token: [u8; TOKEN_LEN],
    },
    /// The sender asks the receiver to prove its address: `Start` again,
    /// with this token.
    Challenge {
        /// The token of the address the `Start` came from.
        token: [u8; TOKEN_LEN],
    },
    /// The sender tries a packet size; the frame is padded to match it.
    Probe {
        /// Payload bytes per data packet being tried.
        size: u32,
    },
    /// The receiver got a probe of this size.
    ProbeAck {
        /// The probe's size.
        size: u32,
    },
    /// The sender fixes the payload size of the session's data packets.
    Begin {
        /// Payload bytes per data packet.
        mss: u32,
    },
    /// The sender, waiting for a `Start`, opens its way to the receiver.
    Punch,
    /// The receiver has what it needs from this session: the sender
    /// stops, done.
    Enough,
    /// The sender changes the packet size: the stream from `from` on comes
    /// again as packets of `mss` bytes numbered from `isn`.
    Resize {
        /// Payload bytes per data packet from now on.
        mss: u32,
        /// The first packet number of the new run.
        isn: u32,
        /// The stream offset the new run starts at.
        from: u64,
    },
}

const START: u8 = 0x10;
const PROBE: u8 = 0x11;
const PROBE_ACK: u8 = 0x12;
const BEGIN: u8 = 0x13;
const CHALLENGE: u8 = 0x14;
const PUNCH: u8 = 0x15;
const ENOUGH: u8 = 0x16;
const RESIZE: u8 = 0x17;

/// Bytes of an address-validation token.
pub const TOKEN_LEN: usize = 32;
/// Bytes of a `Start` frame.
pub const START_LEN: usize = 21 + TOKEN_LEN;

fn u32_at(b: &[u8], at: usize) -> Result<u32, DecodeError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(DecodeError("truncated"))
}

impl<'a> Msg<'a> {
    /// Parses a frame.
    pub fn decode(b: &'a [u8]) -> Result<Msg<'a>, DecodeError> {
        match b.first() {
            Some(&START) => {
                if b.len() != START_LEN {
                    return Err(DecodeError("bad Start length"));
                }
                let mut from = [0u8; 8];
                from.copy_from_slice(&b[5..13]);
                let mut to = [0u8; 8];
                to.copy_from_slice(&b[13..21]);
                let mut token = [0u8; TOKEN_LEN];
                token.copy_from_slice(&b[21..]);
                Ok(Msg::Start {
                    isn: u32_at(b, 1)?,
                    from: u64::from_be_bytes(from),
                    to: u64::from_be_bytes(to),
                    token,
                })
            }
            Some(&CHALLENGE) => {
                let token = b
                    .get(1..)
                    .and_then(|t| <[u8; TOKEN_LEN]>::try_from(t).ok())
                    .ok_or(DecodeError("bad Challenge length"))?;
                Ok(Msg::Challenge { token })
            }
            Some(&PROBE) => Ok(Msg::Probe {
                size: u32_at(b, 1)?,
            }),
            Some(&PROBE_ACK) if b.len() == 5 => Ok(Msg::ProbeAck {
                size: u32_at(b, 1)?,
            }),
            Some(&BEGIN) if b.len() == 5 => Ok(Msg::Begin { mss: u32_at(b, 1)? }),
            Some(&PUNCH) if b.len() == 1 => Ok(Msg::Punch),
            Some(&ENOUGH) if b.len() == 1 => Ok(Msg::Enough),
            Some(&RESIZE) if b.len() == 17 => {
                let mut from = [0u8; 8];
                from.copy_from_slice(&b[9..17]);
                Ok(Msg::Resize {
                    mss: u32_at(b, 1)?,
                    isn: u32_at(b, 5)?,
                    from: u64::from_be_bytes(from),
                })
            }
            Some(&PROBE_ACK) | Some(&BEGIN) | Some(&PUNCH) | Some(&ENOUGH) | Some(&RESIZE) => {
                Err(DecodeError("bad length"))
            }
            _ => Frame::decode(b).map(Msg::Arq),
        }
    }

    /// Appends the encoding to `out`. A `Probe` is padded so that the frame
    /// is as long as a data frame of `size` payload bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Msg::Arq(f) => f.encode(out),
            Msg::Start {
                isn,
                from,
                to,
                token,
            } => {
                out.push(START);
                out.extend_from_slice(&isn.to_be_bytes());
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&to.to_be_bytes());
                out.extend_from_slice(token);
            }
            Msg::Challenge { token } => {
                out.push(CHALLENGE);
                out.extend_from_slice(token);
            }
            Msg::Probe { size } => {
                let start = out.len();
                out.push(PROBE);
                out.extend_from_slice(&size.to_be_bytes());
                let len = Frame::DATA_HEADER + *size as usize;
                out.resize(start + len.max(5), 0);
            }
            Msg::ProbeAck { size } => {
                out.push(PROBE_ACK);
                out.extend_from_slice(&size.to_be_bytes());
            }
            Msg::Begin { mss } => {
                out.push(BEGIN);
                out.extend_from_slice(&mss.to_be_bytes());
            }
            Msg::Punch => out.push(PUNCH),
            Msg::Enough => out.push(ENOUGH),
            Msg::Resize { mss, isn, from } => {
                out.push(RESIZE);
                out.extend_from_slice(&mss.to_be_bytes());
                out.extend_from_slice(&isn.to_be_bytes());
                out.extend_from_slice(&from.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_frames_round_trip() {
        for m in [
            Msg::Start {
                isn: 0xdead_beef,
                from: 12345,
                to: 1 << 40,
                token: [9; TOKEN_LEN],
            },
            Msg::Challenge {
                token: [7; TOKEN_LEN],
            },
            Msg::Probe { size: 1442 },
            Msg::ProbeAck { size: 1442 },
            Msg::Begin { mss: 1442 },
            Msg::Resize {
                mss: 1442,
                isn: u32::MAX,
                from: 1 << 40,
            },
        ] {
            let mut b = Vec::new();
            m.encode(&mut b);
            assert_eq!(Msg::decode(&b).unwrap(), m);
            assert!(Msg::decode(&b[..3]).is_err(), "{m:?} truncated");
        }
        assert_eq!(Msg::decode(&[3]).unwrap(), Msg::Arq(Frame::Done));
        assert_eq!(Msg::decode(&[PUNCH]).unwrap(), Msg::Punch);
        assert!(Msg::decode(&[PUNCH, 0]).is_err(), "a Punch has no body");
        assert_eq!(Msg::decode(&[ENOUGH]).unwrap(), Msg::Enough);
        assert!(Msg::decode(&[ENOUGH, 0]).is_err(), "nor has Enough");
    }

    #[test]
    fn a_probe_is_as_long_as_the_data_frame_it_stands_for() {
        let mut probe = Vec::new();
        Msg::Probe { size: 1400 }.encode(&mut probe);
        let mut data = Vec::new();
        let payload = vec![0u8; 1400];
        Frame::Data {
            seq: 1,
            payload: &payload,
        }
        .encode(&mut data);
        assert_eq!(probe.len(), data.len());
    }
}
