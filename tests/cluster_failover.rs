//! A site agent follows a real Redis Cluster (3 masters + 3 replicas) through a manual
//! failover, a SIGKILLed master replaced by its replica and a 1000-slot reshard, with writes
//! through a cluster client all along: every lane's region replica ends equal to its source
//! master key by key, no lane full-syncs twice, and the origin forks only for first syncs.

mod cluster_util;
mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_util::*;
use support::{start_replica_kind, wait_until, Agent, ServerKind};

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

struct Writer {
    stop: Arc<AtomicBool>,
    /// Set by the test: the writer stops between writes and sets `idle`.
    pause: Arc<AtomicBool>,
    idle: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    acked: Arc<Mutex<BTreeSet<String>>>,
    handle: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Writer {
    fn start(seeds: Vec<u16>) -> Writer {
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
                // Paused: no write in flight until the test resumes (bounded by `stop`).
                while p.load(Ordering::Relaxed) && !s.load(Ordering::Relaxed) {
                    id.store(true, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
                id.store(false, Ordering::Relaxed);
                let key = format!("key:{i}");
                let reply = client.cmd(&["SET", &key, &format!("value-{i}")])?;
                if support::frame_text(&reply) != "OK" {
                    return Err(format!("SET {key}: {reply:?}"));
                }
                a.lock().unwrap().insert(key);
                c.fetch_add(1, Ordering::Relaxed);
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

    fn advance(&self, n: u64) {
        let target = self.count.load(Ordering::Relaxed) + n;
        wait_until(Duration::from_secs(90), "the writer makes progress", || {
            self.count.load(Ordering::Relaxed) >= target
        });
    }

    /// Stops the writer between two writes; returns once no write is in flight.
    fn pause(&self) {
        self.pause.store(true, Ordering::Relaxed);
        wait_until(Duration::from_secs(30), "the writer pauses", || {
            self.idle.load(Ordering::Relaxed)
        });
    }

    fn resume(&self) {
        self.pause.store(false, Ordering::Relaxed);
    }

    fn finish(mut self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.handle.take().unwrap().join().expect("writer thread");
        r.expect("writes through the cluster client");
        self.acked.lock().unwrap().clone()
    }
}

fn lane_by_master(admin: u16, port: u16) -> Option<serde_json::Value> {
    shards(admin).into_iter().find(|s| {
        port_of(&field_str(s, "upstream")) == port && field_str(s, "state") == "streaming"
    })
}

fn scenario(kind: ServerKind, reshard: bool) {
    let mut cluster = Cluster::start(kind, 3);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let base = free_port_block(6);
    let seeds = vec![cluster.live().next().unwrap().addr()];
    let agent = Agent::start(&cluster_agent_config(&seeds, base, 6, ""));
    wait_until(Duration::from_secs(60), "3 lanes streaming", || {
        let s = shards(agent.admin_port);
        s.len() == 3 && s.iter().all(|l| field_str(l, "state") == "streaming")
    });
    let lanes = shards(agent.admin_port);
    let slots: u64 = lanes
        .iter()
        .flat_map(|l| l["slots"].as_array().cloned().unwrap_or_default())
        .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap() + 1)
        .sum();
    assert_eq!(slots, 16384, "{lanes:?}");
    // One standalone region replica per lane, on the lane's shard port.
    let mut replicas = Vec::new();
    for l in &lanes {
        let port = field_u64(l, "replica_port") as u16;
        assert!((base..base + 6).contains(&port), "{l}");
        replicas.push((
            field_str(l, "name"),
            start_replica_kind(kind, &format!("127.0.0.1:{port}"), &[]),
        ));
    }
    for (_, r) in &replicas {
        wait_until(Duration::from_secs(60), "region replica linked", || {
            r.info_field("replication", "master_link_status") == "up"
        });
    }
    for m in &masters {
        wait_until(
            Duration::from_secs(30),
            "cluster replica and agent online",
            || {
                cluster
                    .node(*m)
                    .info_field("replication", "connected_slaves")
                    == "2"
            },
        );
    }
    let forks_before = cluster.sync_full();
    let ports: Vec<u16> = cluster.live().map(|n| n.port).collect();
    let writer = Writer::start(ports);
    writer.advance(300);

    // Shard A: a manual failover.
    let m_a = masters[0];
    let r_a = cluster.replica_of(m_a);
    let lane_a = field_str(
        &lane_by_master(agent.admin_port, m_a).expect("lane of A"),
        "name",
    );
    assert_eq!(
        support::frame_text(&cluster.node(r_a).client().cmd(&["CLUSTER", "FAILOVER"])),
        "OK"
    );
    // Redis aborts a manual failover the replica cannot finish within its 5 s
    // (CLUSTER_MF_TIMEOUT), silently; on a busy machine that happens. Ask again, as an
    // operator would, every 10 s while the replica is still a replica.
    let mut asked = std::time::Instant::now();
    wait_until(Duration::from_secs(60), "A's replica promoted", || {
        let promoted = cluster.node(r_a).info_field("replication", "role") == "master";
        if !promoted && asked.elapsed() > Duration::from_secs(10) {
            let _ = cluster.node(r_a).client().cmd(&["CLUSTER", "FAILOVER"]);
            asked = std::time::Instant::now();
        }
        promoted
    });
    wait_until(
        Duration::from_secs(60),
        "lane A follows the new master",
        || lane_by_master(agent.admin_port, r_a).is_some_and(|l| field_str(&l, "name") == lane_a),
    );
    writer.advance(300);

    // Shard B: the master is SIGKILLed; its replica takes over.
    let m_b = masters[1];
    let r_b = cluster.replica_of(m_b);
    let lane_b = field_str(
        &lane_by_master(agent.admin_port, m_b).expect("lane of B"),
        "name",
    );
    // The SIGKILL must not take acknowledged writes the replica never got: with those the
    // promoted replica is behind what the agent holds, and a full sync is the right answer
    // (the agent's extra bytes are history the new master does not have). On a busy machine
    // a replica lags by thousands of writes, so pause the writer until B's replica has all
    // of B's stream, then kill. (Writes keep going to A and C while B is down afterwards.)
    writer.pause();
    let offset = |port: u16| -> u64 {
        let v = cluster
            .node(port)
            .info_field("replication", "master_repl_offset");
        v.parse()
            .unwrap_or_else(|_| panic!("master_repl_offset of {port} is not a number: {v:?}"))
    };
    let want = offset(m_b);
    wait_until(
        Duration::from_secs(60),
        "B's replica has B's whole stream",
        || offset(r_b) >= want,
    );
    cluster.kill(m_b);
    writer.resume();
    wait_until(Duration::from_secs(60), "B's replica promoted", || {
        cluster.node(r_b).info_field("replication", "role") == "master"
    });
    cluster.wait_ok();
    wait_until(
        Duration::from_secs(60),
        "lane B follows the new master",
        || lane_by_master(agent.admin_port, r_b).is_some_and(|l| field_str(&l, "name") == lane_b),
    );
    writer.advance(300);

    // Shard C gives 1000 slots to A's new master.
    let m_c = masters[2];
    if reshard {
        let out = Command::new("redis-cli")
            .args([
                "--cluster",
                "reshard",
                &format!("127.0.0.1:{m_c}"),
                "--cluster-from",
                &cluster.id_of(m_c),
                "--cluster-to",
                &cluster.id_of(r_a),
                "--cluster-slots",
                "1000",
                "--cluster-yes",
            ])
            .output()
            .expect("redis-cli reshard");
        assert!(
            out.status.success(),
            "reshard: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        cluster.wait_ok();
        writer.advance(300);
    }
    let acked = writer.finish();

    // Per lane: the region replica equals its source master, key by key.
    let sources = [
        (lane_a.clone(), r_a),
        (lane_b.clone(), r_b),
        (
            field_str(
                &lane_by_master(agent.admin_port, m_c).expect("lane of C"),
                "name",
            ),
            m_c,
        ),
    ];
    let mut copies = Vec::new();
    let mut origin = Vec::new();
    for (name, master) in &sources {
        let replica = &replicas
            .iter()
            .find(|(n, _)| n == name)
            .expect("replica of lane")
            .1;
        let mut last = (0, 0);
        wait_until(
            Duration::from_secs(90),
            "region replica equals its source master",
            || {
                let (a, b) = (keyspace(*master), keyspace(replica.port));
                last = (a.len(), b.len());
                a == b
            },
        );
        let (m, r) = (keyspace(*master), keyspace(replica.port));
        assert_eq!(m, r, "lane {name}: {last:?}");
        assert!(!r.is_empty(), "lane {name} carried writes");
        origin.push(m);
        copies.push(r);
    }
    // The union of the region replicas holds every key exactly once.
    let total: usize = copies.iter().map(|c| c.len()).sum();
    let union = key_set(&copies);
    assert_eq!(total, union.len(), "a key is in two region replicas");
    assert_eq!(union, key_set(&origin));
    let lost: Vec<&String> = acked.iter().filter(|k| !union.contains(*k)).collect();
    // The SIGKILL happened with B's replica caught up: no acknowledged write is lost.
    assert!(
        lost.is_empty(),
        "{} acknowledged keys missing: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    if reshard {
        let a = shards(agent.admin_port)
            .into_iter()
            .find(|l| field_str(l, "name") == lane_a)
            .unwrap();
        let n: u64 = a["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap() + 1)
            .sum();
        assert_eq!(n, 5461 + 1000, "lane A's slots after the reshard: {a}");
    }
    // No lane full-synced after its first sync; the failed-over lanes resumed partially.
    for (name, _) in &sources {
        let full = agent.metric("georelay_upstream_full_syncs_total", &[("shard", name)]);
        assert!(full <= 1.0, "lane {name}: {full} full syncs");
    }
    for name in [&lane_a, &lane_b] {
        let partial = agent.metric("georelay_upstream_partial_syncs_total", &[("shard", name)]);
        assert!(partial >= 1.0, "lane {name} resumed with PSYNC: {partial}");
    }
    // The origin forked only for the first syncs (counted before the faults).
    let forks_after = cluster.sync_full();
    for (port, n) in forks_after {
        assert_eq!(
            Some(&n),
            forks_before.get(&port),
            "node {port} served a full sync after setup"
        );
    }
}

#[test]
fn redis70_cluster_failover_kill_and_reshard() {
    scenario(ServerKind::Redis70, true);
}

#[test]
fn valkey91_cluster_failover_and_kill() {
    scenario(ServerKind::Valkey91, false);
}

#[test]
fn redis62_cluster_nodes_path() {
    scenario(ServerKind::Redis62, false);
}
