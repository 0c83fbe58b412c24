//! The receiving end of a session, free of I/O: it repeats `Start` until
//! the sender's `Begin` (echoing the token of the sender's `Challenge`,
//! which proves its address), to each of the sender's candidate addresses
//! until one answers (and to any address a `Punch` came from: see
//! `wire.rs`), answers the sender's probes, checks the packet
//! size `Begin` fixes, runs the ARQ's [`Receiver`], and stays a moment
//! after the last byte for a sender that missed its acknowledgement (with
//! nothing to fetch, the sender's `Done` ends it while it opens). The
//! driver ([`super::fetch()`]) feeds it the frames that arrive and the time,
//! sends what it says, and writes the bytes it hands back.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatdrop_arq::{Frame, Receiver, Verdict};

use super::{Event, FetchOptions, Span};
use crate::wire::{Msg, TOKEN_LEN};
use crate::TransferError;

/// How often `Start` is repeated until the sender answers: it may be lost,
/// and nothing else would bring the sender to begin.
const START_REPEAT: Duration = Duration::from_millis(250);
/// How long data may stop before the receiver sends its acknowledgement
/// again: if its own address changed (a NAT's new mapping), the sender
/// learns the new one only from what it sends, and it sends only on
/// arrivals otherwise, which stopped with the change.
const NUDGE: Duration = Duration::from_millis(300);
/// The longest wait between two acknowledgements sent again while nothing
/// comes: the wait doubles from [`NUDGE`] up to this.
const MAX_NUDGE: Duration = Duration::from_millis(2_400);
/// How long a finished receiver stays to answer a sender that missed its
/// last ack, when the sender's `Done` does not come.
const LINGER: Duration = Duration::from_secs(1);
/// Probe answers held between two polls. The sender has one probe out at
/// a time, so more than a few pending means old copies: the newest are
/// the ones it waits for.
const MAX_ANSWERS: usize = 4;
/// Candidate addresses of the sender at most: the ones it gave and the
/// ones its punches came from.
pub const MAX_TRIED: usize = 16;
/// Rounds of `Start` sent to every candidate; after them only the first
/// (the address the server saw) is still tried, until the give-up. A
/// candidate that did not answer within three seconds is not a path.
const ROUNDS_ALL: u32 = 12;

/// Bytes of the file that arrived: the driver writes them at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write<'a> {
    /// Where in the file they go.
    pub offset: u64,
    /// The data packet's payload, in the datagram it came in (not copied).
    pub bytes: &'a [u8],
}

/// The receiving end of one session (see the module docs).
///
/// The driver's loop: [`poll_msg`](Self::poll_msg) until empty, sending
/// what it gives; [`poll_end`](Self::poll_end) to learn whether the session
/// is over; otherwise sleep until [`poll_timeout`](Self::poll_timeout) or a
/// datagram, and pass on either ([`handle_timeout`](Self::handle_timeout),
/// [`handle`](Self::handle), writing what it returns).
#[derive(Debug)]
pub struct RecvSession {
    opts: FetchOptions,
    /// Where the sender may be, first the likeliest.
    candidates: Vec<SocketAddr>,
    /// The sender's address, once a frame of the session came from it:
    /// nothing from anywhere else counts after that.
    peer: Option<SocketAddr>,
    /// `Start`s of this round still to send.
    starts: VecDeque<SocketAddr>,
    /// Rounds of `Start` begun.
    rounds: u32,
    isn: u32,
    /// What is asked for.
    span: Span,
    /// The stream's first and last-plus-one offsets (see [`Span`]).
    resume_from: u64,
    size: u64,
    /// `Enough` frames still to send, once the session was stopped.
    enough: u8,
    phase: Phase,
    /// The ARQ, from the sender's `Begin` on.
    arq: Option<Receiver>,
    /// Sizes of probes to answer, oldest first; at most [`MAX_ANSWERS`].
    answers: VecDeque<u32>,
    /// Data packets taken since `Begin`.
    packets: u64,
    /// Where everything had arrived up to when the sender last changed
    /// the packet size: the new run starts where the sender knew of, at
    /// most here.
    floor: u64,
    /// Changes of the packet size taken.
    resizes: u32,
    /// The sender's token for this end's address, echoed in `Start` (zero
    /// until its `Challenge` came).
    token: [u8; TOKEN_LEN],
    /// A `Challenge` came while data flows: this end moved (its NAT gave
    /// it another mapping), and a `Start` with the token proves the new
    /// address to the sender.
    prove: bool,
    /// Events for the driver: [`Event::Started`] when the sender's
    /// address is known, [`Event::Began`]; each once.
    events: VecDeque<Event>,
}

#[derive(Debug)]
enum Phase {
    /// `Start` is repeated at `next_start` until `Begin` comes; the session
    /// gives up at `give_up`.
    Opening {
        next_start: Instant,
        give_up: Instant,
    },
    /// Data flows; the acknowledgement goes again at `nudge` if nothing
    /// came before, and then `every` later (doubling).
    Receiving {
        nudge: Instant,
        every: Duration,
    },
    /// Every byte is here; the session ends at `until`, or when `Done`
    /// comes.
    Lingering {
        until: Instant,
    },
    Over(Option<Result<(), TransferError>>),
}

impl RecvSession {
    /// A session fetching `span` from `peer` with `opts`, numbering
    /// packets from `isn` (the driver's random choice), opening at `now`.
    /// Its packet size is at most `opts.cfg.mss`.
    pub fn new(
        peer: SocketAddr,
        opts: &FetchOptions,
        isn: u32,
        span: Span,
        now: Instant,
    ) -> RecvSession {
        Self::with_candidates(&[peer], opts, isn, span, now)
    }

    /// Like [`new`](Self::new), with the sender at one of `candidates`
    /// (at most [`MAX_TRIED`] are used, repeats dropped): the first
    /// that answers is the session's.
    pub fn with_candidates(
        candidates: &[SocketAddr],
        opts: &FetchOptions,
        isn: u32,
        span: Span,
        now: Instant,
    ) -> RecvSession {
        let mut unique = Vec::with_capacity(candidates.len().min(MAX_TRIED));
        for c in candidates {
            if unique.len() < MAX_TRIED && !unique.contains(c) {
                unique.push(*c);
            }
        }
        RecvSession {
            opts: opts.clone(),
            candidates: unique,
            peer: None,
            starts: VecDeque::new(),
            rounds: 0,
            isn,
            span,
            resume_from: span.from,
            size: span.end(),
            enough: 0,
            phase: Phase::Opening {
                next_start: now,
                give_up: now + opts.cfg.idle_timeout,
            },
            arq: None,
            answers: VecDeque::with_capacity(MAX_ANSWERS),
            packets: 0,
            floor: 0,
            resizes: 0,
            token: [0; TOKEN_LEN],
            prove: false,
            events: VecDeque::new(),
        }
    }

    /// The sender's address, once a frame of the session came from it.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Whether the sender's `Begin` was taken: from then on there are
    /// bytes to write, hash and record.
    pub fn began(&self) -> bool {
        self.arq.is_some()
    }

    /// The stream's offset up to which everything arrived (its start,
    /// before `Begin`).
    pub fn contiguous_bytes(&self) -> u64 {
        self.arq
            .as_ref()
            .map_or(self.resume_from.min(self.size), Receiver::contiguous_bytes)
            .max(self.floor)
    }

    /// Changes of the packet size taken (see [`Msg::Resize`]): bytes that
    /// arrived ahead of a gap before one may come, and be handed out to
    /// write, again.
    pub fn resizes(&self) -> u32 {
        self.resizes
    }

    /// Ends the session at once, done: what arrived is all this end
    /// needs (another owner sends the rest). The sender is told with
    /// `Enough`, three times, as losing all three is unlikely; a sender
    /// that misses them stops after its idle timeout.
    pub fn enough(&mut self) {
        if !matches!(self.phase, Phase::Over(_)) {
            self.enough = if self.peer.is_some() { 3 } else { 0 };
            self.phase = Phase::Over(Some(Ok(())));
        }
    }

    /// Data packets taken since `Begin`, copies included.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Takes a frame that arrived authentic from `from` at `now`; returns
    /// the bytes to write if it brought new data. The driver must write
    /// them before it polls anything else.
    pub fn handle<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        msg: Msg<'a>,
    ) -> Option<Write<'a>> {
        let data = matches!(msg, Msg::Arq(Frame::Data { .. }));
        let flowing = matches!(
            self.phase,
            Phase::Receiving { .. } | Phase::Lingering { .. }
        );
        match self.peer {
            // Fresh data of the session from another address (the driver
            // drops copies of frames it opened before): the sender moved
            // (its NAT gave its socket another mapping, its laptop another
            // network). Acknowledgements follow it there.
            Some(peer) if peer != from && data && flowing => {
                self.peer = Some(from);
                self.events.push_back(Event::Moved { peer: from });
            }
            Some(peer) if peer != from => return None,
            Some(_) => {}
            None if matches!(msg, Msg::Punch) => {
                self.punched_from(from);
                return None;
            }
            // Only the candidates (those given, those punches came from)
            // may be the sender; the first to send a frame of the session
            // is.
            None if !self.candidates.contains(&from) => return None,
            None => self.opened(from),
        }
        let cap = self.opts.cfg.mss;
        match (&self.phase, msg) {
            (
                Phase::Receiving { .. } | Phase::Lingering { .. },
                Msg::Arq(Frame::Data { seq, payload }),
            ) => {
                self.packets += 1;
                let arq = self.arq.as_mut()?;
                let verdict = arq.on_data(now, seq, payload.len());
                if let Phase::Receiving { nudge, every } = &mut self.phase {
                    (*nudge, *every) = (now + NUDGE, NUDGE);
                    if arq.is_complete() {
                        self.phase = Phase::Lingering {
                            until: now + LINGER,
                        };
                    }
                }
                match verdict {
                    Verdict::Write { offset } => Some(Write {
                        offset,
                        bytes: payload,
                    }),
                    _ => None,
                }
            }
            (Phase::Lingering { .. }, Msg::Arq(Frame::Done)) => {
                self.phase = Phase::Over(Some(Ok(())));
                None
            }
            // Nothing to fetch (an empty file, or a download resumed at
            // its very end): the sender, with nothing to send, ends with
            // `Done` and no `Begin`, so its `Done` is all there is to
            // wait for.
            (Phase::Opening { .. }, Msg::Arq(Frame::Done)) if self.resume_from >= self.size => {
                self.phase = Phase::Over(Some(Ok(())));
                None
            }
            (Phase::Over(_), _) => None,
            (_, Msg::Arq(Frame::Abort(why))) => {
                let aborted = TransferError::Aborted(why.to_string());
                self.phase = Phase::Over(Some(Err(aborted)));
                None
            }
            // Probes come while data flows too: the sender checks that the
            // path still carries its packet size.
            (_, Msg::Probe { size }) if size <= cap => {
                if !self.answers.contains(&size) {
                    if self.answers.len() == MAX_ANSWERS {
                        self.answers.pop_front();
                    }
                    self.answers.push_back(size);
                }
                None
            }
            // The sender wants proof that this address is ours: `Start`
            // again at once, echoing the token.
            (Phase::Opening { .. }, Msg::Challenge { token }) => {
                self.token = token;
                if let Phase::Opening { next_start, .. } = &mut self.phase {
                    *next_start = now;
                }
                None
            }
            // The sender saw this end at a new address: prove it.
            (Phase::Receiving { .. } | Phase::Lingering { .. }, Msg::Challenge { token }) => {
                self.token = token;
                self.prove = true;
                None
            }
            (Phase::Opening { .. }, Msg::Begin { mss }) => {
                self.begin(now, mss);
                None
            }
            (Phase::Receiving { .. } | Phase::Lingering { .. }, Msg::Resize { mss, isn, from }) => {
                self.resize(now, mss, isn, from);
                None
            }
            // Data before `Begin` is dropped: it will come again. `Done`
            // before the last byte is a sender that is wrong, or a copy
            // from a session long gone: waiting for the data is safe.
            _ => None,
        }
    }

    /// A `Punch` came from `from` before any other frame: the sender is
    /// reachable there too, maybe only there (its NAT gave this mapping).
    /// Answered with a `Start` at once; kept as a candidate, within the
    /// bound, so that the next rounds try it as well.
    fn punched_from(&mut self, from: SocketAddr) {
        if !matches!(self.phase, Phase::Opening { .. }) {
            return;
        }
        if !self.candidates.contains(&from) {
            if self.candidates.len() >= MAX_TRIED {
                return;
            }
            self.candidates.push(from);
        }
        if !self.starts.contains(&from) {
            self.starts.push_back(from);
        }
    }

    /// The sender may also be reached at `addr`, learned after the
    /// session opened (a relay): it goes first, so that it stays tried
    /// after the rounds to every candidate, and a new round begins now.
    /// Ignored once the sender answered.
    pub fn add_candidate(&mut self, now: Instant, addr: SocketAddr) {
        let Phase::Opening { next_start, .. } = &mut self.phase else {
            return;
        };
        if self.peer.is_some() {
            return;
        }
        self.candidates.retain(|c| *c != addr);
        self.candidates.truncate(MAX_TRIED - 1);
        self.candidates.insert(0, addr);
        self.rounds = 0;
        *next_start = now;
    }

    fn opened(&mut self, from: SocketAddr) {
        self.peer = Some(from);
        self.starts.clear();
        self.events.push_back(Event::Started {
            peer: from,
            isn: self.isn,
            resume_from: self.span.from,
            to: self.span.to,
        });
    }

    fn begin(&mut self, now: Instant, mss: u32) {
        let cap = self.opts.cfg.mss;
        if !(1..=cap).contains(&mss) {
            let e = format!("the sender chose {mss}-byte packets, outside 1..={cap}");
            self.phase = Phase::Over(Some(Err(TransferError::Invalid(e))));
            return;
        }
        let mut cfg = self.opts.cfg.clone();
        cfg.mss = mss;
        let arq = Receiver::new(cfg, self.isn, self.resume_from, self.size, now);
        // A download resumed at its very end has nothing to wait for.
        self.phase = if arq.is_complete() {
            Phase::Lingering {
                until: now + LINGER,
            }
        } else {
            Phase::Receiving {
                nudge: now + NUDGE,
                every: NUDGE,
            }
        };
        self.arq = Some(arq);
        self.answers.clear();
        self.events.push_back(Event::Began { mss });
    }

    /// The sender changes the packet size to `mss`, sending the stream
    /// again from `from` in packets numbered from `isn`. Taken only as a
    /// later run than this one (`isn` at or past the end of this run's
    /// numbers: the sender numbers each run after every packet of the one
    /// before, so a copy of this run's `Resize`, or one of an older run,
    /// changes nothing, while one whose run followed a run this end never
    /// heard of is still taken), within the cap, and from where this end
    /// has everything (the sender knows no more than was acknowledged).
    fn resize(&mut self, now: Instant, mss: u32, isn: u32, from: u64) {
        let Some(arq) = &self.arq else {
            return;
        };
        let next = self.isn.wrapping_add(arq.packets() as u32);
        let have = self.contiguous_bytes();
        let later = isn.wrapping_sub(next) < 1 << 31;
        if !later || !(1..=self.opts.cfg.mss).contains(&mss) {
            return;
        }
        if from < self.resume_from.min(self.size) || from > have {
            return;
        }
        let mut cfg = self.opts.cfg.clone();
        cfg.mss = mss;
        self.floor = have;
        self.isn = isn;
        self.resizes += 1;
        self.arq = Some(Receiver::new(cfg, isn, from, self.size, now));
        self.phase = Phase::Receiving {
            nudge: now + NUDGE,
            every: NUDGE,
        };
        self.events.push_back(Event::Resized { mss });
    }

    /// A frame to seal and send now to its address (`Start`, `ProbeAck`,
    /// an acknowledgement), if one is due. An acknowledgement's `dropped`
    /// is 0, for the driver, which owns the socket, to fill in.
    pub fn poll_msg(&mut self, now: Instant) -> Option<(SocketAddr, Msg<'static>)> {
        let start = Msg::Start {
            isn: self.isn,
            from: self.span.from,
            to: self.span.to,
            token: self.token,
        };
        let msg = match &mut self.phase {
            Phase::Opening { next_start, .. } => {
                if now >= *next_start {
                    *next_start = now + START_REPEAT;
                    self.rounds += 1;
                    match self.peer {
                        Some(peer) => self.starts = VecDeque::from([peer]),
                        None if self.rounds <= ROUNDS_ALL => {
                            self.starts = self.candidates.iter().copied().collect();
                        }
                        None => self.starts = self.candidates.iter().take(1).copied().collect(),
                    }
                }
                if let Some(to) = self.starts.pop_front() {
                    return Some((to, start));
                }
                self.answers.pop_front().map(|size| Msg::ProbeAck { size })
            }
            Phase::Receiving { .. } | Phase::Lingering { .. }
                if std::mem::take(&mut self.prove) =>
            {
                Some(start)
            }
            Phase::Receiving { .. } | Phase::Lingering { .. } => {
                if let Some(size) = self.answers.pop_front() {
                    return Some((self.peer?, Msg::ProbeAck { size }));
                }
                let ack = self.arq.as_mut()?.poll_ack()?;
                Some(Msg::Arq(Frame::Ack(ack)))
            }
            Phase::Over(_) if self.enough > 0 => {
                self.enough -= 1;
                Some(Msg::Enough)
            }
            Phase::Over(_) => None,
        };
        Some((self.peer?, msg?))
    }

    /// Something for the driver's set-up, if anything happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// How the session ended, once it has (and its `Enough` went): `Ok`
    /// when every byte arrived, or when it was [stopped](Self::enough).
    /// Given once.
    pub fn poll_end(&mut self) -> Option<Result<(), TransferError>> {
        match &mut self.phase {
            Phase::Over(result) if self.enough == 0 => result.take(),
            _ => None,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due, once
    /// nothing is left to poll.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Opening {
                next_start,
                give_up,
            } => Some((*next_start).min(*give_up)),
            Phase::Receiving { nudge, .. } => {
                let arq = self.arq.as_ref()?.poll_timeout();
                Some(arq.map_or(*nudge, |t| t.min(*nudge)))
            }
            Phase::Lingering { until } => Some(*until),
            Phase::Over(_) => None,
        }
    }

    /// Runs the timers due at `now`: the give-up of an opening the sender
    /// never answered, the acknowledgement sent again while nothing comes,
    /// the ARQ's (a sender gone silent), the end of the linger.
    pub fn handle_timeout(&mut self, now: Instant) {
        let silent = match &mut self.phase {
            Phase::Opening { give_up, .. } if now >= *give_up => Some(format!(
                "no answer from the peer for {:?}",
                self.opts.cfg.idle_timeout
            )),
            Phase::Receiving { nudge, every } => self.arq.as_mut().and_then(|arq| {
                // Nothing came for a while: the acknowledgement again.
                if now >= *nudge {
                    *every = (*every * 2).min(MAX_NUDGE);
                    *nudge = now + *every;
                    arq.ack_again();
                }
                arq.on_timeout(now);
                arq.failure().map(|e| e.to_string())
            }),
            Phase::Lingering { until } if now >= *until => {
                self.phase = Phase::Over(Some(Ok(())));
                None
            }
            _ => None,
        };
        if let Some(why) = silent {
            self.phase = Phase::Over(Some(Err(TransferError::PeerSilent(why))));
        }
    }
}

#[cfg(test)]
mod tests;
