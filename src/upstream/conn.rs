//! A buffered TCP connection to a Redis master with deadline-bounded line and chunk reads.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::redistls::{BoxStream, Connector};
use tokio::time::timeout;

use super::UpstreamError;
use crate::resp;

/// Longest reply line accepted during the handshake.
const MAX_LINE: usize = 64 * 1024;

pub struct Conn {
    sock: BoxStream,
    pub buf: BytesMut,
    pub addr: String,
}

impl Conn {
    /// Connects over TCP, then TLS when a connector is given.
    pub async fn connect(
        addr: &str,
        limit: Duration,
        tls: Option<&Connector>,
    ) -> Result<Conn, UpstreamError> {
        let tcp = timeout(limit, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::Timeout(format!("connecting to {addr}")))?
            .map_err(|e| UpstreamError::Io(format!("connecting to {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let sock: BoxStream = match tls {
            None => Box::new(tcp),
            Some(c) => timeout(limit, c.connect(tcp))
                .await
                .map_err(|_| UpstreamError::Timeout(format!("TLS handshake with {addr}")))?
                .map_err(|e| UpstreamError::Io(format!("TLS handshake with {addr}: {e}")))?,
        };
        Ok(Conn {
            sock,
            buf: BytesMut::with_capacity(256 * 1024),
            addr: addr.to_string(),
        })
    }

    pub async fn send(&mut self, data: &[u8]) -> Result<(), UpstreamError> {
        self.sock
            .write_all(data)
            .await
            .map_err(|e| UpstreamError::Io(format!("writing to {}: {e}", self.addr)))
    }

    /// Reads more bytes into the buffer; errors on EOF or when nothing arrives within `limit`.
    pub async fn fill(&mut self, limit: Duration) -> Result<usize, UpstreamError> {
        if self.buf.capacity() - self.buf.len() < 16 * 1024 {
            self.buf.reserve(256 * 1024);
        }
        let n = timeout(limit, self.sock.read_buf(&mut self.buf))
            .await
            .map_err(|_| {
                UpstreamError::Timeout(format!(
                    "no data from {} for {}s",
                    self.addr,
                    limit.as_secs()
                ))
            })?
            .map_err(|e| UpstreamError::Io(format!("reading from {}: {e}", self.addr)))?;
        if n == 0 {
            return Err(UpstreamError::Closed(self.addr.clone()));
        }
        Ok(n)
    }

    /// Reads one reply line (without its line ending). Empty lines are returned as empty.
    pub async fn read_line(&mut self, limit: Duration) -> Result<Bytes, UpstreamError> {
        loop {
            if let Some(line) = resp::read_line(&mut self.buf, MAX_LINE)
                .map_err(|e| UpstreamError::Protocol(format!("from {}: {e}", self.addr)))?
            {
                return Ok(line);
            }
            self.fill(limit).await?;
        }
    }

    /// Reads one reply line, skipping `\n` keepalives.
    pub async fn read_reply(&mut self, limit: Duration) -> Result<String, UpstreamError> {
        loop {
            let line = self.read_line(limit).await?;
            if !line.is_empty() {
                return Ok(String::from_utf8_lossy(&line).into_owned());
            }
        }
    }

    /// Takes the connection apart for streaming.
    pub fn into_parts(self) -> (BoxStream, BytesMut) {
        (self.sock, self.buf)
    }
}
