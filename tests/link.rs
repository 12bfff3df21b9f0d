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
