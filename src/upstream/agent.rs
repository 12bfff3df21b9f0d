//! The downstream side of an agent-to-agent link: connect to the upstream agent over QUIC with
//! mutual TLS, say which (replid, offset) this log holds, then write what arrives (snapshot,
//! log frames, replid switches) into the local log and acknowledge the durable offset.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use super::UpstreamError;
use crate::config::LinkSettings;
use crate::link::client::{self, ConnectError, LinkConn};
use crate::link::{
    self, CloseCode, Frame, FrameReader, FrameWriter, LinkError, MAX_FRAME, PROTOCOL_VERSION,
    SNAPSHOT_ONLY,
};
use crate::log::{Log, SnapshotMeta, SnapshotWriter};
use crate::metrics::{Health, Metrics};
use crate::rdb::RdbVerifier;

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
    let mut partial: Option<Incoming> = None;
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
        match result {
            Ok(()) => tracing::info!(upstream = %ctx.addr, "upstream agent closed the link"),
            Err(UpstreamError::Log(e)) => {
                ctx.health.log_writable.store(false, Ordering::Relaxed);
                tracing::error!("cannot write the replication log: {e}; link paused");
            }
            Err(e) => tracing::warn!(upstream = %ctx.addr, "agent link lost: {e}"),
        }
        failures = failures.saturating_add(1);
        let base = Duration::from_millis((100u64 << failures.min(6)).min(5_000));
        let jitter = rand::rng().random_range(0.5..1.5);
        tokio::select! {
            _ = tokio::time::sleep(base.mul_f64(jitter)) => {}
            _ = shutdown.changed() => break,
        }
    }
    if lane.is_none() {
        ctx.endpoint
            .close(CloseCode::Shutdown.varint(), b"shutting down");
    }
}

/// An Error frame is the upstream's refusal; any other frame out of place is a protocol error.
fn unexpected_frame(frame: Frame, during: &str) -> UpstreamError {
    match frame {
        Frame::Error { code, message } => {
            UpstreamError::Refused(format!("upstream agent error {code}: {message}"))
        }
        other => UpstreamError::Protocol(format!("unexpected {} frame {during}", other.name())),
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
    partial: &mut Option<Incoming>,
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

/// Opens the link's stream on `conn` and sends `hello` on it.
async fn open_link(
    conn: &quinn::Connection,
    hello: Frame,
) -> Result<(FrameWriter, FrameReader<quinn::RecvStream>), UpstreamError> {
    client::open_lane(conn, &hello).await.map_err(connect_err)
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
    let (_writer, mut reader) = open_link(
        &conn,
        Frame::Hello {
            version: PROTOCOL_VERSION,
            name: format!("{}{SNAPSHOT_ONLY}", ctx.name),
            replid: None,
            next_offset: 0,
            partial: None,
            lane: lane.map(str::to_string),
        },
    )
    .await?;
    let ours = ctx.log.status().newest_snapshot.map(|s| s.offset);
    let mut incoming: Option<Incoming> = None;
    let result = loop {
        let Some(frame) = reader.next().await.map_err(link_err)? else {
            break Err(UpstreamError::Closed(ctx.addr.clone()));
        };
        match frame {
            Frame::Heartbeat { .. } => {}
            Frame::Full {
                replid,
                offset,
                size,
                reason,
                ..
            } => {
                if ours.is_some_and(|o| o >= offset) {
                    break Err(UpstreamError::Refused(format!(
                        "the upstream agent's newest snapshot (offset {offset}) is not newer than ours"
                    )));
                }
                incoming = Some(Incoming::new(ctx, replid, offset, size, reason)?);
            }
            Frame::SnapshotChunk { data } => Incoming::chunk(&mut incoming, ctx, &data)?,
            Frame::SnapshotEnd => {
                let meta = Incoming::finish(incoming.take())?;
                let offset = meta.offset;
                ctx.log.add_snapshot(meta)?;
                break Ok(offset);
            }
            other => break Err(unexpected_frame(other, "while fetching a snapshot")),
        }
    };
    conn.close(CloseCode::Done.varint(), b"snapshot received");
    result
}

/// A snapshot being received (kept across reconnects so the transfer can resume).
struct Incoming {
    writer: SnapshotWriter,
    verifier: RdbVerifier,
    replid: String,
    offset: u64,
    size: u64,
    reason: String,
}

impl Incoming {
    fn new(
        ctx: &AgentUpstreamCtx,
        replid: String,
        offset: u64,
        size: u64,
        reason: String,
    ) -> Result<Incoming, UpstreamError> {
        Ok(Incoming {
            writer: ctx.log.begin_snapshot()?,
            verifier: RdbVerifier::new(),
            replid,
            offset,
            size,
            reason,
        })
    }

    /// What to offer the upstream in Hello.
    fn offer(&self) -> link::PartialSnapshot {
        link::PartialSnapshot {
            replid: self.replid.clone(),
            offset: self.offset,
            size: self.size,
            have: self.writer.written(),
        }
    }

    /// Is this the transfer `Full` announces (so it may be resumed)?
    fn is(&self, replid: &str, offset: u64, size: u64) -> bool {
        self.replid.eq_ignore_ascii_case(replid) && self.offset == offset && self.size == size
    }

    fn chunk(
        this: &mut Option<Incoming>,
        ctx: &AgentUpstreamCtx,
        data: &[u8],
    ) -> Result<(), UpstreamError> {
        let inc = this
            .as_mut()
            .ok_or_else(|| UpstreamError::Protocol("SnapshotChunk without Full".into()))?;
        if inc.writer.written() + data.len() as u64 > inc.size {
            *this = None;
            return Err(UpstreamError::Protocol(
                "snapshot larger than announced".into(),
            ));
        }
        inc.verifier.feed(data);
        if let Err(e) = inc.writer.write(data) {
            // A part-written chunk cannot be resumed from.
            *this = None;
            return Err(e.into());
        }
        ctx.metrics
            .link_stream_bytes
            .with_label_values(&["upstream", "received"])
            .inc_by(data.len() as u64);
        Ok(())
    }

    /// Checks size and CRC, fsyncs and names the snapshot.
    fn finish(this: Option<Incoming>) -> Result<SnapshotMeta, UpstreamError> {
        let inc = this.ok_or_else(|| UpstreamError::Protocol("SnapshotEnd without Full".into()))?;
        if inc.writer.written() != inc.size {
            return Err(UpstreamError::Protocol(format!(
                "snapshot ended at {} of {} bytes",
                inc.writer.written(),
                inc.size
            )));
        }
        let (version, crc_ok) = inc
            .verifier
            .verdict()
            .map_err(|e| UpstreamError::Protocol(format!("snapshot from upstream agent: {e}")))?;
        if crc_ok == Some(false) {
            return Err(UpstreamError::Protocol(
                "snapshot from upstream agent fails its CRC-64 check".into(),
            ));
        }
        let (writer, replid, offset) = (inc.writer, inc.replid, inc.offset);
        Ok(tokio::task::block_in_place(|| {
            writer.finish(&replid, offset, version, crc_ok)
        })?)
    }
}

async fn stream(
    ctx: &AgentUpstreamCtx,
    conn: &quinn::Connection,
    lane: Option<&str>,
    streamed: &mut bool,
    incoming: &mut Option<Incoming>,
) -> Result<(), UpstreamError> {
    let position = ctx.log.current();
    let (mut writer, mut reader) = open_link(
        conn,
        Frame::Hello {
            version: PROTOCOL_VERSION,
            name: ctx.name.clone(),
            replid: position.as_ref().map(|p| p.0.clone()),
            next_offset: position.as_ref().map(|p| p.1 + 1).unwrap_or(0),
            partial: incoming.as_ref().map(Incoming::offer),
            lane: lane.map(str::to_string),
        },
    )
    .await?;
    let mut durable_rx = ctx.log.subscribe_durable();
    // Set by a Full that names the transfer we hold: a SnapshotFrom (resume) or the first
    // chunk (start over) comes next.
    let mut may_resume = false;
    loop {
        let frame = tokio::select! {
            f = reader.next() => f.map_err(link_err)?,
            _ = durable_rx.changed() => {
                let durable = *durable_rx.borrow_and_update();
                writer.send(&Frame::Ack { durable }).await.map_err(link_err)?;
                continue;
            }
        };
        let Some(frame) = frame else { return Ok(()) };
        ctx.metrics.upstream_view.heard(0, 0);
        match frame {
            Frame::Continue { replid, offset } => {
                let expect = ctx.log.current().map(|c| c.1 + 1).unwrap_or(0);
                if offset != expect {
                    return Err(UpstreamError::Protocol(format!(
                        "Continue at {offset}, but this log needs {expect}"
                    )));
                }
                tracing::info!(upstream = %ctx.addr, "partial resync from offset {offset} (upstream replid {replid})");
                // A snapshot transfer cut short earlier is not needed any more.
                *incoming = None;
                ctx.metrics.upstream_partial_syncs.inc();
                ctx.metrics.upstream_view.synced(false);
                online(ctx, streamed);
                let durable = *durable_rx.borrow();
                writer
                    .send(&Frame::Ack { durable })
                    .await
                    .map_err(link_err)?;
            }
            Frame::NewEpoch { reason } => {
                tracing::warn!(upstream = %ctx.addr, "upstream agent started a new epoch ({reason}); a full sync follows and every downstream replica will need one too");
            }
            Frame::Full {
                replid,
                offset,
                rdb_version,
                size,
                reason,
            } => {
                tracing::info!(upstream = %ctx.addr, "full sync ({reason}): receiving snapshot {replid}:{offset}, {size} bytes, rdb v{rdb_version}");
                if ctx.log.current().is_some() {
                    tracing::warn!(upstream = %ctx.addr, "upstream agent could not resume this log ({reason}): starting a new epoch");
                }
                may_resume = incoming
                    .as_ref()
                    .is_some_and(|i| i.is(&replid, offset, size));
                if !may_resume {
                    *incoming = Some(Incoming::new(ctx, replid, offset, size, reason)?);
                }
            }
            Frame::SnapshotFrom { from } => {
                let have = incoming.as_ref().map(|i| i.writer.written());
                if !may_resume || have != Some(from) {
                    *incoming = None;
                    return Err(UpstreamError::Protocol(format!(
                        "snapshot resumed at byte {from}, but this agent holds {have:?} of it"
                    )));
                }
                may_resume = false;
                tracing::info!(upstream = %ctx.addr, "resuming the snapshot transfer at byte {from}");
                ctx.metrics.upstream_snapshot_resumes.inc();
            }
            Frame::SnapshotChunk { data } => {
                if std::mem::take(&mut may_resume) {
                    // The upstream sends the whole snapshot again: start over.
                    if let Some(i) = incoming.take() {
                        *incoming = Some(Incoming::new(ctx, i.replid, i.offset, i.size, i.reason)?);
                    }
                }
                Incoming::chunk(incoming, ctx, &data)?
            }
            Frame::SnapshotEnd => {
                let reason_first = incoming.as_ref().is_some_and(|i| i.reason == "first_sync");
                let meta = Incoming::finish(incoming.take())?;
                ctx.log.start_epoch(meta)?;
                let reason = if reason_first {
                    "first_sync"
                } else {
                    "new_epoch"
                };
                ctx.metrics
                    .upstream_full_syncs
                    .with_label_values(&[reason])
                    .inc();
                ctx.metrics.upstream_view.synced(true);
                online(ctx, streamed);
            }
            Frame::Log {
                offset,
                timestamp_us,
                compressed,
                raw_len,
                data,
            } => {
                let payload = link::log_payload(compressed, raw_len, &data, MAX_FRAME)
                    .map_err(|e| UpstreamError::Protocol(format!("log frame at {offset}: {e}")))?;
                append(ctx, offset, timestamp_us, payload)?;
            }
            Frame::Heartbeat {
                head,
                head_timestamp_us,
                ..
            } => {
                ctx.metrics.upstream_view.heard(head, head_timestamp_us);
            }
            Frame::ReplidSwitch { replid, start } => {
                let next = ctx.log.current().map(|c| c.1 + 1).unwrap_or(0);
                if start != next {
                    return Err(UpstreamError::Protocol(format!(
                        "replid switch at {start}, but this log is at {next}"
                    )));
                }
                tracing::info!(upstream = %ctx.addr, "replid switch to {replid} at offset {start}");
                ctx.log.switch_replid(&replid)?;
                ctx.metrics.upstream_replid_switches.inc();
            }
            other => return Err(unexpected_frame(other, "from upstream agent")),
        }
    }
}

fn online(ctx: &AgentUpstreamCtx, streamed: &mut bool) {
    *streamed = true;
    ctx.metrics.upstream_connected.set(1);
    ctx.health.upstream_up.store(true, Ordering::Relaxed);
    ctx.health.log_writable.store(true, Ordering::Relaxed);
}

/// Appends stream bytes that start at `offset`, skipping any part this log already holds.
fn append(
    ctx: &AgentUpstreamCtx,
    offset: u64,
    ts: u64,
    mut payload: bytes::Bytes,
) -> Result<(), UpstreamError> {
    let next = ctx
        .log
        .current()
        .map(|c| c.1 + 1)
        .ok_or(UpstreamError::Protocol(
            "log frame before any snapshot".into(),
        ))?;
    let end = offset + payload.len() as u64;
    if offset > next {
        return Err(UpstreamError::Protocol(format!(
            "log frame at {offset} leaves a gap after {next}"
        )));
    }
    if end <= next {
        return Ok(());
    }
    let skip = (next - offset) as usize;
    let data = payload.split_off(skip);
    let n = data.len() as u64;
    ctx.log.append(data, ts)?;
    ctx.metrics.upstream_stream_bytes.inc_by(n);
    ctx.metrics
        .link_stream_bytes
        .with_label_values(&["upstream", "received"])
        .inc_by(n);
    ctx.metrics.upstream_view.heard(end - 1, ts);
    Ok(())
}
