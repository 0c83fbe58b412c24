//! Rules for user and room names, shared by clients (to say early what is
//! wrong) and servers (which enforce them).

use crate::limits::{MAX_ROOM_NAME, MAX_USER_NAME};

/// Words that cannot be user names because the command syntax gives them a
/// meaning (`@all`, `@server`, `@me`).
pub const RESERVED_USER_NAMES: &[&str] = &["all", "server", "me"];

fn valid_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks a user name: 1 to 32 characters from `a-z`, `0-9`, `_`, `-`, `.`
/// (lower case only, so that `Bob` cannot pose as `bob`), not a reserved word.
/// Returns a human-readable reason when the name is refused.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_USER_NAME {
        return Err(format!(
            "a user name has 1 to {MAX_USER_NAME} characters (got {})",
            name.len()
        ));
    }
    if !valid_chars(name) || name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "user name {name:?} may only use a-z, 0-9, '_', '-' and '.'"
        ));
    }
    if RESERVED_USER_NAMES.contains(&name) {
        return Err(format!("{name:?} is reserved and cannot be a user name"));
    }
    Ok(())
}

/// Checks a room name: 1 to 64 characters from `A-Z`, `a-z`, `0-9`, `_`, `-`, `.`.
pub fn check_room_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_ROOM_NAME {
        return Err(format!(
            "a room name has 1 to {MAX_ROOM_NAME} characters (got {})",
            name.len()
        ));
    }
    if !valid_chars(name) {
        return Err(format!(
            "room name {name:?} may only use letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn room_names() {
        assert!(check_room_name("whatsapp").is_ok());
        assert!(check_room_name("Team-1").is_ok());
        assert!(check_room_name("a/b").is_err());
        assert!(check_room_name(&"r".repeat(65)).is_err());
    }
}
