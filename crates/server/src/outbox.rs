//! A connection's outgoing queue, bounded by frames and by bytes. Frames
//! from the server can be up to a mebibyte (and a link's up to 16 MiB), so a
//! bound on their number alone would let a client that stops reading pin
//! gigabytes of them; the byte count is what keeps its cost fixed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

/// Bytes queued for one client at most before it is taken for too slow.
pub const CLIENT_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes queued for one link at most (a `Sync` frame alone may be 16 MiB).
pub const LINK_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// A queue that held more than this many frames gives its memory back once
/// it is empty: an idle connection should not keep the size of its
/// largest burst. (A channel with fixed blocks of slots cost an idle client
/// 2 to 3 KiB; this costs it nothing while empty.)
const KEPT_SLOTS: usize = 16;

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over the frame or byte bound: the reader is too slow.
    Full,
    /// The connection's writer is gone.
    Closed,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    bytes: usize,
    /// Outboxes alive; at zero the inbox ends once drained.
    senders: usize,
    /// The inbox is gone.
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the inbox when a frame comes or the last sender goes.
    ready: Notify,
    max_frames: usize,
    max_bytes: usize,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side; cheap to clone.
#[derive(Debug)]
pub struct Outbox {
    shared: Arc<Shared>,
}

/// The receiving side, for the connection's writer.
#[derive(Debug)]
pub struct Inbox {
    shared: Arc<Shared>,
}

/// A queue of at most `frames` frames and `max_bytes` bytes.
pub fn outbox(frames: usize, max_bytes: usize) -> (Outbox, Inbox) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            senders: 1,
            ..Queue::default()
        }),
        ready: Notify::new(),
        max_frames: frames,
        max_bytes,
    });
    (
        Outbox {
            shared: shared.clone(),
        },
        Inbox { shared },
    )
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Outbox {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let last = {
            let mut q = self.shared.lock();
            q.senders -= 1;
            q.senders == 0
        };
        if last {
            self.shared.ready.notify_one();
        }
    }
}

impl Outbox {
    /// Bytes and frames queued now.
    pub fn queued(&self) -> (usize, usize) {
        let q = self.shared.lock();
        (q.bytes, q.frames.len())
    }

    /// Queues `frame` unless that would go over a bound.
    pub fn try_send(&self, frame: Bytes) -> Result<(), Refused> {
        {
            let mut q = self.shared.lock();
            if q.closed {
                return Err(Refused::Closed);
            }
            // One frame is always let through into an empty queue, whatever
            // its size: the frame limits bound it.
            let over_bytes = q.bytes > 0 && q.bytes + frame.len() > self.shared.max_bytes;
            if over_bytes || q.frames.len() >= self.shared.max_frames {
                return Err(Refused::Full);
            }
            q.bytes += frame.len();
            q.frames.push_back(frame);
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Queues a frame that may as well be lost (a relayed datagram, whose
    /// transfer resends what is lost) only while the queue holds less than
    /// a quarter of its bounds: such frames never make the connection look
    /// too slow, nor push out what the server must say.
    pub fn try_send_spare(&self, frame: Bytes) -> Result<(), Refused> {
        {
            let mut q = self.shared.lock();
            if q.closed {
                return Err(Refused::Closed);
            }
            let over_bytes = q.bytes + frame.len() > self.shared.max_bytes / 4;
            if over_bytes || q.frames.len() >= self.shared.max_frames / 4 {
                return Err(Refused::Full);
            }
            q.bytes += frame.len();
            q.frames.push_back(frame);
        }
        self.shared.ready.notify_one();
        Ok(())
    }
}

impl Inbox {
    /// The next frame, waiting for one; `None` once every sender is gone
    /// and the queue is drained. Cancel-safe: a frame is taken only when
    /// it is returned.
    pub async fn recv(&mut self) -> Option<Bytes> {
        loop {
            {
                let mut q = self.shared.lock();
                if let Some(f) = take(&mut q) {
                    return Some(f);
                }
                if q.senders == 0 {
                    return None;
                }
            }
            // A frame queued between the look above and this wait left a
            // permit, so the wait ends at once.
            self.shared.ready.notified().await;
        }
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<Bytes> {
        take(&mut self.shared.lock())
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().frames.is_empty()
    }
}

/// Takes the first frame, giving the queue's memory back when that empties
/// a queue that had grown.
fn take(q: &mut Queue) -> Option<Bytes> {
    let f = q.frames.pop_front()?;
    q.bytes -= f.len();
    if q.frames.is_empty() && q.frames.capacity() > KEPT_SLOTS {
        q.frames = VecDeque::new();
    }
    Some(f)
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.closed = true;
        q.frames.clear();
        q.bytes = 0;
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

    /// The writer waiting on an empty queue wakes for a frame, and ends
    /// once every sender is gone and what they queued is taken.
    #[tokio::test]
    async fn the_inbox_wakes_for_frames_and_ends_after_the_last_sender() {
        let (out, mut inbox) = outbox(8, 1024);
        let out2 = out.clone();
        let writer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(f) = inbox.recv().await {
                got.push(f);
            }
            got
        });
        tokio::task::yield_now().await;
        out.try_send(Bytes::from_static(b"a")).unwrap();
        drop(out);
        out2.try_send(Bytes::from_static(b"b")).unwrap();
        drop(out2);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .expect("the inbox ended")
            .unwrap();
        assert_eq!(got, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
    }

    /// A queue that grew for a burst gives the memory back once drained.
    #[test]
    fn a_drained_queue_keeps_no_burst_memory() {
        let (out, mut inbox) = outbox(1_024, CLIENT_QUEUE_BYTES);
        for _ in 0..500 {
            out.try_send(Bytes::from_static(b"x")).unwrap();
        }
        while inbox.try_recv().is_some() {}
        assert_eq!(out.shared.lock().frames.capacity(), 0);
        assert_eq!(out.queued(), (0, 0));
    }
}
