//! A connection's outgoing queue, bounded by frames and by bytes. Frames
//! from the server can be up to a mebibyte (and a link's up to 16 MiB), so a
//! bound on their number alone would let a client that stops reading pin
//! gigabytes of them; the byte count is what keeps its cost fixed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Bytes queued for one client at most before it is taken for too slow.
pub const CLIENT_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes queued for one link at most (a `Sync` frame alone may be 16 MiB).
pub const LINK_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over the frame or byte bound: the reader is too slow.
    Full,
    /// The connection's writer is gone.
    Closed,
}

/// The sending side; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Bytes>,
    queued: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The receiving side, for the connection's writer.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// A queue of at most `frames` frames and `max_bytes` bytes.
pub fn outbox(frames: usize, max_bytes: usize) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(frames);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: queued.clone(),
            max_bytes,
        },
        Inbox { rx, queued },
    )
}

impl Outbox {
    /// Bytes and frames queued now.
    pub fn queued(&self) -> (usize, usize) {
        (
            self.queued.load(Ordering::Acquire),
            self.tx.max_capacity() - self.tx.capacity(),
        )
    }

    /// Queues `frame` unless that would go over a bound.
    pub fn try_send(&self, frame: Bytes) -> Result<(), Refused> {
        let len = frame.len();
        let before = self.queued.fetch_add(len, Ordering::AcqRel);
        // One frame is always let through into an empty queue, whatever
        // its size: the frame limits bound it.
        if before > 0 && before + len > self.max_bytes {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return Err(Refused::Full);
        }
        self.tx.try_send(frame).map_err(|e| {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Closed,
            }
        })
    }
}

impl Inbox {
    fn took(&self, f: &Bytes) {
        self.queued.fetch_sub(f.len(), Ordering::AcqRel);
    }

    /// The next frame, waiting for one; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let f = self.rx.recv().await?;
        self.took(&f);
        Some(f)
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        let f = self.rx.try_recv().ok()?;
        self.took(&f);
        Some(f)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten frames of 1 MiB fill a 4 MiB queue at the fifth, though the
    /// frame bound (1,024) is far away; taking one out makes room for one.
    /// (A frame bound alone queued all ten.)
    #[tokio::test]
    async fn big_frames_fill_the_queue_by_bytes() {
        let (out, mut inbox) = outbox(1_024, CLIENT_QUEUE_BYTES);
        let big = Bytes::from(vec![0u8; 1024 * 1024]);
        let queued = (0..10)
            .take_while(|_| out.try_send(big.clone()).is_ok())
            .count();
        assert_eq!(queued, 4);
        assert_eq!(out.try_send(big.clone()), Err(Refused::Full));
        assert_eq!(inbox.recv().await.map(|f| f.len()), Some(1024 * 1024));
        assert_eq!(out.try_send(big.clone()), Ok(()));
        assert_eq!(out.try_send(Bytes::from_static(b"x")), Err(Refused::Full));
        // Small frames are bounded by count as before.
        let (out, _inbox) = outbox(2, CLIENT_QUEUE_BYTES);
        let tiny = Bytes::from_static(b"hi");
        assert!(out.try_send(tiny.clone()).is_ok() && out.try_send(tiny.clone()).is_ok());
        assert_eq!(out.try_send(tiny), Err(Refused::Full));
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_bound_passes_into_an_empty_queue() {
        let (out, mut inbox) = outbox(8, 1024);
        assert_eq!(out.try_send(Bytes::from(vec![1u8; 4096])), Ok(()));
        assert_eq!(out.try_send(Bytes::from(vec![1u8; 10])), Err(Refused::Full));
        assert!(inbox.try_recv().is_some());
        assert!(inbox.is_empty());
        drop(inbox);
        assert_eq!(
            out.try_send(Bytes::from(vec![1u8; 10])),
            Err(Refused::Closed)
        );
    }
}
