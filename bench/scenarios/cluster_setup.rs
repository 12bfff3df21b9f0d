//! The cluster scenario's processes: a real Redis Cluster (`cluster-enabled yes`, `redis-cli
//! --cluster create`), a cluster-mode site agent, a cluster-mode region agent and one
//! standalone far replica per region shard port; plus the cluster
//! load (`redis-benchmark --cluster`, or one shard's hash tag) and the lanes' `/status` rows.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use georelay::resp::Frame;

use crate::client::Client;
use crate::devkit::{free_udp_port, http_get};
use crate::harness::{wait_for, Env, Proc, LINK_EXTRA};
use crate::load::redis_benchmark_with;
use crate::servers::{info_field, offset, Agent, Redis};

/// One lane as the bench sees it: its origin master, its region port and far replica.
pub struct Lane {
    pub name: String,
    pub master: u16,
    pub far: Redis,
    /// A hash tag (`{…}`) whose slot the lane's master owns, for probes and one-shard load.
    pub tag: String,
}

pub struct ClusterSetup {
    pub masters: Vec<Redis>,
    pub site: Agent,
    pub region: Agent,
    /// Ordered by the master's position in `masters`.
    pub lanes: Vec<Lane>,
}

/// `n` consecutive free ports, each with its cluster bus port (+10000) free, below 32768.
fn node_ports(n: u16) -> Result<u16> {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let seed = std::process::id() as u64 ^ crate::harness::now_ns() as u64;
    for i in 0..500u64 {
        let base =
            12_000 + ((seed.wrapping_mul(2654435761).wrapping_add(i * 7919)) % 10_000) as u16;
        if (0..n).all(|k| free(base + k) && free(base + k + 10_000)) {
            return Ok(base);
        }
    }
    bail!("no block of {n} free cluster ports (with bus ports)")
}

/// `n` consecutive free TCP ports (for `listen.shard_ports`).
fn port_block(n: u16) -> Result<u16> {
    for _ in 0..200 {
        let base = crate::devkit::free_port();
        if base as u32 + n as u32 >= 65_535 {
            continue;
        }
        if (0..n).all(|k| std::net::TcpListener::bind(("127.0.0.1", base + k)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no block of {n} free ports")
}

/// A `/status` body as JSON (an agent that does not answer is an error).
pub fn status(admin: u16) -> Result<serde_json::Value> {
    let (code, body) = http_get(admin, "/status").ok_or_else(|| anyhow!("/status: no answer"))?;
    if code != 200 {
        bail!("/status: HTTP {code}");
    }
    serde_json::from_str(&body).context("/status is not JSON")
}

/// The `shards` rows of an agent's `/status` (absent while there is no lane).
pub fn shard_rows(admin: u16) -> Result<Vec<serde_json::Value>> {
    Ok(status(admin)?["shards"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

fn row_str(r: &serde_json::Value, k: &str) -> Result<String> {
    r[k].as_str()
        .map(String::from)
        .ok_or_else(|| anyhow!("/status row without {k}: {r}"))
}

/// The head offset of lane `name` in the agent's log.
pub fn lane_head(admin: u16, name: &str) -> Result<u64> {
    let rows = shard_rows(admin)?;
    let r = rows
        .iter()
        .find(|r| r["name"] == name)
        .ok_or_else(|| anyhow!("no lane {name}"))?;
    r["head_offset"]
        .as_u64()
        .ok_or_else(|| anyhow!("lane {name} without head_offset"))
}

fn agent_config(env: &Env, node: &str, upstream: &str, listen: &str) -> (Agent, String) {
    let dir = env.dir(node);
    let (admin, redis_port) = (crate::devkit::free_port(), crate::devkit::free_port());
    let d = env.pki.display();
    let mut t = format!(
        "name = \"{node}\"\ndata_dir = \"{}\"\n[upstream]\n{upstream}\n[listen]\n\
         redis = \"127.0.0.1:{redis_port}\"\nadmin = \"127.0.0.1:{admin}\"\n{listen}\n\
         [tls]\nca = \"{d}/ca.pem\"\ncert = \"{d}/{node}.pem\"\nkey = \"{d}/{node}.key\"\n",
        dir.join("data").display()
    );
    if node == "region-b" {
        t.push_str("server_name = \"site-a\"\n");
    }
    let extra = LINK_EXTRA.get().map(String::as_str).unwrap_or("");
    if !extra.is_empty() {
        t.push_str(&format!("[link]\n{extra}\n"));
    }
    let config = dir.join("georelay.toml");
    let a = Agent {
        name: node.into(),
        admin,
        redis_port,
        quic: None,
        dir,
        config,
        georelay: env.georelay.clone(),
        proc: Proc { child: None },
    };
    (a, t)
}

/// The cluster's masters, one per shard, created with `redis-cli --cluster create`.
pub fn start_cluster(env: &Env, n: u16) -> Result<Vec<Redis>> {
    let base = node_ports(n)?;
    let mut masters = Vec::new();
    for k in 0..n {
        masters.push(Redis::start_on(
            env,
            &format!("node-{k}"),
            base + k,
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
    let mut args = vec!["--cluster".to_string(), "create".into()];
    args.extend(masters.iter().map(|m| format!("127.0.0.1:{}", m.port)));
    args.extend(["--cluster-replicas", "0", "--cluster-yes"].map(String::from));
    let out = Command::new("redis-cli").args(&args).output()?;
    if !out.status.success() {
        bail!("cluster create: {}", String::from_utf8_lossy(&out.stdout));
    }
    wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        masters.iter().all(|m| {
            Client::connect(m.port)
                .and_then(|mut c| c.cmd(&["CLUSTER", "INFO"]))
                .is_ok_and(|f| matches!(f, Frame::Bulk(b) if String::from_utf8_lossy(&b).contains("cluster_state:ok")))
        })
    })
    .ok_or_else(|| anyhow!("the cluster never reached cluster_state:ok"))?;
    Ok(masters)
}

/// A hash tag whose slot `master` owns (`CLUSTER SHARDS` of that master).
fn tag_for(master: u16) -> Result<String> {
    let mut c = Client::connect(master)?;
    let Frame::Array(ranges) = c.cmd(&["CLUSTER", "SHARDS"])? else {
        bail!("CLUSTER SHARDS: not an array");
    };
    let mut own = Vec::new();
    for shard in &ranges {
        let Frame::Array(kv) = shard else { continue };
        let get = |k: &str| {
            kv.chunks(2).find_map(|p| match &p[0] {
                Frame::Bulk(b) if b.as_ref() == k.as_bytes() => p.get(1),
                _ => None,
            })
        };
        let nodes_have_me = match get("nodes") {
            Some(Frame::Array(nodes)) => nodes.iter().any(|n| {
                let Frame::Array(f) = n else { return false };
                f.chunks(2).any(|p| {
                    matches!(&p[0], Frame::Bulk(b) if b.as_ref() == b"port")
                        && matches!(p.get(1), Some(Frame::Integer(x)) if *x == master as i64)
                })
            }),
            _ => false,
        };
        if !nodes_have_me {
            continue;
        }
        if let Some(Frame::Array(slots)) = get("slots") {
            for pair in slots.chunks(2) {
                if let (Frame::Integer(a), Some(Frame::Integer(b))) = (&pair[0], pair.get(1)) {
                    own.push((*a as u16, *b as u16));
                }
            }
        }
    }
    for i in 0..100_000u32 {
        let tag = format!("t{i}");
        let slot = georelay::cluster::key_slot(tag.as_bytes());
        if own.iter().any(|(a, b)| (*a..=*b).contains(&slot)) {
            return Ok(format!("{{{tag}}}"));
        }
    }
    bail!("no hash tag for master {master} (slots {own:?})")
}

impl ClusterSetup {
    /// A fresh cluster of `n` masters, site → region, one far replica per lane,
    /// everything synced.
    pub fn start(env: &Env, n: u16) -> Result<ClusterSetup> {
        let masters = start_cluster(env, n)?;
        let quic = free_udp_port();
        let seeds: Vec<String> = masters
            .iter()
            .map(|m| format!("\"127.0.0.1:{}\"", m.port))
            .collect();
        let sp = port_block(n)?;
        let (mut site, t) = agent_config(
            env,
            "site-a",
            &format!("cluster = [{}]", seeds.join(", ")),
            &format!(
                "agent = \"127.0.0.1:{quic}\"\nshard_ports = \"{sp}-{}\"",
                sp + n - 1
            ),
        );
        std::fs::write(&site.config, t)?;
        site.quic = Some(quic);
        site.restart()?;
        wait_lanes(site.admin, n as usize)?;
        let up = quic;
        let rp = port_block(n)?;
        let (mut region, t) = agent_config(
            env,
            "region-b",
            &format!("agent = \"127.0.0.1:{up}\""),
            &format!("shard_ports = \"{rp}-{}\"", rp + n - 1),
        );
        std::fs::write(&region.config, t)?;
        region.restart()?;
        wait_lanes(region.admin, n as usize)?;
        let site_rows = shard_rows(site.admin)?;
        let region_rows = shard_rows(region.admin)?;
        let mut lanes = Vec::new();
        for m in &masters {
            let row = site_rows
                .iter()
                .find(|r| {
                    r["upstream"]
                        .as_str()
                        .is_some_and(|u| u.ends_with(&format!(":{}", m.port)))
                })
                .ok_or_else(|| anyhow!("no site lane follows master {}", m.port))?;
            let name = row_str(row, "name")?;
            let rrow = region_rows
                .iter()
                .find(|r| r["name"] == name.as_str())
                .ok_or_else(|| anyhow!("the region has no lane {name}"))?;
            let region_port = rrow["replica_port"]
                .as_u64()
                .ok_or_else(|| anyhow!("region lane {name} without replica_port"))?
                as u16;
            let far = Redis::replica_of(env, &format!("far-{name}"), region_port)?;
            lanes.push(Lane {
                name,
                master: m.port,
                far,
                tag: tag_for(m.port)?,
            });
        }
        let s = ClusterSetup {
            masters,
            site,
            region,
            lanes,
        };
        for l in &s.lanes {
            Client::connect(l.master)?.cmd(&["SET", &format!("{}init", l.tag), "1"])?;
        }
        s.wait_far(Duration::from_secs(120))
            .ok_or_else(|| anyhow!("the far replicas never synced"))?;
        Ok(s)
    }

    /// Waits until every far replica's offset reaches its master's current offset.
    pub fn wait_far(&self, limit: Duration) -> Option<Duration> {
        let want: Vec<u64> = self.lanes.iter().map(|l| offset(l.master)).collect();
        wait_for(limit, Duration::from_millis(5), || {
            self.lanes.iter().zip(&want).all(|(l, w)| {
                info_field(l.far.port, "replication", "master_link_status") == "up"
                    && offset(l.far.port) >= *w
            })
        })
    }

    /// The sum of the masters' replication offsets.
    pub fn origin_offset(&self) -> u64 {
        self.masters.iter().map(|m| offset(m.port)).sum()
    }
}

/// Waits until the agent has `n` lanes, all streaming.
fn wait_lanes(admin: u16, n: usize) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let rows = shard_rows(admin)?;
        if rows.len() == n && rows.iter().all(|r| r["state"] == "streaming") {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("lanes never all streaming: {rows:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `redis-benchmark --cluster`: `n` SETs of `value` bytes spread over every shard.
pub fn cluster_benchmark(seed: u16, value: usize, n: u64) -> Result<Duration> {
    redis_benchmark_with(seed, &["--cluster", "-t", "set"], value, n, &[])
}

/// `n` SETs of `value` bytes on one shard's master, every key under `tag`.
pub fn shard_benchmark(master: u16, tag: &str, value: usize, n: u64) -> Result<Duration> {
    let v = "x".repeat(value);
    let key = format!("{tag}bulk:__rand_int__");
    redis_benchmark_with(master, &[], value, n, &["SET", &key, &v])
}
