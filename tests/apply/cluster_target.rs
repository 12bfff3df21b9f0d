//! Helpers of the cluster-target apply tests: a target cluster's keyspace (every master,
//! georelay's checkpoint keys left out), a `redis-cli --cluster reshard` in a thread, and an
//! INCR/INCRBY/LPUSH writer whose expected totals are known.
#![allow(dead_code)]

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster_util::{Cluster, ClusterClient};
use crate::dataset::{self, Keyspace};
use crate::support::{frame_text, Client};

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
/// masters at least): slots split evenly with `CLUSTER ADDSLOTSRANGE`, distinct config
/// epochs, `CLUSTER MEET`, then every node agrees on the slots.
pub fn small_cluster(kind: crate::support::ServerKind, masters: usize) -> Cluster {
    use crate::support::{free_port, wait_until, Redis};
    let nodes: Vec<Redis> = (0..masters)
        .map(|_| {
            Redis::start_kind_on(
                kind,
                free_port(),
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ],
            )
        })
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
        ok(
            c.cmd(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ]),
            "ADDSLOTSRANGE",
        );
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
