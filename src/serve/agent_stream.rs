//! One lane stream's session towards a downstream agent, the async shell of the [`Up`] state
//! machine (it answers Hello with Continue or Full, cuts log frames at replid switches, says
//! when a heartbeat is due and checks ACKs): this shell reads the log and the snapshot file,
//! writes the frames and reads the ACKs.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{timeout, Instant};

use super::agent::{bad_frames, AgentServeCtx, AgentServeError};
use super::pacing::Pacer;
use super::peers::PeerState;
use crate::clock::now_us;
use crate::link::proto::commit_requests;
use crate::link::up::{Opening, SnapshotOffer, Up, UpError, UpOptions};
use crate::link::{negotiated_alpn, Frame, FrameReader, FrameWriter, LinkError};
use crate::log::{FullReason, Log, LogError, PsyncDecision, SnapshotMeta};
use crate::metrics::Metrics;

const LOG_CHUNK: usize = 1 << 20;
const SNAPSHOT_CHUNK: usize = 1 << 20;

pub(super) async fn session(
    conn: &quinn::Connection,
    hello: Option<Frame>,
    mut writer: FrameWriter,
    reader: FrameReader<quinn::RecvStream>,
    name: &str,
    peer_id: u64,
    ctx: &AgentServeCtx,
) -> Result<(), AgentServeError> {
    let commits = commit_requests(negotiated_alpn(conn).as_deref());
    let up = Mutex::new(
        Up::new(UpOptions {
            heartbeat: ctx.link.heartbeat,
            compression: ctx.link.compression,
            zstd_level: ctx.link.zstd_level,
        })
        .with_commits(commits),
    );
    if let Some(Frame::Hello {
        name: their_name,
        replid,
        next_offset,
        ..
    }) = &hello
    {
        tracing::info!(peer = %name, "agent {their_name} connected, asks for {}:{next_offset}", replid.as_deref().unwrap_or("?"));
    }
    let opening = lock(&up).on_hello(hello);
    match opening {
        Err(UpError::Close { code, message }) => {
            let _ = writer
                .send(&Frame::Error {
                    code: code.as_u32(),
                    message: message.clone(),
                })
                .await;
            Err(AgentServeError::Protocol(message))
        }
        Ok(Opening::Closed) => Ok(()),
        Ok(Opening::SnapshotOnly) => {
            ctx.peers.update(peer_id, |p| p.state = PeerState::Snapshot);
            // A snapshot refresh: the newest snapshot, then the peer closes the connection.
            let snap = send_snapshot(&mut writer, name, ctx, &up, None).await?;
            tracing::info!(peer = %name, "sent snapshot at offset {} for a snapshot refresh", snap.offset);
            let _ = timeout(Duration::from_secs(60), conn.closed()).await;
            Ok(())
        }
        Ok(Opening::Sync) => {
            tokio::select! {
                r = read_acks(reader, name, peer_id, ctx, &up) => r,
                r = feed(&mut writer, name, peer_id, ctx, &up) => r,
            }
        }
    }
}

/// The link's machine, shared by its ACK reader and its feeder (locked briefly, never across
/// an await).
fn lock(up: &Mutex<Up>) -> MutexGuard<'_, Up> {
    up.lock().unwrap_or_else(|p| p.into_inner())
}

fn up_err(e: UpError) -> AgentServeError {
    let UpError::Close { message, .. } = e;
    AgentServeError::Protocol(message)
}

/// Reads the downstream's ACKs; anything else is a protocol error.
async fn read_acks<R: tokio::io::AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    name: &str,
    peer_id: u64,
    ctx: &AgentServeCtx,
    up: &Mutex<Up>,
) -> Result<(), AgentServeError> {
    while let Some(frame) = reader.next().await.map_err(bad_frames)? {
        let acked = lock(up).on_frame(frame).map_err(up_err)?;
        ctx.peers.update(peer_id, |p| {
            p.ack = p.ack.max(acked.durable);
            p.received = p.received.max(acked.received);
        });
        let m = &ctx.metrics;
        // Like a Redis replica's ACK: the ack offset (and the lag) is what it received, the
        // fsync offset what is on its disk (equal for a first-version agent).
        Metrics::record_follower_ack(
            &m.downstream_agent_ack_offset,
            &m.downstream_agent_lag_bytes,
            &m.downstream_agent_lag_seconds,
            name,
            &ctx.log,
            acked.received,
        );
        m.downstream_agent_fsync_offset
            .with_label_values(&[name])
            .set(i64::try_from(acked.durable).unwrap_or(i64::MAX));
    }
    Ok(())
}

/// Decides, sends the snapshot if needed, then streams; starts over after a new epoch.
async fn feed(
    w: &mut FrameWriter,
    name: &str,
    peer_id: u64,
    ctx: &AgentServeCtx,
    up: &Mutex<Up>,
) -> Result<(), AgentServeError> {
    let mut epoch_rx = ctx.log.subscribe_epoch();
    loop {
        epoch_rx.borrow_and_update();
        let (epoch, history) = ctx.log.history();
        let decision = match lock(up).psync_args() {
            None => PsyncDecision::Full {
                reason: FullReason::FirstSync,
            },
            Some((id, pos)) => ctx.log.decide(id, pos),
        };
        let cont = lock(up).on_decision(&decision, epoch, &history);
        match (cont, decision) {
            (Some(frame), _) => {
                w.send(&frame).await?;
                ctx.metrics
                    .served_partial_syncs
                    .with_label_values(&["agent"])
                    .inc();
                tracing::info!(peer = %name, "partial resync from offset {}", lock(up).position());
            }
            (None, PsyncDecision::Full { reason }) => {
                send_snapshot(w, name, ctx, up, Some(reason)).await?;
            }
            (None, PsyncDecision::Continue { .. }) => {}
        }
        let pos = lock(up).position();
        ctx.peers.update(peer_id, |p| {
            p.state = PeerState::Streaming;
            p.sent = pos;
        });
        match stream(w, name, peer_id, ctx, up, &mut epoch_rx).await {
            Err(AgentServeError::Log(LogError::Gone { .. })) => {
                let (now_epoch, now_history) = ctx.log.history();
                let new_epoch = lock(up).on_gone(now_epoch, &now_history, &history);
                match new_epoch {
                    Some(frame) => w.send(&frame).await?,
                    None => {
                        tracing::warn!(peer = %name, "offset {} left the log (retention); the agent needs a full sync", lock(up).position())
                    }
                }
            }
            Err(AgentServeError::Log(LogError::Corrupt { offset, path })) => {
                tracing::error!(peer = %name, "corrupt log record at offset {offset} in {}: not sent; the agent will get a full sync", path.display());
            }
            other => return other,
        }
    }
}

/// Waits for a usable snapshot (heartbeating meanwhile) and sends it — from where the
/// downstream's partial transfer stopped if it holds the start of this very one.
async fn send_snapshot(
    w: &mut FrameWriter,
    name: &str,
    ctx: &AgentServeCtx,
    up: &Mutex<Up>,
    reason: Option<FullReason>,
) -> Result<SnapshotMeta, AgentServeError> {
    let label = reason.map(|r| r.as_str()).unwrap_or("snapshot_refresh");
    let mut shutdown = ctx.shutdown.clone();
    let snap = loop {
        if let Some(s) = ctx.log.snapshot_for_full_sync() {
            break s;
        }
        w.send(&heartbeat(&ctx.log)).await?;
        tokio::select! {
            _ = tokio::time::sleep(ctx.link.heartbeat) => {}
            _ = shutdown.changed() => return Err(AgentServeError::Shutdown),
        }
    };
    let (epoch, history) = ctx.log.history();
    let offer = SnapshotOffer {
        replid: ctx
            .log
            .current()
            .map(|c| c.0)
            .unwrap_or_else(|| snap.replid.clone()),
        offset: snap.offset,
        size: snap.size,
        rdb_version: snap.rdb_version,
    };
    tracing::info!(peer = %name, "full sync ({}): sending snapshot at offset {} ({} bytes)", label, snap.offset, snap.size);
    if reason.is_some() {
        ctx.metrics
            .served_full_syncs
            .with_label_values(&["agent", label])
            .inc();
    }
    let (frames, from) = lock(up).full_frames(&offer, label);
    w.send_all(&frames).await?;
    let snap_err = |source| AgentServeError::Snapshot {
        path: snap.path.clone(),
        source,
    };
    // Read on the log's reader pool, never on a tokio worker.
    let mut file = crate::log::PooledFile::open(&snap.path, from)
        .await
        .map_err(snap_err)?;
    if from > 0 {
        tracing::info!(peer = %name, "resuming the snapshot transfer at byte {from} of {}", snap.size);
    }
    let mut left = snap.size - from;
    while left > 0 {
        let want = (left as usize).min(SNAPSHOT_CHUNK);
        let mut buf = bytes::BytesMut::with_capacity(want);
        while buf.len() < want {
            let got = file.read(want - buf.len()).await.map_err(snap_err)?;
            if got.is_empty() {
                return Err(snap_err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "snapshot shorter than recorded",
                )));
            }
            buf.extend_from_slice(&got);
        }
        left -= buf.len() as u64;
        ctx.metrics
            .link_stream_bytes
            .with_label_values(&[name, "sent"])
            .inc_by(buf.len() as u64);
        w.send(&Frame::SnapshotChunk { data: buf.freeze() }).await?;
    }
    w.send(&Frame::SnapshotEnd).await?;
    lock(up).snapshot_sent(&offer, epoch, &history);
    Ok(snap)
}

fn heartbeat(log: &Log) -> Frame {
    let s = log.status();
    Frame::Heartbeat {
        head: s.head,
        head_timestamp_us: s.head_timestamp_us,
        now_us: now_us(),
    }
}

/// Streams log frames from the machine's position (it inserts replid switches exactly where
/// they start), with heartbeats when the machine says they are due.
async fn stream(
    w: &mut FrameWriter,
    name: &str,
    peer_id: u64,
    ctx: &AgentServeCtx,
    up: &Mutex<Up>,
    epoch_rx: &mut watch::Receiver<u64>,
) -> Result<(), AgentServeError> {
    let mut reader = ctx.log.reader(lock(up).position())?;
    let mut shutdown = ctx.shutdown.clone();
    let mut pacer = Pacer::new(ctx.link.max_bandwidth);
    let mut commit_rx = ctx.peers.subscribe_commit();
    commit_rx.borrow_and_update();
    let start = Instant::now();
    let start_us = now_us();
    loop {
        let due = lock(up).next_heartbeat_us().saturating_sub(start_us);
        let beat_at = start + Duration::from_micros(due);
        tokio::select! {
            pieces = reader.next_pieces(LOG_CHUNK) => {
                let pieces = pieces?;
                // The next chunk is read on the pool while this one is sent.
                reader.prefetch(LOG_CHUNK)?;
                // A switch may have landed after the last refresh; the history is a few entries.
                let history = ctx.log.history().1;
                let from = lock(up).position();
                let frames = lock(up).log_frames(pieces, &history).map_err(up_err)?;
                if crate::failpoint::hit("agent_send") {
                    return Err(LinkError::Injected("agent_send").into());
                }
                w.send_all(&frames).await?;
                let commit = lock(up).poll_commit();
                if let Some(frame) = commit {
                    w.send(&frame).await?;
                }
                let offset = lock(up).position();
                let n = offset - from;
                ctx.metrics.link_stream_bytes.with_label_values(&[name, "sent"]).inc_by(n);
                pacer.spent(n).await;
                ctx.peers.update(peer_id, |p| p.sent = offset);
            }
            // The sender lives in `ctx.peers`, so this never ends while the link runs.
            Ok(()) = commit_rx.changed() => {
                let upto = *commit_rx.borrow_and_update();
                let commit = {
                    let mut m = lock(up);
                    m.want_commit(upto);
                    m.poll_commit()
                };
                if let Some(frame) = commit {
                    w.send(&frame).await?;
                }
            }
            _ = epoch_rx.changed() => {
                // A new epoch ends this reader with Gone; a switch is picked up with the next chunk.
                epoch_rx.borrow_and_update();
            }
            _ = tokio::time::sleep_until(beat_at) => {
                let s = ctx.log.status();
                let beat = lock(up).poll_heartbeat(now_us(), s.head, s.head_timestamp_us);
                if let Some(frame) = beat {
                    w.send(&frame).await?;
                }
            }
            _ = shutdown.changed() => return Err(AgentServeError::Shutdown),
        }
    }
}
