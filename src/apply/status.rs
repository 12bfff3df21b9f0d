//! What an applier shows: its Prometheus series (`georelay_apply_*`, per `shard`, counters
//! from 0) and its live view for the `target` rows of `/status`.

use std::sync::{Arc, Mutex};

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use crate::metrics::MetricsError;

/// Every `reason` of `georelay_apply_errors_total`.
pub const REASONS: [&str; 15] = [
    "target_down",
    "readonly",
    "oom",
    "loading",
    "auth",
    "busy",
    "protocol",
    "unknown_command",
    "command",
    "flush_refused",
    "redirect",
    "stopped",
    "module",
    "origin_migration",
    "unreplicated",
];

#[derive(Clone)]
pub struct ApplyMetrics {
    pub offset: IntGaugeVec,
    pub lag_bytes: IntGaugeVec,
    pub lag_seconds: GaugeVec,
    pub errors: IntCounterVec,
    pub full_syncs: IntCounterVec,
    pub commands: IntCounterVec,
    pub keys_loaded: IntCounterVec,
}

impl ApplyMetrics {
    /// Registers the series in `reg`, for lane `shard` (its counters at 0).
    pub fn register(reg: &Registry, shard: &str) -> Result<ApplyMetrics, MetricsError> {
        let ig = |name: &str, help: &str| -> Result<IntGaugeVec, MetricsError> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["shard"])?;
            reg.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let ic = |name: &str, help: &str, label: &str| -> Result<IntCounterVec, MetricsError> {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            reg.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let lag_seconds = GaugeVec::new(
            Opts::new("georelay_apply_lag_seconds", "Now minus the origin timestamp of the oldest log byte not yet applied to the target; 0 when caught up."),
            &["shard"],
        )?;
        reg.register(Box::new(lag_seconds.clone()))?;
        let m = ApplyMetrics {
            offset: ig(
                "georelay_apply_offset",
                "Origin offset applied to the target (the checkpoint written with the commands).",
            )?,
            lag_bytes: ig(
                "georelay_apply_lag_bytes",
                "Log head minus the offset applied to the target.",
            )?,
            lag_seconds,
            errors: ic(
                "georelay_apply_errors_total",
                "Target errors met while applying, by reason (a pause and retry, or a stop).",
                "reason",
            )?,
            full_syncs: ic(
                "georelay_apply_full_syncs_total",
                "Full syncs loaded into the target (snapshot keys written), by lane.",
                "shard",
            )?,
            commands: ic(
                "georelay_apply_commands_total",
                "Stream commands applied to the target, by lane.",
                "shard",
            )?,
            keys_loaded: ic(
                "georelay_apply_keys_loaded_total",
                "Snapshot keys written to the target by full syncs, by lane.",
                "shard",
            )?,
        };
        for r in REASONS {
            m.errors.with_label_values(&[r]);
        }
        m.add_lane(shard);
        Ok(m)
    }

    /// Lane `shard`'s series, at 0 (the metrics are registered once, for the first lane).
    pub fn add_lane(&self, shard: &str) {
        self.offset.with_label_values(&[shard]);
        self.lag_bytes.with_label_values(&[shard]);
        self.lag_seconds.with_label_values(&[shard]);
        self.full_syncs.with_label_values(&[shard]);
        self.commands.with_label_values(&[shard]);
        self.keys_loaded.with_label_values(&[shard]);
    }
}

/// Every applier's view, one per lane (the `target` rows of `/status`).
#[derive(Clone, Default)]
pub struct ApplyViews(Arc<Mutex<Vec<Arc<ApplyView>>>>);

impl ApplyViews {
    pub fn add(&self, v: Arc<ApplyView>) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(v);
    }

    pub fn rows(&self) -> Vec<TargetRow> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|v| v.row())
            .collect()
    }
}

/// One `target` row of `/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetRow {
    pub shard: String,
    pub addr: String,
    /// "connecting", "full_sync", "streaming", "paused" or "stopped".
    pub state: String,
    pub applied: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    /// Why it is paused or stopped ("" when all is well).
    pub error: String,
}

/// The live view an applier updates and `/status` reads.
#[derive(Default)]
pub struct ApplyView {
    row: Mutex<TargetRow>,
}

impl ApplyView {
    pub fn new(shard: &str, addr: &str) -> Arc<ApplyView> {
        Arc::new(ApplyView {
            row: Mutex::new(TargetRow {
                shard: shard.into(),
                addr: addr.into(),
                state: "connecting".into(),
                ..Default::default()
            }),
        })
    }

    pub fn update(&self, f: impl FnOnce(&mut TargetRow)) {
        f(&mut self.row.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn row(&self) -> TargetRow {
        self.row.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_start_at_zero_and_the_view_updates() {
        let reg = Registry::new();
        let m = ApplyMetrics::register(&reg, "main").unwrap();
        assert_eq!(m.errors.with_label_values(&["readonly"]).get(), 0);
        let names: Vec<String> = reg.gather().iter().map(|f| f.name().to_string()).collect();
        for n in [
            "georelay_apply_offset",
            "georelay_apply_lag_bytes",
            "georelay_apply_lag_seconds",
            "georelay_apply_errors_total",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        let v = ApplyView::new("main", "127.0.0.1:1");
        v.update(|r| r.state = "paused".into());
        assert_eq!(v.row().state, "paused");
        let all = ApplyViews::default();
        all.add(v);
        all.add(ApplyView::new("lane-b", ""));
        m.add_lane("lane-b");
        assert_eq!(m.full_syncs.with_label_values(&["lane-b"]).get(), 0);
        let rows = all.rows();
        assert_eq!((rows.len(), rows[1].shard.as_str()), (2, "lane-b"));
    }
}
