//! The QUIC side for downstream agents: accept mutually authenticated connections, route each
//! stream by its Hello (the control stream, a lane, or the standalone stream) and register the
//! peer; [`super::agent_stream`] runs a lane stream's session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::timeout;

use super::peers::{LaneMap, PeerInfo, PeerState, Peers};
use crate::config::LinkSettings;
use crate::link::{quic, CloseCode, Frame, FrameReader, FrameWriter, LinkError, MAX_FRAME};
use crate::log::{Log, LogError};
use crate::metrics::Metrics;

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

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
            super::agent_stream::session(
                conn,
                hello,
                writer,
                reader,
                name,
                registered.id,
                &lane_ctx,
            )
            .await
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
            received: 0,
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

pub(super) fn bad_frames(e: LinkError) -> AgentServeError {
    match e {
        LinkError::Frame(f) => AgentServeError::Protocol(format!("malformed frame: {f}")),
        other => AgentServeError::Link(other),
    }
}

#[cfg(test)]
#[path = "agent_lanes_tests.rs"]
mod lanes_tests;
