//! The streaming link to a Redis master: handshake, PSYNC from the log's position, RDB into a
//! new epoch, then the stream into the log with `REPLCONF ACK` of the durable offset.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::conn::Conn;
use super::handshake::{self, PsyncReply};
use super::UpstreamError;
use crate::clock::now_us;
use crate::config::UpstreamConfig;
use crate::log::Log;
use crate::metrics::{Health, Metrics};
use crate::resp::{self, StreamScanner};

/// A master that sends nothing (not even its 10 s PING) for this long is considered gone.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const READ_CHUNK: usize = 256 * 1024;

/// Everything the upstream link needs.
#[derive(Clone)]
pub struct UpstreamCtx {
    pub cfg: UpstreamConfig,
    pub listening_port: u16,
    pub log: Log,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// TLS towards the master (`upstream.tls`).
    pub tls: Option<crate::redistls::Connector>,
    /// With `ack = "remote"`: the lowest durable offset among downstream agents.
    pub remote_ack: Option<watch::Receiver<u64>>,
}

impl UpstreamCtx {
    /// The offset to report in `REPLCONF ACK`: durable here, and with `ack = "remote"` also
    /// durable in another region.
    fn ack_offset(&self, durable: u64) -> u64 {
        match &self.remote_ack {
            Some(rx) => durable.min(*rx.borrow()),
            None => durable,
        }
    }
}

/// Runs the upstream link until `shutdown` flips, reconnecting with jittered backoff.
pub async fn run(ctx: UpstreamCtx, mut shutdown: watch::Receiver<bool>) {
    let mut failures: u32 = 0;
    // Consecutive full syncs that failed before streaming: each one forked the origin.
    let mut failed_full_syncs: u32 = 0;
    let mut first = true;
    loop {
        if !first {
            ctx.metrics.upstream_reconnects.inc();
        }
        first = false;
        let mut phase = Phase::Handshake;
        let result = tokio::select! {
            r = session(&ctx, &mut phase) => r,
            _ = shutdown.changed() => return,
        };
        match phase {
            Phase::Streaming => {
                failures = 0;
                failed_full_syncs = 0;
            }
            Phase::FullSync => failed_full_syncs = failed_full_syncs.saturating_add(1),
            Phase::Handshake => {}
        }
        ctx.metrics.upstream_connected.set(0);
        ctx.health.upstream_up.store(false, Ordering::Relaxed);
        let err = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        let base = match &err {
            UpstreamError::Auth(_) => {
                tracing::error!(upstream = %ctx.cfg.redis, "upstream authentication failed: {err}; check upstream.username/password; retrying in 10s");
                Duration::from_secs(10)
            }
            UpstreamError::Log(e) => {
                ctx.health.log_writable.store(false, Ordering::Relaxed);
                tracing::error!(
                    "cannot write the replication log: {e}; upstream link paused, retrying in 5s"
                );
                Duration::from_secs(5)
            }
            UpstreamError::Retry(_) => {
                tracing::info!(upstream = %ctx.cfg.redis, "{err}");
                Duration::from_secs(1)
            }
            _ => {
                tracing::warn!(upstream = %ctx.cfg.redis, "upstream link lost: {err}");
                failures = failures.saturating_add(1);
                Duration::from_millis((100u64 << failures.min(6)).min(5_000))
            }
        };
        // A full sync that keeps failing makes the origin fork every time: slow down, and say
        // what to look at.
        let base = if failed_full_syncs > 0 && phase == Phase::FullSync {
            let n = failed_full_syncs.saturating_sub(1).min(4);
            let wait = Duration::from_secs((5u64 << (2 * n)).min(300));
            tracing::error!(
                upstream = %ctx.cfg.redis,
                "{failed_full_syncs} full sync attempt(s) in a row failed ({err}); each one forks the origin. \
                 Retrying in {}s. Check the origin's log (e.g. an RDB it cannot write in the format this agent \
                 asks for, see upstream.announce_version) and the agent's disk.",
                wait.as_secs()
            );
            base.max(wait)
        } else {
            base
        };
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::select! {
            _ = tokio::time::sleep(base.mul_f64(jitter)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How far a session got, for the retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshake,
    FullSync,
    Streaming,
}

async fn session(ctx: &UpstreamCtx, phase: &mut Phase) -> Result<(), UpstreamError> {
    let mut conn = Conn::connect(&ctx.cfg.redis, Duration::from_secs(5), ctx.tls.as_ref()).await?;
    handshake::handshake(&mut conn, &ctx.cfg, ctx.listening_port, false).await?;
    let position = ctx.log.current();
    let ask = position.as_ref().map(|(id, head)| (id.as_str(), head + 1));
    let reply = handshake::psync(&mut conn, ask).await?;
    let mut ack_now = None;
    match reply {
        PsyncReply::Full { replid, offset } => {
            *phase = Phase::FullSync;
            let reason = if position.is_none() {
                "first_sync"
            } else {
                "new_epoch"
            };
            if let Some((old, head)) = &position {
                tracing::warn!(
                    upstream = %ctx.cfg.redis,
                    "upstream refused partial resync of {old}:{} and sent +FULLRESYNC {replid} {offset}: \
                     starting a new epoch; every downstream replica will need a full sync (origin restarted \
                     without persistence, or our position fell out of its backlog)",
                    head + 1
                );
            } else {
                tracing::info!(upstream = %ctx.cfg.redis, "initial full sync: +FULLRESYNC {replid} {offset}");
            }
            let rdb = handshake::receive_rdb(&mut conn, &ctx.log, STREAM_IDLE_TIMEOUT).await?;
            let eof_mode = rdb.eof_mode;
            let meta = handshake::finish(rdb, &replid, offset)?;
            tracing::info!(size = meta.size, rdb_version = meta.rdb_version, crc_ok = ?meta.crc_ok, "snapshot stored; new epoch at offset {offset}");
            ctx.log.start_epoch(meta)?;
            ctx.metrics
                .upstream_full_syncs
                .with_label_values(&[reason])
                .inc();
            ctx.metrics.upstream_view.synced(true);
            if eof_mode {
                ack_now = Some(offset);
            }
        }
        PsyncReply::Continue { replid } => {
            if let (Some(new), Some((old, head))) = (replid, &position) {
                if !new.eq_ignore_ascii_case(old) {
                    tracing::info!(
                        "upstream replid switched {old} -> {new} at offset {}",
                        head + 1
                    );
                    ctx.log.switch_replid(&new)?;
                    ctx.metrics.upstream_replid_switches.inc();
                }
            }
            ctx.metrics.upstream_partial_syncs.inc();
            ctx.metrics.upstream_view.synced(false);
            tracing::info!(upstream = %ctx.cfg.redis, "partial resync accepted from offset {}", ctx.log.current().map(|c| c.1 + 1).unwrap_or(0));
        }
    }
    *phase = Phase::Streaming;
    ctx.metrics.upstream_connected.set(1);
    ctx.health.upstream_up.store(true, Ordering::Relaxed);
    ctx.health.log_writable.store(true, Ordering::Relaxed);
    stream(ctx, conn, ack_now).await
}

/// Copies the stream into the log until the connection ends.
async fn stream(ctx: &UpstreamCtx, conn: Conn, ack_now: Option<u64>) -> Result<(), UpstreamError> {
    let (sock, mut buf) = conn.into_parts();
    let (mut rd, mut wr) = tokio::io::split(sock);
    // A partial resync resumes at whatever byte the log ended on, possibly mid-command; the
    // scanner only finds GETACKs, so it must never end the link: it resynchronises instead.
    let mut scanner = StreamScanner::tolerant();
    let mut durable_rx = ctx.log.subscribe_durable();
    // Without remote acks this channel never changes (its sender lives in the local scope).
    let (_never_tx, never_rx) = watch::channel(0u64);
    let mut remote_rx = ctx.remote_ack.clone().unwrap_or(never_rx);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Offset a GETACK asked about: answer as soon as the log is durable up to it.
    let mut pending_getack: Option<u64> = None;
    if let Some(off) = ack_now {
        send_ack(&mut wr, off).await?;
    }
    if !buf.is_empty() {
        let chunk = buf.split();
        if let Some(g) = append_chunk(ctx, &mut scanner, chunk)? {
            pending_getack = Some(g);
            ctx.log.request_sync();
        }
    }
    loop {
        if buf.capacity() < READ_CHUNK / 4 {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        tokio::select! {
            read = tokio::time::timeout(STREAM_IDLE_TIMEOUT, rd.read_buf(&mut buf)) => {
                let n = read
                    .map_err(|_| UpstreamError::Timeout(format!("no data from master for {}s", STREAM_IDLE_TIMEOUT.as_secs())))?
                    .map_err(|e| UpstreamError::Io(format!("reading the stream: {e}")))?;
                if n == 0 {
                    return Err(UpstreamError::Closed(ctx.cfg.redis.clone()));
                }
                if crate::failpoint::hit("upstream_read") {
                    // The bytes just read are dropped: the resync must fetch them again.
                    return Err(UpstreamError::Io(format!("reading the stream: {}", crate::failpoint::io_error("upstream_read"))));
                }
                let chunk = buf.split();
                if let Some(g) = append_chunk(ctx, &mut scanner, chunk)? {
                    pending_getack = Some(g);
                    ctx.log.request_sync();
                }
            }
            _ = durable_rx.changed() => {
                let ack = ctx.ack_offset(*durable_rx.borrow_and_update());
                if pending_getack.is_some_and(|g| ack >= g) {
                    pending_getack = None;
                    send_ack(&mut wr, ack).await?;
                }
            }
            _ = remote_rx.changed() => {
                remote_rx.borrow_and_update();
                let ack = ctx.ack_offset(*durable_rx.borrow());
                if pending_getack.is_some_and(|g| ack >= g) {
                    pending_getack = None;
                    send_ack(&mut wr, ack).await?;
                }
            }
            _ = ticker.tick() => {
                let ack = ctx.ack_offset(*durable_rx.borrow());
                send_ack(&mut wr, ack).await?;
            }
        }
    }
}

/// Appends one chunk to the log; returns the offset a GETACK in it asks us to reach.
fn append_chunk(
    ctx: &UpstreamCtx,
    scanner: &mut StreamScanner,
    chunk: BytesMut,
) -> Result<Option<u64>, UpstreamError> {
    let scan = scanner
        .feed(&chunk)
        .map_err(|e| UpstreamError::Protocol(format!("replication stream: {e}")))?;
    let start = ctx
        .log
        .current()
        .map(|c| c.1 + 1)
        .ok_or(UpstreamError::Log(crate::log::LogError::NoEpoch))?;
    let n = chunk.len() as u64;
    ctx.log.append(chunk.freeze(), now_us())?;
    ctx.metrics.upstream_stream_bytes.inc_by(n);
    ctx.metrics.upstream_view.heard(start + n - 1, 0);
    Ok(scan.getack.map(|end| start + end as u64 - 1))
}

async fn send_ack(wr: &mut crate::redistls::WriteHalf, offset: u64) -> Result<(), UpstreamError> {
    let cmd = resp::command(&[b"REPLCONF", b"ACK", offset.to_string().as_bytes()]);
    wr.write_all(&cmd)
        .await
        .map_err(|e| UpstreamError::Io(format!("sending REPLCONF ACK: {e}")))
}
