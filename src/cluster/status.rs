//! The lanes' rows of `/status` (`shards: [{name, slots, replica_port, upstream, head_offset,
//! durable_offset, lag_bytes, lag_seconds}]`).

use serde::{Deserialize, Serialize};

use super::run::Lanes;

/// One lane in `/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardRow {
    pub name: String,
    pub alias: String,
    /// `[[first, last], …]`.
    pub slots: Vec<[u16; 2]>,
    pub replica_port: u16,
    /// The node the lane replicates from ("" while it has none).
    pub upstream: String,
    pub head_offset: u64,
    pub durable_offset: u64,
    pub lag_bytes: u64,
    pub lag_seconds: f64,
    /// "streaming", "connecting", "waiting: …", "retiring: …".
    pub state: String,
}

/// A row per running lane, in creation order.
pub fn rows(lanes: &Lanes) -> Vec<ShardRow> {
    let mut rows: Vec<ShardRow> = lanes
        .list()
        .iter()
        .map(|l| {
            l.metrics.refresh_from_log(&l.log);
            let s = l.log.status();
            let v = l.view();
            let state = if v.state == "connecting" && l.metrics.upstream_connected.get() == 1 {
                "streaming".to_string()
            } else {
                v.state
            };
            ShardRow {
                name: l.name.clone(),
                alias: l.alias.clone(),
                slots: super::run::ranges_json(&v.slots),
                replica_port: l.port,
                upstream: v.upstream,
                head_offset: s.head,
                durable_offset: s.durable,
                lag_bytes: l.metrics.lag_bytes.get().max(0) as u64,
                lag_seconds: l.metrics.lag_seconds.get(),
                state,
            }
        })
        .collect();
    rows.extend(lanes.other_rows());
    rows
}

/// The site's view of the cluster as its last discovery pass read it (`/status` `cluster`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClusterRow {
    /// "discovering" (no pass yet), "ok", "fail" (`cluster_state:fail`), "unreachable" (no
    /// seed gave the topology), "not_cluster" (the seeds are standalone servers: use
    /// `upstream.redis`), "auth_failed" (the credentials were refused).
    pub state: String,
    /// What the last pass found wrong, one readable sentence each (empty when nothing).
    #[serde(default)]
    pub problems: Vec<String>,
    /// The node the topology was last read from ("" when none answered).
    #[serde(default)]
    pub from: String,
}

/// The lane table of `georelay status` (empty without lanes): the cluster line, then one row
/// per lane with its slots, replica port, upstream, head/durable offsets and lag.
pub fn render(cluster: Option<&ClusterRow>, rows: &[ShardRow]) -> String {
    let mut out = String::new();
    if let Some(c) = cluster {
        out.push_str(&format!("cluster {}", c.state));
        if !c.from.is_empty() {
            out.push_str(&format!(" (read from {})", c.from));
        }
        out.push('\n');
        for p in &c.problems {
            out.push_str(&format!("  {p}\n"));
        }
    }
    if rows.is_empty() {
        return out;
    }
    let mut table = vec![[
        "LANE",
        "SLOTS",
        "PORT",
        "UPSTREAM",
        "STATE",
        "HEAD",
        "DURABLE",
        "LAG BYTES",
        "LAG S",
    ]
    .map(String::from)];
    for r in rows {
        let count: u32 = r
            .slots
            .iter()
            .map(|[a, b]| u32::from(*b) - u32::from(*a) + 1)
            .sum();
        let ranges: Vec<String> = r
            .slots
            .iter()
            .map(|[a, b]| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        let slots = if ranges.is_empty() {
            "-".to_string()
        } else {
            format!("{} ({count})", ranges.join(","))
        };
        let name = if r.alias.is_empty() || r.alias == r.name {
            r.name.clone()
        } else {
            format!("{} ({})", r.name, r.alias)
        };
        table.push([
            name,
            slots,
            r.replica_port.to_string(),
            if r.upstream.is_empty() {
                "-".into()
            } else {
                r.upstream.clone()
            },
            r.state.clone(),
            r.head_offset.to_string(),
            r.durable_offset.to_string(),
            r.lag_bytes.to_string(),
            format!("{:.3}", r.lag_seconds),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.len());
        }
    }
    for row in table {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lane_table_lists_every_lane() {
        let row = |name: &str, slots: Vec<[u16; 2]>, state: &str| ShardRow {
            name: name.into(),
            alias: format!("{name}-alias"),
            slots,
            replica_port: 7101,
            upstream: "127.0.0.1:7000".into(),
            head_offset: 1234,
            durable_offset: 1200,
            lag_bytes: 34,
            lag_seconds: 0.25,
            state: state.into(),
        };
        let cluster = ClusterRow {
            state: "fail".into(),
            problems: vec!["cluster_state:fail (read from 127.0.0.1:7000)".into()],
            from: "127.0.0.1:7000".into(),
        };
        let text = render(
            Some(&cluster),
            &[
                row("a1", vec![[0, 5460], [6000, 6000]], "streaming"),
                row("b2", vec![], "waiting: the shard's master is gone"),
            ],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "cluster fail (read from 127.0.0.1:7000)");
        assert!(lines[1].contains("cluster_state:fail"), "{text}");
        assert!(lines[2].starts_with("LANE"), "{text}");
        for col in [
            "SLOTS",
            "PORT",
            "UPSTREAM",
            "HEAD",
            "DURABLE",
            "LAG BYTES",
            "LAG S",
        ] {
            assert!(lines[2].contains(col), "{col} in {text}");
        }
        assert!(lines[3].contains("a1 (a1-alias)"), "{text}");
        assert!(lines[3].contains("0-5460,6000 (5462)"), "{text}");
        for v in ["7101", "127.0.0.1:7000", "1234", "1200", "34", "0.250"] {
            assert!(lines[3].contains(v), "{v} in {text}");
        }
        assert!(
            lines[4].contains("waiting: the shard's master is gone"),
            "{text}"
        );
        assert_eq!(render(None, &[]), "");
    }
}
