//! A cluster-mode region agent: `upstream.agent` names a cluster-mode site agent and
//! `listen.shard_ports` gives the lanes' replica ports. It follows the slot map on the control
//! stream, creates one lane per lane of the map (same `data_dir/lanes/<lane>/` layout as the
//! site, ports persisted in creation order), runs every lane's link as its own QUIC stream on
//! the one connection to the site, serves each lane on its replica port, and answers the
//! read-only cluster endpoint on `listen.redis`.
//!
//! - [`ports`]: the persisted lanes and their ports (pure assignment, blocking load/save).
//! - [`lane`]: one running lane.

pub mod lane;
pub mod ports;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::run::Lanes;
use crate::cluster::slotmap_codec;
use crate::config::{Config, PortRange};
use crate::link::client::{self, LinkConn};
use crate::link::control::{self, CONTROL_LANE};
use crate::link::{Frame, PROTOCOL_VERSION};
use crate::log::LogError;
use crate::metrics::{Health, Metrics, MetricsError};
use crate::serve::cluster_port::LaneReplicas;
use crate::serve::peers::LaneMap;
use ports::RegionLanes;

/// Why the region side could not start a lane.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("lane log: {0}")]
    Log(#[from] LogError),
    #[error("lane metrics: {0}")]
    Metrics(#[from] MetricsError),
    #[error("lane {lane}: cannot listen on {addr}: {source}")]
    Bind {
        lane: String,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("lane registry: {0}")]
    Registry(String),
    #[error("background task: {0}")]
    Task(String),
    #[error("QUIC: {0}")]
    Link(#[from] crate::link::LinkError),
    #[error("upstream.agent needs the [tls] section")]
    NoTls,
}

/// True for a cluster-mode region agent: `upstream.agent` with `listen.shard_ports`.
pub fn is_region(cfg: &Config) -> bool {
    matches!(cfg.source, crate::config::Source::Agent { .. }) && cfg.shard_ports.is_some()
}

/// What the region's tasks share.
#[derive(Clone)]
pub struct RegionCtx {
    pub cfg: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// `host:port` of the site agent and the name its certificate carries.
    pub upstream: String,
    pub server_name: String,
    /// The one connection to the site agent, shared by the control stream and every lane.
    pub link: Arc<LinkConn>,
    pub lanes_dir: PathBuf,
    pub ports: PortRange,
    /// Lanes served to downstream agents (chains), and the slot map as last received (also
    /// served to them on their control streams).
    pub serve_lanes: LaneMap,
    /// Each lane's replicas, for the cluster endpoint.
    pub replicas: LaneReplicas,
    /// The lanes `/status` lists.
    pub status: Lanes,
    /// The node's health (`/readyz`): up while every lane streams.
    pub health: Arc<Health>,
    /// Each running lane's health, in start order.
    pub lane_health: Arc<std::sync::Mutex<Vec<Arc<Health>>>>,
    pub shutdown: watch::Receiver<bool>,
}

/// What the region shares with the rest of the agent: the lanes served to downstream agents
/// (and the slot map), each lane's replicas (for the cluster endpoint), the `/status` rows.
pub struct RegionShared {
    pub serve_lanes: LaneMap,
    pub replicas: LaneReplicas,
    pub status: Lanes,
    /// The node's health behind `/readyz`, driven by the lanes.
    pub health: Arc<Health>,
}

/// Builds the region's context from the config (a QUIC client endpoint whose connection
/// window covers every lane's stream window, so a lane that is behind cannot take the
/// connection's whole window from the others), runs it with [`spawn`] and waits for its tasks
/// (they end at shutdown).
pub async fn run(
    cfg: &Config,
    (addr, server_name): (&str, &str),
    metrics: Arc<Metrics>,
    shared: RegionShared,
    shutdown: watch::Receiver<bool>,
) -> Result<(), RegionError> {
    let RegionShared {
        serve_lanes,
        replicas,
        status,
        health,
    } = shared;
    let tls = cfg.tls.as_ref().ok_or(RegionError::NoTls)?;
    let ports = cfg.shard_ports.ok_or(RegionError::Registry(
        "listen.shard_ports is required for a cluster-mode region agent".into(),
    ))?;
    let mut transport = cfg.link.transport.clone();
    let lanes = u64::try_from(ports.len())
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    transport.conn_window = transport.stream_window.saturating_mul(lanes);
    let endpoint = crate::link::quic::client_endpoint(tls, &transport)?;
    let ctx = RegionCtx {
        cfg: Arc::new(cfg.clone()),
        metrics,
        upstream: addr.to_string(),
        server_name: server_name.to_string(),
        link: Arc::new(LinkConn::new(endpoint, addr, server_name)),
        lanes_dir: cfg.data_dir.join("lanes"),
        ports,
        serve_lanes,
        replicas,
        status,
        health,
        lane_health: Arc::default(),
        shutdown,
    };
    for t in spawn(ctx).await? {
        if let Err(e) = t.await {
            tracing::error!("region task: {e}");
        }
    }
    Ok(())
}

/// Starts the persisted lanes, the control stream follower and the lane keeper; returns
/// their tasks. Lanes from the registry start before the site is reachable, so region
/// replicas are served what is on disk during an outage.
pub async fn spawn(ctx: RegionCtx) -> Result<Vec<JoinHandle<()>>, RegionError> {
    let dir = ctx.lanes_dir.clone();
    let (registry, map) = tokio::task::spawn_blocking(move || {
        RegionLanes::load(&dir).map(|r| (r, ports::load_map(&dir)))
    })
    .await
    .map_err(|e| RegionError::Task(e.to_string()))?
    .map_err(RegionError::Registry)?;
    if map.is_some() {
        ctx.serve_lanes.slot_map().send_replace(map);
    }
    let mut tasks = Vec::new();
    let mut started = HashSet::new();
    for l in &registry.lanes {
        if let Some(port) = l.port {
            tasks.extend(lane::start(&ctx, &l.name, port).await?);
            started.insert(l.name.clone());
        }
    }
    tasks.push(tokio::spawn(follow_control(ctx.clone())));
    tasks.push(tokio::spawn(ready(ctx.clone())));
    tasks.push(tokio::spawn(keep_lanes(ctx, registry, started)));
    Ok(tasks)
}

/// Keeps the node's health in step with its lanes: ready only while there is a lane and
/// every lane streams from the site (a lane that never synced, or whose link is down, makes
/// the node not ready) and every lane's log is writable.
async fn ready(ctx: RegionCtx) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut shutdown = ctx.shutdown.clone();
    let mut tick = tokio::time::interval(READY_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let lanes = ctx
            .lane_health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let up = !lanes.is_empty() && lanes.iter().all(|h| h.upstream_up.load(Relaxed));
        let writable = lanes.iter().all(|h| h.log_writable.load(Relaxed));
        ctx.health.upstream_up.store(up, Relaxed);
        ctx.health.log_writable.store(writable, Relaxed);
    }
}

/// How often the node's readiness is recomputed from its lanes.
const READY_POLL: Duration = Duration::from_millis(250);

/// Follows the control stream on the shared connection, reconnecting with jittered backoff.
async fn follow_control(ctx: RegionCtx) {
    let mut shutdown = ctx.shutdown.clone();
    let idle = (ctx.cfg.link.heartbeat * 10).max(Duration::from_secs(10));
    let mut failures: u32 = 0;
    loop {
        let r = tokio::select! {
            r = control_session(&ctx, idle) => r,
            _ = shutdown.changed() => return,
        };
        match r {
            Ok(()) => return,
            Err(e) => tracing::warn!(upstream = %ctx.upstream, "control stream: {e}"),
        }
        failures = failures.saturating_add(1);
        let base = Duration::from_millis((100u64 << failures.min(6)).min(5_000));
        let jitter = rand::rng().random_range(0.5..1.5);
        tokio::select! {
            _ = tokio::time::sleep(base.mul_f64(jitter)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn control_session(ctx: &RegionCtx, idle: Duration) -> Result<(), String> {
    let conn = ctx.link.get().await.map_err(|e| e.to_string())?;
    let hello = Frame::Hello {
        version: PROTOCOL_VERSION,
        name: ctx.cfg.name.clone(),
        replid: None,
        next_offset: 0,
        partial: None,
        lane: Some(CONTROL_LANE.to_string()),
    };
    let (mut writer, reader) = client::open_lane(&conn, &hello)
        .await
        .map_err(|e| e.to_string())?;
    control::follow(
        reader.into_inner(),
        writer.get_mut(),
        ctx.serve_lanes.slot_map(),
        idle,
        ctx.shutdown.clone(),
    )
    .await
    .map_err(|e| e.to_string())
}

/// Creates the lanes each new map names (port assigned and persisted first) and persists the
/// map; lanes that leave the map keep running and serving what they hold.
async fn keep_lanes(ctx: RegionCtx, mut registry: RegionLanes, mut started: HashSet<String>) {
    let mut maps = ctx.serve_lanes.slot_map().subscribe();
    let mut shutdown = ctx.shutdown.clone();
    let mut lane_tasks: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let Some(map) = maps.borrow_and_update().clone() else {
            tokio::select! {
                r = maps.changed() => if r.is_err() { break } else { continue },
                _ = shutdown.changed() => break,
            }
        };
        let added = registry.adopt(&map, ctx.ports);
        let (dir, reg, bytes) = (
            ctx.lanes_dir.clone(),
            registry.clone(),
            slotmap_codec::encode(&map),
        );
        let saved = tokio::task::spawn_blocking(move || {
            reg.save(&dir)?;
            ports::write(&dir, ports::MAP_FILE, &bytes)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        match saved {
            Err(e) => tracing::error!("cannot persist the region lanes: {e}; new lanes wait"),
            Ok(()) => {
                if !added.is_empty() {
                    tracing::info!(
                        version = map.version,
                        "slot map names new lanes: {}",
                        added
                            .iter()
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                for l in &registry.lanes {
                    let Some(port) = l.port else { continue };
                    if started.contains(&l.name) {
                        continue;
                    }
                    match lane::start(&ctx, &l.name, port).await {
                        Ok(t) => {
                            lane_tasks.extend(t);
                            started.insert(l.name.clone());
                        }
                        Err(e) => tracing::error!(lane = %l.name, "cannot start lane: {e}"),
                    }
                }
            }
        }
        tokio::select! {
            r = maps.changed() => if r.is_err() { break },
            _ = shutdown.changed() => break,
        }
    }
    for t in lane_tasks {
        let _ = t.await;
    }
}
