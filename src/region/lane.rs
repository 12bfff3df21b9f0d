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
use crate::cluster::run::ShardSource;
use crate::cluster::status::ShardRow;
use crate::cluster::SlotMap;
use crate::log::{Log, LogConfig};
use crate::metrics::{Health, Metrics};
use crate::serve::peers::{Lane, Peers};
use crate::serve::{self, Replicas, ServeCtx};
use crate::upstream::agent::{self as up_agent, AgentUpstreamCtx};
use crate::upstream::refresh;

const MAINTAIN_EVERY: Duration = Duration::from_secs(10);

/// What `/status` shows of a region lane: its log and metrics, its slots as the site's slot
/// map last gave them.
struct StatusRow {
    name: String,
    port: u16,
    upstream: String,
    log: Log,
    metrics: Arc<Metrics>,
    map: watch::Receiver<Option<SlotMap>>,
}

impl ShardSource for StatusRow {
    fn row(&self) -> ShardRow {
        self.metrics.refresh_from_log(&self.log);
        let s = self.log.status();
        let map = self.map.borrow();
        let entry = map
            .as_ref()
            .and_then(|m| m.lanes.iter().find(|l| l.name == self.name));
        let connected = self.metrics.upstream_connected.get() == 1;
        let state = match entry {
            None => "not in the site's slot map: serving what it holds",
            Some(_) if connected => "streaming",
            Some(_) => "connecting",
        };
        ShardRow {
            name: self.name.clone(),
            alias: entry.map(|l| l.alias.clone()).unwrap_or_default(),
            slots: entry
                .map(|l| crate::cluster::run::ranges_json(&l.ranges))
                .unwrap_or_default(),
            replica_port: self.port,
            upstream: self.upstream.clone(),
            head_offset: s.head,
            durable_offset: s.durable,
            lag_bytes: self.metrics.lag_bytes.get().max(0) as u64,
            lag_seconds: self.metrics.lag_seconds.get(),
            state: state.to_string(),
        }
    }
}

/// Opens the lane's log, binds its replica port and starts its tasks.
pub async fn start(
    ctx: &RegionCtx,
    name: &str,
    port: u16,
) -> Result<Vec<JoinHandle<()>>, RegionError> {
    let cfg = &ctx.cfg;
    let log = Log::open_async(LogConfig::new(ctx.lanes_dir.join(name), &cfg.log)).await?;
    let metrics = ctx.metrics.new_lane(&cfg.name, name)?;
    let health = Health::new();
    ctx.lane_health
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(health.clone());
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
    ctx.status.add_source(Arc::new(StatusRow {
        name: name.to_string(),
        port,
        upstream: format!("{}#{name}", ctx.upstream),
        log: log.clone(),
        metrics: metrics.clone(),
        map: ctx.serve_lanes.slot_map().subscribe(),
    }));
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
