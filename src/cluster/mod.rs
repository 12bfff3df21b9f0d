//! Redis Cluster support: hash slots, the slot map (lanes → slots) and its codec.
//!
//! - [`slot`]: CRC16 key → slot with hashtags.
//! - [`slotmap`]: the versioned lane → slot-ranges map, validated.
//! - [`slotmap_codec`]: its binary encoding, sent downstream on the control stream.
//! - [`topology`]: pure parsers of `CLUSTER SHARDS`, `CLUSTER NODES`, `CLUSTER INFO` and
//!   `INFO replication` into shards (site side, no I/O).
//! - [`registry`]: the persisted lanes and the pure shard → lane assignment (replid lineage).
//! - [`discover`]: the async shell reading the topology from the seeds.
//! - [`lane`]: one running lane (log, upstream task, snapshot refresh, shard port).
//! - [`run`]: the cluster loop keeping the lanes in step with the topology.
//! - [`status`]: the lanes' `/status` rows.

pub mod discover;
pub mod lane;
pub mod registry;
pub mod run;
pub mod slot;
pub mod slotmap;
pub mod slotmap_codec;
pub mod status;
pub mod topology;

pub use slot::{key_slot, SLOTS};
pub use slotmap::{LaneSlots, SlotMap, SlotMapError, SlotRange};
