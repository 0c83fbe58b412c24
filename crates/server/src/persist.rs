//! The store writer: one thread that owns the SQLite connection and commits
//! the chat core's records in batches (one transaction for everything that
//! queued up while the previous one committed).

use chatdrop_chat::Persist;
use chatdrop_store::Store;
use tokio::sync::{mpsc, oneshot};
use tracing::error;

/// Records queued for the writer at most; the hub waits when it is full.
const QUEUE: usize = 16_384;
/// Records in one transaction at most.
const BATCH: usize = 4_096;

enum Msg {
    Write(Persist),
    Flush(oneshot::Sender<()>),
}

/// Handle to the writer thread.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Msg>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Write(p) => write!(f, "Write({p:?})"),
            Msg::Flush(_) => write!(f, "Flush"),
        }
    }
}

impl Writer {
    /// Starts the writer thread on `store`.
    pub fn start(mut store: Store) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        std::thread::Builder::new()
            .name("chatdrop-store".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(BATCH);
                let mut waiting = Vec::new();
                while let Some(first) = rx.blocking_recv() {
                    let mut next = Some(first);
                    while let Some(msg) = next.take() {
                        match msg {
                            Msg::Write(p) => batch.push(p),
                            Msg::Flush(ack) => waiting.push(ack),
                        }
                        if batch.len() < BATCH {
                            next = rx.try_recv().ok();
                        }
                    }
                    if !batch.is_empty() {
                        if let Err(e) = store.apply(&batch) {
                            error!("store write of {} records failed: {e}", batch.len());
                        }
                        batch.clear();
                    }
                    for ack in waiting.drain(..) {
                        let _ = ack.send(());
                    }
                }
            })
            .expect("spawning the store thread");
        Writer { tx }
    }

    /// Queues a record, waiting while the queue is full.
    pub async fn write(&self, p: Persist) {
        if self.tx.send(Msg::Write(p)).await.is_err() {
            error!("store writer is gone; a record was not saved");
        }
    }

    /// Waits until everything queued before this call is committed.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }
}
