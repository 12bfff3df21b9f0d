//! TLS on the Redis links: a client connector for a master started with `--tls-port`, an
//! acceptor for replicas using `tls-replication yes`, and the boxed stream type both sides use.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::link::tls::{load_certs, load_key, load_roots, provider};
use crate::link::LinkError;

/// A byte stream that may be plain TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Either kind of connection, boxed.
pub type BoxStream = Box<dyn Stream>;
pub type ReadHalf = tokio::io::ReadHalf<BoxStream>;
pub type WriteHalf = tokio::io::WriteHalf<BoxStream>;

/// Client-side TLS settings for a Redis master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: PathBuf,
    /// Optional client certificate and key (`tls-auth-clients yes` on the master).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: String,
}

/// Server-side TLS settings for the replica port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, replicas must present a certificate signed by this CA.
    pub ca: Option<PathBuf>,
}

/// A ready connector and the name to verify.
#[derive(Clone)]
pub struct Connector {
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// The rustls client config and the name to verify for `cfg` (for blocking clients too).
pub fn client_config(
    cfg: &ClientTls,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>), LinkError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::Tls(e.to_string()))?
        .with_root_certificates(load_roots(&cfg.ca)?);
    let config = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| LinkError::Tls(e.to_string()))?,
        _ => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(cfg.server_name.clone())
        .map_err(|_| LinkError::BadServerName(cfg.server_name.clone()))?;
    Ok((Arc::new(config), name))
}

impl Connector {
    pub fn new(cfg: &ClientTls) -> Result<Connector, LinkError> {
        let (config, name) = client_config(cfg)?;
        Ok(Connector {
            connector: TlsConnector::from(config),
            name,
        })
    }

    pub async fn connect(&self, tcp: tokio::net::TcpStream) -> std::io::Result<BoxStream> {
        Ok(Box::new(
            self.connector.connect(self.name.clone(), tcp).await?,
        ))
    }
}

/// A ready acceptor for the TLS replica port.
pub fn acceptor(cfg: &ServerTls) -> Result<TlsAcceptor, LinkError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::Tls(e.to_string()))?;
    let builder = match &cfg.ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider())
                .build()
                .map_err(|e| LinkError::Tls(e.to_string()))?,
        ),
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(load_certs(&cfg.cert)?, load_key(&cfg.key)?)
        .map_err(|e| LinkError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
