//! Wires the log, the upstream link, the replica port and the admin listener together:
//! open → bind → spawn upstream → spawn serving → supervise (a `JoinSet` that reports a task
//! ending early or panicking), with one shutdown path (SIGTERM/SIGINT or a task's end → stop
//! accepting → stop tasks → final fsync).

use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::dr::repoint::{self, RepointCmd, RepointError, UpstreamTarget};
use crate::dr::supervisor::{self, UpstreamDeps};
use crate::link::{quic, LinkError};
use crate::log::{Log, LogConfig, LogError};
use crate::metrics::admin::{self, AdminState};
use crate::metrics::status::{ActiveUpstream, NodeState};
use crate::metrics::{Health, Metrics, MetricsError};
use crate::serve::agent::{self as serve_agent, AgentServeCtx};
use crate::serve::cluster_port::{self, ClusterEndpoint, LaneReplicas};
use crate::serve::peers::{LaneMap, Peers};
use crate::serve::{self, Replicas, ServeCtx};
use crate::tasks::Tasks;

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
    #[error("upstream override: {0}")]
    Override(#[from] RepointError),
    #[error("{0}")]
    Task(String),
    #[error("apply: {0}")]
    Apply(String),
    #[error("{0}")]
    Cluster(#[from] crate::cluster::run::ClusterError),
}

const MAINTAIN_EVERY: Duration = Duration::from_secs(10);
/// After a failed retention pass the next one comes sooner, so readiness recovers quickly.
const MAINTAIN_RETRY: Duration = Duration::from_secs(1);
/// How long tasks get to finish after SIGTERM; SIGINT (an operator's Ctrl-C) waits less.
const GRACE: Duration = Duration::from_secs(10);
const GRACE_INT: Duration = Duration::from_secs(2);

/// The shared core every task works on.
struct Core {
    cfg: Arc<Config>,
    log: Log,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    peers: Arc<Peers>,
    replicas: Arc<Replicas>,
    /// Cluster mode (`upstream.cluster`, or a region agent with `listen.shard_ports`): the
    /// lanes, one per shard.
    lanes: Option<crate::cluster::run::Lanes>,
    /// The lanes the agent link serves downstream, and the slot map of the control stream.
    lane_map: LaneMap,
    /// A cluster-mode region agent: each lane's replicas, for the cluster endpoint.
    region: Option<LaneReplicas>,
}

/// The sockets, bound before any task starts (so a port in use fails the start).
struct Bound {
    replica: TcpListener,
    admin: TcpListener,
    replica_tls: Option<(TcpListener, tokio_rustls::TlsAcceptor)>,
    agents: Option<quinn::Endpoint>,
    replica_addr: std::net::SocketAddr,
}

/// Runs an agent until SIGTERM or SIGINT, or until a task ends by itself (an error).
pub async fn run(cfg: Config) -> Result<(), AppError> {
    crate::cluster::run::check_first_start(&cfg).await?;
    let core = open(cfg).await?;
    let bound = bind(&core.cfg).await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Tasks::new();
    let active = spawn_upstream(&core, &bound, &mut tasks, &shutdown_rx).await?;
    // Apply mode: write the log into cfg.target as a client, on the applier's own thread.
    let apply = match &core.cfg.target {
        // Lanes (a region, or a cluster-mode site): one applier per lane.
        Some(t) if core.lanes.is_some() => {
            let views = crate::apply::ApplyViews::default();
            let lanes = crate::apply::LaneApply::new(
                &core.cfg,
                t,
                &core.metrics,
                views.clone(),
                core.lane_map.slot_map().subscribe(),
                shutdown_rx.clone(),
            )
            .map_err(AppError::Apply)?;
            tasks.spawn(
                "lane appliers",
                crate::apply::lanes::follow_lanes(lanes, core.lane_map.clone()),
            );
            views
        }
        Some(t) => crate::apply::start(&core.cfg, t, &core.log, &core.metrics, shutdown_rx.clone())
            .map_err(AppError::Apply)?,
        None => crate::apply::ApplyViews::default(),
    };
    spawn_serving(&core, bound, active, apply, &mut tasks, &shutdown_rx);

    let outcome = tokio::select! {
        grace = wait_for_signal() => Ok(grace?),
        exit = tasks.next_exit() => Err(exit),
    };
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    let grace = match &outcome {
        Ok(g) => *g,
        Err(exit) => {
            tracing::error!("{exit}; stopping the agent");
            GRACE
        }
    };
    for odd in tasks.drain(grace).await {
        tracing::error!("during shutdown: {odd}");
    }
    core.log.close()?;
    tracing::info!("log flushed; bye");
    outcome
        .map(|_| ())
        .map_err(|e| AppError::Task(e.to_string()))
}

/// Opens the log and builds the metrics and shared tables.
async fn open(cfg: Config) -> Result<Core, AppError> {
    let log = Log::open_async(LogConfig::new(cfg.data_dir.clone(), &cfg.log)).await?;
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
    Ok(Core {
        log,
        metrics,
        health: Health::new(),
        peers: Arc::new(Peers::default()),
        replicas: Arc::new(Replicas::default()),
        lanes: (cfg.cluster.is_some() || crate::region::is_region(&cfg))
            .then(crate::cluster::run::Lanes::default),
        lane_map: LaneMap::default(),
        region: crate::region::is_region(&cfg).then(LaneReplicas::default),
        cfg: Arc::new(cfg),
    })
}

async fn listen(what: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { what, addr, source })
}

/// Binds the replica port(s), the admin listener and the QUIC listener for downstream agents.
async fn bind(cfg: &Config) -> Result<Bound, AppError> {
    let replica = listen("listen.redis", cfg.listen_redis).await?;
    let admin = listen("listen.admin", cfg.listen_admin).await?;
    let replica_addr = replica.local_addr().unwrap_or(cfg.listen_redis);
    tracing::info!(replicas = %cfg.listen_redis, admin = %cfg.listen_admin, "listening");
    let replica_tls = match (cfg.listen_redis_tls, &cfg.serve_tls) {
        (Some(addr), Some(tls)) => {
            let acceptor = crate::redistls::acceptor(tls)?;
            let l = listen("listen.redis_tls", addr).await?;
            tracing::info!(replicas_tls = %addr, "listening for TLS replicas");
            Some((l, acceptor))
        }
        _ => None,
    };
    let agents = match cfg.listen_agent {
        Some(listen) => {
            let tls = cfg.tls.as_ref().ok_or(AppError::NoTls("listen.agent"))?;
            let endpoint = quic::server_endpoint(listen, tls, &cfg.link.transport)?;
            tracing::info!(agents = %listen, "listening for downstream agents (QUIC, mutual TLS)");
            Some(endpoint)
        }
        None => None,
    };
    Ok(Bound {
        replica,
        admin,
        replica_tls,
        agents,
        replica_addr,
    })
}

/// Starts the upstream supervisor (config file or persisted override; re-pointed by
/// `POST /upstream`). Returns the active-upstream cell and the supervisor's inbox.
async fn spawn_upstream(
    core: &Core,
    bound: &Bound,
    tasks: &mut Tasks,
    shutdown: &watch::Receiver<bool>,
) -> Result<(Arc<RwLock<ActiveUpstream>>, mpsc::Sender<RepointCmd>), AppError> {
    let dir = core.cfg.data_dir.clone();
    let ov = tokio::task::spawn_blocking(move || repoint::load(&dir))
        .await
        .map_err(|e| AppError::Task(e.to_string()))??;
    let ov = match ov {
        Some(o) if core.lanes.is_some() => {
            tracing::warn!(upstream = %o.upstream, "ignoring the upstream override in data_dir: re-pointing a cluster upstream is not supported yet (clear it by deleting {})", repoint::OVERRIDE_FILE);
            None
        }
        ov => ov,
    };
    let configured = supervisor::configured(&core.cfg);
    if matches!(configured, UpstreamTarget::Agent { .. })
        || ov
            .as_ref()
            .is_some_and(|o| matches!(o.upstream, UpstreamTarget::Agent { .. }))
    {
        core.cfg
            .tls
            .as_ref()
            .ok_or(AppError::NoTls("upstream.agent"))?;
    }
    let active = Arc::new(RwLock::new(match core.cfg.cluster {
        Some(_) => supervisor::cluster_active(),
        None => supervisor::active(&configured, ov.as_ref()),
    }));
    let deps = UpstreamDeps {
        cfg: core.cfg.clone(),
        log: core.log.clone(),
        metrics: core.metrics.clone(),
        health: core.health.clone(),
        peers: core.peers.clone(),
        replica_port: bound.replica_addr.port(),
        active: active.clone(),
        lanes: core.lanes.clone(),
        lane_map: core.lane_map.clone(),
        region: core.region.clone(),
    };
    let (tx, rx) = mpsc::channel(4);
    tasks.spawn("upstream", supervisor::run(deps, ov, rx, shutdown.clone()));
    Ok((active, tx))
}

/// Starts everything that serves: downstream agents, replica ports, the admin listener, and
/// log maintenance.
fn spawn_serving(
    core: &Core,
    bound: Bound,
    (active, repoint_tx): (Arc<RwLock<ActiveUpstream>>, mpsc::Sender<RepointCmd>),
    apply: crate::apply::ApplyViews,
    tasks: &mut Tasks,
    shutdown: &watch::Receiver<bool>,
) {
    let cfg = &core.cfg;
    if let Some(endpoint) = bound.agents {
        let ctx = AgentServeCtx {
            log: core.log.clone(),
            metrics: core.metrics.clone(),
            peers: core.peers.clone(),
            lanes: core.lane_map.clone(),
            max_agents: cfg.max_agents,
            link: cfg.link.clone(),
            shutdown: shutdown.clone(),
        };
        tasks.spawn("agent listener", serve_agent::run(endpoint, ctx));
    }
    let serve_ctx = ServeCtx {
        log: core.log.clone(),
        metrics: core.metrics.clone(),
        health: core.health.clone(),
        replicas: core.replicas.clone(),
        requirepass: cfg.requirepass.clone(),
        timeout: cfg.serve_timeout,
        max_replicas: cfg.max_replicas,
        username: cfg.username.clone(),
        max_connections: cfg.max_connections,
        connections: Arc::default(),
        upstream: active.read().map(|a| a.addr.clone()).unwrap_or_default(),
        shutdown: shutdown.clone(),
        port: Arc::default(),
    };
    if let Some((listener, acceptor)) = bound.replica_tls {
        tasks.spawn(
            "replica port (TLS)",
            serve::run(listener, serve_ctx.clone(), Some(acceptor)),
        );
    }
    match &core.region {
        // A cluster-mode region agent answers the read-only cluster endpoint on listen.redis.
        Some(replicas) => {
            let ep = ClusterEndpoint {
                my_id: crate::serve::cluster::node_id(&cfg.name),
                my_addr: cluster_port::my_addr(cfg.listen_redis),
                map: core.lane_map.slot_map().subscribe(),
                lanes: replicas.clone(),
                requirepass: cfg.requirepass.clone(),
                timeout: cfg.serve_timeout,
                origin: Some(cluster_port::OriginSource {
                    lanes: core.lane_map.clone(),
                    cache: Arc::default(),
                }),
            };
            tasks.spawn(
                "cluster endpoint",
                cluster_port::run(bound.replica, ep, shutdown.clone()),
            );
        }
        None => tasks.spawn("replica port", serve::run(bound.replica, serve_ctx, None)),
    }
    let admin_state = AdminState {
        node: NodeState {
            node: cfg.name.clone(),
            log: core.log.clone(),
            metrics: core.metrics.clone(),
            health: core.health.clone(),
            upstream: active,
            replica_addr: bound.replica_addr,
            agent_addr: cfg.listen_agent,
            replicas: core.replicas.clone(),
            peers: core.peers.clone(),
            cluster: core.lanes.clone(),
            apply,
        },
        token: cfg.admin_token.as_deref().map(Arc::from),
        repoint: repoint_tx,
    };
    tasks.spawn(
        "admin listener",
        admin::serve(bound.admin, admin_state, shutdown.clone()),
    );
    tasks.spawn(
        "log maintenance",
        maintain(core.log.clone(), core.health.clone(), shutdown.clone()),
    );
}

/// Retention and snapshot upkeep every 10 s, off the async workers. A failed pass marks the
/// log not writable (`/readyz` 503) and the next successful pass marks it writable again.
async fn maintain(log: Log, health: Arc<Health>, mut shutdown: watch::Receiver<bool>) {
    let mut failed = false;
    loop {
        let wait = if failed {
            MAINTAIN_RETRY
        } else {
            MAINTAIN_EVERY
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let l = log.clone();
        let res = tokio::task::spawn_blocking(move || {
            if crate::failpoint::hit("retention") {
                return Err(crate::failpoint::io_error("retention").to_string());
            }
            l.maintain().map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match res {
            Err(e) => {
                tracing::warn!("log retention failed: {e}; not ready until a pass succeeds");
                health.log_writable.store(false, Ordering::Relaxed);
                failed = true;
            }
            Ok(()) if failed => {
                tracing::info!("log retention succeeded again; the log is writable");
                health.log_writable.store(true, Ordering::Relaxed);
                failed = false;
            }
            Ok(()) => {}
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
