//! The transfers pane's state: every download and upload with its
//! progress, rate, ETA and state, from the client's events.

use std::time::{Duration, Instant};

use chatdrop_client::{shown, ClientEvent, ErrorKind};

/// Rows kept; the oldest finished ones go first.
const MAX_ROWS: usize = 100;
/// How quickly the shown rate follows the measured one.
const RATE_SMOOTHING: Duration = Duration::from_secs(2);

/// Which way a file moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// We fetch it.
    Down,
    /// A peer fetches it from us.
    Up,
}

/// Where a transfer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Asked for; no owner has started sending.
    Waiting,
    /// Bytes are moving.
    Moving,
    /// Done and verified; saved at the path (downloads).
    Done(Option<String>),
    /// Failed, and why; `resumable` when verified parts were kept for the
    /// next `getfile`.
    Failed { reason: String, resumable: bool },
}

/// One row of the pane.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// The client's transfer id (downloads), or one made for an upload.
    pub id: String,
    pub direction: Direction,
    /// The file's name, escaped for the terminal.
    pub file: String,
    /// The peer (the first owner of a download), escaped.
    pub peer: String,
    /// Bytes in all (0 while unknown).
    pub size: u64,
    /// Bytes done.
    pub done: u64,
    /// `direct`, `punched`, `relay` or `tcp`, once known.
    pub path: Option<String>,
    /// The ARQ scheme the sender uses (`sr`, `gbn`), once known.
    pub arq: Option<String>,
    /// A download's owners and the bytes each sent, when more than one
    /// sends (escaped names).
    pub sources: Vec<(String, u64)>,
    pub state: State,
    /// The latest thing worth saying: an owner refused, was dropped...
    pub note: Option<String>,
    /// Bytes a second, smoothed.
    pub rate: f64,
    last: Option<(Instant, u64)>,
}

impl Transfer {
    fn new(id: String, direction: Direction, file: &str, peer: &str) -> Transfer {
        Transfer {
            id,
            direction,
            file: shown(file).into_owned(),
            peer: shown(peer).into_owned(),
            size: 0,
            done: 0,
            path: None,
            arq: None,
            sources: Vec::new(),
            state: State::Waiting,
            note: None,
            rate: 0.0,
            last: None,
        }
    }

    /// Time left at the current rate, while moving.
    pub fn eta(&self) -> Option<Duration> {
        (self.state == State::Moving && self.rate > 0.0 && self.size >= self.done)
            .then(|| Duration::from_secs_f64((self.size - self.done) as f64 / self.rate))
    }

    /// The share done, 0 to 1.
    pub fn ratio(&self) -> f64 {
        match (&self.state, self.size) {
            (State::Done(_), _) => 1.0,
            (_, 0) => 0.0,
            (_, size) => (self.done as f64 / size as f64).min(1.0),
        }
    }

    /// Whether it is still under way.
    pub fn active(&self) -> bool {
        matches!(self.state, State::Waiting | State::Moving)
    }

    fn progress(&mut self, now: Instant, done: u64) {
        if let Some((then, before)) = self.last {
            let dt = now.saturating_duration_since(then).as_secs_f64();
            if dt > 0.0 {
                let rate = done.saturating_sub(before) as f64 / dt;
                let a = 1.0 - (-dt / RATE_SMOOTHING.as_secs_f64()).exp();
                self.rate = if self.rate == 0.0 {
                    rate
                } else {
                    self.rate + a * (rate - self.rate)
                };
            }
        }
        self.last = Some((now, done));
        self.done = done;
        self.state = State::Moving;
    }
}

/// Every transfer of the session, newest last.
#[derive(Debug, Clone, Default)]
pub struct Transfers {
    rows: Vec<Transfer>,
}

impl Transfers {
    /// The rows, oldest first.
    pub fn rows(&self) -> &[Transfer] {
        &self.rows
    }

    /// How many are under way.
    pub fn active(&self) -> usize {
        self.rows.iter().filter(|t| t.active()).count()
    }

    /// A download asked for with `getfile`: waiting until an owner sends.
    pub fn asked(&mut self, file: &str, owner: &str) {
        let id = format!("asked:{file}");
        if self.find(&id).is_none() {
            self.add(Transfer::new(id, Direction::Down, file, owner));
        }
    }

    /// Takes what `ev` says of transfers; returns whether it was about one.
    pub fn on_event(&mut self, now: Instant, ev: &ClientEvent) -> bool {
        match ev {
            ClientEvent::TransferStarted {
                id,
                file,
                from,
                size,
                resumed_from,
                path,
                arq,
                ..
            } => {
                // The row made when it was asked for becomes this one.
                let asked = self.find(&format!("asked:{file}"));
                let mut t = match asked {
                    Some(i) => self.rows.remove(i),
                    None => Transfer::new(id.clone(), Direction::Down, file, from),
                };
                t.id = id.clone();
                t.peer = shown(from).into_owned();
                t.size = *size;
                t.path = Some(shown(path).into_owned());
                t.arq = Some(shown(arq).into_owned());
                t.progress(now, *resumed_from);
                self.add(t);
            }
            ClientEvent::TransferProgress {
                id,
                bytes,
                total,
                sources,
            } => {
                if let Some(i) = self.find(id) {
                    let t = &mut self.rows[i];
                    t.size = *total;
                    t.progress(now, *bytes);
                    // (Direct mode has no list of owners.)
                    if !sources.is_empty() {
                        t.sources = sources
                            .iter()
                            .map(|s| (shown(&s.from).into_owned(), s.bytes))
                            .collect();
                    }
                }
            }
            ClientEvent::TransferDone { id, path, .. } => {
                if let Some(i) = self.find(id) {
                    let t = &mut self.rows[i];
                    t.done = t.size;
                    t.state = State::Done(Some(shown(path).into_owned()));
                }
            }
            ClientEvent::TransferFailed { id, reason, .. } => {
                if let Some(i) = self.find(id) {
                    let t = &mut self.rows[i];
                    t.state = State::Failed {
                        reason: shown(reason).into_owned(),
                        resumable: t.done > 0,
                    };
                }
            }
            ClientEvent::SourceDropped {
                id, from, reason, ..
            } => {
                if let Some(i) = self.find(id) {
                    let (from, reason) = (shown(from), shown(reason));
                    self.rows[i].note = Some(format!("{from} dropped: {reason}"));
                }
            }
            ClientEvent::TransferRefused {
                file, from, reason, ..
            } => {
                let id = format!("asked:{file}");
                if let Some(i) = self.find(&id) {
                    let (from, reason) = (shown(from), shown(reason));
                    self.rows[i].note = Some(format!("{from} refused ({reason}), trying the next"));
                }
            }
            ClientEvent::Error {
                code: ErrorKind::NoPeerLeft,
                message,
            } => {
                // Every owner refused: each waiting row ends.
                for t in self.rows.iter_mut().filter(|t| t.state == State::Waiting) {
                    t.state = State::Failed {
                        reason: shown(message).into_owned(),
                        resumable: false,
                    };
                }
                return false;
            }
            ClientEvent::UploadStarted { file, to, arq } => {
                let id = format!("up:{file}:{to}");
                if let Some(i) = self.find(&id) {
                    self.rows.remove(i);
                }
                let mut t = Transfer::new(id, Direction::Up, file, to);
                t.state = State::Moving;
                t.arq = Some(shown(arq).into_owned());
                self.add(t);
            }
            ClientEvent::UploadDone {
                file, to, bytes, ..
            } => {
                if let Some(i) = self.find(&format!("up:{file}:{to}")) {
                    let t = &mut self.rows[i];
                    t.size = t.size.max(*bytes);
                    t.done = t.size;
                    t.state = State::Done(None);
                }
            }
            _ => return false,
        }
        true
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.rows.iter().rposition(|t| t.id == id)
    }

    fn add(&mut self, t: Transfer) {
        if self.rows.len() >= MAX_ROWS {
            let old = self.rows.iter().position(|t| !t.active()).unwrap_or(0);
            self.rows.remove(old);
        }
        self.rows.push(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(id: &str, size: u64) -> ClientEvent {
        ClientEvent::TransferStarted {
            id: id.into(),
            file: "a.bin".into(),
            from: "bob".into(),
            size,
            resumed_from: 0,
            path: "direct".into(),
            addr: "10.0.0.2:4000".into(),
            arq: "sr".into(),
        }
    }

    fn progress(id: &str, bytes: u64, total: u64) -> ClientEvent {
        ClientEvent::TransferProgress {
            id: id.into(),
            bytes,
            total,
            sources: vec![],
        }
    }

    #[test]
    fn a_download_moves_from_asked_to_done_with_rate_and_eta() {
        let t0 = Instant::now();
        let mut t = Transfers::default();
        t.asked("a.bin", "bob");
        assert_eq!(t.rows()[0].state, State::Waiting);
        t.on_event(
            t0,
            &ClientEvent::TransferRefused {
                file: "a.bin".into(),
                from: "bob".into(),
                reason: "busy".into(),
                detail: String::new(),
            },
        );
        assert!(t.rows()[0]
            .note
            .as_deref()
            .unwrap()
            .contains("bob refused (busy)"));
        t.on_event(t0, &started("7", 10_000_000));
        assert_eq!(t.rows().len(), 1, "the asked row became the download");
        t.on_event(
            t0 + Duration::from_secs(1),
            &progress("7", 2_000_000, 10_000_000),
        );
        let row = &t.rows()[0];
        assert_eq!(row.rate, 2_000_000.0);
        assert_eq!(row.eta(), Some(Duration::from_secs(4)));
        assert!((row.ratio() - 0.2).abs() < 1e-9);
        t.on_event(
            t0 + Duration::from_secs(5),
            &ClientEvent::TransferDone {
                id: "7".into(),
                file: "a.bin".into(),
                from: "bob".into(),
                bytes: 10_000_000,
                seconds: 5.0,
                blake3: String::new(),
                sources: vec![],
                path: "/dl/a.bin".into(),
            },
        );
        assert_eq!(t.rows()[0].state, State::Done(Some("/dl/a.bin".into())));
        assert_eq!(t.active(), 0);
    }

    #[test]
    fn a_failed_download_with_bytes_is_resumable() {
        let t0 = Instant::now();
        let mut t = Transfers::default();
        t.on_event(t0, &started("1", 100));
        t.on_event(t0, &progress("1", 40, 100));
        t.on_event(
            t0,
            &ClientEvent::TransferFailed {
                id: "1".into(),
                file: "a.bin".into(),
                from: "bob".into(),
                reason: "bob went silent".into(),
            },
        );
        assert_eq!(
            t.rows()[0].state,
            State::Failed {
                reason: "bob went silent".into(),
                resumable: true
            }
        );
    }

    #[test]
    fn rows_are_bounded() {
        let t0 = Instant::now();
        let mut t = Transfers::default();
        for i in 0..MAX_ROWS + 20 {
            t.on_event(t0, &started(&i.to_string(), 1));
        }
        assert_eq!(t.rows().len(), MAX_ROWS);
    }
}
