//! The async shell of the downstream side of an agent-to-agent link: connect to the upstream
//! agent over QUIC with mutual TLS, feed what arrives to the [`Down`] state machine (which
//! checks every offset and says what to do), and do its actions: write the snapshot and the
//! log, switch replid, acknowledge what is written (received) and fsynced (durable).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use super::UpstreamError;
use crate::config::LinkSettings;
use crate::link::client::{self, ConnectError, LinkConn};
use crate::link::down::{Down, DownAction, DownError, Mode, Transfer};
use crate::link::proto::acks_received;
use crate::link::{negotiated_alpn, CloseCode, FrameWriter, LinkError};
use crate::log::{AppendPipe, AsyncSnapshot, SnapshotMeta};
use crate::metrics::{Health, Metrics};
use crate::rdb::RdbVerifier;
use crate::{clock::now_us, log::Log};

/// Everything the agent upstream link needs.
#[derive(Clone)]
pub struct AgentUpstreamCtx {
    /// Our node name, sent in Hello.
    pub name: String,
    pub addr: String,
    pub server_name: String,
    pub endpoint: quinn::Endpoint,
    pub link: LinkSettings,
    pub log: Log,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

/// The pause before retrying after a failed log write.
const LOG_RETRY: Duration = Duration::from_secs(5);

/// Runs the standalone link until shutdown, reconnecting with jittered backoff; an outage is
/// just a longer pause before the next partial resume.
pub async fn run(ctx: AgentUpstreamCtx, shutdown: watch::Receiver<bool>) {
    let conn = Arc::new(LinkConn::new(
        ctx.endpoint.clone(),
        &ctx.addr,
        &ctx.server_name,
    ));
    run_lane(ctx, conn, None, shutdown).await
}

/// Runs one lane's link (`lane = None`: the standalone stream) as a stream on the shared
/// connection `conn`, writing into `ctx.log`, until shutdown; reconnects with jittered
/// backoff. A lane's protocol error ends its stream; the standalone stream's ends the
/// connection (as it owns it).
pub async fn run_lane(
    ctx: AgentUpstreamCtx,
    conn: Arc<LinkConn>,
    lane: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures: u32 = 0;
    let mut first = true;
    // A snapshot transfer cut short, offered to the upstream for resumption on reconnect.
    let mut partial = Held::default();
    loop {
        if !first {
            ctx.metrics.upstream_reconnects.inc();
        }
        first = false;
        let mut streamed = false;
        let result = tokio::select! {
            r = session(&ctx, &conn, lane.as_deref(), &mut streamed, &mut partial) => r,
            _ = shutdown.changed() => break,
        };
        ctx.metrics.upstream_connected.set(0);
        ctx.health.upstream_up.store(false, Ordering::Relaxed);
        if streamed {
            failures = 0;
        }
        // A log that cannot be written (a full disk) is retried every 5 s, as the Redis
        // upstream does: the resume itself succeeds, so the backoff below would restart at
        // ~200 ms and log the same error several times a second.
        let mut log_failed = false;
        match result {
            Ok(()) => tracing::info!(upstream = %ctx.addr, "upstream agent closed the link"),
            Err(UpstreamError::Log(e)) => {
                ctx.health.log_writable.store(false, Ordering::Relaxed);
                tracing::error!(
                    "cannot write the replication log: {e}; link paused, retrying in 5s"
                );
                log_failed = true;
            }
            Err(e) => tracing::warn!(upstream = %ctx.addr, "agent link lost: {e}"),
        }
        failures = failures.saturating_add(1);
        let pause = if log_failed {
            LOG_RETRY
        } else {
            let base = Duration::from_millis((100u64 << failures.min(6)).min(5_000));
            base.mul_f64(rand::rng().random_range(0.5..1.5))
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => break,
        }
    }
    if lane.is_none() {
        ctx.endpoint
            .close(CloseCode::Shutdown.varint(), b"shutting down");
    }
}

fn down_err(e: DownError) -> UpstreamError {
    match e {
        DownError::Protocol(m) => UpstreamError::Protocol(m),
        DownError::Refused(m) => UpstreamError::Refused(m),
    }
}

fn link_err(e: LinkError) -> UpstreamError {
    match e {
        LinkError::Frame(f) => {
            UpstreamError::Protocol(format!("malformed frame from upstream agent: {f}"))
        }
        other => UpstreamError::Io(other.to_string()),
    }
}

fn connect_err(e: ConnectError) -> UpstreamError {
    match e {
        ConnectError::Timeout(target) => {
            UpstreamError::Timeout(format!("QUIC handshake with {target}"))
        }
        ConnectError::Link(l) => link_err(l),
        other => UpstreamError::Io(other.to_string()),
    }
}

async fn session(
    ctx: &AgentUpstreamCtx,
    link: &LinkConn,
    lane: Option<&str>,
    streamed: &mut bool,
    partial: &mut Held,
) -> Result<(), UpstreamError> {
    let conn = link.get().await.map_err(connect_err)?;
    let result = if lane.is_some() {
        stream(ctx, &conn, lane, streamed, partial).await
    } else {
        tokio::select! {
            r = stream(ctx, &conn, lane, streamed, partial) => r,
            _ = crate::metrics::wire::count(&conn, &ctx.metrics, "upstream") => Ok(()),
        }
    };
    if let (Err(UpstreamError::Protocol(msg)), None) = (&result, lane) {
        conn.close(CloseCode::Protocol.varint(), msg.as_bytes());
    }
    result
}

/// Snapshot refresh from the upstream agent: a second connection that asks only for its
/// newest snapshot, stored if it is newer than ours. Returns the snapshot's offset.
pub async fn fetch_snapshot(ctx: &AgentUpstreamCtx) -> Result<u64, UpstreamError> {
    let link = LinkConn::new(ctx.endpoint.clone(), &ctx.addr, &ctx.server_name);
    fetch_lane_snapshot(ctx, &link, None).await
}

/// [`fetch_snapshot`] for one lane, on a connection of its own made by `link`.
pub async fn fetch_lane_snapshot(
    ctx: &AgentUpstreamCtx,
    link: &LinkConn,
    lane: Option<&str>,
) -> Result<u64, UpstreamError> {
    let conn = link.connect().await.map_err(connect_err)?;
    let ours = ctx.log.status().newest_snapshot.map(|s| s.offset);
    let mut down = Down::new(Mode::SnapshotOnly { ours }, None, None);
    let (mut writer, mut reader) = client::open_lane(&conn, &down.hello(&ctx.name, lane))
        .await
        .map_err(connect_err)?;
    let mut held = Held::default();
    let mut pipe = AppendPipe::new(&ctx.log, APPENDS_IN_FLIGHT, APPEND_BYTES_IN_FLIGHT);
    let mut actions = Vec::new();
    let result = loop {
        let Some(frame) = reader.next().await.map_err(link_err)? else {
            break Err(UpstreamError::Closed(ctx.addr.clone()));
        };
        actions.clear();
        if let Err(e) = down.on_frame(frame, now_us(), 0, &mut actions) {
            break Err(down_err(e));
        }
        match apply(
            ctx,
            &mut writer,
            &mut held,
            &mut pipe,
            actions.drain(..),
            &down,
        )
        .await
        {
            Ok(Some(offset)) => break Ok(offset),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
    };
    conn.close(CloseCode::Done.varint(), b"snapshot received");
    result
}

/// The shell's side of a snapshot transfer: the file and the running RDB check. Kept across
/// reconnects with the machine's [`Transfer`] so a cut transfer can resume.
#[derive(Default)]
pub struct Held {
    transfer: Option<Transfer>,
    file: Option<(AsyncSnapshot, RdbVerifier)>,
}

async fn stream(
    ctx: &AgentUpstreamCtx,
    conn: &quinn::Connection,
    lane: Option<&str>,
    streamed: &mut bool,
    held: &mut Held,
) -> Result<(), UpstreamError> {
    // Asked on the writer thread, after every append an earlier (maybe cancelled) session
    // queued, so the resume point is what is really written.
    let current = ctx.log.on_writer(|l| l.current()).await?;
    let mut down = Down::new(Mode::Stream, current, held.transfer.take())
        .with_received_acks(acks_received(negotiated_alpn(conn).as_deref()));
    let result = drive(ctx, conn, lane, streamed, held, &mut down).await;
    held.transfer = down.into_transfer();
    if held.transfer.is_none() {
        held.file = None;
    }
    result
}

async fn drive(
    ctx: &AgentUpstreamCtx,
    conn: &quinn::Connection,
    lane: Option<&str>,
    streamed: &mut bool,
    held: &mut Held,
    down: &mut Down,
) -> Result<(), UpstreamError> {
    let (mut writer, mut reader) = client::open_lane(conn, &down.hello(&ctx.name, lane))
        .await
        .map_err(connect_err)?;
    let mut pipe = AppendPipe::new(&ctx.log, APPENDS_IN_FLIGHT, APPEND_BYTES_IN_FLIGHT);
    let result = drive_frames(
        ctx,
        &mut reader,
        &mut writer,
        streamed,
        held,
        down,
        &mut pipe,
    )
    .await;
    // Appends still queued are written (or fail) before the link is given up.
    let drained = pipe.drain().await.map_err(UpstreamError::from);
    result.and(drained)
}

async fn drive_frames(
    ctx: &AgentUpstreamCtx,
    reader: &mut crate::link::FrameReader<quinn::RecvStream>,
    writer: &mut FrameWriter,
    streamed: &mut bool,
    held: &mut Held,
    down: &mut Down,
    pipe: &mut AppendPipe,
) -> Result<(), UpstreamError> {
    let mut durable_rx = ctx.log.subscribe_durable();
    let mut head_rx = ctx.log.subscribe_head();
    let mut actions = Vec::new();
    loop {
        actions.clear();
        tokio::select! {
            f = reader.next() => {
                let Some(frame) = f.map_err(link_err)? else { return Ok(()) };
                let durable = *durable_rx.borrow();
                down.on_frame(frame, now_us(), durable, &mut actions).map_err(down_err)?;
            }
            _ = durable_rx.changed() => {}
            // A queued append finished: acknowledge what is now written.
            Ok(()) = head_rx.changed(), if pipe.in_flight() > 0 => {}
        };
        pipe.reap()?;
        ctx.metrics.upstream_view.heard(0, 0);
        for a in &actions {
            if matches!(a, DownAction::Online { .. }) {
                online(ctx, streamed);
            }
        }
        apply(ctx, writer, held, pipe, actions.drain(..), down).await?;
        // What is written now (received) and fsynced (durable), if either moved.
        let durable = *durable_rx.borrow_and_update();
        let head = *head_rx.borrow_and_update();
        if let Some(ack) = down.ack(head, durable) {
            apply(ctx, writer, held, pipe, std::iter::once(ack), down).await?;
        }
    }
}

/// Log appends queued on the writer thread at once while the next frames are read, by count
/// and by bytes. Four frames (~600 KB of a backlog's 150 KB frames) left B's loop waiting on a
/// full queue half of a relay while the writer thread was busy a third of it: the queue must
/// cover the writer thread's wake-up and scheduling delays (docs/BENCHMARKS.md, sections 2–3).
/// What is queued is held in memory on top of the stream window.
const APPENDS_IN_FLIGHT: usize = 64;
const APPEND_BYTES_IN_FLIGHT: usize = 4 << 20;

/// Does what the machine asked, in order. Appends are queued on `pipe`; anything else that
/// touches the log or the sync waits for them first. Returns the offset of a refreshed
/// snapshot once it is stored.
async fn apply(
    ctx: &AgentUpstreamCtx,
    writer: &mut FrameWriter,
    held: &mut Held,
    pipe: &mut AppendPipe,
    actions: impl Iterator<Item = DownAction>,
    down: &Down,
) -> Result<Option<u64>, UpstreamError> {
    let m = &ctx.metrics;
    for action in actions {
        let queues = matches!(
            action,
            DownAction::Append { .. }
                | DownAction::Send(_)
                | DownAction::Heard { .. }
                | DownAction::Online { .. }
                | DownAction::NewEpoch { .. }
        );
        if !queues {
            pipe.drain().await?;
        }
        match action {
            DownAction::Send(frame) => writer.send(&frame).await.map_err(link_err)?,
            DownAction::BeginSnapshot(t) => {
                tracing::info!(upstream = %ctx.addr, "full sync ({}): receiving snapshot {}:{}, {} bytes", t.reason, t.replid, t.offset, t.size);
                if ctx.log.current().is_some() && t.reason != "snapshot_refresh" {
                    tracing::warn!(upstream = %ctx.addr, "upstream agent could not resume this log ({}): starting a new epoch", t.reason);
                }
                held.file = None;
                held.file = Some((AsyncSnapshot::begin(&ctx.log).await?, RdbVerifier::new()));
            }
            DownAction::ResumeSnapshot { from } => {
                if held.file.as_ref().map(|f| f.0.written()) != Some(from) {
                    held.file = None;
                    return Err(UpstreamError::Protocol(format!(
                        "snapshot resumed at byte {from}, but this agent's file is gone"
                    )));
                }
                tracing::info!(upstream = %ctx.addr, "resuming the snapshot transfer at byte {from}");
                m.upstream_snapshot_resumes.inc();
            }
            DownAction::SnapshotData(data) => {
                let Some((file, verifier)) = held.file.as_mut() else {
                    return Err(UpstreamError::Protocol(
                        "snapshot data without a file".into(),
                    ));
                };
                verifier.feed(&data);
                let n = data.len() as u64;
                if let Err(e) = file.write(data).await {
                    // A part-written chunk cannot be resumed from.
                    held.file = None;
                    return Err(e.into());
                }
                m.link_stream_bytes
                    .with_label_values(&["upstream", "received"])
                    .inc_by(n);
            }
            DownAction::FinishSnapshot {
                transfer,
                refresh,
                first_sync,
            } => {
                let meta = finish(held.file.take(), &transfer).await?;
                if refresh {
                    let offset = meta.offset;
                    ctx.log.add_snapshot_async(meta).await?;
                    return Ok(Some(offset));
                }
                ctx.log.start_epoch_async(meta).await?;
                let reason = if first_sync {
                    "first_sync"
                } else {
                    "new_epoch"
                };
                m.upstream_full_syncs.with_label_values(&[reason]).inc();
                m.upstream_view.synced(true);
            }
            DownAction::DropSnapshot => held.file = None,
            DownAction::Append { data, timestamp_us } => {
                let n = data.len() as u64;
                pipe.push(data, timestamp_us).await?;
                m.upstream_stream_bytes.inc_by(n);
                m.link_stream_bytes
                    .with_label_values(&["upstream", "received"])
                    .inc_by(n);
            }
            DownAction::SwitchReplid { replid, start } => {
                tracing::info!(upstream = %ctx.addr, "replid switch to {replid} at offset {start}");
                ctx.log.switch_replid_async(replid.clone()).await?;
                m.upstream_replid_switches.inc();
            }
            DownAction::Online { full } => {
                if !full {
                    let offset = down.next_offset().unwrap_or(0);
                    tracing::info!(upstream = %ctx.addr, "partial resync from offset {offset}");
                    m.upstream_partial_syncs.inc();
                    m.upstream_view.synced(false);
                }
            }
            DownAction::Heard {
                head,
                head_timestamp_us,
            } => m.upstream_view.heard(head, head_timestamp_us),
            // The Ack follows from `Down::ack` once the durable offset moves.
            DownAction::Commit { .. } => ctx.log.request_sync(),
            DownAction::NewEpoch { reason } => {
                tracing::warn!(upstream = %ctx.addr, "upstream agent started a new epoch ({reason}); a full sync follows and every downstream replica will need one too");
            }
        }
    }
    Ok(None)
}

/// Checks the RDB's CRC, fsyncs and names the snapshot (size was checked by the machine).
async fn finish(
    file: Option<(AsyncSnapshot, RdbVerifier)>,
    t: &Transfer,
) -> Result<SnapshotMeta, UpstreamError> {
    let (writer, verifier) =
        file.ok_or_else(|| UpstreamError::Protocol("SnapshotEnd without a file".into()))?;
    if writer.written() != t.size {
        return Err(UpstreamError::Protocol(format!(
            "snapshot file holds {} of {} bytes",
            writer.written(),
            t.size
        )));
    }
    let (version, crc_ok) = verifier
        .verdict()
        .map_err(|e| UpstreamError::Protocol(format!("snapshot from upstream agent: {e}")))?;
    if crc_ok == Some(false) {
        return Err(UpstreamError::Protocol(
            "snapshot from upstream agent fails its CRC-64 check".into(),
        ));
    }
    Ok(writer
        .finish(t.replid.clone(), t.offset, version, crc_ok)
        .await?)
}

fn online(ctx: &AgentUpstreamCtx, streamed: &mut bool) {
    *streamed = true;
    ctx.metrics.upstream_connected.set(1);
    ctx.health.upstream_up.store(true, Ordering::Relaxed);
    ctx.health.log_writable.store(true, Ordering::Relaxed);
}
