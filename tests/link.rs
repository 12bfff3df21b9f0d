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
    site_agent_with(master, pki, quic_port, "", extra)
}

/// Like [`site_agent`], with extra keys for the `[upstream]` section.
fn site_agent_with(
    master: &Redis,
    pki: &Pki,
    quic_port: u16,
    upstream_extra: &str,
    extra: &str,
) -> Agent {
    let listen = format!("agent = \"127.0.0.1:{quic_port}\"\n");
    let config = agent_config(
        &master.addr(),
        &format!("{listen}{}{extra}", pki.tls_section("site-a", None)),
    )
    .replacen("[upstream]\n", &format!("[upstream]\n{upstream_extra}"), 1);
    Agent::start(&config)
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
    let before = master
        .info_field("replication", "master_repl_offset")
        .parse::<u64>()
        .unwrap();
    support::load::write_sets(master.port, 200_000, 1024, "big");
    let written = master
        .info_field("replication", "master_repl_offset")
        .parse::<u64>()
        .unwrap()
        - before;
    assert!(
        written >= 200_000_000,
        "only {written} stream bytes were written during the outage"
    );
    wait_until(LONG, "B notices the outage", || {
        b.metric("georelay_upstream_connected", &[]) == 0.0
    });
    let outage = Duration::from_secs(60);
    if let Some(left) = outage.checked_sub(cut_at.elapsed()) {
        std::thread::sleep(left); // the outage itself: a fixed duration, not a wait for a condition
    }
    assert!(
        b.metric("georelay_lag_bytes", &[]) > 0.0
            || b.metric("georelay_upstream_heartbeat_age_seconds", &[]) > 10.0,
        "B looks healthy during the outage"
    );
    wan.restore();

    wait_digests_equal(&master, &[&r1, &r2], LONG);
    assert_eq!(
        b.metric("georelay_upstream_full_syncs_total", &[]),
        1.0,
        "B fell back to a full sync after the outage"
    );
    assert!(b.metric("georelay_upstream_partial_syncs_total", &[]) >= 1.0);
    assert_eq!(
        b.metric("georelay_served_full_syncs_total", &[]),
        served_full,
        "B's replicas needed a full sync"
    );
    assert_eq!(
        master.info_field("stats", "sync_full"),
        "1",
        "the origin forked again"
    );
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
    wait_until(LONG, "B notices the outage", || {
        b.metric("georelay_upstream_connected", &[]) == 0.0
    });
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
    assert_eq!(
        master.info_field("stats", "sync_full"),
        forks,
        "B's full sync made the origin fork"
    );
    assert_eq!(
        b.metric(
            "georelay_upstream_full_syncs_total",
            &[("reason", "new_epoch")]
        ),
        1.0
    );
    assert_eq!(
        a.metric(
            "georelay_served_full_syncs_total",
            &[("kind", "agent"), ("reason", "offset_out_of_range")]
        ),
        1.0
    );
    assert!(
        a.log_text().contains("offset_out_of_range"),
        "A did not log why the sync was full"
    );
}

#[test]
fn fan_out_keeps_healthy_regions_current_and_chains_converge() {
    let pki = Pki::new(&["site-a", "region-b", "region-c", "region-d", "region-e"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let _a = site_agent(&master, &pki, quic, "");
    let wans: Vec<WanSimProc> = (0..3)
        .map(|_| WanSimProc::start(quic, &["--delay", "5ms"]))
        .collect();
    let b = region_agent("region-b", &wans[0].addr(), &pki, "");
    // C also serves agents: E chains behind it (A → C → E).
    let c_quic = free_udp_port();
    let c = region_agent(
        "region-c",
        &wans[1].addr(),
        &pki,
        &format!("agent = \"127.0.0.1:{c_quic}\"\n"),
    );
    let d = region_agent("region-d", &wans[2].addr(), &pki, "");
    let e = Agent::start(&agent_config_from_agent(
        "region-e",
        &format!("127.0.0.1:{c_quic}"),
        &pki.tls_section("region-e", Some("region-c")),
    ));
    let rb = start_replica(&b.addr(), &[]);
    let rc = start_replica(&c.addr(), &[]);
    let rd = start_replica(&d.addr(), &[]);
    let re = start_replica(&e.addr(), &[]);
    write_mixed(master.port, 0, 10_000, "fan");
    wait_digests_equal(&master, &[&rb, &rc, &rd, &re], LONG);

    wans[2].cut();
    wait_until(LONG, "D notices its cut", || {
        d.metric("georelay_upstream_connected", &[]) == 0.0
    });
    write_mixed(master.port, 10_000, 60_000, "fan");
    // The others stay current while D is cut off.
    wait_digests_equal(&master, &[&rb, &rc, &re], LONG);
    for (name, agent) in [("B", &b), ("C", &c), ("E", &e)] {
        wait_until(
            LONG,
            &format!("{name}'s lag returns to 0 during D's cut"),
            || agent.metric("georelay_lag_bytes", &[]) == 0.0,
        );
    }
    assert_ne!(
        rd.digest(),
        master.digest(),
        "D cannot be current while cut off"
    );
    wans[2].restore();
    wait_digests_equal(&master, &[&rd], LONG);
    assert_eq!(
        d.metric("georelay_upstream_full_syncs_total", &[]),
        1.0,
        "D needed a second full sync"
    );
    assert_eq!(master.info_field("stats", "sync_full"), "1");
}

#[test]
fn kill9_of_either_agent_resumes_partially() {
    let pki = Pki::new(&["site-a", "region-b"]);
    let master = Redis::start(&["--repl-backlog-size", "256mb"]);
    let quic = free_udp_port();
    let mut a = site_agent(&master, &pki, quic, "");
    let mut b = region_agent("region-b", &format!("127.0.0.1:{quic}"), &pki, "");
    let r = start_replica(&b.addr(), &[]);
    write_mixed(master.port, 0, 10_000, "k");
    wait_digests_equal(&master, &[&r], LONG);

    let port = master.port;
    let head0 = b.metric("georelay_log_head_offset", &[]);
    let writer = std::thread::spawn(move || write_mixed(port, 10_000, 80_000, "k"));
    // Kill B while the new writes are flowing through it.
    wait_until(LONG, "B receives the new writes", || {
        b.metric("georelay_log_head_offset", &[]) > head0
    });
    b.kill9();
    b.restart();
    wait_until(LONG, "B resumes", || {
        b.metric("georelay_upstream_connected", &[]) == 1.0
    });
    assert_eq!(
        b.metric("georelay_upstream_full_syncs_total", &[]),
        0.0,
        "B full-synced after kill -9"
    );
    assert_eq!(b.metric("georelay_upstream_partial_syncs_total", &[]), 1.0);
    a.kill9();
    a.restart();
    wait_until(LONG, "A resumes", || {
        a.metric("georelay_upstream_connected", &[]) == 1.0
    });
    assert_eq!(
        a.metric("georelay_upstream_full_syncs_total", &[]),
        0.0,
        "A full-synced after kill -9"
    );
    writer.join().expect("writer");
    // A's stateless-reset key survives the restart: B's old connection is reset by the new A
    // (not left to its idle timeout).
    wait_until(LONG, "B sees its old link reset by the restarted A", || {
        b.log_text().contains("reset by peer")
    });
    wait_digests_equal(&master, &[&r], LONG);
    wait_until(LONG, "B resumed from the restarted A partially", || {
        a.metric("georelay_served_partial_syncs_total", &[("kind", "agent")]) >= 1.0
    });
    assert_eq!(
        a.metric("georelay_served_full_syncs_total", &[("kind", "agent")]),
        0.0
    );
    assert_eq!(
        b.metric("georelay_served_full_syncs_total", &[]),
        0.0,
        "B's replica needed a full sync after restarts"
    );
    assert_eq!(master.info_field("stats", "sync_full"), "1");
}

#[test]
fn remote_ack_makes_wait_mean_durable_in_another_region() {
    let pki = Pki::new(&["site-a", "region-b"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let _a = site_agent_with(&master, &pki, quic, "ack = \"remote\"\n", "");
    let wan = WanSimProc::start(quic, &["--delay", "2ms"]);
    let b = region_agent("region-b", &wan.addr(), &pki, "[log]\nfsync = \"always\"\n");
    wait_until(LONG, "B is streaming", || {
        b.metric("georelay_upstream_connected", &[]) == 1.0
    });
    let mut c = master.client();
    let mut acked = false;
    for i in 0..5 {
        c.cmd(&["SET", "durable-remote", &i.to_string()]);
        if c.cmd_str(&["WAIT", "1", "1000"]) == "1" {
            acked = true;
            break;
        }
    }
    assert!(acked, "WAIT 1 1000 never returned 1 while B was connected");

    wan.cut();
    wait_until(LONG, "B notices the cut", || {
        b.metric("georelay_upstream_connected", &[]) == 0.0
    });
    c.cmd(&["SET", "durable-remote", "cut"]);
    let start = std::time::Instant::now();
    assert_eq!(
        c.cmd_str(&["WAIT", "1", "1000"]),
        "0",
        "WAIT counted a write that never reached B"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "WAIT returned before its timeout"
    );
    wan.restore();
    wait_until(LONG, "WAIT returns 1 again after the WAN is back", || {
        c.cmd_str(&["WAIT", "1", "1000"]) == "1"
    });
}

#[test]
fn region_agents_refresh_their_snapshot_from_upstream_and_keep_their_budget() {
    let pki = Pki::new(&["site-a", "region-b"]);
    let master = Redis::start(&[]);
    let quic = free_udp_port();
    let small =
        "[log]\nmax_bytes = \"4MiB\"\nsegment_bytes = \"256KiB\"\nsnapshot_after = \"2MiB\"\n";
    let _a = site_agent(&master, &pki, quic, small);
    let b = region_agent("region-b", &format!("127.0.0.1:{quic}"), &pki, small);
    let r1 = start_replica(&b.addr(), &[]);
    for round in 0..6u64 {
        support::load::write_sets(master.port, 5_000, 1024, &format!("budget{round}"));
    }
    wait_digests_equal(&master, &[&r1], LONG);
    wait_until(LONG, "B refreshes its snapshot from A", || {
        b.metric("georelay_snapshot_refreshes_total", &[("result", "ok")]) >= 1.0
    });
    wait_until(LONG, "B's log shrinks back under a few budgets", || {
        b.metric("georelay_log_disk_bytes", &[]) < 16.0 * 1024.0 * 1024.0
    });
    // A new replica in region B full-syncs from B's refreshed snapshot.
    let r2 = start_replica(&b.addr(), &[]);
    wait_digests_equal(&master, &[&r1, &r2], LONG);
    assert_eq!(
        b.metric("georelay_upstream_full_syncs_total", &[]),
        1.0,
        "the refresh replaced B's epoch"
    );
}

#[test]
fn a_snapshot_transfer_cut_by_the_wan_resumes_where_it_stopped() {
    let pki = Pki::new(&["site-a", "region-b"]);
    // ~40 MB of RDB (uncompressed values), sent through an 8 MB/s WAN: a cut lands mid-transfer.
    let master = Redis::start(&["--rdbcompression", "no"]);
    master
        .client()
        .cmd(&["DEBUG", "POPULATE", "100000", "big", "400"]);
    let quic = free_udp_port();
    let _a = site_agent(&master, &pki, quic, "");
    let wan = WanSimProc::start(quic, &["--delay", "5ms", "--rate", "8MB"]);
    let b = region_agent(
        "region-b",
        &wan.addr(),
        &pki,
        "[link]\nkeep_alive = \"500ms\"\nidle_timeout = \"2s\"\n",
    );
    let received = |b: &Agent| {
        b.metric(
            "georelay_link_stream_bytes_total",
            &[("direction", "received")],
        )
    };
    // The per-peer family appears once the link is up: absent is "not yet".
    b.wait_metric(
        "georelay_link_stream_bytes_total",
        &[("direction", "received")],
        LONG,
        |v| v > 5e6,
    );
    wan.cut();
    wait_until(LONG, "B notices the lost link", || {
        b.log_text().contains("agent link lost")
    });
    let before = received(&b);
    wan.restore();
    let r = start_replica(&b.addr(), &[]);
    wait_digests_equal(&master, &[&r], LONG);
    let text = b.log_text();
    let at: u64 = text
        .lines()
        .find_map(|l| l.split("resuming the snapshot transfer at byte ").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("B did not resume the snapshot; its log:\n{text}"));
    assert!(
        at >= 5_000_000,
        "resumed at byte {at}, but B had more than 5 MB before the cut"
    );
    assert_eq!(
        b.metric("georelay_upstream_snapshot_resumes_total", &[]),
        1.0
    );
    assert_eq!(b.metric("georelay_upstream_full_syncs_total", &[]), 1.0);
    let size: f64 = text
        .lines()
        .find_map(|l| l.split("receiving snapshot ").nth(1))
        .and_then(|rest| rest.split(", ").nth(1)?.split(' ').next()?.parse().ok())
        .expect("snapshot size logged");
    assert!(size > 30e6, "the snapshot is only {size} bytes");
    // Each byte crossed the WAN once (plus a little of the stream).
    assert!(
        received(&b) < size + 1e6,
        "B received {} bytes for a {size}-byte snapshot (had {before} at the cut)",
        received(&b)
    );
    assert_eq!(master.info_field("stats", "sync_full"), "1");
}
