//! chatdrop's full-screen terminal client: a window per room and per direct
//! conversation, with unread counts and highlights; the room's peers; the
//! transfers with their progress; and an input line that incoming lines
//! never touch.
//!
//! - [`app`]: the state and what changes it (events and keys in, commands
//!   out), free of any terminal, so that it is tested by feeding it.
//! - `draw`: the screen drawn from the state (tested on ratatui's
//!   `TestBackend`).
//! - [`run`]: the terminal around them.

pub mod app;
mod complete;
mod draw;
mod input;
mod terminal;
mod transfers;
mod windows;

pub use app::{now_ms, Action, App};
pub use draw::draw;
pub use terminal::run;

/// `HH:MM` of `ms` since the Unix epoch, in the local time zone.
pub fn local_time(ms: u64) -> String {
    use chrono::TimeZone;
    match i64::try_from(ms).map(|ms| chrono::Local.timestamp_millis_opt(ms)) {
        Ok(chrono::LocalResult::Single(t)) => t.format("%H:%M").to_string(),
        _ => "--:--".to_string(),
    }
}

#[cfg(test)]
mod screens;
