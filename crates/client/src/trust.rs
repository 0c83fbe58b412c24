//! Trust in servers by certificate fingerprint, pinned on first use.
//!
//! chatdrop servers usually run with a self-signed certificate, so there is
//! no certificate authority to ask. Instead the client remembers each
//! server's SHA-256 certificate fingerprint in `known_hosts` in its data
//! directory (like ssh) and refuses a server that later shows another one.
//! `--server-fingerprint` pins it before the first connection.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use chatdrop_proto::tls::PinVerifier;

use crate::ClientError;

/// File name of the pinned fingerprints in the data directory.
pub const KNOWN_HOSTS: &str = "known_hosts";

/// Normalises a fingerprint typed by a user: drops `:` and spaces, lower-cases.
/// Returns `None` unless 64 hex digits remain.
pub fn normalise(fp: &str) -> Option<String> {
    let fp: String = fp
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_lowercase();
    (fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit())).then_some(fp)
}

/// The known-hosts file: one `ADDRESS FINGERPRINT` line per server.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The file in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        KnownHosts {
            path: dir.join(KNOWN_HOSTS),
        }
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint pinned for `server`, if any.
    pub fn get(&self, server: &str) -> Option<String> {
        let text = fs::read_to_string(&self.path).ok()?;
        text.lines().find_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next()? == server).then(|| parts.next().map(String::from))?
        })
    }

    /// Pins `fp` for `server` (appending a line).
    pub fn add(&self, server: &str, fp: &str) -> Result<(), ClientError> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|e| ClientError::Local(e.to_string()))?;
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| ClientError::Local(format!("{}: {e}", self.path.display())))?;
        writeln!(f, "{server} {fp}")
            .map_err(|e| ClientError::Local(format!("{}: {e}", self.path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalised() {
        let fp = "AB:".repeat(31) + "AB";
        assert_eq!(normalise(&fp), Some("ab".repeat(32)));
        assert_eq!(normalise("abc"), None);
        assert_eq!(normalise(&"zz".repeat(32)), None);
    }

    #[test]
    fn known_hosts_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let kh = KnownHosts::in_dir(&tmp.path().join("kh"));
        assert_eq!(kh.get("127.0.0.1:1"), None);
        kh.add("127.0.0.1:1", "aa").unwrap();
        kh.add("127.0.0.1:2", "bb").unwrap();
        assert_eq!(kh.get("127.0.0.1:2").as_deref(), Some("bb"));
        assert_eq!(kh.get("127.0.0.1:3"), None);
    }
}
