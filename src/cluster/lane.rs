//! One running lane: its log under `data_dir/lanes/<name>/`, its upstream Redis task and
//! snapshot refresh (both moved to a new node when the shard's master changes), its replica
//! port, and what `/status` shows of it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::registry::LaneRecord;
use super::slotmap::SlotRange;
use crate::config::Config;
use crate::log::{Log, LogConfig, LogError};
use crate::metrics::{Health, Metrics, MetricsError};
use crate::serve::peers::Peers;
use crate::serve::{self, Replicas, ServeCtx};
use crate::upstream::redis::UpstreamCtx;
use crate::upstream::{redis as up_redis, refresh};

const MAINTAIN_EVERY: Duration = Duration::from_secs(10);

/// Why a lane could not start.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("lane {lane}: {source}")]
    Log { lane: String, source: LogError },
    #[error("lane {lane}: {source}")]
    Metrics { lane: String, source: MetricsError },
    #[error("lane {lane}: cannot listen on its shard port {addr}: {source}")]
    Bind {
        lane: String,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("lane {0}: TLS towards the cluster: {1}")]
    Tls(String, String),
}

/// What the status shows of a lane besides its log and metrics.
#[derive(Debug, Clone, Default)]
pub struct LaneView {
    pub slots: Vec<SlotRange>,
    /// The node the lane replicates from now ("" while it has none).
    pub upstream: String,
    /// "streaming", "connecting", "waiting: …", "retiring", "retired".
    pub state: String,
}

/// A lane that is running.
pub struct Lane {
    pub name: String,
    pub alias: String,
    pub port: u16,
    pub log: Log,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub replicas: Arc<Replicas>,
    /// Downstream agents streaming this lane.
    pub peers: Arc<Peers>,
    pub view: Mutex<LaneView>,
    upstream: watch::Sender<Option<String>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Lane {
    /// Opens the lane's log, binds its port and starts its tasks (the upstream task waits for
    /// [`Lane::follow`]).
    pub async fn start(
        cfg: &Config,
        rec: &LaneRecord,
        port: u16,
        node_metrics: &Metrics,
    ) -> Result<Arc<Lane>, LaneError> {
        let lane = rec.name.clone();
        let dir = cfg.data_dir.join("lanes").join(&rec.name);
        let log = Log::open_async(LogConfig::new(dir, &cfg.log))
            .await
            .map_err(|source| LaneError::Log {
                lane: lane.clone(),
                source,
            })?;
        let metrics = node_metrics
            .new_lane(&cfg.name, &rec.name)
            .map_err(|source| LaneError::Metrics {
                lane: lane.clone(),
                source,
            })?;
        let fsync_hist = metrics.log_fsync_seconds.clone();
        log.set_fsync_observer(move |d| fsync_hist.observe(d.as_secs_f64()));
        let addr = std::net::SocketAddr::new(cfg.listen_redis.ip(), port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| LaneError::Bind {
                lane: lane.clone(),
                addr,
                source,
            })?;
        let tls = cfg
            .upstream_tls
            .as_ref()
            .map(crate::redistls::Connector::new)
            .transpose()
            .map_err(|e| LaneError::Tls(lane.clone(), e.to_string()))?;
        let health = Health::new();
        let (upstream, upstream_rx) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let replicas = Arc::new(Replicas::default());
        let serve_ctx = ServeCtx {
            log: log.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            replicas: replicas.clone(),
            requirepass: cfg.requirepass.clone(),
            timeout: cfg.serve_timeout,
            max_replicas: cfg.max_replicas,
            username: cfg.username.clone(),
            max_connections: cfg.max_connections,
            connections: Arc::default(),
            upstream: format!("cluster lane {}", rec.name),
            shutdown: stop_rx.clone(),
            port: Arc::default(),
        };
        let up_ctx = UpstreamCtx {
            cfg: cfg.upstream.clone(),
            listening_port: port,
            log: log.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            remote_ack: None,
            tls,
        };
        let tasks = vec![
            tokio::spawn(serve::run(listener, serve_ctx, None)),
            tokio::spawn(follow(up_ctx, upstream_rx, stop_rx.clone())),
            tokio::spawn(maintain(log.clone(), health.clone(), stop_rx)),
        ];
        tracing::info!(lane = %rec.name, alias = %rec.alias, port, "lane started");
        Ok(Arc::new(Lane {
            name: rec.name.clone(),
            alias: rec.alias.clone(),
            port,
            log,
            metrics,
            health,
            replicas,
            peers: Arc::new(Peers::default()),
            view: Mutex::new(LaneView {
                state: "waiting: no master seen yet".into(),
                ..Default::default()
            }),
            upstream,
            stop,
            tasks: Mutex::new(tasks),
        }))
    }

    /// Points the lane's upstream task at `addr` (None: no node to follow; it waits). A change
    /// ends the current session; the new one resumes with PSYNC from the log's position.
    pub fn follow(&self, addr: Option<String>) {
        self.upstream.send_if_modified(|cur| {
            if *cur == addr {
                return false;
            }
            if let (Some(old), Some(new)) = (cur.as_ref(), addr.as_ref()) {
                tracing::info!(lane = %self.name, "lane moves from {old} to {new}");
            }
            *cur = addr.clone();
            true
        });
    }

    pub fn view(&self) -> LaneView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_view(&self, f: impl FnOnce(&mut LaneView)) {
        f(&mut self.view.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Stops every task of the lane and closes its log (final fsync).
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        let log = self.log.clone();
        match tokio::task::spawn_blocking(move || log.close()).await {
            Ok(Err(e)) => tracing::warn!(lane = %self.name, "closing the lane's log: {e}"),
            Err(e) => tracing::warn!(lane = %self.name, "closing the lane's log: {e}"),
            Ok(Ok(())) => {}
        }
    }
}

/// Runs the upstream Redis task (and its snapshot refresh) against the address in `addr`,
/// restarting both whenever it changes.
async fn follow(
    template: UpstreamCtx,
    mut addr: watch::Receiver<Option<String>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let target = addr.borrow_and_update().clone();
        let (session_stop, session_rx) = watch::channel(false);
        let mut running = Vec::new();
        if let Some(a) = target {
            let mut ctx = template.clone();
            ctx.cfg.redis = a;
            running.push(tokio::spawn(up_redis::run(ctx.clone(), session_rx.clone())));
            running.push(tokio::spawn(refresh::run(ctx, session_rx)));
        }
        let done = tokio::select! {
            r = addr.changed() => r.is_err(),
            _ = stop.changed() => true,
        };
        let _ = session_stop.send(true);
        for t in running {
            let _ = t.await;
        }
        template.metrics.upstream_connected.set(0);
        // A stopped session is not a link: the lane is not ready until the next one streams.
        template
            .health
            .upstream_up
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if done {
            return;
        }
    }
}

async fn maintain(log: Log, health: Arc<Health>, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(MAINTAIN_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let l = log.clone();
        let r = tokio::task::spawn_blocking(move || l.maintain()).await;
        if let Ok(Err(e)) = r {
            tracing::warn!("lane log retention failed: {e}");
            health
                .log_writable
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }
}
