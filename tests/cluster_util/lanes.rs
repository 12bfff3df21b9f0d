//! A cluster's lanes as the agent reports them, failovers driven on the cluster, and the
//! per-lane checks: each lane's replica equals its source master, every key exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::support::{frame_text, wait_until, Redis};

use super::{
    field_str, field_u64, key_set, keyspace, port_of, redis_cli_cluster, shards, Cluster, Writer,
};

pub fn lane_by_master(admin: u16, port: u16) -> Option<serde_json::Value> {
    shards(admin).into_iter().find(|s| {
        field_str(s, "state") == "streaming" && port_of(&field_str(s, "upstream")) == port
    })
}

impl Cluster {
    /// `CLUSTER FAILOVER` on `replica`, until it is the master (60 s limit). Redis aborts a
    /// manual failover the replica cannot finish within its 5 s (`CLUSTER_MF_TIMEOUT`),
    /// silently; on a busy machine that happens. Ask again, as an operator would, every 10 s
    /// while the replica is still a replica.
    pub fn manual_failover(&self, replica: u16) {
        assert_eq!(
            frame_text(&self.node(replica).client().cmd(&["CLUSTER", "FAILOVER"])),
            "OK"
        );
        let mut asked = std::time::Instant::now();
        wait_until(Duration::from_secs(60), "the replica promoted", || {
            let promoted = self.node(replica).info_field("replication", "role") == "master";
            if !promoted && asked.elapsed() > Duration::from_secs(10) {
                let _ = self.node(replica).client().cmd(&["CLUSTER", "FAILOVER"]);
                asked = std::time::Instant::now();
            }
            promoted
        });
    }

    /// SIGKILLs `master` and waits for `replica` to take over and the cluster to be ok.
    pub fn kill_master(&mut self, master: u16, replica: u16) {
        self.kill(master);
        wait_until(Duration::from_secs(60), "the replica promoted", || {
            self.node(replica).info_field("replication", "role") == "master"
        });
        self.wait_ok();
    }

    /// Like [`Cluster::kill_master`], but only once `replica` holds `master`'s whole stream,
    /// with `writer` paused around the kill. A master killed while its replica lags takes
    /// acknowledged writes with it, and the agent (which may hold them) must then full-sync
    /// from the promoted replica: right, but not the failover this checks. On a busy machine a
    /// replica lags by hundreds of writes, so the test makes the lag zero first.
    pub fn kill_master_caught_up(&mut self, master: u16, replica: u16, writer: &Writer) {
        writer.pause();
        let offset = |c: &Cluster, port: u16| -> u64 {
            let v = c.node(port).info_field("replication", "master_repl_offset");
            v.parse()
                .unwrap_or_else(|_| panic!("master_repl_offset of {port}: {v:?}"))
        };
        let want = offset(self, master);
        wait_until(
            Duration::from_secs(60),
            "the replica has the master's stream",
            || offset(self, replica) >= want,
        );
        self.kill(master);
        writer.resume();
        wait_until(Duration::from_secs(60), "the replica promoted", || {
            self.node(replica).info_field("replication", "role") == "master"
        });
        self.wait_ok();
    }

    /// Moves `slots` slots from master `from` to master `to` with `redis-cli --cluster reshard`.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) {
        redis_cli_cluster(&[
            "reshard",
            &format!("127.0.0.1:{from}"),
            "--cluster-from",
            &self.id_of(from),
            "--cluster-to",
            &self.id_of(to),
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ]);
        self.wait_ok();
    }
}

/// One standalone replica per lane of the agent on `admin`, attached to the lane's
/// `replica_port`: (lane name, replica).
pub fn replica_per_lane(admin: u16) -> Vec<(String, Redis)> {
    shards(admin)
        .iter()
        .map(|l| {
            let port = field_u64(l, "replica_port");
            (
                field_str(l, "name"),
                crate::support::start_replica(&format!("127.0.0.1:{port}"), &[]),
            )
        })
        .collect()
}

/// (lane name, master port) for each master in `masters`: the lane that streams from it.
pub fn lane_sources(admin: u16, masters: &[u16]) -> Vec<(String, u16)> {
    masters
        .iter()
        .map(|p| {
            let l = lane_by_master(admin, *p)
                .unwrap_or_else(|| panic!("no lane streams from master {p}"));
            (field_str(&l, "name"), *p)
        })
        .collect()
}

/// The number of slots in a `/status` row's `slots` (`[[first, last], …]`).
pub fn slot_count(row: &serde_json::Value) -> u64 {
    row["slots"]
        .as_array()
        .expect("slots is an array")
        .iter()
        .map(|r| {
            let (a, b) = (r[0].as_u64(), r[1].as_u64());
            let (Some(a), Some(b)) = (a, b) else {
                panic!("bad slot range {r} in {row}")
            };
            b - a + 1
        })
        .sum()
}

/// Per lane, the copy (`(lane, port)` of a replica of that lane) equals the lane's source
/// master (`(lane, master port)`) key by key, waiting up to 90 s for each; the copies hold
/// every key exactly once between them, and every acknowledged write but a few (a SIGKILLed
/// master may have taken writes its replica never got). Returns the keys with their values.
pub fn lanes_equal_their_sources(
    sources: &[(String, u16)],
    copies: &[(String, u16)],
    acked: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut origin = Vec::new();
    let mut copied = Vec::new();
    for (name, master) in sources {
        let (_, copy) = copies
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no copy of lane {name} in {copies:?}"));
        let mut last = (0, 0);
        wait_until(
            Duration::from_secs(90),
            "the lane's copy equals its source master",
            || {
                let (a, b) = (keyspace(*master), keyspace(*copy));
                last = (a.len(), b.len());
                a == b
            },
        );
        let (m, r) = (keyspace(*master), keyspace(*copy));
        assert_eq!(m, r, "lane {name}: {last:?}");
        assert!(!r.is_empty(), "lane {name} carried writes");
        origin.push(m);
        copied.push(r);
    }
    let total: usize = copied.iter().map(|c| c.len()).sum();
    let union = key_set(&copied);
    assert_eq!(total, union.len(), "a key is in two copies");
    assert_eq!(union, key_set(&origin));
    let lost: Vec<&String> = acked.iter().filter(|k| !union.contains(*k)).collect();
    assert!(
        lost.len() <= 50,
        "{} acknowledged keys missing: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    copied.into_iter().flatten().collect()
}
