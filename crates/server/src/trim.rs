//! Gives the heap's free memory back to the system after a burst.
//!
//! A login storm, or a linked server's state arriving in parts, takes
//! memory for a moment: decoded messages waiting for the chat core, queues
//! to other servers, per-connection buffers. Freed, that memory stays in
//! the C allocator's heaps unless it lies at a heap's very top, so a
//! server that once held a burst keeps its size for good (measured: 10 to
//! 15 MB at a server with 10,000 clients, a tenth of what it holds). The
//! allocator can hand whole free pages back on request (`malloc_trim`);
//! this module asks it to whenever enough was freed since it last did.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How often the heap's free memory is looked at.
pub const EVERY: Duration = Duration::from_secs(2);

/// Memory freed since the last trim above which the server trims again:
/// well above what steady traffic frees and takes again between two looks.
pub const WORTH_TRIMMING: usize = 4 * 1024 * 1024;

/// Bytes the allocator holds free in its heaps, if it can say.
pub fn free_in_heap() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `mallinfo2` only reads the allocator's own statistics.
        let info = unsafe { libc::mallinfo2() };
        Some(info.fordblks)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Hands the heaps' free pages back to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` releases only memory the allocator holds free;
    // it takes the allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether to trim, with `free` bytes free now and `low` the least seen
/// free since the last trim: when more than [`WORTH_TRIMMING`] was freed
/// since. (Free memory given back is still counted as free, so "more than
/// 4 MiB free" alone would trim again every time.)
pub fn due(free: usize, low: usize) -> bool {
    free > low.saturating_add(WORTH_TRIMMING)
}

/// Trims whenever more than [`WORTH_TRIMMING`] was freed since the last
/// trim, until `stop`.
pub async fn run(stop: CancellationToken) {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut low = 0;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let Some(free) = free_in_heap() else {
            return;
        };
        low = low.min(free);
        if !due(free, low) {
            continue;
        }
        low = free;
        // Walking the heaps takes a few milliseconds at most; not on a
        // worker thread all the same.
        let took = tokio::task::spawn_blocking(|| {
            let at = std::time::Instant::now();
            trim();
            at.elapsed()
        })
        .await;
        if let Ok(took) = took {
            debug!("gave free heap memory back in {took:?}");
        }
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Resident memory of this process, in KiB.
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// A trim follows what was freed since the last one, not what is free.
    #[test]
    fn a_trim_is_due_only_after_more_was_freed() {
        const MIB: usize = 1024 * 1024;
        assert!(due(5 * MIB, 0), "first burst");
        assert!(
            !due(5 * MIB, 5 * MIB),
            "the same free memory, given back already"
        );
        assert!(!due(8 * MIB, 5 * MIB), "3 MiB more");
        assert!(due(10 * MIB, 5 * MIB), "5 MiB more");
        assert!(due(6 * MIB, MIB), "taken again, then freed again");
    }

    /// Memory freed in the middle of a heap (a burst's buffers, with
    /// longer-lived ones among them) stays resident until trimmed.
    #[test]
    fn memory_freed_after_a_burst_goes_back_to_the_system() {
        const CHUNK: usize = 32 * 1024;
        const CHUNKS: usize = 2048; // 64 MiB
        let mut burst: Vec<Option<Vec<u8>>> = (0..CHUNKS)
            .map(|i| Some(vec![i as u8 | 1; CHUNK]))
            .collect();
        let held = rss_kib();
        // Free all but every 64th: the survivors pin the heap's top, so
        // the allocator cannot give the rest back on its own.
        for (i, chunk) in burst.iter_mut().enumerate() {
            if i % 64 != 0 {
                *chunk = None;
            }
        }
        assert!(
            free_in_heap().is_some_and(|f| f > 32 * 1024 * 1024),
            "the burst's memory is free in the heap"
        );
        trim();
        let after = rss_kib();
        assert!(
            after + 32 * 1024 < held,
            "at least 32 MiB back: {held} KiB before, {after} KiB after"
        );
        // What survived is intact.
        for (i, chunk) in burst.iter().enumerate() {
            if let Some(c) = chunk {
                assert!(c.iter().all(|b| *b == i as u8 | 1));
            }
        }
    }
}
