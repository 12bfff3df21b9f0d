//! Redis/Valkey Cluster support: the site agent follows every shard of a cluster as one lane.
//!
//! Module map:
//! - this file: the lane types shared by the site side (discovery, lanes) and the region side
//!   (slot map, control stream, cluster endpoint).
//! - [`topology`]: pure parsers of `CLUSTER SHARDS`, `CLUSTER NODES`, `CLUSTER INFO` and
//!   `INFO replication` (no I/O).
//! - [`registry`]: the persisted lane registry and the pure assignment of shards to lanes
//!   (replid lineage first, then shard id / node ids).
//! - [`discover`]: the async shell that reads the topology from the seeds.
//! - [`lane`] and [`run`]: a running lane (log, upstream task, snapshot refresh, shard port)
//!   and the cluster-mode agent that keeps the lanes in step with the topology.

pub mod topology;

/// An inclusive range of hash slots, `[first, last]`.
pub type SlotRange = (u16, u16);

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u32 = 16384;

/// One lane as the rest of the agent sees it: its lifelong name, a readable alias, the slots
/// its shard owns now, and the replica port it is served on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LaneSlots {
    /// Persisted for life: the shard id where the server reports one, else the node id of the
    /// first master seen.
    pub name: String,
    /// Short readable alias (`shard-0`, `shard-1`, … in creation order).
    pub alias: String,
    /// Slot ranges the lane's shard owns, sorted, non-overlapping.
    pub slots: Vec<SlotRange>,
    /// The lane's replica port (`listen.shard_ports`).
    pub replica_port: u16,
}

/// The cluster as the site agent last read it: every live lane with its slots. `version`
/// grows by one whenever anything in `lanes` changes, so downstream can drop stale maps.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterView {
    pub version: u64,
    pub lanes: Vec<LaneSlots>,
}

/// Joins sorted single slots / ranges into the fewest inclusive ranges.
pub fn merge_ranges(mut ranges: Vec<SlotRange>) -> Vec<SlotRange> {
    ranges.sort_unstable();
    let mut out: Vec<SlotRange> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge() {
        assert_eq!(
            merge_ranges(vec![(10, 20), (0, 5), (6, 9), (30, 30), (25, 31)]),
            vec![(0, 20), (25, 31)]
        );
        assert_eq!(merge_ranges(vec![]), vec![]);
    }
}
