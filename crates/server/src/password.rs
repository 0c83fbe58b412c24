//! Room passwords: Argon2id hashing and verification, off the async threads
//! and at most a few at a time.
//!
//! Each Argon2 run takes about 19 MiB and tens of milliseconds by design, so
//! an unbounded number of them would let anyone exhaust the server's memory
//! by guessing passwords quickly.
//!
//! The few slots are shared fairly between addresses, not handed out first
//! come first served: requests wait in one queue per address block and the
//! queues take turns, so one attacker's hundreds of connections put one
//! request ahead of an honest user's, not hundreds.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, Params, PasswordHasher, PasswordVerifier};
use tokio::sync::oneshot;

/// How many Argon2 computations may run at once.
const CONCURRENT: usize = 2;

/// Hashes and verifies room passwords on the blocking pool, bounded.
#[derive(Debug, Clone)]
pub struct Hasher {
    slots: FairSlots,
}

/// A few slots, handed out in turns between addresses.
#[derive(Debug, Clone)]
pub struct FairSlots {
    state: Arc<Mutex<Turns>>,
}

#[derive(Debug)]
struct Turns {
    free: usize,
    /// Addresses with requests waiting, in the order they take turns.
    order: VecDeque<IpAddr>,
    waiting: HashMap<IpAddr, VecDeque<oneshot::Sender<Slot>>>,
}

/// One slot, held until dropped.
#[derive(Debug)]
pub struct Slot {
    owner: Option<Arc<Mutex<Turns>>>,
}

impl FairSlots {
    /// `n` slots.
    pub fn new(n: usize) -> Self {
        FairSlots {
            state: Arc::new(Mutex::new(Turns {
                free: n,
                order: VecDeque::new(),
                waiting: HashMap::new(),
            })),
        }
    }

    /// Waits for a slot, in turn with other addresses.
    pub async fn acquire(&self, ip: IpAddr) -> Slot {
        let rx = {
            let mut t = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if t.free > 0 && t.order.is_empty() {
                t.free -= 1;
                return Slot {
                    owner: Some(self.state.clone()),
                };
            }
            let queue = t.waiting.entry(ip).or_default();
            let first = queue.is_empty();
            let (tx, rx) = oneshot::channel();
            queue.push_back(tx);
            if first {
                t.order.push_back(ip);
            }
            rx
        };
        match rx.await {
            Ok(slot) => slot,
            // The sender is only dropped with the whole state, which this
            // handle keeps alive: unreachable, but a slot-less answer is
            // safe (it only lets one more run).
            Err(_) => Slot { owner: None },
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(state) = self.owner.take() else {
            return;
        };
        let mut t = state.lock().unwrap_or_else(|p| p.into_inner());
        // The next address in turn gets the slot; one whose request was
        // given up (its receiver dropped) is passed over.
        while let Some(ip) = t.order.pop_front() {
            let Some(queue) = t.waiting.get_mut(&ip) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                t.waiting.remove(&ip);
            } else {
                t.order.push_back(ip);
            }
            if let Some(tx) = next {
                let slot = Slot {
                    owner: Some(state.clone()),
                };
                match tx.send(slot) {
                    Ok(()) => return,
                    // Nobody to take it: disarm it, so its drop does not
                    // come back here.
                    Err(mut slot) => slot.owner = None,
                }
            }
        }
        t.free += 1;
    }
}

impl Default for Hasher {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher {
    /// A hasher allowing [`CONCURRENT`] computations at once.
    pub fn new() -> Self {
        Hasher {
            slots: FairSlots::new(CONCURRENT),
        }
    }

    /// The Argon2id PHC string of `password` with a fresh salt, for a
    /// request from the address block `ip`.
    pub async fn hash(&self, ip: IpAddr, password: String) -> Result<String, String> {
        let _slot = self.slots.acquire(ip).await;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Whether `password` matches the PHC string `hash`, for a request from
    /// the address block `ip`. A damaged hash never matches.
    pub async fn verify(&self, ip: IpAddr, hash: String, password: String) -> bool {
        let _slot = self.slots.acquire(ip).await;
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    ours(&parsed)
                        && Argon2::default()
                            .verify_password(password.as_bytes(), &parsed)
                            .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

/// Whether a stored hash was made the way this server makes them:
/// Argon2id, version 0x13, our memory, time and lane costs. Verifying runs
/// Argon2 with the parameters the hash names, and a room's hash may come
/// from another server of the network: one naming gigabytes of memory
/// would make every join attempt a weapon against this server, and one
/// naming next to nothing would make the room's password cheap to guess.
fn ours(hash: &PasswordHash<'_>) -> bool {
    let ours = Params::default();
    hash.algorithm == argon2::Algorithm::Argon2id.ident()
        && hash.version == Some(argon2::Version::V0x13.into())
        && Params::try_from(hash).is_ok_and(|p| {
            (p.m_cost(), p.t_cost(), p.p_cost()) == (ours.m_cost(), ours.t_cost(), ours.p_cost())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn hash_then_verify() {
        let h = Hasher::new();
        let phc = h.hash(IP, "1234".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(h.verify(IP, phc.clone(), "1234".into()).await);
        assert!(!h.verify(IP, phc, "4321".into()).await);
        assert!(!h.verify(IP, "not a hash".into(), "1234".into()).await);
    }

    /// Ten requests from one address queued before one from another: the
    /// other's comes second, not eleventh. A request given up while waiting
    /// is passed over and loses no slot. (A first come, first served
    /// semaphore puts it eleventh.)
    #[tokio::test]
    async fn addresses_take_turns_for_the_slots() {
        let slots = FairSlots::new(1);
        let attacker: IpAddr = "192.0.2.66".parse().unwrap();
        let honest: IpAddr = "198.51.100.7".parse().unwrap();
        let held = slots.acquire(attacker).await;
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        let mut spawn = |ip: IpAddr, tag: &'static str| {
            let slots = slots.clone();
            let done_tx = done_tx.clone();
            tasks.push(tokio::spawn(async move {
                let slot = slots.acquire(ip).await;
                let _ = done_tx.send(tag);
                drop(slot);
            }));
        };
        // Given up while waiting: must not swallow a slot.
        let given_up = tokio::spawn({
            let slots = slots.clone();
            async move {
                let _ = slots.acquire(attacker).await;
            }
        });
        tokio::task::yield_now().await;
        given_up.abort();
        let _ = given_up.await;
        for _ in 0..10 {
            spawn(attacker, "attacker");
        }
        spawn(honest, "honest");
        // Let every task reach its place in the queue.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let mut order = Vec::new();
        for _ in 0..11 {
            order.push(done.recv().await.unwrap());
        }
        let honest_at = order.iter().position(|t| *t == "honest");
        assert!(honest_at <= Some(1), "{order:?}");
        for t in tasks {
            t.await.unwrap();
        }
        // Every slot came back.
        let again = tokio::time::timeout(std::time::Duration::from_secs(10), slots.acquire(honest));
        assert!(again.await.is_ok(), "a slot was lost");
    }

    /// A hash with other parameters than ours is never used, even for the
    /// right password: here a cheap one (8 KiB, one pass), standing for
    /// one that names gigabytes. (Seen failing without `ours`: the right
    /// password matched.)
    #[tokio::test]
    async fn a_hash_made_with_other_parameters_is_refused() {
        let cheap = Params::new(8, 1, 1, None).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, cheap);
        let salt = SaltString::generate(&mut OsRng);
        let phc = argon.hash_password(b"1234", &salt).unwrap().to_string();
        assert!(phc.contains("m=8,t=1,p=1"), "{phc}");
        assert!(!Hasher::new().verify(IP, phc, "1234".into()).await);
    }
}
