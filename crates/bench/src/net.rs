//! Client connections for the load generator.

use std::time::Duration;

use chatdrop_client::{connect, Session};
use chatdrop_proto::ClientMsg;
use ed25519_dalek::SigningKey;

/// Connects and logs in as `user` with a fresh key, retrying briefly when the
/// server is busy accepting others.
pub async fn login(addr: &str, user: &str) -> anyhow::Result<Session> {
    login_key(addr, user, &SigningKey::generate(&mut rand::rngs::OsRng)).await
}

/// A key that is always the same for `n` and `tag`: a client that logs in
/// again keeps its name.
pub fn fixed_key(tag: u8, n: usize) -> SigningKey {
    let mut seed = [tag; 32];
    seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
    SigningKey::from_bytes(&seed)
}

/// Like [`login`], with the given key.
pub async fn login_key(addr: &str, user: &str, key: &SigningKey) -> anyhow::Result<Session> {
    let mut last = None;
    for _ in 0..5 {
        match connect(addr, user, key, None).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                last = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    anyhow::bail!("{user}: {}", last.unwrap_or_default())
}

/// Creates or joins `room`, waiting for the answer.
pub async fn enter(s: &mut Session, room: &str, create: bool) -> anyhow::Result<()> {
    use chatdrop_proto::ServerMsg;
    use futures::StreamExt;
    let msg = if create {
        ClientMsg::CreateRoom {
            room: room.into(),
            password: None,
        }
    } else {
        ClientMsg::JoinRoom {
            room: room.into(),
            password: None,
        }
    };
    s.send(&msg).await?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), s.frames.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed while joining"))??;
        match chatdrop_proto::decode::<ServerMsg>(&frame)? {
            ServerMsg::Joined { .. } => return Ok(()),
            ServerMsg::Error { message, .. } => anyhow::bail!("joining {room}: {message}"),
            _ => {}
        }
    }
}
