//! The UI's state and what changes it: client events in, keys in, commands
//! out. Nothing here draws or touches the terminal (see `draw` and
//! `terminal`), so every behaviour is tested by feeding events and keys.

use std::cell::Cell;
use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use chatdrop_client::{describe, parse_command, shown, ClientEvent, Command, ErrorKind, HELP};
use chatdrop_proto::{ErrorCode, Target};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::complete::Completion;
use crate::input::Input;
use crate::transfers::Transfers;
use crate::windows::{Kind, Line, Tone, Windows};

/// `whohas` answers kept for the picker.
const MAX_OWNERS: usize = 50;
/// Offers waiting for an answer that the UI lists.
const MAX_OFFERS: usize = 32;
/// Room names kept for completion.
const MAX_ROOM_NAMES: usize = 1000;

/// The keys and the UI's own commands, shown by `/help` after the
/// commands of the line mode.
pub const KEYS: &str = "\
keys:
  Alt+1..9, Ctrl+N/P    switch windows            PgUp/PgDn   scroll
  Up/Down               earlier lines typed       Tab         complete
  F2 (or Ctrl+O)        pick a whohas answer; Enter downloads it
  F3 / F4               accept / decline the offer of files shown
  Ctrl+C                quit
in this window:
  plain text            goes to the room or user of the window shown
  /query USER           open a window with USER   /msg USER TEXT  message USER
  /win N                show window N             /close      close this window
  /get N                download whohas answer N  /part [ROOM] leave a room
  /history              earlier lines of the room (PgUp at the top does it too)
  /clear                clear this window";

/// What the UI asks of the program around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Give this command to the client.
    Send(Command),
    /// Leave: disconnect cleanly and restore the terminal.
    Quit,
}

/// A `whohas` answer: `from` shares `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The file's name as asked (raw, to ask for it again).
    pub file: String,
    /// The owner's name (raw).
    pub from: String,
    pub size: u64,
}

/// An offer of files waiting for the user's answer (F3, F4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Its number, for `/accept` and `/decline`.
    pub offer: u32,
    /// The sender (raw).
    pub from: String,
    pub files: usize,
    pub bytes: u64,
    /// The first file's name (raw).
    pub first: String,
    /// When it came (ms since the epoch, the UI's clock).
    pub since_ms: u64,
}

/// How long an offer is shown on the row before F3 or F4 answers it: a
/// key pressed for the one before does not answer one that just took its
/// place (someone flooding offers cannot have theirs accepted so).
const OFFER_SETTLE_MS: u64 = 1000;

/// The whole state of the UI.
pub struct App {
    pub(crate) me: String,
    /// `name at address` of the server, once connected.
    pub(crate) server: Option<String>,
    pub(crate) online: bool,
    pub(crate) windows: Windows,
    pub(crate) input: Input,
    pub(crate) transfers: Transfers,
    /// `whohas` answers, newest last.
    pub(crate) owners: VecDeque<Owner>,
    /// The answer chosen while the picker has the keys.
    pub(crate) picker: Option<usize>,
    /// Offers of files waiting for an answer, newest last: the newest is
    /// shown above the input line, where F3 and F4 answer it.
    pub(crate) offers: VecDeque<Waiting>,
    /// The room whose password is being typed (the input is hidden).
    pub(crate) secret: Option<String>,
    /// The room of the last join or create not answered yet.
    pending_join: Option<String>,
    rooms: BTreeSet<String>,
    completion: Option<Completion>,
    /// Formats a server time (ms since the epoch) as `HH:MM`.
    clock: fn(u64) -> String,
    /// Whether colours are used (`NO_COLOR` turns them off).
    pub color: bool,
    /// Whether the terminal bell rings on a mention or a finished download.
    pub bell: bool,
    ring: bool,
    /// Whether those also ask the terminal for a desktop notification
    /// (`--notify`).
    pub notify: bool,
    /// What the next notification says.
    notice: Option<String>,
    /// The wall clock's time at the last event or tick (ms since the
    /// epoch), for lines the UI adds itself.
    clock_ms: u64,
    /// The share folder and the download folder, told on the first line
    /// and in `/help`.
    folders: Option<(String, String)>,
    /// Rows of the message area at the last draw, for paging.
    pub(crate) page: Cell<usize>,
    /// Rows the window shown had at the last draw (all its lines wrapped,
    /// as far as drawing went), for knowing its top.
    pub(crate) rows: Cell<usize>,
}

impl App {
    /// The UI of user `me`; `clock` formats times (local time in the
    /// program, a fixed zone in tests).
    pub fn new(me: &str, clock: fn(u64) -> String) -> App {
        App {
            me: me.to_string(),
            server: None,
            online: false,
            windows: Windows::default(),
            input: Input::default(),
            transfers: Transfers::default(),
            owners: VecDeque::new(),
            picker: None,
            offers: VecDeque::new(),
            secret: None,
            pending_join: None,
            rooms: BTreeSet::new(),
            completion: None,
            clock,
            color: true,
            bell: true,
            ring: false,
            notify: false,
            notice: None,
            clock_ms: 0,
            folders: None,
            page: Cell::new(10),
            rows: Cell::new(0),
        }
    }

    /// Sets the wall clock (ms since the epoch) for the lines the UI adds
    /// on its own, as on a key.
    pub fn set_time(&mut self, now_ms: u64) {
        self.clock_ms = now_ms;
    }

    /// Names the share folder and the download folder (shown escaped).
    pub fn set_folders(&mut self, share: &std::path::Path, downloads: &std::path::Path) {
        let show = |p: &std::path::Path| shown(&p.display().to_string()).into_owned();
        self.folders = Some((show(share), show(downloads)));
    }

    /// The first lines of the status window.
    pub fn welcome(&mut self) {
        self.info(
            self.clock_ms,
            "chatdrop: /join NAME enters a room, /create NAME makes one, /help lists everything",
        );
        self.tell_folders(0);
    }

    /// Says where shared files are taken from and downloads go, in window
    /// `i`.
    fn tell_folders(&mut self, i: usize) {
        if let Some((share, downloads)) = self.folders.clone() {
            let text = format!(
                "Your share folder is {share} (put files there, then @me setshare NAME); \
                 downloads go to {downloads}"
            );
            self.info_at(i, self.clock_ms, &text, Tone::Info);
        }
    }

    /// Whether the bell should ring now (once per call that returns true).
    pub fn take_ring(&mut self) -> bool {
        std::mem::take(&mut self.ring) && self.bell
    }

    /// The desktop notification due, if notifications are on: a line for
    /// what rang, escaped, with no `;` (which ends a field of the
    /// terminal's notification sequence).
    pub fn take_notice(&mut self) -> Option<String> {
        let notice = self.notice.take().filter(|_| self.notify)?;
        let text: String = shown(&notice).chars().take(200).collect();
        Some(text.replace(';', ","))
    }

    /// Rings, and notes what a notification would say.
    fn alert(&mut self, what: String) {
        self.ring = true;
        self.notice = Some(what);
    }

    /// Enters `room` as the client will at start (`--room`): a password
    /// asked for it is then asked at the hidden prompt.
    pub fn joining(&mut self, room: &str) {
        self.pending_join = Some(room.to_string());
    }

    /// The line for `now_ms` of window `i`.
    fn line(&self, now_ms: u64, who: Option<&str>, text: &str, tone: Tone) -> Line {
        Line {
            time: (self.clock)(now_ms),
            who: who.map(|w| shown(w).into_owned()),
            text: text.to_string(),
            tone,
            seq: 0,
        }
    }

    /// Adds an information line (several if `text` has line breaks) to
    /// window `i`.
    fn info_at(&mut self, i: usize, now_ms: u64, text: &str, tone: Tone) {
        for part in text.split('\n') {
            let line = self.line(now_ms, None, part, tone);
            self.windows.push(i, line, true);
        }
    }

    fn info(&mut self, now_ms: u64, text: &str) {
        self.info_at(0, now_ms, text, Tone::Info);
    }

    /// Adds a line to the window shown.
    fn here(&mut self, now_ms: u64, text: &str, tone: Tone) {
        let i = self.windows.current_index();
        self.info_at(i, now_ms, text, tone);
    }

    fn room_window(&mut self, room: &str) -> usize {
        self.windows.open(Kind::Room(room.to_string()))
    }

    /// Takes a client event: `now_ms` is the wall clock (ms since the
    /// epoch) for lines without a server time, `now` the monotonic one for
    /// transfer rates.
    pub fn on_event(&mut self, ev: &ClientEvent, now_ms: u64, now: Instant) {
        self.clock_ms = now_ms;
        let text = describe(ev, &self.me);
        if self.transfers.on_event(now, ev) {
            match ev {
                ClientEvent::TransferProgress { .. } => {}
                ClientEvent::TransferDone { file, .. } => {
                    self.alert(format!("{file} downloaded"));
                    self.here(now_ms, &text, Tone::Info);
                }
                ClientEvent::TransferFailed { .. } => self.here(now_ms, &text, Tone::Error),
                _ => self.here(now_ms, &text, Tone::Info),
            }
            return;
        }
        match ev {
            ClientEvent::Message {
                room,
                from,
                to,
                text: said,
                ts,
                history,
                seq,
            } => self.message(room.as_deref(), from, to, said, *ts, *history, *seq),
            ClientEvent::History { room, lines, more } => {
                let i = self.room_window(room);
                let page: Vec<Line> = lines
                    .iter()
                    .map(|l| {
                        let tone = if l.from == self.me {
                            Tone::Mine
                        } else {
                            Tone::Chat
                        };
                        let mut line = self.line(l.ts, Some(&l.from), &shown(&l.text), tone);
                        line.seq = l.seq;
                        line
                    })
                    .collect();
                let w = self.windows.get_mut(i);
                w.fetching = false;
                w.complete = !*more;
                w.prepend(page);
                if !*more {
                    let first = self.line(
                        now_ms,
                        None,
                        "(the beginning of what the room keeps)",
                        Tone::Info,
                    );
                    self.windows.get_mut(i).lines.push_front(first);
                }
            }
            ClientEvent::Connected {
                server,
                server_name,
                ..
            } => {
                self.online = true;
                self.server = Some(format!("{} at {}", shown(server_name), shown(server)));
                self.info(now_ms, &text);
            }
            ClientEvent::Disconnected { .. } | ClientEvent::Kicked { .. } => {
                self.online = false;
                self.windows.stop_fetching();
                self.info(now_ms, &text);
                if self.windows.current_index() != 0 {
                    self.here(now_ms, &text, Tone::Error);
                }
            }
            ClientEvent::Joined {
                room,
                peers,
                created,
                ..
            } => {
                // A room the user asked for is shown; one joined again
                // after a reconnect is not, nor does it end a password
                // prompt for another room.
                let asked = self.pending_join.as_deref() == Some(room);
                if asked {
                    self.pending_join = None;
                }
                if self.secret.as_deref() == Some(room) {
                    self.secret = None;
                    self.input.take(true);
                }
                self.remember_room(room);
                let i = self.room_window(room);
                let w = self.windows.get_mut(i);
                w.joined = true;
                // Its lines are numbered by this server: paging starts
                // afresh.
                w.complete = false;
                w.fetching = false;
                w.peers = peers.clone();
                if !w.peers.contains(&self.me) {
                    w.peers.push(self.me.clone());
                }
                w.peers.sort();
                let shown_room = matches!(self.windows.current().kind, Kind::Room(_));
                if asked || !shown_room {
                    self.windows.show(i);
                }
                // The peers have their own column: one line says it all.
                let others: Vec<String> = peers.iter().map(|p| shown(p).into_owned()).collect();
                let with = if others.is_empty() {
                    "nobody else is here yet".to_string()
                } else {
                    format!("with {}", others.join(", "))
                };
                let verb = if *created {
                    "created and joined"
                } else {
                    "joined"
                };
                let room = shown(room);
                self.info_at(
                    i,
                    now_ms,
                    &format!("You {verb} #{room}, {with}"),
                    Tone::Info,
                );
            }
            ClientEvent::Left { room } => {
                if let Some(i) = self.windows.find(&Kind::Room(room.clone())) {
                    let w = self.windows.get_mut(i);
                    w.joined = false;
                    w.peers.clear();
                    self.info_at(i, now_ms, &text, Tone::Info);
                }
            }
            ClientEvent::PeerJoined { room, user } => {
                let i = self.room_window(room);
                let w = self.windows.get_mut(i);
                if !w.peers.contains(user) {
                    w.peers.push(user.clone());
                    w.peers.sort();
                }
                self.info_at(i, now_ms, &text, Tone::Info);
            }
            ClientEvent::PeerLeft { room, user, .. } => {
                let i = self.room_window(room);
                self.windows.get_mut(i).peers.retain(|p| p != user);
                self.info_at(i, now_ms, &text, Tone::Info);
            }
            ClientEvent::Peers { room, peers } => {
                let i = self.room_window(room);
                let w = self.windows.get_mut(i);
                w.peers = peers.clone();
                w.peers.sort();
                self.info_at(i, now_ms, &text, Tone::Info);
            }
            ClientEvent::RoomRenamed { old, new, .. } => {
                if let Some(i) = self.windows.find(&Kind::Room(old.clone())) {
                    self.windows.get_mut(i).kind = Kind::Room(new.clone());
                    self.info_at(i, now_ms, &text, Tone::Info);
                } else {
                    self.info(now_ms, &text);
                }
                self.remember_room(new);
            }
            ClientEvent::Rooms { rooms, .. } => {
                for r in rooms {
                    self.remember_room(&r.name);
                }
                self.here(now_ms, &text, Tone::Info);
            }
            ClientEvent::WhohasReply {
                file, from, size, ..
            } => {
                if self.owners.len() == MAX_OWNERS {
                    self.owners.pop_front();
                }
                self.owners.push_back(Owner {
                    file: file.clone(),
                    from: from.clone(),
                    size: *size,
                });
                let n = self.owners.len();
                self.here(
                    now_ms,
                    &format!("[{n}] {text}  (/get {n} or F2)"),
                    Tone::Info,
                );
            }
            ClientEvent::Error { code, .. } => {
                // A page refused (too many asked) can be asked again.
                self.windows.stop_fetching();
                let private = matches!(
                    code,
                    ErrorKind::Server(ErrorCode::PasswordRequired | ErrorCode::WrongPassword)
                );
                match (private, self.pending_join.take()) {
                    (true, Some(room)) => {
                        let why = if *code == ErrorKind::Server(ErrorCode::WrongPassword) {
                            "wrong password"
                        } else {
                            "it is private"
                        };
                        let room_shown = shown(&room).into_owned();
                        self.here(
                            now_ms,
                            &format!(
                                "{room_shown}: {why}. Type its password (it is not shown), \
                                 or Esc to cancel"
                            ),
                            Tone::Info,
                        );
                        self.secret = Some(room);
                    }
                    _ => self.here(now_ms, &text, Tone::Error),
                }
            }
            ClientEvent::OfferReceived {
                offer,
                from,
                files,
                bytes,
                auto_accepted,
            } => {
                // Said in the window with the sender, and answered with a
                // key wherever the user is.
                // (A mention: the window is marked `!` until shown.)
                let tell = match auto_accepted {
                    true => text,
                    false => format!("{text} (or F3 / F4)"),
                };
                self.with_user(from, now_ms, &tell, Tone::Mention);
                self.alert(format!("{from} offers you {} files", files.len()));
                if !auto_accepted {
                    if self.offers.len() == MAX_OFFERS {
                        self.offers.pop_front();
                    }
                    self.offers.push_back(Waiting {
                        offer: *offer,
                        from: from.clone(),
                        files: files.len(),
                        bytes: *bytes,
                        first: files.first().map(|f| f.name.clone()).unwrap_or_default(),
                        since_ms: now_ms,
                    });
                }
            }
            ClientEvent::OfferAccepted { offer, from, .. }
            | ClientEvent::OfferDeclined { offer, from } => {
                self.offers.retain(|o| o.offer != *offer);
                self.with_user(from, now_ms, &text, Tone::Info);
            }
            ClientEvent::OfferFinished { from, .. } => {
                self.with_user(from, now_ms, &text, Tone::Info);
                self.alert(text);
            }
            ClientEvent::OfferSent { to, .. } | ClientEvent::OfferAnswered { to, .. } => {
                self.with_user(to, now_ms, &text, Tone::Info)
            }
            ClientEvent::ServerNotice { .. }
            | ClientEvent::ServerChosen { .. }
            | ClientEvent::Reconnecting { .. } => self.info(now_ms, &text),
            _ => self.here(now_ms, &text, Tone::Info),
        }
    }

    /// Adds `text` to the window of the conversation with `user` (opened
    /// if need be): where offers of files between the two are told.
    fn with_user(&mut self, user: &str, now_ms: u64, text: &str, tone: Tone) {
        let i = self.windows.open(Kind::Direct(user.to_string()));
        self.info_at(i, now_ms, text, tone);
    }

    fn remember_room(&mut self, room: &str) {
        if self.rooms.len() < MAX_ROOM_NAMES {
            self.rooms.insert(room.to_string());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &mut self,
        room: Option<&str>,
        from: &str,
        to: &str,
        text: &str,
        ts: u64,
        history: bool,
        seq: u64,
    ) {
        let mine = from == self.me;
        let kind = match (to, room) {
            ("all" | "server", Some(room)) => Kind::Room(room.to_string()),
            ("all" | "server", None) => Kind::Status,
            (to, _) if mine => Kind::Direct(to.to_string()),
            (to, _) if to == self.me => Kind::Direct(from.to_string()),
            (_, Some(room)) => Kind::Room(room.to_string()),
            (_, None) => Kind::Status,
        };
        let direct = matches!(kind, Kind::Direct(_));
        let tone = if mine {
            Tone::Mine
        } else if direct || mentions(text, &self.me) {
            Tone::Mention
        } else {
            Tone::Chat
        };
        if tone == Tone::Mention && !history {
            self.alert(format!("{from}: {text}"));
        }
        let i = self.windows.open(kind);
        let mut line = self.line(ts, Some(from), &shown(text), tone);
        line.seq = seq;
        // A line replayed on a rejoin may be shown already.
        let again = |l: &Line| l.seq == seq && l.text == line.text && l.who == line.who;
        if history && seq > 0 && self.windows.all()[i].lines.iter().any(again) {
            return;
        }
        self.windows.push(i, line, !history);
    }

    /// Takes a key; returns what the program must do.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Action> {
        if key.kind == KeyEventKind::Release {
            return Vec::new();
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if !matches!(key.code, KeyCode::Tab | KeyCode::BackTab) {
            self.completion = None;
        }
        match key.code {
            KeyCode::Char('c') if ctrl => return vec![Action::Quit],
            KeyCode::Char('d') if ctrl && self.input.is_empty() => return vec![Action::Quit],
            KeyCode::Char(d @ '0'..='9') if alt => {
                let n = d.to_digit(10).unwrap_or(0) as usize;
                self.windows.show(if n == 0 { 9 } else { n - 1 });
            }
            KeyCode::Char('n') if ctrl => self.windows.cycle(1),
            KeyCode::Char('p') if ctrl => self.windows.cycle(-1),
            KeyCode::Char('o') if ctrl => self.toggle_picker(),
            KeyCode::F(2) => self.toggle_picker(),
            KeyCode::F(3) => return self.answer_offer(true),
            KeyCode::F(4) => return self.answer_offer(false),
            KeyCode::Char('a') if ctrl => self.input.home(),
            KeyCode::Char('e') if ctrl => self.input.end(),
            KeyCode::Char('u') if ctrl => self.input.kill_to_start(),
            KeyCode::Char('k') if ctrl => self.input.kill_to_end(),
            KeyCode::Char('w') if ctrl => self.input.kill_word(),
            KeyCode::Char(_) if ctrl || alt => {}
            KeyCode::Char(c) => self.input.insert(c),
            KeyCode::Enter if self.picker.is_some() => return self.pick(),
            KeyCode::Enter => return self.submit(),
            KeyCode::Esc => {
                if self.secret.take().is_some() {
                    self.input.take(true);
                    self.here(self.clock_ms, "Not joined: no password given", Tone::Info);
                }
                self.picker = None;
            }
            KeyCode::Tab => self.complete(true),
            KeyCode::BackTab => self.complete(false),
            KeyCode::Backspace => self.input.backspace(),
            KeyCode::Delete => self.input.delete(),
            KeyCode::Left => self.input.left(),
            KeyCode::Right => self.input.right(),
            KeyCode::Home => self.input.home(),
            KeyCode::End => self.input.end(),
            KeyCode::Up => match self.picker {
                Some(i) => self.picker = Some(i.saturating_sub(1)),
                None if self.secret.is_none() => self.input.older(),
                None => {}
            },
            KeyCode::Down => match self.picker {
                Some(i) => self.picker = Some((i + 1).min(self.owners.len().saturating_sub(1))),
                None if self.secret.is_none() => self.input.newer(),
                None => {}
            },
            KeyCode::PageUp => {
                let page = self.page.get().max(1);
                let rows = self.rows.get();
                let w = self.windows.current_mut();
                // Scrolled up at most until the first row is at the top.
                let top = rows.saturating_sub(page + 1);
                w.scroll = (w.scroll + page).min(top);
                // At the top of what is shown: the room's earlier lines.
                if w.scroll >= top {
                    return self.earlier();
                }
            }
            KeyCode::PageDown => {
                let page = self.page.get().max(1);
                let w = self.windows.current_mut();
                w.scroll = w.scroll.saturating_sub(page);
            }
            _ => {}
        }
        Vec::new()
    }

    /// Asks for the page of history before the oldest line of the room
    /// window shown, unless one is on its way or there is none.
    fn earlier(&mut self) -> Vec<Action> {
        let w = self.windows.current_mut();
        let Kind::Room(room) = &w.kind else {
            return Vec::new();
        };
        if !w.joined || w.fetching || w.complete {
            return Vec::new();
        }
        w.fetching = true;
        let cmd = Command::History {
            room: Some(room.clone()),
            before: w.oldest_seq(),
        };
        vec![Action::Send(cmd)]
    }

    /// Pasted text: typed as it is, line breaks as spaces (a paste never
    /// sends).
    pub fn on_paste(&mut self, text: &str) {
        for c in text.chars() {
            self.input
                .insert(if c == '\n' || c == '\r' { ' ' } else { c });
        }
    }

    /// F3 or F4: the offer shown above the input line (the newest
    /// waiting) accepted or declined.
    fn answer_offer(&mut self, accept: bool) -> Vec<Action> {
        let Some(o) = self.offers.back() else {
            self.here(self.clock_ms, "No offer of files is waiting", Tone::Info);
            return Vec::new();
        };
        if self.clock_ms < o.since_ms + OFFER_SETTLE_MS {
            let from = shown(&o.from).into_owned();
            let text = format!("A new offer from {from} just came: read it, then F3 or F4 again");
            self.here(self.clock_ms, &text, Tone::Info);
            return Vec::new();
        }
        let Some(o) = self.offers.pop_back() else {
            return Vec::new();
        };
        let offer = Some(o.offer);
        let cmd = match accept {
            true => Command::Accept { offer },
            false => Command::Decline { offer },
        };
        vec![Action::Send(cmd)]
    }

    fn toggle_picker(&mut self) {
        self.picker = match self.picker {
            Some(_) => None,
            None if self.owners.is_empty() => {
                self.here(
                    self.clock_ms,
                    "No whohas answers yet: @all whohas FILE asks the room",
                    Tone::Info,
                );
                None
            }
            None => Some(self.owners.len() - 1),
        };
    }

    fn pick(&mut self) -> Vec<Action> {
        let Some(i) = self.picker.take() else {
            return Vec::new();
        };
        match self.owners.get(i).cloned() {
            Some(o) => self.command(Command::GetFile {
                owner: o.from,
                file: o.file,
            }),
            None => Vec::new(),
        }
    }

    /// The line typed, sent.
    fn submit(&mut self) -> Vec<Action> {
        if let Some(room) = self.secret.take() {
            let password = self.input.take(true);
            if password.is_empty() {
                self.here(self.clock_ms, "Not joined: no password given", Tone::Info);
                return Vec::new();
            }
            self.pending_join = Some(room.clone());
            return vec![Action::Send(Command::Join {
                room,
                password: Some(password),
            })];
        }
        // A password typed on the line (`/join ROOM PASS`) is not kept.
        let text = self.input.text();
        let secret = matches!(
            parse_command(&text),
            Ok(Some(
                Command::Join {
                    password: Some(_),
                    ..
                } | Command::Create {
                    password: Some(_),
                    ..
                }
            ))
        );
        let line = self.input.take(secret);
        let line = line.trim();
        if line.is_empty() {
            return Vec::new();
        }
        if line.starts_with('/') {
            if let Some(actions) = self.ui_command(line) {
                return actions;
            }
        }
        if line.starts_with(['/', '@']) {
            return match parse_command(line) {
                Ok(Some(cmd)) => self.command(cmd),
                Ok(None) => Vec::new(),
                Err(why) => {
                    self.here(self.clock_ms, &why, Tone::Error);
                    Vec::new()
                }
            };
        }
        let to = match &self.windows.current().kind {
            Kind::Room(_) if self.windows.current().joined => Target::All,
            Kind::Direct(user) => Target::User(user.clone()),
            Kind::Room(room) => {
                let room = shown(room).into_owned();
                self.here(
                    self.clock_ms,
                    &format!("You are not in {room} now: /join {room} first"),
                    Tone::Error,
                );
                return Vec::new();
            }
            Kind::Status => {
                self.here(
                    self.clock_ms,
                    "This is the status window: /join a room first, or write @user text",
                    Tone::Error,
                );
                return Vec::new();
            }
        };
        self.command(Command::Say {
            to,
            room: None,
            text: line.to_string(),
        })
    }

    /// The UI's own slash commands; `None` for the others.
    fn ui_command(&mut self, line: &str) -> Option<Vec<Action>> {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match word {
            "/win" => match rest.parse::<usize>() {
                Ok(n) if n >= 1 && n <= self.windows.all().len() => self.windows.show(n - 1),
                _ => self.here(
                    self.clock_ms,
                    "/win needs a window number from the list",
                    Tone::Error,
                ),
            },
            "/close" => match self.windows.current().kind.clone() {
                Kind::Status => self.here(self.clock_ms, "The status window stays", Tone::Error),
                Kind::Room(room) if self.windows.current().joined => {
                    self.windows.close_current();
                    return Some(self.command(Command::Leave { room: Some(room) }));
                }
                _ => self.windows.close_current(),
            },
            "/clear" => self.windows.current_mut().lines.clear(),

            "/query" if !rest.is_empty() && !rest.contains(' ') => {
                let i = self.windows.open(Kind::Direct(rest.to_string()));
                self.windows.show(i);
            }
            "/query" => self.here(
                self.clock_ms,
                "/query needs a user name: /query bob",
                Tone::Error,
            ),
            "/msg" => match rest.split_once(' ') {
                Some((user, text)) if !text.trim().is_empty() => {
                    return Some(self.command(Command::Say {
                        to: Target::User(user.to_string()),
                        room: None,
                        text: text.trim().to_string(),
                    }))
                }
                _ => self.here(
                    self.clock_ms,
                    "/msg needs a user and a message: /msg bob hi",
                    Tone::Error,
                ),
            },
            "/get" => match rest.parse::<usize>().ok().and_then(|n| n.checked_sub(1)) {
                Some(i) if i < self.owners.len() => {
                    self.picker = Some(i);
                    return Some(self.pick());
                }
                _ => self.here(
                    self.clock_ms,
                    "/get needs the number of a whohas answer: /get 1",
                    Tone::Error,
                ),
            },
            _ => return None,
        }
        Some(Vec::new())
    }

    /// `cmd`, noted where the UI follows it, to send. A command about
    /// a room that names none is about the room of the window shown.
    fn command(&mut self, mut cmd: Command) -> Vec<Action> {
        let here = match &self.windows.current().kind {
            Kind::Room(room) => Some(room.clone()),
            _ => None,
        };
        let needs_room = matches!(
            &cmd,
            Command::Say {
                to: Target::All,
                room: None,
                ..
            } | Command::WhoHas { room: None, .. }
        );
        if needs_room && here.is_none() {
            self.here(
                self.clock_ms,
                "This window is not a room: show a room's window (Alt+number) to write to it",
                Tone::Error,
            );
            return Vec::new();
        }
        match &mut cmd {
            Command::Say {
                to: Target::All,
                room,
                ..
            }
            | Command::Peers { room }
            | Command::Leave { room }
            | Command::WhoHas { room, .. }
            | Command::History { room, .. }
                if room.is_none() =>
            {
                room.clone_from(&here)
            }
            _ => {}
        }
        match &cmd {
            Command::Help => {
                self.here(self.clock_ms, HELP, Tone::Info);
                self.here(self.clock_ms, KEYS, Tone::Info);
                self.tell_folders(self.windows.current_index());
                return Vec::new();
            }
            Command::Quit => return vec![Action::Quit],
            Command::Join { room, .. } | Command::Create { room, .. } => {
                self.pending_join = Some(room.clone());
            }
            Command::GetFile { owner, file } => self.transfers.asked(file, owner),
            Command::History {
                room: Some(room), ..
            } => {
                // Before the oldest line this window shows.
                let Some(i) = self.windows.find(&Kind::Room(room.clone())) else {
                    return vec![Action::Send(cmd)];
                };
                let w = self.windows.get_mut(i);
                if w.complete {
                    self.here(
                        self.clock_ms,
                        "No earlier lines: the room keeps no more",
                        Tone::Info,
                    );
                    return Vec::new();
                }
                w.fetching = true;
                let before = w.oldest_seq();
                if let Command::History { before: b, .. } = &mut cmd {
                    *b = b.or(before);
                }
            }
            Command::WhoHas { file, .. } => self.owners.retain(|o| &o.file != file),
            _ => {}
        }
        vec![Action::Send(cmd)]
    }

    fn complete(&mut self, forward: bool) {
        if self.secret.is_some() {
            return;
        }
        if self.completion.is_none() {
            let before = self.input.before_cursor();
            self.completion = Completion::start(&before, &self.names());
        }
        if let Some(c) = &mut self.completion {
            let (erase, with) = c.next(forward);
            self.input.replace_before(erase, &with);
        }
    }

    /// What completion draws from.
    fn names(&self) -> crate::complete::Names {
        let mut users: BTreeSet<String> = self.windows.current().peers.iter().cloned().collect();
        for w in self.windows.all() {
            if let Kind::Direct(u) = &w.kind {
                users.insert(u.clone());
            }
        }
        users.remove(&self.me);
        crate::complete::Names {
            users: users.into_iter().collect(),
            rooms: self.rooms.iter().cloned().collect(),
            files: self
                .owners
                .iter()
                .map(|o| o.file.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect(),
        }
    }
}

/// The wall clock, ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether `text` names `me` as a word (any case).
pub fn mentions(text: &str, me: &str) -> bool {
    if me.is_empty() {
        return false;
    }
    let name_char = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
    let text = text.to_lowercase();
    let me = me.to_lowercase();
    text.match_indices(&me).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + me.len()..].chars().next();
        // A sentence's full stop after the name still names it.
        let after_ok = match after {
            None => true,
            Some('.') => text[at + me.len() + 1..]
                .chars()
                .next()
                .is_none_or(|c| !name_char(c)),
            Some(c) => !name_char(c),
        };
        before.is_none_or(|c| !name_char(c)) && after_ok
    })
}

#[cfg(test)]
impl App {
    /// A download under way and one done, for screens that need a pane.
    pub(crate) fn transfers_for_tests(&mut self) {
        let now = Instant::now();
        self.on_event(
            &ClientEvent::TransferStarted {
                id: "x1".into(),
                file: "big.iso".into(),
                from: "bob".into(),
                size: 1_000_000_000,
                resumed_from: 0,
                path: "direct".into(),
                addr: "10.0.0.2:4000".into(),
                arq: "sr".into(),
            },
            self.clock_ms,
            now,
        );
        self.on_event(
            &ClientEvent::TransferProgress {
                id: "x1".into(),
                bytes: 300_000_000,
                total: 1_000_000_000,
                sources: vec![],
            },
            self.clock_ms,
            now + std::time::Duration::from_secs(3),
        );
    }
}
