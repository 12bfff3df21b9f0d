//! One region lane at run time: its log under `data_dir/lanes/<lane>/`, its link (one stream on
//! the shared connection to the site, `Hello` naming the lane), its snapshot refresh, its
//! replica port from `listen.shard_ports`, and its place in the lane map that downstream
//! agents (chains A → B → C) are served from.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{RegionCtx, RegionError};
use crate::log::{Log, LogConfig};
use crate::metrics::Health;
use crate::serve::peers::{Lane, Peers};
use crate::serve::{self, Replicas, ServeCtx};
use crate::upstream::agent::{self as up_agent, AgentUpstreamCtx};
use crate::upstream::refresh;

const MAINTAIN_EVERY: Duration = Duration::from_secs(10);

/// Opens the lane's log, binds its replica port and starts its tasks.
pub async fn start(
    ctx: &RegionCtx,
    name: &str,
    port: u16,
) -> Result<Vec<JoinHandle<()>>, RegionError> {
    let cfg = &ctx.cfg;
    let lcfg = LogConfig {
        dir: ctx.lanes_dir.join(name),
        segment_bytes: cfg.log.segment_bytes,
        max_bytes: cfg.log.max_bytes,
        max_age: cfg.log.max_age,
        fsync: cfg.log.fsync,
        snapshot_after_bytes: cfg.log.snapshot_after,
        keep_page_cache: cfg.log.keep_page_cache,
    };
    let log = tokio::task::spawn_blocking(move || Log::open(lcfg))
        .await
        .map_err(|e| RegionError::Task(e.to_string()))??;
    let metrics = ctx.metrics.new_lane(&cfg.name, name)?;
    let health = Health::new();
    let addr = std::net::SocketAddr::new(cfg.listen_redis.ip(), port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RegionError::Bind {
            lane: name.to_string(),
            addr,
            source,
        })?;
    let status = log.status();
    tracing::info!(lane = %name, port, head = status.head, "region lane opened");
    let up = AgentUpstreamCtx {
        name: cfg.name.clone(),
        addr: ctx.upstream.clone(),
        server_name: ctx.server_name.clone(),
        endpoint: ctx.link.endpoint().clone(),
        link: cfg.link.clone(),
        log: log.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
    };
    let replicas = Arc::new(Replicas::default());
    ctx.replicas
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_string(), replicas.clone());
    ctx.serve_lanes.insert(
        name,
        Lane {
            log: log.clone(),
            peers: Arc::new(Peers::default()),
        },
    );
    let serve_ctx = ServeCtx {
        log: log.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        replicas,
        requirepass: cfg.requirepass.clone(),
        timeout: cfg.serve_timeout,
        max_replicas: cfg.max_replicas,
        username: cfg.username.clone(),
        max_connections: cfg.max_connections,
        connections: Arc::default(),
        upstream: format!("{}#{name}", ctx.upstream),
        shutdown: ctx.shutdown.clone(),
        port: Arc::default(),
    };
    let lane = Some(name.to_string());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(up_agent::run_lane(
        up.clone(),
        ctx.link.clone(),
        lane.clone(),
        ctx.shutdown.clone(),
    )));
    let (link, fetch_ctx) = (ctx.link.clone(), up);
    tasks.push(tokio::spawn(refresh::run_with(
        log.clone(),
        metrics,
        health,
        ctx.shutdown.clone(),
        move || {
            let (c, l, lane) = (fetch_ctx.clone(), link.clone(), lane.clone());
            async move { up_agent::fetch_lane_snapshot(&c, &l, lane.as_deref()).await }
        },
    )));
    tasks.push(tokio::spawn(serve::run(listener, serve_ctx, None)));
    tasks.push(tokio::spawn(maintain(log, ctx.shutdown.clone())));
    Ok(tasks)
}

/// Retention for the lane's log, off the async workers.
async fn maintain(log: Log, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(MAINTAIN_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        let l = log.clone();
        match tokio::task::spawn_blocking(move || l.maintain()).await {
            Ok(Err(e)) => tracing::warn!("lane log retention failed: {e}"),
            Err(e) => tracing::warn!("lane log retention task failed: {e}"),
            Ok(Ok(())) => {}
        }
    }
    let _ = tokio::task::spawn_blocking(move || log.close()).await;
}
