//! Trust in servers by certificate fingerprint, pinned on first use.
//!
//! chatdrop servers usually run with a self-signed certificate, so there is
//! no certificate authority to ask. Instead the client remembers each
//! server's SHA-256 certificate fingerprint in `known_hosts` in its data
//! directory (like ssh) and refuses a server that later shows another one.
//! `--server-fingerprint` pins it before the first connection.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::ClientError;

/// File name of the pinned fingerprints in the data directory.
pub const KNOWN_HOSTS: &str = "known_hosts";

/// SHA-256 of a DER certificate, as lower-case hex.
pub fn fingerprint(cert: &[u8]) -> String {
    hex::encode(Sha256::digest(cert))
}

/// Normalises a fingerprint typed by a user: drops `:` and spaces, lower-cases.
/// Returns `None` unless 64 hex digits remain.
pub fn normalise(fp: &str) -> Option<String> {
    let fp: String = fp
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_lowercase();
    (fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit())).then_some(fp)
}

/// The known-hosts file: one `ADDRESS FINGERPRINT` line per server.
#[derive(Debug, Clone)]
pub struct KnownHosts {
    path: PathBuf,
}

impl KnownHosts {
    /// The file in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        KnownHosts {
            path: dir.join(KNOWN_HOSTS),
        }
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The fingerprint pinned for `server`, if any.
    pub fn get(&self, server: &str) -> Option<String> {
        let text = fs::read_to_string(&self.path).ok()?;
        text.lines().find_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next()? == server).then(|| parts.next().map(String::from))?
        })
    }

    /// Pins `fp` for `server` (appending a line).
    pub fn add(&self, server: &str, fp: &str) -> Result<(), ClientError> {
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(|e| ClientError::Local(e.to_string()))?;
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| ClientError::Local(format!("{}: {e}", self.path.display())))?;
        writeln!(f, "{server} {fp}")
            .map_err(|e| ClientError::Local(format!("{}: {e}", self.path.display())))
    }
}

/// A rustls verifier that accepts exactly one certificate fingerprint, or,
/// with none pinned yet, any certificate (trust on first use). Either way it
/// records the fingerprint it saw, and the TLS 1.3 handshake signature is
/// verified as usual.
#[derive(Debug)]
pub struct PinVerifier {
    expected: Option<String>,
    seen: Arc<Mutex<Option<String>>>,
    algs: WebPkiSupportedAlgorithms,
}

impl PinVerifier {
    /// A verifier expecting `expected` (or any, when `None`). The fingerprint
    /// seen is written to the returned slot.
    pub fn new(expected: Option<String>) -> (Arc<Self>, Arc<Mutex<Option<String>>>) {
        let seen = Arc::new(Mutex::new(None));
        let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        (
            Arc::new(PinVerifier {
                expected,
                seen: seen.clone(),
                algs,
            }),
            seen,
        )
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some(fp.clone());
        }
        match &self.expected {
            Some(want) if *want != fp => Err(rustls::Error::General(format!(
                "certificate fingerprint {fp} is not the pinned {want}"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "chatdrop speaks TLS 1.3 only".into(),
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalised() {
        let fp = "AB:".repeat(31) + "AB";
        assert_eq!(normalise(&fp), Some("ab".repeat(32)));
        assert_eq!(normalise("abc"), None);
        assert_eq!(normalise(&"zz".repeat(32)), None);
    }

    #[test]
    fn known_hosts_round_trip() {
        let dir = std::env::temp_dir().join(format!("chatdrop-kh-{}", std::process::id()));
        let kh = KnownHosts::in_dir(&dir);
        assert_eq!(kh.get("127.0.0.1:1"), None);
        kh.add("127.0.0.1:1", "aa").unwrap();
        kh.add("127.0.0.1:2", "bb").unwrap();
        assert_eq!(kh.get("127.0.0.1:2").as_deref(), Some("bb"));
        assert_eq!(kh.get("127.0.0.1:3"), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
