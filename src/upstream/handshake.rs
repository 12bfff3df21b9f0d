//! The replica-side handshake (PING, AUTH, REPLCONF, PSYNC) and receiving the RDB transfer
//! into a log snapshot, shared by the streaming link and the rdb-only snapshot refresh.

use std::time::Duration;

use super::conn::Conn;
use super::UpstreamError;
use crate::config::UpstreamConfig;
use crate::log::{AsyncSnapshot, Log, SnapshotMeta};
use crate::rdb::{self, EofMark, RdbVerifier, TransferHeader};
use crate::resp;

/// Deadline for each handshake reply (Redis uses 5 s for its own sync I/O).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The master's answer to PSYNC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PsyncReply {
    Full { replid: String, offset: u64 },
    Continue { replid: Option<String> },
}

/// PING, AUTH, REPLCONF listening-port/capa (and rdb-only when asked).
pub async fn handshake(
    conn: &mut Conn,
    cfg: &UpstreamConfig,
    listening_port: u16,
    rdb_only: bool,
) -> Result<(), UpstreamError> {
    conn.send(&resp::command(&[b"PING"])).await?;
    let pong = conn.read_reply(REPLY_TIMEOUT).await?;
    let auth_needed = pong.starts_with("-NOAUTH")
        || pong.starts_with("-NOPERM")
        || pong.starts_with("-ERR operation not permitted");
    if !pong.starts_with('+') && !auth_needed {
        return Err(classify_error(&pong, "PING"));
    }
    let mut out = Vec::new();
    let mut expect = Vec::new();
    if let Some(pass) = &cfg.password {
        match &cfg.username {
            Some(user) => {
                out.extend_from_slice(&resp::command(&[b"AUTH", user.as_bytes(), pass.as_bytes()]))
            }
            None => out.extend_from_slice(&resp::command(&[b"AUTH", pass.as_bytes()])),
        }
        expect.push("AUTH");
    } else if auth_needed {
        return Err(UpstreamError::Auth(format!(
            "{} requires authentication ({pong}); set upstream.password",
            conn.addr
        )));
    }
    let port = listening_port.to_string();
    out.extend_from_slice(&resp::command(&[
        b"REPLCONF",
        b"listening-port",
        port.as_bytes(),
    ]));
    expect.push("REPLCONF listening-port");
    if rdb_only {
        out.extend_from_slice(&resp::command(&[b"REPLCONF", b"rdb-only", b"1"]));
        expect.push("REPLCONF rdb-only");
    }
    out.extend_from_slice(&resp::command(&[
        b"REPLCONF",
        b"capa",
        b"eof",
        b"capa",
        b"psync2",
    ]));
    expect.push("REPLCONF capa");
    if let Some(v) = &cfg.announce_version {
        out.extend_from_slice(&resp::command(&[b"REPLCONF", b"version", v.as_bytes()]));
        expect.push("REPLCONF version");
    }
    conn.send(&out).await?;
    for what in expect {
        let reply = conn.read_reply(REPLY_TIMEOUT).await?;
        if reply.starts_with('-') {
            if what == "AUTH" {
                return Err(UpstreamError::Auth(format!(
                    "{} rejected AUTH: {reply}",
                    conn.addr
                )));
            }
            if what == "REPLCONF rdb-only" {
                return Err(UpstreamError::Refused(format!(
                    "{} does not support rdb-only: {reply}",
                    conn.addr
                )));
            }
            tracing::debug!("(non critical) {what} answered {reply}");
        }
    }
    Ok(())
}

/// Sends PSYNC for `position` (None = `PSYNC ? -1`) and parses the answer.
pub async fn psync(
    conn: &mut Conn,
    position: Option<(&str, u64)>,
) -> Result<PsyncReply, UpstreamError> {
    let cmd = match position {
        Some((replid, next)) => {
            resp::command(&[b"PSYNC", replid.as_bytes(), next.to_string().as_bytes()])
        }
        None => resp::command(&[b"PSYNC", b"?", b"-1"]),
    };
    conn.send(&cmd).await?;
    let reply = conn.read_reply(REPLY_TIMEOUT).await?;
    parse_psync_reply(&reply).ok_or_else(|| classify_error(&reply, "PSYNC"))
}

/// Parses `+FULLRESYNC <id> <off>` / `+CONTINUE [<id>]`; None for anything else.
pub fn parse_psync_reply(line: &str) -> Option<PsyncReply> {
    let mut parts = line.split_ascii_whitespace();
    match parts.next()? {
        "+FULLRESYNC" => {
            let replid = parts.next()?.to_ascii_lowercase();
            let offset = parts.next()?.parse().ok()?;
            (replid.len() == 40).then_some(PsyncReply::Full { replid, offset })
        }
        "+CONTINUE" => Some(PsyncReply::Continue {
            replid: parts
                .next()
                .filter(|id| id.len() == 40)
                .map(|id| id.to_ascii_lowercase()),
        }),
        _ => None,
    }
}

fn classify_error(reply: &str, what: &str) -> UpstreamError {
    if reply.starts_with("-LOADING")
        || reply.starts_with("-NOMASTERLINK")
        || reply.starts_with("-MASTERDOWN")
    {
        UpstreamError::Retry(format!("{what}: {reply}"))
    } else if reply.starts_with("-NOAUTH")
        || reply.starts_with("-WRONGPASS")
        || reply.starts_with("-NOPERM")
    {
        UpstreamError::Auth(format!("{what}: {reply}"))
    } else {
        UpstreamError::Refused(format!("{what}: unexpected reply {reply:?}"))
    }
}

/// What was received besides the file itself.
pub struct ReceivedRdb {
    pub writer: AsyncSnapshot,
    pub version: u32,
    pub crc_ok: Option<bool>,
    /// True for a `$EOF:` (diskless) transfer, after which the master waits for our ACK.
    pub eof_mode: bool,
}

/// Receives the `$<len>` or `$EOF:<mark>` RDB transfer into a new snapshot file. Bytes that
/// follow the RDB (the stream) stay in `conn.buf`.
pub async fn receive_rdb(
    conn: &mut Conn,
    log: &Log,
    idle: Duration,
) -> Result<ReceivedRdb, UpstreamError> {
    let header = loop {
        let line = conn.read_line(idle).await?;
        if line.is_empty() {
            continue; // keepalive while the master prepares the RDB
        }
        break rdb::parse_transfer_header(&line).map_err(|e| {
            UpstreamError::Protocol(format!("RDB transfer from {}: {e}", conn.addr))
        })?;
    };
    let mut writer = AsyncSnapshot::begin(log).await?;
    let mut tail = RdbVerifier::new();
    let eof_mode = match header {
        TransferHeader::Len(len) => {
            let mut left = len;
            while left > 0 {
                if conn.buf.is_empty() {
                    conn.fill(idle).await?;
                }
                let take = (conn.buf.len() as u64).min(left) as usize;
                let piece = conn.buf.split_to(take).freeze();
                tail.feed(&piece);
                writer.write(piece.clone()).await?;
                left -= take as u64;
            }
            false
        }
        TransferHeader::Eof(mark) => {
            let mut detector = EofMark::new(mark);
            loop {
                if conn.buf.is_empty() {
                    conn.fill(idle).await?;
                }
                let piece = conn.buf.split().freeze();
                tail.feed(&piece);
                writer.write(piece.clone()).await?;
                if detector.feed(&piece) {
                    break;
                }
            }
            writer.truncate_tail(40).await?;
            tail.drop_last(40);
            true
        }
    };
    let (version, crc_ok) = tail
        .verdict()
        .map_err(|e| UpstreamError::Protocol(format!("received RDB: {e}")))?;
    if crc_ok == Some(false) {
        tracing::warn!("the RDB received from {} fails its CRC-64 check", conn.addr);
    }
    Ok(ReceivedRdb {
        writer,
        version,
        crc_ok,
        eof_mode,
    })
}

/// Finishes a received snapshot under the replid/offset it belongs to.
/// The fsync of the whole RDB runs on the log's writer thread, off the async workers.
pub async fn finish(
    rdb: ReceivedRdb,
    replid: &str,
    offset: u64,
) -> Result<SnapshotMeta, UpstreamError> {
    Ok(rdb
        .writer
        .finish(replid.to_string(), offset, rdb.version, rdb.crc_ok)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psync_replies() {
        let id = "a".repeat(40);
        assert_eq!(
            parse_psync_reply(&format!("+FULLRESYNC {id} 123")),
            Some(PsyncReply::Full {
                replid: id.clone(),
                offset: 123
            })
        );
        assert_eq!(
            parse_psync_reply("+CONTINUE"),
            Some(PsyncReply::Continue { replid: None })
        );
        assert_eq!(
            parse_psync_reply(&format!("+CONTINUE {id}")),
            Some(PsyncReply::Continue { replid: Some(id) })
        );
        assert_eq!(parse_psync_reply("+FULLRESYNC short 1"), None);
        assert_eq!(parse_psync_reply("-ERR nope"), None);
        assert!(matches!(
            classify_error("-LOADING Redis is loading", "PSYNC"),
            UpstreamError::Retry(_)
        ));
        assert!(matches!(
            classify_error("-NOAUTH Authentication required.", "PSYNC"),
            UpstreamError::Auth(_)
        ));
    }
}
