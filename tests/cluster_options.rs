//! The cluster options, end to end against a real Redis 7.0 cluster (3 masters, 1 replica
//! each): `upstream.read_from = "replica"` (each lane replicates from its shard's replica; the
//! masters serve no agent) and `upstream.lanes = "i/n"` (two site agents, 0/2 and 1/2, split
//! the lanes; between them every shard is carried exactly once; restarted without the part,
//! one agent follows every lane, its own on the ports they had). Per lane, the region copy on
//! the lane's shard port equals the shard's master key by key.

mod cluster_util;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_util::*;
use support::{start_replica, wait_until, Agent, Redis, ServerKind};

/// The lanes' rows once `n` of them stream.
fn streaming(agent: &Agent, n: usize) -> Vec<serde_json::Value> {
    wait_until(Duration::from_secs(60), "the lanes stream", || {
        let s = shards(agent.admin_port);
        s.len() == n && s.iter().all(|l| field_str(l, "state") == "streaming")
    });
    shards(agent.admin_port)
}

/// A region copy per lane, on the lane's shard port.
fn copies(lanes: &[serde_json::Value]) -> Vec<(String, Redis)> {
    lanes
        .iter()
        .map(|l| {
            let port = field_u64(l, "replica_port");
            (
                field_str(l, "name"),
                start_replica(&format!("127.0.0.1:{port}"), &[]),
            )
        })
        .collect()
}

/// The ports of the replicas attached to the node on `port` (`INFO replication` slaveN).
fn attached(cluster: &Cluster, port: u16) -> BTreeSet<u16> {
    let text = cluster
        .node(port)
        .client()
        .cmd_str(&["INFO", "replication"]);
    text.lines()
        .filter(|l| l.starts_with("slave") && l.contains("port="))
        .filter_map(|l| {
            l.split(',')
                .find_map(|kv| kv.strip_prefix("port="))
                .and_then(|p| p.parse().ok())
        })
        .collect()
}

#[test]
fn read_from_replica_leaves_the_masters_alone() {
    let cluster = Cluster::start(ServerKind::Redis70, 3);
    let masters = cluster.masters();
    let replica_of: Vec<(u16, u16)> = masters
        .iter()
        .map(|m| (*m, cluster.replica_of(*m)))
        .collect();
    let forks_before = cluster.sync_full();
    let base = free_port_block(3);
    let seeds = vec![cluster.live().next().expect("a node").addr()];
    let agent = Agent::start(&cluster_agent_config(
        &seeds,
        base,
        3,
        "read_from = \"replica\"",
    ));
    // Each lane follows its shard's replica (once gossip reports it online: until then the
    // lane waits rather than cost the master a fork), and only the replica serves it.
    let replica_ports: BTreeSet<u16> = replica_of.iter().map(|(_, r)| *r).collect();
    wait_until(
        Duration::from_secs(60),
        "every lane follows a replica",
        || {
            let s = shards(agent.admin_port);
            s.len() == 3
                && s.iter().all(|l| {
                    field_str(l, "state") == "streaming"
                        && replica_ports.contains(&port_of(&field_str(l, "upstream")))
                })
        },
    );
    let lanes = streaming(&agent, 3);
    let mut sources = Vec::new();
    for l in &lanes {
        let up = port_of(&field_str(l, "upstream"));
        let &(master, replica) = replica_of
            .iter()
            .find(|(_, r)| *r == up)
            .unwrap_or_else(|| panic!("lane upstream {up} is not a replica: {l}"));
        let lane_port = field_u64(l, "replica_port") as u16;
        wait_until(
            Duration::from_secs(30),
            "the replica serves the lane",
            || attached(&cluster, replica).contains(&lane_port),
        );
        sources.push((field_str(l, "name"), master));
    }
    let agent_ports: BTreeSet<u16> = lanes
        .iter()
        .map(|l| field_u64(l, "replica_port") as u16)
        .collect();
    for m in &masters {
        let on_master = attached(&cluster, *m);
        assert_eq!(
            on_master.len(),
            1,
            "master {m}: only its cluster replica: {on_master:?}"
        );
        assert!(
            on_master.is_disjoint(&agent_ports),
            "master {m} serves an agent lane"
        );
        assert_eq!(
            cluster
                .node(*m)
                .info_field("replication", "connected_slaves"),
            "1"
        );
    }
    let copies = copies(&lanes);
    let writer = Writer::start(cluster.live().map(|n| n.port).collect());
    writer.advance(600);
    let acked = writer.finish();
    let copy_ports: Vec<(String, u16)> = copies.iter().map(|(n, r)| (n.clone(), r.port)).collect();
    lanes_equal_their_sources(&sources, &copy_ports, &acked);
    // No master forked for the agent: the replicas did the full syncs.
    let forks_after = cluster.sync_full();
    for m in &masters {
        assert_eq!(
            forks_after.get(m),
            forks_before.get(m),
            "master {m} served a full sync to the agent"
        );
    }
    for (_, r) in &replica_of {
        assert!(
            forks_after[r] > forks_before[r],
            "replica {r} served the lane's first sync"
        );
    }
}

#[test]
fn two_agents_split_the_lanes_with_upstream_lanes() {
    let cluster = Cluster::start(ServerKind::Redis70, 3);
    let masters = cluster.masters();
    let seeds = vec![cluster.live().next().expect("a node").addr()];
    let mut agents = Vec::new();
    for part in ["0/2", "1/2"] {
        let base = free_port_block(3);
        let agent = Agent::start(&cluster_agent_config(
            &seeds,
            base,
            3,
            &format!("lanes = \"{part}\""),
        ));
        agents.push(agent);
    }
    // Between them, three lanes, each exactly once; each agent takes only its part.
    let mut rows = Vec::new();
    wait_until(Duration::from_secs(60), "every shard has a lane", || {
        rows = agents
            .iter()
            .map(|a| shards(a.admin_port))
            .collect::<Vec<_>>();
        rows.iter().map(|r| r.len()).sum::<usize>() == 3
            && rows
                .iter()
                .flatten()
                .all(|l| field_str(l, "state") == "streaming")
    });
    let mut names = BTreeSet::new();
    let mut slots = 0;
    for (i, lanes) in rows.iter().enumerate() {
        for l in lanes {
            let name = field_str(l, "name");
            assert_eq!(
                georelay::config::lane_hash(&name) % 2,
                i as u64,
                "agent {i}/2 took lane {name}"
            );
            assert!(names.insert(name.clone()), "lane {name} taken twice");
            slots += slot_count(l);
        }
    }
    assert_eq!(names.len(), 3);
    assert_eq!(slots, 16384, "every slot carried once: {rows:?}");
    // Stays that way over a few refreshes (300 ms each).
    std::thread::sleep(Duration::from_secs(2));
    let again: usize = agents.iter().map(|a| shards(a.admin_port).len()).sum();
    assert_eq!(again, 3);
    // Every lane carries its shard: one copy per lane, equal to its master.
    let mut sources = Vec::new();
    let mut all_copies = Vec::new();
    for (agent, lanes) in agents.iter().zip(&rows) {
        for m in &masters {
            if let Some(l) = lane_by_master(agent.admin_port, *m) {
                sources.push((field_str(&l, "name"), *m));
            }
        }
        all_copies.extend(copies(lanes));
    }
    assert_eq!(sources.len(), 3, "a lane per master: {sources:?}");
    let writer = Writer::start(cluster.live().map(|n| n.port).collect());
    writer.advance(600);
    let acked = writer.finish();
    let copy_ports: Vec<(String, u16)> = all_copies
        .iter()
        .map(|(n, r)| (n.clone(), r.port))
        .collect();
    lanes_equal_their_sources(&sources, &copy_ports, &acked);

    // The cluster is handed back to one agent: agent 1 stops, and agent 0 restarts without
    // `upstream.lanes`. It follows every lane now, its own on the ports they had.
    let kept: Vec<(String, u64)> = rows[0]
        .iter()
        .map(|l| (field_str(l, "name"), field_u64(l, "replica_port")))
        .collect();
    agents[1].terminate();
    let a0 = &mut agents[0];
    a0.terminate();
    let cfg = std::fs::read_to_string(&a0.config_path).expect("agent 0's config");
    assert!(cfg.contains("lanes = \"0/2\"\n"), "{cfg}");
    std::fs::write(&a0.config_path, cfg.replace("lanes = \"0/2\"\n", "")).expect("rewrite");
    a0.restart();
    let all = streaming(a0, 3);
    for (name, port) in &kept {
        assert!(
            all.iter()
                .any(|l| field_str(l, "name") == *name && field_u64(l, "replica_port") == *port),
            "lane {name} kept port {port}: {all:?}"
        );
    }
    // (Node ids are random: agent 0 may have had every lane already, and then none moves.)
    let log = a0.log_text();
    assert_eq!(
        log.matches("this agent follows lane").count(),
        3 - kept.len(),
        "one message per lane handed over:\n{log}"
    );
    let sources: Vec<(String, u16)> = masters
        .iter()
        .filter_map(|m| lane_by_master(a0.admin_port, *m).map(|l| (field_str(&l, "name"), *m)))
        .collect();
    assert_eq!(sources.len(), 3, "a lane per master: {sources:?}");
    let copies = copies(&all);
    let writer = Writer::start(cluster.live().map(|n| n.port).collect());
    writer.advance(300);
    let acked2 = writer.finish();
    let copy_ports: Vec<(String, u16)> = copies.iter().map(|(n, r)| (n.clone(), r.port)).collect();
    let mut every: BTreeSet<String> = acked;
    every.extend(acked2);
    lanes_equal_their_sources(&sources, &copy_ports, &every);
}
