//! The share folder: which files this client offers, kept across restarts.
//!
//! Nothing is shared until the user says so (`@me setshare FILE`, or
//! `@me setglobalshare` for the whole folder). A file is named by its path
//! relative to the share folder, `/`-separated. Nothing outside the folder can
//! be named: absolute names and `..` are refused, and a symlink that leads
//! out is refused after it is resolved.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chatdrop_proto::RefuseReason;
use chatdrop_transfer::outline::Outline;
use serde::{Deserialize, Serialize};

use crate::ClientError;

/// File name of the share state in the client's data directory.
pub const STATE_FILE: &str = "shares.json";

/// Most files listed by `getsharestatus`.
const MAX_LISTED: usize = 10_000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    global: bool,
    files: BTreeSet<String>,
}

/// The share folder and what of it is shared.
#[derive(Debug)]
pub struct Shares {
    root: PathBuf,
    state_path: PathBuf,
    state: State,
    /// Outlines already computed (size, hash and parts): name ->
    /// (modified, outline).
    hashes: HashMap<String, (SystemTime, Arc<Outline>)>,
}

/// One file of the share folder and whether it is shared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileShare {
    /// Name relative to the share folder.
    pub file: String,
    /// Whether it is offered.
    pub shared: bool,
}

impl Shares {
    /// The share folder `root` (created if missing), with the state kept in
    /// `data_dir`.
    pub fn open(root: &Path, data_dir: &Path) -> Result<Shares, ClientError> {
        fs::create_dir_all(root)
            .map_err(|e| ClientError::Local(format!("{}: {e}", root.display())))?;
        let root = root
            .canonicalize()
            .map_err(|e| ClientError::Local(format!("{}: {e}", root.display())))?;
        let state_path = data_dir.join(STATE_FILE);
        let state = match fs::read_to_string(&state_path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| ClientError::Local(format!("{}: {e}", state_path.display())))?,
            Err(_) => State::default(),
        };
        Ok(Shares {
            root,
            state_path,
            state,
            hashes: HashMap::new(),
        })
    }

    fn save(&self) -> Result<(), ClientError> {
        let text = serde_json::to_string_pretty(&self.state).unwrap_or_default();
        let tmp = self.state_path.with_extension("tmp");
        if let Some(dir) = self.state_path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        fs::write(&tmp, text)
            .and_then(|_| fs::rename(&tmp, &self.state_path))
            .map_err(|e| ClientError::Local(format!("{}: {e}", self.state_path.display())))
    }

    /// The one spelling of a name: its components joined by `/`. Names
    /// that are aliases of each other (`a/./b`, `a//b`, `a/b/`) have the
    /// same one, so a file is hashed and remembered once whichever is
    /// asked for. Anything but plain components (`..`, a leading `/` or
    /// `.`, NUL, a backslash) is refused.
    pub fn canonical(name: &str) -> Result<String, RefuseReason> {
        let rel = Path::new(name);
        if name.is_empty()
            || name.contains('\0')
            || name.contains('\\')
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(RefuseReason::BadName);
        }
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        parts.map(|p| p.join("/")).ok_or(RefuseReason::BadName)
    }

    /// Finds the file a name stands for, refusing anything outside the
    /// folder.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, RefuseReason> {
        let path = self.root.join(Self::canonical(name)?);
        let real = path.canonicalize().map_err(|_| RefuseReason::NotFound)?;
        if !real.starts_with(&self.root) {
            return Err(RefuseReason::BadName);
        }
        if !real.is_file() {
            return Err(RefuseReason::NotFound);
        }
        Ok(real)
    }

    /// Whether `name` is offered.
    pub fn is_shared(&self, name: &str) -> bool {
        self.state.global || self.state.files.contains(name)
    }

    /// Size, BLAKE3 hash and outline of a shared file (computed once per
    /// version).
    pub fn describe(&mut self, name: &str) -> Result<(PathBuf, Arc<Outline>), RefuseReason> {
        let name = &Self::canonical(name)?;
        let path = self.resolve(name)?;
        if !self.is_shared(name) {
            return Err(RefuseReason::NotShared);
        }
        let meta = fs::metadata(&path).map_err(|_| RefuseReason::NotFound)?;
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some((m, outline)) = self.hashes.get(name) {
            if *m == modified && outline.size() == meta.len() {
                return Ok((path, outline.clone()));
            }
        }
        let outline =
            Arc::new(chatdrop_transfer::hash_file(&path).map_err(|_| RefuseReason::NotFound)?);
        self.hashes
            .insert(name.to_string(), (modified, outline.clone()));
        Ok((path, outline))
    }

    /// `@me setshare FILE`.
    pub fn set_share(&mut self, name: &str) -> Result<(), String> {
        match self.resolve(name) {
            Ok(_) => {}
            Err(RefuseReason::BadName) => {
                return Err(format!(
                    "{name:?} is not inside the share folder {}",
                    self.root.display()
                ))
            }
            Err(_) => {
                return Err(format!(
                    "no file {name:?} in the share folder {}",
                    self.root.display()
                ))
            }
        }
        // Resolved, so it has one spelling.
        let name = Self::canonical(name).map_err(|_| format!("{name:?} is not a file name"))?;
        self.state.files.insert(name);
        self.save().map_err(|e| e.to_string())
    }

    /// `@me clrshare FILE`.
    pub fn clear_share(&mut self, name: &str) -> Result<(), String> {
        let one = Self::canonical(name).unwrap_or_else(|_| name.to_string());
        if !self.state.files.remove(&one) {
            return Err(format!("{name:?} was not shared"));
        }
        self.save().map_err(|e| e.to_string())
    }

    /// `@me setglobalshare` / `@me clrglobalshare`.
    pub fn set_global(&mut self, on: bool) -> Result<(), String> {
        self.state.global = on;
        self.save().map_err(|e| e.to_string())
    }

    /// The name a peer can ask for the file at `path` by, if there is one:
    /// its path relative to `root`, in UTF-8, in its one spelling, and a
    /// valid file name on the wire (at most 1024 bytes, nothing that does
    /// not show as itself). A file whose name on disk is not UTF-8, holds a
    /// backslash or a newline, or is too long could be listed only under a
    /// name that leads to no file (or to another one), so it is not listed.
    fn servable(root: &Path, path: &Path) -> Option<String> {
        let name = path.strip_prefix(root).ok()?.to_str()?;
        let one = Self::canonical(name).ok()?;
        (one == name && chatdrop_proto::names::check_file_name(name).is_ok())
            .then(|| name.to_string())
    }

    /// The global flag, and every file of the folder a peer can ask for,
    /// with its state ([`Shares::servable`]).
    pub fn status(&self) -> (bool, Vec<FileShare>) {
        let mut files = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let path = entry.path();
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_file() {
                    if let Some(name) = Self::servable(&self.root, &path) {
                        files.push(FileShare {
                            shared: self.is_shared(&name),
                            file: name,
                        });
                    }
                }
                if files.len() >= MAX_LISTED {
                    break;
                }
            }
        }
        files.sort_by(|a, b| a.file.cmp(&b.file));
        (self.state.global, files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_outside_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a.txt"), "a").unwrap();
        fs::write(root.join("sub/b.txt"), "b").unwrap();
        fs::write(dir.path().join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.txt")).unwrap();
        let mut s = Shares::open(&root, dir.path()).unwrap();
        assert!(s.resolve("a.txt").is_ok());
        assert!(s.resolve("sub/b.txt").is_ok());
        for bad in [
            "../secret.txt",
            "/etc/passwd",
            "sub/../a.txt",
            "",
            "link.txt",
        ] {
            assert_eq!(s.resolve(bad), Err(RefuseReason::BadName), "{bad}");
        }
        assert_eq!(s.resolve("nope.txt"), Err(RefuseReason::NotFound));
        assert_eq!(s.describe("a.txt"), Err(RefuseReason::NotShared));
        s.set_share("a.txt").unwrap();
        assert!(s
            .set_share("../secret.txt")
            .unwrap_err()
            .contains("not inside"));
        assert!(s.set_share("link.txt").is_err());
        let size = s.describe("a.txt").unwrap().1.size();
        assert_eq!(size, 1);
        // Kept across restarts.
        let mut s = Shares::open(&root, dir.path()).unwrap();
        assert!(s.is_shared("a.txt") && !s.is_shared("sub/b.txt"));
        s.set_global(true).unwrap();
        let (global, files) = s.status();
        assert!(global);
        let names: Vec<_> = files.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(names, ["a.txt", "sub/b.txt"], "links are not listed");
        // Even shared globally, the link leading out is not offered.
        assert_eq!(s.describe("link.txt"), Err(RefuseReason::BadName));
    }

    /// Names that are aliases of one file (`sub/./b.txt`, `sub//b.txt`,
    /// `sub/b.txt/`) are one name: the file is hashed once, not once per
    /// spelling a peer cares to ask for. (Seen failing without the one
    /// spelling: three hashes of the same file were kept.)
    #[test]
    fn aliases_of_a_name_are_hashed_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/b.txt"), "bee").unwrap();
        let mut s = Shares::open(&root, dir.path()).unwrap();
        s.set_share("sub/b.txt").unwrap();
        let first = s.describe("sub/b.txt").unwrap();
        for alias in ["sub/./b.txt", "sub//b.txt", "sub/b.txt/", "sub/././/b.txt"] {
            assert_eq!(s.describe(alias).as_ref(), Ok(&first), "{alias}");
        }
        assert_eq!(s.hashes.len(), 1);
        assert_eq!(Shares::canonical("sub//./b.txt").unwrap(), "sub/b.txt");
        for bad in ["./sub/b.txt", "sub/../sub/b.txt", "/sub/b.txt", "a\\b"] {
            assert_eq!(Shares::canonical(bad), Err(RefuseReason::BadName), "{bad}");
        }
    }

    /// Files whose names no peer can ask for (not UTF-8 on disk, with a
    /// backslash or a newline, a path over 1024 bytes) are not listed, even
    /// shared globally; the others are. (Seen failing with the names listed
    /// in their lossy spelling, the backslash as `/`.)
    #[test]
    fn names_no_peer_can_ask_for_are_not_listed() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a.txt"), "a").unwrap();
        fs::write(root.join("sub/b.txt"), "b").unwrap();
        fs::write(root.join(std::ffi::OsStr::from_bytes(b"bad\xff.txt")), "x").unwrap();
        fs::write(root.join("back\\slash.txt"), "x").unwrap();
        fs::write(root.join("new\nline.txt"), "x").unwrap();
        let mut deep = root.clone();
        for _ in 0..6 {
            deep.push("d".repeat(200));
        }
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("deep.txt"), "x").unwrap();
        let mut s = Shares::open(&root, dir.path()).unwrap();
        s.set_global(true).unwrap();
        let (_, files) = s.status();
        let names: Vec<_> = files.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(names, ["a.txt", "sub/b.txt"]);
    }
}
