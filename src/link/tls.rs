//! rustls configurations for mutual TLS between agents: PEM loading, CA roots, client and server sides.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::proto::ALPNS;
use super::LinkError;

/// Where an agent's PEM files are: the deployment CA, and this node's certificate and key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificate(s) that peers' certificates must chain to.
    pub ca: PathBuf,
    /// This node's certificate chain (leaf first).
    pub cert: PathBuf,
    /// This node's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The layout `georelay certs init` writes: `ca.pem`, `<node>.pem`, `<node>.key` in `dir`.
    pub fn in_dir(dir: &Path, node: &str) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{node}.pem")),
            key: dir.join(format!("{node}.key")),
        }
    }
}

/// The crypto provider used everywhere on the link: *ring*.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|source| LinkError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

fn pem_err(path: &Path, what: &str, e: impl std::fmt::Display) -> LinkError {
    LinkError::Pem {
        path: path.to_path_buf(),
        detail: format!("{what}: {e}"),
    }
}

/// Reads every certificate in a PEM file; none at all is an error naming the file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, LinkError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, "bad PEM certificate", e))?;
    if certs.is_empty() {
        return Err(LinkError::Pem {
            path: path.to_path_buf(),
            detail: "no CERTIFICATE section found".into(),
        });
    }
    Ok(certs)
}

/// Reads the first private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, LinkError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| pem_err(path, "no usable private key", e))
}

/// A root store holding the CA certificates of `path`.
pub fn load_roots(path: &Path) -> Result<RootCertStore, LinkError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| pem_err(path, "not a usable CA certificate", e))?;
    }
    Ok(roots)
}

/// The ALPN list both ends offer, most preferred first.
fn alpns() -> Vec<Vec<u8>> {
    ALPNS.iter().map(|a| a.to_vec()).collect()
}

fn tls_err(context: &str, e: impl std::fmt::Display) -> LinkError {
    LinkError::Tls(format!("{context}: {e}"))
}

/// Server side: TLS 1.3 only (QUIC), ALPN `georelay/2` or `georelay/1` (the first of ours the
/// client offers too), and a client certificate signed by the CA is required.
pub fn server_config(tls: &TlsFiles) -> Result<rustls::ServerConfig, LinkError> {
    let roots = Arc::new(load_roots(&tls.ca)?);
    let chain = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| tls_err("client verifier", e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS 1.3", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| pair_err(tls, e))?;
    config.alpn_protocols = alpns();
    Ok(config)
}

/// Secrets that stay the same across restarts of this node, one per label, derived from its
/// private key (read once): the QUIC stateless-reset key and connection-ID key are made from
/// them, so after a crash the restarted agent recognises the old connections' IDs and answers
/// them with a reset the peer accepts — the peer reconnects at once instead of waiting for its
/// idle timeout.
pub fn restart_stable_secrets<const N: usize>(
    tls: &TlsFiles,
    labels: [&str; N],
) -> Result<[[u8; 32]; N], LinkError> {
    let key = load_key(&tls.key)?;
    Ok(labels.map(|label| {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"georelay v1\0");
        ctx.update(label.as_bytes());
        ctx.update(b"\0");
        ctx.update(key.secret_der());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }))
}

/// A TLS 1.3 client trusting `roots`, before its own certificate (if any) is chosen.
fn client_builder(
    roots: rustls::RootCertStore,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, LinkError>
{
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls_err("TLS 1.3", e))?
        .with_root_certificates(roots))
}

/// This node's certificate and key did not make a usable pair.
fn pair_err(tls: &TlsFiles, e: impl std::fmt::Display) -> LinkError {
    tls_err(
        &format!("{} with {}", tls.cert.display(), tls.key.display()),
        e,
    )
}

/// Client side: verifies the server against the CA (and the name given at connect), presents
/// this node's certificate, offers ALPN `georelay/2` and `georelay/1`.
pub fn client_config(tls: &TlsFiles) -> Result<rustls::ClientConfig, LinkError> {
    let roots = load_roots(&tls.ca)?;
    let chain = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let mut config = client_builder(roots)?
        .with_client_auth_cert(chain, key)
        .map_err(|e| pair_err(tls, e))?;
    config.alpn_protocols = alpns();
    Ok(config)
}

/// Client side without a certificate of its own: only for tests that check the server refuses it.
pub fn client_config_without_cert(ca: &Path) -> Result<rustls::ClientConfig, LinkError> {
    let roots = load_roots(ca)?;
    let mut config = client_builder(roots)?.with_no_client_auth();
    config.alpn_protocols = alpns();
    Ok(config)
}

/// The peer's name from its leaf certificate: the subject CN, else the first DNS SAN.
pub fn cert_name(cert: &[u8]) -> Option<String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert).ok()?;
    if let Some(cn) = x509
        .subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
    {
        return Some(cn.to_string());
    }
    let san = x509.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_bad_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let err = load_certs(&missing).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello\n").unwrap();
        let err = load_certs(&junk).unwrap_err();
        assert!(err.to_string().contains("junk.pem"), "{err}");
        let err = load_key(&junk).unwrap_err();
        assert!(err.to_string().contains("junk.pem"), "{err}");

        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
        let err = load_roots(&broken).unwrap_err();
        assert!(err.to_string().contains("broken.pem"), "{err}");
    }

    #[test]
    fn restart_stable_secrets_depend_on_the_key_and_label_only() {
        let dir = tempfile::tempdir().unwrap();
        super::super::certs::make_test_pki(dir.path(), &["alpha", "beta"]).unwrap();
        let alpha = TlsFiles::in_dir(dir.path(), "alpha");
        let beta = TlsFiles::in_dir(dir.path(), "beta");
        let [a1, a2] = restart_stable_secrets(&alpha, ["x", "y"]).unwrap();
        assert_eq!([a1], restart_stable_secrets(&alpha, ["x"]).unwrap());
        assert_ne!(a1, a2);
        assert_ne!([a1], restart_stable_secrets(&beta, ["x"]).unwrap());
    }

    #[test]
    fn configs_from_generated_pki() {
        let dir = tempfile::tempdir().unwrap();
        super::super::certs::make_test_pki(dir.path(), &["alpha"]).unwrap();
        let files = TlsFiles::in_dir(dir.path(), "alpha");
        let s = server_config(&files).unwrap();
        assert_eq!(s.alpn_protocols, alpns());
        client_config(&files).unwrap();
        client_config_without_cert(&files.ca).unwrap();
        let cert = load_certs(&files.cert).unwrap();
        assert_eq!(cert_name(&cert[0]).as_deref(), Some("alpha"));
        assert_eq!(cert_name(b"garbage"), None);
        // A key that does not match the certificate is refused.
        let other = TlsFiles {
            key: dir.path().join("ca.key"),
            ..files
        };
        assert!(server_config(&other).is_err());
    }
}
