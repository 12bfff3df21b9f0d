//! Wires the log, the upstream link, the replica port and the admin listener together, with
//! one shutdown path (SIGTERM/SIGINT → stop accepting → stop tasks → final fsync).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{AckPolicy, Config, Source};
use crate::link::{quic, LinkError};
use crate::log::{Log, LogConfig, LogError};
use crate::metrics::admin::{self, AdminState};
use crate::metrics::{Health, Metrics, MetricsError};
use crate::serve::agent::{self as serve_agent, AgentServeCtx};
use crate::serve::cluster_port::{self, ClusterEndpoint, LaneReplicas};
use crate::serve::peers::{LaneMap, Peers};
use crate::serve::{self, Replicas, ServeCtx};
use crate::upstream::agent::{self as up_agent, AgentUpstreamCtx};
use crate::upstream::redis::UpstreamCtx;
use crate::upstream::{redis as up_redis, refresh};

/// Why the agent could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Log(#[from] LogError),
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Metrics(#[from] MetricsError),
    #[error("signal handling: {0}")]
    Signal(std::io::Error),
    #[error("QUIC: {0}")]
    Link(#[from] LinkError),
    #[error("{0} needs the [tls] section")]
    NoTls(&'static str),
    #[error("region lanes: {0}")]
    Region(#[from] crate::region::RegionError),
}

const MAINTAIN_EVERY: Duration = Duration::from_secs(10);
/// How long tasks get to finish after SIGTERM; SIGINT (an operator's Ctrl-C) waits less.
const GRACE: Duration = Duration::from_secs(10);
const GRACE_INT: Duration = Duration::from_secs(2);

/// Runs an agent until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), AppError> {
    let log = Log::open(LogConfig {
        dir: cfg.data_dir.clone(),
        segment_bytes: cfg.log.segment_bytes,
        max_bytes: cfg.log.max_bytes,
        max_age: cfg.log.max_age,
        fsync: cfg.log.fsync,
        snapshot_after_bytes: cfg.log.snapshot_after,
        keep_page_cache: cfg.log.keep_page_cache,
    })?;
    let status = log.status();
    tracing::info!(
        name = %cfg.name,
        dir = %cfg.data_dir.display(),
        epoch = status.epoch,
        first = status.first_valid,
        head = status.head,
        "replication log opened"
    );
    let metrics = Metrics::new(&cfg.name)?;
    let fsync_hist = metrics.log_fsync_seconds.clone();
    log.set_fsync_observer(move |d| fsync_hist.observe(d.as_secs_f64()));
    let health = Health::new();
    let replica_listener = TcpListener::bind(cfg.listen_redis)
        .await
        .map_err(|source| AppError::Bind {
            what: "listen.redis",
            addr: cfg.listen_redis,
            source,
        })?;
    let admin_listener = TcpListener::bind(cfg.listen_admin)
        .await
        .map_err(|source| AppError::Bind {
            what: "listen.admin",
            addr: cfg.listen_admin,
            source,
        })?;
    let replica_port = replica_listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or(cfg.listen_redis.port());
    tracing::info!(replicas = %cfg.listen_redis, admin = %cfg.listen_admin, "listening");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let peers = Arc::new(Peers::default());
    let lane_map = LaneMap::default();
    let mut tasks = Vec::new();
    // A cluster-mode region agent: lanes learnt from the site agent's slot map.
    let region_replicas: Option<LaneReplicas> = match (&cfg.source, cfg.shard_ports) {
        (Source::Agent { .. }, Some(_)) => Some(LaneReplicas::default()),
        _ => None,
    };

    // The QUIC listener for downstream agents.
    if let Some(listen) = cfg.listen_agent {
        let tls = cfg.tls.as_ref().ok_or(AppError::NoTls("listen.agent"))?;
        let endpoint = quic::server_endpoint(listen, tls, &cfg.link.transport)?;
        tracing::info!(agents = %listen, "listening for downstream agents (QUIC, mutual TLS)");
        let ctx = AgentServeCtx {
            log: log.clone(),
            metrics: metrics.clone(),
            peers: peers.clone(),
            lanes: lane_map.clone(),
            max_agents: cfg.max_agents,
            link: cfg.link.clone(),
            shutdown: shutdown_rx.clone(),
        };
        tasks.push(tokio::spawn(serve_agent::run(endpoint, ctx)));
    }

    // The upstream: a Redis master, a Redis Cluster (one lane per shard), or another agent.
    let lanes = (cfg.cluster.is_some() || region_replicas.is_some())
        .then(crate::cluster::run::Lanes::default);
    let upstream_name = match &cfg.source {
        Source::Redis if cfg.cluster.is_some() => {
            let ctx = crate::cluster::run::ClusterCtx {
                cfg: cfg.clone(),
                metrics: metrics.clone(),
                health: health.clone(),
                lanes: lanes.clone().unwrap_or_default(),
                serve: lane_map.clone(),
            };
            tasks.push(tokio::spawn(crate::cluster::run::run_logged(
                ctx,
                shutdown_rx.clone(),
            )));
            "cluster".to_string()
        }
        Source::Redis => {
            let up_ctx = UpstreamCtx {
                cfg: cfg.upstream.clone(),
                listening_port: replica_port,
                log: log.clone(),
                metrics: metrics.clone(),
                health: health.clone(),
                remote_ack: (cfg.ack == AckPolicy::Remote).then(|| peers.subscribe_remote_ack()),
                tls: cfg
                    .upstream_tls
                    .as_ref()
                    .map(crate::redistls::Connector::new)
                    .transpose()?,
            };
            tasks.push(tokio::spawn(up_redis::run(
                up_ctx.clone(),
                shutdown_rx.clone(),
            )));
            tasks.push(tokio::spawn(refresh::run(up_ctx, shutdown_rx.clone())));
            cfg.upstream.redis.clone()
        }
        Source::Agent { addr, server_name } if region_replicas.is_some() => {
            let tls = cfg.tls.as_ref().ok_or(AppError::NoTls("upstream.agent"))?;
            tasks.extend(
                crate::region::spawn_region(
                    &cfg,
                    tls,
                    (addr, server_name),
                    metrics.clone(),
                    crate::region::RegionShared {
                        serve_lanes: lane_map.clone(),
                        replicas: region_replicas.clone().unwrap_or_default(),
                        status: lanes.clone().unwrap_or_default(),
                    },
                    shutdown_rx.clone(),
                )
                .await?,
            );
            addr.clone()
        }
        Source::Agent { addr, server_name } => {
            let tls = cfg.tls.as_ref().ok_or(AppError::NoTls("upstream.agent"))?;
            let endpoint = quic::client_endpoint(tls, &cfg.link.transport)?;
            let ctx = AgentUpstreamCtx {
                name: cfg.name.clone(),
                addr: addr.clone(),
                server_name: server_name.clone(),
                endpoint,
                link: cfg.link.clone(),
                log: log.clone(),
                metrics: metrics.clone(),
                health: health.clone(),
            };
            let fetch_ctx = ctx.clone();
            tasks.push(tokio::spawn(refresh::run_with(
                log.clone(),
                metrics.clone(),
                health.clone(),
                shutdown_rx.clone(),
                move || {
                    let c = fetch_ctx.clone();
                    async move { up_agent::fetch_snapshot(&c).await }
                },
            )));
            tasks.push(tokio::spawn(up_agent::run(ctx, shutdown_rx.clone())));
            addr.clone()
        }
    };
    let serve_ctx = ServeCtx {
        log: log.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        replicas: Arc::new(Replicas::default()),
        requirepass: cfg.requirepass.clone(),
        timeout: cfg.serve_timeout,
        max_replicas: cfg.max_replicas,
        username: cfg.username.clone(),
        max_connections: cfg.max_connections,
        connections: Arc::default(),
        upstream: upstream_name,
        shutdown: shutdown_rx.clone(),
        port: Arc::default(),
    };
    let admin_state = AdminState {
        metrics: metrics.clone(),
        health: health.clone(),
        log: log.clone(),
        node: cfg.name.clone(),
        upstream_kind: match cfg.source {
            Source::Redis if cfg.cluster.is_some() => "cluster",
            Source::Redis => "redis",
            Source::Agent { .. } => "agent",
        },
        upstream_addr: serve_ctx.upstream.clone(),
        replicas: serve_ctx.replicas.clone(),
        peers: peers.clone(),
        cluster: lanes,
    };
    if let (Some(addr), Some(tls)) = (cfg.listen_redis_tls, &cfg.serve_tls) {
        let acceptor = crate::redistls::acceptor(tls)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind {
                what: "listen.redis_tls",
                addr,
                source,
            })?;
        tracing::info!(replicas_tls = %addr, "listening for TLS replicas");
        tasks.push(tokio::spawn(serve::run(
            listener,
            serve_ctx.clone(),
            Some(acceptor),
        )));
    }
    match region_replicas {
        Some(replicas) => {
            let ep = ClusterEndpoint {
                my_id: crate::serve::cluster::node_id(&cfg.name),
                my_addr: cluster_port::my_addr(cfg.listen_redis),
                map: lane_map.slot_map().subscribe(),
                lanes: replicas,
                requirepass: cfg.requirepass.clone(),
                timeout: cfg.serve_timeout,
            };
            tasks.push(tokio::spawn(cluster_port::run(
                replica_listener,
                ep,
                shutdown_rx.clone(),
            )));
        }
        None => tasks.push(tokio::spawn(serve::run(replica_listener, serve_ctx, None))),
    }
    tasks.push(tokio::spawn(admin::serve(
        admin_listener,
        admin_state,
        shutdown_rx.clone(),
    )));
    tasks.push(tokio::spawn(maintain(
        log.clone(),
        health.clone(),
        shutdown_rx.clone(),
    )));

    let grace = wait_for_signal().await?;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let _ = tokio::time::timeout(grace, async {
        for t in tasks {
            let _ = t.await;
        }
    })
    .await;
    log.close()?;
    tracing::info!("log flushed; bye");
    Ok(())
}

async fn maintain(log: Log, health: Arc<Health>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(MAINTAIN_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = log.maintain() {
            tracing::warn!("log retention failed: {e}");
            health
                .log_writable
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Waits for SIGTERM or SIGINT; returns the grace period that signal gets.
async fn wait_for_signal() -> Result<Duration, AppError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(AppError::Signal)?;
    let mut int = signal(SignalKind::interrupt()).map_err(AppError::Signal)?;
    Ok(tokio::select! {
        _ = term.recv() => GRACE,
        _ = int.recv() => GRACE_INT,
    })
}
