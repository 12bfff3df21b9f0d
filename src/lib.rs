//! georelay: replicate a Redis/Valkey master across datacenters through a durable replication log.
//!
//! Module map:
//! - [`config`]: TOML configuration, defaults and validation.
//! - [`resp`]: RESP frames and the replication-stream scanner (pure codec, no I/O).
//! - [`rdb`]: RDB transfer framing, header/version and CRC64 (pure codec, no I/O).
//! - [`log`]: the durable replication log: segments, snapshots, replid history, readers.
//! - [`upstream`]: the replica side towards a Redis master.
//! - [`serve`]: the master side towards Redis replicas.
//! - [`metrics`]: Prometheus registry and the admin HTTP listener.
//! - [`origin`]: the origin server's release, as its snapshot's RDB names it.
//! - [`cluster`]: Redis Cluster hash slots, the slot map (lanes → slots), topology discovery and lanes.
//! - [`region`]: a cluster-mode region agent: lanes learnt from the site's slot map.
//! - [`wansim`]: the loopback UDP impairment relay behind `georelay wan-sim`.
//! - [`dr`]: runtime re-pointing, `georelay switchover` and `georelay failover`.
//! - [`tasks`]: a named, supervised set of tokio tasks.
//! - [`app`]: wires everything together with one shutdown path.
//!
//! Lints: `unsafe` is denied crate-wide; the few audited libc calls in the log's segment I/O
//! (`pwritev`, `pread`, `sync_file_range`, `posix_fadvise`) carry `#[allow(unsafe_code)]` and a
//! `SAFETY:` note. Rust 2018 idioms are warned on (errors under clippy `-D warnings`).

#![deny(unsafe_code)]
#![warn(rust_2018_idioms)]

pub mod app;
pub mod apply;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod dr;
pub mod failpoint;
pub mod link;
pub mod log;
pub mod metrics;
pub mod origin;
pub mod rdb;
pub mod redistls;
pub mod region;
pub mod resp;
pub mod serve;
pub mod tasks;
pub mod units;
pub mod upstream;
pub mod wansim;
