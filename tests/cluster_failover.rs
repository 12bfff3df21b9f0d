//! A site agent follows a real Redis Cluster (3 masters + 3 replicas) through a manual
//! failover, a SIGKILLed master replaced by its replica and a 1000-slot reshard, with writes
//! through a cluster client all along: every lane's region replica ends equal to its source
//! master key by key, no lane full-syncs twice, and the origin forks only for first syncs.

mod cluster_util;
mod support;

use std::time::Duration;

use cluster_util::*;
use support::{start_replica_kind, wait_until, Agent, ServerKind};

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
    let slots: u64 = lanes.iter().map(slot_count).sum();
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
    cluster.manual_failover(r_a);
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
    cluster.kill_master_caught_up(m_b, r_b, &writer);
    wait_until(
        Duration::from_secs(60),
        "lane B follows the new master",
        || lane_by_master(agent.admin_port, r_b).is_some_and(|l| field_str(&l, "name") == lane_b),
    );
    writer.advance(300);

    // Shard C gives 1000 slots to A's new master.
    let m_c = masters[2];
    if reshard {
        cluster.reshard(m_c, r_a, 1000);
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
    let copies: Vec<(String, u16)> = replicas.iter().map(|(n, r)| (n.clone(), r.port)).collect();
    lanes_equal_their_sources(&sources, &copies, &acked);
    if reshard {
        let a = shards(agent.admin_port)
            .into_iter()
            .find(|l| field_str(l, "name") == lane_a)
            .unwrap();
        let n = slot_count(&a);
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
