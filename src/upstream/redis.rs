//! The streaming link to a Redis master (async shell): handshake, PSYNC from the log's position,
//! RDB into a new epoch, then the stream into the log. The decisions (PSYNC plan, backoff,
//! GETACK answers, `REPLCONF ACK … FACK`) are made by [`super::replica`]; this file does the I/O.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::conn::Conn;
use super::handshake;
use super::replica::{self, AckSource, Acked, Action, Failure, Phase, PsyncPlan, Retry, Streamer};
use super::UpstreamError;
use crate::clock::now_us;
use crate::config::UpstreamConfig;
use crate::link::up::Remote;
use crate::log::{Log, LogError};
use crate::metrics::{Health, Metrics};
use crate::origin::OriginRelease;

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
    /// With `ack = "remote"`: the lowest offsets (received, durable) among downstream agents,
    /// and where to ask them to commit now.
    pub remote_ack: Option<Remote>,
}

/// Runs the upstream link until `shutdown` flips, reconnecting with jittered backoff.
pub async fn run(ctx: UpstreamCtx, mut shutdown: watch::Receiver<bool>) {
    let mut retry = Retry::default();
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
        ctx.metrics.upstream_connected.set(0);
        ctx.health.upstream_up.store(false, Ordering::Relaxed);
        let err = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        let failure = match &err {
            UpstreamError::Auth(_) => {
                tracing::error!(upstream = %ctx.cfg.redis, "upstream authentication failed: {err}; check upstream.username/password; retrying in 10s");
                Failure::Auth
            }
            UpstreamError::Log(e) => {
                ctx.health.log_writable.store(false, Ordering::Relaxed);
                tracing::error!(
                    "cannot write the replication log: {e}; upstream link paused, retrying in 5s"
                );
                Failure::Log
            }
            UpstreamError::Retry(_) => {
                tracing::info!(upstream = %ctx.cfg.redis, "{err}");
                Failure::NotReady
            }
            _ => {
                tracing::warn!(upstream = %ctx.cfg.redis, "upstream link lost: {err}");
                Failure::Other
            }
        };
        let base = retry.after(phase, failure);
        if phase == Phase::FullSync {
            // A full sync that keeps failing makes the origin fork every time: slow down, and
            // say what to look at.
            tracing::error!(
                upstream = %ctx.cfg.redis,
                "{} full sync attempt(s) in a row failed ({err}); each one forks the origin. \
                 Retrying in {}s. Check the origin's log (e.g. an RDB it cannot write in the format this agent \
                 asks for, see upstream.announce_version) and the agent's disk.",
                retry.failed_full_syncs,
                base.as_secs()
            );
        }
        let jitter = rand::rng().random_range(0.8..1.2);
        tokio::select! {
            _ = tokio::time::sleep(base.mul_f64(jitter)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn session(ctx: &UpstreamCtx, phase: &mut Phase) -> Result<(), UpstreamError> {
    let mut conn = Conn::connect(&ctx.cfg.redis, Duration::from_secs(5), ctx.tls.as_ref()).await?;
    handshake::handshake(&mut conn, &ctx.cfg, ctx.listening_port, false).await?;
    let position = ctx.log.current();
    let ask = position.as_ref().map(|(id, head)| (id.as_str(), head + 1));
    let reply = handshake::psync(&mut conn, ask).await?;
    let mut ack_now = false;
    match replica::plan_psync(ask.map(|(id, next)| (id, next - 1)), reply) {
        PsyncPlan::Full {
            replid,
            offset,
            reason,
        } => {
            *phase = Phase::FullSync;
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
            ack_now = rdb.eof_mode;
            let meta = handshake::finish(rdb, &replid, offset).await?;
            tracing::info!(size = meta.size, rdb_version = meta.rdb_version, crc_ok = ?meta.crc_ok, "snapshot stored; new epoch at offset {offset}");
            ctx.log.start_epoch_async(meta).await?;
            ctx.metrics
                .upstream_full_syncs
                .with_label_values(&[reason])
                .inc();
            ctx.metrics.upstream_view.synced(true);
        }
        PsyncPlan::Continue { switch } => {
            if let (Some(new), Some((old, head))) = (switch, &position) {
                tracing::info!(
                    "upstream replid switched {old} -> {new} at offset {}",
                    head + 1
                );
                ctx.log.switch_replid_async(new.clone()).await?;
                ctx.metrics.upstream_replid_switches.inc();
            }
            ctx.metrics.upstream_partial_syncs.inc();
            ctx.metrics.upstream_view.synced(false);
            tracing::info!(upstream = %ctx.cfg.redis, "partial resync accepted from offset {}", ctx.log.current().map(|c| c.1 + 1).unwrap_or(0));
        }
    }
    // The master's release, named by its RDB's aux fields, tells whether it understands FACK.
    let origin = match ctx.log.snapshot_for_full_sync() {
        Some(snap) => crate::log::blocking(move || OriginRelease::read(&snap.path))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let fack = origin.as_ref().is_some_and(OriginRelease::supports_fack);
    tracing::debug!(?origin, fack, "upstream release");
    *phase = Phase::Streaming;
    ctx.metrics.upstream_connected.set(1);
    ctx.health.upstream_up.store(true, Ordering::Relaxed);
    ctx.health.log_writable.store(true, Ordering::Relaxed);
    stream(ctx, conn, ack_now, fack).await
}

/// Copies the stream into the log until the connection ends, carrying out what the
/// [`Streamer`] decides.
async fn stream(
    ctx: &UpstreamCtx,
    conn: Conn,
    ack_now: bool,
    fack: bool,
) -> Result<(), UpstreamError> {
    let (sock, mut buf) = conn.into_parts();
    let (mut rd, mut wr) = tokio::io::split(sock);
    let mut durable_rx = ctx.log.subscribe_durable();
    // Without remote acks this channel never changes (its sender lives in the local scope).
    let (_never_tx, never_rx) = watch::channel(Acked::default());
    let mut remote_rx = ctx.remote_ack.as_ref().map_or(never_rx, |r| r.acks.clone());
    let head = ctx
        .log
        .current()
        .map(|c| c.1)
        .ok_or(UpstreamError::Log(LogError::NoEpoch))?;
    let source = if ctx.remote_ack.is_some() {
        AckSource::Remote
    } else {
        AckSource::Local
    };
    let durable = *durable_rx.borrow_and_update();
    let remote = *remote_rx.borrow_and_update();
    let mut m = Streamer::new(head, durable, remote, source, fack);
    let now = Instant::now();
    if ack_now {
        apply(ctx, &mut wr, m.ack_now(now)).await?;
    }
    if !buf.is_empty() {
        let actions = m.on_data(buf.split().freeze(), now).map_err(scan_err)?;
        apply(ctx, &mut wr, actions).await?;
    }
    loop {
        if buf.capacity() < READ_CHUNK / 4 {
            buf = BytesMut::with_capacity(READ_CHUNK);
        }
        let tick = tokio::time::Instant::from_std(m.next_tick(Instant::now()));
        let actions = tokio::select! {
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
                m.on_data(buf.split().freeze(), Instant::now()).map_err(scan_err)?
            }
            _ = durable_rx.changed() => {
                let d = *durable_rx.borrow_and_update();
                m.on_durable(d, Instant::now())
            }
            _ = remote_rx.changed() => {
                let r = *remote_rx.borrow_and_update();
                m.on_remote(r, Instant::now())
            }
            _ = tokio::time::sleep_until(tick) => m.on_tick(Instant::now()),
        };
        apply(ctx, &mut wr, actions).await?;
    }
}

fn scan_err(e: crate::resp::RespError) -> UpstreamError {
    UpstreamError::Protocol(format!("replication stream: {e}"))
}

/// Carries out the state machine's actions, in order.
async fn apply(
    ctx: &UpstreamCtx,
    wr: &mut crate::redistls::WriteHalf,
    actions: Vec<Action>,
) -> Result<(), UpstreamError> {
    for a in actions {
        match a {
            Action::Append(chunk) => {
                let start = ctx
                    .log
                    .current()
                    .map(|c| c.1 + 1)
                    .ok_or(UpstreamError::Log(LogError::NoEpoch))?;
                let n = chunk.len() as u64;
                ctx.log.append_async(chunk, now_us()).await?;
                ctx.metrics.upstream_stream_bytes.inc_by(n);
                ctx.metrics.upstream_view.heard(start + n - 1, 0);
            }
            Action::RequestSync => ctx.log.request_sync(),
            Action::RequestRemoteSync(upto) => {
                if let Some(r) = &ctx.remote_ack {
                    r.commit.send_replace(upto);
                }
            }
            Action::Send(bytes) => wr
                .write_all(&bytes)
                .await
                .map_err(|e| UpstreamError::Io(format!("sending REPLCONF ACK: {e}")))?,
        }
    }
    Ok(())
}
