//! A transfer session's datagrams as a receiver takes them off its socket:
//! the envelope (`SessionKeys::open`, with fixed keys) and the plain-text
//! parsers behind it (the session frames, `Msg::decode`, and the ARQ's,
//! `Frame::decode`).
//!
//! The input is used three ways:
//! 1. as one datagram, opened with fresh keys (the seeds are datagrams
//!    sealed with the same keys, so what is behind the envelope is
//!    reached too), and its frame decoded;
//! 2. as a frame already opened: decoded, and re-encoded if it decodes
//!    (it must decode to itself);
//! 3. as a script: datagrams sealed with the sending end's keys, then
//!    delivered in any order, copied, tampered with, truncated, with runs
//!    of packet numbers skipped, and arbitrary bytes in between. Checked
//!    against a model of the replay window: each authentic datagram opens
//!    exactly once unless it is older than the window; nothing tampered
//!    or forged opens; what opens is what was sealed.

#![no_main]

use std::collections::HashSet;

use arbitrary::{Result, Unstructured};
use chatdrop_arq::Frame;
use chatdrop_fuzz::{keys, pick};
use chatdrop_transfer::{Msg, OpenError, Role, SessionKeys, ENVELOPE_HEADER, ENVELOPE_TAG};
use libfuzzer_sys::fuzz_target;

/// Packets the replay window spans (`crypto.rs`: 256 words of 64 bits).
const WINDOW_WORDS: u64 = 256;
/// At most this many packet numbers are skipped in one run, to go beyond
/// the window without making a run slow.
const SKIP_BUDGET: u64 = 20_000;

/// 2. The input as an opened frame.
fn plain(data: &[u8]) {
    if let Ok(msg) = Msg::decode(data) {
        // A `Probe` is padded to the size it stands for: re-encode only
        // sizes a datagram can have.
        if !matches!(msg, Msg::Probe { size } if size > 65_536) {
            let mut out = Vec::new();
            msg.encode(&mut out);
            assert_eq!(Msg::decode(&out).as_ref(), Ok(&msg), "{msg:?} re-encoded");
        }
    }
    if let Ok(frame) = Frame::decode(data) {
        let mut out = Vec::new();
        frame.encode(&mut out);
        assert_eq!(Frame::decode(&out).as_ref(), Ok(&frame));
        assert_eq!(out, data, "an ARQ frame has one encoding");
    }
}

/// A datagram sealed by the sending end.
struct Sealed {
    pn: u64,
    frame: Vec<u8>,
    bytes: Vec<u8>,
}

fn seal(keys: &mut SessionKeys, frame: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; ENVELOPE_HEADER];
    buf.extend_from_slice(frame);
    keys.seal(&mut buf);
    assert_eq!(buf.len(), ENVELOPE_HEADER + frame.len() + ENVELOPE_TAG);
    buf
}

/// The receiving end's replay window, as its docs describe it.
#[derive(Default)]
struct Model {
    opened: HashSet<u64>,
    top: Option<u64>,
}

impl Model {
    /// Whether an authentic datagram numbered `pn` must open now.
    fn opens(&self, pn: u64) -> bool {
        if self.opened.contains(&pn) {
            return false;
        }
        match self.top {
            Some(top) if pn <= top => top / 64 - pn / 64 < WINDOW_WORDS,
            _ => true,
        }
    }

    fn open(&mut self, pn: u64) {
        self.opened.insert(pn);
        self.top = self.top.max(Some(pn));
    }
}

/// 3. The input as a script.
fn script(u: &mut Unstructured) -> Result<()> {
    let mut tx = keys(Role::Sender);
    let mut rx = keys(Role::Receiver);
    let mut next_pn = 0u64;
    let mut skipped = 0u64;
    let mut sealed: Vec<Sealed> = Vec::new();
    let mut model = Model::default();
    let mut skip_buf = Vec::new();
    for _ in 0..512 {
        if u.is_empty() {
            break;
        }
        match u.int_in_range(0..=5)? {
            0 => {
                let len = u.int_in_range(0..=24)?;
                let frame = u.bytes(len)?.to_vec();
                let bytes = seal(&mut tx, &frame);
                sealed.push(Sealed {
                    pn: next_pn,
                    frame,
                    bytes,
                });
                next_pn += 1;
            }
            1 => {
                // Datagrams sealed and lost on the way.
                let n = u.int_in_range(1..=4_096)?.min(SKIP_BUDGET - skipped);
                for _ in 0..n {
                    skip_buf.clear();
                    skip_buf.resize(ENVELOPE_HEADER, 0);
                    tx.seal(&mut skip_buf);
                }
                skipped += n;
                next_pn += n;
            }
            2 => {
                let Some(d) = sealed.get(pick(u, sealed.len())?) else {
                    continue;
                };
                let must = model.opens(d.pn);
                let mut copy = d.bytes.clone();
                match rx.open(&mut copy) {
                    Ok(frame) => {
                        assert!(must, "datagram {} opened when it must not", d.pn);
                        assert_eq!(
                            frame,
                            &d.frame[..],
                            "datagram {} opened to another frame",
                            d.pn
                        );
                        model.open(d.pn);
                    }
                    Err(e) => {
                        assert!(!must, "authentic datagram {} refused: {e}", d.pn);
                        assert_eq!(e, OpenError::Replayed, "datagram {}", d.pn);
                    }
                }
            }
            3 => {
                // Tampered: one bit flipped, or cut short.
                let i = pick(u, sealed.len())?;
                let (flip, at, bit): (bool, u8, u8) =
                    (u.arbitrary()?, u.arbitrary()?, u.int_in_range(0..=7)?);
                let Some(d) = sealed.get(i) else {
                    continue;
                };
                let mut copy = d.bytes.clone();
                let at = usize::from(at) % copy.len();
                if flip {
                    copy[at] ^= 1 << bit;
                } else {
                    copy.truncate(at);
                }
                assert!(rx.open(&mut copy).is_err(), "a tampered datagram opened");
            }
            4 => {
                // Bytes from anyone: they open only if they are a datagram
                // these keys sealed (the seeds hold some), and then once.
                let len = u.int_in_range(0..=64)?;
                let mut bytes = u.bytes(len)?.to_vec();
                let low = bytes
                    .get(1..ENVELOPE_HEADER)
                    .map(|b| u32::from_be_bytes(b.try_into().expect("four bytes")));
                if rx.open(&mut bytes).is_ok() {
                    // Only packet numbers below 2^31 are sealed here, and
                    // the reference stays below them.
                    let pn = u64::from(low.expect("an opened datagram has a header"));
                    assert!(model.opens(pn), "forged or replayed datagram {pn} opened");
                    model.open(pn);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    // 1. One datagram, as it comes off the socket.
    let mut rx = keys(Role::Receiver);
    let mut datagram = data.to_vec();
    if let Ok(frame) = rx.open(&mut datagram) {
        plain(frame);
    }
    // 2. The input as an opened frame.
    plain(data);
    // 3. The input as a script.
    let _ = script(&mut Unstructured::new(data));
});
