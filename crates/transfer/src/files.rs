//! Files at both ends: the source being sent, read at offsets, and the
//! download being received, written at offsets into a `.part` file that is
//! hashed as it fills, checked, synced and renamed into place at the end.
//!
//! An interrupted download keeps its `.part` file and a small record of how
//! much of it is complete, keyed by the file's BLAKE3 hash; fetching the same
//! file again (from any peer) continues from there.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rustix::fs::FallocateFlags;
use rustix::io::Errno;

use crate::TransferError;

/// The BLAKE3 hash and size of a file, read in one pass.
pub fn hash_file(path: &Path) -> Result<(u64, [u8; 32]), TransferError> {
    let mut f =
        File::open(path).map_err(TransferError::io(format!("opening {}", path.display())))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(TransferError::io(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, *hasher.finalize().as_bytes()))
}

/// A file being sent.
#[derive(Debug)]
pub struct Source {
    file: File,
    size: u64,
}

impl Source {
    /// Opens `path` for sending; `size` is what was announced.
    pub fn open(path: &Path, size: u64) -> Result<Source, TransferError> {
        let file =
            File::open(path).map_err(TransferError::io(format!("opening {}", path.display())))?;
        let len = file
            .metadata()
            .map_err(TransferError::io(format!("reading {}", path.display())))?
            .len();
        if len != size {
            return Err(TransferError::Invalid(format!(
                "{} changed size since it was announced ({size} -> {len} bytes)",
                path.display()
            )));
        }
        Ok(Source { file, size })
    }

    /// The announced size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fills `buf` from `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), TransferError> {
        // The error's message is made only on error: this runs per packet.
        self.file
            .read_exact_at(buf, offset)
            .map_err(|e| TransferError::io("reading the file being sent")(e))
    }
}

/// Makes a name from a peer safe to create in the download folder: its last
/// path component, without control characters, not `.`/`..`/empty.
pub fn safe_file_name(name: &str) -> Result<String, TransferError> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    if clean.is_empty()
        || clean == "."
        || clean == ".."
        || clean.starts_with('.') && clean.ends_with(".part")
    {
        return Err(TransferError::Invalid(format!(
            "{name:?} cannot be a file name"
        )));
    }
    Ok(clean)
}

/// A download in progress.
#[derive(Debug)]
pub struct Download {
    dir: PathBuf,
    name: String,
    size: u64,
    hash: [u8; 32],
    part: PathBuf,
    record: PathBuf,
    file: File,
    hasher: blake3::Hasher,
    /// Bytes fed to the hasher.
    hashed: u64,
    /// The bytes right after `hashed`, in order, not yet fed (see
    /// [`Download::write_at`]).
    staged: Vec<u8>,
    /// Received bytes that continue one another from `run_at`, not yet
    /// written: small packets are written in runs, one call for many.
    run_at: u64,
    run: Vec<u8>,
    /// Bytes that arrived after a gap, by offset, kept for the hasher so
    /// that they need not be read back from the file once the gap fills;
    /// at most [`AHEAD_MAX`] bytes (beyond that they are read back).
    /// Gaps come with every loss, and with every packet the sender holds
    /// back against optimistic acknowledgements (a round trip late): on
    /// loopback, reading back what arrived meanwhile cost the receiver a
    /// fifth more CPU per byte.
    ahead: BTreeMap<u64, Vec<u8>>,
    /// Bytes held in `ahead`.
    ahead_bytes: usize,
    /// Bytes the hasher had to read back from the file.
    read_back: u64,
}

/// Bytes given to the hasher at once: BLAKE3 hashes many 1 KiB chunks in
/// parallel (SIMD) only when given many at a time, starting at a multiple
/// of a large power of two (packets' payloads are neither).
const HASH_STEP: usize = 1 << 20;
/// The most bytes held for one write.
const WRITE_RUN: usize = 1 << 20;
/// Packets at least this large are written as they come: they are
/// already big enough for one call each.
const LARGE: usize = 16 << 10;
/// The most bytes kept for the hasher beyond a gap (see `Download::ahead`).
const AHEAD_MAX: usize = 8 << 20;

fn read_record(path: &Path, size: u64, hash: &[u8; 32]) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let mut parts = text.split_whitespace();
    let (s, h, done) = (parts.next()?, parts.next()?, parts.next()?);
    (s.parse::<u64>().ok()? == size && h == hex::encode(hash))
        .then(|| done.parse::<u64>().ok())
        .flatten()
        .filter(|d| *d <= size)
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

impl Download {
    /// Prepares a download of `name` (`size` bytes, BLAKE3 `hash`) into
    /// `dir`, picking up an earlier interrupted download of the same file.
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
        let part = dir.join(format!(".{key}.part"));
        let record = dir.join(format!(".{key}.part.resume"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(TransferError::io(format!("opening {}", part.display())))?;
        // One download of a file at a time: a second would share the `.part`.
        if file.try_lock().is_err() {
            return Err(TransferError::Invalid(format!(
                "{name} is already being downloaded into {}",
                dir.display()
            )));
        }
        let on_disk = file.metadata().map(|m| m.len()).unwrap_or(0);
        let resume = read_record(&record, size, &hash)
            .filter(|d| *d <= on_disk)
            .unwrap_or(0);
        if resume == 0 {
            file.set_len(0)
                .map_err(TransferError::io(format!("truncating {}", part.display())))?;
        }
        let mut d = Download {
            dir: dir.to_path_buf(),
            name,
            size,
            hash,
            part,
            record,
            file,
            hasher: blake3::Hasher::new(),
            hashed: 0,
            staged: Vec::with_capacity(HASH_STEP + 65_536),
            ahead: BTreeMap::new(),
            ahead_bytes: 0,
            read_back: 0,
            run_at: 0,
            run: Vec::new(),
        };
        d.hash_up_to(resume)?;
        Ok(d)
    }

    /// Sets aside room for the bytes still to come, without changing the
    /// `.part` file's length (which the resume record is checked against),
    /// so that a full disk says so now rather than after most of the file
    /// has come, and the file system can lay the file out in one piece.
    /// On tmpfs this also moves the page allocation out of the receiving
    /// loop. File systems that cannot reserve are left to allocate as the
    /// bytes come.
    pub fn reserve(&self) -> Result<(), TransferError> {
        let from = self.covered();
        let len = self.size.saturating_sub(from);
        if len == 0 {
            return Ok(());
        }
        // Past `i64::MAX` no file system can hold it (and the system call
        // would read it as negative).
        if i64::try_from(self.size).is_err() {
            return Err(self.no_room(Errno::FBIG.into()));
        }
        match rustix::fs::fallocate(&self.file, FallocateFlags::KEEP_SIZE, from, len) {
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
        if self.covered() == 0 {
            let _ = fs::remove_file(&self.part);
            let _ = fs::remove_file(&self.record);
        }
        TransferError::io(format!(
            "reserving room for {} ({} bytes) in {}",
            self.name,
            self.size.saturating_sub(self.covered()),
            self.dir.display()
        ))(e)
    }

    /// After a failed attempt: what it set aside and did not fill is given
    /// back. With nothing to resume from, the `.part` file and its record
    /// go; otherwise the file is cut to what was written, which frees the
    /// room [`Download::reserve`] set aside past it.
    pub fn give_back_room(&self) {
        if self.covered() == 0 {
            let _ = fs::remove_file(&self.part);
            let _ = fs::remove_file(&self.record);
        } else if let Ok(len) = self.file.metadata().map(|m| m.len()) {
            let _ = self.file.set_len(len);
        }
    }

    /// Bytes already there from an earlier attempt.
    pub fn resume_from(&self) -> u64 {
        self.covered()
    }

    /// Bytes from the start that the hash has taken in (fed or staged).
    fn covered(&self) -> u64 {
        self.hashed + self.staged.len() as u64
    }

    /// Feeds the staged bytes to the hasher in whole steps (all of them
    /// with `all`), keeping the rest for later.
    fn feed(&mut self, all: bool) {
        let n = if all {
            self.staged.len()
        } else {
            self.staged.len() / HASH_STEP * HASH_STEP
        };
        if n > 0 {
            self.hasher.update(&self.staged[..n]);
            self.hashed += n as u64;
            self.staged.copy_within(n.., 0);
            self.staged.truncate(self.staged.len() - n);
        }
    }

    /// Writes received bytes at `offset` (small ones may wait for the
    /// next [`flush`](Self::flush) or [`hash_up_to`](Self::hash_up_to)).
    /// Bytes that continue what the hash has taken in are given to it too,
    /// so data arriving in order is hashed without being read back.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), TransferError> {
        if data.len() >= LARGE {
            self.flush()?;
            self.write_now(offset, data)?;
        } else {
            let end = self.run_at + self.run.len() as u64;
            if !self.run.is_empty() && (offset != end || self.run.len() >= WRITE_RUN) {
                self.flush()?;
            }
            if self.run.is_empty() {
                self.run_at = offset;
            }
            self.run.extend_from_slice(data);
        }
        let covered = self.covered();
        if offset == covered {
            self.staged.extend_from_slice(data);
            self.take_ahead();
            self.feed(false);
        } else if offset > covered
            && self.ahead_bytes + data.len() <= AHEAD_MAX
            && !self.ahead.contains_key(&offset)
        {
            self.ahead_bytes += data.len();
            self.ahead.insert(offset, data.to_vec());
        }
        Ok(())
    }

    /// Moves the bytes kept beyond a gap that now continue the staged ones
    /// into them, and forgets those the hasher has passed.
    fn take_ahead(&mut self) {
        loop {
            let covered = self.covered();
            let Some(entry) = self.ahead.first_entry() else {
                break;
            };
            let at = *entry.key();
            if at > covered {
                break;
            }
            let bytes = entry.remove();
            self.ahead_bytes -= bytes.len();
            let skip = (covered - at) as usize;
            if skip < bytes.len() {
                self.staged.extend_from_slice(&bytes[skip..]);
            }
        }
    }

    /// Writes the bytes held back by [`write_at`](Self::write_at).
    pub fn flush(&mut self) -> Result<(), TransferError> {
        if !self.run.is_empty() {
            let run = std::mem::take(&mut self.run);
            let written = self.write_now(self.run_at, &run);
            self.run = run;
            self.run.clear();
            written?;
        }
        Ok(())
    }

    fn write_now(&self, offset: u64, data: &[u8]) -> Result<(), TransferError> {
        // The error's message is made only on error: this runs per packet.
        self.file
            .write_all_at(data, offset)
            .map_err(|e| TransferError::io(format!("writing {}", self.part.display()))(e))
    }

    /// Brings the hash up to `contiguous` (all written): the hash is
    /// computed as the file fills, not in a second pass at the end; only
    /// bytes that arrived ahead of a gap are read back from the file.
    pub fn hash_up_to(&mut self, contiguous: u64) -> Result<(), TransferError> {
        self.flush()?;
        loop {
            self.take_ahead();
            self.feed(false);
            let at = self.covered();
            if at >= contiguous {
                break;
            }
            // Read back only up to what is kept in memory.
            let next_kept = self.ahead.keys().next().copied().unwrap_or(u64::MAX);
            let n = (contiguous.min(next_kept) - at).min(HASH_STEP as u64) as usize;
            let old = self.staged.len();
            self.staged.resize(old + n, 0);
            let read = self.file.read_exact_at(&mut self.staged[old..], at);
            self.read_back += n as u64;
            if let Err(e) = read {
                self.staged.truncate(old);
                return Err(TransferError::io(format!(
                    "reading {}",
                    self.part.display()
                ))(e));
            }
            self.feed(false);
        }
        Ok(())
    }

    /// Records how much is complete, so a later attempt resumes from there.
    pub fn save_progress(&mut self, contiguous: u64) -> Result<(), TransferError> {
        self.flush()?;
        let _ = self.file.sync_data();
        let tmp = self.record.with_extension("tmp");
        fs::write(
            &tmp,
            format!("{} {} {}\n", self.size, hex::encode(self.hash), contiguous),
        )
        .and_then(|_| fs::rename(&tmp, &self.record))
        .map_err(TransferError::io(format!(
            "writing {}",
            self.record.display()
        )))
    }

    /// Checks the hash, syncs and moves the file into place under a name
    /// that does not overwrite anything. Returns its path.
    pub fn finish(mut self) -> Result<(PathBuf, [u8; 32]), TransferError> {
        self.hash_up_to(self.size)?;
        self.feed(true);
        let got = *self.hasher.finalize().as_bytes();
        if got != self.hash {
            let _ = fs::remove_file(&self.part);
            let _ = fs::remove_file(&self.record);
            return Err(TransferError::HashMismatch {
                expected: hex::encode(self.hash),
                got: hex::encode(got),
            });
        }
        self.file.sync_all().map_err(TransferError::io(format!(
            "syncing {}",
            self.part.display()
        )))?;
        let target = place(&self.part, &self.dir, &self.name).map_err(TransferError::io(
            format!("moving {} into {}", self.name, self.dir.display()),
        ))?;
        let _ = fs::remove_file(&self.record);
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok((target, got))
    }
}

/// How many names `place` tries: `name`, then `stem (1).ext` up to this.
const MAX_NAME_TRIES: u32 = 10_000;

/// Moves `from` to `dir/name`, or `dir/stem (1).ext`, `(2)`... if taken,
/// never replacing a file: whether a name is free is decided by the move
/// itself, so two downloads of one name finishing together both keep their
/// file (checking first and then renaming would let the second overwrite
/// the first). Returns where the file went.
fn place(from: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    for i in 0..=MAX_NAME_TRIES {
        let to = match i {
            0 => dir.join(name),
            i => dir.join(format!("{stem} ({i}){ext}")),
        };
        match rename_no_replace(from, &to) {
            Ok(()) => return Ok(to),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{MAX_NAME_TRIES} files named like {name} exist already"),
    ))
}

/// Renames `from` to `to` unless `to` exists (then `AlreadyExists`), in one
/// step: `renameat2` with `RENAME_NOREPLACE`, or, where the file system
/// does not support it, a hard link (which fails if the name is taken)
/// and then the old name's removal.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => return Ok(()),
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    fs::hard_link(from, to)?;
    fs::remove_file(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A download of `data` into `dir`, and `data`'s hash.
    fn download_of(dir: &Path, data: &[u8]) -> (Download, [u8; 32]) {
        let hash = *blake3::hash(data).as_bytes();
        let d = Download::open(dir, "x.bin", data.len() as u64, hash).unwrap();
        (d, hash)
    }

    /// Finishes `d` and checks that the file in place is `data`, hash and
    /// bytes.
    fn finishes_as(d: Download, data: &[u8], hash: [u8; 32]) {
        let (path, got) = d.finish().unwrap();
        assert_eq!(got, hash);
        assert_eq!(fs::read(&path).unwrap(), data);
    }

    #[test]
    fn names_from_peers_are_made_safe() {
        assert_eq!(safe_file_name("report.pdf").unwrap(), "report.pdf");
        assert_eq!(safe_file_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(safe_file_name("a\\b\\c.txt").unwrap(), "c.txt");
        assert!(safe_file_name("..").is_err());
        assert!(safe_file_name("dir/").is_err());
        assert!(safe_file_name("").is_err());
    }

    #[test]
    fn packets_in_any_order_and_size_make_the_exact_file() {
        use rand::{seq::SliceRandom, SeedableRng};
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (mut d, hash) = download_of(dir.path(), &data);
        // Small packets with a few swapped neighbours (gaps filled later),
        // then large ones.
        let mut pieces: Vec<(usize, usize)> =
            (0..2_000_000).step_by(1_000).map(|o| (o, 1_000)).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for pair in pieces.chunks_mut(2) {
            if rand::Rng::gen_bool(&mut rng, 0.1) {
                pair.reverse();
            }
        }
        let mut tail: Vec<(usize, usize)> = (2_000_000..3_000_000)
            .step_by(50_000)
            .map(|o| (o, 50_000))
            .collect();
        tail.shuffle(&mut rng);
        pieces.extend(tail);
        let mut contiguous = 0;
        let mut done = std::collections::BTreeSet::new();
        for (n, &(at, len)) in pieces.iter().enumerate() {
            d.write_at(at as u64, &data[at..at + len]).unwrap();
            done.insert(at);
            while let Some(&next) = done.first() {
                if next != contiguous {
                    break;
                }
                done.remove(&next);
                contiguous += if next < 2_000_000 { 1_000 } else { 50_000 };
            }
            if n % 50 == 0 {
                d.hash_up_to(contiguous as u64).unwrap();
            }
        }
        finishes_as(d, &data, hash);
    }

    #[test]
    fn bytes_beyond_a_gap_are_hashed_from_memory_not_read_back() {
        // Packets of 64 KiB, one held a round trip late every 100: what
        // came meanwhile is hashed from memory when the gap fills, up to
        // 8 MiB; beyond that it is read back from the file. Checked to
        // fail without `ahead` (everything after each gap read back).
        let dir = tempfile::tempdir().unwrap();
        let packet = 64 << 10;
        let data: Vec<u8> = (0..400 * packet as u32).map(|i| (i % 253) as u8).collect();
        let (mut d, hash) = download_of(dir.path(), &data);
        let mut order: Vec<usize> = (0..400).collect();
        for late in [50, 150, 250] {
            let p = order.remove(late);
            order.insert(late + 60, p);
        }
        let mut contiguous = 0;
        let mut got = std::collections::BTreeSet::new();
        for i in order {
            d.write_at((i * packet) as u64, &data[i * packet..][..packet])
                .unwrap();
            got.insert(i);
            while got.contains(&contiguous) {
                contiguous += 1;
            }
            d.hash_up_to((contiguous * packet) as u64).unwrap();
        }
        assert_eq!(d.read_back, 0, "nothing read back");
        finishes_as(d, &data, hash);
        // A gap longer than what is kept: the rest is read back, and the
        // file is still exact.
        let dir = tempfile::tempdir().unwrap();
        let (mut d, hash) = download_of(dir.path(), &data);
        for i in (1..400).chain([0]) {
            d.write_at((i * packet) as u64, &data[i * packet..][..packet])
                .unwrap();
        }
        d.hash_up_to(data.len() as u64).unwrap();
        let kept = (AHEAD_MAX / packet * packet) as u64;
        assert_eq!(d.read_back, data.len() as u64 - packet as u64 - kept);
        finishes_as(d, &data, hash);
    }

    #[test]
    fn download_resume_finish() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let hash = *blake3::hash(&data).as_bytes();
        let mut d = Download::open(dir.path(), "x.bin", data.len() as u64, hash).unwrap();
        assert_eq!(d.resume_from(), 0);
        d.write_at(0, &data[..40_000]).unwrap();
        d.hash_up_to(40_000).unwrap();
        d.save_progress(40_000).unwrap();
        drop(d);
        let mut d = Download::open(dir.path(), "x.bin", data.len() as u64, hash).unwrap();
        assert_eq!(d.resume_from(), 40_000);
        d.write_at(40_000, &data[40_000..]).unwrap();
        let (path, _) = d.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), data);
        // A second copy does not overwrite the first.
        let mut d = Download::open(dir.path(), "x.bin", data.len() as u64, hash).unwrap();
        assert_eq!(d.resume_from(), 0, "the record went with the finished file");
        d.write_at(0, &data).unwrap();
        let (second, _) = d.finish().unwrap();
        assert_eq!(second.file_name().unwrap(), "x (1).bin");
    }

    /// Downloads of one name finishing at the same moment each keep their
    /// own file. (Seen failing with the old check-then-rename: in most
    /// rounds two threads picked the same free name and one file replaced
    /// the other.)
    #[test]
    fn downloads_of_one_name_finishing_together_overwrite_nothing() {
        const AT_ONCE: usize = 8;
        for round in 0..20u8 {
            let dir = tempfile::tempdir().unwrap();
            let go = std::sync::Barrier::new(AT_ONCE);
            let placed: Vec<(PathBuf, Vec<u8>)> = std::thread::scope(|s| {
                let threads: Vec<_> = (0..AT_ONCE as u8)
                    .map(|i| {
                        let (dir, go) = (dir.path(), &go);
                        s.spawn(move || {
                            let data = vec![i ^ round; 1000 + usize::from(i)];
                            let (mut d, _) = download_of(dir, &data);
                            d.write_at(0, &data).unwrap();
                            go.wait();
                            (d.finish().unwrap().0, data)
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap()).collect()
            });
            let names: std::collections::HashSet<&PathBuf> =
                placed.iter().map(|(p, _)| p).collect();
            assert_eq!(
                names.len(),
                AT_ONCE,
                "round {round}: two downloads took one name"
            );
            for (path, data) in &placed {
                assert_eq!(
                    &fs::read(path).unwrap(),
                    data,
                    "round {round}: {path:?} was replaced"
                );
            }
        }
    }

    #[test]
    fn room_is_reserved_up_front_without_changing_the_length() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let (mut d, hash) = download_of(dir.path(), &data);
        d.reserve().unwrap();
        let part = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".part"))
            .unwrap();
        let meta = fs::metadata(&part).unwrap();
        assert_eq!(meta.len(), 0, "the length still says how much was written");
        assert!(
            meta.blocks() * 512 >= data.len() as u64,
            "{} bytes set aside for {}",
            meta.blocks() * 512,
            data.len()
        );
        d.write_at(0, &data).unwrap();
        finishes_as(d, &data, hash);
    }

    /// A failed attempt gives back the room it set aside: all of it (and
    /// the `.part` file) when nothing came, what lies past the written part
    /// when some did. (Seen failing with `give_back_room` doing nothing:
    /// 3 MB stayed set aside.)
    #[test]
    fn a_failed_attempt_gives_back_the_room_it_set_aside() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (d, _) = download_of(dir.path(), &data);
        d.reserve().unwrap();
        d.give_back_room();
        drop(d);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left behind"
        );

        let (mut d, _) = download_of(dir.path(), &data);
        d.reserve().unwrap();
        d.write_at(0, &data[..100_000]).unwrap();
        d.flush().unwrap();
        d.hash_up_to(100_000).unwrap();
        d.save_progress(100_000).unwrap();
        d.give_back_room();
        drop(d);
        let part = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".part"))
            .unwrap();
        let held = fs::metadata(&part).unwrap().blocks() * 512;
        assert!(
            held < 1_000_000,
            "{held} bytes still set aside for 100,000 written"
        );
        let (d, _) = download_of(dir.path(), &data);
        assert_eq!(
            d.resume_from(),
            100_000,
            "what came is kept for the next attempt"
        );
    }

    /// A download whose claimed hash starts like another's (or is the same
    /// for another size or name) cannot touch the other's progress. (Seen
    /// failing with `.part` files named by the hash's first 8 bytes: the
    /// second open truncated the first's file, which then resumed from 0.)
    #[test]
    fn a_look_alike_hash_cannot_wipe_another_download() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 3) as u8).collect();
        let (mut d, hash) = download_of(dir.path(), &data);
        d.write_at(0, &data[..40_000]).unwrap();
        d.hash_up_to(40_000).unwrap();
        d.save_progress(40_000).unwrap();
        drop(d);
        let mut look_alike = hash;
        look_alike[20] ^= 1;
        for (name, size, claimed) in [
            ("x.bin", 5, look_alike),
            ("x.bin", 5, hash),
            ("y.bin", data.len() as u64, hash),
        ] {
            drop(Download::open(dir.path(), name, size, claimed).unwrap());
        }
        let (d, _) = download_of(dir.path(), &data);
        assert_eq!(d.resume_from(), 40_000);
    }

    #[test]
    fn a_file_too_large_for_the_folder_is_refused_before_it_comes() {
        let dir = tempfile::tempdir().unwrap();
        for size in [1 << 62, u64::MAX] {
            let d = Download::open(dir.path(), "huge.iso", size, [5; 32]).unwrap();
            let err = d.reserve().unwrap_err().to_string();
            assert!(err.contains("reserving room for huge.iso"), "{err}");
            assert!(
                err.contains("too large") || err.contains("No space left"),
                "the reason is given: {err}"
            );
            drop(d);
            assert_eq!(
                fs::read_dir(dir.path()).unwrap().count(),
                0,
                "nothing left behind"
            );
        }
    }

    #[test]
    fn one_download_of_a_file_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = Download::open(dir.path(), "x.bin", 3, [1; 32]).unwrap();
        let err = Download::open(dir.path(), "x.bin", 3, [1; 32])
            .unwrap_err()
            .to_string();
        assert!(err.contains("already being downloaded"), "{err}");
        drop(first);
        assert!(Download::open(dir.path(), "x.bin", 3, [1; 32]).is_ok());
    }

    #[test]
    fn a_wrong_hash_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Download::open(dir.path(), "x.bin", 3, [0; 32]).unwrap();
        d.write_at(0, b"abc").unwrap();
        let err = d.finish().unwrap_err().to_string();
        assert!(err.contains("does not match"), "{err}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
