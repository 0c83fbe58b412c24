//! Characters that do not show as themselves, and where each may appear.
//!
//! A name or a file name is something a reader must be able to trust at a
//! glance: a right-to-left override makes `invoice\u{202E}fdp.exe` show as
//! `invoiceexe.pdf`, and a zero-width space makes `bob\u{200B}` look exactly
//! like `bob`. So names and file names refuse every character that shows as
//! nothing or moves what is around it.
//!
//! Message text is written by people in every script, and some invisible
//! characters are part of that writing: the zero-width joiner builds emoji
//! sequences (👨‍👩‍👧) and Indic conjuncts, the zero-width non-joiner is
//! needed in Persian, variation selectors and tag characters pick emoji
//! presentation and flags, the zero-width space marks word breaks in Thai.
//! None of them can move or break the text around them, so text refuses only
//! what can: control characters, bidirectional controls and the line and
//! paragraph separators.
//!
//! Which characters are invisible is Unicode's answer (the
//! Default_Ignorable_Code_Point property and the general categories), taken
//! from crates that carry Unicode's data, not from a table of our own.

use std::fmt;

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::general_security_profile::IdentifierType;
use unicode_security::GeneralSecurityProfile;

/// Why a character does not show as itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unseen {
    /// A control character (C0, DEL, C1): escape sequences and line breaks.
    Control,
    /// A bidirectional control (Unicode's Bidi_Control property): it shows
    /// what follows in another order than it is.
    Direction,
    /// The line or paragraph separator (U+2028, U+2029): a line break on
    /// screen that is no line break in the protocol.
    LineBreak,
    /// A character that shows as nothing: a format character (general
    /// category Cf) or a default-ignorable code point.
    Invisible,
}

/// The Bidi_Control characters of Unicode's PropList.txt: the marks ALM,
/// LRM and RLM, the embeddings and overrides, and the isolates. The set is
/// twelve characters, unchanged since Unicode 6.3; the crates carrying
/// Unicode's data that we use do not expose this property.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

impl Unseen {
    /// Why `c` does not show as itself, or `None` if it does.
    pub fn of(c: char) -> Option<Unseen> {
        if c.is_control() {
            return Some(Unseen::Control);
        }
        if is_bidi_control(c) {
            return Some(Unseen::Direction);
        }
        match c.general_category() {
            GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
                Some(Unseen::LineBreak)
            }
            GeneralCategory::Format => Some(Unseen::Invisible),
            // Default-ignorable letters and marks (Hangul fillers, variation
            // selectors, the combining grapheme joiner) show as nothing too.
            _ if c.identifier_type() == Some(IdentifierType::Default_Ignorable) => {
                Some(Unseen::Invisible)
            }
            _ => None,
        }
    }

    /// What this kind of character does to a reader, for an error message.
    fn harm(self) -> &'static str {
        match self {
            Unseen::Control => "it could drive the terminal or forge a line",
            Unseen::Direction => "it shows what follows in another order than it is",
            Unseen::LineBreak => "it breaks the line on screen",
            Unseen::Invisible => "it shows as nothing, so the text looks like something it is not",
        }
    }
}

impl fmt::Display for Unseen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unseen::Control => "control",
            Unseen::Direction => "direction-changing",
            Unseen::LineBreak => "line-breaking",
            Unseen::Invisible => "invisible",
        })
    }
}

/// The reason `what` (quoted with escapes, so the reason is safe to print)
/// is refused for holding `c`.
fn refusal(what: &str, s: &str, c: char, kind: Unseen) -> String {
    format!(
        "{what} {s:?} contains the {kind} character U+{:04X} ({})",
        c as u32,
        kind.harm()
    )
}

/// Checks that a name or file name shows as exactly what it is: no
/// control, bidirectional, line-breaking or invisible character. `what`
/// names it in the reason (`"user name"`, `"file name"`).
pub fn check_shown_as_is(what: &str, s: &str) -> Result<(), String> {
    match s.chars().find_map(|c| Unseen::of(c).map(|k| (c, k))) {
        Some((c, kind)) => Err(refusal(what, s, c, kind)),
        None => Ok(()),
    }
}

/// Checks the characters of message text: no control, bidirectional or
/// line-breaking character. Other invisible characters are allowed, since
/// real writing needs them (see the module docs).
pub fn check_text_chars(text: &str) -> Result<(), String> {
    let bad = text.chars().find_map(|c| match Unseen::of(c) {
        Some(Unseen::Invisible) | None => None,
        Some(kind) => Some((c, kind)),
    });
    match bad {
        Some((c, kind)) => Err(format!(
            "messages may not contain the {kind} character U+{:04X} ({})",
            c as u32,
            kind.harm()
        )),
        None => Ok(()),
    }
}

/// `s` as it may be printed on a terminal: every character that does not
/// show as itself ([`Unseen`]: control, bidirectional, line-breaking and
/// invisible ones) written out as `\u{…}`, so that text from outside can
/// neither drive the terminal nor hide or reorder what it shows. Text
/// that needs none of this is returned as it is.
pub fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| Unseen::of(c).is_some()) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if Unseen::of(c).is_some() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_does_not_show_as_itself() {
        let cases = [
            ('\u{1b}', Unseen::Control),
            ('\n', Unseen::Control),
            ('\u{85}', Unseen::Control),
            ('\u{202E}', Unseen::Direction),
            ('\u{2067}', Unseen::Direction),
            ('\u{200F}', Unseen::Direction),
            ('\u{061C}', Unseen::Direction),
            ('\u{2028}', Unseen::LineBreak),
            ('\u{2029}', Unseen::LineBreak),
            ('\u{200B}', Unseen::Invisible),
            ('\u{200D}', Unseen::Invisible),
            ('\u{2060}', Unseen::Invisible),
            ('\u{FEFF}', Unseen::Invisible),
            ('\u{00AD}', Unseen::Invisible),
            ('\u{3164}', Unseen::Invisible),
            ('\u{FE0F}', Unseen::Invisible),
            ('\u{E0001}', Unseen::Invisible),
        ];
        for (c, kind) in cases {
            assert_eq!(Unseen::of(c), Some(kind), "U+{:04X}", c as u32);
        }
        for c in ['a', 'Z', ' ', '-', 'а', 'λ', '東', 'é', '\u{301}', '😀'] {
            assert_eq!(Unseen::of(c), None, "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn a_file_name_that_would_show_reversed_is_refused_and_said_why() {
        let why = check_shown_as_is("file name", "invoice\u{202E}fdp.exe").unwrap_err();
        assert!(why.contains("direction-changing character U+202E"), "{why}");
        assert!(
            !why.contains('\u{202E}'),
            "the reason itself is safe: {why}"
        );
        let why = check_shown_as_is("user name", "bob\u{200B}").unwrap_err();
        assert!(why.contains("invisible character U+200B"), "{why}");
        assert!(check_shown_as_is("file name", "Ελλάδα 東京 été.pdf").is_ok());
    }

    #[test]
    fn text_keeps_the_invisible_characters_writing_needs() {
        let why = check_text_chars("look \u{202E}txt.exe").unwrap_err();
        assert!(why.contains("U+202E"), "{why}");
        assert!(check_text_chars("a\u{2028}b")
            .unwrap_err()
            .contains("U+2028"));
        assert!(check_text_chars("a\u{7}").is_err());
        // A family emoji (ZWJ sequence), a red heart (variation selector),
        // Persian with a zero-width non-joiner, Japanese.
        for ok in [
            "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
            "\u{2764}\u{FE0F}",
            "\u{0645}\u{06CC}\u{200C}\u{062E}\u{0648}\u{0627}\u{0647}\u{0645}",
            "こんにちは",
        ] {
            assert_eq!(check_text_chars(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn what_does_not_show_as_itself_is_written_out() {
        assert_eq!(shown("plain text, ünïcode"), "plain text, ünïcode");
        assert_eq!(
            shown("a\u{1b}[2Jb\u{202E}c\u{200B}d\u{2028}"),
            "a\\u{1b}[2Jb\\u{202e}c\\u{200b}d\\u{2028}"
        );
    }
}
