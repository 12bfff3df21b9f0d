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
    #[error("{0}")]
    NotCluster(TopologyError),
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

async fn open(addr: &str, cfg: &UpstreamConfig, tls: Option<&Connector>) -> Result<Conn, String> {
    let mut conn = Conn::connect(addr, TIMEOUT, tls)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(pass) = &cfg.password {
        let reply = match &cfg.username {
            Some(u) => call(&mut conn, &[b"AUTH", u.as_bytes(), pass.as_bytes()]).await?,
            None => call(&mut conn, &[b"AUTH", pass.as_bytes()]).await?,
        };
        if let Frame::Error(e) = reply {
            return Err(format!("AUTH rejected: {e}"));
        }
    }
    Ok(conn)
}

/// Reads the topology from one node.
async fn read_topology(
    addr: &str,
    cfg: &UpstreamConfig,
    tls: Option<&Connector>,
) -> Result<(Topology, bool), Result<String, TopologyError>> {
    let mut conn = open(addr, cfg, tls).await.map_err(Ok)?;
    let reply = call(&mut conn, &[b"CLUSTER", b"SHARDS"])
        .await
        .map_err(Ok)?;
    let topo = match topology::parse_shards(&reply) {
        Ok(t) => t,
        Err(TopologyError::ShardsUnsupported(_)) => {
            let nodes = call(&mut conn, &[b"CLUSTER", b"NODES"]).await.map_err(Ok)?;
            match &nodes {
                Frame::Error(e) => return Err(wrap(addr, topology::classify_error(addr, e))),
                f => {
                    let text = bulk_text(f).ok_or(Ok("CLUSTER NODES: not a string".to_string()))?;
                    topology::parse_nodes(&text).map_err(|e| wrap(addr, e))?
                }
            }
        }
        Err(TopologyError::NotCluster(_, msg)) => {
            return Err(Err(TopologyError::NotCluster(addr.to_string(), msg)))
        }
        Err(e) => return Err(Ok(format!("{addr}: {e}"))),
    };
    let info = call(&mut conn, &[b"CLUSTER", b"INFO"]).await.map_err(Ok)?;
    let ok = bulk_text(&info)
        .and_then(|t| topology::cluster_state_ok(&t))
        .unwrap_or(false);
    Ok((topo, ok))
}

fn wrap(addr: &str, e: TopologyError) -> Result<String, TopologyError> {
    match e {
        TopologyError::NotCluster(_, m) => Err(TopologyError::NotCluster(addr.to_string(), m)),
        other => Ok(format!("{addr}: {other}")),
    }
}

/// `INFO replication` of one node.
pub async fn repl_info(
    addr: &str,
    cfg: &UpstreamConfig,
    tls: Option<&Connector>,
) -> Result<ReplInfo, String> {
    let mut conn = open(addr, cfg, tls).await?;
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
            Err(Ok(msg)) => errors.push(msg),
            Err(Err(e)) => {
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
    Err(DiscoverError::Unreachable(errors.join("; ")))
}
