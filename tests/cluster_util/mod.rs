//! Cluster test helpers: a real cluster (`cluster-enabled yes`, `redis-cli --cluster
//! create`), a tiny RESP cluster client that follows MOVED/ASK, the agent's /status shards.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use georelay::resp::Frame;

use crate::support::{frame_text, http_get, wait_until, Client, Redis, ServerKind};

mod status;
#[allow(unused_imports)]
pub use status::{cluster_row, problems};

/// The arguments every cluster node is started with.
pub const NODE_ARGS: [&str; 6] = [
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "2000",
];

/// Runs `redis-cli --cluster <args>`; a failure fails the test with redis-cli's output.
pub fn redis_cli_cluster(args: &[&str]) {
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli --cluster {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "redis-cli --cluster {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Cluster {
    pub nodes: Vec<Option<Redis>>,
    pub kind: ServerKind,
}

impl Cluster {
    /// `masters` masters with one replica each, created with `redis-cli --cluster create`.
    pub fn start(kind: ServerKind, masters: usize) -> Cluster {
        Cluster::start_with(kind, masters, 1, None, &[])
    }

    /// `masters` masters with `replicas` replicas each, on `ports` (`masters * (1 +
    /// replicas)` of them) or free ones, each server also given `extra`.
    pub fn start_with(
        kind: ServerKind,
        masters: usize,
        replicas: usize,
        ports: Option<&[u16]>,
        extra: &[&str],
    ) -> Cluster {
        let count = masters * (1 + replicas);
        let ports: Vec<u16> = match ports {
            Some(p) => {
                assert_eq!(p.len(), count, "one port per node");
                p.to_vec()
            }
            None => {
                let base = cluster_port_block(count);
                (base..base + count as u16).collect()
            }
        };
        let mut nodes = Vec::new();
        for port in ports {
            let mut args = NODE_ARGS.to_vec();
            args.extend_from_slice(extra);
            nodes.push(Some(Redis::start_kind_on(kind, port, &args)));
        }
        let addrs: Vec<String> = nodes.iter().flatten().map(|n| n.addr()).collect();
        let per_master = replicas.to_string();
        let mut args: Vec<&str> = vec!["create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", &per_master, "--cluster-yes"]);
        redis_cli_cluster(&args);
        let c = Cluster { nodes, kind };
        c.wait_ok();
        wait_until(
            Duration::from_secs(60),
            "every master has its replicas",
            || {
                let masters_now = c.masters();
                masters_now.len() == masters
                    && masters_now.iter().all(|m| {
                        // At least: an agent may already follow the master (a seed that came
                        // up late).
                        c.node(*m)
                            .info_field("replication", "connected_slaves")
                            .parse::<usize>()
                            .is_ok_and(|n| n >= replicas)
                    })
            },
        );
        c
    }

    /// The process id of the node on `port` (`INFO server` `process_id`).
    pub fn pid(&self, port: u16) -> u32 {
        let v = self.node(port).info_field("server", "process_id");
        v.parse()
            .unwrap_or_else(|_| panic!("process_id of {port}: {v:?}"))
    }

    /// Sends `signal` ("STOP", "CONT", …) to the node on `port` (which must answer INFO:
    /// to wake a stopped node use [`signal_pid`] with the pid read before).
    pub fn signal(&self, port: u16, signal: &str) {
        signal_pid(self.pid(port), signal);
    }

    pub fn live(&self) -> impl Iterator<Item = &Redis> {
        self.nodes.iter().flatten()
    }

    pub fn wait_ok(&self) {
        wait_until(
            Duration::from_secs(60),
            "cluster_state:ok everywhere",
            || {
                self.live().all(|n| {
                    Client::try_connect(n.port).is_some_and(|mut c| {
                        c.try_cmd(&["CLUSTER", "INFO"])
                            .is_ok_and(|f| frame_text(&f).contains("cluster_state:ok"))
                    })
                })
            },
        );
    }

    /// (node id, port, master id or None) per live node, as the first live node sees it.
    pub fn roles(&self) -> Vec<(String, u16, Option<String>, bool)> {
        let any = self.live().next().expect("a live node");
        let text = any.client().cmd_str(&["CLUSTER", "NODES"]);
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = f
                    .get(1)?
                    .split(['@', ','])
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let master = (f[3] != "-").then(|| f[3].to_string());
                let failed = f[2].contains("fail");
                Some((f[0].to_string(), port, master, failed))
            })
            .collect()
    }

    pub fn node(&self, port: u16) -> &Redis {
        self.live().find(|n| n.port == port).expect("node on port")
    }

    pub fn masters(&self) -> Vec<u16> {
        self.live()
            .filter(|n| n.info_field("replication", "role") == "master")
            .map(|n| n.port)
            .collect()
    }

    /// A healthy replica of the master on `master_port`, once gossip shows one (60 s limit).
    pub fn replica_of(&self, master_port: u16) -> u16 {
        let mut found = None;
        wait_until(
            Duration::from_secs(60),
            "the master's replica listed",
            || {
                let roles = self.roles();
                let id = roles
                    .iter()
                    .find(|r| r.1 == master_port)
                    .map(|r| r.0.clone());
                found = roles
                    .iter()
                    .find(|r| id.is_some() && r.2 == id && !r.3)
                    .map(|r| r.1);
                found.is_some()
            },
        );
        found.unwrap_or_else(|| panic!("no replica of the master on {master_port}"))
    }

    pub fn id_of(&self, port: u16) -> String {
        self.node(port).client().cmd_str(&["CLUSTER", "MYID"])
    }

    pub fn kill(&mut self, port: u16) {
        for n in self.nodes.iter_mut() {
            if n.as_ref().is_some_and(|r| r.port == port) {
                if let Some(mut r) = n.take() {
                    r.kill();
                }
            }
        }
    }

    /// Sum of `INFO stats sync_full` over the live nodes, by port.
    pub fn sync_full(&self) -> BTreeMap<u16, u64> {
        self.live()
            .map(|n| {
                (
                    n.port,
                    n.info_field("stats", "sync_full")
                        .parse()
                        .unwrap_or_else(|e| {
                            panic!("node {}: sync_full is not a number: {e}", n.port)
                        }),
                )
            })
            .collect()
    }
}

/// Sends `signal` ("STOP", "CONT", …) to process `pid`.
pub fn signal_pid(pid: u32, signal: &str) {
    let st = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill -{signal} {pid}");
}

/// A cluster client that follows MOVED and ASK and waits out failovers (bounded).
pub struct ClusterClient {
    pub seeds: Vec<u16>,
    conns: BTreeMap<u16, Client>,
}

impl ClusterClient {
    pub fn new(seeds: Vec<u16>) -> ClusterClient {
        ClusterClient {
            seeds,
            conns: BTreeMap::new(),
        }
    }

    fn conn(&mut self, port: u16) -> Option<&mut Client> {
        if let std::collections::btree_map::Entry::Vacant(e) = self.conns.entry(port) {
            let c = Client::try_connect(port)?;
            let _ = c.raw().set_read_timeout(Some(Duration::from_secs(5)));
            e.insert(c);
        }
        self.conns.get_mut(&port)
    }

    /// Runs a command; Err after ~60 s of failures.
    pub fn cmd(&mut self, args: &[&str]) -> Result<Frame, String> {
        let mut port = self.seeds[0];
        let mut asking = false;
        let mut last = String::new();
        for attempt in 0..600 {
            let reply = match self.conn(port) {
                Some(c) => {
                    let r = if asking {
                        c.try_cmd(&["ASKING"]).and_then(|_| c.try_cmd(args))
                    } else {
                        c.try_cmd(args)
                    };
                    r.map_err(|e| e.to_string())
                }
                None => Err(format!("connect {port}")),
            };
            asking = false;
            match reply {
                Ok(Frame::Error(e)) if e.starts_with("MOVED ") || e.starts_with("ASK ") => {
                    asking = e.starts_with("ASK ");
                    port = e
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(port);
                    continue;
                }
                Ok(Frame::Error(e))
                    if e.starts_with("CLUSTERDOWN")
                        || e.starts_with("TRYAGAIN")
                        || e.starts_with("LOADING") =>
                {
                    last = e;
                }
                Ok(f) => return Ok(f),
                Err(e) => {
                    self.conns.remove(&port);
                    last = e;
                    // Try another seed: the node may be dead.
                    port = self.seeds[attempt % self.seeds.len()];
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("{args:?}: gave up: {last}"))
    }
}

/// Every key and its value on one server (SCAN + GET; the tests write strings only).
pub fn keyspace(port: u16) -> BTreeMap<String, String> {
    let mut c = Client::connect(port);
    let mut out = BTreeMap::new();
    let mut cursor = "0".to_string();
    loop {
        let f = c.cmd(&["SCAN", &cursor, "COUNT", "1000"]);
        let Frame::Array(parts) = f else {
            panic!("SCAN: {f:?}")
        };
        cursor = frame_text(&parts[0]);
        let keys: Vec<String> = match &parts[1] {
            Frame::Array(k) => k.iter().map(frame_text).collect(),
            other => panic!("SCAN on {port}: the keys are not an array: {other:?}"),
        };
        for k in keys {
            out.insert(k.clone(), c.cmd_str(&["GET", &k]));
        }
        if cursor == "0" {
            return out;
        }
    }
}

/// The agent's `/status` shards (`/status` leaves `shards` out while there is no lane). An
/// agent that does not answer, a body that is not a status, or a `shards` that is not an array
/// fails the test (an empty list would pass checks like "no lane yet").
pub fn shards(admin_port: u16) -> Vec<serde_json::Value> {
    let (code, body) = http_get(admin_port, "/status")
        .unwrap_or_else(|| panic!("GET /status on admin port {admin_port}: no answer"));
    assert_eq!(code, 200, "GET /status on {admin_port}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/status on {admin_port} is not JSON ({e}): {body}"));
    assert!(
        v["upstream"].is_object(),
        "/status on {admin_port} is not a status: {body}"
    );
    match v.get("shards") {
        None => Vec::new(),
        Some(s) => s
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("/status on {admin_port}: shards is not an array: {body}")),
    }
}

/// A string field of a `/status` row; a missing or non-string field fails the test.
pub fn field_str(v: &serde_json::Value, k: &str) -> String {
    v.get(k)
        .and_then(|x| x.as_str())
        .unwrap_or_else(|| panic!("/status row has no string {k:?}: {v}"))
        .to_string()
}

/// A number field of a `/status` row; a missing or non-numeric field fails the test (a
/// port read as 0 would otherwise pass into the checks).
pub fn field_u64(v: &serde_json::Value, k: &str) -> u64 {
    v.get(k)
        .and_then(|x| x.as_u64())
        .unwrap_or_else(|| panic!("/status row has no number {k:?}: {v}"))
}

pub fn key_set(maps: &[BTreeMap<String, String>]) -> BTreeSet<String> {
    maps.iter().flat_map(|m| m.keys().cloned()).collect()
}

/// The site agent's config for a cluster.
pub fn cluster_agent_config(
    seeds: &[String],
    first_port: u16,
    lanes: usize,
    extra: &str,
) -> String {
    let seeds: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        "name = \"site\"\ndata_dir = \"{{data_dir}}\"\n[upstream]\ncluster = [{}]\ncluster_refresh = \"300ms\"\n{extra}\n\
         [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\nshard_ports = \"{}-{}\"\n",
        seeds.join(", "),
        first_port,
        first_port + lanes as u16 - 1
    )
}

/// A block of free consecutive ports for an agent's `listen.shard_ports`: each checked free now,
/// all in 2000–11999, below the cluster nodes' block (12000–31999 with their bus ports) and the
/// kernel's ephemeral range (32768 and up). A lane binds its shard port only once discovery has
/// found its shard, so a port in the ephemeral range could meanwhile be taken by any outbound
/// connection on the machine (seen once: "cannot listen on its shard port … Address already in
/// use" for a minute).
pub fn free_port_block(n: usize) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..500 {
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let base = 2_000 + (r % (10_000 - n as u64)) as u16;
        if (0..n as u16).all(|i| free(base + i)) {
            return base;
        }
    }
    panic!("no block of {n} free ports in 2000–11999");
}

/// `n` consecutive ports for cluster nodes: each one and its cluster bus port (+10000) free
/// now, all below the kernel's ephemeral range (32768 and up), so no outbound connection (an
/// agent retrying its seeds, say) can take a bus port before the node binds it.
pub fn cluster_port_block(n: usize) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    for _ in 0..500 {
        let r = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let base = 12_000 + (r % 10_000) as u16;
        if (0..n as u16).all(|i| free(base + i) && free(base + i + 10_000)) {
            return base;
        }
    }
    panic!("no block of {n} free cluster node ports (with their bus ports) below 32768");
}

/// The port of a "host:port" address; anything else fails the test.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("not a host:port address: {addr:?}"))
}

pub struct Writer {
    stop: Arc<AtomicBool>,
    /// Set by [`Writer::pause`]: the writer stops between writes and sets `idle`.
    pause: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    acked: Arc<Mutex<BTreeSet<String>>>,
    handle: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Writer {
    pub fn start(seeds: Vec<u16>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(Mutex::new(BTreeSet::new()));
        let (pause, idle) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (s, c, a) = (stop.clone(), count.clone(), acked.clone());
        let (p, id) = (pause.clone(), idle.clone());
        let handle = std::thread::spawn(move || {
            let mut client = ClusterClient::new(seeds);
            for i in 0..200_000u64 {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                // Paused: no write in flight until resumed (bounded by `stop`).
                while p.load(Ordering::Relaxed) && !s.load(Ordering::Relaxed) {
                    id.store(true, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
                id.store(false, Ordering::Relaxed);
                let key = format!("key:{i}");
                let reply = client.cmd(&["SET", &key, &format!("value-{i}")])?;
                if frame_text(&reply) != "OK" {
                    return Err(format!("SET {key}: {reply:?}"));
                }
                a.lock().unwrap().insert(key);
                c.fetch_add(1, Ordering::Relaxed);
                // At most ~500 writes/s, so the bound outlasts every test's faults.
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        });
        Writer {
            stop,
            pause,
            idle,
            count,
            acked,
            handle: Some(handle),
        }
    }

    pub fn advance(&self, n: u64) {
        let target = self.count.load(Ordering::Relaxed) + n;
        wait_until(Duration::from_secs(90), "the writer makes progress", || {
            let done = self.handle.as_ref().is_none_or(|h| h.is_finished());
            assert!(
                !done || self.count.load(Ordering::Relaxed) >= target,
                "the writer stopped after {} writes (see finish() for its error)",
                self.count.load(Ordering::Relaxed)
            );
            self.count.load(Ordering::Relaxed) >= target
        });
    }

    /// Stops the writer between two writes; returns once no write is in flight.
    pub fn pause(&self) {
        self.pause.store(true, Ordering::Relaxed);
        wait_until(Duration::from_secs(30), "the writer pauses", || {
            self.idle.load(Ordering::Relaxed)
        });
    }

    pub fn resume(&self) {
        self.pause.store(false, Ordering::Relaxed);
    }

    pub fn finish(mut self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.handle.take().unwrap().join().expect("writer thread");
        r.expect("writes through the cluster client");
        self.acked.lock().unwrap().clone()
    }
}

pub fn lane_by_master(admin: u16, port: u16) -> Option<serde_json::Value> {
    shards(admin).into_iter().find(|s| {
        field_str(s, "state") == "streaming" && port_of(&field_str(s, "upstream")) == port
    })
}

impl Cluster {
    /// `CLUSTER FAILOVER` on `replica`, until it is the master (60 s limit). Redis aborts a
    /// manual failover the replica cannot finish within its 5 s (`CLUSTER_MF_TIMEOUT`),
    /// silently; on a busy machine that happens. Ask again, as an operator would, every 10 s
    /// while the replica is still a replica.
    pub fn manual_failover(&self, replica: u16) {
        assert_eq!(
            frame_text(&self.node(replica).client().cmd(&["CLUSTER", "FAILOVER"])),
            "OK"
        );
        let mut asked = std::time::Instant::now();
        wait_until(Duration::from_secs(60), "the replica promoted", || {
            let promoted = self.node(replica).info_field("replication", "role") == "master";
            if !promoted && asked.elapsed() > Duration::from_secs(10) {
                let _ = self.node(replica).client().cmd(&["CLUSTER", "FAILOVER"]);
                asked = std::time::Instant::now();
            }
            promoted
        });
    }

    /// SIGKILLs `master` and waits for `replica` to take over and the cluster to be ok.
    pub fn kill_master(&mut self, master: u16, replica: u16) {
        self.kill(master);
        wait_until(Duration::from_secs(60), "the replica promoted", || {
            self.node(replica).info_field("replication", "role") == "master"
        });
        self.wait_ok();
    }

    /// Like [`Cluster::kill_master`], but only once `replica` holds `master`'s whole stream,
    /// with `writer` paused around the kill. A master killed while its replica lags takes
    /// acknowledged writes with it, and the agent (which may hold them) must then full-sync
    /// from the promoted replica: right, but not the failover this checks. On a busy machine a
    /// replica lags by hundreds of writes, so the test makes the lag zero first.
    pub fn kill_master_caught_up(&mut self, master: u16, replica: u16, writer: &Writer) {
        writer.pause();
        let offset = |c: &Cluster, port: u16| -> u64 {
            let v = c.node(port).info_field("replication", "master_repl_offset");
            v.parse()
                .unwrap_or_else(|_| panic!("master_repl_offset of {port}: {v:?}"))
        };
        let want = offset(self, master);
        wait_until(
            Duration::from_secs(60),
            "the replica has the master's stream",
            || offset(self, replica) >= want,
        );
        self.kill(master);
        writer.resume();
        wait_until(Duration::from_secs(60), "the replica promoted", || {
            self.node(replica).info_field("replication", "role") == "master"
        });
        self.wait_ok();
    }

    /// Moves `slots` slots from master `from` to master `to` with `redis-cli --cluster reshard`.
    pub fn reshard(&self, from: u16, to: u16, slots: u32) {
        redis_cli_cluster(&[
            "reshard",
            &format!("127.0.0.1:{from}"),
            "--cluster-from",
            &self.id_of(from),
            "--cluster-to",
            &self.id_of(to),
            "--cluster-slots",
            &slots.to_string(),
            "--cluster-yes",
        ]);
        self.wait_ok();
    }
}

/// One standalone replica per lane of the agent on `admin`, attached to the lane's
/// `replica_port`: (lane name, replica).
pub fn replica_per_lane(admin: u16) -> Vec<(String, Redis)> {
    shards(admin)
        .iter()
        .map(|l| {
            let port = field_u64(l, "replica_port");
            (
                field_str(l, "name"),
                crate::support::start_replica(&format!("127.0.0.1:{port}"), &[]),
            )
        })
        .collect()
}

/// (lane name, master port) for each master in `masters`: the lane that streams from it.
pub fn lane_sources(admin: u16, masters: &[u16]) -> Vec<(String, u16)> {
    masters
        .iter()
        .map(|p| {
            let l = lane_by_master(admin, *p)
                .unwrap_or_else(|| panic!("no lane streams from master {p}"));
            (field_str(&l, "name"), *p)
        })
        .collect()
}

/// The number of slots in a `/status` row's `slots` (`[[first, last], …]`).
pub fn slot_count(row: &serde_json::Value) -> u64 {
    row["slots"]
        .as_array()
        .expect("slots is an array")
        .iter()
        .map(|r| {
            let (a, b) = (r[0].as_u64(), r[1].as_u64());
            let (Some(a), Some(b)) = (a, b) else {
                panic!("bad slot range {r} in {row}")
            };
            b - a + 1
        })
        .sum()
}

/// Per lane, the copy (`(lane, port)` of a replica of that lane) equals the lane's source
/// master (`(lane, master port)`) key by key, waiting up to 90 s for each; the copies hold
/// every key exactly once between them, and every acknowledged write but a few (a SIGKILLed
/// master may have taken writes its replica never got). Returns the keys with their values.
pub fn lanes_equal_their_sources(
    sources: &[(String, u16)],
    copies: &[(String, u16)],
    acked: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut origin = Vec::new();
    let mut copied = Vec::new();
    for (name, master) in sources {
        let (_, copy) = copies
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no copy of lane {name} in {copies:?}"));
        let mut last = (0, 0);
        wait_until(
            Duration::from_secs(90),
            "the lane's copy equals its source master",
            || {
                let (a, b) = (keyspace(*master), keyspace(*copy));
                last = (a.len(), b.len());
                a == b
            },
        );
        let (m, r) = (keyspace(*master), keyspace(*copy));
        assert_eq!(m, r, "lane {name}: {last:?}");
        assert!(!r.is_empty(), "lane {name} carried writes");
        origin.push(m);
        copied.push(r);
    }
    let total: usize = copied.iter().map(|c| c.len()).sum();
    let union = key_set(&copied);
    assert_eq!(total, union.len(), "a key is in two copies");
    assert_eq!(union, key_set(&origin));
    let lost: Vec<&String> = acked.iter().filter(|k| !union.contains(*k)).collect();
    assert!(
        lost.len() <= 50,
        "{} acknowledged keys missing: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    copied.into_iter().flatten().collect()
}

/// A fake peer for bad input only: a TCP server answering every RESP command with what
/// `reply` returns for its arguments. Counts connections and keeps the commands it got.
pub struct FakeNode {
    pub port: u16,
    pub connections: Arc<AtomicU64>,
    pub commands: Arc<Mutex<Vec<Vec<String>>>>,
    stop: Arc<AtomicBool>,
}

impl FakeNode {
    pub fn start(reply: impl Fn(&[String]) -> Vec<u8> + Send + Sync + 'static) -> FakeNode {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a fake node");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicU64::new(0));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(reply);
        let (s, n, cmds) = (stop.clone(), connections.clone(), commands.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                n.fetch_add(1, Ordering::Relaxed);
                let (reply, cmds, s) = (reply.clone(), cmds.clone(), s.clone());
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let _ = conn.set_nonblocking(false);
                    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = bytes::BytesMut::new();
                    let limits = georelay::resp::Limits::default();
                    let mut chunk = [0u8; 4096];
                    while !s.load(Ordering::Relaxed) {
                        match conn.read(&mut chunk) {
                            Ok(0) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) =>
                            {
                                continue
                            }
                            Err(_) => return,
                        }
                        while let Ok(Some(f)) = georelay::resp::parse_frame(&mut buf, &limits) {
                            let args: Vec<String> = match &f {
                                Frame::Array(items) => items.iter().map(frame_text).collect(),
                                other => vec![frame_text(other)],
                            };
                            let out = reply(&args);
                            cmds.lock().unwrap().push(args);
                            if conn.write_all(&out).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        FakeNode {
            port,
            connections,
            commands,
            stop,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
