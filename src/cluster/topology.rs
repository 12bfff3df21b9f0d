//! Pure parsers of the cluster topology replies (`CLUSTER SHARDS`, `CLUSTER NODES`,
//! `CLUSTER INFO`, `INFO replication`) into shards: a master, its replicas, their slots.

use super::slotmap::{ranges_of, SlotRange};
use super::SLOTS;
use crate::resp::Frame;

/// Why a reply could not be turned into a topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("{0} is not in cluster mode ({1}); use upstream.redis for a standalone master")]
    NotCluster(String, String),
    #[error("{0} refused the credentials ({1}); check upstream.username and upstream.password")]
    Auth(String, String),
    /// Redis 6.2 has no `CLUSTER SHARDS`: read `CLUSTER NODES` instead.
    #[error("CLUSTER SHARDS is not supported ({0})")]
    ShardsUnsupported(String),
    #[error("redirected ({0}); the discovery connection does not follow redirections")]
    Redirect(String),
    #[error("server error: {0}")]
    Server(String),
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
}

fn malformed(what: &'static str, why: impl Into<String>) -> TopologyError {
    TopologyError::Malformed {
        what,
        why: why.into(),
    }
}

/// One cluster node as a topology reply describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub ip: String,
    pub port: u16,
    pub tls_port: Option<u16>,
    pub master: bool,
    /// Online: not failed (or suspected), not loading, not in handshake.
    pub healthy: bool,
    /// A replica still getting its first sync (`CLUSTER SHARDS` health `loading`): it will be
    /// online soon, unlike a failed one.
    pub syncing: bool,
}

impl Node {
    /// host:port to connect to (the TLS port when the upstream uses TLS and one is reported).
    pub fn addr(&self, tls: bool) -> String {
        let port = match (tls, self.tls_port) {
            (true, Some(p)) => p,
            _ => self.port,
        };
        if self.ip.contains(':') {
            format!("[{}]:{port}", self.ip)
        } else {
            format!("{}:{port}", self.ip)
        }
    }
}

/// A master and its replicas, owning slot ranges (possibly none).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shard {
    /// The shard id where the server reports one (Valkey, Redis 7.2+).
    pub id: Option<String>,
    pub slots: Vec<SlotRange>,
    pub nodes: Vec<Node>,
}

impl Shard {
    /// The shard's healthy master, if it has one.
    pub fn master(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.master && n.healthy)
    }

    /// Its healthy replicas.
    pub fn replicas(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| !n.master && n.healthy)
    }

    /// The node a lane of this shard follows: with `replica`, a healthy replica, else — while
    /// a replica is still syncing — none yet (a lane must not cost the master a full sync for
    /// want of a few seconds), else the master (the shard has no replica that could serve).
    /// Without `replica`, the master. Err: why there is none.
    pub fn source(&self, replica: bool) -> Result<&Node, &'static str> {
        if replica {
            if let Some(r) = self.replicas().next() {
                return Ok(r);
            }
            if self.nodes.iter().any(|n| !n.master && n.syncing) {
                return Err(
                    "the shard's replica is still syncing (upstream.read_from = \"replica\")",
                );
            }
        }
        self.master()
            .ok_or("its shard's master is gone and no replica has replaced it yet")
    }
}

/// Every shard the cluster reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    pub shards: Vec<Shard>,
}

impl Topology {
    /// Slot ranges no shard with a healthy master covers.
    pub fn uncovered(&self) -> Vec<SlotRange> {
        let mut covered = vec![false; usize::from(SLOTS)];
        for s in self.shards.iter().filter(|s| s.master().is_some()) {
            for r in &s.slots {
                for slot in r.first..=r.last.min(SLOTS - 1) {
                    covered[usize::from(slot)] = true;
                }
            }
        }
        ranges_of((0..SLOTS).filter(|&s| !covered[usize::from(s)]))
    }
}

/// Joins ranges into the fewest sorted inclusive ranges.
fn merge(ranges: &[SlotRange]) -> Vec<SlotRange> {
    ranges_of(ranges.iter().flat_map(|r| r.first..=r.last))
}

/// Classifies an error reply to a topology command.
pub fn classify_error(addr: &str, msg: &str) -> TopologyError {
    let lower = msg.to_ascii_lowercase();
    if lower.contains("cluster support disabled") {
        TopologyError::NotCluster(addr.to_string(), msg.to_string())
    } else if lower.starts_with("noauth")
        || lower.starts_with("wrongpass")
        || lower.contains("invalid password")
        || lower.contains("invalid username-password")
    {
        TopologyError::Auth(addr.to_string(), msg.to_string())
    } else if lower.starts_with("moved ") || lower.starts_with("ask ") {
        TopologyError::Redirect(msg.to_string())
    } else if lower.contains("unknown subcommand") {
        TopologyError::ShardsUnsupported(msg.to_string())
    } else {
        TopologyError::Server(msg.to_string())
    }
}

fn text(f: &Frame) -> Option<String> {
    match f {
        Frame::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Frame::Simple(s) => Some(s.clone()),
        Frame::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(f: &Frame) -> Option<i64> {
    match f {
        Frame::Integer(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// A RESP2 flat map (or RESP3 map folded into an array): key, value, key, value…
fn pairs<'a>(
    f: &'a Frame,
    what: &'static str,
) -> Result<impl Iterator<Item = (String, &'a Frame)>, TopologyError> {
    let Frame::Array(items) = f else {
        return Err(malformed(what, "expected a map"));
    };
    if items.len() % 2 != 0 {
        return Err(malformed(what, "odd number of map entries"));
    }
    Ok(items
        .chunks(2)
        .filter_map(|kv| Some((text(&kv[0])?, &kv[1]))))
}

/// Parses a `CLUSTER SHARDS` reply (Redis 7+, Valkey).
pub fn parse_shards(reply: &Frame) -> Result<Topology, TopologyError> {
    let shards = match reply {
        Frame::Error(e) => return Err(classify_error("the seed", e)),
        Frame::Array(s) => s,
        _ => return Err(malformed("CLUSTER SHARDS", "expected an array of shards")),
    };
    let mut out = Vec::with_capacity(shards.len());
    for shard in shards {
        let mut s = Shard::default();
        for (key, value) in pairs(shard, "CLUSTER SHARDS shard")? {
            match key.as_str() {
                "id" => s.id = text(value).filter(|v| !v.is_empty()),
                "slots" => {
                    let Frame::Array(bounds) = value else {
                        return Err(malformed("CLUSTER SHARDS slots", "expected an array"));
                    };
                    if bounds.len() % 2 != 0 {
                        return Err(malformed("CLUSTER SHARDS slots", "odd number of bounds"));
                    }
                    for pair in bounds.chunks(2) {
                        let (a, b) = (int(&pair[0]), int(&pair[1]));
                        match (a, b) {
                            (Some(a), Some(b)) if 0 <= a && a <= b && b < i64::from(SLOTS) => {
                                s.slots.push(SlotRange::new(a as u16, b as u16))
                            }
                            _ => return Err(malformed("CLUSTER SHARDS slots", "bad slot range")),
                        }
                    }
                }
                "nodes" => {
                    let Frame::Array(nodes) = value else {
                        return Err(malformed("CLUSTER SHARDS nodes", "expected an array"));
                    };
                    for n in nodes {
                        s.nodes.push(shard_node(n)?);
                    }
                }
                _ => {}
            }
        }
        s.slots = merge(&s.slots);
        out.push(s);
    }
    Ok(Topology { shards: out })
}

fn shard_node(f: &Frame) -> Result<Node, TopologyError> {
    let (mut id, mut ip, mut endpoint, mut port, mut tls_port) = (None, None, None, None, None);
    let (mut role, mut health) = (None, None);
    for (key, value) in pairs(f, "CLUSTER SHARDS node")? {
        match key.as_str() {
            "id" => id = text(value),
            "ip" => ip = text(value),
            "endpoint" => endpoint = text(value),
            "port" => port = int(value).and_then(|p| u16::try_from(p).ok()),
            "tls-port" => tls_port = int(value).and_then(|p| u16::try_from(p).ok()),
            "role" => role = text(value),
            "health" => health = text(value),
            _ => {}
        }
    }
    let id = id.ok_or_else(|| malformed("CLUSTER SHARDS node", "no id"))?;
    let ip = ip
        .filter(|i| !i.is_empty() && i != "?")
        .or(endpoint.filter(|e| !e.is_empty() && e != "?"));
    let port = port.filter(|p| *p != 0).or(tls_port);
    // A node that does not know its address yet (a fresh node, a handshake) is listed but
    // cannot be followed: unhealthy, not an error for the whole topology.
    let reachable = ip.is_some() && port.is_some();
    Ok(Node {
        id,
        ip: ip.unwrap_or_default(),
        port: port.unwrap_or(0),
        tls_port,
        master: role.as_deref() == Some("master"),
        healthy: reachable && health.as_deref() == Some("online"),
        syncing: reachable && health.as_deref() == Some("loading"),
    })
}

/// Parses a `CLUSTER NODES` reply (every version, the only one on Redis 6.2).
pub fn parse_nodes(text: &str) -> Result<Topology, TopologyError> {
    struct Line {
        node: Node,
        master_of: Option<String>,
        slots: Vec<SlotRange>,
    }
    let mut lines = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 8 {
            return Err(malformed("CLUSTER NODES", format!("short line {line:?}")));
        }
        // ip:port@cport[,hostname]
        let addr = f[1].split([',', '@']).next().unwrap_or("");
        let (ip, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)))
            .ok_or_else(|| malformed("CLUSTER NODES", format!("bad address in {line:?}")))?;
        let flags: Vec<&str> = f[2].split(',').collect();
        let bad = ["fail", "fail?", "handshake", "noaddr"];
        let healthy = !flags.iter().any(|fl| bad.contains(fl)) && (port != 0);
        let mut slots = Vec::new();
        for s in &f[8..] {
            if s.starts_with('[') {
                continue; // migrating/importing markers: the slot stays with its owner
            }
            let (a, b) = match s.split_once('-') {
                Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                None => (s.parse::<u16>(), s.parse::<u16>()),
            };
            match (a, b) {
                (Ok(a), Ok(b)) if a <= b && b < SLOTS => slots.push(SlotRange::new(a, b)),
                _ => return Err(malformed("CLUSTER NODES", format!("bad slot {s:?}"))),
            }
        }
        lines.push(Line {
            node: Node {
                id: f[0].to_string(),
                ip,
                port,
                tls_port: None,
                master: flags.contains(&"master"),
                healthy,
                syncing: false,
            },
            master_of: (f[3] != "-").then(|| f[3].to_string()),
            slots,
        });
    }
    let mut shards: Vec<Shard> = Vec::new();
    for l in lines.iter().filter(|l| l.node.master) {
        shards.push(Shard {
            id: None,
            slots: merge(&l.slots),
            nodes: vec![l.node.clone()],
        });
    }
    for l in lines.iter().filter(|l| !l.node.master) {
        let owner = l.master_of.as_deref();
        match shards
            .iter_mut()
            .find(|s| Some(s.nodes[0].id.as_str()) == owner)
        {
            Some(s) => s.nodes.push(l.node.clone()),
            // A replica of a master we do not know (gossip lag): a shard with no master yet.
            None => shards.push(Shard {
                id: None,
                slots: Vec::new(),
                nodes: vec![l.node.clone()],
            }),
        }
    }
    Ok(Topology { shards })
}

/// `cluster_state` from `CLUSTER INFO`: true for `ok`.
pub fn cluster_state_ok(info: &str) -> Option<bool> {
    field(info, "cluster_state").map(|v| v == "ok")
}

fn field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A node's replication identity from `INFO replication`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplInfo {
    pub master: bool,
    pub replid: String,
    pub replid2: Option<String>,
    /// First offset *not* served under `replid2` (`second_repl_offset`); None when -1.
    pub second_offset: Option<u64>,
    pub offset: u64,
}

impl ReplInfo {
    /// Whether this node continues a stream that was named `replid` up to `offset`.
    pub fn continues(&self, replid: &str, offset: u64) -> bool {
        self.replid.eq_ignore_ascii_case(replid)
            || (self
                .replid2
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(replid))
                && self.second_offset.is_some_and(|s| offset <= s))
    }
}

/// Parses `INFO replication`.
pub fn parse_repl_info(info: &str) -> Result<ReplInfo, TopologyError> {
    let get = |k| field(info, k);
    let replid = get("master_replid")
        .filter(|r| r.len() == 40)
        .ok_or_else(|| malformed("INFO replication", "no master_replid"))?
        .to_string();
    let replid2 = get("master_replid2")
        .filter(|r| r.len() == 40 && r.bytes().any(|b| b != b'0'))
        .map(str::to_string);
    let second_offset = get("second_repl_offset")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .map(|v| v as u64);
    Ok(ReplInfo {
        master: get("role") == Some("master"),
        replid,
        replid2,
        second_offset,
        offset: get("master_repl_offset")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    })
}

#[cfg(test)]
#[path = "topology_tests.rs"]
mod tests;
