//! One session's share of a download: the file's bytes `from..to`,
//! written at their offsets as they come and hashed part by part in
//! order, each part checked against the outline the moment its last byte
//! is in (see [`crate::outline`]). A part that does not match ends the
//! session with [`TransferError::BadData`]; one that does is recorded as
//! verified in the [`Download`].
//!
//! The hashing takes bytes as they arrive, in order, without reading them
//! back; what arrives beyond a gap (a loss) is kept in memory, up to
//! [`AHEAD_MAX`], until the gap fills.
//!
//! The file and the hash never disagree, whatever a sender sends twice:
//! a byte the hash has taken in is not written again, and a byte sent
//! again before that replaces the first in the file and in memory alike.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::download::Download;
use crate::outline::PartHasher;
use crate::TransferError;

/// Bytes given to the hasher at once: BLAKE3 hashes many 1 KiB chunks in
/// parallel (SIMD) only when given many at a time, starting at a multiple
/// of a large power of two (packets' payloads are neither). Parts are
/// multiples of it.
const HASH_STEP: usize = 1 << 20;
/// The most bytes held for one write.
const WRITE_RUN: usize = 1 << 20;
/// Packets at least this large are written as they come: they are
/// already big enough for one call each.
const LARGE: usize = 16 << 10;
/// The most bytes kept for the hasher beyond a gap (see `Region::ahead`).
pub(crate) const AHEAD_MAX: usize = 8 << 20;

/// A writer of one range of a download (see the module docs).
#[derive(Debug)]
pub struct Region {
    dl: Download,
    from: u64,
    to: u64,
    /// Bytes from here on are not this region's any more (another owner
    /// sends them): lowered by whoever shares the download out.
    stop: Arc<AtomicU64>,
    /// Parts of the range verified before this region began, by index
    /// from the first: their bytes are neither written nor hashed again.
    done_before: Vec<bool>,
    /// The part being hashed, from its first byte.
    hasher: PartHasher,
    /// Bytes fed to the hasher (or skipped, in a part done before), as
    /// a file offset.
    hashed: u64,
    /// The bytes right after `hashed`, in order, not yet fed.
    staged: Vec<u8>,
    /// Received bytes that continue one another from `run_at`, not yet
    /// written: small packets are written in runs, one call for many.
    run_at: u64,
    run: Vec<u8>,
    /// Bytes that arrived after a gap, by offset (none overlapping
    /// another), kept for the hasher so
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

impl Region {
    pub(crate) fn new(dl: Download, from: u64, to: u64) -> Region {
        let part = dl.part_size();
        let to = to.min(dl.size());
        let from = from.min(to) / part * part;
        let first = from / part;
        let done_before = (first..to.div_ceil(part).max(first + 1))
            .map(|i| dl.is_verified(i))
            .collect();
        Region {
            stop: Arc::new(AtomicU64::new(to)),
            done_before,
            hasher: PartHasher::at(from),
            hashed: from,
            staged: Vec::with_capacity(HASH_STEP + 65_536),
            run_at: from,
            run: Vec::new(),
            ahead: BTreeMap::new(),
            ahead_bytes: 0,
            read_back: 0,
            dl,
            from,
            to,
        }
    }

    /// The first byte of the range (a part's first).
    pub fn from(&self) -> u64 {
        self.from
    }

    /// The byte after the range's last.
    pub fn to(&self) -> u64 {
        self.to
    }

    /// The download this region is part of.
    pub fn download(&self) -> &Download {
        &self.dl
    }

    /// Where the region ends now: its end, or lower once another owner
    /// took the rest (see [`stop_handle`](Self::stop_handle)).
    pub fn stop(&self) -> u64 {
        self.stop.load(Ordering::Relaxed).clamp(self.from, self.to)
    }

    /// The handle that lowers [`stop`](Self::stop) (to a part's first
    /// byte), shared with whoever gives the rest to another owner.
    pub fn stop_handle(&self) -> Arc<AtomicU64> {
        self.stop.clone()
    }

    /// The end of the parts verified so far, from [`from`](Self::from):
    /// everything before it is checked (or was, before this region).
    pub fn verified_to(&self) -> u64 {
        let part = self.dl.part_size();
        // `hashed` ends a part exactly when that part was checked.
        if self.hashed == self.to || self.hashed.is_multiple_of(part) {
            self.hashed
        } else {
            self.hashed / part * part
        }
    }

    /// Whether every byte up to [`stop`](Self::stop) is verified.
    pub fn is_done(&self) -> bool {
        self.verified_to() >= self.stop()
    }

    /// Bytes the hasher had to read back from the file.
    pub fn read_back(&self) -> u64 {
        self.read_back
    }

    /// The end of the part holding byte `at`, at most the range's end.
    fn part_end(&self, at: u64) -> u64 {
        let part = self.dl.part_size();
        ((at / part + 1) * part).min(self.to)
    }

    /// Whether the part holding `at` was verified before this region.
    fn done_before(&self, at: u64) -> bool {
        let part = self.dl.part_size();
        let i = (at / part).saturating_sub(self.from / part) as usize;
        self.done_before.get(i).copied().unwrap_or(false)
    }

    /// Bytes from the range's start that the hash has taken in (fed or
    /// staged).
    fn covered(&self) -> u64 {
        self.hashed + self.staged.len() as u64
    }

    /// Feeds the staged bytes to the part hashers in whole steps, and
    /// checks each part the moment its last byte is in.
    fn feed(&mut self) -> Result<(), TransferError> {
        // Bytes of `staged` fed: they leave it once, at the end (moving
        // the rest down after every step moved megabytes again and again
        // when a gap filled).
        let mut fed = 0;
        let result = loop {
            if self.hashed >= self.to {
                fed = self.staged.len();
                break Ok(());
            }
            let end = self.part_end(self.hashed);
            let want = (end - self.hashed) as usize;
            let left = self.staged.len() - fed;
            let n = if left >= want {
                want
            } else {
                left / HASH_STEP * HASH_STEP
            };
            if n == 0 {
                break Ok(());
            }
            let skip = self.done_before(self.hashed);
            if !skip {
                self.hasher.update(&self.staged[fed..fed + n]);
            }
            self.hashed += n as u64;
            fed += n;
            if self.hashed == end {
                if let Err(e) = self.part_done(skip) {
                    break Err(e);
                }
            }
        };
        self.staged.drain(..fed);
        result
    }

    /// The part that ends at `hashed` is in: checked (unless it was
    /// verified before), and the next one begins.
    fn part_done(&mut self, skip: bool) -> Result<(), TransferError> {
        let part = self.dl.part_size();
        let index = (self.hashed - 1) / part;
        let next = PartHasher::at(self.hashed.min(self.to / part * part));
        let hasher = std::mem::replace(&mut self.hasher, next);
        if skip {
            return Ok(());
        }
        let good = self
            .dl
            .outline()
            .is_some_and(|o| o.check_part(index, &hasher));
        if !good {
            let (start, end) = (index * part, self.hashed);
            // Not verified: it is fetched again, and no claim of it stays.
            self.hashed = start;
            return Err(TransferError::BadData(format!(
                "part {index} (bytes {start}..{end}) is not the file's"
            )));
        }
        self.dl.verified(index);
        Ok(())
    }

    /// Writes received bytes at `offset` (small ones may wait for the
    /// next [`flush`](Self::flush) or [`hash_up_to`](Self::hash_up_to)).
    /// Bytes outside the range (or past its stop) are dropped, and so are
    /// those of parts verified before and those the hash has taken in: a
    /// sender cannot change what is checked. Bytes that continue what the
    /// hash has taken in are given to it too, so data arriving in order is
    /// hashed without being read back.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), TransferError> {
        let stop = self.stop();
        let end = (offset + data.len() as u64).min(stop);
        // Bytes before `covered` are in the file and the hash already.
        let start = offset.max(self.from).max(self.covered());
        if start >= end {
            return Ok(());
        }
        let data = &data[(start - offset) as usize..(end - offset) as usize];
        let offset = start;
        // A packet may straddle a part done before: only the rest is
        // written (rare: a range asked across such parts).
        let mut at = offset;
        while at < end {
            let piece_end = self.part_end(at).min(end);
            if !self.done_before(at) {
                let piece = &data[(at - offset) as usize..(piece_end - offset) as usize];
                self.write_piece(at, piece)?;
            }
            at = piece_end;
        }
        let covered = self.covered();
        if offset == covered {
            self.staged.extend_from_slice(data);
            self.take_ahead();
            self.feed()?;
        } else {
            self.keep_ahead(offset, data);
        }
        Ok(())
    }

    /// Keeps `data`, the bytes from `offset` beyond a gap, for the hasher:
    /// where it overlaps bytes kept before, it replaces them (the file has
    /// the later bytes too); the rest is kept while there is room.
    fn keep_ahead(&mut self, offset: u64, data: &[u8]) {
        let end = offset + data.len() as u64;
        // Overlapping entries: the one that begins before `offset`, if it
        // reaches into it, and those that begin inside.
        let before = self.ahead.range(..offset).next_back();
        let first = match before {
            Some((&at, bytes)) if at + bytes.len() as u64 > offset => at,
            _ => offset,
        };
        let mut at = offset;
        let mut gaps = Vec::new();
        for (&k, bytes) in self.ahead.range_mut(first..end) {
            let k_end = k + bytes.len() as u64;
            if k > at {
                gaps.push((at, k));
            }
            let (a, b) = (k.max(offset), k_end.min(end));
            if a < b {
                bytes[(a - k) as usize..(b - k) as usize]
                    .copy_from_slice(&data[(a - offset) as usize..(b - offset) as usize]);
            }
            at = at.max(k_end);
        }
        if at < end {
            gaps.push((at, end));
        }
        for (a, b) in gaps {
            let piece = &data[(a - offset) as usize..(b - offset) as usize];
            if self.ahead_bytes + piece.len() > AHEAD_MAX {
                break;
            }
            self.ahead_bytes += piece.len();
            self.ahead.insert(a, piece.to_vec());
        }
    }

    fn write_piece(&mut self, offset: u64, data: &[u8]) -> Result<(), TransferError> {
        if data.len() >= LARGE {
            self.flush()?;
            return self.dl.write_now(offset, data);
        }
        let end = self.run_at + self.run.len() as u64;
        if !self.run.is_empty() && (offset != end || self.run.len() >= WRITE_RUN) {
            self.flush()?;
        }
        if self.run.is_empty() {
            self.run_at = offset;
        }
        self.run.extend_from_slice(data);
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
            let written = self.dl.write_now(self.run_at, &run);
            self.run = run;
            self.run.clear();
            written?;
        }
        Ok(())
    }

    /// Brings the hash up to `contiguous` (all written, at most the
    /// range's stop), checking every part completed: the hash is computed
    /// as the file fills, not in a second pass at the end; only bytes
    /// that arrived ahead of a gap are read back from the file.
    pub fn hash_up_to(&mut self, contiguous: u64) -> Result<(), TransferError> {
        self.flush()?;
        let contiguous = contiguous.min(self.stop());
        loop {
            self.take_ahead();
            self.feed()?;
            let at = self.covered();
            if at >= contiguous {
                break;
            }
            // Read back only up to what is kept in memory, and within one
            // part.
            let next_kept = self.ahead.keys().next().copied().unwrap_or(u64::MAX);
            let n = (contiguous.min(next_kept).min(self.part_end(at)) - at).min(HASH_STEP as u64)
                as usize;
            let old = self.staged.len();
            self.staged.resize(old + n, 0);
            // A part done before is skipped, not read.
            if !self.done_before(at) {
                let read = self.dl.read_back(at, &mut self.staged[old..]);
                self.read_back += n as u64;
                if let Err(e) = read {
                    self.staged.truncate(old);
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}
