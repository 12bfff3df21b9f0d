//! Cluster test helpers: a real cluster (`cluster-enabled yes`, `redis-cli --cluster
//! create`), a tiny RESP cluster client that follows MOVED/ASK, the agent's /status shards.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use georelay::resp::Frame;

use crate::support::{frame_text, free_port, http_get, wait_until, Client, Redis, ServerKind};

pub struct Cluster {
    pub nodes: Vec<Option<Redis>>,
    pub kind: ServerKind,
}

impl Cluster {
    /// `masters` masters with one replica each, created with `redis-cli --cluster create`.
    pub fn start(kind: ServerKind, masters: usize) -> Cluster {
        let mut nodes = Vec::new();
        for _ in 0..masters * 2 {
            let port = free_port();
            nodes.push(Some(Redis::start_kind_on(
                kind,
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
            )));
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        for n in nodes.iter().flatten() {
            args.push(n.addr());
        }
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let out = Command::new("redis-cli")
            .args(&args)
            .output()
            .expect("redis-cli");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = Cluster { nodes, kind };
        c.wait_ok();
        wait_until(
            Duration::from_secs(60),
            "every master has its replica",
            || {
                let masters = c.masters();
                masters.len() == c.nodes.len() / 2
                    && masters
                        .iter()
                        .all(|m| c.node(*m).info_field("replication", "connected_slaves") == "1")
            },
        );
        c
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
        found.unwrap_or_default()
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

/// A cluster client that follows MOVED and ASK and waits out failovers (bounded).
pub struct ClusterClient {
    pub seeds: Vec<u16>,
    conns: BTreeMap<u16, Client>,
}

impl ClusterClient {
    pub fn new(seeds: Vec<u16>) -> ClusterClient {
        ClusterClient {
            seeds,
            conns: BTreeMap::new(),
        }
    }

    fn conn(&mut self, port: u16) -> Option<&mut Client> {
        if let std::collections::btree_map::Entry::Vacant(e) = self.conns.entry(port) {
            let c = Client::try_connect(port)?;
            let _ = c.raw().set_read_timeout(Some(Duration::from_secs(5)));
            e.insert(c);
        }
        self.conns.get_mut(&port)
    }

    /// Runs a command; Err after ~60 s of failures.
    pub fn cmd(&mut self, args: &[&str]) -> Result<Frame, String> {
        let mut port = self.seeds[0];
        let mut asking = false;
        let mut last = String::new();
        for attempt in 0..600 {
            let reply = match self.conn(port) {
                Some(c) => {
                    let r = if asking {
                        c.try_cmd(&["ASKING"]).and_then(|_| c.try_cmd(args))
                    } else {
                        c.try_cmd(args)
                    };
                    r.map_err(|e| e.to_string())
                }
                None => Err(format!("connect {port}")),
            };
            asking = false;
            match reply {
                Ok(Frame::Error(e)) if e.starts_with("MOVED ") || e.starts_with("ASK ") => {
                    asking = e.starts_with("ASK ");
                    port = e
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(port);
                    continue;
                }
                Ok(Frame::Error(e))
                    if e.starts_with("CLUSTERDOWN")
                        || e.starts_with("TRYAGAIN")
                        || e.starts_with("LOADING") =>
                {
                    last = e;
                }
                Ok(f) => return Ok(f),
                Err(e) => {
                    self.conns.remove(&port);
                    last = e;
                    // Try another seed: the node may be dead.
                    port = self.seeds[attempt % self.seeds.len()];
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("{args:?}: gave up: {last}"))
    }
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
            _ => vec![],
        };
        for k in keys {
            out.insert(k.clone(), c.cmd_str(&["GET", &k]));
        }
        if cursor == "0" {
            return out;
        }
    }
}

/// The agent's `/status` shards.
pub fn shards(admin_port: u16) -> Vec<serde_json::Value> {
    http_get(admin_port, "/status")
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v.get("shards").and_then(|s| s.as_array().cloned()))
        .unwrap_or_default()
}

pub fn field_str(v: &serde_json::Value, k: &str) -> String {
    v.get(k)
        .and_then(|x| x.as_str())
        .unwrap_or_default()
        .to_string()
}

pub fn field_u64(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k).and_then(|x| x.as_u64()).unwrap_or_default()
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

/// A block of free consecutive ports (best effort: each checked free now).
pub fn free_port_block(n: usize) -> u16 {
    for _ in 0..200 {
        let base = free_port();
        if base as usize + n >= 65535 {
            continue;
        }
        let ok =
            (0..n as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no block of {n} free ports");
}
