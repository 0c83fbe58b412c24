//! The soak's attacker: connections that each flood one kind of request at
//! full speed, in a room the honest clients use, and log in again whenever
//! the server drops them. It runs on a thread and runtime of its own, so
//! the honest clients' runtime measures the server, not the attacker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatdrop_proto::{encode_frame, ClientMsg, Target};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::net::{fixed_key, login_key};

/// A running attacker.
pub struct Attacker {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

/// The floods, one connection each.
fn floods() -> Vec<ClientMsg> {
    let say = |text: String| ClientMsg::Say {
        to: Target::All,
        room: Some("soak0".into()),
        text,
    };
    vec![
        say("flood".into()),
        say("x".repeat(4000)),
        ClientMsg::WhoHas {
            room: "soak0".into(),
            file: "flood.bin".into(),
        },
        ClientMsg::GetFile {
            owner: "c1".into(),
            file: "flood.bin".into(),
            offer: None,
            eph: [1; 32],
            sig: vec![0; 64],
            candidates: Vec::new(),
        },
        ClientMsg::CreateRoom {
            room: "flood".into(),
            password: Some("guess".into()),
        },
        ClientMsg::JoinRoom {
            room: "soak1".into(),
            password: Some("guess".into()),
        },
        ClientMsg::ListRooms { after: None },
        ClientMsg::GetPeers {
            room: "soak0".into(),
        },
        ClientMsg::Ping,
    ]
}

/// Starts flooding the server at `addr`.
pub fn start(addr: String) -> Attacker {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let (s, n, d) = (stop.clone(), sent.clone(), dropped.clone());
    let thread = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for (k, msg) in floods().into_iter().enumerate() {
                let (addr, s, n, d) = (addr.clone(), s.clone(), n.clone(), d.clone());
                tasks.push(tokio::spawn(flood(addr, k, msg, s, n, d)));
            }
            for t in tasks {
                let _ = t.await;
            }
        });
    });
    Attacker {
        stop,
        sent,
        dropped,
        thread,
    }
}

impl Attacker {
    /// Stops, and says what it did.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
        println!(
            "attacker: {} requests sent, disconnected {} times",
            self.sent.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed)
        );
    }
}

async fn flood(
    addr: String,
    k: usize,
    msg: ClientMsg,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
) {
    let Ok(frame) = encode_frame(&msg) else {
        return;
    };
    let key = fixed_key(0xa7, k);
    // A burst of 64 frames per write.
    let burst: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(frame.len() * 64)
        .collect();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = login_key(&addr, &format!("attacker{k}"), &key).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let _ = s
            .send(&ClientMsg::JoinRoom {
                room: "soak0".into(),
                password: None,
            })
            .await;
        // Read (and drop) whatever comes, so the server's queue to us is
        // not what ends the connection.
        let mut frames = s.frames;
        let reader = tokio::spawn(async move { while let Some(Ok(_)) = frames.next().await {} });
        let mut w = s.writer;
        while !stop.load(Ordering::Relaxed) {
            if w.write_all(&burst).await.is_err() || w.flush().await.is_err() {
                break;
            }
            sent.fetch_add(64, Ordering::Relaxed);
        }
        reader.abort();
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}
