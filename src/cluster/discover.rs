//! The async shell that reads the topology: `CLUSTER SHARDS` (or `CLUSTER NODES` on 6.2),
//! `CLUSTER INFO`, then `INFO replication` of every shard's master. All parsing is in
//! [`topology`](super::topology); a redirection or a bad reply is an error, never a crash.

use std::collections::HashMap;
use std::time::Duration;

use super::registry::Seen;
use super::topology::{self, ReplInfo, Topology, TopologyError};
use crate::config::UpstreamConfig;
use crate::redistls::Connector;
use crate::resp::{self, Frame, Limits};
use crate::upstream::conn::Conn;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Why the topology could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("cannot read the cluster topology from any seed of upstream.cluster ({0}); retrying")]
    Unreachable(String),
    /// Every node answered that it is not a cluster node: the operator has the wrong key.
    #[error("{0}")]
    NotCluster(TopologyError),
    /// A node refused the credentials (and none gave the topology).
    #[error("{0}; retrying")]
    Auth(TopologyError),
}

/// Why one node did not give the topology.
enum Fail {
    /// Unreachable, timed out, redirected, a bad reply: try the next node.
    Transient(String),
    /// Not a cluster node, or the credentials were refused.
    Classified(TopologyError),
}

impl From<String> for Fail {
    fn from(s: String) -> Fail {
        Fail::Transient(s)
    }
}

/// What one discovery pass found.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub seen: Vec<Seen>,
    /// `cluster_state:ok` on the node that answered.
    pub state_ok: bool,
    /// The node that answered.
    pub from: String,
    /// Every node address listed (tried next time after the seeds).
    pub addrs: Vec<String>,
}

/// One RESP request/response on a plain connection.
async fn call(conn: &mut Conn, args: &[&[u8]]) -> Result<Frame, String> {
    conn.send(&resp::command(args))
        .await
        .map_err(|e| e.to_string())?;
    let limits = Limits::default();
    loop {
        if let Some(f) = resp::parse_frame(&mut conn.buf, &limits).map_err(|e| e.to_string())? {
            return Ok(f);
        }
        conn.fill(TIMEOUT).await.map_err(|e| e.to_string())?;
    }
}

fn bulk_text(f: &Frame) -> Option<String> {
    match f {
        Frame::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Frame::Simple(s) => Some(s.clone()),
        _ => None,
    }
}

async fn open(addr: &str, cfg: &UpstreamConfig, tls: Option<&Connector>) -> Result<Conn, Fail> {
    let mut conn = Conn::connect(addr, TIMEOUT, tls)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    if let Some(pass) = &cfg.password {
        let reply = match &cfg.username {
            Some(u) => call(&mut conn, &[b"AUTH", u.as_bytes(), pass.as_bytes()]).await,
            None => call(&mut conn, &[b"AUTH", pass.as_bytes()]).await,
        }
        .map_err(|e| format!("{addr}: AUTH: {e}"))?;
        if let Frame::Error(e) = reply {
            return Err(Fail::Classified(TopologyError::Auth(addr.to_string(), e)));
        }
    }
    Ok(conn)
}

/// Reads the topology from one node.
async fn read_topology(
    addr: &str,
    cfg: &UpstreamConfig,
    tls: Option<&Connector>,
) -> Result<(Topology, bool), Fail> {
    let mut conn = open(addr, cfg, tls).await?;
    let io = |e: String| Fail::Transient(format!("{addr}: {e}"));
    let reply = call(&mut conn, &[b"CLUSTER", b"SHARDS"])
        .await
        .map_err(io)?;
    let topo = match topology::parse_shards(&reply) {
        Ok(t) => t,
        Err(TopologyError::ShardsUnsupported(_)) => {
            let nodes = call(&mut conn, &[b"CLUSTER", b"NODES"]).await.map_err(io)?;
            match &nodes {
                Frame::Error(e) => return Err(classified(addr, topology::classify_error(addr, e))),
                f => {
                    let text = bulk_text(f)
                        .ok_or_else(|| io("CLUSTER NODES: not a string".to_string()))?;
                    topology::parse_nodes(&text).map_err(|e| classified(addr, e))?
                }
            }
        }
        Err(e) => return Err(classified(addr, e)),
    };
    let info = call(&mut conn, &[b"CLUSTER", b"INFO"]).await.map_err(io)?;
    let ok = bulk_text(&info)
        .and_then(|t| topology::cluster_state_ok(&t))
        .unwrap_or(false);
    Ok((topo, ok))
}

/// Not-a-cluster and refused credentials are the operator's to fix; the rest is transient.
fn classified(addr: &str, e: TopologyError) -> Fail {
    match e {
        TopologyError::NotCluster(_, m) => {
            Fail::Classified(TopologyError::NotCluster(addr.to_string(), m))
        }
        TopologyError::Auth(_, m) => Fail::Classified(TopologyError::Auth(addr.to_string(), m)),
        other => Fail::Transient(format!("{addr}: {other}")),
    }
}

/// `INFO replication` of one node.
pub async fn repl_info(
    addr: &str,
    cfg: &UpstreamConfig,
    tls: Option<&Connector>,
) -> Result<ReplInfo, String> {
    let mut conn = open(addr, cfg, tls).await.map_err(|e| match e {
        Fail::Transient(s) => s,
        Fail::Classified(e) => e.to_string(),
    })?;
    let reply = call(&mut conn, &[b"INFO", b"replication"]).await?;
    let text = bulk_text(&reply).ok_or_else(|| format!("{addr}: INFO replication: {reply:?}"))?;
    topology::parse_repl_info(&text).map_err(|e| format!("{addr}: {e}"))
}

/// One discovery pass: the seeds first, then the nodes seen last time.
pub async fn discover(
    seeds: &[String],
    known: &[String],
    cfg: &UpstreamConfig,
    tls: Option<&Connector>,
) -> Result<Discovered, DiscoverError> {
    let mut errors = Vec::new();
    let mut not_cluster = Vec::new();
    let mut auth = None;
    let mut tried = Vec::new();
    for addr in seeds.iter().chain(known) {
        if tried.contains(addr) {
            continue;
        }
        tried.push(addr.clone());
        match read_topology(addr, cfg, tls).await {
            Ok((topo, state_ok)) => {
                let addrs = topo
                    .shards
                    .iter()
                    .flat_map(|s| s.nodes.iter().map(|n| n.addr(tls.is_some())))
                    .collect();
                let mut seen = Vec::with_capacity(topo.shards.len());
                let mut cache: HashMap<String, Option<ReplInfo>> = HashMap::new();
                for shard in topo.shards {
                    let repl = match shard.master() {
                        Some(m) => {
                            let a = m.addr(tls.is_some());
                            if !cache.contains_key(&a) {
                                let r = repl_info(&a, cfg, tls).await;
                                if let Err(e) = &r {
                                    tracing::debug!("INFO replication of {a}: {e}");
                                }
                                cache.insert(a.clone(), r.ok().filter(|r| r.master));
                            }
                            cache.get(&a).cloned().flatten()
                        }
                        None => None,
                    };
                    seen.push(Seen { shard, repl });
                }
                return Ok(Discovered {
                    seen,
                    state_ok,
                    from: addr.clone(),
                    addrs,
                });
            }
            Err(Fail::Transient(msg)) => errors.push(msg),
            Err(Fail::Classified(e @ TopologyError::Auth(..))) => {
                errors.push(e.to_string());
                auth.get_or_insert(e);
            }
            Err(Fail::Classified(e)) => {
                errors.push(e.to_string());
                not_cluster.push(e);
            }
        }
    }
    // Every node answered that it is not a cluster node: the operator has the wrong key.
    if not_cluster.len() == tried.len() {
        if let Some(e) = not_cluster.into_iter().next() {
            return Err(DiscoverError::NotCluster(e));
        }
    }
    if let Some(e) = auth {
        return Err(DiscoverError::Auth(e));
    }
    Err(DiscoverError::Unreachable(errors.join("; ")))
}
