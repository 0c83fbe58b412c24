use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};

use super::*;
use crate::outline::MIN_PART;

/// A download of `data` into `dir`, with its outline taken (as a first
/// session would take it), and `data`'s hash.
fn download_of(dir: &Path, data: &[u8]) -> (Download, [u8; 32]) {
    let outline = Outline::of_bytes(data);
    let d = Download::open(dir, "x.bin", data.len() as u64, outline.root()).unwrap();
    d.set_outline(&outline.bytes()).unwrap();
    (d, outline.root())
}

/// Finishes `d` and checks that the file in place is `data`, hash and
/// bytes.
fn finishes_as(d: Download, data: &[u8], hash: [u8; 32]) {
    let (path, got) = d.finish().unwrap();
    assert_eq!(got, hash);
    // Compared without printing megabytes when they differ.
    let file = fs::read(&path).unwrap();
    let first_difference = file.iter().zip(data).position(|(a, b)| a != b);
    assert!(
        file.len() == data.len() && first_difference.is_none(),
        "the file differs: {} bytes of {}, first difference at {first_difference:?}",
        file.len(),
        data.len()
    );
}

/// Writes `data[from..to]` into a region in packets of `packet` bytes,
/// some swapped with their neighbour, hashing as a session's driver does.
fn fill(region: &mut Region, data: &[u8], packet: usize, seed: u64) -> Result<(), TransferError> {
    let (from, to) = (region.from() as usize, region.to() as usize);
    let mut pieces: Vec<usize> = (from..to).step_by(packet).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for pair in pieces.chunks_mut(2) {
        if rng.gen_bool(0.1) {
            pair.reverse();
        }
    }
    let mut contiguous = from;
    let mut got = BTreeSet::new();
    for (n, at) in pieces.into_iter().enumerate() {
        let end = (at + packet).min(to);
        region.write_at(at as u64, &data[at..end])?;
        got.insert(at);
        while got.first() == Some(&contiguous) {
            got.pop_first();
            contiguous = (contiguous + packet).min(to);
        }
        if n % 50 == 0 || contiguous == to {
            region.hash_up_to(contiguous as u64)?;
        }
    }
    region.hash_up_to(to as u64)
}

fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7 ^ seed) as u8)
        .collect()
}

#[test]
fn packets_in_any_order_and_size_make_the_exact_file() {
    for (len, packet) in [
        (3_000_000, 1_000),
        (3_000_000, 50_000),
        (700_000, 1_446),
        (0, 1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let bytes = data(len, 3);
        let (d, hash) = download_of(dir.path(), &bytes);
        let mut region = d.region(0, len as u64);
        fill(&mut region, &bytes, packet, 7).unwrap();
        assert!(region.is_done());
        assert!(d.is_complete(), "{len} bytes in {packet}-byte packets");
        finishes_as(d, &bytes, hash);
    }
}

#[test]
fn bytes_beyond_a_gap_are_hashed_from_memory_not_read_back() {
    // Packets of 64 KiB, one held a round trip late every 100: what
    // came meanwhile is hashed from memory when the gap fills, up to
    // 8 MiB; beyond that it is read back from the file. Checked to
    // fail without `ahead` (everything after each gap read back).
    let dir = tempfile::tempdir().unwrap();
    let packet = 64 << 10;
    let bytes = data(400 * packet, 5);
    let (d, hash) = download_of(dir.path(), &bytes);
    let mut region = d.region(0, bytes.len() as u64);
    let mut order: Vec<usize> = (0..400).collect();
    for late in [50, 150, 250] {
        let p = order.remove(late);
        order.insert(late + 60, p);
    }
    let mut contiguous = 0;
    let mut got = BTreeSet::new();
    for i in order {
        region
            .write_at((i * packet) as u64, &bytes[i * packet..][..packet])
            .unwrap();
        got.insert(i);
        while got.contains(&contiguous) {
            contiguous += 1;
        }
        region.hash_up_to((contiguous * packet) as u64).unwrap();
    }
    assert_eq!(region.read_back(), 0, "nothing read back");
    finishes_as(d, &bytes, hash);
    // A gap longer than what is kept: the rest is read back, and the
    // file is still exact.
    let dir = tempfile::tempdir().unwrap();
    let (d, hash) = download_of(dir.path(), &bytes);
    let mut region = d.region(0, bytes.len() as u64);
    for i in (1..400).chain([0]) {
        region
            .write_at((i * packet) as u64, &bytes[i * packet..][..packet])
            .unwrap();
    }
    region.hash_up_to(bytes.len() as u64).unwrap();
    let kept = (super::super::region::AHEAD_MAX / packet * packet) as u64;
    assert_eq!(
        region.read_back(),
        bytes.len() as u64 - packet as u64 - kept
    );
    finishes_as(d, &bytes, hash);
}

/// A sender that sends bytes again, different the second time (as a
/// lying owner may, after a change of packet size makes bytes come
/// again), never leaves the file unlike what was checked: bytes the hash
/// took in are not written again, and bytes replaced before that are
/// replaced for the hash too, which then catches them. (Checked to fail
/// before: the hash kept the first copy of bytes ahead of a
/// gap while the file got the second, and bytes already hashed were
/// overwritten in the file, each time in a part then marked verified.)
#[test]
fn bytes_sent_again_differently_never_leave_the_file_unlike_its_check() {
    let packet = 4_096;
    let part = MIN_PART as usize;
    let bytes = data(2 * part, 19);
    let mut lie = bytes.clone();
    lie.iter_mut().for_each(|x| *x ^= 0x5a);
    let at = |i: usize| (i * packet) as u64;
    // After the hash: the second copy is not written.
    let dir = tempfile::tempdir().unwrap();
    let (d, hash) = download_of(dir.path(), &bytes);
    let mut region = d.region(0, bytes.len() as u64);
    for i in 0..10 {
        region
            .write_at(at(i), &bytes[i * packet..][..packet])
            .unwrap();
    }
    region.hash_up_to(at(10)).unwrap();
    region
        .write_at(at(3), &lie[3 * packet..][..packet])
        .unwrap();
    fill(&mut region, &bytes, packet, 9).unwrap();
    // A whole part in and checked, then sent again as a lie.
    region.write_at(0, &lie[..2 * packet]).unwrap();
    region.hash_up_to(bytes.len() as u64).unwrap();
    finishes_as(d, &bytes, hash);
    // Ahead of a gap, sent again before the gap filled: the part is
    // checked as it is in the file, and caught.
    let dir = tempfile::tempdir().unwrap();
    let (d, _) = download_of(dir.path(), &bytes);
    let mut region = d.region(0, bytes.len() as u64);
    for i in 1..10 {
        region
            .write_at(at(i), &bytes[i * packet..][..packet])
            .unwrap();
    }
    region
        .write_at(at(5), &lie[5 * packet..][..packet])
        .unwrap();
    region.write_at(0, &bytes[..packet]).unwrap();
    let mut honest = bytes.clone();
    honest[5 * packet..6 * packet].copy_from_slice(&lie[5 * packet..6 * packet]);
    let err = fill(&mut region, &honest, packet, 10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("part 0 "), "{err}");
    assert_eq!(d.missing(), vec![(0, 2 * MIN_PART)], "nothing verified");
}

/// Three regions, as three owners would fill them, at once: the file is
/// exact. One's range is cut short (another owner took its rest): it is
/// done at the cut, and bytes it gets past the cut are not written.
#[test]
fn regions_fill_one_download_together_and_a_cut_region_stops_there() {
    let dir = tempfile::tempdir().unwrap();
    let part = MIN_PART as usize;
    let bytes = data(7 * part + 12_345, 11);
    let (d, hash) = download_of(dir.path(), &bytes);
    let size = bytes.len() as u64;
    let mut a = d.region(0, 3 * MIN_PART);
    let mut b = d.region(3 * MIN_PART, size);
    // b's rest, from its fifth part on, goes to c.
    b.stop_handle()
        .store(5 * MIN_PART, std::sync::atomic::Ordering::Relaxed);
    let mut c = d.region(5 * MIN_PART, size);
    fill(&mut c, &bytes, 1_446, 1).unwrap();
    // What b would have sent past its cut is garbage here: never written.
    let mut lie = bytes.clone();
    lie[5 * part..].iter_mut().for_each(|x| *x ^= 0xff);
    fill(&mut b, &lie, 9_000, 2).unwrap();
    assert!(b.is_done() && b.verified_to() == 5 * MIN_PART);
    fill(&mut a, &bytes, 60_000, 3).unwrap();
    finishes_as(d, &bytes, hash);
}

/// An owner that sends a part other than the file's is caught at that
/// part: an error that says which, the part not verified, and the parts
/// before it kept. The next owner refetches it, and the file is exact.
#[test]
fn a_bad_part_is_caught_where_it_ends_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let part = MIN_PART as usize;
    let bytes = data(4 * part, 13);
    let (d, hash) = download_of(dir.path(), &bytes);
    let mut lie = bytes.clone();
    lie[2 * part + 100] ^= 1;
    let mut liar = d.region(0, bytes.len() as u64);
    let err = fill(&mut liar, &lie, 1_446, 4).unwrap_err().to_string();
    assert!(err.contains("does not match the file's hash"), "{err}");
    assert!(err.contains("part 2 (bytes 2097152..3145728)"), "{err}");
    assert_eq!(liar.verified_to(), 2 * MIN_PART);
    assert_eq!(d.missing(), vec![(2 * MIN_PART, 4 * MIN_PART)]);
    d.save_progress().unwrap();
    drop((liar, d));
    // Resumed: only the missing parts are asked for; those kept stay.
    let (d, _) = download_of(dir.path(), &bytes);
    assert_eq!(d.verified_bytes(), 2 * MIN_PART);
    let (from, to) = d.missing()[0];
    let mut honest = d.region(from, to);
    fill(&mut honest, &bytes, 1_446, 5).unwrap();
    finishes_as(d, &bytes, hash);
}

/// A range asked across parts verified before (a resumed download with
/// holes, fetched from one owner in one session) neither writes nor
/// rechecks them: a sender cannot change what was checked. (Checked to
/// fail with every byte written: the lie replaced a verified part.)
#[test]
fn parts_verified_before_are_never_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(3 * MIN_PART as usize, 17);
    let (d, hash) = download_of(dir.path(), &bytes);
    let mut middle = d.region(MIN_PART, 2 * MIN_PART);
    fill(&mut middle, &bytes, 4_000, 6).unwrap();
    let mut lie = bytes.clone();
    let part = MIN_PART as usize;
    lie[part..2 * part].iter_mut().for_each(|x| *x = 0);
    let mut across = d.region(0, bytes.len() as u64);
    fill(&mut across, &lie, 4_000, 8).unwrap();
    finishes_as(d, &bytes, hash);
}

#[test]
fn download_resume_finish() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(2 * MIN_PART as usize + 100_000, 19);
    let (d, hash) = download_of(dir.path(), &bytes);
    assert_eq!(d.resume_from(), 0);
    let mut r = d.region(0, bytes.len() as u64);
    let first = MIN_PART as usize + 40_000;
    r.write_at(0, &bytes[..first]).unwrap();
    r.hash_up_to(first as u64).unwrap();
    d.save_progress().unwrap();
    drop((r, d));
    let (d, _) = download_of(dir.path(), &bytes);
    assert_eq!(
        d.resume_from(),
        MIN_PART,
        "the whole part kept, not the rest"
    );
    let (from, to) = d.missing()[0];
    let mut r = d.region(from, to);
    r.write_at(from, &bytes[from as usize..]).unwrap();
    r.hash_up_to(to).unwrap();
    let (path, _) = d.finish().unwrap();
    assert_eq!(fs::read(&path).unwrap(), bytes);
    // A second copy does not overwrite the first.
    let (d, _) = download_of(dir.path(), &bytes);
    assert_eq!(d.resume_from(), 0, "the record went with the finished file");
    let mut r = d.region(0, bytes.len() as u64);
    r.write_at(0, &bytes).unwrap();
    r.hash_up_to(bytes.len() as u64).unwrap();
    let (second, _) = d.finish().unwrap();
    assert_eq!(second.file_name().unwrap(), "x (1).bin");
    let _ = hash;
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
                        let bytes = vec![i ^ round; 1000 + usize::from(i)];
                        let (d, _) = download_of(dir, &bytes);
                        let mut r = d.region(0, bytes.len() as u64);
                        r.write_at(0, &bytes).unwrap();
                        r.hash_up_to(bytes.len() as u64).unwrap();
                        drop(r);
                        go.wait();
                        (d.finish().unwrap().0, bytes)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let names: std::collections::HashSet<&PathBuf> = placed.iter().map(|(p, _)| p).collect();
        assert_eq!(
            names.len(),
            AT_ONCE,
            "round {round}: two downloads took one name"
        );
        for (path, bytes) in &placed {
            assert_eq!(
                &fs::read(path).unwrap(),
                bytes,
                "round {round}: {path:?} was replaced"
            );
        }
    }
}

fn part_file(dir: &Path) -> PathBuf {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".part"))
        .unwrap()
}

#[test]
fn room_is_reserved_up_front_without_changing_the_length() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(3_000_000, 23);
    let (d, hash) = download_of(dir.path(), &bytes);
    d.reserve().unwrap();
    let meta = fs::metadata(part_file(dir.path())).unwrap();
    assert_eq!(meta.len(), 0, "the length still says how much was written");
    assert!(
        meta.blocks() * 512 >= bytes.len() as u64,
        "{} bytes set aside for {}",
        meta.blocks() * 512,
        bytes.len()
    );
    let mut r = d.region(0, bytes.len() as u64);
    r.write_at(0, &bytes).unwrap();
    r.hash_up_to(bytes.len() as u64).unwrap();
    finishes_as(d, &bytes, hash);
}

/// A failed attempt gives back the room it set aside: all of it (and
/// the `.part` file) when nothing was verified, what lies past the
/// written part when some was. (Seen failing with `give_back_room` doing
/// nothing: 3 MB stayed set aside.)
#[test]
fn a_failed_attempt_gives_back_the_room_it_set_aside() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(3_000_000, 29);
    let (d, _) = download_of(dir.path(), &bytes);
    d.reserve().unwrap();
    d.give_back_room();
    drop(d);
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left behind"
    );

    let (d, _) = download_of(dir.path(), &bytes);
    d.reserve().unwrap();
    let mut r = d.region(0, bytes.len() as u64);
    r.write_at(0, &bytes[..MIN_PART as usize]).unwrap();
    r.hash_up_to(MIN_PART).unwrap();
    d.save_progress().unwrap();
    d.give_back_room();
    drop((r, d));
    let held = fs::metadata(part_file(dir.path())).unwrap().blocks() * 512;
    assert!(
        held < 2_000_000,
        "{held} bytes still set aside for 1 MiB written"
    );
    let (d, _) = download_of(dir.path(), &bytes);
    assert_eq!(
        d.resume_from(),
        MIN_PART,
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
    let bytes = data(2 * MIN_PART as usize, 31);
    let (d, hash) = download_of(dir.path(), &bytes);
    let mut r = d.region(0, MIN_PART);
    r.write_at(0, &bytes[..MIN_PART as usize]).unwrap();
    r.hash_up_to(MIN_PART).unwrap();
    d.save_progress().unwrap();
    drop((r, d));
    let mut look_alike = hash;
    look_alike[20] ^= 1;
    for (name, size, claimed) in [
        ("x.bin", 5, look_alike),
        ("x.bin", 5, hash),
        ("y.bin", bytes.len() as u64, hash),
    ] {
        drop(Download::open(dir.path(), name, size, claimed).unwrap());
    }
    let (d, _) = download_of(dir.path(), &bytes);
    assert_eq!(d.resume_from(), MIN_PART);
}

/// A record that lists parts the `.part` file does not hold (cut short,
/// or edited) is not believed: the download starts over.
#[test]
fn a_record_claiming_more_than_the_file_holds_is_not_believed() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = data(3 * MIN_PART as usize, 37);
    let (d, _) = download_of(dir.path(), &bytes);
    let mut r = d.region(0, bytes.len() as u64);
    fill(&mut r, &bytes, 60_000, 9).unwrap();
    d.save_progress().unwrap();
    drop((r, d));
    let part = part_file(dir.path());
    let f = OpenOptions::new().write(true).open(&part).unwrap();
    f.set_len(2 * MIN_PART).unwrap();
    let (d, _) = download_of(dir.path(), &bytes);
    assert_eq!(d.resume_from(), 0);
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
    let d = Download::open(dir.path(), "x.bin", 3, [0; 32]).unwrap();
    let mut r = d.region(0, 3);
    let err = r.write_at(0, b"abc").and_then(|()| r.hash_up_to(3));
    let err = err.unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(!d.is_complete());
    let err = d.clone().finish().unwrap_err().to_string();
    assert!(err.contains("3 bytes are missing"), "{err}");
    drop(r);
    d.give_back_room();
    drop(d);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}
