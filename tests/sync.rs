//! Integration: real redis-server 7 master → georelay agent → real Redis replicas.
//! Convergence, kill -9 restarts that resume partially, origin failover, origin restart
//! without persistence, and full syncs served without forking the origin.

mod support;

use std::time::Duration;

use support::load::write_mixed;
use support::{agent_config, start_replica, wait_digests_equal, wait_until, Agent, Redis};

const LONG: Duration = Duration::from_secs(120);

fn replica_synced(r: &Redis) -> bool {
    r.info_field("replication", "master_link_status") == "up"
}

#[test]
fn convergence_with_replicas_attaching_and_detaching() {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    let r1 = start_replica(&agent.addr(), &[]);
    write_mixed(master.port, 0, 50_000, "a");
    let r2 = start_replica(&agent.addr(), &[]);
    write_mixed(master.port, 50_000, 100_000, "a");
    // r1 must hold a synced master link before it is broken, or there is nothing to resume.
    wait_until(LONG, "r1 reports master_link_status:up", || {
        replica_synced(&r1)
    });
    // Break r1's link: it comes back with a partial sync from its cached master.
    r1.client().cmd(&["CLIENT", "KILL", "TYPE", "master"]);
    write_mixed(master.port, 100_000, 150_000, "a");
    // Detach r2 entirely (REPLICAOF NO ONE gives it a new replid), then attach it again.
    r2.client().cmd(&["REPLICAOF", "NO", "ONE"]);
    let (host, port) = agent
        .addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .unwrap();
    r2.client().cmd(&["REPLICAOF", &host, &port]);
    write_mixed(master.port, 150_000, 200_000, "a");
    wait_until(LONG, "both replicas report master_link_status:up", || {
        replica_synced(&r1) && replica_synced(&r2)
    });
    wait_digests_equal(&master, &[&r1, &r2], LONG);
    assert_ne!(
        master.digest(),
        "0000000000000000000000000000000000000000",
        "the dataset must not be empty"
    );
    let partial = agent.metric("georelay_served_partial_syncs_total", &[("kind", "redis")]);
    assert!(
        partial >= 1.0,
        "r1's re-attach should be a partial sync, got {partial}"
    );
    assert_eq!(agent.metric("georelay_upstream_full_syncs_total", &[]), 1.0);
    assert_eq!(
        master.info_field("stats", "sync_full"),
        "1",
        "only the agent's initial sync forks the origin"
    );
}

#[test]
fn kill9_restarts_resume_partially() {
    // The origin's backlog must cover the agent's restart time under this write rate;
    // Redis's 1 MB default is only ~15 ms of this load.
    let master = Redis::start(&["--repl-backlog-size", "256mb"]);
    // A dataset large enough that the initial RDB transfer takes a moment (DEBUG POPULATE
    // is not replicated, but it is in the RDB).
    master
        .client()
        .cmd(&["DEBUG", "POPULATE", "400000", "pop", "200"]);
    let mut agent = Agent::start(&agent_config(
        &master.addr(),
        "[log]\nsegment_bytes = \"256KiB\"\nmax_bytes = \"1GiB\"\n",
    ));
    // Kill during the initial RDB transfer: as soon as a temp snapshot file exists.
    let snaps = agent.data_dir.join("snapshots");
    wait_until(LONG, "the initial RDB transfer to start", || {
        std::fs::read_dir(&snaps)
            .map(|d| d.count() > 0)
            .unwrap_or(false)
            || master.info_field("replication", "connected_slaves") == "1"
    });
    agent.kill9();
    agent.restart();
    wait_until(LONG, "the agent's upstream link is up", || {
        agent.metric("georelay_upstream_connected", &[]) == 1.0
    });
    let replica = start_replica(&agent.addr(), &[]);
    wait_until(LONG, "the replica is synced", || replica_synced(&replica));
    let full_before = master.info_field("stats", "sync_full");

    let writer_port = master.port;
    let writer = std::thread::spawn(move || {
        for round in 0..10u64 {
            write_mixed(writer_port, round * 10_000, (round + 1) * 10_000, "k");
        }
    });
    let mut kills = 1;
    let mut rng = 0x9e3779b97f4a7c15u64;
    while kills < 7 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(200 + rng % 600));
        agent.kill9();
        kills += 1;
        agent.restart();
        wait_until(
            LONG,
            "the restarted agent resumes its upstream link",
            || agent.metric("georelay_upstream_connected", &[]) == 1.0,
        );
        assert_eq!(
            agent.metric("georelay_upstream_full_syncs_total", &[]),
            0.0,
            "restart {kills} fell back to a full sync"
        );
        assert_eq!(
            agent.metric("georelay_upstream_partial_syncs_total", &[]),
            1.0,
            "restart {kills} was not partial"
        );
    }
    writer.join().expect("writer thread");
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(
        master.info_field("stats", "sync_full"),
        full_before,
        "a restart made the origin fork again"
    );
    assert_eq!(
        agent.metric("georelay_served_full_syncs_total", &[]),
        0.0,
        "the replica needed a full sync after a restart"
    );
    assert!(agent.metric("georelay_served_partial_syncs_total", &[("kind", "redis")]) >= 1.0);
}

#[test]
fn origin_failover_continues_partially() {
    let old_master = Redis::start(&[]);
    let promoted = start_replica(&old_master.addr(), &[]);
    let mut agent = Agent::start(&agent_config(&old_master.addr(), ""));
    let replica = start_replica(&agent.addr(), &[]);
    write_mixed(old_master.port, 0, 20_000, "f");
    wait_digests_equal(&old_master, &[&promoted, &replica], LONG);
    let head = |r: &Redis| r.info_field("replication", "master_repl_offset");
    wait_until(
        LONG,
        "the agent holds everything the old master wrote",
        || agent.metric("georelay_log_head_offset", &[]).to_string() == head(&old_master),
    );

    promoted.client().cmd(&["REPLICAOF", "NO", "ONE"]);
    drop(old_master);
    agent.terminate();
    agent.set_upstream(&promoted.addr());
    agent.restart();
    write_mixed(promoted.port, 20_000, 30_000, "f");
    wait_digests_equal(&promoted, &[&replica], LONG);
    assert_eq!(
        agent.metric("georelay_upstream_full_syncs_total", &[]),
        0.0,
        "the agent full-synced after failover"
    );
    assert_eq!(
        agent.metric("georelay_upstream_partial_syncs_total", &[]),
        1.0
    );
    assert_eq!(
        agent.metric("georelay_served_full_syncs_total", &[]),
        0.0,
        "a replica full-synced after failover"
    );
    wait_until(LONG, "the replica resumed partially", || {
        agent.metric("georelay_served_partial_syncs_total", &[("kind", "redis")]) >= 1.0
    });
    assert_eq!(
        promoted.info_field("stats", "sync_full"),
        "0",
        "the promoted master forked for the agent"
    );
    let new_id = promoted.info_field("replication", "master_replid");
    assert_eq!(
        replica.info_field("replication", "master_replid"),
        new_id,
        "the replica did not learn the new replid"
    );
}

#[test]
fn origin_restart_without_persistence_starts_a_new_epoch() {
    let mut master = Redis::start(&[]);
    let port = master.port;
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    let replica = start_replica(&agent.addr(), &[]);
    write_mixed(master.port, 0, 10_000, "e");
    wait_digests_equal(&master, &[&replica], LONG);

    master.kill();
    drop(master);
    let master = Redis::start_on(port, &[]);
    master.client().cmd(&["SET", "after-restart", "1"]);
    wait_until(LONG, "the agent starts a new epoch", || {
        agent.metric(
            "georelay_upstream_full_syncs_total",
            &[("reason", "new_epoch")],
        ) == 1.0
    });
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(
        replica.client().cmd_str(&["DBSIZE"]),
        "1",
        "the replica kept data the origin lost"
    );
    assert!(agent.metric("georelay_served_full_syncs_total", &[("kind", "redis")]) >= 2.0);
    assert!(
        agent.log_text().contains("WARN") && agent.log_text().contains("new epoch"),
        "the new epoch was not logged as a warning"
    );
}

#[test]
fn new_replicas_full_sync_without_forking_the_origin() {
    let master = Redis::start(&[]);
    let agent = Agent::start(&agent_config(&master.addr(), ""));
    write_mixed(master.port, 0, 20_000, "o");
    wait_until(LONG, "the agent has the first snapshot", || {
        agent.metric("georelay_upstream_connected", &[]) == 1.0
    });
    let forks = master.info_field("stats", "sync_full");
    let r1 = start_replica(&agent.addr(), &[]);
    let r2 = start_replica(&agent.addr(), &[]);
    write_mixed(master.port, 20_000, 25_000, "o");
    wait_digests_equal(&master, &[&r1, &r2], LONG);
    assert_eq!(
        master.info_field("stats", "sync_full"),
        forks,
        "a new far replica made the origin fork"
    );
    assert_eq!(
        agent.metric("georelay_served_full_syncs_total", &[("kind", "redis")]),
        2.0
    );
}

#[test]
fn a_replica_that_arrives_before_the_first_snapshot_is_held_then_synced_once() {
    let port = support::free_port();
    let agent = Agent::start(&agent_config(&format!("127.0.0.1:{port}"), ""));
    let replica = start_replica(&agent.addr(), &[]);
    wait_until(
        LONG,
        "the replica is held (connected, waiting for a snapshot)",
        || agent.metric("georelay_connected_replicas", &[]) == 1.0,
    );
    assert_eq!(
        replica.info_field("replication", "master_link_status"),
        "down"
    );
    let master = Redis::start_on(port, &[]);
    write_mixed(master.port, 0, 2_000, "h");
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(
        agent.metric("georelay_served_full_syncs_total", &[("kind", "redis")]),
        1.0
    );
    assert_eq!(
        agent.metric("georelay_served_partial_syncs_total", &[("kind", "redis")]),
        0.0,
        "the held replica was disconnected after its full sync"
    );
}

#[test]
fn sigterm_flushes_and_exits_0_then_resumes_partially() {
    let master = Redis::start(&[]);
    let mut agent = Agent::start(&agent_config(&master.addr(), "[log]\nfsync = \"no\"\n"));
    let replica = start_replica(&agent.addr(), &[]);
    write_mixed(master.port, 0, 10_000, "t");
    wait_digests_equal(&master, &[&replica], LONG);
    let status = agent.terminate().expect("agent was running");
    assert!(status.success(), "SIGTERM exit status: {status}");
    assert!(
        agent.log_text().contains("log flushed"),
        "no final flush was logged"
    );
    write_mixed(master.port, 10_000, 12_000, "t");
    agent.restart();
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(agent.metric("georelay_upstream_full_syncs_total", &[]), 0.0);
    assert_eq!(
        agent.metric("georelay_upstream_partial_syncs_total", &[]),
        1.0
    );
    // SIGINT takes the same path, with a shorter grace period.
    let status = agent.interrupt().expect("agent was running");
    assert!(status.success(), "SIGINT exit status: {status}");
    write_mixed(master.port, 12_000, 13_000, "t");
    agent.restart();
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(agent.metric("georelay_upstream_full_syncs_total", &[]), 0.0);
}
