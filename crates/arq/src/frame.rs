//! Frames exchanged by sender and receiver (the plaintext of one datagram;
//! encryption and integrity are the layer below's job).
//!
//! ```text
//! Data:  0x01 | seq u32 | payload...
//! Ack:   0x02 | cum u32 | dropped u32 | n u8 | n x (start u32, end u32)
//!                                                             end exclusive
//! Done:  0x03
//! Abort: 0x04 | reason (UTF-8)
//! ```
//! All integers big-endian. A data packet's place in the file follows from
//! its sequence number (every packet but the last carries exactly the
//! session's payload size), so the frame does not repeat it.

/// Most SACK ranges in one ack.
pub const MAX_ACK_RANGES: usize = 128;

/// An acknowledgement: what the receiver has, as a cumulative point and
/// ranges beyond it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    /// Sequence number of the next packet expected in order: everything
    /// before it has arrived.
    pub cum: u32,
    /// Ranges of packets received beyond `cum` (Selective Repeat only),
    /// `[start, end)`, in order.
    pub ranges: Vec<(u32, u32)>,
    /// Datagrams the receiver's socket dropped so far for want of buffer
    /// space (a counter that wraps; 0 where the system does not tell):
    /// losses at the receiver, which say it cannot keep up, not that the
    /// path is lossy.
    pub dropped: u32,
}

/// One frame: the plaintext of one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Data: the packet numbered `seq`.
    Data {
        /// The packet's sequence number (its place in the file follows).
        seq: u32,
        /// The packet's bytes of the file.
        payload: &'a [u8],
    },
    /// What the receiver has (see [`Ack`]).
    Ack(Ack),
    /// The sender has everything acknowledged; the receiver may stop.
    Done,
    /// The peer gives up, with a reason.
    Abort(&'a str),
}

/// A frame that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed frame: {0}")]
pub struct DecodeError(pub &'static str);

fn u32_at(b: &[u8], at: usize) -> Result<u32, DecodeError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(DecodeError("truncated"))
}

impl<'a> Frame<'a> {
    /// Bytes of a data frame's header.
    pub const DATA_HEADER: usize = 5;

    /// Parses one frame.
    pub fn decode(b: &'a [u8]) -> Result<Frame<'a>, DecodeError> {
        match b.first() {
            Some(1) => {
                let seq = u32_at(b, 1)?;
                Ok(Frame::Data {
                    seq,
                    payload: &b[Self::DATA_HEADER..],
                })
            }
            Some(2) => {
                let cum = u32_at(b, 1)?;
                let dropped = u32_at(b, 5)?;
                let n = *b.get(9).ok_or(DecodeError("truncated"))? as usize;
                if n > MAX_ACK_RANGES {
                    return Err(DecodeError("too many ack ranges"));
                }
                if b.len() != 10 + n * 8 {
                    return Err(DecodeError("ack length does not match its ranges"));
                }
                let mut ranges = Vec::with_capacity(n);
                for i in 0..n {
                    ranges.push((u32_at(b, 10 + i * 8)?, u32_at(b, 14 + i * 8)?));
                }
                Ok(Frame::Ack(Ack {
                    cum,
                    ranges,
                    dropped,
                }))
            }
            Some(3) if b.len() == 1 => Ok(Frame::Done),
            Some(4) => std::str::from_utf8(&b[1..])
                .map(Frame::Abort)
                .map_err(|_| DecodeError("abort reason is not UTF-8")),
            Some(_) => Err(DecodeError("unknown frame type")),
            None => Err(DecodeError("empty")),
        }
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Data { seq, payload } => {
                out.push(1);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(payload);
            }
            Frame::Ack(ack) => {
                out.push(2);
                out.extend_from_slice(&ack.cum.to_be_bytes());
                out.extend_from_slice(&ack.dropped.to_be_bytes());
                let n = ack.ranges.len().min(MAX_ACK_RANGES);
                out.push(n as u8);
                for (s, e) in &ack.ranges[..n] {
                    out.extend_from_slice(&s.to_be_bytes());
                    out.extend_from_slice(&e.to_be_bytes());
                }
            }
            Frame::Done => out.push(3),
            Frame::Abort(reason) => {
                out.push(4);
                out.extend_from_slice(reason.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let frames = [
            Frame::Data {
                seq: u32::MAX,
                payload: b"hello",
            },
            Frame::Ack(Ack {
                cum: 7,
                ranges: vec![(9, 12), (u32::MAX, 2)],
                dropped: 0xfeed_beef,
            }),
            Frame::Ack(Ack::default()),
            Frame::Done,
            Frame::Abort("busy"),
        ];
        for f in frames {
            let mut b = Vec::new();
            f.encode(&mut b);
            assert_eq!(Frame::decode(&b).unwrap(), f);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for b in [
            &[][..],
            &[9],
            &[1, 0, 0],
            &[2, 0, 0, 0, 0, 1],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            &[2, 0, 0, 0, 0, 0, 0, 0, 0, 200],
            &[3, 3],
            &[4, 0xff],
        ] {
            assert!(Frame::decode(b).is_err(), "{b:?}");
        }
    }
}
