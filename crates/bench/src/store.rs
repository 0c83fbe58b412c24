//! The store alone: how many history lines a second it commits.

use std::time::Instant;

use chatdrop_chat::{HistoryEntry, Persist, RoomRecord};
use chatdrop_store::Store;

pub fn run(lines: usize, batch: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut store = Store::open(&dir.path().join("bench.db"))?;
    store.apply(&[Persist::Room(RoomRecord {
        name: "bench".into(),
        id: "0".into(),
        creator: "bench".into(),
        password_hash: None,
        created_ms: 0,
    })])?;
    let started = Instant::now();
    let mut seq = 0u64;
    let text = "x".repeat(100);
    while (seq as usize) < lines {
        let n = batch.min(lines - seq as usize);
        let records: Vec<Persist> = (0..n)
            .map(|_| {
                seq += 1;
                Persist::History {
                    room: "bench".into(),
                    entry: HistoryEntry {
                        seq,
                        from: "bench".into(),
                        text: text.clone(),
                        ts: seq,
                    },
                    keep: 100,
                }
            })
            .collect();
        store.apply(&records)?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "store: {lines} history lines of 100 bytes in batches of {batch}: {secs:.2} s, {:.0} lines/s (target: at least 10,000)",
        lines as f64 / secs
    );
    anyhow::ensure!(
        store.history_count("bench")? == 100,
        "history was not trimmed to 100 lines"
    );
    Ok(())
}
