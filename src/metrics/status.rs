//! The `/status` JSON document: one row per link and replica, for `georelay status` and scripts.
//! Built from the state the tasks own (log, upstream view, replica and peer tables), never
//! from Prometheus gauges read back.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use super::{Health, Metrics};
use crate::log::Log;

/// What the upstream link is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    /// A Redis/Valkey master (`upstream.redis`).
    Redis,
    /// Another agent over QUIC (`upstream.agent`).
    Agent,
    /// Every shard of a Redis/Valkey Cluster, one lane each (`upstream.cluster`).
    Cluster,
}

impl UpstreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamKind::Redis => "redis",
            UpstreamKind::Agent => "agent",
            UpstreamKind::Cluster => "cluster",
        }
    }
}

/// A former upstream that was cut off by `georelay failover`: what it had, as last heard,
/// that this node never got. Its history past `head` is not this node's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FencedSite {
    /// The former upstream's address.
    pub site: String,
    /// Its head as last heard in a heartbeat, and that byte's origin time (µs since the epoch).
    pub site_head: u64,
    pub site_head_time_us: u64,
    /// This node's head when it was re-pointed, and that byte's origin time.
    pub head: u64,
    pub head_time_us: u64,
    /// Seconds since the epoch when the fence was set.
    pub at_unix: u64,
    /// When the site was last heard from (µs since the epoch; 0 = never): bytes it took after
    /// that are not counted in the RPO, which is then a lower bound.
    #[serde(default)]
    pub heard_us: u64,
}

impl FencedSite {
    /// Stream bytes the site had and this node never got.
    pub fn rpo_bytes(&self) -> u64 {
        self.site_head.saturating_sub(self.head)
    }

    /// Seconds of origin time the site had and this node never got.
    pub fn rpo_seconds(&self) -> f64 {
        self.site_head_time_us.saturating_sub(self.head_time_us) as f64 / 1e6
    }
}

/// The upstream the agent streams from now (the config file's, or a runtime override).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveUpstream {
    pub kind: UpstreamKind,
    pub addr: String,
    pub server_name: Option<String>,
    /// A `POST /upstream` override (persisted in `data_dir`) is in force.
    pub overridden: bool,
    pub fenced: Option<FencedSite>,
}

/// The live state `/status` is built from; each part is owned and updated by its task.
#[derive(Clone)]
pub struct NodeState {
    pub node: String,
    pub log: Log,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub upstream: Arc<RwLock<ActiveUpstream>>,
    pub replica_addr: SocketAddr,
    /// The QUIC listener for downstream agents (`listen.agent`), if any.
    pub agent_addr: Option<SocketAddr>,
    pub replicas: Arc<crate::serve::Replicas>,
    pub peers: Arc<crate::serve::peers::Peers>,
    /// The lanes, in cluster mode (`upstream.cluster`).
    pub cluster: Option<crate::cluster::run::Lanes>,
    /// Apply mode (`[target]`): the appliers' views (one per lane).
    pub apply: crate::apply::ApplyViews,
}

impl NodeState {
    /// The active upstream (a copy).
    pub fn active_upstream(&self) -> ActiveUpstream {
        self.upstream
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// This node and its upstream link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: String,
    /// The replica port (host:port) Redis replicas and demoted masters attach to.
    #[serde(default)]
    pub replica_addr: String,
    /// The QUIC listener downstream agents connect to (`listen.agent`), if any.
    #[serde(default)]
    pub agent_addr: Option<String>,
    pub upstream: UpstreamRow,
    pub log: LogRow,
    pub replicas: Vec<FollowerRow>,
    pub agents: Vec<FollowerRow>,
    /// Cluster mode: one row per lane.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<crate::cluster::status::ShardRow>,
    /// Cluster mode (site): what the last topology read found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::status::ClusterRow>,
    /// Apply mode: one row per lane written into the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<crate::apply::TargetRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpstreamRow {
    pub kind: UpstreamKind,
    pub addr: String,
    /// With an agent upstream: the name its certificate must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// A runtime override (`POST /upstream`, persisted in `data_dir`) wins over the config file.
    #[serde(default)]
    pub override_in_force: bool,
    pub connected: bool,
    pub upstream_head: u64,
    /// Origin time (µs since the epoch) of the upstream's head as last heard; 0 = unknown.
    #[serde(default)]
    pub upstream_head_time_us: u64,
    pub durable: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub heartbeat_age_seconds: Option<f64>,
    /// "partial", "full" or "" (none yet).
    pub last_sync: String,
    /// Set once a failover cut this node off its former upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced: Option<FencedSite>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRow {
    /// The replication ID of the log's head ("" before the first snapshot).
    #[serde(default)]
    pub replid: String,
    pub first: u64,
    pub head: u64,
    /// Origin time (µs since the epoch) of the record holding the head; 0 = unknown.
    #[serde(default)]
    pub head_time_us: u64,
    pub durable: u64,
    pub disk_bytes: u64,
    pub snapshot_offset: Option<u64>,
}

/// A served Redis replica or a downstream agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FollowerRow {
    pub peer: String,
    pub state: String,
    pub ack: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub last_sync: String,
}

/// Builds the document from live state.
pub fn collect(st: &NodeState) -> Status {
    let s = st.log.status();
    let now = crate::clock::now_us();
    let view = &st.metrics.upstream_view;
    let lag = view.lag(&st.log, &s, now);
    let heard = view.heard_us.load(Ordering::Relaxed);
    let up = st.active_upstream();
    let replicas = st
        .replicas
        .snapshot()
        .into_iter()
        .map(|r| FollowerRow {
            peer: r.label(),
            state: r.state.as_redis().to_string(),
            ack: r.ack_offset,
            lag_bytes: s.head.saturating_sub(r.ack_offset),
            lag_seconds: Metrics::follower_lag_seconds(&st.log, r.ack_offset),
            last_sync: r.last_sync.to_string(),
        })
        .collect();
    let agents = st
        .peers
        .snapshot()
        .into_iter()
        .map(|p| FollowerRow {
            peer: format!("{} ({})", p.name, p.addr),
            state: p.state.to_string(),
            ack: p.ack,
            lag_bytes: s.head.saturating_sub(p.ack),
            lag_seconds: Metrics::follower_lag_seconds(&st.log, p.ack),
            last_sync: String::new(),
        })
        .collect();
    Status {
        node: st.node.clone(),
        replica_addr: st.replica_addr.to_string(),
        agent_addr: st.agent_addr.map(|a| a.to_string()),
        upstream: UpstreamRow {
            kind: up.kind,
            addr: up.addr,
            server_name: up.server_name,
            override_in_force: up.overridden,
            connected: st.health.upstream_up.load(Ordering::Relaxed),
            upstream_head: lag.head,
            upstream_head_time_us: view.head_ts_us.load(Ordering::Relaxed),
            durable: s.durable,
            lag_bytes: lag.bytes,
            lag_seconds: lag.seconds,
            heartbeat_age_seconds: (heard > 0).then(|| now.saturating_sub(heard) as f64 / 1e6),
            last_sync: view.last_sync().to_string(),
            fenced: up.fenced,
        },
        log: LogRow {
            replid: st.log.current().map(|c| c.0).unwrap_or_default(),
            first: s.first_valid,
            head: s.head,
            head_time_us: st.log.timestamp_at(s.head).unwrap_or(0),
            durable: s.durable,
            disk_bytes: s.disk_bytes,
            snapshot_offset: s.newest_snapshot.map(|n| n.offset),
        },
        replicas,
        agents,
        shards: st
            .cluster
            .as_ref()
            .map(crate::cluster::status::rows)
            .unwrap_or_default(),
        cluster: st.cluster.as_ref().and_then(|l| l.cluster_row()),
        target: st.apply.rows(),
    }
}

/// Renders a status as a terminal table.
pub fn render_table(s: &Status) -> String {
    let mut rows = vec![[
        "ROLE".to_string(),
        "PEER".into(),
        "STATE".into(),
        "OFFSET".into(),
        "LAG BYTES".into(),
        "LAG S".into(),
        "LAST SYNC".into(),
    ]];
    let u = &s.upstream;
    let role = if u.override_in_force {
        format!("upstream ({}, override)", u.kind.as_str())
    } else {
        format!("upstream ({})", u.kind.as_str())
    };
    rows.push([
        role,
        u.addr.clone(),
        if u.connected {
            "connected".into()
        } else {
            "down".into()
        },
        format!("{}/{}", u.durable, u.upstream_head),
        u.lag_bytes.to_string(),
        format!("{:.3}", u.lag_seconds),
        u.last_sync.clone(),
    ]);
    for (role, list) in [("replica", &s.replicas), ("agent", &s.agents)] {
        for r in list {
            rows.push([
                role.to_string(),
                r.peer.clone(),
                r.state.clone(),
                r.ack.to_string(),
                r.lag_bytes.to_string(),
                format!("{:.3}", r.lag_seconds),
                r.last_sync.clone(),
            ]);
        }
    }
    for t in &s.target {
        rows.push([
            format!("target ({})", t.shard),
            t.addr.clone(),
            if t.error.is_empty() {
                t.state.clone()
            } else {
                format!("{}: {}", t.state, t.error)
            },
            t.applied.to_string(),
            t.lag_bytes.to_string(),
            format!("{:.3}", t.lag_seconds),
            String::new(),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = format!(
        "node {}  log {}..{} (durable {}, {} bytes on disk)\n",
        s.node, s.log.first, s.log.head, s.log.durable, s.log.disk_bytes
    );
    if let Some(f) = &u.fenced {
        out.push_str(&format!(
            "fenced: former upstream {} cut off at {} (it had {} more bytes, {:.3}s, never received here)\n",
            f.site,
            f.head,
            f.rpo_bytes(),
            f.rpo_seconds()
        ));
    }
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&crate::cluster::status::render(
        s.cluster.as_ref(),
        &s.shards,
    ));
    out
}

/// The largest lag in seconds anywhere in the document. A silent upstream counts too: lag
/// cannot be vouched for below the time since it was last heard from (for a Redis upstream,
/// beyond its 10 s idle PING period).
pub fn max_lag_seconds(s: &Status) -> f64 {
    let silence = s.upstream.heartbeat_age_seconds.unwrap_or(0.0);
    let silence = if s.upstream.kind == UpstreamKind::Redis {
        (silence - REDIS_PING_PERIOD).max(0.0)
    } else {
        silence
    };
    let upstream = if s.upstream.connected {
        s.upstream.lag_seconds.max(silence)
    } else {
        f64::INFINITY
    };
    s.replicas
        .iter()
        .chain(&s.agents)
        .map(|r| r.lag_seconds)
        .chain(s.target.iter().map(|t| t.lag_seconds))
        .chain(s.shards.iter().map(|l| l.lag_seconds))
        .fold(upstream, f64::max)
}

/// A Redis master PINGs its replicas every `repl-ping-replica-period` (10 s) plus slack.
const REDIS_PING_PERIOD: f64 = 11.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_a_row_per_link_and_replica() {
        let s = Status {
            node: "region-b".into(),
            replica_addr: "127.0.0.1:6380".into(),
            agent_addr: None,
            upstream: UpstreamRow {
                kind: UpstreamKind::Agent,
                addr: "site-a:7443".into(),
                server_name: Some("site-a".into()),
                override_in_force: false,
                upstream_head_time_us: 0,
                fenced: None,
                connected: true,
                upstream_head: 100,
                durable: 90,
                lag_bytes: 10,
                lag_seconds: 0.25,
                heartbeat_age_seconds: Some(0.5),
                last_sync: "partial".into(),
            },
            log: LogRow {
                replid: "a".repeat(40),
                first: 1,
                head: 100,
                head_time_us: 0,
                durable: 90,
                disk_bytes: 4096,
                snapshot_offset: Some(0),
            },
            replicas: vec![FollowerRow {
                peer: "10.0.0.5:6379".into(),
                state: "online".into(),
                ack: 100,
                lag_bytes: 0,
                lag_seconds: 0.0,
                last_sync: "full".into(),
            }],
            agents: vec![],
            shards: vec![],
            cluster: None,
            target: vec![],
        };
        let t = render_table(&s);
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(
            t.contains("upstream (agent)") && t.contains("site-a:7443") && t.contains("partial")
        );
        assert!(t.contains("replica") && t.contains("10.0.0.5:6379") && t.contains("full"));
        assert_eq!(max_lag_seconds(&s), 0.5, "upstream silence counts as lag");
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
    }
}
