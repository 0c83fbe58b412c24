//! The windows: the status window, one per room and one per direct
//! conversation, each with its lines, unread count and scroll position.

use std::collections::VecDeque;

/// Lines a window keeps; older ones are dropped (the server keeps a room's
/// history).
pub const SCROLLBACK: usize = 10_000;
/// Windows open at most.
pub const MAX_WINDOWS: usize = 100;

/// What a window shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The server's notices, the room list, errors not tied to a window.
    Status,
    /// A room.
    Room(String),
    /// Direct messages with one user.
    Direct(String),
}

/// How a line is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Someone's chat line.
    Chat,
    /// One of our own chat lines.
    Mine,
    /// A chat line that names us (or a direct message to us).
    Mention,
    /// Joins, parts, notices.
    Info,
    /// Something failed.
    Error,
}

/// One line of a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `HH:MM`, local time.
    pub time: String,
    /// The speaker, for chat lines.
    pub who: Option<String>,
    /// The text, already escaped for the terminal.
    pub text: String,
    pub tone: Tone,
    /// Its place in the room's history (0 for lines no history keeps).
    pub seq: u64,
}

/// A window.
#[derive(Debug, Clone)]
pub struct Window {
    pub kind: Kind,
    pub lines: VecDeque<Line>,
    /// Lines that came while another window was shown.
    pub unread: u32,
    /// Whether one of those named us.
    pub highlight: bool,
    /// Rows scrolled up from the newest (0: following the newest).
    pub scroll: usize,
    /// A room's members, us included.
    pub peers: Vec<String>,
    /// Whether we are in the room now (a room window stays after `/part`).
    pub joined: bool,
    /// An earlier page of the room's history is asked for.
    pub fetching: bool,
    /// The room keeps no line earlier than those shown.
    pub complete: bool,
}

impl Window {
    fn new(kind: Kind) -> Window {
        Window {
            kind,
            lines: VecDeque::new(),
            unread: 0,
            highlight: false,
            scroll: 0,
            peers: Vec::new(),
            joined: false,
            fetching: false,
            complete: false,
        }
    }

    /// The oldest line of the room's history shown (by `seq`).
    pub fn oldest_seq(&self) -> Option<u64> {
        self.lines.iter().map(|l| l.seq).filter(|s| *s > 0).min()
    }

    /// Puts `page` (older lines, oldest first) before what is shown,
    /// leaving out lines shown already and any beyond the scrollback.
    pub fn prepend(&mut self, page: Vec<Line>) {
        let oldest = self.oldest_seq().unwrap_or(u64::MAX);
        let room = SCROLLBACK.saturating_sub(self.lines.len());
        let older: Vec<Line> = page.into_iter().filter(|l| l.seq < oldest).collect();
        let skip = older.len().saturating_sub(room);
        for line in older.into_iter().skip(skip).rev() {
            self.lines.push_front(line);
        }
    }

    /// The name shown in the window list and the bar (escaped: it comes
    /// from outside).
    pub fn title(&self) -> String {
        let shown = chatdrop_client::shown;
        match &self.kind {
            Kind::Status => "status".into(),
            Kind::Room(r) => format!("#{}", shown(r)),
            Kind::Direct(u) => format!("@{}", shown(u)),
        }
    }
}

/// Every window, in the order they opened, and which one is shown.
#[derive(Debug, Clone)]
pub struct Windows {
    list: Vec<Window>,
    current: usize,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            list: vec![Window::new(Kind::Status)],
            current: 0,
        }
    }
}

impl Windows {
    /// All windows, in order.
    pub fn all(&self) -> &[Window] {
        &self.list
    }

    /// The index of the window shown.
    pub fn current_index(&self) -> usize {
        self.current
    }

    /// The window shown.
    pub fn current(&self) -> &Window {
        &self.list[self.current]
    }

    /// The window shown, to change.
    pub fn current_mut(&mut self) -> &mut Window {
        &mut self.list[self.current]
    }

    /// The index of the window of `kind`, opened if there is none; past
    /// [`MAX_WINDOWS`] (anyone online can open one with a direct
    /// message), the status window's.
    pub fn open(&mut self, kind: Kind) -> usize {
        if let Some(i) = self.find(&kind) {
            return i;
        }
        if self.list.len() >= MAX_WINDOWS {
            return 0;
        }
        self.list.push(Window::new(kind));
        self.list.len() - 1
    }

    /// No page of history is on its way any more (it was refused, or the
    /// connection went).
    pub fn stop_fetching(&mut self) {
        for w in &mut self.list {
            w.fetching = false;
        }
    }

    /// The index of the window of `kind`, if open.
    pub fn find(&self, kind: &Kind) -> Option<usize> {
        self.list.iter().position(|w| &w.kind == kind)
    }

    /// The window at `i`.
    pub fn get_mut(&mut self, i: usize) -> &mut Window {
        &mut self.list[i]
    }

    /// Shows window `i` (ignored if there is none) and marks it read.
    pub fn show(&mut self, i: usize) {
        if i < self.list.len() {
            self.current = i;
            let w = &mut self.list[i];
            w.unread = 0;
            w.highlight = false;
        }
    }

    /// Shows the next window (`step` 1) or the one before (`step` -1),
    /// around the ends.
    pub fn cycle(&mut self, step: isize) {
        let n = self.list.len() as isize;
        let i = (self.current as isize + step).rem_euclid(n);
        self.show(i as usize);
    }

    /// Closes the window shown (never the status window).
    pub fn close_current(&mut self) {
        if self.current > 0 {
            self.list.remove(self.current);
            let i = self.current.min(self.list.len() - 1);
            self.show(i);
        }
    }

    /// Adds `line` to window `i`, counting it unread there unless shown
    /// (or not `count`ed: a line of history replayed).
    pub fn push(&mut self, i: usize, line: Line, count: bool) {
        let shown = i == self.current;
        let w = &mut self.list[i];
        if count && !shown && line.tone != Tone::Info {
            w.unread = w.unread.saturating_add(1);
            w.highlight |= line.tone == Tone::Mention;
        }
        if w.lines.len() == SCROLLBACK {
            w.lines.pop_front();
        }
        w.lines.push_back(line);
        // A window scrolled up stays on what its reader is reading.
        if w.scroll > 0 {
            w.scroll += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(tone: Tone) -> Line {
        Line {
            time: "12:00".into(),
            who: None,
            text: "x".into(),
            tone,
            seq: 0,
        }
    }

    #[test]
    fn unread_lines_are_counted_where_not_shown() {
        let mut w = Windows::default();
        let room = w.open(Kind::Room("lobby".into()));
        w.push(room, line(Tone::Chat), true);
        w.push(room, line(Tone::Info), true);
        w.push(room, line(Tone::Mention), true);
        assert_eq!(w.all()[room].unread, 2, "joins and parts are not unread");
        assert!(w.all()[room].highlight);
        w.show(room);
        assert_eq!(w.all()[room].unread, 0);
        assert!(!w.all()[room].highlight);
        w.push(room, line(Tone::Chat), true);
        assert_eq!(w.all()[room].unread, 0, "the window shown reads it");
    }

    #[test]
    fn windows_cycle_and_close() {
        let mut w = Windows::default();
        w.open(Kind::Room("a".into()));
        let dm = w.open(Kind::Direct("bob".into()));
        assert_eq!(
            w.open(Kind::Direct("bob".into())),
            dm,
            "one window per user"
        );
        w.cycle(-1);
        assert_eq!(w.current_index(), dm);
        w.cycle(1);
        assert_eq!(w.current_index(), 0);
        w.close_current();
        assert_eq!(w.all().len(), 3, "the status window stays");
        w.show(dm);
        w.close_current();
        assert_eq!(w.all().len(), 2);
        assert_eq!(w.current().title(), "#a");
    }

    #[test]
    fn scrollback_is_bounded() {
        let mut w = Windows::default();
        for _ in 0..SCROLLBACK + 5 {
            w.push(0, line(Tone::Info), true);
        }
        assert_eq!(w.all()[0].lines.len(), SCROLLBACK);
    }
}
