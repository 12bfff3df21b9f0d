//! Helpers of the cluster-target apply tests: a target cluster's keyspace (every master,
//! georelay's checkpoint keys left out), a `redis-cli --cluster reshard` in a thread, an
//! INCR/INCRBY/LPUSH writer whose expected totals are known, a small cluster without replicas,
//! the `[target]` section, and the applier's `/status` rows.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster_util::{Cluster, ClusterClient};
use crate::dataset::{self, Keyspace};
use crate::support::{frame_text, http_get, wait_until, Agent, Client, Redis};

pub const LONG: Duration = Duration::from_secs(120);

/// `[target]` with the cluster's masters as seeds, then `extra` lines.
pub fn target_section(c: &Cluster, extra: &str) -> String {
    let seeds: Vec<String> = c
        .masters()
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    format!("[target]\ncluster = [{}]\n{extra}", seeds.join(", "))
}

/// A field of the agent's first `target` row of `/status`, or None while it does not answer.
pub fn row_field(agent: &Agent, field: &str) -> Option<String> {
    match target_rows(agent)?.first()?.get(field)? {
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

pub fn origin_offset(origin: &Redis) -> f64 {
    origin
        .info_field("replication", "master_repl_offset")
        .parse()
        .expect("master_repl_offset is a number")
}

/// Waits until the (single-lane) applier streams and has applied the origin's offset.
pub fn wait_applied(agent: &Agent, origin: &Redis) {
    wait_until(LONG, "the applier streams", || {
        row_field(agent, "state").as_deref() == Some("streaming")
    });
    let want = origin_offset(origin);
    agent.wait_metric("georelay_apply_offset", &[("shard", "main")], LONG, |v| {
        v >= want
    });
}

/// Every key of a cluster's masters, as database 0, without `georelay:` keys.
pub fn cluster_keyspace(c: &Cluster) -> Keyspace {
    let mut out = Keyspace::new();
    for port in c.masters() {
        let mut client = Client::connect(port);
        let ks = dataset::read_server(&mut client, &[0], false);
        for (k, v) in ks {
            if !k.1.starts_with(b"georelay:") {
                assert!(out.insert(k.clone(), v).is_none(), "{k:?} on two masters");
            }
        }
    }
    out
}

/// Georelay's checkpoint keys on a cluster's masters.
pub fn checkpoint_keys(c: &Cluster) -> usize {
    c.masters()
        .into_iter()
        .map(|port| {
            let mut client = Client::connect(port);
            match client.cmd(&["KEYS", "georelay:checkpoint:*"]) {
                georelay::resp::Frame::Array(a) => a.len(),
                other => panic!("KEYS: {other:?}"),
            }
        })
        .sum()
}

/// Moves `slots` slots from master `from` to master `to` (node ids) with `redis-cli
/// --cluster reshard`, in a thread; the handle returns redis-cli's output, or why it failed.
pub fn reshard(
    seed: u16,
    from: String,
    to: String,
    slots: u32,
) -> std::thread::JoinHandle<Result<String, String>> {
    std::thread::spawn(move || {
        let out = Command::new("redis-cli")
            .args([
                "--cluster",
                "reshard",
                &format!("127.0.0.1:{seed}"),
                "--cluster-from",
                &from,
                "--cluster-to",
                &to,
                "--cluster-slots",
                &slots.to_string(),
                "--cluster-yes",
            ])
            .output()
            .map_err(|e| format!("redis-cli: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && !text.contains("[ERR]") {
            Ok(text)
        } else {
            Err(text)
        }
    })
}

/// What a writer wrote: each counter's total and each list's length.
pub struct Totals {
    pub counters: Vec<i64>,
    pub lists: Vec<i64>,
}

/// INCR / INCRBY / LPUSH on 16 counters and 16 lists, through `send` (one command, its
/// reply), until `stop` or `max` commands.
pub fn write_counters(
    mut send: impl FnMut(&[&str]) -> Result<georelay::resp::Frame, String>,
    stop: Arc<AtomicBool>,
    max: u64,
    tag: &str,
) -> Result<Totals, String> {
    let mut t = Totals {
        counters: vec![0; 16],
        lists: vec![0; 16],
    };
    for n in 0..max {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let k = (n % 16) as usize;
        let reply = match n % 3 {
            0 => {
                t.counters[k] += 1;
                send(&["INCR", &format!("{tag}cnt:{k}")])?
            }
            1 => {
                t.counters[k] += 3;
                send(&["INCRBY", &format!("{tag}cnt:{k}"), "3"])?
            }
            _ => {
                t.lists[k] += 1;
                send(&["LPUSH", &format!("{tag}q:{k}"), &n.to_string()])?
            }
        };
        if let georelay::resp::Frame::Error(e) = reply {
            return Err(format!("write {n}: {e}"));
        }
        if n % 20 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(t)
}

/// Asserts the target's counters and lists equal the writer's totals.
pub fn assert_totals(target: &mut ClusterClient, t: &Totals, tag: &str) {
    for k in 0..16 {
        let (cnt, q) = (format!("{tag}cnt:{k}"), format!("{tag}q:{k}"));
        let got = frame_text(&target.cmd(&["GET", &cnt]).expect("GET"));
        assert_eq!(got.parse::<i64>().ok(), Some(t.counters[k]), "{cnt}");
        let len = frame_text(&target.cmd(&["LLEN", &q]).expect("LLEN"));
        assert_eq!(len.parse::<i64>().ok(), Some(t.lists[k]), "{q}");
    }
}

/// A cluster of `masters` masters without replicas (`redis-cli --cluster create` wants 3
/// masters at least) on `cluster_port_block` ports: slots split evenly with `CLUSTER
/// ADDSLOTS`, distinct config epochs, `CLUSTER MEET`, then every node agrees on the slots.
pub fn small_cluster(kind: crate::support::ServerKind, masters: usize) -> Cluster {
    let base = crate::cluster_util::cluster_port_block(masters);
    let nodes: Vec<Redis> = (0..masters as u16)
        .map(|i| Redis::start_kind_on(kind, base + i, &crate::cluster_util::NODE_ARGS))
        .collect();
    let per = 16384 / masters;
    for (i, n) in nodes.iter().enumerate() {
        let first = i * per;
        let last = if i + 1 == masters {
            16383
        } else {
            first + per - 1
        };
        let mut c = n.client();
        let ok = |f: georelay::resp::Frame, what: &str| {
            assert_eq!(frame_text(&f), "OK", "{what} on {}", n.port)
        };
        ok(
            c.cmd(&["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()]),
            "SET-CONFIG-EPOCH",
        );
        // Redis 6.2 has no ADDSLOTSRANGE (7.0+): list the slots.
        let slots: Vec<String> = (first..=last).map(|s| s.to_string()).collect();
        let mut args = vec!["CLUSTER", "ADDSLOTS"];
        args.extend(slots.iter().map(String::as_str));
        ok(c.cmd(&args), "ADDSLOTS");
    }
    for n in &nodes[1..] {
        let f = nodes[0]
            .client()
            .cmd(&["CLUSTER", "MEET", "127.0.0.1", &n.port.to_string()]);
        assert_eq!(frame_text(&f), "OK", "MEET");
    }
    let c = Cluster {
        nodes: nodes.into_iter().map(Some).collect(),
        kind,
    };
    c.wait_ok();
    wait_until(
        Duration::from_secs(60),
        "every node knows every master's slots",
        || {
            c.live().all(|n| {
                let text = n.client().cmd_str(&["CLUSTER", "NODES"]);
                text.lines()
                    .filter(|l| l.contains("master") && l.split(' ').count() > 8)
                    .count()
                    == masters
            })
        },
    );
    c
}

/// The `target` rows of `/status`, or None while `/status` does not answer with them.
pub fn target_rows(agent: &Agent) -> Option<Vec<serde_json::Value>> {
    let (code, body) = http_get(agent.admin_port, "/status")?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v.get("target")?.as_array().cloned()
}

/// Every lane applier is in state `streaming` (and there are `n`).
pub fn all_streaming(agent: &Agent, n: usize) -> bool {
    target_rows(agent)
        .is_some_and(|rows| rows.len() == n && rows.iter().all(|r| r["state"] == "streaming"))
}

/// Strings, lists, hashes, sets and sorted sets (some with TTLs) through a cluster client.
pub fn mixed_dataset(c: &mut ClusterClient, n: u32) {
    for i in 0..n {
        let k = format!("mix:{i}");
        let ok = |r: Result<georelay::resp::Frame, String>| {
            let f = r.expect("write the dataset");
            assert!(!matches!(f, georelay::resp::Frame::Error(_)), "{f:?}");
        };
        match i % 5 {
            0 => ok(c.cmd(&["SET", &k, &format!("v{i}")])),
            1 => ok(c.cmd(&["RPUSH", &k, "a", "b", &i.to_string()])),
            2 => ok(c.cmd(&["HSET", &k, "f", "1", "g", &i.to_string()])),
            3 => ok(c.cmd(&["SADD", &k, "x", "y", &i.to_string()])),
            _ => ok(c.cmd(&["ZADD", &k, "1.5", "m", &i.to_string(), "n"])),
        }
        if i % 7 == 0 {
            ok(c.cmd(&["PEXPIRE", &k, "3600000"]));
        }
    }
}

/// The `shard` of every `target` row of `/status`.
pub fn lane_names(agent: &Agent) -> Vec<String> {
    target_rows(agent)
        .expect("/status has target rows")
        .iter()
        .map(|r| {
            r["shard"]
                .as_str()
                .unwrap_or_else(|| panic!("a target row without a shard: {r}"))
                .to_string()
        })
        .collect()
}

/// [`write_counters`] through a cluster client on `ports`, in a thread, until `stop`.
pub fn spawn_cluster_writer(
    ports: Vec<u16>,
    stop: &Arc<AtomicBool>,
    tag: &'static str,
) -> std::thread::JoinHandle<Result<Totals, String>> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        let mut c = ClusterClient::new(ports);
        write_counters(|a| c.cmd(a), stop, 100_000, tag)
    })
}

/// Database 0 of every master of a cluster origin.
pub fn cluster_origin_keys(origin: &Cluster) -> Keyspace {
    let mut out = Keyspace::new();
    for port in origin.masters() {
        let mut c = Client::connect(port);
        out.extend(dataset::read_server(&mut c, &[0], false));
    }
    out
}

/// Waits until the target's counters `<tag>cnt:*` read the writer's totals.
pub fn wait_counters(tc: &mut ClusterClient, t: &Totals, tag: &str) {
    wait_until(LONG, "the target's counters caught up", || {
        (0..16).all(|k| {
            let got = tc.cmd(&["GET", &format!("{tag}cnt:{k}")]).ok();
            got.map(|f| frame_text(&f)) == Some(t.counters[k].to_string())
        })
    });
}
