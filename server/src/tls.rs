//! TLS for `--tls-cert`/`--tls-key`: a rustls acceptor (the `ring`
//! provider) over PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from a PEM certificate chain and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// A message naming the file that cannot be read or holds no usable
/// certificate or key, or a key that does not match the certificate.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no PEM certificate in the file",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "--tls-key {}: no usable PEM private key: {e}",
            key.display()
        )
    })?;
    // rustls 0.23.48 deprecates ring's provider to steer users to
    // aws-lc-rs for post-quantum key exchange; aws-lc-rs needs cmake or a
    // long C build here, ring only the C compiler. Classical X25519/ECDHE
    // and TLS 1.2/1.3 suites are what redis-cli and every Redis client
    // negotiate.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert {} / --tls-key: {e}", cert.display()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
