//! The cluster-mode site agent: reads the topology every `upstream.cluster_refresh` (and at
//! once after a lane error), keeps one lane per shard, moves a lane's upstream task to its
//! shard's new master after a failover, publishes the slot map, and retires lanes that left.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::discover::{self, DiscoverError, Discovered};
use super::lane::Lane;
use super::registry::{self, Registry};
use super::slotmap::{LaneSlots, SlotMap, SlotRange};
use super::status::ClusterRow;
use crate::config::{ClusterSettings, Config, PortRange, ReadFrom};
use crate::metrics::{Health, Metrics};
use crate::serve::peers::{self, LaneMap};

/// How often lanes are checked for a lost upstream link (which triggers a refresh).
const LANE_POLL: Duration = Duration::from_millis(250);

/// Why the cluster side stopped (or did not start).
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Registry(#[from] registry::RegistryError),
    /// First start, no lane yet, and the seeds are standalone servers.
    #[error("upstream.cluster: {0}")]
    NotCluster(DiscoverError),
    #[error("reading the lane registry: {0}")]
    Task(String),
}

/// A lane kept elsewhere (a region agent's lanes) that `/status` lists beside the site's.
pub trait ShardSource: Send + Sync {
    fn row(&self) -> super::status::ShardRow;
}

/// The lanes as the rest of the agent sees them: for `/status`, metrics and the link.
#[derive(Clone, Default)]
pub struct Lanes {
    inner: Arc<Mutex<Vec<Arc<Lane>>>>,
    others: Arc<Mutex<Vec<Arc<dyn ShardSource>>>>,
    /// The site's last discovery pass (None on a region agent).
    cluster: Arc<Mutex<Option<ClusterRow>>>,
}

impl Lanes {
    /// What the last discovery pass found (`/status` `cluster`); None on a region agent.
    pub fn cluster_row(&self) -> Option<ClusterRow> {
        self.cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_cluster(&self, row: ClusterRow) {
        *self.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(row);
    }

    /// The running lanes, in creation order.
    pub fn list(&self) -> Vec<Arc<Lane>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Lane>> {
        self.list().into_iter().find(|l| l.name == name)
    }

    /// Lists `src` in `/status` (a region lane), after the lanes listed before it.
    pub fn add_source(&self, src: Arc<dyn ShardSource>) {
        self.others
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(src);
    }

    /// The rows of the lanes added with [`Lanes::add_source`], in the order added.
    pub fn other_rows(&self) -> Vec<super::status::ShardRow> {
        let others = self
            .others
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        others.iter().map(|s| s.row()).collect()
    }

    fn push(&self, lane: Arc<Lane>) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(lane);
    }

    fn remove(&self, name: &str) -> Option<Arc<Lane>> {
        let mut v = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let i = v.iter().position(|l| l.name == name)?;
        Some(v.remove(i))
    }
}

/// Everything the cluster loop needs.
pub struct ClusterCtx {
    pub cfg: Config,
    pub metrics: Arc<Metrics>,
    /// Node-level health: up when every lane streams.
    pub health: Arc<Health>,
    pub lanes: Lanes,
    /// What the agent link serves downstream: every running lane's log, and the slot map on
    /// the control stream.
    pub serve: LaneMap,
}

/// [`run`], with its error logged (a task of the agent).
pub async fn run_logged(ctx: ClusterCtx, shutdown: watch::Receiver<bool>) {
    if let Err(e) = run(ctx, shutdown).await {
        tracing::error!("cluster lanes stopped: {e}");
    }
}

/// At the first start (no lane in `data_dir/lanes` yet), a seed list of standalone servers is
/// a config mistake: one discovery pass, and an error saying to use `upstream.redis` if every
/// seed answered it is not a cluster node. Unreachable seeds, refused credentials and
/// everything else are left to the cluster loop, which keeps retrying (and, once lanes exist,
/// a not-cluster answer is only logged: the lanes keep their logs and wait).
pub async fn check_first_start(cfg: &Config) -> Result<(), ClusterError> {
    let Some(cl) = &cfg.cluster else {
        return Ok(());
    };
    let dir = lanes_dir(cfg);
    let reg = tokio::task::spawn_blocking(move || Registry::load(&dir))
        .await
        .map_err(|e| ClusterError::Task(e.to_string()))??;
    if !reg.lanes.is_empty() {
        return Ok(());
    }
    let tls = cfg
        .upstream_tls
        .as_ref()
        .and_then(|t| crate::redistls::Connector::new(t).ok());
    match discover::discover(&cl.seeds, &[], &cfg.upstream, tls.as_ref()).await {
        Err(e @ DiscoverError::NotCluster(_)) => Err(ClusterError::NotCluster(e)),
        _ => Ok(()),
    }
}

/// Runs the cluster side until `shutdown` flips; then stops every lane (final fsyncs).
pub async fn run(ctx: ClusterCtx, mut shutdown: watch::Receiver<bool>) -> Result<(), ClusterError> {
    let Some(cl) = ctx.cfg.cluster.clone() else {
        return Ok(());
    };
    let ports = ctx
        .cfg
        .shard_ports
        .unwrap_or(PortRange { first: 0, last: 0 });
    let dir = ctx.cfg.data_dir.join("lanes");
    let d = dir.clone();
    let mut reg = tokio::task::spawn_blocking(move || Registry::load(&d))
        .await
        .unwrap_or_else(|_| Ok(Registry::default()))?;
    repartition(&mut reg, &cl, ports, &dir).await;
    let tls = ctx
        .cfg
        .upstream_tls
        .as_ref()
        .and_then(|t| crate::redistls::Connector::new(t).ok());
    let mut known: Vec<String> = Vec::new();
    let mut logged: Vec<String> = Vec::new();
    ctx.lanes.set_cluster(ClusterRow {
        state: "discovering".into(),
        ..Default::default()
    });
    // The lanes of an earlier run serve their logs from the start, whatever discovery finds.
    start_taken(&ctx, &reg, ports, &[]).await;
    let mut reconnects: HashMap<String, u64> = HashMap::new();
    let mut ticker = tokio::time::interval(cl.refresh);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut poll = tokio::time::interval(LANE_POLL);
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = ticker.tick() => {}
            _ = poll.tick() => {
                update_health(&ctx);
                if !lane_errors(&ctx.lanes, &mut reconnects) {
                    continue;
                }
                tracing::debug!("a lane lost its upstream: reading the topology now");
            }
        }
        let row = match discover::discover(&cl.seeds, &known, &ctx.cfg.upstream, tls.as_ref()).await
        {
            Ok(d) => {
                known = d.addrs.clone();
                let before = reg.clone();
                let problems = apply(&ctx, &cl, ports, &mut reg, &d).await;
                if reg != before {
                    save(&reg, &dir).await;
                }
                ClusterRow {
                    state: if d.state_ok { "ok" } else { "fail" }.into(),
                    problems,
                    from: d.from,
                }
            }
            Err(e) => ClusterRow {
                state: match e {
                    DiscoverError::NotCluster(_) => "not_cluster",
                    DiscoverError::Auth(_) => "auth_failed",
                    DiscoverError::Unreachable(_) => "unreachable",
                }
                .into(),
                problems: vec![e.to_string()],
                from: String::new(),
            },
        };
        log_new(&mut logged, &row);
        ctx.lanes.set_cluster(row);
    }
    for lane in ctx.lanes.list() {
        lane.stop().await;
    }
    Ok(())
}

/// Logs the problems of a pass that the previous pass did not have (each once while it lasts).
fn log_new(logged: &mut Vec<String>, row: &ClusterRow) {
    for p in row.problems.iter().filter(|p| !logged.contains(p)) {
        match row.state.as_str() {
            "not_cluster" | "auth_failed" => tracing::error!("upstream.cluster: {p}"),
            _ => tracing::warn!("upstream.cluster: {p}"),
        }
    }
    *logged = row.problems.clone();
}

/// True when a lane's upstream task reconnected since the last poll.
fn lane_errors(lanes: &Lanes, seen: &mut HashMap<String, u64>) -> bool {
    let mut any = false;
    for lane in lanes.list() {
        let n = lane.metrics.upstream_reconnects.get();
        let prev = seen.insert(lane.name.clone(), n).unwrap_or(n);
        any |= n > prev;
    }
    any
}

fn update_health(ctx: &ClusterCtx) {
    use std::sync::atomic::Ordering::Relaxed;
    let lanes = ctx.lanes.list();
    let up = !lanes.is_empty() && lanes.iter().all(|l| l.health.upstream_up.load(Relaxed));
    let writable = lanes.iter().all(|l| l.health.log_writable.load(Relaxed));
    ctx.health.upstream_up.store(up, Relaxed);
    ctx.health.log_writable.store(writable, Relaxed);
}

/// Applies a changed `upstream.lanes` to the lanes of an earlier run (and saves the registry),
/// logging each lane handed over.
async fn repartition(reg: &mut Registry, cl: &ClusterSettings, ports: PortRange, dir: &Path) {
    let changed = reg.repartition(cl.lanes, ports);
    if changed.is_empty() {
        return;
    }
    let part = cl
        .lanes
        .map_or_else(|| "all lanes".to_string(), |p| format!("{}/{}", p.i, p.n));
    for &li in &changed {
        let l = &reg.lanes[li];
        if l.taken {
            tracing::info!(lane = %l.name, "upstream.lanes is now {part}: this agent follows lane {} ({})", l.name, l.alias);
        } else {
            tracing::warn!(lane = %l.name, "upstream.lanes is now {part}: lane {} ({}) is another agent's now; this agent no longer follows it (its log stays)", l.name, l.alias);
        }
    }
    save(reg, dir).await;
}

/// Saves the lane registry off the tokio workers; a failure is logged (the next change
/// saves it again).
async fn save(reg: &Registry, dir: &Path) {
    let (r, d) = (reg.clone(), dir.to_path_buf());
    match tokio::task::spawn_blocking(move || r.save(&d)).await {
        Ok(Err(e)) => tracing::error!("{e}"),
        Err(e) => tracing::error!("saving the lane registry: {e}"),
        Ok(Ok(())) => {}
    }
}

/// Starts the lanes this agent takes and does not run yet (new ones, or every lane of the
/// registry at boot, before any topology read: a lane serves what its log holds, and waits,
/// even while no seed answers or the seeds are not cluster nodes). `created` are the lanes the
/// last pass created (a missing port is then an error worth logging).
async fn start_taken(ctx: &ClusterCtx, reg: &Registry, ports: PortRange, created: &[usize]) {
    for (li, rec) in reg.lanes.iter().enumerate() {
        if !rec.taken || rec.retired || ctx.lanes.get(&rec.name).is_some() {
            continue;
        }
        let Some(port) = rec.port else {
            if created.contains(&li) {
                tracing::error!(lane = %rec.name, "listen.shard_ports {}-{} has no port left for lane {} ({}); widen the range", ports.first, ports.last, rec.name, rec.alias);
            }
            continue;
        };
        match Lane::start(&ctx.cfg, rec, port, &ctx.metrics).await {
            Ok(lane) => {
                ctx.serve.insert(
                    &lane.name,
                    peers::Lane {
                        log: lane.log.clone(),
                        peers: lane.peers.clone(),
                    },
                );
                ctx.lanes.push(lane);
            }
            Err(e) => tracing::error!("{e}"),
        }
    }
}

/// Brings the lanes in line with one discovery pass; returns what was wrong with it.
async fn apply(
    ctx: &ClusterCtx,
    cl: &ClusterSettings,
    ports: PortRange,
    reg: &mut Registry,
    d: &Discovered,
) -> Vec<String> {
    let mut problems = Vec::new();
    if !d.state_ok {
        problems.push(format!(
            "cluster_state:fail (read from {}): lanes keep what they have and wait for their shards",
            d.from
        ));
    }
    let topo = super::topology::Topology {
        shards: d.seen.iter().map(|s| s.shard.clone()).collect(),
    };
    let uncovered = topo.uncovered();
    if !uncovered.is_empty() && d.state_ok {
        let list: Vec<String> = uncovered
            .iter()
            .map(|r| format!("{}-{}", r.first, r.last))
            .collect();
        problems.push(format!(
            "slots {} are covered by no shard with a live master; carrying on with the others",
            list.join(",")
        ));
    }
    let history: HashMap<String, Vec<crate::log::HistoryEntry>> = ctx
        .lanes
        .list()
        .iter()
        .map(|l| (l.name.clone(), l.log.history().1))
        .collect();
    let a = registry::assign(reg, &d.seen, &history, cl.lanes, ports);
    start_taken(ctx, reg, ports, &a.created).await;
    for (li, rec) in reg.lanes.iter_mut().enumerate() {
        let Some(lane) = ctx.lanes.get(&rec.name) else {
            continue;
        };
        match a.lanes.get(&li).map(|&si| &d.seen[si].shard) {
            Some(shard) => {
                let tls = ctx.cfg.upstream_tls.is_some();
                let source = shard.source(cl.read_from == ReadFrom::Replica);
                let addr = source.as_ref().ok().map(|n| n.addr(tls));
                if let Err(why) = source {
                    problems.push(format!(
                        "lane {} ({}): {why}; the lane keeps its log and waits",
                        rec.name, rec.alias
                    ));
                }
                lane.follow(addr.clone());
                lane.set_view(|v| {
                    v.slots = shard.slots.clone();
                    v.upstream = addr.clone().unwrap_or_default();
                    v.state = match (&addr, source) {
                        (Some(_), _) if lane.metrics.upstream_connected.get() == 1 => {
                            "streaming".into()
                        }
                        (Some(_), _) => "connecting".into(),
                        (None, Err(why)) => format!("waiting: {why}"),
                        (None, Ok(_)) => "waiting".into(),
                    };
                });
            }
            None if a.gone.contains(&li) && d.state_ok => {
                let head = lane.log.status().head;
                let drained = lane
                    .replicas
                    .snapshot()
                    .iter()
                    .all(|r| r.ack_offset >= head)
                    && lane.peers.snapshot().iter().all(|p| p.ack >= head);
                lane.follow(None);
                if drained {
                    tracing::info!(lane = %rec.name, "the lane's shard left the cluster and its replicas drained it: lane retired");
                    rec.retired = true;
                    ctx.serve.remove(&rec.name);
                    if let Some(l) = ctx.lanes.remove(&rec.name) {
                        l.stop().await;
                    }
                } else {
                    lane.set_view(|v| {
                        v.slots.clear();
                        v.state = "retiring: the shard left the cluster; waiting for downstreams to drain".into();
                    });
                }
            }
            None => lane.set_view(|v| {
                v.state = "waiting: the cluster does not list the lane's shard".into();
            }),
        }
    }
    publish(ctx);
    problems
}

/// Sends the slot map downstream when it changed (its version grows by one).
fn publish(ctx: &ClusterCtx) {
    let lanes: Vec<LaneSlots> = ctx
        .lanes
        .list()
        .iter()
        .map(|l| LaneSlots {
            name: l.name.clone(),
            alias: l.alias.clone(),
            ranges: l.view().slots,
        })
        .collect();
    ctx.serve.slot_map().send_if_modified(|map| {
        if map.as_ref().is_some_and(|m| m.lanes == lanes) {
            return false;
        }
        let version = map.as_ref().map_or(1, |m| m.version + 1);
        match SlotMap::new(version, lanes) {
            Ok(m) => {
                *map = Some(m);
                true
            }
            Err(e) => {
                tracing::warn!("slot map not published: {e}");
                false
            }
        }
    });
}

/// The lanes' directory (`data_dir/lanes`).
pub fn lanes_dir(cfg: &Config) -> PathBuf {
    cfg.data_dir.join("lanes")
}

/// Slot ranges as `[[first, last], …]`.
pub fn ranges_json(r: &[SlotRange]) -> Vec<[u16; 2]> {
    r.iter().map(|r| [r.first, r.last]).collect()
}
