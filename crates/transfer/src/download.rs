//! A download in progress: a `.part` file that one or several sessions
//! write at once, each its own range of it ([`Region`]), every part
//! checked against the file's outline as it fills (see
//! [`crate::outline`]), synced and moved into place once all are.
//!
//! An interrupted download keeps its `.part` file and a small record of
//! which parts were verified, keyed by the file's BLAKE3 hash; fetching
//! the same file again, from any owner or several, fetches only the rest.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use crate::files::{place, safe_file_name};
use crate::outline::{outline_len, part_size, Outline};
use crate::TransferError;

pub use crate::region::Region;

/// A download in progress; clones are handles to the same one, for the
/// sessions that fill it together.
#[derive(Debug, Clone)]
pub struct Download {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    dir: PathBuf,
    name: String,
    pub(crate) size: u64,
    pub(crate) hash: [u8; 32],
    /// Bytes of a part.
    pub(crate) part: u64,
    parts: u64,
    pub(crate) path: PathBuf,
    record: PathBuf,
    pub(crate) file: File,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The outline, once an owner sent one that makes the hash (a file
    /// of one part needs none).
    outline: Option<Arc<Outline>>,
    /// Verified parts, one bit each.
    verified: Vec<u64>,
    /// How many.
    count: u64,
    /// Parts an earlier attempt's record lists, checked again against
    /// the outline once it comes (the `.part` file may have changed
    /// since): one bit each.
    claimed: Vec<u64>,
    /// Of those, the ones found damaged.
    damaged: u64,
}

fn bit(words: &[u64], index: u64) -> bool {
    let (word, bit) = ((index / 64) as usize, index % 64);
    words.get(word).is_some_and(|w| w & (1 << bit) != 0)
}

impl State {
    fn is_verified(&self, index: u64) -> bool {
        bit(&self.verified, index)
    }
}

/// The name of a download's `.part` file: a hash of the name asked for,
/// the size and the whole content hash. Only a download of that same file
/// under that same name shares it (and resumes from it); an owner claiming
/// a hash that merely starts like another download's cannot reach that
/// download's `.part` file and wipe its progress.
fn part_key(name: &str, size: u64, hash: &[u8; 32]) -> String {
    let mut key = blake3::Hasher::new_derive_key("chatdrop 2026 download part file");
    key.update(&size.to_be_bytes());
    key.update(hash);
    key.update(name.as_bytes());
    hex::encode(&key.finalize().as_bytes()[..16])
}

/// The verified parts a resume record lists, if it is one for this file
/// (size, hash, part size) and lists only parts the `.part` file holds.
fn read_record(path: &Path, size: u64, hash: &[u8; 32], on_disk: u64) -> Option<Vec<u64>> {
    let text = fs::read_to_string(path).ok()?;
    let mut fields = text.split_whitespace();
    let (s, h, p, bits) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let part = part_size(size);
    if s.parse::<u64>().ok()? != size || h != hex::encode(hash) || p.parse::<u64>().ok()? != part {
        return None;
    }
    let parts = size.div_ceil(part).max(1);
    let bytes = hex::decode(bits).ok()?;
    if bytes.len() as u64 != parts.div_ceil(64) * 8 {
        return None;
    }
    let words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|w| u64::from_be_bytes(w.try_into().unwrap_or_default()))
        .collect();
    // Every part listed must lie within what the file holds.
    let last = (0..parts)
        .rev()
        .find(|i| words[(i / 64) as usize] & (1 << (i % 64)) != 0);
    let covers = last.is_none_or(|i| ((i + 1) * part).min(size) <= on_disk);
    covers.then_some(words)
}

impl Download {
    /// Prepares a download of `name` (`size` bytes, BLAKE3 `hash`) into
    /// `dir`, picking up the verified parts of an earlier interrupted
    /// download of the same file.
    pub fn open(
        dir: &Path,
        name: &str,
        size: u64,
        hash: [u8; 32],
    ) -> Result<Download, TransferError> {
        let name = safe_file_name(name)?;
        fs::create_dir_all(dir)
            .map_err(TransferError::io(format!("creating {}", dir.display())))?;
        let key = part_key(&name, size, &hash);
        let path = dir.join(format!(".{key}.part"));
        let record = dir.join(format!(".{key}.part.resume"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(TransferError::io(format!("opening {}", path.display())))?;
        // One download of a file at a time: a second would share the `.part`.
        if file.try_lock().is_err() {
            return Err(TransferError::Invalid(format!(
                "{name} is already being downloaded into {}",
                dir.display()
            )));
        }
        let part = part_size(size);
        let parts = size.div_ceil(part).max(1);
        let on_disk = file.metadata().map(|m| m.len()).unwrap_or(0);
        let words = read_record(&record, size, &hash, on_disk);
        let mut state = State {
            verified: vec![0; parts.div_ceil(64) as usize],
            ..State::default()
        };
        // A file of one part needs no outline: its hash checks it.
        if parts == 1 {
            state.outline = Outline::from_bytes(size, hash, &[]).ok().map(Arc::new);
        }
        match words {
            Some(words) => state.claimed = words,
            None => file
                .set_len(0)
                .map_err(TransferError::io(format!("truncating {}", path.display())))?,
        }
        // Nothing to fetch for an empty file: it is checked here.
        if size == 0 && hash == *blake3::hash(&[]).as_bytes() {
            state.verified[0] = 1;
            state.count = 1;
        }
        let d = Download {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                name,
                size,
                hash,
                part,
                parts,
                path,
                record,
                file,
                state: Mutex::new(state),
            }),
        };
        if parts == 1 {
            d.check_claimed(&mut d.state());
        }
        Ok(d)
    }

    /// Checks the parts an earlier attempt left against the outline, now
    /// known: those that match are verified, the others fetched again.
    fn check_claimed(&self, state: &mut State) {
        let Some(outline) = state.outline.clone() else {
            return;
        };
        let claimed = std::mem::take(&mut state.claimed);
        let mut buf = Vec::new();
        for i in (0..self.shared.parts).filter(|i| bit(&claimed, *i)) {
            let (a, b) = self.part_range(i);
            buf.resize((b - a) as usize, 0);
            let mut hasher = crate::outline::PartHasher::at(a);
            let good = self.read_back(a, &mut buf).is_ok() && {
                hasher.update(&buf);
                outline.check_part(i, &hasher)
            };
            if good {
                let (word, bit) = ((i / 64) as usize, i % 64);
                state.verified[word] |= 1 << bit;
                state.count += 1;
            } else {
                state.damaged += 1;
            }
        }
    }

    /// Parts an earlier attempt left that were found damaged on disk (and
    /// are fetched again).
    pub fn damaged_parts(&self) -> u64 {
        self.state().damaged
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.shared.size
    }

    /// The file's BLAKE3 hash.
    pub fn hash(&self) -> [u8; 32] {
        self.shared.hash
    }

    /// Bytes of a part: ranges given to owners start and end at multiples
    /// of it (or at the file's end).
    pub fn part_size(&self) -> u64 {
        self.shared.part
    }

    /// Bytes of the outline an owner sends ahead of any range.
    pub fn outline_len(&self) -> u64 {
        outline_len(self.shared.size)
    }

    /// The bytes of part `index`.
    fn part_range(&self, index: u64) -> (u64, u64) {
        let part = self.shared.part;
        (index * part, ((index + 1) * part).min(self.shared.size))
    }

    /// Bytes of the file in the parts `counted` picks.
    fn bytes_in(&self, counted: impl Fn(&State, u64) -> bool) -> u64 {
        let state = self.state();
        (0..self.shared.parts)
            .filter(|i| counted(&state, *i))
            .map(|i| {
                let (a, b) = self.part_range(i);
                b - a
            })
            .sum()
    }

    /// Bytes of the file in verified parts.
    pub fn verified_bytes(&self) -> u64 {
        self.bytes_in(|state, i| state.is_verified(i))
    }

    /// Bytes already there from an earlier attempt (in verified parts,
    /// or in parts its record lists, not checked again yet).
    pub fn resume_from(&self) -> u64 {
        self.bytes_in(|state, i| state.is_verified(i) || bit(&state.claimed, i))
    }

    /// Whether every part is verified.
    pub fn is_complete(&self) -> bool {
        self.state().count == self.shared.parts
    }

    /// The runs of parts not verified yet, as byte ranges, in order.
    pub fn missing(&self) -> Vec<(u64, u64)> {
        let state = self.state();
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for i in 0..self.shared.parts {
            if state.is_verified(i) || bit(&state.claimed, i) {
                continue;
            }
            let (a, b) = self.part_range(i);
            match runs.last_mut() {
                Some(run) if run.1 == a => run.1 = b,
                _ => runs.push((a, b)),
            }
        }
        runs
    }

    /// The outline, once known.
    pub fn outline(&self) -> Option<Arc<Outline>> {
        self.state().outline.clone()
    }

    /// Takes the outline an owner sent, if it makes the file's hash (the
    /// first one taken stays; a later one must be the same).
    pub fn set_outline(&self, bytes: &[u8]) -> Result<Arc<Outline>, TransferError> {
        let mut state = self.state();
        if let Some(known) = &state.outline {
            if known.bytes() == bytes {
                return Ok(known.clone());
            }
            return Err(TransferError::BadData(
                "its outline differs from the one verified".into(),
            ));
        }
        let outline = Arc::new(Outline::from_bytes(
            self.shared.size,
            self.shared.hash,
            bytes,
        )?);
        state.outline = Some(outline.clone());
        self.check_claimed(&mut state);
        Ok(outline)
    }

    /// Whether part `index` is verified.
    pub fn is_verified(&self, index: u64) -> bool {
        self.state().is_verified(index)
    }

    /// Records part `index` as verified.
    pub(crate) fn verified(&self, index: u64) {
        let mut state = self.state();
        if !state.is_verified(index) {
            let (word, bit) = ((index / 64) as usize, index % 64);
            if let Some(w) = state.verified.get_mut(word) {
                *w |= 1 << bit;
                state.count += 1;
            }
        }
    }

    /// A writer of the file's bytes `from..to` (starting at a part), for
    /// one session.
    pub fn region(&self, from: u64, to: u64) -> Region {
        Region::new(self.clone(), from, to)
    }

    /// Sets aside room for the bytes still to come, without changing the
    /// `.part` file's length, so that a full disk says so now rather than
    /// after most of the file has come, and the file system can lay the
    /// file out in one piece. On tmpfs this also moves the page
    /// allocation out of the receiving loop. File systems that cannot
    /// reserve are left to allocate as the bytes come.
    pub fn reserve(&self) -> Result<(), TransferError> {
        let size = self.shared.size;
        if size == 0 || self.is_complete() {
            return Ok(());
        }
        // Past `i64::MAX` no file system can hold it (and the system call
        // would read it as negative).
        if i64::try_from(size).is_err() {
            return Err(self.no_room(Errno::FBIG.into()));
        }
        match rustix::fs::fallocate(&self.shared.file, FallocateFlags::KEEP_SIZE, 0, size) {
            Ok(()) => Ok(()),
            Err(e) if [Errno::NOSPC, Errno::FBIG, Errno::DQUOT].contains(&e) => {
                Err(self.no_room(e.into()))
            }
            // Not supported here (or interrupted): the writes allocate.
            Err(_) => Ok(()),
        }
    }

    /// The error for a file that does not fit; a `.part` file holding
    /// nothing yet is removed with it, so that a refusal leaves no trace.
    fn no_room(&self, e: std::io::Error) -> TransferError {
        let s = &self.shared;
        if self.state().count == 0 {
            let _ = fs::remove_file(&s.path);
            let _ = fs::remove_file(&s.record);
        }
        TransferError::io(format!(
            "reserving room for {} ({} bytes) in {}",
            s.name,
            s.size.saturating_sub(self.verified_bytes()),
            s.dir.display()
        ))(e)
    }

    /// After a failed attempt: what it set aside and did not fill is given
    /// back. With nothing verified, the `.part` file and its record go;
    /// otherwise the file is cut to what was written, which frees the
    /// room [`Download::reserve`] set aside past it.
    pub fn give_back_room(&self) {
        let s = &self.shared;
        if self.resume_from() == 0 {
            let _ = fs::remove_file(&s.path);
            let _ = fs::remove_file(&s.record);
        } else if let Ok(len) = s.file.metadata().map(|m| m.len()) {
            let _ = s.file.set_len(len);
        }
    }

    /// Records which parts are verified, so a later attempt fetches only
    /// the rest.
    pub fn save_progress(&self) -> Result<(), TransferError> {
        let s = &self.shared;
        let _ = s.file.sync_data();
        let state = self.state();
        let words = state.verified.iter().enumerate();
        let words = words.map(|(i, w)| w | state.claimed.get(i).copied().unwrap_or(0));
        let bits: Vec<u8> = words.flat_map(|w| w.to_be_bytes()).collect();
        drop(state);
        let text = format!(
            "{} {} {} {}\n",
            s.size,
            hex::encode(s.hash),
            s.part,
            hex::encode(bits)
        );
        let tmp = s.record.with_extension("tmp");
        fs::write(&tmp, text)
            .and_then(|_| fs::rename(&tmp, &s.record))
            .map_err(TransferError::io(format!("writing {}", s.record.display())))
    }

    /// Once every part is verified: syncs the file and moves it into place
    /// under a name that does not overwrite anything. Returns its path and
    /// hash. Every part was checked against an outline that makes the
    /// hash, so the file is the one announced without reading it again.
    pub fn finish(self) -> Result<(PathBuf, [u8; 32]), TransferError> {
        let s = &self.shared;
        if !self.is_complete() {
            let missing: u64 = self.missing().iter().map(|(a, b)| b - a).sum();
            return Err(TransferError::Invalid(format!(
                "{} is not complete: {missing} bytes are missing",
                s.name
            )));
        }
        s.file
            .sync_all()
            .map_err(TransferError::io(format!("syncing {}", s.path.display())))?;
        let target = place(&s.path, &s.dir, &s.name).map_err(TransferError::io(format!(
            "moving {} into {}",
            s.name,
            s.dir.display()
        )))?;
        let _ = fs::remove_file(&s.record);
        if let Ok(d) = File::open(&s.dir) {
            let _ = d.sync_all();
        }
        Ok((target, s.hash))
    }

    /// Writes `data` at `offset` of the `.part` file.
    pub(crate) fn write_now(&self, offset: u64, data: &[u8]) -> Result<(), TransferError> {
        // The error's message is made only on error: this runs per packet.
        let s = &self.shared;
        s.file
            .write_all_at(data, offset)
            .map_err(|e| TransferError::io(format!("writing {}", s.path.display()))(e))
    }

    /// Reads the `.part` file's bytes at `offset` into `buf`.
    pub(crate) fn read_back(&self, offset: u64, buf: &mut [u8]) -> Result<(), TransferError> {
        let s = &self.shared;
        s.file
            .read_exact_at(buf, offset)
            .map_err(|e| TransferError::io(format!("reading {}", s.path.display()))(e))
    }
}

#[cfg(test)]
mod tests;
