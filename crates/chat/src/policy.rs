//! The server's share policy: which files it refuses to broker.
//!
//! File bytes never pass through the server, so brokering is where the
//! policy is enforced: `whohas` questions and answers, file requests and
//! offers that break it are not passed on, and the asker is told why.

use std::collections::BTreeSet;

/// What may not be shared through this server.
#[derive(Debug, Clone, Default)]
pub struct SharePolicy {
    /// Blocked extensions, lower case, without the dot.
    pub blocked_ext: BTreeSet<String>,
    /// Blocked name patterns (`*`, `?`, `[...]`), matched against the whole
    /// name and against its last component.
    pub blocked_names: Vec<glob::Pattern>,
    /// Blocked BLAKE3 hashes.
    pub blocked_hashes: BTreeSet<[u8; 32]>,
    /// Largest file that may be shared.
    pub max_size: Option<u64>,
}

impl SharePolicy {
    /// Adds a blocked extension (`exe`, `.exe`, `EXE` alike).
    pub fn block_ext(&mut self, ext: &str) {
        self.blocked_ext
            .insert(ext.trim_start_matches('.').to_ascii_lowercase());
    }

    /// Adds a blocked name pattern.
    pub fn block_name(&mut self, pattern: &str) -> Result<(), String> {
        let p = glob::Pattern::new(pattern).map_err(|e| format!("bad pattern {pattern:?}: {e}"))?;
        self.blocked_names.push(p);
        Ok(())
    }

    /// Adds a blocked hash, given in hex.
    pub fn block_hash(&mut self, hex_hash: &str) -> Result<(), String> {
        let h = hex_hash.trim();
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{hex_hash:?} is not a BLAKE3 hash (64 hex digits)"));
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        self.blocked_hashes.insert(out);
        Ok(())
    }

    /// Checks a file name; `Err` says why it is blocked.
    pub fn check_name(&self, name: &str) -> Result<(), String> {
        let last = name.rsplit('/').next().unwrap_or(name);
        if let Some((_, ext)) = last.rsplit_once('.') {
            if self.blocked_ext.contains(&ext.to_ascii_lowercase()) {
                return Err(format!(
                    "files ending in .{ext} may not be shared on this server"
                ));
            }
        }
        for p in &self.blocked_names {
            if p.matches(name) || p.matches(last) {
                return Err(format!(
                    "files named like {} may not be shared on this server",
                    p.as_str()
                ));
            }
        }
        Ok(())
    }

    /// Checks a file's name, size and hash.
    pub fn check_file(&self, name: &str, size: u64, hash: &[u8; 32]) -> Result<(), String> {
        self.check_name(name)?;
        if let Some(max) = self.max_size {
            if size > max {
                return Err(format!(
                    "files over {max} bytes may not be shared on this server"
                ));
            }
        }
        if self.blocked_hashes.contains(hash) {
            return Err("this file may not be shared on this server".into());
        }
        Ok(())
    }

    /// The policy in words, one rule a line, for the admin console.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.blocked_ext.is_empty() {
            let exts: Vec<_> = self.blocked_ext.iter().map(|e| format!(".{e}")).collect();
            lines.push(format!("blocked extensions: {}", exts.join(" ")));
        }
        if !self.blocked_names.is_empty() {
            let names: Vec<_> = self.blocked_names.iter().map(|p| p.as_str()).collect();
            lines.push(format!("blocked names: {}", names.join(" ")));
        }
        if !self.blocked_hashes.is_empty() {
            lines.push(format!("blocked hashes: {}", self.blocked_hashes.len()));
        }
        if let Some(max) = self.max_size {
            lines.push(format!("largest shared file: {max} bytes"));
        }
        if lines.is_empty() {
            lines.push("no share policy: every file may be shared".into());
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_what_it_says() {
        let mut p = SharePolicy::default();
        p.block_ext(".EXE");
        p.block_name("*secret*").unwrap();
        p.block_hash(&"ab".repeat(32)).unwrap();
        p.max_size = Some(1000);
        assert!(p.check_name("notes.txt").is_ok());
        assert!(p.check_name("setup.exe").unwrap_err().contains(".exe"));
        assert!(p.check_name("dir/Setup.ExE").is_err());
        assert!(p.check_name("docs/top-secret.pdf").is_err());
        assert!(p
            .check_file("a.txt", 1001, &[0; 32])
            .unwrap_err()
            .contains("1000"));
        assert!(p.check_file("a.txt", 10, &[0xab; 32]).is_err());
        assert!(p.check_file("a.txt", 10, &[0; 32]).is_ok());
        assert!(p.block_hash("xyz").is_err());
        assert_eq!(p.describe().len(), 4);
    }
}
