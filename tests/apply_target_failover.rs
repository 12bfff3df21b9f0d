//! Apply into cluster targets that change under the applier, against real servers: a 3-master
//! Redis 7.0 target with one replica each fails over twice during the stream (`CLUSTER
//! FAILOVER` on a replica, then a master SIGKILLed and its replica promoted), and a 2-master
//! Redis 6.2 cluster target (slots read with `CLUSTER NODES`, keys as plain commands since
//! 6.2 cannot load RDB 10). Each ends with the target equal to the origin key by key and the
//! INCR/INCRBY/LPUSH totals exact.

#[path = "apply/cluster_target.rs"]
mod cluster_target;
mod cluster_util;
#[path = "apply/dataset.rs"]
mod dataset;
#[path = "apply/resume.rs"]
mod resume;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cluster_target::*;
use cluster_util::{Cluster, ClusterClient};
use support::{agent_config, Agent, Redis, ServerKind};

/// Starts the INCR/INCRBY/LPUSH writer on the origin; stop it with the flag.
fn start_writer(
    origin: &Redis,
    stop: &Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<Totals, String>> {
    let (stop, port) = (stop.clone(), origin.port);
    std::thread::spawn(move || {
        let mut c = support::Client::connect(port);
        write_counters(|a| Ok(c.cmd(a)), stop, 100_000, "")
    })
}

/// The origin's keyspace (databases 0 and 2, as the target's database 0).
fn origin_keys(origin: &Redis) -> dataset::Keyspace {
    let mut want = dataset::Keyspace::new();
    for ((_, k), v) in dataset::read_server(&mut origin.client(), &[0, 2], false) {
        assert!(want.insert((0, k.clone()), v).is_none(), "{k:?} in two dbs");
    }
    want
}

/// Stops the writer, waits for the applier, and checks the target: key by key equal to the
/// origin, the totals exact, no command failed in it.
fn stop_and_assert_exact(
    agent: &Agent,
    origin: &Redis,
    target: &Cluster,
    w: std::thread::JoinHandle<Result<Totals, String>>,
    stop: &AtomicBool,
) {
    stop.store(true, Ordering::Relaxed);
    let totals = w.join().expect("writer").expect("writes into the origin");
    wait_applied(agent, origin);
    dataset::assert_same(&origin_keys(origin), &cluster_keyspace(target), 1000);
    let mut tc = ClusterClient::new(target.masters());
    assert_totals(&mut tc, &totals, "");
    assert_eq!(
        agent.metric("georelay_apply_errors_total", &[("reason", "command")]),
        0.0
    );
}

#[test]
fn a_target_failing_over_twice_during_the_stream_ends_exact() {
    let origin = Redis::start(&[]);
    let mut target = Cluster::start(ServerKind::Redis70, 3);
    let mut oc = origin.client();
    dataset::populate(&mut oc, ServerKind::Redis70, "t");
    support::load::write_sets(origin.port, 3_000, 32, "bulk");
    let config = agent_config(
        &origin.addr(),
        &target_section(&target, "databases = { \"2\" = 0 }\n"),
    );
    let agent = Agent::start(&config);
    wait_applied(&agent, &origin);
    let stop = Arc::new(AtomicBool::new(false));
    let w = start_writer(&origin, &stop);

    // A manual failover: the replica of the first master takes over, the master steps down.
    let masters = target.masters();
    assert_eq!(masters.len(), 3, "three masters");
    let replica = target.replica_of(masters[0]);
    target.manual_failover(replica);
    target.wait_ok();
    wait_applied(&agent, &origin);
    // A master SIGKILLed: its replica is promoted; writes it had not replicated yet are
    // gone from the target with their checkpoints, so the applier must apply them again.
    let replica = target.replica_of(masters[1]);
    target.kill_master(masters[1], replica);
    wait_applied(&agent, &origin);
    // The kill landed while the applier wrote: it met the dead master.
    assert!(
        agent.metric("georelay_apply_errors_total", &[("reason", "target_down")]) >= 1.0,
        "the applier never met the killed master"
    );

    assert!(!w.is_finished(), "the writer outlived both failovers");
    stop_and_assert_exact(&agent, &origin, &target, w, &stop);
}

#[test]
fn redis70_into_a_redis62_cluster_target_is_exact() {
    let origin = Redis::start(&[]);
    let target = small_cluster(ServerKind::Redis62, 2);
    let mut oc = origin.client();
    dataset::populate(&mut oc, ServerKind::Redis70, "t");
    support::load::write_sets(origin.port, 2_000, 32, "bulk");
    // 6.2 has no FUNCTION: the library is skipped (and counted), the keys are not.
    let config = agent_config(
        &origin.addr(),
        &target_section(
            &target,
            "databases = { \"2\" = 0 }\non_unknown = \"skip\"\n",
        ),
    );
    let mut agent = Agent::start(&config);
    let stop = Arc::new(AtomicBool::new(false));
    let w = start_writer(&origin, &stop);
    wait_applied(&agent, &origin);
    stop_and_assert_exact(&agent, &origin, &target, w, &stop);
    assert!(
        agent.log_text().contains("plain commands"),
        "6.2 cannot load RDB 10: keys go as plain commands"
    );

    // A restart with the target intact re-applies nothing.
    agent.restart();
    wait_applied(&agent, &origin);
    resume::assert_nothing_reapplied(&agent, "main");
}

#[test]
fn a_target_replica_that_cannot_acknowledge_is_counted_and_the_applier_goes_on() {
    let origin = Redis::start(&[]);
    let target = Cluster::start(ServerKind::Redis70, 3);
    support::load::write_sets(origin.port, 300, 32, "before");
    let agent = Agent::start(&agent_config(&origin.addr(), &target_section(&target, "")));
    wait_applied(&agent, &origin);
    let unreplicated =
        || agent.metric("georelay_apply_errors_total", &[("reason", "unreplicated")]);
    // Every master's replica acknowledged the full sync and the stream so far.
    assert_eq!(unreplicated(), 0.0);

    // One master's replica stops: its WAIT times out, the lane goes on and says so.
    let masters = target.masters();
    let pid = target.pid(target.replica_of(masters[0]));
    cluster_util::signal_pid(pid, "STOP");
    support::load::write_sets(origin.port, 300, 32, "during");
    wait_applied(&agent, &origin);
    let counted = unreplicated();
    cluster_util::signal_pid(pid, "CONT");
    assert!(
        counted >= 1.0,
        "the stopped replica's master was never found unreplicated"
    );

    dataset::assert_same(&origin_keys(&origin), &cluster_keyspace(&target), 1000);
}
