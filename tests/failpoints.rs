//! Integration: injected faults (`GEORELAY_FAILPOINTS`) on the log's write, rename and read
//! paths and on both network paths, with real redis-server processes. Each fault gets one clear
//! log line, nothing is lost (digests equal), and the agent recovers without a full sync
//! wherever a partial one is possible.

mod support;

use std::time::Duration;

use support::load::{write_mixed, write_sets};
use support::logfiles;
use support::{
    agent_config, agent_config_from_agent, free_udp_port, start_replica, wait_digests_equal,
    wait_until, Agent, Pki, Redis,
};

const LONG: Duration = Duration::from_secs(120);

/// Writes batches to the origin until `cond` holds (bounded), so a failpoint set at the n-th
/// call is reached however the stream was chunked.
fn write_until(master: &Redis, what: &str, mut cond: impl FnMut() -> bool) {
    for round in 0..200 {
        if cond() {
            return;
        }
        write_sets(master.port, 500, 512, &format!("until{round}"));
    }
    wait_until(LONG, what, cond);
}

/// The last lines of an agent's log, for failure messages.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[test]
fn write_errors_pause_appends_and_resume_partially_with_nothing_half_written() {
    let master = Redis::start(&["--repl-backlog-size", "256mb"]);
    let config = agent_config(&master.addr(), "[log]\nsegment_bytes = \"1MiB\"\n");
    // The 30th and 31st appends fail (the second one after the retry, 5 s later).
    let mut agent = Agent::start_env(&config, &[("GEORELAY_FAILPOINTS", "write@30:2")]);
    let replica = start_replica(&agent.addr(), &[]);
    write_until(&master, "two injected write errors", || {
        agent
            .log_text()
            .matches("injected by failpoint write")
            .count()
            >= 2
    });
    assert!(
        agent
            .log_text()
            .contains("cannot write the replication log"),
        "no clear message about the failed write"
    );
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(
        agent.metric("georelay_upstream_full_syncs_total", &[]),
        1.0,
        "a write error cost a full sync"
    );
    assert!(agent.metric("georelay_upstream_partial_syncs_total", &[]) >= 2.0);
    assert_eq!(master.info_field("stats", "sync_full"), "1");

    // Nothing half-written was kept: with the agent stopped, every segment on disk reads as
    // whole, CRC-valid records end to end; the restart then resumes partially.
    agent.terminate();
    let records = logfiles::assert_whole_log(&agent.data_dir);
    assert!(records > 0, "the log on disk has no records");
    agent.clear_env();
    agent.restart();
    write_sets(master.port, 2_000, 512, "after");
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(
        agent.metric("georelay_upstream_full_syncs_total", &[]),
        0.0,
        "the restart needed a full sync; log:\n{}",
        tail(&agent.log_text())
    );
    assert_eq!(agent.metric("georelay_log_corruptions_total", &[]), 0.0);
}

#[test]
fn a_failed_rename_fails_that_sync_clearly_and_the_retry_completes() {
    let master = Redis::start(&[]);
    write_sets(master.port, 5_000, 100, "pre");
    let config = agent_config(&master.addr(), "");
    // The first rename is the received snapshot's move into place.
    let agent = Agent::start_env(&config, &[("GEORELAY_FAILPOINTS", "rename@1:1")]);
    let replica = start_replica(&agent.addr(), &[]);
    wait_digests_equal(&master, &[&replica], LONG);
    let text = agent.log_text();
    assert!(
        text.lines()
            .any(|l| l.contains("injected by failpoint rename") && l.contains(".rdb")),
        "no message naming the snapshot file that could not be renamed"
    );
    assert_eq!(
        agent.metric("georelay_upstream_full_syncs_total", &[]),
        1.0,
        "exactly one full sync completed"
    );
    // The failed attempt cost the origin one fork; the retry one more.
    assert_eq!(master.info_field("stats", "sync_full"), "2");
}

#[test]
fn a_read_error_while_serving_gives_the_replica_a_full_sync_not_bad_bytes() {
    let master = Redis::start(&["--repl-backlog-size", "256mb"]);
    let config = agent_config(&master.addr(), "[log]\nsegment_bytes = \"1MiB\"\n");
    let agent = Agent::start_env(&config, &[("GEORELAY_FAILPOINTS", "read@20:1")]);
    let replica = start_replica(&agent.addr(), &[]);
    write_until(&master, "the injected read error", || {
        agent.log_text().contains("injected by failpoint read")
    });
    assert!(
        agent.log_text().contains("read error in a log segment"),
        "no clear message about the read error"
    );
    write_sets(master.port, 2_000, 512, "after");
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(agent.metric("georelay_log_corruptions_total", &[]), 1.0);
    assert_eq!(
        agent.metric(
            "georelay_served_full_syncs_total",
            &[("reason", "corruption")]
        ),
        1.0,
        "the replica did not get a full sync after the read error"
    );
}

#[test]
fn network_errors_on_both_links_resume_partially() {
    let pki = Pki::new(&["site-a", "region-b"]);
    let master = Redis::start(&["--repl-backlog-size", "256mb"]);
    let quic = free_udp_port();
    let config = agent_config(
        &master.addr(),
        &format!(
            "agent = \"127.0.0.1:{quic}\"\n{}",
            pki.tls_section("site-a", None)
        ),
    );
    // A drops its Redis link once (bytes already read are thrown away) and its QUIC stream
    // to B twice.
    let a = Agent::start_env(
        &config,
        &[("GEORELAY_FAILPOINTS", "upstream_read@40:1,agent_send@30:2")],
    );
    let b = Agent::start(&agent_config_from_agent(
        "region-b",
        &format!("127.0.0.1:{quic}"),
        &pki.tls_section("region-b", Some("site-a")),
    ));
    let replica = start_replica(&b.addr(), &[]);
    // Small batches, each relayed before the next, so every batch is at least one send.
    let head = |agent: &Agent| agent.metric("georelay_log_head_offset", &[]);
    let mut from = 0;
    for _ in 0..150 {
        let text = a.log_text();
        if text.contains("injected by failpoint upstream_read")
            && text.matches("injected by failpoint agent_send").count() >= 2
        {
            break;
        }
        write_mixed(master.port, from, from + 500, "net");
        from += 500;
        wait_until(LONG, "B relays the batch", || {
            let h = head(&a);
            h > 0.0 && head(&b) >= h
        });
    }
    let text = a.log_text();
    assert!(
        text.contains("injected by failpoint upstream_read"),
        "the upstream failpoint never fired"
    );
    assert_eq!(
        text.matches("injected by failpoint agent_send").count(),
        2,
        "the link failpoint did not fire twice; A's log:\n{}",
        tail(&text)
    );
    wait_digests_equal(&master, &[&replica], LONG);
    assert_eq!(a.metric("georelay_upstream_full_syncs_total", &[]), 1.0);
    assert!(a.metric("georelay_upstream_partial_syncs_total", &[]) >= 1.0);
    assert_eq!(b.metric("georelay_upstream_full_syncs_total", &[]), 1.0);
    // A served B partially after each loss (B may lose the second link before it reads the
    // Continue, so B itself may count only one).
    let served = a.metric("georelay_served_partial_syncs_total", &[("kind", "agent")]);
    assert!(
        served >= 2.0,
        "A resumed B partially {served} times after 2 link losses; A's log:\n{}",
        tail(&a.log_text())
    );
    assert!(b.metric("georelay_upstream_partial_syncs_total", &[]) >= 1.0);
    assert_eq!(master.info_field("stats", "sync_full"), "1");
}
