//! Offering files (`/send USER PATH...`) and answering offers.
//!
//! The sender lists what it offers (a file, several, or folders walked
//! whole), hashes each file and sends the list to the receiver through the
//! server. The receiver is shown each name, size and hash and accepts or
//! declines (users it trusts may be accepted without asking:
//! `auto_accept`). On acceptance it fetches the files one after another,
//! each as a `getfile` that names the offer; the sender serves a file of
//! an offer only to the user it offered it to, and only while the file
//! is what it hashed.
//!
//! Paths are kept, safely: the sender names each file by its path under
//! what was offered (a folder `photos` gives `photos/2024/a.jpg`), never
//! follows a symbolic link, and lists only plain names
//! ([`chatdrop_proto::names::check_offered_name`]); the receiver checks
//! the names again and makes each folder itself under its download folder,
//! refusing any step of the way that is a link or not a folder.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use chatdrop_proto::limits::{MAX_CLIENT_FRAME, MAX_OFFER_FILES};
use chatdrop_proto::names::check_offered_name;
use chatdrop_proto::{ClientMsg, OfferedFile, RefuseReason};
use chatdrop_transfer::outline::Outline;

use crate::event::OfferFile;

/// How long an offer made stays open without its receiver accepting it
/// or asking for a file of it.
pub const OFFER_TTL: Duration = Duration::from_secs(3600);
/// Offers this client keeps open at once (sent or received): the oldest
/// is forgotten first.
pub const MAX_OFFERS: usize = 32;
/// Files of one offer served at once: the receiver fetches one at a time,
/// so more are only a retry overlapping a transfer that is ending.
pub const MAX_OFFER_UPLOADS: usize = 4;

/// One file of an offer made.
#[derive(Debug, Clone)]
pub(crate) struct OfferedPath {
    /// The name offered.
    pub(crate) name: String,
    /// Where it is.
    pub(crate) path: PathBuf,
    /// Its outline (size, hash, parts), as hashed when offered.
    pub(crate) outline: Arc<Outline>,
    /// When it was last changed, as hashed: a file changed since is not
    /// served.
    pub(crate) modified: SystemTime,
}

/// An offer this client made.
#[derive(Debug)]
pub(crate) struct Made {
    /// Its number, as this client shows it.
    pub(crate) number: u32,
    /// The receiver.
    pub(crate) to: String,
    pub(crate) files: Vec<OfferedPath>,
    /// When it was made, accepted, or last asked for a file.
    touched: Instant,
    /// Files of it being served now.
    pub(crate) serving: Arc<std::sync::atomic::AtomicUsize>,
}

/// An offer this client received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// Its number, as this client shows it (`/accept N`).
    pub(crate) number: u32,
    pub(crate) from: String,
    /// Its id on the wire.
    pub(crate) id: u64,
    pub(crate) files: Vec<OfferedFile>,
}

/// Offers made and received, shared by the control loop and the tasks
/// that prepare offers.
#[derive(Debug, Default)]
pub(crate) struct Offers {
    made: HashMap<u64, Made>,
    /// Waiting for this user's answer, oldest first.
    received: VecDeque<Received>,
    next_number: u32,
}

/// [`Offers`] behind a lock.
pub(crate) type SharedOffers = Arc<Mutex<Offers>>;

/// Locks the offers (a panic elsewhere does not lose them).
pub(crate) fn lock(offers: &SharedOffers) -> MutexGuard<'_, Offers> {
    offers.lock().unwrap_or_else(|p| p.into_inner())
}

impl Offers {
    fn number(&mut self) -> u32 {
        self.next_number += 1;
        self.next_number
    }

    /// Records offer `id` (random), made to `to`; returns its number.
    pub(crate) fn made(&mut self, id: u64, to: &str, files: Vec<OfferedPath>) -> u32 {
        self.made.retain(|_, m| m.touched.elapsed() < OFFER_TTL);
        if self.made.len() >= MAX_OFFERS {
            // The one left alone longest goes, one being served last.
            let serving = |m: &Made| m.serving.load(std::sync::atomic::Ordering::Relaxed) > 0;
            let oldest = (self.made.iter())
                .min_by_key(|(_, m)| (serving(m), m.touched))
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.made.remove(&oldest);
            }
        }
        let number = self.number();
        self.made.insert(
            id,
            Made {
                number,
                to: to.to_string(),
                files,
                touched: Instant::now(),
                serving: Default::default(),
            },
        );
        number
    }

    /// The number of offer `id`, made to `to`, if this client made it;
    /// it stays open an hour from now.
    pub(crate) fn made_to(&mut self, id: u64, to: &str) -> Option<u32> {
        let made = self.made.get_mut(&id).filter(|m| m.to == to)?;
        made.touched = Instant::now();
        Some(made.number)
    }

    /// The receiver declined offer `id`: it is closed.
    pub(crate) fn close(&mut self, id: u64) {
        self.made.remove(&id);
    }

    /// The file `name` of offer `id`, for `asker`: what to serve, with
    /// the offer's count of files being served, or why not. (That the
    /// file is still what was hashed is checked on the file opened:
    /// `Source::open_unchanged`.)
    pub(crate) fn serve(
        &mut self,
        id: u64,
        asker: &str,
        name: &str,
    ) -> Result<(OfferedPath, Arc<std::sync::atomic::AtomicUsize>), RefuseReason> {
        let Some(made) = self.made.get_mut(&id) else {
            return Err(RefuseReason::NotFound);
        };
        if made.touched.elapsed() >= OFFER_TTL {
            self.made.remove(&id);
            return Err(RefuseReason::NotFound);
        }
        // Somebody else than the receiver learns nothing of the offer.
        if made.to != asker {
            return Err(RefuseReason::NotFound);
        }
        made.touched = Instant::now();
        let Some(file) = made.files.iter().find(|f| f.name == name) else {
            return Err(RefuseReason::NotFound);
        };
        Ok((file.clone(), made.serving.clone()))
    }

    /// Records an offer received, or says why it is not well formed (the
    /// server checks it too, but a server is not trusted with paths).
    pub(crate) fn received(
        &mut self,
        from: &str,
        id: u64,
        files: Vec<OfferedFile>,
    ) -> Result<Received, String> {
        if files.is_empty() || files.len() > MAX_OFFER_FILES {
            return Err(format!("{from}'s offer lists {} files", files.len()));
        }
        if let Some(bad) = files.iter().find_map(|f| check_offered_name(&f.name).err()) {
            return Err(format!("{from}'s offer names a file badly: {bad}"));
        }
        // Offered again (the same id): one entry.
        self.received.retain(|r| !(r.from == from && r.id == id));
        if self.received.len() >= MAX_OFFERS {
            self.received.pop_front();
        }
        let offer = Received {
            number: self.number(),
            from: from.to_string(),
            id,
            files,
        };
        self.received.push_back(offer.clone());
        Ok(offer)
    }

    /// Takes offer `number` (the latest one waiting, for `None`) out of
    /// those waiting for an answer.
    pub(crate) fn answer(&mut self, number: Option<u32>) -> Result<Received, String> {
        let at = match number {
            Some(n) => self.received.iter().position(|r| r.number == n),
            None => self.received.len().checked_sub(1),
        };
        match (at, number) {
            (Some(i), _) => self.received.remove(i).ok_or_else(String::new),
            (None, Some(n)) => Err(format!("no offer {n} is waiting for an answer")),
            (None, None) => Err("no offer is waiting for an answer".into()),
        }
    }
}

/// A path as typed, with a leading `~/` for the home folder (no shell
/// expands it in the full-screen UI).
pub(crate) fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// The bytes of an offer in all (the sizes are the sender's word: a sum
/// past `u64` stays at its largest).
pub(crate) fn total(files: &[OfferedFile]) -> u64 {
    files.iter().fold(0, |sum, f| sum.saturating_add(f.size))
}

/// The files of an offer as events show them.
pub(crate) fn shown(files: &[OfferedFile]) -> Vec<OfferFile> {
    files
        .iter()
        .map(|f| OfferFile {
            name: f.name.clone(),
            size: f.size,
            blake3: hex::encode(f.blake3),
        })
        .collect()
}

/// What `/send` offers: each path given, a file or a folder walked whole,
/// named by its path under what was given. Symbolic links are never
/// followed (a link given or met is skipped and counted), nor are files
/// other than regular ones; names that cannot be offered as they are
/// (not UTF-8, or not plain) are refused by name. Returns the files and
/// how many were skipped.
pub(crate) fn collect(paths: &[PathBuf]) -> Result<(Vec<(String, PathBuf)>, usize), String> {
    let mut files = Vec::new();
    let mut skipped = 0;
    for path in paths {
        let meta = fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: the name cannot be offered", path.display()))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "{} is a symbolic link; offer what it points to",
                path.display()
            ));
        }
        if meta.is_dir() {
            walk(path, base, &mut files, &mut skipped)?;
        } else if meta.is_file() {
            add(&mut files, base.to_string(), path.clone())?;
        } else {
            return Err(format!("{} is not a file or a folder", path.display()));
        }
    }
    if files.is_empty() {
        return Err("nothing to offer: the folders hold no files".into());
    }
    Ok((files, skipped))
}

fn add(files: &mut Vec<(String, PathBuf)>, name: String, path: PathBuf) -> Result<(), String> {
    if files.len() >= MAX_OFFER_FILES {
        return Err(format!(
            "an offer holds at most {MAX_OFFER_FILES} files; send fewer, or an archive of them"
        ));
    }
    check_offered_name(&name)
        .map_err(|why| format!("{} cannot be offered: {why}", path.display()))?;
    if files.iter().any(|(n, _)| *n == name) {
        return Err(format!("two files would both be saved as {name}"));
    }
    files.push((name, path));
    Ok(())
}

/// Adds the files under the folder `dir`, named `prefix/...`, in name
/// order (so an offer lists a folder the same way each time).
fn walk(
    dir: &Path,
    prefix: &str,
    files: &mut Vec<(String, PathBuf)>,
    skipped: &mut usize,
) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            *skipped += 1;
            continue;
        };
        let Some(name) = entry.file_name().to_str().map(|n| format!("{prefix}/{n}")) else {
            return Err(format!("{}: the name is not UTF-8", path.display()));
        };
        if kind.is_dir() {
            walk(&path, &name, files, skipped)?;
        } else if kind.is_file() {
            add(files, name, path)?;
        } else {
            // A symbolic link (which may lead anywhere) or a device.
            *skipped += 1;
        }
    }
    Ok(())
}

/// Hashes the files collected for an offer.
pub(crate) fn hash(files: Vec<(String, PathBuf)>) -> Result<Vec<OfferedPath>, String> {
    files
        .into_iter()
        .map(|(name, path)| {
            let modified = fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let outline = chatdrop_transfer::hash_file(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(OfferedPath {
                name,
                path,
                outline: Arc::new(outline),
                modified,
            })
        })
        .collect()
}

/// The `OfferFiles` message for `files`, if it fits in one frame.
pub(crate) fn message(to: &str, id: u64, files: &[OfferedPath]) -> Result<ClientMsg, String> {
    let msg = ClientMsg::OfferFiles {
        to: to.to_string(),
        offer: id,
        files: files
            .iter()
            .map(|f| OfferedFile {
                name: f.name.clone(),
                size: f.outline.size(),
                blake3: f.outline.root(),
            })
            .collect(),
    };
    let len = chatdrop_proto::encode(&msg).map_or(usize::MAX, |b| b.len());
    if len + 64 > MAX_CLIENT_FRAME {
        return Err(format!(
            "the offer's names take {len} bytes, more than one message holds; send fewer files"
        ));
    }
    Ok(msg)
}

/// The folder an offered file `name` goes into under `root`, made one
/// step at a time: each step must be a folder of its own, not a link
/// (which could lead out of `root`) nor a file. Returns the folder and
/// the file's own name.
pub(crate) fn place(root: &Path, name: &str) -> Result<(PathBuf, String), String> {
    check_offered_name(name)?;
    let mut parts: Vec<&str> = name.split('/').collect();
    let leaf = parts.pop().unwrap_or(name).to_string();
    let mut dir = root.to_path_buf();
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for part in parts {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} is in the way: it is not a folder (or is a link)",
                    dir.display()
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?
            }
            Err(e) => return Err(format!("{}: {e}", dir.display())),
        }
    }
    Ok((dir, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatdrop_transfer::Source;

    #[test]
    fn a_folder_is_offered_whole_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("secret.txt");
        fs::write(&outside, b"not offered").unwrap();
        let folder = tmp.path().join("photos");
        fs::create_dir_all(folder.join("2024/summer")).unwrap();
        fs::write(folder.join("a.jpg"), b"a").unwrap();
        fs::write(folder.join("2024/summer/b.jpg"), b"b").unwrap();
        std::os::unix::fs::symlink(&outside, folder.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), folder.join("up")).unwrap();
        let (files, skipped) = collect(std::slice::from_ref(&folder)).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["photos/2024/summer/b.jpg", "photos/a.jpg"]);
        assert_eq!(skipped, 2, "both links are skipped");
        let why = collect(&[folder.join("link.txt")]).unwrap_err();
        assert!(why.contains("symbolic link"), "{why}");
    }

    #[test]
    fn an_offer_has_limits_and_no_two_files_of_one_name() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["x", "y"] {
            fs::create_dir(tmp.path().join(d)).unwrap();
            fs::write(tmp.path().join(d).join("a.txt"), b"a").unwrap();
        }
        let twice = [tmp.path().join("x/a.txt"), tmp.path().join("y/a.txt")];
        let why = collect(&twice).unwrap_err();
        assert!(why.contains("both be saved as a.txt"), "{why}");
        let many = tmp.path().join("many");
        fs::create_dir(&many).unwrap();
        for i in 0..=MAX_OFFER_FILES {
            fs::write(many.join(format!("{i}")), b"").unwrap();
        }
        let why = collect(&[many]).unwrap_err();
        assert!(why.contains("at most 100 files"), "{why}");
        let why = collect(&[tmp.path().join("none")]).unwrap_err();
        assert!(why.contains("No such file"), "{why}");
    }

    #[test]
    fn an_offered_file_is_placed_inside_the_download_folder_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("downloads");
        let (dir, leaf) = place(&root, "photos/2024/b.jpg").unwrap();
        assert_eq!(dir, root.join("photos/2024"));
        assert_eq!(leaf, "b.jpg");
        assert!(dir.is_dir());
        for bad in ["../x", "/etc/passwd", "a/../../x", "a//b"] {
            assert!(place(&root, bad).is_err(), "{bad} was placed");
        }
        // A link in the download folder does not lead the file out.
        let elsewhere = tmp.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, root.join("docs")).unwrap();
        let why = place(&root, "docs/a.txt").unwrap_err();
        assert!(why.contains("not a folder (or is a link)"), "{why}");
        fs::write(root.join("notes"), b"").unwrap();
        assert!(place(&root, "notes/a.txt").is_err());
    }

    #[test]
    fn offers_are_served_to_their_receiver_only_and_while_unchanged() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a.txt");
        fs::write(&path, b"hello").unwrap();
        let files = hash(vec![("a.txt".into(), path.clone())]).unwrap();
        let mut offers = Offers::default();
        let id = 0x1234;
        let number = offers.made(id, "bob", files);
        assert_eq!(offers.made_to(id, "bob"), Some(number));
        assert_eq!(offers.made_to(id, "carol"), None);
        assert!(offers.serve(id, "bob", "a.txt").is_ok());
        let refused = |o: &mut Offers, id, who, name| o.serve(id, who, name).err();
        assert_eq!(
            refused(&mut offers, id, "carol", "a.txt"),
            Some(RefuseReason::NotFound)
        );
        assert_eq!(
            refused(&mut offers, id, "bob", "b.txt"),
            Some(RefuseReason::NotFound)
        );
        assert_eq!(
            refused(&mut offers, id ^ 1, "bob", "a.txt"),
            Some(RefuseReason::NotFound)
        );
        // Changed since it was hashed: what is served does not open.
        let (served, _) = offers.serve(id, "bob", "a.txt").unwrap();
        fs::write(&path, b"hello, changed").unwrap();
        let opened = Source::open_unchanged(&served.path, &served.outline, served.modified);
        assert!(opened.is_err(), "a changed file is not sent");
        // Declined: closed.
        fs::write(&path, b"hello").unwrap();
        let files = hash(vec![("a.txt".into(), path.clone())]).unwrap();
        let again = offers.made(7, "bob", files);
        assert!(again > number && offers.serve(7, "bob", "a.txt").is_ok());
        offers.close(7);
        assert_eq!(
            refused(&mut offers, 7, "bob", "a.txt"),
            Some(RefuseReason::NotFound)
        );
    }

    #[test]
    fn offers_received_are_answered_by_number_or_the_latest() {
        let mut offers = Offers::default();
        let file = |name: &str| OfferedFile {
            name: name.into(),
            size: 1,
            blake3: [0; 32],
        };
        let first = offers.received("alice", 7, vec![file("a")]).unwrap();
        let second = offers.received("carol", 9, vec![file("b")]).unwrap();
        assert!(offers.received("mallory", 1, vec![file("../a")]).is_err());
        assert!(offers.received("mallory", 1, vec![]).is_err());
        assert_eq!(offers.answer(None).unwrap().number, second.number);
        assert!(offers.answer(Some(99)).unwrap_err().contains("no offer 99"));
        assert_eq!(offers.answer(Some(first.number)).unwrap().from, "alice");
        assert!(offers.answer(None).is_err());
    }
}
