//! End-to-end channels between servers: every message one server sends
//! another is numbered, acknowledged, resent until acknowledged, delivered
//! once and in order, whichever paths its copies took.
//!
//! A channel from A to B lives in epochs. An epoch opens when B asks for A's
//! state (`Resync`: B has just learnt of A, or lost sight of it, or A
//! restarted) and starts with A's `Sync` at sequence number 1; B accepts a new
//! epoch only through its `Sync`, so it never applies changes to a state it
//! does not hold. Chat traffic that was not yet acknowledged is carried into
//! the new epoch, and the sender's message ids, which increase across
//! epochs, let B drop what it had already delivered.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chatdrop_proto::link::{Data, NetMsg, RoutedBody, ServerId};

/// A message not acknowledged this long (ms) is sent again. Failover does
/// not wait for this: a route change resends at once.
pub const RESEND_MS: u64 = 1_000;

/// Each resend without an acknowledgement since doubles the wait before
/// the next, up to this (ms): a destination that is slow to acknowledge
/// (busy, or its link congested) is not sent everything again every
/// second, which would only congest the links more.
pub const MAX_RESEND_MS: u64 = 4_000;

/// Frames resent to one destination at once at most; the rest follow at
/// the next looks (every tick), so a resend never floods a link's queue.
pub const RESEND_BURST: usize = 2_048;

/// How often (ms) a server repeats its request for another's state.
pub const RESYNC_MS: u64 = 2_000;

/// Messages kept for one destination at most; the oldest go first.
pub const MAX_QUEUE: usize = 65_536;

/// Messages that arrived ahead of a gap, kept per source at most.
pub const MAX_REORDER: usize = 4_096;

#[derive(Debug)]
struct Pending {
    seq: u64,
    id: u64,
    msg: NetMsg,
    sent_ms: u64,
}

/// The sending side of the channel to one server.
#[derive(Debug)]
struct Out {
    dst_inc: u64,
    /// 0 until the destination asked for our state.
    epoch: u64,
    next_seq: u64,
    queue: VecDeque<Pending>,
    /// The current wait before a resend: [`RESEND_MS`], doubled by each
    /// resend, back to [`RESEND_MS`] when an acknowledgement comes.
    rto_ms: u64,
}

impl Out {
    fn new(dst_inc: u64) -> Self {
        Out {
            dst_inc,
            epoch: 0,
            next_seq: 1,
            queue: VecDeque::new(),
            rto_ms: RESEND_MS,
        }
    }

    fn data(&self, p: &Pending, src_inc: u64) -> Data {
        frame(p, src_inc, self.dst_inc, self.epoch)
    }
}

fn frame(p: &Pending, src_inc: u64, dst_inc: u64, epoch: u64) -> Data {
    Data {
        src_inc,
        dst_inc,
        epoch,
        seq: p.seq,
        id: p.id,
        msg: p.msg.clone(),
    }
}

/// The receiving side of the channel from one server.
#[derive(Debug)]
struct In {
    src_inc: u64,
    epoch: u64,
    expected: u64,
    last_id: u64,
    buffer: BTreeMap<u64, (u64, NetMsg)>,
    /// Whether we hold the source's state (its `Sync` arrived and we have
    /// not lost sight of it since).
    synced: bool,
    asked_ms: Option<u64>,
}

impl In {
    fn new(src_inc: u64) -> Self {
        In {
            src_inc,
            epoch: 0,
            expected: 1,
            last_id: 0,
            buffer: BTreeMap::new(),
            synced: false,
            asked_ms: None,
        }
    }
}

/// Every channel of one server, both ways.
#[derive(Debug)]
pub struct Channels {
    inc: u64,
    next_id: u64,
    next_epoch: u64,
    outs: HashMap<ServerId, Out>,
    ins: HashMap<ServerId, In>,
    acks: BTreeSet<ServerId>,
    /// Messages dropped because a destination's queue was full.
    pub dropped: u64,
    /// Destinations whose open channel overflowed: numbered frames were
    /// dropped, so the channel must start a new epoch (with a `Sync`).
    reopen: BTreeSet<ServerId>,
}

impl Channels {
    /// The channels of a server in its incarnation `inc`.
    pub fn new(inc: u64) -> Self {
        Channels {
            inc,
            next_id: 1,
            next_epoch: 1,
            outs: HashMap::new(),
            ins: HashMap::new(),
            acks: BTreeSet::new(),
            dropped: 0,
            reopen: BTreeSet::new(),
        }
    }

    fn out(&mut self, dst: ServerId, dst_inc: u64) -> &mut Out {
        let out = self.outs.entry(dst).or_insert_with(|| Out::new(dst_inc));
        // Only a newer incarnation resets the channel: news of an older one
        // (a link-state record slower than the new life's own request) must
        // not close a channel that life opened.
        if dst_inc > out.dst_inc {
            // The destination restarted: what was queued was for users it
            // no longer has.
            *out = Out::new(dst_inc);
        }
        out
    }

    /// Queues `msg` for `dst` (in incarnation `dst_inc`). Returns the frame
    /// to send now, unless the channel is not open yet: then it goes out
    /// after the `Sync` when it opens (state changes are not kept, since the
    /// `Sync` will carry them).
    pub fn send(&mut self, dst: ServerId, dst_inc: u64, msg: NetMsg, now: u64) -> Option<Data> {
        let id = self.next_id;
        self.next_id += 1;
        let inc = self.inc;
        let state = msg.is_state();
        let out = self.out(dst, dst_inc);
        if out.epoch == 0 && state {
            return None;
        }
        let mut dropped = 0;
        while out.queue.len() >= MAX_QUEUE {
            out.queue.pop_front();
            dropped += 1;
        }
        if dropped > 0 && out.epoch != 0 {
            // The receiver would wait for the dropped numbers forever.
            self.reopen.insert(dst);
        }
        let out = self.out(dst, dst_inc);
        let seq = if out.epoch == 0 {
            0
        } else {
            out.next_seq += 1;
            out.next_seq - 1
        };
        let p = Pending {
            seq,
            id,
            msg,
            sent_ms: now,
        };
        let data = (out.epoch != 0).then(|| out.data(&p, inc));
        out.queue.push_back(p);
        self.dropped += dropped;
        data
    }

    /// Channels that overflowed and must be opened again, with the
    /// incarnation of their destination.
    pub fn take_reopens(&mut self) -> Vec<(ServerId, u64)> {
        std::mem::take(&mut self.reopen)
            .into_iter()
            .filter_map(|d| self.outs.get(&d).map(|o| (d, o.dst_inc)))
            .collect()
    }

    /// Forgets what is queued for `dst` (gone for long).
    pub fn forget(&mut self, dst: &ServerId) {
        self.outs.remove(dst);
        self.reopen.remove(dst);
    }

    /// Opens a new epoch to `dst`: `sync` first, then the traffic not yet
    /// acknowledged. Returns every frame to send.
    pub fn open(&mut self, dst: ServerId, dst_inc: u64, sync: NetMsg, now: u64) -> Vec<Data> {
        self.reopen.remove(&dst);
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let inc = self.inc;
        let out = self.out(dst, dst_inc);
        out.epoch = epoch;
        // A new epoch starts with everything sent now: no backed-off wait.
        out.rto_ms = RESEND_MS;
        out.queue.retain(|p| !p.msg.is_state());
        let mut dropped = 0;
        while out.queue.len() > MAX_QUEUE / 2 {
            // Room to go on after an overflow.
            out.queue.pop_front();
            dropped += 1;
        }
        out.queue.push_front(Pending {
            seq: 0,
            id: 0,
            msg: sync,
            sent_ms: now,
        });
        for (i, p) in out.queue.iter_mut().enumerate() {
            p.seq = i as u64 + 1;
            p.sent_ms = now;
        }
        out.next_seq = out.queue.len() as u64 + 1;
        let frames = out.queue.iter().map(|p| out.data(p, inc)).collect();
        self.dropped += dropped;
        frames
    }

    /// Takes an acknowledgement from `from`.
    pub fn on_ack(&mut self, from: ServerId, src_inc: u64, dst_inc: u64, epoch: u64, seq: u64) {
        if dst_inc != self.inc {
            return;
        }
        let Some(out) = self.outs.get_mut(&from) else {
            return;
        };
        if out.dst_inc != src_inc || out.epoch != epoch {
            return;
        }
        let before = out.queue.len();
        while out.queue.front().is_some_and(|p| p.seq <= seq) {
            out.queue.pop_front();
        }
        if out.queue.len() < before {
            out.rto_ms = RESEND_MS;
        }
    }

    /// Takes a numbered message from `src`; returns what is now deliverable,
    /// in order (a `Sync` opening an epoch comes first).
    pub fn on_data(&mut self, src: ServerId, data: Data) -> Vec<NetMsg> {
        if data.dst_inc != self.inc {
            return Vec::new(); // meant for an earlier life of this server
        }
        let chan = self.ins.entry(src).or_insert_with(|| In::new(data.src_inc));
        if data.src_inc < chan.src_inc {
            return Vec::new();
        }
        if data.src_inc > chan.src_inc {
            *chan = In::new(data.src_inc);
        }
        if data.epoch > chan.epoch {
            if data.seq != 1 {
                return Vec::new(); // its Sync will come again first
            }
            chan.epoch = data.epoch;
            chan.expected = 1;
            chan.buffer.clear();
        } else if data.epoch < chan.epoch || !chan.synced {
            // Older epoch; or this server dropped the source's state (it
            // lost sight of it) and takes nothing more until the new epoch's
            // `Sync`: a line from a user it no longer knows would be lost.
            // Unacknowledged, such messages come again after the `Sync`.
            return Vec::new();
        }
        self.acks.insert(src);
        let mut got = Vec::new();
        if data.seq < chan.expected {
            return got; // a copy of something delivered
        }
        if data.seq > chan.expected {
            if chan.buffer.len() < MAX_REORDER {
                chan.buffer.insert(data.seq, (data.id, data.msg));
            }
            return got;
        }
        let mut next = Some((data.id, data.msg));
        while let Some((id, msg)) = next.take() {
            chan.expected += 1;
            if matches!(msg, NetMsg::Sync { .. }) {
                chan.synced = true;
                got.push(msg);
            } else if id > chan.last_id {
                chan.last_id = id;
                got.push(msg);
            }
            next = chan.buffer.remove(&chan.expected);
        }
        got
    }

    /// The acknowledgements owed since the last call, one per source.
    pub fn take_acks(&mut self) -> Vec<(ServerId, RoutedBody)> {
        let inc = self.inc;
        std::mem::take(&mut self.acks)
            .into_iter()
            .filter_map(|src| {
                let chan = self.ins.get(&src)?;
                Some((
                    src,
                    RoutedBody::Ack {
                        src_inc: inc,
                        dst_inc: chan.src_inc,
                        epoch: chan.epoch,
                        seq: chan.expected - 1,
                    },
                ))
            })
            .collect()
    }

    /// Frames not acknowledged within [`RESEND_MS`], to send again.
    pub fn due(&mut self, now: u64) -> Vec<(ServerId, Data)> {
        let inc = self.inc;
        let mut again = Vec::new();
        for (dst, out) in self.outs.iter_mut() {
            if out.epoch == 0 {
                continue;
            }
            let (dst_inc, epoch, rto) = (out.dst_inc, out.epoch, out.rto_ms);
            let before = again.len();
            for p in out.queue.iter_mut() {
                if again.len() - before >= RESEND_BURST {
                    break;
                }
                if p.sent_ms + rto <= now {
                    p.sent_ms = now;
                    again.push((*dst, frame(p, inc, dst_inc, epoch)));
                }
            }
            if again.len() > before {
                out.rto_ms = (rto * 2).min(MAX_RESEND_MS);
            }
        }
        again
    }

    /// Every frame not yet acknowledged by `dst`, to send along a new route.
    pub fn resend_all(&mut self, dst: &ServerId, now: u64) -> Vec<Data> {
        let inc = self.inc;
        let Some(out) = self.outs.get_mut(dst) else {
            return Vec::new();
        };
        if out.epoch == 0 {
            return Vec::new();
        }
        // The first burst now; the rest at the next looks (marked as sent
        // long ago, so they are due at once).
        out.rto_ms = RESEND_MS;
        for (i, p) in out.queue.iter_mut().enumerate() {
            p.sent_ms = if i < RESEND_BURST { now } else { 0 };
        }
        out.queue
            .iter()
            .take(RESEND_BURST)
            .map(|p| out.data(p, inc))
            .collect()
    }

    /// Requests for the state of each reachable server whose state this one
    /// does not hold, repeated every [`RESYNC_MS`] until its `Sync` arrives.
    pub fn resyncs<'a>(
        &mut self,
        now: u64,
        reachable: impl Iterator<Item = (&'a ServerId, u64)>,
    ) -> Vec<(ServerId, RoutedBody)> {
        let inc = self.inc;
        let mut asks = Vec::new();
        for (id, src_inc) in reachable {
            let chan = self.ins.entry(*id).or_insert_with(|| In::new(src_inc));
            if chan.src_inc < src_inc {
                *chan = In::new(src_inc);
            }
            if chan.synced || chan.asked_ms.is_some_and(|t| t + RESYNC_MS > now) {
                continue;
            }
            chan.asked_ms = Some(now);
            asks.push((*id, RoutedBody::Resync { src_inc: inc }));
        }
        asks
    }

    /// `src` went out of reach: its state is dropped, and asked for again
    /// when it comes back.
    pub fn lost(&mut self, src: &ServerId) {
        if let Some(chan) = self.ins.get_mut(src) {
            chan.synced = false;
            chan.asked_ms = None;
        }
    }

    /// Whether this server holds `src`'s state.
    pub fn synced(&self, src: &ServerId) -> bool {
        self.ins.get(src).is_some_and(|c| c.synced)
    }

    /// Messages queued for `dst`, sent or not, not yet acknowledged.
    pub fn unacked(&self, dst: &ServerId) -> usize {
        self.outs.get(dst).map_or(0, |o| o.queue.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ServerId = [1; 16];
    const B: ServerId = [2; 16];

    fn say(n: u32) -> NetMsg {
        NetMsg::Say {
            from: "ann".into(),
            room: "r".into(),
            to: chatdrop_proto::Target::All,
            text: n.to_string(),
            ts: 0,
        }
    }

    fn sync() -> NetMsg {
        NetMsg::Sync {
            users: vec![],
            rooms: vec![],
            bindings: vec![],
        }
    }

    fn texts(msgs: &[NetMsg]) -> Vec<String> {
        msgs.iter()
            .map(|m| match m {
                NetMsg::Say { text, .. } => text.clone(),
                NetMsg::Sync { .. } => "sync".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// A (incarnation 10) and B (incarnation 20), B synced with A.
    fn pair() -> (Channels, Channels) {
        let mut a = Channels::new(10);
        let mut b = Channels::new(20);
        let asks = b.resyncs(0, [(&A, 10)].into_iter());
        assert_eq!(asks.len(), 1);
        let frames = a.open(B, 20, sync(), 0);
        let got: Vec<NetMsg> = frames.into_iter().flat_map(|d| b.on_data(A, d)).collect();
        assert_eq!(texts(&got), ["sync"]);
        assert!(b.synced(&A));
        (a, b)
    }

    fn ack(a: &mut Channels, b: &mut Channels) {
        for (_, body) in b.take_acks() {
            if let RoutedBody::Ack {
                src_inc,
                dst_inc,
                epoch,
                seq,
            } = body
            {
                a.on_ack(B, src_inc, dst_inc, epoch, seq);
            }
        }
    }

    #[test]
    fn in_order_once_despite_reordering_and_copies() {
        let (mut a, mut b) = pair();
        let frames: Vec<Data> = (1..=5).filter_map(|n| a.send(B, 20, say(n), 0)).collect();
        let mut got = Vec::new();
        // 3 and 5 overtake, 2 arrives twice.
        for i in [2usize, 4, 0, 1, 1, 3] {
            got.extend(b.on_data(A, frames[i].clone()));
        }
        assert_eq!(texts(&got), ["1", "2", "3", "4", "5"]);
        ack(&mut a, &mut b);
        assert_eq!(a.unacked(&B), 0);
    }

    #[test]
    fn unacknowledged_messages_are_resent_and_delivered_once() {
        let (mut a, mut b) = pair();
        let lost: Vec<Data> = (1..=3).filter_map(|n| a.send(B, 20, say(n), 0)).collect();
        assert!(a.due(RESEND_MS - 1).is_empty());
        // The first went through; its ack was lost.
        assert_eq!(texts(&b.on_data(A, lost[0].clone())), ["1"]);
        b.take_acks();
        let again = a.due(RESEND_MS);
        assert_eq!(again.len(), 4, "the Sync and all three messages");
        let got: Vec<NetMsg> = again
            .into_iter()
            .flat_map(|(_, d)| b.on_data(A, d))
            .collect();
        assert_eq!(texts(&got), ["2", "3"]);
    }

    /// A destination slow to acknowledge is not sent everything again each
    /// second: at most a burst at a time, and each resend waits twice as
    /// long as the one before, until an acknowledgement comes. (Before,
    /// 10,000 unacknowledged messages went out again every second; with
    /// linked servers busy logging in 100,000 clients that filled the links'
    /// queues and dropped them.)
    #[test]
    fn resends_to_a_slow_destination_are_bounded_and_back_off() {
        let (mut a, mut b) = pair();
        for n in 0..10_000 {
            a.send(B, 20, say(n), 0);
        }
        let first = a.due(RESEND_MS);
        assert_eq!(first.len(), RESEND_BURST);
        // The wait doubled: nothing more is due until 2 s after a send.
        assert!(a.due(RESEND_MS + 100).is_empty());
        let second = a.due(2 * RESEND_MS);
        assert_eq!(second.len(), RESEND_BURST, "the next burst, not all");
        assert!(a.due(3 * RESEND_MS).is_empty(), "waiting 4 s now");
        assert!(a.due(5 * RESEND_MS).len() == RESEND_BURST, "4 s at most");
        // An acknowledgement of the first ones brings the wait back to 1 s.
        for (_, d) in first {
            b.on_data(A, d);
        }
        ack(&mut a, &mut b);
        assert!(!a.due(10 * RESEND_MS).is_empty());
        assert!(a.resend_all(&B, 11 * RESEND_MS).len() <= RESEND_BURST);
    }

    #[test]
    fn a_new_epoch_carries_traffic_over_without_duplicates() {
        let (mut a, mut b) = pair();
        let frames: Vec<Data> = (1..=3).filter_map(|n| a.send(B, 20, say(n), 0)).collect();
        // B got 1 and 2, then lost sight of A and asks again.
        b.on_data(A, frames[0].clone());
        b.on_data(A, frames[1].clone());
        b.lost(&A);
        assert!(!b.synced(&A));
        assert_eq!(b.resyncs(5, [(&A, 10)].into_iter()).len(), 1);
        let online = NetMsg::Enter {
            user: "ann".into(),
            room: "r".into(),
        };
        assert!(a.send(B, 20, online, 5).is_some());
        let reopened = a.open(B, 20, sync(), 6);
        // Sync, then 1, 2, 3 (the state change is left to the Sync).
        assert_eq!(reopened.len(), 4);
        // A frame of the new epoch before its Sync is not taken.
        assert!(b.on_data(A, reopened[2].clone()).is_empty());
        let got: Vec<NetMsg> = reopened.into_iter().flat_map(|d| b.on_data(A, d)).collect();
        assert_eq!(texts(&got), ["sync", "3"]);
        // Late copies of the old epoch change nothing.
        assert!(b.on_data(A, frames[2].clone()).is_empty());
    }

    #[test]
    fn a_restarted_destination_gets_nothing_meant_for_its_former_life() {
        let (mut a, _) = pair();
        let old = a.send(B, 20, say(1), 0).expect("open channel");
        let mut b2 = Channels::new(21);
        assert!(b2.on_data(A, old).is_empty());
        // Until the new B asks, nothing is sent to it.
        assert!(a.send(B, 21, say(2), 1).is_none());
        b2.resyncs(1, [(&A, 10)].into_iter());
        let got: Vec<NetMsg> = a
            .open(B, 21, sync(), 2)
            .into_iter()
            .flat_map(|d| b2.on_data(A, d))
            .collect();
        assert_eq!(texts(&got), ["sync", "2"]);
    }

    #[test]
    fn a_restarted_source_starts_afresh() {
        let (_, mut b) = pair();
        let mut a2 = Channels::new(11);
        b.lost(&A);
        let asks = b.resyncs(0, [(&A, 11)].into_iter());
        assert_eq!(asks.len(), 1);
        let got: Vec<NetMsg> = a2
            .open(B, 20, sync(), 0)
            .into_iter()
            .chain(a2.send(B, 20, say(7), 0))
            .flat_map(|d| b.on_data(A, d))
            .collect();
        assert_eq!(texts(&got), ["sync", "7"]);
    }

    #[test]
    fn nothing_is_taken_between_losing_a_source_and_its_new_sync() {
        let (mut a, mut b) = pair();
        b.take_acks();
        b.lost(&A);
        // A never noticed and goes on in the old epoch: B must not take it
        // (it no longer knows A's users), nor acknowledge it.
        let line = a.send(B, 20, say(1), 0).expect("open channel");
        assert!(b.on_data(A, line).is_empty());
        assert!(b.take_acks().is_empty());
        b.resyncs(0, [(&A, 10)].into_iter());
        let got: Vec<NetMsg> = a
            .open(B, 20, sync(), 1)
            .into_iter()
            .flat_map(|d| b.on_data(A, d))
            .collect();
        assert_eq!(texts(&got), ["sync", "1"], "the line comes after the state");
    }

    #[test]
    fn an_overflowing_channel_starts_a_new_epoch() {
        let (mut a, mut b) = pair();
        let mut first = None;
        for n in 0..=MAX_QUEUE as u32 {
            let d = a.send(B, 20, say(n), 0);
            first = first.or(d);
        }
        // The oldest frames are gone: B cannot go on in this epoch.
        assert_eq!(a.take_reopens(), [(B, 20)]);
        assert!(a.dropped > 0);
        let got: Vec<NetMsg> = a
            .open(B, 20, sync(), 1)
            .into_iter()
            .chain(first)
            .flat_map(|d| b.on_data(A, d))
            .collect();
        assert_eq!(texts(&got[..1]), ["sync"]);
        assert_eq!(got.len(), 1 + MAX_QUEUE / 2, "the newest half goes on");
    }

    #[test]
    fn news_of_an_older_incarnation_does_not_close_a_channel() {
        let (mut a, mut b) = pair();
        // B's new life asked and A opened; a slower record of the old life
        // must not reset the channel.
        let mut b2 = Channels::new(21);
        b2.resyncs(0, [(&A, 10)].into_iter());
        let opened = a.open(B, 21, sync(), 0);
        let one = a.send(B, 20, say(1), 0).expect("the channel stays open");
        assert_eq!(one.dst_inc, 21);
        let got: Vec<NetMsg> = opened
            .into_iter()
            .chain([one])
            .chain(a.send(B, 21, say(2), 0))
            .flat_map(|d| b2.on_data(A, d))
            .collect();
        assert_eq!(texts(&got), ["sync", "1", "2"]);
        // The old life gets nothing more.
        assert!(a
            .send(B, 20, say(3), 0)
            .is_some_and(|d| b.on_data(A, d).is_empty()));
    }

    #[test]
    fn requests_for_state_repeat_until_the_sync_arrives() {
        let mut b = Channels::new(20);
        assert_eq!(b.resyncs(0, [(&A, 10)].into_iter()).len(), 1);
        assert!(b.resyncs(RESYNC_MS - 1, [(&A, 10)].into_iter()).is_empty());
        assert_eq!(b.resyncs(RESYNC_MS, [(&A, 10)].into_iter()).len(), 1);
    }
}
