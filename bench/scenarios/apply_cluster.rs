//! The apply scenario's cluster target: `masters` Redis 7.0 masters without replicas on ports
//! below the ephemeral range, slots split evenly (`CLUSTER ADDSLOTSRANGE`, distinct config
//! epochs, `CLUSTER MEET`), and its own `redis-benchmark --cluster` write ceiling.

use std::hash::{BuildHasher, Hasher};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use georelay::resp::Frame;

use crate::client::Client;
use crate::harness::{wait_for, Env};
use crate::servers::Redis;

pub struct TargetCluster {
    pub nodes: Vec<Redis>,
}

/// `n` consecutive ports whose cluster bus ports (+10000) are free too, all below 32768.
fn port_block(n: u16) -> Result<u16> {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..500 {
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let base = 12_000 + (r % 10_000) as u16;
        if (0..n).all(|i| free(base + i) && free(base + i + 10_000)) {
            return Ok(base);
        }
    }
    bail!("no block of {n} free cluster ports below 32768")
}

fn ok(port: u16, args: &[&str]) -> Result<()> {
    match Client::connect(port)?.cmd(args)? {
        Frame::Simple(s) if s == "OK" => Ok(()),
        other => Err(anyhow!("{args:?} on {port} answered {other:?}")),
    }
}

fn text(port: u16, args: &[&str]) -> Result<String> {
    match Client::connect(port)?.cmd(args)? {
        Frame::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Frame::Simple(s) => Ok(s),
        other => Err(anyhow!("{args:?} on {port} answered {other:?}")),
    }
}

impl TargetCluster {
    pub fn start(env: &Env, masters: u16) -> Result<TargetCluster> {
        let base = port_block(masters)?;
        let mut nodes = Vec::new();
        for i in 0..masters {
            nodes.push(Redis::start_on(
                env,
                &format!("target-node{i}"),
                base + i,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ],
            )?);
        }
        let per = 16384 / masters as usize;
        for (i, n) in nodes.iter().enumerate() {
            let first = i * per;
            let last = if i + 1 == nodes.len() {
                16383
            } else {
                first + per - 1
            };
            ok(
                n.port,
                &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()],
            )?;
            ok(
                n.port,
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &first.to_string(),
                    &last.to_string(),
                ],
            )?;
        }
        for n in &nodes[1..] {
            ok(
                nodes[0].port,
                &["CLUSTER", "MEET", "127.0.0.1", &n.port.to_string()],
            )?;
        }
        let c = TargetCluster { nodes };
        let ready = || {
            c.nodes.iter().all(|n| {
                text(n.port, &["CLUSTER", "INFO"]).is_ok_and(|t| {
                    t.contains("cluster_state:ok")
                        && t.contains(&format!("cluster_known_nodes:{masters}\r"))
                        && t.contains("cluster_slots_assigned:16384")
                })
            })
        };
        wait_for(Duration::from_secs(60), Duration::from_millis(50), ready)
            .ok_or_else(|| anyhow!("the target cluster never agreed on its slots"))?;
        Ok(c)
    }

    /// The `[target]` section for it.
    pub fn section(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"127.0.0.1:{}\"", n.port))
            .collect();
        format!("[target]\ncluster = [{}]", seeds.join(", "))
    }

    /// Keys on every master, and how many of them are georelay's checkpoint keys.
    pub fn keys(&self) -> Result<(f64, f64)> {
        let (mut all, mut ours) = (0.0, 0.0);
        for n in &self.nodes {
            let mut c = Client::connect(n.port)?;
            match c.cmd(&["DBSIZE"])? {
                Frame::Integer(k) => all += k as f64,
                other => bail!("DBSIZE on {} answered {other:?}", n.port),
            }
            match c.cmd(&["KEYS", "georelay:*"])? {
                Frame::Array(a) => ours += a.len() as f64,
                other => bail!("KEYS on {} answered {other:?}", n.port),
            }
        }
        Ok((all, ours))
    }

    /// `redis-benchmark --cluster`: the same SETs as the stream phase (50 clients, pipeline
    /// 16, `-r 100000`), straight into the cluster.
    pub fn ceiling(&self, value: usize, n: u64) -> Result<Duration> {
        let t0 = Instant::now();
        let out = Command::new("redis-benchmark")
            .args(["--cluster", "-h", "127.0.0.1"])
            .args(["-p", &self.nodes[0].port.to_string()])
            .args([
                "-t",
                "set",
                "-d",
                &value.to_string(),
                "-P",
                "16",
                "-c",
                "50",
            ])
            .args(["-n", &n.to_string(), "-r", "100000", "-q"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("redis-benchmark --cluster")?;
        if !out.status.success() {
            bail!(
                "redis-benchmark --cluster failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(t0.elapsed())
    }
}
