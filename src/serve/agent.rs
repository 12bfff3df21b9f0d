//! The async shell of the QUIC side for downstream agents: accept mutually authenticated
//! connections (one stream per lane), and run each stream's [`Up`] state machine — it answers
//! Hello with Continue or Full, cuts log frames at replid switches, says when a heartbeat is
//! due and checks ACKs; this shell reads the log and the snapshot file and writes the frames.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::{timeout, Instant};

use super::peers::{LaneMap, PeerInfo, PeerState, Peers};
use crate::clock::now_us;
use crate::config::LinkSettings;
use crate::link::up::{Opening, SnapshotOffer, Up, UpError, UpOptions};
use crate::link::{quic, CloseCode, Frame, FrameReader, FrameWriter, LinkError, MAX_FRAME};
use crate::log::{FullReason, Log, LogError, PsyncDecision, SnapshotMeta};
use crate::metrics::Metrics;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const LOG_CHUNK: usize = 1 << 20;
const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Why a downstream agent's session ended.
#[derive(Debug, thiserror::Error)]
pub enum AgentServeError {
    #[error("link: {0}")]
    Link(#[from] LinkError),
    #[error("log: {0}")]
    Log(#[from] LogError),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("unknown lane {0:?}")]
    UnknownLane(String),
    #[error("snapshot file {path}: {source}")]
    Snapshot {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("shutting down")]
    Shutdown,
}

/// Everything the agent server needs. `log` and `peers` serve the standalone stream (a Hello
/// without a lane); `lanes` resolves the named lanes.
#[derive(Clone)]
pub struct AgentServeCtx {
    pub log: Log,
    pub metrics: Arc<Metrics>,
    pub peers: Arc<Peers>,
    pub lanes: LaneMap,
    pub max_agents: usize,
    pub link: LinkSettings,
    pub shutdown: watch::Receiver<bool>,
}

/// Accepts downstream agents until shutdown; refused handshakes are logged with the address.
pub async fn run(endpoint: quinn::Endpoint, ctx: AgentServeCtx) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = shutdown.changed() => break,
        };
        let c = ctx.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match quic::accept(incoming).await {
                Ok(conn) => serve_conn(conn, remote, c).await,
                Err(e) => {
                    c.metrics
                        .served_refusals
                        .with_label_values(&["agent", "tls"])
                        .inc();
                    tracing::warn!(peer = %remote, "refused agent connection from {remote}: {e}");
                }
            }
        });
    }
    endpoint.close(CloseCode::Shutdown.varint(), b"shutting down");
}

/// One connection: one stream per lane (the standalone stream has no lane). The first stream
/// must come within [`HELLO_TIMEOUT`]; the connection ends with the standalone stream's
/// session, or when the peer closes it.
async fn serve_conn(conn: quinn::Connection, remote: SocketAddr, ctx: AgentServeCtx) {
    let name = quic::peer_name(&conn).unwrap_or_else(|| remote.to_string());
    if ctx.peers.len() >= ctx.max_agents {
        ctx.metrics
            .served_refusals
            .with_label_values(&["agent", "max_agents"])
            .inc();
        tracing::warn!(peer = %name, addr = %remote, "refused agent {name}: serve.max_agents ({}) reached", ctx.max_agents);
        conn.close(
            CloseCode::Refused.varint(),
            b"max agents reached (serve.max_agents)",
        );
        return;
    }
    let streams = async {
        let mut tasks = tokio::task::JoinSet::new();
        let mut first = true;
        loop {
            let accepted = if first {
                match timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
                    Ok(a) => a,
                    Err(_) => {
                        return Err(AgentServeError::Protocol(
                            "no stream opened within 10s".into(),
                        ))
                    }
                }
            } else {
                tokio::select! {
                    a = conn.accept_bi() => a,
                    Some(done) = tasks.join_next() => match done {
                        // The standalone stream's session ends the connection.
                        Ok(Some(result)) => return result,
                        _ => continue,
                    },
                }
            };
            first = false;
            let (send, recv) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    return Err(AgentServeError::Link(LinkError::Connection {
                        addr: remote,
                        source: e,
                    }))
                }
            };
            let (c, n, conn2) = (ctx.clone(), name.clone(), conn.clone());
            tasks.spawn(async move { stream_session(&conn2, send, recv, &n, remote, &c).await });
        }
    };
    let result = tokio::select! {
        r = streams => r,
        _ = crate::metrics::wire::count(&conn, &ctx.metrics, &name) => Ok(()),
    };
    match &result {
        Ok(()) | Err(AgentServeError::Shutdown) => {
            conn.close(CloseCode::Shutdown.varint(), b"shutting down");
        }
        Err(AgentServeError::Protocol(msg)) => {
            tracing::warn!(peer = %name, addr = %remote, "closing agent link: protocol error: {msg}");
            conn.close(CloseCode::Protocol.varint(), msg.as_bytes());
        }
        Err(e) => tracing::info!(peer = %name, addr = %remote, "agent link ended: {e}"),
    }
    let _ = ctx
        .metrics
        .downstream_agent_ack_offset
        .remove_label_values(&[&name]);
    let _ = ctx
        .metrics
        .downstream_agent_lag_bytes
        .remove_label_values(&[&name]);
    let _ = ctx
        .metrics
        .downstream_agent_lag_seconds
        .remove_label_values(&[&name]);
    let _ = ctx
        .metrics
        .downstream_agent_fsync_offset
        .remove_label_values(&[&name]);
}

/// One stream: read Hello, resolve its lane, register the peer in that lane, run the session.
/// Returns `Some(result)` for the standalone stream (which ends the connection), `None` for a
/// lane stream (whose end closes only the stream).
async fn stream_session(
    conn: &quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    name: &str,
    remote: SocketAddr,
    ctx: &AgentServeCtx,
) -> Option<Result<(), AgentServeError>> {
    let mut reader = FrameReader::new(recv, MAX_FRAME);
    let mut writer = FrameWriter::new(send);
    let hello = match timeout(HELLO_TIMEOUT, reader.next()).await {
        Err(_) => Err(AgentServeError::Protocol("no Hello within 10s".into())),
        Ok(r) => r.map_err(bad_frames),
    };
    let lane = match &hello {
        Ok(Some(Frame::Hello { lane, .. })) => lane.clone(),
        _ => None,
    };
    if lane.as_deref() == Some(crate::link::control::CONTROL_LANE) {
        // The control stream: the slot map downstream. The peer sends nothing after Hello
        // until it has the first frame, so nothing is lost with the reader's buffer.
        let maps = ctx.lanes.slot_map().subscribe();
        let r = crate::link::control::serve(
            reader.into_inner(),
            writer.get_mut(),
            maps,
            ctx.link.heartbeat,
            ctx.shutdown.clone(),
        )
        .await;
        if let Err(e) = r {
            tracing::info!(peer = %name, addr = %remote, "control stream ended: {e}");
        }
        return None;
    }
    let target = match &lane {
        None => Some((ctx.log.clone(), ctx.peers.clone())),
        Some(l) => ctx.lanes.get(l).map(|t| (t.log, t.peers)),
    };
    let result = match (hello, target) {
        (_, None) => {
            let lane = lane.clone().unwrap_or_default();
            let msg = format!("this agent serves no lane {lane:?}");
            tracing::warn!(peer = %name, addr = %remote, "refusing a link: {msg}");
            let _ = writer
                .send(&Frame::Error {
                    code: CloseCode::UnknownLane.as_u32(),
                    message: msg,
                })
                .await;
            let _ = writer.finish();
            Err(AgentServeError::UnknownLane(lane))
        }
        (Err(e), _) => Err(e),
        (Ok(hello), Some((log, peers))) => {
            let lane_ctx = AgentServeCtx {
                log,
                peers,
                ..ctx.clone()
            };
            let registered = Registered::new(&lane_ctx, name, remote, lane.is_none());
            session(conn, hello, writer, reader, name, registered.id, &lane_ctx).await
        }
    };
    match (&lane, result) {
        (None, r) => Some(r),
        (Some(l), r) => {
            if let Err(e) = r {
                tracing::info!(peer = %name, addr = %remote, lane = %l, "lane link ended: {e}");
            }
            None
        }
    }
}

/// A peer's entry in its lane's registry, removed when the session ends in any way (also when
/// its task is aborted because the connection went away).
struct Registered {
    id: u64,
    peers: Arc<Peers>,
    /// The standalone stream's peers are counted in `georelay_connected_agents`.
    gauge: Option<prometheus::IntGauge>,
}

impl Registered {
    fn new(ctx: &AgentServeCtx, name: &str, remote: SocketAddr, standalone: bool) -> Registered {
        let id = ctx.peers.insert(PeerInfo {
            name: name.to_string(),
            addr: remote.to_string(),
            ack: 0,
            sent: 0,
            state: PeerState::Handshake,
        });
        let gauge = standalone.then(|| ctx.metrics.connected_agents.clone());
        if let Some(g) = &gauge {
            g.set(ctx.peers.len() as i64);
        }
        Registered {
            id,
            peers: ctx.peers.clone(),
            gauge,
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.peers.remove(self.id);
        if let Some(g) = &self.gauge {
            g.set(self.peers.len() as i64);
        }
    }
}

async fn session(
    conn: &quinn::Connection,
    hello: Option<Frame>,
    mut writer: FrameWriter,
    reader: FrameReader<quinn::RecvStream>,
    name: &str,
    peer_id: u64,
    ctx: &AgentServeCtx,
) -> Result<(), AgentServeError> {
    let up = Mutex::new(Up::new(UpOptions {
        heartbeat: ctx.link.heartbeat,
        compression: ctx.link.compression,
        zstd_level: ctx.link.zstd_level,
    }));
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

fn bad_frames(e: LinkError) -> AgentServeError {
    match e {
        LinkError::Frame(f) => AgentServeError::Protocol(format!("malformed frame: {f}")),
        other => AgentServeError::Link(other),
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
        let durable = lock(up).on_frame(frame).map_err(up_err)?;
        ctx.peers.update(peer_id, |p| p.ack = p.ack.max(durable));
        let m = &ctx.metrics;
        Metrics::record_follower_ack(
            &m.downstream_agent_ack_offset,
            &m.downstream_agent_lag_bytes,
            &m.downstream_agent_lag_seconds,
            name,
            &ctx.log,
            durable,
        );
        // Agents acknowledge only what is fsynced in their log.
        m.downstream_agent_fsync_offset
            .with_label_values(&[name])
            .set(i64::try_from(durable).unwrap_or(i64::MAX));
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
    let mut file = tokio::fs::File::open(&snap.path).await.map_err(snap_err)?;
    if from > 0 {
        tracing::info!(peer = %name, "resuming the snapshot transfer at byte {from} of {}", snap.size);
        use tokio::io::AsyncSeekExt;
        file.seek(std::io::SeekFrom::Start(from))
            .await
            .map_err(snap_err)?;
    }
    let mut left = snap.size - from;
    while left > 0 {
        let mut buf = bytes::BytesMut::with_capacity(SNAPSHOT_CHUNK);
        let want = (left as usize).min(SNAPSHOT_CHUNK);
        while buf.len() < want {
            let n = (&mut file)
                .take((want - buf.len()) as u64)
                .read_buf(&mut buf)
                .await
                .map_err(snap_err)?;
            if n == 0 {
                return Err(snap_err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "snapshot shorter than recorded",
                )));
            }
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
    let start = Instant::now();
    let start_us = now_us();
    loop {
        let due = lock(up).next_heartbeat_us().saturating_sub(start_us);
        let beat_at = start + Duration::from_micros(due);
        tokio::select! {
            pieces = reader.next_pieces(LOG_CHUNK) => {
                let pieces = pieces?;
                // A switch may have landed after the last refresh; the history is a few entries.
                let history = ctx.log.history().1;
                let from = lock(up).position();
                let frames = lock(up).log_frames(pieces, &history).map_err(up_err)?;
                if crate::failpoint::hit("agent_send") {
                    return Err(LinkError::Injected("agent_send").into());
                }
                w.send_all(&frames).await?;
                let offset = lock(up).position();
                let n = offset - from;
                ctx.metrics.link_stream_bytes.with_label_values(&[name, "sent"]).inc_by(n);
                pacer.spent(n).await;
                ctx.peers.update(peer_id, |p| p.sent = offset);
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

/// Paces sending to `max_bandwidth` bytes per second (0 = unlimited).
struct Pacer {
    rate: u64,
    start: Instant,
    sent: u64,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Pacer {
            rate,
            start: Instant::now(),
            sent: 0,
        }
    }

    async fn spent(&mut self, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.sent += n;
        let due = self.start + Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        // Forget history older than a few seconds so an idle period does not bank a burst.
        if self.start.elapsed() > Duration::from_secs(5) {
            self.start = Instant::now();
            self.sent = 0;
        }
    }
}

#[cfg(test)]
#[path = "agent_lanes_tests.rs"]
mod lanes_tests;
