//! Rules for user, room and file names, shared by clients (to say early
//! what is wrong) and servers (which enforce them), and the key under which
//! two names count as the same name.

use unicode_security::skeleton;

use crate::chars::check_shown_as_is;
use crate::limits::{MAX_FILE_NAME, MAX_ROOM_NAME, MAX_USER_NAME};

/// Words that cannot be user names because the command syntax gives them a
/// meaning (`@all`, `@server`, `@me`).
pub const RESERVED_USER_NAMES: &[&str] = &["all", "server", "me"];

fn valid_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The key under which two user names, or two room names, are the same
/// name: names with equal keys cannot both be taken. It is the UTS #39
/// confusable skeleton of the name's skeleton in lower case, so names that
/// differ only in case (`Lobby`, `LOBBY`), only in look-alike characters
/// (`paypa1`, Cyrillic `pаypal`, `rn` for `m`), or in both (`Iobby` with a
/// capital i) share a key with `lobby` or `paypal`. The skeleton is taken
/// before lower-casing too because room names keep their case for display,
/// where a capital I looks like the l it would otherwise not be compared
/// with.
pub fn name_key(name: &str) -> String {
    let looks: String = skeleton(name).collect();
    skeleton(&looks.to_lowercase()).collect()
}

/// Checks a user name: 1 to 32 characters from `a-z`, `0-9`, `_`, `-`, `.`
/// (lower case only, so that `Bob` cannot pose as `bob`), not a reserved
/// word nor a look-alike of one (`a11` for `all`). Returns a human-readable
/// reason when the name is refused.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_USER_NAME {
        return Err(format!(
            "a user name has 1 to {MAX_USER_NAME} characters (got {})",
            name.len()
        ));
    }
    // First, so that a hidden character is named in the reason.
    check_shown_as_is("user name", name)?;
    if !valid_chars(name) || name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "user name {name:?} may only use a-z, 0-9, '_', '-' and '.'"
        ));
    }
    let key = name_key(name);
    if let Some(word) = RESERVED_USER_NAMES.iter().find(|w| name_key(w) == key) {
        return Err(format!(
            "{name:?} is reserved (it reads as {word:?}) and cannot be a user name"
        ));
    }
    Ok(())
}

/// Checks a room name: 1 to 64 characters from `A-Z`, `a-z`, `0-9`, `_`, `-`, `.`.
/// (Rooms whose names have the same [`name_key`] are the same room: that
/// is for whoever holds the rooms to enforce.)
pub fn check_room_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ROOM_NAME {
        return Err(format!(
            "a room name has 1 to {MAX_ROOM_NAME} characters (got {})",
            name.len()
        ));
    }
    check_shown_as_is("room name", name)?;
    if !valid_chars(name) {
        return Err(format!(
            "room name {name:?} may only use letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

/// Checks a file name as `whohas`, `HaveFile` and `getfile` carry it: 1 to
/// 1024 bytes, in any script, but with no character that does not show as
/// itself (control, bidirectional, line-breaking or invisible), so that
/// what the asker reads is the file it gets.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_FILE_NAME {
        return Err(format!(
            "a file name has 1 to {MAX_FILE_NAME} bytes (got {})",
            name.len()
        ));
    }
    check_shown_as_is("file name", name)
}

/// Checks the name of a file in an offer (`/send`): a file name
/// ([`check_file_name`]) that is also a relative path in its one spelling,
/// `/`-separated plain components: no leading `/`, no `.` or `..`, no empty
/// component, no backslash. The receiver saves the file under this path in
/// its download folder, so nothing else may pass.
pub fn check_offered_name(name: &str) -> Result<(), String> {
    check_file_name(name)?;
    if name.contains('\\') {
        return Err(format!("{name:?}: a backslash is not allowed in a path"));
    }
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "{name:?} is not a relative path of plain names (no leading '/', '.', '..' or '//')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_names_are_relative_paths_in_one_spelling() {
        assert!(check_offered_name("a.txt").is_ok());
        assert!(check_offered_name("photos/2024/b c.jpg").is_ok());
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/",
            "a\\..\\b",
            "",
            "a/\u{202E}b",
        ] {
            assert!(check_offered_name(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn user_names() {
        assert!(check_user_name("alice").is_ok());
        assert!(check_user_name("bob_2.x-y").is_ok());
        assert!(check_user_name("").unwrap_err().contains("1 to 32"));
        assert!(check_user_name(&"a".repeat(33)).is_err());
        assert!(check_user_name("Bob").unwrap_err().contains("a-z"));
        assert!(check_user_name("al ice").is_err());
        assert!(check_user_name("all").unwrap_err().contains("reserved"));
        assert!(check_user_name("server").is_err());
    }

    #[test]
    fn hidden_characters_are_named_in_the_reason() {
        let why = check_user_name("bob\u{200B}").unwrap_err();
        assert!(why.contains("invisible character U+200B"), "{why}");
        let why = check_room_name("lobby\u{202E}").unwrap_err();
        assert!(why.contains("direction-changing character U+202E"), "{why}");
    }

    #[test]
    fn look_alike_names_share_a_key() {
        let paypal = name_key("paypal");
        // Cyrillic a, a digit one for l.
        assert_eq!(name_key("p\u{0430}ypal"), paypal);
        assert_eq!(name_key("paypa1"), paypal);
        assert_eq!(name_key("rnallory"), name_key("mallory"));
        for lobby in ["Lobby", "LOBBY", "Iobby", "1obby"] {
            assert_eq!(name_key(lobby), name_key("lobby"), "{lobby}");
        }
        assert_ne!(name_key("alice"), name_key("alicia"));
        assert_ne!(name_key("bob"), name_key("rob"));
        // Names in other scripts have keys of their own.
        assert_ne!(name_key("\u{6771}\u{4EAC}"), name_key("\u{4EAC}\u{90FD}"));
        assert_eq!(name_key("\u{6771}\u{4EAC}"), "\u{6771}\u{4EAC}");
        // A look-alike of a reserved word is reserved too.
        assert!(check_user_name("a11").unwrap_err().contains("reserved"));
    }

    #[test]
    fn file_names_in_any_script_but_shown_as_they_are() {
        assert!(check_file_name("notes.txt").is_ok());
        assert!(check_file_name(
            "\u{6771}\u{4EAC}/\u{0395}\u{03BB}\u{03BB}\u{03AC}\u{03B4}\u{03B1}.pdf"
        )
        .is_ok());
        let why = check_file_name("invoice\u{202E}fdp.exe").unwrap_err();
        assert!(why.contains("U+202E"), "{why}");
        assert!(check_file_name("a\u{FEFF}.txt").is_err());
        assert!(check_file_name("").is_err());
        assert!(check_file_name(&"x".repeat(1025)).is_err());
    }

    #[test]
    fn room_names() {
        assert!(check_room_name("whatsapp").is_ok());
        assert!(check_room_name("Team-1").is_ok());
        assert!(check_room_name("a/b").is_err());
        assert!(check_room_name(&"r".repeat(65)).is_err());
    }
}
