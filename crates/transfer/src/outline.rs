//! A file's outline: the BLAKE3 chaining values of its parts, which let a
//! receiver check each part on its own as it arrives, whoever sent it.
//!
//! BLAKE3 hashes a file as a binary tree of 1 KiB chunks. A part is a run
//! of 2^k chunks starting at a multiple of its length, a subtree of that
//! tree, so its chaining value can be computed from its bytes alone and
//! merged with its neighbours' up to the root: the file's hash. The
//! outline is the list of the parts' chaining values, 32 bytes each. A
//! receiver gets it from any owner, merges it up to the root and compares
//! that with the hash the owners announced: a wrong outline is caught
//! before any part is taken from it. From then on each part is hashed
//! where it lands and compared with its entry, so a lying owner is caught
//! at its first bad part and nothing unverified is kept. This is Bao's
//! verified streaming, at a part's granularity rather than a chunk's;
//! the subtree arithmetic is the `blake3` crate's own (`blake3::hazmat`),
//! made for this use.
//!
//! A part is at least 1 MiB, and large enough that a file has at most
//! [`MAX_PARTS`] of them: the outline is at most 256 KiB, a tiny share of
//! any file that has many parts. A file of one part has no outline (its
//! hash checks it).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use blake3::hazmat::{
    merge_subtrees_non_root, merge_subtrees_root, ChainingValue, HasherExt, Mode,
};

use crate::TransferError;

/// The smallest part: 1 MiB (1024 BLAKE3 chunks).
pub const MIN_PART: u64 = 1 << 20;
/// The most parts a file is cut into.
pub const MAX_PARTS: u64 = 8192;
/// Bytes of one outline entry.
pub const ENTRY: u64 = 32;

/// The part size of a file of `size` bytes: the smallest power of two of
/// at least [`MIN_PART`] that cuts it into at most [`MAX_PARTS`] parts.
pub fn part_size(size: u64) -> u64 {
    let mut part = MIN_PART;
    while size.div_ceil(part) > MAX_PARTS {
        part *= 2;
    }
    part
}

/// Bytes of the outline of a file of `size` bytes (zero for one part).
pub fn outline_len(size: u64) -> u64 {
    let parts = size.div_ceil(part_size(size));
    if parts > 1 {
        parts * ENTRY
    } else {
        0
    }
}

/// A file's size, hash and outline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    size: u64,
    part: u64,
    root: [u8; 32],
    /// One chaining value per part; empty for a file of one part.
    cvs: Vec<ChainingValue>,
}

impl Outline {
    /// The outline of `path`'s content, read in one pass: its size, its
    /// BLAKE3 hash and the chaining value of each part.
    pub fn of_file(path: &Path) -> Result<Outline, TransferError> {
        let mut f =
            File::open(path).map_err(TransferError::io(format!("opening {}", path.display())))?;
        let size = f
            .metadata()
            .map_err(TransferError::io(format!("reading {}", path.display())))?
            .len();
        Outline::of_reader(&mut f, size, part_size(size))
            .map_err(TransferError::io(format!("reading {}", path.display())))
    }

    /// The outline of `data` (for tests).
    #[cfg(test)]
    pub(crate) fn of_bytes(data: &[u8]) -> Outline {
        let size = data.len() as u64;
        Outline::of_reader(&mut &data[..], size, part_size(size)).expect("read from memory")
    }

    /// The outline of `size` bytes read from `r`, cut in parts of `part`
    /// bytes (a power of two of at least one chunk).
    fn of_reader(r: &mut impl Read, size: u64, part: u64) -> std::io::Result<Outline> {
        let mut cvs = Vec::new();
        let mut buf = vec![0u8; part.min(1 << 20) as usize];
        let mut whole = blake3::Hasher::new();
        let mut at = 0u64;
        while at < size || at == 0 {
            let len = part.min(size - at);
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(at);
            let mut left = len;
            while left > 0 {
                let n = left.min(buf.len() as u64) as usize;
                r.read_exact(&mut buf[..n])?;
                if len == size {
                    whole.update(&buf[..n]);
                } else {
                    hasher.update(&buf[..n]);
                }
                left -= n as u64;
            }
            if len == size {
                // One part: the file's hash is the root's, not a subtree's.
                return Ok(Outline {
                    size,
                    part,
                    root: *whole.finalize().as_bytes(),
                    cvs: Vec::new(),
                });
            }
            cvs.push(hasher.finalize_non_root());
            at += len;
        }
        let root = root_of(&cvs);
        Ok(Outline {
            size,
            part,
            root,
            cvs,
        })
    }

    /// The outline of a file of `size` bytes and hash `root` from its
    /// bytes as an owner sent them, if they are that file's: their root
    /// must be `root`.
    pub fn from_bytes(size: u64, root: [u8; 32], bytes: &[u8]) -> Result<Outline, TransferError> {
        let part = part_size(size);
        let parts = size.div_ceil(part);
        let bad = |why: &str| TransferError::BadData(format!("its outline {why}"));
        if bytes.len() as u64 != outline_len(size) {
            return Err(bad("has the wrong length"));
        }
        if parts <= 1 {
            return Ok(Outline {
                size,
                part,
                root,
                cvs: Vec::new(),
            });
        }
        let cvs: Vec<ChainingValue> = bytes
            .chunks_exact(ENTRY as usize)
            .map(|c| {
                let mut cv = [0u8; 32];
                cv.copy_from_slice(c);
                cv
            })
            .collect();
        if root_of(&cvs) != root {
            return Err(bad("does not match the file's hash"));
        }
        Ok(Outline {
            size,
            part,
            root,
            cvs,
        })
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file's BLAKE3 hash.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// Bytes of a part (the last may be shorter).
    pub fn part(&self) -> u64 {
        self.part
    }

    /// The outline's bytes, as sent ahead of a range of the file.
    pub fn bytes(&self) -> Vec<u8> {
        self.cvs.concat()
    }

    /// Whether the bytes `hasher` took are part `index`.
    pub fn check_part(&self, index: u64, hasher: &PartHasher) -> bool {
        if self.cvs.is_empty() {
            return index == 0 && *hasher.hasher.finalize().as_bytes() == self.root;
        }
        self.cvs
            .get(index as usize)
            .is_some_and(|cv| *cv == hasher.hasher.finalize_non_root())
    }
}

/// Hashes one part as its bytes come, in order.
#[derive(Debug, Clone)]
pub struct PartHasher {
    hasher: blake3::Hasher,
}

impl PartHasher {
    /// A hasher of the part starting at byte `offset` (a multiple of the
    /// part size).
    pub fn at(offset: u64) -> PartHasher {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(offset);
        PartHasher { hasher }
    }

    /// Takes the part's next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }
}

/// The root hash of the parts whose chaining values are `cvs` (two or
/// more), merged as BLAKE3's tree merges them: the left subtree of `n`
/// parts holds the largest power of two of them below `n`.
fn root_of(cvs: &[ChainingValue]) -> [u8; 32] {
    let split = left_len(cvs.len());
    let (l, r) = (merged(&cvs[..split]), merged(&cvs[split..]));
    *merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()
}

fn merged(cvs: &[ChainingValue]) -> ChainingValue {
    if cvs.len() == 1 {
        return cvs[0];
    }
    let split = left_len(cvs.len());
    merge_subtrees_non_root(&merged(&cvs[..split]), &merged(&cvs[split..]), Mode::Hash)
}

/// The largest power of two below `n` (n >= 2).
fn left_len(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) ^ seed) as u8)
            .collect()
    }

    #[test]
    fn the_outline_merges_up_to_the_files_blake3_hash() {
        // Small parts (2 chunks) so that every shape of tree comes up.
        let part = 2048u64;
        for len in [
            0,
            1,
            1024,
            2048,
            2049,
            4096,
            5000,
            6144,
            7 * 2048 + 1,
            33 * 2048 - 5,
        ] {
            let bytes = data(len, 7);
            let o = Outline::of_reader(&mut &bytes[..], len as u64, part).unwrap();
            assert_eq!(o.root, *blake3::hash(&bytes).as_bytes(), "{len} bytes");
            assert_eq!(
                o.cvs.len(),
                if len as u64 > part {
                    len.div_ceil(2048)
                } else {
                    0
                }
            );
            // Each part checks against its entry; a changed byte does not.
            for (i, piece) in bytes.chunks(part as usize).enumerate() {
                let mut h = PartHasher::at(i as u64 * part);
                h.update(piece);
                assert!(o.check_part(i as u64, &h), "{len} bytes, part {i}");
                let mut bad = piece.to_vec();
                bad[piece.len() / 2] ^= 1;
                let mut h = PartHasher::at(i as u64 * part);
                h.update(&bad);
                assert!(!o.check_part(i as u64, &h), "{len} bytes, bad part {i}");
                assert!(!o.check_part(i as u64 + 1, &h) || o.cvs.is_empty());
            }
        }
    }

    #[test]
    fn an_outline_from_an_owner_is_taken_only_if_it_makes_the_hash() {
        let bytes = data(3 * (1 << 20) + 5, 1);
        let o = Outline::of_reader(&mut &bytes[..], bytes.len() as u64, MIN_PART).unwrap();
        let size = bytes.len() as u64;
        let sent = o.bytes();
        assert_eq!(sent.len() as u64, outline_len(size));
        assert_eq!(Outline::from_bytes(size, o.root, &sent).unwrap(), o);
        let mut lie = sent.clone();
        lie[40] ^= 1;
        let err = Outline::from_bytes(size, o.root, &lie)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match the file's hash"), "{err}");
        let err = Outline::from_bytes(size, o.root, &sent[32..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrong length"), "{err}");
    }

    #[test]
    fn parts_grow_so_that_a_file_has_at_most_max_parts() {
        assert_eq!(part_size(0), MIN_PART);
        assert_eq!(part_size(8 << 30), MIN_PART);
        assert_eq!(part_size((8 << 30) + 1), 2 * MIN_PART);
        assert_eq!(part_size(100 << 30), 16 * MIN_PART);
        assert_eq!(outline_len(MIN_PART), 0);
        assert_eq!(outline_len(MIN_PART + 1), 64);
        assert!(outline_len(u64::MAX) <= MAX_PARTS * ENTRY);
        let file = tempfile::NamedTempFile::new().unwrap();
        let bytes = data(2 * (1 << 20) + 3, 9);
        std::fs::write(file.path(), &bytes).unwrap();
        let o = Outline::of_file(file.path()).unwrap();
        assert_eq!(
            (o.size(), o.root()),
            (bytes.len() as u64, *blake3::hash(&bytes).as_bytes())
        );
    }
}
