//! The apply scenario's cluster target: `masters` Redis 7.0 masters without replicas (made
//! by the cluster scenario's `redis-cli --cluster create`), and its own `redis-benchmark
//! --cluster` write ceiling.

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

fn text(port: u16, args: &[&str]) -> Result<String> {
    match Client::connect(port)?.cmd(args)? {
        Frame::Bulk(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Frame::Simple(s) => Ok(s),
        other => Err(anyhow!("{args:?} on {port} answered {other:?}")),
    }
}

impl TargetCluster {
    pub fn start(env: &Env, masters: u16) -> Result<TargetCluster> {
        let nodes = crate::scenarios::cluster_setup::start_cluster(env, masters)?;
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
