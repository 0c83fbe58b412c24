//! chatdrop's chat state machine, free of I/O.
//!
//! [`Chat`] owns rooms, members, user-name bindings, bans and each room's
//! recent history. The server feeds it [`Event`]s (with the current time) and
//! carries out the [`Effect`]s it returns: frames to deliver, connections to
//! close, passwords to check, records to persist, lines for the admin console.
//! It must not touch sockets, files, clocks or randomness: everything from the
//! outside comes in through events, which is what makes it testable to the
//! letter.

//!
//! [`Chat::handle`] checks what every client request needs once, then hands
//! each event to the module of its feature, which holds both its local
//! handler and its network counterpart: `login`, `rooms`, `say`, `files`
//! and `admin`.

mod admin;
mod bans;
mod brokered;
mod chat;
mod contact;
mod event;
mod expiry;
mod files;
mod link_checks;
mod lockout;
mod login;
mod net;
mod new_names;
mod offers;
mod policy;
mod room;
mod rooms;
mod say;
mod state;

pub use crate::admin::{parse_admin, AdminCommand};
pub use crate::bans::BanTarget;
pub use crate::brokered::{BROKERED_FOR_MS, MAX_BROKERED};
pub use crate::chat::{Chat, Who};
pub use crate::event::{ConnId, Effect, Event, LinkId, Persist};
pub use crate::lockout::ip_block;
pub use crate::net::Identity;
pub use crate::policy::SharePolicy;
pub use crate::state::{Ban, Binding, HistoryEntry, RoomRecord, Settings, Snapshot, Vouch};

#[cfg(test)]
mod link_tests;
#[cfg(test)]
mod net_tests;
#[cfg(test)]
mod tests;
