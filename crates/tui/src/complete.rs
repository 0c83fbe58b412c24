//! Tab completion of the word before the cursor: commands, user names,
//! room names and the file names `whohas` answers gave. Tab again goes to
//! the next candidate, Shift+Tab to the one before.

/// The commands completed at the start of a line.
const COMMANDS: &[&str] = &[
    "/accept", "/clear", "/close", "/create", "/decline", "/get", "/help", "/history", "/join",
    "/leave", "/msg", "/part", "/peers", "/query", "/quit", "/rooms", "/send", "/win", "@all",
    "@me", "@server",
];
/// What may follow `@me`.
const SHARE_WORDS: &[&str] = &[
    "clrglobalshare",
    "clrshare",
    "getsharestatus",
    "setglobalshare",
    "setshare",
];
/// What may follow `@server`.
const SERVER_WORDS: &[&str] = &["exit", "get_peers", "get_rooms"];

/// What completion draws from, each sorted.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub users: Vec<String>,
    pub rooms: Vec<String>,
    pub files: Vec<String>,
}

/// A completion under way.
#[derive(Debug, Clone)]
pub struct Completion {
    candidates: Vec<String>,
    /// The candidate shown, if any yet.
    at: Option<usize>,
    /// Characters of what is shown now in place of the word (at first,
    /// the word as typed).
    shown: usize,
}

impl Completion {
    /// Starts completing the end of `before` (the text before the cursor);
    /// `None` if nothing fits.
    pub fn start(before: &str, names: &Names) -> Option<Completion> {
        let word_start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[word_start..];
        let words: Vec<&str> = before[..word_start].split_whitespace().collect();
        let pool: Vec<String> = match words.as_slice() {
            [] if word.starts_with(['/', '@']) => {
                let mut pool: Vec<String> = COMMANDS.iter().map(|c| c.to_string()).collect();
                pool.extend(names.users.iter().map(|u| format!("@{u}")));
                pool
            }
            [] => names.users.iter().map(|u| format!("{u}: ")).collect(),
            ["/join" | "/create"] => names.rooms.clone(),
            ["/query" | "/msg" | "/send"] => names.users.clone(),
            ["/history" | "/part" | "/leave" | "/peers"] => names.rooms.clone(),
            ["@me"] => SHARE_WORDS.iter().map(|w| w.to_string()).collect(),
            ["@server"] => SERVER_WORDS.iter().map(|w| w.to_string()).collect(),
            ["@all", "whohas", ..] | [_, "getfile", ..] => names.files.clone(),
            ["@all"] => std::iter::once("whohas".to_string())
                .chain(names.users.iter().cloned())
                .collect(),
            [w] if w.starts_with('@') => ["getfile", "sendfile"]
                .into_iter()
                .map(String::from)
                .chain(names.users.iter().cloned())
                .collect(),
            _ => names.users.clone(),
        };
        // File names may hold spaces: match them on everything after
        // `whohas` / `getfile`, not on the last word alone.
        let (typed, prefix) = match words.as_slice() {
            ["@all", "whohas", rest @ ..] | [_, "getfile", rest @ ..] if !rest.is_empty() => {
                let start = before.find(rest[0]).unwrap_or(word_start);
                (before[start..].chars().count(), &before[start..])
            }
            _ => (word.chars().count(), word),
        };
        let lower = prefix.to_lowercase();
        let candidates: Vec<String> = pool
            .into_iter()
            .filter(|c| c.to_lowercase().starts_with(&lower) && c.as_str() != prefix)
            .collect();
        (!candidates.is_empty()).then_some(Completion {
            candidates,
            at: None,
            shown: typed,
        })
    }

    /// The next candidate: how many characters before the cursor to
    /// replace, and with what.
    pub fn next(&mut self, forward: bool) -> (usize, String) {
        let n = self.candidates.len();
        let at = match (self.at, forward) {
            (None, true) => 0,
            (None, false) => n - 1,
            (Some(i), true) => (i + 1) % n,
            (Some(i), false) => (i + n - 1) % n,
        };
        self.at = Some(at);
        let with = self.candidates[at].clone();
        let erase = std::mem::replace(&mut self.shown, with.chars().count());
        (erase, with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names {
            users: vec!["bob".into(), "bobby".into(), "carol".into()],
            rooms: vec!["lobby".into(), "vault".into()],
            files: vec!["my song.mp3".into(), "notes.txt".into()],
        }
    }

    fn first(before: &str) -> Option<String> {
        Completion::start(before, &names()).map(|mut c| c.next(true).1)
    }

    #[test]
    fn completes_what_fits_where_it_is() {
        assert_eq!(first("/jo").as_deref(), Some("/join"));
        assert_eq!(first("/join va").as_deref(), Some("vault"));
        assert_eq!(first("@ca").as_deref(), Some("@carol"));
        assert_eq!(first("ca").as_deref(), Some("carol: "));
        assert_eq!(first("@me sets").as_deref(), Some("setshare"));
        assert_eq!(first("@server get_r").as_deref(), Some("get_rooms"));
        assert_eq!(first("@all whohas my").as_deref(), Some("my song.mp3"));
        assert_eq!(first("@bob getfile my so").as_deref(), Some("my song.mp3"));
        assert_eq!(first("hello ca").as_deref(), Some("carol"));
        assert_eq!(first("/zz"), None);
    }

    #[test]
    fn tab_again_cycles_and_replaces_what_it_put() {
        let mut c = Completion::start("hi bo", &names()).unwrap();
        assert_eq!(c.next(true), (2, "bob".into()));
        assert_eq!(c.next(true), (3, "bobby".into()));
        assert_eq!(c.next(true), (5, "bob".into()));
        assert_eq!(c.next(false), (3, "bobby".into()));
    }

    #[test]
    fn a_file_name_with_spaces_is_replaced_whole() {
        let mut c = Completion::start("@all whohas my so", &names()).unwrap();
        assert_eq!(c.next(true), (5, "my song.mp3".into()));
    }
}
