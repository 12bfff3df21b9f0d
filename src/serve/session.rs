//! One connection on the replica port (async shell): reads commands, runs them through
//! [`super::commands`], writes the replies in the connection's protocol, until PSYNC/SYNC hands
//! the connection to the feeder, the client quits, or `CLIENT KILL` closes it.

use std::net::SocketAddr;

use crate::redistls::BoxStream;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::clients::Registration;
use super::commands::{self, ConnState, Outcome};
use super::feed::{self, SyncRequest};
use super::{ServeCtx, ServeError, CLIENT_LIMITS};
use crate::resp::{self, Proto};

/// Replica-port connection state during the command phase.
pub struct Session {
    sock: BoxStream,
    ctx: ServeCtx,
    buf: BytesMut,
    st: ConnState,
    reg: Registration,
}

impl Session {
    pub fn new(
        sock: BoxStream,
        peer: SocketAddr,
        laddr: Option<SocketAddr>,
        ctx: ServeCtx,
    ) -> Session {
        let reg = ctx.port.clients.register(peer, laddr, "default");
        let st = ConnState::new(reg.id, peer, laddr, ctx.requirepass.is_some());
        Session {
            sock,
            ctx,
            buf: BytesMut::with_capacity(4096),
            st,
            reg,
        }
    }

    pub async fn run(mut self) -> Result<(), ServeError> {
        loop {
            // A whole command must arrive within serve.timeout: a slowloris client dripping
            // bytes cannot pin the connection.
            let deadline = tokio::time::Instant::now() + self.ctx.timeout;
            let args = loop {
                match resp::parse_command(&mut self.buf, &CLIENT_LIMITS) {
                    Ok(Some(args)) => break args,
                    Ok(None) => {}
                    Err(e) => {
                        let msg = format!("-ERR Protocol error: {e}\r\n");
                        let _ = self.sock.write_all(msg.as_bytes()).await;
                        return Err(ServeError::Protocol(format!("from {}: {e}", self.st.peer)));
                    }
                }
                let mut shutdown = self.ctx.shutdown.clone();
                let n = tokio::select! {
                    n = self.sock.read_buf(&mut self.buf) => n?,
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(ServeError::Dropped("no complete command within serve.timeout"));
                    }
                    _ = shutdown.changed() => return Ok(()),
                    _ = self.reg.killed.wait_for(|k| *k) => {
                        return Err(ServeError::Dropped("closed by CLIENT KILL"));
                    }
                };
                if n == 0 {
                    return Ok(());
                }
            };
            // A kill that raced with this command's bytes wins: CLIENT KILL has already
            // answered, so the killed connection must not answer anything after it.
            if *self.reg.killed.borrow() {
                return Err(ServeError::Dropped("closed by CLIENT KILL"));
            }
            if args.is_empty() {
                continue; // bare newline keepalive
            }
            let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
            let now = std::time::Instant::now();
            self.ctx.port.clients.update(self.st.id, |e| {
                e.last_active = now;
                e.last_cmd = name.chars().take(32).collect();
            });
            let origin = if matches!(name.as_str(), "info" | "hello") {
                self.ctx.port.origin.get(&self.ctx.log).await
            } else {
                None
            };
            let outcome = commands::handle(&mut self.st, &self.ctx, origin.as_ref(), &args);
            let proto = self.st.proto;
            match outcome {
                Outcome::Reply(r) => self.reply(&r, proto).await?,
                Outcome::Nothing => {}
                Outcome::Close(r) => {
                    self.reply(&r, proto).await?;
                    return Err(ServeError::Dropped("client sent QUIT"));
                }
                Outcome::Sync(req) => return self.start_sync(req).await,
            }
        }
    }

    async fn reply(&mut self, r: &resp::Reply, proto: Proto) -> Result<(), ServeError> {
        self.sock.write_all(&r.to_bytes(proto)).await?;
        Ok(())
    }

    async fn start_sync(self, req: SyncRequest) -> Result<(), ServeError> {
        let st = &self.st;
        let ip = st
            .announced_ip
            .clone()
            .unwrap_or_else(|| st.peer.ip().to_string());
        let port = st.listening_port.unwrap_or(st.peer.port());
        self.ctx.port.clients.update(st.id, |e| e.replica = true);
        let conn = feed::ReplicaConn {
            peer: st.peer,
            ip,
            port,
            announced_port: st.listening_port.is_some(),
            capa_psync2: st.capa_psync2,
            rdb_only: st.rdb_only,
            version: st.version.clone(),
        };
        let mut killed = self.reg.killed.clone();
        tokio::select! {
            r = feed::serve_sync(self.sock, self.buf, conn, req, self.ctx.clone()) => r,
            _ = killed.wait_for(|k| *k) => Err(ServeError::Dropped("closed by CLIENT KILL")),
        }
    }
}
