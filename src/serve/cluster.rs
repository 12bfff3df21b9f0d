//! The read-only cluster endpoint of a cluster-mode agent (pure: a [`ClusterView`] and a
//! command in, a RESP reply out): `CLUSTER SHARDS/SLOTS/NODES/MYID/INFO/KEYSLOT`, `READONLY`
//! and `READWRITE`. Each lane's slot ranges map to the region replicas connected to that
//! lane, at the addresses they announced (`REPLCONF listening-port` / `ip-address`); those
//! addresses are only reported to clients, never connected to. The listener that serves these
//! on `listen.redis` is [`super::cluster_port`].

use bytes::Bytes;

use crate::cluster::{key_slot, SlotMap, SlotRange};
use crate::resp::Reply;
use crate::serve::{ReplicaInfo, ReplicaState};

/// One region replica as cluster clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub id: String,
    pub ip: String,
    pub port: u16,
    pub offset: u64,
}

/// One lane: its slots and its connected replicas (the first is reported as the master, the
/// node clients read from by default; the others as its replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardView {
    pub lane: String,
    pub ranges: Vec<SlotRange>,
    pub nodes: Vec<ClusterNode>,
}

/// What the endpoint answers from: the slot map as the site sent it, and who is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// This agent's node id (`CLUSTER MYID`).
    pub my_id: String,
    /// This agent's client address, for its own `CLUSTER NODES` line.
    pub my_addr: (String, u16),
    /// The slot map's version (reported as the cluster's epoch); 0 before any map.
    pub version: u64,
    pub shards: Vec<ShardView>,
}

/// A 40-hex-digit node id derived from `seed` (stable across restarts).
pub fn node_id(seed: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, seed.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl ClusterView {
    /// Builds the view: `replicas(lane)` lists the replicas registered on a lane's port; only
    /// online ones are reported, sorted by address so the reported master is stable.
    pub fn build(
        my_id: String,
        my_addr: (String, u16),
        map: Option<&SlotMap>,
        replicas: impl Fn(&str) -> Vec<ReplicaInfo>,
    ) -> ClusterView {
        let Some(map) = map else {
            return ClusterView {
                my_id,
                my_addr,
                version: 0,
                shards: Vec::new(),
            };
        };
        let shards = map
            .lanes
            .iter()
            .map(|lane| {
                let mut nodes: Vec<ClusterNode> = replicas(&lane.name)
                    .into_iter()
                    .filter(|r| r.state == ReplicaState::Online)
                    .map(|r| ClusterNode {
                        id: node_id(&format!("{}/{}:{}", lane.name, r.ip, r.port)),
                        ip: r.ip,
                        port: r.port,
                        offset: r.ack_offset,
                    })
                    .collect();
                nodes.sort_by(|a, b| (&a.ip, a.port).cmp(&(&b.ip, b.port)));
                nodes.dedup_by(|a, b| a.id == b.id);
                ShardView {
                    lane: lane.name.clone(),
                    ranges: lane.ranges.clone(),
                    nodes,
                }
            })
            .collect();
        ClusterView {
            my_id,
            my_addr,
            version: map.version,
            shards,
        }
    }

    fn slots_assigned(&self) -> usize {
        self.shards
            .iter()
            .flat_map(|s| &s.ranges)
            .map(SlotRange::len)
            .sum()
    }

    fn slots_ok(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| !s.nodes.is_empty())
            .flat_map(|s| &s.ranges)
            .map(SlotRange::len)
            .sum()
    }
}

fn bulk(s: impl Into<String>) -> Reply {
    Reply::Bulk(Bytes::from(s.into()))
}

fn int(n: impl TryInto<i64>) -> Reply {
    Reply::Integer(n.try_into().unwrap_or(i64::MAX))
}

/// Answers `READONLY`, `READWRITE` and `CLUSTER …` (`args[0]` is the command name) in the
/// shapes Redis 7 uses (maps and verbatim text under RESP3); `None` for any other command.
pub fn handle(view: &ClusterView, args: &[Bytes]) -> Option<Reply> {
    let name = String::from_utf8_lossy(args.first()?).to_ascii_lowercase();
    match name.as_str() {
        "readonly" | "readwrite" => Some(Reply::ok()),
        "cluster" => Some(cluster(view, &args[1..])),
        _ => None,
    }
}

fn cluster(view: &ClusterView, args: &[Bytes]) -> Reply {
    let Some(sub) = args.first() else {
        return Reply::err("ERR wrong number of arguments for 'cluster' command");
    };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match (sub.as_str(), args.len()) {
        ("shards", 1) => shards(view),
        ("slots", 1) => slots(view),
        ("nodes", 1) => Reply::text(nodes(view)),
        ("myid", 1) => bulk(view.my_id.clone()),
        ("info", 1) => Reply::text(info(view)),
        ("keyslot", 2) => int(key_slot(&args[1])),
        ("help", 1) => Reply::Array(
            [
                "CLUSTER <subcommand> (georelay read-only cluster endpoint):",
                "SHARDS, SLOTS, NODES, MYID, INFO, KEYSLOT <key>, HELP",
            ]
            .into_iter()
            .map(|s| Reply::Simple(s.into()))
            .collect(),
        ),
        ("shards" | "slots" | "nodes" | "myid" | "info" | "keyslot" | "help", _) => Reply::err(
            format!("ERR wrong number of arguments for 'cluster|{sub}' command"),
        ),
        _ => {
            let shown: String = sub.chars().take(64).collect();
            Reply::err(format!(
                "ERR unknown subcommand '{shown}': georelay's cluster endpoint is read-only (SHARDS, SLOTS, NODES, MYID, INFO, KEYSLOT)"
            ))
        }
    }
}

/// `CLUSTER SHARDS` (Redis 7 shape: a map per shard and per node; flat key/value arrays
/// under RESP2).
fn shards(view: &ClusterView) -> Reply {
    Reply::Array(
        view.shards
            .iter()
            .map(|s| {
                let slots = s
                    .ranges
                    .iter()
                    .flat_map(|r| [int(r.first), int(r.last)])
                    .collect();
                let nodes = s
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        Reply::map(vec![
                            ("id", bulk(n.id.clone())),
                            ("port", int(n.port)),
                            ("ip", bulk(n.ip.clone())),
                            ("endpoint", bulk(n.ip.clone())),
                            ("role", bulk(if i == 0 { "master" } else { "replica" })),
                            ("replication-offset", int(n.offset)),
                            ("health", bulk("online")),
                        ])
                    })
                    .collect();
                Reply::map(vec![
                    ("slots", Reply::Array(slots)),
                    ("nodes", Reply::Array(nodes)),
                ])
            })
            .collect(),
    )
}

/// `CLUSTER SLOTS`: one entry per range of a lane with at least one connected replica.
fn slots(view: &ClusterView) -> Reply {
    let mut out: Vec<(u16, Reply)> = Vec::new();
    for s in view.shards.iter().filter(|s| !s.nodes.is_empty()) {
        for r in &s.ranges {
            let mut entry = vec![int(r.first), int(r.last)];
            entry.extend(s.nodes.iter().map(|n| {
                Reply::Array(vec![
                    bulk(n.ip.clone()),
                    int(n.port),
                    bulk(n.id.clone()),
                    Reply::Array(Vec::new()),
                ])
            }));
            out.push((r.first, Reply::Array(entry)));
        }
    }
    out.sort_by_key(|(first, _)| *first);
    Reply::Array(out.into_iter().map(|(_, e)| e).collect())
}

/// `CLUSTER NODES`: this agent (`myself`, no slots), then every connected replica.
fn nodes(view: &ClusterView) -> String {
    let epoch = view.version;
    let cport = |p: u16| p.checked_add(10000).unwrap_or(0);
    let (my_ip, my_port) = &view.my_addr;
    let mut text = format!(
        "{} {my_ip}:{my_port}@{} myself,master - 0 0 {epoch} connected\n",
        view.my_id,
        cport(*my_port)
    );
    for s in &view.shards {
        let Some(master) = s.nodes.first() else {
            continue;
        };
        for (i, n) in s.nodes.iter().enumerate() {
            let (flags, of) = if i == 0 {
                ("master", "-".to_string())
            } else {
                ("slave", master.id.clone())
            };
            text.push_str(&format!(
                "{} {}:{}@{} {flags} {of} 0 0 {epoch} connected",
                n.id,
                n.ip,
                n.port,
                cport(n.port)
            ));
            if i == 0 {
                for r in &s.ranges {
                    if r.first == r.last {
                        text.push_str(&format!(" {}", r.first));
                    } else {
                        text.push_str(&format!(" {}-{}", r.first, r.last));
                    }
                }
            }
            text.push('\n');
        }
    }
    text
}

/// `CLUSTER INFO`: `ok` only when every slot is mapped to a connected replica.
fn info(view: &ClusterView) -> String {
    let assigned = view.slots_assigned();
    let ok = view.slots_ok();
    let state = if ok == usize::from(crate::cluster::SLOTS) {
        "ok"
    } else {
        "fail"
    };
    let known = 1 + view.shards.iter().map(|s| s.nodes.len()).sum::<usize>();
    let size = view.shards.iter().filter(|s| !s.ranges.is_empty()).count();
    let epoch = view.version;
    format!(
        "cluster_state:{state}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{ok}\r\n\
         cluster_slots_pfail:0\r\ncluster_slots_fail:{}\r\ncluster_known_nodes:{known}\r\n\
         cluster_size:{size}\r\ncluster_current_epoch:{epoch}\r\ncluster_my_epoch:{epoch}\r\n\
         cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
         total_cluster_links_buffer_limit_exceeded:0\r\n",
        assigned - ok
    )
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
