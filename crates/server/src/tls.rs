//! The server's TLS 1.3 configuration and its certificate.
//!
//! Without `--tls-cert`/`--tls-key` the server makes a self-signed
//! certificate on first start and keeps it in its data directory; clients
//! trust it by its SHA-256 fingerprint, like ssh host keys.

use std::fs;
use std::io::Write;
use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::{ServerError, ServerOptions};

/// File names of the self-signed certificate and key in the data directory.
pub const CERT_FILE: &str = "server-cert.pem";
/// See [`CERT_FILE`].
pub const KEY_FILE: &str = "server-key.pem";

/// SHA-256 of a DER certificate, as lower-case hex.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    hex::encode(Sha256::digest(cert.as_ref()))
}

fn tls_err(what: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(what.to_string())
}

fn write_private(path: &Path, data: &str) -> std::io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(data.as_bytes())
}

/// Loads the certificate and key named in `opts`, or the self-signed pair in
/// the data directory (made on first use), and returns the TLS 1.3 server
/// configuration with the certificate's fingerprint.
pub fn server_config(opts: &ServerOptions) -> Result<(rustls::ServerConfig, String), ServerError> {
    let (cert_path, key_path) = match (&opts.tls_cert, &opts.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => {
            let c = opts.data_dir.join(CERT_FILE);
            let k = opts.data_dir.join(KEY_FILE);
            if !c.exists() && !k.exists() {
                let cert = rcgen::generate_simple_self_signed(vec![
                    "chatdrop".to_string(),
                    "localhost".to_string(),
                ])
                .map_err(tls_err)?;
                write_private(&k, &cert.key_pair.serialize_pem())
                    .map_err(|e| tls_err(format!("writing {}: {e}", k.display())))?;
                fs::write(&c, cert.cert.pem())
                    .map_err(|e| tls_err(format!("writing {}: {e}", c.display())))?;
            }
            (c, k)
        }
        _ => return Err(tls_err("--tls-cert and --tls-key go together")),
    };
    let certs: Vec<CertificateDer<'static>> = {
        let pem = fs::read(&cert_path)
            .map_err(|e| tls_err(format!("reading {}: {e}", cert_path.display())))?;
        CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| tls_err(format!("{}: {e}", cert_path.display())))?
    };
    let Some(leaf) = certs.first() else {
        return Err(tls_err(format!(
            "{} holds no certificate",
            cert_path.display()
        )));
    };
    let fp = fingerprint(leaf);
    let key: PrivateKeyDer<'static> = {
        let pem = fs::read(&key_path)
            .map_err(|e| tls_err(format!("reading {}: {e}", key_path.display())))?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
            pem::Error::NoItemsFound => {
                tls_err(format!("{} holds no private key", key_path.display()))
            }
            e => tls_err(format!("{}: {e}", key_path.display())),
        })?
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_err)?;
    Ok((config, fp))
}
