//! A seed that is not (or no longer) in cluster mode once the lanes exist, end to end against
//! real servers: the agent's only seed is an empty cluster node, replaced on its port by a
//! standalone server while the agent runs (discovery carries on through the nodes it already
//! knows; the lanes keep streaming); then the agent restarts with only that standalone seed
//! (no known node): it does not exit, the lanes keep what they have (their logs, their region
//! copies), `/status` `cluster` says `not_cluster` with one readable message naming
//! `upstream.redis`, logged once; and once the seed is a cluster node again every lane resumes
//! with PSYNC, no full sync.

mod cluster_util;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_util::*;
use support::{frame_text, wait_until, Agent, Redis, ServerKind};

fn heads(admin: u16) -> BTreeMap<String, u64> {
    shards(admin)
        .iter()
        .map(|l| (field_str(l, "name"), field_u64(l, "head_offset")))
        .collect()
}

/// (full, partial) syncs of `lane` since the agent's last start.
fn syncs(agent: &Agent, lane: &str) -> (f64, f64) {
    (
        agent.metric("georelay_upstream_full_syncs_total", &[("shard", lane)]),
        agent.metric("georelay_upstream_partial_syncs_total", &[("shard", lane)]),
    )
}

#[test]
fn a_seed_that_leaves_cluster_mode_leaves_the_lanes_as_they_are() {
    // Three masters and, on the block's 4th port, an empty master: the agent's only seed.
    let base = cluster_port_block(4);
    let ports: Vec<u16> = (base..base + 3).collect();
    let cluster = Cluster::start_with(ServerKind::Redis70, 3, 0, Some(&ports), &[]);
    let seed_port = base + 3;
    let mut seed = Redis::start_kind_on(ServerKind::Redis70, seed_port, &NODE_ARGS);
    redis_cli_cluster(&["add-node", &seed.addr(), &format!("127.0.0.1:{base}")]);
    cluster.wait_ok();
    let shard_ports = free_port_block(3);
    let mut agent = Agent::start(&cluster_agent_config(&[seed.addr()], shard_ports, 3, ""));
    let streaming = |agent: &Agent| {
        let s = shards(agent.admin_port);
        s.len() == 3 && s.iter().all(|l| field_str(l, "state") == "streaming")
    };
    wait_until(Duration::from_secs(60), "3 lanes streaming", || {
        streaming(&agent)
    });
    let copies = replica_per_lane(agent.admin_port);
    let sources = lane_sources(agent.admin_port, &ports);
    let copy_ports: Vec<(String, u16)> = copies.iter().map(|(n, r)| (n.clone(), r.port)).collect();
    let writer = Writer::start(ports.clone());
    writer.advance(200);

    // The seed stops being a cluster node while the agent runs: the same port now answers as
    // a standalone server. Discovery goes on through the masters it knows; nothing stops.
    seed.kill();
    let standalone = Redis::start_kind_on(ServerKind::Redis70, seed_port, &[]);
    let info = frame_text(&standalone.client().cmd(&["INFO", "cluster"]));
    assert!(info.contains("cluster_enabled:0"), "{info}");
    writer.advance(200);
    wait_until(Duration::from_secs(30), "the lanes still stream", || {
        streaming(&agent)
    });
    writer.pause();
    let acked = writer.finish();
    lanes_equal_their_sources(&sources, &copy_ports, &acked);

    // A restart with only that seed (no known node): not a first start, so the agent runs;
    // the lanes keep what they have and the status says what to fix, once in the log.
    let before = heads(agent.admin_port);
    agent.restart();
    let mut last = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(60),
        "the cluster row says not_cluster",
        || {
            last = cluster_row(agent.admin_port);
            last["state"] == "not_cluster"
        },
    );
    let problems = problems(&last);
    assert_eq!(problems.len(), 1, "one message: {problems:?}");
    let msg = &problems[0];
    assert!(
        msg.contains(&standalone.addr())
            && msg.contains("is not in cluster mode")
            && msg.contains("upstream.redis"),
        "{msg}"
    );
    wait_until(Duration::from_secs(10), "the log says it", || {
        agent.log_text().contains(msg.as_str())
    });
    let after = heads(agent.admin_port);
    for (name, head) in &before {
        let now = after
            .get(name)
            .unwrap_or_else(|| panic!("lane {name} is gone from /status: {after:?}"));
        assert!(now >= head, "lane {name} keeps its log: {now} < {head}");
    }
    let copied: Vec<BTreeMap<String, String>> =
        copy_ports.iter().map(|(_, p)| keyspace(*p)).collect();
    assert!(
        copied.iter().all(|c| !c.is_empty()),
        "the region copies keep their keys"
    );
    let log = agent.log_text();
    let starts = log.matches("is not in cluster mode").count();
    assert_eq!(starts, 1, "logged once while it lasts:\n{log}");
    assert!(!log.contains("panicked"), "{log}");

    // The seed is a cluster node again (the operator fixed the config to a real node): every
    // lane resumes with PSYNC, no full sync.
    std::fs::write(
        &agent.config_path,
        std::fs::read_to_string(&agent.config_path)
            .expect("read config")
            .replace(&standalone.addr(), &format!("127.0.0.1:{base}")),
    )
    .expect("write config");
    agent.restart();
    wait_until(Duration::from_secs(60), "3 lanes streaming again", || {
        streaming(&agent)
    });
    wait_until(Duration::from_secs(30), "the cluster row says ok", || {
        cluster_row(agent.admin_port)["state"] == "ok"
    });
    let writer = Writer::start(ports.clone());
    writer.advance(200);
    let more = writer.finish();
    let all: std::collections::BTreeSet<String> = acked.union(&more).cloned().collect();
    lanes_equal_their_sources(&sources, &copy_ports, &all);
    for (name, _) in &sources {
        let (full, partial) = syncs(&agent, name);
        assert_eq!(full, 0.0, "lane {name}: no full sync after the restarts");
        assert!(
            partial >= 1.0,
            "lane {name}: resumed with PSYNC ({partial})"
        );
    }
}
