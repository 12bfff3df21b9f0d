//! Apply mode for lanes (a cluster-mode region agent with `[target]`): one applier per lane,
//! each on its own thread with its own checkpoints (`<agent name>:<lane>` in every key),
//! sharing one set of `georelay_apply_*{shard}` series and the `/status` target rows. A lane's
//! applier judges "does the target already hold data" on the slots the slot map gives that
//! lane, since other lanes fill the rest of the target at the same time.

use tokio::sync::watch;

use super::{ApplyCtx, ApplyMetrics, ApplyView, ApplyViews};
use crate::cluster::SlotMap;
use crate::config::{Config, TargetConfig};
use crate::log::Log;

/// What starting a lane's applier needs; cloned into the region's lane tasks.
#[derive(Clone)]
pub struct LaneApply {
    target: TargetConfig,
    node: String,
    metrics: ApplyMetrics,
    views: ApplyViews,
    map: watch::Receiver<Option<SlotMap>>,
    shutdown: watch::Receiver<bool>,
}

impl LaneApply {
    /// Registers the apply series (no lane yet) and keeps what each lane's applier needs:
    /// `map` is the slot map the region follows.
    pub fn new(
        cfg: &Config,
        target: &TargetConfig,
        metrics: &crate::metrics::Metrics,
        views: ApplyViews,
        map: watch::Receiver<Option<SlotMap>>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<LaneApply, String> {
        let m = ApplyMetrics::register(metrics.registry(), super::MAIN_LANE)
            .map_err(|e| e.to_string())?;
        Ok(LaneApply {
            target: target.clone(),
            node: cfg.name.clone(),
            metrics: m,
            views,
            map,
            shutdown,
        })
    }

    /// Starts lane `lane`'s applier on `log` (its own thread).
    pub fn start(&self, lane: &str, log: &Log) -> Result<(), String> {
        self.metrics.add_lane(lane);
        let ctx = ApplyCtx {
            target: self.target.clone(),
            node: self.node.clone(),
            lane: lane.to_string(),
            log: log.clone(),
            metrics: self.metrics.clone(),
            view: ApplyView::new(lane, ""),
            shutdown: self.shutdown.clone(),
            slots: Some(self.map.clone()),
        };
        ctx.view.update(|r| r.addr = ctx.addr());
        self.views.add(ctx.view.clone());
        super::spawn(ctx)
            .map(|_| ())
            .map_err(|e| format!("cannot start the applier thread of lane {lane}: {e}"))
    }
}

/// Starts an applier for every lane that appears in `lanes` (the lanes the agent serves —
/// a region's, or a cluster-mode site's), until shutdown. Lanes appear when the slot map
/// changes; the lane set is also looked at every second.
pub async fn follow_lanes(apply: LaneApply, lanes: crate::serve::peers::LaneMap) {
    let mut started = std::collections::HashSet::new();
    let mut map = lanes.slot_map().subscribe();
    let mut shutdown = apply.shutdown.clone();
    loop {
        for name in lanes.names() {
            if started.contains(&name) {
                continue;
            }
            let Some(lane) = lanes.get(&name) else {
                continue;
            };
            match apply.start(&name, &lane.log) {
                Ok(()) => {
                    tracing::info!(lane = %name, "apply: lane applier started");
                    started.insert(name);
                }
                Err(e) => {
                    tracing::error!(lane = %name, "apply: {e}");
                    started.insert(name);
                }
            }
        }
        tokio::select! {
            _ = map.changed() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
