//! One connection on the replica port: the command phase (PING, AUTH, REPLCONF, INFO, ROLE,
//! refusals) until PSYNC/SYNC hands the connection to the feeder.

use std::net::SocketAddr;

use crate::redistls::BoxStream;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::feed::{self, SyncRequest};
use super::info;
use super::{ServeCtx, ServeError};
use crate::resp::{self, Limits};

/// Limits for what clients send on the replica port: replicas only send short commands.
pub const CLIENT_LIMITS: Limits = Limits {
    max_bulk: 64 * 1024,
    max_array: 1024,
    max_depth: 1,
    max_inline: 64 * 1024,
};

/// Commands that would modify data: answered `-READONLY`, as a replica would.
const WRITE_COMMANDS: &[&str] = &[
    "set",
    "setex",
    "psetex",
    "setnx",
    "mset",
    "msetnx",
    "append",
    "del",
    "unlink",
    "incr",
    "incrby",
    "incrbyfloat",
    "decr",
    "decrby",
    "getset",
    "getdel",
    "getex",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
    "rename",
    "renamenx",
    "hset",
    "hsetnx",
    "hmset",
    "hdel",
    "hincrby",
    "hincrbyfloat",
    "lpush",
    "rpush",
    "lpushx",
    "rpushx",
    "lpop",
    "rpop",
    "lset",
    "linsert",
    "lrem",
    "ltrim",
    "lmove",
    "rpoplpush",
    "blpop",
    "brpop",
    "sadd",
    "srem",
    "spop",
    "smove",
    "sinterstore",
    "sunionstore",
    "sdiffstore",
    "zadd",
    "zincrby",
    "zrem",
    "zpopmin",
    "zpopmax",
    "zremrangebyscore",
    "zremrangebyrank",
    "zremrangebylex",
    "zunionstore",
    "zinterstore",
    "xadd",
    "xdel",
    "xtrim",
    "xgroup",
    "xack",
    "xclaim",
    "xautoclaim",
    "setbit",
    "setrange",
    "bitop",
    "pfadd",
    "pfmerge",
    "geoadd",
    "flushdb",
    "flushall",
    "restore",
    "copy",
    "move",
    "swapdb",
    "eval",
    "evalsha",
    "fcall",
    "function",
];

/// Replica-port connection state during the command phase.
pub struct Session {
    sock: BoxStream,
    peer: SocketAddr,
    ctx: ServeCtx,
    buf: BytesMut,
    authed: bool,
    listening_port: Option<u16>,
    announced_ip: Option<String>,
    capa_psync2: bool,
    rdb_only: bool,
    /// `REPLCONF version` (sent by Valkey 8+).
    version: Option<String>,
}

impl Session {
    pub fn new(sock: BoxStream, peer: SocketAddr, ctx: ServeCtx) -> Session {
        let authed = ctx.requirepass.is_none();
        Session {
            sock,
            peer,
            ctx,
            buf: BytesMut::with_capacity(4096),
            authed,
            listening_port: None,
            announced_ip: None,
            capa_psync2: false,
            rdb_only: false,
            version: None,
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
                        return Err(ServeError::Protocol(format!("from {}: {e}", self.peer)));
                    }
                }
                let mut shutdown = self.ctx.shutdown.clone();
                let n = tokio::select! {
                    n = self.sock.read_buf(&mut self.buf) => n?,
                    _ = tokio::time::sleep_until(deadline) => {
                        return Err(ServeError::Dropped("no complete command within serve.timeout"));
                    }
                    _ = shutdown.changed() => return Ok(()),
                };
                if n == 0 {
                    return Ok(());
                }
            };
            if args.is_empty() {
                continue; // bare newline keepalive
            }
            let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
            if let Some(req) = self.command(&name, &args).await? {
                return self.start_sync(req).await;
            }
        }
    }

    /// Handles one command; returns a sync request when the client asked for PSYNC/SYNC.
    async fn command(
        &mut self,
        name: &str,
        args: &[Bytes],
    ) -> Result<Option<SyncRequest>, ServeError> {
        if !self.authed && !matches!(name, "auth" | "quit") {
            return self
                .reply(b"-NOAUTH Authentication required.\r\n")
                .await
                .map(|_| None);
        }
        match name {
            "ping" => self.reply(b"+PONG\r\n").await?,
            "quit" => {
                self.reply(b"+OK\r\n").await?;
                return Err(ServeError::Dropped("client sent QUIT"));
            }
            "auth" => self.auth(args).await?,
            "replconf" => self.replconf(args).await?,
            "psync" => {
                if args.len() != 3 {
                    self.reply(b"-ERR wrong number of arguments for 'psync' command\r\n")
                        .await?;
                    return Ok(None);
                }
                let replid = String::from_utf8_lossy(&args[1]).into_owned();
                let Some(offset) = std::str::from_utf8(&args[2])
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                else {
                    self.reply(b"-ERR value is not an integer or out of range\r\n")
                        .await?;
                    return Ok(None);
                };
                return Ok(Some(SyncRequest::Psync { replid, offset }));
            }
            "sync" => return Ok(Some(SyncRequest::Sync)),
            "info" => {
                let section = args
                    .get(1)
                    .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase());
                let text = info::info(&self.ctx, section.as_deref());
                let mut out = BytesMut::new();
                resp::encode(&resp::Frame::Bulk(Bytes::from(text)), &mut out);
                self.reply(&out).await?;
            }
            "role" => {
                let mut out = BytesMut::new();
                resp::encode(&info::role(&self.ctx), &mut out);
                self.reply(&out).await?;
            }
            "select" => self.reply(b"+OK\r\n").await?,
            "client" | "hello" => {
                let msg = format!("-ERR '{name}' is not supported on georelay's replica port\r\n");
                self.reply(msg.as_bytes()).await?
            }
            n if WRITE_COMMANDS.contains(&n) => {
                self.reply(b"-READONLY You can't write against a read only replica.\r\n")
                    .await?
            }
            _ => {
                let shown: String = name.chars().take(64).collect();
                let msg = format!(
                    "-ERR unknown command '{shown}': georelay's replica port serves replication only (PSYNC, SYNC, REPLCONF, INFO, ROLE, PING, AUTH)\r\n"
                );
                self.reply(msg.as_bytes()).await?
            }
        }
        Ok(None)
    }

    async fn auth(&mut self, args: &[Bytes]) -> Result<(), ServeError> {
        let Some(expected) = self.ctx.requirepass.clone() else {
            return self
                .reply(b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n")
                .await;
        };
        let user = self.ctx.username.as_bytes();
        let ok = match args.len() {
            2 => user == b"default" && args[1] == expected.as_bytes(),
            3 => &args[1][..] == user && args[2] == expected.as_bytes(),
            _ => {
                return self
                    .reply(b"-ERR wrong number of arguments for 'auth' command\r\n")
                    .await
            }
        };
        if ok {
            self.authed = true;
            self.reply(b"+OK\r\n").await
        } else {
            tracing::warn!(peer = %self.peer, "replica AUTH failed (wrong masterauth?)");
            self.reply(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
                .await
        }
    }

    async fn replconf(&mut self, args: &[Bytes]) -> Result<(), ServeError> {
        if args.len().is_multiple_of(2) {
            return self.reply(b"-ERR syntax error\r\n").await;
        }
        for pair in args[1..].chunks(2) {
            let opt = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
            let val = String::from_utf8_lossy(&pair[1]).into_owned();
            match opt.as_str() {
                "listening-port" => self.listening_port = val.parse().ok(),
                "ip-address" => self.announced_ip = Some(val),
                "capa" => self.capa_psync2 |= val.eq_ignore_ascii_case("psync2"),
                "rdb-only" => self.rdb_only = val == "1",
                "version" => self.version = Some(val),
                "rdb-filter-only" if !val.is_empty() => {
                    return self
                        .reply(
                            b"-ERR georelay does not support filtered RDBs (rdb-filter-only)\r\n",
                        )
                        .await;
                }
                // ACK/GETACK are never answered; before PSYNC they carry nothing we need.
                "ack" | "getack" | "fack" => return Ok(()),
                // capa values (eof, psync2, dual-channel, skip-rdb-checksum, rdb-channel-repl),
                // rdb-channel, set-rdb-client-id, …: accepted; we never answer
                // +DUALCHANNELSYNC/+RDBCHANNELSYNC, so such replicas fall back to one channel.
                _ => {}
            }
        }
        self.reply(b"+OK\r\n").await
    }

    async fn reply(&mut self, bytes: &[u8]) -> Result<(), ServeError> {
        self.sock.write_all(bytes).await?;
        Ok(())
    }

    async fn start_sync(self, req: SyncRequest) -> Result<(), ServeError> {
        let ip = self
            .announced_ip
            .clone()
            .unwrap_or_else(|| self.peer.ip().to_string());
        let port = self.listening_port.unwrap_or(self.peer.port());
        let conn = feed::ReplicaConn {
            peer: self.peer,
            ip,
            port,
            announced_port: self.listening_port.is_some(),
            capa_psync2: self.capa_psync2,
            rdb_only: self.rdb_only,
            version: self.version.clone(),
        };
        feed::serve_sync(self.sock, self.buf, conn, req, self.ctx).await
    }
}
