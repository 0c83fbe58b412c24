//! The client's identity: an Ed25519 key pair kept in its data directory.
//! The server binds the user name to the public key at first login; later
//! logins prove the key by signing the server's challenge.

use std::fs;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;

use crate::ClientError;

/// File name of the secret key (hex of the 32-byte seed) in the data directory.
pub const IDENTITY_FILE: &str = "identity.key";

/// Loads the key in `dir`, or makes and saves a new one (mode 0600).
pub fn load_or_create(dir: &Path) -> Result<SigningKey, ClientError> {
    let path = dir.join(IDENTITY_FILE);
    let local = |what: String| ClientError::Local(format!("{}: {what}", path.display()));
    match fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|e| local(format!("not hex: {e}")))?;
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| local(format!("holds {} bytes, not 32", bytes.len())))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| local(e.to_string()))?;
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&path).map_err(|e| local(e.to_string()))?;
            f.write_all(hex::encode(key.to_bytes()).as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|e| local(e.to_string()))?;
            Ok(key)
        }
        Err(e) => Err(local(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("id");
        let a = load_or_create(&dir).unwrap();
        let b = load_or_create(&dir).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        fs::write(dir.join(IDENTITY_FILE), "zz").unwrap();
        let err = load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("not hex"), "{err}");
    }
}
