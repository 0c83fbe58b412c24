//! Room passwords: Argon2id hashing and verification, off the async threads
//! and at most a few at a time.
//!
//! Each Argon2 run takes about 19 MiB and tens of milliseconds by design, so
//! an unbounded number of them would let anyone exhaust the server's memory
//! by guessing passwords quickly.

use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
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
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
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
}
