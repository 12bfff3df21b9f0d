//! Apply into a cluster target against real servers: a 2-master Redis 7.0 target cluster
//! (`target.cluster`), the stream routed by slot with one checkpoint per slot. While the
//! applier runs — full sync and stream — a `redis-cli --cluster reshard` moves slots in the
//! *target* and the applying agent is SIGKILLed; at the end the target equals the origin key
//! by key and the INCR/INCRBY/LPUSH totals are exact; a restart with the target intact
//! re-applies nothing (counters); a cross-slot command that cannot be split stops the lane
//! naming it.

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
use std::time::Duration;

use cluster_target::*;
use cluster_util::{Cluster, ClusterClient};
use support::{agent_config, wait_until, Agent, Redis, ServerKind};

#[test]
fn standalone_into_a_2_master_cluster_resharded_and_killed_stays_exact() {
    let origin = Redis::start(&[]);
    let target = small_cluster(ServerKind::Redis70, 2);
    let mut oc = origin.client();
    dataset::populate(&mut oc, ServerKind::Redis70, "t");
    support::load::write_sets(origin.port, 5_000, 32, "bulk");
    let config = agent_config(
        &origin.addr(),
        &target_section(&target, "databases = { \"2\" = 0 }\n"),
    );
    // 50 ms per full-sync batch, so a kill lands in the full sync.
    let mut agent = Agent::start_env(&config, &[("GEORELAY_FAILPOINTS", "apply_load_slow")]);
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (stop, port) = (stop.clone(), origin.port);
        std::thread::spawn(move || {
            let mut c = support::Client::connect(port);
            write_counters(|a| Ok(c.cmd(a)), stop, 100_000, "")
        })
    };
    let masters = target.masters();
    let (a, b) = (target.id_of(masters[0]), target.id_of(masters[1]));
    wait_until(LONG, "the applier loads the snapshot", || {
        row_field(&agent, "state").as_deref() == Some("full_sync")
    });
    agent.kill9();
    agent.restart();
    let moving = reshard(masters[0], a, b, 3000);
    for i in 0..2u64 {
        std::thread::sleep(Duration::from_millis(700 + i * 300));
        agent.kill9();
        agent.restart();
    }
    let moved = moving.join().expect("reshard thread");
    assert!(moved.is_ok(), "reshard: {moved:?}");
    // The writer ran through the whole reshard (it stops only when told to).
    assert!(!w.is_finished(), "the writer outlived the reshard");
    stop.store(true, Ordering::Relaxed);
    let totals = w.join().expect("writer").expect("writes into the origin");
    agent.clear_env();
    agent.restart();
    wait_applied(&agent, &origin);

    let mut want = dataset::Keyspace::new();
    for ((_, k), v) in dataset::read_server(&mut oc, &[0, 2], false) {
        want.insert((0, k), v);
    }
    let got = cluster_keyspace(&target);
    dataset::assert_same(&want, &got, 1000);
    assert!(want.len() > 5_000, "{} keys", want.len());
    let mut tc = ClusterClient::new(masters.clone());
    assert_totals(&mut tc, &totals, "");
    let ckpts = checkpoint_keys(&target);
    assert!(
        ckpts > 20,
        "one checkpoint per slot written to, and the floor: {ckpts}"
    );

    // A restart with the target intact re-applies nothing.
    agent.restart();
    wait_applied(&agent, &origin);
    resume::assert_nothing_reapplied(&agent, "main");
    resume::assert_applies_exactly(
        &agent,
        "main",
        5.0,
        LONG,
        || {
            for _ in 0..5 {
                oc.cmd(&["INCR", "cnt:0"]);
            }
        },
        || wait_applied(&agent, &origin),
    );
    let got = tc.cmd(&["GET", "cnt:0"]).expect("GET");
    assert_eq!(
        support::frame_text(&got),
        (totals.counters[0] + 5).to_string()
    );

    // A command a cluster target cannot split stops the lane, naming it and its offset.
    oc.cmd(&["SET", "x1", "a"]);
    oc.cmd(&["RENAME", "x1", "x2"]);
    wait_until(LONG, "the lane stops on RENAME", || {
        row_field(&agent, "state").as_deref() == Some("stopped")
    });
    let err = row_field(&agent, "error").expect("the stopped lane's row has an error");
    assert!(
        err.contains("RENAME") && err.contains("offset") && err.contains("slots"),
        "{err}"
    );
}

#[test]
fn a_3_master_cluster_through_site_and_region_lanes_into_a_2_master_cluster() {
    let origin = Cluster::start(ServerKind::Redis70, 3);
    let target = small_cluster(ServerKind::Redis70, 2);
    let origin_ports: Vec<u16> = origin.live().map(|n| n.port).collect();
    let mut oc = ClusterClient::new(origin_ports.clone());
    mixed_dataset(&mut oc, 3000);
    let pki = support::Pki::new(&["site", "region"]);
    let site_quic = support::free_udp_port();
    let seeds = vec![origin.live().next().expect("a node").addr()];
    let _site = Agent::start(&format!(
        "{}agent = \"127.0.0.1:{site_quic}\"\n{}",
        cluster_util::cluster_agent_config(&seeds, cluster_util::free_port_block(3), 3, ""),
        pki.tls_section("site", None)
    ));
    let region_ports = cluster_util::free_port_block(3);
    let region_config = format!(
        "name = \"region\"\ndata_dir = \"{{data_dir}}\"\n[upstream]\nagent = \"127.0.0.1:{site_quic}\"\n\
         [listen]\nredis = \"127.0.0.1:{{redis_port}}\"\nadmin = \"127.0.0.1:{{admin_port}}\"\n\
         shard_ports = \"{}-{}\"\n{}{}",
        region_ports,
        region_ports + 2,
        pki.tls_section("region", Some("site")),
        target_section(&target, "")
    );
    let mut region = Agent::start(&region_config);
    wait_until(LONG, "three lane appliers stream", || {
        all_streaming(&region, 3)
    });
    let lanes = lane_names(&region);

    let stop = Arc::new(AtomicBool::new(false));
    let w = spawn_cluster_writer(origin_ports.clone(), &stop, "w");
    let masters = target.masters();
    let moving = reshard(
        masters[0],
        target.id_of(masters[0]),
        target.id_of(masters[1]),
        3000,
    );
    for i in 0..2u64 {
        std::thread::sleep(Duration::from_millis(600 + i * 400));
        region.kill9();
        region.restart();
    }
    let moved = moving.join().expect("reshard thread");
    assert!(moved.is_ok(), "reshard: {moved:?}");
    assert!(!w.is_finished(), "the writer outlived the reshard");
    stop.store(true, Ordering::Relaxed);
    let totals = w.join().expect("writer").expect("writes into the origin");

    let origin_keys = || cluster_origin_keys(&origin);
    let want = origin_keys();
    wait_until(LONG, "the target holds every origin key", || {
        let got = cluster_keyspace(&target);
        got.len() == want.len() && got.keys().eq(want.keys())
    });
    let mut tc = ClusterClient::new(masters.clone());
    wait_counters(&mut tc, &totals, "w");
    dataset::assert_same(&want, &cluster_keyspace(&target), 1000);
    assert_totals(&mut tc, &totals, "w");

    // A restart with the target intact re-applies nothing, on any lane.
    region.restart();
    wait_until(LONG, "three lane appliers stream again", || {
        all_streaming(&region, 3)
    });
    for lane in &lanes {
        resume::assert_nothing_reapplied(&region, lane);
    }
    assert_totals(&mut tc, &totals, "w");
    dataset::assert_same(&origin_keys(), &cluster_keyspace(&target), 1000);
}
