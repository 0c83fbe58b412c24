//! Mailboxes: how `chatdrop send --via` and `chatdrop recv --via` find each
//! other through a server with a short code such as `7-sunlit-harbor`.
//!
//! The sender opens a mailbox and gets its nameplate (`7`, the smallest
//! free number); the words of the code are its own and never reach the
//! server. The receiver joins the nameplate, and the server passes a few
//! small messages between the two: the PAKE that the whole code
//! authenticates (SPAKE2), then what the two sides seal with its key. So
//! the server learns nothing it could use to read or change the file, and
//! whoever guesses a code gets one try: a nameplate is joined once, and
//! closed when either side leaves.
//!
//! Mailbox connections never log in: the first frame (`Mailbox(Open)` or
//! `Mailbox(Join)`) makes a connection one. They take `Ping`, `Observe`,
//! mailbox messages and the relay's (`Relay`, `RelayEnd`, `Tunnel`: the two
//! sides of a code may have their transfer relayed as the two sides of a
//! brokered request may), at most [`MAX_FRAMES`] frames besides `Tunnel`,
//! for at most [`LIFETIME`] while waiting for the other side.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chatdrop_chat::ConnId;
use chatdrop_proto::limits::{
    IDLE_TIMEOUT_SECS, MAX_MAILBOX_BODY, MAX_MAILBOX_MESSAGES, PROTOCOL_VERSION,
};
use chatdrop_proto::{encode_frame, ClientMsg, MailboxEvent, MailboxMsg, ServerMsg};
use tokio::io::WriteHalf;
use tokio_util::sync::CancellationToken;

use crate::conn::{next_msg, write_loop, End, Reader, Tls};
use crate::hub::CONN_QUEUE;
use crate::outbox::{outbox, Outbox, CLIENT_QUEUE_BYTES};
use crate::relay::{Opening, Pass};
use crate::Shared;

/// Nameplates open at once at most.
pub(crate) const MAX_NAMEPLATES: u32 = 10_000;

/// How long a mailbox connection may stay, waiting for the other side
/// included.
pub(crate) const LIFETIME: Duration = Duration::from_secs(600);

/// Frames one mailbox connection may send in all.
pub(crate) const MAX_FRAMES: u32 = 512;

/// Frames a second a paired mailbox connection may send besides `Tunnel`
/// (pings every few seconds, a relay request, its end).
pub(crate) const PAIRED_PER_SEC: u32 = 10;

/// A bucket of [`PAIRED_PER_SEC`] frames a second, as many at once.
struct Pace {
    tokens: f64,
    at: Instant,
}

impl Pace {
    fn new() -> Pace {
        Pace {
            tokens: f64::from(PAIRED_PER_SEC),
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let rate = f64::from(PAIRED_PER_SEC);
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + dt * rate).min(rate);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// One side of a mailbox.
struct Side {
    conn: ConnId,
    /// Where its connection comes from.
    ip: IpAddr,
    tx: Outbox,
    sent: u32,
}

/// One nameplate's mailbox: the side that opened it, and the one that
/// joined.
struct Slot {
    sides: [Option<Side>; 2],
}

#[derive(Default)]
struct Inner {
    slots: HashMap<u32, Slot>,
    /// Each connection's nameplate and side.
    by_conn: HashMap<ConnId, (u32, usize)>,
}

/// Every mailbox of the server.
#[derive(Default)]
pub(crate) struct Mailboxes {
    inner: Mutex<Inner>,
}

fn say(tx: &Outbox, event: MailboxEvent) {
    if let Ok(frame) = encode_frame(&ServerMsg::Mailbox(event)) {
        let _ = tx.try_send(frame);
    }
}

impl Mailboxes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a mailbox for `conn`: its nameplate, the smallest free one.
    pub(crate) fn open(&self, conn: ConnId, ip: IpAddr, tx: &Outbox) -> Result<u32, String> {
        let mut inner = self.lock();
        if inner.by_conn.contains_key(&conn) {
            return Err("this connection has a mailbox already".into());
        }
        let Some(nameplate) = (1..=MAX_NAMEPLATES).find(|n| !inner.slots.contains_key(n)) else {
            return Err(format!(
                "the server has {MAX_NAMEPLATES} codes in use; try again later"
            ));
        };
        let side = Side {
            conn,
            ip,
            tx: tx.clone(),
            sent: 0,
        };
        inner.slots.insert(
            nameplate,
            Slot {
                sides: [Some(side), None],
            },
        );
        inner.by_conn.insert(conn, (nameplate, 0));
        Ok(nameplate)
    }

    /// `conn` joins `nameplate`: both sides are told.
    pub(crate) fn join(
        &self,
        (conn, ip): (ConnId, IpAddr),
        tx: &Outbox,
        nameplate: u32,
    ) -> Result<(), String> {
        let mut inner = self.lock();
        if inner.by_conn.contains_key(&conn) {
            return Err("this connection has a mailbox already".into());
        }
        let Some(slot) = inner.slots.get_mut(&nameplate) else {
            return Err(format!(
                "no code starts with {nameplate} on this server (a code is good for one try)"
            ));
        };
        if slot.sides[1].is_some() {
            return Err(format!("the code {nameplate}-... was tried already"));
        }
        slot.sides[1] = Some(Side {
            conn,
            ip,
            tx: tx.clone(),
            sent: 0,
        });
        for side in slot.sides.iter().flatten() {
            say(&side.tx, MailboxEvent::Joined);
        }
        inner.by_conn.insert(conn, (nameplate, 1));
        Ok(())
    }

    /// A message from `conn` for the other side of its mailbox.
    pub(crate) fn send(&self, conn: ConnId, body: Vec<u8>) -> Result<(), String> {
        if body.len() > MAX_MAILBOX_BODY {
            return Err(format!(
                "a mailbox message has at most {MAX_MAILBOX_BODY} bytes"
            ));
        }
        let mut inner = self.lock();
        let Some(&(nameplate, i)) = inner.by_conn.get(&conn) else {
            return Err("no mailbox is open on this connection".into());
        };
        let Some(slot) = inner.slots.get_mut(&nameplate) else {
            return Err("the mailbox is closed".into());
        };
        let Some(me) = slot.sides[i].as_mut() else {
            return Err("the mailbox is closed".into());
        };
        if me.sent >= MAX_MAILBOX_MESSAGES {
            return Err(format!(
                "at most {MAX_MAILBOX_MESSAGES} mailbox messages per side"
            ));
        }
        me.sent += 1;
        let Some(other) = slot.sides[1 - i].as_ref() else {
            return Err("the other side is not here yet".into());
        };
        say(&other.tx, MailboxEvent::Message { body });
        Ok(())
    }

    /// `conn` left: its mailbox closes, and the other side is told.
    pub(crate) fn leave(&self, conn: ConnId) {
        let mut inner = self.lock();
        let Some((nameplate, i)) = inner.by_conn.remove(&conn) else {
            return;
        };
        let Some(slot) = inner.slots.remove(&nameplate) else {
            return;
        };
        if let Some(other) = &slot.sides[1 - i] {
            let why = "the other side left".to_string();
            say(&other.tx, MailboxEvent::Closed { why });
            inner.by_conn.remove(&other.conn);
        }
    }

    /// Whether `conn`'s mailbox has both its sides.
    pub(crate) fn paired(&self, conn: ConnId) -> bool {
        self.partner(conn).is_some()
    }

    /// The nameplate of `conn`'s mailbox, and its other side, if both are
    /// there.
    pub(crate) fn partner(&self, conn: ConnId) -> Option<(u32, ConnId, IpAddr, Outbox)> {
        let inner = self.lock();
        let &(nameplate, i) = inner.by_conn.get(&conn)?;
        let other = inner.slots.get(&nameplate)?.sides[1 - i].as_ref()?;
        Some((nameplate, other.conn, other.ip, other.tx.clone()))
    }

    /// Nameplates open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().slots.len()
    }
}

/// Serves a mailbox connection whose first frame was `first`, until it
/// ends, breaks a rule, or has lasted [`LIFETIME`].
pub(crate) async fn serve(
    (conn, ip): (ConnId, IpAddr),
    first: MailboxMsg,
    mut frames: Reader,
    wr: WriteHalf<Tls>,
    shared: &Shared,
) -> End {
    let (tx, rx) = outbox(CONN_QUEUE, CLIENT_QUEUE_BYTES);
    let close = CancellationToken::new();
    let writer = tokio::spawn(write_loop(wr, rx, close.clone()));
    let ends = Instant::now() + LIFETIME;
    let idle = Duration::from_secs(IDLE_TIMEOUT_SECS);
    let mut next = Some(first);
    let mut frames_left = MAX_FRAMES;
    let mut paced = Pace::new();
    let end = loop {
        let msg = match next.take() {
            Some(m) => ClientMsg::Mailbox(m),
            None => {
                // Paired, the two sides may stay as long as their transfer
                // (its relay lives on these connections).
                let waiting = !shared.mailboxes.paired(conn);
                let read = tokio::select! {
                    _ = shared.shutdown.cancelled() => break End::Closed,
                    _ = tokio::time::sleep_until(ends.into()), if waiting => {
                        let why = format!("a mailbox lasts {} minutes at most", LIFETIME.as_secs() / 60);
                        say(&tx, MailboxEvent::Closed { why: why.clone() });
                        break End::Refused(why);
                    }
                    m = next_msg(&mut frames, idle) => m,
                };
                match read {
                    Ok((m, _)) => m,
                    Err(end) => break end,
                }
            }
        };
        // A relayed transfer's datagrams have the relay's limits.
        if let ClientMsg::Tunnel { session, data } = &msg {
            if let Pass::SendTo(to) = shared
                .relays
                .on_tunnel(conn, *session, data, Instant::now())
            {
                shared.relays.send_udp(to, data);
            }
            continue;
        }
        // Paired, the connection stays as long as its transfer: its frames
        // are then held to a rate rather than a total.
        let over = if shared.mailboxes.paired(conn) {
            !paced.take(Instant::now())
        } else {
            frames_left == 0
        };
        if over {
            let why = format!(
                "a mailbox connection sends {MAX_FRAMES} frames at most, then {PAIRED_PER_SEC} a second"
            );
            say(&tx, MailboxEvent::Closed { why: why.clone() });
            break End::Refused(why);
        }
        frames_left = frames_left.saturating_sub(1);
        let result = match msg {
            ClientMsg::Ping => {
                if let Ok(frame) = encode_frame(&ServerMsg::Pong) {
                    let _ = tx.try_send(frame);
                }
                Ok(())
            }
            ClientMsg::Observe { token } => {
                shared.observers.register(conn, token, &tx);
                Ok(())
            }
            ClientMsg::Mailbox(MailboxMsg::Open { version }) => check(version)
                .and_then(|()| shared.mailboxes.open(conn, ip, &tx))
                .map(|nameplate| say(&tx, MailboxEvent::Opened { nameplate })),
            ClientMsg::Mailbox(MailboxMsg::Join { version, nameplate }) => {
                check(version).and_then(|()| shared.mailboxes.join((conn, ip), &tx, nameplate))
            }
            ClientMsg::Mailbox(MailboxMsg::Send { body }) => shared.mailboxes.send(conn, body),
            ClientMsg::Relay { session } => {
                relay((conn, ip), session, &tx, shared);
                Ok(())
            }
            ClientMsg::RelayEnd { session } => {
                shared.relays.end(conn, session);
                Ok(())
            }
            ClientMsg::Quit => break End::Closed,
            _ => Err("a mailbox connection takes mailbox messages only".into()),
        };
        if let Err(why) = result {
            // Said, and the connection closed: each side has one try.
            say(&tx, MailboxEvent::Closed { why: why.clone() });
            break End::Refused(why);
        }
    };
    shared.mailboxes.leave(conn);
    shared.observers.forget(conn);
    shared.relays.forget(conn);
    close.cancel();
    drop(tx);
    let _ = writer.await;
    end
}

/// `Relay` on a mailbox connection: the two sides of a code may have their
/// transfer relayed, as the two sides of a brokered request may. A
/// refusal (no other side, a limit) is said and ends nothing.
fn relay((conn, ip): (ConnId, IpAddr), session: [u8; 8], tx: &Outbox, shared: &Shared) {
    let opened = match shared.mailboxes.partner(conn) {
        None => Err("the other side of the code is not connected".to_string()),
        Some((nameplate, other, other_ip, other_tx)) => {
            let sides = [
                Opening {
                    user: format!("code {nameplate} receiver"),
                    ip,
                    here: Some((conn, tx.clone())),
                },
                Opening {
                    user: format!("code {nameplate} sender"),
                    ip: other_ip,
                    here: Some((other, other_tx.clone())),
                },
            ];
            (shared.relays.open(session, sides, Instant::now())).map(|tokens| (tokens, other_tx))
        }
    };
    let send = |to: &Outbox, msg: ServerMsg| {
        if let Ok(frame) = encode_frame(&msg) {
            let _ = to.try_send(frame);
        }
    };
    match opened {
        Ok(([mine, theirs], other_tx)) => {
            send(
                tx,
                ServerMsg::Relay {
                    session,
                    token: mine,
                },
            );
            send(
                &other_tx,
                ServerMsg::Relay {
                    session,
                    token: theirs,
                },
            );
        }
        Err(why) => send(tx, ServerMsg::RelayRefused { session, why }),
    }
}

fn check(version: u16) -> Result<(), String> {
    if version != PROTOCOL_VERSION {
        return Err(format!(
            "this server speaks protocol version {PROTOCOL_VERSION}, the client {version}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatdrop_proto::decode;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn events(rx: &mut crate::outbox::Inbox) -> Vec<MailboxEvent> {
        std::iter::from_fn(|| rx.try_recv())
            .map(|f| match decode::<ServerMsg>(&f[4..]).unwrap() {
                ServerMsg::Mailbox(e) => e,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_nameplate_pairs_two_sides_once_and_closes_when_one_leaves() {
        let m = Mailboxes::default();
        let (a_tx, mut a_rx) = outbox(16, 1 << 20);
        let (b_tx, mut b_rx) = outbox(16, 1 << 20);
        let (c_tx, _c_rx) = outbox(16, 1 << 20);
        let (a, b, c) = (ConnId(1), ConnId(2), ConnId(3));
        assert_eq!(
            m.open(a, LOCAL, &a_tx),
            Ok(1),
            "the smallest free nameplate"
        );
        assert!(m.send(a, b"early".to_vec()).is_err(), "nobody there yet");
        assert!(m
            .join((b, LOCAL), &b_tx, 2)
            .unwrap_err()
            .contains("no code starts with 2"));
        m.join((b, LOCAL), &b_tx, 1).unwrap();
        assert_eq!(events(&mut a_rx), [MailboxEvent::Joined]);
        assert_eq!(events(&mut b_rx), [MailboxEvent::Joined]);
        // One try: a third comer is refused.
        assert!(m
            .join((c, LOCAL), &c_tx, 1)
            .unwrap_err()
            .contains("tried already"));
        m.send(a, b"pake".to_vec()).unwrap();
        m.send(b, b"pake back".to_vec()).unwrap();
        let got = |body: &[u8]| MailboxEvent::Message {
            body: body.to_vec(),
        };
        assert_eq!(events(&mut b_rx), [got(b"pake")]);
        assert_eq!(events(&mut a_rx), [got(b"pake back")]);
        // Bounded: size and count.
        let long = vec![0u8; MAX_MAILBOX_BODY + 1];
        assert!(m.send(a, long).is_err());
        for _ in 1..MAX_MAILBOX_MESSAGES - 1 {
            m.send(a, b"x".to_vec()).unwrap();
        }
        assert!(m.send(a, b"one too many".to_vec()).is_err());
        // The receiver leaves: the sender is told, the nameplate is free.
        m.leave(b);
        assert_eq!(m.len(), 0);
        let closed = events(&mut a_rx).pop();
        assert!(
            matches!(&closed, Some(MailboxEvent::Closed { why }) if why.contains("left")),
            "{closed:?}"
        );
        assert!(m.send(a, b"x".to_vec()).is_err());
        assert_eq!(m.open(c, LOCAL, &c_tx), Ok(1));
    }
}
