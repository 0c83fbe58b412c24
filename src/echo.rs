//! Typing without echo, for passwords asked in the line mode.

use std::os::fd::AsFd;

use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions, Termios};

/// The terminal's echo is off while this lives; dropping it turns it back
/// on (also on an error's early return).
pub struct EchoOff {
    saved: Termios,
}

impl EchoOff {
    /// Turns standard input's echo off; `None` if it is not a terminal.
    pub fn new() -> Option<EchoOff> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut quiet = saved.clone();
        quiet.local_modes.remove(LocalModes::ECHO);
        tcsetattr(stdin.as_fd(), OptionalActions::Now, &quiet).ok()?;
        Some(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}
