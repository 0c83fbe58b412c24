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
//!
//! A channel keeps at most [`WINDOW_BYTES`] (by [`NetMsg::weight`]) sent
//! and not yet acknowledged; the rest waits in order and goes out as
//! acknowledgements come. A destination that is slow to take what it is sent
//! (busy, or its links congested) then slows its senders down instead of
//! filling the links' queues until they are dropped; and a state of any size
//! (a `Sync` in many parts) streams at the pace the destination takes it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use chatdrop_proto::link::{Data, NetMsg, RoutedBody, ServerId};

/// When acknowledgements from a destination stop advancing for this long
/// (ms), or three times the smoothed time they take when that is longer,
/// everything in flight to it is sent again. Links are reliable (TCP): a
/// message is lost only with a link or a server on its path, and then
/// (acknowledgements being cumulative) nothing after it is acknowledged
/// either. A destination that acknowledges slowly but steadily is busy,
/// not losing messages, and resending to it would only congest the links
/// more. (Resending each message once it waited a second queued 470,000
/// copies on a busy link, and the link was dropped.)
pub const RESEND_MS: u64 = 1_000;

/// Each resend without an acknowledgement since doubles the wait before
/// the next, up to this (ms).
pub const MAX_RESEND_MS: u64 = 16_000;

/// How often (ms) a server repeats its request for another's state.
pub const RESYNC_MS: u64 = 2_000;

/// Messages kept for one destination at most. When they are more, the
/// state changes among them go first (a new epoch's `Sync` carries them),
/// then the oldest.
pub const MAX_QUEUE: usize = 65_536;

/// Bytes (by [`NetMsg::weight`]) sent to one destination and not yet
/// acknowledged, at most. 2 MiB carries 20 MB/s of chat over a path with a
/// 100 ms round trip; what the window holds back waits in the queue.
pub const WINDOW_BYTES: usize = 2 * 1024 * 1024;

/// A queue's capacity (messages) that is kept however empty it gets; above
/// it, a queue that drained to a quarter gives back half of what it holds.
const QUEUE_KEPT: usize = 64;

/// Messages that arrived ahead of a gap, kept per source at most.
pub const MAX_REORDER: usize = 4_096;

#[derive(Debug)]
struct Pending {
    seq: u64,
    id: u64,
    msg: NetMsg,
    /// [`NetMsg::weight`], counted against the window while in flight.
    weight: usize,
    /// When it was last sent; `None` while the window holds it back.
    sent_ms: Option<u64>,
    /// Whether it was sent more than once (its acknowledgement then says
    /// nothing of how long acknowledgements take).
    resent: bool,
}

impl Pending {
    fn new(id: u64, msg: NetMsg) -> Self {
        Pending {
            seq: 0,
            id,
            weight: msg.weight(),
            msg,
            sent_ms: None,
            resent: false,
        }
    }
}

/// The sending side of the channel to one server.
#[derive(Debug)]
struct Out {
    dst_inc: u64,
    /// 0 until the destination asked for our state.
    epoch: u64,
    next_seq: u64,
    /// Sent and unacknowledged first, then (the last `unsent`) those the
    /// window holds back.
    queue: VecDeque<Pending>,
    /// How many at the end of `queue` were never sent in this epoch.
    unsent: usize,
    /// Weight of the messages sent and not yet acknowledged.
    in_flight: usize,
    /// The queue overflowed and was thinned: this epoch's numbers have gaps,
    /// so nothing more goes out until a new epoch opens.
    stale: bool,
    /// The current wait before a resend: [`Out::base_rto`], doubled by
    /// each resend, back to the base when an acknowledgement comes.
    rto_ms: u64,
    /// When acknowledgements last advanced, or a flight started, or the
    /// last resend went (ms): the wait is counted from here.
    progress_ms: u64,
    /// Smoothed time from sending a message to its acknowledgement (ms).
    srtt_ms: Option<u64>,
}

impl Out {
    fn new(dst_inc: u64) -> Self {
        Out {
            dst_inc,
            epoch: 0,
            next_seq: 1,
            queue: VecDeque::new(),
            unsent: 0,
            in_flight: 0,
            stale: false,
            rto_ms: RESEND_MS,
            progress_ms: 0,
            srtt_ms: None,
        }
    }

    /// The wait before a resend when acknowledgements come as usual.
    fn base_rto(&self) -> u64 {
        self.srtt_ms
            .map_or(RESEND_MS, |s| s.saturating_mul(3).max(RESEND_MS))
            .min(MAX_RESEND_MS)
    }

    fn data(&self, p: &Pending, src_inc: u64) -> Data {
        frame(p, src_inc, self.dst_inc, self.epoch)
    }

    /// How many at the front of the queue were sent.
    fn sent(&self) -> usize {
        self.queue.len() - self.unsent
    }

    /// Sends what the window lets through of what waits; at least one
    /// message when nothing is in flight, however heavy.
    fn pump(&mut self, src_inc: u64, now: u64) -> Vec<Data> {
        let mut frames = Vec::new();
        if self.epoch == 0 || self.stale {
            return frames;
        }
        while self.unsent > 0 {
            let i = self.queue.len() - self.unsent;
            let w = self.queue[i].weight;
            if self.in_flight > 0 && self.in_flight + w > WINDOW_BYTES {
                break;
            }
            if self.in_flight == 0 {
                self.progress_ms = now;
            }
            self.in_flight += w;
            self.unsent -= 1;
            self.queue[i].sent_ms = Some(now);
            frames.push(self.data(&self.queue[i], src_inc));
        }
        frames
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

/// The queue of `out` is full: state changes go (a new epoch's `Sync` will
/// carry them), then the oldest messages; the epoch, now with gaps, is
/// stale. Returns how many messages that are not state were dropped.
fn thin(out: &mut Out) -> u64 {
    out.queue.retain(|p| !p.msg.is_state());
    let mut dropped = 0;
    while out.queue.len() >= MAX_QUEUE {
        out.queue.pop_front();
        dropped += 1;
    }
    out.stale = true;
    out.unsent = out.unsent.min(out.queue.len());
    dropped
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

    /// Queues `msg` for `dst` (in incarnation `dst_inc`). Returns the frames
    /// to send now: this one unless the window holds it back, or the channel
    /// is not open yet (then it goes out after the `Sync` when it opens;
    /// state changes are not kept, since the `Sync` will carry them).
    pub fn send(&mut self, dst: ServerId, dst_inc: u64, msg: NetMsg, now: u64) -> Vec<Data> {
        let id = self.next_id;
        self.next_id += 1;
        let inc = self.inc;
        let state = msg.is_state();
        let out = self.out(dst, dst_inc);
        if out.epoch == 0 && state {
            return Vec::new();
        }
        if out.queue.len() >= MAX_QUEUE {
            let open = out.epoch != 0;
            self.dropped += thin(out);
            if open {
                // The receiver would wait for the dropped numbers forever.
                self.reopen.insert(dst);
            }
        }
        let out = self.out(dst, dst_inc);
        let mut p = Pending::new(id, msg);
        if out.epoch != 0 {
            p.seq = out.next_seq;
            out.next_seq += 1;
        }
        out.queue.push_back(p);
        out.unsent += 1;
        out.pump(inc, now)
    }

    /// Sends what waited for room in `dst`'s window; call after an
    /// acknowledgement from `dst`.
    pub fn pump(&mut self, dst: &ServerId, now: u64) -> Vec<Data> {
        let inc = self.inc;
        self.outs
            .get_mut(dst)
            .map_or_else(Vec::new, |out| out.pump(inc, now))
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

    /// Opens a new epoch to `dst`: the parts of `sync` first, then the
    /// traffic not yet acknowledged. Returns the frames the window lets
    /// through now; the rest follow as acknowledgements come.
    pub fn open(&mut self, dst: ServerId, dst_inc: u64, sync: Vec<NetMsg>, now: u64) -> Vec<Data> {
        self.reopen.remove(&dst);
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let inc = self.inc;
        let out = self.out(dst, dst_inc);
        out.epoch = epoch;
        out.stale = false;
        // A new epoch starts with everything sent now: no backed-off wait.
        out.rto_ms = out.base_rto();
        out.queue.retain(|p| !p.msg.is_state());
        let mut dropped = 0;
        while out.queue.len() > MAX_QUEUE / 2 {
            // Room to go on after an overflow.
            out.queue.pop_front();
            dropped += 1;
        }
        for part in sync.into_iter().rev() {
            out.queue.push_front(Pending::new(0, part));
        }
        for (i, p) in out.queue.iter_mut().enumerate() {
            p.seq = i as u64 + 1;
            p.sent_ms = None;
            p.resent = false;
        }
        out.next_seq = out.queue.len() as u64 + 1;
        out.unsent = out.queue.len();
        out.in_flight = 0;
        let frames = out.pump(inc, now);
        self.dropped += dropped;
        frames
    }

    /// Takes an acknowledgement from `from`, arrived at `now`.
    pub fn on_ack(
        &mut self,
        from: ServerId,
        src_inc: u64,
        dst_inc: u64,
        epoch: u64,
        seq: u64,
        now: u64,
    ) {
        if dst_inc != self.inc {
            return;
        }
        let Some(out) = self.outs.get_mut(&from) else {
            return;
        };
        if out.dst_inc != src_inc || out.epoch != epoch {
            return;
        }
        let mut acked = false;
        let mut sample = None;
        while out.sent() > 0 && out.queue.front().is_some_and(|p| p.seq <= seq) {
            if let Some(p) = out.queue.pop_front() {
                out.in_flight = out.in_flight.saturating_sub(p.weight);
                acked = true;
                if !p.resent {
                    sample = p.sent_ms.map(|t| now.saturating_sub(t));
                }
            }
        }
        // A burst (a login storm, a `Sync` in parts) can grow the queue to
        // tens of thousands of messages; what it grew is not kept for the
        // quiet that follows. Halving at a quarter full keeps the cost of
        // growing again amortised.
        let cap = out.queue.capacity();
        if cap > QUEUE_KEPT && out.queue.len() < cap / 4 {
            out.queue.shrink_to((out.queue.len() * 2).max(QUEUE_KEPT));
        }
        if let Some(ms) = sample {
            out.srtt_ms = Some(out.srtt_ms.map_or(ms, |s| (7 * s + ms) / 8));
        }
        if acked {
            out.rto_ms = out.base_rto();
            out.progress_ms = now;
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
                // Every part of the state (message id 0).
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

    /// Frames to send again to destinations whose acknowledgements stopped
    /// advancing (see [`RESEND_MS`]): everything in flight to them, which
    /// their window bounds.
    pub fn due(&mut self, now: u64) -> Vec<(ServerId, Data)> {
        let inc = self.inc;
        let mut again = Vec::new();
        for (dst, out) in self.outs.iter_mut() {
            if out.epoch == 0 || out.stale || out.sent() == 0 {
                continue;
            }
            if now < out.progress_ms.saturating_add(out.rto_ms) {
                continue;
            }
            let (dst_inc, epoch, sent) = (out.dst_inc, out.epoch, out.sent());
            for p in out.queue.iter_mut().take(sent) {
                p.sent_ms = Some(now);
                p.resent = true;
                again.push((*dst, frame(p, inc, dst_inc, epoch)));
            }
            out.rto_ms = (out.rto_ms * 2).min(MAX_RESEND_MS);
            out.progress_ms = now;
        }
        again
    }

    /// Every frame not yet acknowledged by `dst`, to send along a new route.
    pub fn resend_all(&mut self, dst: &ServerId, now: u64) -> Vec<Data> {
        let inc = self.inc;
        let Some(out) = self.outs.get_mut(dst) else {
            return Vec::new();
        };
        if out.epoch == 0 || out.stale {
            return Vec::new();
        }
        // All of it now: the window bounds it.
        out.rto_ms = out.base_rto();
        out.progress_ms = now;
        let sent = out.sent();
        for p in out.queue.iter_mut().take(sent) {
            p.sent_ms = Some(now);
            p.resent = true;
        }
        out.queue
            .iter()
            .take(sent)
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
            room: Some("r".into()),
            to: chatdrop_proto::Target::All,
            text: n.to_string(),
            ts: 0,
        }
    }

    fn sync() -> Vec<NetMsg> {
        chatdrop_proto::link::sync_parts(vec![], vec![], vec![])
    }

    /// The one frame a send put out.
    fn one(mut frames: Vec<Data>) -> Data {
        assert_eq!(frames.len(), 1, "one frame out");
        frames.pop().expect("a frame")
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
        ack_at(a, b, 0);
    }

    /// Hands B's acknowledgements to A, arriving at `now`.
    fn ack_at(a: &mut Channels, b: &mut Channels, now: u64) {
        for (_, body) in b.take_acks() {
            if let RoutedBody::Ack {
                src_inc,
                dst_inc,
                epoch,
                seq,
            } = body
            {
                a.on_ack(B, src_inc, dst_inc, epoch, seq, now);
            }
        }
    }

    #[test]
    fn in_order_once_despite_reordering_and_copies() {
        let (mut a, mut b) = pair();
        let frames: Vec<Data> = (1..=5).flat_map(|n| a.send(B, 20, say(n), 0)).collect();
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
        let lost: Vec<Data> = (1..=3).flat_map(|n| a.send(B, 20, say(n), 0)).collect();
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

    /// A destination that stopped acknowledging is sent what is in flight
    /// again, each time after twice the wait before, up to 16 s.
    #[test]
    fn resends_to_a_silent_destination_back_off() {
        let (mut a, mut b) = pair();
        ack(&mut a, &mut b);
        for n in 0..10_000 {
            a.send(B, 20, say(n), n as u64 / 10);
        }
        assert!(a.due(RESEND_MS - 1).is_empty(), "none overdue yet");
        let first = a.due(RESEND_MS);
        assert_eq!(first.len(), 10_000, "everything in flight");
        assert!(a.due(3 * RESEND_MS - 1).is_empty(), "the wait doubled");
        assert_eq!(a.due(3 * RESEND_MS).len(), 10_000);
        assert!(a.due(7 * RESEND_MS - 1).is_empty(), "4 s now");
        let mut t = 7 * RESEND_MS;
        assert_eq!(a.due(t).len(), 10_000);
        for wait in [8, 16, 16] {
            assert!(a.due(t + wait * RESEND_MS - 1).is_empty());
            t += wait * RESEND_MS;
            assert_eq!(a.due(t).len(), 10_000, "after {wait} s");
        }
        // An acknowledgement brings the wait back.
        for (_, d) in first {
            b.on_data(A, d);
        }
        ack(&mut a, &mut b);
        assert!(a.due(t + RESEND_MS - 1).is_empty());
        assert!(a.due(t + RESEND_MS).is_empty(), "all acknowledged");
    }

    /// A destination that acknowledges slowly but steadily (busy, its
    /// links congested, each message waiting longer than the one before)
    /// is not sent anything twice: it is losing nothing. (Resending each
    /// message once it waited a second queued 470,000 copies on a busy link
    /// between servers logging in 40,000 clients, and the link was dropped.)
    #[test]
    fn a_busy_destination_that_acknowledges_steadily_gets_no_resends() {
        let (mut a, mut b) = pair();
        ack(&mut a, &mut b);
        // 100 messages every 100 ms; a message sent at t ms arrives
        // 300 + t / 10 ms later: 3.3 s at the end.
        let mut in_flight: VecDeque<(u64, Data)> = VecDeque::new();
        let (mut arrived, mut delivered) = (0, 0);
        for tick in 0..300u64 {
            let now = tick * 100;
            for n in 0..100 {
                for d in a.send(B, 20, say(n), now) {
                    in_flight.push_back((now, d));
                }
            }
            while in_flight
                .front()
                .is_some_and(|(t, _)| t + 300 + t / 10 <= now)
            {
                if let Some((_, d)) = in_flight.pop_front() {
                    arrived += 1;
                    delivered += b.on_data(A, d).len();
                }
            }
            ack_at(&mut a, &mut b, now);
            assert!(a.due(now).is_empty(), "resent at {now} ms");
        }
        assert!(arrived > 25_000, "{arrived}");
        assert_eq!(delivered, arrived, "each once");
    }

    #[test]
    fn a_new_epoch_carries_traffic_over_without_duplicates() {
        let (mut a, mut b) = pair();
        let frames: Vec<Data> = (1..=3).flat_map(|n| a.send(B, 20, say(n), 0)).collect();
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
        assert!(!a.send(B, 20, online, 5).is_empty());
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
        let old = one(a.send(B, 20, say(1), 0));
        let mut b2 = Channels::new(21);
        assert!(b2.on_data(A, old).is_empty());
        // Until the new B asks, nothing is sent to it.
        assert!(a.send(B, 21, say(2), 1).is_empty());
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
        let line = one(a.send(B, 20, say(1), 0));
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
            let d = a.send(B, 20, say(n), 0).pop();
            first = first.or(d);
        }
        // The oldest frames are gone: B cannot go on in this epoch.
        assert_eq!(a.take_reopens(), [(B, 20)]);
        assert!(a.dropped > 0);
        let opened = a.open(B, 20, sync(), 1);
        let got = deliver(&mut a, &mut b, opened.into_iter().chain(first).collect());
        assert_eq!(texts(&got[..1]), ["sync"]);
        assert_eq!(got.len(), 1 + MAX_QUEUE / 2, "the newest half goes on");
        assert_eq!(texts(&got[got.len() - 1..]), [MAX_QUEUE.to_string()]);
    }

    /// Hands `frames` to B, B's acknowledgements to A, and what A's window
    /// then lets out to B, until nothing more comes; what B delivered.
    fn deliver(a: &mut Channels, b: &mut Channels, mut frames: Vec<Data>) -> Vec<NetMsg> {
        let mut got = Vec::new();
        for _ in 0..100_000 {
            if frames.is_empty() {
                break;
            }
            for d in frames.drain(..) {
                got.extend(b.on_data(A, d));
            }
            ack(a, b);
            frames = a.pump(&B, 0);
        }
        got
    }

    fn heavy(n: u32) -> NetMsg {
        NetMsg::Say {
            from: "ann".into(),
            room: Some("r".into()),
            to: chatdrop_proto::Target::All,
            text: format!("{n:>4000}"),
            ts: 0,
        }
    }

    /// At most a window's worth of bytes is in flight to a destination:
    /// the rest waits, in order, and goes out as acknowledgements come.
    /// (Before, everything went out at once: 100,000 logins at linked
    /// servers filled the links' queues and the links were dropped.)
    #[test]
    fn what_is_in_flight_is_bounded_by_the_window() {
        let (mut a, mut b) = pair();
        ack(&mut a, &mut b);
        let mut out = Vec::new();
        for n in 0..2_000 {
            out.extend(a.send(B, 20, heavy(n), 0));
        }
        let weight = heavy(0).weight();
        assert_eq!(out.len(), WINDOW_BYTES / weight, "a window's worth");
        assert_eq!(a.unacked(&B), 2_000, "the rest waits");
        // Nothing more goes out without an acknowledgement, resends
        // included: only what is in flight is resent.
        assert!(a.pump(&B, 0).is_empty());
        assert_eq!(a.due(RESEND_MS).len(), out.len());
        let got = deliver(&mut a, &mut b, out);
        let want: Vec<String> = (0..2_000).map(|n| format!("{n:>4000}")).collect();
        assert_eq!(texts(&got), want, "all of it, once, in order");
        assert_eq!(a.unacked(&B), 0);
    }

    /// What a burst grew of a destination's queue is given back once the
    /// destination has acknowledged it: a server is not left holding room
    /// for its busiest minute. (Before, a login storm's queues stayed
    /// allocated, megabytes per linked server.)
    #[test]
    fn a_drained_queue_gives_back_what_a_burst_grew() {
        let (mut a, mut b) = pair();
        ack(&mut a, &mut b);
        let mut out = Vec::new();
        for n in 0..20_000 {
            out.extend(a.send(B, 20, say(n), 0));
        }
        let grown = a.outs[&B].queue.capacity();
        assert!(grown >= 20_000, "the burst is queued: {grown}");
        let got = deliver(&mut a, &mut b, out);
        assert_eq!(got.len(), 20_000, "all of it delivered");
        assert_eq!(a.unacked(&B), 0);
        let kept = a.outs[&B].queue.capacity();
        assert!(kept <= 2 * QUEUE_KEPT, "{kept} slots kept after the burst");
        // The channel goes on as before.
        let more = a.send(B, 20, say(7), 0);
        assert_eq!(texts(&deliver(&mut a, &mut b, more)), ["7"]);
    }

    /// A large state goes out in parts at the window's pace, before the
    /// traffic that waited for it.
    #[test]
    fn a_state_in_many_parts_streams_through_the_window() {
        let (mut a, mut b) = pair();
        let bindings: Vec<chatdrop_proto::link::NetBinding> = (0..30_000)
            .map(|n| chatdrop_proto::link::NetBinding {
                user: format!("u{n}"),
                key: [1; 32],
                bound_ms: 1,
                home: A,
                home_key: [3; 32],
                sig: vec![4; 64],
            })
            .collect();
        let parts = chatdrop_proto::link::sync_parts(vec![], vec![], bindings);
        assert_eq!(parts.len(), 30);
        b.lost(&A);
        b.resyncs(1, [(&A, 10)].into_iter());
        let first = a.open(B, 20, parts, 1);
        assert!(first.len() < 30, "held back by the window: {}", first.len());
        let mut frames = first;
        frames.extend(a.send(B, 20, say(1), 1));
        let got = deliver(&mut a, &mut b, frames);
        assert_eq!(got.len(), 31);
        assert!(got[..30].iter().enumerate().all(|(i, m)| matches!(m,
            NetMsg::Sync { part, last, .. } if *part as usize == i && *last == (i == 29))));
        assert_eq!(texts(&got[30..]), ["1"]);
    }

    /// When a destination's queue overflows, the state changes in it go
    /// first: the new epoch's `Sync` carries them; chat lines are kept.
    #[test]
    fn an_overflow_drops_state_changes_before_chat() {
        let (mut a, mut b) = pair();
        let enter = |n: usize| NetMsg::Enter {
            user: format!("u{n}"),
            room: "r".into(),
        };
        let mut first = Vec::new();
        for n in 0..MAX_QUEUE - 10 {
            first.extend(a.send(B, 20, enter(n), 0));
        }
        for n in 0..20 {
            first.extend(a.send(B, 20, say(n), 0));
        }
        assert_eq!(a.take_reopens(), [(B, 20)]);
        assert_eq!(a.dropped, 0, "no chat line was dropped");
        let opened = a.open(B, 20, sync(), 1);
        let got = deliver(&mut a, &mut b, opened);
        let want: Vec<String> = ["sync".to_string()]
            .into_iter()
            .chain((0..20).map(|n| n.to_string()))
            .collect();
        assert_eq!(texts(&got), want);
    }

    #[test]
    fn news_of_an_older_incarnation_does_not_close_a_channel() {
        let (mut a, mut b) = pair();
        // B's new life asked and A opened; a slower record of the old life
        // must not reset the channel.
        let mut b2 = Channels::new(21);
        b2.resyncs(0, [(&A, 10)].into_iter());
        let opened = a.open(B, 21, sync(), 0);
        let first = one(a.send(B, 20, say(1), 0));
        assert_eq!(first.dst_inc, 21);
        let got: Vec<NetMsg> = opened
            .into_iter()
            .chain([first])
            .chain(a.send(B, 21, say(2), 0))
            .flat_map(|d| b2.on_data(A, d))
            .collect();
        assert_eq!(texts(&got), ["sync", "1", "2"]);
        // The old life gets nothing more.
        let three = one(a.send(B, 20, say(3), 0));
        assert!(b.on_data(A, three).is_empty());
    }

    #[test]
    fn requests_for_state_repeat_until_the_sync_arrives() {
        let mut b = Channels::new(20);
        assert_eq!(b.resyncs(0, [(&A, 10)].into_iter()).len(), 1);
        assert!(b.resyncs(RESYNC_MS - 1, [(&A, 10)].into_iter()).is_empty());
        assert_eq!(b.resyncs(RESYNC_MS, [(&A, 10)].into_iter()).len(), 1);
    }
}
