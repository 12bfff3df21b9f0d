//! The region side of a cluster, end to end against real servers: a real 3-master/3-replica
//! Redis 7.0 cluster, a cluster-mode site agent, wan-sim, a cluster-mode region agent and one
//! standalone region replica per region shard port. With writes through a cluster client:
//! a 30 s WAN outage ends in a partial resync on every lane; a manual failover, a SIGKILLed
//! master and a 1000-slot reshard cost no full sync; per shard the region replica equals its
//! source master key by key; the region's cluster endpoint follows the slot map, and redis-py's
//! `RedisCluster` and `redis-cli -c` pointed at the region agent read every key.
//!
//! One cluster for the whole binary: the steps run in order in one test.

mod cluster_util;
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use cluster_util::*;
use support::{
    frame_text, free_udp_port, start_replica, wait_until, Agent, Client, Pki, ServerKind,
    WanSimProc,
};

fn python(script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python3 (redis-py 8.1.0 is needed: scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "python failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The region lanes' rows, once there are `n` and all stream.
fn streaming_lanes(admin: u16, n: usize) -> Vec<serde_json::Value> {
    wait_until(Duration::from_secs(90), "the lanes stream", || {
        let s = shards(admin);
        s.len() == n && s.iter().all(|l| field_str(l, "state") == "streaming")
    });
    shards(admin)
}

fn lane_metric(agent: &Agent, name: &str, lane: &str) -> f64 {
    agent.metric(name, &[("shard", lane)])
}

/// redis-py's `RedisCluster` on the region agent with `protocol` (None: its default) reads
/// every key of `want`; returns "<nodes> <wrong values>".
fn redis_py_reads(port: u16, protocol: Option<u8>, want: &BTreeMap<String, String>) -> String {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), serde_json::to_vec(want).expect("keys as JSON"))
        .expect("write keys");
    let proto = protocol.map_or(String::new(), |p| format!(", protocol={p}"));
    python(&format!(
        "import json\nfrom redis.cluster import RedisCluster\n\
         want = json.load(open('{}'))\n\
         rc = RedisCluster(host='127.0.0.1', port={port}{proto}, decode_responses=True)\n\
         keys = list(want)\n\
         got = rc.mget_nonatomic(keys)\n\
         bad = [k for k, v in zip(keys, got) if v != want[k]]\n\
         print(len(rc.get_nodes()), len(bad), bad[:3])\n",
        file.path().display()
    ))
}

#[test]
fn region_follows_a_real_cluster_through_outage_failover_kill_and_reshard() {
    let mut cluster = Cluster::start(ServerKind::Redis70, 3);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let pki = Pki::new(&["site", "region"]);
    let site_quic = free_udp_port();
    let site_ports = free_port_block(3);
    let seeds = vec![cluster.live().next().expect("a node").addr()];
    let site = Agent::start(&format!(
        "{}agent = \"127.0.0.1:{site_quic}\"\n{}",
        cluster_agent_config(&seeds, site_ports, 3, ""),
        pki.tls_section("site", None)
    ));
    let site_lanes = streaming_lanes(site.admin_port, 3);
    let wan = WanSimProc::start(site_quic, &[]);
    let region_ports = free_port_block(3);
    let region = Agent::start(&format!(
        "name = \"region\"\ndata_dir = \"{{data_dir}}\"\n[upstream]\nagent = \"{}\"\n\
         [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\n\
         shard_ports = \"{}-{}\"\n{}",
        wan.addr(),
        region_ports,
        region_ports + 2,
        pki.tls_section("region", Some("site"))
    ));

    // The region learns the site's three lanes, with the same names and slots, and serves
    // each on its own port to a standalone replica.
    let lanes = streaming_lanes(region.admin_port, 3);
    // The region's /readyz follows its lanes: ready once every lane streams.
    wait_until(Duration::from_secs(30), "the region is ready", || {
        support::http_get(region.admin_port, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    for l in &lanes {
        let site_row = site_lanes
            .iter()
            .find(|s| field_str(s, "name") == field_str(l, "name"))
            .unwrap_or_else(|| panic!("region lane {l} is not a site lane: {site_lanes:?}"));
        assert_eq!(l["slots"], site_row["slots"], "{l}");
        let port = field_u64(l, "replica_port") as u16;
        assert!((region_ports..region_ports + 3).contains(&port), "{l}");
    }
    let replicas: Vec<(String, support::Redis)> = lanes
        .iter()
        .map(|l| {
            let port = field_u64(l, "replica_port");
            (
                field_str(l, "name"),
                start_replica(&format!("127.0.0.1:{port}"), &[]),
            )
        })
        .collect();
    for (_, r) in &replicas {
        wait_until(Duration::from_secs(60), "region replica linked", || {
            r.info_field("replication", "master_link_status") == "up"
        });
    }
    let forks_before = cluster.sync_full();
    let names: Vec<String> = lanes.iter().map(|l| field_str(l, "name")).collect();
    let ports: Vec<u16> = cluster.live().map(|n| n.port).collect();
    let writer = Writer::start(ports);
    writer.advance(300);

    // A 30 s WAN outage with writes on every shard ends in a partial resync on every lane.
    let partial_before: Vec<f64> = names
        .iter()
        .map(|l| lane_metric(&region, "georelay_upstream_partial_syncs_total", l))
        .collect();
    wan.cut();
    let cut_at = std::time::Instant::now();
    writer.advance(1000);
    // The outage itself lasts 30 s (the scenario, not a wait for something).
    std::thread::sleep(Duration::from_secs(30).saturating_sub(cut_at.elapsed()));
    // Lanes cut off from the site: the region is not ready.
    wait_until(
        Duration::from_secs(30),
        "the cut-off region is not ready",
        || support::http_get(region.admin_port, "/readyz").is_some_and(|(c, _)| c == 503),
    );
    wan.restore();
    wait_until(Duration::from_secs(60), "the region is ready again", || {
        support::http_get(region.admin_port, "/readyz").is_some_and(|(c, _)| c == 200)
    });
    for (l, before) in names.iter().zip(&partial_before) {
        wait_until(
            Duration::from_secs(60),
            "a partial resync on every lane after the outage",
            || lane_metric(&region, "georelay_upstream_partial_syncs_total", l) > *before,
        );
    }
    writer.advance(300);

    // Shard A fails over by hand, shard B's master is SIGKILLed, C gives A 1000 slots.
    let (m_a, m_b, m_c) = (masters[0], masters[1], masters[2]);
    let lane_of = |port: u16| {
        field_str(
            &lane_by_master(site.admin_port, port).expect("the master's lane"),
            "name",
        )
    };
    let (lane_a, lane_b, lane_c) = (lane_of(m_a), lane_of(m_b), lane_of(m_c));
    let r_a = cluster.replica_of(m_a);
    cluster.manual_failover(r_a);
    wait_until(Duration::from_secs(60), "lane A follows", || {
        lane_by_master(site.admin_port, r_a).is_some_and(|l| field_str(&l, "name") == lane_a)
    });
    writer.advance(300);
    let r_b = cluster.replica_of(m_b);
    cluster.kill_master_caught_up(m_b, r_b, &writer);
    wait_until(Duration::from_secs(60), "lane B follows", || {
        lane_by_master(site.admin_port, r_b).is_some_and(|l| field_str(&l, "name") == lane_b)
    });
    writer.advance(300);
    cluster.reshard(m_c, r_a, 1000);
    writer.advance(300);
    let acked = writer.finish();

    // Per shard, the region replica equals its source master key by key.
    let sources = [(lane_a.clone(), r_a), (lane_b, r_b), (lane_c, m_c)];
    let copies: Vec<(String, u16)> = replicas.iter().map(|(n, r)| (n.clone(), r.port)).collect();
    let keys = lanes_equal_their_sources(&sources, &copies, &acked);

    // The region follows the slot map: lane A has its 1000 new slots there too.
    wait_until(
        Duration::from_secs(30),
        "the region has the new slot map",
        || {
            shards(region.admin_port)
                .iter()
                .any(|l| field_str(l, "name") == lane_a && slot_count(l) == 5461 + 1000)
        },
    );

    // Region clients read every key from the region's replicas.
    let mut ep = Client::connect(region.redis_port);
    let slots = frame_text(&ep.cmd(&["CLUSTER", "INFO"]));
    assert!(slots.contains("cluster_state:ok"), "{slots}");
    // The endpoint reports the origin's release (from the lanes' snapshots), not a constant.
    let origin_info = frame_text(
        &Client::connect(port_of(&cluster.live().next().expect("a live node").addr()))
            .cmd(&["INFO", "server"]),
    );
    let origin_version = origin_info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .expect("the origin's INFO has redis_version")
        .trim()
        .to_string();
    let ep_info = frame_text(&ep.cmd(&["INFO"]));
    assert!(
        ep_info.contains(&format!("redis_version:{origin_version}\r\n")),
        "origin {origin_version}, endpoint INFO: {ep_info}"
    );
    for proto in [None, Some(2)] {
        let out = redis_py_reads(region.redis_port, proto, &keys);
        assert_eq!(
            out.split_whitespace().take(2).collect::<Vec<_>>(),
            ["3", "0"],
            "redis-py (protocol {proto:?}): nodes and wrong values: {out}"
        );
    }
    for (k, v) in keys.iter().step_by(keys.len() / 5 + 1) {
        let out = Command::new("redis-cli")
            .args(["-c", "-3", "-p", &region.redis_port.to_string(), "GET", k])
            .output()
            .expect("redis-cli");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            v,
            "redis-cli -c -3 GET {k}"
        );
    }

    // No lane full-synced after its first sync, on either side; the origin forked only for
    // the first syncs.
    for l in &names {
        assert_eq!(
            lane_metric(&region, "georelay_upstream_full_syncs_total", l),
            1.0,
            "region lane {l}"
        );
        let full = lane_metric(&site, "georelay_upstream_full_syncs_total", l);
        assert!(full <= 1.0, "site lane {l}: {full} full syncs");
    }
    for (port, n) in cluster.sync_full() {
        assert_eq!(
            Some(&n),
            forks_before.get(&port),
            "node {port} served a full sync after setup"
        );
    }
}
