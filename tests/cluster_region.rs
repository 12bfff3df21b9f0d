//! The region side of a cluster, against real servers: a real 3-master/3-replica Redis 7.0
//! cluster, a site (one lane per shard: a real log and upstream replica link per master, served
//! by the real agent link with the slot map on the control stream), wan-sim, a cluster-mode
//! region agent process and one standalone region replica per shard port. Per shard the region
//! replica equals its source master key by key; a 30 s WAN outage with writes on every shard
//! ends in a partial resync on every lane; redis-py's `RedisCluster` pointed at the region
//! agent reads every key.
//!
//! The site here is assembled in-process from the library's lane pieces (log, Redis upstream,
//! agent link server, LaneMap, slot map) from the cluster's own `CLUSTER SHARDS`, so the
//! region side is tested on its own; the site agent's discovery is tested in its own files.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use support::*;

/// A real Redis Cluster of `masters` masters with one replica each, on loopback.
struct Cluster {
    nodes: Vec<Redis>,
}

impl Cluster {
    fn start(masters: usize) -> Cluster {
        let nodes: Vec<Redis> = (0..masters * 2)
            .map(|_| Redis::start(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"]))
            .collect();
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(n.addr());
        }
        cmd.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = cmd.output().expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Cluster { nodes };
        wait_until(
            Duration::from_secs(30),
            "cluster_state:ok on every node",
            || {
                c.nodes.iter().all(|n| {
                    let mut cl = n.client();
                    frame_text(&cl.cmd(&["CLUSTER", "INFO"])).contains("cluster_state:ok")
                })
            },
        );
        c
    }

    /// The current masters (port → slot count), read from CLUSTER NODES.
    fn masters(&self) -> Vec<&Redis> {
        self.nodes
            .iter()
            .filter(|n| n.info_field("replication", "role") == "master")
            .collect()
    }
}

/// Every key of `r` with its string value (all test keys are strings).
fn keyspace(r: &Redis) -> BTreeMap<String, String> {
    let mut c = r.client();
    let mut out = BTreeMap::new();
    let mut cursor = "0".to_string();
    loop {
        let reply = c.cmd(&["SCAN", &cursor, "COUNT", "1000"]);
        let georelay::resp::Frame::Array(parts) = reply else {
            panic!("SCAN reply {reply:?}")
        };
        cursor = frame_text(&parts[0]);
        let georelay::resp::Frame::Array(keys) = &parts[1] else {
            panic!("SCAN keys")
        };
        for k in keys {
            let k = frame_text(k);
            let v = frame_text(&c.cmd(&["GET", &k]));
            out.insert(k, v);
        }
        if cursor == "0" {
            return out;
        }
    }
}

/// Writes `n` keys `prefix:i` through redis-py's RedisCluster (slots spread over every shard).
fn write_keys(seed: &Redis, prefix: &str, n: usize) {
    let script = format!(
        "import redis\nfrom redis.cluster import RedisCluster\n\
         rc = RedisCluster(host='127.0.0.1', port={port})\n\
         p = rc.pipeline()\n\
         for i in range({n}):\n    p.set(f'{prefix}:{{i}}', f'v-{prefix}-{{i}}')\n\
         p.execute()\n",
        port = seed.port
    );
    python(&script);
}

fn python(script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python3 (redis-py 8.1.0 is needed: pip install redis==8.1.0)");
    assert!(
        out.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lane_metric(agent: &Agent, name: &str, port_lane: &str) -> f64 {
    agent.metric(name, &[("shard", port_lane)])
}

#[test]
fn region_lanes_follow_a_real_cluster_through_a_wan_outage_and_serve_redis_py() {
    let cluster = Cluster::start(3);
    let pki = Pki::new(&["site", "region"]);
    let site_agent_port = free_udp_port();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let site_dir = tempfile::tempdir().expect("tempdir");
    let (stop_site, site_stop_rx) = tokio::sync::watch::channel(false);
    start_site(
        &rt,
        &cluster,
        &pki,
        site_agent_port,
        site_dir.path(),
        site_stop_rx,
    );
    let wan = WanSimProc::start(site_agent_port, &[]);
    let region_ports = free_port_run(3);
    let region = Agent::start(&format!(
        "name = \"region\"\ndata_dir = \"{{data_dir}}\"\n[upstream]\nagent = \"{}\"\n\
         [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\n\
         shard_ports = \"{}-{}\"\n{}",
        wan.addr(),
        region_ports,
        region_ports + 2,
        pki.tls_section("region", Some("site"))
    ));
    write_keys(&cluster.nodes[0], "a", 3000);

    // The region learns three lanes and serves each on its own port.
    let ports: Vec<u16> = (region_ports..region_ports + 3).collect();
    wait_until(
        Duration::from_secs(60),
        "region serves 3 lane ports",
        || ports.iter().all(|p| Client::try_connect(*p).is_some()),
    );
    let replicas: Vec<Redis> = ports
        .iter()
        .map(|p| start_replica(&format!("127.0.0.1:{p}"), &[]))
        .collect();

    // Per shard: the region replica equals the master owning its slots, key by key.
    let check_equal = |what: &str| {
        wait_until(Duration::from_secs(90), what, || {
            let masters = cluster.masters();
            let sources: Vec<BTreeMap<String, String>> =
                masters.iter().map(|m| keyspace(m)).collect();
            let copies: Vec<BTreeMap<String, String>> = replicas.iter().map(keyspace).collect();
            copies
                .iter()
                .all(|c| !c.is_empty() && sources.iter().any(|s| s == c))
                && copies.iter().map(|c| c.len()).sum::<usize>()
                    == sources.iter().map(|s| s.len()).sum::<usize>()
        });
    };
    check_equal("each region replica equals one source master, and together they hold every key");

    let lanes: Vec<String> = lane_names(&region);
    assert_eq!(lanes.len(), 3, "three lanes: {lanes:?}");
    for l in &lanes {
        assert_eq!(
            lane_metric(&region, "georelay_upstream_full_syncs_total", l),
            1.0,
            "lane {l}: only the first sync is full"
        );
    }

    // A 30 s WAN outage with writes on every shard ends in a partial resync on every lane.
    let partial_before: Vec<f64> = lanes
        .iter()
        .map(|l| lane_metric(&region, "georelay_upstream_partial_syncs_total", l))
        .collect();
    wan.cut();
    write_keys(&cluster.nodes[0], "b", 3000);
    std::thread::sleep(Duration::from_secs(30));
    wan.restore();
    check_equal("after the outage each region replica equals its source master again");
    for (l, before) in lanes.iter().zip(partial_before) {
        assert_eq!(
            lane_metric(&region, "georelay_upstream_full_syncs_total", l),
            1.0,
            "lane {l}: no full sync after the outage"
        );
        wait_until(
            Duration::from_secs(30),
            "a partial resync on every lane",
            || lane_metric(&region, "georelay_upstream_partial_syncs_total", l) > before,
        );
    }

    // redis-py's RedisCluster pointed at the region agent reads every key from the replicas.
    let out = python(&format!(
        "from redis.cluster import RedisCluster\n\
         rc = RedisCluster(host='127.0.0.1', port={}, protocol=2)\n\
         bad = [k for p in ('a', 'b') for i in range(3000) for k in [f'{{p}}:{{i}}'] if rc.get(k) != f'v-{{p}}-{{i}}'.encode()]\n\
         print(len(rc.get_nodes()), len(bad))\n",
        region.redis_port
    ));
    assert_eq!(out.trim(), "3 0", "redis-py: nodes and wrong values");
    let _ = stop_site.send(true);
    rt.shutdown_timeout(Duration::from_secs(5));
}

/// The site: one lane per shard of `cluster` (named after the shard id), each a real log fed
/// by a real replica link to its master, all served by the agent link on `quic_port` with the
/// slot map built from `CLUSTER SHARDS`.
fn start_site(
    rt: &tokio::runtime::Runtime,
    cluster: &Cluster,
    pki: &Pki,
    quic_port: u16,
    dir: &std::path::Path,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    use georelay::cluster::{LaneSlots, SlotMap};
    use georelay::serve::peers::{Lane, LaneMap, Peers};
    use std::sync::Arc;
    let mut c = cluster.nodes[0].client();
    let mut topo = None;
    wait_until(
        Duration::from_secs(30),
        "CLUSTER SHARDS names 3 shards with slots",
        || {
            let t = georelay::cluster::topology::parse_shards(&c.cmd(&["CLUSTER", "SHARDS"]))
                .expect("parse CLUSTER SHARDS");
            let ok = t
                .shards
                .iter()
                .filter(|s| !s.slots.is_empty() && s.master().is_some())
                .count()
                == 3;
            topo = Some(t);
            ok
        },
    );
    let mut topo = topo.expect("a topology");
    topo.shards.retain(|s| !s.slots.is_empty());
    let lanes = LaneMap::default();
    let mut map = Vec::new();
    let link = georelay::config::Config::parse(
        "data_dir = \"d\"\n[upstream]\nredis = \"127.0.0.1:1\"\n",
        std::path::Path::new("/t.toml"),
    )
    .expect("default config")
    .link;
    let _guard = rt.enter();
    for (i, shard) in topo.shards.iter().enumerate() {
        let master = shard.master().expect("a master per shard");
        let name = shard.id.clone().unwrap_or_else(|| master.id.clone());
        let log = georelay::log::Log::open(georelay::log::LogConfig {
            dir: dir.join("lanes").join(&name),
            segment_bytes: 64 << 20,
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(86_400),
            fsync: georelay::log::FsyncPolicy::EverySec,
            snapshot_after_bytes: 512 << 20,
            keep_page_cache: false,
        })
        .expect("open lane log");
        let metrics = georelay::metrics::Metrics::new("site").expect("metrics");
        let up = georelay::upstream::redis::UpstreamCtx {
            cfg: georelay::config::UpstreamConfig {
                redis: master.addr(false),
                username: None,
                password: None,
                announce_version: None,
            },
            listening_port: 1,
            log: log.clone(),
            metrics,
            health: georelay::metrics::Health::new(),
            tls: None,
            remote_ack: None,
        };
        rt.spawn(georelay::upstream::redis::run(up.clone(), shutdown.clone()));
        rt.spawn(georelay::upstream::refresh::run(up, shutdown.clone()));
        lanes.insert(
            &name,
            Lane {
                log,
                peers: Arc::new(Peers::default()),
            },
        );
        map.push(LaneSlots {
            name,
            alias: format!("shard-{i}"),
            ranges: shard.slots.clone(),
        });
    }
    lanes
        .slot_map()
        .send_replace(Some(SlotMap::new(1, map).expect("valid slot map")));
    let tls = georelay::link::TlsFiles::in_dir(pki.dir.path(), "site");
    let endpoint = georelay::link::quic::server_endpoint(
        std::net::SocketAddr::from(([127, 0, 0, 1], quic_port)),
        &tls,
        &link.transport,
    )
    .expect("site QUIC endpoint");
    let ctx = georelay::serve::agent::AgentServeCtx {
        log: georelay::log::Log::open(georelay::log::LogConfig {
            dir: dir.join("standalone"),
            segment_bytes: 1 << 20,
            max_bytes: 4 << 20,
            max_age: Duration::from_secs(86_400),
            fsync: georelay::log::FsyncPolicy::EverySec,
            snapshot_after_bytes: 2 << 20,
            keep_page_cache: false,
        })
        .expect("open standalone log"),
        metrics: georelay::metrics::Metrics::new("site").expect("metrics"),
        peers: Arc::new(Peers::default()),
        lanes,
        max_agents: 4,
        link,
        shutdown,
    };
    rt.spawn(georelay::serve::agent::run(endpoint, ctx));
}

/// The lane names the region agent reports (the `shard` label of its lane metrics).
fn lane_names(agent: &Agent) -> Vec<String> {
    let text = agent.metrics();
    let mut names: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("georelay_upstream_full_syncs_total{"))
        .filter_map(|l| l.split("shard=\"").nth(1))
        .filter_map(|s| s.split('"').next())
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The first of `n` consecutive free TCP ports.
fn free_port_run(n: u16) -> u16 {
    for _ in 0..100 {
        let base = free_port();
        if base.checked_add(n).is_none() {
            continue;
        }
        if (base..base + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no run of {n} free ports");
}
