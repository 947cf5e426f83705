//! TLS for `--tls-cert`/`--tls-key`: a rustls acceptor (the `aws-lc-rs`
//! provider) over PEM files.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from a PEM certificate chain and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1).
///
/// ```no_run
/// use std::path::Path;
/// let acceptor = cairn_server::tls::acceptor(
///     Path::new("/etc/cairn/cert.pem"),
///     Path::new("/etc/cairn/key.pem"),
/// )?;
/// # let _ = acceptor;
/// # Ok::<(), String>(())
/// ```
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
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert {} / --tls-key: {e}", cert.display()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
