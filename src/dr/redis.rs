//! A minimal async Redis client for the orchestrators: connect (with optional AUTH), one
//! command at a time, and `INFO replication` parsed into the fields switchover needs.

use std::collections::HashMap;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::resp::{self, Frame, Limits};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a Redis command failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("{addr}: {detail}")]
    Io { addr: String, detail: String },
    #[error("{addr}: {cmd} answered {reply}")]
    Reply {
        addr: String,
        cmd: String,
        reply: String,
    },
    #[error("{addr}: INFO replication lacks {field}")]
    Field { addr: String, field: &'static str },
}

/// Credentials for one server (`--origin-user`/`--origin-password`, …).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub user: Option<String>,
    pub password: Option<String>,
}

/// One connection to one server.
pub struct RedisConn {
    addr: String,
    sock: TcpStream,
    buf: BytesMut,
}

impl RedisConn {
    pub async fn connect(addr: &str, auth: &Auth) -> Result<RedisConn, RedisError> {
        let io = |e: String| RedisError::Io {
            addr: addr.to_string(),
            detail: e,
        };
        let sock = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io("connect timed out".into()))?
            .map_err(|e| io(format!("connect: {e}")))?;
        let mut c = RedisConn {
            addr: addr.to_string(),
            sock,
            buf: BytesMut::new(),
        };
        if let Some(p) = &auth.password {
            match &auth.user {
                Some(u) => c.ok(&["AUTH", u, p]).await?,
                None => c.ok(&["AUTH", p]).await?,
            };
        }
        Ok(c)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one command and reads its reply (an error reply is returned as a `Frame::Error`).
    pub async fn cmd(&mut self, args: &[&str]) -> Result<Frame, RedisError> {
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let io = |e: String| RedisError::Io {
            addr: self.addr.clone(),
            detail: e,
        };
        let out = resp::command(&bytes);
        tokio::time::timeout(IO_TIMEOUT, self.sock.write_all(&out))
            .await
            .map_err(|_| io("write timed out".into()))?
            .map_err(|e| io(format!("write: {e}")))?;
        loop {
            match resp::parse_frame(&mut self.buf, &Limits::default()) {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => return Err(io(format!("bad reply: {e}"))),
            }
            let n = tokio::time::timeout(IO_TIMEOUT, self.sock.read_buf(&mut self.buf))
                .await
                .map_err(|_| io(format!("no reply to {} within {IO_TIMEOUT:?}", args[0])))?
                .map_err(|e| io(format!("read: {e}")))?;
            if n == 0 {
                return Err(io("connection closed".into()));
            }
        }
    }

    /// A command whose reply must not be an error.
    pub async fn ok(&mut self, args: &[&str]) -> Result<Frame, RedisError> {
        match self.cmd(args).await? {
            Frame::Error(e) => Err(RedisError::Reply {
                addr: self.addr.clone(),
                cmd: args.first().copied().unwrap_or("").to_string()
                    + &args.get(1).map(|a| format!(" {a}")).unwrap_or_default(),
                reply: e,
            }),
            f => Ok(f),
        }
    }

    /// `INFO replication` as a field map.
    pub async fn replication(&mut self) -> Result<Replication, RedisError> {
        let f = self.ok(&["INFO", "replication"]).await?;
        let text = match f {
            Frame::Bulk(b) => String::from_utf8_lossy(&b).into_owned(),
            Frame::Simple(s) => s,
            other => {
                return Err(RedisError::Reply {
                    addr: self.addr.clone(),
                    cmd: "INFO".into(),
                    reply: format!("{other:?}"),
                })
            }
        };
        Replication::parse(&self.addr, &text)
    }
}

/// The `INFO replication` fields the orchestrators read.
#[derive(Debug, Clone, PartialEq)]
pub struct Replication {
    /// "master" or "slave".
    pub role: String,
    pub replid: String,
    pub offset: u64,
    /// On a replica: `master_host:master_port`, link up, and its applied offset.
    pub master: Option<String>,
    pub link_up: bool,
    pub fields: HashMap<String, String>,
}

impl Replication {
    pub fn parse(addr: &str, text: &str) -> Result<Replication, RedisError> {
        let fields: HashMap<String, String> = text
            .lines()
            .filter_map(|l| l.trim_end().split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let need = |f: &'static str| {
            fields.get(f).cloned().ok_or(RedisError::Field {
                addr: addr.to_string(),
                field: f,
            })
        };
        let role = need("role")?;
        let replid = need("master_replid")?;
        let offset = need("master_repl_offset")?
            .parse()
            .map_err(|_| RedisError::Field {
                addr: addr.to_string(),
                field: "master_repl_offset",
            })?;
        let master = match (fields.get("master_host"), fields.get("master_port")) {
            (Some(h), Some(p)) => Some(format!("{h}:{p}")),
            _ => None,
        };
        let link_up = fields.get("master_link_status").map(String::as_str) == Some("up");
        Ok(Replication {
            role,
            replid,
            offset,
            master,
            link_up,
            fields,
        })
    }

    pub fn u64_field(&self, f: &str) -> Option<u64> {
        self.fields.get(f)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replica_info() {
        let text = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:6380\r\n\
                    master_link_status:up\r\nslave_repl_offset:42\r\nmaster_replid:abc\r\n\
                    master_repl_offset:42\r\n";
        let r = Replication::parse("x:1", text).unwrap();
        assert_eq!(r.role, "slave");
        assert_eq!(r.master.as_deref(), Some("127.0.0.1:6380"));
        assert!(r.link_up);
        assert_eq!(r.offset, 42);
        assert_eq!(r.u64_field("slave_repl_offset"), Some(42));
        assert!(matches!(
            Replication::parse("x:1", "role:master\r\n"),
            Err(RedisError::Field {
                field: "master_replid",
                ..
            })
        ));
    }
}
