//! Files at both ends: the source being sent, read at offsets, and what a
//! download's folder needs (safe names, a finished file moved into place
//! without replacing another). The download itself is `download.rs`.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::outline::Outline;
use crate::session::Span;
use crate::TransferError;

/// The size, BLAKE3 hash and outline of a file, read in one pass.
pub fn hash_file(path: &Path) -> Result<Outline, TransferError> {
    Outline::of_file(path)
}

/// A file being sent, with its outline (sent ahead of any range of it).
#[derive(Debug)]
pub struct Source {
    file: File,
    size: u64,
    outline: Vec<u8>,
}

impl Source {
    /// Opens `path` for sending; `outline` is what was announced (its
    /// size, hash and parts).
    pub fn open(path: &Path, outline: &Outline) -> Result<Source, TransferError> {
        let size = outline.size();
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
        Ok(Source {
            file,
            size,
            outline: outline.bytes(),
        })
    }

    /// Opens `path` for sending a file as it was when it was hashed (a
    /// file offered with `/send`): not through a symbolic link, and a
    /// regular file of the size and modification time recorded then,
    /// checked on the file opened, so that nothing swapped in after a
    /// check of the path is sent.
    pub fn open_unchanged(
        path: &Path,
        outline: &Outline,
        modified: std::time::SystemTime,
    ) -> Result<Source, TransferError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(TransferError::io(format!("opening {}", path.display())))?;
        let meta = file
            .metadata()
            .map_err(TransferError::io(format!("reading {}", path.display())))?;
        if !meta.is_file() || meta.len() != outline.size() || meta.modified().ok() != Some(modified)
        {
            return Err(TransferError::Invalid(format!(
                "{} changed since it was hashed",
                path.display()
            )));
        }
        Ok(Source {
            file,
            size: outline.size(),
            outline: outline.bytes(),
        })
    }

    /// Bytes of the outline sent ahead of a range.
    pub fn outline_len(&self) -> u64 {
        self.outline.len() as u64
    }

    /// Fills `buf` from the stream of `span` at offset `at`: the outline,
    /// the file, or the end of one and the start of the other.
    pub fn read_stream(&self, span: &Span, at: u64, buf: &mut [u8]) -> Result<(), TransferError> {
        let n = (span.from + span.outline)
            .saturating_sub(at)
            .min(buf.len() as u64) as usize;
        let (head, tail) = buf.split_at_mut(n);
        if n > 0 {
            let from = (at - span.from) as usize;
            let bytes = self
                .outline
                .get(from..from + n)
                .ok_or_else(|| TransferError::Invalid("a range past the outline's end".into()))?;
            head.copy_from_slice(bytes);
        }
        if !tail.is_empty() {
            self.read_at(at + n as u64 - span.outline, tail)?;
        }
        Ok(())
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

/// How many names `place` tries: `name`, then `stem (1).ext` up to this.
const MAX_NAME_TRIES: u32 = 10_000;

/// Moves `from` to `dir/name`, or `dir/stem (1).ext`, `(2)`... if taken,
/// never replacing a file: whether a name is free is decided by the move
/// itself, so two downloads of one name finishing together both keep their
/// file (checking first and then renaming would let the second overwrite
/// the first). Returns where the file went.
pub(crate) fn place(from: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
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

    #[test]
    fn names_from_peers_are_made_safe() {
        assert_eq!(safe_file_name("report.pdf").unwrap(), "report.pdf");
        assert_eq!(safe_file_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(safe_file_name("a\\b\\c.txt").unwrap(), "c.txt");
        assert!(safe_file_name("..").is_err());
        assert!(safe_file_name("dir/").is_err());
        assert!(safe_file_name("").is_err());
    }

    /// A file offered is sent only as it was hashed: not through a link
    /// swapped in for it, nor once it changed.
    #[test]
    fn an_offered_file_opens_only_unchanged_and_not_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let (path, other) = (dir.path().join("a.txt"), dir.path().join("secret"));
        fs::write(&path, b"offered").unwrap();
        fs::write(&other, b"private").unwrap();
        let outline = crate::hash_file(&path).unwrap();
        let modified = fs::metadata(&path).unwrap().modified().unwrap();
        assert!(Source::open_unchanged(&path, &outline, modified).is_ok());
        let later = modified + std::time::Duration::from_secs(1);
        assert!(Source::open_unchanged(&path, &outline, later).is_err());
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&other, &path).unwrap();
        let other_modified = fs::metadata(&other).unwrap().modified().unwrap();
        let via_link = Source::open_unchanged(&path, &outline, other_modified);
        assert!(via_link.is_err(), "a link swapped in is not followed");
    }
}
