//! A blocking client connection to one target node (TCP, optionally TLS), for the applier's
//! own thread: connect + AUTH, pipelined writes, replies read as RESP frames with a deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::resp::{command, parse_frame, Frame, Limits};

use super::ApplyError;

/// How to reach the target.
#[derive(Clone)]
pub struct Dialer {
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
    pub timeout: Duration,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Io {
    fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => s.as_mut(),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

pub struct Conn {
    io: Io,
    buf: BytesMut,
    pub addr: String,
}

impl Dialer {
    /// Connects to `addr` and authenticates.
    pub fn connect(&self, addr: &str) -> Result<Conn, ApplyError> {
        let down = |e: std::io::Error| ApplyError::TargetDown {
            addr: addr.to_string(),
            message: e.to_string(),
        };
        let sock = addr
            .parse::<std::net::SocketAddr>()
            .map_err(|_| ApplyError::TargetDown {
                addr: addr.into(),
                message: "not an ip:port".into(),
            })
            .and_then(|sa| TcpStream::connect_timeout(&sa, self.timeout).map_err(down))
            .or_else(|_| TcpStream::connect(addr).map_err(down))?;
        sock.set_read_timeout(Some(self.timeout)).map_err(down)?;
        sock.set_write_timeout(Some(self.timeout)).map_err(down)?;
        let _ = sock.set_nodelay(true);
        let io = match &self.tls {
            None => Io::Plain(sock),
            Some((config, name)) => {
                let c =
                    rustls::ClientConnection::new(config.clone(), name.clone()).map_err(|e| {
                        ApplyError::TargetDown {
                            addr: addr.into(),
                            message: format!("TLS: {e}"),
                        }
                    })?;
                Io::Tls(Box::new(rustls::StreamOwned::new(c, sock)))
            }
        };
        let mut conn = Conn {
            io,
            buf: BytesMut::new(),
            addr: addr.to_string(),
        };
        if let Some(pw) = &self.password {
            let reply = match &self.username {
                Some(u) => conn.call(&[b"AUTH", u.as_bytes(), pw.as_bytes()])?,
                None => conn.call(&[b"AUTH", pw.as_bytes()])?,
            };
            if let Frame::Error(e) = reply {
                return Err(ApplyError::Refused {
                    reason: "auth",
                    message: format!("AUTH to {addr}: {e}"),
                });
            }
        }
        Ok(conn)
    }
}

impl Conn {
    fn down(&self, e: impl std::fmt::Display) -> ApplyError {
        ApplyError::TargetDown {
            addr: self.addr.clone(),
            message: e.to_string(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<(), ApplyError> {
        let r = self
            .io
            .stream()
            .write_all(bytes)
            .and_then(|_| self.io.stream().flush());
        r.map_err(|e| self.down(e))
    }

    /// Reads one reply.
    pub fn read(&mut self) -> Result<Frame, ApplyError> {
        let limits = Limits {
            max_array: 1 << 24,
            max_depth: 16,
            ..Limits::default()
        };
        loop {
            match parse_frame(&mut self.buf, &limits) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(self.down(format!("bad reply: {e}"))),
            }
            let mut tmp = [0u8; 64 * 1024];
            let n = self.io.stream().read(&mut tmp).map_err(|e| self.down(e))?;
            if n == 0 {
                return Err(self.down("connection closed"));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    /// One command, one reply.
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Frame, ApplyError> {
        self.send(&command(args))?;
        self.read()
    }

    /// One command whose error reply is an [`ApplyError`] (classified like a batch's).
    pub fn call_ok(&mut self, args: &[&[u8]]) -> Result<Frame, ApplyError> {
        match self.call(args)? {
            Frame::Error(e) => Err(refusal(&e, args)),
            f => Ok(f),
        }
    }
}

/// An error reply to `args` as an error: pause-class or a plain refusal.
pub fn refusal(e: &str, args: &[&[u8]]) -> ApplyError {
    let name = args
        .first()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_default();
    match super::txn::classify(0, e) {
        super::txn::Refusal::Pause { reason, message } => ApplyError::Refused {
            reason,
            message: format!("{name}: {message}"),
        },
        _ => ApplyError::Command {
            command: name,
            message: e.to_string(),
        },
    }
}

/// A bulk or simple reply as bytes.
pub fn text(f: &Frame) -> Option<Bytes> {
    match f {
        Frame::Bulk(b) => Some(b.clone()),
        Frame::Simple(s) => Some(Bytes::from(s.clone().into_bytes())),
        _ => None,
    }
}
