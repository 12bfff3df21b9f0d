//! Cluster test helpers: a real cluster (`cluster-enabled yes`, `redis-cli --cluster
//! create`), keyspaces, ports and the agent's /status shards; the cluster client, the writer,
//! the lane checks and the fake node live in the submodules.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use georelay::resp::Frame;

use crate::support::{frame_text, http_get, wait_until, Client, Redis, ServerKind};

mod client;
mod fake;
mod lanes;
mod status;
mod writer;
#[allow(unused_imports)]
pub use client::ClusterClient;
#[allow(unused_imports)]
pub use fake::FakeNode;
#[allow(unused_imports)]
pub use lanes::*;
#[allow(unused_imports)]
pub use status::{cluster_row, problems};
#[allow(unused_imports)]
pub use writer::Writer;

/// The arguments every cluster node is started with.
pub const NODE_ARGS: [&str; 6] = [
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "2000",
];

/// Runs `redis-cli --cluster <args>`; a failure fails the test with redis-cli's output.
pub fn redis_cli_cluster(args: &[&str]) {
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli --cluster {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "redis-cli --cluster {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Cluster {
    pub nodes: Vec<Option<Redis>>,
    pub kind: ServerKind,
}

impl Cluster {
    /// `masters` masters with one replica each, created with `redis-cli --cluster create`.
    pub fn start(kind: ServerKind, masters: usize) -> Cluster {
        Cluster::start_with(kind, masters, 1, None, &[])
    }

    /// `masters` masters with `replicas` replicas each, on `ports` (`masters * (1 +
    /// replicas)` of them) or free ones, each server also given `extra`.
    pub fn start_with(
        kind: ServerKind,
        masters: usize,
        replicas: usize,
        ports: Option<&[u16]>,
        extra: &[&str],
    ) -> Cluster {
        let count = masters * (1 + replicas);
        let ports: Vec<u16> = match ports {
            Some(p) => {
                assert_eq!(p.len(), count, "one port per node");
                p.to_vec()
            }
            None => {
                let base = cluster_port_block(count);
                (base..base + count as u16).collect()
            }
        };
        let mut nodes = Vec::new();
        for port in ports {
            let mut args = NODE_ARGS.to_vec();
            args.extend_from_slice(extra);
            nodes.push(Some(Redis::start_kind_on(kind, port, &args)));
        }
        let addrs: Vec<String> = nodes.iter().flatten().map(|n| n.addr()).collect();
        let per_master = replicas.to_string();
        let mut args: Vec<&str> = vec!["create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", &per_master, "--cluster-yes"]);
        redis_cli_cluster(&args);
        let c = Cluster { nodes, kind };
        c.wait_ok();
        wait_until(
            Duration::from_secs(60),
            "every master has its replicas",
            || {
                let masters_now = c.masters();
                masters_now.len() == masters
                    && masters_now.iter().all(|m| {
                        // At least: an agent may already follow the master (a seed that came
                        // up late).
                        c.node(*m)
                            .info_field("replication", "connected_slaves")
                            .parse::<usize>()
                            .is_ok_and(|n| n >= replicas)
                    })
            },
        );
        c
    }

    /// The process id of the node on `port` (`INFO server` `process_id`).
    pub fn pid(&self, port: u16) -> u32 {
        let v = self.node(port).info_field("server", "process_id");
        v.parse()
            .unwrap_or_else(|_| panic!("process_id of {port}: {v:?}"))
    }

    /// Sends `signal` ("STOP", "CONT", …) to the node on `port` (which must answer INFO:
    /// to wake a stopped node use [`signal_pid`] with the pid read before).
    pub fn signal(&self, port: u16, signal: &str) {
        signal_pid(self.pid(port), signal);
    }

    pub fn live(&self) -> impl Iterator<Item = &Redis> {
        self.nodes.iter().flatten()
    }

    pub fn wait_ok(&self) {
        wait_until(
            Duration::from_secs(60),
            "cluster_state:ok everywhere",
            || {
                self.live().all(|n| {
                    Client::try_connect(n.port).is_some_and(|mut c| {
                        c.try_cmd(&["CLUSTER", "INFO"])
                            .is_ok_and(|f| frame_text(&f).contains("cluster_state:ok"))
                    })
                })
            },
        );
    }

    /// (node id, port, master id or None) per live node, as the first live node sees it.
    pub fn roles(&self) -> Vec<(String, u16, Option<String>, bool)> {
        let any = self.live().next().expect("a live node");
        let text = any.client().cmd_str(&["CLUSTER", "NODES"]);
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = f
                    .get(1)?
                    .split(['@', ','])
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let master = (f[3] != "-").then(|| f[3].to_string());
                let failed = f[2].contains("fail");
                Some((f[0].to_string(), port, master, failed))
            })
            .collect()
    }

    pub fn node(&self, port: u16) -> &Redis {
        self.live().find(|n| n.port == port).expect("node on port")
    }

    pub fn masters(&self) -> Vec<u16> {
        self.live()
            .filter(|n| n.info_field("replication", "role") == "master")
            .map(|n| n.port)
            .collect()
    }

    /// A healthy replica of the master on `master_port`, once gossip shows one (60 s limit).
    pub fn replica_of(&self, master_port: u16) -> u16 {
        let mut found = None;
        wait_until(
            Duration::from_secs(60),
            "the master's replica listed",
            || {
                let roles = self.roles();
                let id = roles
                    .iter()
                    .find(|r| r.1 == master_port)
                    .map(|r| r.0.clone());
                found = roles
                    .iter()
                    .find(|r| id.is_some() && r.2 == id && !r.3)
                    .map(|r| r.1);
                found.is_some()
            },
        );
        found.unwrap_or_else(|| panic!("no replica of the master on {master_port}"))
    }

    pub fn id_of(&self, port: u16) -> String {
        self.node(port).client().cmd_str(&["CLUSTER", "MYID"])
    }

    pub fn kill(&mut self, port: u16) {
        for n in self.nodes.iter_mut() {
            if n.as_ref().is_some_and(|r| r.port == port) {
                if let Some(mut r) = n.take() {
                    r.kill();
                }
            }
        }
    }

    /// Sum of `INFO stats sync_full` over the live nodes, by port.
    pub fn sync_full(&self) -> BTreeMap<u16, u64> {
        self.live()
            .map(|n| {
                (
                    n.port,
                    n.info_field("stats", "sync_full")
                        .parse()
                        .unwrap_or_else(|e| {
                            panic!("node {}: sync_full is not a number: {e}", n.port)
                        }),
                )
            })
            .collect()
    }
}

/// Sends `signal` ("STOP", "CONT", …) to process `pid`.
pub fn signal_pid(pid: u32, signal: &str) {
    let st = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill -{signal} {pid}");
}

/// Every key and its value on one server (SCAN + GET; the tests write strings only).
pub fn keyspace(port: u16) -> BTreeMap<String, String> {
    let mut c = Client::connect(port);
    let mut out = BTreeMap::new();
    let mut cursor = "0".to_string();
    loop {
        let f = c.cmd(&["SCAN", &cursor, "COUNT", "1000"]);
        let Frame::Array(parts) = f else {
            panic!("SCAN: {f:?}")
        };
        cursor = frame_text(&parts[0]);
        let keys: Vec<String> = match &parts[1] {
            Frame::Array(k) => k.iter().map(frame_text).collect(),
            other => panic!("SCAN on {port}: the keys are not an array: {other:?}"),
        };
        for k in keys {
            out.insert(k.clone(), c.cmd_str(&["GET", &k]));
        }
        if cursor == "0" {
            return out;
        }
    }
}

/// The agent's `/status` shards (`/status` leaves `shards` out while there is no lane). An
/// agent that does not answer, a body that is not a status, or a `shards` that is not an array
/// fails the test (an empty list would pass checks like "no lane yet").
pub fn shards(admin_port: u16) -> Vec<serde_json::Value> {
    let (code, body) = http_get(admin_port, "/status")
        .unwrap_or_else(|| panic!("GET /status on admin port {admin_port}: no answer"));
    assert_eq!(code, 200, "GET /status on {admin_port}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/status on {admin_port} is not JSON ({e}): {body}"));
    assert!(
        v["upstream"].is_object(),
        "/status on {admin_port} is not a status: {body}"
    );
    match v.get("shards") {
        None => Vec::new(),
        Some(s) => s
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("/status on {admin_port}: shards is not an array: {body}")),
    }
}

/// A string field of a `/status` row; a missing or non-string field fails the test.
pub fn field_str(v: &serde_json::Value, k: &str) -> String {
    v.get(k)
        .and_then(|x| x.as_str())
        .unwrap_or_else(|| panic!("/status row has no string {k:?}: {v}"))
        .to_string()
}

/// A number field of a `/status` row; a missing or non-numeric field fails the test (a
/// port read as 0 would otherwise pass into the checks).
pub fn field_u64(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("/status row has no number {k:?}: {v}"))
}

pub fn key_set(maps: &[BTreeMap<String, String>]) -> BTreeSet<String> {
    maps.iter().flat_map(|m| m.keys().cloned()).collect()
}

/// The site agent's config for a cluster.
pub fn cluster_agent_config(
    seeds: &[String],
    first_port: u16,
    lanes: usize,
    extra: &str,
) -> String {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "name = \"site\"\ndata_dir = \"{{data_dir}}\"\n[upstream]\ncluster = [{}]\ncluster_refresh = \"300ms\"\n{extra}\n\
         [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\nshard_ports = \"{}-{}\"\n",
        seeds.join(", "),
        first_port,
        first_port + lanes as u16 - 1
    )
}

/// A block of free consecutive ports for an agent's `listen.shard_ports`: each checked free now,
/// all in 2000–11999, below the cluster nodes' block (12000–31999 with their bus ports) and the
/// kernel's ephemeral range (32768 and up). A lane binds its shard port only once discovery has
/// found its shard, so a port in the ephemeral range could meanwhile be taken by any outbound
/// connection on the machine (seen once: "cannot listen on its shard port … Address already in
/// use" for a minute).
pub fn free_port_block(n: usize) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..500 {
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let base = 2_000 + (r % (10_000 - n as u64)) as u16;
        if (0..n as u16).all(|i| free(base + i)) {
            return base;
        }
    }
    panic!("no block of {n} free ports in 2000–11999");
}

/// `n` consecutive ports for cluster nodes: each one and its cluster bus port (+10000) free
/// now, all below the kernel's ephemeral range (32768 and up), so no outbound connection (an
/// agent retrying its seeds, say) can take a bus port before the node binds it.
pub fn cluster_port_block(n: usize) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..500 {
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let base = 12_000 + (r % 10_000) as u16;
        if (0..n as u16).all(|i| free(base + i) && free(base + i + 10_000)) {
            return base;
        }
    }
    panic!("no block of {n} free cluster node ports (with their bus ports) below 32768");
}

/// The port of a "host:port" address; anything else fails the test.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("not a host:port address: {addr:?}"))
}
