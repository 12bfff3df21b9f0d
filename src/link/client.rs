//! The downstream side's connection to an upstream agent, shared by its lanes: one QUIC
//! connection per agent pair, made on first use and again after it is lost, and one
//! bidirectional stream per lane opened on it, starting with the lane's Hello.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::Mutex;

use super::stream::{FrameReader, FrameWriter};
use super::{quic, Frame, LinkError, MAX_FRAME};

/// Bound on resolving the address and the QUIC + TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a link to the upstream agent could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("resolving {addr}: {detail}")]
    Resolve { addr: String, detail: String },
    #[error("timeout: QUIC handshake with {0}")]
    Timeout(SocketAddr),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("opening a stream: {0}")]
    Open(quinn::ConnectionError),
}

/// The connection to one upstream agent, shared by every lane linked to it. Cheap to share
/// behind an `Arc`; [`LinkConn::get`] returns the live connection, connecting when there is
/// none or the last one closed.
pub struct LinkConn {
    endpoint: quinn::Endpoint,
    addr: String,
    server_name: String,
    current: Mutex<Option<quinn::Connection>>,
}

impl LinkConn {
    pub fn new(endpoint: quinn::Endpoint, addr: &str, server_name: &str) -> LinkConn {
        LinkConn {
            endpoint,
            addr: addr.to_string(),
            server_name: server_name.to_string(),
            current: Mutex::new(None),
        }
    }

    /// The live connection, or a new one (concurrent callers share one handshake).
    pub async fn get(&self) -> Result<quinn::Connection, ConnectError> {
        let mut cur = self.current.lock().await;
        if let Some(c) = cur.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        let conn = self.connect().await?;
        *cur = Some(conn.clone());
        Ok(conn)
    }

    /// A new connection, not shared (e.g. for a one-off snapshot refresh).
    pub async fn connect(&self) -> Result<quinn::Connection, ConnectError> {
        let target = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(|e| ConnectError::Resolve {
                addr: self.addr.clone(),
                detail: e.to_string(),
            })?
            .next()
            .ok_or_else(|| ConnectError::Resolve {
                addr: self.addr.clone(),
                detail: "no address".into(),
            })?;
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            quic::connect(&self.endpoint, target, &self.server_name),
        )
        .await
        .map_err(|_| ConnectError::Timeout(target))?
        .map_err(ConnectError::from)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn endpoint(&self) -> &quinn::Endpoint {
        &self.endpoint
    }
}

/// Opens one lane's stream on `conn` and sends its `hello` (a [`Frame::Hello`], whose `lane`
/// names the lane, `None` for the standalone stream). The stream then runs the frame protocol.
pub async fn open_lane(
    conn: &quinn::Connection,
    hello: &Frame,
) -> Result<(FrameWriter, FrameReader<quinn::RecvStream>), ConnectError> {
    let (send, recv) = conn.open_bi().await.map_err(ConnectError::Open)?;
    let mut writer = FrameWriter::new(send);
    writer.send(hello).await?;
    Ok((writer, FrameReader::new(recv, MAX_FRAME)))
}
