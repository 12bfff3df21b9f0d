//! The `/status` JSON document: one row per link and replica, for `georelay status` and scripts.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::admin::AdminState;
use super::Metrics;

/// This node and its upstream link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub node: String,
    pub upstream: UpstreamRow,
    pub log: LogRow,
    pub replicas: Vec<FollowerRow>,
    pub agents: Vec<FollowerRow>,
    /// Cluster mode: one row per lane.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<crate::cluster::status::ShardRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpstreamRow {
    /// "redis" or "agent".
    pub kind: String,
    pub addr: String,
    pub connected: bool,
    pub upstream_head: u64,
    pub durable: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    pub heartbeat_age_seconds: Option<f64>,
    /// "partial", "full" or "" (none yet).
    pub last_sync: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogRow {
    pub first: u64,
    pub head: u64,
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
pub fn collect(st: &AdminState) -> Status {
    st.metrics.refresh_from_log(&st.log);
    let s = st.log.status();
    let m = &st.metrics;
    let heard = m.upstream_view.heard_us.load(Ordering::Relaxed);
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
        upstream: UpstreamRow {
            kind: st.upstream_kind.to_string(),
            addr: st.upstream_addr.clone(),
            connected: m.upstream_connected.get() == 1,
            upstream_head: m.upstream_head_offset.get().max(0) as u64,
            durable: s.durable,
            lag_bytes: m.lag_bytes.get().max(0) as u64,
            lag_seconds: m.lag_seconds.get(),
            heartbeat_age_seconds: (heard > 0).then(|| m.upstream_heartbeat_age_seconds.get()),
            last_sync: m.upstream_view.last_sync().to_string(),
        },
        log: LogRow {
            first: s.first_valid,
            head: s.head,
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
    rows.push([
        format!("upstream ({})", u.kind),
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
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The largest lag in seconds anywhere in the document. A silent upstream counts too: lag
/// cannot be vouched for below the time since it was last heard from (for a Redis upstream,
/// beyond its 10 s idle PING period).
pub fn max_lag_seconds(s: &Status) -> f64 {
    let silence = s.upstream.heartbeat_age_seconds.unwrap_or(0.0);
    let silence = if s.upstream.kind == "redis" {
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
            upstream: UpstreamRow {
                kind: "agent".into(),
                addr: "site-a:7443".into(),
                connected: true,
                upstream_head: 100,
                durable: 90,
                lag_bytes: 10,
                lag_seconds: 0.25,
                heartbeat_age_seconds: Some(0.5),
                last_sync: "partial".into(),
            },
            log: LogRow {
                first: 1,
                head: 100,
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
