//! quinn endpoints for agent links: large UDP buffers, long-fat-pipe windows, chosen congestion control, mutual TLS.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{congestion, EndpointConfig, IdleTimeout, TransportConfig, VarInt};
use rustls_pki_types::CertificateDer;
use socket2::{Domain, Protocol, Socket, Type};

use super::tls::{self, TlsFiles};
use super::LinkError;

/// Congestion controller for a link; quinn ships all three (its BBR is experimental). The
/// default is the config's (`link.congestion`, see [`crate::config::LinkSettings`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Congestion {
    Cubic,
    NewReno,
    Bbr,
}

impl fmt::Display for Congestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Congestion::Cubic => "cubic",
            Congestion::NewReno => "newreno",
            Congestion::Bbr => "bbr",
        })
    }
}

impl FromStr for Congestion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cubic" => Ok(Congestion::Cubic),
            "newreno" | "new_reno" | "reno" => Ok(Congestion::NewReno),
            "bbr" => Ok(Congestion::Bbr),
            other => Err(format!(
                "unknown congestion controller {other:?} (cubic, newreno, bbr)"
            )),
        }
    }
}

/// How many streams' windows (lanes busy at once, plus one) the connection-wide windows hold.
pub const LANE_STREAMS: u64 = 16;

/// QUIC transport knobs of a link. Windows should cover the bandwidth-delay product
/// (1 Gbit/s × 100 ms ≈ 12.5 MB); the kernel caps socket buffers at `net.core.{r,w}mem_max`.
/// The defaults live in one place, the config: `LinkSettings::default().transport`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportSettings {
    pub congestion: Congestion,
    /// Per-stream receive window (bytes).
    pub stream_window: u64,
    /// Connection-wide receive window (bytes).
    pub conn_window: u64,
    /// Send window: bytes in flight plus buffered unsent (bytes).
    pub send_window: u64,
    /// Keep-alive PING interval; zero disables.
    pub keep_alive: Duration,
    /// Idle timeout after which a silent connection is dead; zero means none.
    pub idle_timeout: Duration,
    /// Requested SO_RCVBUF and SO_SNDBUF of the UDP socket (bytes).
    pub socket_buffer: usize,
}

impl TransportSettings {
    /// The quinn transport configuration these settings describe.
    pub fn transport_config(&self) -> Result<TransportConfig, LinkError> {
        let bad = |what: &str| LinkError::Settings(format!("{what} out of range"));
        let mut tc = TransportConfig::default();
        tc.stream_receive_window(
            VarInt::from_u64(self.stream_window).map_err(|_| bad("stream_window"))?,
        );
        // Per-lane flow control: the connection-wide windows leave room for LANE_STREAMS
        // streams' own windows, so a cluster lane that fills its window (a backlog catching up)
        // never holds back another lane's trickle. What a stream buffers stays bounded by its
        // own window, so a one-stream link is unchanged.
        let lanes = self.stream_window.saturating_mul(LANE_STREAMS);
        let conn_window = self.conn_window.max(lanes);
        tc.receive_window(VarInt::from_u64(conn_window).map_err(|_| bad("conn_window"))?);
        tc.send_window(self.send_window.max(lanes));
        tc.keep_alive_interval((!self.keep_alive.is_zero()).then_some(self.keep_alive));
        let idle = if self.idle_timeout.is_zero() {
            None
        } else {
            Some(IdleTimeout::try_from(self.idle_timeout).map_err(|_| bad("idle_timeout"))?)
        };
        tc.max_idle_timeout(idle);
        let factory: Arc<dyn congestion::ControllerFactory + Send + Sync> = match self.congestion {
            Congestion::Cubic => Arc::new(congestion::CubicConfig::default()),
            Congestion::NewReno => Arc::new(congestion::NewRenoConfig::default()),
            Congestion::Bbr => Arc::new(congestion::BbrConfig::default()),
        };
        tc.congestion_controller_factory(factory);
        Ok(tc)
    }
}

/// A UDP socket bound to `addr` with large buffers (dual-stack when `addr` is IPv6).
fn udp_socket(addr: SocketAddr, buffer: usize) -> Result<std::net::UdpSocket, LinkError> {
    let err = |source| LinkError::Socket { addr, source };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        if let Err(e) = socket.set_only_v6(false) {
            tracing::debug!(%addr, "cannot make the socket dual-stack: {e}");
        }
    }
    // Buffers are best effort: the kernel silently caps them; report what we got.
    if let Err(e) = socket.set_recv_buffer_size(buffer) {
        tracing::warn!(%addr, "cannot set SO_RCVBUF to {buffer}: {e}");
    }
    if let Err(e) = socket.set_send_buffer_size(buffer) {
        tracing::warn!(%addr, "cannot set SO_SNDBUF to {buffer}: {e}");
    }
    let (rcv, snd) = (socket.recv_buffer_size(), socket.send_buffer_size());
    if let (Ok(rcv), Ok(snd)) = (rcv, snd) {
        // Linux reports twice the usable size.
        if rcv < buffer || snd < buffer {
            tracing::info!(%addr, requested = buffer, rcv, snd,
                "UDP socket buffers capped by the kernel (raise net.core.rmem_max/wmem_max)");
        }
    }
    socket.bind(&addr.into()).map_err(err)?;
    Ok(socket.into())
}

fn endpoint(
    bind: SocketAddr,
    server: Option<(quinn::ServerConfig, EndpointConfig)>,
    client: Option<quinn::ClientConfig>,
    t: &TransportSettings,
) -> Result<quinn::Endpoint, LinkError> {
    let socket = udp_socket(bind, t.socket_buffer)?;
    let runtime = quinn::default_runtime().ok_or_else(|| LinkError::Socket {
        addr: bind,
        source: std::io::Error::other("no async runtime (call from within tokio)"),
    })?;
    let (server, config) = match server {
        Some((s, c)) => (Some(s), c),
        None => (None, EndpointConfig::default()),
    };
    let mut ep = quinn::Endpoint::new(config, server, socket, runtime)
        .map_err(|source| LinkError::Socket { addr: bind, source })?;
    if let Some(client) = client {
        ep.set_default_client_config(client);
    }
    Ok(ep)
}

fn no_suite(e: impl fmt::Display) -> LinkError {
    LinkError::Tls(format!("no QUIC initial cipher suite: {e}"))
}

/// A listening endpoint that accepts only clients with a certificate signed by the CA, ALPN
/// `georelay/1`. Must be called inside a tokio runtime.
pub fn server_endpoint(
    listen: SocketAddr,
    tls: &TlsFiles,
    t: &TransportSettings,
) -> Result<quinn::Endpoint, LinkError> {
    let crypto = QuicServerConfig::try_from(tls::server_config(tls)?).map_err(no_suite)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(t.transport_config()?));
    let [reset, cid] = tls::restart_stable_secrets(tls, ["stateless reset", "connection id"])?;
    let mut config = EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &reset,
    )));
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&cid[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    endpoint(listen, Some((server, config)), None, t)
}

/// A client endpoint that presents this node's certificate and verifies servers against the
/// CA. Binds `[::]:0` dual-stack, or `0.0.0.0:0` where IPv6 is unavailable.
pub fn client_endpoint(
    tls: &TlsFiles,
    t: &TransportSettings,
) -> Result<quinn::Endpoint, LinkError> {
    client_endpoint_with_tls(tls::client_config(tls)?, t)
}

/// A client endpoint with a caller-made rustls configuration (tools and tests; the ALPN must
/// be set by the caller).
pub fn client_endpoint_with_tls(
    config: rustls::ClientConfig,
    t: &TransportSettings,
) -> Result<quinn::Endpoint, LinkError> {
    let crypto = QuicClientConfig::try_from(config).map_err(no_suite)?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(t.transport_config()?));
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0));
    match endpoint(v6, None, Some(client.clone()), t) {
        Ok(ep) => Ok(ep),
        Err(e) => {
            tracing::debug!("IPv6 client socket unavailable ({e}); using IPv4");
            endpoint(
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                None,
                Some(client),
                t,
            )
        }
    }
}

/// Connects to `addr`, verifying that the server's certificate is valid for `server_name`.
pub async fn connect(
    ep: &quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
) -> Result<quinn::Connection, LinkError> {
    let connecting = ep
        .connect(addr, server_name)
        .map_err(|source| match source {
            quinn::ConnectError::InvalidServerName(name) => LinkError::BadServerName(name),
            source => LinkError::Connect { addr, source },
        })?;
    connecting
        .await
        .map_err(|source| LinkError::Connection { addr, source })
}

/// Completes the server side of a handshake; a refused client (no certificate, another CA,
/// wrong ALPN) comes back as [`LinkError::Connection`] carrying the client's address.
pub async fn accept(incoming: quinn::Incoming) -> Result<quinn::Connection, LinkError> {
    let addr = incoming.remote_address();
    incoming
        .await
        .map_err(|source| LinkError::Connection { addr, source })
}

/// The peer's name from its certificate (subject CN, else first DNS SAN), for logs and metrics.
/// The ALPN the handshake settled on (`None` before it finished, or without ALPN).
pub fn negotiated_alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

pub fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    tls::cert_name(chain.first()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_names() {
        for c in [Congestion::Cubic, Congestion::NewReno, Congestion::Bbr] {
            assert_eq!(c.to_string().parse::<Congestion>(), Ok(c));
        }
        assert!("vegas".parse::<Congestion>().is_err());
    }

    #[test]
    fn transport_config_builds_and_rejects_out_of_range() {
        for congestion in [Congestion::Cubic, Congestion::NewReno, Congestion::Bbr] {
            let t = TransportSettings {
                congestion,
                keep_alive: Duration::ZERO,
                idle_timeout: Duration::ZERO,
                ..crate::config::LinkSettings::default().transport
            };
            t.transport_config().unwrap();
        }
        let t = TransportSettings {
            stream_window: u64::MAX,
            ..crate::config::LinkSettings::default().transport
        };
        assert!(t.transport_config().is_err());
    }
}

#[cfg(test)]
#[path = "quic_tests.rs"]
mod net_tests;
