//! How a TLS client checks a chatdrop server's certificate.
//!
//! chatdrop servers usually run with a self-signed certificate, so there is
//! no certificate authority to ask: clients pin the certificate's SHA-256
//! fingerprint, and servers linking to each other authenticate with the
//! network key over the TLS channel instead (see [`crate::auth`]). Both use
//! [`PinVerifier`], which still verifies the TLS 1.3 handshake signature.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// SHA-256 of a DER certificate, as lower-case hex.
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
