//! Integration: agents chained over QUIC with mutual TLS, through the user-space WAN
//! impairment relay: two-region chain, long outages, fan-out, chains, restarts, security,
//! and `ack = "remote"`.

mod support;

use std::time::Duration;

use support::load::write_mixed;
use support::{
    agent_config, agent_config_from_agent, free_udp_port, start_replica, wait_digests_equal,
    wait_until, Agent, Pki, Redis, WanSimProc,
};

const LONG: Duration = Duration::from_secs(180);

/// Site agent A (upstream: the master), listening for agents on a UDP port.
fn site_agent(master: &Redis, pki: &Pki, quic_port: u16, extra: &str) -> Agent {
    let listen = format!("agent = \"127.0.0.1:{quic_port}\"\n");
    Agent::start(&agent_config(
        &master.addr(),
        &format!("{listen}{}{extra}", pki.tls_section("site-a", None)),
    ))
}

/// Region agent `name` whose upstream is the agent reachable at `upstream`.
fn region_agent(name: &str, upstream: &str, pki: &Pki, extra: &str) -> Agent {
    Agent::start(&agent_config_from_agent(
        name,
        upstream,
        &format!("{extra}{}", pki.tls_section(name, Some("site-a"))),
    ))
}

#[test]
fn two_region_chain_converges_through_a_lossy_wan() {
    let pki = Pki::new(&["site-a", "region-b"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let a = site_agent(&master, &pki, quic, "");
    let wan = WanSimProc::start(
        quic,
        &["--delay", "10ms", "--jitter", "2ms", "--loss", "1%"],
    );
    let b = region_agent("region-b", &wan.addr(), &pki, "");
    let r1 = start_replica(&b.addr(), &[]);
    let r2 = start_replica(&b.addr(), &[]);
    for round in 0..5u64 {
        write_mixed(master.port, round * 20_000, (round + 1) * 20_000, "w");
    }
    wait_digests_equal(&master, &[&r1, &r2], LONG);
    assert_eq!(
        master.info_field("stats", "sync_full"),
        "1",
        "only agent A may fork the origin"
    );
    assert_eq!(
        b.metric(
            "georelay_upstream_full_syncs_total",
            &[("reason", "first_sync")]
        ),
        1.0
    );
    assert!(a.metric("georelay_served_full_syncs_total", &[("kind", "agent")]) == 1.0);
    assert!(b.metric("georelay_link_bytes_total", &[("direction", "received")]) > 0.0);
    wait_until(LONG, "B reports zero lag once caught up", || {
        b.metric("georelay_lag_bytes", &[]) == 0.0
    });
}

#[test]
fn long_outage_resumes_partially() {
    let pki = Pki::new(&["site-a", "region-b"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let a = site_agent(&master, &pki, quic, "");
    let wan = WanSimProc::start(quic, &["--delay", "10ms"]);
    let b = region_agent("region-b", &wan.addr(), &pki, "");
    let r1 = start_replica(&b.addr(), &[]);
    let r2 = start_replica(&b.addr(), &[]);
    write_mixed(master.port, 0, 20_000, "o");
    wait_digests_equal(&master, &[&r1, &r2], LONG);
    let served_full = b.metric("georelay_served_full_syncs_total", &[]);

    wan.cut();
    let cut_at = std::time::Instant::now();
    let before = master.info_field("replication", "master_repl_offset").parse::<u64>().unwrap();
    support::load::write_sets(master.port, 200_000, 1024, "big");
    let written = master.info_field("replication", "master_repl_offset").parse::<u64>().unwrap() - before;
    assert!(written >= 200_000_000, "only {written} stream bytes were written during the outage");
    wait_until(LONG, "B notices the outage", || b.metric("georelay_upstream_connected", &[]) == 0.0);
    let outage = Duration::from_secs(60);
    if let Some(left) = outage.checked_sub(cut_at.elapsed()) {
        std::thread::sleep(left); // the outage itself: a fixed duration, not a wait for a condition
    }
    assert!(b.metric("georelay_lag_bytes", &[]) > 0.0 || b.metric("georelay_upstream_heartbeat_age_seconds", &[]) > 10.0, "B looks healthy during the outage");
    wan.restore();

    wait_digests_equal(&master, &[&r1, &r2], LONG);
    assert_eq!(b.metric("georelay_upstream_full_syncs_total", &[]), 1.0, "B fell back to a full sync after the outage");
    assert!(b.metric("georelay_upstream_partial_syncs_total", &[]) >= 1.0);
    assert_eq!(b.metric("georelay_served_full_syncs_total", &[]), served_full, "B's replicas needed a full sync");
    assert_eq!(master.info_field("stats", "sync_full"), "1", "the origin forked again");
    assert!(a.metric("georelay_served_partial_syncs_total", &[("kind", "agent")]) >= 1.0);
}

#[test]
fn outage_beyond_retention_full_syncs_from_the_site_snapshot() {
    let pki = Pki::new(&["site-a", "region-b"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let a = site_agent(
        &master,
        &pki,
        quic,
        "[log]\nmax_bytes = \"4MiB\"\nsegment_bytes = \"256KiB\"\nsnapshot_after = \"2MiB\"\n",
    );
    let wan = WanSimProc::start(quic, &["--delay", "5ms"]);
    let b = region_agent("region-b", &wan.addr(), &pki, "");
    let r1 = start_replica(&b.addr(), &[]);
    write_mixed(master.port, 0, 5_000, "r");
    wait_digests_equal(&master, &[&r1], LONG);

    wan.cut();
    wait_until(LONG, "B notices the outage", || b.metric("georelay_upstream_connected", &[]) == 0.0);
    for round in 0..4u64 {
        support::load::write_sets(master.port, 5_000, 1024, &format!("ret{round}"));
    }
    // A keeps its budget: it refreshes its snapshot and drops the log B would need.
    wait_until(LONG, "A's log moves past B's position", || {
        a.metric("georelay_log_first_offset", &[]) > b.metric("georelay_log_head_offset", &[]) + 1.0
    });
    let forks = master.info_field("stats", "sync_full");
    wan.restore();
    wait_digests_equal(&master, &[&r1], LONG);
    assert_eq!(master.info_field("stats", "sync_full"), forks, "B's full sync made the origin fork");
    assert_eq!(b.metric("georelay_upstream_full_syncs_total", &[("reason", "new_epoch")]), 1.0);
    assert_eq!(a.metric("georelay_served_full_syncs_total", &[("kind", "agent"), ("reason", "offset_out_of_range")]), 1.0);
    assert!(a.log_text().contains("offset_out_of_range"), "A did not log why the sync was full");
}
