//! Bad input to a cluster-mode site agent, end to end against real servers (a fake peer only
//! to feed bad replies): unreachable seeds (it keeps retrying, not ready, and streams once the
//! cluster is up), `cluster_state:fail` and a master gone with no replacement (lanes keep what
//! they have and wait, then resume with PSYNC), slots no shard covers (warn, carry on), a seed
//! not in cluster mode (the first start stops with one line naming `upstream.redis`), refused
//! credentials, and MOVED/ASK/garbage on the discovery connection (never a crash, never
//! followed). Each case has its one readable message in `/status` `cluster` and the log.

mod cluster_util;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use cluster_util::*;
use support::{frame_text, http_get, wait_until, Agent, Redis, ServerKind};

/// Waits until `/status` `cluster` is in `state` with a problem containing `needle`.
fn wait_problem(agent: &Agent, state: &str, needle: &str) -> String {
    let mut last = serde_json::Value::Null;
    wait_until(
        Duration::from_secs(60),
        "the cluster row names the problem",
        || {
            last = cluster_row(agent.admin_port);
            last["state"] == state && problems(&last).iter().any(|p| p.contains(needle))
        },
    );
    let p = problems(&last)
        .into_iter()
        .find(|p| p.contains(needle))
        .unwrap_or_else(|| panic!("no problem containing {needle:?} in {last}"));
    wait_until(Duration::from_secs(10), "the log says it too", || {
        agent.log_text().contains(&p)
    });
    p
}

fn readyz(admin: u16) -> u16 {
    http_get(admin, "/readyz").map_or(0, |(code, _)| code)
}

fn site_config(seeds: &[String], base: u16, extra: &str) -> String {
    cluster_agent_config(seeds, base, 3, extra)
}

/// The row of lane `name`.
fn lane(admin: u16, name: &str) -> serde_json::Value {
    shards(admin)
        .into_iter()
        .find(|l| field_str(l, "name") == name)
        .unwrap_or_else(|| panic!("no lane {name} in /status"))
}

#[test]
fn unreachable_seeds_then_state_fail_then_uncovered_slots() {
    // The seeds' ports are free: nothing listens there yet.
    let node_ports = cluster_port_block(3);
    let ports: Vec<u16> = (node_ports..node_ports + 3).collect();
    let seeds: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let base = free_port_block(3);
    let agent = Agent::start(&site_config(&seeds, base, ""));
    let msg = wait_problem(
        &agent,
        "unreachable",
        "cannot read the cluster topology from any seed of upstream.cluster",
    );
    assert!(msg.contains(&seeds[0]) && msg.contains("retrying"), "{msg}");
    assert_eq!(readyz(agent.admin_port), 503, "not ready without a cluster");
    assert!(shards(agent.admin_port).is_empty());

    // The cluster comes up on the seeds' ports: the agent, still retrying, finds it.
    let cluster = Cluster::start_with(ServerKind::Redis70, 3, 0, Some(&ports), &[]);
    wait_until(Duration::from_secs(60), "3 lanes streaming", || {
        let s = shards(agent.admin_port);
        s.len() == 3 && s.iter().all(|l| field_str(l, "state") == "streaming")
    });
    wait_until(
        Duration::from_secs(30),
        "ready once every lane streams",
        || readyz(agent.admin_port) == 200,
    );
    wait_until(Duration::from_secs(30), "the cluster row says ok", || {
        let r = cluster_row(agent.admin_port);
        r["state"] == "ok" && problems(&r).is_empty()
    });
    let copies = replica_per_lane(agent.admin_port);
    let sources = lane_sources(agent.admin_port, &ports);
    let copy_ports: Vec<(String, u16)> = copies.iter().map(|(n, r)| (n.clone(), r.port)).collect();
    let writer = Writer::start(ports.clone());
    writer.advance(300);

    // Master C stops (SIGSTOP) and has no replica: cluster_state:fail. Its lane waits and says
    // so; the other lanes keep what they have.
    let c = ports[2];
    let lane_c = sources[2].0.clone();
    writer.pause();
    lanes_equal_their_sources(&sources, &copy_ports, &BTreeSet::new());
    let heads_before: Vec<(String, u64)> = shards(agent.admin_port)
        .iter()
        .map(|l| (field_str(l, "name"), field_u64(l, "head_offset")))
        .collect();
    let copied_before: Vec<BTreeMap<String, String>> =
        copy_ports.iter().map(|(_, p)| keyspace(*p)).collect();
    let pid_c = cluster.pid(c);
    signal_pid(pid_c, "STOP");
    let msg = wait_problem(&agent, "fail", "cluster_state:fail");
    assert!(msg.contains("lanes keep what they have and wait"), "{msg}");
    let msg = wait_problem(&agent, "fail", &format!("lane {lane_c}"));
    assert!(
        msg.contains("master is gone and no replica has replaced it yet"),
        "{msg}"
    );
    let row = lane(agent.admin_port, &lane_c);
    assert!(field_str(&row, "state").starts_with("waiting: "), "{row}");
    for (name, head) in &heads_before {
        let row = lane(agent.admin_port, name);
        assert!(
            field_u64(&row, "head_offset") >= *head,
            "lane {name} keeps its log: {row}"
        );
    }
    let copied: Vec<BTreeMap<String, String>> =
        copy_ports.iter().map(|(_, p)| keyspace(*p)).collect();
    assert!(
        copied == copied_before,
        "the region copies keep what they have"
    );
    wait_until(
        Duration::from_secs(10),
        "not ready while a lane waits",
        || readyz(agent.admin_port) == 503,
    );

    // C comes back: every lane streams again, C's with a partial resync.
    signal_pid(pid_c, "CONT");
    cluster.wait_ok();
    wait_until(Duration::from_secs(60), "3 lanes streaming again", || {
        let s = shards(agent.admin_port);
        s.len() == 3 && s.iter().all(|l| field_str(l, "state") == "streaming")
    });
    wait_until(Duration::from_secs(30), "the cluster row is clean", || {
        let r = cluster_row(agent.admin_port);
        r["state"] == "ok" && problems(&r).is_empty()
    });
    writer.resume();
    writer.advance(300);
    let acked = writer.finish();
    lanes_equal_their_sources(&sources, &copy_ports, &acked);

    // Slots 0-99 (shard A's) lose their owner everywhere; full coverage is not required, so
    // the cluster stays ok. The agent warns and carries on.
    let a = cluster
        .masters()
        .into_iter()
        .find(|m| owns_slot0(&cluster, *m))
        .expect("the owner of slot 0");
    let lane_a = field_str(
        &lane_by_master(agent.admin_port, a).expect("lane of A"),
        "name",
    );
    for n in cluster.live() {
        let mut cl = n.client();
        assert_eq!(
            frame_text(&cl.cmd(&["CONFIG", "SET", "cluster-require-full-coverage", "no"])),
            "OK"
        );
        assert_eq!(
            frame_text(&cl.cmd(&["CLUSTER", "DELSLOTSRANGE", "0", "99"])),
            "OK"
        );
    }
    let msg = wait_problem(&agent, "ok", "slots 0-99 are covered by no shard");
    assert!(msg.contains("carrying on"), "{msg}");
    let row = lane(agent.admin_port, &lane_a);
    assert_eq!(
        slot_count(&row),
        5461 - 100,
        "lane A lost slots 0-99: {row}"
    );
    // Writes to the covered slots still flow through every lane.
    let mut client = ClusterClient::new(ports.clone());
    let mut late = BTreeSet::new();
    for i in 0..300 {
        let key = format!("late:{i}");
        if georelay::cluster::key_slot(key.as_bytes()) < 100 {
            continue;
        }
        let r = client
            .cmd(&["SET", &key, "v"])
            .expect("SET through the cluster");
        assert_eq!(frame_text(&r), "OK", "SET {key}");
        late.insert(key);
    }
    // (A master answers no GET in the slots it lost, so the copies are checked for the new
    // keys only: each one exactly once, with its value.)
    wait_until(
        Duration::from_secs(90),
        "the new writes reach the copies",
        || {
            let mut seen = BTreeMap::new();
            for (_, p) in &copy_ports {
                for (k, v) in keyspace(*p).into_iter().filter(|(k, _)| late.contains(k)) {
                    *seen.entry((k, v)).or_insert(0) += 1;
                }
            }
            seen.len() == late.len() && seen.iter().all(|((_, v), n)| v == "v" && *n == 1)
        },
    );
    // Nothing lost on the way, and no lane full-synced after its first sync.
    for (name, _) in &sources {
        let full = agent.metric("georelay_upstream_full_syncs_total", &[("shard", name)]);
        assert!(full <= 1.0, "lane {name}: {full} full syncs");
    }
    let partial = agent.metric(
        "georelay_upstream_partial_syncs_total",
        &[("shard", &lane_c)],
    );
    assert!(
        partial >= 1.0,
        "lane {lane_c} resumed with PSYNC: {partial}"
    );
}

/// Whether the master on `port` owns slot 0 (`CLUSTER SLOTS` as it sees itself).
fn owns_slot0(cluster: &Cluster, port: u16) -> bool {
    let text = cluster.node(port).client().cmd_str(&["CLUSTER", "NODES"]);
    text.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(2).is_some_and(|flags| flags.contains("myself"))
            && f[8..].iter().any(|s| s.starts_with("0-") || *s == "0")
    })
}

#[test]
fn a_standalone_seed_stops_the_first_start_with_one_line() {
    let standalone = Redis::start(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    let base = free_port_block(3);
    let cfg = site_config(&[standalone.addr()], base, "")
        .replace(
            "{data_dir}",
            &work.path().join("data").display().to_string(),
        )
        .replace("{redis_port}", &support::free_port().to_string())
        .replace("{admin_port}", &support::free_port().to_string());
    let (cfg_path, log_path) = (work.path().join("site.toml"), work.path().join("site.log"));
    std::fs::write(&cfg_path, cfg).expect("write config");
    let mut child = Agent::spawn_raw(&cfg_path, &log_path);
    let mut status = None;
    wait_until(Duration::from_secs(30), "the agent exits", || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    let status = status.expect("exit status");
    let log = std::fs::read_to_string(&log_path).expect("agent log");
    assert!(!status.success(), "a non-zero exit: {status}; log:\n{log}");
    // The agent's last word on stderr (the log has it too, as an ERROR record).
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("georelay: ") && l.contains("use upstream.redis"))
        .collect();
    assert_eq!(lines.len(), 1, "one line says what to do:\n{log}");
    assert_eq!(log.lines().last(), Some(lines[0]), "{log}");
    assert!(
        lines[0].contains(&standalone.addr()) && lines[0].contains("is not in cluster mode"),
        "{}",
        lines[0]
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn refused_credentials_are_an_auth_error() {
    let node = Redis::start(&[
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--requirepass",
        "right-secret",
    ]);
    let base = free_port_block(3);
    let seeds = [node.addr()];
    for (extra, reply) in [("password = \"wrong-secret\"", "WRONGPASS"), ("", "NOAUTH")] {
        let agent = Agent::start(&site_config(&seeds, base, extra));
        let msg = wait_problem(&agent, "auth_failed", "refused the credentials");
        assert!(
            msg.contains(&node.addr())
                && msg.contains(reply)
                && msg.contains("check upstream.username and upstream.password"),
            "{msg}"
        );
        assert!(
            !msg.contains("right-secret") && !msg.contains("wrong-secret"),
            "{msg}"
        );
        assert_eq!(readyz(agent.admin_port), 503);
        // Still up and retrying.
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(cluster_row(agent.admin_port)["state"], "auth_failed");
    }
    // The right password gets past AUTH (a lone node with no slots: cluster_state:fail).
    let agent = Agent::start(&site_config(&seeds, base, "password = \"right-secret\""));
    wait_until(Duration::from_secs(30), "the topology is read", || {
        cluster_row(agent.admin_port)["state"] == "fail"
    });
}

#[test]
fn redirections_and_garbage_on_the_discovery_connection() {
    // Where the redirections point: the agent must never connect there.
    let target = FakeNode::start(|_| b"-ERR not for you\r\n".to_vec());
    let t = target.addr();
    let moved = FakeNode::start(move |_| format!("-MOVED 3999 {t}\r\n").into_bytes());
    let t = target.addr();
    let ask = FakeNode::start(move |_| format!("-ASK 3999 {t}\r\n").into_bytes());
    let garbage = FakeNode::start(|args| match args.first().map(|a| a.to_ascii_uppercase()) {
        Some(c) if c == "CLUSTER" => b"*3\r\n:1\r\n$-1\r\n+x\r\n".to_vec(),
        _ => b"+OK\r\n".to_vec(),
    });
    let seeds = [moved.addr(), ask.addr(), garbage.addr()];
    let agent = Agent::start(&site_config(&seeds, free_port_block(3), ""));
    let msg = wait_problem(&agent, "unreachable", "redirected (MOVED 3999");
    assert!(msg.contains("redirected (ASK 3999"), "{msg}");
    assert!(
        msg.contains(&garbage.addr()) && msg.contains("malformed"),
        "{msg}"
    );
    assert!(
        msg.contains("the discovery connection does not follow redirections"),
        "{msg}"
    );
    // It keeps asking, never crashes, never follows.
    let asked = moved.commands.lock().unwrap().len();
    wait_until(Duration::from_secs(30), "the agent asks again", || {
        moved.commands.lock().unwrap().len() > asked
    });
    assert_eq!(
        http_get(agent.admin_port, "/healthz").map(|r| r.0),
        Some(200)
    );
    assert_eq!(
        target.connections.load(Ordering::Relaxed),
        0,
        "a redirection was followed"
    );
    assert!(!agent.log_text().contains("panicked"));
}
