//! The frames of a transfer session: the ARQ's own (`Data`, `Ack`, `Done`,
//! `Abort`), plus `Start`, which the receiver sends first:
//!
//! ```text
//! Start: 0x10 | isn u32 | resume_from u64
//! ```
//!
//! `isn` numbers the data packets; `resume_from` is the byte offset to start
//! at (what an earlier, interrupted download already has).

use chatdrop_arq::{DecodeError, Frame};

/// One session frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg<'a> {
    /// An ARQ frame.
    Arq(Frame<'a>),
    /// The receiver asks for the file from `resume_from` on.
    Start {
        /// First sequence number.
        isn: u32,
        /// Byte offset to start at.
        resume_from: u64,
    },
}

const START: u8 = 0x10;

impl<'a> Msg<'a> {
    /// Parses a frame.
    pub fn decode(b: &'a [u8]) -> Result<Msg<'a>, DecodeError> {
        if b.first() == Some(&START) {
            if b.len() != 13 {
                return Err(DecodeError("bad Start length"));
            }
            let mut isn = [0u8; 4];
            isn.copy_from_slice(&b[1..5]);
            let mut from = [0u8; 8];
            from.copy_from_slice(&b[5..13]);
            return Ok(Msg::Start {
                isn: u32::from_be_bytes(isn),
                resume_from: u64::from_be_bytes(from),
            });
        }
        Frame::decode(b).map(Msg::Arq)
    }

    /// Appends the encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Msg::Arq(f) => f.encode(out),
            Msg::Start { isn, resume_from } => {
                out.push(START);
                out.extend_from_slice(&isn.to_be_bytes());
                out.extend_from_slice(&resume_from.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_round_trips() {
        let m = Msg::Start {
            isn: 0xdead_beef,
            resume_from: 12345,
        };
        let mut b = Vec::new();
        m.encode(&mut b);
        assert_eq!(Msg::decode(&b).unwrap(), m);
        assert!(Msg::decode(&b[..5]).is_err());
        assert_eq!(Msg::decode(&[3]).unwrap(), Msg::Arq(Frame::Done));
    }
}
