//! The upstream supervisor: starts the upstream tasks for the source in force (the config
//! file's, or the override persisted in `data_dir`), and restarts them with a new source when
//! `POST /upstream` re-points the agent, without restarting the process.

use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, watch};

use super::repoint::{self, Override, RepointCmd, RepointError, UpstreamTarget};
use crate::cluster::run::{ClusterCtx, Lanes};
use crate::config::{AckPolicy, Config, Source};
use crate::link::quic;
use crate::log::Log;
use crate::metrics::status::{ActiveUpstream, FencedSite, UpstreamKind};
use crate::metrics::{Health, Metrics};
use crate::serve::cluster_port::LaneReplicas;
use crate::serve::peers::{LaneMap, Peers};
use crate::tasks::{Exit, Tasks};
use crate::upstream::agent::{self as up_agent, AgentUpstreamCtx};
use crate::upstream::redis::UpstreamCtx;
use crate::upstream::{redis as up_redis, refresh};

/// How long the old upstream's tasks get to stop before a re-point aborts them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What the upstream tasks share with the rest of the agent.
#[derive(Clone)]
pub struct UpstreamDeps {
    pub cfg: Arc<Config>,
    pub log: Log,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub peers: Arc<Peers>,
    /// Our replica port, announced to a Redis master in `REPLCONF listening-port`.
    pub replica_port: u16,
    /// The active upstream, as `/status` shows it.
    pub active: Arc<RwLock<ActiveUpstream>>,
    /// Cluster mode (`upstream.cluster`): the lanes the cluster loop keeps.
    pub lanes: Option<Lanes>,
    /// What the agent link serves downstream (lanes and slot map).
    pub lane_map: LaneMap,
    /// A cluster-mode region agent: each lane's replicas, for the cluster endpoint.
    pub region: Option<LaneReplicas>,
}

/// The config file's upstream.
pub fn configured(cfg: &Config) -> UpstreamTarget {
    match &cfg.source {
        Source::Redis => UpstreamTarget::Redis {
            addr: cfg.upstream.redis.clone(),
        },
        Source::Agent { addr, server_name } => UpstreamTarget::Agent {
            addr: addr.clone(),
            server_name: server_name.clone(),
        },
    }
}

/// The row `/status` shows for `target`.
pub fn active(target: &UpstreamTarget, ov: Option<&Override>) -> ActiveUpstream {
    let (kind, server_name) = match target {
        UpstreamTarget::Redis { .. } => (UpstreamKind::Redis, None),
        UpstreamTarget::Agent { server_name, .. } => {
            (UpstreamKind::Agent, Some(server_name.clone()))
        }
    };
    ActiveUpstream {
        kind,
        addr: target.addr().to_string(),
        server_name,
        overridden: ov.is_some(),
        fenced: ov.and_then(|o| o.fenced.clone()),
    }
}

/// The row `/status` shows in cluster mode (the lanes have their own rows under `shards`).
pub fn cluster_active() -> ActiveUpstream {
    ActiveUpstream {
        kind: UpstreamKind::Cluster,
        addr: "cluster".into(),
        server_name: None,
        overridden: false,
        fenced: None,
    }
}

/// Can this agent stream from `target` at all (independent of whether it is reachable)?
fn usable(cfg: &Config, target: &UpstreamTarget) -> Result<(), RepointError> {
    if matches!(target, UpstreamTarget::Agent { .. }) && cfg.tls.is_none() {
        return Err(RepointError::Unusable(
            "an agent upstream needs the [tls] section in the config".into(),
        ));
    }
    Ok(())
}

/// Spawns the tasks that stream from `target` into the log (the link and its snapshot
/// refresher). The one place that chooses by source kind; new kinds (cluster lanes, …) go here.
fn start(
    deps: &UpstreamDeps,
    target: &UpstreamTarget,
    stop: watch::Receiver<bool>,
) -> Result<Tasks, String> {
    let cfg = &deps.cfg;
    let mut tasks = Tasks::new();
    match target {
        UpstreamTarget::Redis { addr } => {
            let mut up = cfg.upstream.clone();
            up.redis = addr.clone();
            let ctx = UpstreamCtx {
                cfg: up,
                listening_port: deps.replica_port,
                log: deps.log.clone(),
                metrics: deps.metrics.clone(),
                health: deps.health.clone(),
                remote_ack: (cfg.ack == AckPolicy::Remote).then(|| deps.peers.remote()),
                tls: cfg
                    .upstream_tls
                    .as_ref()
                    .map(crate::redistls::Connector::new)
                    .transpose()
                    .map_err(|e| e.to_string())?,
            };
            tasks.spawn(
                "upstream redis link",
                up_redis::run(ctx.clone(), stop.clone()),
            );
            tasks.spawn("upstream snapshot refresh", refresh::run(ctx, stop));
        }
        UpstreamTarget::Agent { addr, server_name } => {
            let tls = cfg
                .tls
                .as_ref()
                .ok_or("upstream.agent needs the [tls] section")?;
            let endpoint =
                quic::client_endpoint(tls, &cfg.link.transport).map_err(|e| e.to_string())?;
            let ctx = AgentUpstreamCtx {
                name: cfg.name.clone(),
                addr: addr.clone(),
                server_name: server_name.clone(),
                endpoint,
                link: cfg.link.clone(),
                log: deps.log.clone(),
                metrics: deps.metrics.clone(),
                health: deps.health.clone(),
            };
            let fetch_ctx = ctx.clone();
            tasks.spawn(
                "upstream snapshot refresh",
                refresh::run_with(
                    deps.log.clone(),
                    deps.metrics.clone(),
                    deps.health.clone(),
                    stop.clone(),
                    move || {
                        let c = fetch_ctx.clone();
                        async move { up_agent::fetch_snapshot(&c).await }
                    },
                ),
            );
            tasks.spawn("upstream agent link", up_agent::run(ctx, stop));
        }
    }
    Ok(tasks)
}

/// The running upstream: its tasks and their stop switch.
struct Running {
    tasks: Tasks,
    stop: watch::Sender<bool>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl UpstreamDeps {
    fn launch(&self, target: &UpstreamTarget) -> Running {
        let (stop, rx) = watch::channel(false);
        let tasks = start(self, target, rx).unwrap_or_else(|e| {
            tracing::error!(upstream = %target, "cannot start the upstream: {e}");
            Tasks::new()
        });
        Running { tasks, stop }
    }

    /// Stops the upstream's tasks (the upstream view is kept).
    async fn stop(&self, r: &mut Running) {
        let _ = r.stop.send(true);
        for odd in r.tasks.drain(STOP_GRACE).await {
            tracing::error!("while stopping the upstream: {odd}");
        }
    }

    async fn halt(&self, mut r: Running) {
        self.stop(&mut r).await;
        self.metrics.upstream_connected.set(0);
        self.health
            .upstream_up
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.metrics.upstream_view.forget();
    }

    fn set_active(&self, a: ActiveUpstream) {
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = a;
    }

    /// What this node knew of its upstream when it was cut off (for `"fence": true`).
    fn fence_record(&self) -> FencedSite {
        let view = &self.metrics.upstream_view;
        let head = self.log.current().map(|c| c.1).unwrap_or(0);
        let ord = std::sync::atomic::Ordering::Relaxed;
        let site = self
            .active
            .read()
            .map(|a| a.addr.clone())
            .unwrap_or_default();
        FencedSite {
            site,
            site_head: view.head.load(ord).max(head),
            site_head_time_us: view.head_ts_us.load(ord),
            head,
            head_time_us: self.log.timestamp_at(head).unwrap_or(0),
            at_unix: unix_now(),
            heard_us: view.heard_us.load(ord),
        }
    }
}

/// Runs the upstream until `shutdown`, re-pointing on commands; `ov` is the override found in
/// `data_dir` at start. Returns when told to stop or when an upstream task ends by itself.
pub async fn run(
    deps: UpstreamDeps,
    mut ov: Option<Override>,
    mut cmds: mpsc::Receiver<RepointCmd>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Some(lanes) = deps.lanes.clone() {
        return run_cluster(deps, lanes, cmds, shutdown).await;
    }
    let mut target = ov
        .as_ref()
        .map(|o| o.upstream.clone())
        .unwrap_or_else(|| configured(&deps.cfg));
    if let Some(o) = &ov {
        tracing::warn!(upstream = %o.upstream, "upstream override from data_dir in force (wins over the config file; clear it with DELETE /upstream)");
    }
    deps.set_active(active(&target, ov.as_ref()));
    let mut running = deps.launch(&target);
    loop {
        let cmd = tokio::select! {
            _ = shutdown.changed() => break,
            exit = running.tasks.next_exit() => {
                match exit {
                    Exit::Returned(n) => tracing::error!("upstream task {n} exited by itself"),
                    other => tracing::error!("upstream: {other}"),
                }
                break;
            }
            cmd = cmds.recv() => match cmd {
                Some(c) => c,
                None => break,
            },
        };
        match cmd {
            RepointCmd::Set { req, reply } => {
                let (next, fence) = (req.target, req.fence);
                if let Err(e) = usable(&deps.cfg, &next) {
                    let _ = reply.send(Err(e));
                    continue;
                }
                // A fence is final: stop streaming first, so the record cannot move after.
                if fence && !req.dry_run {
                    deps.stop(&mut running).await;
                }
                let fenced = if fence {
                    Some(deps.fence_record())
                } else {
                    ov.as_ref().and_then(|o| o.fenced.clone())
                };
                let o = Override {
                    upstream: next.clone(),
                    set_unix: unix_now(),
                    fenced,
                };
                if req.dry_run {
                    let _ = reply.send(Ok(o));
                    continue;
                }
                let dir = deps.cfg.data_dir.clone();
                let saved = o.clone();
                let res = tokio::task::spawn_blocking(move || repoint::save(&dir, &saved))
                    .await
                    .unwrap_or_else(|e| Err(RepointError::Unusable(e.to_string())));
                if let Err(e) = res {
                    if fence {
                        running = deps.launch(&target);
                    }
                    let _ = reply.send(Err(e));
                    continue;
                }
                tracing::info!(from = %target, to = %next, fence, "re-pointing the upstream");
                deps.halt(running).await;
                target = next;
                deps.set_active(active(&target, Some(&o)));
                running = deps.launch(&target);
                ov = Some(o.clone());
                let _ = reply.send(Ok(o));
            }
            RepointCmd::Clear { reply } => {
                let dir = deps.cfg.data_dir.clone();
                let res = tokio::task::spawn_blocking(move || repoint::clear(&dir))
                    .await
                    .unwrap_or_else(|e| Err(RepointError::Unusable(e.to_string())));
                let had = match res {
                    Ok(h) => h,
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        continue;
                    }
                };
                ov = None;
                let next = configured(&deps.cfg);
                if next != target {
                    tracing::info!(from = %target, to = %next, "override cleared: back to the config file's upstream");
                    deps.halt(running).await;
                    target = next;
                    running = deps.launch(&target);
                }
                deps.set_active(active(&target, None));
                let _ = reply.send(Ok(had));
            }
        }
    }
    deps.halt(running).await;
}

/// Cluster mode: the cluster loop follows every shard, moving lanes after failovers itself
/// (or, on a region agent, the lanes follow the site's slot map).
/// Re-pointing is per lane and not supported yet; `POST`/`DELETE /upstream` say so.
async fn run_cluster(
    deps: UpstreamDeps,
    lanes: Lanes,
    mut cmds: mpsc::Receiver<RepointCmd>,
    shutdown: watch::Receiver<bool>,
) {
    let lanes_task = async {
        if let (Some(replicas), Source::Agent { addr, server_name }) =
            (deps.region.clone(), &deps.cfg.source)
        {
            // A cluster-mode region agent: lanes from the site's slot map.
            deps.set_active(active(&configured(&deps.cfg), None));
            let shared = crate::region::RegionShared {
                serve_lanes: deps.lane_map.clone(),
                replicas,
                status: lanes,
            };
            let r = crate::region::run(
                &deps.cfg,
                (addr, server_name),
                deps.metrics.clone(),
                shared,
                shutdown,
            )
            .await;
            if let Err(e) = r {
                tracing::error!("region lanes stopped: {e}");
            }
            return;
        }
        deps.set_active(cluster_active());
        let ctx = ClusterCtx {
            cfg: (*deps.cfg).clone(),
            metrics: deps.metrics.clone(),
            health: deps.health.clone(),
            lanes,
            serve: deps.lane_map.clone(),
        };
        crate::cluster::run::run_logged(ctx, shutdown).await
    };
    tokio::pin!(lanes_task);
    let refuse = || {
        RepointError::Unusable(
            "re-pointing a cluster upstream (upstream.cluster) is not supported yet".into(),
        )
    };
    loop {
        tokio::select! {
            _ = &mut lanes_task => return,
            cmd = cmds.recv() => match cmd {
                Some(RepointCmd::Set { reply, .. }) => { let _ = reply.send(Err(refuse())); }
                Some(RepointCmd::Clear { reply }) => { let _ = reply.send(Err(refuse())); }
                None => return lanes_task.await,
            },
        }
    }
}
