//! The cluster keys: `upstream.cluster` (seed nodes), `upstream.read_from`,
//! `upstream.cluster_refresh`, `upstream.lanes = "i/n"` and `listen.shard_ports = "P1-P2"`.

use std::time::Duration;

use super::problems::{is_host_port, Problems};
use super::upstream::RawUpstream;
use crate::units::parse_duration;

/// Which node of each shard a lane replicates from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    Master,
    /// One of the shard's replicas (same replid and offsets, no load on the master); the
    /// master when it has none.
    Replica,
}

/// `upstream.lanes = "i/n"`: this agent takes the lanes whose name hashes to `i` mod `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanePart {
    pub i: u32,
    pub n: u32,
}

/// An inclusive port range (`listen.shard_ports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// The validated `upstream.cluster` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub seeds: Vec<String>,
    pub read_from: ReadFrom,
    pub refresh: Duration,
    pub lanes: Option<LanePart>,
}

/// Checks the cluster keys of `[upstream]`; every problem names its key.
pub(super) fn validate_cluster(
    raw: &RawUpstream,
    problems: &mut Problems,
) -> Option<ClusterSettings> {
    let Some(seeds) = raw.cluster.clone() else {
        for (key, set) in [
            ("upstream.read_from", raw.read_from.is_some()),
            ("upstream.cluster_refresh", raw.cluster_refresh.is_some()),
            ("upstream.lanes", raw.lanes.is_some()),
        ] {
            if set {
                problems.bad(key, "applies to upstream.cluster only");
            }
        }
        return None;
    };
    if raw.redis.is_some() || raw.agent.is_some() {
        problems.bad(
            "upstream.cluster",
            "set exactly one of upstream.redis, upstream.agent or upstream.cluster",
        );
    }
    if seeds.is_empty() {
        problems.bad(
            "upstream.cluster",
            "needs at least one seed node (\"host:port\" of any cluster node)",
        );
    }
    for s in seeds.iter().filter(|s| !is_host_port(s)) {
        problems.bad("upstream.cluster", format!("seed {s:?} is not host:port"));
    }
    let read_from = match raw.read_from.as_deref() {
        None | Some("master") => ReadFrom::Master,
        Some("replica") => ReadFrom::Replica,
        Some(other) => {
            problems.bad(
                "upstream.read_from",
                format!("{other:?} must be master or replica"),
            );
            ReadFrom::Master
        }
    };
    let refresh = match parse_duration(raw.cluster_refresh.as_deref().unwrap_or("5s")) {
        Ok(d) if d >= Duration::from_millis(100) => d,
        Ok(_) => {
            problems.bad("upstream.cluster_refresh", "must be at least 100ms");
            Duration::from_secs(5)
        }
        Err(e) => {
            problems.bad("upstream.cluster_refresh", e);
            Duration::from_secs(5)
        }
    };
    let lanes = raw.lanes.as_ref().and_then(|v| {
        let part = v
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?)))
            .filter(|(i, n)| *n >= 1 && i < n);
        if part.is_none() {
            problems.bad(
                "upstream.lanes",
                format!("{v:?} must be \"i/n\" with 0 <= i < n (this agent takes the lanes whose name hashes to i mod n)"),
            );
        }
        part.map(|(i, n)| LanePart { i, n })
    });
    Some(ClusterSettings {
        seeds,
        read_from,
        refresh,
        lanes,
    })
}

/// Parses `listen.shard_ports = "P1-P2"`; with `upstream.cluster` it is required.
pub(super) fn shard_ports(
    v: Option<&str>,
    cluster: bool,
    problems: &mut Problems,
) -> Option<PortRange> {
    let Some(v) = v else {
        if cluster {
            problems.bad(
                "listen.shard_ports",
                "is required with upstream.cluster (one replica port per lane, e.g. \"7101-7116\")",
            );
        }
        return None;
    };
    let r = v
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)))
        .filter(|(a, b)| *a > 0 && a <= b);
    if r.is_none() {
        problems.bad(
            "listen.shard_ports",
            format!("{v:?} must be \"P1-P2\" with 0 < P1 <= P2 (one replica port per lane)"),
        );
    }
    r.map(|(first, last)| PortRange { first, last })
}

/// The stable hash behind `upstream.lanes`: 64-bit FNV-1a of the lane name's bytes. Lane
/// `name` belongs to agent `i` of `n` when `lane_hash(name) % n == i`.
pub fn lane_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl LanePart {
    /// Whether this agent takes the lane `name`.
    pub fn takes(&self, name: &str) -> bool {
        lane_hash(name) % u64::from(self.n) == u64::from(self.i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, std::path::Path::new("/etc/georelay/t.toml")).map_err(|e| e.to_string())
    }

    const OK: &str = "data_dir = \"d\"\n[listen]\nshard_ports = \"7101-7103\"\n[upstream]\n";

    #[test]
    fn defaults() {
        let c = parse(&format!(
            "{OK}cluster = [\"127.0.0.1:7000\", \"node-b:7001\"]\n"
        ))
        .unwrap();
        let cl = c.cluster.unwrap();
        assert_eq!(cl.seeds, vec!["127.0.0.1:7000", "node-b:7001"]);
        assert_eq!(cl.read_from, ReadFrom::Master);
        assert_eq!(cl.refresh, Duration::from_secs(5));
        assert_eq!(cl.lanes, None);
        let r = c.shard_ports.unwrap();
        assert_eq!((r.first, r.last, r.len()), (7101, 7103, 3));
        let c = parse(&format!(
            "{OK}cluster = [\"a:1\"]\nread_from = \"replica\"\ncluster_refresh = \"1s\"\nlanes = \"1/3\"\n"
        ))
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(c.read_from, ReadFrom::Replica);
        assert_eq!(c.refresh, Duration::from_secs(1));
        assert_eq!(c.lanes, Some(LanePart { i: 1, n: 3 }));
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = parse(&format!(
            "{OK}cluster = [\"nohost\"]\nread_from = \"slave\"\ncluster_refresh = \"soon\"\nlanes = \"3/3\"\n"
        ))
        .unwrap_err();
        for key in [
            "upstream.cluster: seed \"nohost\"",
            "upstream.read_from",
            "upstream.cluster_refresh",
            "upstream.lanes",
        ] {
            assert!(e.lines().any(|l| l.starts_with(key)), "{key} in {e}");
        }
        let e = parse(&format!("{OK}cluster = []\n")).unwrap_err();
        assert!(e.contains("at least one seed"), "{e}");
        let e = parse(&format!("{OK}cluster = [\"a:1\"]\nredis = \"b:2\"\n")).unwrap_err();
        assert!(
            e.contains("exactly one of upstream.redis, upstream.agent or upstream.cluster"),
            "{e}"
        );
        let e = parse("data_dir = \"d\"\n[upstream]\ncluster = [\"a:1\"]\n").unwrap_err();
        assert!(e.starts_with("listen.shard_ports: is required"), "{e}");
        let e = parse(&format!("{OK}redis = \"a:1\"\nread_from = \"replica\"\n")).unwrap_err();
        assert!(
            e.contains("upstream.read_from: applies to upstream.cluster only"),
            "{e}"
        );
        for bad in ["7003-7001", "x", "0-3"] {
            let e = parse(&format!(
                "data_dir = \"d\"\n[listen]\nshard_ports = \"{bad}\"\n[upstream]\ncluster = [\"a:1\"]\n"
            ))
            .unwrap_err();
            assert!(e.starts_with("listen.shard_ports:"), "{e}");
        }
    }

    #[test]
    fn the_lane_hash_is_fixed_and_partitions() {
        // The hash is fixed forever (README "Cluster"): FNV-1a 64.
        assert_eq!(lane_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(lane_hash("a"), 0xaf63_dc4c_8601_ec8c);
        for i in 0..30 {
            let name = format!("lane-{i}");
            let owners = (0..3)
                .filter(|i| LanePart { i: *i, n: 3 }.takes(&name))
                .count();
            assert_eq!(owners, 1);
        }
    }
}
