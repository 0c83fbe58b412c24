//! The input line: a small line editor with history.
//!
//! The text is kept as characters so that the cursor moves by what the
//! user sees, not by bytes; the line is drawn from this state and nothing
//! else, so incoming lines never touch it.

use std::collections::VecDeque;

/// Lines kept in the input history.
const HISTORY: usize = 500;
/// The longest line the editor takes: a chat line's limit with room to spare.
pub const MAX_INPUT: usize = 4096;

/// The line being typed, its cursor and the lines typed before.
#[derive(Debug, Default, Clone)]
pub struct Input {
    chars: Vec<char>,
    /// Cursor position, in characters (0..=len).
    cursor: usize,
    history: VecDeque<String>,
    /// Where up/down is in the history: `None` on the new line.
    browsing: Option<usize>,
    /// The new line, kept while browsing the history.
    draft: Vec<char>,
}

impl Input {
    /// The text typed so far.
    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    /// The cursor's position in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The text before the cursor.
    pub fn before_cursor(&self) -> String {
        self.chars[..self.cursor].iter().collect()
    }

    /// Whether nothing is typed.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Types `c` at the cursor (ignored past [`MAX_INPUT`], and for
    /// control characters, which a pasted escape sequence could carry).
    pub fn insert(&mut self, c: char) {
        if self.chars.len() >= MAX_INPUT || c.is_control() {
            return;
        }
        self.chars.insert(self.cursor, c);
        self.cursor += 1;
    }

    /// Replaces the `len` characters before the cursor with `with`.
    pub fn replace_before(&mut self, len: usize, with: &str) {
        let start = self.cursor.saturating_sub(len);
        let tail = self.chars.split_off(self.cursor);
        self.chars.truncate(start);
        self.cursor = start;
        for c in with.chars() {
            self.insert(c);
        }
        self.chars.extend(tail);
        self.chars.truncate(MAX_INPUT);
    }

    /// Deletes the character before the cursor.
    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }

    /// Deletes the character under the cursor.
    pub fn delete(&mut self) {
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }

    /// Moves the cursor one character left.
    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    /// Moves the cursor one character right.
    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.chars.len());
    }

    /// Moves the cursor to the start.
    pub fn home(&mut self) {
        self.cursor = 0;
    }

    /// Moves the cursor to the end.
    pub fn end(&mut self) {
        self.cursor = self.chars.len();
    }

    /// Deletes from the start to the cursor.
    pub fn kill_to_start(&mut self) {
        self.chars.drain(..self.cursor);
        self.cursor = 0;
    }

    /// Deletes from the cursor to the end.
    pub fn kill_to_end(&mut self) {
        self.chars.truncate(self.cursor);
    }

    /// Deletes the word before the cursor (and the spaces after it).
    pub fn kill_word(&mut self) {
        let mut start = self.cursor;
        while start > 0 && self.chars[start - 1].is_whitespace() {
            start -= 1;
        }
        while start > 0 && !self.chars[start - 1].is_whitespace() {
            start -= 1;
        }
        self.chars.drain(start..self.cursor);
        self.cursor = start;
    }

    /// Takes the line typed (for Enter): it is cleared and, unless
    /// `secret` or blank, kept in the history.
    pub fn take(&mut self, secret: bool) -> String {
        let line = self.text();
        self.chars.clear();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        if !secret && !line.trim().is_empty() && self.history.back() != Some(&line) {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(line.clone());
        }
        line
    }

    /// Shows the line typed before the one shown (up arrow).
    pub fn older(&mut self) {
        let at = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = std::mem::take(&mut self.chars);
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.browsing = Some(at);
        self.show(self.history[at].chars().collect());
    }

    /// Shows the line typed after the one shown, or the new line (down).
    pub fn newer(&mut self) {
        let Some(i) = self.browsing else {
            return;
        };
        if i + 1 < self.history.len() {
            self.browsing = Some(i + 1);
            self.show(self.history[i + 1].chars().collect());
        } else {
            self.browsing = None;
            let draft = std::mem::take(&mut self.draft);
            self.show(draft);
        }
    }

    fn show(&mut self, chars: Vec<char>) {
        self.chars = chars;
        self.cursor = self.chars.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> Input {
        let mut i = Input::default();
        s.chars().for_each(|c| i.insert(c));
        i
    }

    #[test]
    fn editing_moves_by_characters() {
        let mut i = typed("héllo");
        i.left();
        i.left();
        i.insert('X');
        assert_eq!(i.text(), "hélXlo");
        i.home();
        i.delete();
        assert_eq!(i.text(), "élXlo");
        i.end();
        i.backspace();
        assert_eq!(i.text(), "élXl");
        i.kill_word();
        assert_eq!(i.text(), "");
        let mut i = typed("@bob hello there");
        i.kill_word();
        assert_eq!(i.text(), "@bob hello ");
        i.home();
        i.right();
        i.kill_to_end();
        assert_eq!(i.text(), "@");
    }

    #[test]
    fn control_characters_are_not_typed() {
        let i = typed("a\u{1b}[2Jb\n");
        assert_eq!(i.text(), "a[2Jb");
    }

    #[test]
    fn history_goes_back_and_returns_to_the_draft() {
        let mut i = typed("first");
        assert_eq!(i.take(false), "first");
        "second".chars().for_each(|c| i.insert(c));
        i.take(false);
        "secret".chars().for_each(|c| i.insert(c));
        assert_eq!(i.take(true), "secret");
        "draft".chars().for_each(|c| i.insert(c));
        i.older();
        assert_eq!(i.text(), "second", "the password is not in the history");
        i.older();
        assert_eq!(i.text(), "first");
        i.older();
        assert_eq!(i.text(), "first");
        i.newer();
        i.newer();
        assert_eq!(i.text(), "draft");
        assert_eq!(i.cursor(), 5);
    }

    #[test]
    fn the_line_is_bounded() {
        let mut i = Input::default();
        for _ in 0..MAX_INPUT + 10 {
            i.insert('x');
        }
        assert_eq!(i.text().len(), MAX_INPUT);
        i.home();
        i.replace_before(0, "yyyy");
        assert_eq!(i.text().chars().count(), MAX_INPUT);
    }
}
