//! Feeding one Redis replica: the PSYNC decision, a full sync from the stored snapshot, then
//! the stream from the log; ACK tracking and dropping replicas that are too slow or silent.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::redistls::{BoxStream, ReadHalf as OwnedReadHalf, WriteHalf as OwnedWriteHalf};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

use super::rdbcheck::{self, Release, Verdict};
use super::{ReplicaInfo, ReplicaState, ServeCtx, ServeError, CLIENT_LIMITS};
use crate::log::{FullReason, LogError, PsyncDecision, SnapshotMeta};
use crate::rdb::RdbHeader;
use crate::resp;

const STREAM_CHUNK: usize = 256 * 1024;
const RDB_CHUNK: usize = 256 * 1024;

/// What the replica asked for.
#[derive(Debug, Clone)]
pub enum SyncRequest {
    Psync { replid: String, offset: i64 },
    Sync,
}

/// What the command phase learnt about a replica.
pub struct ReplicaConn {
    pub peer: SocketAddr,
    pub ip: String,
    pub port: u16,
    /// True when `port` came from `REPLCONF listening-port` (its server listens there).
    pub announced_port: bool,
    pub capa_psync2: bool,
    pub rdb_only: bool,
    /// `REPLCONF version`: the replica's release (only Valkey sends it).
    pub version: Option<String>,
}

impl ReplicaConn {
    fn label(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// The key of this replica in the [`rdbcheck::Unacked`] ledger: its real TCP peer IP
    /// (never an announced `REPLCONF ip-address`, so a client cannot touch another host's
    /// entry) and the port its server listens on (stable across its reconnects).
    fn ledger_key(&self) -> String {
        std::net::SocketAddr::new(self.peer.ip(), self.port).to_string()
    }
}

/// Serves a replica from PSYNC/SYNC until it disconnects or is dropped.
pub async fn serve_sync(
    sock: BoxStream,
    leftover: BytesMut,
    conn: ReplicaConn,
    req: SyncRequest,
    ctx: ServeCtx,
) -> Result<(), ServeError> {
    let (rd, mut wr) = tokio::io::split(sock);
    let label_kind = "redis";
    if ctx.replicas.len() >= ctx.max_replicas {
        ctx.metrics
            .served_refusals
            .with_label_values(&[label_kind, "max_replicas"])
            .inc();
        let msg = format!(
            "-ERR max number of replicas reached (serve.max_replicas = {})\r\n",
            ctx.max_replicas
        );
        wr.write_all(msg.as_bytes()).await?;
        return Err(ServeError::Dropped(
            "replica refused: serve.max_replicas reached",
        ));
    }
    let id = ctx.replicas.insert(ReplicaInfo {
        ip: conn.ip.clone(),
        port: conn.port,
        state: ReplicaState::WaitBgsave,
        ack_offset: 0,
        fack_offset: 0,
        last_ack: Instant::now(),
        last_sync: "",
    });
    let label = format!("{}:{}", conn.ip, conn.port);
    let ledger_key = conn.ledger_key();
    ctx.metrics
        .connected_replicas
        .set(ctx.replicas.len() as i64);
    let result = tokio::select! {
        r = feed(&mut wr, &conn, &req, &ctx, id) => r,
        r = read_acks(rd, leftover, &ctx, id, &label, &ledger_key) => r,
    };
    ctx.replicas.remove(id);
    ctx.metrics
        .connected_replicas
        .set(ctx.replicas.len() as i64);
    let _ = ctx
        .metrics
        .replica_ack_offset
        .remove_label_values(&[&label]);
    let _ = ctx.metrics.replica_lag_bytes.remove_label_values(&[&label]);
    let _ = ctx
        .metrics
        .replica_fsync_offset
        .remove_label_values(&[&label]);
    let _ = ctx
        .metrics
        .replica_lag_seconds
        .remove_label_values(&[&label]);
    result
}

/// `REPLCONF ACK <off> [FACK <aof-off>]` → (ack, fack); None for anything else.
fn parse_ack(args: &[bytes::Bytes]) -> Option<(u64, Option<u64>)> {
    let num = |b: &bytes::Bytes| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
    if args.len() < 3
        || !args[0].eq_ignore_ascii_case(b"replconf")
        || !args[1].eq_ignore_ascii_case(b"ack")
    {
        return None;
    }
    let ack = num(&args[2])?;
    let fack = match args.get(3..5) {
        Some([k, v]) if k.eq_ignore_ascii_case(b"fack") => num(v),
        _ => None,
    };
    Some((ack, fack))
}

/// Consumes what the replica sends after PSYNC: `REPLCONF ACK <off> [FACK <off>]` and newlines.
async fn read_acks(
    mut rd: OwnedReadHalf,
    mut buf: BytesMut,
    ctx: &ServeCtx,
    id: u64,
    label: &str,
    ledger_key: &str,
) -> Result<(), ServeError> {
    let mut acked = false;
    loop {
        while let Some(args) = resp::parse_command(&mut buf, &CLIENT_LIMITS)
            .map_err(|e| ServeError::Protocol(e.to_string()))?
        {
            let now = Instant::now();
            let ack = parse_ack(&args);
            ctx.replicas.update(id, |r| {
                r.last_ack = now;
                if let Some((o, f)) = ack {
                    r.ack_offset = r.ack_offset.max(o);
                    if let Some(f) = f {
                        r.fack_offset = r.fack_offset.max(f);
                    }
                }
            });
            if let Some((o, f)) = ack {
                if !acked {
                    ctx.replicas.unacked.acked(ledger_key);
                    acked = true;
                }
                let m = &ctx.metrics;
                crate::metrics::Metrics::record_follower_ack(
                    &m.replica_ack_offset,
                    &m.replica_lag_bytes,
                    &m.replica_lag_seconds,
                    label,
                    &ctx.log,
                    o,
                );
                // The series exists from the first ACK on; it stays 0 while the replica
                // sends no FACK (Redis < 7.2), which says "nothing reported fsynced".
                let g = m.replica_fsync_offset.with_label_values(&[label]);
                if let Some(f) = f {
                    g.set(g.get().max(i64::try_from(f).unwrap_or(i64::MAX)));
                }
            }
        }
        if rd.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

async fn feed(
    wr: &mut OwnedWriteHalf,
    conn: &ReplicaConn,
    req: &SyncRequest,
    ctx: &ServeCtx,
    id: u64,
) -> Result<(), ServeError> {
    let mut epoch_rx = ctx.log.subscribe_epoch();
    epoch_rx.borrow_and_update();
    let (start, is_psync) = match req {
        SyncRequest::Psync { replid, offset } => {
            let decision = if *offset < 0 || replid == "?" {
                PsyncDecision::Full {
                    reason: FullReason::FirstSync,
                }
            } else {
                ctx.log.decide(replid, *offset as u64)
            };
            match decision {
                PsyncDecision::Continue { replid: current } => {
                    let line = if conn.capa_psync2 {
                        format!("+CONTINUE {current}\r\n")
                    } else {
                        "+CONTINUE\r\n".to_string()
                    };
                    wr.write_all(line.as_bytes()).await?;
                    ctx.metrics
                        .served_partial_syncs
                        .with_label_values(&["redis"])
                        .inc();
                    tracing::info!(replica = %conn.peer, "partial resync from offset {offset}");
                    ctx.replicas.update(id, |r| {
                        r.state = ReplicaState::Online;
                        r.last_sync = "partial";
                        r.ack_offset = (*offset as u64).saturating_sub(1);
                    });
                    (*offset as u64, true)
                }
                PsyncDecision::Full { reason } => {
                    tracing::info!(replica = %conn.peer, "full resync needed ({}): asked for {replid}:{offset}", reason.as_str());
                    (
                        full_sync(wr, conn, ctx, id, reason, true, &mut epoch_rx).await?,
                        true,
                    )
                }
            }
        }
        SyncRequest::Sync => (
            full_sync(
                wr,
                conn,
                ctx,
                id,
                FullReason::FirstSync,
                false,
                &mut epoch_rx,
            )
            .await?,
            false,
        ),
    };
    if conn.rdb_only {
        wr.shutdown().await?;
        return Ok(());
    }
    stream(wr, ctx, id, start, epoch_rx, is_psync).await
}

/// Holds the replica until a snapshot exists, sends it, returns the first stream offset.
async fn full_sync(
    wr: &mut OwnedWriteHalf,
    conn: &ReplicaConn,
    ctx: &ServeCtx,
    id: u64,
    reason: FullReason,
    psync: bool,
    epoch_rx: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<u64, ServeError> {
    let snap = wait_for_snapshot(wr, ctx, epoch_rx).await?;
    let header = check_rdb_version(wr, conn, ctx, &snap).await?;
    let replid = ctx
        .log
        .current()
        .map(|c| c.0)
        .unwrap_or_else(|| snap.replid.clone());
    if psync {
        wr.write_all(format!("+FULLRESYNC {replid} {}\r\n", snap.offset).as_bytes())
            .await?;
    }
    ctx.metrics
        .served_full_syncs
        .with_label_values(&["redis", reason.as_str()])
        .inc();
    ctx.replicas.update(id, |r| {
        r.state = ReplicaState::SendBulk;
        r.last_sync = "full";
    });
    tracing::info!(replica = %conn.peer, "sending snapshot {} bytes at offset {} (rdb v{})", snap.size, snap.offset, snap.rdb_version);
    send_file(wr, &snap, ctx.timeout).await?;
    if let (Some(h), true, false) = (header, psync, conn.rdb_only) {
        // Cleared by its first ACK; if it asks for a full sync again first, it failed to load.
        ctx.replicas
            .unacked
            .sent(&conn.ledger_key(), (snap.epoch, snap.offset), h);
    }
    ctx.replicas.update(id, |r| {
        r.state = ReplicaState::Online;
        r.ack_offset = snap.offset;
        r.last_ack = Instant::now();
    });
    Ok(snap.offset + 1)
}

/// Returns the snapshot's header unless the replica is known not to load it:
/// refuses it (error line, log, `rdb_version` refusal) when it cannot.
async fn check_rdb_version(
    wr: &mut OwnedWriteHalf,
    conn: &ReplicaConn,
    ctx: &ServeCtx,
    snap: &SnapshotMeta,
) -> Result<Option<RdbHeader>, ServeError> {
    if conn.rdb_only {
        return Ok(None); // a tool saving a file (`redis-cli --rdb`): any version will do
    }
    let header = match rdbcheck::read_header(&snap.path).await {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!(
                "cannot read the RDB header of {}: {e}; its version is not checked",
                snap.path.display()
            );
            return Ok(None);
        }
    };
    if rdbcheck::universally_loadable(header) {
        return Ok(Some(header));
    }
    let announced = conn.version.as_ref().map(|v| Release {
        version: v.clone(),
        valkey: true,
        georelay: false,
    });
    let release = match announced {
        Some(r) => Some(r),
        None if conn.announced_port => rdbcheck::probe(conn.peer.ip(), conn.port).await,
        None => None,
    };
    let have = rdbcheck::header_text(header);
    let why = match release.as_ref().map(|r| (r, rdbcheck::verdict(header, r))) {
        Some((_, Verdict::Loads)) => return Ok(Some(header)),
        Some((r, Verdict::CannotLoad { max })) => format!(
            "the snapshot is RDB version {} ({have}) and this replica ({}) loads {}",
            header.version,
            r.describe(),
            if max == 0 {
                "no RDB in that format".to_string()
            } else {
                format!("RDB versions up to {max}")
            }
        ),
        Some((_, Verdict::Unknown)) | None => {
            match ctx
                .replicas
                .unacked
                .pending(&conn.ledger_key(), (snap.epoch, snap.offset))
            {
                Some(h) => format!(
                    "this replica never acknowledged the RDB version {} ({}) snapshot it was sent, so it most likely cannot load RDB version {} (its own version is unknown: no REPLCONF version, no INFO server answer from {}); not sending it again for up to {} s",
                    h.version,
                    rdbcheck::header_text(h),
                    h.version,
                    conn.label(),
                    rdbcheck::UNACKED_HOLD.as_secs()
                ),
                None => return Ok(Some(header)),
            }
        }
    };
    tracing::warn!(replica = %conn.peer, announced = %conn.label(), "refusing a full sync: {why}");
    ctx.metrics
        .served_refusals
        .with_label_values(&["redis", "rdb_version"])
        .inc();
    let line = format!("-ERR georelay: {why}; a full sync would wipe the replica and fail\r\n");
    wr.write_all(line.as_bytes()).await?;
    Err(ServeError::Dropped(
        "replica refused: it cannot load the snapshot's RDB version",
    ))
}

/// Sends `\n` once a second until the log has a snapshot to serve; wakes at once when the
/// log starts its first epoch.
async fn wait_for_snapshot(
    wr: &mut OwnedWriteHalf,
    ctx: &ServeCtx,
    epoch_rx: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<SnapshotMeta, ServeError> {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        // Epoch changes before this point are reflected in the snapshot and replid we pick;
        // only later ones must end the stream.
        epoch_rx.borrow_and_update();
        if let Some(s) = ctx.log.snapshot_for_full_sync() {
            return Ok(s);
        }
        wr.write_all(b"\n").await?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            r = epoch_rx.changed() => if r.is_err() {
                return Err(ServeError::Dropped("the log is closing"));
            },
            _ = shutdown.changed() => return Err(ServeError::Dropped("shutting down")),
        }
    }
}

async fn send_file(
    wr: &mut OwnedWriteHalf,
    snap: &SnapshotMeta,
    limit: Duration,
) -> Result<(), ServeError> {
    let io = |source| {
        ServeError::Log(LogError::Io {
            path: snap.path.clone(),
            source,
        })
    };
    // Read on the log's reader pool, never on a tokio worker.
    let mut file = crate::log::PooledFile::open(&snap.path, 0)
        .await
        .map_err(io)?;
    wr.write_all(format!("${}\r\n", snap.size).as_bytes())
        .await?;
    let mut left = snap.size;
    while left > 0 {
        let want = (left as usize).min(RDB_CHUNK);
        let buf = file.read(want).await.map_err(io)?;
        let n = buf.len();
        if n == 0 {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "snapshot shorter than its recorded size",
            )));
        }
        timeout(limit, wr.write_all(&buf))
            .await
            .map_err(|_| ServeError::Dropped("replica stalled during RDB transfer"))??;
        left -= n as u64;
    }
    Ok(())
}

/// Streams the log from `from` on; never injects bytes of its own.
async fn stream(
    wr: &mut OwnedWriteHalf,
    ctx: &ServeCtx,
    id: u64,
    from: u64,
    mut epoch_rx: tokio::sync::watch::Receiver<u64>,
    expects_acks: bool,
) -> Result<(), ServeError> {
    let mut reader = ctx.log.reader(from)?;
    let mut shutdown = ctx.shutdown.clone();
    let mut check = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            chunk = reader.next(STREAM_CHUNK) => {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(LogError::Corrupt { offset, path }) => {
                        tracing::error!("corrupt log record at offset {offset} in {}: not served; replica disconnected and will need a full sync", path.display());
                        return Err(ServeError::Dropped("log corruption in the requested range"));
                    }
                    Err(LogError::Gone { .. }) => return Err(ServeError::Dropped("its position left the log (retention or new epoch)")),
                    Err(e) => return Err(e.into()),
                };
                // A replid switch is recorded (and notified) before any byte after it is
                // appended, so a chunk read after it may hold the new history: a replica must
                // never get those bytes under the replid it synced with (its next PSYNC would
                // ask for an offset past the switch under the old replid, a full sync).
                if epoch_rx.has_changed().unwrap_or(true) {
                    return Err(ServeError::Dropped("upstream replid changed; replica must resync"));
                }
                timeout(ctx.timeout, wr.write_all(&chunk.data)).await.map_err(|_| {
                    ctx.metrics.replicas_dropped.with_label_values(&["slow"]).inc();
                    ServeError::Dropped("replica too slow: output stalled past serve.timeout")
                })??;
            }
            _ = epoch_rx.changed() => {
                return Err(ServeError::Dropped("upstream replid changed; replica must resync"));
            }
            _ = check.tick() => {
                let silent = expects_acks && ctx.replicas.snapshot_one(id).is_some_and(|r| r.last_ack.elapsed() > ctx.timeout);
                if silent {
                    ctx.metrics.replicas_dropped.with_label_values(&["timeout"]).inc();
                    return Err(ServeError::Dropped("replica sent no ACK within serve.timeout"));
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn args(s: &[&str]) -> Vec<Bytes> {
        s.iter().map(|a| Bytes::from(a.to_string())).collect()
    }

    #[test]
    fn the_unacked_ledger_is_keyed_by_the_real_peer_not_the_announced_ip() {
        let conn = ReplicaConn {
            peer: "127.0.0.7:51234".parse().expect("addr"),
            ip: "127.0.0.9".into(),
            port: 6380,
            announced_port: true,
            capa_psync2: true,
            rdb_only: false,
            version: None,
        };
        assert_eq!(
            conn.label(),
            "127.0.0.9:6380",
            "the label shows what it announced"
        );
        assert_eq!(conn.ledger_key(), "127.0.0.7:6380");
    }

    #[test]
    fn acks_with_and_without_fack() {
        assert_eq!(
            parse_ack(&args(&["REPLCONF", "ACK", "10"])),
            Some((10, None))
        );
        assert_eq!(
            parse_ack(&args(&["replconf", "ack", "10", "FACK", "7"])),
            Some((10, Some(7)))
        );
        assert_eq!(parse_ack(&args(&["REPLCONF", "ACK", "x"])), None);
        assert_eq!(
            parse_ack(&args(&["REPLCONF", "ACK", "5", "FACK", "bad"])),
            Some((5, None))
        );
        assert_eq!(parse_ack(&args(&["REPLCONF", "GETACK", "*"])), None);
        assert_eq!(parse_ack(&args(&["PING"])), None);
    }
}
