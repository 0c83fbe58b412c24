//! Room passwords: Argon2id hashing and verification, off the async threads
//! and at most a few at a time.
//!
//! Each Argon2 run takes about 19 MiB and tens of milliseconds by design, so
//! an unbounded number of them would let anyone exhaust the server's memory
//! by guessing passwords quickly.

use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, Params, PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

/// How many Argon2 computations may run at once.
const CONCURRENT: usize = 2;

/// Hashes and verifies room passwords on the blocking pool, bounded.
#[derive(Debug, Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
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
            slots: Arc::new(Semaphore::new(CONCURRENT)),
        }
    }

    /// The Argon2id PHC string of `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, String> {
        let _permit = self.slots.acquire().await.map_err(|e| e.to_string())?;
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

    /// Whether `password` matches the PHC string `hash`. A damaged hash never
    /// matches.
    pub async fn verify(&self, hash: String, password: String) -> bool {
        let Ok(_permit) = self.slots.acquire().await else {
            return false;
        };
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

    #[tokio::test]
    async fn hash_then_verify() {
        let h = Hasher::new();
        let phc = h.hash("1234".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(h.verify(phc.clone(), "1234".into()).await);
        assert!(!h.verify(phc, "4321".into()).await);
        assert!(!h.verify("not a hash".into(), "1234".into()).await);
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
        assert!(!Hasher::new().verify(phc, "1234".into()).await);
    }
}
