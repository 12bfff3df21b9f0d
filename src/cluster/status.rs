//! The lanes' rows of `/status` (`shards: [{name, slots, replica_port, upstream, head_offset,
//! durable_offset, lag_bytes, lag_seconds}]`).

use serde::{Deserialize, Serialize};

use super::run::Lanes;

/// One lane in `/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardRow {
    pub name: String,
    pub alias: String,
    /// `[[first, last], …]`.
    pub slots: Vec<[u16; 2]>,
    pub replica_port: u16,
    /// The node the lane replicates from ("" while it has none).
    pub upstream: String,
    pub head_offset: u64,
    pub durable_offset: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    /// "streaming", "connecting", "waiting: …", "retiring: …".
    pub state: String,
}

/// A row per running lane, in creation order.
pub fn rows(lanes: &Lanes) -> Vec<ShardRow> {
    let mut rows: Vec<ShardRow> = lanes
        .list()
        .iter()
        .map(|l| {
            l.metrics.refresh_from_log(&l.log);
            let s = l.log.status();
            let v = l.view();
            let state = if v.state == "connecting" && l.metrics.upstream_connected.get() == 1 {
                "streaming".to_string()
            } else {
                v.state
            };
            ShardRow {
                name: l.name.clone(),
                alias: l.alias.clone(),
                slots: super::run::ranges_json(&v.slots),
                replica_port: l.port,
                upstream: v.upstream,
                head_offset: s.head,
                durable_offset: s.durable,
                lag_bytes: l.metrics.lag_bytes.get().max(0) as u64,
                lag_seconds: l.metrics.lag_seconds.get(),
                state,
            }
        })
        .collect();
    rows.extend(lanes.other_rows());
    rows
}
