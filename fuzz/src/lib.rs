//! What chatdrop's fuzz targets share with each other and with the seed
//! generator (`examples/seeds.rs`): the fixed session keys of the datagram
//! target, the checks run on every string a decoded message carries, and
//! the reading and writing of scripts.
//!
//! The `datagram`, `arq` and `session` targets read their input as a
//! script: settings, then steps, each step an operation and its
//! arguments, read with `arbitrary`'s `Unstructured`. Every choice takes
//! a number of bytes fixed by the script's settings alone, never by the
//! state of the machines (an index into a queue is one byte, modulo the
//! queue's length), so that [`Script`] writes the seeds without running
//! anything, and a seed does what it says.

use arbitrary::{Result, Unstructured};
use chatdrop_proto::chars::{check_shown_as_is, check_text_chars, shown};
use chatdrop_proto::names::{check_file_name, check_room_name, check_user_name, name_key};
use chatdrop_transfer::{Role, SessionKeys};

/// The session secret of the datagram target's keys.
pub const SECRET: [u8; 32] = *b"chatdrop fuzz session secret 32b";
/// The session id of the datagram target's keys.
pub const SESSION_ID: [u8; 8] = *b"fuzzsess";
/// The context the datagram target's keys are derived for.
pub const CONTEXT: &[u8] = b"chatdrop fuzz";

/// The datagram target's keys, for the end `role`: the seeds are sealed
/// with the sender's, the target opens with the receiver's.
pub fn keys(role: Role) -> SessionKeys {
    SessionKeys::derive(&SECRET, SESSION_ID, CONTEXT, role)
}

/// Runs every check a client or a server makes on a name or a text from
/// the network on `s`, and checks what they promise: a name that passes
/// the user-name rules passes the others too, and what [`shown`] makes of
/// any string shows as it is.
pub fn check_string(s: &str) {
    let user = check_user_name(s);
    let room = check_room_name(s);
    let file = check_file_name(s);
    let text = check_text_chars(s);
    let as_is = check_shown_as_is("name", s);
    if user.is_ok() {
        assert!(room.is_ok(), "a valid user name {s:?} is a valid room name");
        assert!(file.is_ok(), "a valid user name {s:?} is a valid file name");
    }
    if as_is.is_ok() {
        assert!(text.is_ok(), "{s:?} shows as it is, so it is valid text");
    }
    let printable = shown(s);
    assert!(
        check_shown_as_is("shown", &printable).is_ok(),
        "shown({s:?}) = {printable:?} still hides something"
    );
    if as_is.is_ok() {
        assert_eq!(printable, s, "text that shows as it is is left alone");
    }
    // Only for strings of name length: the skeleton is costly, and names
    // are at most a few dozen bytes.
    if s.len() <= 256 {
        let _ = name_key(s);
    }
}

/// Whether the targets trace what they do, on standard error: with
/// `CHATDROP_FUZZ_TRACE` set, to see what a crashing input does (see
/// docs/FUZZING.md).
pub fn tracing() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("CHATDROP_FUZZ_TRACE").is_some())
}

/// `eprintln!` when [`tracing`].
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::tracing() {
            eprintln!($($arg)*);
        }
    };
}

/// One byte of the script as an index into `len` things (`len` at least
/// 1): one byte, whatever `len`.
pub fn pick(u: &mut Unstructured, len: usize) -> Result<usize> {
    Ok(usize::from(u.arbitrary::<u8>()?) % len.max(1))
}

/// One byte of the script as a choice made one time in `n`: a byte that
/// is 0 modulo `n`.
pub fn one_in(u: &mut Unstructured, n: u8) -> Result<bool> {
    Ok(u.arbitrary::<u8>()? % n.max(1) == 0)
}

/// A script, written as the targets read it (see the crate docs).
#[derive(Debug, Clone, Default)]
pub struct Script {
    bytes: Vec<u8>,
}

impl Script {
    /// An empty script.
    pub fn new() -> Script {
        Script::default()
    }

    /// A byte: an operation's number below 256 of a range from 0, a
    /// [`pick`], a [`one_in`] (0 to make the choice, 1 not to).
    pub fn byte(&mut self, b: u8) -> &mut Script {
        self.bytes.push(b);
        self
    }

    /// A `bool` as `Unstructured::arbitrary` reads it.
    pub fn flag(&mut self, b: bool) -> &mut Script {
        self.byte(u8::from(b))
    }

    /// `value` as `Unstructured::int_in_range(range)` reads it: its
    /// offset from the start, big-endian, in as many bytes as the range's
    /// width needs.
    pub fn int(&mut self, range: std::ops::RangeInclusive<u64>, value: u64) -> &mut Script {
        let (start, end) = (*range.start(), *range.end());
        assert!(range.contains(&value), "{value} outside {start}..={end}");
        let delta = end - start;
        let len = (0..8).take_while(|i| delta >> (8 * i) > 0).count();
        let offset = (value - start).to_be_bytes();
        self.bytes.extend_from_slice(&offset[8 - len..]);
        self
    }

    /// A `u32` as `Unstructured::arbitrary` reads it.
    pub fn u32(&mut self, v: u32) -> &mut Script {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Bytes as they are (`Unstructured::bytes`, arrays of `u8`).
    pub fn raw(&mut self, b: &[u8]) -> &mut Script {
        self.bytes.extend_from_slice(b);
        self
    }

    /// The script's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}
