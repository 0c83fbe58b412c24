//! Tickets: everything a receiver needs to fetch one file in direct mode
//! (`chatdrop send` prints one, `chatdrop recv` takes it).
//!
//! A ticket holds the session secret, so it is a capability: whoever has it
//! can fetch the file, once. It is printed as `chatdrop1-` followed by hex.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::TransferError;

const PREFIX: &str = "chatdrop1-";

/// A direct-mode ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Where the sender listens.
    pub addr: SocketAddr,
    /// The session id.
    pub session: [u8; 8],
    /// The session secret.
    pub secret: [u8; 32],
    /// The file's name (its last path component).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its BLAKE3 hash.
    pub blake3: [u8; 32],
    /// ARQ scheme: `true` for Selective Repeat, `false` for Go-Back-N.
    pub selective_repeat: bool,
    /// The sender's window, in packets.
    pub window: u32,
    /// Payload bytes per packet.
    pub mss: u32,
}

impl Ticket {
    /// The printable form.
    pub fn encode(&self) -> String {
        // A struct of plain fields always serializes.
        let bytes = postcard::to_stdvec(self).expect("a ticket serializes");
        format!("{PREFIX}{}", hex::encode(bytes))
    }

    /// Parses the printable form.
    pub fn decode(s: &str) -> Result<Ticket, TransferError> {
        let bad = |why: &str| TransferError::Invalid(format!("not a chatdrop ticket: {why}"));
        let body = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("it does not start with chatdrop1-"))?;
        if body.len() > 4096 {
            return Err(bad("too long"));
        }
        let bytes = hex::decode(body).map_err(|_| bad("not hex"))?;
        let t: Ticket = postcard::from_bytes(&bytes).map_err(|_| bad("damaged"))?;
        t.check()?;
        Ok(t)
    }

    /// Says what is out of range in a ticket however it came (printed, or
    /// sealed in a short code's invitation).
    pub fn check(&self) -> Result<(), TransferError> {
        let t = self;
        let bad = |why: &str| TransferError::Invalid(format!("not a chatdrop ticket: {why}"));
        if t.window == 0
            || t.window > chatdrop_arq::MAX_WINDOW
            || t.mss == 0
            || t.mss > crate::session::MAX_MSS
        {
            return Err(bad("window or packet size out of range"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let t = Ticket {
            addr: "127.0.0.1:4000".parse().unwrap(),
            session: [1; 8],
            secret: [2; 32],
            name: "report.pdf".into(),
            size: 1234,
            blake3: [3; 32],
            selective_repeat: true,
            window: 16,
            mss: 1200,
        };
        let s = t.encode();
        assert!(s.starts_with("chatdrop1-"));
        assert_eq!(Ticket::decode(&s).unwrap(), t);
        assert!(Ticket::decode("hello")
            .unwrap_err()
            .to_string()
            .contains("chatdrop1-"));
        assert!(Ticket::decode(&s[..s.len() - 10]).is_err());
        assert!(Ticket::decode("chatdrop1-zz")
            .unwrap_err()
            .to_string()
            .contains("not hex"));
    }
}
