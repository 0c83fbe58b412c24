//! Downloads from several owners at once.
//!
//! When several owners announced a file with the same hash, a `getfile`
//! asks up to [`MAX_SOURCES`] of them at once. What is missing is split
//! from the start into as many shares as owners were asked, in file
//! order, and every accepted offer joins the download and takes the next
//! share nobody has ([`Plan`]). Once every share is taken, an offer takes
//! the larger half of the longest rest another owner still has to send,
//! whose range is cut short there (it stops with `Enough` when it reaches
//! the cut). An owner that finishes its range is asked again for more, so
//! the faster owners end up sending more, as BitTorrent's do; near the end
//! the rests are too short to split and the download waits for the last
//! ranges.
//!
//! (Splitting from the start matters: had the first offer taken the whole
//! file and the others halves of it as they came, owners of equal speed
//! would each finish a range several times and be asked again each time,
//! their uplinks idle for the round trips of every new request and
//! session: docs/BENCHMARKS.md.)
//!
//! Every part is checked against the file's outline as it lands (see
//! `chatdrop_transfer::outline`), so an owner that sends anything but the
//! file is caught at its first bad part: it is dropped, named in a
//! `source_dropped` event and never asked again, and the range it had
//! goes back to be fetched by another. An owner that fails or goes silent
//! is dropped the same way, and one that announced the file but was not
//! asked yet takes its place. An owner that refuses as busy when nobody
//! else is left is asked again a few times before the download fails.
//! Nothing is restarted: the verified parts stay, in the `.part` file and
//! in its resume record.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chatdrop_transfer::{Download, Region, TransferError, TransferStats};
use tokio::sync::mpsc;

use crate::event::{ClientEvent, SourceBytes};

/// Owners asked at once for one download.
pub const MAX_SOURCES: usize = 4;
/// The shortest rest, in parts, that is split for another owner: a
/// shorter one is not worth a new session's opening. (Four made the last
/// owner send up to 4 MiB alone at the end; at 50 Mbit/s that is 0.7 s,
/// and three owners behind such uplinks got 120 Mbit/s of 150, against
/// 129 with two: docs/BENCHMARKS.md.)
const MIN_SPLIT_PARTS: u64 = 2;
/// How often progress is told.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Times an owner that refused as busy is asked again, when it is the
/// download's last hope (nobody else sends or was asked): after 1, 2 and
/// 4 s. Its uploads to others end soon enough, as a rule, and failing a
/// download that is part done for a moment's busyness is worse.
const BUSY_RETRIES: u32 = 3;
/// The first of those waits; each next one is twice as long.
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// One owner's range while its session runs.
#[derive(Debug)]
struct Share {
    owner: String,
    from: u64,
    /// Where its range ends now (lowered when another owner takes the
    /// rest): the region's own stop.
    stop: Arc<AtomicU64>,
    /// The file offset up to which its bytes arrived without a gap.
    got: Arc<AtomicU64>,
}

impl Share {
    fn rest(&self) -> u64 {
        let got = self.got.load(Ordering::Relaxed).max(self.from);
        self.stop.load(Ordering::Relaxed).saturating_sub(got)
    }
}

/// Which owner fetches which range of a download (no I/O: see the module
/// docs for the rules).
#[derive(Debug)]
pub struct Plan {
    part: u64,
    /// Ranges no session fetches now, in file order.
    pool: VecDeque<(u64, u64)>,
    running: Vec<Share>,
}

impl Plan {
    /// A plan for the `missing` ranges of a file cut in parts of `part`
    /// bytes, to be shared between `owners` owners.
    pub fn new(missing: Vec<(u64, u64)>, part: u64, owners: usize) -> Plan {
        Plan {
            part,
            pool: shares(missing, part, owners),
            running: Vec::new(),
        }
    }

    /// The next range to give an owner, if there is one worth a session:
    /// the first nobody fetches, or else the larger half of the longest
    /// rest, whose owner's range is cut short where it begins.
    pub fn take(&mut self) -> Option<(u64, u64)> {
        if let Some(range) = self.pool.pop_front() {
            return Some(range);
        }
        let part = self.part;
        let longest = self.running.iter().max_by_key(|s| s.rest())?;
        let rest = longest.rest();
        if rest < MIN_SPLIT_PARTS * part {
            return None;
        }
        let got = longest.got.load(Ordering::Relaxed).max(longest.from);
        let stop = longest.stop.load(Ordering::Relaxed);
        // Past the part the owner is in, so that what it is sending now
        // stays its own.
        let cut = (got + rest / 2).div_ceil(part) * part;
        if cut >= stop {
            return None;
        }
        longest.stop.fetch_min(cut, Ordering::Relaxed);
        Some((cut, stop))
    }

    /// `owner`'s session runs from `from`, with its region's stop and the
    /// offset up to which its bytes arrived.
    fn run(&mut self, owner: &str, from: u64, stop: Arc<AtomicU64>, got: Arc<AtomicU64>) {
        self.running.push(Share {
            owner: owner.to_string(),
            from,
            stop,
            got,
        });
    }

    /// `owner`'s session ended, verified up to `verified_to` of a range
    /// that stopped at `stop`: the rest goes back to the pool.
    pub fn ended(&mut self, owner: &str, verified_to: u64, stop: u64) {
        self.running.retain(|s| s.owner != owner);
        if verified_to < stop {
            let at = self.pool.partition_point(|r| r.0 < verified_to);
            self.pool.insert(at, (verified_to, stop));
        }
    }

    /// Whether another owner could be given a range now.
    pub fn has_work(&self) -> bool {
        !self.pool.is_empty()
            || self
                .running
                .iter()
                .any(|s| s.rest() >= MIN_SPLIT_PARTS * self.part)
    }

    /// Sessions running.
    pub fn running(&self) -> usize {
        self.running.len()
    }
}

/// The `missing` ranges cut into `owners` shares of about the same length
/// (whole parts; the last share takes what is left over), in file order,
/// each cut at a part boundary. A share spans more than one range where
/// parts in between are there already (a resumed download).
fn shares(missing: Vec<(u64, u64)>, part: u64, owners: usize) -> VecDeque<(u64, u64)> {
    let part = part.max(1);
    let owners = owners.max(1) as u64;
    let total: u64 = missing.iter().map(|(a, b)| b.saturating_sub(*a)).sum();
    let share = ((total / owners + part / 2) / part).max(1) * part;
    // Shares begun, and what is left of the one being filled.
    let mut begun = 1;
    let size_of = |begun: u64| if begun >= owners { u64::MAX } else { share };
    let mut left = size_of(begun);
    let mut pool = VecDeque::new();
    for (mut from, to) in missing {
        while to.saturating_sub(from) > left {
            let cut = (from + left).div_ceil(part) * part;
            if cut >= to {
                break;
            }
            pool.push_back((from, cut));
            from = cut;
            begun += 1;
            left = size_of(begun);
        }
        if from < to {
            pool.push_back((from, to));
            left = left.saturating_sub(to - from);
            if left == 0 {
                begun += 1;
                left = size_of(begun);
            }
        }
    }
    pool
}

/// What the download does after a session ended or an owner refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Ask this owner (for more, or as a replacement).
    Ask(String),
    /// Every part is verified: move the file into place.
    Finish,
    /// No owner is left and parts are missing: the download failed.
    Fail(String),
    /// Other sessions run (or offers are awaited): nothing to do now.
    Wait,
    /// Ask this owner again after a while (it was busy, and nobody else
    /// is left).
    AskLater(String, Duration),
}

/// A download from one owner or several (see the module docs).
pub struct Swarm {
    /// The download's id (its first session's).
    pub id: String,
    /// The owner's offer (`/send`) the file is of, for the requests made
    /// for more of it.
    pub offer: Option<u64>,
    /// The file's name as asked for.
    pub file: String,
    /// Its hash: every owner must have offered this one.
    pub hash: [u8; 32],
    /// Its size.
    pub size: u64,
    /// The owner whose offer came first.
    pub owner: String,
    download: Download,
    started: Instant,
    resumed: u64,
    events: mpsc::Sender<ClientEvent>,
    state: Mutex<State>,
}

struct State {
    plan: Plan,
    /// Owners that announced the file (same hash) and were not asked.
    spare: VecDeque<String>,
    /// Owners asked whose offer has not come.
    asked: HashSet<String>,
    /// What each owner sent and had verified, in order of first bytes.
    sent: Vec<SourceBytes>,
    /// Owners dropped and why, for the failure's message.
    dropped: Vec<(String, String)>,
    /// Owners never asked again.
    banned: HashSet<String>,
    /// Owners asked again after refusing as busy, and how many times.
    busy_tries: HashMap<String, u32>,
    last_progress: Option<Instant>,
    /// The download ended (finished or failed): said once.
    over: bool,
}

impl Swarm {
    /// A download of `file` into `download`, whose first offer is from
    /// `owner` (session `id`); `asked` are the other owners asked with
    /// it, `spare` those to ask when one drops out.
    pub fn new(
        id: String,
        file: String,
        owner: String,
        download: Download,
        asked: impl IntoIterator<Item = String>,
        spare: impl IntoIterator<Item = String>,
        events: mpsc::Sender<ClientEvent>,
    ) -> Swarm {
        let asked: HashSet<String> = asked.into_iter().collect();
        let owners = 1 + asked.len();
        let plan = Plan::new(download.missing(), download.part_size(), owners);
        Swarm {
            id,
            offer: None,
            file,
            owner,
            hash: download.hash(),
            size: download.size(),
            resumed: download.resume_from(),
            started: Instant::now(),
            download,
            events,
            state: Mutex::new(State {
                plan,
                spare: spare.into_iter().collect(),
                asked,
                sent: Vec::new(),
                dropped: Vec::new(),
                banned: HashSet::new(),
                busy_tries: HashMap::new(),
                last_progress: None,
                over: false,
            }),
        }
    }

    /// The download is of a file of the offer `offer`.
    pub fn of_offer(mut self, offer: Option<u64>) -> Swarm {
        self.offer = offer;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the download ended (finished or failed): an offer that
    /// comes after that is not taken.
    pub fn is_over(&self) -> bool {
        self.state().over
    }

    /// Bytes there from an earlier attempt.
    pub fn resumed(&self) -> u64 {
        self.resumed
    }

    /// The download (for reserving room before the first session).
    pub fn download(&self) -> &Download {
        &self.download
    }

    /// Whether nothing is left to fetch (an empty file, or every part here
    /// from an earlier attempt) while the download is not over: it is
    /// over now, for the caller to finish.
    pub fn complete_already(&self) -> bool {
        let mut state = self.state();
        if state.over || !self.download.is_complete() {
            return false;
        }
        state.over = true;
        true
    }

    /// `owner` was asked (for more, or in another's place).
    pub fn asking(&self, owner: &str) {
        self.state().asked.insert(owner.to_string());
    }

    /// `owner`'s offer came: its range, and the offset its session
    /// reports its bytes in at, if there is anything left to give it.
    pub fn begin(&self, owner: &str) -> Option<(Region, Arc<AtomicU64>)> {
        let mut state = self.state();
        state.asked.remove(owner);
        if state.banned.contains(owner) {
            return None;
        }
        let (from, to) = state.plan.take()?;
        let region = self.download.region(from, to);
        let got = Arc::new(AtomicU64::new(region.from()));
        state
            .plan
            .run(owner, region.from(), region.stop_handle(), got.clone());
        if !state.sent.iter().any(|s| s.from == owner) {
            state.sent.push(SourceBytes {
                from: owner.to_string(),
                bytes: 0,
            });
        }
        Some((region, got))
    }

    /// Tells the progress, at most every [`PROGRESS_EVERY`] (always with
    /// `force`).
    pub fn progress(&self, force: bool) {
        let mut state = self.state();
        let now = Instant::now();
        if !force
            && state
                .last_progress
                .is_some_and(|t| now - t < PROGRESS_EVERY)
        {
            return;
        }
        state.last_progress = Some(now);
        let sources = tally(&state);
        let bytes = (self.resumed + sources.iter().map(|s| s.bytes).sum::<u64>()).min(self.size);
        let _ = self.events.try_send(ClientEvent::TransferProgress {
            id: self.id.clone(),
            bytes,
            total: self.size,
            sources,
        });
    }

    /// `owner`'s session ended with `result`, its region verified as far
    /// as it says: what to do next.
    pub fn ended(
        &self,
        owner: &str,
        result: &Result<TransferStats, TransferError>,
        region: &Region,
    ) -> Next {
        let mut state = self.state();
        let verified = region.verified_to();
        state.plan.ended(owner, verified, region.stop());
        if let Some(s) = state.sent.iter_mut().find(|s| s.from == owner) {
            s.bytes += verified - region.from();
        }
        if state.over {
            return Next::Wait;
        }
        if self.download.is_complete() {
            state.over = true;
            return Next::Finish;
        }
        // Parts an earlier attempt left that proved damaged once the
        // outline came: nobody has them yet.
        if state.plan.running() == 0 && state.plan.pool.is_empty() {
            state.plan.pool = self.download.missing().into();
        }
        match result {
            Ok(_) if state.plan.has_work() => return Next::Ask(owner.to_string()),
            Ok(_) => return self.wait_or_fail(&mut state),
            Err(e) => {
                let reason = e.to_string();
                state.banned.insert(owner.to_string());
                state.dropped.push((owner.to_string(), reason.clone()));
                let _ = self.events.try_send(ClientEvent::SourceDropped {
                    id: self.id.clone(),
                    file: self.file.clone(),
                    from: owner.to_string(),
                    reason,
                });
            }
        }
        self.replace(&mut state)
    }

    /// `owner` refused (`busy`, or gone): another takes its place. An
    /// owner busy when nobody else is left is asked again a few times
    /// (see [`BUSY_RETRIES`]) before the download fails.
    pub fn refused(&self, owner: &str, why: &str, busy: bool) -> Next {
        let mut state = self.state();
        if state.over {
            return Next::Wait;
        }
        state.asked.remove(owner);
        let spare = state.spare.iter().any(|o| !state.banned.contains(o));
        let alone = state.plan.running() == 0 && state.asked.is_empty() && !spare;
        if busy && alone && state.plan.has_work() {
            let tries = state.busy_tries.entry(owner.to_string()).or_insert(0);
            if *tries < BUSY_RETRIES {
                let wait = BUSY_WAIT * 2u32.pow(*tries);
                *tries += 1;
                // Counted as asked meanwhile: the download waits for it.
                state.asked.insert(owner.to_string());
                return Next::AskLater(owner.to_string(), wait);
            }
        }
        state.dropped.push((owner.to_string(), why.to_string()));
        self.replace(&mut state)
    }

    /// Asks a spare owner, if one is left and there is work; else waits
    /// for the others, or fails without any.
    fn replace(&self, state: &mut State) -> Next {
        if state.plan.has_work() {
            while let Some(next) = state.spare.pop_front() {
                if !state.banned.contains(&next) {
                    return Next::Ask(next);
                }
            }
        }
        self.wait_or_fail(state)
    }

    fn wait_or_fail(&self, state: &mut State) -> Next {
        if state.plan.running() > 0 || !state.asked.is_empty() {
            return Next::Wait;
        }
        // Nothing runs and nobody is asked: what is missing stays so.
        let why = match state.dropped.as_slice() {
            [] => "no owner is left to send the rest".to_string(),
            [(_, why)] => why.clone(),
            all => {
                let each: Vec<String> = all.iter().map(|(o, why)| format!("{o}: {why}")).collect();
                each.join("; ")
            }
        };
        state.over = true;
        Next::Fail(why)
    }

    /// The `transfer_failed` event of this download.
    pub fn failed(&self, reason: String) -> ClientEvent {
        ClientEvent::TransferFailed {
            id: self.id.clone(),
            file: self.file.clone(),
            from: self.owner.clone(),
            reason,
        }
    }

    /// What each owner sent, for `transfer_done`.
    /// Once every part is verified, those of sessions still closing (the
    /// last acknowledgements on their way) count in full.
    pub fn sources(&self) -> Vec<SourceBytes> {
        let mut sent = tally(&self.state());
        sent.retain(|s| s.bytes > 0);
        sent
    }

    /// Seconds since the first offer.
    pub fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// What each owner sent: its ended sessions' verified bytes, and what its
/// running session brought so far.
fn tally(state: &State) -> Vec<SourceBytes> {
    let mut sources = state.sent.clone();
    for share in &state.plan.running {
        let moving = share.got.load(Ordering::Relaxed).saturating_sub(share.from);
        if let Some(s) = sources.iter_mut().find(|s| s.from == share.owner) {
            s.bytes += moving;
        }
    }
    sources
}

#[cfg(test)]
mod tests {
    use super::*;

    const PART: u64 = 1 << 20;

    fn handles(from: u64, stop: u64) -> (Arc<AtomicU64>, Arc<AtomicU64>) {
        (
            Arc::new(AtomicU64::new(stop)),
            Arc::new(AtomicU64::new(from)),
        )
    }

    /// The first owner takes everything; each later one the larger half of
    /// the longest rest, from a part boundary past where that owner is;
    /// a rest too short to split is left alone.
    #[test]
    fn later_owners_take_the_larger_half_of_the_longest_rest() {
        let size = 100 * PART;
        let mut plan = Plan::new(vec![(0, size)], PART, 1);
        assert_eq!(plan.take(), Some((0, size)));
        let (a_stop, a_got) = handles(0, size);
        plan.run("a", 0, a_stop.clone(), a_got.clone());
        a_got.store(10 * PART + 5, Ordering::Relaxed);
        // a is at 10 MiB of 100: b takes from 56 MiB on.
        assert_eq!(plan.take(), Some((56 * PART, size)));
        assert_eq!(a_stop.load(Ordering::Relaxed), 56 * PART);
        let (b_stop, b_got) = handles(56 * PART, size);
        plan.run("b", 56 * PART, b_stop.clone(), b_got.clone());
        // c splits the longer rest: a's 46 MiB against b's 44.
        let c = plan.take().unwrap();
        assert_eq!(c, (34 * PART, 56 * PART));
        assert_eq!(a_stop.load(Ordering::Relaxed), 34 * PART);
        // Near the end: a rest of two parts still gives one away, a rest
        // of one part is not worth a session.
        a_got.store(33 * PART, Ordering::Relaxed);
        b_got.store(98 * PART, Ordering::Relaxed);
        let (c_stop, c_got) = handles(c.0, c.1);
        plan.run("c", c.0, c_stop, c_got.clone());
        c_got.store(55 * PART, Ordering::Relaxed);
        assert_eq!(plan.take(), Some((99 * PART, size)));
        assert_eq!(b_stop.load(Ordering::Relaxed), 99 * PART);
        let (d_stop, d_got) = handles(99 * PART, size);
        plan.run("d", 99 * PART, d_stop, d_got);
        assert!(!plan.has_work());
        assert_eq!(plan.take(), None);
    }

    /// An owner that drops out gives its unverified rest back, and the
    /// next owner takes exactly that.
    #[test]
    fn a_dropped_owners_rest_goes_to_the_next() {
        let size = 20 * PART;
        let mut plan = Plan::new(vec![(0, 3 * PART), (5 * PART, size)], PART, 1);
        assert_eq!(plan.take(), Some((0, 3 * PART)));
        let (stop, got) = handles(0, 3 * PART);
        plan.run("liar", 0, stop, got);
        assert_eq!(plan.take(), Some((5 * PART, size)));
        plan.ended("liar", PART, 3 * PART);
        assert_eq!(plan.running(), 0);
        assert_eq!(plan.take(), Some((PART, 3 * PART)));
        assert_eq!(plan.take(), None);
    }

    /// Owners asked together share the file from the start, a third each
    /// for three, cut at part boundaries; once the shares are taken, a
    /// later offer splits the longest rest as before.
    #[test]
    fn owners_asked_together_share_the_file_from_the_start() {
        let size = 100 * PART + 7;
        let mut plan = Plan::new(vec![(0, size)], PART, 3);
        assert_eq!(plan.take(), Some((0, 33 * PART)));
        assert_eq!(plan.take(), Some((33 * PART, 66 * PART)));
        assert_eq!(plan.take(), Some((66 * PART, size)));
        let (stop, got) = handles(66 * PART, size);
        plan.run("c", 66 * PART, stop.clone(), got);
        // A fourth owner: the larger half of c's 34 parts and 7 bytes.
        assert_eq!(plan.take(), Some((84 * PART, size)));
        assert_eq!(stop.load(Ordering::Relaxed), 84 * PART);
    }

    /// A resumed download's missing ranges are shared by length: the parts
    /// already there count for no one.
    #[test]
    fn shares_of_a_resumed_download_count_only_what_is_missing() {
        let missing = vec![
            (0, 2 * PART),
            (10 * PART, 14 * PART),
            (20 * PART, 20 * PART + 3),
        ];
        let pool: Vec<_> = shares(missing, PART, 2).into();
        // 6 parts and 3 bytes: 3 parts, then the rest.
        assert_eq!(
            pool,
            vec![
                (0, 2 * PART),
                (10 * PART, 11 * PART),
                (11 * PART, 14 * PART),
                (20 * PART, 20 * PART + 3),
            ]
        );
        // One owner: the ranges as they are.
        let one: Vec<_> = shares(vec![(0, 5 * PART)], PART, 1).into();
        assert_eq!(one, vec![(0, 5 * PART)]);
    }

    /// An owner asked again for more that refuses as busy, with nobody
    /// else left, is asked again after 1, 2 and 4 s before the download
    /// fails; one that refuses for another reason fails it at once.
    /// (Checked to fail before: the download failed at the first busy.)
    #[test]
    fn a_busy_owner_that_is_the_last_hope_is_asked_again_before_failing() {
        let dir = tempfile::tempdir().unwrap();
        let size = 4 * PART;
        let (events, _rx) = mpsc::channel(64);
        let swarm = |name: &str| {
            let download = Download::open(&dir.path().join(name), "f.bin", size, [7; 32]).unwrap();
            Swarm::new(
                "id".into(),
                "f.bin".into(),
                "bob".into(),
                download,
                [],
                [],
                events.clone(),
            )
        };
        let asked_again = |swarm: &Swarm| {
            let (region, _) = swarm.begin("bob").unwrap();
            // Its session ended with nothing verified: more to ask for.
            let next = swarm.ended("bob", &Ok(TransferStats::default()), &region);
            assert_eq!(next, Next::Ask("bob".into()));
            swarm.asking("bob");
        };
        let busy = swarm("busy");
        asked_again(&busy);
        for wait in [1, 2, 4] {
            let next = busy.refused("bob", "bob is busy", true);
            assert_eq!(
                next,
                Next::AskLater("bob".into(), Duration::from_secs(wait))
            );
            assert!(!busy.is_over());
        }
        assert_eq!(
            busy.refused("bob", "bob is busy", true),
            Next::Fail("bob is busy".into())
        );
        assert!(busy.is_over());
        let gone = swarm("gone");
        asked_again(&gone);
        let next = gone.refused("bob", "bob does not share it", false);
        assert_eq!(next, Next::Fail("bob does not share it".into()));
    }
}
