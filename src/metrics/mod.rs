//! The agent's Prometheus metrics: one registry, typed handles, and gauges refreshed from the
//! log at scrape time. Metric and label names are a public interface (see README).

pub mod admin;
mod health;
mod reg;
pub mod status;
pub mod wire;

pub use health::{Health, LastSync, UpstreamLag, UpstreamView};
use reg::{counter, counter_vec, fgauge, fgauge_vec, gauge, gauge_vec};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Registry, TextEncoder,
};

use crate::log::Log;

/// Errors from building the registry (only possible through a programming mistake such as a
/// duplicate name, but reported, not panicked on).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics registry: {0}")]
    Registry(#[from] prometheus::Error),
}

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    /// Per-lane metrics (cluster mode), rendered with this registry's: each carries `shard`.
    lanes: std::sync::Mutex<Vec<Arc<Metrics>>>,
    pub build_info: IntGaugeVec,
    pub log_head_offset: IntGauge,
    pub log_first_offset: IntGauge,
    pub log_durable_offset: IntGauge,
    pub log_disk_bytes: IntGauge,
    pub log_segments: IntGauge,
    pub log_max_bytes: IntGauge,
    pub log_window_bytes: IntGauge,
    pub log_window_seconds: Gauge,
    pub log_fsync_seconds: Histogram,
    pub log_corruptions_total: IntGauge,
    pub snapshot_offset: IntGauge,
    pub snapshot_age_seconds: IntGauge,
    pub lag_bytes: IntGauge,
    pub lag_seconds: Gauge,
    pub upstream_head_offset: IntGauge,
    pub upstream_heartbeat_age_seconds: Gauge,
    pub upstream_connected: IntGauge,
    pub upstream_full_syncs: IntCounterVec,
    pub upstream_partial_syncs: IntCounter,
    pub upstream_replid_switches: IntCounter,
    pub upstream_reconnects: IntCounter,
    pub upstream_snapshot_resumes: IntCounter,
    pub upstream_stream_bytes: IntCounter,
    pub snapshot_refreshes: IntCounterVec,
    pub served_full_syncs: IntCounterVec,
    pub served_partial_syncs: IntCounterVec,
    pub served_refusals: IntCounterVec,
    pub connected_replicas: IntGauge,
    pub replica_ack_offset: IntGaugeVec,
    pub replica_fsync_offset: IntGaugeVec,
    pub replica_lag_bytes: IntGaugeVec,
    pub replica_lag_seconds: GaugeVec,
    pub replicas_dropped: IntCounterVec,
    pub connected_agents: IntGauge,
    pub downstream_agent_ack_offset: IntGaugeVec,
    pub downstream_agent_fsync_offset: IntGaugeVec,
    pub downstream_agent_lag_bytes: IntGaugeVec,
    pub downstream_agent_lag_seconds: GaugeVec,
    pub link_bytes: IntCounterVec,
    pub link_stream_bytes: IntCounterVec,
    /// What this node knows of its upstream (for lag).
    pub upstream_view: UpstreamView,
}

impl Metrics {
    /// Builds the registry; `node` becomes a constant `node` label on every metric.
    pub fn new(node: &str) -> Result<Arc<Metrics>, MetricsError> {
        Self::with_shard(node, None)
    }

    /// A lane's metrics (cluster mode): `shard` is a constant label on every metric, and they
    /// are rendered with this node's (see [`Metrics::render`]).
    pub fn new_lane(&self, node: &str, shard: &str) -> Result<Arc<Metrics>, MetricsError> {
        let m = Self::with_shard(node, Some(shard))?;
        self.lanes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(m.clone());
        Ok(m)
    }

    fn with_shard(node: &str, shard: Option<&str>) -> Result<Arc<Metrics>, MetricsError> {
        let mut labels = std::collections::HashMap::new();
        labels.insert("node".to_string(), node.to_string());
        if let Some(shard) = shard {
            labels.insert("shard".to_string(), shard.to_string());
        }
        let r = Registry::new_custom(None, Some(labels))?;
        let m = Metrics {
            build_info: gauge_vec(
                &r,
                "georelay_build_info",
                "Always 1; the version label names the build.",
                &["version"],
            )?,
            log_head_offset: gauge(
                &r,
                "georelay_log_head_offset",
                "Replication offset of the last byte in the log.",
            )?,
            log_first_offset: gauge(
                &r,
                "georelay_log_first_offset",
                "First replication offset the log can still serve (partial-resume window start).",
            )?,
            log_durable_offset: gauge(
                &r,
                "georelay_log_durable_offset",
                "Highest replication offset known to be fsynced.",
            )?,
            log_disk_bytes: gauge(
                &r,
                "georelay_log_disk_bytes",
                "Bytes on disk used by log segments and snapshots.",
            )?,
            log_segments: gauge(&r, "georelay_log_segments", "Number of log segment files.")?,
            log_corruptions_total: gauge(
                &r,
                "georelay_log_corruptions_total",
                "Corrupt log records detected (never served).",
            )?,
            snapshot_offset: gauge(
                &r,
                "georelay_snapshot_offset",
                "Replication offset of the newest usable snapshot (RDB).",
            )?,
            snapshot_age_seconds: gauge(
                &r,
                "georelay_snapshot_age_seconds",
                "Age of the newest usable snapshot in seconds.",
            )?,
            lag_bytes: gauge(&r, "georelay_lag_bytes", "Upstream head offset (latest known) minus this node's durable offset.")?,
            lag_seconds: fgauge(&r, "georelay_lag_seconds", "Now minus the origin timestamp of the oldest stream byte this node does not yet hold durably; 0 when caught up.")?,
            upstream_head_offset: gauge(&r, "georelay_upstream_head_offset", "Upstream head offset, as last heard.")?,
            upstream_heartbeat_age_seconds: fgauge(&r, "georelay_upstream_heartbeat_age_seconds", "Seconds since anything (data or heartbeat) arrived from upstream.")?,
            upstream_connected: gauge(
                &r,
                "georelay_upstream_connected",
                "1 when the upstream replication link is streaming, else 0.",
            )?,
            upstream_full_syncs: counter_vec(
                &r,
                "georelay_upstream_full_syncs_total",
                "Full syncs received from upstream, by reason.",
                &["reason"],
            )?,
            upstream_partial_syncs: counter(
                &r,
                "georelay_upstream_partial_syncs_total",
                "Partial syncs (+CONTINUE) received from upstream.",
            )?,
            upstream_replid_switches: counter(
                &r,
                "georelay_upstream_replid_switches_total",
                "Replication ID switches seen upstream (failover or restart from RDB).",
            )?,
            upstream_reconnects: counter(
                &r,
                "georelay_upstream_reconnects_total",
                "Upstream connection attempts after the first.",
            )?,
            upstream_snapshot_resumes: counter(
                &r,
                "georelay_upstream_snapshot_resumes_total",
                "Snapshot transfers from an upstream agent resumed after a lost link (not restarted).",
            )?,
            upstream_stream_bytes: counter(
                &r,
                "georelay_upstream_stream_bytes_total",
                "Replication stream bytes received from upstream.",
            )?,
            snapshot_refreshes: counter_vec(
                &r,
                "georelay_snapshot_refreshes_total",
                "Snapshot refresh attempts through an rdb-only connection, by result.",
                &["result"],
            )?,
            served_full_syncs: counter_vec(
                &r,
                "georelay_served_full_syncs_total",
                "Full syncs served downstream, by kind and reason.",
                &["kind", "reason"],
            )?,
            served_partial_syncs: counter_vec(
                &r,
                "georelay_served_partial_syncs_total",
                "Partial syncs served downstream, by kind.",
                &["kind"],
            )?,
            served_refusals: counter_vec(
                &r,
                "georelay_served_refusals_total",
                "Downstream sync requests refused, by reason.",
                &["kind", "reason"],
            )?,
            connected_replicas: gauge(
                &r,
                "georelay_connected_replicas",
                "Redis replicas connected to the replica port and syncing or online.",
            )?,
            replica_ack_offset: gauge_vec(
                &r,
                "georelay_replica_ack_offset",
                "Last offset acknowledged by a served Redis replica.",
                &["replica"],
            )?,
            replica_fsync_offset: gauge_vec(
                &r,
                "georelay_replica_fsync_offset",
                "Last offset a served Redis replica acknowledged as fsynced (REPLCONF ACK … FACK; Redis 7.2+/Valkey with appendonly).",
                &["replica"],
            )?,
            replica_lag_bytes: gauge_vec(
                &r,
                "georelay_replica_lag_bytes",
                "Log head minus the replica's acknowledged offset.",
                &["replica"],
            )?,
            replicas_dropped: counter_vec(
                &r,
                "georelay_replicas_dropped_total",
                "Served replicas disconnected by the agent, by reason.",
                &["reason"],
            )?,
            connected_agents: gauge(&r, "georelay_connected_agents", "Downstream agents connected over QUIC.")?,
            downstream_agent_ack_offset: gauge_vec(&r, "georelay_downstream_agent_ack_offset", "Durable offset acknowledged by a downstream agent.", &["peer"])?,
            downstream_agent_fsync_offset: gauge_vec(&r, "georelay_downstream_agent_fsync_offset", "Offset a downstream agent acknowledged as fsynced in its log.", &["peer"])?,
            downstream_agent_lag_bytes: gauge_vec(&r, "georelay_downstream_agent_lag_bytes", "Log head minus the downstream agent's acknowledged offset.", &["peer"])?,
            link_bytes: counter_vec(&r, "georelay_link_bytes_total", "UDP bytes on the QUIC link to/from a peer agent (after compression, with QUIC overhead).", &["peer", "direction"])?,
            link_stream_bytes: counter_vec(&r, "georelay_link_stream_bytes_total", "Replication stream bytes carried on the link to/from a peer agent, before compression.", &["peer", "direction"])?,
            log_max_bytes: gauge(&r, "georelay_log_max_bytes", "Retention budget for log segments (log.max_bytes).")?,
            log_window_bytes: gauge(&r, "georelay_log_window_bytes", "Bytes of stream the log can still serve for partial resyncs (head - first + 1).")?,
            log_window_seconds: fgauge(&r, "georelay_log_window_seconds", "Age of the oldest stream byte the log still serves: how long a region can be cut off and still resume partially.")?,
            log_fsync_seconds: {
                let h = Histogram::with_opts(
                    HistogramOpts::new("georelay_log_fsync_seconds", "Duration of log fsync passes (group commit).")
                        .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            replica_lag_seconds: fgauge_vec(&r, "georelay_replica_lag_seconds", "Now minus the origin timestamp of the oldest byte a served replica has not acknowledged; 0 when caught up.", &["replica"])?,
            downstream_agent_lag_seconds: fgauge_vec(&r, "georelay_downstream_agent_lag_seconds", "Now minus the origin timestamp of the oldest byte a downstream agent has not acknowledged as durable; 0 when caught up.", &["peer"])?,
            upstream_view: UpstreamView::default(),
            registry: r,
            lanes: Default::default(),
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m.start_counters_at_zero();
        Ok(Arc::new(m))
    }

    /// Creates every labelled counter whose label values are known in advance at 0, so
    /// `increase()` sees the first event and dashboards show 0 rather than "no data".
    fn start_counters_at_zero(&self) {
        const KINDS: [&str; 2] = ["redis", "agent"];
        const FULL_REASONS: [&str; 5] = [
            "first_sync",
            "no_history",
            "offset_out_of_range",
            "corruption",
            "new_epoch",
        ];
        for kind in KINDS {
            self.served_partial_syncs.with_label_values(&[kind]);
            for reason in FULL_REASONS {
                self.served_full_syncs.with_label_values(&[kind, reason]);
            }
            for reason in ["max_replicas", "tls"] {
                self.served_refusals.with_label_values(&[kind, reason]);
            }
        }
        for reason in ["max_connections", "rdb_version"] {
            self.served_refusals.with_label_values(&["redis", reason]);
        }
        self.served_refusals
            .with_label_values(&["agent", "max_agents"]);
        for reason in ["first_sync", "new_epoch"] {
            self.upstream_full_syncs.with_label_values(&[reason]);
        }
        for reason in ["slow", "timeout"] {
            self.replicas_dropped.with_label_values(&[reason]);
        }
        for result in ["ok", "error"] {
            self.snapshot_refreshes.with_label_values(&[result]);
        }
    }

    /// Refreshes the gauges that mirror the log's state.
    pub fn refresh_from_log(&self, log: &Log) {
        let s = log.status();
        self.log_head_offset.set(s.head as i64);
        self.log_first_offset.set(s.first_valid as i64);
        self.log_durable_offset.set(s.durable as i64);
        self.log_disk_bytes.set(s.disk_bytes as i64);
        self.log_segments.set(s.segment_count as i64);
        self.log_max_bytes.set(log.max_bytes() as i64);
        let window = if s.history.is_empty() {
            0
        } else {
            (s.head + 1).saturating_sub(s.first_valid)
        };
        self.log_window_bytes.set(window as i64);
        let oldest = if window > 0 {
            log.timestamp_at(s.first_valid)
        } else {
            None
        };
        self.log_window_seconds.set(
            oldest
                .map(|ts| crate::clock::now_us().saturating_sub(ts) as f64 / 1e6)
                .unwrap_or(0.0),
        );
        self.log_corruptions_total.set(s.corruptions_total as i64);
        let up = &self.upstream_view;
        let now = crate::clock::now_us();
        let lag = up.lag(log, &s, now);
        self.upstream_head_offset.set(lag.head as i64);
        self.lag_bytes.set(lag.bytes as i64);
        self.lag_seconds.set(lag.seconds);
        let heard = up.heard_us.load(Ordering::Relaxed);
        if heard > 0 {
            self.upstream_heartbeat_age_seconds
                .set(now.saturating_sub(heard) as f64 / 1e6);
        }
        if let Some(snap) = log.snapshot_for_full_sync() {
            self.snapshot_offset.set(snap.offset as i64);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            self.snapshot_age_seconds
                .set(now.saturating_sub(snap.created_unix) as i64);
        }
    }

    /// Records a follower's ACK in its three gauges (offset, lag bytes, lag seconds).
    pub fn record_follower_ack(
        ack_g: &IntGaugeVec,
        bytes_g: &IntGaugeVec,
        secs_g: &GaugeVec,
        label: &str,
        log: &Log,
        ack: u64,
    ) {
        ack_g.with_label_values(&[label]).set(ack as i64);
        let head = log.current().map(|c| c.1).unwrap_or(0);
        bytes_g
            .with_label_values(&[label])
            .set(head.saturating_sub(ack) as i64);
        secs_g
            .with_label_values(&[label])
            .set(Self::follower_lag_seconds(log, ack));
    }

    /// Lag in seconds of a follower that acknowledged `ack`: now minus the origin timestamp of
    /// the first byte it lacks, 0 when it has everything.
    pub fn follower_lag_seconds(log: &Log, ack: u64) -> f64 {
        match log.current() {
            Some((_, head)) if ack < head => log
                .timestamp_at(ack + 1)
                .filter(|ts| *ts > 0)
                .map(|ts| crate::clock::now_us().saturating_sub(ts) as f64 / 1e6)
                .unwrap_or(0.0),
            _ => 0.0,
        }
    }

    /// The node's registry, for series registered elsewhere (apply mode's).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a failure would be a malformed metric.
        let mut families = self.registry.gather();
        for lane in self.lanes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            for f in lane.registry.gather() {
                match families.iter_mut().find(|g| g.name() == f.name()) {
                    Some(g) => g.mut_metric().extend(f.get_metric().iter().cloned()),
                    None => families.push(f),
                }
            }
        }
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!("encoding metrics failed: {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_metrics_render_with_the_node_under_a_shard_label() {
        let node = Metrics::new("site").unwrap();
        let a = node.new_lane("site", "lane-a").unwrap();
        let b = node.new_lane("site", "lane-b").unwrap();
        a.upstream_partial_syncs.inc();
        b.upstream_partial_syncs.inc_by(2);
        let text = String::from_utf8(node.render()).unwrap();
        let help = "# HELP georelay_upstream_partial_syncs_total";
        assert_eq!(text.matches(help).count(), 1, "one family:\n{text}");
        let line = |shard: &str, v: &str| {
            text.lines().any(|l| {
                l.starts_with("georelay_upstream_partial_syncs_total{")
                    && l.contains(r#"node="site""#)
                    && l.contains(&format!("shard=\"{shard}\""))
                    && l.ends_with(v)
            })
        };
        assert!(line("lane-a", "} 1") && line("lane-b", "} 2"), "{text}");
        assert!(text.contains(r#"georelay_upstream_partial_syncs_total{node="site"} 0"#));
    }
}
